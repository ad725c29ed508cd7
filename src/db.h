/*
 * db.h - the database layer's dispatch (db.c) as the rest of the server
 * sees it: the default pool's life (server.c), the status JSON, and one
 * hook for the unit test. Pages see only hotpub.h.
 *
 * The split (docs/design.md keeps the map): db.c knows nothing of SQLite
 * or libpq. It owns the pools (mutex + condvar), the checkout health
 * check's order, the per-connection statement cache, errors' logging, and
 * the transaction's part in the request, and reaches an engine only
 * through the engine's struct hp_db_driver (db_core.h). The drivers,
 * db_sqlite.c and db_pg.c, depend on the core (db_core.c) alone and never
 * call db.c.
 */
#ifndef HP_DB_H
#define HP_DB_H

#include "db_core.h"

/* Give a connection back without ending its transaction: only for the
 * unit test of the checkout health check. */
void hp_db__release_raw(hp_db *db);

/* ---- the server's side (server.c) --------------------------------------- */

/* Open the default pool from the configuration (lazily connecting unless a
 * database was named). 0, or -1 after logging why. */
int hp_db_server_open(const struct hp_config *cfg, const char *root_canon);
void hp_db_server_close(void);
/* Append ,"pools":[...] to the status JSON. */
void hp_db_status_json(struct hp_buf *b);

/* The default database path for a document root (malloc'd). */
char *hp_db_default_path(const char *root_canon);

#endif
