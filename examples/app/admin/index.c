/*
 * app/admin/index.c - GET /app/admin/ shows the application's counters,
 * POST /app/admin/reset sets the visit counter back to zero. Only reached
 * when app/admin/_app.c's prepare let the request through.
 *
 * hp_app(req) is the innermost application module's state (admin/_app.c);
 * the example application's state is one level out: hp_app_at(req, 1).
 */
#include "../_app.h"

#include <string.h>

HP_HANDLER(http_handler)
{
    struct app_state *app = hp_app_at(req, 1);

    app_header(req, "Admin");
    hp_printf(req,
              "<p>%lu requests so far, %lu home page visits, %lu committed, "
              "%lu rolled back.</p>\n"
              "<form method=\"post\" action=\"/app/admin/reset\">\n"
              "<button>Reset the visit counter</button>\n</form>\n",
              atomic_load(&app->requests), atomic_load(&app->visits),
              atomic_load(&app->committed), atomic_load(&app->rolled_back));
    app_footer(req);
    return HP_OK;
}

HP_HANDLER(reset)
{
    struct app_state *app = hp_app_at(req, 1);

    if (strcmp(hp_method(req), "POST") != 0) {
        hp_set_header(req, "Allow", "POST");
        hp_puts(req, "POST only\n");
        return 405;
    }
    atomic_store(&app->visits, 0);
    hp_log(req, "visit counter reset");
    hp_redirect(req, "/app/admin/");
    return HP_OK;
}
