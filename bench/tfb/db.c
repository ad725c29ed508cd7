/*
 * bench/tfb/db.c - TFB test type 2, "single database query": GET /db reads
 * one random row of World and answers it as {"id":N,"randomNumber":N}.
 * Owns nothing else; the row comes from the request's pooled connection
 * in autocommit mode (tfb_db: one statement, prepared after its first use
 * on a connection).
 */
#include "_lib/tfb.h"

#include <jansson.h>

HP_HANDLER(http_handler)
{
    hp_db_res *r = hp_db_queryv(tfb_db(req),
                                "SELECT id, randomnumber FROM world"
                                " WHERE id = $1",
                                HP_INT(tfb_random_id()));
    if (!r || !hp_db_next(r))
        return 500; /* 503 instead when no connection could be had */
    json_t *obj = tfb_world(hp_db_int(r, 0), hp_db_int(r, 1));
    if (!obj)
        return 500;
    tfb_fields(req, NULL);
    int rc = hp_write_json(req, obj);
    json_decref(obj);
    return rc == HP_OK ? HP_OK : 500;
}
