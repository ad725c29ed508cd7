/*
 * notes/_app.c - the notes board's application module: it applies to every
 * page under notes/ and runs before them.
 *
 * Its init makes sure the table exists, through the pool API (there is no
 * request in an init): it borrows a connection from the server's default
 * pool, runs the schema script and gives the connection back. Init runs
 * again for each new version of this file, which is harmless: the script
 * only creates what is missing. The same SQL runs on SQLite and PostgreSQL
 * except for the table definition, which differs in how ids are generated.
 */
#include <hotpub.h>

#include <stdlib.h>

static const char *const schema_sqlite =
    "CREATE TABLE IF NOT EXISTS notes ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " body TEXT NOT NULL CHECK (length(body) BETWEEN 1 AND 1000),"
    " created TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%S', 'now')))";

/* Worker processes may run this at once: a transaction-scoped advisory
 * lock (the script is one implicit transaction) makes them take turns, as
 * two concurrent CREATE TABLE IF NOT EXISTS can collide in the catalog. */
static const char *const schema_pg =
    "SELECT pg_advisory_xact_lock(4243);"
    "CREATE TABLE IF NOT EXISTS notes ("
    " id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
    " body TEXT NOT NULL CHECK (length(body) BETWEEN 1 AND 1000),"
    " created TEXT NOT NULL"
    "  DEFAULT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'))";

HP_INIT
{
    hp_db_pool *pool = hp_db_default_pool();
    char *err = NULL;

    if (!pool) /* the server runs with --db off: the pages answer 503 */
        return previous;
    hp_db *db = hp_db_pool_acquire(pool, &err);
    if (!db) {
        hp_module_error(m, "notes: no database connection: %s", err);
        free(err);
        return NULL;
    }
    const char *sql = hp_db_engine(db) == HP_DB_POSTGRESQL ? schema_pg
                                                           : schema_sqlite;
    bool ok = hp_db_exec_script(db, sql) == HP_OK;
    if (!ok) /* read the error before the connection goes back */
        hp_module_error(m, "notes: creating the table: %s", hp_db_error(db));
    hp_db_pool_release(db);
    return ok ? previous : NULL;
}
