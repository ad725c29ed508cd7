/*
 * session.c - sessions stored in the default database (hp_session_get,
 * _set, _del, _destroy, _regenerate; the session behind hp_csrf_token):
 * the hotpub_sessions table and its creation before any request can use it
 * (at start; on each new connection of the default pool), the session
 * cookie, loading a request's session, writing it in the request's commit
 * phase, and the purge thread that deletes expired rows.
 *
 * Owns: the table's schema, the cookie's name, attributes and id format,
 * expiry (sliding, refreshed at most every 1% of the lifetime; a session
 * holding no data has the short anonymous lifetime), what a
 * request's session holds until it commits (struct hp_sess), and when a
 * session is locked (sesslock.c has the SQLite lock file).
 * May not touch: the database layer's insides (only the public hp_db_*
 * calls, hp_db(req), and db.h's connect hook, hp_db__begin_writing,
 * hp_db__req_autocommit and hp_db__sqlite_file),
 * the request lifecycle's order (publish.c: a
 * session takes part through struct hp_resource), HTTP sending.
 *
 * Why the request's own transaction: a session write is part of what the
 * request did (a login that fails half-way must not leave a logged-in
 * session), so it is written in the commit phase on the request's
 * connection, after the handler, and goes with the request's COMMIT or
 * ROLLBACK. The resource is enlisted after the request's database handle,
 * so it commits first (resources commit newest first) and the database
 * votes after the session is written.
 *
 * Why a lock per session, from the first use to the request's end: a
 * request reads the session, the page changes it, the commit writes it
 * whole; two requests of one session in between lost one's changes (an
 * increment by 301 concurrent requests ended at 287). PHP holds a lock on
 * the session from session_start to the request's end; so do we, in the
 * store, so that it dies with the transaction (PostgreSQL's row lock, on
 * every node) or the process (SQLite's lock file byte), never with a
 * mutex a crashed worker would leave locked. Its release is the request's
 * last resource (hp_req_enlist_last): after the real COMMIT.
 *
 * Why a hash of the id: the table stores SHA-256 of the cookie's id, never
 * the id, so a copy of the table (a backup, an SQL injection elsewhere)
 * does not hand out live sessions. A plain hash suffices: the id is 256
 * random bits, so there is nothing to guess and no need for a salt or a
 * slow hash.
 */
#include "session.h"
#include "db.h" /* only the calls named above */
#include "request.h"
#include "sesslock.h"
#include "wait.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define TABLE "hotpub_sessions"

/* The columns: id is SHA-256 of the cookie's id (hex), data "k=v&k=v"
 * percent-encoded, csrf the session's CSRF token, created and expires Unix
 * seconds. */
#define SCHEMA_SQL                                                             \
    "CREATE TABLE IF NOT EXISTS " TABLE " ("                                   \
    " id TEXT PRIMARY KEY,"                                                    \
    " data TEXT NOT NULL,"                                                     \
    " csrf TEXT NOT NULL,"                                                     \
    " created BIGINT NOT NULL,"                                                \
    " expires BIGINT NOT NULL"                                                 \
    ");"                                                                       \
    "CREATE INDEX IF NOT EXISTS " TABLE "_expires ON " TABLE " (expires);"

/* The schema in one transaction that waits its turn, so that worker
 * processes (or servers) starting together on a fresh database do not race:
 * SQLite's BEGIN IMMEDIATE takes the write lock (waiting up to the busy
 * timeout); PostgreSQL's CREATE ... IF NOT EXISTS is not safe against a
 * concurrent one (a unique violation on pg_type), so a transaction-scoped
 * advisory lock (the key is arbitrary) serializes it. */
static const char schema_sqlite[] = "BEGIN IMMEDIATE;" SCHEMA_SQL "COMMIT";
static const char schema_pg[] =
    "BEGIN; SELECT pg_advisory_xact_lock(1752200051);" SCHEMA_SQL "COMMIT";

/* The settings (hp_session_server_start; unit tests get the defaults). */
static struct {
    char cookie[128];
    long long lifetime;
    long long anon_lifetime; /* of a session that holds no data         */
    bool secure_always;
    int purge_interval;
    int lock_timeout_ms; /* session-lock-timeout                        */
    char *lock_path;     /* SQLite: the lock file (sesslock.c), or NULL */
    atomic_bool lock_file_logged;
    atomic_bool table_ready; /* this process saw the table created      */
    _Atomic double ready_at; /* when (hp_now()): requests begun earlier
                                may hold a snapshot without the table */
    pthread_mutex_t create_lock;
    atomic_bool no_db_logged;
    /* the purge thread */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    pthread_t purger;
    bool purger_running, stop;
} SS = {.cookie = "hotpub_session",
        .lifetime = 1209600,
        .anon_lifetime = 1440,
        .lock_timeout_ms = 10000,
        .create_lock = PTHREAD_MUTEX_INITIALIZER,
        .lock = PTHREAD_MUTEX_INITIALIZER,
        .cond = PTHREAD_COND_INITIALIZER};

/* A request's session, from its first use to its commit (request memory). */
struct hp_sess {
    struct hp_resource res;
    hp_req *req;
    bool failed;   /* no database, or it failed: every call fails  */
    bool no_db;    /* ... because none is configured               */
    bool enlisted; /* res is on the request's list                 */
    /* the session's lock, held from the first read to the request's end */
    struct hp_resource lock_res; /* its release                        */
    struct hp_resource busy_res; /* the 503 when it was not had in time */
    int lock_fd;                 /* SQLite: the lock file's, or -1     */
    double lock_until;           /* the wait's deadline (hp_now())     */
    bool lock_cut; /* lock_until is --handler-timeout's (wait.h's bound) */
    char lock_hash[65];          /* held in this process (sesslock.c)  */
    bool read_only; /* hp_session_read_only: no lock, no changes        */
    bool loaded;    /* the cookie's row was looked for                  */
    /* the row the cookie named, as read */
    bool had_row;
    char old_hash[65];
    /* the session now */
    bool live;         /* there is one (read, or created here)     */
    bool is_new;       /* not in the table yet: INSERT at commit   */
    bool dirty;        /* data or token changed: UPDATE them       */
    bool touch;        /* only the expiry is due for a refresh     */
    bool drop_old;     /* DELETE old_hash (regenerate, destroy)    */
    bool clear_cookie; /* destroyed: tell the browser to forget it */
    char id[HP_SESSION_ID_LEN + 1];
    char csrf[HP_SESSION_ID_LEN + 1];
    size_t n, cap;
    const char **keys, **vals;
};

/* ---- ids, hashes, encoding (pure; unit-tested) ------------------------- */

static void random_token(char out[HP_SESSION_ID_LEN + 1])
{
    unsigned char raw[32];
    randombytes_buf(raw, sizeof raw); /* getrandom(2): the kernel's CSPRNG */
    sodium_bin2base64(out, HP_SESSION_ID_LEN + 1, raw, sizeof raw,
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    sodium_memzero(raw, sizeof raw);
}

bool hp_session__id_ok(const char *s)
{
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmn"
                                   "opqrstuvwxyz0123456789-_";
    return s && strlen(s) == HP_SESSION_ID_LEN &&
           strspn(s, alphabet) == HP_SESSION_ID_LEN;
}

void hp_session__id_hash(const char *id, char out[65])
{
    unsigned char h[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(h, (const unsigned char *)id, strlen(id));
    sodium_bin2hex(out, 65, h, sizeof h);
}

static bool unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
           (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
           c == '~';
}

static void put_escaped(struct hp_buf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (unreserved(*p)) {
            hp_buf_append(b, p, 1);
        } else {
            char e[3] = {'%', hex[*p >> 4], hex[*p & 15]};
            hp_buf_append(b, e, 3);
        }
    }
}

char *hp_session__encode(size_t n, const char *const *keys,
                         const char *const *vals)
{
    struct hp_buf b = {0};
    hp_buf_reserve(&b, 1);
    for (size_t i = 0; i < n; i++) {
        if (i)
            hp_buf_append(&b, "&", 1);
        put_escaped(&b, keys[i]);
        hp_buf_append(&b, "=", 1);
        put_escaped(&b, vals[i]);
    }
    if (!b.p)
        return NULL;
    b.p[b.len] = '\0';
    return b.p;
}

static int hexval(char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                  : -1;
}

/* Decode src up to a stop character into dst; the end of what was read,
 * or NULL on a bad escape or a NUL byte. */
static const char *unescape(const char *src, char stop, char **dst)
{
    char *d = *dst;
    for (; *src && *src != stop && !(stop == '=' && *src == '&'); src++) {
        if (*src != '%') {
            *d++ = *src;
            continue;
        }
        int hi = hexval(src[1]), lo = hi < 0 ? -1 : hexval(src[2]);
        if (lo < 0 || (hi == 0 && lo == 0))
            return NULL;
        *d++ = (char)(hi * 16 + lo);
        src += 2;
    }
    *d++ = '\0';
    *dst = d;
    return src;
}

int hp_session__decode(const char *text, char ***keys, char ***vals,
                       char **block)
{
    size_t len = strlen(text), n = len ? 1 : 0;
    for (const char *p = text; *p; p++)
        n += *p == '&';
    *keys = hp_xcalloc(n + 1, sizeof **keys);
    *vals = hp_xcalloc(n + 1, sizeof **vals);
    *block = hp_xmalloc(len + 2 * n + 1);
    char *d = *block;
    const char *p = text;
    for (size_t i = 0; i < n; i++) {
        (*keys)[i] = d;
        p = unescape(p, '=', &d);
        if (!p || *p != '=')
            goto bad;
        (*vals)[i] = d;
        p = unescape(p + 1, '&', &d);
        if (!p || (*p && *p != '&') || (*p == '&') != (i + 1 < n))
            goto bad;
        p += *p == '&';
    }
    return (int)n;
bad:
    free(*keys);
    free(*vals);
    free(*block);
    *keys = *vals = NULL;
    *block = NULL;
    return -1;
}

/* ---- expiry (pure; unit-tested) ------------------------------------------ */

long long hp_session__lifetime(size_t npairs, long long lifetime,
                               long long anon_lifetime)
{
    return npairs || anon_lifetime > lifetime ? lifetime : anon_lifetime;
}

/* A session's expiry moves forward when a request finds it a step older
 * than a full lifetime: 1% of the lifetime, at least a minute (a write per
 * step, not per request), but at most a quarter of it, so that a session
 * used within three quarters of its lifetime is never lost, however short
 * the lifetime (--session-anonymous-lifetime can be 60 s). */
bool hp_session__renew_due(long long expires, long long now, long long life)
{
    long long step = life / 100 > 60 ? life / 100 : 60;
    if (step > life / 4)
        step = life / 4;
    return expires < now + life - step || expires > now + life + 60;
}

/* ---- the table ---------------------------------------------------------- */

/* PostgreSQL: the search_path names a schema that exists (else CREATE
 * TABLE fails: a schema made later by the application's migrations). */
static bool has_schema(hp_db *db)
{
    if (hp_db_engine(db) != HP_DB_POSTGRESQL)
        return true;
    hp_db_res *r = hp_db_query(db, "SELECT current_schema()");
    bool yes = r && hp_db_next(r) && !hp_db_is_null(r, 0);
    hp_db_res_free(r);
    return yes;
}

/* This process knows the table exists, from now on (table_or_fail). */
static void mark_ready(void)
{
    if (!atomic_load(&SS.table_ready)) {
        atomic_store(&SS.ready_at, hp_now());
        atomic_store(&SS.table_ready, true);
    }
}

/* The schema on db, a connection of no request. 0 or -1. */
static int create_schema(hp_db *db)
{
    bool pg = hp_db_engine(db) == HP_DB_POSTGRESQL;
    if (hp_db_exec_script(db, pg ? schema_pg : schema_sqlite) != HP_OK)
        return -1;
    mark_ready();
    return 0;
}

/* Every new connection of the default pool, before anyone uses it (db.h):
 * so the table exists before any request's transaction begins, in a fresh
 * database (the default one is made on first use), and in a SQLite file
 * opened anew after it was deleted. A transaction that changes nothing
 * when the table is there. */
static int on_connect(hp_db *db)
{
    if (!has_schema(db))
        return 0;
    /* Only a look when the table is there (most connections): no write
     * transaction, and no failing DDL on a read-only replica. */
    bool pg = hp_db_engine(db) == HP_DB_POSTGRESQL;
    hp_db_res *r = hp_db_query(
        db, pg ? "SELECT CASE WHEN to_regclass('" TABLE "') IS NULL"
                 " THEN 0 ELSE 1 END"
               : "SELECT count(*) FROM sqlite_master WHERE name = '" TABLE "'");
    bool there = r && hp_db_next(r) && hp_db_int(r, 0) > 0;
    hp_db_res_free(r);
    if (!there)
        return create_schema(db);
    mark_ready();
    return 0;
}

/*
 * Create the table on a connection of its own in autocommit mode (DDL in a
 * request's transaction would vanish with its rollback). The server does it
 * at start when a database is named, before the process answers any request
 * (hp_session_server_start); else (the default database, whose file is made
 * on first use only; a database down at start) at first use, by the purge
 * thread or a request. A request whose read transaction began before the
 * table existed would not see it (its INSERT failed "no such table": the
 * first session of a fresh SQLite database was a 500): table_or_fail moves
 * such a request to a fresh snapshot. who: for the log; quiet: at start,
 * where a schema that does not exist yet is no error.
 */
static int ensure_table(const char *who, bool quiet)
{
    if (atomic_load(&SS.table_ready))
        return 0;
    pthread_mutex_lock(&SS.create_lock);
    for (int attempt = 0; attempt < 2 && !atomic_load(&SS.table_ready);
         attempt++) {
        char *err = NULL;
        hp_db *db = hp_db_pool_acquire(hp_db_default_pool(), &err);
        if (!db) {
            hp_log_error("sessions: %s: no database connection to create the "
                         "table " TABLE ": %s",
                         who, err ? err : "?");
            free(err);
            break;
        }
        if (quiet && !has_schema(db)) {
            hp_db_pool_release(db);
            break;
        }
        if (!atomic_load(&SS.table_ready) && create_schema(db) < 0 && attempt)
            hp_log_error("sessions: %s: creating the table " TABLE ": %s", who,
                         hp_db_error(db));
        hp_db_pool_release(db);
    }
    pthread_mutex_unlock(&SS.create_lock);
    return atomic_load(&SS.table_ready) ? 0 : -1;
}

/* ---- the request's session ---------------------------------------------- */

static int sess_commit(void *arg);
static void sess_rollback(void *arg);

static long long unix_now(void)
{
    return (long long)time(NULL);
}

/* Seconds the session lives unused: a session that holds nothing but its
 * CSRF token (an anonymous visitor shown a form) gets the short anonymous
 * lifetime, so that every visitor, crawler included, does not cost a row
 * for two weeks; the first hp_session_set gives it the full one. */
static long long lifetime(const struct hp_sess *s)
{
    return hp_session__lifetime(s->n, SS.lifetime, SS.anon_lifetime);
}

/* Enlist after the request's database handle, so that the session is
 * written before the database votes (see the top of the file). */
static int enlist(struct hp_sess *s)
{
    if (s->enlisted)
        return 0;
    if (!hp_db(s->req))
        return -1; /* the request answers 503 (db.c) */
    s->res = (struct hp_resource){
        .commit = sess_commit, .rollback = sess_rollback, .arg = s};
    hp_req_enlist(s->req, &s->res);
    s->enlisted = true;
    return 0;
}

static int add_pair(struct hp_sess *s, const char *k, const char *v)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 8;
        const char **nk = hp_alloc(s->req, cap * sizeof *nk);
        const char **nv = hp_alloc(s->req, cap * sizeof *nv);
        if (!nk || !nv)
            return -1;
        if (s->n) {
            memcpy(nk, s->keys, s->n * sizeof *nk);
            memcpy(nv, s->vals, s->n * sizeof *nv);
        }
        s->keys = nk, s->vals = nv, s->cap = cap;
    }
    s->keys[s->n] = hp_strdup(s->req, k);
    s->vals[s->n] = hp_strdup(s->req, v);
    if (!s->keys[s->n] || !s->vals[s->n])
        return -1;
    s->n++;
    return 0;
}

/* ---- one request of a session at a time -------------------------------- */

/* The 503 of a request that did not get its session's lock in time, as the
 * database layer's 503s are written (db.c): plain text, Retry-After. */
static void busy_rollback(void *arg)
{
    struct hp_sess *s = arg;
    hp_req *req = s->req;
    req->headers.n = 0;
    req->has_content_type = false;
    req->out.len = 0;
    req->status = 503;
    hp_req_add_header(req, "Content-Type", "text/plain; charset=utf-8");
    hp_req_add_header(req, "Retry-After", "1");
    if (s->lock_cut)
        hp_buf_printf(&req->out,
                      "503 Service Unavailable: this session is busy: "
                      "another request of it held it past the time this "
                      "request could wait within --handler-timeout\n");
    else
        hp_buf_printf(&req->out,
                      "503 Service Unavailable: this session is busy: "
                      "another request of it held it longer than "
                      "session-lock-timeout (%d ms)\n",
                      SS.lock_timeout_ms);
}

/* Whatever the page does next, the request answers 503 (publish.c: a
 * forced status rolls the request back; the rollback writes the body). */
static void session_busy(struct hp_sess *s)
{
    if (s->lock_cut)
        hp_log_error("sessions: %s: another request of this session held it "
                     "past the wait's bound (session-lock-timeout, %d ms, "
                     "cut short by --handler-timeout): 503",
                     s->req->target.path, SS.lock_timeout_ms);
    else
        hp_log_error("sessions: %s: another request of this session held "
                     "it longer than session-lock-timeout (%d ms): 503",
                     s->req->target.path, SS.lock_timeout_ms);
    s->failed = true;
    s->busy_res = (struct hp_resource){.rollback = busy_rollback, .arg = s};
    hp_req_enlist_last(s->req, &s->busy_res);
    s->req->forced_status = 503;
}

/* The store's lock first (the lock file's byte), then this process's. */
static void lock_release(void *arg)
{
    struct hp_sess *s = arg;
    hp_sesslock_release(s->lock_fd);
    s->lock_fd = -1;
    hp_sesslock_local_release(s->lock_hash);
}

/* Milliseconds left of the wait, at least 1. */
static int ms_left(const struct hp_sess *s)
{
    double ms = (s->lock_until - hp_now()) * 1000.0;
    return ms < 1 ? 1 : (int)ms;
}

/* SQLite: the session's byte of the lock file (sesslock.c). 0: locked, or
 * no lock file (logged once: the session then works unlocked); 1: busy. */
static int lock_file(struct hp_sess *s, const char *hash)
{
    int rc = hp_sesslock_acquire(SS.lock_path, hash, ms_left(s), &s->lock_fd);
    /* The default database's directory is made with its first connection. */
    if (rc < 0 && errno == ENOENT && hp_db(s->req))
        rc = hp_sesslock_acquire(SS.lock_path, hash, ms_left(s), &s->lock_fd);
    if (rc < 0 && !atomic_exchange(&SS.lock_file_logged, true))
        hp_log_error("sessions: the lock file %s: %s: concurrent requests of "
                     "one session are not serialised",
                     SS.lock_path, strerror(errno));
    return rc > 0 ? 1 : 0;
}

/* The session's lock, before its row is read and before the request takes
 * a connection if it has none yet: first this process's (its other
 * requests of the session wait there, holding no connection), then the
 * store's: SQLite's lock file here, PostgreSQL's row in select_locked.
 * Both are released by the request's last resource (hp_req_enlist_last),
 * after the COMMIT of what was written under them. 0, or 1: busy. */
static int lock_session(struct hp_sess *s, const char *hash)
{
    /* session-lock-timeout, or less: the wait ends before the handler's
     * --handler-timeout (wait.h's hp_wait_bound), so that a busy session
     * answers its 503, not the watchdog's 504 of a stuck handler. */
    s->lock_until =
        (double)hp_wait_bounded(SS.lock_timeout_ms, &s->lock_cut) / 1e9;
    if (hp_sesslock_local_acquire(hash, s->lock_until) != 0)
        return 1;
    memcpy(s->lock_hash, hash, sizeof s->lock_hash);
    s->lock_res = (struct hp_resource){.release = lock_release, .arg = s};
    hp_req_enlist_last(s->req, &s->lock_res);
    return SS.lock_path ? lock_file(s, hash) : 0;
}

#define SELECT_ROW                                                             \
    "SELECT data, csrf, expires FROM " TABLE " WHERE id = $1 AND expires > $2"

/* PostgreSQL: the row, locked (FOR UPDATE) in the request's transaction
 * until its COMMIT or ROLLBACK, by every node on the database. First
 * without waiting (SKIP LOCKED): a row nobody holds, the usual case, costs
 * one statement. No row means none, or one another request holds: then
 * the wait, bounded by lock_timeout for this statement only: set for the
 * transaction (set_config's is_local), then back to what it was, so that
 * the page's own statements keep theirs. Its expiry (SQLSTATE 55P03,
 * lock_not_available) is the busy 503. */
static hp_db_res *select_locked(struct hp_sess *s, hp_db *db, const char *hash)
{
    hp_db_res *free_row = hp_db_queryv(db, SELECT_ROW " FOR UPDATE SKIP LOCKED",
                                       HP_TEXT(hash), HP_INT(unix_now()));
    if (!free_row || hp_db_nrows(free_row) > 0)
        return free_row;
    hp_db_res_free(free_row);
    char ms[16];
    snprintf(ms, sizeof ms, "%d", ms_left(s));
    hp_db_res *r = hp_db_queryv(db,
                                "SELECT current_setting('lock_timeout'), "
                                "set_config('lock_timeout', $1, true)",
                                HP_TEXT(ms));
    if (!r || !hp_db_next(r))
        return NULL;
    const char *was = hp_strdup(s->req, hp_db_text(r, 0));
    r = hp_db_queryv(db, SELECT_ROW " FOR UPDATE", HP_TEXT(hash),
                     HP_INT(unix_now()));
    if (!r) {
        if (strcmp(hp_db_sqlstate(db), "55P03") == 0)
            session_busy(s);
        return NULL;
    }
    if (!was || hp_db_execv(db, "SELECT set_config('lock_timeout', $1, true)",
                            HP_TEXT(was)) != HP_OK)
        return NULL;
    return r;
}

/* The row the cookie names, if it is there and not expired, with the
 * session's lock (docs/pages.md, "One request of a session at a time"). */
static int read_row(struct hp_sess *s, const char *id)
{
    char hash[65];
    hp_session__id_hash(id, hash);
    if (!s->read_only && lock_session(s, hash) > 0) {
        session_busy(s);
        return 0;
    }
    hp_db *db = hp_db(s->req);
    if (!db)
        return -1;
    bool pg = hp_db_engine(db) == HP_DB_POSTGRESQL;
    /* A read transaction the request began before the lock has an older
     * snapshot: it moves to a fresh one (taking SQLite's write lock, as
     * the session's write would at commit). */
    if (s->lock_fd >= 0 && hp_db__begin_writing(db) < 0)
        return -1;
    hp_db_res *r =
        pg && !s->read_only
            ? select_locked(s, db, hash)
            : hp_db_queryv(db, SELECT_ROW, HP_TEXT(hash), HP_INT(unix_now()));
    if (!r)
        return s->failed ? 0 : -1; /* busy: already answered */
    if (!hp_db_next(r))
        return 0;
    char **keys, **vals, *block;
    int n = hp_session__decode(hp_db_text(r, 0), &keys, &vals, &block);
    if (n < 0) {
        hp_log_error("sessions: %s: a row of " TABLE " has malformed data: "
                     "treated as no session",
                     s->req->target.path);
        return 0;
    }
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++)
        rc = add_pair(s, keys[i], vals[i]);
    free(keys), free(vals), free(block);
    const char *csrf = hp_db_text(r, 1);
    if (rc < 0 || !hp_session__id_ok(csrf))
        return rc < 0 ? -1 : 0;
    memcpy(s->csrf, csrf, sizeof s->csrf);
    memcpy(s->id, id, sizeof s->id);
    memcpy(s->old_hash, hash, sizeof hash);
    s->had_row = s->live = true;
    /* Sliding expiry, written at most every 1% of the lifetime (and at
     * least a minute apart), not on every request; also when the row's
     * lifetime is not the one its data calls for (emptied, or written
     * before a change of the settings). */
    s->touch = hp_session__renew_due(hp_db_int(r, 2), unix_now(), lifetime(s));
    return s->touch ? enlist(s) : 0;
}

static struct hp_sess *no_db(hp_req *req, struct hp_sess *s)
{
    if (!atomic_exchange(&SS.no_db_logged, true))
        hp_log_error("sessions: %s: no database is configured (--db off): "
                     "hp_session_* and hp_csrf_token fail",
                     req->target.path);
    s->failed = s->no_db = true;
    return s;
}

/* The request's handle is in autocommit (hp_db_autocommit): the session's
 * lock (PostgreSQL's row lock, SQLite's BEGIN IMMEDIATE) would end with
 * the statement that took it, and its write would not go with the
 * request's outcome. A page's mistake, said loudly: the request answers
 * 500 and the log says why (docs/database.md, "Autocommit"); quietly
 * failing calls let hp_session_destroy, which returns nothing, leave a
 * user logged in (FRESH14-2). */
static void fail_autocommit(hp_req *req)
{
    hp_log_error("sessions: %s: the request's database handle is in "
                 "autocommit (hp_db_autocommit), which a session cannot use "
                 "(its lock and write need the request's transaction): 500",
                 req->target.path);
    req->forced_status = 500;
}

static struct hp_sess *in_autocommit(hp_req *req, struct hp_sess *s)
{
    fail_autocommit(req);
    s->failed = true;
    return s;
}

/* The session cannot be read. When that is because the database is down,
 * the request's own hp_db says so the usual way (503, db.c); a logged-in
 * user must not silently look logged out. */
static void fail_request(struct hp_sess *s)
{
    s->failed = true;
    (void)hp_db(s->req);
}

/* The table exists, and the request's statements will see it: one begun
 * before this process knew of the table may hold a read snapshot from
 * before it was created; it begins writing now (what its session write
 * would do at commit anyway), which on SQLite takes a fresh snapshot. Only
 * requests around the table's first use, when it is created lazily. */
static int table_or_fail(struct hp_sess *s)
{
    if (ensure_table(s->req->target.path, false) == 0 &&
        (s->req->started > atomic_load(&SS.ready_at) ||
         hp_db__begin_writing(hp_db(s->req)) == 0))
        return 0;
    fail_request(s);
    return -1;
}

/* The request's session state, read on first use. */
static struct hp_sess *attach(hp_req *req)
{
    struct hp_sess *s = hp_alloc(req, sizeof *s);
    if (!s)
        return NULL;
    *s = (struct hp_sess){.req = req, .lock_fd = -1};
    req->session = s;
    return s;
}

static struct hp_sess *load(hp_req *req)
{
    struct hp_sess *s = req->session;
    if (s && s->loaded)
        return s;
    if (!s && !(s = attach(req)))
        return NULL;
    s->loaded = true;
    if (hp_crypto_init() < 0) {
        s->failed = true;
        return s;
    }
    if (!hp_db_default_pool())
        return no_db(req, s);
    if (hp_db__req_autocommit(req))
        return in_autocommit(req, s);
    const char *id = hp_cookie(req, SS.cookie);
    /* A forged or tampered cookie is no session; only a well-formed one
     * costs a lookup, and no cookie costs no database at all. */
    if (hp_session__id_ok(id) && table_or_fail(s) == 0 && read_row(s, id) < 0)
        fail_request(s);
    return s;
}

bool hp_session__cookie_present(hp_req *req)
{
    return hp_session__id_ok(hp_cookie(req, SS.cookie));
}

/* A new, empty session with a fresh id and token. */
static void create(struct hp_sess *s)
{
    random_token(s->id);
    random_token(s->csrf);
    s->live = s->is_new = true;
    s->clear_cookie = false;
    s->n = 0;
}

/* Changes are refused after hp_session_read_only: the session was read
 * without its lock, so writing it back could undo another request's. */
static bool may_change(struct hp_sess *s, const char *what)
{
    if (!s->read_only)
        return true;
    hp_log_error("sessions: %s: %s after hp_session_read_only: refused (the "
                 "session was read without its lock)",
                 s->req->target.path, what);
    return false;
}

/* The session, creating one if there is none; NULL when that fails. */
static struct hp_sess *writable(hp_req *req)
{
    struct hp_sess *s = req ? load(req) : NULL;
    if (!s || s->failed || !may_change(s, "a change of the session") ||
        table_or_fail(s) < 0 || enlist(s) < 0)
        return NULL;
    if (!s->live)
        create(s);
    s->dirty = true;
    return s;
}

/* ---- the commit phase ---------------------------------------------------- */

static void add_cookie(struct hp_sess *s, const char *value, long long max_age)
{
    hp_req *req = s->req;
    bool secure = req->secure || SS.secure_always;
    char *v = hp_sprintf(req,
                         "%s=%s; Path=/; Max-Age=%lld; HttpOnly; "
                         "SameSite=Lax%s",
                         SS.cookie, value, max_age, secure ? "; Secure" : "");
    if (!v)
        return;
    hp_req_add_header(req, "Set-Cookie", v);
    /* A shared cache must not keep a response that hands out a session. */
    for (size_t i = 0; i < req->headers.n; i++)
        if (strcasecmp(req->headers.v[i].name, "Cache-Control") == 0)
            return;
    hp_req_add_header(req, "Cache-Control", "private");
}

static int write_row(struct hp_sess *s, hp_db *db, long long expires)
{
    char hash[65];
    hp_session__id_hash(s->id, hash);
    char *data = hp_session__encode(s->n, s->keys, s->vals);
    if (!data)
        return -1;
    int rc;
    if (s->is_new)
        rc = hp_db_execv(db,
                         "INSERT INTO " TABLE " (id, data, csrf, created, "
                         "expires) VALUES ($1, $2, $3, $4, $5)",
                         HP_TEXT(hash), HP_TEXT(data), HP_TEXT(s->csrf),
                         HP_INT(unix_now()), HP_INT(expires));
    else if (s->dirty)
        rc = hp_db_execv(db,
                         "UPDATE " TABLE " SET data = $2, csrf = $3, "
                         "expires = $4 WHERE id = $1",
                         HP_TEXT(hash), HP_TEXT(data), HP_TEXT(s->csrf),
                         HP_INT(expires));
    else /* only the expiry: never overwrite what another request wrote */
        rc = hp_db_execv(db, "UPDATE " TABLE " SET expires = $2 WHERE id = $1",
                         HP_TEXT(hash), HP_INT(expires));
    free(data);
    return rc;
}

/* Renewing the expiry is the only write of a request that just read its
 * session, and it is optional: if it cannot be written (SQLite: another
 * request wrote since this GET's read transaction began, so it cannot take
 * the write lock), the savepoint undoes the failure and the request goes
 * on; a later request renews. */
static int touch_only(struct hp_sess *s, hp_db *db, long long expires)
{
    if (hp_db_exec(db, "SAVEPOINT hotpub_session_touch") != HP_OK)
        return 500;
    if (write_row(s, db, expires) != HP_OK)
        return hp_db_exec(db, "ROLLBACK TO SAVEPOINT hotpub_session_touch") ==
                       HP_OK
                   ? HP_OK
                   : 500;
    if (hp_db_changes(db) > 0)
        add_cookie(s, s->id, lifetime(s));
    return HP_OK;
}

static int sess_commit(void *arg)
{
    struct hp_sess *s = arg;
    if (hp_db__req_autocommit(s->req)) { /* created, then autocommit */
        fail_autocommit(s->req);
        return 500;
    }
    hp_db *db = hp_db(s->req);
    long long expires = unix_now() + lifetime(s);

    if (s->live && s->touch && !s->is_new && !s->dirty && !s->drop_old)
        return touch_only(s, db, expires);

    if (s->drop_old && s->had_row &&
        hp_db_exec(db, "DELETE FROM " TABLE " WHERE id = $1", s->old_hash) !=
            HP_OK)
        return 500;
    if (s->live && (s->is_new || s->dirty || s->touch)) {
        if (write_row(s, db, expires) != HP_OK)
            return 500;
        /* An UPDATE that found nothing: another request destroyed the
         * session meanwhile; it stays destroyed. */
        if (s->is_new || hp_db_changes(db) > 0)
            add_cookie(s, s->id, lifetime(s));
    } else if (!s->live && s->clear_cookie) {
        add_cookie(s, "", 0);
    }
    return HP_OK;
}

static void sess_rollback(void *arg)
{
    (void)arg; /* nothing was written, no cookie was set: nothing to undo */
}

/* ---- what pages call ----------------------------------------------------- */

static long find_key(struct hp_sess *s, const char *key)
{
    for (size_t i = s->n; i-- > 0;)
        if (strcmp(s->keys[i], key) == 0)
            return (long)i;
    return -1;
}

const char *hp_session_get(hp_req *req, const char *key)
{
    HP_REFUSE_NULL(req, key, "key", NULL);
    struct hp_sess *s = load(req);
    if (!s || s->failed || !s->live)
        return NULL;
    long i = find_key(s, key);
    return i < 0 ? NULL : s->vals[i];
}

int hp_session_set(hp_req *req, const char *key, const char *value)
{
    HP_REFUSE_NULL(req, key, "key", -1);
    HP_REFUSE_NULL(req, value, "value", -1);
    if (!*key)
        return -1;
    struct hp_sess *s = writable(req);
    if (!s)
        return -1;
    long i = find_key(s, key);
    if (i < 0)
        return add_pair(s, key, value) < 0 ? -1 : HP_OK;
    const char *v = hp_strdup(req, value);
    if (!v)
        return -1;
    s->vals[i] = v;
    return HP_OK;
}

int hp_session_del(hp_req *req, const char *key)
{
    HP_REFUSE_NULL(req, key, "key", -1);
    struct hp_sess *s = load(req);
    if (!s || s->failed)
        return -1;
    long i = s->live ? find_key(s, key) : -1;
    if (i < 0)
        return HP_OK; /* nothing to delete is not an error */
    if (!may_change(s, "hp_session_del") || enlist(s) < 0)
        return -1;
    memmove(s->keys + i, s->keys + i + 1,
            (s->n - (size_t)i - 1) * sizeof *s->keys);
    memmove(s->vals + i, s->vals + i + 1,
            (s->n - (size_t)i - 1) * sizeof *s->vals);
    s->n--;
    s->dirty = true;
    return HP_OK;
}

void hp_session_destroy(hp_req *req)
{
    HP_REFUSE_NULL_REQ(req, );
    struct hp_sess *s = load(req);
    if (!s || s->failed || !s->live || !may_change(s, "hp_session_destroy") ||
        enlist(s) < 0)
        return;
    s->drop_old = s->had_row;
    s->clear_cookie = s->had_row;
    s->live = s->is_new = s->dirty = s->touch = false;
    s->n = 0;
}

bool hp_session_exists(hp_req *req)
{
    HP_REFUSE_NULL_REQ(req, false);
    struct hp_sess *s = load(req);
    return s && !s->failed && s->live;
}

int hp_session_regenerate(hp_req *req)
{
    HP_REFUSE_NULL_REQ(req, -1);
    struct hp_sess *s = load(req);
    if (!s || s->failed || !may_change(s, "hp_session_regenerate") ||
        table_or_fail(s) < 0 || enlist(s) < 0)
        return -1;
    if (!s->live) {
        create(s);
        return HP_OK;
    }
    /* The old id dies with this request's commit; the data moves. A new
     * CSRF token too: a token seen before login is not one after it. */
    s->drop_old = s->had_row;
    random_token(s->id);
    random_token(s->csrf);
    s->is_new = s->dirty = true;
    return HP_OK;
}

int hp_session_read_only(hp_req *req)
{
    HP_REFUSE_NULL_REQ(req, -1);
    if (req->session)
        return req->session->read_only ? HP_OK : -1;
    struct hp_sess *s = attach(req);
    if (!s)
        return -1;
    s->read_only = true;
    return HP_OK;
}

const char *hp_session__csrf(hp_req *req, bool create_one, bool *failed)
{
    struct hp_sess *s = load(req);
    if (failed)
        *failed = !s || (s->failed && !s->no_db);
    if (!s || s->failed)
        return NULL;
    if (!s->live && (!create_one || !writable(req)))
        return NULL;
    return s->csrf;
}

/* ---- purging expired sessions ------------------------------------------- */

static void purge_once(void)
{
    char *err = NULL;
    hp_db_pool *pool = hp_db_default_pool();
    hp_db *db = pool ? hp_db_pool_acquire(pool, &err) : NULL;
    if (!db) {
        hp_log_error("sessions: purge: no database connection: %s",
                     err ? err : "?");
        free(err);
        return;
    }
    if (hp_db_execv(db, "DELETE FROM " TABLE " WHERE expires <= $1",
                    HP_INT(unix_now())) != HP_OK)
        hp_log_error("sessions: purging expired sessions: %s", hp_db_error(db));
    hp_db_pool_release(db);
}

/* Every purge-interval, with up to 10% jitter so that worker processes
 * started together do not purge together. When the table could not be
 * created at start, it is tried again first. */
static void *purge_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&SS.lock);
    while (!SS.stop) {
        double wait = SS.purge_interval *
                      (0.9 + 0.2 * randombytes_uniform(1000) / 1000.0);
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += (time_t)wait;
        until.tv_nsec += (long)((wait - (double)(time_t)wait) * 1e9);
        if (until.tv_nsec >= 1000000000L)
            until.tv_sec++, until.tv_nsec -= 1000000000L;
        while (!SS.stop &&
               pthread_cond_timedwait(&SS.cond, &SS.lock, &until) != ETIMEDOUT)
            ;
        if (SS.stop)
            continue;
        pthread_mutex_unlock(&SS.lock);
        if (ensure_table("purge", false) == 0)
            purge_once();
        pthread_mutex_lock(&SS.lock);
    }
    pthread_mutex_unlock(&SS.lock);
    return NULL;
}

void hp_session_server_start(const struct hp_config *cfg)
{
    snprintf(SS.cookie, sizeof SS.cookie, "%s",
             cfg->session_cookie ? cfg->session_cookie : "hotpub_session");
    SS.lifetime = cfg->session_lifetime;
    SS.anon_lifetime = cfg->session_anonymous_lifetime;
    SS.secure_always = cfg->session_secure_cookie;
    SS.purge_interval = cfg->session_purge_interval;
    SS.lock_timeout_ms = hp_config_session_lock_ms(cfg);
    free(SS.lock_path);
    const char *file = hp_db__sqlite_file(hp_db_default_pool());
    SS.lock_path = file ? hp_sesslock_path(file) : NULL;
    atomic_store(&SS.lock_file_logged, false);
    atomic_store(&SS.table_ready, false);
    atomic_store(&SS.ready_at, 0.0);
    atomic_store(&SS.no_db_logged, false);
    SS.stop = false;
    if (hp_crypto_init() < 0 || !hp_db_default_pool())
        return;
    /* A named database is connected to at start (db.c), before the hook
     * was set: that connection makes the table now. The default one is
     * made on first use: its first connection makes it (on_connect). */
    hp_db__set_connect_hook(on_connect);
    if (cfg->db && ensure_table("start", true) < 0)
        hp_log_info("sessions: the table " TABLE " was not created at start; "
                    "it will be at first use");
    if (SS.purge_interval <= 0)
        return;
    SS.purger_running = pthread_create(&SS.purger, NULL, purge_main, NULL) == 0;
    if (!SS.purger_running)
        hp_log_error("sessions: cannot start the purge thread: expired "
                     "sessions stay in " TABLE " (they are never read)");
}

void hp_session_server_stop(void)
{
    hp_db__set_connect_hook(NULL);
    if (!SS.purger_running)
        return;
    pthread_mutex_lock(&SS.lock);
    SS.stop = true;
    pthread_cond_signal(&SS.cond);
    pthread_mutex_unlock(&SS.lock);
    pthread_join(SS.purger, NULL);
    SS.purger_running = false;
}
