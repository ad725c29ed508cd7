/*
 * db.c - the database layer's dispatch, as pages see it: running
 * statements with bound parameters (hp_db_exec*, hp_db_query*), the
 * per-request transactional handle (hp_db(req), hp_db_from), error
 * logging, and the default pool the server opens from its configuration.
 *
 * Owns: the request's transaction (through struct hp_resource) and its
 * states (enum hp_db_tx), when BEGIN is sent, what a request's handle may
 * not run (after a failure: 25P02 but ROLLBACK TO; transaction control:
 * 25001; an empty statement: 42601; the same on both engines), the 503 a
 * request answers without a connection, error logging, the default pool
 * and its path.
 * May not touch: any engine API (only through struct hp_db_driver), the
 * pool's lists and lock (db_pool.c), the statement cache's insides
 * (db_stmt.c), the request lifecycle's order (publish.c), HTTP (server.c).
 *
 * The request's transaction: see the resource callbacks below. The real
 * COMMIT happens when the request releases its resources, after every
 * module's commit hook has said yes, so a failing commit hook still rolls
 * the database back (docs/database.md, "Transactions").
 */
#include "db.h"
#include "db_lex.h"
#include "db_pool.h"
#include "request.h"

#include <assert.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define LOG_SQL_MAX 300 /* SQL longer than this is cut in the log */

static hp_db_pool *default_pool;
static bool dev_bodies; /* hp_db_server_set_dev */

hp_db_pool *hp_db_default_pool(void)
{
    return default_pool;
}

const char *hp_db__sqlite_file(hp_db_pool *pool)
{
    if (!pool || pool->drv->engine != HP_DB_SQLITE ||
        pool->drv->private_conns(pool->target))
        return NULL;
    return pool->target;
}

enum hp_db_engine hp_db_engine(hp_db *db)
{
    return db ? db->drv->engine : 0;
}

/* ---- errors -------------------------------------------------------------- */

/* Log the error just recorded, with where it happened and the SQL (never
 * the parameters: they are user data). */
static void log_failure(hp_db *db, const char *sql)
{
    char code[32] = "";
    if (db->errcode)
        snprintf(code, sizeof code, ", code %d", db->errcode);
    hp_log_error("db: %s%s: %s [SQLSTATE %s%s] in: %.*s%s",
                 db->req ? "" : "pool ",
                 db->req ? db->req->target.path : db->pool->name,
                 db->errmsg ? db->errmsg : "(no message)", db->sqlstate, code,
                 LOG_SQL_MAX, sql, strlen(sql) > LOG_SQL_MAX ? "..." : "");
}

static void wait_cut(hp_db *db);

/* A failed statement: count it, log it, and on a request's handle remember
 * that the transaction can only roll back now (PostgreSQL's rule, applied
 * to SQLite too so an application behaves the same on both). That holds
 * for a first statement that failed before BEGIN (in the engine's prepare,
 * e.g. a missing table) too: the request ran a failed statement. */
static void note_failure(hp_db *db, const char *sql)
{
    atomic_fetch_add(&db->pool->errors, 1);
    db->changes = 0; /* what a failed call changed is not kept: 0 */
    hp_db__stmt_failed(db);
    if (db->tx != TX_NONE && !db->failed) /* the first: what the log names */
        snprintf(db->first_failure, sizeof db->first_failure,
                 "%.150s [SQLSTATE %s] in: %.60s%s",
                 db->errmsg ? db->errmsg : "(no message)", db->sqlstate, sql,
                 strlen(sql) > 60 ? "..." : "");
    if (db->tx != TX_NONE)
        db->failed = true;
    log_failure(db, sql);
    if (db->wait_cut && db->req)
        wait_cut(db);
}

static bool is_pg(const hp_db *db)
{
    return db->drv->engine == HP_DB_POSTGRESQL;
}

/* "ROLLBACK [WORK|TRANSACTION] TO ..." undoes a failure in a transaction. */
static bool is_rollback_to(const char *sql, bool pg)
{
    static const char *const words[] = {"rollback", "work", "transaction",
                                        "to"};
    const char *end = sql + strlen(sql), *p = sql;
    for (size_t w = 0; w < 4; w++) {
        size_t n = 0;
        /* Blanks and comments may stand between the words (the engine's
         * lexer skips both). */
        const char *x = hp_db__lex_next_word(p, end, pg, &n);
        if (x && n == strlen(words[w]) && strncasecmp(x, words[w], n) == 0) {
            p = x + n;
            if (w == 3)
                return true;
        } else if (w == 0 || w == 3) {
            return false;
        }
    }
    return false;
}

/* PostgreSQL's words for a statement refused after a failure. */
static const char AFTER_FAILURE[] = "current transaction is aborted, commands "
                                    "ignored until end of transaction block";

/*
 * One rule for a request's transaction on both engines (PostgreSQL's): after
 * a statement failed in it (in the engine's prepare too, before BEGIN), every
 * further statement, batch or script is refused with 25P02 and PostgreSQL's
 * words until the transaction ends, except ROLLBACK TO a savepoint, which
 * undoes the failure. A pool handle outside a request has no transaction:
 * each statement stands alone and nothing is refused.
 */
static bool refused(hp_db *db, const char *sql)
{
    if (!db->req || !db->failed || is_rollback_to(sql, is_pg(db)))
        return false;
    hp_db__fail(db, AFTER_FAILURE, "25P02", 0);
    return true;
}

static bool word_is(const char *w, size_t n, const char *x)
{
    return strlen(x) == n && strncasecmp(w, x, n) == 0;
}

/* Whether the statement at w (its first word, n bytes; the text runs to
 * end) ends, begins or ends a transaction: COMMIT (and COMMIT PREPARED),
 * ROLLBACK (not ROLLBACK TO), BEGIN, END, START TRANSACTION, ABORT,
 * PREPARE TRANSACTION (PostgreSQL: it ends the session's transaction and
 * leaves it prepared, holding its locks until someone commits it).
 * SAVEPOINT, RELEASE and PREPARE of a statement are fine, unless
 * savepoints (a request's handle without its transaction, in autocommit or
 * after it rolled back: there is none to hold one; SQLite's SAVEPOINT
 * would open one that nothing commits). */
static bool tx_control_word(const char *w, size_t n, const char *end, bool pg,
                            bool savepoints)
{
    static const char *const words[] = {"commit", "begin", "end", "abort",
                                        NULL};
    if (word_is(w, n, "rollback"))
        return savepoints || !is_rollback_to(w, pg);
    if (savepoints && (word_is(w, n, "savepoint") || word_is(w, n, "release")))
        return true;
    for (const char *const *x = words; *x; x++)
        if (word_is(w, n, *x))
            return true;
    if (word_is(w, n, "start") || word_is(w, n, "prepare")) {
        size_t k = 0;
        const char *next = hp_db__lex_next_word(w + n, end, pg, &k);
        return next && word_is(next, k, "transaction");
    }
    return false;
}

/* Where a word can start (the lexer's word characters but digits). */
static bool word_start(char c)
{
    return isalpha((unsigned char)c) || c == '_' || (unsigned char)c >= 0x80;
}

/* The end of the number at p (a digit, or '.' then a digit): digits and
 * '_', a fraction, an exponent; 0x and its hex digits. A letter after it
 * starts a word of its own (or is the engine's syntax error). */
static const char *number_end(const char *p, const char *end)
{
    if (p + 1 < end && p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
        p += 2;
        while (p < end && (isxdigit((unsigned char)*p) || *p == '_'))
            p++;
        return p;
    }
    while (p < end && (isdigit((unsigned char)*p) || *p == '_'))
        p++;
    if (p < end && *p == '.')
        for (p++; p < end && (isdigit((unsigned char)*p) || *p == '_');)
            p++;
    if (p < end && (*p == 'e' || *p == 'E')) {
        const char *q = p + 1;
        if (q < end && (*q == '+' || *q == '-'))
            q++;
        if (q < end && isdigit((unsigned char)*q))
            for (p = q; p < end && isdigit((unsigned char)*p);)
                p++;
    }
    return p;
}

/* Where a statement's first words stand, outside a body: the words that
 * make it a routine are read in their grammatical places only. */
enum tx_head {
    H_FIRST,   /* nothing read yet                          */
    H_EXPLAIN, /* SQLite: EXPLAIN                           */
    H_QUERY,   /* SQLite: EXPLAIN QUERY                     */
    H_PLAN,    /* SQLite: EXPLAIN QUERY PLAN                */
    H_CREATE,  /* CREATE                                    */
    H_TEMP,    /* SQLite: CREATE TEMP or TEMPORARY          */
    H_OR,      /* PostgreSQL: CREATE OR                     */
    H_REPLACE, /* PostgreSQL: CREATE OR REPLACE             */
    H_DONE,    /* past the head: a routine or not, decided  */
};

/*
 * A script's blocks whose statements end with ';' of their own: a
 * routine's body, which a statement has at most one of. SQLite: [EXPLAIN
 * [QUERY PLAN]] CREATE [TEMP|TEMPORARY] TRIGGER ... BEGIN ... END;
 * PostgreSQL: CREATE [OR REPLACE] FUNCTION|PROCEDURE ... BEGIN ATOMIC ...
 * END. A statement is a routine only with TRIGGER, FUNCTION or PROCEDURE
 * in that place (enum tx_head), not with a table, view, index or column
 * so named. Its body opens at the first BEGIN that stands outside
 * parentheses, not after a '.' (a qualified name's; a number's '.' does
 * not count), and is followed (comments between) by ATOMIC on
 * PostgreSQL, by a trigger statement's first word on SQLite (SELECT,
 * VALUES, WITH, INSERT, REPLACE, UPDATE, DELETE: a trigger's body is
 * never empty). Nothing
 * else in a routine's statement is so placed but a trigger named begin
 * without BEFORE, AFTER or INSTEAD OF (CREATE TRIGGER begin INSERT ON
 * ...): its body opens there, early but harmlessly, since nothing before
 * the real BEGIN ends a statement or is END. Inside the body END closes
 * it only as a statement's first word, as both engines read it (no
 * statement of a body starts with END); elsewhere it closes a CASE, or is
 * a column named end. Bodies do not nest here: PostgreSQL parses a
 * CREATE FUNCTION inside a body (then refuses to run it); its END reads
 * here as the outer body's, and the real END after it is refused (wrong,
 * but the safe way).
 */
struct tx_scan {
    bool pg;
    bool start;        /* the next word is a statement's first           */
    enum tx_head head; /* the statement's first words (outside a body)   */
    bool routine;      /* the statement is a trigger, function, procedure */
    bool in_body;      /* inside the routine's body                      */
    bool bodied;       /* the statement's body was opened (and closed)   */
    bool atomic;       /* PostgreSQL: ATOMIC, the body's second word, next */
    bool dot;          /* the token before was '.' (not a number's)      */
    int depth;         /* parentheses open in the statement (outside the
                          body)                                          */
};

/* Whether the BEGIN ending at p is a routine body's: the next word is
 * ATOMIC (PostgreSQL) or starts a trigger's statement (SQLite). */
static bool body_follows(const char *p, const char *end, bool pg)
{
    static const char *const sqlite_words[] = {"select", "values",  "with",
                                               "insert", "replace", "update",
                                               "delete", NULL};
    size_t k = 0;
    const char *next = hp_db__lex_next_word(p, end, pg, &k);
    if (!next)
        return false;
    if (pg)
        return word_is(next, k, "atomic");
    for (const char *const *x = sqlite_words; *x; x++)
        if (word_is(next, k, *x))
            return true;
    return false;
}

/* The head's next state after the word w (n bytes). */
static enum tx_head head_next(struct tx_scan *s, const char *w, size_t n)
{
    switch (s->head) {
    case H_FIRST:
        if (word_is(w, n, "create"))
            return H_CREATE;
        return !s->pg && word_is(w, n, "explain") ? H_EXPLAIN : H_DONE;
    case H_EXPLAIN:
        if (word_is(w, n, "create"))
            return H_CREATE;
        return word_is(w, n, "query") ? H_QUERY : H_DONE;
    case H_QUERY:
        return word_is(w, n, "plan") ? H_PLAN : H_DONE;
    case H_PLAN:
        return word_is(w, n, "create") ? H_CREATE : H_DONE;
    case H_CREATE:
        if (s->pg && word_is(w, n, "or"))
            return H_OR;
        if (!s->pg && (word_is(w, n, "temp") || word_is(w, n, "temporary")))
            return H_TEMP;
        break;
    case H_OR:
        return word_is(w, n, "replace") ? H_REPLACE : H_DONE;
    case H_TEMP:
    case H_REPLACE:
    case H_DONE:
        break;
    }
    if (s->head == H_CREATE || s->head == H_TEMP || s->head == H_REPLACE)
        s->routine =
            s->pg ? word_is(w, n, "function") || word_is(w, n, "procedure")
                  : word_is(w, n, "trigger");
    return H_DONE;
}

static void tx_scan_word(struct tx_scan *s, const char *w, size_t n,
                         const char *end)
{
    bool dot = s->dot;
    s->dot = false;
    if (s->in_body) {
        if (s->atomic) { /* the word after BEGIN: ATOMIC */
            s->atomic = false;
            s->start = true;
        }
        return;
    }
    if (s->head != H_DONE) {
        s->head = head_next(s, w, n);
        return;
    }
    if (s->routine && !s->bodied && s->depth == 0 && !dot &&
        word_is(w, n, "begin") && body_follows(w + n, end, s->pg)) {
        s->in_body = s->bodied = true;
        s->atomic = s->pg;
        s->start = !s->pg; /* the body's first statement follows */
    }
}

/* Any other token of the statement (punctuation c, a number, a string or
 * quoted identifier: c 0) outside a comment. */
static void tx_scan_other(struct tx_scan *s, char c)
{
    s->dot = c == '.';
    if (s->in_body)
        return;
    s->head = H_DONE;
    if (c == '(')
        s->depth++;
    else if (c == ')' && s->depth > 0)
        s->depth--;
}

/*
 * The first word of a statement of sql (one, or each of a script's) that
 * is transaction control, or NULL; read with the engine's own lexical
 * rules (db_lex.c: strings, quoted identifiers and comments hide words).
 * Inside a routine's body (struct tx_scan) each statement's first word is
 * read too: END there closes the body, anything else that is transaction
 * control is refused all the same (no body may hold one). One statement
 * (not a script): only its first word is read. savepoints: SAVEPOINT,
 * RELEASE and ROLLBACK TO count too (tx_control_word).
 */
static const char *tx_control(const char *sql, bool script,
                              enum hp_db_lex_rules pg, bool savepoints)
{
    const char *end = sql + strlen(sql);
    struct tx_scan s = {.pg = pg, .start = true};
    struct hp_db_lex t;
    for (const char *p = sql; p < end;) {
        const char *q = hp_db__lex_skip(p, end, pg, &t);
        if (q != p) {
            if (t.kind != HP_LEX_COMMENT) {
                if (!script)
                    return NULL;
                s.start = false;
                tx_scan_other(&s, 0);
            }
            p = q;
            continue;
        }
        if (isspace((unsigned char)*p)) {
            p++;
            continue;
        }
        if (isdigit((unsigned char)*p) ||
            (*p == '.' && p + 1 < end && isdigit((unsigned char)p[1]))) {
            p = number_end(p, end);
            tx_scan_other(&s, 0);
            continue;
        }
        if (!word_start(*p)) {
            if (*p == ';') {
                s.start = true;
                if (!s.in_body)
                    s = (struct tx_scan){.pg = pg, .start = true};
            } else {
                tx_scan_other(&s, *p);
            }
            p++;
            continue;
        }
        const char *w = p;
        while (p < end && hp_db__lex_word_char((unsigned char)*p))
            p++;
        size_t n = (size_t)(p - w);
        bool start = s.start;
        s.start = false;
        if (start && s.in_body && word_is(w, n, "end"))
            s.in_body = false;
        else if (start && tx_control_word(w, n, end, pg, savepoints))
            return w;
        else if (!script)
            return NULL;
        else
            tx_scan_word(&s, w, n, end);
    }
    return NULL;
}

/* Nothing but blanks, ';' and comments: the engines disagree on what that
 * is (PostgreSQL: an empty query, no SQLSTATE), so it is refused here. */
static bool is_empty(const char *sql, bool pg)
{
    const char *end = sql + strlen(sql);
    struct hp_db_lex t;
    for (const char *p = sql; p < end;) {
        const char *q = hp_db__lex_skip(p, end, pg, &t);
        if (t.kind == HP_LEX_COMMENT)
            p = q;
        else if (isspace((unsigned char)*p) || *p == ';')
            p++;
        else
            return false;
    }
    return true;
}

/*
 * What a request's handle may not run, refused before the engine sees it
 * (0, or -1 with the error recorded): after a failure, anything but ROLLBACK
 * TO (refused); transaction control, since the request owns its transaction
 * (it commits when the request ends: 25001, on both engines); an empty
 * statement (42601 on both engines, as SQLite says it).
 */
static int screen(hp_db *db, const char *sql, bool script)
{
    if (refused(db, sql))
        return -1;
    bool pg = db->drv->engine == HP_DB_POSTGRESQL;
    /* Without the request's transaction (autocommit, or in a hook after
     * it rolled back) no savepoint either: SQLite's would open a
     * transaction that nothing commits. */
    bool none = db->tx == TX_NONE;
    /* Read as the server will: a plain '...' by the connection's
     * standard_conforming_strings now, a client-only encoding's characters
     * whole (a script is parsed whole before its first statement runs,
     * its own SET counts from the next text). */
    char buf[256];
    char *text = db->req ? hp_db__lex_text(db, sql, buf, sizeof buf) : NULL;
    const char *w = db->req ? tx_control(text ? text : sql, script,
                                         hp_db__lex_rules(db), none)
                            : NULL;
    bool control = w != NULL;
    if (control) {
        size_t n = 0;
        while (hp_db__lex_word_char((unsigned char)w[n]))
            n++;
        hp_db__fail_tx_control(db, w, n, none);
    }
    if (text != buf)
        free(text);
    if (control)
        return -1;
    if (!script && is_empty(sql, pg)) {
        hp_db__fail(db, "empty statement", "42601", 0);
        return -1;
    }
    return 0;
}

/* ---- running statements -------------------------------------------------- */

/* A request's transaction starts with its first statement: SQLite needs
 * to know whether it will write (BEGIN IMMEDIATE takes the write lock now,
 * so a read-then-write request never fails to upgrade its lock). */
static int begin_tx(hp_db *db, bool write)
{
    assert(db->tx == TX_PENDING);
    if (db->drv->begin(db, write) < 0)
        return -1;
    db->tx = TX_OPEN;
    db->reading = !write;
    return 0;
}

/*
 * The first write of a transaction begun for reading (a GET that reads,
 * then writes: a new session in its commit phase, a counter). SQLite can
 * not upgrade such a transaction once another connection has written
 * since its first read: the write fails at once (SQLITE_BUSY_SNAPSHOT,
 * "database is locked"), under load about every other time. Its reads are
 * over and wrote nothing, so the read transaction ends here and a writing
 * one begins (BEGIN IMMEDIATE waits its turn for the write lock): the
 * write and everything after it see the latest committed data, as every
 * statement does under PostgreSQL's default READ COMMITTED. A page that
 * needs its reads and writes in one snapshot (read, then update what it
 * read) uses an unsafe method, whose transaction begins writing, or takes
 * the lock first (docs/database.md). Not after a SAVEPOINT, which ending
 * the transaction would drop.
 */
static int to_write(hp_db *db)
{
    db->reading = false;
    if (db->savepoint)
        return 0;
    if (db->drv->commit(db) < 0 || db->drv->begin(db, true) < 0)
        return -1;
    return 0;
}

int hp_db__begin_writing(hp_db *db)
{
    if (!db || db->tx != TX_OPEN || !db->reading ||
        !db->drv->write_needs_new_tx)
        return 0;
    if (to_write(db) < 0) {
        note_failure(db, "BEGIN IMMEDIATE");
        return -1;
    }
    return 0;
}

static bool is_savepoint(const char *sql)
{
    while (*sql == ' ' || *sql == '\t' || *sql == '\n' || *sql == '\r')
        sql++;
    return strncasecmp(sql, "SAVEPOINT", 9) == 0;
}

/* What the request's transaction needs before a statement st runs (one
 * run, or a batch: hp_db_query_many): BEGIN with the first, the end of a
 * read transaction before the first write (to_write), a SAVEPOINT noted.
 * 0 or -1 (the error recorded). */
static int before_run(hp_db *db, void *st, const char *sql)
{
    if (db->tx == TX_PENDING &&
        begin_tx(db, db->write_tx || !db->drv->readonly(st)) < 0)
        return -1;
    if (db->tx == TX_OPEN && db->reading && db->drv->write_needs_new_tx &&
        !db->drv->readonly(st) && to_write(db) < 0)
        return -1;
    if (db->tx == TX_OPEN && !db->savepoint && is_savepoint(sql))
        db->savepoint = true;
    return 0;
}

static int run_statement(hp_db *db, const char *sql, size_t n,
                         const hp_db_val *params, hp_db_res **out);

/* The server forgot every prepared statement (26000): note_failure forgets
 * them all without a DEALLOCATE, which would only fail. */
static bool forgotten_all(const hp_db *db)
{
    return strcmp(db->sqlstate, "26000") == 0;
}

/* A connection's first statements are the pool's time too (hp_db_pool_ns):
 * a new PostgreSQL server process loads its catalog caches then, and the
 * first statements of each connection take milliseconds. */
static int run(hp_db *db, const char *sql, size_t n, const hp_db_val *params,
               hp_db_res **out)
{
    if (db->served > 0)
        return run_statement(db, sql, n, params, out);
    int64_t t0 = hp_now_ns();
    int rc = run_statement(db, sql, n, params, out);
    hp_db__pool_time(hp_now_ns() - t0);
    return rc;
}

static int run_statement(hp_db *db, const char *sql, size_t n,
                         const hp_db_val *params, hp_db_res **out)
{
    bool transient;
    hp_db_res *res = NULL;

    hp_db__clear_error(db);
    db->changes = 0;
    if (screen(db, sql, false) < 0)
        goto failed;
    void *st = hp_db__stmt_get(db, sql, &transient);
    if (!st)
        goto failed;
    if (before_run(db, st, sql) < 0)
        goto failed_st;
    res = out ? hp_db__res_new(db) : NULL;
    if (db->drv->run(db, st, sql, n, params, res) < 0) {
        hp_db__res_free(res);
        if (!transient && db->drv->stale(db) && !forgotten_all(db))
            hp_db__stmt_forget(db, sql);
        goto failed_st;
    }
    if (transient)
        db->drv->finalize(db, st, true);
    hp_db__stmt_after_run(db, sql);
    if (res)
        hp_db__res_link(res);
    if (out)
        *out = res;
    if (db->failed && is_rollback_to(sql, is_pg(db)))
        db->failed = false;
    return 0;

failed_st:
    if (transient)
        db->drv->finalize(db, st, true);
failed:
    note_failure(db, sql);
    return -1;
}

/*
 * A NULL where the page must give SQL text, parameters or a place for the
 * results: a page's mistake, failed as a statement that failed (the
 * request's transaction then rolls back; hp_db_error says why, and the
 * log line of every failed statement names the function and the page).
 * SQLSTATE 22004 (null_value_not_allowed), or 22023 for parameters
 * missing, as hp_db_query_many's batch says. Never a crash.
 */
static __attribute__((cold)) int
refuse_null(hp_db *db, const char *fn, const char *what, const char *sqlstate)
{
    char *msg =
        hp_xasprintf("%s: %s is NULL (refused: a page's mistake)", fn, what);
    hp_db__clear_error(db);
    db->changes = 0;
    hp_db__fail(db, msg, sqlstate, 0);
    free(msg);
    note_failure(db, "(none)");
    return -1;
}

int hp_db_exec_params(hp_db *db, const char *sql, size_t n,
                      const hp_db_val *params)
{
    if (!db)
        return -1;
    if (__builtin_expect(!sql || (n && !params), 0))
        return refuse_null(db, __func__, sql ? "params" : "sql",
                           sql ? "22023" : "22004");
    return run(db, sql, n, params, NULL) < 0 ? -1 : HP_OK;
}

hp_db_res *hp_db_query_params(hp_db *db, const char *sql, size_t n,
                              const hp_db_val *params)
{
    hp_db_res *r = NULL;
    if (!db)
        return NULL;
    if (__builtin_expect(!sql || (n && !params), 0)) {
        refuse_null(db, __func__, sql ? "params" : "sql",
                    sql ? "22023" : "22004");
        return NULL;
    }
    return run(db, sql, n, params, &r) < 0 ? NULL : r;
}

/* ---- one statement, many runs (hp_db_query_many) ------------------------- */

/*
 * The engine's batch (drv->run_many): the statement looked up once, the
 * request's transaction readied once (as the first run would), then all
 * runs in one call. out[i] (out may be NULL) is run i's result; those from
 * the failing run on are NULL.
 */
static int run_batch(hp_db *db, const char *sql, size_t nrows, size_t ncols,
                     const hp_db_val *params, hp_db_res **out)
{
    bool transient;
    size_t done = 0;
    int rc = -1;

    void *st = hp_db__stmt_get(db, sql, &transient);
    if (!st)
        goto failed;
    hp_db__stmt_count_runs(db, transient, nrows - 1);
    if (before_run(db, st, sql) == 0) {
        for (size_t i = 0; out && i < nrows; i++)
            out[i] = hp_db__res_new(db);
        rc = db->drv->run_many(db, st, sql, nrows, ncols, params, out, &done);
        for (size_t i = 0; out && i < nrows; i++) {
            if (i < done) {
                hp_db__res_link(out[i]);
            } else {
                hp_db__res_free(out[i]);
                out[i] = NULL;
            }
        }
        if (rc < 0 && !transient && db->drv->stale(db) && !forgotten_all(db))
            hp_db__stmt_forget(db, sql);
    }
    if (transient)
        db->drv->finalize(db, st, true);
    if (rc == 0) {
        hp_db__stmt_after_run(db, sql);
        if (db->failed && is_rollback_to(sql, is_pg(db)))
            db->failed = false;
        return 0;
    }
failed:
    note_failure(db, sql);
    return -1;
}

/* Without a batch in the engine: the runs one by one, as the page would. */
static int run_each(hp_db *db, const char *sql, size_t nrows, size_t ncols,
                    const hp_db_val *params, hp_db_res **out)
{
    long long changes = 0;
    for (size_t i = 0; i < nrows; i++) {
        if (run_statement(db, sql, ncols, params + i * ncols,
                          out ? &out[i] : NULL) < 0)
            return -1;
        changes += db->changes;
    }
    db->changes = changes;
    return 0;
}

static int run_many(hp_db *db, const char *sql, size_t nrows, size_t ncols,
                    const hp_db_val *params, hp_db_res **out)
{
    hp_db__clear_error(db);
    db->changes = 0;
    if (nrows == 0)
        return HP_OK;
    if ((ncols && nrows > SIZE_MAX / ncols) || (ncols && !params)) {
        hp_db__fail(db,
                    ncols && !params ? "no parameters given for a batch"
                                     : "too many parameters in a batch",
                    ncols && !params ? "22023" : "54000", 0);
        note_failure(db, sql);
        return -1;
    }
    if (screen(db, sql, false) < 0) {
        note_failure(db, sql);
        return -1;
    }
    int64_t t0 = db->served > 0 ? 0 : hp_now_ns();
    int rc = db->drv->run_many ? run_batch(db, sql, nrows, ncols, params, out)
                               : run_each(db, sql, nrows, ncols, params, out);
    if (db->served == 0)
        hp_db__pool_time(hp_now_ns() - t0);
    return rc < 0 ? -1 : HP_OK;
}

int hp_db_query_many(hp_db *db, const char *sql, size_t nrows, size_t ncols,
                     const hp_db_val *params, hp_db_res **results)
{
    for (size_t i = 0; results && i < nrows; i++)
        results[i] = NULL;
    if (!db)
        return -1;
    if (__builtin_expect(!sql || (!results && nrows), 0))
        return refuse_null(db, __func__, sql ? "results" : "sql", "22004");
    return run_many(db, sql, nrows, ncols, params, results);
}

int hp_db_exec_many(hp_db *db, const char *sql, size_t nrows, size_t ncols,
                    const hp_db_val *params)
{
    if (!db)
        return -1;
    if (__builtin_expect(!sql, 0))
        return refuse_null(db, __func__, "sql", "22004");
    return run_many(db, sql, nrows, ncols, params, NULL);
}

/* Text parameters as typed ones; small lists stay on the stack. */
static hp_db_val *text_vals(const char *const *strs, size_t n, hp_db_val *stack,
                            size_t stack_n)
{
    hp_db_val *v = n <= stack_n ? stack : hp_xmalloc(n * sizeof *v);
    for (size_t i = 0; i < n; i++)
        v[i] = strs[i] ? HP_TEXT(strs[i]) : HP_NULL;
    return v;
}

int hp_db__exec_text(hp_db *db, const char *const *sp, size_t n)
{
    hp_db_val stack[16];
    if (!db)
        return -1;
    if (__builtin_expect(!sp || !n || !sp[0], 0))
        return refuse_null(db, "hp_db_exec", "sql", "22004");
    hp_db_val *v = text_vals(sp + 1, n - 1, stack, 16);
    int rc = hp_db_exec_params(db, sp[0], n - 1, v);
    if (v != stack)
        free(v);
    return rc;
}

hp_db_res *hp_db__query_text(hp_db *db, const char *const *sp, size_t n)
{
    hp_db_val stack[16];
    if (!db)
        return NULL;
    if (__builtin_expect(!sp || !n || !sp[0], 0)) {
        refuse_null(db, "hp_db_query", "sql", "22004");
        return NULL;
    }
    hp_db_val *v = text_vals(sp + 1, n - 1, stack, 16);
    hp_db_res *r = hp_db_query_params(db, sp[0], n - 1, v);
    if (v != stack)
        free(v);
    return r;
}

int hp_db_exec_script(hp_db *db, const char *sql)
{
    if (!db)
        return -1;
    if (__builtin_expect(!sql, 0))
        return refuse_null(db, __func__, "sql", "22004");
    hp_db__clear_error(db);
    db->changes = 0;
    /* reset at release */
    db->session_dirty |= hp_db__changes_session_on(db, sql);
    if (screen(db, sql, true) < 0 ||
        (db->tx == TX_PENDING && begin_tx(db, true) < 0) ||
        db->drv->script(db, sql) < 0) {
        note_failure(db, sql);
        return -1;
    }
    hp_db__stmt_after_run(db, sql);
    return HP_OK;
}

/* ---- the request's transaction ------------------------------------------- */

/*
 * What a request enlists for each pool it uses. db is NULL when no
 * connection could be had: then the resource only carries the 503 message,
 * written when the request rolls back, so whatever the handler wrote after
 * hp_db() returned NULL does not reach the client.
 */
struct req_db {
    struct hp_resource res;
    hp_db_pool *pool;
    hp_db *db;
    hp_req *req;
    char *msg; /* 503 body (request memory) */
};

/* msg NULL: the bare status line's text, as production error bodies. */
static void respond_plain(hp_req *req, int status, const char *msg)
{
    req->headers.n = 0;
    req->has_content_type = false;
    req->out.len = 0;
    req->status = status;
    hp_req_add_header(req, "Content-Type", "text/plain; charset=utf-8");
    if (status == 503)
        hp_req_add_header(req, "Retry-After", "1");
    hp_buf_printf(&req->out, "%d %s%s%s\n", status, hp_status_text(status),
                  msg ? ": " : "", msg ? msg : "");
}

static void rollback_tx(hp_db *db)
{
    if (db->tx == TX_OPEN && db->drv->rollback(db) < 0)
        log_failure(db, "ROLLBACK");
    db->tx = TX_NONE;
    db->rolled_back = true;
}

/* The request's commit phase: only a vote. A transaction a statement
 * failed in can only roll back; anything else commits at release. */
static int rd_commit(void *arg)
{
    struct req_db *rd = arg;
    hp_db *db = rd->db;
    if (db->failed || (db->tx == TX_OPEN && db->drv->tx_failed(db))) {
        hp_log_error("db: %s: a statement failed in this request's "
                     "transaction (the first: %s); rolling it back",
                     rd->req->target.path,
                     db->failed && db->first_failure[0] ? db->first_failure
                     : db->errmsg                       ? db->errmsg
                                                        : "see above");
        rollback_tx(db);
        return 500;
    }
    db->voted = true;
    return HP_OK;
}

/* msg set (wait_cut): the request answers 503, as for a busy pool. */
static void rd_rollback(void *arg)
{
    struct req_db *rd = arg;
    rollback_tx(rd->db);
    if (rd->msg)
        respond_plain(rd->req, 503,
                      dev_bodies && !rd->req->foreign_host ? rd->msg : NULL);
}

/* The real COMMIT, after every module's commit hook agreed. If it fails
 * now, the response built for a success becomes a plain 500. */
static void rd_release(void *arg)
{
    struct req_db *rd = arg;
    hp_db *db = rd->db;
    if (db->tx == TX_OPEN && db->voted && !db->rolled_back) {
        if (db->drv->commit(db) < 0) {
            note_failure(db, "COMMIT");
            rollback_tx(db);
            respond_plain(rd->req, 500, "the database did not commit");
        }
        db->tx = TX_NONE;
    }
    hp_db__pool_put(db, true);
}

/* The why (the acquire timeout, ...) is an internal detail: only in
 * development mode, as the other error pages' details; always logged. */
static void rd_fail_rollback(void *arg)
{
    struct req_db *rd = arg;
    bool details = dev_bodies && !rd->req->foreign_host;
    respond_plain(rd->req, 503, details ? rd->msg : NULL);
}

static struct req_db *find_enlisted(hp_req *req, hp_db_pool *pool)
{
    for (struct hp_resource *r = req->resources; r; r = r->next) {
        bool mine = r->release == rd_release || r->rollback == rd_fail_rollback;
        if (mine && ((struct req_db *)r->arg)->pool == pool)
            return r->arg;
    }
    return NULL;
}

/*
 * A statement of the request waited for the database's lock (SQLite's
 * busy wait) until the handler's bound cut it (db_sqlite.c on_busy): the
 * request answers 503 with Retry-After, whatever the handler returns, as
 * when the pool's wait is cut (docs/database.md): contention, not a stuck
 * page, so not the watchdog's 504 and a replaced worker.
 */
static void wait_cut(hp_db *db)
{
    struct req_db *rd = find_enlisted(db->req, db->pool);
    if (!rd || rd->msg)
        return;
    rd->msg = hp_strdup(rd->req, "database busy: its lock was held by another "
                                 "request past the handler timeout's bound");
    rd->req->forced_status = 503;
    hp_log_error("db: %s: pool %s: the database's lock was not had before "
                 "the handler timeout (the wait was cut short of the busy "
                 "timeout to answer within --handler-timeout): 503",
                 rd->req->target.path, db->pool->name);
}

static bool unsafe_method(hp_req *req)
{
    const char *m = req->method ? req->method : "GET";
    return strcmp(m, "GET") != 0 && strcmp(m, "HEAD") != 0 &&
           strcmp(m, "OPTIONS") != 0;
}

/* No connection: the request answers 503 with msg, whatever happens. */
static void enlist_failure(hp_req *req, hp_db_pool *pool, const char *msg)
{
    struct req_db *rd = hp_alloc(req, sizeof *rd);
    if (!rd)
        return;
    *rd = (struct req_db){.pool = pool, .req = req, .msg = hp_strdup(req, msg)};
    rd->res.rollback = rd_fail_rollback;
    rd->res.arg = rd;
    hp_req_enlist(req, &rd->res);
    req->forced_status = 503;
}

static hp_db *enlist_db(hp_req *req, hp_db_pool *pool, hp_db *db)
{
    struct req_db *rd = hp_alloc(req, sizeof *rd);
    if (!rd) {
        hp_db__pool_put(db, true);
        return NULL;
    }
    assert(db->req == NULL && db->tx == TX_NONE);
    *rd = (struct req_db){.pool = pool, .db = db, .req = req};
    rd->res = (struct hp_resource){.commit = rd_commit,
                                   .rollback = rd_rollback,
                                   .release = rd_release,
                                   .arg = rd};
    db->req = req;
    db->tx = TX_PENDING;
    db->write_tx = unsafe_method(req);
    hp_req_enlist(req, &rd->res);
    return db;
}

hp_db *hp_db_from(hp_req *req, hp_db_pool *pool)
{
    char *err = NULL;
    bool timed_out = false;

    HP_REFUSE_NULL_REQ(req, NULL);
    struct req_db *had = find_enlisted(req, pool);
    if (had)
        return had->db;
    if (!pool) {
        enlist_failure(req, pool,
                       "database unavailable: no database is "
                       "configured");
        return NULL;
    }
    hp_db *db = hp_db__pool_get(pool, &err, &timed_out);
    if (db) {
        free(err);
        return enlist_db(req, pool, db);
    }
    hp_log_error("db: %s: pool %s: %s", req->target.path, pool->name,
                 err ? err : "no connection");
    char *msg = timed_out ? hp_xasprintf("database busy: %s", err)
                          : hp_xasprintf("database unavailable (the server log "
                                         "says why)");
    enlist_failure(req, pool, msg);
    free(msg);
    free(err);
    return NULL;
}

hp_db *hp_db_req(hp_req *req)
{
    return hp_db_from(req, default_pool);
}

/*
 * The request's handle without a transaction, before its first statement:
 * each statement then stands alone as on a pool handle (note_failure,
 * refused and rd_commit see TX_NONE: a failure neither refuses the next
 * statements nor turns the vote into a 500; rd_release only gives the
 * connection back). The screen still refuses BEGIN and COMMIT on it
 * (db->req is set), and savepoints too (TX_NONE): the request's handle
 * never carries a transaction of the page's own, which the vote and the
 * release know nothing of.
 */
int hp_db_autocommit(hp_db *db)
{
    if (!db)
        return -1;
    hp_db__clear_error(db);
    if (db->tx == TX_NONE && !db->req) { /* a pool handle */
        if (!db->drv->in_tx(db))
            return HP_OK;
        hp_db__fail(db,
                    "hp_db_autocommit: a transaction is open on this handle "
                    "(BEGIN or SAVEPOINT ran); end it first",
                    "25001", 0);
        return -1;
    }
    if (db->tx == TX_NONE) {
        /* Said already, or the request's transaction ended (rolled back:
         * a rollback or release hook): statements commit on their own. */
        db->autocommit = true;
        return HP_OK;
    }
    if (db->tx != TX_PENDING || db->failed) {
        hp_db__fail(db,
                    "hp_db_autocommit: the request's transaction has begun "
                    "(a statement ran on this handle); call it before the "
                    "first statement",
                    "25001", 0);
        return -1;
    }
    /* A session's lock and write need the request's transaction
     * (session.c): a request that touched its session keeps it, rather
     * than failing with a 500 when the session is written. */
    if (db->pool == default_pool && db->req->session) {
        hp_db__fail(db,
                    "hp_db_autocommit: this request uses its session, whose "
                    "lock and write need the request's transaction",
                    "25001", 0);
        return -1;
    }
    db->tx = TX_NONE;
    db->autocommit = true;
    return HP_OK;
}

bool hp_db__req_autocommit(hp_req *req)
{
    struct req_db *rd = req ? find_enlisted(req, default_pool) : NULL;
    return rd && rd->db && rd->db->autocommit;
}

/* ---- the server's default pool and the status page ----------------------- */

static const char *data_home(char *buf, size_t len)
{
    const char *xdg = getenv("XDG_DATA_HOME");
    const char *home = getenv("HOME");
    /* Like the cache directory: a relative $XDG_DATA_HOME is ignored. */
    if (xdg && xdg[0] == '/')
        snprintf(buf, len, "%s/hotpub", xdg);
    else if (home && home[0])
        snprintf(buf, len, "%s/.local/share/hotpub", home);
    else
        snprintf(buf, len, "/tmp/hotpub-%lu/data", (unsigned long)getuid());
    return buf;
}

/* <data home>/<docroot's name>-<8 hex of its hash>.db: one database per
 * document root, outside it (a docroot may be read-only, and is served). */
char *hp_db_default_path(const char *root_canon)
{
    char home[PATH_MAX], hex[33], base[48];
    struct hp_hash h;
    const char *slash = strrchr(root_canon, '/');
    const char *name = slash && slash[1] ? slash + 1 : "root";
    size_t n = 0;

    for (; *name && n < sizeof base - 1; name++)
        base[n++] =
            isalnum((unsigned char)*name) || strchr("._-", *name) ? *name : '_';
    base[n] = '\0';
    hp_hash_init(&h);
    hp_hash_update(&h, root_canon, strlen(root_canon));
    hp_hash_hex(&h, hex);
    return hp_xasprintf("%s/%s-%.8s.db", data_home(home, sizeof home), base,
                        hex);
}

static void opts_from_config(const struct hp_config *cfg,
                             struct hp_db_pool_opts *o)
{
    *o = (struct hp_db_pool_opts){
        .max_conns = cfg->db_pool_size,
        .acquire_timeout_ms =
            hp_config_db_acquire_ms(cfg) ? hp_config_db_acquire_ms(cfg) : -1,
        .max_lifetime_s = cfg->db_max_lifetime ? cfg->db_max_lifetime : -1,
        .stmt_cache = cfg->db_statement_cache ? cfg->db_statement_cache : -1,
        .name = "default",
    };
}

/* With a database named explicitly, say now if it cannot be reached; the
 * server still starts (the database may come up later). */
static void try_connect(hp_db_pool *p)
{
    char *err = NULL;
    hp_db *db = hp_db_pool_acquire(p, &err);
    if (db)
        hp_db_pool_release(db);
    else
        hp_log_error("database %s: cannot connect now (%s); requests get "
                     "503 until it can",
                     p->shown, err ? err : "?");
    free(err);
}

void hp_db_server_set_dev(bool dev)
{
    dev_bodies = dev;
}

int hp_db_server_open(const struct hp_config *cfg, const char *root_canon)
{
    struct hp_db_pool_opts o;
    char *err = NULL, *url;

    if (cfg->db && strcmp(cfg->db, "off") == 0) {
        hp_log_info("%sdatabase: off", hp_log_who());
        return 0;
    }
    char *path = cfg->db ? NULL : hp_db_default_path(root_canon);
    url = cfg->db ? hp_xstrdup(cfg->db) : hp_xasprintf("sqlite:%s", path);
    opts_from_config(cfg, &o);
    hp_db_pool *p = hp_db_pool_open(url, &o, &err);
    if (!p) {
        hp_log_error("%sdatabase: %s", hp_log_who(), err ? err : "cannot open");
        free(err);
        free(url);
        free(path);
        return -1;
    }
    p->mkdir_parent = cfg->db == NULL;
    p->is_default = true;
    hp_log_info("%sdatabase: %s (%s, up to %d connections)%s", hp_log_who(),
                p->shown, p->drv->name, p->max,
                cfg->db ? "" : " - the default; created on first use");
    default_pool = p;
    if (cfg->db)
        try_connect(p);
    free(url);
    free(path);
    return 0;
}

bool hp_db_server_busy(void)
{
    struct hp_db_pool_stats st;
    if (!default_pool)
        return false;
    hp_db_pool_stats(default_pool, &st);
    return st.idle == 0;
}

void hp_db_server_close(void)
{
    hp_db_pool *p = default_pool;
    default_pool = NULL;
    hp_db_pool_close(p);
}
