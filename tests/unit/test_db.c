/*
 * test_db.c - unit tests for the database layer (db.c, db_pool.c,
 * db_stmt.c, db_sqlite.c, db_pg.c, db_core.c, db_result.c) against real
 * engines: SQLite in a temporary directory always, PostgreSQL too when
 * HOTPUB_PG_URL names a server ("skip" lines when not). The core and the
 * driver tables are also tested on their own.
 *
 * Owns: its temporary directory and, on PostgreSQL, tables named
 * t<pid>_*, dropped at the end. May not touch: anything else in the
 * database it is given.
 */
#include "db.h"
#include "db_drivers.h"
#include "db_lex.h"
#include "db_pool.h"
#include "request.h"
#include "t.h"
#include "wait.h"

#include <ftw.h>
#include <poll.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct engine {
    const char *name;
    bool pg;
    char url[PATH_MAX + 64];
};

static struct engine engines[2];
static int nengines;
static const struct engine *E; /* the engine the current test runs on */
static char tmpdir[] = "/tmp/hp-test-db-XXXXXX";

/* "t<pid>_<name>": tests in one PostgreSQL database never collide. */
static const char *tbl(const char *name)
{
    static char buf[8][64];
    static int i;
    char *b = buf[i++ % 8];
    snprintf(b, 64, "t%d_%s", (int)getpid(), name);
    return b;
}

static char *sqlf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *sqlf(const char *fmt, ...)
{
    static char buf[4][1024];
    static int i;
    char *b = buf[i++ % 4];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b, 1024, fmt, ap);
    va_end(ap);
    return b;
}

static hp_db_pool *open_pool(const struct hp_db_pool_opts *o)
{
    char *err = NULL;
    hp_db_pool *p = hp_db_pool_open(E->url, o, &err);
    if (!p)
        fprintf(stderr, "  open %s: %s\n", E->url, err);
    free(err);
    return p;
}

static hp_db *acquire(hp_db_pool *p)
{
    char *err = NULL;
    hp_db *db = hp_db_pool_acquire(p, &err);
    if (!db)
        fprintf(stderr, "  acquire: %s\n", err);
    free(err);
    return db;
}

static long long query_int(hp_db *db, const char *sql)
{
    hp_db_res *r = hp_db_query(db, sql);
    long long v = r && hp_db_next(r) ? hp_db_int(r, 0) : -999;
    hp_db_res_free(r);
    return v;
}

static void drop(hp_db *db, const char *name)
{
    hp_db_exec_script(db, sqlf("DROP TABLE IF EXISTS %s", tbl(name)));
}

/* ---- pools -----------------------------------------------------------------
 */

static void pool_acquire_release(void)
{
    struct hp_db_pool_stats s;
    hp_db_pool *p = open_pool(&(struct hp_db_pool_opts){.max_conns = 2});
    CHECK(p != NULL);
    if (!p)
        return;
    hp_db_pool_stats(p, &s);
    CHECK(s.size == 0 && s.max == 2); /* connects on demand */
    hp_db *a = acquire(p), *b = acquire(p);
    CHECK(a && b && a != b);
    hp_db_pool_stats(p, &s);
    CHECK(s.size == 2 && s.in_use == 2 && s.idle == 0);
    hp_db_pool_release(a);
    hp_db_pool_release(b);
    hp_db_pool_stats(p, &s);
    CHECK(s.size == 2 && s.in_use == 0 && s.idle == 2);
    CHECK(s.acquires == 2 && s.connects == 2);
    hp_db *c = acquire(p); /* reuses the most recently returned one */
    CHECK(c == b);
    hp_db_pool_release(c);
    hp_db_pool_close(p);
}

struct waiter {
    hp_db_pool *p;
    hp_db *got;
    double waited;
};

static void *wait_thread(void *arg)
{
    struct waiter *w = arg;
    double t0 = hp_now();
    char *err = NULL;
    w->got = hp_db_pool_acquire(w->p, &err);
    w->waited = hp_now() - t0;
    free(err);
    return NULL;
}

static void pool_timeout(void)
{
    struct hp_db_pool_stats s;
    char *err = NULL;
    hp_db_pool *p = open_pool(
        &(struct hp_db_pool_opts){.max_conns = 1, .acquire_timeout_ms = 200});
    hp_db *a = acquire(p);
    CHECK(a != NULL);

    /* Nobody gives it back: the wait ends at the timeout. */
    double t0 = hp_now();
    hp_db *b = hp_db_pool_acquire(p, &err);
    double waited = hp_now() - t0;
    CHECK(b == NULL);
    CHECK(waited >= 0.19 && waited < 2.0);
    CHECK(err && strstr(err, "200 ms"));
    free(err);
    hp_db_pool_stats(p, &s);
    CHECK(s.timeouts == 1 && s.waiters == 0);

    /* Given back while another thread waits: that thread gets it. */
    struct waiter w = {.p = p};
    pthread_t th;
    pthread_create(&th, NULL, wait_thread, &w);
    usleep(50000);
    hp_db_pool_stats(p, &s);
    CHECK(s.waiters == 1);
    hp_db_pool_release(a);
    pthread_join(th, NULL);
    CHECK(w.got == a);
    CHECK(w.waited < 0.19);
    hp_db_pool_release(w.got);
    hp_db_pool_close(p);
}

static void pool_no_wait(void)
{
    char *err = NULL;
    hp_db_pool *p = open_pool(
        &(struct hp_db_pool_opts){.max_conns = 1, .acquire_timeout_ms = -1});
    hp_db *a = acquire(p);
    double t0 = hp_now();
    CHECK(hp_db_pool_acquire(p, &err) == NULL);
    CHECK(hp_now() - t0 < 0.1);
    free(err);
    hp_db_pool_release(a);
    hp_db_pool_close(p);
}

static void pool_max_lifetime(void)
{
    struct hp_db_pool_stats s;
    hp_db_pool *p = open_pool(&(struct hp_db_pool_opts){.max_lifetime_s = 1});
    hp_db_pool_release(acquire(p));
    usleep(1100000);
    hp_db *db = acquire(p);
    CHECK(db != NULL);
    CHECK(query_int(db, "SELECT 7") == 7);
    hp_db_pool_release(db);
    hp_db_pool_stats(p, &s);
    CHECK(s.connects == 2 && s.discarded == 1 && s.size == 1);
    hp_db_pool_close(p);
}

/* Closed while a connection is out: it is closed when it comes back, and
 * the pool is freed then (ASan would see a leak or a use after free). */
static void pool_close_while_in_use(void)
{
    hp_db_pool *p = open_pool(NULL);
    hp_db *db = acquire(p);
    hp_db_pool_close(p);
    CHECK(query_int(db, "SELECT 3") == 3);
    hp_db_pool_release(db);
}

static void bad_urls(void)
{
    char *err = NULL;
    CHECK(hp_db_pool_open("mysql://x", NULL, &err) == NULL);
    CHECK(err && strstr(err, "unsupported"));
    free(err);
    err = NULL;
    CHECK(hp_db_pool_open("sqlite:", NULL, &err) == NULL);
    CHECK(err != NULL);
    free(err);
    err = NULL;
    CHECK(hp_db_pool_open("postgresql://host/db?nosuchoption=1", NULL, &err) ==
          NULL);
    CHECK(err && strstr(err, "nosuchoption"));
    free(err);
    /* A server that is not there: open succeeds, acquire says why. */
    hp_db_pool *p = hp_db_pool_open(
        "postgresql:///x?host=/nonexistent&connect_timeout=2", NULL, &err);
    CHECK(p != NULL);
    err = NULL;
    CHECK(hp_db_pool_acquire(p, &err) == NULL);
    CHECK(err && strstr(err, "/nonexistent"));
    free(err);
    struct hp_db_pool_stats s;
    hp_db_pool_stats(p, &s);
    CHECK(s.errors == 1 && s.size == 0 && s.in_use == 0);
    hp_db_pool_close(p);
}

static void memory_database_is_one_connection(void)
{
    struct hp_db_pool_stats s;
    hp_db_pool *p = hp_db_pool_open(
        "sqlite::memory:", &(struct hp_db_pool_opts){.max_conns = 4}, NULL);
    hp_db_pool_stats(p, &s);
    CHECK(s.max == 1);
    hp_db *db = acquire(p);
    CHECK(hp_db_exec_script(
              db, "CREATE TABLE m(x); INSERT INTO m VALUES (1)") == HP_OK);
    hp_db_pool_release(db);
    db = acquire(p);
    CHECK(query_int(db, "SELECT count(*) FROM m") == 1);
    hp_db_pool_release(db);
    hp_db_pool_close(p);
}

/* ---- the layers on their own ------------------------------------------- */

/* Every entry of a driver table is filled: the dispatch calls them all
 * without looking. */
static void driver_table_full(const struct hp_db_driver *d)
{
    CHECK(d->name && d->default_conns > 0);
    CHECK(d->match && d->private_conns && d->check_url && d->connect);
    CHECK(d->disconnect && d->alive && d->check && d->in_tx && d->reset &&
          d->begin);
    CHECK(d->commit && d->rollback && d->tx_failed && d->prepare);
    CHECK(d->finalize && d->readonly && d->run && d->script && d->stale);
}

static void driver_tables(void)
{
    const struct hp_db_driver *sq = &hp_db_sqlite_driver,
                              *pg = &hp_db_pg_driver;
    driver_table_full(sq);
    driver_table_full(pg);
    CHECK(pg->run_many && !sq->run_many); /* SQLite: the dispatch loops */
    /* PostgreSQL says how it reads '...' now; SQLite never escapes in it */
    CHECK(pg->backslash_strings && !sq->backslash_strings);
    CHECK(pg->client_mb && !sq->client_mb);
    CHECK(sq->engine == HP_DB_SQLITE && pg->engine == HP_DB_POSTGRESQL);
    /* Each URL goes to exactly one engine, with the right target. */
    CHECK_STR(sq->match("sqlite:/var/a.db"), "/var/a.db");
    CHECK_STR(sq->match("sqlite:///var/a.db"), "/var/a.db");
    CHECK_STR(sq->match("sqlite::memory:"), ":memory:");
    CHECK(pg->match("sqlite:/var/a.db") == NULL);
    const char *u = "postgresql://h/d", *u2 = "postgres://h/d";
    CHECK(pg->match(u) == u && pg->match(u2) == u2);
    CHECK(sq->match(u) == NULL && sq->match(u2) == NULL);
    CHECK(sq->match("mysql://x") == NULL && pg->match("mysql://x") == NULL);
    CHECK(sq->private_conns(":memory:") && !sq->private_conns("/var/a.db"));
    CHECK(!pg->private_conns(u));
}

/* The core alone: a result built as a driver builds one, read as a page
 * reads it, freed with its connection's list. */
static void core_results(void)
{
    hp_db db = {0};
    hp_db_res *r = hp_db__res_new(&db);
    hp_db__res_set_cols(r, 2);
    hp_db__res_set_name(r, 0, "Id");
    hp_db__res_set_name(r, 1, NULL);
    for (int i = 0; i < 3; i++) {
        struct hp_db_cell *c = hp_db__res_add_row(r);
        char num[8];
        int n = snprintf(num, sizeof num, "%d", 10 + i);
        c[0].p = hp_db__res_copy(r, num, (size_t)n);
        c[0].len = (size_t)n;
        c[0].type = HP_DB_INT; /* text only: read by parsing */
        if (i != 1) {
            c[1].p = hp_db__res_copy(r, "x\0y", 3);
            c[1].len = 3;
            c[1].type = HP_DB_BLOB;
        }
    }
    hp_db__res_link(r);
    CHECK(db.results == r);
    CHECK(hp_db_ncols(r) == 2 && hp_db_nrows(r) == 3);
    CHECK(hp_db_col(r, "id") == 0 && hp_db_col(r, "") == 1);
    CHECK(hp_db_text(r, 0) == NULL); /* before the first hp_db_next */
    CHECK(hp_db_next(r) && hp_db_int(r, 0) == 10);
    size_t len = 0;
    const char *b = hp_db_blob(r, 1, &len);
    CHECK(b && len == 3 && memcmp(b, "x\0y", 3) == 0);
    CHECK(hp_db_next(r) && hp_db_is_null(r, 1) && hp_db_float(r, 0) == 11.0);
    CHECK(hp_db_next(r) && !hp_db_next(r) && !hp_db_next(r));
    hp_db_res *r2 = hp_db__res_new(&db);
    hp_db__res_set_cols(r2, 0);
    hp_db__res_link(r2);
    hp_db_res_free(r); /* from the middle of the list */
    CHECK(db.results == r2 && r2->next == NULL && r2->prev == NULL);
    hp_db__res_free_all(&db);
    CHECK(db.results == NULL);
    hp_db__fail(&db, "boom \n", NULL, 7);
    CHECK_STR(hp_db_error(&db), "boom");
    CHECK_STR(hp_db_sqlstate(&db), "HY000");
    CHECK(hp_db_errcode(&db) == 7);
    hp_db__clear_error(&db);
    CHECK(hp_db_error(&db) == NULL && hp_db_errcode(&db) == 0);
}

/* Text cells read as integers the way strtoll (and strtod, for a decimal
 * point or exponent) reads them, booleans as 0 and 1: the plain-digit fast
 * path gives the same value as the general path on every form. */
static void core_text_ints(void)
{
    static const struct {
        const char *text;
        long long v;
    } cases[] = {
        {"0", 0},
        {"7", 7},
        {"-45", -45},
        {"007", 7},
        {"123456789012345678", 123456789012345678LL},
        {"-123456789012345678", -123456789012345678LL},
        {"9223372036854775807", 9223372036854775807LL},
        {"-9223372036854775808", -9223372036854775807LL - 1},
        {"99999999999999999999", 9223372036854775807LL}, /* clamped */
        {"1.5", 1},
        {"-2.9", -2},
        {"1e3", 1000},
        {" 12", 12},
        {"+5", 5},
        {"12x", 12},
        {"-", 0},
        {"", 0},
        {"t", 1},
        {"false", 0},
        /* past the range through strtod: saturated (FRESH13-2) */
        {"1e30", 9223372036854775807LL},
        {"9.3e18", 9223372036854775807LL},
        {"1e19", 9223372036854775807LL},
        {"-1e30", -9223372036854775807LL - 1},
        {"nan", 0},
        {"1e18", 1000000000000000000LL},
    };
    size_t n = sizeof cases / sizeof *cases;
    hp_db db = {0};
    hp_db_res *r = hp_db__res_new(&db);
    hp_db__res_set_cols(r, 1);
    hp_db__res_set_name(r, 0, "v");
    for (size_t i = 0; i < n; i++) {
        struct hp_db_cell *c = hp_db__res_add_row(r);
        size_t len = strlen(cases[i].text);
        c->p = hp_db__res_copy(r, cases[i].text, len);
        c->len = len;
        c->type = HP_DB_INT;
    }
    for (size_t i = 0; i < n; i++) {
        CHECK(hp_db_next(r));
        long long v = hp_db_int(r, 0);
        if (v != cases[i].v)
            fprintf(stderr, "  \"%s\": %lld, not %lld\n", cases[i].text, v,
                    cases[i].v);
        CHECK(v == cases[i].v);
    }
    hp_db_res_free(r);
}

/* The table's transaction entries agree with the engine's own state, which
 * the pool asserts on when a connection goes idle. */
static void driver_tx_state(void)
{
    hp_db_pool *p = open_pool(NULL);
    hp_db *db = acquire(p);
    CHECK(db && !db->drv->in_tx(db));
    CHECK(db->drv->begin(db, true) == 0 && db->drv->in_tx(db));
    CHECK(db->drv->rollback(db) == 0 && !db->drv->in_tx(db));
    CHECK(db->drv->begin(db, false) == 0 && db->drv->in_tx(db));
    CHECK(db->drv->commit(db) == 0 && !db->drv->in_tx(db));
    /* COMMIT with no transaction: SQLite's error, recorded on db;
     * PostgreSQL only warns. */
    int rc = db->drv->commit(db);
    CHECK(E->pg ? rc == 0 : rc < 0 && hp_db_error(db) != NULL);
    hp_db_pool_release(db);
    hp_db_pool_close(p);
}

/* ---- parameters and results -------------------------------------------------
 */

static void make_values_table(hp_db *db)
{
    drop(db, "vals");
    CHECK(hp_db_exec_script(
              db, sqlf("CREATE TABLE %s (id INTEGER PRIMARY KEY, t TEXT, "
                       "i BIGINT, f DOUBLE PRECISION, b %s)",
                       tbl("vals"), E->pg ? "BYTEA" : "BLOB")) == HP_OK);
}

static void text_round_trip(hp_db *db, int id, const char *v)
{
    CHECK(hp_db_exec(
              db, sqlf("INSERT INTO %s (id, t) VALUES ($1, $2)", tbl("vals")),
              sqlf("%d", id), v) == HP_OK);
    hp_db_res *r =
        hp_db_query(db, sqlf("SELECT t FROM %s WHERE id = $1", tbl("vals")),
                    sqlf("%d", id));
    CHECK(r && hp_db_next(r));
    if (v)
        CHECK_STR(hp_db_text(r, 0), v);
    else
        CHECK(hp_db_text(r, 0) == NULL && hp_db_is_null(r, 0));
    hp_db_res_free(r);
}

static void params_text(void)
{
    hp_db_pool *p = open_pool(NULL);
    hp_db *db = acquire(p);
    make_values_table(db);
    text_round_trip(db, 1, "it's \"quoted\" \\ back`tick`");
    text_round_trip(db, 2, "'); DROP TABLE vals; --");
    text_round_trip(db, 3, "$1 $2 ?1 :x @y");
    text_round_trip(db, 4, "");
    text_round_trip(db, 5, NULL);
    text_round_trip(db, 6, "h\xc3\xa9llo w\xc3\xb6rld \xe2\x9c\x93");
    /* NULL and "" are told apart */
    CHECK(query_int(db, sqlf("SELECT count(*) FROM %s WHERE t IS NULL",
                             tbl("vals"))) == 1);
    CHECK(query_int(db, sqlf("SELECT count(*) FROM %s WHERE t = ''",
                             tbl("vals"))) == 1);
    drop(db, "vals");
    hp_db_pool_release(db);
    hp_db_pool_close(p);
}

static void params_typed(void)
{
    unsigned char blob[255];
    for (int i = 0; i < 255; i++)
        blob[i] = (unsigned char)(i + 1); /* every byte but NUL */
    hp_db_pool *p = open_pool(NULL);
    hp_db *db = acquire(p);
    make_values_table(db);
    CHECK(hp_db_execv(
              db,
              sqlf("INSERT INTO %s VALUES ($1, $2, $3, $4, $5)", tbl("vals")),
              HP_INT(1), HP_TEXT("x"), HP_INT(-9007199254740993LL),
              HP_FLOAT(0.1 + 0.2), HP_BLOB(blob, sizeof blob)) == HP_OK);
    CHECK(hp_db_changes(db) == 1);
    CHECK(hp_db_execv(
              db,
              sqlf("INSERT INTO %s VALUES ($1, $2, $3, $4, $5)", tbl("vals")),
              HP_INT(2), HP_NULL, HP_NULL, HP_NULL, HP_BLOB("", 0)) == HP_OK);

    hp_db_res *r = hp_db_query(db, sqlf("SELECT id, t, i, f, b FROM %s "
                                        "ORDER BY id",
                                        tbl("vals")));
    CHECK(r && hp_db_nrows(r) == 2 && hp_db_ncols(r) == 5);
    CHECK(hp_db_next(r));
    CHECK(hp_db_int(r, 2) == -9007199254740993LL);
    CHECK_STR(hp_db_text(r, 2), "-9007199254740993");
    CHECK(hp_db_coltype(r, 2) == HP_DB_INT);
    CHECK(hp_db_float(r, 3) == 0.1 + 0.2);
    CHECK(hp_db_coltype(r, 3) == HP_DB_FLOAT);
    size_t len = 0;
    const void *b = hp_db_blob(r, 4, &len);
    CHECK(len == sizeof blob && b && memcmp(b, blob, len) == 0);
    CHECK(hp_db_coltype(r, 4) == HP_DB_BLOB);
    CHECK(hp_db_next(r));
    CHECK(hp_db_is_null(r, 1) && hp_db_is_null(r, 2) && hp_db_is_null(r, 3));
    CHECK(hp_db_int(r, 2) == 0 && hp_db_coltype(r, 2) == HP_DB_NULL);
    b = hp_db_blob(r, 4, &len);
    CHECK(b != NULL && len == 0 && !hp_db_is_null(r, 4)); /* empty, not NULL */
    CHECK(!hp_db_next(r));
    CHECK(!hp_db_next(r));
    CHECK(hp_db_text(r, 0) == NULL); /* past the end */
    hp_db_res_free(r);
    drop(db, "vals");
    hp_db_pool_release(db);
    hp_db_pool_close(p);
}

/* Integers at their extremes go and come back whole (PostgreSQL: sent as
 * text, db_pg.c's format_int). */
static void params_int_extremes(void)
{
    hp_db_pool *p = open_pool(NULL);
    hp_db *db = acquire(p);
    hp_db_res *r = hp_db_queryv(
        db,
        "SELECT CAST($1 AS BIGINT), CAST($2 AS BIGINT), CAST($3 AS BIGINT), "
        "CAST($4 AS BIGINT), CAST($5 AS BIGINT)",
        HP_INT(LLONG_MIN), HP_INT(LLONG_MAX), HP_INT(0), HP_INT(-1),
        HP_INT(1000000007));
    CHECK(r && hp_db_next(r));
    CHECK(hp_db_int(r, 0) == LLONG_MIN && hp_db_int(r, 1) == LLONG_MAX);
    CHECK(hp_db_int(r, 2) == 0 && hp_db_int(r, 3) == -1);
    CHECK_STR(hp_db_text(r, 4), "1000000007");
    hp_db_res_free(r);
    hp_db_pool_release(db);
    hp_db_pool_close(p);
}

static void params_repeated_and_counted(void)
{
    hp_db_pool *p = open_pool(NULL);
    hp_db *db = acquire(p);
    hp_db_res *r = hp_db_query(db, "SELECT $1 || $1 || $2", "ab", "c");
    CHECK(r && hp_db_next(r));
    CHECK_STR(hp_db_text(r, 0), "ababc");
    /* too few, too many: an error, not undefined behaviour */
    CHECK(hp_db_query(db, "SELECT $1 || $2", "a") == NULL);
    CHECK(hp_db_error(db) != NULL);
    CHECK(hp_db_query(db, "SELECT $1", "a", "b") == NULL);
    if (!E->pg) {
        CHECK(hp_db_query(db, "SELECT ?") == NULL);
        CHECK(strstr(hp_db_error(db), "$1"));
        CHECK(hp_db_query(db, "SELECT :name") == NULL);
    }
    /* a success clears the error */
    CHECK(query_int(db, "SELECT 1") == 1 && hp_db_error(db) == NULL);
    hp_db_pool_release(db);
    hp_db_pool_close(p);
}

static void results_by_name(void)
{
    hp_db_pool *p = open_pool(NULL);
    hp_db *db = acquire(p);
    hp_db_res *r = hp_db_query(db, "SELECT 1 AS one, 'two' AS two, NULL AS "
                                   "three WHERE 1 = 1");
    CHECK(r && hp_db_ncols(r) == 3);
    CHECK_STR(hp_db_colname(r, 1), "two");
    CHECK(hp_db_col(r, "three") == 2 && hp_db_col(r, "nope") == -1);
    CHECK(hp_db_text(r, 0) == NULL); /* before hp_db_next */
    CHECK(hp_db_next(r));
    CHECK(hp_db_int(r, hp_db_col(r, "one")) == 1);
    CHECK_STR(hp_db_text(r, hp_db_col(r, "two")), "two");
    CHECK(hp_db_is_null(r, hp_db_col(r, "three")));
    CHECK(hp_db_text(r, 9) == NULL && hp_db_text(r, -1) == NULL);
    /* no rows still has columns */
    hp_db_res *e = hp_db_query(db, "SELECT 1 AS x WHERE 1 = 0");
    CHECK(e && hp_db_nrows(e) == 0 && hp_db_ncols(e) == 1 && !hp_db_next(e));
    /* results left open are freed with the connection (ASan checks) */
    hp_db_pool_release(db);
    hp_db_pool_close(p);
}

static void errors_and_sqlstates(void)
{
    hp_db_pool *p = open_pool(NULL);
    hp_db *db = acquire(p);
    drop(db, "u");
    CHECK(hp_db_exec_script(db, sqlf("CREATE TABLE %s (k TEXT PRIMARY KEY, "
                                     "n INTEGER NOT NULL)",
                                     tbl("u"))) == HP_OK);
    const char *ins = sqlf("INSERT INTO %s VALUES ($1, $2)", tbl("u"));
    CHECK(hp_db_exec(db, ins, "a", "1") == HP_OK);
    CHECK(hp_db_exec(db, ins, "a", "2") == -1);
    CHECK_STR(hp_db_sqlstate(db), "23505");
    CHECK(hp_db_error(db) && *hp_db_error(db));
    /* SQLite's extended code: SQLITE_CONSTRAINT_PRIMARYKEY */
    CHECK(E->pg ? hp_db_errcode(db) == 0 : hp_db_errcode(db) == 1555);
    CHECK(hp_db_exec(db, ins, "b", NULL) == -1);
    CHECK_STR(hp_db_sqlstate(db), "23502");
    CHECK(hp_db_exec(db, "SELEC 1") == -1);
    CHECK_STR(hp_db_sqlstate(db), "42601");
    CHECK(hp_db_exec(db, "SELECT * FROM no_such_table_xyz") == -1);
    CHECK_STR(hp_db_sqlstate(db), "42P01");
    CHECK(hp_db_exec(db, "SELECT 1; SELECT 2") == -1);
    drop(db, "u");
    hp_db_pool_release(db);
    hp_db_pool_close(p);
    /* every call is safe on NULL (hp_db(req) may have returned NULL) */
    CHECK(hp_db_exec(NULL, "SELECT 1") == -1);
    CHECK(hp_db_query(NULL, "SELECT $1", "x") == NULL);
    CHECK(!hp_db_next(NULL) && hp_db_text(NULL, 0) == NULL);
    CHECK(hp_db_error(NULL) != NULL);
    hp_db_res_free(NULL);
    hp_db_pool_release(NULL);
}

/* ---- the statement cache ----------------------------------------------------
 */

static void stmt_cache_reuse(void)
{
    struct hp_db_pool_stats s;
    hp_db_pool *p = open_pool(&(struct hp_db_pool_opts){.stmt_cache = 2});
    hp_db *db = acquire(p);
    for (int i = 0; i < 10; i++)
        CHECK(query_int(db, "SELECT 41 + 1") == 42);
    hp_db_pool_stats(p, &s);
    CHECK(s.prepares == 1 && s.cache_hits == 9);
    /* two more statements: the least recently used one is evicted */
    CHECK(query_int(db, "SELECT 2") == 2);
    CHECK(query_int(db, "SELECT 3") == 3);
    CHECK(query_int(db, "SELECT 2") == 2);       /* still cached */
    CHECK(query_int(db, "SELECT 41 + 1") == 42); /* prepared again */
    hp_db_pool_stats(p, &s);
    CHECK(s.prepares == 4 && s.cache_hits == 10);
    /* the cache belongs to the connection: it survives a release */
    hp_db_pool_release(db);
    db = acquire(p);
    CHECK(query_int(db, "SELECT 41 + 1") == 42);
    hp_db_pool_stats(p, &s);
    CHECK(s.prepares == 4 && s.cache_hits == 11);
    hp_db_pool_release(db);
    hp_db_pool_close(p);
}

static void stmt_cache_off(void)
{
    struct hp_db_pool_stats s;
    hp_db_pool *p = open_pool(&(struct hp_db_pool_opts){.stmt_cache = -1});
    hp_db *db = acquire(p);
    for (int i = 0; i < 3; i++)
        CHECK(query_int(db, "SELECT 5") == 5);
    hp_db_pool_stats(p, &s);
    CHECK(s.prepares == 3 && s.cache_hits == 0);
    hp_db_pool_release(db);
    hp_db_pool_close(p);
}

/* A statement cached before a schema change keeps working after it. */
static void stmt_cache_schema_change(void)
{
    hp_db_pool *p = open_pool(NULL);
    hp_db *db = acquire(p);
    drop(db, "sc");
    hp_db_exec_script(db, sqlf("CREATE TABLE %s (a INTEGER)", tbl("sc")));
    hp_db_exec_script(db, sqlf("INSERT INTO %s VALUES (1)", tbl("sc")));
    const char *sel = sqlf("SELECT * FROM %s", tbl("sc"));
    hp_db_res *r = hp_db_query(db, sel);
    CHECK(r && hp_db_ncols(r) == 1);
    hp_db_exec_script(db,
                      sqlf("ALTER TABLE %s ADD COLUMN b INTEGER", tbl("sc")));
    r = hp_db_query(db, sel);
    if (!r) /* PostgreSQL: 0A000 once, and the statement is dropped */
        r = hp_db_query(db, sel);
    CHECK(r && hp_db_ncols(r) == 2);
    drop(db, "sc");
    hp_db_pool_release(db);
    hp_db_pool_close(p);
}

/* ---- transactions and the checkout health check -----------------------------
 */

static void rollback_on_checkout(void)
{
    hp_db_pool *p = open_pool(&(struct hp_db_pool_opts){.max_conns = 1});
    hp_db *db = acquire(p);
    drop(db, "rb");
    hp_db_exec_script(db, sqlf("CREATE TABLE %s (a INTEGER)", tbl("rb")));
    CHECK(hp_db_exec_script(db, "BEGIN") == HP_OK);
    CHECK(hp_db_exec(db, sqlf("INSERT INTO %s VALUES (1)", tbl("rb"))) ==
          HP_OK);
    /* on PostgreSQL this aborts the transaction */
    CHECK(hp_db_exec(db, "SELECT * FROM no_such_table_xyz") == -1);
    hp_db__release_raw(db); /* as if release had not cleaned up */

    hp_db *again = acquire(p);
    CHECK(again == db); /* the same connection, cleaned */
    CHECK(query_int(again, sqlf("SELECT count(*) FROM %s", tbl("rb"))) == 0);
    CHECK(hp_db_exec_script(again, "BEGIN") == HP_OK); /* not nested */
    CHECK(hp_db_exec_script(again, "COMMIT") == HP_OK);
    drop(again, "rb");
    hp_db_pool_release(again);
    hp_db_pool_close(p);
}

static void release_rolls_back(void)
{
    hp_db_pool *p = open_pool(&(struct hp_db_pool_opts){.max_conns = 1});
    hp_db *db = acquire(p);
    drop(db, "rr");
    hp_db_exec_script(db, sqlf("CREATE TABLE %s (a INTEGER)", tbl("rr")));
    hp_db_exec_script(db, "BEGIN");
    hp_db_exec(db, sqlf("INSERT INTO %s VALUES (1)", tbl("rr")));
    hp_db_pool_release(db);
    db = acquire(p);
    CHECK(query_int(db, sqlf("SELECT count(*) FROM %s", tbl("rr"))) == 0);
    drop(db, "rr");
    hp_db_pool_release(db);
    hp_db_pool_close(p);
}

/* PostgreSQL: a connection the server killed while it sat idle is noticed
 * at checkout (no failed statement) and replaced. */
static void pg_dead_connection_replaced(void)
{
    struct hp_db_pool_stats s;
    hp_db_pool *p = open_pool(&(struct hp_db_pool_opts){.max_conns = 2});
    hp_db *victim = acquire(p);
    long long pid = query_int(victim, "SELECT pg_backend_pid()");
    hp_db_pool_release(victim);
    hp_db_pool *killer_pool = open_pool(NULL);
    hp_db *killer = acquire(killer_pool);
    CHECK(query_int(killer,
                    sqlf("SELECT pg_terminate_backend(%lld)::int", pid)) == 1);
    hp_db_pool_release(killer);
    hp_db_pool_close(killer_pool);
    usleep(200000);

    hp_db *db = acquire(p);
    CHECK(db != NULL);
    CHECK(query_int(db, "SELECT pg_backend_pid()") != pid);
    hp_db_pool_stats(p, &s);
    CHECK(s.discarded == 1 && s.connects == 2 && s.errors == 0);
    hp_db_pool_release(db);
    hp_db_pool_close(p);
}

/* ---- SQLite: the file under the pool ---------------------------------------
 */

static int rm_tree_entry(const char *path, const struct stat *sb, int flag,
                         struct FTW *f)
{
    return remove(path);
}

static void rm_tree(const char *dir)
{
    nftw(dir, rm_tree_entry, 8, FTW_DEPTH | FTW_PHYS);
}

/* A pool on <tmpdir>/<sub>/f.db; mkdir: like the default database. The
 * target is checked at every checkout. */
static hp_db_pool *sqlite_pool_in(const char *sub, bool mkdir, char *dir,
                                  size_t dlen)
{
    char url[PATH_MAX + 64];
    snprintf(dir, dlen, "%s/%s", tmpdir, sub);
    snprintf(url, sizeof url, "sqlite:%s/f.db", dir);
    if (mkdir)
        rm_tree(dir);
    else
        hp_mkdirs(dir, 0700);
    hp_db_pool *p =
        hp_db_pool_open(url, &(struct hp_db_pool_opts){.max_conns = 2}, NULL);
    if (p) {
        p->mkdir_parent = mkdir;
        p->check_ms = 0;
    }
    return p;
}

/* The directory deleted under an idle connection: the next checkout opens
 * a new file (and directory) instead of writing into the deleted one; a
 * file renamed over the path is a replaced file, also reopened. */
static void sqlite_deleted_file_reopened(void)
{
    char dir[PATH_MAX], path[PATH_MAX + 8], other[PATH_MAX + 16];
    struct hp_db_pool_stats s;
    hp_db_pool *p = sqlite_pool_in("gone", true, dir, sizeof dir);
    CHECK(p != NULL);
    if (!p)
        return;
    snprintf(path, sizeof path, "%s/f.db", dir);
    hp_db *a = acquire(p), *b = acquire(p); /* two on the first file */
    CHECK(a && b);
    CHECK(hp_db_exec_script(a, "CREATE TABLE t (v INT); INSERT INTO t "
                               "VALUES (1)") == HP_OK);
    hp_db_pool_release(a);
    hp_db_pool_release(b);

    rm_tree(dir);
    hp_db *c = acquire(p);
    CHECK(c != NULL);
    /* a new, empty file at the path: not the deleted one with table t */
    CHECK(c && query_int(c, "SELECT count(*) FROM sqlite_master") == 0);
    CHECK(access(path, F_OK) == 0);
    CHECK(c && hp_db_exec_script(c, "CREATE TABLE u (v INT)") == HP_OK);
    hp_db_pool_release(c);
    hp_db_pool_stats(p, &s);
    /* both stale connections were dropped (the second quietly), and the
     * pool said it once: one loss, one generation */
    CHECK(s.discarded == 2 && s.connects == 3 && atomic_load(&p->gen) == 1 &&
          !p->lost);

    /* replaced: another file renamed over the path */
    snprintf(other, sizeof other, "%s/other.db", dir);
    FILE *f = fopen(other, "w");
    CHECK(f != NULL);
    if (f)
        fclose(f);
    CHECK(rename(other, path) == 0);
    hp_db *d = acquire(p);
    CHECK(d && query_int(d, "SELECT count(*) FROM sqlite_master") == 0);
    hp_db_pool_release(d);
    hp_db_pool_stats(p, &s);
    CHECK(s.discarded == 3 && atomic_load(&p->gen) == 2);
    hp_db_pool_close(p);
}

/* No directory to create the file in (a named database): the checkout
 * fails, and its message says the database was lost. */
static void sqlite_deleted_dir_not_recreated(void)
{
    char dir[PATH_MAX], *err = NULL;
    hp_db_pool *p = sqlite_pool_in("named", false, dir, sizeof dir);
    CHECK(p != NULL);
    if (!p)
        return;
    hp_db *a = acquire(p);
    CHECK(a != NULL);
    hp_db_pool_release(a);
    rm_tree(dir);
    hp_db *b = hp_db_pool_acquire(p, &err);
    CHECK(b == NULL);
    CHECK(err && strstr(err, "lost and cannot be opened anew"));
    CHECK(err && strstr(err, "unable to open database file"));
    free(err);
    hp_mkdirs(dir, 0700); /* back: the next checkout works */
    b = acquire(p);
    CHECK(b && query_int(b, "SELECT 1") == 1);
    hp_db_pool_release(b);
    hp_db_pool_close(p);
}

/* The check runs at most every check_ms per connection: right after the
 * deletion the connection is still handed out, once check_ms has passed it
 * is replaced. */
static void sqlite_check_interval(void)
{
    char dir[PATH_MAX];
    struct hp_db_pool_stats s;
    hp_db_pool *p = sqlite_pool_in("every", true, dir, sizeof dir);
    CHECK(p != NULL);
    if (!p)
        return;
    p->check_ms = 300;
    hp_db *a = acquire(p);
    CHECK(a && hp_db_exec_script(a, "CREATE TABLE t (v INT)") == HP_OK);
    hp_db_pool_release(a);
    rm_tree(dir);
    hp_db *b = acquire(p);
    CHECK(b == a); /* within check_ms: not looked at */
    hp_db_pool_release(b);
    usleep(350 * 1000);
    hp_db *c = acquire(p);
    CHECK(c && query_int(c, "SELECT count(*) FROM sqlite_master") == 0);
    hp_db_pool_release(c);
    hp_db_pool_stats(p, &s);
    CHECK(s.discarded == 1 && s.connects == 2);
    hp_db_pool_close(p);
}

static double ns_per(double t0, int n)
{
    return (hp_now() - t0) * 1e9 / n;
}

static double checkout_cycle_ns(hp_db_pool *p, int n)
{
    double t0 = hp_now();
    for (int i = 0; i < n; i++)
        hp_db_pool_release(hp_db_pool_acquire(p, NULL));
    return ns_per(t0, n);
}

/* What the identity check costs a checkout (printed, not asserted: the
 * machine decides): a checkout + release checking every time, checking
 * every 100 ms (the default), and one stat(2) of the path. */
static void sqlite_check_cost(void)
{
    enum { N = 100000 };
    char dir[PATH_MAX], path[PATH_MAX + 8];
    struct stat st;
    hp_db_pool *p = sqlite_pool_in("cost", false, dir, sizeof dir);
    CHECK(p != NULL);
    if (!p)
        return;
    snprintf(path, sizeof path, "%s/f.db", dir);
    hp_db_pool_release(acquire(p));
    double every = checkout_cycle_ns(p, N);
    p->check_ms = 100;
    double dflt = checkout_cycle_ns(p, N);
    double t0 = hp_now();
    for (int i = 0; i < N; i++)
        CHECK(stat(path, &st) == 0);
    printf("     checkout+release: %.0f ns checking each time, %.0f ns "
           "every 100 ms; stat(2) %.0f ns\n",
           every, dflt, ns_per(t0, N));
    hp_db_pool_close(p);
}

/* Several connections opening one new file at once (as the workers do at
 * start): every open succeeds, none says "database is locked". */
struct opener {
    const char *url;
    pthread_barrier_t *go;
    char *err;
};

static void *open_worker(void *arg)
{
    struct opener *o = arg;
    hp_db_pool *p = hp_db_pool_open(o->url, NULL, &o->err);
    pthread_barrier_wait(o->go);
    hp_db *db = p ? hp_db_pool_acquire(p, &o->err) : NULL;
    hp_db_pool_release(db);
    hp_db_pool_close(p);
    return NULL;
}

static void sqlite_concurrent_first_open(void)
{
    enum { THREADS = 8, ROUNDS = 20 };
    char url[PATH_MAX + 64];
    int failures = 0;
    for (int r = 0; r < ROUNDS; r++) {
        pthread_t th[THREADS];
        struct opener o[THREADS];
        pthread_barrier_t go;
        snprintf(url, sizeof url, "sqlite:%s/first%d.db", tmpdir, r);
        pthread_barrier_init(&go, NULL, THREADS);
        for (int i = 0; i < THREADS; i++) {
            o[i] = (struct opener){.url = url, .go = &go};
            pthread_create(&th[i], NULL, open_worker, &o[i]);
        }
        for (int i = 0; i < THREADS; i++) {
            pthread_join(th[i], NULL);
            if (o[i].err) {
                if (failures++ == 0)
                    fprintf(stderr, "  open: %s\n", o[i].err);
                free(o[i].err);
            }
        }
        pthread_barrier_destroy(&go);
    }
    CHECK(failures == 0);
}

/* ---- concurrency ----------------------------------------------------------
 */

struct worker {
    hp_db_pool *p;
    const char *sql; /* the helpers' static buffers are not for threads */
    int id, ok;
};

static void *insert_worker(void *arg)
{
    struct worker *w = arg;
    for (int i = 0; i < 25; i++) {
        hp_db *db = hp_db_pool_acquire(w->p, NULL);
        if (!db)
            continue;
        if (hp_db_exec_script(db, "BEGIN") == HP_OK &&
            hp_db_execv(db, w->sql, HP_INT(w->id * 1000 + i)) == HP_OK &&
            hp_db_exec_script(db, "COMMIT") == HP_OK)
            w->ok++;
        hp_db_pool_release(db);
    }
    return NULL;
}

static void concurrent_inserts(void)
{
    enum { N = 8 };
    struct hp_db_pool_stats s;
    hp_db_pool *p = open_pool(&(struct hp_db_pool_opts){.max_conns = 3});
    hp_db *db = acquire(p);
    drop(db, "conc");
    hp_db_exec_script(db,
                      sqlf("CREATE TABLE %s (v INTEGER UNIQUE)", tbl("conc")));
    hp_db_pool_release(db);

    pthread_t th[N];
    struct worker w[N];
    char ins[128];
    snprintf(ins, sizeof ins, "INSERT INTO %s VALUES ($1)", tbl("conc"));
    for (int i = 0; i < N; i++) {
        w[i] = (struct worker){.p = p, .sql = ins, .id = i};
        pthread_create(&th[i], NULL, insert_worker, &w[i]);
    }
    int ok = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        ok += w[i].ok;
    }
    CHECK(ok == N * 25);
    db = acquire(p);
    CHECK(query_int(db, sqlf("SELECT count(DISTINCT v) FROM %s",
                             tbl("conc"))) == N * 25);
    drop(db, "conc");
    hp_db_pool_release(db);
    hp_db_pool_stats(p, &s);
    CHECK(s.in_use == 0 && s.size <= 3 && s.waiters == 0);
    hp_db_pool_close(p);
}

/* ---- the request's transaction ----------------------------------------------
 */

/* The lifecycle's resource calls, in publish.c's order. */
static int fake_commit(hp_req *req)
{
    for (struct hp_resource *r = req->resources; r; r = r->next)
        if (r->commit && r->commit(r->arg) != HP_OK)
            return 500;
    return HP_OK;
}

static void fake_rollback(hp_req *req)
{
    for (struct hp_resource *r = req->resources; r; r = r->next)
        if (r->rollback)
            r->rollback(r->arg);
}

static void fake_request(hp_req *req, const char *method)
{
    hp_req_init(req, NULL, method, "/t", "HTTP/1.1");
    snprintf(req->target.path, sizeof req->target.path, "/srv/t.c");
}

static long long count_rows(hp_db_pool *p, const char *name)
{
    hp_db *db = acquire(p);
    long long n = query_int(db, sqlf("SELECT count(*) FROM %s", tbl(name)));
    hp_db_pool_release(db);
    return n;
}

static void request_commit_and_rollback(void)
{
    hp_req req;
    struct hp_db_pool_stats s;
    hp_db_pool *p = open_pool(NULL);
    hp_db *setup = acquire(p);
    drop(setup, "req");
    hp_db_exec_script(setup, sqlf("CREATE TABLE %s (a INTEGER)", tbl("req")));
    hp_db_pool_release(setup);
    const char *ins = sqlf("INSERT INTO %s VALUES (1)", tbl("req"));

    /* success: the vote, then the real COMMIT at release */
    fake_request(&req, "POST");
    hp_db *db = hp_db_from(&req, p);
    CHECK(db && hp_db_from(&req, p) == db); /* same handle all request */
    CHECK(hp_db_exec(db, ins) == HP_OK);
    CHECK(fake_commit(&req) == HP_OK);
    hp_req_release_resources(&req);
    hp_req_cleanup(&req);
    CHECK(count_rows(p, "req") == 1);

    /* a later hook failed after the vote: rolled back */
    fake_request(&req, "POST");
    CHECK(hp_db_exec(hp_db_from(&req, p), ins) == HP_OK);
    CHECK(fake_commit(&req) == HP_OK);
    fake_rollback(&req);
    hp_req_release_resources(&req);
    hp_req_cleanup(&req);
    CHECK(count_rows(p, "req") == 1);

    /* a failed statement: the vote is no, whatever the handler said */
    fake_request(&req, "GET");
    db = hp_db_from(&req, p);
    CHECK(hp_db_exec(db, ins) == HP_OK);
    CHECK(hp_db_exec(db, "SELECT * FROM no_such_table_xyz") == -1);
    CHECK(fake_commit(&req) == 500);
    hp_req_release_resources(&req);
    hp_req_cleanup(&req);
    CHECK(count_rows(p, "req") == 1);

    /* ... unless a savepoint undid the failure */
    fake_request(&req, "POST");
    db = hp_db_from(&req, p);
    CHECK(hp_db_exec(db, ins) == HP_OK);
    CHECK(hp_db_exec(db, "SAVEPOINT s1") == HP_OK);
    CHECK(hp_db_exec(db, "SELECT * FROM no_such_table_xyz") == -1);
    CHECK(hp_db_exec(db, "ROLLBACK TO SAVEPOINT s1") == HP_OK);
    CHECK(fake_commit(&req) == HP_OK);
    hp_req_release_resources(&req);
    hp_req_cleanup(&req);
    CHECK(count_rows(p, "req") == 2);

    hp_db_pool_stats(p, &s);
    CHECK(s.in_use == 0);
    setup = acquire(p);
    drop(setup, "req");
    hp_db_pool_release(setup);
    hp_db_pool_close(p);
}

/* ---- the request's transaction: round trips ---------------------------------
 */

/* A request's end as publish.c runs it: the vote, the rollback when it said
 * no, the release (the real COMMIT). The status the client would get. */
static int end_request(hp_req *req)
{
    int rc = fake_commit(req);
    if (rc != HP_OK)
        fake_rollback(req);
    hp_req_release_resources(req);
    int status = rc != HP_OK ? rc : req->status;
    hp_req_cleanup(req);
    return status;
}

/* hp_db_autocommit: each statement of the request's handle stands alone,
 * committed as it ends; the request's rollback undoes none of it; a
 * failure neither refuses the next statement nor turns the vote into a
 * 500; BEGIN stays refused; after a statement it is too late (25001) and
 * the transaction goes on. On PostgreSQL a GET's read in autocommit sends
 * no read guard (none is prepared on the connection), where the same read
 * in the request's transaction does. */
static void request_autocommit(void)
{
    hp_req req;
    hp_db_pool *p = open_pool(&(struct hp_db_pool_opts){.max_conns = 2});
    hp_db *db = acquire(p);
    const char *t = tbl("ac");
    drop(db, "ac");
    hp_db_exec_script(db, sqlf("CREATE TABLE %s (a INTEGER)", t));
    hp_db_pool_release(db);
    char ins[128];
    snprintf(ins, sizeof ins, "INSERT INTO %s VALUES (1)", t);

    CHECK(hp_db_autocommit(NULL) == -1);
    db = acquire(p); /* a pool handle is in autocommit already */
    CHECK(hp_db_autocommit(db) == HP_OK);
    hp_db_pool_release(db);

    if (E->pg) {
        const char *guards = "SELECT count(*) FROM pg_prepared_statements"
                             " WHERE name = 'hp_read_guard'";
        hp_db_pool *one = open_pool(&(struct hp_db_pool_opts){.max_conns = 1});
        fake_request(&req, "GET");
        db = hp_db_from(&req, one);
        CHECK(db && hp_db_autocommit(db) == HP_OK);
        CHECK(query_int(db, sqlf("SELECT count(*) FROM %s", t)) == 0);
        CHECK(query_int(db, guards) == 0);
        CHECK(end_request(&req) == 200);
        fake_request(&req, "GET"); /* the same connection, transactional */
        db = hp_db_from(&req, one);
        CHECK(query_int(db, sqlf("SELECT count(*) FROM %s", t)) == 0);
        CHECK(query_int(db, guards) == 1);
        CHECK(end_request(&req) == 200);
        hp_db_pool_close(one);
    }

    /* written, then the request rolls back: the row stays, and another
     * connection saw it before the request ended */
    fake_request(&req, "POST");
    db = hp_db_from(&req, p);
    CHECK(db && hp_db_autocommit(db) == HP_OK);
    CHECK(hp_db_autocommit(db) == HP_OK); /* twice is once */
    CHECK(hp_db_exec(db, ins) == HP_OK);
    CHECK(count_rows(p, "ac") == 1);
    CHECK(fake_commit(&req) == HP_OK);
    fake_rollback(&req); /* a later hook said no */
    hp_req_release_resources(&req);
    hp_req_cleanup(&req);
    CHECK(count_rows(p, "ac") == 1);

    /* a failed statement: the next one runs, the vote is yes */
    fake_request(&req, "GET");
    db = hp_db_from(&req, p);
    CHECK(hp_db_autocommit(db) == HP_OK);
    CHECK(hp_db_exec(db, "SELECT * FROM no_such_table_xyz") == -1);
    CHECK_STR(hp_db_sqlstate(db), "42P01");
    CHECK(hp_db_exec(db, ins) == HP_OK);
    CHECK(end_request(&req) == 200);
    CHECK(count_rows(p, "ac") == 2);

    /* BEGIN and COMMIT stay refused; the statement after them runs */
    fake_request(&req, "POST");
    db = hp_db_from(&req, p);
    CHECK(hp_db_autocommit(db) == HP_OK);
    CHECK(hp_db_exec(db, "BEGIN") == -1);
    CHECK_STR(hp_db_sqlstate(db), "25001");
    CHECK(hp_db_exec(db, "COMMIT") == -1);
    CHECK(hp_db_exec(db, ins) == HP_OK);
    CHECK(end_request(&req) == 200);
    CHECK(count_rows(p, "ac") == 3);

    /* no savepoint either: on SQLite it would open a transaction that
     * nothing commits, and the write after it would be lost (FRESH14-1) */
    fake_request(&req, "POST");
    db = hp_db_from(&req, p);
    CHECK(hp_db_autocommit(db) == HP_OK);
    CHECK(hp_db_exec(db, "SAVEPOINT s1") == -1);
    CHECK_STR(hp_db_sqlstate(db), "25001");
    CHECK(hp_db_exec_script(db, "SELECT 1; SAVEPOINT s1") == -1);
    CHECK(hp_db_exec(db, "RELEASE s1") == -1);
    CHECK(hp_db_exec(db, "ROLLBACK TO s1") == -1);
    CHECK(hp_db_exec(db, ins) == HP_OK);
    CHECK(end_request(&req) == 200);
    CHECK(count_rows(p, "ac") == 4);

    /* a pool handle inside its own BEGIN is not in autocommit */
    db = acquire(p);
    CHECK(hp_db_exec(db, "BEGIN") == HP_OK);
    CHECK(hp_db_autocommit(db) == -1);
    CHECK_STR(hp_db_sqlstate(db), "25001");
    CHECK(hp_db_exec(db, "ROLLBACK") == HP_OK);
    CHECK(hp_db_autocommit(db) == HP_OK);
    hp_db_pool_release(db);

    /* too late after a statement: the transaction goes on, and rolls back
     * with the request */
    fake_request(&req, "POST");
    db = hp_db_from(&req, p);
    CHECK(hp_db_exec(db, ins) == HP_OK);
    CHECK(hp_db_autocommit(db) == -1);
    CHECK_STR(hp_db_sqlstate(db), "25001");
    CHECK(hp_db_exec(db, ins) == HP_OK);
    CHECK(count_rows(p, "ac") == 4); /* not committed yet */
    fake_rollback(&req);
    hp_req_release_resources(&req);
    hp_req_cleanup(&req);
    CHECK(count_rows(p, "ac") == 4);

    /* in a rollback hook, after the request's transaction rolled back: the
     * handle commits statement by statement, hp_db_autocommit says so
     * (FRESH15-3), and a savepoint is refused there too: on SQLite it
     * opened a transaction that the release rolled back (FRESH15-2) */
    fake_request(&req, "POST");
    db = hp_db_from(&req, p);
    CHECK(hp_db_exec(db, ins) == HP_OK);
    fake_rollback(&req);
    CHECK(hp_db_exec(db, "SAVEPOINT a") == -1);
    CHECK_STR(hp_db_sqlstate(db), "25001");
    CHECK(hp_db_autocommit(db) == HP_OK);
    CHECK(hp_db_exec(db, ins) == HP_OK); /* an audit row */
    hp_req_release_resources(&req);
    hp_req_cleanup(&req);
    CHECK(count_rows(p, "ac") == 5);

    struct hp_db_pool_stats st;
    hp_db_pool_stats(p, &st);
    CHECK(st.in_use == 0);
    db = acquire(p);
    drop(db, "ac");
    hp_db_pool_release(db);
    hp_db_pool_close(p);
}

/* The first statement carries BEGIN (PostgreSQL: in the same pipelined
 * round trip). Whatever fails in it, the transaction was begun, rolls back,
 * and the pool's only connection serves the next request normally. */
static void request_first_statement_fails(void)
{
    hp_req req;
    hp_db_pool *p = open_pool(&(struct hp_db_pool_opts){.max_conns = 1});
    hp_db *db = acquire(p);
    const char *t = tbl("first");
    drop(db, "first");
    hp_db_exec_script(db, sqlf("CREATE TABLE %s (a INTEGER NOT NULL)", t));
    hp_db_pool_release(db);
    char ins[128];
    snprintf(ins, sizeof ins, "INSERT INTO %s VALUES ($1)", t);

    /* a first statement that fails before it runs (no such table): the
     * request ran a failed statement, 500 */
    fake_request(&req, "GET");
    db = hp_db_from(&req, p);
    CHECK(hp_db_query(db, "SELECT * FROM no_such_table_xyz") == NULL);
    CHECK_STR(hp_db_sqlstate(db), "42P01");
    CHECK(end_request(&req) == 500);

    /* PostgreSQL: one that fails as it runs, in BEGIN's pipeline: the
     * transaction was open (the next statement is refused: 25P02, it is
     * not autocommit), 500 */
    if (E->pg) {
        fake_request(&req, "GET");
        db = hp_db_from(&req, p);
        CHECK(hp_db_queryv(db, "SELECT 1 / $1", HP_INT(0)) == NULL);
        CHECK_STR(hp_db_sqlstate(db), "22012");
        CHECK(hp_db_exec(db, "SELECT 1") == -1);
        CHECK_STR(hp_db_sqlstate(db), "25P02");
        CHECK(end_request(&req) == 500);
    }

    /* a first statement that writes and fails (NOT NULL), then one that
     * writes and a later failure: nothing is committed */
    fake_request(&req, "GET");
    CHECK(hp_db_execv(hp_db_from(&req, p), ins, HP_NULL) == -1);
    CHECK(end_request(&req) == 500);
    fake_request(&req, "POST");
    db = hp_db_from(&req, p);
    CHECK(hp_db_execv(db, ins, HP_INT(1)) == HP_OK);
    CHECK(hp_db_execv(db, ins, HP_NULL) == -1);
    CHECK_STR(hp_db_sqlstate(db), "23502");
    CHECK(end_request(&req) == 500);
    CHECK(count_rows(p, "first") == 0);

    /* a script as the first statement: begun with it, so a failing hook
     * after the vote still rolls it back; a failing script rolls back */
    fake_request(&req, "POST");
    db = hp_db_from(&req, p);
    CHECK(hp_db_exec_script(db, sqlf("INSERT INTO %s VALUES (5)", t)) == HP_OK);
    CHECK(fake_commit(&req) == HP_OK);
    fake_rollback(&req);
    hp_req_release_resources(&req);
    hp_req_cleanup(&req);
    fake_request(&req, "POST");
    CHECK(hp_db_exec_script(hp_db_from(&req, p),
                            sqlf("INSERT INTO %s VALUES (6); INSERT INTO %s "
                                 "VALUES (NULL)",
                                 t, t)) == -1);
    CHECK(end_request(&req) == 500);
    CHECK(count_rows(p, "first") == 0);

    /* the same connection, next request: first statement, then a read of
     * its own write, committed */
    fake_request(&req, "GET");
    db = hp_db_from(&req, p);
    CHECK(hp_db_execv(db, ins, HP_INT(2)) == HP_OK);
    CHECK(query_int(db, sqlf("SELECT count(*) FROM %s", t)) == 1);
    CHECK(end_request(&req) == 200);
    CHECK(count_rows(p, "first") == 1);

    /* no statement: no transaction, and nothing left open */
    fake_request(&req, "POST");
    db = hp_db_from(&req, p);
    CHECK(db != NULL);
    CHECK(end_request(&req) == 200);
    CHECK(p->idle == db && !db->drv->in_tx(db));
    CHECK(!hp_db__pg_commit_in_flight(db));

    db = acquire(p);
    drop(db, "first");
    hp_db_pool_release(db);
    hp_db_pool_close(p);
}

/* A single request with one statement; its status. */
static int one_statement(hp_db_pool *p, const char *sql, long long *v)
{
    hp_req req;
    fake_request(&req, "GET");
    *v = query_int(hp_db_from(&req, p), sql);
    return end_request(&req);
}

/* PostgreSQL, READ COMMITTED: a GET's reads before its first write are
 * transactions of their own (BEGIN, the read, its guard and COMMIT in one
 * round trip: nothing in flight or open after it). Everything that writes
 * (through a function, a data-modifying WITH, a row lock, a statement after a
 * read) runs in the request's read-write transaction, waits for its COMMIT,
 * whose failure is the client's 500, and is visible to other connections
 * when the request ends. */
static void pg_commit_waits_unless_nothing_written(void)
{
    hp_db_pool *p = open_pool(&(struct hp_db_pool_opts){.max_conns = 1});
    hp_db_pool *q = open_pool(&(struct hp_db_pool_opts){.max_conns = 1});
    hp_db *db = acquire(q);
    const char *t = tbl("ro");
    long long v;
    drop(db, "ro");
    CHECK(hp_db_exec_script(
              db, sqlf("CREATE TABLE %s (a INTEGER UNIQUE DEFERRABLE "
                       "INITIALLY DEFERRED); CREATE FUNCTION %s_dup() "
                       "RETURNS integer LANGUAGE sql AS 'INSERT INTO %s "
                       "VALUES (1), (1); SELECT 1'",
                       t, t, t)) == HP_OK);
    hp_db_pool_release(db);

    /* one read: read-only, on its own; nothing left in flight or open */
    CHECK(one_statement(p, sqlf("SELECT count(*) FROM %s", t), &v) == 200);
    CHECK(v == 0);
    CHECK(p->idle && !hp_db__pg_commit_in_flight(p->idle) &&
          !p->idle->drv->in_tx(p->idle));
    /* a pool handle's statements on that connection commit on their own,
     * and may write */
    db = acquire(p);
    CHECK(db && !hp_db__pg_commit_in_flight(db) && !db->drv->in_tx(db));
    CHECK(hp_db_exec(db, sqlf("INSERT INTO %s VALUES (9)", t)) == HP_OK);
    CHECK(hp_db_exec_script(db, sqlf("DELETE FROM %s", t)) == HP_OK);
    hp_db_pool_release(db);
    CHECK(count_rows(q, "ro") == 0);
    /* the same read in a POST (expected to write): in its transaction */
    hp_req req;
    fake_request(&req, "POST");
    db = hp_db_from(&req, p);
    CHECK(query_int(db, sqlf("SELECT count(*) FROM %s", t)) == 0);
    CHECK(end_request(&req) == 200);
    CHECK(!hp_db__pg_commit_in_flight(p->idle));

    /* set_config(..., true) holds for the rest of the request (a row-level
     * security policy's user): it opens the request's transaction */
    fake_request(&req, "GET");
    db = hp_db_from(&req, p);
    CHECK(query_int(db, "SELECT 1 FROM pg_catalog.set_config('hp.user', "
                        "'42', true)") == 1);
    CHECK(query_int(db, "SELECT pg_catalog.current_setting('hp.user')::int") ==
          42);
    CHECK(end_request(&req) == 200);

    /* a read that fails: the next statement is refused, as in a
     * transaction (25P02), and the request answers 500 */
    fake_request(&req, "GET");
    db = hp_db_from(&req, p);
    CHECK(query_int(db, "SELECT 6 * 7") == 42);
    CHECK(hp_db_queryv(db, "SELECT 1 / $1", HP_INT(0)) == NULL);
    CHECK_STR(hp_db_sqlstate(db), "22012");
    CHECK(hp_db_exec(db, "SELECT 1") == -1);
    CHECK_STR(hp_db_sqlstate(db), "25P02");
    CHECK(end_request(&req) == 500);

    /* writes the statement's text does not show: the deferred UNIQUE
     * fails at COMMIT, which is waited for */
    CHECK(one_statement(p, sqlf("SELECT %s_dup()", t), &v) == 500);
    CHECK(v == 1 && !hp_db__pg_commit_in_flight(p->idle));
    CHECK(one_statement(p,
                        sqlf("WITH w AS (INSERT INTO %s VALUES (2), (2) "
                             "RETURNING a) SELECT count(*) FROM w",
                             t),
                        &v) == 500);
    CHECK(v == 2 && count_rows(q, "ro") == 0);

    /* a row lock is a write; so is a second statement after a read, which
     * another connection sees as soon as the request has ended */
    db = acquire(q);
    CHECK(hp_db_exec(db, sqlf("INSERT INTO %s VALUES (7)", t)) == HP_OK);
    hp_db_pool_release(db);
    CHECK(one_statement(p, sqlf("SELECT a FROM %s FOR UPDATE", t), &v) == 200);
    CHECK(v == 7 && !hp_db__pg_commit_in_flight(p->idle));
    fake_request(&req, "GET");
    db = hp_db_from(&req, p);
    CHECK(query_int(db, sqlf("SELECT count(*) FROM %s", t)) == 1);
    CHECK(hp_db_exec(db, sqlf("INSERT INTO %s VALUES (8)", t)) == HP_OK);
    CHECK(end_request(&req) == 200);
    CHECK(!hp_db__pg_commit_in_flight(p->idle));
    CHECK(count_rows(q, "ro") == 2);

    /* a read after a write is in the write's transaction, and sees it */
    fake_request(&req, "GET");
    db = hp_db_from(&req, p);
    CHECK(hp_db_exec(db, sqlf("INSERT INTO %s VALUES (10)", t)) == HP_OK);
    CHECK(query_int(db, sqlf("SELECT count(*) FROM %s", t)) == 3);
    fake_commit(&req);
    fake_rollback(&req); /* a later participant said no */
    hp_req_release_resources(&req);
    hp_req_cleanup(&req);
    CHECK(count_rows(q, "ro") == 2);

    /* a function that writes behind a SELECT, in a GET that then fails:
     * run again in the request's transaction, so it rolls back, and it
     * wrote once when the request succeeds */
    db = acquire(q);
    CHECK(hp_db_exec_script(
              db, sqlf("CREATE FUNCTION %s_add(n integer) RETURNS integer "
                       "LANGUAGE sql AS 'INSERT INTO %s VALUES (n); SELECT n'",
                       t, t)) == HP_OK);
    hp_db_pool_release(db);
    fake_request(&req, "GET");
    db = hp_db_from(&req, p);
    CHECK(query_int(db, sqlf("SELECT %s_add(20)", t)) == 20);
    fake_commit(&req);
    fake_rollback(&req);
    hp_req_release_resources(&req);
    hp_req_cleanup(&req);
    CHECK(count_rows(q, "ro") == 2);
    CHECK(one_statement(p, sqlf("SELECT %s_add(21)", t), &v) == 200 && v == 21);
    CHECK(count_rows(q, "ro") == 3);

    /* a function that writes and catches every error (PL/pgSQL's
     * EXCEPTION WHEN OTHERS): nothing may rely on the write failing; it
     * writes once, in the request's transaction */
    db = acquire(q);
    CHECK(hp_db_exec_script(
              db, sqlf("CREATE FUNCTION %s_catch(n integer) RETURNS integer "
                       "LANGUAGE plpgsql AS 'BEGIN INSERT INTO %s VALUES (n); "
                       "RETURN n; EXCEPTION WHEN OTHERS THEN RETURN -1; END'",
                       t, t)) == HP_OK);
    hp_db_pool_release(db);
    CHECK(one_statement(p, sqlf("SELECT %s_catch(23)", t), &v) == 200 &&
          v == 23);
    CHECK(count_rows(q, "ro") == 4);
    fake_request(&req, "GET");
    db = hp_db_from(&req, p);
    CHECK(query_int(db, sqlf("SELECT %s_catch(24)", t)) == 24);
    fake_commit(&req);
    fake_rollback(&req);
    hp_req_release_resources(&req);
    hp_req_cleanup(&req);
    CHECK(count_rows(q, "ro") == 4);
    db = acquire(q);
    CHECK(hp_db_exec(db, sqlf("DELETE FROM %s WHERE a = 23", t)) == HP_OK);
    CHECK(hp_db_exec_script(db, sqlf("DROP FUNCTION %s_catch(integer)", t)) ==
          HP_OK);
    hp_db_pool_release(db);

    /* without a statement cache (unnamed statements): the same */
    hp_db_pool *u =
        open_pool(&(struct hp_db_pool_opts){.max_conns = 1, .stmt_cache = -1});
    CHECK(one_statement(u, "SELECT 6 * 7", &v) == 200 && v == 42);
    CHECK(!hp_db__pg_commit_in_flight(u->idle) &&
          !u->idle->drv->in_tx(u->idle));
    CHECK(one_statement(u, "SELECT 6 * 8", &v) == 200 && v == 48);
    CHECK(one_statement(u, sqlf("SELECT %s_add(22)", t), &v) == 200 && v == 22);
    CHECK(count_rows(q, "ro") == 4);
    hp_db_pool_close(u);

    /* REPEATABLE READ by default: a request's reads share one snapshot,
     * in one transaction; its one read's COMMIT goes unawaited */
    hp_db_pool *rr = open_pool(&(struct hp_db_pool_opts){
        .max_conns = 1,
        .init_sql = "SET default_transaction_isolation = 'repeatable read'"});
    CHECK(one_statement(rr, "SELECT 6 * 7", &v) == 200 && v == 42);
    CHECK(hp_db__pg_commit_in_flight(rr->idle));
    fake_request(&req, "GET");
    db = hp_db_from(&req, rr);
    CHECK(query_int(db, sqlf("SELECT count(*) FROM %s", t)) == 4);
    hp_db *other = acquire(q);
    CHECK(hp_db_exec(other, sqlf("INSERT INTO %s VALUES (30)", t)) == HP_OK);
    hp_db_pool_release(other);
    CHECK(query_int(db, sqlf("SELECT count(*) FROM %s", t)) == 4);
    CHECK(end_request(&req) == 200);
    hp_db_pool_close(rr);

    /* a default isolation changed on a connection after hotpub connected,
     * where the pool's reset does not see it (a function that calls
     * set_config: the text test's limit): the guard sees it, and the
     * request's reads share one snapshot again */
    db = acquire(p);
    CHECK(hp_db_exec_script(
              db, sqlf("CREATE FUNCTION %s_iso(text) RETURNS text LANGUAGE "
                       "sql AS 'SELECT pg_catalog.set_config(''default_"
                       "transaction_isolation'', $1, false)'",
                       t)) == HP_OK);
    hp_db_pool_release(db);
    db = acquire(p);
    CHECK(hp_db_exec(db, sqlf("SELECT %s_iso('repeatable read')", t)) == HP_OK);
    hp_db_pool_release(db);
    fake_request(&req, "GET");
    db = hp_db_from(&req, p);
    CHECK(query_int(db, sqlf("SELECT count(*) FROM %s", t)) == 5);
    other = acquire(q);
    CHECK(hp_db_exec(other, sqlf("INSERT INTO %s VALUES (31)", t)) == HP_OK);
    hp_db_pool_release(other);
    CHECK(query_int(db, sqlf("SELECT count(*) FROM %s", t)) == 5);
    CHECK(end_request(&req) == 200);
    db = acquire(p);
    CHECK(hp_db_exec(db, sqlf("SELECT %s_iso('read committed')", t)) == HP_OK);
    hp_db_pool_release(db);

    /* NOTIFY is sent by the COMMIT: waited for */
    CHECK(one_statement(p, "SELECT 1 FROM pg_notify('hp_test', 'x')", &v) ==
          200);
    CHECK(v == 1 && !hp_db__pg_commit_in_flight(p->idle));
    /* so is an advisory lock's release */
    CHECK(one_statement(p, "SELECT 1 FROM pg_advisory_xact_lock(4242)", &v) ==
          200);
    CHECK(v == 1 && !hp_db__pg_commit_in_flight(p->idle));

    db = acquire(q);
    hp_db_exec_script(db, sqlf("DROP FUNCTION %s_dup()", t));
    hp_db_exec_script(db, sqlf("DROP FUNCTION %s_add(integer)", t));
    hp_db_exec_script(db, sqlf("DROP FUNCTION %s_iso(text)", t));
    drop(db, "ro");
    hp_db_pool_release(db);
    hp_db_pool_close(p);
    hp_db_pool_close(q);
}

/* PostgreSQL, SERIALIZABLE: a read's COMMIT is waited for (it can fail);
 * of two requests in a write skew, the second to commit gets a 500 (the
 * serialization failure), as it did before COMMITs could go unawaited. */
static void pg_serializable_failure_surfaces(void)
{
    hp_db_pool *p = open_pool(&(struct hp_db_pool_opts){
        .max_conns = 2,
        .init_sql = "SET default_transaction_isolation = serializable"});
    hp_db *db = acquire(p);
    const char *t = tbl("oncall");
    long long v;
    drop(db, "oncall");
    CHECK(hp_db_exec_script(db, sqlf("CREATE TABLE %s (id INTEGER PRIMARY "
                                     "KEY, on_call BOOLEAN); INSERT INTO %s "
                                     "VALUES (1, true), (2, true)",
                                     t, t)) == HP_OK);
    hp_db_pool_release(db);

    CHECK(one_statement(p, sqlf("SELECT count(*) FROM %s", t), &v) == 200);
    CHECK(v == 2 && !hp_db__pg_commit_in_flight(p->idle));

    hp_req a, b;
    fake_request(&a, "POST");
    fake_request(&b, "POST");
    hp_db *da = hp_db_from(&a, p), *dbb = hp_db_from(&b, p);
    const char *count = sqlf("SELECT count(*) FROM %s WHERE on_call", t);
    CHECK(da && dbb && da != dbb);
    CHECK(query_int(da, count) == 2 && query_int(dbb, count) == 2);
    CHECK(hp_db_exec(da, sqlf("UPDATE %s SET on_call = false WHERE id = 1",
                              t)) == HP_OK);
    hp_db_exec(dbb, sqlf("UPDATE %s SET on_call = false WHERE id = 2", t));
    CHECK(end_request(&a) == 200);
    CHECK(end_request(&b) == 500);
    db = acquire(p);
    CHECK(query_int(db, count) == 1);
    drop(db, "oncall");
    hp_db_pool_release(db);
    hp_db_pool_close(p);
}

/* PostgreSQL: a page's DEALLOCATE ALL also drops the write check's
 * statement; it costs the one failed request it always did (the cached
 * statement is stale), and the next request is back to normal. */
static void pg_deallocate_all(void)
{
    hp_db_pool *p = open_pool(&(struct hp_db_pool_opts){.max_conns = 1});
    long long v;
    CHECK(one_statement(p, "SELECT 40 + 2", &v) == 200 && v == 42);
    hp_db *db = acquire(p);
    CHECK(hp_db_exec_script(db, "DEALLOCATE ALL") == HP_OK);
    /* the same handle: the statement is forgotten with the rest, before
     * it could fail */
    CHECK(query_int(db, "SELECT 40 + 2") == 42);
    CHECK(query_int(db, "SELECT 40 + 2") == 42);
    hp_db_pool_release(db);
    /* the next request: the connection was reset (DEALLOCATE), its cache
     * forgotten with the rest */
    CHECK(one_statement(p, "SELECT 40 + 2", &v) == 200 && v == 42);
    /* and the write check, where it is used (REPEATABLE READ) */
    hp_db_pool *rr = open_pool(&(struct hp_db_pool_opts){
        .max_conns = 1,
        .init_sql = "SET default_transaction_isolation = 'repeatable read'"});
    CHECK(one_statement(rr, "SELECT 40 + 2", &v) == 200 && v == 42);
    CHECK(hp_db__pg_commit_in_flight(rr->idle));
    db = acquire(rr);
    CHECK(hp_db_exec_script(db, "DEALLOCATE ALL") == HP_OK);
    hp_db_pool_release(db);
    CHECK(one_statement(rr, "SELECT 40 + 2", &v) == 200 && v == 42);
    CHECK(hp_db__pg_commit_in_flight(rr->idle));
    hp_db_pool_close(rr);
    hp_db_pool_close(p);
}

/* ---- one statement, many runs (hp_db_query_many) --------------------------
 */

/* The batch's results are those of as many single queries; exec_many
 * changes rows (hp_db_changes: their sum); nothing to do is HP_OK. */
static void many_like_single_runs(void)
{
    hp_req req;
    hp_db_pool *p = open_pool(&(struct hp_db_pool_opts){.max_conns = 1});
    hp_db *db = acquire(p);
    const char *t = tbl("many");
    drop(db, "many");
    CHECK(hp_db_exec_script(db, sqlf("CREATE TABLE %s (id INTEGER PRIMARY "
                                     "KEY, n INTEGER, s TEXT)",
                                     t)) == HP_OK);
    hp_db_pool_release(db);

    hp_db_val rows[50 * 3];
    char texts[50][16];
    for (int i = 0; i < 50; i++) {
        snprintf(texts[i], sizeof texts[i], "row %d", i + 1);
        rows[i * 3] = HP_INT(i + 1);
        rows[i * 3 + 1] = HP_INT((i + 1) * 7);
        rows[i * 3 + 2] = i == 3 ? HP_NULL : HP_TEXT(texts[i]);
    }
    fake_request(&req, "POST");
    db = hp_db_from(&req, p);
    CHECK(hp_db_exec_many(db, sqlf("INSERT INTO %s VALUES ($1, $2, $3)", t), 50,
                          3, rows) == HP_OK);
    CHECK(hp_db_changes(db) == 50);
    CHECK(end_request(&req) == 200);
    CHECK(count_rows(p, "many") == 50);

    fake_request(&req, "GET");
    db = hp_db_from(&req, p);
    hp_db_val ids[20];
    hp_db_res *res[20];
    for (int i = 0; i < 20; i++)
        ids[i] = HP_INT((i * 13) % 50 + 1);
    const char *sel = sqlf("SELECT n, s FROM %s WHERE id = $1", t);
    CHECK(hp_db_query_many(db, sel, 20, 1, ids, res) == HP_OK);
    for (int i = 0; i < 20; i++) {
        hp_db_res *one = hp_db_query_params(db, sel, 1, &ids[i]);
        CHECK(res[i] && one && hp_db_nrows(res[i]) == 1);
        CHECK(hp_db_next(res[i]) && hp_db_next(one));
        CHECK(hp_db_int(res[i], 0) == ids[i].v.i * 7);
        CHECK(hp_db_int(res[i], 0) == hp_db_int(one, 0));
        const char *a = hp_db_text(res[i], 1), *b = hp_db_text(one, 1);
        CHECK((a == NULL) == (b == NULL) && (!a || strcmp(a, b) == 0));
        CHECK_STR(hp_db_colname(res[i], 1), "s");
        hp_db_res_free(one);
    }
    hp_db_res_free(res[0]); /* the others go with the request */
    /* nothing to run: HP_OK, nothing sent; a NULL handle fails quietly */
    CHECK(hp_db_query_many(db, sel, 0, 1, ids, res) == HP_OK);
    CHECK(hp_db_exec_many(db, sel, 0, 1, NULL) == HP_OK);
    CHECK(hp_db_query_many(NULL, sel, 2, 1, ids, res) == -1);
    CHECK(res[0] == NULL && res[1] == NULL);
    CHECK(hp_db_exec_many(NULL, sel, 2, 1, ids) == -1);
    CHECK(end_request(&req) == 200);

    /* too many values: refused, and the request's transaction fails */
    fake_request(&req, "GET");
    db = hp_db_from(&req, p);
    CHECK(hp_db_exec_many(db, sel, SIZE_MAX / 2 + 2, 2, ids) == -1);
    CHECK_STR(hp_db_sqlstate(db), "54000");
    CHECK(end_request(&req) == 500);

    db = acquire(p);
    drop(db, "many");
    hp_db_pool_release(db);
    hp_db_pool_close(p);
}

/* A run that fails in the middle: the runs before it have their results,
 * it and the later ones none, its error is the call's, and the request's
 * transaction rolls back, the earlier runs' writes with it. */
static void many_failure_in_the_middle(void)
{
    hp_req req;
    hp_db_pool *p = open_pool(&(struct hp_db_pool_opts){.max_conns = 1});
    hp_db *db = acquire(p);
    const char *t = tbl("manyf");
    drop(db, "manyf");
    CHECK(hp_db_exec_script(
              db, sqlf("CREATE TABLE %s (a INTEGER NOT NULL)", t)) == HP_OK);
    hp_db_pool_release(db);

    hp_db_val v[5] = {HP_INT(1), HP_INT(2), HP_NULL, HP_INT(4), HP_INT(5)};
    hp_db_res *res[5];
    for (int m = 0; m < 2; m++) { /* a POST, then a GET */
        fake_request(&req, m ? "GET" : "POST");
        db = hp_db_from(&req, p);
        if (m) /* in the transaction: the batch is not its first */
            CHECK(hp_db_execv(db, sqlf("INSERT INTO %s VALUES ($1)", t),
                              HP_INT(9)) == HP_OK);
        CHECK(hp_db_query_many(
                  db, sqlf("INSERT INTO %s VALUES ($1) RETURNING a", t), 5, 1,
                  v, res) == -1);
        CHECK_STR(hp_db_sqlstate(db), "23502");
        CHECK(hp_db_error(db) != NULL);
        CHECK(res[0] && hp_db_next(res[0]) && hp_db_int(res[0], 0) == 1);
        CHECK(res[1] && hp_db_next(res[1]) && hp_db_int(res[1], 0) == 2);
        CHECK(!res[2] && !res[3] && !res[4]);
        CHECK(end_request(&req) == 500);
        CHECK(count_rows(p, "manyf") == 0);
    }

    /* PostgreSQL: a division by zero in the third of four reads, as the
     * first statements of a GET (reads on their own), then as the first
     * statements of a POST (BEGIN in the same pipeline); the next
     * statement is refused (25P02) */
    if (E->pg) {
        hp_db_val d[4] = {HP_INT(1), HP_INT(2), HP_INT(0), HP_INT(5)};
        for (int m = 0; m < 2; m++) {
            fake_request(&req, m ? "POST" : "GET");
            db = hp_db_from(&req, p);
            CHECK(hp_db_query_many(db, "SELECT 10 / $1::int", 4, 1, d, res) ==
                  -1);
            CHECK_STR(hp_db_sqlstate(db), "22012");
            CHECK(res[0] && hp_db_next(res[0]) && hp_db_int(res[0], 0) == 10);
            CHECK(res[1] && hp_db_next(res[1]) && hp_db_int(res[1], 0) == 5);
            CHECK(!res[2] && !res[3]);
            CHECK(hp_db_exec(db, "SELECT 1") == -1);
            CHECK_STR(hp_db_sqlstate(db), "25P02");
            CHECK(hp_db_query_many(db, "SELECT 10 / $1::int", 2, 1, d, res) ==
                  -1);
            CHECK_STR(hp_db_sqlstate(db), "25P02");
            CHECK(end_request(&req) == 500);
        }
        /* the connection serves the next request normally */
        long long x;
        CHECK(one_statement(p, "SELECT 6 * 7", &x) == 200 && x == 42);
    }

    db = acquire(p);
    drop(db, "manyf");
    hp_db_pool_release(db);
    hp_db_pool_close(p);
}

/* 5000 runs with 1 KiB parameters each way (5 MB sent, 5 MB back): no
 * deadlock between our writes and the server's replies. */
static void many_large_batch(void)
{
    hp_req req;
    hp_db_pool *p = open_pool(&(struct hp_db_pool_opts){.max_conns = 1});
    enum { N = 5000, LEN = 1000 };
    char *texts = malloc((size_t)N * (LEN + 1));
    hp_db_val *v = malloc(N * 2 * sizeof *v);
    hp_db_res **res = malloc(N * sizeof *res);
    for (int i = 0; i < N; i++) {
        char *s = texts + (size_t)i * (LEN + 1);
        memset(s, 'a' + i % 26, LEN);
        s[LEN] = '\0';
        v[i * 2] = HP_TEXT(s);
        v[i * 2 + 1] = HP_INT(i);
    }
    fake_request(&req, "GET");
    hp_db *db = hp_db_from(&req, p);
    unsigned long rt = hp_db__pg_round_trips(db);
    CHECK(hp_db_query_many(db, "SELECT upper($1), $2 + 1", N, 2, v, res) ==
          HP_OK);
    if (E->pg) { /* chunks of 64 KiB: about 85, neither 1 nor 5000 */
        rt = hp_db__pg_round_trips(db) - rt;
        CHECK(rt >= 40 && rt <= 200);
    }
    int good = 0;
    for (int i = 0; i < N; i++) {
        const char *s =
            res[i] && hp_db_next(res[i]) ? hp_db_text(res[i], 0) : NULL;
        good += s && strlen(s) == LEN && s[0] == 'A' + i % 26 &&
                hp_db_int(res[i], 1) == i + 1;
    }
    CHECK(good == N);
    CHECK(end_request(&req) == 200);
    free(res);
    free(v);
    free(texts);
    hp_db_pool_close(p);
}

/* PostgreSQL: one round trip for a batch, wherever it falls in the
 * request; a batch of reads on their own leaves nothing open or in
 * flight, one that turns out to write runs again in the request's
 * transaction (writes once per run, rolls back with the request); a
 * transaction of several runs waits for its COMMIT. */
static void pg_many_round_trips(void)
{
    hp_req req;
    hp_db_pool *p = open_pool(&(struct hp_db_pool_opts){.max_conns = 1});
    hp_db_pool *q = open_pool(&(struct hp_db_pool_opts){.max_conns = 1});
    hp_db *db = acquire(q);
    const char *t = tbl("manyrt");
    drop(db, "manyrt");
    CHECK(hp_db_exec_script(
              db, sqlf("CREATE TABLE %s (a INTEGER); CREATE FUNCTION "
                       "%s_add(n integer) RETURNS integer LANGUAGE sql AS "
                       "'INSERT INTO %s VALUES (n); SELECT n'",
                       t, t, t)) == HP_OK);
    hp_db_pool_release(db);
    hp_db_val ids[20];
    hp_db_res *res[20];
    for (int i = 0; i < 20; i++)
        ids[i] = HP_INT(i);
    const char *sel = "SELECT $1::int * 2";

    /* reads on their own, once the statement and the guard are prepared:
     * one round trip, nothing left open or in flight */
    for (int k = 0; k < 2; k++) {
        fake_request(&req, "GET");
        db = hp_db_from(&req, p);
        unsigned long rt = hp_db__pg_round_trips(db);
        CHECK(hp_db_query_many(db, sel, 20, 1, ids, res) == HP_OK);
        if (k)
            CHECK(hp_db__pg_round_trips(db) - rt == 1);
        CHECK(res[19] && hp_db_next(res[19]) && hp_db_int(res[19], 0) == 38);
        CHECK(end_request(&req) == 200);
        CHECK(!hp_db__pg_commit_in_flight(p->idle) &&
              !p->idle->drv->in_tx(p->idle));
    }
    /* as a POST's first statements (BEGIN with them), then inside its
     * transaction: one round trip each; COMMIT waited for */
    fake_request(&req, "POST");
    db = hp_db_from(&req, p);
    unsigned long rt = hp_db__pg_round_trips(db);
    CHECK(hp_db_query_many(db, sel, 20, 1, ids, res) == HP_OK);
    CHECK(hp_db__pg_round_trips(db) - rt == 1);
    CHECK(hp_db_query_many(db, sel, 20, 1, ids, res) == HP_OK);
    CHECK(hp_db__pg_round_trips(db) - rt == 2);
    CHECK(res[3] && hp_db_next(res[3]) && hp_db_int(res[3], 0) == 6);
    CHECK(end_request(&req) == 200);
    CHECK(!hp_db__pg_commit_in_flight(p->idle));

    /* a batch whose statement calls a function that writes, in a GET: the
     * guard fails, the batch runs again in the request's transaction; it
     * rolls back with the request, and writes once per run when the
     * request succeeds */
    const char *add = sqlf("SELECT %s_add($1)", t);
    fake_request(&req, "GET");
    db = hp_db_from(&req, p);
    CHECK(hp_db_query_many(db, add, 3, 1, ids, res) == HP_OK);
    CHECK(res[2] && hp_db_next(res[2]) && hp_db_int(res[2], 0) == 2);
    fake_commit(&req);
    fake_rollback(&req);
    hp_req_release_resources(&req);
    hp_req_cleanup(&req);
    CHECK(count_rows(q, "manyrt") == 0);
    fake_request(&req, "GET");
    db = hp_db_from(&req, p);
    rt = hp_db__pg_round_trips(db);
    CHECK(hp_db_query_many(db, add, 3, 1, ids, res) == HP_OK);
    CHECK(hp_db__pg_round_trips(db) - rt == 2); /* on its own, then again */
    CHECK(hp_db_exec_many(db, add, 2, 1, ids + 10) == HP_OK);
    CHECK(hp_db_changes(db) ==
          0); /* a SELECT changes no row (its function wrote) */
    CHECK(end_request(&req) == 200);
    CHECK(count_rows(q, "manyrt") == 5);
    CHECK(!hp_db__pg_commit_in_flight(p->idle));

    /* REPEATABLE READ (no reads on their own): a first statement's COMMIT
     * goes unawaited only when that is all the transaction ran; a batch
     * of several reads is several statements, and waits */
    hp_db_pool *rr = open_pool(&(struct hp_db_pool_opts){
        .max_conns = 1,
        .init_sql = "SET default_transaction_isolation = 'repeatable read'"});
    fake_request(&req, "GET");
    CHECK(hp_db_query_many(hp_db_from(&req, rr), sel, 1, 1, ids, res) == HP_OK);
    CHECK(end_request(&req) == 200);
    CHECK(hp_db__pg_commit_in_flight(rr->idle));
    fake_request(&req, "GET");
    db = hp_db_from(&req, rr);
    CHECK(hp_db_query_many(db, sel, 3, 1, ids, res) == HP_OK);
    CHECK(end_request(&req) == 200);
    CHECK(!hp_db__pg_commit_in_flight(rr->idle));
    fake_request(&req, "GET"); /* one read that wrote nothing, then a batch */
    db = hp_db_from(&req, rr);
    CHECK(query_int(db, "SELECT 6 * 7") == 42);
    CHECK(hp_db_query_many(db, sel, 2, 1, ids, res) == HP_OK);
    CHECK(end_request(&req) == 200);
    CHECK(!hp_db__pg_commit_in_flight(rr->idle));
    hp_db_pool_close(rr);

    /* without a statement cache (unnamed statements): the same answers */
    hp_db_pool *u =
        open_pool(&(struct hp_db_pool_opts){.max_conns = 1, .stmt_cache = -1});
    fake_request(&req, "GET");
    db = hp_db_from(&req, u);
    CHECK(hp_db_query_many(db, sel, 20, 1, ids, res) == HP_OK);
    CHECK(res[7] && hp_db_next(res[7]) && hp_db_int(res[7], 0) == 14);
    CHECK(end_request(&req) == 200);
    hp_db_pool_close(u);

    db = acquire(q);
    hp_db_exec_script(db, sqlf("DROP FUNCTION %s_add(integer)", t));
    drop(db, "manyrt");
    hp_db_pool_release(db);
    hp_db_pool_close(p);
    hp_db_pool_close(q);
}

static void request_pool_exhausted_503(void)
{
    hp_req req;
    hp_db_pool *p = open_pool(
        &(struct hp_db_pool_opts){.max_conns = 1, .acquire_timeout_ms = 100});
    hp_db *held = acquire(p);
    fake_request(&req, "GET");
    double t0 = hp_now();
    CHECK(hp_db_from(&req, p) == NULL);
    CHECK(hp_now() - t0 >= 0.09);
    CHECK(req.forced_status == 503);
    t0 = hp_now();
    CHECK(hp_db_from(&req, p) == NULL); /* no second wait */
    CHECK(hp_now() - t0 < 0.05);
    hp_puts(&req, "half a page");
    hp_db_server_set_dev(true); /* dev mode: the body says why */
    fake_rollback(&req);        /* the lifecycle rolls back: the 503 body */
    hp_db_server_set_dev(false);
    CHECK(req.out.len > 0 && strstr(req.out.p, "database busy") &&
          strstr(req.out.p, "100 ms") && !strstr(req.out.p, "half a page"));
    hp_req_release_resources(&req);
    hp_req_cleanup(&req);

    /* Production: the plain body, the timeout only in the log. */
    fake_request(&req, "GET");
    CHECK(hp_db_from(&req, p) == NULL && req.forced_status == 503);
    fake_rollback(&req);
    CHECK(req.out.len > 0 &&
          strcmp(req.out.p, "503 Service Unavailable\n") == 0);
    hp_req_release_resources(&req);
    hp_req_cleanup(&req);
    hp_db_pool_release(held);

    fake_request(&req, "GET"); /* no default pool in a unit test */
    CHECK(hp_db(&req) == NULL && req.forced_status == 503);
    hp_req_release_resources(&req);
    hp_req_cleanup(&req);
    hp_db_pool_close(p);
}

/* ---- waits through a scheduler's hook (wait.c) -----------------------------
 */

/* A scheduler's stand-in: counts the waits it is given and does them with
 * poll(2), or answers "the request's time ran out" (timeout_now). */
struct counting {
    int calls, wrong_fd, no_fd;
    int expect_fd; /* -1: any */
    bool timeout_now;
};

static int counting_hook(int fd, short events, int64_t deadline_ns, void *cls)
{
    struct counting *c = cls;
    c->calls++;
    c->no_fd += fd < 0;
    if (c->expect_fd >= 0 && fd != c->expect_fd)
        c->wrong_fd++;
    if (c->timeout_now)
        return 0;
    int ms = -1;
    if (deadline_ns) {
        int64_t left = deadline_ns - hp_now_ns();
        ms = left <= 0 ? 0 : (int)((left + 999999) / 1000000);
    }
    struct pollfd p = {.fd = fd, .events = events};
    int rc = poll(&p, fd < 0 ? 0 : 1, ms);
    return rc > 0 ? 1 : rc == 0 ? 0 : -1;
}

/* A request's statements, each kind of wait db_pg.c has (a read on its
 * own, a first statement with BEGIN, one inside the transaction, a batch,
 * the COMMIT); its answers as one number, the same with a hook or not. */
static long long hooked_request(hp_db_pool *p, struct counting *c)
{
    hp_req req;
    const char *t = tbl("hook");
    fake_request(&req, "POST");
    hp_db *db = hp_db_from(&req, p);
    if (!db)
        return -1;
    if (c) { /* from here on, every wait is on the connection's socket */
        c->expect_fd = hp_db__pg_socket(db);
        c->calls = 0;
    }
    long long v = query_int(db, "SELECT 6 * 7");
    CHECK(hp_db_execv(db, sqlf("INSERT INTO %s VALUES ($1)", t), HP_INT(5)) ==
          HP_OK);
    hp_db_val rows[3] = {HP_INT(1), HP_INT(2), HP_INT(3)};
    CHECK(hp_db_exec_many(db, sqlf("INSERT INTO %s VALUES ($1)", t), 3, 1,
                          rows) == HP_OK);
    v = v * 1000 + query_int(db, sqlf("SELECT sum(a)::int FROM %s", t));
    CHECK(end_request(&req) == 200);
    return v;
}

static void pg_hook_carries_the_waits(void)
{
    struct counting c = {.expect_fd = -1};
    const char *t = tbl("hook");
    hp_db_pool *p = open_pool(&(struct hp_db_pool_opts){.max_conns = 1});
    hp_db *db = acquire(p);
    drop(db, "hook");
    CHECK(hp_db_exec_script(db, sqlf("CREATE TABLE %s (a INTEGER)", t)) ==
          HP_OK);
    hp_db_pool_release(db);
    long long plain = hooked_request(p, NULL);
    CHECK(plain == 42011);
    CHECK(hp_db_exec_script(db = acquire(p), sqlf("DELETE FROM %s", t)) ==
          HP_OK);
    hp_db_pool_release(db);
    hp_db_pool_close(p);

    /* A new pool: the connect waits through the hook too. */
    p = open_pool(&(struct hp_db_pool_opts){.max_conns = 1});
    hp_wait_set_hook(counting_hook, &c);
    int64_t w0 = hp_wait_ns();
    db = acquire(p);
    CHECK(c.calls > 0); /* the connect, the init queries */
    CHECK(c.no_fd == 0);
    hp_db_pool_release(db);
    c.calls = 0;
    long long hooked = hooked_request(p, &c);
    CHECK(hooked == plain); /* the same answers */
    CHECK(c.calls >= 4);    /* a wait per round trip at least */
    CHECK(c.wrong_fd == 0 && c.no_fd == 0);
    CHECK(hp_wait_ns() > w0);
    hp_wait_set_hook(NULL, NULL);
    drop(db = acquire(p), "hook");
    hp_db_pool_release(db);
    hp_db_pool_close(p);
}

/* The hook says the request's time ran out: the call fails with 57014, the
 * connection is mid-command and is closed, never pooled; the next checkout
 * gets a new one that works. */
static void pg_hook_timeout_drops_connection(void)
{
    struct counting c = {.expect_fd = -1, .timeout_now = true};
    struct hp_db_pool_stats s;
    hp_req req;
    hp_db_pool *p = open_pool(&(struct hp_db_pool_opts){.max_conns = 1});
    hp_db *db = acquire(p);
    long long pid = query_int(db, "SELECT pg_backend_pid()");
    hp_db_pool_release(db);

    fake_request(&req, "GET");
    hp_wait_set_hook(counting_hook, &c);
    db = hp_db_from(&req, p); /* an idle connection: no wait */
    CHECK(db != NULL);
    CHECK(hp_db_query(db, "SELECT 1") == NULL);
    CHECK(c.calls == 1);
    CHECK_STR(hp_db_sqlstate(db), "57014");
    CHECK(strstr(hp_db_error(db), "timed out waiting for PostgreSQL"));
    /* refused (db.c: 25P02 after any failure), with no second wait */
    CHECK(hp_db_exec(db, "SELECT 2") == -1);
    CHECK(c.calls == 1);
    CHECK(end_request(&req) == 500);
    hp_db_pool_stats(p, &s);
    CHECK(s.size == 0 && s.idle == 0 && s.in_use == 0);

    /* A connect the hook times out fails as a connect does. */
    char *err = NULL;
    CHECK(hp_db_pool_acquire(p, &err) == NULL);
    CHECK(err && strstr(err, "timed out waiting for PostgreSQL"));
    free(err);
    hp_wait_set_hook(NULL, NULL);

    db = acquire(p);
    CHECK(db != NULL);
    CHECK(query_int(db, "SELECT pg_backend_pid()") != pid);
    CHECK(query_int(db, "SELECT 3") == 3);
    hp_db_pool_release(db);
    hp_db_pool_stats(p, &s);
    CHECK(s.size == 1 && s.idle == 1);
    hp_db_pool_close(p);
}

struct giver {
    hp_db *db;
    int delay_ms;
};

static void *give_back_later(void *arg)
{
    struct giver *g = arg;
    usleep((useconds_t)g->delay_ms * 1000);
    hp_db_pool_release(g->db);
    return NULL;
}

/* A thread whose waits go through a hook never sleeps on the pool's
 * condition variable: it parks on an eventfd through the hook, once, and
 * ends as the plain wait does (the 503 at the acquire timeout; the
 * connection given back meanwhile, at once; the hook's own deadline, a
 * timeout at once). */
static void pool_full_wait_hooked(void)
{
    struct counting c = {.expect_fd = -1};
    struct hp_db_pool_stats s;
    hp_req req;
    hp_db_pool *p = open_pool(
        &(struct hp_db_pool_opts){.max_conns = 1, .acquire_timeout_ms = 100});
    hp_db *held = acquire(p);
    hp_wait_set_hook(counting_hook, &c);
    fake_request(&req, "GET");
    int64_t pool0 = hp_db_pool_ns(), w0 = hp_wait_ns();
    double t0 = hp_now();
    CHECK(hp_db_from(&req, p) == NULL);
    double waited = hp_now() - t0;
    CHECK(waited >= 0.099 && waited < 1.0);
    CHECK(req.forced_status == 503);
    CHECK(c.calls == 1 && c.no_fd == 0); /* parked on its eventfd, once */
    CHECK(hp_db_pool_ns() - pool0 >= 99000000);
    CHECK(hp_wait_ns() - w0 >= 90000000);
    fake_rollback(&req);
    hp_req_release_resources(&req);
    hp_req_cleanup(&req);
    hp_db_pool_stats(p, &s);
    CHECK(s.timeouts == 1 && s.waiters == 0);

    /* Given back by another thread while this one naps: it gets it. */
    struct giver g = {.db = held, .delay_ms = 30};
    pthread_t th;
    pthread_create(&th, NULL, give_back_later, &g);
    t0 = hp_now();
    char *err = NULL;
    hp_db *got = hp_db_pool_acquire(p, &err);
    waited = hp_now() - t0;
    pthread_join(th, NULL);
    CHECK(got == held);
    CHECK(waited >= 0.025 && waited < 0.09);
    CHECK(c.no_fd == 0);
    free(err);

    /* The hook's deadline (the request's time) ends the wait at once. */
    c.timeout_now = true;
    c.calls = 0;
    err = NULL;
    t0 = hp_now();
    CHECK(hp_db_pool_acquire(p, &err) == NULL);
    CHECK(hp_now() - t0 < 0.05);
    CHECK(c.calls == 1 && err && strstr(err, "no connection available"));
    free(err);
    hp_wait_set_hook(NULL, NULL);
    hp_db_pool_stats(p, &s);
    CHECK(s.timeouts == 2 && s.waiters == 0);
    hp_db_pool_release(got);
    hp_db_pool_close(p);
}

/* One queue for waiters of both kinds, first come first served (FRESH12-4):
 * a thread on its condition variable, then one whose waits go through a
 * hook (it parks on an eventfd), then another on its condition variable;
 * the connection given back goes to each in the order they came. */
static atomic_int served;

struct queued {
    hp_db_pool *p;
    bool hooked;
    hp_db *got;
    int turn;
};

static void *queued_thread(void *arg)
{
    struct queued *q = arg;
    struct counting c = {.expect_fd = -1};
    if (q->hooked)
        hp_wait_set_hook(counting_hook, &c);
    char *err = NULL;
    q->got = hp_db_pool_acquire(q->p, &err);
    q->turn = atomic_fetch_add(&served, 1);
    free(err);
    usleep(20000); /* held a while: the next one waits on */
    if (q->got)
        hp_db_pool_release(q->got);
    hp_wait_set_hook(NULL, NULL);
    CHECK(!q->hooked || (c.calls >= 1 && c.no_fd == 0));
    return NULL;
}

static void wait_for_waiters(hp_db_pool *p, unsigned n)
{
    struct hp_db_pool_stats s;
    for (int i = 0; i < 2000; i++) {
        hp_db_pool_stats(p, &s);
        if (s.waiters >= n)
            return;
        usleep(1000);
    }
}

static void pool_waiters_one_queue(void)
{
    struct hp_db_pool_stats s;
    for (int order = 0; order < 2; order++) {
        hp_db_pool *p = open_pool(&(struct hp_db_pool_opts){
            .max_conns = 1, .acquire_timeout_ms = 3000});
        hp_db *held = acquire(p);
        struct queued q[4];
        pthread_t th[4];
        atomic_store(&served, 0);
        for (int i = 0; i < 4; i++) {
            /* plain, hooked, plain, hooked; or the other way round */
            q[i] = (struct queued){.p = p, .hooked = (i + order) % 2 == 1};
            pthread_create(&th[i], NULL, queued_thread, &q[i]);
            wait_for_waiters(p, (unsigned)i + 1);
        }
        hp_db_pool_stats(p, &s);
        CHECK(s.waiters == 4);
        hp_db_pool_release(held);
        for (int i = 0; i < 4; i++)
            pthread_join(th[i], NULL);
        for (int i = 0; i < 4; i++) {
            CHECK(q[i].got == held);
            CHECK(q[i].turn == i);
        }
        hp_db_pool_stats(p, &s);
        CHECK(s.waiters == 0 && s.in_use == 0 && s.idle == 1 && s.size == 1);
        hp_db_pool_close(p);
    }
}

/* A parked waiter handed the connection just as the hook ends its wait
 * (the request's time ran out) cannot use it: it goes on to the next
 * waiter, or back to the pool, never lost. The hook gives it back itself
 * (after a second waiter queued behind, or with none), then says time
 * ran out. */
struct handing {
    hp_db_pool *p;
    hp_db *held;
    bool behind;
    struct waiter w;
    pthread_t th;
};

static int handing_hook(int fd, short events, int64_t deadline_ns, void *cls)
{
    struct handing *h = cls;
    (void)fd, (void)events, (void)deadline_ns;
    if (h->behind) {
        h->w.p = h->p;
        pthread_create(&h->th, NULL, wait_thread, &h->w);
        wait_for_waiters(h->p, 2);
    }
    hp_db_pool_release(h->held); /* handed to this thread's waiter */
    return 0;                    /* ... whose request's time ran out */
}

static void pool_handed_as_wait_ends(void)
{
    struct hp_db_pool_stats s;
    for (int behind = 0; behind < 2; behind++) {
        hp_db_pool *p = open_pool(&(struct hp_db_pool_opts){
            .max_conns = 1, .acquire_timeout_ms = 2000});
        struct handing h = {.p = p, .held = acquire(p), .behind = behind};
        hp_wait_set_hook(handing_hook, &h);
        char *err = NULL;
        CHECK(hp_db_pool_acquire(p, &err) == NULL);
        CHECK(err && strstr(err, "no connection available"));
        free(err);
        hp_wait_set_hook(NULL, NULL);
        if (behind) {
            pthread_join(h.th, NULL);
            CHECK(h.w.got == h.held && h.w.waited < 1.0);
            hp_db_pool_stats(p, &s);
            CHECK(s.in_use == 1 && s.idle == 0 && s.waiters == 0);
            hp_db_pool_release(h.w.got);
        }
        hp_db_pool_stats(p, &s);
        CHECK(s.in_use == 0 && s.idle == 1 && s.size == 1 && s.waiters == 0);
        CHECK(s.timeouts == 1);
        hp_db *again = acquire(p);
        CHECK(again == h.held);
        hp_db_pool_release(again);
        hp_db_pool_close(p);
    }
}

/* ---- session state: every request starts where the pool left it -----------
 */

/* The statements whose text says they may change the connection's session
 * state (db_pool.c), and some that do not. */
static void session_sql_words(void)
{
    static const char *const dirty[] = {
        "SET search_path = other",
        "  set TimeZone TO 'UTC'",
        "/* c */ SET ROLE r",
        "-- c\nSET SESSION AUTHORIZATION r",
        "SELECT 1; SET x.y = 1",
        "RESET ALL",
        "SELECT set_config('x.y', 'z', false)",
        "SELECT set_config('x.y', $1, $2)",
        "SELECT set_config('x.y', 'a,b', FALSE )",
        "SELECT set_config('x.y', f('a', 'b'), true OR false)",
        "SELECT set_config('x.y', 'z', true), set_config('x.z', 'z', false)",
        "SELECT set_config",
        "LISTEN ch",
        "PREPARE p AS SELECT 1",
        "DEALLOCATE p",
        "CREATE TEMP TABLE t (a int)",
        "create temporary table t (a int)",
        "CREATE TABLE pg_temp.t (a int)",
        "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
        "SELECT pg_advisory_lock(1)",
        "SELECT pg_try_advisory_lock_shared(1)",
        "DISCARD ALL",
        "LOAD 'auto_explain'",
        "PRAGMA foreign_keys = OFF",
        "ATTACH DATABASE 'x.db' AS aux",
        "DETACH aux",
    };
    static const char *const clean[] = {
        "SELECT 1",
        "UPDATE t SET a = 1",
        "INSERT INTO t VALUES (1) ON CONFLICT (a) DO UPDATE SET a = 2",
        "SET LOCAL search_path = other",
        "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
        "SET CONSTRAINTS ALL DEFERRED",
        "SELECT pg_advisory_xact_lock(1)",
        "SELECT settings, temperature, holder, roles FROM t",
        "SELECT * FROM t WHERE reset_at > now()",
        "NOTIFY ch",
        "UNLISTEN *",
        "SELECT set_config('lock_timeout', $1, true)",
        "SELECT set_config('x.y', 'a,b)', TRUE ), 1",
        "SELECT set_config('x.y', f('a', 'b'), true)",
    };
    for (size_t i = 0; i < sizeof dirty / sizeof *dirty; i++)
        if (!hp_db__changes_session(dirty[i], true) ||
            !hp_db__changes_session(dirty[i], false)) {
            fprintf(stderr, "  not seen: %s\n", dirty[i]);
            CHECK(false);
        }
    for (size_t i = 0; i < sizeof clean / sizeof *clean; i++)
        if (hp_db__changes_session(clean[i], true) ||
            hp_db__changes_session(clean[i], false)) {
            fprintf(stderr, "  seen: %s\n", clean[i]);
            CHECK(false);
        }
}

/* How a page changes the connection's state: in a request, by a statement
 * (hp_db_exec) or a script, or on a pool handle outside any request (in
 * autocommit: SQLite's PRAGMA foreign_keys and ATTACH refuse a transaction). */
enum page_mode { IN_REQ, IN_REQ_SCRIPT, ON_HANDLE };

struct leak {
    enum page_mode mode;
    const char *set;   /* what the page runs                        */
    const char *probe; /* one integer: the state as the next request sees it */
    long long changed, fresh; /* the probe's value after set; on a fresh conn */
};

/* The page runs set, and sees its change. The probe's value is returned. */
static long long page_changes(hp_db_pool *p, const struct leak *l)
{
    hp_req req;
    hp_db *db;
    long long v;
    if (l->mode == ON_HANDLE) {
        db = acquire(p);
        CHECK(hp_db_exec_script(db, l->set) == HP_OK);
        v = query_int(db, l->probe);
        hp_db_pool_release(db);
        return v;
    }
    fake_request(&req, "POST");
    db = hp_db_from(&req, p);
    CHECK(query_int(db, "SELECT 40 + 2") == 42); /* cached: hp_<n> */
    int rc = l->mode == IN_REQ_SCRIPT ? hp_db_exec_script(db, l->set)
                                      : hp_db_exec(db, l->set);
    if (rc != HP_OK)
        fprintf(stderr, "  %s: %s\n", l->set, hp_db_error(db));
    CHECK(rc == HP_OK);
    v = query_int(db, l->probe);
    CHECK(end_request(&req) == 200);
    return v;
}

static void check_no_leak(hp_db_pool *p, const struct leak *l)
{
    struct hp_db_pool_stats s0, s1;
    long long v;
    hp_db_pool_stats(p, &s0);
    unsigned long long r0 = atomic_load(&p->resets);
    long long changed = page_changes(p, l);
    if (changed != l->changed)
        fprintf(stderr, "  %s: the page sees %lld\n", l->set, changed);
    CHECK(changed == l->changed);
    /* the next request: another page, the pool's only connection */
    v = -1;
    CHECK(one_statement(p, l->probe, &v) == 200);
    if (v != l->fresh)
        fprintf(stderr, "  %s: the next request sees %lld\n", l->set, v);
    CHECK(v == l->fresh);
    /* a statement cached before the reset runs again after it */
    CHECK(one_statement(p, "SELECT 40 + 2", &v) == 200 && v == 42);
    hp_db_pool_stats(p, &s1);
    if (atomic_load(&p->resets) != r0 + 1 || s1.connects != s0.connects)
        fprintf(stderr, "  %s: %llu resets, %llu connects\n", l->set,
                atomic_load(&p->resets) - r0, s1.connects - s0.connects);
    CHECK(atomic_load(&p->resets) == r0 + 1);
    CHECK(s1.discarded == s0.discarded);
    /* PostgreSQL resets the connection in place; SQLite opens it anew */
    CHECK(s1.connects == s0.connects);
}

static void session_state_not_leaked(void)
{
    hp_db_pool *p = open_pool(&(struct hp_db_pool_opts){
        .max_conns = 1,
        .init_sql = E->pg ? "SET application_name = 'hp_init'"
                          : "PRAGMA cache_size = -1234"});
    const char *role = tbl("role");
    char set_role[96], probe_role[128], set_auth[96], probe_auth[128];
    char attach[PATH_MAX + 64];
    snprintf(set_role, sizeof set_role, "SET ROLE %s", role);
    snprintf(probe_role, sizeof probe_role, "SELECT (current_user = '%s')::int",
             role);
    snprintf(set_auth, sizeof set_auth, "SET SESSION AUTHORIZATION %s", role);
    snprintf(probe_auth, sizeof probe_auth, "SELECT (session_user = '%s')::int",
             role);
    snprintf(attach, sizeof attach, "ATTACH DATABASE '%s/aux.db' AS aux",
             tmpdir);
    const struct leak pg[] = {
        {IN_REQ, "SET TimeZone = 'Asia/Tokyo'",
         "SELECT (current_setting('TimeZone') = 'Asia/Tokyo')::int", 1, 0},
        {IN_REQ_SCRIPT, "SET search_path = pg_catalog",
         "SELECT (current_setting('search_path') = 'pg_catalog')::int", 1, 0},
        {IN_REQ, "SELECT set_config('hp.x', 'y', false)",
         "SELECT (coalesce(current_setting('hp.x', true), '') = 'y')::int", 1,
         0},
        {IN_REQ, "SET application_name = 'other'",
         "SELECT (current_setting('application_name') = 'hp_init')::int", 0, 1},
        {IN_REQ_SCRIPT, set_role, probe_role, 1, 0},
        {IN_REQ_SCRIPT, set_auth, probe_auth, 1, 0},
        {ON_HANDLE, "LISTEN hp_chan",
         "SELECT count(*) FROM pg_listening_channels()", 1, 0},
        {IN_REQ_SCRIPT, "CREATE TEMP TABLE hp_tmp (a int)",
         "SELECT count(*) FROM pg_class WHERE relname = 'hp_tmp' AND "
         "relnamespace = pg_my_temp_schema()",
         1, 0},
        {IN_REQ, "SELECT pg_advisory_lock(424242)",
         "SELECT count(*) FROM pg_locks WHERE locktype::text LIKE 'adv%' AND "
         "pid = pg_backend_pid() AND objid = 424242",
         1, 0},
        {IN_REQ_SCRIPT, "PREPARE hp_page_stmt AS SELECT 1",
         "SELECT count(*) FROM pg_prepared_statements WHERE name = "
         "'hp_page_stmt'",
         1, 0},
        {IN_REQ_SCRIPT, "DECLARE hp_cur CURSOR WITH HOLD FOR SELECT 1",
         "SELECT count(*) FROM pg_cursors WHERE name = 'hp_cur'", 1, 0},
    };
    const struct leak sq[] = {
        {ON_HANDLE, "PRAGMA foreign_keys = OFF",
         "SELECT foreign_keys FROM pragma_foreign_keys", 0, 1},
        {ON_HANDLE, "PRAGMA cache_size = 10",
         "SELECT cache_size FROM pragma_cache_size", 10, -1234},
        {IN_REQ_SCRIPT, "CREATE TEMP TABLE hp_tmp (a INTEGER)",
         "SELECT count(*) FROM sqlite_temp_master WHERE name = 'hp_tmp'", 1, 0},
        {ON_HANDLE, attach,
         "SELECT count(*) FROM pragma_database_list WHERE name = 'aux'", 1, 0},
    };
    if (!p)
        return;
    if (E->pg) {
        hp_db *db = acquire(p);
        hp_db_exec_script(db, sqlf("DROP ROLE IF EXISTS %s", role));
        CHECK(hp_db_exec_script(db, sqlf("CREATE ROLE %s", role)) == HP_OK);
        hp_db_pool_release(db);
    }
    long long v;
    CHECK(one_statement(p, "SELECT 40 + 2", &v) == 200 && v == 42);
    size_t n = E->pg ? sizeof pg / sizeof *pg : sizeof sq / sizeof *sq;
    for (size_t i = 0; i < n; i++)
        check_no_leak(p, E->pg ? &pg[i] : &sq[i]);
    if (E->pg) {
        hp_db *db = acquire(p);
        CHECK(hp_db_exec_script(db, sqlf("DROP ROLE %s", role)) == HP_OK);
        hp_db_pool_release(db);
    }
    hp_db_pool_close(p);
}

/* A connection whose requests changed nothing of its session is not reset:
 * UPDATE's SET, SET LOCAL, a transaction's advisory lock. On PostgreSQL a
 * GET's cached read stays one round trip, before a reset and after one
 * (reads on their own), and the write check still sends a REPEATABLE READ
 * read's COMMIT without waiting. */
static void clean_connection_not_reset(void)
{
    hp_db_pool *p = open_pool(&(struct hp_db_pool_opts){.max_conns = 1});
    const char *t = tbl("clean");
    long long v;
    hp_db *db = acquire(p);
    drop(db, "clean");
    CHECK(hp_db_exec_script(db, sqlf("CREATE TABLE %s (a INTEGER)", t)) ==
          HP_OK);
    CHECK(hp_db_exec(db, sqlf("INSERT INTO %s VALUES (1)", t)) == HP_OK);
    hp_db_pool_release(db);
    unsigned long long r0 = atomic_load(&p->resets);
    const char *writes[] = {
        sqlf("UPDATE %s SET a = a + 1", t),
        E->pg ? "SET LOCAL search_path = pg_catalog, public" : "SELECT 1",
        E->pg ? "SELECT pg_advisory_xact_lock(7)" : "SELECT 2",
    };
    for (int i = 0; i < 3; i++) {
        hp_req req;
        fake_request(&req, "POST");
        CHECK(hp_db_exec(hp_db_from(&req, p), writes[i]) == HP_OK);
        CHECK(end_request(&req) == 200);
        CHECK(one_statement(p, "SELECT 40 + 2", &v) == 200 && v == 42);
    }
    CHECK(atomic_load(&p->resets) == r0);
    if (E->pg) {
        unsigned long before = hp_db__pg_round_trips(p->idle);
        CHECK(one_statement(p, "SELECT 40 + 2", &v) == 200 && v == 42);
        CHECK(hp_db__pg_round_trips(p->idle) == before + 1);
        hp_db *d = acquire(p);
        CHECK(hp_db_exec_script(d, "SET TimeZone = 'UTC'") == HP_OK);
        hp_db_pool_release(d);
        CHECK(atomic_load(&p->resets) == r0 + 1);
        CHECK(one_statement(p, "SELECT 40 + 2", &v) == 200 && v == 42);
        before = hp_db__pg_round_trips(p->idle);
        CHECK(one_statement(p, "SELECT 40 + 2", &v) == 200 && v == 42);
        CHECK(hp_db__pg_round_trips(p->idle) == before + 1);
        hp_db_pool *rr = open_pool(&(struct hp_db_pool_opts){
            .max_conns = 1,
            .init_sql =
                "SET default_transaction_isolation = 'repeatable read'"});
        d = acquire(rr);
        CHECK(hp_db_exec_script(d, "SET TimeZone = 'UTC'") == HP_OK);
        hp_db_pool_release(d);
        CHECK(one_statement(rr, "SELECT 40 + 2", &v) == 200 && v == 42);
        CHECK(hp_db__pg_commit_in_flight(rr->idle));
        hp_db_pool_close(rr);
    }
    db = acquire(p);
    drop(db, "clean");
    hp_db_pool_release(db);
    hp_db_pool_close(p);
}

/* A reset that fails (here the pool's init SQL, run again, fails) drops the
 * connection; the pool opens a new one for the next request. */
static void failed_reset_drops_connection(void)
{
    hp_db_pool *q = open_pool(&(struct hp_db_pool_opts){.max_conns = 1});
    const char *flag = tbl("flag");
    char init[128];
    snprintf(init, sizeof init, "SELECT count(*) FROM %s", flag);
    hp_db *db = acquire(q);
    drop(db, "flag");
    CHECK(hp_db_exec_script(db, sqlf("CREATE TABLE %s (a INTEGER)", flag)) ==
          HP_OK);
    hp_db_pool_release(db);
    hp_db_pool *p =
        open_pool(&(struct hp_db_pool_opts){.max_conns = 1, .init_sql = init});
    struct hp_db_pool_stats s;
    long long v;
    CHECK(one_statement(p, "SELECT 40 + 2", &v) == 200 && v == 42);
    db = acquire(p);
    CHECK(hp_db_exec_script(db, E->pg ? "SET TimeZone = 'Asia/Tokyo'"
                                      : "PRAGMA cache_size = 7") == HP_OK);
    hp_db *other = acquire(q);
    drop(other, "flag");
    hp_db_pool_release(other);
    hp_db_pool_release(db); /* the reset's init SQL fails */
    hp_db_pool_stats(p, &s);
    CHECK(s.discarded == 1 && s.size == 0 && s.connects == 1);
    other = acquire(q);
    CHECK(hp_db_exec_script(other, sqlf("CREATE TABLE %s (a INTEGER)", flag)) ==
          HP_OK);
    hp_db_pool_release(other);
    CHECK(one_statement(p,
                        E->pg ? "SELECT (current_setting('TimeZone') = "
                                "'Asia/Tokyo')::int"
                              : "SELECT 0",
                        &v) == 200 &&
          v == 0);
    hp_db_pool_stats(p, &s);
    CHECK(s.connects == 2);
    hp_db_pool_close(p);
    other = acquire(q);
    drop(other, "flag");
    hp_db_pool_release(other);
    hp_db_pool_close(q);
}

/* What a reset costs (printed, not checked: the machine may be busy): a
 * handle that runs a cached statement, then release, with and without a
 * session change; a reset also prepares the statement again. */
static void reset_cost(void)
{
    enum { N = 300 };
    hp_db_pool *p = open_pool(&(struct hp_db_pool_opts){
        .max_conns = 1,
        .init_sql = E->pg ? "SET application_name = 'hp_init'"
                          : "PRAGMA cache_size = -1234"});
    const char *change =
        E->pg ? "SET TimeZone = 'UTC'" : "PRAGMA cache_size = 7";
    double ns[2];
    for (int dirty = 0; dirty < 2; dirty++) {
        double t0 = hp_now();
        for (int i = 0; i < N; i++) {
            hp_db *db = acquire(p);
            CHECK(query_int(db, "SELECT 40 + 2") == 42);
            if (dirty)
                CHECK(hp_db_exec_script(db, change) == HP_OK);
            hp_db_pool_release(db);
        }
        ns[dirty] = (hp_now() - t0) * 1e9 / N;
    }
    CHECK(atomic_load(&p->resets) == N);
    printf("     acquire, a cached SELECT, release: %.0f ns; with a session "
           "change and its reset: %.0f ns\n",
           ns[0], ns[1]);
    hp_db_pool_close(p);
}

/* ---- the default path -----------------------------------------------------
 */

static void default_path(void)
{
    char *old =
        getenv("XDG_DATA_HOME") ? strdup(getenv("XDG_DATA_HOME")) : NULL;
    setenv("XDG_DATA_HOME", "/data", 1);
    char *a = hp_db_default_path("/srv/my site!");
    char *b = hp_db_default_path("/srv/other/my site!");
    CHECK(strncmp(a, "/data/hotpub/my_site_-", 22) == 0);
    CHECK(strlen(a) == 22 + 8 + 3 && strcmp(a + strlen(a) - 3, ".db") == 0);
    CHECK(strcmp(a, b) != 0);
    free(a);
    free(b);
    a = hp_db_default_path("/");
    CHECK(strncmp(a, "/data/hotpub/root-", 18) == 0);
    free(a);
    if (old)
        setenv("XDG_DATA_HOME", old, 1);
    else
        unsetenv("XDG_DATA_HOME");
    free(old);
}

/* ---- configuration keys (config.c's db section)
 * -------------------------------- */

static bool cfg_ok(struct hp_config *c, const char *k, const char *v)
{
    char err[256] = "";
    if (hp_config_set(c, k, v, err, sizeof err) == 0)
        return true;
    fprintf(stderr, "  (%s=%s: %s)\n", k, v, err);
    return false;
}

static bool cfg_bad(struct hp_config *c, const char *k, const char *v)
{
    char err[256] = "";
    return hp_config_set(c, k, v, err, sizeof err) == -1 && err[0];
}

static void config_keys(void)
{
    struct hp_config c;
    hp_config_defaults(&c);
    CHECK(c.db == NULL && c.db_pool_size == 0);
    CHECK(hp_config_db_acquire_ms(&c) == 5000 && c.db_max_lifetime == 3600 &&
          c.db_statement_cache == 64);
    CHECK(cfg_ok(&c, "db", "sqlite:/var/lib/x.db"));
    CHECK_STR(c.db, "sqlite:/var/lib/x.db");
    CHECK(cfg_ok(&c, "db", "postgres://h/d") && cfg_ok(&c, "db", "off"));
    CHECK(cfg_ok(&c, "db", "postgresql:///d?host=/tmp"));
    CHECK(cfg_bad(&c, "db", "mysql://h/d") && cfg_bad(&c, "db", "sqlite:"));
    CHECK(cfg_bad(&c, "db", "/var/lib/x.db"));
    CHECK_STR(c.db, "postgresql:///d?host=/tmp"); /* unchanged by errors */
    CHECK(cfg_ok(&c, "db-pool-size", "8") && c.db_pool_size == 8);
    CHECK(cfg_ok(&c, "db_pool_size", "auto") && c.db_pool_size == 0);
    CHECK(cfg_bad(&c, "db-pool-size", "0") &&
          cfg_bad(&c, "db-pool-size", "1025"));
    CHECK(cfg_ok(&c, "db-acquire-timeout", "0") && c.db_acquire_timeout == 0);
    CHECK(cfg_bad(&c, "db-acquire-timeout", "-1") &&
          cfg_bad(&c, "db-acquire-timeout", "600001"));
    CHECK(cfg_ok(&c, "db-max-lifetime", "0") &&
          cfg_ok(&c, "db-statement-cache", "0"));
    CHECK(cfg_bad(&c, "db-statement-cache", "10001"));
    hp_config_free(&c);
}

/* In a file, sqlite:RELATIVE is relative to the file's directory. */
static void config_file_relative_sqlite(void)
{
    const char *cases[][2] = {
        {"sqlite:data/x.db", "sqlite:%s/data/x.db"},
        {"sqlite::memory:", "sqlite::memory:"},
        {"sqlite:/abs/x.db", "sqlite:/abs/x.db"},
        {"postgresql:///d", "postgresql:///d"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char path[PATH_MAX + 16], want[PATH_MAX + 64];
        struct hp_config c;
        snprintf(path, sizeof path, "%s/h.ini", tmpdir);
        FILE *f = fopen(path, "w");
        fprintf(f, "[server]\ndb = %s\n", cases[i][0]);
        fclose(f);
        hp_config_defaults(&c);
        CHECK(hp_config_load(&c, path) == 0);
        snprintf(want, sizeof want, cases[i][1], tmpdir);
        CHECK_STR(c.db, want);
        hp_config_free(&c);
        remove(path);
    }
}

/* ---- the same rules on both engines
 * ------------------------------------------
 */

/* hp_db_changes: rows an INSERT, UPDATE, DELETE (or MERGE) changed; 0 for a
 * SELECT (PostgreSQL's command tag counts its rows), for DDL after a write
 * (SQLite's sqlite3_changes64 kept the earlier count), and after a failed
 * call, whose runs were not kept. */
static void changes_counts_only_writes(void)
{
    hp_req req;
    hp_db_pool *p = open_pool(&(struct hp_db_pool_opts){.max_conns = 1});
    hp_db *db = acquire(p);
    const char *t = tbl("chg");
    drop(db, "chg");
    CHECK(hp_db_exec_script(db, sqlf("CREATE TABLE %s (a INTEGER PRIMARY "
                                     "KEY, b TEXT)",
                                     t)) == HP_OK);
    CHECK(hp_db_changes(db) == 0);
    CHECK(hp_db_exec(db, sqlf("INSERT INTO %s VALUES (1, 'x'), (2, 'y')", t)) ==
          HP_OK);
    CHECK(hp_db_changes(db) == 2);
    hp_db_res *r = hp_db_query(db, sqlf("SELECT * FROM %s", t));
    CHECK(r != NULL && hp_db_changes(db) == 0);
    hp_db_res_free(r);
    CHECK(hp_db_exec(db, sqlf("SELECT * FROM %s", t)) == HP_OK);
    CHECK(hp_db_changes(db) == 0);
    hp_db_val ids[3] = {HP_INT(1), HP_INT(2), HP_INT(9)};
    CHECK(hp_db_exec_many(db, sqlf("SELECT * FROM %s WHERE a = $1", t), 3, 1,
                          ids) == HP_OK);
    CHECK(hp_db_changes(db) == 0);
    r = hp_db_query(db, sqlf("INSERT INTO %s VALUES (3, 'z') RETURNING a", t));
    CHECK(r != NULL && hp_db_changes(db) == 1);
    hp_db_res_free(r);
    CHECK(hp_db_exec(db, sqlf("UPDATE %s SET b = 'n' WHERE a > 100", t)) ==
          HP_OK);
    CHECK(hp_db_changes(db) == 0);
    CHECK(hp_db_exec(db, sqlf("DELETE FROM %s WHERE a = 3", t)) == HP_OK);
    CHECK(hp_db_changes(db) == 1);
    CHECK(hp_db_exec_script(db, sqlf("CREATE INDEX %s_b ON %s (b)", t, t)) ==
          HP_OK);
    CHECK(hp_db_changes(db) == 0);
    hp_db_pool_release(db);

    /* a batch that fails in its third run, in a request: nothing is kept,
     * and changes says 0 */
    fake_request(&req, "POST");
    db = hp_db_from(&req, p);
    hp_db_val rows[3] = {HP_INT(10), HP_INT(11), HP_INT(1)};
    CHECK(hp_db_exec_many(db, sqlf("INSERT INTO %s (a) VALUES ($1)", t), 3, 1,
                          rows) == -1);
    CHECK_STR(hp_db_sqlstate(db), "23505");
    CHECK(hp_db_changes(db) == 0);
    CHECK(end_request(&req) == 500);
    CHECK(count_rows(p, "chg") == 2);
    db = acquire(p);
    drop(db, "chg");
    hp_db_pool_release(db);
    hp_db_pool_close(p);
}

/* After a statement of a request's transaction failed, every later one
 * (single, batch, script) is refused with 25P02 until the transaction ends,
 * on both engines, also when the failure was in the prepare (a missing
 * table); ROLLBACK TO a savepoint undoes it. A pool handle has no
 * transaction: nothing is refused. */
static void failure_refuses_the_rest(void)
{
    hp_req req;
    hp_db_pool *p = open_pool(&(struct hp_db_pool_opts){.max_conns = 1});
    hp_db *db = acquire(p);
    const char *t = tbl("refuse");
    drop(db, "refuse");
    hp_db_exec_script(db, sqlf("CREATE TABLE %s (a INTEGER UNIQUE)", t));
    hp_db_pool_release(db);
    char ins[128];
    snprintf(ins, sizeof ins, "INSERT INTO %s VALUES ($1)", t);
    hp_db_val two[2] = {HP_INT(7), HP_INT(8)};

    for (int method = 0; method < 2; method++) {
        fake_request(&req, method ? "POST" : "GET");
        db = hp_db_from(&req, p);
        CHECK(hp_db_exec(db, "UPDATE no_such_table_xyz SET x = 1") == -1);
        CHECK_STR(hp_db_sqlstate(db), "42P01");
        CHECK(hp_db_execv(db, ins, HP_INT(1)) == -1);
        CHECK_STR(hp_db_sqlstate(db), "25P02");
        CHECK_STR(hp_db_error(db), "current transaction is aborted, commands "
                                   "ignored until end of transaction block");
        CHECK(hp_db_exec_many(db, ins, 2, 1, two) == -1);
        CHECK_STR(hp_db_sqlstate(db), "25P02");
        CHECK(hp_db_exec_script(db, sqlf("INSERT INTO %s VALUES (3)", t)) ==
              -1);
        CHECK_STR(hp_db_sqlstate(db), "25P02");
        CHECK(hp_db_query(db, "SELECT 1") == NULL);
        CHECK(end_request(&req) == 500);
    }
    CHECK(count_rows(p, "refuse") == 0);

    /* savepoints recover, both spellings, then the request commits */
    fake_request(&req, "POST");
    db = hp_db_from(&req, p);
    CHECK(hp_db_execv(db, ins, HP_INT(1)) == HP_OK);
    CHECK(hp_db_exec(db, "SAVEPOINT s1") == HP_OK);
    CHECK(hp_db_execv(db, ins, HP_INT(1)) == -1); /* 23505 */
    CHECK(hp_db_execv(db, ins, HP_INT(2)) == -1);
    CHECK_STR(hp_db_sqlstate(db), "25P02");
    CHECK(hp_db_exec(db, "ROLLBACK TO SAVEPOINT s1") == HP_OK);
    CHECK(hp_db_execv(db, ins, HP_INT(2)) == HP_OK);
    CHECK(hp_db_exec(db, "SAVEPOINT s2") == HP_OK);
    CHECK(hp_db_exec_many(db, ins, 2, 1, (hp_db_val[]){HP_INT(3), HP_INT(2)}) ==
          -1);
    CHECK(hp_db_exec(db, "ROLLBACK TO s2") == HP_OK);
    CHECK(hp_db_exec(db, "RELEASE SAVEPOINT s2") == HP_OK);
    CHECK(end_request(&req) == 200);
    CHECK(count_rows(p, "refuse") == 2);

    /* a pool handle: each statement stands alone */
    db = acquire(p);
    CHECK(hp_db_exec(db, "UPDATE no_such_table_xyz SET x = 1") == -1);
    CHECK(hp_db_execv(db, ins, HP_INT(5)) == HP_OK);
    CHECK(hp_db_execv(db, ins, HP_INT(5)) == -1);
    CHECK(hp_db_execv(db, ins, HP_INT(6)) == HP_OK);
    drop(db, "refuse");
    hp_db_pool_release(db);
    hp_db_pool_close(p);
}

/* The request owns its transaction: COMMIT, ROLLBACK, BEGIN, END, START
 * TRANSACTION, ABORT are refused in it (25001) on both engines, as a single
 * statement, a batch or in a script; a function's or trigger's own
 * BEGIN ... END is not transaction control. An empty statement is 42601 on
 * both engines. */
static void tx_control_refused(void)
{
    hp_req req;
    hp_db_pool *p = open_pool(&(struct hp_db_pool_opts){.max_conns = 1});
    hp_db *db = acquire(p);
    const char *t = tbl("txc");
    drop(db, "txc");
    hp_db_exec_script(db, sqlf("CREATE TABLE %s (a INTEGER)", t));
    CHECK(hp_db_exec(db, "") == -1);
    CHECK_STR(hp_db_sqlstate(db), "42601");
    CHECK_STR(hp_db_error(db), "empty statement");
    CHECK(hp_db_query(db, " ; -- nothing\n/* at all */") == NULL);
    CHECK_STR(hp_db_sqlstate(db), "42601");
    CHECK(hp_db_exec(db, "BEGIN") == HP_OK); /* a pool handle may */
    CHECK(hp_db_exec(db, "COMMIT") == HP_OK);
    hp_db_pool_release(db);
    char ins[128];
    snprintf(ins, sizeof ins, "INSERT INTO %s VALUES (1)", t);
    const char *bad[] = {"COMMIT",
                         " rollback",
                         "END",
                         "BEGIN",
                         "START TRANSACTION",
                         "ABORT",
                         "commit work",
                         "PREPARE TRANSACTION 'x'",
                         "prepare\ttransaction 'y'"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        fake_request(&req, "POST");
        db = hp_db_from(&req, p);
        CHECK(hp_db_exec(db, ins) == HP_OK);
        CHECK(hp_db_exec(db, bad[i]) == -1);
        CHECK_STR(hp_db_sqlstate(db), "25001");
        CHECK(end_request(&req) == 500);
    }
    fake_request(&req, "POST");
    db = hp_db_from(&req, p);
    CHECK(hp_db_exec(db, ins) == HP_OK);
    CHECK(hp_db_exec_many(db, "COMMIT", 2, 0, NULL) == -1);
    CHECK_STR(hp_db_sqlstate(db), "25001");
    CHECK(end_request(&req) == 500);
    fake_request(&req, "POST");
    db = hp_db_from(&req, p);
    CHECK(hp_db_exec_script(db, sqlf("INSERT INTO %s VALUES (2); COMMIT; "
                                     "INSERT INTO %s VALUES (3)",
                                     t, t)) == -1);
    CHECK_STR(hp_db_sqlstate(db), "25001");
    CHECK(end_request(&req) == 500);
    CHECK(count_rows(p, "txc") == 0);

    /* a body's BEGIN ... END, a CASE ... END, SAVEPOINT: fine */
    fake_request(&req, "POST");
    db = hp_db_from(&req, p);
    CHECK(hp_db_exec(db, "") == -1);
    CHECK_STR(hp_db_sqlstate(db), "42601");
    CHECK(end_request(&req) == 500);
    fake_request(&req, "POST");
    db = hp_db_from(&req, p);
    if (E->pg)
        CHECK(hp_db_exec_script(
                  db, sqlf("CREATE FUNCTION %s_f() RETURNS int AS $x$ BEGIN "
                           "PERFORM 1; RETURN 2; END; $x$ LANGUAGE plpgsql; "
                           "INSERT INTO %s SELECT %s_f()",
                           t, t, t)) == HP_OK);
    else
        CHECK(hp_db_exec_script(
                  db, sqlf("CREATE TRIGGER %s_tr AFTER DELETE ON %s BEGIN "
                           "SELECT 1; END; INSERT INTO %s VALUES (2)",
                           t, t, t)) == HP_OK);
    CHECK(hp_db_exec(db, "SAVEPOINT a") == HP_OK);
    CHECK(hp_db_exec(db, sqlf("INSERT INTO %s SELECT CASE WHEN 1 = 1 THEN 5 "
                              "END",
                              t)) == HP_OK);
    CHECK(hp_db_exec(db, "RELEASE SAVEPOINT a") == HP_OK);
    CHECK(end_request(&req) == 200);
    CHECK(count_rows(p, "txc") == 2);
    db = acquire(p);
    drop(db, "txc");
    if (E->pg)
        hp_db_exec_script(db, sqlf("DROP FUNCTION IF EXISTS %s_f()", t));
    hp_db_pool_release(db);
    hp_db_pool_close(p);
}

/* The lexer (db_lex.c) ends a comment, string or quoted identifier where
 * the engine does: PostgreSQL's nested comments, E'' escapes, U&'',
 * $tag$ quotes, B'' and X'', a string continued on another line, plain
 * strings by standard_conforming_strings (HP_LEX_PG: on, 2: off); SQLite's
 * [..] and `..` identifiers and unnested comments. Each case: how many
 * bytes the token at the start takes (0: none). */
static void lexer_rules(void)
{
#define OFF HP_LEX_PG_BACKSLASH
    static const struct {
        enum hp_db_lex_rules pg;
        const char *sql;
        size_t len;
        enum hp_db_lex_kind kind;
        bool escapes;
    } cases[] = {
        {true, "/* /* */ SELECT */ COMMIT", 18, HP_LEX_COMMENT, false},
        {false, "/* /* */ SELECT */ COMMIT", 8, HP_LEX_COMMENT, false},
        {true, "/* unterminated", 15, HP_LEX_COMMENT, false},
        {true, "-- x\r\nCOMMIT", 4, HP_LEX_COMMENT, false},
        {false, "-- x\nCOMMIT", 4, HP_LEX_COMMENT, false},
        {true, "'it''s'; COMMIT", 7, HP_LEX_STRING, false},
        {true, "'a\\'; COMMIT; '", 4, HP_LEX_STRING, false},
        {true, "E'\\''; COMMIT", 5, HP_LEX_STRING, false},
        {true, "e'a\\\\'; COMMIT", 6, HP_LEX_STRING, false},
        {true, "E'\\x53ET'", 9, HP_LEX_STRING, true},
        {false, "E'\\''; COMMIT", 0, HP_LEX_NONE, false},
        {true, "U&'\\0027'' x'; COMMIT", 13, HP_LEX_STRING, true},
        {true, "U&\"set\\005fconfig\"(1)", 18, HP_LEX_IDENT, true},
        {true, "\"a\"\"b\"; COMMIT", 6, HP_LEX_IDENT, false},
        {true, "$$ ' $$; COMMIT", 7, HP_LEX_STRING, false},
        {true, "$a$ $$ $a$; COMMIT", 10, HP_LEX_STRING, false},
        {true, "$1, 'x'", 0, HP_LEX_NONE, false},
        {false, "$$ x $$", 0, HP_LEX_NONE, false},
        {false, "[begin]; COMMIT", 7, HP_LEX_IDENT, false},
        {false, "`be``gin`; COMMIT", 9, HP_LEX_IDENT, false},
        {true, "[begin]", 0, HP_LEX_NONE, false},
        {true, "'a\\''; COMMIT; --'", 18, HP_LEX_STRING, false},
        {OFF, "'a\\''; COMMIT; --'", 5, HP_LEX_STRING, false},
        {OFF, "'a\\'; COMMIT; --'", 17, HP_LEX_STRING, false},
        {OFF, "'\\x53ET'", 8, HP_LEX_STRING, true},
        {OFF, "E'\\''; COMMIT", 5, HP_LEX_STRING, false},
        {OFF, "\"a\\\"; COMMIT", 4, HP_LEX_IDENT, false},
        {OFF, "$$ \\$$; COMMIT", 6, HP_LEX_STRING, false},
        {OFF, "U&'\\0027'' x'; COMMIT", 13, HP_LEX_STRING, true},
        {false, "'a\\''; x'", 9, HP_LEX_STRING, false},
        {true, "E'a'\n'x\\'' ; COMMIT; --'", 10, HP_LEX_STRING, false},
        {true, "'a' -- c\r\n 'b' x", 14, HP_LEX_STRING, false},
        {true, "'a'\n\n-- c\n'b\\'; x'", 14, HP_LEX_STRING, false},
        {true, "'a' 'b'", 3, HP_LEX_STRING, false},
        {true, "'a' /* */\n'b'", 3, HP_LEX_STRING, false},
        {true, "\"a\"\n\"b\"", 3, HP_LEX_IDENT, false},
        {false, "'a'\n'b'", 3, HP_LEX_STRING, false},
        {OFF, "B'1\\'; COMMIT; --'", 5, HP_LEX_STRING, false},
        {OFF, "x'1f'\n'\\'; COMMIT; --'", 9, HP_LEX_STRING, false},
        {true, "X'1''2'", 4, HP_LEX_STRING, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        struct hp_db_lex t;
        const char *s = cases[i].sql, *end = s + strlen(s);
        size_t got = (size_t)(hp_db__lex_skip(s, end, cases[i].pg, &t) - s);
        if (got != cases[i].len || t.kind != cases[i].kind ||
            t.escapes != cases[i].escapes) {
            fprintf(stderr, "  rules %d %s: %zu kind %d escapes %d\n",
                    (int)cases[i].pg, s, got, (int)t.kind, (int)t.escapes);
            CHECK(false);
        }
    }
#undef OFF
    /* A client-only encoding's characters whole: their ASCII bytes 0x80 */
    char buf[16], big[400], *o;
    CHECK(hp_db__lex_mb_plain("SELECT 1", HP_MB_SJIS, buf, sizeof buf) == NULL);
    CHECK(hp_db__lex_mb_plain("E'\x95\x5c'", HP_MB_NONE, buf, 16) == NULL);
    CHECK(hp_db__lex_mb_plain("E'\xb1\\'", HP_MB_SJIS, buf, 16) == NULL);
    o = hp_db__lex_mb_plain("E'\x95\x5c'", HP_MB_SJIS, buf, sizeof buf);
    CHECK(o == buf && strcmp(o, "E'\x95\x80'") == 0);
    o = hp_db__lex_mb_plain("'\x81\x30\x81\x39\xa5\x5c'", HP_MB_GB18030, buf,
                            sizeof buf);
    CHECK(o == buf && strcmp(o, "'\x81\x80\x81\x80\xa5\x80'") == 0);
    o = hp_db__lex_mb_plain("\x8f\x41\x42\x43", HP_MB_JOHAB, buf, 16);
    CHECK(o == buf && strcmp(o, "\x8f\x80\x80\x43") == 0);
    memset(big, 'x', sizeof big - 3);
    memcpy(big + sizeof big - 3, "\xa5\x5c", 3);
    o = hp_db__lex_mb_plain(big, HP_MB_2, buf, sizeof buf);
    CHECK(o && o != buf && strlen(o) == sizeof big - 1 &&
          (unsigned char)o[sizeof big - 2] == 0x80);
    free(o);
    CHECK(hp_db__lex_mb_named("sjis") == HP_MB_SJIS &&
          hp_db__lex_mb_named("GB18030") == HP_MB_GB18030 &&
          hp_db__lex_mb_named("UTF8") == HP_MB_NONE &&
          hp_db__lex_mb_named(NULL) == HP_MB_NONE);
}

/* What the text of a PostgreSQL statement hides from a word test: the
 * session test reads it by PostgreSQL's rules and errs towards a reset. */
static void session_sql_lexing(void)
{
    static const char *const pg_dirty[] = {
        "/* /* */ x */ SET search_path = leaked",
        "/* /* */ x */ SET ROLE admin",
        "DO $$ BEGIN EXECUTE format('SET search_path = %I', 'x'); END $$",
        "do language plpgsql 'BEGIN NULL; END'",
        "SELECT U&\"set\\005fconfig\"('a.b', 'admin', false)",
        "SELECT U&\"pg_adv\\0069sory_lock\"(1)",
        "CREATE TABLE U&\"pg_t\\0065mp\".t (x int)",
        "SELECT set_config('a.b', E'admin\\', true)', false)",
        "SELECT set_config('a.b', 'x' /* , true */, false)",
        "SELECT '/*'; SET ROLE admin; SELECT '*/'",
        "SELECT '--'; SET ROLE admin",
        "SET \"search_path\" = x",
        "SELECT query_to_xml(E'\\x53ET search_path = x', true, true, '')",
        "SET local.f9 = 'x'",
        "SET transaction . f9 = 1",
        "set constraints/* c */.f9 = 1",
    };
    static const char *const pg_clean[] = {
        "SELECT E'it\\'s', 'x'",
        "SELECT $$ plain text $$",
        "SELECT set_config('a.b', 'x', true)",
        "SELECT 1 /* nested /* set role x */ comment */",
        "INSERT INTO t VALUES (1) ON CONFLICT (a) DO UPDATE SET a = 2",
        "SET LOCAL search_path = x",
        "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
        "SET CONSTRAINTS ALL DEFERRED",
    };
    for (size_t i = 0; i < sizeof pg_dirty / sizeof *pg_dirty; i++)
        if (!hp_db__changes_session(pg_dirty[i], true)) {
            fprintf(stderr, "  not seen: %s\n", pg_dirty[i]);
            CHECK(false);
        }
    for (size_t i = 0; i < sizeof pg_clean / sizeof *pg_clean; i++)
        if (hp_db__changes_session(pg_clean[i], true)) {
            fprintf(stderr, "  seen: %s\n", pg_clean[i]);
            CHECK(false);
        }
    /* SQLite's comments do not nest: the PRAGMA after the first close */
    CHECK(hp_db__changes_session("/* /* */ PRAGMA x = 1 /* */", false));
    CHECK(!hp_db__changes_session("SELECT 1 AS [set]", false));
    /* standard_conforming_strings off: '\'' is a quote, the SET follows */
    CHECK(hp_db__changes_session("SELECT 'a\\''; SET ROLE x; --'",
                                 HP_LEX_PG_BACKSLASH));
    CHECK(!hp_db__changes_session("SELECT 'it\\'s'", HP_LEX_PG_BACKSLASH));
    CHECK(hp_db__changes_session("SELECT set_config('a.b', box'\\', true)'"
                                 ", false)",
                                 HP_LEX_PG_BACKSLASH));
}

/* One request on p: a row written, then the statements pre (run one by
 * one; NULL ends them), then sql as a script, refused (25001) or not as
 * expected; the request then fails and rolls back, so the row must not
 * survive: a COMMIT the screen did not see would have kept it. */
static void scs_case(hp_db_pool *p, const char *const *pre, const char *sql,
                     bool refused)
{
    hp_req req;
    fake_request(&req, "POST");
    hp_db *db = hp_db_from(&req, p);
    CHECK(hp_db_exec(db, sqlf("INSERT INTO %s VALUES (1)", tbl("scs"))) ==
          HP_OK);
    for (; pre && *pre; pre++)
        CHECK(hp_db_exec(db, *pre) == HP_OK);
    int rc = hp_db_exec_script(db, sql);
    if (refused ? rc != -1 || strcmp(hp_db_sqlstate(db), "25001") != 0
                : rc != HP_OK) {
        fprintf(stderr, "  %s (%d %s): %s\n",
                refused ? "not refused" : "refused", rc, hp_db_sqlstate(db),
                sql);
        CHECK(false);
    }
    hp_db_exec(db, "SELECT * FROM no_such_table_scs");
    CHECK(end_request(&req) == 500);
    long long n = count_rows(p, "scs");
    if (n != 0) {
        fprintf(stderr, "  the request's row survived its rollback: %s\n", sql);
        CHECK(false);
        hp_db *d = acquire(p);
        hp_db_exec_script(d, sqlf("DELETE FROM %s", tbl("scs")));
        hp_db_pool_release(d);
    }
}

/* The screen reads a plain '...' as the connection's server does: with
 * standard_conforming_strings off a backslash escapes in it too, so
 * 'a\''; COMMIT; --' is a string and then a COMMIT (which committed the
 * request's transaction behind the screen), with it on one string. The
 * setting as a page's SET, set_config, SET LOCAL, a pool's init_sql (a
 * role's default is the same report at connect), turned back on, undone by
 * ROLLBACK TO; a script is parsed whole before its own SET runs. And a
 * string continued on the next line keeps its E'' rules. */
static void pg_standard_conforming_strings(void)
{
    static const char both[] = "SELECT 'a\\''; COMMIT; --'";
    static const char one[] = "SELECT 'a\\'; COMMIT; --'";
    static const char *const off[] = {"SET standard_conforming_strings = off",
                                      NULL};
    static const char *const off_fn[] = {
        "SELECT set_config('standard_conforming_strings', 'off', false)", NULL};
    static const char *const off_local[] = {
        "SET LOCAL standard_conforming_strings = off", NULL};
    static const char *const off_on[] = {
        "SET standard_conforming_strings = off",
        "SET standard_conforming_strings TO on", NULL};
    static const char *const undone[] = {
        "SAVEPOINT s", "SET standard_conforming_strings = off",
        "ROLLBACK TO SAVEPOINT s", NULL};
    hp_db_pool *p = open_pool(&(struct hp_db_pool_opts){.max_conns = 1});
    hp_db *db = acquire(p);
    drop(db, "scs");
    CHECK(hp_db_exec_script(
              db, sqlf("CREATE TABLE %s (a INTEGER)", tbl("scs"))) == HP_OK);
    hp_db_pool_release(db);

    scs_case(p, NULL, both, false); /* on: one string */
    scs_case(p, off, both, true);
    scs_case(p, NULL, both, false); /* the reset put it back on */
    scs_case(p, off_fn, both, true);
    scs_case(p, off_local, both, true);
    scs_case(p, off_on, both, false);
    scs_case(p, undone, both, false);
    scs_case(p, off, one, false); /* off: one string */
    scs_case(p, NULL, one, true);
    scs_case(p, NULL,
             "SET standard_conforming_strings = off; "
             "SELECT 'a\\''; COMMIT; --'",
             false);
    scs_case(p, NULL, "SELECT E'a'\n'x\\'' ; COMMIT; --'", true);
    scs_case(p, NULL, "SELECT E'a' -- c\r\n\t'x\\'' ; COMMIT; --'", true);
    scs_case(p, off, "SELECT 'a'\n'x\\'' ; COMMIT; --'", true);
    db = acquire(p);
    hp_db_res *r = hp_db_query(db, "SHOW standard_conforming_strings");
    CHECK(r && hp_db_next(r) && strcmp(hp_db_text(r, 0), "on") == 0);
    hp_db_res_free(r);
    hp_db_pool_release(db);
    hp_db_pool_close(p);

    p = open_pool(&(struct hp_db_pool_opts){
        .max_conns = 1, .init_sql = "SET standard_conforming_strings = off"});
    scs_case(p, NULL, both, true);
    scs_case(p, NULL, one, false);
    db = acquire(p);
    drop(db, "scs");
    hp_db_pool_release(db);
    hp_db_pool_close(p);
}

/* A client-only encoding (SJIS, BIG5, GBK, UHC, GB18030, JOHAB) has
 * multibyte characters with ASCII bytes in them: SJIS's 0x95 0x5C is one
 * character, no backslash, to the server (it converts the text before
 * reading it). The screen reads it so: E'<0x95 0x5C>'; COMMIT; --' is a
 * string and a COMMIT, and so is $<0x95 0x5C>$ ' $<0x95 0x5C>$; COMMIT;
 * a half-width kana (0xB1) is one byte, the backslash after it is one (a
 * \' there the server refuses: backslash_quote = safe_encoding). */
static void pg_client_only_encoding(void)
{
    static const char *const sjis[] = {"SET client_encoding = 'SJIS'", NULL};
    static const char *const big5[] = {
        "SELECT set_config('client_encoding', 'BIG5', false)", NULL};
    hp_db_pool *p = open_pool(&(struct hp_db_pool_opts){.max_conns = 1});
    hp_db *db = acquire(p);
    drop(db, "scs");
    CHECK(hp_db_exec_script(
              db, sqlf("CREATE TABLE %s (a INTEGER)", tbl("scs"))) == HP_OK);
    hp_db_pool_release(db);
    scs_case(p, sjis, "SELECT E'\x95\x5c'; COMMIT; --'", true);
    scs_case(p, sjis, "SELECT E'\x95\x5c''; COMMIT; --'", false);
    scs_case(p, sjis, "SELECT $\x95\x5c$ ' $\x95\x5c$; COMMIT; --'", true);
    scs_case(p, sjis, "SELECT E'\xb1\\\\'; COMMIT; --'", true);
    scs_case(p, big5, "SELECT E'\xa5\x5c'; COMMIT; --'", true);
    scs_case(p, NULL, "SELECT E'\xc3\xa9\\'; COMMIT; --'", false); /* UTF8 */
    db = acquire(p);
    hp_db_res *r = hp_db_query(db, "SHOW client_encoding");
    CHECK(r && hp_db_next(r) && strcmp(hp_db_text(r, 0), "UTF8") == 0);
    hp_db_res_free(r);
    drop(db, "scs");
    hp_db_pool_release(db);
    hp_db_pool_close(p);
}

/* Transaction control the old word test let through (a column named begin,
 * an escape string, a nested comment, quoted identifiers; the END after a
 * trigger named begin), refused with 25001 on the engine that reads it so;
 * a PostgreSQL BEGIN ATOMIC body is not transaction control. */
static void tx_control_lexing(void)
{
    hp_req req;
    hp_db_pool *p = open_pool(&(struct hp_db_pool_opts){.max_conns = 1});
    hp_db *db = acquire(p);
    const char *t = tbl("txl");
    drop(db, "txl");
    hp_db_exec_script(db, sqlf("CREATE TABLE %s (a INTEGER)", t));
    hp_db_pool_release(db);
    const char *both[] = {
        "SELECT 1 AS begin; COMMIT",
        "SELECT CASE WHEN 1 = 1 THEN 2 END AS begin; COMMIT",
        "SELECT 1 AS \"be\"\"gin\"; COMMIT",
        "START /* x */ TRANSACTION",
    };
    const char *pg[] = {
        "SELECT E'\\''; COMMIT; SELECT 'x'",
        "/* /* */ SELECT */ COMMIT",
        "SELECT $a$ ' $a$; COMMIT",
        "SELECT U&'\\0027'''; COMMIT; SELECT 'x'",
        /* a column begin aliased atomic inside the body opens nothing */
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC "
        "SELECT begin atomic FROM (SELECT 1 AS begin) s; END; END",
    };
    char trigger[160]; /* sqlf's buffer is reused */
    snprintf(trigger, sizeof trigger,
             "CREATE TRIGGER begin AFTER INSERT ON %s BEGIN SELECT 1; END; "
             "END",
             t);
    const char *sqlite[] = {
        "SELECT 1 AS [begin]; COMMIT",
        "SELECT 1 AS `begin`; END",
        trigger,
    };
    const char **more = E->pg ? pg : sqlite;
    size_t nmore =
        E->pg ? sizeof pg / sizeof *pg : sizeof sqlite / sizeof *sqlite;
    for (size_t i = 0; i < sizeof both / sizeof *both + nmore; i++) {
        const char *sql = i < sizeof both / sizeof *both
                              ? both[i]
                              : more[i - sizeof both / sizeof *both];
        fake_request(&req, "POST");
        db = hp_db_from(&req, p);
        CHECK(hp_db_exec(db, sqlf("INSERT INTO %s VALUES (1)", t)) == HP_OK);
        if (hp_db_exec_script(db, sql) != -1 ||
            strcmp(hp_db_sqlstate(db), "25001") != 0) {
            fprintf(stderr, "  not refused (%s): %s\n", hp_db_sqlstate(db),
                    sql);
            CHECK(false);
        }
        CHECK(strstr(hp_db_error(db) ? hp_db_error(db) : "",
                     "is not allowed in a request's transaction") != NULL);
        CHECK(end_request(&req) == 500);
    }
    CHECK(count_rows(p, "txl") == 0);
    /* Not transaction control: ROLLBACK TO with a comment before TO (it
     * also undoes a failure); SQLite: a trigger's column named end. */
    fake_request(&req, "POST");
    db = hp_db_from(&req, p);
    CHECK(hp_db_exec(db, "SAVEPOINT a") == HP_OK);
    CHECK(hp_db_exec(db, "SELECT * FROM no_such_table_txl") == -1);
    CHECK(hp_db_exec(db, "ROLLBACK /* undo */ TO -- it\n SAVEPOINT a") ==
          HP_OK);
    CHECK(hp_db_exec(db, sqlf("INSERT INTO %s VALUES (5)", t)) == HP_OK);
    CHECK(end_request(&req) == 200);
    CHECK(count_rows(p, "txl") == 1);
    if (!E->pg) {
        fake_request(&req, "POST");
        db = hp_db_from(&req, p);
        CHECK(hp_db_exec_script(
                  db, sqlf("CREATE TABLE %s_log (end INTEGER); "
                           "CREATE TRIGGER %s_tr AFTER INSERT ON %s BEGIN "
                           "INSERT INTO %s_log (end) VALUES (new.a); END; "
                           "INSERT INTO %s VALUES (6)",
                           t, t, t, t, t)) == HP_OK);
        CHECK(end_request(&req) == 200);
        CHECK(count_rows(p, "txl") == 2);
        db = acquire(p);
        hp_db_exec_script(db, sqlf("DROP TABLE IF EXISTS %s_log", t));
        hp_db_pool_release(db);
    }
    db = acquire(p);
    hp_db_exec_script(db, sqlf("DELETE FROM %s", t));
    hp_db_pool_release(db);
    if (E->pg) { /* BEGIN ATOMIC ... END: a body, its ';' inside it */
        fake_request(&req, "POST");
        db = hp_db_from(&req, p);
        CHECK(hp_db_exec_script(
                  db, sqlf("CREATE FUNCTION %s_f() RETURNS int LANGUAGE sql "
                           "BEGIN ATOMIC SELECT 1; SELECT 2; END; "
                           "INSERT INTO %s SELECT %s_f()",
                           t, t, t)) == HP_OK);
        CHECK(end_request(&req) == 200);
        CHECK(count_rows(p, "txl") == 1);
    }
    db = acquire(p);
    drop(db, "txl");
    if (E->pg)
        hp_db_exec_script(db, sqlf("DROP FUNCTION IF EXISTS %s_f()", t));
    hp_db_pool_release(db);
    hp_db_pool_close(p);
}

/* Whether the script sql is refused by the screen, naming word (25001: not
 * SQLite's authorizer, which names COMMIT for an END, and runs what comes
 * before it first). */
static bool refused_naming(hp_db *db, const char *sql, const char *word)
{
    const char *err = hp_db_error(db);
    if (hp_db_exec_script(db, sql) == -1 &&
        strcmp(hp_db_sqlstate(db), "25001") == 0 &&
        (err = hp_db_error(db)) != NULL &&
        strncmp(err, word, strlen(word)) == 0 && err[strlen(word)] == ' ')
        return true;
    fprintf(stderr, "  not refused naming %s (%s: %s): %s\n", word,
            hp_db_sqlstate(db), err ? err : "", sql);
    return false;
}

/*
 * A routine's body opens only where the engine reads one (FRESH15-4, 5).
 * A table, view, index or parameter named trigger, function or procedure
 * with a column or alias begin (of a domain atomic on PostgreSQL) opens
 * none, so the END after it is refused by the screen, in the request's
 * transaction and in autocommit; each such script is valid, and on a pool
 * handle its END commits the transaction begun before it: the request's
 * would have been committed. A real body still opens where a column,
 * parameter or trigger named begin stands before it (new.begin in WHEN,
 * UPDATE OF begin, end, a number's '.', EXPLAIN), and the END or COMMIT
 * after a real body is still refused.
 */
static void tx_control_bodies(void)
{
    hp_req req;
    hp_db_pool *p = open_pool(&(struct hp_db_pool_opts){.max_conns = 1});
    hp_db *db = acquire(p);
    const char *t = tbl("txb"), *log = tbl("txb_log");
    drop(db, "txb");
    drop(db, "txb_log");
    CHECK(hp_db_exec_script(
              db, sqlf(E->pg ? "CREATE TABLE %s (a INTEGER, begin INTEGER)"
                             : "CREATE TABLE %s (a INTEGER, begin INTEGER, "
                               "end INTEGER)",
                       t)) == HP_OK);
    CHECK(hp_db_exec_script(db, sqlf("CREATE TABLE %s (n INTEGER); INSERT "
                                     "INTO %s VALUES (0)",
                                     log, log)) == HP_OK);
    hp_db_pool_release(db);
    char idx[128];
    snprintf(idx, sizeof idx, "CREATE INDEX trigger ON %s (begin); END", t);
    const char *sqlite_bad[] = {
        "CREATE TABLE trigger(begin); END",
        "CREATE TEMP TABLE trigger (begin INTEGER); END",
        "CREATE VIEW trigger AS SELECT 1 AS begin; END",
        "CREATE TABLE trigger AS SELECT 1 begin; END",
        idx,
    };
    const char *pg_bad[] = {
        "CREATE TEMP TABLE procedure (begin atomic); END",
        "CREATE TEMP TABLE function (begin atomic); END",
        "CREATE TEMP TABLE tx_b (procedure int, begin atomic); END",
        "CREATE TEMP VIEW procedure AS SELECT begin atomic FROM "
        "(SELECT 1 AS begin) s; END",
        "CREATE OR REPLACE TEMP VIEW function AS SELECT begin atomic "
        "FROM (SELECT 1 AS begin) s; END",
        "CREATE FUNCTION pg_temp.f(begin atomic) RETURNS int LANGUAGE sql "
        "RETURN 1; END",
        "CREATE FUNCTION pg_temp.g() RETURNS TABLE (begin atomic) "
        "LANGUAGE sql AS 'SELECT 1'; END",
        /* a real body after a parameter begin of type atomic */
        "CREATE PROCEDURE pg_temp.p(begin atomic) LANGUAGE sql "
        "BEGIN ATOMIC END; END",
    };
    const char **bad = E->pg ? pg_bad : sqlite_bad;
    size_t nbad = E->pg ? sizeof pg_bad / sizeof *pg_bad
                        : sizeof sqlite_bad / sizeof *sqlite_bad;
    const char *domain = "CREATE DOMAIN pg_temp.atomic AS int";
    const char *sqlite_drop[] = {"DROP TABLE trigger", "DROP TABLE trigger",
                                 "DROP VIEW trigger", "DROP TABLE trigger",
                                 "DROP INDEX trigger"};
    for (size_t i = 0; i < nbad; i++) {
        const char *cleanup = E->pg ? "DISCARD TEMP" : sqlite_drop[i];
        /* valid: its END commits a transaction (a pool handle's) */
        db = acquire(p);
        CHECK(!E->pg || hp_db_exec_script(db, domain) == HP_OK);
        CHECK(hp_db_exec(db, "BEGIN") == HP_OK);
        CHECK(db->drv->in_tx(db));
        if (hp_db_exec_script(db, bad[i]) != HP_OK || db->drv->in_tx(db)) {
            fprintf(stderr, "  did not commit (%s): %s\n",
                    hp_db_error(db) ? hp_db_error(db) : "", bad[i]);
            CHECK(false);
        }
        CHECK(hp_db_exec_script(db, cleanup) == HP_OK);
        hp_db_pool_release(db);
        /* refused, the request's transaction and in autocommit */
        for (int autocommit = 0; autocommit < 2; autocommit++) {
            fake_request(&req, "POST");
            db = hp_db_from(&req, p);
            if (autocommit)
                CHECK(hp_db_autocommit(db) == HP_OK);
            CHECK(hp_db_exec(db, sqlf("INSERT INTO %s VALUES (1)", log)) ==
                  HP_OK);
            CHECK(!E->pg || hp_db_exec_script(db, domain) == HP_OK);
            CHECK(refused_naming(db, bad[i], "END"));
            CHECK(end_request(&req) == (autocommit ? 200 : 500));
        }
        db = acquire(p); /* nothing of it was kept */
        CHECK(hp_db_exec_script(db, cleanup) == -1 || E->pg);
        CHECK(hp_db_exec_script(db, sqlf("DELETE FROM %s WHERE n = 1", log)) ==
              HP_OK);
        hp_db_pool_release(db);
    }

    /* real bodies: each runs in a request, which commits; then with END or
     * COMMIT after it, refused */
    char sq[6][256], pq[5][320];
    snprintf(sq[0], sizeof sq[0], /* FRESH15-4 */
             "CREATE TRIGGER %s_tr AFTER INSERT ON %s WHEN new.begin > 0 "
             "BEGIN UPDATE %s SET n = n + 1; END",
             t, t, log);
    snprintf(sq[1], sizeof sq[1],
             "CREATE TEMP TRIGGER %s_tr AFTER INSERT ON %s WHEN new.begin "
             "BEGIN UPDATE %s SET n = n + 1; END",
             t, t, log);
    snprintf(sq[2], sizeof sq[2],
             "CREATE TRIGGER %s_tr AFTER INSERT ON %s WHEN new.a > 0. "
             "BEGIN UPDATE %s SET n = n + 1; END",
             t, t, log);
    snprintf(sq[3], sizeof sq[3],
             "CREATE TRIGGER %s_tr AFTER UPDATE OF begin, end ON %s BEGIN "
             "UPDATE %s SET n = n + 1; END",
             t, t, log);
    snprintf(sq[4], sizeof sq[4],
             "CREATE TRIGGER begin INSERT ON %s BEGIN INSERT INTO %s "
             "SELECT 1 WHERE 0; UPDATE %s SET n = n + 1; END",
             t, log, log);
    snprintf(sq[5], sizeof sq[5],
             "EXPLAIN QUERY PLAN CREATE TRIGGER %s_tr AFTER INSERT ON %s "
             "WHEN new.begin BEGIN SELECT 1; END",
             t, t);
    snprintf(pq[0], sizeof pq[0],
             "CREATE DOMAIN pg_temp.atomic AS int; CREATE FUNCTION "
             "pg_temp.f(begin atomic) RETURNS int LANGUAGE sql BEGIN ATOMIC "
             "SELECT begin; END; UPDATE %s SET n = n + pg_temp.f(1)",
             log);
    snprintf(pq[1], sizeof pq[1],
             "CREATE PROCEDURE pg_temp.p(begin int) LANGUAGE sql BEGIN "
             "ATOMIC UPDATE %s SET n = n + begin; END; CALL pg_temp.p(1)",
             log);
    snprintf(pq[2], sizeof pq[2],
             "CREATE OR REPLACE FUNCTION pg_temp.g() RETURNS TABLE (begin "
             "int) LANGUAGE sql BEGIN ATOMIC SELECT CASE WHEN true THEN 1 "
             "END; END; UPDATE %s SET n = n + (SELECT begin FROM pg_temp.g())",
             log);
    snprintf(pq[3], sizeof pq[3],
             "CREATE PROCEDURE pg_temp.p() LANGUAGE sql BEGIN ATOMIC END; "
             "CALL pg_temp.p(); UPDATE %s SET n = n + 1",
             log);
    snprintf(pq[4], sizeof pq[4],
             "CREATE FUNCTION pg_temp.f() RETURNS int LANGUAGE sql "
             "BEGIN /* x */ ATOMIC SELECT 1; END; UPDATE %s SET n = n + 1",
             log);
    size_t ngood = E->pg ? 5 : 6;
    for (size_t i = 0; i < ngood; i++) {
        const char *good = E->pg ? pq[i] : sq[i];
        bool fires = E->pg || i != 5; /* EXPLAIN creates nothing */
        fake_request(&req, "POST");
        db = hp_db_from(&req, p);
        if (hp_db_exec_script(db, good) != HP_OK) {
            fprintf(stderr, "  refused (%s: %s): %s\n", hp_db_sqlstate(db),
                    hp_db_error(db) ? hp_db_error(db) : "", good);
            CHECK(false);
        }
        if (!E->pg)
            CHECK(hp_db_exec_script(
                      db, sqlf("INSERT INTO %s (a, begin) VALUES (1, 1); "
                               "UPDATE %s SET end = 1",
                               t, t)) == HP_OK);
        CHECK(end_request(&req) == 200);
        db = acquire(p);
        if (query_int(db, sqlf("SELECT n FROM %s", log)) != fires) {
            fprintf(stderr, "  did not run: %s\n", good);
            CHECK(false);
        }
        if (E->pg)
            CHECK(hp_db_exec_script(db, sqlf("DISCARD TEMP; UPDATE %s SET "
                                             "n = 0",
                                             log)) == HP_OK);
        else
            CHECK(hp_db_exec_script(
                      db, sqlf("DROP TRIGGER IF EXISTS %s_tr; DROP TRIGGER IF "
                               "EXISTS begin; DELETE FROM %s; UPDATE %s SET "
                               "n = 0",
                               t, t, log)) == HP_OK);
        hp_db_pool_release(db);
        static const char *const after[] = {"; END", "; COMMIT"};
        for (size_t k = 0; k < 2; k++) {
            char sql[400];
            snprintf(sql, sizeof sql, "%s%s", good, after[k]);
            fake_request(&req, "POST");
            db = hp_db_from(&req, p);
            CHECK(refused_naming(db, sql, after[k] + 2));
            CHECK(end_request(&req) == 500);
        }
    }
    db = acquire(p);
    drop(db, "txb");
    drop(db, "txb_log");
    hp_db_pool_release(db);
    hp_db_pool_close(p);
}

/* A batch on a pool handle (autocommit) is nrows statements each on its
 * own: a failing run keeps the earlier ones, on both engines; VACUUM, which
 * cannot run in a pipeline or a transaction block, runs as a batch too.
 * The pool's counters count a batch as nrows single calls. */
static void many_autocommit_like_single_runs(void)
{
    struct hp_db_pool_stats s0, s1;
    hp_db_pool *p = open_pool(&(struct hp_db_pool_opts){.max_conns = 1});
    hp_db *db = acquire(p);
    const char *t = tbl("mauto");
    drop(db, "mauto");
    hp_db_exec_script(db, sqlf("CREATE TABLE %s (a INTEGER UNIQUE)", t));
    const char *ins = sqlf("INSERT INTO %s VALUES ($1)", t);
    hp_db_val rows[4] = {HP_INT(1), HP_INT(2), HP_INT(1), HP_INT(3)};
    CHECK(hp_db_exec_many(db, ins, 4, 1, rows) == -1);
    CHECK_STR(hp_db_sqlstate(db), "23505");
    CHECK(hp_db_changes(db) == 0);
    CHECK(query_int(db, sqlf("SELECT count(*) FROM %s", t)) == 2);
    CHECK(hp_db_exec_many(db, "VACUUM", 2, 0, NULL) == HP_OK);
    CHECK(hp_db_exec_many(db, "VACUUM", 2, 0, NULL) == HP_OK);

    /* counters: 4 runs of a new statement are one prepare and 3 hits; of a
     * cached one, 4 hits */
    const char *sel = sqlf("SELECT a FROM %s WHERE a = $1", t);
    hp_db_res *res[4];
    hp_db_pool_stats(p, &s0);
    CHECK(hp_db_query_many(db, sel, 4, 1, rows, res) == HP_OK);
    hp_db_pool_stats(p, &s1);
    CHECK(s1.prepares - s0.prepares == 1 && s1.cache_hits - s0.cache_hits == 3);
    CHECK(hp_db_query_many(db, sel, 4, 1, rows, res) == HP_OK);
    hp_db_pool_stats(p, &s0);
    CHECK(s0.prepares == s1.prepares && s0.cache_hits - s1.cache_hits == 4);
    drop(db, "mauto");
    hp_db_pool_release(db);
    hp_db_pool_close(p);
}

/* PostgreSQL: a page's DEALLOCATE ALL in a request, with several cached
 * statements (and a cache of one, whose eviction DEALLOCATEs): no statement
 * fails for it. When the server forgot them behind the dispatch's back
 * (26000), one statement fails, and every other one of the connection is
 * forgotten with it (the write check and read guard too). */
static void pg_deallocate_forgets_all(void)
{
    for (int cap = 1; cap <= 8; cap += 7) {
        hp_db_pool *p = open_pool(
            &(struct hp_db_pool_opts){.max_conns = 1, .stmt_cache = cap});
        hp_req req;
        fake_request(&req, "GET");
        hp_db *db = hp_db_from(&req, p);
        for (int round = 0; round < 3; round++) {
            CHECK(query_int(db, "SELECT 1") == 1);
            CHECK(query_int(db, "SELECT 2") == 2);
            CHECK(query_int(db, "SELECT 3") == 3);
            if (round == 1)
                CHECK(hp_db_exec(db, "DEALLOCATE ALL") == HP_OK);
        }
        CHECK(end_request(&req) == 200);
        hp_db_pool_close(p);
    }
    hp_db_pool *p = open_pool(&(struct hp_db_pool_opts){.max_conns = 1});
    hp_db *db = acquire(p);
    CHECK(query_int(db, "SELECT 1") == 1 && query_int(db, "SELECT 2") == 2);
    CHECK(db->drv->script(db, "DEALLOCATE ALL") == 0); /* behind our back */
    CHECK(query_int(db, "SELECT 1") == -999);
    CHECK_STR(hp_db_sqlstate(db), "26000");
    CHECK(query_int(db, "SELECT 2") == 2);
    CHECK(query_int(db, "SELECT 1") == 1);
    hp_db_pool_release(db);
    long long v;
    CHECK(one_statement(p, "SELECT 40 + 2", &v) == 200 && v == 42);
    hp_db_pool_close(p);
}

/* ---- the runner ------------------------------------------------------------
 */

static int rm_entry(const char *path, const struct stat *st, int type,
                    struct FTW *f)
{
    return remove(path);
}

#define RUN_ON(eng, fn)                                                        \
    do {                                                                       \
        E = &(eng);                                                            \
        char t_name[96];                                                       \
        snprintf(t_name, sizeof t_name, "%s[%s]", #fn, E->name);               \
        int t_before = t_failed_checks;                                        \
        fn();                                                                  \
        if (t_failed_checks == t_before) {                                     \
            t_passed++;                                                        \
            printf("ok   %s\n", t_name);                                       \
        } else {                                                               \
            t_failed++;                                                        \
            printf("FAIL %s\n", t_name);                                       \
        }                                                                      \
        fflush(stdout);                                                        \
    } while (0)

#define RUN_ALL(fn)                                                            \
    do {                                                                       \
        for (int e_ = 0; e_ < nengines; e_++)                                  \
            RUN_ON(engines[e_], fn);                                           \
        if (nengines == 1)                                                     \
            printf("skip %s[pg]: no HOTPUB_PG_URL\n", #fn);                    \
    } while (0)

#define RUN_PG(fn)                                                             \
    do {                                                                       \
        if (nengines == 2)                                                     \
            RUN_ON(engines[1], fn);                                            \
        else                                                                   \
            printf("skip %s[pg]: no HOTPUB_PG_URL\n", #fn);                    \
    } while (0)

int main(int argc, char **argv)
{
    T_INIT(argc, argv); /* an argument: only the tests named like it */
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    engines[0] = (struct engine){.name = "sqlite"};
    snprintf(engines[0].url, sizeof engines[0].url, "sqlite:%s/t.db", tmpdir);
    nengines = 1;
    const char *pg = getenv("HOTPUB_PG_URL");
    if (pg && *pg) {
        engines[1] = (struct engine){.name = "pg", .pg = true};
        snprintf(engines[1].url, sizeof engines[1].url, "%s", pg);
        nengines = 2;
    }

    RUN_ALL(pool_acquire_release);
    RUN_ALL(pool_timeout);
    RUN_ALL(pool_no_wait);
    RUN_ALL(pool_max_lifetime);
    RUN_ALL(pool_close_while_in_use);
    T_RUN(bad_urls);
    T_RUN(memory_database_is_one_connection);
    T_RUN(driver_tables);
    T_RUN(core_results);
    T_RUN(core_text_ints);
    RUN_ALL(driver_tx_state);
    RUN_ALL(params_text);
    RUN_ALL(params_typed);
    RUN_ALL(params_int_extremes);
    RUN_ALL(params_repeated_and_counted);
    RUN_ALL(results_by_name);
    RUN_ALL(errors_and_sqlstates);
    RUN_ALL(stmt_cache_reuse);
    RUN_ALL(stmt_cache_off);
    RUN_ALL(stmt_cache_schema_change);
    RUN_ALL(rollback_on_checkout);
    RUN_ALL(release_rolls_back);
    RUN_PG(pg_dead_connection_replaced);
    RUN_ALL(concurrent_inserts);
    T_RUN(sqlite_deleted_file_reopened);
    T_RUN(sqlite_deleted_dir_not_recreated);
    T_RUN(sqlite_check_interval);
    T_RUN(sqlite_check_cost);
    T_RUN(sqlite_concurrent_first_open);
    RUN_ALL(request_commit_and_rollback);
    RUN_ALL(request_pool_exhausted_503);
    RUN_ALL(pool_full_wait_hooked);
    RUN_ALL(pool_waiters_one_queue);
    RUN_ALL(pool_handed_as_wait_ends);
    RUN_PG(pg_hook_carries_the_waits);
    RUN_PG(pg_hook_timeout_drops_connection);
    RUN_ALL(request_first_statement_fails);
    RUN_ALL(request_autocommit);
    RUN_PG(pg_commit_waits_unless_nothing_written);
    RUN_PG(pg_serializable_failure_surfaces);
    RUN_PG(pg_deallocate_all);
    RUN_ALL(many_like_single_runs);
    RUN_ALL(many_failure_in_the_middle);
    RUN_ALL(many_large_batch);
    RUN_PG(pg_many_round_trips);
    RUN_ALL(changes_counts_only_writes);
    RUN_ALL(failure_refuses_the_rest);
    RUN_ALL(tx_control_refused);
    T_RUN(lexer_rules);
    RUN_ALL(tx_control_lexing);
    RUN_ALL(tx_control_bodies);
    RUN_ALL(many_autocommit_like_single_runs);
    RUN_PG(pg_deallocate_forgets_all);
    T_RUN(session_sql_words);
    T_RUN(session_sql_lexing);
    RUN_PG(pg_standard_conforming_strings);
    RUN_PG(pg_client_only_encoding);
    RUN_ALL(session_state_not_leaked);
    RUN_ALL(clean_connection_not_reset);
    RUN_ALL(failed_reset_drops_connection);
    RUN_ALL(reset_cost);
    T_RUN(default_path);
    T_RUN(config_keys);
    T_RUN(config_file_relative_sqlite);

    nftw(tmpdir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
    T_DONE();
}
