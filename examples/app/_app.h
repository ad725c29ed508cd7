/*
 * app/_app.h - what the modules of the example application share: the
 * layout of the application's state (kept by app/_app.c, read by the pages
 * through hp_app) and a small page frame.
 *
 * The state outlives versions of _app.c: each new version's HP_INIT is
 * handed the previous version's state and adopts it (docs/hooks.md). So the
 * struct carries a layout number: change a field, bump APP_STATE_LAYOUT, and
 * the next version starts a fresh state instead of misreading the old one.
 * `layout` and `started` come first and never move, so that even a new
 * layout can read them from an old state.
 */
#ifndef EXAMPLE_APP_H
#define EXAMPLE_APP_H

#include <hotpub.h>
#include <stdatomic.h>
#include <time.h>

#define APP_STATE_LAYOUT 1

struct app_state {
    unsigned layout;           /* APP_STATE_LAYOUT of its maker; never moves */
    time_t started;            /* first load of the application; never moves */
    /* Counters: atomics, because every request thread - and, during a
     * reload, two versions of _app.c at once - update them. */
    atomic_ulong requests;     /* requests under /app/ (counted in prepare) */
    atomic_ulong visits;       /* views of the home page (index.c)          */
    atomic_ulong committed;    /* requests that committed                   */
    atomic_ulong rolled_back;  /* requests that failed and rolled back      */
};

static inline void app_header(hp_req *req, const char *title)
{
    hp_puts(req, "<!doctype html>\n<html lang=\"en\">\n<head>\n"
                 "<meta charset=\"utf-8\">\n<title>");
    hp_write_html(req, title);
    hp_puts(req, " - example app</title>\n"
                 "<link rel=\"stylesheet\" href=\"/static/style.css\">\n"
                 "</head>\n<body>\n<header><a href=\"/app/\">example app</a> "
                 "&middot; <a href=\"/app/stats\">stats</a> &middot; "
                 "<a href=\"/app/admin/\">admin</a></header>\n<main>\n<h1>");
    hp_write_html(req, title);
    hp_puts(req, "</h1>\n");
}

static inline void app_footer(hp_req *req)
{
    hp_puts(req, "</main>\n</body>\n</html>\n");
}

#endif
