/*
 * bench/tfb/updates.c - TFB test type 5, "database updates":
 * GET /updates?queries=N reads N random World rows one query each (as the
 * rules require), gives each a new random randomNumber, writes them back
 * and answers the JSON array of the rows as they now are. N is clamped to
 * 1..500 (tfb_queries). Owns nothing else.
 *
 * The reads: N separate SELECTs through hp_db_query_many, so on PostgreSQL
 * they travel in one pipeline, one round trip for all of them; each is
 * still executed separately by the server, which is what the rules ask
 * ("it is permissible to pipeline traffic between the application and
 * database as a network-level optimization ... as long as the queries
 * themselves are executed separately on the database server").
 *
 * The writes: the rules allow batching them, so they go as one UPDATE of
 * all the rows, whose subquery locks them in id order first (LockRows
 * above a Sort by id: EXPLAIN shows it). Why the order: two requests
 * updating overlapping rows would otherwise lock them in whatever order
 * the UPDATE's plan visits them and could deadlock (PostgreSQL then fails
 * one of them after a second); locking in one global order cannot. One
 * statement, not a SELECT ... FOR UPDATE and then the UPDATE: the rows
 * stay locked one round trip less, which is what other requests for them
 * wait on. The connection is in autocommit (tfb_db), as TFB's PHP entry's
 * PDO is: the reads' batch is one transaction of its own, the UPDATE
 * another, committed as it ends; the request's transaction would add a
 * round trip and PostgreSQL's read guard (bench/results-2026-11-30.md,
 * "Twelfth pass": 1.1-1.7x the requests a second in autocommit).
 */
#include "_lib/tfb.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

struct world {
    int id;
    int number; /* the new randomNumber */
    int pos;    /* index in the response */
};

static int by_id_then_pos(const void *a, const void *b)
{
    const struct world *x = a, *y = b;
    if (x->id != y->id)
        return x->id < y->id ? -1 : 1;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

/* Read the n rows, one query each (pipelined: one round trip), and draw
 * their new numbers. */
static int read_rows(hp_req *req, hp_db *db, struct world *rows, int n)
{
    hp_db_val *ids = hp_alloc(req, (size_t)n * sizeof *ids);
    hp_db_res **rs = hp_alloc(req, (size_t)n * sizeof *rs);
    if (!ids || !rs)
        return -1;
    for (int i = 0; i < n; i++) {
        rows[i].id = tfb_random_id();
        rows[i].pos = i;
        ids[i] = HP_INT(rows[i].id);
    }
    int rc =
        hp_db_query_many(db, "SELECT randomnumber FROM world WHERE id = $1",
                         (size_t)n, 1, ids, rs);
    for (int i = 0; i < n; i++) {
        if (rc == HP_OK && !hp_db_next(rs[i]))
            rc = -1; /* no such row */
        hp_db_res_free(rs[i]);
        rows[i].number = tfb_random_id();
    }
    return rc == HP_OK ? 0 : -1;
}

/* Sort a copy by id; a row drawn twice keeps its last new number (that is
 * what the database ends up with) and the response shows that number at
 * both places. ids and numbers get PostgreSQL array literals of the
 * distinct rows, in id order. */
static void merge_rows(struct world *rows, struct world *sorted, int n,
                       char *ids, char *numbers, size_t cap)
{
    size_t li = 0, ln = 0;
    memcpy(sorted, rows, (size_t)n * sizeof *rows);
    qsort(sorted, (size_t)n, sizeof *sorted, by_id_then_pos);
    ids[li++] = '{';
    numbers[ln++] = '{';
    for (int i = 0; i < n;) {
        int j = i;
        while (j + 1 < n && sorted[j + 1].id == sorted[i].id)
            j++;
        for (int k = i; k <= j; k++)
            rows[sorted[k].pos].number = sorted[j].number;
        li += (size_t)snprintf(ids + li, cap - li, "%s%d", i ? "," : "",
                               sorted[i].id);
        ln += (size_t)snprintf(numbers + ln, cap - ln, "%s%d", i ? "," : "",
                               sorted[j].number);
        i = j + 1;
    }
    snprintf(ids + li, cap - li, "}");
    snprintf(numbers + ln, cap - ln, "}");
}

static json_t *as_json(const struct world *rows, int n)
{
    json_t *list = json_array();
    for (int i = 0; list && i < n; i++) {
        json_t *o = tfb_world(rows[i].id, rows[i].number);
        if (!o || json_array_append_new(list, o) != 0) {
            json_decref(list);
            return NULL;
        }
    }
    return list;
}

HP_HANDLER(http_handler)
{
    int n = tfb_queries(req);
    size_t cap = (size_t)n * 7 + 4; /* ",10000" per row, braces, NUL */
    struct world *rows = hp_alloc(req, 2 * (size_t)n * sizeof *rows);
    char *ids = hp_alloc(req, cap), *numbers = hp_alloc(req, cap);
    hp_db *db = tfb_db(req);
    if (!rows || !ids || !numbers || read_rows(req, db, rows, n) != 0)
        return 500;
    merge_rows(rows, rows + n, n, ids, numbers, cap);
    if (hp_db_exec(db,
                   "UPDATE world SET randomnumber = l.number FROM"
                   " (SELECT w.id, v.number FROM world w"
                   " JOIN unnest($1::int[], $2::int[]) AS v(id, number)"
                   " ON w.id = v.id ORDER BY w.id FOR UPDATE OF w) AS l"
                   " WHERE world.id = l.id",
                   ids, numbers) != HP_OK)
        return 500;
    json_t *list = as_json(rows, n);
    if (!list)
        return 500;
    tfb_fields(req, NULL);
    int rc = hp_write_json(req, list);
    json_decref(list);
    return rc == HP_OK ? HP_OK : 500;
}
