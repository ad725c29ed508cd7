/*
 * db_drivers.h - the engines the database layer has, each a struct
 * hp_db_driver (db_core.h). Each driver defines its own; only db.c's
 * driver list reads them, so the engines stay below the dispatch.
 */
#ifndef HP_DB_DRIVERS_H
#define HP_DB_DRIVERS_H

#include "db_core.h"

extern const struct hp_db_driver hp_db_sqlite_driver; /* db_sqlite.c */
extern const struct hp_db_driver hp_db_pg_driver;     /* db_pg.c     */

/* db sent its last COMMIT without waiting for the reply (a transaction that
 * wrote nothing, db_pg.c); false off PostgreSQL. The PostgreSQL driver's
 * reply_due, and the unit test's view of an idle connection. */
bool hp_db__pg_commit_in_flight(hp_db *db);
/* The round trips db's connection has waited for so far (each statement,
 * pipeline or chunk of a batch sent and its replies awaited; an unawaited
 * COMMIT is none); 0 off PostgreSQL. For the unit test only. */
unsigned long hp_db__pg_round_trips(hp_db *db);
/* The descriptor db's connection waits on (PQsocket: what hp_wait_fd is
 * given); -1 off PostgreSQL. For the unit test only. */
int hp_db__pg_socket(hp_db *db);

#endif
