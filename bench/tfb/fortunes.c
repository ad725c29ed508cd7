/*
 * bench/tfb/fortunes.c - TFB test type 4, "fortunes": GET /fortunes reads
 * every row of Fortune, adds one at request time (id 0, "Additional
 * fortune added at request time."), sorts them by message and renders
 * them through the template fortunes.tpl, which HTML-escapes the messages
 * (Mustache {{message}}); text/html; charset=utf-8 (hotpub's default).
 * Owns nothing else.
 */
#include "_lib/tfb.h"

#include <jansson.h>
#include <string.h>

struct fortune {
    long long id;
    const char *message; /* in the result, which lives as long as the req */
};

/* By message: strcmp orders UTF-8 by code point, as the rules' expected
 * page does (every ASCII capital before "fortune: ...", the Japanese row
 * last). */
static int by_message(const void *a, const void *b)
{
    const struct fortune *x = a, *y = b;
    return strcmp(x->message, y->message);
}

static json_t *as_json(const struct fortune *f, size_t n)
{
    json_t *list = json_array();
    for (size_t i = 0; list && i < n; i++) {
        json_t *o = json_pack("{s:I,s:s}", "id", (json_int_t)f[i].id, "message",
                              f[i].message);
        if (!o || json_array_append_new(list, o) != 0) {
            json_decref(list);
            return NULL;
        }
    }
    return list ? json_pack("{s:o}", "fortunes", list) : NULL;
}

HP_HANDLER(http_handler)
{
    hp_db_res *r = hp_db_query(hp_db(req), "SELECT id, message FROM fortune");
    if (!r)
        return 500;
    size_t n = 0, rows = hp_db_nrows(r);
    struct fortune *f = hp_alloc(req, (rows + 1) * sizeof *f);
    if (!f)
        return 500;
    while (hp_db_next(r) && n < rows) {
        f[n].id = hp_db_int(r, 0);
        f[n++].message = hp_db_text(r, 1);
    }
    f[n].id = 0;
    f[n++].message = "Additional fortune added at request time.";
    qsort(f, n, sizeof *f, by_message);
    json_t *data = as_json(f, n);
    if (!data)
        return 500;
    tfb_fields(req, NULL);
    int rc = hp_render(req, "fortunes.tpl", data);
    json_decref(data);
    return rc == HP_OK ? HP_OK : 500;
}
