/*
 * db.c - the database layer: connection pools, the per-request transactional
 * handle (hp_db(req)), statements with bound parameters, results, errors,
 * and the default pool the server opens from its configuration.
 *
 * Owns: struct hp_db_pool and its locking, the checkout health check, the
 * per-connection statement cache, struct hp_db_res, error recording and
 * logging, the request's transaction (through struct hp_resource), the
 * default database path, the "pools" part of the status JSON.
 * May not touch: any engine API (db_sqlite.c and db_pg.c do), the request
 * lifecycle's order (publish.c), HTTP (server.c).
 *
 * Locking: one mutex per pool guards its idle list and counters; a waiter
 * sleeps on the pool's condvar with a deadline. No engine call (connect,
 * ROLLBACK, a liveness probe) is ever made with the pool's mutex held, so a
 * slow database never stalls threads that only want an idle connection. A
 * connection being opened holds a reserved slot (size counts it).
 *
 * The request's transaction: see the resource callbacks near the end. The
 * real COMMIT happens when the request releases its resources, after every
 * module's commit hook has said yes, so a failing commit hook still rolls
 * the database back (docs/database.md, "Transactions").
 */
#include "db.h"
#include "db_drivers.h"
#include "request.h"

#include <assert.h>

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define DEF_ACQUIRE_MS 5000
#define DEF_LIFETIME_S 3600
#define DEF_STMT_CACHE 64
#define LOG_SQL_MAX 300 /* SQL longer than this is cut in the log */

struct hp_db_pool {
    const struct hp_db_driver *drv;
    char *target; /* what the driver connects to: a path or a URL     */
    char *shown;  /* the URL without its password, for logs/status    */
    char *name;
    char *init_sql;
    int max, timeout_ms, lifetime_s, stmt_cap;
    bool mkdir_parent; /* the default SQLite file: create its directory */

    pthread_mutex_t mu;
    pthread_cond_t cv;
    hp_db *idle; /* most recently used first                      */
    unsigned size, in_use, nidle, waiters;
    bool closing;
    unsigned long long timeouts, connects, discarded;
    atomic_ullong acquires, errors, prepares, cache_hits;

    hp_db_pool *reg_next, *reg_prev; /* every open pool, for status      */
};

static pthread_mutex_t registry_mu = PTHREAD_MUTEX_INITIALIZER;
static hp_db_pool *registry;
static hp_db_pool *default_pool;

/* ---- small helpers ------------------------------------------------------- */

static char *msg_dup(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

static char *msg_dup(const char *fmt, ...)
{
    struct hp_buf b = {0};
    va_list ap;
    va_start(ap, fmt);
    hp_buf_vprintf(&b, fmt, ap);
    va_end(ap);
    return b.p ? b.p : hp_xstrdup("");
}

static void set_err(char **err, char *msg)
{
    if (err)
        *err = msg;
    else
        free(msg);
}

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

static struct timespec deadline_after(int ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

/* ---- URLs ------------------------------------------------------------------
 */

/* The engines this server speaks; each says which URLs it takes. */
static const struct hp_db_driver *const drivers[] = {
    &hp_db_sqlite_driver,
    &hp_db_pg_driver,
};

/* The driver that takes url, and what it connects to; NULL if none does. */
static const struct hp_db_driver *driver_for(const char *url,
                                             const char **target)
{
    for (size_t i = 0; i < sizeof drivers / sizeof *drivers; i++)
        if ((*target = drivers[i]->match(url)) != NULL)
            return drivers[i];
    return NULL;
}

/* The URL for logs and the status page: "user:secret@" loses the secret,
 * and so does a password=... parameter. */
static char *redact_url(const char *url)
{
    struct hp_buf b = {0};
    const char *scheme = strstr(url, "://");
    const char *auth_end = scheme ? strpbrk(scheme + 3, "@/?") : NULL;
    const char *p = url;

    if (auth_end && *auth_end == '@') {
        const char *colon =
            memchr(scheme + 3, ':', (size_t)(auth_end - scheme - 3));
        if (colon) {
            hp_buf_append(&b, url, (size_t)(colon - url));
            hp_buf_puts(&b, ":***");
            p = auth_end;
        }
    }
    for (const char *pw; (pw = strstr(p, "password=")) != NULL;) {
        hp_buf_append(&b, p, (size_t)(pw - p));
        hp_buf_puts(&b, "password=***");
        p = pw + 9 + strcspn(pw + 9, "&");
    }
    hp_buf_puts(&b, p);
    return b.p ? b.p : hp_xstrdup("");
}

/* ---- the pool registry (for the status page) ------------------------------
 */

static void registry_add(hp_db_pool *p)
{
    pthread_mutex_lock(&registry_mu);
    p->reg_next = registry;
    if (registry)
        registry->reg_prev = p;
    registry = p;
    pthread_mutex_unlock(&registry_mu);
}

static void registry_remove(hp_db_pool *p)
{
    pthread_mutex_lock(&registry_mu);
    if (p->reg_prev)
        p->reg_prev->reg_next = p->reg_next;
    else if (registry == p)
        registry = p->reg_next;
    if (p->reg_next)
        p->reg_next->reg_prev = p->reg_prev;
    p->reg_next = p->reg_prev = NULL;
    pthread_mutex_unlock(&registry_mu);
}

/* ---- connections -----------------------------------------------------------
 */

static void stmt_cache_clear(hp_db *db, bool tell_server);

static void mkdir_parent(const char *path)
{
    char *dir = hp_xstrdup(path);
    char *slash = strrchr(dir, '/');
    if (slash && slash != dir) {
        *slash = '\0';
        hp_mkdirs(dir, 0700);
    }
    free(dir);
}

/* Open a new connection for p (a slot is already reserved). */
static hp_db *conn_open(hp_db_pool *p, char **err)
{
    hp_db *db = hp_xcalloc(1, sizeof *db);
    db->pool = p;
    db->drv = p->drv;
    if (p->stmt_cap > 0)
        db->stmts = hp_xcalloc((size_t)p->stmt_cap, sizeof *db->stmts);
    if (p->mkdir_parent)
        mkdir_parent(p->target);
    if (p->drv->connect(db, p->target, p->init_sql, p->timeout_ms, err) < 0) {
        free(db->stmts);
        free(db);
        return NULL;
    }
    db->created = hp_now();
    return db;
}

static void conn_close(hp_db *db)
{
    hp_db__res_free_all(db);
    stmt_cache_clear(db, false);
    db->drv->disconnect(db);
    hp_db__clear_error(db);
    free(db->stmts);
    free(db);
}

static bool too_old(hp_db *db)
{
    int life = db->pool->lifetime_s;
    return life > 0 && hp_now() - db->created > life;
}

/*
 * The checkout health check: not past its lifetime, not known dead, and
 * no transaction left open (rolled back here if there is one).
 */
static bool checkout_ok(hp_db *db)
{
    if (too_old(db) || !db->drv->alive(db) || db->drv->reset(db) < 0)
        return false;
    assert(!db->drv->in_tx(db) && db->req == NULL && db->tx == TX_NONE);
    return true;
}

/* ---- pools -----------------------------------------------------------------
 */

static int opt_or(int v, int def, int off)
{
    return v == 0 ? def : v < 0 ? off : v;
}

static void pool_apply_opts(hp_db_pool *p, const struct hp_db_pool_opts *o,
                            bool private_conns)
{
    struct hp_db_pool_opts none = {0};
    if (!o)
        o = &none;
    int def = p->drv->default_conns;
    p->max = opt_or(o->max_conns, def, def);
    /* Every connection is a database of its own (SQLite's :memory:). */
    if (private_conns)
        p->max = 1;
    p->timeout_ms = opt_or(o->acquire_timeout_ms, DEF_ACQUIRE_MS, 0);
    p->lifetime_s = opt_or(o->max_lifetime_s, DEF_LIFETIME_S, 0);
    p->stmt_cap = opt_or(o->stmt_cache, DEF_STMT_CACHE, 0);
    p->name = hp_xstrdup(o->name && *o->name ? o->name : p->shown);
    p->init_sql = o->init_sql ? hp_xstrdup(o->init_sql) : NULL;
}

hp_db_pool *hp_db_pool_open(const char *url, const struct hp_db_pool_opts *opts,
                            char **err)
{
    const char *target = NULL;
    const struct hp_db_driver *drv = url ? driver_for(url, &target) : NULL;
    char *msg = NULL;

    if (err)
        *err = NULL;
    if (!drv) {
        set_err(err, msg_dup("unsupported database URL \"%s\" (expected "
                             "sqlite:PATH or postgresql://...)",
                             url ? url : "(null)"));
        return NULL;
    }
    if (drv->check_url(target, &msg) < 0) {
        set_err(err, msg);
        return NULL;
    }
    hp_db_pool *p = hp_xcalloc(1, sizeof *p);
    p->drv = drv;
    p->target = hp_xstrdup(target);
    p->shown = redact_url(url);
    pool_apply_opts(p, opts, drv->private_conns(target));
    pthread_mutex_init(&p->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->cv, &ca);
    pthread_condattr_destroy(&ca);
    registry_add(p);
    return p;
}

static void pool_free(hp_db_pool *p)
{
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p->target);
    free(p->shown);
    free(p->name);
    free(p->init_sql);
    free(p);
}

/* Closed, and nobody inside any more: the caller that sees this frees. */
static bool pool_done_locked(hp_db_pool *p)
{
    return p->closing && p->size == 0 && p->waiters == 0;
}

void hp_db_pool_close(hp_db_pool *p)
{
    if (!p)
        return;
    registry_remove(p);
    pthread_mutex_lock(&p->mu);
    p->closing = true;
    hp_db *idle = p->idle;
    unsigned n = p->nidle, busy = p->in_use;
    assert(p->size >= p->nidle);
    p->idle = NULL;
    p->size -= p->nidle;
    p->nidle = 0;
    pthread_cond_broadcast(&p->cv);
    bool done = pool_done_locked(p);
    pthread_mutex_unlock(&p->mu);

    for (hp_db *db = idle, *next; db; db = next) {
        next = db->next_idle;
        conn_close(db);
    }
    hp_log_info("database pool %s closed (%u connections closed%s)", p->name, n,
                busy ? ", others close when released" : "");
    if (done)
        pool_free(p);
}

/* A connection leaves the pool for good (broken, too old, or closing). */
static void pool_drop(hp_db_pool *p, hp_db *db)
{
    conn_close(db);
    pthread_mutex_lock(&p->mu);
    assert(p->size > 0 && p->in_use > 0); /* db held a slot, checked out */
    p->size--;
    p->in_use--;
    if (!p->closing)
        p->discarded++;
    pthread_cond_signal(&p->cv);
    bool done = pool_done_locked(p);
    pthread_mutex_unlock(&p->mu);
    if (done)
        pool_free(p);
}

/* Open a connection in a reserved slot; on failure give the slot back. */
static hp_db *pool_connect(hp_db_pool *p, char **err)
{
    hp_db *db = conn_open(p, err);
    pthread_mutex_lock(&p->mu);
    if (db) {
        p->connects++;
        atomic_fetch_add(&p->acquires, 1);
    } else {
        assert(p->size > 0 && p->in_use > 0); /* the reserved slot */
        p->size--;
        p->in_use--;
        atomic_fetch_add(&p->errors, 1);
        pthread_cond_signal(&p->cv); /* a waiter may try its luck */
    }
    bool done = !db && pool_done_locked(p);
    pthread_mutex_unlock(&p->mu);
    if (done)
        pool_free(p);
    return db;
}

enum get_result { GOT_IDLE, GOT_SLOT, GOT_TIMEOUT, GOT_CLOSED };

/* Under p->mu: take an idle connection, reserve a slot, or wait. */
static enum get_result pool_wait_locked(hp_db_pool *p, hp_db **out)
{
    struct timespec deadline = deadline_after(p->timeout_ms);
    bool expired = p->timeout_ms <= 0;

    for (;;) {
        if (p->closing)
            return GOT_CLOSED;
        if (p->idle) {
            assert(p->nidle > 0);
            *out = p->idle;
            p->idle = (*out)->next_idle;
            p->nidle--;
            p->in_use++;
            return GOT_IDLE;
        }
        if (p->size < (unsigned)p->max) {
            p->size++;
            p->in_use++;
            return GOT_SLOT;
        }
        if (expired) {
            p->timeouts++;
            return GOT_TIMEOUT;
        }
        p->waiters++;
        int rc = pthread_cond_timedwait(&p->cv, &p->mu, &deadline);
        p->waiters--;
        /* Look once more after a timeout: a connection may have come back
         * just as the deadline passed. */
        if (rc == ETIMEDOUT)
            expired = true;
    }
}

/*
 * Check a connection out: an idle one that passes the health check, else a
 * new one in a free slot, else wait up to the acquire timeout. *timed_out
 * tells a busy pool (503 "busy") from a failing database.
 */
static hp_db *pool_get(hp_db_pool *p, char **err, bool *timed_out)
{
    *timed_out = false;
    for (;;) {
        hp_db *db = NULL;
        pthread_mutex_lock(&p->mu);
        enum get_result r = pool_wait_locked(p, &db);
        bool done = r == GOT_CLOSED && pool_done_locked(p);
        pthread_mutex_unlock(&p->mu);

        switch (r) {
        case GOT_IDLE:
            if (checkout_ok(db)) {
                atomic_fetch_add(&p->acquires, 1);
                return db;
            }
            pool_drop(p, db); /* and try again */
            continue;
        case GOT_SLOT:
            return pool_connect(p, err);
        case GOT_TIMEOUT:
            *timed_out = true;
            set_err(err, msg_dup("no connection available within %d ms",
                                 p->timeout_ms));
            return NULL;
        case GOT_CLOSED:
            set_err(err, msg_dup("the pool is closed"));
            if (done)
                pool_free(p);
            return NULL;
        }
    }
}

/* Give a connection back. reset: end any transaction it left open. */
static void pool_put(hp_db *db, bool reset)
{
    hp_db_pool *p = db->pool;

    hp_db__res_free_all(db);
    hp_db__clear_error(db);
    db->req = NULL;
    db->tx = TX_NONE;
    db->failed = db->voted = db->rolled_back = db->write_tx = false;
    bool keep = db->drv->alive(db) && !too_old(db) &&
                (!reset || db->drv->reset(db) == 0);

    /* What the idle list promises the next checkout: no transaction open
     * (hp_db__release_raw alone breaks it, for the health check's test). */
    assert(!keep || !reset || !db->drv->in_tx(db));
    pthread_mutex_lock(&p->mu);
    assert(p->in_use > 0);
    keep = keep && !p->closing;
    if (keep) {
        db->next_idle = p->idle;
        p->idle = db;
        p->nidle++;
        p->in_use--;
        pthread_cond_signal(&p->cv);
    }
    pthread_mutex_unlock(&p->mu);
    if (!keep)
        pool_drop(p, db);
}

hp_db *hp_db_pool_acquire(hp_db_pool *p, char **err)
{
    bool timed_out;
    if (err)
        *err = NULL;
    if (!p) {
        set_err(err, msg_dup("no pool"));
        return NULL;
    }
    return pool_get(p, err, &timed_out);
}

void hp_db_pool_release(hp_db *db)
{
    if (!db)
        return;
    if (db->req) {
        /* The request gives it back itself, after committing. */
        hp_log_error("hp_db_pool_release: that handle belongs to a request; "
                     "ignored");
        return;
    }
    pool_put(db, true);
}

void hp_db__release_raw(hp_db *db)
{
    pool_put(db, false);
}

void hp_db_pool_stats(hp_db_pool *p, struct hp_db_pool_stats *out)
{
    memset(out, 0, sizeof *out);
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    out->max = (unsigned)p->max;
    out->size = p->size;
    out->in_use = p->in_use;
    out->idle = p->nidle;
    out->waiters = p->waiters;
    out->timeouts = p->timeouts;
    out->connects = p->connects;
    out->discarded = p->discarded;
    pthread_mutex_unlock(&p->mu);
    out->acquires = atomic_load(&p->acquires);
    out->errors = atomic_load(&p->errors);
    out->prepares = atomic_load(&p->prepares);
    out->cache_hits = atomic_load(&p->cache_hits);
}

hp_db_pool *hp_db_default_pool(void)
{
    return default_pool;
}

enum hp_db_engine hp_db_engine(hp_db *db)
{
    return db ? db->drv->engine : 0;
}

/* ---- the statement cache ---------------------------------------------------
 */

static void stmt_cache_clear(hp_db *db, bool tell_server)
{
    for (size_t i = 0; i < db->nstmts; i++) {
        db->drv->finalize(db, db->stmts[i].stmt, tell_server);
        free(db->stmts[i].sql);
    }
    db->nstmts = 0;
}

static void stmt_evict(hp_db *db, size_t i)
{
    db->drv->finalize(db, db->stmts[i].stmt, true);
    free(db->stmts[i].sql);
    db->stmts[i] = db->stmts[--db->nstmts];
}

static void stmt_forget(hp_db *db, const char *sql)
{
    uint64_t h = fnv1a(sql);
    for (size_t i = 0; i < db->nstmts; i++)
        if (db->stmts[i].hash == h && strcmp(db->stmts[i].sql, sql) == 0) {
            stmt_evict(db, i);
            return;
        }
}

static size_t stmt_lru(hp_db *db)
{
    size_t lru = 0;
    for (size_t i = 1; i < db->nstmts; i++)
        if (db->stmts[i].used < db->stmts[lru].used)
            lru = i;
    return lru;
}

/*
 * The statement for sql: from the cache (keyed by the exact text), else
 * compiled and cached, evicting the least recently used. *transient says
 * the caller must finalize it (no cache).
 */
static void *stmt_get(hp_db *db, const char *sql, bool *transient)
{
    hp_db_pool *p = db->pool;
    size_t cap = (size_t)(p->stmt_cap > 0 ? p->stmt_cap : 0);
    uint64_t h = fnv1a(sql);

    *transient = cap == 0;
    for (size_t i = 0; i < db->nstmts; i++) {
        struct hp_db_stmt *s = &db->stmts[i];
        if (s->hash == h && strcmp(s->sql, sql) == 0) {
            s->used = ++db->tick;
            atomic_fetch_add(&p->cache_hits, 1);
            return s->stmt;
        }
    }
    void *st = db->drv->prepare(db, sql, !*transient);
    if (!st)
        return NULL;
    atomic_fetch_add(&p->prepares, 1);
    if (*transient)
        return st;
    if (db->nstmts == cap)
        stmt_evict(db, stmt_lru(db));
    db->stmts[db->nstmts++] = (struct hp_db_stmt){
        .hash = h, .sql = hp_xstrdup(sql), .stmt = st, .used = ++db->tick};
    return st;
}

/* ---- errors ----------------------------------------------------------------
 */

/* Log the error just recorded, with where it happened and the SQL (never
 * the parameters: they are user data). */
static void log_failure(hp_db *db, const char *sql)
{
    char code[32] = "";
    if (db->errcode)
        snprintf(code, sizeof code, ", code %d", db->errcode);
    hp_log_error("db: %s%s: %s [SQLSTATE %s%s] in: %.*s%s",
                 db->req ? "" : "pool ",
                 db->req ? db->req->target.path : db->pool->name,
                 db->errmsg ? db->errmsg : "(no message)", db->sqlstate, code,
                 LOG_SQL_MAX, sql, strlen(sql) > LOG_SQL_MAX ? "..." : "");
}

/* A failed statement: count it, log it, and inside a transaction remember
 * that the transaction can only roll back now (PostgreSQL's rule, applied
 * to SQLite too so an application behaves the same on both). */
static void note_failure(hp_db *db, const char *sql)
{
    atomic_fetch_add(&db->pool->errors, 1);
    if (db->tx == TX_OPEN)
        db->failed = true;
    log_failure(db, sql);
}

/* "ROLLBACK [WORK|TRANSACTION] TO ..." undoes a failure in a transaction. */
static bool is_rollback_to(const char *sql)
{
    const char *words[] = {"rollback", "work", "transaction", "to"};
    const char *p = sql;
    for (size_t w = 0; w < 4; w++) {
        while (isspace((unsigned char)*p))
            p++;
        size_t n = strlen(words[w]);
        if (strncasecmp(p, words[w], n) == 0 && !isalnum((unsigned char)p[n]) &&
            p[n] != '_') {
            p += n;
            if (w == 3)
                return true;
        } else if (w == 0 || w == 3) {
            return false;
        }
    }
    return false;
}

/* ---- running statements ----------------------------------------------------
 */

/* A request's transaction starts with its first statement: SQLite needs
 * to know whether it will write (BEGIN IMMEDIATE takes the write lock now,
 * so a read-then-write request never fails to upgrade its lock). */
static int begin_tx(hp_db *db, bool write)
{
    assert(db->tx == TX_PENDING);
    if (db->drv->begin(db, write) < 0)
        return -1;
    db->tx = TX_OPEN;
    return 0;
}

static int run(hp_db *db, const char *sql, size_t n, const hp_db_val *params,
               hp_db_res **out)
{
    bool transient;
    hp_db_res *res = NULL;

    hp_db__clear_error(db);
    db->changes = 0;
    void *st = stmt_get(db, sql, &transient);
    if (!st)
        goto failed;
    if (db->tx == TX_PENDING &&
        begin_tx(db, db->write_tx || !db->drv->readonly(st)) < 0)
        goto failed_st;
    res = out ? hp_db__res_new(db) : NULL;
    if (db->drv->run(db, st, sql, n, params, res) < 0) {
        hp_db__res_free(res);
        if (!transient && db->drv->stale(db))
            stmt_forget(db, sql);
        goto failed_st;
    }
    if (transient)
        db->drv->finalize(db, st, true);
    if (res)
        hp_db__res_link(res);
    if (out)
        *out = res;
    if (db->failed && is_rollback_to(sql))
        db->failed = false;
    return 0;

failed_st:
    if (transient)
        db->drv->finalize(db, st, true);
failed:
    note_failure(db, sql);
    return -1;
}

int hp_db_exec_params(hp_db *db, const char *sql, size_t n,
                      const hp_db_val *params)
{
    if (!db || !sql)
        return -1;
    return run(db, sql, n, params, NULL) < 0 ? -1 : HP_OK;
}

hp_db_res *hp_db_query_params(hp_db *db, const char *sql, size_t n,
                              const hp_db_val *params)
{
    hp_db_res *r = NULL;
    if (!db || !sql)
        return NULL;
    return run(db, sql, n, params, &r) < 0 ? NULL : r;
}

/* Text parameters as typed ones; small lists stay on the stack. */
static hp_db_val *text_vals(const char *const *strs, size_t n, hp_db_val *stack,
                            size_t stack_n)
{
    hp_db_val *v = n <= stack_n ? stack : hp_xmalloc(n * sizeof *v);
    for (size_t i = 0; i < n; i++)
        v[i] = strs[i] ? HP_TEXT(strs[i]) : HP_NULL;
    return v;
}

int hp_db__exec_text(hp_db *db, const char *const *sp, size_t n)
{
    hp_db_val stack[16];
    if (!db || !sp || !sp[0])
        return -1;
    hp_db_val *v = text_vals(sp + 1, n - 1, stack, 16);
    int rc = hp_db_exec_params(db, sp[0], n - 1, v);
    if (v != stack)
        free(v);
    return rc;
}

hp_db_res *hp_db__query_text(hp_db *db, const char *const *sp, size_t n)
{
    hp_db_val stack[16];
    if (!db || !sp || !sp[0])
        return NULL;
    hp_db_val *v = text_vals(sp + 1, n - 1, stack, 16);
    hp_db_res *r = hp_db_query_params(db, sp[0], n - 1, v);
    if (v != stack)
        free(v);
    return r;
}

int hp_db_exec_script(hp_db *db, const char *sql)
{
    if (!db || !sql)
        return -1;
    hp_db__clear_error(db);
    if ((db->tx == TX_PENDING && begin_tx(db, true) < 0) ||
        db->drv->script(db, sql) < 0) {
        note_failure(db, sql);
        return -1;
    }
    return HP_OK;
}

/* ---- the request's transaction ---------------------------------------------
 */

/*
 * What a request enlists for each pool it uses. db is NULL when no
 * connection could be had: then the resource only carries the 503 message,
 * written when the request rolls back, so whatever the handler wrote after
 * hp_db() returned NULL does not reach the client.
 */
struct req_db {
    struct hp_resource res;
    hp_db_pool *pool;
    hp_db *db;
    hp_req *req;
    char *msg; /* 503 body (request memory) */
};

static void respond_plain(hp_req *req, int status, const char *msg)
{
    req->headers.n = 0;
    req->has_content_type = false;
    req->out.len = 0;
    req->status = status;
    hp_req_add_header(req, "Content-Type", "text/plain; charset=utf-8");
    if (status == 503)
        hp_req_add_header(req, "Retry-After", "1");
    hp_buf_printf(&req->out, "%d %s: %s\n", status, hp_status_text(status),
                  msg);
}

static void rollback_tx(hp_db *db)
{
    if (db->tx == TX_OPEN && db->drv->rollback(db) < 0)
        log_failure(db, "ROLLBACK");
    db->tx = TX_NONE;
    db->rolled_back = true;
}

/* The request's commit phase: only a vote. A transaction a statement
 * failed in can only roll back; anything else commits at release. */
static int rd_commit(void *arg)
{
    struct req_db *rd = arg;
    hp_db *db = rd->db;
    if (db->tx == TX_OPEN && (db->failed || db->drv->tx_failed(db))) {
        hp_log_error("db: %s: a statement failed in this request's "
                     "transaction (%s); rolling it back",
                     rd->req->target.path,
                     db->errmsg ? db->errmsg : "see above");
        rollback_tx(db);
        return 500;
    }
    db->voted = true;
    return HP_OK;
}

static void rd_rollback(void *arg)
{
    struct req_db *rd = arg;
    rollback_tx(rd->db);
}

/* The real COMMIT, after every module's commit hook agreed. If it fails
 * now, the response built for a success becomes a plain 500. */
static void rd_release(void *arg)
{
    struct req_db *rd = arg;
    hp_db *db = rd->db;
    if (db->tx == TX_OPEN && db->voted && !db->rolled_back) {
        if (db->drv->commit(db) < 0) {
            note_failure(db, "COMMIT");
            rollback_tx(db);
            respond_plain(rd->req, 500, "the database did not commit");
        }
        db->tx = TX_NONE;
    }
    pool_put(db, true);
}

static void rd_fail_rollback(void *arg)
{
    struct req_db *rd = arg;
    respond_plain(rd->req, 503, rd->msg);
}

static struct req_db *find_enlisted(hp_req *req, hp_db_pool *pool)
{
    for (struct hp_resource *r = req->resources; r; r = r->next) {
        bool mine = r->release == rd_release || r->rollback == rd_fail_rollback;
        if (mine && ((struct req_db *)r->arg)->pool == pool)
            return r->arg;
    }
    return NULL;
}

static bool unsafe_method(hp_req *req)
{
    const char *m = req->method ? req->method : "GET";
    return strcmp(m, "GET") != 0 && strcmp(m, "HEAD") != 0 &&
           strcmp(m, "OPTIONS") != 0;
}

/* No connection: the request answers 503 with msg, whatever happens. */
static void enlist_failure(hp_req *req, hp_db_pool *pool, const char *msg)
{
    struct req_db *rd = hp_alloc(req, sizeof *rd);
    if (!rd)
        return;
    *rd = (struct req_db){.pool = pool, .req = req, .msg = hp_strdup(req, msg)};
    rd->res.rollback = rd_fail_rollback;
    rd->res.arg = rd;
    hp_req_enlist(req, &rd->res);
    req->forced_status = 503;
}

static hp_db *enlist_db(hp_req *req, hp_db_pool *pool, hp_db *db)
{
    struct req_db *rd = hp_alloc(req, sizeof *rd);
    if (!rd) {
        pool_put(db, true);
        return NULL;
    }
    assert(db->req == NULL && db->tx == TX_NONE);
    *rd = (struct req_db){.pool = pool, .db = db, .req = req};
    rd->res = (struct hp_resource){.commit = rd_commit,
                                   .rollback = rd_rollback,
                                   .release = rd_release,
                                   .arg = rd};
    db->req = req;
    db->tx = TX_PENDING;
    db->write_tx = unsafe_method(req);
    hp_req_enlist(req, &rd->res);
    return db;
}

hp_db *hp_db_from(hp_req *req, hp_db_pool *pool)
{
    char *err = NULL;
    bool timed_out = false;

    if (!req)
        return NULL;
    struct req_db *had = find_enlisted(req, pool);
    if (had)
        return had->db;
    if (!pool) {
        enlist_failure(req, pool,
                       "database unavailable: no database is "
                       "configured");
        return NULL;
    }
    hp_db *db = pool_get(pool, &err, &timed_out);
    if (db) {
        free(err);
        return enlist_db(req, pool, db);
    }
    hp_log_error("db: %s: pool %s: %s", req->target.path, pool->name,
                 err ? err : "no connection");
    char *msg = timed_out ? msg_dup("database busy: %s", err)
                          : msg_dup("database unavailable (the server log "
                                    "says why)");
    enlist_failure(req, pool, msg);
    free(msg);
    free(err);
    return NULL;
}

hp_db *hp_db_req(hp_req *req)
{
    return hp_db_from(req, default_pool);
}

/* ---- the server's default pool and the status page -------------------------
 */

static const char *data_home(char *buf, size_t len)
{
    const char *xdg = getenv("XDG_DATA_HOME");
    const char *home = getenv("HOME");
    /* Like the cache directory: a relative $XDG_DATA_HOME is ignored. */
    if (xdg && xdg[0] == '/')
        snprintf(buf, len, "%s/hotpub", xdg);
    else if (home && home[0])
        snprintf(buf, len, "%s/.local/share/hotpub", home);
    else
        snprintf(buf, len, "/tmp/hotpub-%lu/data", (unsigned long)getuid());
    return buf;
}

/* <data home>/<docroot's name>-<8 hex of its hash>.db: one database per
 * document root, outside it (a docroot may be read-only, and is served). */
char *hp_db_default_path(const char *root_canon)
{
    char home[PATH_MAX], hex[33], base[48];
    struct hp_hash h;
    const char *slash = strrchr(root_canon, '/');
    const char *name = slash && slash[1] ? slash + 1 : "root";
    size_t n = 0;

    for (; *name && n < sizeof base - 1; name++)
        base[n++] =
            isalnum((unsigned char)*name) || strchr("._-", *name) ? *name : '_';
    base[n] = '\0';
    hp_hash_init(&h);
    hp_hash_update(&h, root_canon, strlen(root_canon));
    hp_hash_hex(&h, hex);
    return hp_xasprintf("%s/%s-%.8s.db", data_home(home, sizeof home), base,
                        hex);
}

static void opts_from_config(const struct hp_config *cfg,
                             struct hp_db_pool_opts *o)
{
    *o = (struct hp_db_pool_opts){
        .max_conns = cfg->db_pool_size,
        .acquire_timeout_ms =
            cfg->db_acquire_timeout ? cfg->db_acquire_timeout : -1,
        .max_lifetime_s = cfg->db_max_lifetime ? cfg->db_max_lifetime : -1,
        .stmt_cache = cfg->db_statement_cache ? cfg->db_statement_cache : -1,
        .name = "default",
    };
}

/* With a database named explicitly, say now if it cannot be reached; the
 * server still starts (the database may come up later). */
static void try_connect(hp_db_pool *p)
{
    char *err = NULL;
    hp_db *db = hp_db_pool_acquire(p, &err);
    if (db)
        hp_db_pool_release(db);
    else
        hp_log_error("database %s: cannot connect now (%s); requests get "
                     "503 until it can",
                     p->shown, err ? err : "?");
    free(err);
}

int hp_db_server_open(const struct hp_config *cfg, const char *root_canon)
{
    struct hp_db_pool_opts o;
    char *err = NULL, *url;

    if (cfg->db && strcmp(cfg->db, "off") == 0) {
        hp_log_info("database: off");
        return 0;
    }
    char *path = cfg->db ? NULL : hp_db_default_path(root_canon);
    url = cfg->db ? hp_xstrdup(cfg->db) : hp_xasprintf("sqlite:%s", path);
    opts_from_config(cfg, &o);
    hp_db_pool *p = hp_db_pool_open(url, &o, &err);
    if (!p) {
        hp_log_error("database: %s", err ? err : "cannot open");
        free(err);
        free(url);
        free(path);
        return -1;
    }
    p->mkdir_parent = cfg->db == NULL;
    hp_log_info("database: %s (%s, up to %d connections)%s", p->shown,
                p->drv->name, p->max,
                cfg->db ? "" : " - the default; created on first use");
    default_pool = p;
    if (cfg->db)
        try_connect(p);
    free(url);
    free(path);
    return 0;
}

void hp_db_server_close(void)
{
    hp_db_pool *p = default_pool;
    default_pool = NULL;
    hp_db_pool_close(p);
}

static void pool_json(struct hp_buf *b, hp_db_pool *p)
{
    struct hp_db_pool_stats s;
    hp_db_pool_stats(p, &s);
    hp_buf_puts(b, "{\"name\":");
    hp_buf_json(b, p->name);
    hp_buf_printf(b, ",\"engine\":\"%s\",\"url\":", p->drv->name);
    hp_buf_json(b, p->shown);
    hp_buf_printf(b,
                  ",\"default\":%s,\"max\":%u,\"size\":%u,\"in_use\":%u,"
                  "\"idle\":%u,\"waiters\":%u,\"acquires\":%llu,"
                  "\"timeouts\":%llu,\"errors\":%llu,\"connects\":%llu,"
                  "\"discarded\":%llu,\"prepares\":%llu,\"cache_hits\":%llu}",
                  p == default_pool ? "true" : "false", s.max, s.size, s.in_use,
                  s.idle, s.waiters, s.acquires, s.timeouts, s.errors,
                  s.connects, s.discarded, s.prepares, s.cache_hits);
}

void hp_db_status_json(struct hp_buf *b)
{
    hp_buf_puts(b, ",\n\"pools\":[");
    pthread_mutex_lock(&registry_mu);
    for (hp_db_pool *p = registry; p; p = p->reg_next) {
        pool_json(b, p);
        if (p->reg_next)
            hp_buf_puts(b, ",\n");
    }
    pthread_mutex_unlock(&registry_mu);
    hp_buf_puts(b, "]");
}
