/*
 * bench/tfb/fortunes.c - TFB test type 4, "fortunes": GET /fortunes reads
 * every row of Fortune, adds one at request time (id 0, "Additional
 * fortune added at request time."), sorts them by message and renders
 * them through the template fortunes.tpl, which HTML-escapes the messages
 * (Mustache {{message}}); text/html; charset=utf-8 (hotpub's default).
 * The read is autocommit (tfb_db), as PHP's. Owns nothing else.
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

/* One object per row, built with jansson's setters rather than json_pack:
 * json_pack parses its format and checks every key and string for UTF-8
 * on each call, which was 40% of the page's instructions. The keys are
 * literals; the messages come from PostgreSQL, which hotpub connects with
 * client_encoding=UTF8 (docs/database.md), so they are valid UTF-8. */
static json_t *as_json(const struct fortune *f, size_t n)
{
    json_t *list = json_array();
    for (size_t i = 0; list && i < n; i++) {
        json_t *o = json_object();
        if (!o || json_array_append_new(list, o) != 0 ||
            json_object_set_new_nocheck(o, "id", json_integer(f[i].id)) != 0 ||
            json_object_set_new_nocheck(
                o, "message", json_string_nocheck(f[i].message)) != 0) {
            json_decref(list);
            return NULL;
        }
    }
    json_t *data = list ? json_object() : NULL;
    if (!data) {
        json_decref(list);
        return NULL;
    }
    /* On failure the setter has freed list already. */
    if (json_object_set_new_nocheck(data, "fortunes", list) != 0) {
        json_decref(data);
        return NULL;
    }
    return data;
}

HP_HANDLER(http_handler)
{
    hp_db_res *r = hp_db_query(tfb_db(req), "SELECT id, message FROM fortune");
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
