/*
 * form.c - forms. GET /form shows a form; "Echo" POSTs to /form/echo, which
 * prints the fields back (escaped, repeated fields too); "Remember" POSTs to
 * /form/save, which sets a cookie and redirects (303) to GET /form/show.
 */
#include "_lib/layout.h"

#include <string.h>

static const char *const toppings[] = {"cheese", "olives", "basil"};

HP_HANDLER(http_handler)
{
    const char *last = hp_cookie(req, "name");

    layout_header(req, "A form");
    if (last) {
        hp_puts(req, "<p class=\"note\">Welcome back, ");
        hp_write_html(req, last);
        hp_puts(req, ".</p>\n");
    }
    hp_puts(req, "<form method=\"post\" action=\"/form/echo\">\n"
                 "<label>Name <input name=\"name\" value=\"");
    hp_write_html(req, last ? last : "");
    hp_puts(req, "\"></label>\n");
    for (size_t i = 0; i < sizeof toppings / sizeof toppings[0]; i++)
        hp_printf(req, "<label><input type=\"checkbox\" name=\"topping\" "
                       "value=\"%s\"> %s</label>\n", toppings[i], toppings[i]);
    hp_puts(req, "<button>Echo</button>\n"
                 "<button formaction=\"/form/save\">Remember my name</button>\n"
                 "</form>\n");
    layout_footer(req);
    return HP_OK;
}

HP_HANDLER(echo)
{
    if (strcmp(hp_method(req), "POST") != 0) {
        hp_redirect(req, "/form");
        return HP_OK;
    }

    const char *name = hp_arg(req, "name");
    unsigned n = hp_arg_count(req, "topping");

    layout_header(req, "You sent");
    hp_puts(req, "<p>name = <code>");
    hp_write_html(req, name ? name : "(none)");
    hp_printf(req, "</code></p>\n<p>topping was sent %u time%s:</p>\n<ul>\n",
              n, n == 1 ? "" : "s");
    for (unsigned i = 0; i < n; i++) {
        hp_puts(req, "<li>");
        hp_write_html(req, hp_arg_n(req, "topping", i));
        hp_puts(req, "</li>\n");
    }
    hp_puts(req, "</ul>\n<p><a href=\"/form\">Back to the form</a></p>\n");
    layout_footer(req);
    return HP_OK;
}

HP_HANDLER(save)
{
    const char *name = hp_arg(req, "name");

    if (strcmp(hp_method(req), "POST") != 0) {
        hp_set_header(req, "Allow", "POST"); /* RFC 9110 15.5.6 */
        return 405;
    }
    if (!name || !*name) {
        hp_redirect(req, "/form");
        return HP_OK;
    }
    /* Cookie values may not hold spaces, '"', ';', ',', '\\', control or
     * non-ASCII bytes (RFC 6265 4.1.1); a real page would encode them. */
    if (hp_set_cookie(req, "name", name, "Path=/; HttpOnly; SameSite=Lax") < 0) {
        layout_header(req, "Cannot remember that");
        hp_puts(req, "<p>Names with spaces, quotes, <code>;</code>, "
                     "<code>,</code>, backslashes or non-ASCII characters "
                     "cannot be stored in this cookie.</p>\n"
                     "<p><a href=\"/form\">Back</a></p>\n");
        layout_footer(req);
        return 400;
    }
    /* After a POST, hp_redirect answers 303: the browser GETs the target. */
    hp_redirect(req, "/form/show");
    return HP_OK;
}

HP_HANDLER(show)
{
    const char *name = hp_cookie(req, "name");

    layout_header(req, "Remembered");
    hp_puts(req, "<p>The <code>name</code> cookie holds <code>");
    hp_write_html(req, name ? name : "(nothing)");
    hp_puts(req, "</code>.</p>\n<p><a href=\"/form\">Back to the form</a></p>\n");
    layout_footer(req);
    return HP_OK;
}
