/*
 * db_pool.c - connection pools: opening and closing them, checking a
 * connection out (the health check) and back in, opening and closing
 * connections through the engine's driver table, the registry of open
 * pools and their part of the status JSON.
 *
 * Owns: struct hp_db_pool and its locking, the pool's counters, the
 * choice of driver for a URL (the drivers' match()), a connection's life
 * (conn_open/conn_close), the URL shown in logs (password redacted).
 * May not touch: any engine API (only through struct hp_db_driver),
 * statements and their cache (db_stmt.c), the request's transaction
 * (db.c), results (db_core.c).
 *
 * Locking: one mutex per pool guards its idle list, its queue of waiters
 * and counters; a waiter joins the one queue (first come, first served)
 * and sleeps with a deadline on a condition variable of its own, or, on a
 * thread whose waits go through a coroutine scheduler's hook, on an
 * eventfd through hp_wait_fd; a connection or slot that comes free is
 * handed to the first waiter (struct hp_pool_waiter). No engine call (connect,
 * ROLLBACK, a liveness probe) is ever made with the pool's mutex held, so a
 * slow database never stalls threads that only want an idle connection. A
 * connection being opened holds a reserved slot (size counts it). The
 * registry's mutex is taken before no other lock.
 *
 * Session state: every checkout hands out a connection in the state its
 * connect left it (the engine's connect, then the pool's init_sql), whatever
 * the requests before did with it. A page's SET search_path, SET ROLE,
 * LISTEN, temporary table, session advisory lock or PRAGMA would otherwise
 * reach the next request of any page or user that gets the connection (PHP's
 * persistent PDO connections have this bug). At release, a connection
 * whose statements may have changed its session (session_dirty: a
 * conservative test of their text, hp_db__changes_session) is reset
 * (session_reset) before it goes back: PostgreSQL runs DISCARD ALL and the
 * init SQL again, as pgbouncer's server_reset_query; SQLite opens the file
 * anew. Only then, not always: a reset costs three round trips and the
 * statement cache (its statements are prepared again), where a request that
 * changed nothing costs none, and no page of a benchmark or of most sites
 * changes its session. The limit is the text test's: a function defined
 * elsewhere that calls set_config is not seen (docs/database.md, "What a
 * request can rely on"). A reset that fails drops the connection.
 */
#include "db_pool.h"
#include "db.h"
#include "db_drivers.h"
#include "wait.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define DEF_ACQUIRE_MS 5000
#define DEF_LIFETIME_S 3600
#define DEF_STMT_CACHE 64
/* How often a connection's target is checked (one stat(2) for SQLite, about
 * 1 us: every checkout cost ~7% of a trivial request's throughput). Writes
 * in the window after a deletion still go to the deleted file. */
#define DEF_CHECK_MS 100

static pthread_mutex_t registry_mu = PTHREAD_MUTEX_INITIALIZER;
static hp_db_pool *registry;

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

/* A CLOCK_MONOTONIC deadline (as hp_now_ns) for pthread_cond_timedwait. */
static struct timespec ts_of(int64_t ns)
{
    return (struct timespec){.tv_sec = ns / 1000000000,
                             .tv_nsec = ns % 1000000000};
}

/* ---- URLs ---------------------------------------------------------------- */

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

/* ---- the pool registry (for the status page) ----------------------------- */

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

/* ---- connections --------------------------------------------------------- */

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
    db->gen = atomic_load(&p->gen);
    if (p->stmt_cap > 0)
        db->stmts = hp_xcalloc((size_t)p->stmt_cap, sizeof *db->stmts);
    if (p->mkdir_parent)
        mkdir_parent(p->target);
    if (p->drv->connect(db, p->target, p->init_sql, p->timeout_ms, err) < 0) {
        free(db->stmts);
        free(db);
        return NULL;
    }
    db->created = db->checked = hp_now();
    return db;
}

static void conn_close(hp_db *db)
{
    hp_db__res_free_all(db);
    hp_db__stmt_cache_clear(db, false);
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
 * The connection's target is gone (SQLite: its file was deleted or
 * replaced). Said loudly once per loss: the first connection to see it
 * moves the generation on; the others of the lost one go quietly.
 */
static void target_lost(hp_db_pool *p, hp_db *db, const char *why)
{
    unsigned seen = db->gen;
    bool first = atomic_compare_exchange_strong(&p->gen, &seen, seen + 1);
    pthread_mutex_lock(&p->mu);
    p->lost = true;
    pthread_mutex_unlock(&p->mu);
    if (first)
        hp_log_error("database %s: %s; writes since then went to the old "
                     "file and are lost; closing the connections opened on "
                     "it and opening it anew%s",
                     p->shown, why,
                     p->mkdir_parent ? " (its directory is created again)"
                                     : "");
}

/* The target check, if check_ms has passed since the last one. */
static bool target_ok(hp_db *db)
{
    char *why = NULL;
    double now = hp_now();
    if (now - db->checked < db->pool->check_ms / 1000.0)
        return true;
    db->checked = now;
    if (!db->drv->check(db, &why)) {
        target_lost(db->pool, db, why ? why : "the database is gone");
        free(why);
        return false;
    }
    /* On the current target: a later loss is this generation's. */
    db->gen = atomic_load(&db->pool->gen);
    return true;
}

/*
 * The checkout health check: the reply of a command it sent without
 * waiting collected and good, not past its lifetime, not known dead, its
 * target still the one it opened (one stat(2) for SQLite, at most every
 * check_ms), and no
 * transaction left open (rolled back here if there is one).
 */
static bool checkout_ok(hp_db *db)
{
    if (!db->drv->settle(db) || too_old(db) || !db->drv->alive(db))
        return false;
    if (!target_ok(db))
        return false;
    if (db->drv->reset(db) < 0)
        return false;
    assert(!db->drv->in_tx(db) && db->req == NULL && db->tx == TX_NONE);
    return true;
}

/* ---- pools --------------------------------------------------------------- */

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
    p->check_ms = DEF_CHECK_MS;
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
    registry_add(p);
    return p;
}

static void queue_close_locked(hp_db_pool *p);
static void slot_back_locked(hp_db_pool *p);

static void pool_free(hp_db_pool *p)
{
    while (p->nspare)
        close(p->spare_efd[--p->nspare]);
    pthread_mutex_destroy(&p->mu);
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
    p->idle = p->idle_tail = NULL;
    p->size -= p->nidle;
    p->nidle = 0;
    queue_close_locked(p);
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
    if (!p->closing)
        p->discarded++;
    slot_back_locked(p);
    bool done = pool_done_locked(p);
    pthread_mutex_unlock(&p->mu);
    if (done)
        pool_free(p);
}

/* After a lost target, a failed reopen says so in its message (the
 * request's 503 log line carries it). */
static void note_reopen_failed(char **err)
{
    if (!err || !*err)
        return;
    char *msg =
        msg_dup("the database was lost and cannot be opened anew: %s", *err);
    free(*err);
    *err = msg;
}

/* Open a connection in a reserved slot; on failure give the slot back. */
static int (*connect_hook)(hp_db *db); /* hp_db__set_connect_hook */

void hp_db__set_connect_hook(int (*fn)(hp_db *db))
{
    connect_hook = fn;
}

static hp_db *pool_connect(hp_db_pool *p, char **err)
{
    hp_db *db = conn_open(p, err);
    bool reopened = false, lost;
    pthread_mutex_lock(&p->mu);
    lost = p->lost;
    if (db) {
        p->connects++;
        atomic_fetch_add(&p->acquires, 1);
        reopened = p->lost;
        p->lost = false;
    } else {
        atomic_fetch_add(&p->errors, 1);
        slot_back_locked(p); /* the reserved slot: a waiter may try its luck */
    }
    bool done = !db && pool_done_locked(p);
    pthread_mutex_unlock(&p->mu);
    if (reopened)
        hp_log_info("database %s: opened anew after it was lost", p->shown);
    else if (!db && lost)
        note_reopen_failed(err);
    if (done)
        pool_free(p);
    /* Before anyone can use it, so before any request's first statement. */
    if (db && p->is_default && connect_hook)
        connect_hook(db);
    return db;
}

enum get_result { GOT_IDLE, GOT_SLOT, GOT_TIMEOUT, GOT_CLOSED };

/*
 * Under p->mu: a connection joins the idle list at the front (the next to
 * be taken: most recently used first), or at the back when a reply is
 * still due on it (PostgreSQL's unawaited COMMIT): taken last, its reply
 * has most likely arrived by then, and the checkout does not wait for it.
 */
static void idle_push(hp_db_pool *p, hp_db *db, bool back)
{
    if (!back || !p->idle) {
        db->next_idle = p->idle;
        p->idle = db;
        if (!p->idle_tail)
            p->idle_tail = db;
        return;
    }
    db->next_idle = NULL;
    p->idle_tail->next_idle = db;
    p->idle_tail = db;
}

/* The nap of a waiter whose thread runs coroutines when it has no eventfd
 * to park on (pool_wait_one). */
#define NAP_NS 1000000LL

/*
 * A waiter for a connection, on its own stack, in the pool's one queue
 * (p->queue: first come, first served), whichever way its thread waits: a
 * handler thread on a condition variable of its own (cv); a thread whose
 * waits go through a scheduler's hook (hp_wait_hooked: the reactor's
 * coroutines, which a condition variable would stall, the one that would
 * give a connection back among them) parked on its scheduler's ticket
 * (hp_wait_park: handed a connection by a job of the same reactor, it
 * resumes without a system call), else on an eventfd through hp_wait_fd,
 * or without one in naps of NAP_NS. A connection given back, or a slot that
 * comes free, is handed to the first waiter directly (got, db): one that
 * came later, of either kind, cannot take it first (FRESH12-4: with a
 * condition variable for one kind and a queue for the other, a release
 * woke one of each and the faster won).
 */
enum waiter_got { W_QUEUED, W_CONN, W_SLOT, W_CLOSED };

struct hp_pool_waiter {
    struct hp_pool_waiter *next;
    pthread_cond_t cv; /* !hooked                                   */
    int efd;           /* hooked, no ticket: its eventfd, -1 none (naps) */
    bool hooked;
    bool ticketed; /* hooked: parks on ticket (hp_wait_park), once  */
    struct hp_wait_ticket ticket;
    bool ended; /* the hook ended the wait: the request's time ran out */
    enum waiter_got got; /* set, under p->mu, by whoever dequeues it  */
    hp_db *db;           /* W_CONN: checked out for it (in_use counts)   */
};

/* Under p->mu: the first waiter leaves the queue with got, and is woken.
 * Woken with the mutex held: once it is let go, the waiter may return
 * and its stack (w, its condition variable) be gone. The eventfd is
 * non-blocking: this never waits. */
static void waiter_hand_locked(hp_db_pool *p, enum waiter_got got, hp_db *db)
{
    struct hp_pool_waiter *w = p->queue;
    p->queue = w->next;
    if (!p->queue)
        p->queue_tail = NULL;
    w->next = NULL;
    w->got = got;
    w->db = db;
    if (!w->hooked) {
        pthread_cond_signal(&w->cv);
    } else if (w->ticketed) {
        hp_wait_unpark(&w->ticket); /* never blocks: fine under p->mu */
    } else if (w->efd >= 0) {
        uint64_t one = 1;
        if (write(w->efd, &one, sizeof one) < 0) {
            /* EAGAIN: a counter at its maximum, so it is readable anyway */
        }
    }
}

/* Under p->mu: a checked-out connection comes back in good order: to the
 * first waiter (still checked out, now by it), else to the idle list. */
static void conn_back_locked(hp_db_pool *p, hp_db *db, bool due)
{
    if (p->queue) {
        waiter_hand_locked(p, W_CONN, db);
        return;
    }
    idle_push(p, db, due);
    p->nidle++;
    p->in_use--;
}

/* Under p->mu: a slot (size and in_use count it) comes free, its
 * connection dropped or never opened: to the first waiter, which opens a
 * connection in it, else given back. */
static void slot_back_locked(hp_db_pool *p)
{
    assert(p->size > 0 && p->in_use > 0);
    if (p->queue && !p->closing) {
        waiter_hand_locked(p, W_SLOT, NULL);
        return;
    }
    p->size--;
    p->in_use--;
}

/* Under p->mu: the pool closes; every waiter is told so. */
static void queue_close_locked(hp_db_pool *p)
{
    while (p->queue)
        waiter_hand_locked(p, W_CLOSED, NULL);
}

static void queue_remove_locked(hp_db_pool *p, struct hp_pool_waiter *w)
{
    struct hp_pool_waiter **pp = &p->queue, *prev = NULL;
    for (; *pp; prev = *pp, pp = &(*pp)->next)
        if (*pp == w) {
            *pp = w->next;
            if (p->queue_tail == w)
                p->queue_tail = prev;
            return;
        }
}

/* Under p->mu: what w was handed goes on, as if it had never waited (the
 * next waiter, or the pool): w gives up. */
static void waiter_pass_on_locked(hp_db_pool *p, struct hp_pool_waiter *w)
{
    if (w->got == W_CONN)
        conn_back_locked(p, w->db, false);
    else if (w->got == W_SLOT)
        slot_back_locked(p);
    w->got = W_QUEUED;
    w->db = NULL;
}

/*
 * Under p->mu: w, queued, waits until it is handed something or the
 * acquire timeout passes; with a hook, until the hook ends the wait too
 * (its own deadline: the request's time ran out). What it got, or
 * W_QUEUED, out of the queue again: nothing (a timeout). Whatever is
 * handed to it under the mutex is never lost: at the acquire timeout it
 * is taken (as a connection that came back just then), and when the hook
 * ended the wait, the request cannot use it, so it goes to the next
 * waiter or back to the pool.
 */
static enum waiter_got pool_wait_one(hp_db_pool *p, struct hp_pool_waiter *w,
                                     int64_t limit_ns,
                                     const struct timespec *deadline)
{
    if (!w->hooked) {
        while (w->got == W_QUEUED)
            if (pthread_cond_timedwait(&w->cv, &p->mu, deadline) == ETIMEDOUT) {
                if (w->got == W_QUEUED)
                    queue_remove_locked(p, w);
                break;
            }
        return w->got;
    }
    for (;;) {
        int64_t now = hp_now_ns();
        if (now >= limit_ns) {
            queue_remove_locked(p, w);
            return W_QUEUED;
        }
        int64_t until = w->ticketed || w->efd >= 0 || limit_ns - now <= NAP_NS
                            ? limit_ns
                            : now + NAP_NS;
        pthread_mutex_unlock(&p->mu);
        /* A ticket parks once: it returns handed something (1), at the
         * limit, or ended by the hook, and each of those leaves below. */
        int rc = w->ticketed ? hp_wait_park(&w->ticket, until)
                             : hp_wait_fd(w->efd, POLLIN, until);
        now = hp_now_ns();
        pthread_mutex_lock(&p->mu);
        /* the hook ended the wait early, or failed */
        w->ended = rc == -1 || (rc == 0 && now < until);
        if (w->got != W_QUEUED) {
            if (w->ended && w->got != W_CLOSED)
                waiter_pass_on_locked(p, w);
            return w->got;
        }
        if (w->ended) {
            queue_remove_locked(p, w);
            return W_QUEUED;
        }
    }
}

/* Under p->mu: take an idle connection, reserve a slot, or wait in the
 * queue to be handed one (GOT_IDLE, GOT_SLOT all the same). */
static enum get_result pool_wait_locked(hp_db_pool *p, hp_db **out, bool *cut)
{
    /* The acquire timeout, or less: the wait ends before the handler's
     * --handler-timeout (wait.h's hp_wait_bound), so that a busy pool
     * answers its 503, not the watchdog's 504 of a stuck handler. */
    int64_t limit_ns = hp_wait_bounded(p->timeout_ms, cut);
    struct timespec deadline = ts_of(limit_ns);
    bool hooked = hp_wait_hooked();
    bool expired = p->timeout_ms <= 0 || limit_ns <= hp_now_ns();

    for (;;) {
        if (p->closing)
            return GOT_CLOSED;
        if (p->idle) {
            assert(p->nidle > 0);
            *out = p->idle;
            p->idle = (*out)->next_idle;
            if (!p->idle)
                p->idle_tail = NULL;
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
        struct hp_pool_waiter w = {.hooked = hooked, .efd = -1};
        if (hooked) {
            w.ticketed = hp_wait_ticket(&w.ticket);
            if (!w.ticketed)
                w.efd = p->nspare ? p->spare_efd[--p->nspare]
                                  : eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        } else {
            pthread_condattr_t ca;
            pthread_condattr_init(&ca);
            pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
            pthread_cond_init(&w.cv, &ca);
            pthread_condattr_destroy(&ca);
        }
        if (p->queue_tail)
            p->queue_tail->next = &w;
        else
            p->queue = &w;
        p->queue_tail = &w;
        p->waiters++; /* the pool is not freed under a waiter */
        enum waiter_got got = pool_wait_one(p, &w, limit_ns, &deadline);
        p->waiters--;
        if (!hooked) {
            pthread_cond_destroy(&w.cv);
        } else if (w.efd >= 0) {
            uint64_t v;
            if (read(w.efd, &v, sizeof v) < 0) {
                /* EAGAIN: not written */
            }
            if (p->nspare < sizeof p->spare_efd / sizeof p->spare_efd[0])
                p->spare_efd[p->nspare++] = w.efd;
            else
                close(w.efd);
        }
        switch (got) {
        case W_CONN:
            *out = w.db; /* in_use counts it already */
            return GOT_IDLE;
        case W_SLOT:
            return GOT_SLOT;
        case W_CLOSED:
            return GOT_CLOSED;
        case W_QUEUED:
            /* at the acquire timeout, look once more, then the 503; the
             * hook's end is the request's: nothing to look for */
            if (w.ended) {
                p->timeouts++;
                return GOT_TIMEOUT;
            }
            expired = true;
            break;
        }
    }
}

/*
 * Check a connection out: an idle one that passes the health check, else a
 * new one in a free slot, else wait up to the acquire timeout. *timed_out
 * tells a busy pool (503 "busy") from a failing database.
 */
/* This thread's pool time, in all (hp_db_pool_ns). */
static __thread int64_t tl_pool_ns;

int64_t hp_db_pool_ns(void)
{
    return tl_pool_ns;
}

void hp_db__pool_time(int64_t ns)
{
    tl_pool_ns += ns;
}

static hp_db *pool_get(hp_db_pool *p, char **err, bool *timed_out);

hp_db *hp_db__pool_get(hp_db_pool *p, char **err, bool *timed_out)
{
    int64_t t0 = hp_now_ns();
    hp_db *db = pool_get(p, err, timed_out);
    tl_pool_ns += hp_now_ns() - t0;
    return db;
}

static hp_db *pool_get(hp_db_pool *p, char **err, bool *timed_out)
{
    *timed_out = false;
    for (;;) {
        hp_db *db = NULL;
        pthread_mutex_lock(&p->mu);
        bool cut = false;
        enum get_result r = pool_wait_locked(p, &db, &cut);
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
            if (cut)
                set_err(err, msg_dup("no connection available before the "
                                     "handler timeout (the wait was cut "
                                     "short of the acquire timeout, %d ms, "
                                     "to answer within --handler-timeout)",
                                     p->timeout_ms));
            else
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

/*
 * Put a connection whose statements may have changed its session back in
 * the state the pool opened it in (header comment). Its cached statements
 * are gone with it (PostgreSQL's DISCARD ALL deallocates them; SQLite's are
 * of the old connection): forgotten first, prepared again on next use.
 * false when the reset failed: the caller drops the connection (the first
 * failure of a pool is logged, so a database that refuses every reset does
 * not flood the log; the rest are counted in discarded).
 */
static bool session_reset(hp_db *db)
{
    hp_db_pool *p = db->pool;
    int64_t t0 = hp_now_ns();
    hp_db__stmt_cache_clear(db, false);
    int rc = db->drv->discard(db, p->target, p->init_sql, p->timeout_ms);
    db->session_dirty = false;
    atomic_fetch_add(&p->resets, 1);
    hp_db__pool_time(hp_now_ns() - t0);
    if (rc < 0 && !atomic_exchange(&p->reset_failure_logged, true))
        hp_log_error("database %s: resetting a connection's session state "
                     "(after a statement that may have changed it) failed: "
                     "%s; the connection is closed, a new one is opened for "
                     "the next request (later failures are not logged)",
                     p->shown, db->errmsg ? db->errmsg : "unknown error");
    hp_db__clear_error(db);
    return rc == 0;
}

/* Give a connection back. reset: end any transaction it left open (and
 * its session state, if changed: session_reset). */
void hp_db__pool_put(hp_db *db, bool reset)
{
    hp_db_pool *p = db->pool;

    hp_db__res_free_all(db);
    hp_db__clear_error(db);
    db->served++;
    db->req = NULL;
    db->tx = TX_NONE;
    db->failed = db->voted = db->rolled_back = db->write_tx = false;
    db->reading = db->savepoint = db->autocommit = false;
    bool keep = db->drv->alive(db) && !too_old(db) &&
                (!reset || db->drv->reset(db) == 0) &&
                (!reset || !db->session_dirty || session_reset(db));
    bool due = keep && db->drv->reply_due(db);

    /* What the idle list promises the next checkout: no transaction open
     * (hp_db__release_raw alone breaks it, for the health check's test). */
    assert(!keep || !reset || !db->drv->in_tx(db));
    pthread_mutex_lock(&p->mu);
    assert(p->in_use > 0);
    keep = keep && !p->closing;
    if (keep)
        conn_back_locked(p, db, due);
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
    return hp_db__pool_get(p, err, &timed_out);
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
    hp_db__pool_put(db, true);
}

void hp_db__release_raw(hp_db *db)
{
    hp_db__pool_put(db, false);
}

void hp_db_pool_stats(hp_db_pool *p, struct hp_db_pool_stats *out)
{
    if (__builtin_expect(!out, 0)) {
        long skipped = 0;
        if (hp_log_misuse_allowed(NULL, __func__, "out", &skipped))
            hp_log_error("hp_db_pool_stats: out is NULL (refused: a page's "
                         "mistake)%s",
                         skipped ? " (and more like it in the last minute)"
                                 : "");
        return;
    }
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
                  p->is_default ? "true" : "false", s.max, s.size, s.in_use,
                  s.idle, s.waiters, s.acquires, s.timeouts, s.errors,
                  s.connects, s.discarded, s.prepares, s.cache_hits);
}

void hp_db_pools_each(void (*fn)(const char *name,
                                 const struct hp_db_pool_stats *s, void *arg),
                      void *arg)
{
    pthread_mutex_lock(&registry_mu);
    for (hp_db_pool *p = registry; p; p = p->reg_next) {
        struct hp_db_pool_stats s;
        hp_db_pool_stats(p, &s);
        fn(p->name ? p->name : "default", &s, arg);
    }
    pthread_mutex_unlock(&registry_mu);
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
