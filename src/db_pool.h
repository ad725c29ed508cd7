/*
 * db_pool.h - pools and the statement cache (db_pool.c, db_stmt.c) as the
 * dispatch (db.c) sees them. Below db.c, above the drivers and the core.
 */
#ifndef HP_DB_POOL_H
#define HP_DB_POOL_H

#include "db_core.h"
#include "db_lex.h"

/* db.c reads drv, shown, name, max and counts errors; it sets
 * mkdir_parent and is_default before the pool's first use. Everything
 * else is db_pool.c's (db_stmt.c reads stmt_cap, counts prepares and
 * cache_hits). */
struct hp_db_pool {
    const struct hp_db_driver *drv;
    char *target; /* what the driver connects to: a path or a URL     */
    char *shown;  /* the URL without its password, for logs/status    */
    char *name;
    char *init_sql;
    int max, timeout_ms, lifetime_s, stmt_cap;
    int check_ms;      /* a connection's target check: at most this often */
    bool mkdir_parent; /* the default SQLite file: create its directory */
    bool is_default;   /* the server's pool (the status JSON says so)   */

    pthread_mutex_t mu;
    hp_db *idle; /* most recently used first (see idle_push)       */
    hp_db *idle_tail;
    unsigned size, in_use, nidle, waiters;
    /* Every waiter, first come first served, whether its thread waits
     * on a condition variable or (hp_wait_hooked: a coroutine) parks on
     * its scheduler's ticket (hp_wait_park), else on an eventfd through
     * hp_wait_fd: a connection given back or a slot come free is handed
     * to the first (db_pool.c, struct hp_pool_waiter). Spare eventfds are
     * kept for the next ones that need one. */
    struct hp_pool_waiter *queue, *queue_tail;
    int spare_efd[8];
    unsigned nspare;
    bool closing;
    unsigned long long timeouts, connects, discarded;
    /* The target was lost (SQLite: file deleted or replaced): gen counts
     * the losses, so each is logged once however many connections were
     * opened on it; lost (under mu) stays set until a connection is
     * opened anew. */
    atomic_uint gen;
    bool lost;
    atomic_ullong acquires, errors, prepares, cache_hits;
    /* Connections reset at release because a statement may have changed
     * their session (the unit test reads it); the first failed reset is
     * logged, the others only counted in discarded. */
    atomic_ullong resets;
    atomic_bool reset_failure_logged;

    hp_db_pool *reg_next, *reg_prev; /* every open pool, for status      */
};

/*
 * Check a connection out: an idle one that passes the health check, else a
 * new one in a free slot, else wait up to the acquire timeout. NULL with
 * *err (malloc'd, or err NULL) on failure; *timed_out tells a busy pool
 * (503 "busy") from a failing database.
 */
hp_db *hp_db__pool_get(hp_db_pool *p, char **err, bool *timed_out);
/* Give a connection back; reset: end any transaction it left open. The
 * request state (req, tx) and its results are cleared. */
void hp_db__pool_put(hp_db *db, bool reset);
/* Count ns of this thread's time as the pool's (hp_db_pool_ns). */
void hp_db__pool_time(int64_t ns);

/* The statement for sql: from db's cache (keyed by the exact text), else
 * compiled and cached, evicting the least recently used. NULL after an
 * error recorded on db. *transient: not cached, finalize it after use. */
void *hp_db__stmt_get(hp_db *db, const char *sql, bool *transient);
/* Drop sql's statement from the cache (the engine said it went stale). */
void hp_db__stmt_forget(hp_db *db, const char *sql);
/* Finalize every cached statement (tell_server: false when closing). */
void hp_db__stmt_cache_clear(hp_db *db, bool tell_server);
/* Count the runs of a batch after its first as nrows single calls would:
 * each a cache hit (transient: the statement sent again, a prepare). */
void hp_db__stmt_count_runs(hp_db *db, bool transient, size_t runs);
/* After a failed call: SQLSTATE 26000 (the server forgot a prepared
 * statement: a page's DEALLOCATE ALL or DISCARD) forgets every prepared
 * statement of the connection (the cache's and the driver's own), logged
 * once, so that no other one fails for it. */
void hp_db__stmt_failed(hp_db *db);
/* After a statement or script that succeeded: one that may have run
 * DEALLOCATE or DISCARD forgets them all the same, before any fails. */
void hp_db__stmt_after_run(hp_db *db, const char *sql);
/* The statement's text says it may change the connection's session state
 * (a conservative test of its words, db_stmt.c; pg: read by PostgreSQL's
 * lexical rules, else SQLite's): then the connection is reset before it
 * serves another request (db_pool.c). No allocation. */
bool hp_db__changes_session(const char *sql, enum hp_db_lex_rules pg);
/* The lexical rules db's engine reads a text by now (db_lex.h): SQLite's,
 * or PostgreSQL's with standard_conforming_strings as the server last
 * reported it (drv->backslash_strings; no I/O). */
enum hp_db_lex_rules hp_db__lex_rules(hp_db *db);
/* sql as the lexer must read it on db's connection (db_lex.h's
 * hp_db__lex_mb_plain for its client encoding, drv->client_mb): NULL for
 * sql itself, else a copy in buf (size bytes) or malloc'd (free it when it
 * is not buf). */
char *hp_db__lex_text(hp_db *db, const char *sql, char *buf, size_t size);
/* hp_db__changes_session(sql) as db's connection reads sql now. */
bool hp_db__changes_session_on(hp_db *db, const char *sql);

#endif
