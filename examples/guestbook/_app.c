/*
 * guestbook/_app.c - the guestbook's application module: it runs for every
 * page under guestbook/ (it is never reachable by URL itself).
 *
 *   - HP_INIT creates the tables on first use. There is no request in an
 *     init, so it borrows a connection from the server's default pool
 *     (--db; by default a SQLite file per document root, no other service
 *     needed). It runs again for every new version of this file, which is
 *     harmless: the script creates only what is missing.
 *   - prepare sets the security headers every page of the application
 *     should carry, in one place.
 *
 * What the pages share as code is in _app.h (pages are separate shared
 * objects: an _app.c cannot export functions to them).
 */
#include <hotpub.h>

#include <stdlib.h>

/* The same schema on both engines but for how ids, blobs and timestamps
 * are spelled. users.token is the SHA-256 of the user's API token (see
 * _token.h); pwhash an argon2id string from hp_password_hash. */
#define SCHEMA(ID, BLOB, NOW)                                                  \
    "CREATE TABLE IF NOT EXISTS users ("                                       \
    " id " ID ","                                                              \
    " name TEXT NOT NULL UNIQUE,"                                              \
    " pwhash TEXT NOT NULL,"                                                   \
    " token TEXT UNIQUE,"                                                      \
    " created TEXT NOT NULL DEFAULT " NOW ");"                                 \
    "CREATE TABLE IF NOT EXISTS entries ("                                     \
    " id " ID ","                                                              \
    " user_id BIGINT NOT NULL REFERENCES users (id),"                          \
    " body TEXT NOT NULL,"                                                     \
    " picture " BLOB ","                                                       \
    " picture_type TEXT,"                                                      \
    " created TEXT NOT NULL DEFAULT " NOW ");"

static const char *const schema_sqlite =
    SCHEMA("INTEGER PRIMARY KEY AUTOINCREMENT", "BLOB",
           "(strftime('%Y-%m-%d %H:%M:%S', 'now'))");
/* On PostgreSQL two worker processes can run this at the same moment, and
 * two concurrent CREATE TABLE IF NOT EXISTS can still collide (a unique
 * violation in the catalog). The script runs as one implicit transaction
 * (one PQexec), so a transaction-scoped advisory lock taken first makes
 * the second worker wait for the first, then find the tables. */
static const char *const schema_pg =
    "SELECT pg_advisory_xact_lock(4242);"
    SCHEMA("BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY", "BYTEA",
           "(to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'))");

HP_INIT
{
    hp_db_pool *pool = hp_db_default_pool();
    char *err = NULL;

    if (!pool) /* the server runs with --db off: the pages answer 503 */
        return previous;
    hp_db *db = hp_db_pool_acquire(pool, &err);
    if (!db) {
        hp_module_error(m, "guestbook: no database connection: %s", err);
        free(err);
        return NULL;
    }
    bool pg = hp_db_engine(db) == HP_DB_POSTGRESQL;
    bool ok = hp_db_exec_script(db, pg ? schema_pg : schema_sqlite) == HP_OK;
    if (!ok) /* read the message before the connection goes back */
        hp_module_error(m, "guestbook: creating the tables: %s",
                        hp_db_error(db));
    hp_db_pool_release(db);
    return ok ? previous : NULL;
}

HP_HOOK(prepare)
{
    /* Only what this site serves runs here (no inline scripts, no foreign
     * frames); uploaded pictures are never sniffed into HTML. */
    hp_set_header(req, "Content-Security-Policy",
                  "default-src 'self'; frame-ancestors 'none'");
    hp_set_header(req, "X-Content-Type-Options", "nosniff");
    hp_set_header(req, "Referrer-Policy", "same-origin");
    return HP_OK;
}
