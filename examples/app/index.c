/*
 * app/index.c - GET /app/: the home page of the example application. It
 * reads and updates the application's state (app/_app.c) through hp_app.
 * That state is in the memory of the worker process that serves the
 * request: with several workers (the default is one per CPU) each keeps its
 * own count, so the page says which process answered (docs/hooks.md, "State
 * and worker processes").
 */
#include "_app.h"

#include <unistd.h>

HP_HANDLER(http_handler)
{
    struct app_state *app = hp_app(req);
    unsigned long n = atomic_fetch_add(&app->visits, 1) + 1;

    app_header(req, "Example application");
    hp_printf(req,
              "<p>Welcome: this is visit #%lu of this page to worker "
              "process %d.</p>\n",
              n, (int)getpid());
    hp_puts(req,
            "<p>The count lives in the state of the application module "
            "<code>app/_app.c</code>. Edit that file, or this one, and "
            "reload: the count goes on.</p>\n"
            "<p>That state is per worker process: the server runs one per "
            "CPU by default, each with its own copy, and a reload may be "
            "answered by another one, with its own count (hence the pid). "
            "What all workers must see belongs in the database, as in the "
            "<a href=\"/notes/\">notes board</a>.</p>\n<ul>\n"
            "<li><a href=\"/app/stats\">/app/stats</a>: a page without a "
            "handler of its own</li>\n"
            "<li><a href=\"/app/admin/\">/app/admin/</a>: protected by the "
            "prepare hook of <code>app/admin/_app.c</code> (user "
            "<code>admin</code>, password <code>letmein</code> unless the "
            "server runs with <code>HOTPUB_ADMIN_TOKEN</code> set)</li>\n"
            "</ul>\n");
    app_footer(req);
    return HP_OK;
}
