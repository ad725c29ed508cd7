/*
 * db_pg.c - the PostgreSQL engine behind the database layer (db_core.h), on
 * libpq's asynchronous calls (PQsend*, PQconnectPoll), every wait for the
 * server through hp_wait_fd (wait.h: a coroutine scheduler's hook, or poll).
 *
 * Owns: every PQ* call: connecting (with a connect timeout, so an
 * unreachable server cannot hold a request longer than the pool's acquire
 * timeout allows), the idle-connection liveness probe, named prepared
 * statements for the cache, running a statement with its parameters (text
 * format, bytea in binary), collecting results, errors with SQLSTATE; how a
 * transaction's BEGIN and COMMIT travel (below), and the write check.
 * May not touch: pools, caching decisions, transactions' place in the
 * request (the dispatch above decides when to begin, commit or roll back;
 * this file only decides how the commands reach the server).
 * It calls only the core (db_core.h); the layer above reaches it only
 * through its driver table.
 *
 * Results are requested in text format and kept as the PGresult: the
 * result's cells point into it (no copy), except bytea values, which are
 * decoded from PostgreSQL's hex text into the result's memory.
 *
 * Round trips of a request's transaction (docs/database.md, "Round trips
 * on PostgreSQL", says what is guaranteed):
 *
 *   - A read of a request expected only to read (a GET, HEAD or OPTIONS),
 *     before its first write, is a transaction of its own when the
 *     connection's default isolation is READ COMMITTED (ro_reads): the
 *     statement and the read guard in one write with one Sync, an
 *     implicit transaction, one round trip with no BEGIN or COMMIT
 *     (execute_read). The guard fails (a division by zero) when the
 *     transaction has a transaction id, that is when it wrote, or is not
 *     READ COMMITTED any more; the server then rolls the whole of it
 *     back, and the statement runs again as the first of the request's
 *     transaction, which holds the rest of the request. Nothing relies on the
 * statement failing: a function that writes and catches every error writes
 * once, in the request's transaction. Where the default is not READ COMMITTED,
 * the rules below apply to every request.
 *   - BEGIN is not sent on its own: pg_begin only notes it, and the
 *     transaction's first statement sends BEGIN, itself and the write
 *     check below in one write with one Sync (libpq's pipeline mode), so
 *     they cost one round trip. A failed BEGIN skips the rest (the
 *     pipeline aborts) and is reported as the statement's error.
 *   - The write check, pipelined after a first statement that may only
 *     read (it starts with SELECT, WITH, VALUES or TABLE and names neither
 *     NOTIFY nor ADVISORY) in a transaction begun for reading (the dispatch's
 * "write" is false: a GET, HEAD or OPTIONS request): whether the transaction
 * has a transaction id yet and its isolation level. PostgreSQL assigns an id at
 * a transaction's first write of any kind (rows, row locks, DDL, temporary
 * tables), so "none" means it wrote nothing.
 *   - The COMMIT of a transaction that ran that one statement, wrote
 *     nothing and is not SERIALIZABLE is sent without waiting for its
 *     reply: there is nothing it could fail to make durable (no deferred
 *     trigger or constraint fires without a write), nothing another
 *     request could fail to see, and its locks are released when the
 *     server reads it, as soon as it would have been anyway. The reply is
 *     read when the connection is next checked out (pg_settle); a failure
 *     there is logged and the connection dropped. SERIALIZABLE is excluded
 *     because a transaction that only read can still fail its COMMIT with
 *     a serialization failure, which the page must see as a 500. Any other
 *     transaction waits for its COMMIT, as before.
 *
 * The connection stays in blocking mode in a pipeline: the statement's
 * parameters, however large, are read by the server before it can start
 * on a reply, and all that follows them is the check and a Sync (a few
 * dozen bytes, which fit in the socket buffer), so our write always ends
 * before we read, and no full buffer on one side can block the other.
 *
 * A batch (pg_run_many, hp_db_query_many) is the same statement run once
 * per row of parameters, all in one pipeline under the rules above, taken
 * together: reads on their own are [runs, guard, Sync], one implicit
 * transaction; the transaction's first statements [BEGIN, runs, Sync];
 * later ones [runs, Sync]; outside any transaction (a pool handle in
 * autocommit) [BEGIN, runs, COMMIT, Sync], and when run k fails, runs
 * 0..k-1 once more the same way, so that they stay done as k single calls
 * would leave them (autocommit_batch); a statement PostgreSQL refuses in a
 * pipeline or a transaction block (25001: VACUUM, ...) then runs one by
 * one. It is written in chunks small enough for the socket buffers
 * (BATCH_BYTES), each read back before the next is written, so the rule
 * above holds for it too.
 *
 * hp_db_changes counts only the rows of INSERT, UPDATE, DELETE and MERGE
 * (changed_rows: the command tag), as SQLite does.
 */
#include "db_drivers.h"
#include "wait.h"

#include <ctype.h>
#include <libpq-fe.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Type OIDs (pg_type.h is a server header; these never change). */
#define OID_BOOL 16
#define OID_BYTEA 17
#define OID_INT8 20
#define OID_INT2 21
#define OID_INT4 23
#define OID_OID 26
#define OID_FLOAT4 700
#define OID_FLOAT8 701
#define OID_NUMERIC 1700

struct pg_conn {
    PGconn *c;
    unsigned long next_name; /* for "hp_<n>" statement names */
    const char *xid_sql;     /* the write check for this server, or NULL  */
    bool check_ready;        /* prepared as CHECK_NAME on this connection */
    unsigned nrun;           /* statements and scripts since BEGIN        */
    bool begin_queued;       /* BEGIN goes out with the next statement   */
    bool begin_write;        /* ... for a request expected to write      */
    bool wrote_nothing;      /* the write check after the 1st statement  */
    bool reply_pending;      /* a COMMIT sent; its reply not read yet    */
    bool broken;             /* the pipeline went wrong: drop the conn   */
    bool ro_reads;           /* reads may be transactions of their own   */
    bool guard_ready;        /* prepared as GUARD_NAME on this connection */
    bool aborted;            /* a read on its own failed: refuse the rest */
    bool copy;               /* a statement started a COPY: dropped      */
    bool timed_out;          /* a wait for the server failed: dropped    */
    int64_t until;           /* while connecting: the waits' deadline     */
    unsigned long waits;     /* round trips so far (hp_db__pg_round_trips) */
    int enc;                 /* PQclientEncoding when mb was last named  */
    enum hp_db_lex_mb mb;    /* ... its kind (0, SQL_ASCII, is NONE)     */
};

/* The write check: the transaction's id if it has one (NULL: it wrote
 * nothing), and its isolation level. Schema-qualified and without
 * operators, so that no search_path can put another function in its
 * place. PostgreSQL 13 renamed txid_current_if_assigned (9.6). */
#define XID_SQL_13                                                             \
    "SELECT pg_catalog.pg_current_xact_id_if_assigned(),"                      \
    " pg_catalog.current_setting('transaction_isolation')"
#define XID_SQL_96                                                             \
    "SELECT pg_catalog.txid_current_if_assigned(),"                            \
    " pg_catalog.current_setting('transaction_isolation')"
/* Its prepared statement: parsed and planned once per connection (cached
 * statements are "hp_<n>"). */
#define CHECK_NAME "hp_write_check"
/* The read guard (execute_read): 1 when the transaction has no
 * transaction id (it wrote nothing) and is READ COMMITTED; else a division
 * by zero (22012), which stops the pipeline before its COMMIT. Operators
 * named with their schema, like the functions. */
#define GUARD_TEST(xid)                                                        \
    "SELECT 1 OPERATOR(pg_catalog./) (pg_catalog." xid "() IS NULL AND"        \
    " (pg_catalog.current_setting('transaction_isolation')"                    \
    " OPERATOR(pg_catalog.=) 'read committed' OR"                              \
    " pg_catalog.current_setting('transaction_isolation')"                     \
    " OPERATOR(pg_catalog.=) 'read uncommitted'))::pg_catalog.int4"
#define GUARD_SQL_13 GUARD_TEST("pg_current_xact_id_if_assigned")
#define GUARD_SQL_96 GUARD_TEST("txid_current_if_assigned")
#define GUARD_NAME "hp_read_guard"

struct pg_stmt {
    char name[32];
    signed char reads; /* may_only_read(its SQL): 0 not asked yet, 1, -1 */
};

/* The statement of an uncached call: run with PQexecParams. */
static struct pg_stmt unnamed;

static PGconn *C(hp_db *db)
{
    return ((struct pg_conn *)db->conn)->c;
}

/* ---- errors -------------------------------------------------------------- */

/* What a page that sent COPY is told (SQLSTATE 0A000). */
static const char COPY_REFUSED[] =
    "COPY ... is not supported through hp_db; read rows with SELECT and "
    "write them with hp_db_exec_many (the connection was dropped and the "
    "request's transaction rolled back)";

/* A result that starts a COPY: the server then streams COPY data (out) or
 * waits for it (in), and PQgetResult hands out the same COPY state again
 * each time it is asked, never the NULL that ends a command. */
static bool is_copy(const PGresult *r)
{
    ExecStatusType s = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    return s == PGRES_COPY_OUT || s == PGRES_COPY_IN || s == PGRES_COPY_BOTH;
}

/*
 * A COPY is refused by dropping the connection (pc->broken: the pool
 * replaces it at release), not by ending the COPY: a COPY TO STDOUT ends
 * only when all its rows have been read (a whole table, maybe), and in
 * pipeline mode libpq has no way to abandon either direction; closing the
 * socket ends the COPY and rolls the transaction back on the server, at
 * the cost of one reconnect for what is a programming error.
 */
static void fail_copy(hp_db *db)
{
    struct pg_conn *pc = db->conn;
    pc->copy = pc->broken = true;
    hp_db__fail(db, COPY_REFUSED, "0A000", 0);
}

/* A wait for the server that ended without an answer (hp_wait_fd: the
 * scheduler's deadline for the request passed, or the wait failed): the
 * connection is somewhere in a command (pc->broken: the pool closes it),
 * and the call fails as a cancelled statement would (57014,
 * query_canceled). */
static void fail_timed_out(hp_db *db)
{
    hp_db__fail(db, "timed out waiting for PostgreSQL", "57014", 0);
}

/* From a result when there is one with a SQLSTATE; else the connection's
 * message (a lost connection has no SQLSTATE: 08006); a COPY's, 0A000. */
static void fail_res(hp_db *db, const PGresult *r)
{
    if (((struct pg_conn *)db->conn)->timed_out) {
        fail_timed_out(db);
        return;
    }
    if (is_copy(r) || ((struct pg_conn *)db->conn)->copy) {
        fail_copy(db);
        return;
    }
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    if (!state) {
        const char *m = PQerrorMessage(C(db));
        hp_db__fail(db,
                    m && *m ? m
                            : "the connection to the server failed (no "
                              "message from libpq)",
                    "08006", 0);
        return;
    }
    const char *primary = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
    const char *detail = PQresultErrorField(r, PG_DIAG_MESSAGE_DETAIL);
    char *msg = hp_xasprintf("%s%s%s", primary ? primary : "error",
                             detail ? " - " : "", detail ? detail : "");
    hp_db__fail(db, msg, state, 0);
    free(msg);
}

/* Rows an INSERT, UPDATE, DELETE or MERGE changed (its command tag); 0
 * for anything else: PQcmdTuples counts a SELECT's, FETCH's, MOVE's and
 * COPY's rows too, which hp_db_changes does not (as on SQLite). */
static long long changed_rows(PGresult *r)
{
    static const char *const tags[] = {"INSERT ", "UPDATE ", "DELETE ",
                                       "MERGE "};
    const char *tag = PQcmdStatus(r);
    for (size_t i = 0; tag && i < sizeof tags / sizeof *tags; i++)
        if (strncmp(tag, tags[i], strlen(tags[i])) == 0)
            return strtoll(PQcmdTuples(r), NULL, 10);
    return 0;
}

static bool ok_status(const PGresult *r)
{
    ExecStatusType s = PQresultStatus(r);
    return s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK ||
           s == PGRES_EMPTY_QUERY;
}

/* ---- waiting for the server ---------------------------------------------- */

/*
 * No call here blocks the thread inside libpq while the server works: a
 * command is sent (PQsend*; the connection is in blocking mode, so the send
 * itself writes all of it, as PQexec's does), and every wait for its
 * answer goes through hp_wait_fd on the connection's socket, which a
 * coroutine scheduler replaces for its thread (it runs other requests
 * meanwhile). Without a scheduler hp_wait_fd is poll(2), as libpq's own
 * wait, with no deadline, so the calls behave as PQexec and company did;
 * and the system calls are the same: one poll, then the reads.
 */

/* The wait failed (0: the hook's deadline; -1: an error): the connection
 * is mid-command, in a state nobody knows; it is dropped. */
static bool wait_failed(struct pg_conn *pc)
{
    pc->timed_out = pc->broken = true;
    return false;
}

/* What libpq has buffered goes out; a flush that would block (only in
 * non-blocking mode) waits for the socket to take more. 0: sent; -1: the
 * write failed (a lost connection); -2: the wait did. */
static int flush_out(struct pg_conn *pc)
{
    int f;
    while ((f = PQflush(pc->c)) == 1)
        if (hp_wait_fd(PQsocket(pc->c), POLLOUT, pc->until) != 1) {
            wait_failed(pc);
            return -2;
        }
    return f;
}

/* Until PQgetResult would not block: read what the server sent, waiting
 * through hp_wait_fd while it is not all here. false: the wait failed. */
static bool await_result(struct pg_conn *pc)
{
    if (pc->timed_out || flush_out(pc) == -2)
        return false; /* a failed write: PQgetResult says so */
    while (PQisBusy(pc->c)) {
        if (hp_wait_fd(PQsocket(pc->c), POLLIN, pc->until) != 1)
            return wait_failed(pc);
        if (!PQconsumeInput(pc->c))
            break; /* the connection is lost: PQgetResult says so */
    }
    return true;
}

/* PQgetResult without blocking in libpq. NULL: the command's results are
 * over, or the connection failed, or the wait did (pc->timed_out). */
static PGresult *pg_result_wait(struct pg_conn *pc)
{
    return await_result(pc) ? PQgetResult(pc->c) : NULL;
}

/*
 * What PQexec returns, after a PQsend*: every result up to the NULL that
 * ends the command, keeping the last (libpq 15's PQexecFinish: a simple
 * query that fails stops at its error, which is then the last; errors
 * before it are in PQerrorMessage). It stops at a COPY, whose state
 * repeats, and at a lost connection. NULL when the send failed
 * (sent false) or the wait did.
 */
static PGresult *exec_finish(struct pg_conn *pc, bool sent)
{
    if (!sent)
        return NULL;
    PGresult *last = NULL, *r;
    while ((r = pg_result_wait(pc)) != NULL) {
        PQclear(last);
        last = r;
        if (is_copy(r) || PQstatus(pc->c) == CONNECTION_BAD)
            break;
    }
    if (pc->timed_out) {
        PQclear(last);
        return NULL;
    }
    return last;
}

/* PQexec(pc->c, sql), waiting through hp_wait_fd. */
static PGresult *pg_exec(struct pg_conn *pc, const char *sql)
{
    return exec_finish(pc, PQsendQuery(pc->c, sql));
}

/* PQprepare(pc->c, name, sql, 0, NULL), waiting through hp_wait_fd. */
static PGresult *pg_prepare_wait(struct pg_conn *pc, const char *name,
                                 const char *sql)
{
    return exec_finish(pc, PQsendPrepare(pc->c, name, sql, 0, NULL));
}

/* ---- connections --------------------------------------------------------- */

/* "postgresql://..." and "postgres://...": libpq takes the URL itself. */
static const char *pg_match(const char *url)
{
    if (strncmp(url, "postgresql://", 13) == 0 ||
        strncmp(url, "postgres://", 11) == 0)
        return url;
    return NULL;
}

static bool pg_private_conns(const char *url)
{
    return false;
}

static int pg_check_url(const char *url, char **err)
{
    char *msg = NULL;
    PQconninfoOption *o = PQconninfoParse(url, &msg);
    if (!o) {
        *err =
            hp_xasprintf("bad PostgreSQL URL: %s", msg ? msg : "out of memory");
        PQfreemem(msg);
        return -1;
    }
    PQconninfoFree(o);
    return 0;
}

/* Warnings go to the log; NOTICEs ("table exists, skipping") do not. */
static void on_notice(void *arg, const PGresult *r)
{
    const char *sev = PQresultErrorField(r, PG_DIAG_SEVERITY_NONLOCALIZED);
    if (sev && strcmp(sev, "WARNING") == 0)
        hp_log_info("postgresql: %s",
                    PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY));
}

static int run_init(struct pg_conn *pc, const char *init_sql, char **err)
{
    PGresult *r = pg_exec(pc, init_sql);
    bool ok = r && ok_status(r);
    if (!ok)
        *err = hp_xasprintf("init SQL: %s", pc->timed_out
                                                ? "timed out waiting for "
                                                  "PostgreSQL"
                                                : PQerrorMessage(pc->c));
    PQclear(r);
    return ok ? 0 : -1;
}

/*
 * Whether a GET's reads may each be a transaction of their own
 * (execute_read): the server has the read guard's function (9.6 and
 * later) and its default isolation is READ COMMITTED (or READ
 * UNCOMMITTED, the same in PostgreSQL): each statement has its own
 * snapshot anyway, where under REPEATABLE READ or SERIALIZABLE a request's
 * reads must share one. A page that changes the default later is caught
 * by the guard, statement by statement.
 */
static bool ro_reads_possible(struct pg_conn *pc)
{
    if (!pc->xid_sql)
        return false;
    PGresult *r = pg_exec(pc, "SELECT pg_catalog.current_setting("
                              "'default_transaction_isolation')");
    bool rc = r && PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 &&
              (strcmp(PQgetvalue(r, 0, 0), "read committed") == 0 ||
               strcmp(PQgetvalue(r, 0, 0), "read uncommitted") == 0);
    PQclear(r);
    return rc;
}

/* The connect timeout in force: the URL's connect_timeout if it gives one
 * (libpq's rules: at least 2 s, 0 or less for none), else ours (secs). */
static int connect_secs(PGconn *c, int secs)
{
    PQconninfoOption *o = PQconninfo(c);
    for (PQconninfoOption *i = o; i && i->keyword; i++)
        if (strcmp(i->keyword, "connect_timeout") == 0 && i->val && *i->val) {
            char *end;
            long v = strtol(i->val, &end, 10);
            if (end != i->val && v < 1000000)
                secs = v <= 0 ? 0 : v < 2 ? 2 : (int)v;
        }
    PQconninfoFree(o);
    return secs;
}

/*
 * PQconnectdbParams without blocking in libpq: PQconnectStartParams, then
 * PQconnectPoll, waiting through hp_wait_fd on the socket for what it asks
 * (libpq's "Connecting" protocol; PQsocket may change as it tries another
 * address). PQconnectPoll does not apply connect_timeout itself: the
 * deadline here does, over the whole attempt (libpq's is per address), and
 * ends as libpq's words for it ("timeout expired"). The handler's bound
 * (wait.h's hp_wait_bound: --handler-timeout less its margin) cuts it
 * when it comes first, so that a database that takes the connection and
 * never answers gets the page its 503 in time, not the watchdog's 504 and
 * a replaced worker; *until is the deadline in force (0: none), for the
 * rest of the connect (init SQL, the isolation question). A hook's own
 * earlier deadline (the reactor's job) ends it with "timed out waiting
 * for PostgreSQL". NULL with *err set on failure.
 *
 * Not bounded: the host name's resolution. libpq resolves it with
 * getaddrinfo(3), synchronously, inside PQconnectStartParams and
 * PQconnectPoll (for each host of a list), on this thread (the reactor's,
 * for a coroutine): a resolver that does not answer holds the thread for
 * its own timeouts (resolv.conf: 5 s per try by default). A hostaddr= in
 * the URL (with host= kept for TLS and Kerberos) skips the lookup
 * (docs/database.md, "Known limitations").
 */
static PGconn *connect_wait(const char *const *keys, const char *const *vals,
                            int secs, int64_t *until, char **err)
{
    PGconn *c = PQconnectStartParams(keys, vals, 1);
    if (!c) {
        *err = hp_xstrdup("out of memory");
        return NULL;
    }
    secs = connect_secs(c, secs);
    int64_t now = hp_now_ns();
    int64_t deadline = secs ? now + secs * 1000000000LL : 0;
    int64_t bound = hp_wait_bound();
    bool cut = bound && (!deadline || bound < deadline);
    if (cut)
        deadline = bound > now ? bound : now;
    *until = deadline;
    PostgresPollingStatusType st = PQstatus(c) == CONNECTION_BAD
                                       ? PGRES_POLLING_FAILED
                                       : PGRES_POLLING_WRITING;
    const char *why = NULL;
    while (st != PGRES_POLLING_OK && st != PGRES_POLLING_FAILED) {
        short ev = st == PGRES_POLLING_READING ? POLLIN : POLLOUT;
        int w = hp_wait_fd(PQsocket(c), ev, deadline);
        if (w != 1) {
            bool ours = w == 0 && deadline && hp_now_ns() >= deadline;
            why = !ours  ? "timed out waiting for PostgreSQL"
                  : !cut ? "timeout expired"
                         : "connecting was cut short of connect_timeout to "
                           "answer within --handler-timeout";
            break;
        }
        st = PQconnectPoll(c);
    }
    if (!why && st == PGRES_POLLING_OK && PQstatus(c) == CONNECTION_OK)
        return c;
    *err = hp_xasprintf("%s%s", PQerrorMessage(c), why ? why : "");
    size_t n = strlen(*err);
    while (n && ((*err)[n - 1] == '\n' || (*err)[n - 1] == ' '))
        (*err)[--n] = '\0';
    PQfinish(c);
    return NULL;
}

/*
 * The URL's own settings win over ours (libpq applies parameters in order
 * and expands the URL given as dbname where it stands). connect_timeout
 * follows the pool's acquire timeout; libpq's minimum is 2 seconds. The
 * init SQL and the isolation question wait through hp_wait_fd too: a
 * connection is opened at a request's checkout.
 */
static int pg_connect(hp_db *db, const char *url, const char *init_sql,
                      int timeout_ms, char **err)
{
    char timeout[16];
    int secs = (timeout_ms + 999) / 1000;
    secs = secs < 2 ? 2 : secs;
    snprintf(timeout, sizeof timeout, "%d", secs);
    const char *const keys[] = {"connect_timeout", "application_name",
                                "client_encoding", "dbname", NULL};
    const char *const vals[] = {timeout, "hotpub", "UTF8", url, NULL};

    int64_t until = 0;
    PGconn *c = connect_wait(keys, vals, secs, &until, err);
    if (!c)
        return -1;
    PQsetNoticeReceiver(c, on_notice, NULL);
    struct pg_conn *pc = hp_xcalloc(1, sizeof *pc);
    pc->c = c;
    pc->until = until; /* the connect's deadline, for its queries too */
    if (init_sql && run_init(pc, init_sql, err) < 0) {
        PQfinish(c);
        free(pc);
        return -1;
    }
    int v = PQserverVersion(c);
    pc->xid_sql = v >= 130000 ? XID_SQL_13 : v >= 90600 ? XID_SQL_96 : NULL;
    pc->ro_reads = ro_reads_possible(pc);
    pc->until = 0; /* a request's statements: the scheduler's deadline */
    if (pc->timed_out) {
        *err = hp_xstrdup("timed out waiting for PostgreSQL");
        PQfinish(c);
        free(pc);
        return -1;
    }
    db->conn = pc;
    return 0;
}

static void pg_disconnect(hp_db *db)
{
    PQfinish(C(db));
    free(db->conn);
    db->conn = NULL;
}

/* Known dead: a flag and libpq's status, no system call (the pool asks at
 * every checkout and every give-back). */
static bool pg_alive(hp_db *db)
{
    struct pg_conn *pc = db->conn;
    return !pc->broken && PQstatus(pc->c) == CONNECTION_OK;
}

/*
 * An idle connection has nothing to read. If it has, the server spoke
 * while we were not asking: in practice it is the "terminating connection"
 * message of a shutdown or restart, followed by EOF. Such a connection is
 * not worth a round trip to find out: it is dropped and replaced. One
 * poll(2), at checkout only (pg_settle): a connection given back is looked
 * at when it is next taken, not twice.
 */
static bool pg_quiet(struct pg_conn *pc)
{
    struct pollfd p = {.fd = PQsocket(pc->c), .events = POLLIN};
    if (p.fd < 0)
        return false;
    return poll(&p, 1, 0) == 0;
}

/* ---- pipelines ----------------------------------------------------------- */

/* The next command's result in the pipeline, having read the NULL that
 * ends it (NULL when there is none: the connection is gone). */
static PGresult *pipe_next(struct pg_conn *pc)
{
    PGresult *r = pg_result_wait(pc);
    if (r && PQresultStatus(r) != PGRES_PIPELINE_SYNC && !is_copy(r))
        PQclear(pg_result_wait(pc)); /* NULL: one result per command */
    return r;
}

/* Read up to the Sync and leave pipeline mode. Anything else (a lost
 * connection) marks it broken: alive() then says so and the pool drops
 * it. Two NULLs in a row: nothing more will come. A COPY never reaches
 * the Sync (is_copy): broken at once, and fail_res says why. */
static bool pipe_sync(struct pg_conn *pc)
{
    for (int nulls = 0; nulls < 2;) {
        PGresult *r = pg_result_wait(pc);
        if (pc->timed_out)
            return false; /* broken: mid-pipeline, closed at release */
        if (!r) {
            nulls++;
            continue;
        }
        nulls = 0;
        bool sync = PQresultStatus(r) == PGRES_PIPELINE_SYNC;
        bool copy = is_copy(r);
        PQclear(r);
        if (copy) {
            pc->copy = pc->broken = true;
            return false;
        }
        if (sync)
            break;
    }
    if (PQexitPipelineMode(pc->c) != 1)
        pc->broken = true;
    return !pc->broken;
}

/* The reply of a COMMIT sent without waiting (pg_commit): usually here
 * already; if not, this waits for it, as the COMMIT itself would have. */
static bool pg_settle(hp_db *db)
{
    struct pg_conn *pc = db->conn;
    if (pc->broken)
        return false;
    if (!pc->reply_pending)
        return pg_quiet(pc);
    pc->reply_pending = false;
    PQconsumeInput(pc->c); /* usually all of it, without waiting */
    PGresult *r = pipe_next(pc);
    bool ok = r && PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok)
        hp_log_error("postgresql: the COMMIT of a transaction that wrote "
                     "nothing failed after its response was sent: %s",
                     r               ? PQresultErrorMessage(r)
                     : pc->timed_out ? "timed out waiting for PostgreSQL"
                                     : PQerrorMessage(pc->c));
    PQclear(r);
    return pipe_sync(pc) && ok;
}

/* A server connection has no file to lose: alive() covers it. */
static bool pg_check(hp_db *db, char **why)
{
    return true;
}

static int pg_reset(hp_db *db)
{
    struct pg_conn *pc = db->conn;
    pc->begin_queued = false; /* never sent: nothing to end */
    pc->aborted = false;
    if (pc->broken)
        return -1;
    if (pc->reply_pending)
        return 0; /* the COMMIT in flight ends the transaction */
    switch (PQtransactionStatus(pc->c)) {
    case PQTRANS_IDLE:
        return 0;
    case PQTRANS_INTRANS:
    case PQTRANS_INERROR: {
        pc->waits++;
        PGresult *r = pg_exec(pc, "ROLLBACK");
        bool ok = r && PQresultStatus(r) == PGRES_COMMAND_OK;
        PQclear(r);
        return ok ? 0 : -1;
    }
    default:
        return -1; /* a command in flight, or the connection is gone */
    }
}

static int simple(hp_db *db, const char *sql);

/*
 * The session back as pg_connect left it (the pool's reset, db_pool.c):
 * DISCARD ALL (settings back to their defaults, role and session
 * authorization too; temporary tables, prepared statements, cursors,
 * LISTENs, session advisory locks and cached plans gone; it cannot run in
 * a transaction, and pg_reset ended any), then the init SQL again. Our own
 * prepared statements went with it: the dispatch forgot the cache's, and
 * the write check and read guard are prepared again when next needed.
 * ro_reads is decided again, as at connect: after DISCARD ALL the default
 * isolation is the one the connection started with, and the init SQL sets
 * what it set then, so the answer should not change, but asking costs one
 * round trip per reset and keeps "reads on their own" from resting on that
 * reasoning. Three round trips (two without init SQL), and the reply of a
 * COMMIT still in flight read first.
 */
static int pg_discard(hp_db *db, const char *url, const char *init_sql,
                      int timeout_ms)
{
    struct pg_conn *pc = db->conn;
    char *err = NULL;
    if (!pg_settle(db)) {
        hp_db__fail(db, "the connection failed before its reset", "08006", 0);
        return -1;
    }
    pc->check_ready = pc->guard_ready = false;
    if (simple(db, "DISCARD ALL") < 0)
        return -1;
    if (init_sql) {
        pc->waits++;
        if (run_init(pc, init_sql, &err) < 0) {
            hp_db__fail(db, err, pc->timed_out ? "57014" : NULL, 0);
            free(err);
            return -1;
        }
    }
    pc->waits++;
    pc->ro_reads = ro_reads_possible(pc);
    if (pc->timed_out) {
        fail_timed_out(db);
        return -1;
    }
    return 0;
}

/* A BEGIN noted but not yet sent counts: the dispatch began. */
static bool pg_in_tx(hp_db *db)
{
    struct pg_conn *pc = db->conn;
    if (pc->begin_queued)
        return true;
    if (pc->reply_pending)
        return false; /* its COMMIT is sent */
    PGTransactionStatusType s = PQtransactionStatus(C(db));
    return s == PQTRANS_INTRANS || s == PQTRANS_INERROR;
}

/* Sent with the first statement (pg_run, pg_script). */
static int pg_begin(hp_db *db, bool write)
{
    struct pg_conn *pc = db->conn;
    pc->begin_queued = true;
    pc->begin_write = write;
    pc->nrun = 0;
    pc->wrote_nothing = false;
    pc->aborted = false;
    return 0;
}

/* COMMIT and a Sync in one write; the reply is pg_settle's. */
static int commit_unawaited(hp_db *db)
{
    struct pg_conn *pc = db->conn;
    if (!PQenterPipelineMode(pc->c))
        return simple(db, "COMMIT");
    if (!PQsendQueryParams(pc->c, "COMMIT", 0, NULL, NULL, NULL, NULL, 0) ||
        !PQpipelineSync(pc->c)) {
        pc->broken = true;
        hp_db__fail(db, PQerrorMessage(pc->c), "08006", 0);
        return -1;
    }
    pc->reply_pending = true;
    return 0;
}

static int pg_commit(hp_db *db)
{
    struct pg_conn *pc = db->conn;
    if (pc->begin_queued) { /* no statement ran: nothing was sent */
        pc->begin_queued = false;
        return 0;
    }
    if (pc->nrun == 1 && pc->wrote_nothing)
        return commit_unawaited(db);
    return simple(db, "COMMIT");
}

static int pg_rollback(hp_db *db)
{
    struct pg_conn *pc = db->conn;
    if (pc->begin_queued) {
        pc->begin_queued = false;
        return 0;
    }
    if (pc->broken && (pc->copy || pc->timed_out))
        return 0; /* closing it at release rolls back (fail_copy) */
    if (pc->broken) {
        hp_db__fail(db, "the connection's pipeline broke", "08006", 0);
        return -1;
    }
    return simple(db, "ROLLBACK");
}

static bool pg_tx_failed(hp_db *db)
{
    return ((struct pg_conn *)db->conn)->aborted ||
           PQtransactionStatus(C(db)) == PQTRANS_INERROR;
}

/* ---- statements ---------------------------------------------------------- */

static void *pg_prepare(hp_db *db, const char *sql, bool keep)
{
    if (!keep)
        return &unnamed;
    struct pg_conn *pc = db->conn;
    struct pg_stmt *s = hp_xcalloc(1, sizeof *s);
    snprintf(s->name, sizeof s->name, "hp_%lu", ++pc->next_name);
    pc->waits++;
    PGresult *r = pg_prepare_wait(pc, s->name, sql);
    if (!r || PQresultStatus(r) != PGRES_COMMAND_OK) {
        fail_res(db, r);
        PQclear(r);
        free(s);
        return NULL;
    }
    PQclear(r);
    return s;
}

/* DEALLOCATE cannot run in a failed transaction; then the statement stays
 * on the server until the connection closes, which is harmless. */
static void pg_finalize(hp_db *db, void *stmt, bool tell_server)
{
    struct pg_stmt *s = stmt;
    if (s == &unnamed)
        return;
    if (tell_server && !((struct pg_conn *)db->conn)->broken &&
        PQstatus(C(db)) == CONNECTION_OK &&
        PQtransactionStatus(C(db)) != PQTRANS_INERROR) {
        char sql[48];
        snprintf(sql, sizeof sql, "DEALLOCATE %s", s->name);
        ((struct pg_conn *)db->conn)->waits++;
        PGresult *r = pg_exec(db->conn, sql);
        if (!r || PQresultStatus(r) != PGRES_COMMAND_OK)
            hp_log_error("postgresql: %s failed (a transaction it ran in is "
                         "aborted by it): %s",
                         sql, r ? PQresultErrorMessage(r) : "no reply");
        PQclear(r);
    }
    free(s);
}

static bool pg_readonly(void *stmt)
{
    return true; /* only SQLite's BEGIN depends on it */
}

/* Parameters in text format; blobs in binary (bytea's binary format is the
 * bytes themselves); numbers as decimal text, typed by the server. Up to
 * PARAMS_ON_STACK of them need no allocation (a statement's usual case). */
#define PARAMS_ON_STACK 8

struct pg_params {
    const char **vals;
    int *lens, *fmts;
    char (*num)[32];
    const char *vals_s[PARAMS_ON_STACK];
    int lens_s[PARAMS_ON_STACK], fmts_s[PARAMS_ON_STACK];
    char num_s[PARAMS_ON_STACK][32];
};

static void params_init(struct pg_params *pp, size_t n)
{
    if (n <= PARAMS_ON_STACK) {
        pp->vals = pp->vals_s;
        pp->lens = pp->lens_s;
        pp->fmts = pp->fmts_s;
        pp->num = pp->num_s;
        return;
    }
    pp->vals = hp_xmalloc(n * sizeof *pp->vals);
    pp->lens = hp_xmalloc(n * sizeof *pp->lens);
    pp->fmts = hp_xmalloc(n * sizeof *pp->fmts);
    pp->num = hp_xmalloc(n * sizeof *pp->num);
}

static void params_free(struct pg_params *pp)
{
    if (pp->vals == pp->vals_s)
        return;
    free(pp->vals);
    free(pp->lens);
    free(pp->fmts);
    free(pp->num);
}

/* v in decimal into b (at least 21 bytes): what snprintf's "%lld" writes,
 * without its format parsing (a sixth of a /db request's libc time). */
static void format_int(char *b, long long v)
{
    char t[24];
    int n = 0;
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v
                                 : (unsigned long long)v;
    do
        t[n++] = (char)('0' + u % 10);
    while ((u /= 10) != 0);
    if (v < 0)
        *b++ = '-';
    while (n)
        *b++ = t[--n];
    *b = '\0';
}

static void params_fill(struct pg_params *pp, size_t n, const hp_db_val *v)
{
    for (size_t i = 0; i < n; i++) {
        pp->lens[i] = 0;
        pp->fmts[i] = 0;
        pp->vals[i] = NULL;
        switch (v[i].type) {
        case HP_DB_INT:
            format_int(pp->num[i], v[i].v.i);
            pp->vals[i] = pp->num[i];
            break;
        case HP_DB_FLOAT:
            snprintf(pp->num[i], 32, "%.17g", v[i].v.f);
            pp->vals[i] = pp->num[i];
            break;
        case HP_DB_TEXT:
            pp->vals[i] = v[i].v.s;
            break;
        case HP_DB_BLOB:
            pp->vals[i] = v[i].v.b ? v[i].v.b : "";
            pp->lens[i] = (int)v[i].len;
            pp->fmts[i] = 1;
            break;
        case HP_DB_NULL:
            break;
        }
    }
}

static enum hp_db_type type_of(Oid t)
{
    switch (t) {
    case OID_BOOL:
    case OID_INT2:
    case OID_INT4:
    case OID_INT8:
    case OID_OID:
        return HP_DB_INT;
    case OID_FLOAT4:
    case OID_FLOAT8:
    case OID_NUMERIC:
        return HP_DB_FLOAT;
    case OID_BYTEA:
        return HP_DB_BLOB;
    default:
        return HP_DB_TEXT;
    }
}

static void bytea_cell(hp_db_res *res, const char *text, struct hp_db_cell *c)
{
    size_t len = 0;
    unsigned char *raw = PQunescapeBytea((const unsigned char *)text, &len);
    c->p = hp_db__res_copy(res, raw ? raw : (const unsigned char *)"",
                           raw ? len : 0);
    c->len = raw ? len : 0;
    PQfreemem(raw);
}

static void pqclear(void *r)
{
    PQclear(r);
}

/* The cells point into r, which the result keeps until it is freed. */
static void collect(hp_db_res *res, PGresult *r)
{
    int nc = PQnfields(r), nr = PQntuples(r);
    /* a column's type once, not once per cell */
    enum hp_db_type local[16];
    enum hp_db_type *types =
        nc <= 16 ? local : hp_xmalloc((size_t)nc * sizeof *types);
    hp_db__res_set_cols(res, nc);
    for (int i = 0; i < nc; i++) {
        hp_db__res_set_name(res, i, PQfname(r, i));
        types[i] = type_of(PQftype(r, i));
    }
    for (int row = 0; row < nr; row++) {
        struct hp_db_cell *cells = hp_db__res_add_row(res);
        for (int i = 0; i < nc; i++) {
            struct hp_db_cell *c = &cells[i];
            if (PQgetisnull(r, row, i))
                continue;
            c->type = types[i];
            if (c->type == HP_DB_BLOB) {
                bytea_cell(res, PQgetvalue(r, row, i), c);
                continue;
            }
            c->p = PQgetvalue(r, row, i);
            c->len = (size_t)PQgetlength(r, row, i);
        }
    }
    if (types != local)
        free(types);
    res->keep = r;
    res->keep_free = pqclear;
}

static bool send_stmt(PGconn *c, struct pg_stmt *s, const char *sql, size_t n,
                      const struct pg_params *pp);

/* PQexecParams or PQexecPrepared, waiting through hp_wait_fd. */
static PGresult *execute(hp_db *db, struct pg_stmt *s, const char *sql,
                         size_t n, const hp_db_val *params)
{
    struct pg_conn *pc = db->conn;
    struct pg_params pp;
    pc->waits++;
    params_init(&pp, n);
    params_fill(&pp, n, params);
    bool sent = send_stmt(pc->c, s, sql, n, &pp);
    params_free(&pp);
    return exec_finish(pc, sent);
}

/* A word of the statement that says it writes or locks rows: a
 * data-modifying WITH (INSERT, UPDATE, DELETE, MERGE) or a locking clause
 * (FOR UPDATE, FOR NO KEY UPDATE, FOR SHARE, FOR KEY SHARE). Such a
 * statement would fail the read guard and be sent again (execute_read),
 * two round trips lost; a word inside a string constant only costs the
 * write check. */
static bool names_a_write(const char *sql)
{
    static const char *const writes[] = {"insert", "update", "delete", "merge",
                                         "share"};
    for (const char *p = sql; *p;) {
        if (!isalpha((unsigned char)*p) && *p != '_') {
            p++;
            continue;
        }
        const char *w = p;
        while (isalnum((unsigned char)*p) || *p == '_' || *p == '$')
            p++;
        size_t n = (size_t)(p - w);
        for (size_t i = 0; i < sizeof writes / sizeof *writes; i++)
            if (n == strlen(writes[i]) && strncasecmp(w, writes[i], n) == 0)
                return true;
    }
    return false;
}

/* The statement may only read, as far as its text tells: it starts with
 * SELECT, WITH, VALUES or TABLE (after blanks and parentheses) and names
 * neither NOTIFY (pg_notify queues a message the COMMIT sends, without a
 * transaction id), ADVISORY (an advisory lock another request may try
 * to take without waiting as soon as our response is out) nor SET_CONFIG
 * (set_config(..., true) sets a value for the rest of the transaction: a
 * row-level security policy's user, read by the request's next
 * statements), and no word of it says it writes (names_a_write). Only
 * then is the write check worth sending, or the statement run as a
 * transaction of its own; a function that writes is caught by the check,
 * or by the read guard, and runs again (execute_read). */
static bool may_only_read(const char *sql)
{
    static const char *const first[] = {"select", "with", "values", "table"};
    while (isspace((unsigned char)*sql) || *sql == '(')
        sql++;
    if (strcasestr(sql, "notify") || strcasestr(sql, "advisory") ||
        strcasestr(sql, "set_config") || names_a_write(sql))
        return false;
    for (size_t i = 0; i < sizeof first / sizeof *first; i++) {
        size_t n = strlen(first[i]);
        if (strncasecmp(sql, first[i], n) == 0 &&
            !isalnum((unsigned char)sql[n]) && sql[n] != '_')
            return true;
    }
    return false;
}

/* may_only_read for a statement: a kept one's SQL never changes, so its
 * answer is kept with it (asking on each run was 3,800 of /db's 76,000
 * instructions). The unnamed statement is shared: asked each time. */
static bool stmt_reads(struct pg_stmt *s, const char *sql)
{
    if (s == &unnamed)
        return may_only_read(sql);
    if (!s->reads)
        s->reads = may_only_read(sql) ? 1 : -1;
    return s->reads > 0;
}

static bool send_stmt(PGconn *c, struct pg_stmt *s, const char *sql, size_t n,
                      const struct pg_params *pp)
{
    if (s == &unnamed)
        return PQsendQueryParams(c, sql, (int)n, NULL, pp->vals, pp->lens,
                                 pp->fmts, 0);
    return PQsendQueryPrepared(c, s->name, (int)n, pp->vals, pp->lens, pp->fmts,
                               0);
}

/* The write check's answer: no transaction id, and not SERIALIZABLE. A
 * failed check (it should not fail) leaves the transaction able only to
 * roll back: said here, since the page's statement itself succeeded. */
static bool wrote_nothing(struct pg_conn *pc, PGresult *chk)
{
    if (!chk || PQresultStatus(chk) != PGRES_TUPLES_OK) {
        if (chk && PQresultStatus(chk) != PGRES_PIPELINE_ABORTED) {
            const char *state = PQresultErrorField(chk, PG_DIAG_SQLSTATE);
            if (state && strcmp(state, "26000") == 0)
                pc->check_ready = false;
            hp_log_error("postgresql: the write check failed: %s",
                         PQresultErrorMessage(chk));
        }
        return false;
    }
    return PQntuples(chk) == 1 && PQgetisnull(chk, 0, 0) &&
           strcmp(PQgetvalue(chk, 0, 1), "serializable") != 0;
}

/* The write check and the read guard are prepared when a transaction
 * first needs them, and again after the server forgot them (a page's
 * DEALLOCATE ALL: 26000, which clears *ready). Outside any transaction, so
 * no rollback takes them away. */
static bool prepared(struct pg_conn *pc, const char *name, const char *sql,
                     bool *ready)
{
    if (!*ready) {
        pc->waits++;
        PGresult *r = pg_prepare_wait(pc, name, sql);
        *ready = r && PQresultStatus(r) == PGRES_COMMAND_OK;
        PQclear(r);
    }
    return *ready;
}

static bool check_prepared(struct pg_conn *pc)
{
    return prepared(pc, CHECK_NAME, pc->xid_sql, &pc->check_ready);
}

/*
 * The transaction's first statement: BEGIN, the statement and (when it may
 * only read) the write check in one write and one round trip. Returns the
 * statement's result, or BEGIN's when BEGIN failed (the statement was then
 * skipped), or NULL when the connection failed.
 */
static PGresult *execute_first(hp_db *db, struct pg_stmt *s, const char *sql,
                               size_t n, const hp_db_val *params)
{
    struct pg_conn *pc = db->conn;
    PGconn *c = pc->c;
    bool check = pc->xid_sql && !pc->begin_write && stmt_reads(s, sql) &&
                 check_prepared(pc);
    struct pg_params pp;

    pc->begin_queued = false;
    pc->nrun = 0; /* statements in this transaction (pg_run counts) */
    if (!PQenterPipelineMode(c))
        return NULL;
    params_init(&pp, n);
    params_fill(&pp, n, params);
    bool sent = PQsendQueryParams(c, "BEGIN", 0, NULL, NULL, NULL, NULL, 0) &&
                send_stmt(c, s, sql, n, &pp) &&
                (!check ||
                 PQsendQueryPrepared(c, CHECK_NAME, 0, NULL, NULL, NULL, 0)) &&
                PQpipelineSync(c);
    params_free(&pp);
    if (!sent) {
        pc->broken = true;
        return NULL;
    }
    pc->waits++;
    PGresult *begin = pipe_next(pc);
    PGresult *r = pipe_next(pc);
    PGresult *chk = check ? pipe_next(pc) : NULL;
    if (!pipe_sync(pc)) {
        PQclear(begin);
        PQclear(chk);
        PQclear(r);
        return NULL;
    }
    pc->wrote_nothing = check && wrote_nothing(pc, chk);
    PQclear(chk);
    if (!begin || PQresultStatus(begin) != PGRES_COMMAND_OK) {
        PQclear(r);
        return begin;
    }
    PQclear(begin);
    return r;
}

static bool guard_prepared(struct pg_conn *pc)
{
    if (pc->guard_ready)
        return true; /* no strstr per read */
    return prepared(pc, GUARD_NAME,
                    strstr(pc->xid_sql, "txid_") ? GUARD_SQL_96 : GUARD_SQL_13,
                    &pc->guard_ready);
}

/* The read guard's answer, consumed: whether the reads before it wrote
 * nothing (they stand on their own). A guard the server forgot (26000: a
 * page's DEALLOCATE ALL) is prepared again next time. */
static bool guard_passed(struct pg_conn *pc, PGresult *guard)
{
    bool alone = guard && PQresultStatus(guard) == PGRES_TUPLES_OK;
    if (guard && PQresultStatus(guard) == PGRES_FATAL_ERROR) {
        const char *state = PQresultErrorField(guard, PG_DIAG_SQLSTATE);
        if (state && strcmp(state, "26000") == 0)
            pc->guard_ready = false;
    }
    PQclear(guard);
    return alone;
}

/*
 * A read of a request expected only to read (a GET, HEAD or OPTIONS),
 * before its first write: a transaction of its own, the statement and the
 * read guard in one write with one Sync, so one round trip and no BEGIN or
 * COMMIT: what a pipeline sends between two Syncs outside BEGIN is one
 * implicit transaction, committed at the Sync, or rolled back whole when
 * one of its statements fails (docs/database.md, "Reads on their own").
 * Under READ COMMITTED each statement has its own snapshot anyway. When
 * the guard fails, the statement wrote (a function that writes, a
 * data-modifying WITH) or the page changed the isolation: nothing of it
 * is left, and it runs again as the first of the request's transaction,
 * which then holds the rest of the request. A statement that fails is the
 * request's failure: the next ones are refused (25P02), as in a failed
 * transaction. NULL when the connection failed.
 */
static PGresult *execute_read(hp_db *db, struct pg_stmt *s, const char *sql,
                              size_t n, const hp_db_val *params)
{
    struct pg_conn *pc = db->conn;
    PGconn *c = pc->c;
    struct pg_params pp;

    if (!guard_prepared(pc) || !PQenterPipelineMode(c))
        return execute_first(db, s, sql, n, params);
    params_init(&pp, n);
    params_fill(&pp, n, params);
    bool sent = send_stmt(c, s, sql, n, &pp) &&
                PQsendQueryPrepared(c, GUARD_NAME, 0, NULL, NULL, NULL, 0) &&
                PQpipelineSync(c);
    params_free(&pp);
    if (!sent) {
        pc->broken = true;
        return NULL;
    }
    pc->waits++;
    PGresult *r = pipe_next(pc), *guard = pipe_next(pc);
    bool synced = pipe_sync(pc);
    bool alone = guard_passed(pc, guard);
    if (!synced) {
        PQclear(r);
        return NULL;
    }
    if (!r || !ok_status(r)) {
        pc->aborted = true;
        return r;
    }
    if (alone)
        return r; /* begin_queued stays: the next statement starts anew */
    PQclear(r);
    pc->begin_write = true; /* it writes: no write check */
    return execute_first(db, s, sql, n, params);
}

/* After a read on its own failed, the request's next statements are
 * refused, with PostgreSQL's words, as in a failed transaction: the
 * dispatch's own rule for every failure (db.c, refused) already says so;
 * this one keeps the driver safe on its own (no transaction is open on the
 * server then, so no ROLLBACK TO could succeed either). */
static bool refused_after_failure(hp_db *db)
{
    if (((struct pg_conn *)db->conn)->timed_out) {
        fail_timed_out(db); /* the connection is mid-command: no more */
        return true;
    }
    if (!((struct pg_conn *)db->conn)->aborted)
        return false;
    hp_db__fail(db,
                "current transaction is aborted, commands ignored until end "
                "of transaction block",
                "25P02", 0);
    return true;
}

static bool reads_alone(const struct pg_conn *pc, struct pg_stmt *s,
                        const char *sql)
{
    return pc->ro_reads && pc->begin_queued && !pc->begin_write &&
           stmt_reads(s, sql);
}

static int pg_run(hp_db *db, void *stmt, const char *sql, size_t n,
                  const hp_db_val *params, hp_db_res *res)
{
    struct pg_conn *pc = db->conn;
    if (refused_after_failure(db))
        return -1;
    PGresult *r;
    if (reads_alone(pc, stmt, sql))
        r = execute_read(db, stmt, sql, n, params);
    else if (pc->begin_queued)
        r = execute_first(db, stmt, sql, n, params);
    else
        r = execute(db, stmt, sql, n, params);
    pc->nrun++;
    if (!r || !ok_status(r)) {
        /* The server forgot prepared statements (DEALLOCATE ALL): the
         * write check's too, so prepare it again before it fails. */
        const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
        if (state && strcmp(state, "26000") == 0)
            pc->check_ready = pc->guard_ready = false;
        fail_res(db, r);
        PQclear(r);
        return -1;
    }
    db->changes = changed_rows(r);
    if (res)
        collect(res, r);
    else
        PQclear(r);
    return 0;
}

/* ---- batches (hp_db_query_many) ------------------------------------------ */

/*
 * How much of a batch is written before its replies are read. The
 * connection stays in blocking mode: were we to write a whole large batch
 * first, the server's replies to its first runs could fill both socket
 * buffers while we still write, and each side would wait for the other
 * (libpq's "Pipeline Mode" docs warn of exactly this in blocking mode). So
 * a batch goes in chunks of at most BATCH_BYTES of what it sends (or one
 * run, however large, alone in its chunk): after each, a Flush message,
 * then its replies are read before the next chunk is written. A chunk that
 * small always fits in our send buffer and the server's receive buffer
 * (16 KiB and 128 KiB at the least, Linux's TCP defaults; more on a Unix
 * socket), so our write ends whatever the
 * server does; a run alone in its chunk is the single statement's case
 * (header comment). Every chunk is in the same pipeline, up to one Sync:
 * the batch is still one implicit transaction where it reads on its own.
 * Simpler than non-blocking mode with flushes and reads interleaved, and
 * no slower for what a page sends (TFB's 500 reads are ~40 KiB: one
 * chunk, one round trip). (libpq 15 also reads while a blocking write
 * waits, so an unchunked batch did not hang in the unit test either; its
 * documentation does not promise that.)
 */
#define BATCH_BYTES (64 * 1024)

struct batch {
    struct pg_stmt *s;
    const char *sql;
    size_t sql_len; /* sent with each run of an uncached statement */
    size_t nrows, ncols;
    const hp_db_val *params;
    PGresult **rs;  /* each run's result, kept until the batch is known good */
    size_t sent;    /* runs written */
    size_t done;    /* runs that succeeded, before any failure */
    PGresult *fail; /* the first failure (NULL: the connection failed) */
    bool failed;
    bool commit; /* no transaction: BEGIN ... COMMIT around the runs */
};

/* What a run puts on the wire, roughly: Bind, Describe, Execute (and Parse
 * for an uncached statement), with its parameters. */
static size_t run_bytes(const struct batch *b, size_t i)
{
    const hp_db_val *v = b->params + i * b->ncols;
    size_t n = 40 + strlen(b->s->name) + 6 * b->ncols +
               (b->s == &unnamed ? 20 + b->sql_len : 0);
    for (size_t j = 0; j < b->ncols; j++)
        n += v[j].type == HP_DB_TEXT   ? (v[j].v.s ? strlen(v[j].v.s) : 0)
             : v[j].type == HP_DB_BLOB ? v[j].len
                                       : 24;
    return n;
}

/* Write the next chunk of runs (at least one). false: the write failed. */
static bool send_chunk(PGconn *c, struct batch *b)
{
    size_t bytes = 0;
    do {
        size_t i = b->sent;
        struct pg_params pp;
        bytes += run_bytes(b, i);
        params_init(&pp, b->ncols);
        params_fill(&pp, b->ncols, b->params + i * b->ncols);
        bool ok = send_stmt(c, b->s, b->sql, b->ncols, &pp);
        params_free(&pp);
        if (!ok)
            return false;
        b->sent++;
    } while (b->sent < b->nrows &&
             bytes + run_bytes(b, b->sent) <= BATCH_BYTES);
    return true;
}

/* One reply: a run's (first .. sent-1), or BEGIN's (run < 0). The first
 * failure is kept; after it, the pipeline's ABORTED results are dropped. */
static void read_reply(struct pg_conn *pc, struct batch *b, long run)
{
    PGresult *r = pipe_next(pc);
    if (b->failed) {
        PQclear(r);
    } else if (!r || !ok_status(r)) {
        b->failed = true;
        b->fail = r;
    } else if (run < 0) {
        PQclear(r);
    } else {
        b->rs[run] = r;
        b->done++;
    }
}

/* The COMMIT of a batch outside any transaction: when it fails (a
 * deferred constraint), nothing of the runs is kept. */
static void read_commit(struct pg_conn *pc, struct batch *b)
{
    PGresult *r = pipe_next(pc);
    if (!b->failed && (!r || PQresultStatus(r) != PGRES_COMMAND_OK)) {
        b->failed = true;
        b->fail = r;
        for (size_t i = 0; i < b->done; i++) {
            PQclear(b->rs[i]);
            b->rs[i] = NULL;
        }
        b->done = 0;
        return;
    }
    PQclear(r);
}

/*
 * One pipeline: BEGIN (begin), the runs chunk by chunk, the read guard
 * (guard: its result in *guard_res) and one Sync; stops sending after a
 * failure. false when the connection failed (then marked broken).
 */
static bool batch_pipeline(struct pg_conn *pc, struct batch *b, bool begin,
                           bool guard, PGresult **guard_res)
{
    PGconn *c = pc->c;
    bool synced = false;
    if (!PQenterPipelineMode(c) ||
        (begin && !PQsendQueryParams(c, "BEGIN", 0, NULL, NULL, NULL, NULL, 0)))
        goto lost;
    while (!synced) {
        size_t first = b->sent;
        if (!send_chunk(c, b))
            goto lost;
        bool last = b->sent == b->nrows;
        if (last && guard &&
            !PQsendQueryPrepared(c, GUARD_NAME, 0, NULL, NULL, NULL, 0))
            goto lost;
        if (last && b->commit &&
            !PQsendQueryParams(c, "COMMIT", 0, NULL, NULL, NULL, NULL, 0))
            goto lost;
        if (last ? !PQpipelineSync(c) : !PQsendFlushRequest(c))
            goto lost;
        if (!last && flush_out(pc) != 0)
            goto lost;
        synced = last;
        pc->waits++;
        if (begin && first == 0)
            read_reply(pc, b, -1);
        for (size_t i = first; i < b->sent; i++)
            read_reply(pc, b, (long)i);
        if (last && guard)
            *guard_res = pipe_next(pc);
        if (last && b->commit)
            read_commit(pc, b);
        if (b->failed && !synced) {
            if (!PQpipelineSync(c))
                goto lost;
            synced = true;
        }
    }
    return pipe_sync(pc);
lost:
    pc->broken = true;
    return false;
}

static void batch_clear(struct batch *b)
{
    for (size_t i = 0; i < b->nrows; i++) {
        PQclear(b->rs[i]);
        b->rs[i] = NULL;
    }
    PQclear(b->fail);
    b->fail = NULL;
    b->failed = false;
    b->sent = b->done = 0;
}

/*
 * A batch of reads on their own (execute_read's rules, for all runs at
 * once): the runs and one read guard up to one Sync, one implicit
 * transaction. 1: done, on their own; 0: the guard failed, nothing of
 * them is left (run them again in the request's transaction); -1: a run
 * failed (the request's next statements are refused) or the connection.
 */
static int batch_read(struct pg_conn *pc, struct batch *b)
{
    PGresult *guard = NULL;
    bool ok = batch_pipeline(pc, b, false, true, &guard);
    bool alone = guard_passed(pc, guard);
    if (!ok || b->failed) {
        pc->aborted = true; /* as one failed read: refuse the rest */
        b->failed = true;
        return -1;
    }
    return alone ? 1 : 0;
}

/* The batch's outcome, as pg_run reports one run's. */
static int batch_end(hp_db *db, struct batch *b, hp_db_res **res, size_t *done)
{
    struct pg_conn *pc = db->conn;
    for (size_t i = 0; i < b->done; i++) {
        db->changes += changed_rows(b->rs[i]);
        if (res)
            collect(res[i], b->rs[i]);
        else
            PQclear(b->rs[i]);
        b->rs[i] = NULL;
    }
    *done = b->done;
    if (!b->failed)
        return 0;
    const char *state =
        b->fail ? PQresultErrorField(b->fail, PG_DIAG_SQLSTATE) : NULL;
    if (state && strcmp(state, "26000") == 0)
        pc->check_ready = pc->guard_ready = false;
    fail_res(db, b->fail);
    return -1;
}

/* The run failed because its statement cannot run in a pipeline or a
 * transaction block (VACUUM, CREATE DATABASE, CREATE INDEX CONCURRENTLY,
 * ALTER SYSTEM, ...): PostgreSQL says 25001 (active_sql_transaction). */
static bool not_in_pipeline(const PGresult *fail)
{
    const char *state =
        fail ? PQresultErrorField(fail, PG_DIAG_SQLSTATE) : NULL;
    return state && strcmp(state, "25001") == 0;
}

/*
 * A batch outside any transaction (a pool handle in autocommit) must end as
 * nrows statements run one by one would: a failing run k keeps runs 0..k-1
 * and no later one runs. So: [BEGIN, runs, COMMIT, Sync], one round trip
 * per chunk as always; when run k fails, nothing of it is kept (the
 * pipeline aborts, then ROLLBACK), and runs 0..k-1 are sent again the same
 * way (they ran in a transaction that never was). Only a failure costs the
 * second pass; a run that fails in it (the data changed meanwhile) makes
 * the prefix shorter again. What the page gets is run k's error and the
 * results of the runs kept.
 */
static void autocommit_batch(hp_db *db, struct batch *b)
{
    struct pg_conn *pc = db->conn;
    PGresult *first_fail = NULL; /* the last failure */
    for (;;) {
        batch_pipeline(pc, b, true, false, NULL);
        if (!b->failed || pc->broken)
            break;
        if (simple(db, "ROLLBACK") < 0) {
            pc->broken = true;
            break;
        }
        PQclear(first_fail); /* the run that fails now is the one */
        first_fail = b->fail;
        b->fail = NULL;
        size_t keep = b->done;
        batch_clear(b);
        if (keep == 0 || not_in_pipeline(first_fail))
            break;
        b->nrows = keep;
    }
    if (first_fail) {
        PQclear(b->fail);
        b->fail = first_fail;
        b->failed = true;
    }
}

/* The runs from *done on, each alone (outside any transaction), after
 * the pipeline refused the statement: the first failure stops them. */
static int run_one_by_one(hp_db *db, void *stmt, const char *sql, size_t nrows,
                          size_t ncols, const hp_db_val *params,
                          hp_db_res **res, size_t *done)
{
    long long changes = db->changes;
    hp_db__clear_error(db);
    for (size_t i = *done; i < nrows; i++) {
        if (pg_run(db, stmt, sql, ncols, params + i * ncols,
                   res ? res[i] : NULL) < 0)
            return -1;
        changes += db->changes;
        *done = i + 1;
    }
    db->changes = changes;
    return 0;
}

/*
 * The same statement once per row of parameters, all in one pipeline:
 * what pg_run does for one statement, for all of them at once. Reads on
 * their own: [runs, guard, Sync], and if the guard fails, everything again
 * as the request's first statements. First statements: [BEGIN, runs,
 * Sync]; no write check, which only serves a transaction of one statement
 * (pg_commit). Inside the transaction: [runs, Sync]. A failed run stops
 * the rest (the pipeline aborts). One round trip per chunk (BATCH_BYTES).
 */
static int pg_run_many(hp_db *db, void *stmt, const char *sql, size_t nrows,
                       size_t ncols, const hp_db_val *params, hp_db_res **res,
                       size_t *done)
{
    struct pg_conn *pc = db->conn;
    *done = 0;
    if (nrows == 1) { /* a single run keeps a single run's rules */
        int rc = pg_run(db, stmt, sql, ncols, params, res ? res[0] : NULL);
        *done = rc == 0;
        return rc;
    }
    if (refused_after_failure(db))
        return -1;
    struct batch b = {.s = stmt,
                      .sql = sql,
                      .sql_len = strlen(sql),
                      .nrows = nrows,
                      .ncols = ncols,
                      .params = params,
                      .rs = hp_xcalloc(nrows, sizeof *b.rs)};
    int alone = -2; /* not tried */
    if (reads_alone(pc, stmt, sql) && guard_prepared(pc)) {
        alone = batch_read(pc, &b);
        if (alone == 0) {
            batch_clear(&b);
            pc->begin_write = true; /* it writes: as execute_read */
        }
    }
    if (alone != 1 && alone != -1) {
        bool begin = pc->begin_queued;
        if (begin) {
            pc->begin_queued = false;
            pc->nrun = 0;
            pc->wrote_nothing = false;
        }
        b.commit = !begin && PQtransactionStatus(pc->c) == PQTRANS_IDLE;
        if (b.commit)
            autocommit_batch(db, &b);
        else
            batch_pipeline(pc, &b, begin, false, NULL);
        if (pc->broken && !b.failed)
            b.failed = true;
    }
    pc->nrun += (unsigned)nrows; /* every run counts (pg_commit) */
    bool one_by_one =
        b.commit && b.failed && !pc->broken && not_in_pipeline(b.fail);
    int rc = batch_end(db, &b, res, done);
    batch_clear(&b);
    free(b.rs);
    if (one_by_one) /* VACUUM and its kind: as the page's loop would */
        rc = run_one_by_one(db, stmt, sql, nrows, ncols, params, res, done);
    return rc;
}

static int simple(hp_db *db, const char *sql)
{
    ((struct pg_conn *)db->conn)->waits++;
    PGresult *r = pg_exec(db->conn, sql);
    if (!r || !ok_status(r)) {
        fail_res(db, r);
        PQclear(r);
        return -1;
    }
    db->changes = changed_rows(r);
    PQclear(r);
    return 0;
}

/* A script: BEGIN goes in the same simple query when queued (one round
 * trip; a failed BEGIN stops the rest). A script never counts as a
 * transaction that wrote nothing. */
static int pg_script(hp_db *db, const char *sql)
{
    struct pg_conn *pc = db->conn;
    pc->nrun++;
    pc->wrote_nothing = false;
    if (refused_after_failure(db))
        return -1;
    if (!pc->begin_queued)
        return simple(db, sql);
    pc->begin_queued = false;
    char *both = hp_xasprintf("BEGIN;%s", sql);
    int rc = simple(db, both);
    free(both);
    return rc;
}

/* The cached statement is no use any more: its result type changed under
 * it (0A000 "cached plan must not change result type") or the server
 * forgot it (26000, after DISCARD ALL or DEALLOCATE ALL). */
static bool pg_stale(hp_db *db)
{
    if (((struct pg_conn *)db->conn)->broken)
        return false; /* dropped with its statements (a COPY's 0A000) */
    return strcmp(db->sqlstate, "0A000") == 0 ||
           strcmp(db->sqlstate, "26000") == 0;
}

static void pg_forget_prepared(hp_db *db)
{
    struct pg_conn *pc = db->conn;
    pc->check_ready = pc->guard_ready = false;
}

/* standard_conforming_strings as the server last reported it (libpq keeps
 * each ParameterStatus, sent at connect and after every change, a SET's or
 * a rollback's: a look-up in its short list, no I/O). A server that
 * reports none (before 8.1) has it off, as libpq takes it too. */
static bool pg_backslash_strings(hp_db *db)
{
    const char *v = PQparameterStatus(C(db), "standard_conforming_strings");
    return !v || strcmp(v, "on") != 0;
}

/* client_encoding's kind, named again only when libpq's id for it
 * changed (a ParameterStatus after a page's SET client_encoding). */
static enum hp_db_lex_mb pg_client_mb(hp_db *db)
{
    struct pg_conn *pc = db->conn;
    int enc = PQclientEncoding(pc->c);
    if (enc != pc->enc) {
        pc->enc = enc;
        pc->mb = hp_db__lex_mb_named(pg_encoding_to_char(enc));
    }
    return pc->mb;
}

unsigned long hp_db__pg_round_trips(hp_db *db)
{
    return db && db->drv == &hp_db_pg_driver
               ? ((struct pg_conn *)db->conn)->waits
               : 0;
}

int hp_db__pg_socket(hp_db *db)
{
    return db && db->drv == &hp_db_pg_driver ? PQsocket(C(db)) : -1;
}

bool hp_db__pg_commit_in_flight(hp_db *db)
{
    return db->drv == &hp_db_pg_driver &&
           ((struct pg_conn *)db->conn)->reply_pending;
}

const struct hp_db_driver hp_db_pg_driver = {
    .engine = HP_DB_POSTGRESQL,
    .name = "postgresql",
    .default_conns = 8,
    .match = pg_match,
    .private_conns = pg_private_conns,
    .check_url = pg_check_url,
    .connect = pg_connect,
    .disconnect = pg_disconnect,
    .alive = pg_alive,
    .check = pg_check,
    .settle = pg_settle,
    .reply_due = hp_db__pg_commit_in_flight,
    .in_tx = pg_in_tx,
    .reset = pg_reset,
    .begin = pg_begin,
    .commit = pg_commit,
    .rollback = pg_rollback,
    .tx_failed = pg_tx_failed,
    .prepare = pg_prepare,
    .finalize = pg_finalize,
    .readonly = pg_readonly,
    .run = pg_run,
    .run_many = pg_run_many,
    .script = pg_script,
    .backslash_strings = pg_backslash_strings,
    .client_mb = pg_client_mb,
    .stale = pg_stale,
    .forget_prepared = pg_forget_prepared,
    .discard = pg_discard,
};
