/*
 * db_core.h - the database layer's shared core: the types every part of the
 * layer speaks (a connection's state, results and their cells, the driver
 * table) and the few functions that build them (db_core.c).
 *
 * The layering, one way only (docs/design.md keeps the map):
 *
 *     db.c        statements, the request's transaction, the default pool
 *       v
 *     db_pool.c   pools and connections (checkout, health check)
 *       v
 *     db_stmt.c   each connection's statement cache
 *       v         (these three reach an engine only through its driver table)
 *     db_sqlite.c, db_pg.c                 db_result.c (pages read results)
 *       v                                    v
 *     db_core.c   errors, results being built: nothing of the layer below
 *
 * A driver includes this header (through db_drivers.h) and nothing else of
 * the layer; it never names a function above it. Above the drivers, only
 * db_pool.c's driver list names them, and every call goes through the
 * table. Pages see only the opaque types of hotpub.h.
 */
#ifndef HP_DB_CORE_H
#define HP_DB_CORE_H

#include "db_lex.h"
#include "hp.h"

struct hp_req;

/* One cached prepared statement (keyed by the exact SQL text); the cache
 * itself is db_stmt.c's. */
struct hp_db_stmt {
    uint64_t hash;
    char *sql;
    void *stmt;         /* the driver's statement                       */
    unsigned long used; /* LRU tick                                     */
    bool session;       /* its text may change the session (db_stmt.c)  */
};

/* A transaction's state as the request lifecycle sees it (db.c's):
 *
 *     NONE --enlist--> PENDING --1st statement: drv->begin--> OPEN
 *       ^ ^               |                                     |
 *       | +- autocommit --+                                     |
 *       +---- release ----+-------- commit / rollback ----------+
 *
 * (hp_db_autocommit takes a request's handle from PENDING back to NONE,
 * before its first statement, for the rest of the request; on a handle
 * already NONE after its rollback it only sets autocommit.)
 */
enum hp_db_tx {
    TX_NONE,    /* autocommit (a pool_acquire handle, hp_db_autocommit)  */
    TX_PENDING, /* a request handle: BEGIN is sent before the 1st statement */
    TX_OPEN,    /* BEGIN done                                            */
};

/*
 * One connection. A driver reads and writes conn and changes, records
 * errors with hp_db__fail and may read sqlstate; every other field belongs
 * to the dispatch: pool, next_idle, created, checked, gen (db_pool.c),
 * stmts, nstmts,
 * tick (db_stmt.c), session_dirty (set by db.c and db_stmt.c, cleared by
 * db_pool.c's reset), the request's fields (db.c). The core only frees the
 * results list and the error.
 */
struct hp_db {
    struct hp_db_pool *pool;
    const struct hp_db_driver *drv;
    void *conn;           /* the driver's connection                  */
    double created;       /* hp_now() at connect                      */
    double checked;       /* hp_now() at the last drv->check            */
    unsigned gen;         /* the pool's target generation when last seen fine */
    unsigned long served; /* times it was given back (hp_db__pool_put) */
    hp_db *next_idle;
    /* A statement run since the last reset may have changed the session's
     * state (hp_db__changes_session): reset it before it is reused. */
    bool session_dirty;

    struct hp_db_stmt *stmts; /* statement cache, stmt_cap slots        */
    size_t nstmts;
    unsigned long tick;

    /* while a request holds it */
    struct hp_req *req;
    enum hp_db_tx tx;
    bool write_tx;           /* BEGIN for writing (SQLite: IMMEDIATE)      */
    bool reading;            /* the open transaction was begun for reading   */
    bool savepoint;          /* the request set a SAVEPOINT (it must last)   */
    bool autocommit;         /* hp_db_autocommit said so (tx stays NONE)     */
    bool failed;             /* a statement failed inside the transaction */
    char first_failure[256]; /* its error, for the rollback's log line  */
    bool voted;              /* the request's commit phase said yes       */
    bool rolled_back;

    /* the last call */
    char *errmsg;
    char sqlstate[6];
    int errcode;
    /* Its failure was a lock wait that the handler's bound (wait.h's
     * hp_wait_bound) cut short: set by the driver after hp_db__fail; the
     * request then answers 503 (db.c). */
    bool wait_cut;
    long long changes;
    hp_db_res *results; /* open results, freed at release            */
};

/* A result cell. Text and blobs are NUL-terminated; numbers carry their
 * value and their text. */
struct hp_db_cell {
    const char *p; /* NULL for SQL NULL                         */
    size_t len;
    enum hp_db_type type;
    union {
        long long i;
        double f;
    } num;
    bool has_num; /* num is valid (else parsed from p)         */
};

struct hp_db_res {
    hp_db *db;
    hp_db_res *prev, *next;
    int ncols;
    size_t nrows, cap;
    long cur; /* -1 before the first hp_db_next            */
    char **names;
    struct hp_db_cell *cells;
    struct hp_db_chunk *chunks;
    void *keep; /* engine object the cells point into        */
    void (*keep_free)(void *);
};

/*
 * What an engine provides: the only way the dispatch (db.c, db_pool.c,
 * db_stmt.c) reaches an engine. Every function is called by the one thread
 * that holds the connection, never with a pool's mutex held. "0 or -1"
 * functions record the error on db (hp_db__fail) before returning -1.
 */
struct hp_db_driver {
    enum hp_db_engine engine;
    const char *name;
    int default_conns; /* the pool size when none is configured      */
    /* The connect target for url if this engine takes it (a pointer into
     * url), else NULL. */
    const char *(*match)(const char *url);
    /* Every connection to target is a database of its own (SQLite's
     * :memory:): the pool then keeps one. */
    bool (*private_conns)(const char *target);
    /* Check a target without connecting; 0 or -1 + *err (malloc'd). */
    int (*check_url)(const char *target, char **err);
    /* Connect; 0, or -1 with the message in *err. */
    int (*connect)(hp_db *db, const char *target, const char *init_sql,
                   int timeout_ms, char **err);
    void (*disconnect)(hp_db *db);
    /* Cheap, no round trip and no system call: false if the connection is
     * known dead. */
    bool (*alive)(hp_db *db);
    /* At checkout, at most every check_ms (pool, default 100 ms), one
     * system call at most: the connection still
     * reaches the database it was opened on. SQLite: the path still names
     * the file the connection opened (same st_dev/st_ino); a deleted or
     * replaced file would otherwise take writes that nobody will ever read.
     * false with *why (malloc'd, e.g. "... was deleted") when not: the pool
     * drops the connection and opens the target anew. */
    bool (*check)(hp_db *db, char **why);
    /* At checkout, before anything else: collect the reply of a command
     * the connection sent without waiting for it (PostgreSQL: the COMMIT
     * of a transaction that wrote nothing), or with none due, see that the
     * server sent nothing unasked (PostgreSQL: the notice of its shutdown;
     * one poll(2)). false when that command failed or the connection is
     * unusable (logged here): the pool drops it. */
    bool (*settle)(hp_db *db);
    /* A reply settle() will read is still due (a flag, no I/O). */
    bool (*reply_due)(hp_db *db);
    /* A transaction is open on the engine's side, or begun and not yet
     * sent (cheap, no round trip). */
    bool (*in_tx)(hp_db *db);
    /* End any transaction left open; -1 if the connection is unusable. */
    int (*reset)(hp_db *db);
    /* BEGIN; write: the transaction will write (SQLite takes the write
     * lock now). The dispatch calls it just before the transaction's
     * first run or script; an engine may send it with that statement
     * (PostgreSQL does: one round trip). COMMIT, ROLLBACK. 0 or -1. */
    int (*begin)(hp_db *db, bool write);
    /* A transaction begun for reading cannot be trusted to become a
     * writing one (SQLite: SQLITE_BUSY_SNAPSHOT, at once, when another
     * connection wrote since its first read): the dispatch ends it and
     * begins a writing one before its first write (db.c, to_write). */
    bool write_needs_new_tx;
    int (*commit)(hp_db *db);
    int (*rollback)(hp_db *db);
    /* The engine says the open transaction can only roll back. */
    bool (*tx_failed)(hp_db *db);
    /* Compile a statement; keep = for the cache. NULL after hp_db__fail. */
    void *(*prepare)(hp_db *db, const char *sql, bool keep);
    /* tell_server: also free it on the server (false when closing). */
    void (*finalize)(hp_db *db, void *stmt, bool tell_server);
    /* The statement only reads (SQLite: picks BEGIN vs BEGIN IMMEDIATE). */
    bool (*readonly)(void *stmt);
    /* Bind, run, and (res != NULL) collect every row. 0 or -1. */
    int (*run)(hp_db *db, void *stmt, const char *sql, size_t n,
               const hp_db_val *params, hp_db_res *res);
    /* The same statement once per row of parameters (hp_db_query_many):
     * nrows rows of ncols values, row-major; res NULL (exec) or nrows
     * empty results to fill. Each run counts as run() would (the write
     * check, COMMIT unawaited); db->changes is the sum. 0, or -1 with
     * *done runs succeeded (res[0 .. *done-1] filled) and the first
     * failure's error recorded. NULL: the dispatch calls run() nrows
     * times (SQLite: no network, nothing to save). */
    int (*run_many)(hp_db *db, void *stmt, const char *sql, size_t nrows,
                    size_t ncols, const hp_db_val *params, hp_db_res **res,
                    size_t *done);
    /* Statements without parameters, ';'-separated. 0 or -1. */
    int (*script)(hp_db *db, const char *sql);
    /* The server now reads a backslash in a plain '...' string as an
     * escape, as in E'...' (PostgreSQL with standard_conforming_strings
     * off: a page's SET, set_config, a role's or database's default), as
     * it last reported; no I/O, no allocation (every statement of a
     * request asks, db.c's screen). NULL: never (SQLite). */
    bool (*backslash_strings)(hp_db *db);
    /* The client encoding's multibyte characters may hold ASCII bytes
     * (PostgreSQL's client-only encodings, after a page's SET
     * client_encoding: db_lex.h), as the server last reported it; no
     * I/O, no allocation. NULL: never (SQLite). */
    enum hp_db_lex_mb (*client_mb)(hp_db *db);
    /* The server forgot every prepared statement of the connection (a
     * page's DEALLOCATE ALL or DISCARD): forget the engine's own too (the
     * cache's are forgotten by the dispatch). NULL: it keeps none. */
    void (*forget_prepared)(hp_db *db);
    /* After an error: drop the statement from the cache (stale plan). */
    bool (*stale)(hp_db *db);
    /* Put the connection's session back in the state connect() left it
     * (the same target and init_sql), no transaction open, the statement
     * cache already emptied by the dispatch (tell_server false): what the
     * engine kept for the session (settings, role, temporary tables,
     * prepared statements, cursors, LISTENs, locks; SQLite: PRAGMAs,
     * ATTACHed databases) is gone. 0, or -1 with the error recorded: the
     * pool then drops the connection. */
    int (*discard)(hp_db *db, const char *target, const char *init_sql,
                   int timeout_ms);
};

/* ---- errors -------------------------------------------------------------- */

/* Record an error on db (message, SQLSTATE or NULL for HY000, engine code);
 * trailing blanks of msg are dropped. */
void hp_db__fail(hp_db *db, const char *msg, const char *sqlstate, int code);
void hp_db__clear_error(hp_db *db);
/* Record the refusal of transaction control in a request's transaction
 * (word: its first n bytes, e.g. COMMIT; SQLSTATE 25001, the same words
 * whether the dispatch's screen or the engine, SQLite's authorizer, saw
 * it); autocommit: on a request's handle without its transaction (in
 * autocommit, or after it rolled back), where SAVEPOINT, RELEASE and
 * ROLLBACK TO are refused too. */
void hp_db__fail_tx_control(hp_db *db, const char *word, size_t n,
                            bool autocommit);

/* ---- results ------------------------------------------------------------- */

/* A new, empty result for db (not yet on db's list). */
hp_db_res *hp_db__res_new(hp_db *db);
/* Put r on its connection's list: it is freed at release at the latest. */
void hp_db__res_link(hp_db_res *r);
/* Take r off its connection's list (if on it) and free it. NULL is fine. */
void hp_db__res_free(hp_db_res *r);
void hp_db__res_free_all(hp_db *db);

/* For the drivers, in this order: the columns, then each row. */
void hp_db__res_set_cols(hp_db_res *r, int ncols);
void hp_db__res_set_name(hp_db_res *r, int col, const char *name);
/* Append a row; returns its ncols cells to fill (zeroed: all NULL). */
struct hp_db_cell *hp_db__res_add_row(hp_db_res *r);
/* Copy len bytes (+ a NUL) into the result's memory. */
char *hp_db__res_copy(hp_db_res *r, const void *p, size_t len);

#endif
