/*
 * _lib/layout.h - the page frame shared by the example pages.
 *
 * Nothing under a directory whose name starts with '_' is ever served, but
 * pages may #include it: `#include "_lib/layout.h"` from a page in the
 * document root. hotpub records the header as a dependency, so saving it
 * reloads every page that includes it.
 */
#ifndef EXAMPLES_LAYOUT_H
#define EXAMPLES_LAYOUT_H

#include <hotpub.h>

/* Start an HTML page; the title is escaped. */
static inline void layout_header(hp_req *req, const char *title)
{
    hp_puts(req, "<!doctype html>\n<html lang=\"en\">\n<head>\n"
                 "<meta charset=\"utf-8\">\n<title>");
    hp_write_html(req, title);
    hp_puts(req, " - hotpub examples</title>\n"
                 "<link rel=\"stylesheet\" href=\"/static/style.css\">\n"
                 "</head>\n<body>\n<header><a href=\"/\">hotpub examples</a>"
                 "</header>\n<main>\n<h1>");
    hp_write_html(req, title);
    hp_puts(req, "</h1>\n");
}

/* Close the page opened by layout_header. */
static inline void layout_footer(hp_req *req)
{
    hp_puts(req, "</main>\n<footer>Served by <code>");
    hp_write_html(req, hp_filename(req));
    hp_puts(req, "</code>, handler <code>");
    hp_write_html(req, hp_handler_name(req));
    hp_puts(req, "</code></footer>\n</body>\n</html>\n");
}

#endif
