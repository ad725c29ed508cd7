/*
 * app/index.c - GET /app/: the home page of the example application. It
 * reads and updates the application's state (app/_app.c) through hp_app.
 */
#include "_app.h"

HP_HANDLER(http_handler)
{
    struct app_state *app = hp_app(req);
    unsigned long n = atomic_fetch_add(&app->visits, 1) + 1;

    app_header(req, "Example application");
    hp_printf(req, "<p>Welcome: this is visit #%lu of this page.</p>\n", n);
    hp_puts(req,
            "<p>The count lives in the state of the application module "
            "<code>app/_app.c</code>. Edit that file, or this one, and "
            "reload: the count goes on.</p>\n<ul>\n"
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
