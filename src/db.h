/*
 * db.h - the database layer's internals, shared by db.c (pools, handles,
 * results, the request lifecycle) and the two engine drivers, db_sqlite.c
 * and db_pg.c. Pages see only the opaque types of hotpub.h.
 *
 * The split: db.c knows nothing of SQLite or libpq. It owns the pool
 * (mutex + condvar), the checkout health check's order, the per-connection
 * statement cache, results (every row copied or kept in memory), errors and
 * their logging, and the transaction's part in the request. A driver turns
 * a connection, a statement and a parameter list into engine calls and
 * reports errors through hp_db__fail.
 */
#ifndef HP_DB_H
#define HP_DB_H

#include "hp.h"

struct hp_req;

/* One cached prepared statement (keyed by the exact SQL text). */
struct hp_db_stmt {
    uint64_t hash;
    char *sql;
    void *stmt;        /* the driver's statement                       */
    unsigned long used; /* LRU tick                                     */
};

/* A transaction's state as the request lifecycle sees it. */
enum hp_db_tx {
    TX_NONE,    /* autocommit (a pool_acquire handle)                    */
    TX_PENDING, /* a request handle: BEGIN is sent before the 1st statement */
    TX_OPEN,    /* BEGIN done                                            */
};

struct hp_db {
    hp_db_pool *pool;
    const struct hp_db_driver *drv;
    void *conn;             /* the driver's connection                  */
    double created;         /* hp_now() at connect                      */
    hp_db *next_idle;

    struct hp_db_stmt *stmts; /* statement cache, stmt_cap slots        */
    size_t nstmts;
    unsigned long tick;

    /* while a request holds it */
    struct hp_req *req;
    enum hp_db_tx tx;
    bool write_tx;          /* BEGIN for writing (SQLite: IMMEDIATE)      */
    bool failed;            /* a statement failed inside the transaction */
    bool voted;             /* the request's commit phase said yes       */
    bool rolled_back;

    /* the last call */
    char *errmsg;
    char sqlstate[6];
    int errcode;
    long long changes;
    hp_db_res *results;     /* open results, freed at release            */
};

/* A result cell. Text and blobs are NUL-terminated; numbers carry their
 * value and their text. */
struct hp_db_cell {
    const char *p;          /* NULL for SQL NULL                         */
    size_t len;
    enum hp_db_type type;
    union {
        long long i;
        double f;
    } num;
    bool has_num;           /* num is valid (else parsed from p)         */
};

struct hp_db_res {
    hp_db *db;
    hp_db_res *prev, *next;
    int ncols;
    size_t nrows, cap;
    long cur;               /* -1 before the first hp_db_next            */
    char **names;
    struct hp_db_cell *cells;
    struct hp_db_chunk *chunks;
    void *keep;             /* engine object the cells point into        */
    void (*keep_free)(void *);
};

/* What an engine provides. Every function is called by the one thread that
 * holds the connection. */
struct hp_db_driver {
    enum hp_db_engine engine;
    const char *name;
    /* Check a URL (after the scheme) without connecting; 0 or -1 + *err. */
    int (*check_url)(const char *url, char **err);
    /* Connect; 0, or -1 with the message in *err. */
    int (*connect)(hp_db *db, const char *url, const char *init_sql,
                   int timeout_ms, char **err);
    void (*disconnect)(hp_db *db);
    /* Cheap, no round trip: false if the connection is known dead. */
    bool (*alive)(hp_db *db);
    /* End any transaction left open; -1 if the connection is unusable. */
    int (*reset)(hp_db *db);
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
    /* Statements without parameters, ';'-separated. 0 or -1. */
    int (*script)(hp_db *db, const char *sql);
    /* After an error: drop the statement from the cache (stale plan). */
    bool (*stale)(hp_db *db);
};

extern const struct hp_db_driver hp_db_sqlite_driver;
extern const struct hp_db_driver hp_db_pg_driver;

/* Record an error on db (message, SQLSTATE or NULL, engine code). */
void hp_db__fail(hp_db *db, const char *msg, const char *sqlstate, int code);

/* Results, for the drivers. */
void hp_db__res_set_cols(hp_db_res *r, int ncols);
void hp_db__res_set_name(hp_db_res *r, int col, const char *name);
/* Append a row; returns its ncols cells to fill. */
struct hp_db_cell *hp_db__res_add_row(hp_db_res *r);
/* Copy len bytes (+ a NUL) into the result's memory. */
char *hp_db__res_copy(hp_db_res *r, const void *p, size_t len);

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
