/*
 * db.h - the database layer as the rest of the server sees it: the
 * default pool's life (server.c), the status JSON, the default database
 * path, and one hook for the unit test. Pages see only hotpub.h.
 *
 * The layer's files, each depending only on those below it (docs/design.md
 * keeps the map): db.c (statements, the request's transaction, the default
 * pool) -> db_pool.c (pools, connections) -> db_stmt.c (the statement
 * cache) -> the engines, reached only through their struct hp_db_driver
 * (db_sqlite.c, db_pg.c) -> db_core.c (errors, results), which depends on
 * nothing of the layer. db_result.c (reading results) needs only the core.
 */
#ifndef HP_DB_H
#define HP_DB_H

#include "db_core.h"

/* Give a connection back without ending its transaction: only for the
 * unit test of the checkout health check. */
void hp_db__release_raw(hp_db *db);

/* A request's transaction that will write begins writing now, as its first
 * write would (on SQLite, whose read transaction cannot be upgraded: its
 * read part ends and BEGIN IMMEDIATE begins; a no-op on PostgreSQL, before
 * the first statement, after a write, or after a SAVEPOINT). For session.c:
 * statements prepared afterwards see the schema as it is now, not as the
 * request's first read found it (a table another connection created since:
 * hotpub_sessions on first use). 0, or -1 with the request's transaction
 * failed, as for a failed statement. */
int hp_db__begin_writing(hp_db *db);

/* fn runs on each new connection of the default pool, in autocommit mode,
 * before the connection is handed to anyone: for the schema the server owns
 * (session.c's table), so that it exists before any request's transaction
 * begins, also in a database file opened anew. Its result is ignored (fn
 * logs; a failure leaves the connection usable). NULL: none. */
void hp_db__set_connect_hook(int (*fn)(hp_db *db));

/* The request holds the default pool's handle, in autocommit mode
 * (hp_db_autocommit). For session.c: a session's lock and write need the
 * request's transaction. */
bool hp_db__req_autocommit(hp_req *req);

/* The file of an SQLite pool, or NULL (PostgreSQL; an in-memory database,
 * which no two connections share). For session.c's lock file. */
const char *hp_db__sqlite_file(hp_db_pool *pool);

/* ---- the server's side (server.c) ---------------------------------------- */

/* Open the default pool from the configuration (lazily connecting unless a
 * database was named). 0, or -1 after logging why. */
int hp_db_server_open(const struct hp_config *cfg, const char *root_canon);
void hp_db_server_close(void);
/* Development mode (server.c, once it is known): a request that gets no
 * connection answers a 503 whose body says why (the pool busy past its
 * acquire timeout, the database unreachable) to a client of this server's
 * Host; else the plain "503 Service Unavailable" body, the detail only in
 * the log. Off (production) by default. */
void hp_db_server_set_dev(bool dev);
/* The default pool has no idle connection: taking one now would open a
 * new one (a connect, up to the connect timeout when the server is far
 * or gone) or wait for one, so a page that would take one should not run
 * on an event-loop thread now. false without a default pool. */
bool hp_db_server_busy(void);
/* Nanoseconds of this thread's time that were the pools' own, in all so
 * far: taking pooled connections (waiting for one, opening one, its
 * checkout check) and the statements of a connection's first request (a
 * new PostgreSQL server process loads its caches then: milliseconds). A
 * run's share is not the page's: server.c leaves it out of the run's own
 * time (placement.c), so that a page is not demoted for good for the
 * connections its first requests opened. */
int64_t hp_db_pool_ns(void);
/* Append ,"pools":[...] to the status JSON. */
void hp_db_status_json(struct hp_buf *b);
/* Each open pool's name and numbers, under the registry's lock (the
 * node-stats area's gauges, metrics.c). */
void hp_db_pools_each(void (*fn)(const char *name,
                                 const struct hp_db_pool_stats *s, void *arg),
                      void *arg);

/* The default database path for a document root (malloc'd). */
char *hp_db_default_path(const char *root_canon);

#endif
