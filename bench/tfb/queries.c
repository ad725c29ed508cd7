/*
 * bench/tfb/queries.c - TFB test type 3, "multiple database queries":
 * GET /queries?queries=N reads N random World rows, one query each, and
 * answers a JSON array of {"id":N,"randomNumber":N}. N is clamped to
 * 1..500 (tfb_queries).
 *
 * The N queries go through hp_db_query_many: on PostgreSQL they travel in
 * one pipeline, one round trip for all of them, but each SELECT is still a
 * statement of its own that the server executes separately, as the rules
 * require ("it is permissible to pipeline traffic between the application
 * and database as a network-level optimization ... as long as the queries
 * themselves are executed separately on the database server"); nothing is
 * merged into one query (no IN list, no ANY). Unlike the other database
 * pages, in the request's transaction (hp_db, not tfb_db): a GET's batch
 * there is [runs, read guard, Sync], one statement fewer for PostgreSQL
 * than autocommit's [BEGIN, runs, COMMIT, Sync], and it answered 0.78-0.97x
 * as many requests in autocommit at 5 to 20 queries in most runs
 * (bench/results-2026-11-30.md, "Twelfth pass").
 */
#include "_lib/tfb.h"

#include <jansson.h>

static json_t *row_json(hp_db_res *r)
{
    if (!r || !hp_db_next(r))
        return NULL;
    return tfb_world(hp_db_int(r, 0), hp_db_int(r, 1));
}

HP_HANDLER(http_handler)
{
    int n = tfb_queries(req);
    hp_db_val *ids = hp_alloc(req, (size_t)n * sizeof *ids);
    hp_db_res **rs = hp_alloc(req, (size_t)n * sizeof *rs);
    if (!ids || !rs)
        return 500;
    for (int i = 0; i < n; i++)
        ids[i] = HP_INT(tfb_random_id());
    if (hp_db_query_many(hp_db(req),
                         "SELECT id, randomnumber FROM world WHERE id = $1",
                         (size_t)n, 1, ids, rs) != HP_OK)
        return 500; /* 503 instead when no connection could be had */
    json_t *list = json_array();
    for (int i = 0; list && i < n; i++) {
        json_t *obj = row_json(rs[i]);
        hp_db_res_free(rs[i]); /* 500 rows: give each back as it is used */
        rs[i] = NULL;
        if (!obj || json_array_append_new(list, obj) != 0) {
            json_decref(list);
            list = NULL;
        }
    }
    for (int i = 0; i < n; i++)
        hp_db_res_free(rs[i]); /* those left after a failure; NULL is fine */
    if (!list)
        return 500;
    tfb_fields(req, NULL);
    int rc = hp_write_json(req, list);
    json_decref(list);
    return rc == HP_OK ? HP_OK : 500;
}
