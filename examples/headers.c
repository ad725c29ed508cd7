/*
 * headers.c - what a handler can learn about its request: GET /headers
 * shows the method, path, a few request headers and the client address;
 * /headers/body returns the raw request body as plain text.
 */
#include "_lib/layout.h"

static const char *const names[] = {"Host", "User-Agent", "Accept",
                                    "Accept-Language", "Content-Type",
                                    "Cookie", "Referer"};

static void row(hp_req *req, const char *key, const char *value)
{
    hp_puts(req, "<tr><th>");
    hp_write_html(req, key);
    hp_puts(req, "</th><td>");
    if (value)
        hp_write_html(req, value);
    else
        hp_puts(req, "<i>absent</i>");
    hp_puts(req, "</td></tr>\n");
}

HP_HANDLER(http_handler)
{
    layout_header(req, "Your request");
    hp_puts(req, "<table>\n");
    row(req, "method", hp_method(req));
    row(req, "path", hp_path(req));
    row(req, "remote address", hp_remote_addr(req));
    row(req, "page file", hp_filename(req));
    row(req, "handler", hp_handler_name(req));
    hp_puts(req, "</table>\n<h2>Some request headers</h2>\n<table>\n");
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        row(req, names[i], hp_header(req, names[i]));
    hp_puts(req, "</table>\n");
    layout_footer(req);
    return HP_OK;
}

/* curl --data-binary @file http://127.0.0.1:8080/headers/body */
HP_HANDLER(body)
{
    size_t len;
    const char *data = hp_body(req, &len);

    hp_set_header(req, "Content-Type", "text/plain; charset=utf-8");
    hp_printf(req, "%s %s, %zu body bytes\n", hp_method(req), hp_path(req), len);
    hp_write(req, data, len);
    hp_log(req, "echoed %zu bytes for %s", len, hp_remote_addr(req));
    return HP_OK;
}
