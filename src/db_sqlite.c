/*
 * db_sqlite.c - the SQLite engine behind the database layer (db_core.h).
 *
 * Owns: every sqlite3_* call: opening a connection with hotpub's settings
 * (WAL, busy timeout, foreign keys), compiling statements and checking
 * their parameters, binding, stepping every row into a result, and mapping
 * SQLite's result codes to SQLSTATEs.
 * May not touch: pools, caching decisions, transactions' place in the
 * request (the dispatch above decides; this file runs what it is given).
 * It calls only the core (db_core.h); the layer above reaches it only
 * through its driver table.
 *
 * Parameters: SQLite reads "$1" as a named parameter whose name is "$1",
 * so the SQL is never rewritten: each "$n" is bound by looking its name up
 * once, when the statement is compiled. Other parameter styles (?, ?NNN,
 * :name, @name) are refused, so SQL written here runs on PostgreSQL too.
 *
 * Connections are opened SQLITE_OPEN_NOMUTEX: the pool gives a connection
 * to one thread at a time, so SQLite's own per-connection mutex is waste.
 *
 * A connection remembers which file it opened (st_dev/st_ino): an open
 * descriptor keeps a deleted file alive, and writes into it "succeed"
 * while nobody will ever read them, so the pool asks (sq_check) at each
 * checkout whether the path still names that file.
 */
#include "db_drivers.h"
#include "wait.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define BUSY_TIMEOUT_MS 5000

/* What db->conn points to. */
struct sq_conn {
    sqlite3 *c;
    bool on_disk; /* a file with a path (not :memory:, not temporary) */
    dev_t dev;    /* the file opened, as stat(2) saw it at connect     */
    ino_t ino;
    bool guard;      /* a request's transaction is open: no BEGIN/COMMIT */
    char denied[16]; /* the operation the authorizer denied, or ""       */
    int busy_ms;     /* the busy timeout on_busy applies                 */
    int64_t busy_until;     /* this lock wait's end (on_busy)            */
    bool busy_cut;          /* ... given up at the handler's bound       */
    unsigned long gen_seen; /* lk_gen before the attempt that met a lock */
};

/* ---- waiting for the database's lock ---------------------------------------
 *
 * A statement that meets another connection's lock (SQLITE_BUSY) waits in
 * on_busy, SQLite's busy handler, for up to the busy timeout. SQLite's own
 * handler sleeps and retries (1, 2, 5 ... 100 ms); a lock held by another
 * process can only be polled so (SQLite has no wake-up across processes),
 * but a lock held by a connection of this process ends in this file: every
 * statement, script or close that leaves its connection without a
 * transaction (COMMIT, ROLLBACK, an autocommit statement done) calls
 * locks_released, which counts it (lk_gen) and wakes the waiters at once:
 * those on handler threads sleep on lk_cv, those on a coroutine park on
 * their scheduler's ticket (hp_wait_park), so that the holder, if it is a
 * coroutine of the same reactor thread, can run and commit. Each waiter
 * still wakes at SQLite's schedule, for the other processes.
 *
 * One count for all the files of the process: a commit to another file is
 * a wasted retry, not a missed one. lk_gen is read before each attempt
 * (gen_seen): a commit between the attempt that met the lock and the wait
 * is seen as a changed lk_gen, not slept through. locks_released's first
 * test is one atomic load of lk_waiting: nothing else without waiters.
 */
static pthread_mutex_t lk_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t lk_cv;
static pthread_once_t lk_once = PTHREAD_ONCE_INIT;
static atomic_ulong lk_gen;
static atomic_int lk_waiting;
struct lk_parked {
    struct lk_parked *next;
    struct hp_wait_ticket ticket;
};
static struct lk_parked *lk_parked; /* under lk_mu */

static void lk_init(void)
{
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(&lk_cv, &a);
    pthread_condattr_destroy(&a);
}

static void locks_released(void)
{
    atomic_fetch_add(&lk_gen, 1);
    if (atomic_load(&lk_waiting) == 0)
        return;
    pthread_once(&lk_once, lk_init);
    pthread_mutex_lock(&lk_mu);
    pthread_cond_broadcast(&lk_cv);
    for (struct lk_parked *w = lk_parked, *next; w; w = next) {
        next = w->next;
        hp_wait_unpark(&w->ticket); /* never blocks */
    }
    lk_parked = NULL;
    pthread_mutex_unlock(&lk_mu);
}

/* Until lk_gen is not seen any more, or until (CLOCK_MONOTONIC ns). false:
 * the scheduler ended the wait before either (the job's own deadline
 * passed, or it was given up): the lock is not to be waited for again. */
static bool lock_wait(unsigned long seen, int64_t until)
{
    struct lk_parked w = {0};
    bool go_on = true;
    pthread_once(&lk_once, lk_init);
    atomic_fetch_add(&lk_waiting, 1);
    pthread_mutex_lock(&lk_mu);
    if (atomic_load(&lk_gen) != seen) {
        pthread_mutex_unlock(&lk_mu);
    } else if (hp_wait_hooked() && hp_wait_ticket(&w.ticket)) {
        w.next = lk_parked;
        lk_parked = &w;
        pthread_mutex_unlock(&lk_mu);
        int rc = hp_wait_park(&w.ticket, until);
        if (rc != 1) {
            go_on = rc == 0 && hp_now_ns() >= until;
            /* the deadline: off the list, unless an unpark took it */
            pthread_mutex_lock(&lk_mu);
            for (struct lk_parked **pp = &lk_parked; *pp; pp = &(*pp)->next)
                if (*pp == &w) {
                    *pp = w.next;
                    break;
                }
            pthread_mutex_unlock(&lk_mu);
        }
    } else {
        struct timespec ts = {(time_t)(until / 1000000000),
                              (long)(until % 1000000000)};
        while (atomic_load(&lk_gen) == seen && hp_now_ns() < until)
            if (pthread_cond_timedwait(&lk_cv, &lk_mu, &ts) == ETIMEDOUT)
                break;
        pthread_mutex_unlock(&lk_mu);
    }
    atomic_fetch_sub(&lk_waiting, 1);
    return go_on;
}

/* SQLite's busy handler: 1 to try the lock again, 0 to give up (the
 * statement fails with SQLITE_BUSY). The naps are SQLite's own
 * (sqliteDefaultBusyCallback), cut short by a release in this process.
 * The wait ends at the busy timeout or at the handler's bound (wait.h's
 * hp_wait_bound: --handler-timeout less its margin), whichever comes
 * first, as the pool's wait does: a lock held too long is contention, not
 * a stuck page, and gets the request a 503 (busy_cut), not the watchdog's
 * 504 and a replaced worker. */
static int on_busy(void *arg, int count)
{
    static const int naps[] = {1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50, 100};
    struct sq_conn *s = arg;
    int64_t now = hp_now_ns();
    if (count == 0)
        s->busy_until = now + (int64_t)s->busy_ms * 1000000;
    int64_t end = s->busy_until, bound = hp_wait_bound();
    bool cut = bound && bound < end;
    if (cut)
        end = bound;
    if (now >= end) {
        s->busy_cut = cut;
        return 0;
    }
    int n = (int)(sizeof naps / sizeof *naps);
    int64_t until = now + (int64_t)naps[count < n ? count : n - 1] * 1000000;
    if (!lock_wait(s->gen_seen, until < end ? until : end))
        return 0;
    s->gen_seen = atomic_load(&lk_gen);
    return 1;
}

/* Before a statement that may meet a lock (see above). */
static void attempt(struct sq_conn *s)
{
    s->gen_seen = atomic_load(&lk_gen);
    s->busy_cut = false;
}

/* After one: a connection without a transaction holds no lock now. */
static void attempted(struct sq_conn *s)
{
    if (sqlite3_get_autocommit(s->c))
        locks_released();
}

/*
 * The engine's own word on transaction control in a request's transaction
 * (db.c screens the text first; this catches what a text test could miss):
 * while guard is set (from sq_begin to sq_commit, sq_rollback or sq_reset)
 * SQLite compiles no BEGIN, COMMIT, END or ROLLBACK (SQLITE_TRANSACTION;
 * its first argument names the operation) and the call fails with
 * SQLITE_AUTH, reported as db.c reports it (25001, the same words).
 * SAVEPOINT, RELEASE and ROLLBACK TO are SQLITE_SAVEPOINT: allowed. The
 * check runs when a statement is compiled: sqlite3_prepare_v3 and each
 * statement of a script in sqlite3_exec.
 */
static int authorize(void *arg, int action, const char *a1, const char *a2,
                     const char *a3, const char *a4)
{
    struct sq_conn *s = arg;
    if (action != SQLITE_TRANSACTION || !s->guard)
        return SQLITE_OK;
    snprintf(s->denied, sizeof s->denied, "%s", a1 ? a1 : "COMMIT");
    return SQLITE_DENY;
}

struct sq_stmt {
    sqlite3_stmt *st;
    int maxn;  /* highest $n                                   */
    int map[]; /* map[n-1]: the bind index of $n (0: unused)   */
};

static sqlite3 *C(hp_db *db)
{
    return ((struct sq_conn *)db->conn)->c;
}

/* SQLite's codes as SQLSTATEs, so an application can test "23505" for a
 * unique violation whichever engine runs it. */
static const char *sqlstate_of(int code, const char *msg)
{
    switch (code) {
    case SQLITE_CONSTRAINT_UNIQUE:
    case SQLITE_CONSTRAINT_PRIMARYKEY:
        return "23505";
    case SQLITE_CONSTRAINT_FOREIGNKEY:
        return "23503";
    case SQLITE_CONSTRAINT_NOTNULL:
        return "23502";
    case SQLITE_CONSTRAINT_CHECK:
        return "23514";
    }
    switch (code & 0xff) {
    case SQLITE_CONSTRAINT:
        return "23000";
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return "55P03"; /* lock_not_available     */
    case SQLITE_READONLY:
        return "25006"; /* read_only_sql_transaction */
    case SQLITE_TOOBIG:
        return "54000";
    case SQLITE_NOMEM:
        return "53200";
    case SQLITE_FULL:
        return "53100";
    case SQLITE_MISMATCH:
        return "42804";
    case SQLITE_RANGE:
        return "08P01";
    case SQLITE_CANTOPEN:
        return "08006";
    case SQLITE_ERROR:
        if (strncmp(msg, "no such table", 13) == 0)
            return "42P01";
        if (strncmp(msg, "no such column", 14) == 0)
            return "42703";
        if (strstr(msg, "syntax error"))
            return "42601";
        return "42000";
    }
    return "HY000";
}

static void fail_code(hp_db *db, int code, const char *msg)
{
    struct sq_conn *s = db->conn;
    if (code == SQLITE_AUTH && s->denied[0]) {
        hp_db__fail_tx_control(db, s->denied, strlen(s->denied), false);
        s->denied[0] = '\0';
        return;
    }
    hp_db__fail(db, msg, sqlstate_of(code, msg), code);
    db->wait_cut = (code & 0xff) == SQLITE_BUSY && s->busy_cut;
    s->busy_cut = false;
}

static void fail_conn(hp_db *db)
{
    fail_code(db, sqlite3_extended_errcode(C(db)), sqlite3_errmsg(C(db)));
}

/* ---- connections --------------------------------------------------------- */

/* "sqlite:PATH", "sqlite:///abs/path" -> PATH. */
static const char *sq_match(const char *url)
{
    if (strncmp(url, "sqlite:", 7) != 0)
        return NULL;
    return strncmp(url + 7, "//", 2) == 0 ? url + 9 : url + 7;
}

static bool sq_private_conns(const char *path)
{
    return strcmp(path, ":memory:") == 0;
}

static int sq_check_url(const char *path, char **err)
{
    if (!*path) {
        *err = hp_xstrdup("sqlite: needs a path, e.g. sqlite:/var/lib/app.db "
                          "or sqlite::memory:");
        return -1;
    }
    return 0;
}

static int exec_or_err(sqlite3 *c, const char *sql, char **err)
{
    char *msg = NULL;
    if (sqlite3_exec(c, sql, NULL, NULL, &msg) == SQLITE_OK)
        return 0;
    *err = hp_xasprintf("%s: %s", sql, msg ? msg : sqlite3_errmsg(c));
    sqlite3_free(msg);
    return -1;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/*
 * Switching a file to WAL takes its exclusive lock for a moment. When
 * another connection (another worker opening the same new file) holds a
 * lock, SQLite may answer SQLITE_BUSY at once without calling the busy
 * handler (waiting could deadlock), so the busy timeout alone does not
 * cover it: retry, quietly, for up to BUSY_TIMEOUT_MS. Once one
 * connection has switched, the mode is persistent and the PRAGMA is a
 * no-op for the others.
 */
static int set_wal(sqlite3 *c, char **err)
{
    static const char sql[] = "PRAGMA journal_mode = WAL";
    double until = hp_now() + BUSY_TIMEOUT_MS / 1000.0;
    long pause_ms = 1;

    for (;;) {
        int rc = sqlite3_exec(c, sql, NULL, NULL, NULL);
        if (rc == SQLITE_OK)
            return 0;
        bool busy = (rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED;
        if (!busy || hp_now() >= until) {
            *err = hp_xasprintf("%s: %s", sql, sqlite3_errmsg(c));
            return -1;
        }
        sleep_ms(pause_ms);
        pause_ms = pause_ms < 32 ? pause_ms * 2 : 32;
    }
}

/* WAL lets readers run while one request writes; NORMAL is WAL's safe
 * setting. A memory database has no journal to speak of. The busy
 * timeout comes first: every statement after it may meet another
 * process's lock. */
static int configure(sqlite3 *c, bool memory, const char *init_sql, char **err)
{
    sqlite3_extended_result_codes(c, 1);
    sqlite3_busy_timeout(c, BUSY_TIMEOUT_MS);
    if (exec_or_err(c, "PRAGMA foreign_keys = ON", err) < 0)
        return -1;
    if (!memory && (set_wal(c, err) < 0 ||
                    exec_or_err(c, "PRAGMA synchronous = NORMAL", err) < 0))
        return -1;
    if (init_sql && exec_or_err(c, init_sql, err) < 0)
        return -1;
    return 0;
}

/*
 * Remember which file c opened. stat(2) of the path, then SQLite's own
 * word (SQLITE_FCNTL_HAS_MOVED compares the path's inode with the open
 * file's) that the path still named the open file after that stat. A
 * database without a file (":memory:", "", a memory URI) has nothing to
 * remember. 0, or -1 + *err.
 */
static int remember_file(struct sq_conn *s, char **err)
{
    const char *path = sqlite3_db_filename(s->c, "main");
    struct stat st;
    int moved = 0;

    if (!path || !*path)
        return 0;
    if (stat(path, &st) < 0) {
        *err = hp_xasprintf("sqlite:%s: %s (just after opening it)", path,
                            strerror(errno));
        return -1;
    }
    if (sqlite3_file_control(s->c, "main", SQLITE_FCNTL_HAS_MOVED, &moved) ==
            SQLITE_OK &&
        moved) {
        *err = hp_xasprintf("sqlite:%s: deleted or replaced while it was "
                            "being opened",
                            path);
        return -1;
    }
    s->on_disk = true;
    s->dev = st.st_dev;
    s->ino = st.st_ino;
    return 0;
}

static int sq_connect(hp_db *db, const char *path, const char *init_sql,
                      int timeout_ms, char **err)
{
    sqlite3 *c = NULL;
    bool memory = strcmp(path, ":memory:") == 0;
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                SQLITE_OPEN_NOMUTEX |
                (strncmp(path, "file:", 5) == 0 ? SQLITE_OPEN_URI : 0);

    if (sqlite3_open_v2(path, &c, flags, NULL) != SQLITE_OK) {
        *err = hp_xasprintf("sqlite:%s: %s", path,
                            c ? sqlite3_errmsg(c) : "out of memory");
        sqlite3_close_v2(c);
        return -1;
    }
    struct sq_conn *s = hp_xcalloc(1, sizeof *s);
    s->c = c;
    if (configure(c, memory, init_sql, err) < 0 || remember_file(s, err) < 0) {
        sqlite3_close_v2(c);
        free(s);
        return -1;
    }
    sqlite3_set_authorizer(c, authorize, s);
    /* on_busy in SQLite's handler's place, with the busy timeout the init
     * SQL left (PRAGMA busy_timeout; 0: none, fail at once) */
    sqlite3_stmt *bt = NULL;
    s->busy_ms = BUSY_TIMEOUT_MS;
    if (sqlite3_prepare_v2(c, "PRAGMA busy_timeout", -1, &bt, NULL) ==
            SQLITE_OK &&
        sqlite3_step(bt) == SQLITE_ROW)
        s->busy_ms = sqlite3_column_int(bt, 0);
    sqlite3_finalize(bt);
    if (s->busy_ms > 0)
        sqlite3_busy_handler(c, on_busy, s);
    db->conn = s;
    return 0;
}

static void sq_disconnect(hp_db *db)
{
    sqlite3_close_v2(C(db));
    locks_released(); /* what it held, closed */
    free(db->conn);
    db->conn = NULL;
}

static bool sq_alive(hp_db *db)
{
    return db->conn != NULL;
}

/* One stat(2) of the path (absolute: SQLite keeps the full name). Only a
 * path that no longer names the file counts: another error (EACCES, EIO)
 * says nothing about the open file, which keeps working. The inode
 * cannot have been reused: the open descriptor keeps the old one. */
static bool sq_check(hp_db *db, char **why)
{
    const struct sq_conn *s = db->conn;
    struct stat st;

    if (!s->on_disk)
        return true;
    const char *path = sqlite3_db_filename(s->c, "main");
    if (stat(path, &st) < 0) {
        if (errno != ENOENT && errno != ENOTDIR)
            return true;
        *why = hp_xasprintf("the database file %s was deleted (%s)", path,
                            strerror(errno));
        return false;
    }
    if (st.st_dev == s->dev && st.st_ino == s->ino)
        return true;
    *why =
        hp_xasprintf("the database file %s was replaced by another file", path);
    return false;
}

/* SQLite runs in the process: every call has its answer when it returns. */
static bool sq_settle(hp_db *db)
{
    return true;
}

static bool sq_reply_due(hp_db *db)
{
    return false;
}

/* A transaction still open (autocommit off) is rolled back. */
static int sq_reset(hp_db *db)
{
    ((struct sq_conn *)db->conn)->guard = false;
    if (sqlite3_get_autocommit(C(db)))
        return 0;
    int rc = sqlite3_exec(C(db), "ROLLBACK", NULL, NULL, NULL);
    attempted(db->conn);
    return rc == SQLITE_OK ? 0 : -1;
}

/*
 * The session back as sq_connect left it (the pool's reset, db_pool.c): the
 * file opened anew, with hotpub's PRAGMAs and the init SQL, and the old
 * connection closed (its statements were finalized by the dispatch), so
 * its PRAGMAs, temporary tables and ATTACHed databases are gone. Cheap: no
 * network, a file already in the page cache, WAL already set. The new one
 * is opened first: when that fails the old one stays, for the pool to
 * close. A :memory: database is its one connection: reopening it would
 * lose the data, so it is left as it is (docs/database.md).
 */
static int sq_discard(hp_db *db, const char *path, const char *init_sql,
                      int timeout_ms)
{
    void *old = db->conn;
    char *err = NULL;
    if (sq_private_conns(path))
        return 0;
    if (sq_connect(db, path, init_sql, timeout_ms, &err) < 0) {
        hp_db__fail(db, err, NULL, 0);
        free(err);
        return -1;
    }
    void *fresh = db->conn;
    db->conn = old;
    sq_disconnect(db);
    db->conn = fresh;
    return 0;
}

static bool sq_in_tx(hp_db *db)
{
    return !sqlite3_get_autocommit(C(db));
}

static int sq_script(hp_db *db, const char *sql);

/* Only a request's handle begins (db.c): its transaction is guarded. */
static int sq_begin(hp_db *db, bool write)
{
    struct sq_conn *s = db->conn;
    s->guard = false;
    int rc = sq_script(db, write ? "BEGIN IMMEDIATE" : "BEGIN");
    s->guard = rc == 0;
    return rc;
}

static int sq_commit(hp_db *db)
{
    ((struct sq_conn *)db->conn)->guard = false;
    return sq_script(db, "COMMIT");
}

static int sq_rollback(hp_db *db)
{
    ((struct sq_conn *)db->conn)->guard = false;
    return sq_script(db, "ROLLBACK");
}

static bool sq_tx_failed(hp_db *db)
{
    return false; /* SQLite keeps a transaction usable; db.c tracks it */
}

/* ---- statements ---------------------------------------------------------- */

/* "$12" -> 12; 0 for any other parameter name. */
static int dollar_number(const char *name)
{
    if (!name || name[0] != '$' || !isdigit((unsigned char)name[1]))
        return 0;
    long v = 0;
    for (const char *p = name + 1; *p; p++) {
        if (!isdigit((unsigned char)*p) || v > 32766)
            return 0;
        v = v * 10 + (*p - '0');
    }
    return (int)v;
}

/* Highest $n, or -1 (error recorded) for a parameter of another style. */
static int max_param(hp_db *db, sqlite3_stmt *st)
{
    int count = sqlite3_bind_parameter_count(st), maxn = 0;
    for (int i = 1; i <= count; i++) {
        const char *name = sqlite3_bind_parameter_name(st, i);
        int n = dollar_number(name);
        if (n == 0) {
            char msg[160];
            snprintf(msg, sizeof msg,
                     "parameters are written $1, $2, ...; found %s",
                     name ? name : "?");
            hp_db__fail(db, msg, "42601", SQLITE_ERROR);
            return -1;
        }
        if (n > maxn)
            maxn = n;
    }
    return maxn;
}

/* One statement per call: a second one after ';' would be ignored
 * silently by SQLite. Comments and blanks after the first are fine. */
static bool more_statements(sqlite3 *c, const char *tail)
{
    sqlite3_stmt *next = NULL;
    while (isspace((unsigned char)*tail))
        tail++;
    if (!*tail)
        return false;
    if (sqlite3_prepare_v2(c, tail, -1, &next, NULL) != SQLITE_OK)
        return true;
    bool more = next != NULL;
    sqlite3_finalize(next);
    return more;
}

static struct sq_stmt *param_map(hp_db *db, sqlite3_stmt *st)
{
    int maxn = max_param(db, st);
    if (maxn < 0)
        return NULL;
    struct sq_stmt *s = hp_xcalloc(1, sizeof *s + (size_t)maxn * sizeof(int));
    s->st = st;
    s->maxn = maxn;
    for (int i = 1; i <= sqlite3_bind_parameter_count(st); i++)
        s->map[dollar_number(sqlite3_bind_parameter_name(st, i)) - 1] = i;
    return s;
}

static void *sq_prepare(hp_db *db, const char *sql, bool keep)
{
    sqlite3_stmt *st = NULL;
    const char *tail = NULL;
    int rc = sqlite3_prepare_v3(
        C(db), sql, -1, keep ? SQLITE_PREPARE_PERSISTENT : 0, &st, &tail);
    if (rc != SQLITE_OK) {
        fail_conn(db);
        return NULL;
    }
    if (!st || more_statements(C(db), tail)) {
        hp_db__fail(db,
                    st ? "several statements in one call (use "
                         "hp_db_exec_script for a script without parameters)"
                       : "empty statement",
                    "42601", SQLITE_MISUSE);
        sqlite3_finalize(st);
        return NULL;
    }
    struct sq_stmt *s = param_map(db, st);
    if (!s)
        sqlite3_finalize(st);
    return s;
}

static void sq_finalize(hp_db *db, void *stmt, bool tell_server)
{
    struct sq_stmt *s = stmt;
    sqlite3_finalize(s->st);
    free(s);
}

static bool sq_readonly(void *stmt)
{
    return sqlite3_stmt_readonly(((struct sq_stmt *)stmt)->st) != 0;
}

static int bind_one(sqlite3_stmt *st, int i, const hp_db_val *v)
{
    switch (v->type) {
    case HP_DB_INT:
        return sqlite3_bind_int64(st, i, v->v.i);
    case HP_DB_FLOAT:
        return sqlite3_bind_double(st, i, v->v.f);
    case HP_DB_TEXT:
        if (!v->v.s)
            return sqlite3_bind_null(st, i);
        return sqlite3_bind_text(st, i, v->v.s, -1, SQLITE_STATIC);
    case HP_DB_BLOB:
        /* A NULL pointer would bind NULL; an empty blob is still a blob. */
        return sqlite3_bind_blob64(st, i, v->v.b ? v->v.b : "",
                                   (sqlite3_uint64)v->len, SQLITE_STATIC);
    case HP_DB_NULL:
        break;
    }
    return sqlite3_bind_null(st, i);
}

static int bind_all(hp_db *db, struct sq_stmt *s, size_t n,
                    const hp_db_val *params)
{
    if (n != (size_t)s->maxn) {
        char msg[160];
        snprintf(msg, sizeof msg,
                 "the statement takes %d parameter%s ($1..$%d) but %zu "
                 "%s given",
                 s->maxn, s->maxn == 1 ? "" : "s", s->maxn, n,
                 n == 1 ? "was" : "were");
        hp_db__fail(db, msg, "08P01", SQLITE_RANGE);
        return -1;
    }
    for (size_t k = 0; k < n; k++) {
        if (s->map[k] && bind_one(s->st, s->map[k], &params[k]) != SQLITE_OK) {
            fail_conn(db);
            return -1;
        }
    }
    return 0;
}

static void set_columns(hp_db_res *res, sqlite3_stmt *st)
{
    int n = sqlite3_column_count(st);
    hp_db__res_set_cols(res, n);
    for (int i = 0; i < n; i++)
        hp_db__res_set_name(res, i, sqlite3_column_name(st, i));
}

/* Copy one value out of the statement (it is reset right after). */
static void read_cell(hp_db_res *res, sqlite3_stmt *st, int i,
                      struct hp_db_cell *c)
{
    int t = sqlite3_column_type(st, i);
    const void *p;

    if (t == SQLITE_NULL)
        return; /* c->p stays NULL */
    if (t == SQLITE_INTEGER) {
        c->type = HP_DB_INT;
        c->num.i = sqlite3_column_int64(st, i);
        c->has_num = true;
    } else if (t == SQLITE_FLOAT) {
        c->type = HP_DB_FLOAT;
        c->num.f = sqlite3_column_double(st, i);
        c->has_num = true;
    } else {
        c->type = t == SQLITE_BLOB ? HP_DB_BLOB : HP_DB_TEXT;
    }
    /* For numbers this converts a copy of the value to text, after the
     * number itself was read. */
    p = t == SQLITE_BLOB ? sqlite3_column_blob(st, i)
                         : (const void *)sqlite3_column_text(st, i);
    c->len = (size_t)sqlite3_column_bytes(st, i);
    c->p = hp_db__res_copy(res, p, c->len);
}

static void read_row(hp_db_res *res, sqlite3_stmt *st)
{
    struct hp_db_cell *row = hp_db__res_add_row(res);
    for (int i = 0; i < res->ncols; i++)
        read_cell(res, st, i, &row[i]);
}

/* Columns are read after the first step: a statement compiled before a
 * schema change is recompiled by that step, and "SELECT *" may have grown. */
static int step_all(hp_db *db, sqlite3_stmt *st, hp_db_res *res)
{
    sqlite3_int64 before = sqlite3_total_changes64(C(db));
    int rc = sqlite3_step(st);
    if (res)
        set_columns(res, st);
    for (; rc == SQLITE_ROW; rc = sqlite3_step(st))
        if (res)
            read_row(res, st);
    if (rc != SQLITE_DONE) {
        fail_conn(db);
        return -1;
    }
    /* sqlite3_changes64 is the last INSERT, UPDATE or DELETE's: a
     * statement that changed no row (DDL, an UPDATE matching none) must
     * not report an earlier one's. */
    db->changes =
        sqlite3_stmt_readonly(st) || sqlite3_total_changes64(C(db)) == before
            ? 0
            : sqlite3_changes64(C(db));
    return 0;
}

static int sq_run(hp_db *db, void *stmt, const char *sql, size_t n,
                  const hp_db_val *params, hp_db_res *res)
{
    struct sq_stmt *s = stmt;
    int rc = -1;

    attempt(db->conn);
    if (bind_all(db, s, n, params) == 0)
        rc = step_all(db, s->st, res);
    /* Ready for the next use; the bound text must not be kept past now. */
    sqlite3_reset(s->st);
    sqlite3_clear_bindings(s->st);
    attempted(db->conn);
    return rc;
}

static int sq_script(hp_db *db, const char *sql)
{
    char *msg = NULL;
    sqlite3_int64 before = sqlite3_total_changes64(C(db));
    attempt(db->conn);
    int rc = sqlite3_exec(C(db), sql, NULL, NULL, &msg);
    attempted(db->conn);
    if (rc == SQLITE_OK) {
        db->changes = sqlite3_total_changes64(C(db)) == before
                          ? 0
                          : sqlite3_changes64(C(db));
        return 0;
    }
    fail_code(db, sqlite3_extended_errcode(C(db)),
              msg ? msg : sqlite3_errmsg(C(db)));
    sqlite3_free(msg);
    return -1;
}

static bool sq_stale(hp_db *db)
{
    return false; /* SQLite recompiles a statement the schema changed under */
}

const struct hp_db_driver hp_db_sqlite_driver = {
    .engine = HP_DB_SQLITE,
    .name = "sqlite",
    .default_conns = 4,
    .match = sq_match,
    .private_conns = sq_private_conns,
    .check_url = sq_check_url,
    .connect = sq_connect,
    .disconnect = sq_disconnect,
    .alive = sq_alive,
    .check = sq_check,
    .settle = sq_settle,
    .reply_due = sq_reply_due,
    .in_tx = sq_in_tx,
    .write_needs_new_tx = true,
    .reset = sq_reset,
    .begin = sq_begin,
    .commit = sq_commit,
    .rollback = sq_rollback,
    .tx_failed = sq_tx_failed,
    .prepare = sq_prepare,
    .finalize = sq_finalize,
    .readonly = sq_readonly,
    .run = sq_run,
    .script = sq_script,
    .stale = sq_stale,
    .discard = sq_discard,
};
