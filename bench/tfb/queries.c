/*
 * bench/tfb/queries.c - TFB test type 3, "multiple database queries":
 * GET /queries?queries=N reads N random World rows, one query each (the
 * rules forbid batching them), and answers a JSON array of
 * {"id":N,"randomNumber":N}. N is clamped to 1..500 (tfb_queries).
 */
#include "_lib/tfb.h"

#include <jansson.h>

HP_HANDLER(http_handler)
{
    int n = tfb_queries(req);
    hp_db *db = hp_db(req);
    json_t *list = json_array();
    if (!list)
        return 500;
    for (int i = 0; i < n; i++) {
        hp_db_res *r = hp_db_queryv(db,
                                    "SELECT id, randomnumber FROM world"
                                    " WHERE id = $1",
                                    HP_INT(tfb_random_id()));
        json_t *obj =
            r && hp_db_next(r)
                ? json_pack("{s:I,s:I}", "id", (json_int_t)hp_db_int(r, 0),
                            "randomNumber", (json_int_t)hp_db_int(r, 1))
                : NULL;
        hp_db_res_free(r); /* 500 rows: do not keep 500 results */
        if (!obj || json_array_append_new(list, obj) != 0) {
            json_decref(list);
            return 500;
        }
    }
    tfb_fields(req, NULL);
    int rc = hp_write_json(req, list);
    json_decref(list);
    return rc == HP_OK ? HP_OK : 500;
}
