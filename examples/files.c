/*
 * files.c - responses that are not one buffered page. GET /files shows an
 * upload form and a live clock; POST /files/upload describes the files
 * sent (hp_file; they are removed when the request ends); /files/ticks is
 * a server-sent event stream (hp_sse); /files/export streams a CSV as it is
 * made (hp_flush); /files/source sends this file (hp_send_file: ranges,
 * ETag, zero copy).
 */
#include "_lib/layout.h"

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

HP_HANDLER(http_handler)
{
    layout_header(req, "Files and streams");
    hp_puts(req,
            "<form method=\"post\" action=\"/files/upload\" "
            "enctype=\"multipart/form-data\">\n"
            "<label>Files <input type=\"file\" name=\"f\" multiple></label>\n"
            "<button>Upload</button>\n</form>\n"
            "<p>Server time, pushed every second: <b id=\"t\">...</b></p>\n"
            "<script>new EventSource('/files/ticks').addEventListener("
            "'tick', e => document.getElementById('t').textContent = "
            "e.data);</script>\n"
            "<p><a href=\"/files/export\">A CSV export</a>, streamed; "
            "<a href=\"/files/source\">this page's source</a>, sent as a "
            "file.</p>\n");
    layout_footer(req);
    return HP_OK;
}

HP_HANDLER(upload)
{
    unsigned n = hp_file_count(req, "f");
    layout_header(req, "Uploaded");
    hp_printf(req, "<p>%u file(s):</p>\n<ul>\n", n);
    for (unsigned i = 0; i < n; i++) {
        const struct hp_file *f = hp_file_n(req, "f", i);
        hp_puts(req, "<li>");
        hp_write_html(req, f->filename); /* the client's word: escape it */
        hp_puts(req, " (");
        hp_write_html(req, f->content_type);
        hp_printf(req, "), %llu bytes</li>\n", (unsigned long long)f->size);
    }
    hp_puts(req, "</ul>\n<p><a href=\"/files\">Back</a></p>\n");
    layout_footer(req);
    return HP_OK;
}

HP_HANDLER(ticks)
{
    for (int i = 0; i < 3600; i++) {
        char now[64];
        time_t t = time(NULL);
        strftime(now, sizeof now, "%H:%M:%S", localtime(&t));
        if (hp_sse(req, "tick", now) < 0)
            break; /* the page was closed */
        sleep(1);
    }
    return HP_OK;
}

HP_HANDLER(export)
{
    hp_set_header(req, "Content-Type", "text/csv; charset=utf-8");
    hp_set_header(req, "Content-Disposition", "attachment; filename=x.csv");
    hp_puts(req, "n,square\n");
    for (long n = 1; n <= 100000; n++) {
        hp_printf(req, "%ld,%ld\n", n, n * n);
        if (n % 1000 == 0 && hp_flush(req) < 0)
            break; /* the client went away */
    }
    return HP_OK;
}

HP_HANDLER(source)
{
    hp_set_header(req, "Content-Type", "text/plain; charset=utf-8");
    return hp_send_file(req, hp_filename(req)) == HP_OK ? HP_OK : 404;
}
