/*
 * db_stmt.c - each connection's statement cache: prepared statements kept
 * per connection, keyed by their exact SQL text, least recently used
 * evicted, dropped when the engine says a plan went stale.
 *
 * Owns: struct hp_db_stmt and a connection's stmts/nstmts/tick; the pool's
 * prepares and cache_hits counters are counted here.
 * May not touch: any engine API (it calls the driver table's prepare and
 * finalize), the pool's lists and lock, transactions, results.
 */
#include "db_pool.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

void hp_db__stmt_cache_clear(hp_db *db, bool tell_server)
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

void hp_db__stmt_forget(hp_db *db, const char *sql)
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
void *hp_db__stmt_get(hp_db *db, const char *sql, bool *transient)
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
    assert(db->nstmts <= cap);
    if (db->nstmts == cap)
        stmt_evict(db, stmt_lru(db));
    db->stmts[db->nstmts++] = (struct hp_db_stmt){
        .hash = h, .sql = hp_xstrdup(sql), .stmt = st, .used = ++db->tick};
    return st;
}
