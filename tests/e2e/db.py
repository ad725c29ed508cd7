#!/usr/bin/env python3
"""hotpub database end-to-end tests (docs/database.md).

    HOTPUB_BIN=/abs/path/hotpub [HOTPUB_PG_URL=postgresql://...] \\
        python3 tests/e2e/db.py [NAME-SUBSTRING...]
    python3 tests/e2e/db.py --list

Every test runs on SQLite (a fresh file per test) and, when HOTPUB_PG_URL
names a PostgreSQL server, again on it (a fresh schema per test, through
the URL's search_path). Without HOTPUB_PG_URL the PostgreSQL runs print
"skip name[pg]: no HOTPUB_PG_URL" and do not count. Output, as in run.py:
one line per test, then "N passed, N failed"; exit status 1 on a failure.

The PostgreSQL restart test stops and starts the server behind
HOTPUB_PG_URL with pg_ctl (as the data directory's owner, through runuser
when run as root); it is skipped when that is not possible.
"""

import itertools
import json
import re
import threading
import os
import pwd
import shlex
import shutil
import subprocess
import sqlite3
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import (SLACK, BackgroundRequest, Server, Skip,  # noqa: E402
                     check, check_eq, check_in, fail, page, short,
                     wait_until)

TEST_TIMEOUT = 90.0
SUITE_BUDGET = 400.0
PG_URL = os.environ.get("HOTPUB_PG_URL", "").strip()
ROOT = os.path.dirname(os.path.dirname(harness.HERE))
# Tests that read one pool's counters from status.json run one worker
# process: with several, each has its own pools and status.json shows the
# pools of whichever process answered.
ONE_PROCESS = ["--workers", "1"]


# ---- engines -------------------------------------------------------------

class Engine:
    """How a test's server reaches its database, and the DDL that differs."""

    _n = 0

    def __init__(self, name):
        self.name = name
        self.pg = name == "pg"
        Engine._n += 1
        self.schema = "e2e_%d_%d" % (os.getpid(), Engine._n)
        self.id_col = ("BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"
                       if self.pg else "INTEGER PRIMARY KEY AUTOINCREMENT")
        self.blob = "BYTEA" if self.pg else "BLOB"

    def url(self, s):
        """The --db URL for server s (a harness.Server, not started)."""
        if not self.pg:
            return "sqlite:" + os.path.join(s.tmp, "app.db")
        sep = "&" if "?" in PG_URL else "?"
        return "%s%soptions=-csearch_path%%3D%s" % (PG_URL, sep, self.schema)


ADMIN = page(r'''
HP_HANDLER(script)
{
    hp_db *db = hp_db(req);
    if (hp_db_exec_script(db, hp_arg(req, "q")) != HP_OK) {
        hp_printf(req, "ERR %s", hp_db_error(db));
        return 500;
    }
    hp_puts(req, "ok");
    return HP_OK;
}

HP_HANDLER(value)
{
    hp_db *db = hp_db(req);
    hp_db_res *r = hp_db_query(db, hp_arg(req, "q"));
    if (!r) {
        hp_printf(req, "ERR %s", hp_db_error(db));
        return 500;
    }
    while (hp_db_next(r)) {
        for (int i = 0; i < hp_db_ncols(r); i++)
            hp_printf(req, "%s%s", i ? "|" : "",
                      hp_db_is_null(r, i) ? "NULL" : hp_db_text(r, i));
        hp_puts(req, "\n");
    }
    return HP_OK;
}
''')


def db_server(eng, files=None, args=None, env=None, dev=None, tmp=None):
    """A started server on eng's database, with /admin/script and
    /admin/value, and (PostgreSQL) the test's schema created."""
    files = dict(files or {})
    files.setdefault("admin.c", ADMIN)
    s = Server(files=files, start=False, env=env, dev=dev, tmp=tmp)
    s.args += ["--db", eng.url(s)] + list(args or [])
    s.start()
    if eng.pg:
        script(s, "CREATE SCHEMA IF NOT EXISTS %s" % eng.schema)
    return s


def script(s, sql):
    r = s.get("/admin/script?" + urllib.parse.urlencode({"q": sql}))
    if r.status != 200:
        fail("SQL %r: %s %s" % (sql, r.status, short(r.body)))


def value(s, sql):
    r = s.get("/admin/value?" + urllib.parse.urlencode({"q": sql}))
    if r.status != 200:
        fail("SQL %r: %s %s" % (sql, r.status, short(r.body)))
    return r.text


def cleanup(s, eng):
    if eng.pg and s.alive():
        script(s, "DROP SCHEMA IF EXISTS %s CASCADE" % eng.schema)


def pools(s):
    return {p["name"]: p for p in s.status_json().get("pools", [])}


def wait_pool_idle(s, name="default", timeout=5.0):
    """The pool has no connection out and nobody waiting."""
    def idle():
        p = pools(s).get(name)
        return p if p and p["in_use"] == 0 and p["waiters"] == 0 else None
    p = wait_until(idle, timeout)
    if not p:
        fail("pool %s not back to idle: %s" % (name, pools(s).get(name)))
    return p


# ---- pages ---------------------------------------------------------------

WRITER = page(r'''
HP_HOOK(commit)
{
    /* a later participant that can say no */
    return hp_arg(req, "failcommit") ? 500 : HP_OK;
}

HP_HANDLER(add)
{
    hp_db *db = hp_db(req);
    if (hp_db_exec(db, "INSERT INTO t (v) VALUES ($1)", hp_arg(req, "v")) != HP_OK)
        return 500;
    if (hp_arg(req, "fail")) {
        hp_puts(req, "handler says no");
        return 500;
    }
    if (hp_arg(req, "badsql")) /* an error the handler ignores */
        hp_db_exec(db, "SELECT * FROM no_such_table_e2e");
    hp_printf(req, "added %s", hp_arg(req, "v"));
    return HP_OK;
}

/* A GET that reads, then writes: its transaction began for reading. */
HP_HANDLER(readthenadd)
{
    hp_db *db = hp_db(req);
    hp_db_res *r = hp_db_query(db, "SELECT count(*) FROM t");
    if (!r || !hp_db_next(r))
        return 500;
    long long before = hp_db_int(r, 0);
    if (hp_db_exec(db, "INSERT INTO t (v) VALUES ($1)", hp_arg(req, "v")) != HP_OK)
        return 500;
    hp_printf(req, "added %s after %lld", hp_arg(req, "v"), before);
    return HP_OK;
}

HP_HANDLER(count)
{
    hp_db_res *r = hp_db_query(hp_db(req), "SELECT count(*) FROM t");
    if (!r || !hp_db_next(r))
        return 500;
    hp_printf(req, "%lld", hp_db_int(r, 0));
    return HP_OK;
}
''')


def make_t(s, eng):
    script(s, "CREATE TABLE t (id %s, v TEXT UNIQUE)" % eng.id_col)


def rows(s):
    return sorted(l for l in value(s, "SELECT v FROM t").split("\n") if l)


# ---- commit and rollback -------------------------------------------------

def test_commit_on_success(eng):
    with db_server(eng, {"w.c": WRITER}) as s:
        make_t(s, eng)
        r = s.post("/w/add", "v=one")
        check_eq((r.status, r.text), (200, "added one"), "POST /w/add")
        check_eq(rows(s), ["one"], "rows after a successful request")
        p = wait_pool_idle(s)
        check(p["acquires"] >= 1 and p["errors"] == 0, "pool %r" % p)
        cleanup(s, eng)


def test_rollback_on_handler_error(eng):
    with db_server(eng, {"w.c": WRITER}) as s:
        make_t(s, eng)
        r = s.post("/w/add", "v=two&fail=1")
        check_eq(r.status, 500, "status when the handler returns 500")
        check_eq(rows(s), [], "rows after a failed handler")
        # a statement failed but the handler said HP_OK: still a 500, and
        # the insert before the failure is rolled back (both engines)
        r = s.post("/w/add", "v=three&badsql=1")
        check_eq(r.status, 500, "status after an ignored SQL error")
        check_eq(rows(s), [], "rows after an ignored SQL error")
        err = s.stderr()
        check_in("no_such_table_e2e", err, "server log")
        check_in(s.canon("w.c"), err, "server log (the page)")
        check_in("SQLSTATE 42P01", err, "server log (the SQLSTATE)")
        wait_pool_idle(s)
        cleanup(s, eng)


AUTOCOMMIT = r"""
#include <hotpub.h>
#include <string.h>

/* hp_db_autocommit: each statement commits on its own, whatever the
 * request's outcome; a failed one fails only itself. */
HP_HANDLER(add)
{
    hp_db *db = hp_db(req);
    if (!db || hp_db_autocommit(db) != HP_OK)
        return 500;
    const char *v = hp_arg(req, "v");
    if (hp_arg(req, "savepoint")) {
        /* SQLite's SAVEPOINT would open a transaction nothing commits */
        if (hp_db_exec(db, "SAVEPOINT a") == 0)
            return 500;
        hp_printf(req, "%s ", hp_db_sqlstate(db));
        if (hp_db_exec(db, "RELEASE a") == 0)
            return 500;
        hp_printf(req, "%s ", hp_db_sqlstate(db));
    }
    if (hp_db_exec(db, "INSERT INTO t (v) VALUES ($1)", v) != HP_OK)
        return 500;
    if (hp_arg(req, "badsql")) {
        if (hp_db_exec(db, "SELECT * FROM no_such_table_e2e") == 0)
            return 500;
        hp_printf(req, "%s after %s; ", hp_db_sqlstate(db), v);
        char more[64];
        snprintf(more, sizeof more, "%s-more", v);
        if (hp_db_exec(db, "INSERT INTO t (v) VALUES ($1)", more) != HP_OK)
            return 500;
    }
    hp_printf(req, "added %s", v);
    return hp_arg(req, "fail") ? 500 : HP_OK;
}

/* A session needs the request's transaction: after hp_db_autocommit
 * hp_session_set fails; a session made before it fails the request. */
HP_HANDLER(sess)
{
    hp_db *db = hp_db(req);
    if (!db)
        return 500;
    if (hp_arg(req, "first")) {
        int set = hp_session_set(req, "k", "v");
        hp_printf(req, "set %d autocommit %d", set, hp_db_autocommit(db));
        return HP_OK;
    }
    int ac = hp_db_autocommit(db);
    hp_printf(req, "autocommit %d set %d token %s", ac,
              hp_session_set(req, "k", "v"),
              hp_csrf_token(req) ? "yes" : "none");
    return HP_OK;
}

/* Too late once a statement ran: the request's transaction goes on. */
HP_HANDLER(late)
{
    hp_db *db = hp_db(req);
    if (!db || hp_db_exec(db, "INSERT INTO t (v) VALUES ($1)",
                          hp_arg(req, "v")) != HP_OK)
        return 500;
    int rc = hp_db_autocommit(db);
    hp_printf(req, "%d %s", rc, hp_db_sqlstate(db));
    return hp_arg(req, "fail") ? 500 : HP_OK;
}
"""


def test_autocommit_statements_outlive_the_request(eng):
    """hp_db_autocommit over HTTP: a write stays when the handler then
    answers 500; after a failed statement the next one runs and the request
    is not turned into a 500; called after a statement it returns -1 (25001)
    and the request's transaction still rolls back with the request."""
    with db_server(eng, {"ac.c": AUTOCOMMIT}) as s:
        make_t(s, eng)
        r = s.post("/ac/add", "v=kept&fail=1")
        check_eq(r.status, 500, "status when the handler returns 500")
        check_eq(rows(s), ["kept"], "an autocommit write outlives a 500")
        r = s.post("/ac/add", "v=b&badsql=1")
        check_eq((r.status, r.text), (200, "42P01 after b; added b"),
                 "a failed statement fails only itself")
        check_eq(rows(s), ["b", "b-more", "kept"], "rows after the failure")
        r = s.post("/ac/late", "v=gone&fail=1")
        check_eq(r.status, 500, "hp_db_autocommit after a statement, 500")
        check_eq(rows(s), ["b", "b-more", "kept"],
                 "the request's transaction rolled back")
        r = s.post("/ac/late", "v=late")
        check_eq((r.status, r.text), (200, "-1 25001"), "late, success")
        check_eq(rows(s), ["b", "b-more", "kept", "late"], "committed")
        # a session on an autocommit request is a page's mistake: 500, and
        # the log says why, each time (FRESH14-2: hp_session_destroy,
        # which returns nothing, left a user logged in)
        r = s.get("/ac/sess")
        check_eq(r.status, 500, "a session on an autocommit request")
        check("set-cookie" not in r.headers,
              "no session cookie: %r" % (r.headers,))
        # a request that touched its session keeps its transaction
        # (FRESH15-6: hp_db_autocommit said HP_OK, the commit then 500)
        r = s.get("/ac/sess?first=1")
        check_eq((r.status, r.text), (200, "set 0 autocommit -1"),
                 "a session made before hp_db_autocommit")
        check(r.header("set-cookie"), "the session's cookie")
        r = s.get("/ac/sess")
        check_eq(r.status, 500, "a session on an autocommit request, again")
        err = s.stderr()
        check_eq(err.count("which a session cannot use"), 2,
                 "each is logged: %s" % err[-600:])
        r = s.post("/ac/add", "v=sp&savepoint=1")
        check_eq((r.status, r.text), (200, "25001 25001 added sp"),
                 "SAVEPOINT and RELEASE refused in autocommit")
        check_eq(rows(s), ["b", "b-more", "kept", "late", "sp"],
                 "the write after the refusals stays (FRESH14-1)")
        wait_pool_idle(s)
        cleanup(s, eng)


def test_rollback_when_commit_hook_fails(eng):
    with db_server(eng, {"w.c": WRITER}) as s:
        make_t(s, eng)
        r = s.post("/w/add", "v=four&failcommit=1")
        check_eq(r.status, 500, "status when the page's commit hook fails")
        check(b"added" not in r.body, "the success body must not be sent")
        check_eq(rows(s), [], "rows after a failed commit hook")
        check_eq(s.post("/w/add", "v=five").status, 200, "next request")
        check_eq(rows(s), ["five"], "rows")
        wait_pool_idle(s)
        cleanup(s, eng)


# ---- load and limits -----------------------------------------------------

def test_50_concurrent_inserts(eng):
    with db_server(eng, {"w.c": WRITER}, ONE_PROCESS) as s:
        make_t(s, eng)
        reqs = [BackgroundRequest(s.port, "/w/add", "POST", "v=n%02d" % i,
                                  {"Content-Type":
                                   "application/x-www-form-urlencoded"},
                                  timeout=30)
                for i in range(50)]
        for r in reqs:
            r.start()
        statuses = [r.join_result(40).status for r in reqs]
        bad = [(i, st) for i, st in enumerate(statuses) if st != 200]
        check(not bad, "requests not 200: %s" % bad[:10])
        check_eq(rows(s), ["n%02d" % i for i in range(50)],
                 "every row exactly once")
        check_eq(value(s, "SELECT count(*), count(DISTINCT v) FROM t").strip(),
                 "50|50", "count")
        p = wait_pool_idle(s)
        check(p["size"] <= p["max"], "pool size %r" % p)
        check_eq(p["timeouts"], 0, "timeouts")
        cleanup(s, eng)


def test_concurrent_gets_that_read_then_write(eng):
    """40 GETs at once, each reading then inserting: a transaction begun
    for reading must still write (SQLite answered SQLITE_BUSY_SNAPSHOT,
    "database is locked", to about half of them)."""
    with db_server(eng, {"w.c": WRITER}, ONE_PROCESS) as s:
        make_t(s, eng)
        reqs = [BackgroundRequest(s.port, "/w/readthenadd?v=g%02d" % i,
                                  timeout=30) for i in range(40)]
        for r in reqs:
            r.start()
        res = [r.join_result(40) for r in reqs]
        bad = [(i, r.status, r.text[:80]) for i, r in enumerate(res)
               if r.status != 200]
        check(not bad, "requests not 200: %s" % bad[:5])
        check_eq(rows(s), ["g%02d" % i for i in range(40)],
                 "every row exactly once")
        check(not re.search(r"database is locked|BUSY", s.stderr()),
              "a lock error in the log")
        cleanup(s, eng)


HOLDER = page(r'''
HP_HANDLER(hold)
{
    hp_db *db = hp_db(req);
    if (hp_db_exec(db, "SELECT 1") != HP_OK)
        return 500;
    sleep(2); /* keeps the pool's only connection: 1.5 s past the 503 of
                 a 500 ms acquire timeout */
    hp_puts(req, "held");
    return HP_OK;
}

HP_HANDLER(fast)
{
    hp_db *db = hp_db(req);
    hp_puts(req, "partial output that must not reach the client\n");
    if (hp_db_exec(db, "SELECT 1") != HP_OK)
        return 500;
    hp_puts(req, "fast");
    return HP_OK;
}
''', includes="#include <unistd.h>")


def test_pool_exhausted_503_then_recovers(eng):
    with db_server(eng, {"h.c": HOLDER},
                   ONE_PROCESS + ["--db-pool-size", "1",
                                  "--db-acquire-timeout", "500"]) as s:
        check_eq(s.get("/h/fast").status, 200, "warm-up")
        holder = BackgroundRequest(s.port, "/h/hold")
        holder.start()
        wait_until(lambda: pools(s)["default"]["in_use"] == 1, 5) or \
            fail("the holder never took the connection")
        t0 = time.monotonic()
        r = s.get("/h/fast")
        took = time.monotonic() - t0
        check_eq(r.status, 503, "status while the pool is exhausted")
        check(0.4 <= took < 2.5 * SLACK, "503 after %.2f s, want ~0.5" % took)
        check_in("database busy", r.text, "503 body")
        check_in("500 ms", r.text, "503 body")
        check("partial output" not in r.text, "503 body has the page's "
              "output: %r" % r.text)
        check_eq(r.header("Retry-After"), "1", "Retry-After")
        check_eq(holder.join_result(15).status, 200, "the holder's status")
        r = s.get("/h/fast")
        check(r.status == 200 and r.text.endswith("fast"),
              "after the holder is done: %s %r" % (r.status, r.text))
        p = wait_pool_idle(s)
        check(p["timeouts"] >= 1, "timeouts %r" % p)
        check_eq(p["size"], 1, "pool size")


STREAM_HOLDER = page(r'''
HP_HANDLER(hold)
{
    hp_db *db = hp_db(req);
    if (hp_db_exec(db, "SELECT 1") != HP_OK)
        return 500;
    /* keeps the pool's only connection 3.5 s, flushing every 0.5 s: each
     * flush starts --handler-timeout again, so the holder is not stuck */
    for (int i = 0; i < 7; i++) {
        hp_puts(req, "held\n");
        hp_flush(req);
        usleep(500000);
    }
    return HP_OK;
}

HP_HANDLER(fast)
{
    hp_db *db = hp_db(req);
    if (hp_db_exec(db, "SELECT 1") != HP_OK)
        return 500;
    hp_puts(req, "fast");
    return HP_OK;
}
''', includes="#include <unistd.h>")


def metric(s, name):
    for ln in s.get_ok("/_hotpub/metrics").text.splitlines():
        if ln.startswith(name + '{pool="default"} '):
            return float(ln.rsplit(" ", 1)[1])
    return None


def test_pool_wait_bounded_by_handler_timeout(eng):
    """FRESH17-2: a wait for the pool longer than --handler-timeout ends
    before it (docs/database.md, the pool): 503 + Retry-After, counted in
    db_pool_timeouts_total, never the watchdog's 504 nor a replaced
    worker."""
    with db_server(eng, {"h.c": STREAM_HOLDER},
                   ONE_PROCESS + ["--no-dev", "--db-pool-size", "1",
                                  "--db-acquire-timeout", "5000",
                                  "--handler-timeout", "2"]) as s:
        check_eq(s.get("/h/fast").status, 200, "warm-up")
        holder = BackgroundRequest(s.port, "/h/hold")
        holder.start()
        wait_until(lambda: pools(s)["default"]["in_use"] == 1, 5) or \
            fail("the holder never took the connection")
        harness.bounded_503s(s.port, "/h/fast")
        check_eq(holder.join_result(15).status, 200, "the holder's status")
        check_eq(s.get("/h/fast").status, 200, "after the holder")
        check(wait_until(lambda: metric(
            s, "hotpub_db_pool_timeouts_total") == 3, 5),
            "hotpub_db_pool_timeouts_total %r, want 3"
            % metric(s, "hotpub_db_pool_timeouts_total"))
        log = s.stderr()
        check("will be replaced" not in log and "stuck past" not in log,
              "the watchdog saw a stuck handler: %s" % log[-1500:])
        check_in("handler timeout", log, "the log says the handler timeout "
                 "bounded the wait")
        check_in("--db-acquire-timeout (5000 ms) is not below "
                 "--handler-timeout (2 s)", log, "start-up warning")


def test_sqlite_lock_wait_bounded_by_handler_timeout(eng):
    """SQLite's busy wait for the database's write lock is bounded like the
    pool's wait (docs/database.md): a POST holds the lock 3.5 s, flushing
    (so it is not stuck), --handler-timeout 2: three POSTs wanting the
    lock answer 503 with Retry-After before 2 s, not the watchdog's 504,
    no worker is replaced, and the holder commits."""
    if eng.pg:
        raise Skip("SQLite only")
    with db_server(eng, {"h.c": STREAM_HOLDER},
                   ONE_PROCESS + ["--no-dev", "--handler-timeout", "2"]) as s:
        check_eq(s.post("/h/fast", "").status, 200, "warm-up")
        holder = BackgroundRequest(s.port, "/h/hold", method="POST",
                                   body=b"")
        holder.start()
        time.sleep(0.3)
        harness.bounded_503s(s.port, "/h/fast", method="POST")
        check_eq(holder.join_result(15).status, 200, "the holder's status")
        check_eq(s.post("/h/fast", "").status, 200, "after the holder")
        log = s.stderr()
        check("will be replaced" not in log and "stuck past" not in log,
              "the watchdog saw a stuck handler: %s" % log[-1500:])
        check_in("cut short of the busy timeout", log, "the log says why")


def test_pg_connect_bounded_by_handler_timeout(eng):
    """Opening a PostgreSQL connection in a free slot is bounded like the
    pool's wait (docs/database.md, the pool): --db-acquire-timeout 3000
    (so connect_timeout 3 s, past the 2 s the answers must come within),
    --handler-timeout 2, the database a listener that accepts and never
    answers: each request answers 503 with Retry-After before 2 s, and no
    worker is replaced as hung. Needs no PostgreSQL server: runs once."""
    if eng.pg:
        raise Skip("needs no PostgreSQL server: runs with the sqlite param")
    with harness.SilentListener() as hole:
        s = Server(files={"h.c": STREAM_HOLDER}, start=False)
        s.args += ["--db", "postgresql://u@127.0.0.1:%d/x" % hole.port,
                   "--no-dev", "--db-pool-size", "4",
                   "--db-acquire-timeout", "3000",
                   "--handler-timeout", "2"] + ONE_PROCESS
        s.start()
        with s:
            # the worker's start-up tries the database (its own bounds,
            # twice connect_timeout: about 6 s here) before it serves
            check_eq(s.request("/_hotpub/status.json", timeout=30).status,
                     200, "the worker serves")
            harness.bounded_503s(s.port, "/h/fast")
            check(hole.accepted >= 3, "the listener accepted %d connections"
                  % hole.accepted)
            log = s.stderr()
            check("will be replaced" not in log and "stuck past" not in log,
                  "the watchdog saw a stuck handler: %s" % log[-1500:])
            check_in("cut short of connect_timeout", log,
                     "the log says the handler timeout cut the connect")


# /l/hold?ms=N takes the database's write lock on a pool handle, keeps it
# until N ms after /l/wait began to wait for it, then commits and notes
# when; /l/wait answers how many microseconds after the holder's COMMIT
# returned it got the lock (negative: before the holder's page saw its
# COMMIT return). The wait lasts N ms: at SQLite's own busy retries (every
# 100 ms after the first 328) N = 440 gets the lock ~88 ms late.
LOCK_PAGES = page(r'''
static _Atomic long long committed_us, waiting_us;

static long long now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000LL + ts.tv_nsec / 1000;
}

HP_HANDLER(hold)
{
    char *err = NULL;
    hp_db *db = hp_db_pool_acquire(hp_db_default_pool(), &err);
    if (!db)
        return 500;
    committed_us = waiting_us = 0;
    int ok = hp_db_exec(db, "BEGIN IMMEDIATE") == HP_OK &&
             hp_db_exec(db, "CREATE TABLE IF NOT EXISTS lk (v INTEGER)") ==
                 HP_OK &&
             hp_db_exec(db, "INSERT INTO lk VALUES (1)") == HP_OK;
    int ms = atoi(hp_arg(req, "ms"));
    for (int i = 0; ms && i < 5000 && !waiting_us; i++)
        usleep(1000);
    usleep((useconds_t)ms * 1000);
    ok = ok && hp_db_exec(db, "COMMIT") == HP_OK;
    committed_us = now_us();
    hp_db_pool_release(db);
    hp_puts(req, ok ? "held" : "failed");
    return ok ? HP_OK : 500;
}

HP_HANDLER(wait)
{
    char *err = NULL;
    hp_db *db = hp_db_pool_acquire(hp_db_default_pool(), &err);
    if (!db)
        return 500;
    waiting_us = now_us();
    if (hp_db_exec(db, "BEGIN IMMEDIATE") != HP_OK) {
        hp_printf(req, "ERR %s", hp_db_error(db));
        hp_db_pool_release(db);
        return 500;
    }
    long long got = now_us();
    hp_db_exec(db, "COMMIT");
    hp_db_pool_release(db);
    for (int i = 0; i < 2000 && !committed_us; i++)
        usleep(1000); /* the holder's page notes its COMMIT */
    hp_printf(req, "%lld", got - committed_us);
    return HP_OK;
}
''', includes="#include <stdlib.h>\n#include <time.h>\n#include <unistd.h>")


def test_sqlite_lock_waiter_wakes_at_the_holders_commit(eng):
    """A request waiting for SQLite's write lock held by another request of
    the same process gets it when the holder commits (docs/database.md,
    "Threads and processes"), not at SQLite's next busy retry (up to
    100 ms later): five rounds of a holder keeping the lock 440 ms after
    a second request began to wait for it; both answer 200 each time, and
    the waiter has the lock within 30 ms of the holder's COMMIT every time
    (with SQLite's own retries, ~88 ms)."""
    if eng.pg:
        raise Skip("SQLite only")
    with db_server(eng, {"l.c": LOCK_PAGES},
                   ONE_PROCESS + ["--db-pool-size", "4"]) as s:
        check_eq(s.get("/l/hold?ms=0").text, "held", "warm-up")
        late = []
        for _ in range(5):
            holder = BackgroundRequest(s.port, "/l/hold?ms=440")
            holder.start()
            time.sleep(0.2)
            r = s.get("/l/wait")
            check_eq(r.status, 200, "the waiter: %s" % short(r.body))
            h = holder.join_result(10)
            check_eq((h.status, h.text), (200, "held"), "the holder")
            late.append(int(r.text) / 1000.0)
        check(max(late) < 30, "the waiter got the lock %s ms after the "
              "holder's COMMIT, want each under 30" % late)


def test_session_state_not_leaked(eng):
    """One connection (one process, a pool of one): what a request sets on
    its session (a setting, search_path, a temporary table; SQLite: a PRAGMA)
    is not there for the next request of another page (docs/database.md,
    "What a request can rely on")."""
    with db_server(eng, {"w.c": WRITER},
                   ONE_PROCESS + ["--db-pool-size", "1"]) as s:
        make_t(s, eng)
        check_eq(s.post("/w/add", "v=one").status, 200, "POST /w/add")
        if eng.pg:
            script(s, "SET TimeZone = 'Asia/Tokyo'")
            check(value(s, "SELECT current_setting('TimeZone')").strip() !=
                  "Asia/Tokyo", "the next request runs in Asia/Tokyo")
            script(s, "SET search_path = pg_catalog")
            r = s.get("/w/count")
            check_eq((r.status, r.text), (200, "1"),
                     "the next request's table t (its schema)")
        else:
            script(s, "PRAGMA cache_size = 7")
            check(value(s, "SELECT cache_size FROM pragma_cache_size")
                  .strip() != "7", "the next request has cache_size 7")
        script(s, "CREATE TEMP TABLE t (v TEXT)")
        r = s.get("/w/count")
        check_eq((r.status, r.text), (200, "1"),
                 "the next request's t (not the temporary one)")
        p = wait_pool_idle(s)
        check_eq((p["size"], p["errors"]), (1, 0), "the pool")
        cleanup(s, eng)


def test_db_off_503(eng):
    if eng.pg:
        raise Skip("engine-independent")
    s = Server(files={"h.c": HOLDER}, args=["--db", "off"])
    with s:
        r = s.get("/h/fast")
        check_eq(r.status, 503, "hp_db(req) without a database")
        check_in("no database is configured", r.text, "body")
        check_eq(pools(s), {}, "pools")


# ---- values --------------------------------------------------------------

ECHO = page(r'''
HP_HANDLER(text)
{
    hp_db *db = hp_db(req);
    const char *v = hp_arg(req, "v");            /* absent: SQL NULL */
    hp_db_res *r = hp_db_query(db, "INSERT INTO x (t) VALUES ($1) RETURNING id", v);
    if (!r || !hp_db_next(r))
        return 500;
    long long id = hp_db_int(r, 0);
    r = hp_db_queryv(db, "SELECT t FROM x WHERE id = $1", HP_INT(id));
    if (!r || !hp_db_next(r))
        return 500;
    hp_set_header(req, "Content-Type", "application/octet-stream");
    if (hp_db_is_null(r, 0))
        hp_puts(req, "NULL");
    else
        hp_printf(req, "[%s]", hp_db_text(r, 0));
    return HP_OK;
}

HP_HANDLER(blob)
{
    size_t len;
    const char *body = hp_body(req, &len);
    hp_db *db = hp_db(req);
    if (hp_db_execv(db, "INSERT INTO x (b) VALUES ($1)", HP_BLOB(body, len)) != HP_OK)
        return 500;
    hp_db_res *r = hp_db_query(db, "SELECT b FROM x ORDER BY id DESC LIMIT 1");
    if (!r || !hp_db_next(r) || hp_db_coltype(r, 0) != HP_DB_BLOB)
        return 500;
    const void *b = hp_db_blob(r, 0, &len);
    hp_set_header(req, "Content-Type", "application/octet-stream");
    hp_write(req, b, len);
    return HP_OK;
}
''')

TRICKY = [
    "it's",
    'say "hi"',
    "'); DROP TABLE x; --",
    "1 OR 1=1",
    "$1 $2 ?1 :name @x",
    "back\\slash",
    "line\nbreak\ttab",
    "h\u00e9llo w\u00f6rld \u2713",
    "",
]


def test_values_round_trip(eng):
    with db_server(eng, {"e.c": ECHO}) as s:
        script(s, "CREATE TABLE x (id %s, t TEXT, b %s)" % (eng.id_col,
                                                             eng.blob))
        for v in TRICKY:
            r = s.post("/e/text", urllib.parse.urlencode({"v": v}))
            check_eq(r.status, 200, "status for %r" % v)
            check_eq(r.body.decode("utf-8"), "[%s]" % v, "round trip")
        r = s.post("/e/text", "")
        check_eq(r.text, "NULL", "no value is NULL, not empty")
        blob = bytes(range(1, 256)) * 4
        r = s.request("/e/blob", "POST", blob,
                      {"Content-Type": "application/octet-stream"})
        check_eq(r.status, 200, "blob status")
        check_eq(r.body, blob, "blob round trip")
        check_eq(value(s, "SELECT count(*) FROM x").strip(),
                 str(len(TRICKY) + 2), "rows")
        cleanup(s, eng)


# ---- an application module's own pool ----------------------------------------

APP = r'''
#include <hotpub.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define VERSION %(version)d

struct app {
    hp_db_pool *pool;
};

HP_INIT
{
    if (previous)
        return previous; /* the pool and its connection live on */
    struct app *a = calloc(1, sizeof *a);
    char *err = NULL;
    a->pool = hp_db_pool_open("%(url)s",
                              &(struct hp_db_pool_opts){.name = "apppool",
                                                        .max_conns = 1},
                              &err);
    if (!a->pool) {
        hp_module_error(m, "%%s", err);
        free(err);
        free(a);
        return NULL;
    }
    return a;
}

HP_FINI
{
    struct app *a = state;
    if (!handed_over && a) {
        hp_db_pool_close(a->pool);
        free(a);
    }
}

/* An identity for the connection: PostgreSQL's backend pid, or the
 * handle's address on SQLite (a temporary table would not do: the pool
 * resets a connection whose request created one, by opening it anew in the
 * same handle). */
static const char *conn_id(hp_req *req, hp_db *db)
{
    if (hp_db_engine(db) == HP_DB_POSTGRESQL) {
        hp_db_res *r = hp_db_query(db, "SELECT pg_backend_pid()::text");
        return r && hp_db_next(r) ? hp_strdup(req, hp_db_text(r, 0)) : "?";
    }
    return hp_sprintf(req, "%%lu", (unsigned long)(uintptr_t)db);
}

HP_HANDLER(ident)
{
    struct app *a = hp_module_state(req);
    struct hp_db_pool_stats st;
    hp_db *db = hp_db_from(req, a->pool);
    if (!db)
        return 503;
    const char *id = conn_id(req, db);
    hp_db_pool_stats(a->pool, &st);
    hp_printf(req, "v=%%d pid=%%d pool=%%p conn=%%s connects=%%llu", VERSION,
              (int)getpid(), (void *)a->pool, id, st.connects);
    return HP_OK;
}
'''


def parse_kv(text):
    return dict(p.split("=", 1) for p in text.split())


def test_app_pool_survives_20_reloads(eng):
    """Each worker process has its own copy of the application module and so
    its own pool: the identity is checked per process."""
    s = Server(files={"p.c": page('HP_HANDLER(http_handler) { return HP_OK; }'),
                      "admin.c": ADMIN}, start=False)
    url = eng.url(s)
    s.args += ["--db", url]

    def app(n):
        return APP % {"version": n, "url": url.replace("\\", "\\\\")
                      .replace('"', '\\"')}

    seen = {}  # pid -> the first answer from that process

    def answer():
        r = s.get("/p/ident")
        return parse_kv(r.text) if r.status == 200 else {}

    def check_same(n):
        now = answer()
        check_eq(now.get("v"), str(n), "version answering")
        first = seen.setdefault(now["pid"], now)
        for k in ("pool", "conn"):
            check_eq(now[k], first[k], "%s in process %s after reload %d"
                     % (k, now["pid"], n))
        check_eq(now["connects"], "1", "connects after reload %d" % n)

    s.write("_app.c", app(0))
    with s:
        s.start()
        if eng.pg:
            script(s, "CREATE SCHEMA IF NOT EXISTS %s" % eng.schema)
        for _ in range(8):  # reach every worker, most likely
            check_same(0)
        for n in range(1, 21):
            s.write("_app.c", app(n))
            wait_until(lambda n=n: answer().get("v") == str(n),
                       15 * SLACK) or fail("version %d of _app.c never "
                                           "answered" % n)
            for _ in range(4):
                check_same(n)
        p = pools(s).get("apppool")
        check(p is not None and p["connects"] == 1 and p["in_use"] == 0,
              "apppool in status: %r" % p)
        s.stop()
        closed = s.stderr().count(
            "database pool apppool closed (1 connections closed)")
        check(closed >= len(seen), "apppool closed %d times at shutdown, by "
              "%d processes" % (closed, len(seen)))
    if eng.pg:
        # the backends are gone once the server is
        with db_server(eng) as t:
            pids = ",".join(v["conn"] for v in seen.values())
            gone = wait_until(lambda: value(
                t, "SELECT count(*) FROM pg_stat_activity WHERE pid IN (%s)"
                % pids).strip() == "0", 5)
            check(gone, "backends %s still connected after shutdown" % pids)
            cleanup(t, eng)


# ---- the bundled notes example ------------------------------------------------

def test_notes_example(eng):
    src = os.path.join(ROOT, "examples")
    s = Server(start=False)
    shutil.rmtree(s.root)
    shutil.copytree(src, s.root, symlinks=True)
    s.write("admin.c", ADMIN)
    s.args += ["--db", eng.url(s)]
    with s:
        s.start()
        if eng.pg:
            script(s, "CREATE SCHEMA IF NOT EXISTS %s" % eng.schema)
        r = s.get_ok("/notes/")
        check_in("No notes yet", r.text, "/notes/")
        note = "<b>bold</b> & 'quotes' \"too\"; DROP TABLE notes; --"
        r = s.post("/notes/add", urllib.parse.urlencode({"body": note}))
        check_eq((r.status, r.header("Location")), (303, "/notes/"),
                 "POST /notes/add")
        s.post("/notes/add", "body=second")
        page_html = s.get_ok("/notes/").text
        check_in("&lt;b&gt;bold&lt;/b&gt; &amp; &#39;quotes&#39;", page_html,
                 "the note, HTML-escaped")
        data = json.loads(s.get_ok("/notes/json").text)
        bodies = [n["body"] for n in data["notes"]]
        check_eq(bodies, ["second", note], "/notes/json")
        first_id = data["notes"][1]["id"]
        r = s.post("/notes/delete", "id=%d" % first_id)
        check_eq(r.status, 303, "POST /notes/delete")
        data = json.loads(s.get_ok("/notes/json").text)
        check_eq([n["body"] for n in data["notes"]], ["second"], "after delete")
        check_eq(s.post("/notes/delete", "id=%d" % first_id).status, 404,
                 "deleting it again")
        check_eq(s.post("/notes/add", "body=").status, 400, "an empty note")
        check_eq(s.post("/notes/add", "body=" + "x" * 1001).status, 400,
                 "a long note")
        check_eq(s.get("/notes/add?body=x").status, 405, "GET /notes/add")
        wait_pool_idle(s)
        cleanup(s, eng)


def test_default_database_location(eng):
    if eng.pg:
        raise Skip("SQLite only")
    s = Server(files={"w.c": WRITER, "admin.c": ADMIN}, start=False)
    data = os.path.join(s.tmp, "data")
    s.extra_env = {"XDG_DATA_HOME": data, "HOME": s.tmp}
    with s:
        s.start()
        check(not os.path.exists(os.path.join(data, "hotpub")),
              "the default database must be created on first use only")
        make_t(s, eng)
        check_eq(s.post("/w/add", "v=x").status, 200, "insert")
        files = os.listdir(os.path.join(data, "hotpub"))
        dbs = [f for f in files if f.endswith(".db")]
        check(len(dbs) == 1 and dbs[0].startswith("root-"),
              "default database files: %r" % files)
        p = pools(s)["default"]
        check_eq(p["url"], "sqlite:" + os.path.join(data, "hotpub", dbs[0]),
                 "status url")
        check_eq(p["engine"], "sqlite", "engine")
        check_eq(value(s, "PRAGMA journal_mode").strip(), "wal", "journal")
        check_eq(value(s, "PRAGMA foreign_keys").strip(), "1", "foreign keys")


# ---- the SQLite file deleted under a running server ------------------------

# Each write makes its table first: a database file opened anew is empty.
ANEW = page(r"""
HP_HANDLER(add)
{
    hp_db *db = hp_db(req);
    if (!db)
        return 503;
    if (hp_db_exec_script(db, "CREATE TABLE IF NOT EXISTS t (v TEXT)") != HP_OK ||
        hp_db_exec(db, "INSERT INTO t (v) VALUES ($1)", hp_arg(req, "v")) != HP_OK)
        return 500;
    hp_printf(req, "added %s", hp_arg(req, "v"));
    return HP_OK;
}
""")


class Writer(threading.Thread):
    """POSTs /a/add v=load-K-N in a loop until stopped; keeps the
    statuses."""

    def __init__(self, s, k):
        super().__init__(daemon=True)
        self.s, self.k, self.statuses = s, k, []
        self.stop = threading.Event()

    def run(self):
        n = 0
        while not self.stop.is_set():
            r = self.s.post("/a/add", "v=load-%d-%d" % (self.k, n))
            self.statuses.append(r.status)
            n += 1


def file_rows(path):
    """The rows of t in the SQLite file at path, read directly."""
    c = sqlite3.connect(path, timeout=5)
    try:
        return sorted(r[0] for r in c.execute("SELECT v FROM t"))
    finally:
        c.close()


def delete_dir(d):
    """Delete d as an operator would; renamed first so that the server,
    recreating it meanwhile, cannot make rmtree fail."""
    gone = d + ".deleted"
    os.rename(d, gone)
    shutil.rmtree(gone)


def test_sqlite_dir_deleted_under_load_reopens(eng):
    if eng.pg:
        raise Skip("SQLite only")
    s = Server(files={"a.c": ANEW}, start=False, args=ONE_PROCESS)
    data = os.path.join(s.tmp, "data")
    s.extra_env = {"XDG_DATA_HOME": data, "HOME": s.tmp}
    with s:
        s.start()
        for i in range(3):
            check_eq(s.post("/a/add", "v=before-%d" % i).status, 200,
                     "write before")
        d = os.path.join(data, "hotpub")
        path = os.path.join(d, [f for f in os.listdir(d)
                                if f.endswith(".db")][0])
        writers = [Writer(s, k) for k in range(3)]  # several connections
        for w in writers:
            w.start()
        time.sleep(0.3)
        delete_dir(d)
        time.sleep(0.5)
        for w in writers:
            w.stop.set()
        for w in writers:
            w.join(10)
        statuses = [st for w in writers for st in w.statuses]
        r = s.post("/a/add", "v=after")
        check_eq((r.status, r.text), (200, "added after"), "write after")
        check(os.path.exists(path), "the database file was not created again")
        got = file_rows(path)
        check_in("after", got, "rows of the new file")
        check(not [v for v in got if v.startswith("before")],
              "the new file has the old rows: %s" % got[:5])
        bad = [st for st in statuses if st not in (200, 503)]
        check(statuses and not bad, "statuses under load: %s" % bad[:10])
        err = s.stderr()
        check_eq(err.count("was deleted"), 1, "'was deleted' log lines")
        check_in("opening it anew", err, "server log")
        check_in("opened anew after it was lost", err, "server log")


def test_pool_exhausted_503_production_body_is_plain(eng):
    """docs/database.md: in production the 503 of a request that got no
    connection has the plain body, like the other production error pages;
    the acquire timeout is in the log only (dev mode shows it, see
    pool_exhausted_503_then_recovers)."""
    with db_server(eng, {"h.c": HOLDER},
                   ONE_PROCESS + ["--db-pool-size", "1",
                                  "--db-acquire-timeout", "300"],
                   dev=False) as s:
        check_eq(s.get("/h/fast").status, 200, "warm-up")
        holder = BackgroundRequest(s.port, "/h/hold")
        holder.start()
        wait_until(lambda: pools(s)["default"]["in_use"] == 1, 5) or \
            fail("the holder never took the connection")
        r = s.get("/h/fast")
        check_eq((r.status, r.text), (503, "503 Service Unavailable\n"),
                 "the production 503")
        check_eq(r.header("Retry-After"), "1", "Retry-After")
        check(wait_until(lambda: "300 ms" in s.stderr(), 2.0 * SLACK),
              "the log does not name the acquire timeout")
        check_eq(holder.join_result(15).status, 200, "the holder's status")


def test_sqlite_named_dir_deleted_503(eng):
    if eng.pg:
        raise Skip("SQLite only")
    s = Server(files={"a.c": ANEW}, start=False, args=ONE_PROCESS)
    d = os.path.join(s.tmp, "dbdir")
    os.makedirs(d)
    path = os.path.join(d, "app.db")
    s.args += ["--db", "sqlite:" + path]
    with s:
        s.start()
        check_eq(s.post("/a/add", "v=before").status, 200, "write before")
        delete_dir(d)
        time.sleep(0.2)  # a connection's file is checked every 100 ms
        r = s.post("/a/add", "v=lost")
        check_eq(r.status, 503, "write after the directory was deleted")
        check_in("database unavailable", r.text, "503 body")
        err = s.stderr()
        check_in("was deleted", err, "server log")
        check_in("lost and cannot be opened anew", err, "server log")
        os.makedirs(d)  # back: a new, empty file
        r = s.post("/a/add", "v=back")
        check_eq(r.status, 200, "write once the directory is back")
        check_eq(file_rows(path), ["back"], "rows of the new file")


def test_sqlite_concurrent_first_open_quiet(eng):
    if eng.pg:
        raise Skip("SQLite only")
    # Every worker opens the named database at start, at the same moment;
    # a few rounds, each on a new file.
    for i in range(6):
        s = Server(files={"a.c": ANEW}, start=False, workers=4)
        path = os.path.join(s.tmp, "new.db")
        s.args += ["--db", "sqlite:" + path]
        with s:
            s.start()
            check_eq(s.post("/a/add", "v=x").status, 200, "a write")
            time.sleep(0.3)  # every worker has opened it by now
            err = s.stderr()
            check("database is locked" not in err,
                  "round %d: server log: %s" % (i, short(err, 600)))
            check("cannot connect" not in err,
                  "round %d: server log: %s" % (i, short(err, 600)))
            check_eq(value_direct(path), "wal", "journal mode")


def value_direct(path):
    c = sqlite3.connect(path, timeout=5)
    try:
        return c.execute("PRAGMA journal_mode").fetchone()[0]
    finally:
        c.close()


# ---- PostgreSQL restarted under a running server ------------------------------

def pg_ctl_runner(datadir):
    """(argv prefix to run pg_ctl as the data directory's owner, pg_ctl
    path, postgres options) or raise Skip."""
    try:
        opts = open(os.path.join(datadir, "postmaster.opts")).read()
        st = os.stat(datadir)
    except OSError as e:
        raise Skip("cannot read the PostgreSQL data directory: %s" % e)
    argv = shlex.split(opts)
    pg_ctl = os.path.join(os.path.dirname(argv[0]), "pg_ctl")
    rest, skip = [], False
    for a in argv[1:]:
        if skip:
            skip = False
        elif a == "-D":
            skip = True
        else:
            rest.append(a)
    if os.getuid() == st.st_uid:
        prefix = []
    elif os.getuid() == 0 and shutil.which("runuser"):
        prefix = ["runuser", "-u", pwd.getpwuid(st.st_uid).pw_name, "--"]
    else:
        raise Skip("not the owner of %s and not root" % datadir)
    return prefix, pg_ctl, " ".join(shlex.quote(a) for a in rest)


def pg_ctl(prefix, path, *args):
    p = subprocess.run(prefix + [path] + list(args), stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       timeout=60, universal_newlines=True)
    if p.returncode != 0:
        fail("pg_ctl %s: %s" % (" ".join(args), p.stderr.strip()))


def test_pg_restart_recovers(eng):
    if not eng.pg:
        raise Skip("PostgreSQL only")
    with db_server(eng, {"w.c": WRITER},
                   ONE_PROCESS + ["--db-acquire-timeout", "2000"]) as s:
        make_t(s, eng)
        datadir = value(s, "SHOW data_directory").strip()
        prefix, ctl, opts = pg_ctl_runner(datadir)
        log = os.path.join(datadir, "hotpub-e2e.log")
        for i in range(6):  # several idle connections in the pool
            check_eq(s.post("/w/add", "v=a%d" % i).status, 200, "before")

        # 1. pg_ctl restart: idle connections die; the pool notices
        pg_ctl(prefix, ctl, "-D", datadir, "-m", "fast", "-w", "restart")
        # the checkout probe sees the dead idle connections: no request
        # has to fail for the pool to find out
        r = s.get("/w/count")
        check_eq((r.status, r.text), (200, "6"), "first request after the "
                 "restart")

        # 2. an outage: every request fails with a 5xx, quickly
        stopped = True
        pg_ctl(prefix, ctl, "-D", datadir, "-m", "fast", "-w", "stop")
        try:
            for path, body in (("/w/count", None), ("/w/add", "v=lost")):
                t0 = time.monotonic()
                r = s.request(path, "POST" if body else "GET", body,
                              {"Content-Type":
                               "application/x-www-form-urlencoded"},
                              timeout=20)
                took = time.monotonic() - t0
                check(r.status >= 500, "%s during the outage: %s %s"
                      % (path, r.status, short(r.body)))
                check(took < 10, "%s took %.1f s during the outage"
                      % (path, took))
            check(s.alive(), "server died during the outage")
        finally:
            pg_ctl(prefix, ctl, "-D", datadir, "-w", "-l", log, "-o", opts,
                   "start")
            stopped = False
        check(not stopped, "PostgreSQL did not start again")
        s.wait_for("/w/count", lambda r: r.status == 200,
                   lambda r: r.status >= 500, 15, "recovery after the outage")
        check_eq(s.post("/w/add", "v=after").status, 200, "insert after")
        check_eq(s.get("/w/count").text, "7", "rows after the outage")
        p = wait_pool_idle(s)
        check(p["discarded"] >= 1, "discarded %r" % p)
        cleanup(s, eng)


# ---- what the text tests must read as the engine does (fresh8) ----------

# One process, one connection: the next request gets the connection the
# previous one used, so whatever its session kept is seen.
ONE_CONN = ["--workers", "1", "--db-pool-size", "1"]

# A page that runs statements or a script, then fails the request (500):
# nothing it did may be committed.
TX_THEN_FAIL = page(r'''
#include <string.h>
HP_HANDLER(then_fail)
{
    hp_db *db = hp_db(req);
    const char *mode = hp_arg(req, "mode");
    int n = hp_arg_count(req, "q");
    for (int i = 0; i < n; i++) {
        const char *q = hp_arg_n(req, "q", i);
        int rc = mode && strcmp(mode, "script") == 0 ? hp_db_exec_script(db, q)
                                                     : hp_db_exec(db, q);
        hp_printf(req, "%d:%s ", rc, rc ? hp_db_sqlstate(db) : "ok");
    }
    return 500;
}
''')


def post_form(s, path, **fields):
    pairs = []
    for k, v in fields.items():
        for x in (v if isinstance(v, list) else [v]):
            pairs.append((k, x))
    return s.post(path, urllib.parse.urlencode(pairs))


# (engines, mode, statements): each inserts a row, then hides a COMMIT
# from a text test that lexes the SQL wrongly.
HIDDEN_COMMITS = [
    ("both", "script", "INSERT INTO f8t VALUES (1); SELECT 1 AS begin; COMMIT"),
    ("both", "script", "INSERT INTO f8t VALUES (1); SELECT CASE WHEN 1 = 1 "
                       "THEN 2 END AS begin; COMMIT"),
    ("pg", "script", "INSERT INTO f8t VALUES (1); SELECT E'\\''; COMMIT; "
                     "SELECT 'x'"),
    ("pg", "exec", ["INSERT INTO f8t VALUES (1)",
                    "/* /* */ SELECT */ COMMIT"]),
    ("pg", "script", "INSERT INTO f8t VALUES (1); SELECT $a$ ' $a$; COMMIT"),
    ("sqlite", "script", "INSERT INTO f8t VALUES (1); SELECT 1 AS [begin]; "
                         "COMMIT"),
    ("sqlite", "script", "INSERT INTO f8t VALUES (1); CREATE TRIGGER begin "
                         "AFTER INSERT ON f8t BEGIN SELECT 1; END; END"),
]


def test_commit_hidden_from_the_screen_is_refused(eng):
    """FRESH8-1. The screen of transaction control (db.c tx_control) read a
    column named begin as a BEGIN ... END block, ended E'\\'' at its
    escaped quote and a nested comment at its first close: the COMMIT after
    them committed the request's transaction half-way although the request
    then answered 500. Now it lexes the SQL as the engine does (db_lex.c)
    and counts BEGIN as a block only in a trigger (SQLite) or BEGIN ATOMIC
    (PostgreSQL); on SQLite the authorizer refuses what is left (the
    trigger named begin)."""
    bad = []
    with db_server(eng, {"tx.c": TX_THEN_FAIL}, ONE_CONN) as s:
        script(s, "CREATE TABLE f8t (x INTEGER)")
        for engines, mode, stmts in HIDDEN_COMMITS:
            if engines not in ("both", eng.name):
                continue
            r = post_form(s, "/tx/then_fail", mode=mode, q=stmts)
            check_eq(r.status, 500, "%r: the request's status" % (stmts,))
            n = value(s, "SELECT count(*) FROM f8t").strip()
            if n != "0" or "25001" not in r.text:
                bad.append("%r: %s row(s) committed, the page saw %r"
                           % (stmts, n, short(r.text)))
        cleanup(s, eng)
    check_eq(bad, [], "COMMITs not refused")


# (what, statement run by request 1, probe run by request 2, clean answer)
SESSION_LEAKS = [
    ("SET after a nested comment",
     "/* /* */ x */ SET search_path = f8_leaked",
     "SELECT CAST(position('f8_leaked' in current_setting('search_path')) > 0"
     " AS INTEGER)", "0"),
    ("SET in dynamic SQL built by format()",
     "DO $$ BEGIN EXECUTE format('SET search_path = %I', 'f8_fmt'); END $$",
     "SELECT CAST(position('f8_fmt' in current_setting('search_path')) > 0"
     " AS INTEGER)", "0"),
    ("set_config spelt with a Unicode-escaped identifier",
     "SELECT U&\"set\\005fconfig\"('f8.user', 'admin', false)",
     "SELECT coalesce(current_setting('f8.user', true), '')", ""),
    ("set_config whose third argument hides in an escape string",
     "SELECT set_config('f8.user2', E'admin\\', true)', false)",
     "SELECT coalesce(current_setting('f8.user2', true), '')", ""),
    ("a session advisory lock spelt with a Unicode escape",
     "SELECT U&\"pg_adv\\0069sory_lock\"(80808)",
     "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
     " AND pid = pg_backend_pid()", "0"),
    ("a temporary table in U&\"pg_t\\0065mp\"",
     "CREATE TABLE U&\"pg_t\\0065mp\".f8_tmp (x int)",
     "SELECT count(*) FROM pg_class WHERE relname = 'f8_tmp'", "0"),
]


def test_pg_session_changes_hidden_in_the_text_do_not_leak(eng):
    """FRESH8-2. hp_db__changes_session (db_stmt.c) decides from a
    statement's text whether its connection needs DISCARD ALL when it goes
    back; each statement here changes the session in a way the old word
    test did not read (a nested comment, DO, Unicode escapes, an escape
    string), and the next request, on the same pooled connection, saw the
    change."""
    if not eng.pg:
        raise Skip("PostgreSQL's lexical rules")
    leaked = []
    with db_server(eng, {}, ONE_CONN) as s:
        for what, change, probe, clean in SESSION_LEAKS:
            r = post_form(s, "/admin/value", q=change)
            check_eq(r.status, 200, "%s: %s" % (what, short(r.body)))
            got = value(s, probe).strip()
            if got != clean:
                leaked.append("%s: next request saw %r" % (what, got))
        cleanup(s, eng)
    check_eq(leaked, [], "session state leaked to the next request")


def test_pg_lastval_is_the_connections_documented_limit(eng):
    """FRESH8-2b, a documented limit (docs/database.md, "What a request can
    rely on"): nextval() (a serial column's default) sets the session's
    lastval()/currval(), and no word of the INSERT says so, so a pooled
    connection is not reset for it: a request that calls lastval() before
    any nextval() of its own reads the previous request's value. The
    documented way, INSERT ... RETURNING, gives the request its own id.
    Should hotpub
    ever clear sequence state between requests, update the docs and the
    last check."""
    if not eng.pg:
        raise Skip("PostgreSQL's sequences")
    with db_server(eng, {}, ONE_CONN) as s:
        script(s, "CREATE TABLE f8ids (id SERIAL PRIMARY KEY, v TEXT)")
        r = post_form(s, "/admin/value",
                      q="INSERT INTO f8ids (v) VALUES ('a') RETURNING id")
        check_eq((r.status, r.text.strip()), (200, "1"), "RETURNING")
        r = post_form(s, "/admin/script",
                      q="INSERT INTO f8ids (v) VALUES ('b')")
        check_eq(r.status, 200, "insert: %s" % short(r.body))
        r = s.get("/admin/value?q=SELECT+lastval()")
        check_eq((r.status, r.text.strip()), (200, "2"),
                 "the documented limit: the next request's lastval()")
        cleanup(s, eng)


COPY_PAGE = page(r'''
#include <string.h>
HP_HANDLER(copy)
{
    hp_db *db = hp_db(req);
    const char *mode = hp_arg(req, "mode"), *q = hp_arg(req, "q");
    int rc;
    if (strcmp(mode, "query") == 0)
        rc = hp_db_query(db, q) ? 0 : -1;
    else if (strcmp(mode, "many") == 0)
        rc = hp_db_exec_many(db, q, 2, 0, NULL);
    else if (strcmp(mode, "script") == 0)
        rc = hp_db_exec_script(db, q);
    else
        rc = hp_db_exec(db, q);
    hp_printf(req, "%d %s %s", rc, rc ? hp_db_sqlstate(db) : "",
              rc ? hp_db_error(db) : "");
    return rc ? 500 : HP_OK;
}
''')


def test_copy_fails_at_once_and_the_connection_comes_back(eng):
    """FRESH8-6. COPY ... TO STDOUT / FROM STDIN through hp_db_query,
    hp_db_exec, hp_db_exec_many or hp_db_exec_script spun its thread at
    100% forever on PostgreSQL (pipe_sync kept getting a COPY result) and
    held the pool's only connection; a script's COPY logged
    "[SQLSTATE 08006]" with no message. Now each fails at once (0A000,
    "COPY ... is not supported through hp_db"), the connection is dropped,
    and the next request gets a new one. On SQLite COPY is a syntax
    error."""
    args = ONE_CONN + ["--db-acquire-timeout", "2000"]
    with db_server(eng, {"c.c": COPY_PAGE}, args) as s:
        script(s, "CREATE TABLE f8c (x INTEGER)")
        for mode, sql, method in itertools.product(
                ("exec", "query", "many", "script"),
                ("COPY f8c TO STDOUT", "COPY f8c FROM STDIN"),
                ("GET", "POST")):  # a read on its own; the transaction's
            q = ("SELECT 1; " + sql) if mode == "script" else sql
            what = "%s %s (%s)" % (mode, sql, method)
            try:
                r = s.request("/c/copy?" + urllib.parse.urlencode(
                    {"mode": mode, "q": q}), method, "", timeout=15)
            except OSError as e:
                fail("%s: no answer within 15 s (%r)" % (what, e))
            check_eq(r.status, 500, "%s: %s" % (what, short(r.body)))
            if eng.pg:
                check_in("0A000 COPY ... is not supported", r.text, what)
            check_eq(value(s, "SELECT 7").strip(), "7",
                     "the next request after %s" % what)
        check("[SQLSTATE 08006]" not in s.stderr(),
              "a COPY logged 08006: %s" % short(s.stderr(), 1500))
        cleanup(s, eng)


RUN_TWO = page(r"""
HP_HANDLER(two)
{
    hp_db *db = hp_db(req);
    hp_db_exec(db, "SELECT * FROM f8_missing_table");
    hp_db_exec(db, "SELECT 1"); /* refused: 25P02 */
    return HP_OK;
}
""")


def test_rollback_line_names_the_first_failure(eng):
    """FRESH8-7. A request whose statement failed and which ran one more
    (refused, 25P02) logged the refusal as the reason for the rollback
    ('current transaction is aborted ...'), not the failure (no such table
    f8_missing_table), which the operator then had to look for above."""
    with db_server(eng, {"r.c": RUN_TWO}, ONE_CONN) as s:
        check_eq(s.post("/r/two", "").status, 500, "status")
        check(wait_until(lambda: "rolling it back" in s.stderr(), 5),
              "no rollback line: %s" % short(s.stderr(), 1500))
        line = [l for l in s.stderr().split("\n") if "rolling it back" in l]
        check("f8_missing_table" in line[-1] and
              "current transaction is aborted" not in line[-1],
              "the rollback line: %s" % line[-1])
        cleanup(s, eng)


def run_then_fail(s, mode, stmts):
    """Run stmts on a request that then answers 500; (the page's text,
    rows committed in f9t)."""
    r = post_form(s, "/tx/then_fail", mode=mode, q=stmts)
    check_eq(r.status, 500, "%r: the request's status" % (stmts,))
    return r.text, value(s, "SELECT count(*) FROM f9t").strip()


def test_pg_end_after_begin_atomic_spelt_in_a_select_is_refused(eng):
    """FRESH9-1. db.c's tx_scan counts "begin atomic" as a block wherever
    the two words follow each other in a CREATE FUNCTION, also a column
    named begin aliased atomic (both unreserved in PostgreSQL) inside the
    body: the depth is one too many, so the script's last END (a COMMIT)
    is taken as the block's close and runs: the INSERT before it is
    committed although the request answers 500."""
    if not eng.pg:
        raise Skip("PostgreSQL's BEGIN ATOMIC")
    with db_server(eng, {"tx.c": TX_THEN_FAIL}, ONE_CONN) as s:
        value(s, "CREATE TABLE f9t (x INTEGER)")
        text, n = run_then_fail(
            s, "script",
            "INSERT INTO f9t VALUES (1); CREATE FUNCTION f9a() RETURNS int "
            "LANGUAGE sql BEGIN ATOMIC SELECT begin atomic FROM "
            "(SELECT 1 AS begin) s; END; END")
        check_eq((n, "25001" in text), ("0", True),
                 "rows committed, 25001 (page said %r)" % short(text))
        cleanup(s, eng)


def test_sqlite_trigger_using_a_column_named_end_is_not_refused(eng):
    """FRESH9-2. SQLite takes END as a column name (CREATE TABLE
    bookings (begin, end) works). tx_scan_word closes the trigger's block
    at that column's END, so the trigger's own closing END reads as a
    transaction END: the legitimate CREATE TRIGGER is refused with 25001.
    The same trigger with a column named begin passes."""
    if eng.pg:
        raise Skip("SQLite's trigger bodies")
    with db_server(eng, {"tx.c": TX_THEN_FAIL}, ONE_CONN) as s:
        value(s, "CREATE TABLE f9t (x INTEGER)")
        text, _ = run_then_fail(
            s, "script",
            "CREATE TABLE f9log (end INTEGER); CREATE TRIGGER f9tr AFTER "
            "INSERT ON f9t BEGIN INSERT INTO f9log (end) VALUES (new.x); "
            "END; INSERT INTO f9t VALUES (1)")
        check_eq(text.strip(), "0:ok", "the script's result")
        cleanup(s, eng)


def test_pg_end_after_a_table_named_procedure_is_refused(eng):
    """FRESH15-5. tx_scan took any CREATE whose first four words held
    procedure or function for a routine, and begin atomic anywhere in it
    (here a column begin of a domain atomic) for its body: the END after
    it was read as the body's close and ran, committing the INSERT before
    it although the request answers 500."""
    if not eng.pg:
        raise Skip("PostgreSQL's BEGIN ATOMIC")
    with db_server(eng, {"tx.c": TX_THEN_FAIL}, ONE_CONN) as s:
        script(s, "CREATE TABLE f9t (x INTEGER); CREATE DOMAIN atomic AS int")
        text, n = run_then_fail(
            s, "script",
            "INSERT INTO f9t VALUES (1); "
            "CREATE TEMP TABLE procedure (begin atomic); END")
        check_eq((n, "25001" in text), ("0", True),
                 "rows committed, 25001 (page said %r)" % short(text))
        cleanup(s, eng)


def test_sqlite_trigger_whose_when_names_a_column_begin_is_not_refused(eng):
    """FRESH15-4. tx_scan opened the trigger's body at the first begin,
    new.begin in its WHEN clause, and then read the real BEGIN as a
    statement's first word: the legitimate CREATE TRIGGER was refused with
    25001."""
    if eng.pg:
        raise Skip("SQLite's trigger bodies")
    with db_server(eng, {"tx.c": TX_THEN_FAIL}, ONE_CONN) as s:
        value(s, "CREATE TABLE f9t (x INTEGER)")
        text, _ = run_then_fail(
            s, "script",
            "CREATE TABLE f15x (a INTEGER, begin INTEGER); CREATE TRIGGER "
            "f15tr AFTER INSERT ON f15x WHEN new.begin > 0 BEGIN INSERT "
            "INTO f9t VALUES (new.a); END; INSERT INTO f15x VALUES (1, 1)")
        check_eq(text.strip(), "0:ok", "the script's result")
        cleanup(s, eng)


def test_rollback_to_with_a_comment_before_to_is_not_refused(eng):
    """FRESH9-3. is_rollback_to (db.c) reads ROLLBACK TO word by word
    with blanks only: a comment between ROLLBACK and TO (which both engines
    skip) makes it a plain ROLLBACK, refused with 25001; after a failure the
    same ROLLBACK TO is refused with 25P02 and cannot undo the failure."""
    with db_server(eng, {"tx.c": TX_THEN_FAIL}, ONE_CONN) as s:
        value(s, "CREATE TABLE f9t (x INTEGER)")
        text, _ = run_then_fail(
            s, "script",
            "SAVEPOINT a; INSERT INTO f9t VALUES (1); "
            "ROLLBACK /* undo the insert */ TO SAVEPOINT a")
        check_eq(text.strip(), "0:ok", "the script's result")
        cleanup(s, eng)


def test_pg_set_of_a_custom_setting_named_local_dot_x_is_reset(eng):
    """FRESH9-4. db_stmt.c's session test takes SET followed by LOCAL,
    TRANSACTION or CONSTRAINTS as scoped to the transaction, without
    looking at what follows the word: SET local.f9 = 'leak' (a custom
    setting whose prefix is local, as transaction.x or constraints.x) is a
    session SET, and the next request on the pooled connection sees it."""
    if not eng.pg:
        raise Skip("PostgreSQL's custom settings")
    leaked = []
    with db_server(eng, {}, ONE_CONN) as s:
        for prefix in ("local", "transaction", "constraints"):
            r = post_form(s, "/admin/value",
                          q="SET %s.f9 = 'leak'" % prefix)
            check_eq(r.status, 200, "SET %s.f9: %s" % (prefix, short(r.body)))
            got = value(s, "SELECT coalesce(current_setting('%s.f9', true),"
                           " '')" % prefix).strip()
            if got:
                leaked.append("%s.f9: next request saw %r" % (prefix, got))
        cleanup(s, eng)
    check_eq(leaked, [], "session settings leaked to the next request")


# Every test runs once per engine; the PostgreSQL runs print "skip" without
# HOTPUB_PG_URL.
ENGINES = [
    harness.Param("sqlite", lambda: Engine("sqlite")),
    harness.Param("pg", lambda: Engine("pg"),
                  skip=None if PG_URL else "no HOTPUB_PG_URL"),
]

if __name__ == "__main__":
    sys.exit(harness.run_suite(globals(), sys.argv[1:],
                               suite_budget=SUITE_BUDGET,
                               test_timeout=TEST_TIMEOUT, params=ENGINES,
                               list_full_names=False, verbose_total=False))
