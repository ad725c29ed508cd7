/*
 * index.c - the home page (GET /): a directory's index.c answers for the
 * directory. Lists the examples from a table, HTML-escaping every string;
 * app/, notes/ and guestbook/ are applications with index pages of their
 * own (guestbook/ is the one to copy from: examples/README.md).
 */
#include "_lib/layout.h"

static const struct {
    const char *href, *title, *what;
} examples[] = {
    {"/hello", "hello.c", "plain text greeting; try ?name=<you>"},
    {"/hello/json", "hello.c: json", "a second handler in the same file"},
    {"/form", "form.c", "GET shows a form, POST echoes it; cookies, "
                        "redirect after POST"},
    {"/headers", "headers.c", "method, path, request headers, remote address"},
    {"/headers/body", "headers.c: body", "the raw request body (POST to it)"},
    {"/files", "files.c", "uploads (hp_file), server-sent events (hp_sse), "
                          "a streamed export (hp_flush), hp_send_file"},
    {"/static/style.css", "static/style.css", "a static file"},
    {"/app/", "app/", "an application: _app.c state that survives edits, "
                      "request hooks, handlers acquired by pages, a "
                      "password-protected admin/"},
    {"/notes/", "notes/", "a notes board on the database (SQLite by "
                          "default): add, delete, /notes/json"},
    {"/guestbook/", "guestbook/", "a whole small application: accounts "
                                  "with hashed passwords, sessions, "
                                  "CSRF-protected forms, Mustache templates, "
                                  "a picture upload, a JSON API with tokens, "
                                  "a streamed CSV export"},
    {"/_hotpub/status.json", "status.json",
     "threads, loaded versions and errors (loopback clients only)"},
};

HP_HANDLER(http_handler)
{
    layout_header(req, "Examples");
    hp_puts(req, "<p>The pages below are C files under this directory. "
                 "Edit one and reload the browser: the server recompiles "
                 "it.</p>\n"
                 "<table>\n");
    for (size_t i = 0; i < sizeof examples / sizeof examples[0]; i++) {
        hp_puts(req, "<tr><td><a href=\"");
        hp_write_html(req, examples[i].href);
        hp_puts(req, "\">");
        hp_write_html(req, examples[i].title);
        hp_puts(req, "</a></td><td>");
        hp_write_html(req, examples[i].what);
        hp_puts(req, "</td></tr>\n");
    }
    hp_puts(req, "</table>\n");
    layout_footer(req);
    return HP_OK;
}
