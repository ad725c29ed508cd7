#!/usr/bin/env python3
"""fresh8: regression tests for defects found by a fresh user's and an
attacker's tests of the last session's changes (database batches and
transaction rules, pooled session resets, hostile page constructors;
its placement tests, FRESH8-4, are in sched.py). Each test names the
defect it pins; on the code they were written against (4333a6d) every one
of them FAILS.

    HOTPUB_BIN=/abs/path/hotpub [HOTPUB_PG_URL=postgresql://...] \\
        python3 tests/e2e/fresh8.py [NAME-SUBSTRING...]

The database tests run on SQLite and, with HOTPUB_PG_URL, on PostgreSQL
(as tests/e2e/db.py: a fresh schema per test); "_pg" tests skip without it.
"""

import os
import sys
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import (SLACK, Server, Skip, check, check_eq,  # noqa: E402
                     fail, limit, page, short, simple_page, wait_until)
import db as D  # noqa: E402  (its Engine, db_server, helpers)
import workers as W  # noqa: E402  (its first-load harness)

TEST_TIMEOUT = 120.0
SUITE_BUDGET = 600.0
# One process, one connection: the next request gets the connection the
# previous one used, so whatever its session kept is seen.
ONE_CONN = ["--workers", "1", "--db-pool-size", "1"]

# A page that runs a statement or a script, then fails the request (500):
# nothing it did may be committed.
TX = page(r'''
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


def engines():
    yield D.Engine("sqlite")
    if D.PG_URL:
        yield D.Engine("pg")


def pg_engine():
    if not D.PG_URL:
        raise Skip("no HOTPUB_PG_URL")
    return D.Engine("pg")


def post(s, path, **fields):
    pairs = []
    for k, v in fields.items():
        for x in (v if isinstance(v, list) else [v]):
            pairs.append((k, x))
    return s.post(path, urllib.parse.urlencode(pairs))


def one_value(s, sql):
    r = s.get("/admin/value?" + urllib.parse.urlencode({"q": sql}))
    if r.status != 200:
        fail("SQL %r: %s %s" % (sql, r.status, short(r.body)))
    return r.text.strip()


# ---- 1. transaction control slips past the 25001 screen ---------------------

def _commit_in_request_is_refused(eng, case, mode, stmts):
    """'' when nothing was committed, else what went wrong."""
    with D.db_server(eng, {"tx.c": TX}, ONE_CONN) as s:
        D.script(s, "CREATE TABLE f8t (x INTEGER)")
        r = post(s, "/tx/then_fail", mode=mode, q=stmts)
        check_eq(r.status, 500, "%s: the request's status" % case)
        n = one_value(s, "SELECT count(*) FROM f8t")
    if n == "0":
        return ""
    return ("%s [%s]: %s row(s) committed by a request that failed (its "
            "COMMIT was not refused with 25001; the page saw %r)"
            % (case, eng.name, n, short(r.body)))


def test_script_commit_after_a_column_named_begin_is_refused():
    """FRESH8-1 (both engines). tx_control() (db.c) counts a word `begin`
    that is not a statement's first word as the opening of a BEGIN ... END
    block, so every ';' after it is "inside the block" and a COMMIT there is
    not seen: `INSERT ...; SELECT 1 AS begin; COMMIT` commits the request's
    transaction half-way although the request then answers 500."""
    bad = [_commit_in_request_is_refused(
        eng, "script with 'AS begin'", "script",
        "INSERT INTO f8t VALUES (1); SELECT 1 AS begin; COMMIT")
        for eng in engines()]
    check_eq([b for b in bad if b], [], "committed")


def test_pg_script_commit_after_an_escape_string_is_refused():
    """FRESH8-1 (PostgreSQL): skip_quoted() ends a string at the first
    quote, so E'\\'' (one quote, in an escape string) opens a "string" that
    hides the COMMIT after it from the screen."""
    check_eq(_commit_in_request_is_refused(
        pg_engine(), "script after E'\\''", "script",
        "INSERT INTO f8t VALUES (1); SELECT E'\\''; COMMIT; SELECT 'x'"),
        "", "committed")


def test_pg_commit_after_a_nested_comment_is_refused():
    """FRESH8-1 (PostgreSQL): PostgreSQL's block comments nest, hotpub's
    skip_quoted() ends one at the first '*/': in `/* /* */ SELECT */
    COMMIT` it reads SELECT as the first word, PostgreSQL runs COMMIT."""
    check_eq(_commit_in_request_is_refused(
        pg_engine(), "nested comment", "exec",
        ["INSERT INTO f8t VALUES (1)", "/* /* */ SELECT */ COMMIT"]),
        "", "committed")


# ---- 2. session state that the word test misses reaches the next request ------

LEAKS = [
    # (what, statement run by request 1, probe run by request 2, clean answer)
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


def test_pg_session_changes_the_word_test_misses_do_not_leak():
    """FRESH8-2 (PostgreSQL). hp_db__changes_session (db_stmt.c) decides from
    the statement's words whether the connection needs DISCARD ALL when it
    goes back; each statement here changes the session without a word it
    knows, and the next request, on the same pooled connection, sees the
    change (docs/database.md promises a connection 'in the state the pool
    made it'). With a role instead of search_path the next user's request
    runs as that role."""
    eng = pg_engine()
    leaked = []
    with D.db_server(eng, {}, ONE_CONN) as s:
        for what, change, probe, clean in LEAKS:
            r = post(s, "/admin/value", q=change)
            check_eq(r.status, 200, "%s: %s" % (what, short(r.body)))
            got = one_value(s, probe)
            if got != clean:
                leaked.append("%s: next request saw %r" % (what, got))
    check_eq(leaked, [], "session state leaked to the next request")


def test_pg_sequence_state_does_not_reach_the_next_request():
    """FRESH8-2b (PostgreSQL). nextval() (a serial column's default) sets
    the session's lastval()/currval(); no word marks the connection, so
    the next request, maybe another user's, reads the previous request's
    new id with SELECT lastval() (on a connection 'in the state the pool
    made it' that is an error, 55000). DISCARD ALL (DISCARD SEQUENCES)
    would clear it."""
    eng = pg_engine()
    with D.db_server(eng, {}, ONE_CONN) as s:
        D.script(s, "CREATE TABLE f8ids (id SERIAL PRIMARY KEY, v TEXT)")
        r = post(s, "/admin/value",
                 q="INSERT INTO f8ids (v) VALUES ('secret') RETURNING id")
        check_eq((r.status, r.text.strip()), (200, "1"), "the insert")
        r = s.get("/admin/value?q=SELECT+lastval()")
        check(r.status != 200, "the next request read lastval() = %r"
              % r.text.strip())


# ---- 3. a constructor that raises SIGKILL --------------------------------------

def raiser_page(sig):
    return page('__attribute__((constructor)) static void k(void) '
                '{ raise(%s); }\n'
                'HP_HANDLER(http_handler) { hp_puts(req, "bad"); '
                'return HP_OK; }' % sig, includes="#include <signal.h>")


def _raiser_kills_one_worker(sig, num):
    """Problems seen when a constructor raises sig (number num)."""
    with Server(files={"good.c": simple_page("good")},
                args=["--workers", "2"], dev=False) as s:
        W.all_ready(s, n=2, timeout=limit(15.0))
        for _ in range(6):
            W.fresh_get(s, "/good")
        s.write("bad.c", raiser_page(sig), how="rename")
        got = []
        for _ in range(8):  # sequential, on new connections: both workers
            r = W.fresh_get(s, "/bad", timeout=limit(10.0))
            got.append(r and r.status)
            time.sleep(0.25)
        died = "killed by signal %d" % num
        check(wait_until(lambda: died in s.stderr(), limit(5.0)),
              "%s: no death logged" % sig)
        time.sleep(1.0 * SLACK)
        err = s.stderr()
        check_eq(s.get_ok("/good").text, "good", "a good page after")
        problems = []
        if err.count(died) != 1:
            problems.append("%s: %d workers died of it (answers %r)"
                            % (sig, err.count(died), got))
        for wrong in ("from outside the process", "no page handler was "
                      "running on the failing thread"):
            if wrong in err:
                problems.append("%s: blamed on %r" % (sig, wrong))
        return problems


def test_constructor_raising_uncaught_signal_kills_one_worker_and_is_named():
    """FRESH8-3. A constructor that raises a signal hotpub installs no
    handler for (SIGKILL; SIGUSR2, SIGALRM, ... whose default is to
    terminate; a SIGSTOP'd loader that the heartbeat then SIGKILLs): the
    first death is logged as 'from outside the process (the kernel's
    out-of-memory killer, or an operator ...)' or 'while no page handler
    was running on the failing thread (module init/fini, or the server
    itself)', and a later request on another worker loads the same version
    again and kills that worker too (2 of 2 workers; 2 of 4 under load).
    Expected, as for SIGSEGV/SIGTERM/exit: one worker dies, the page is
    named, every later request is a 503."""
    problems = (_raiser_kills_one_worker("SIGKILL", 9) +
                _raiser_kills_one_worker("SIGUSR2", 12))
    check_eq(problems, [], "uncaught signals from a constructor")


def test_single_process_killed_by_a_page_signal_says_so():
    """FRESH8-3b. --workers 0: a handler that calls alarm(1) (or a
    constructor that raises SIGUSR2) ends the server a second later with
    status 128+14 (128+12) and not one log line; the stop signals hotpub knows
    end it with status 70 and a line naming the page (b47765d). (Popen
    reports -14: killed by SIGALRM.) Expected
    the same here."""
    al = page('HP_HANDLER(http_handler) { alarm(1); hp_puts(req, "a"); '
              'return HP_OK; }', includes="#include <unistd.h>")
    with Server(files={"al.c": al}, args=["--workers", "0"], dev=False,
                check_exit=False) as s:
        s.get_ok("/al")
        wait_until(lambda: not s.alive(), limit(5.0))
        check(not s.alive(), "the server survived SIGALRM (fine, if so)")
        rc = s.proc.returncode
        err = s.stderr()
        check("al.c" in err.split("serving", 1)[-1],
              "the server ended (status %s) without naming the page: %s"
              % (rc, short(err, 600)))
        check_eq(rc, 70, "exit status")


# ---- 5. a constructor that hangs: the log's words -----------------------------

HANG_PAGE = page('__attribute__((constructor)) static void h(void) '
                 '{ sleep(1000); }\n'
                 'HP_HANDLER(http_handler) { hp_puts(req, "h"); '
                 'return HP_OK; }', includes="#include <unistd.h>")


def test_hanging_constructor_is_not_called_an_init_hook():
    """FRESH8-5 (wording). A page without HP_INIT whose constructor hangs
    past --handler-timeout: the log says both 'the constructor hook has run
    for more than 2 s ... this init will not run again' and '/x/hang.c: the
    init hook ran past --handler-timeout ... in the page hang.c'. Expected:
    one hook named, the constructor (the page has no init), as the crash
    lines do since 32f3ab7."""
    with Server(files={"hello.c": simple_page("hello"), "hang.c": HANG_PAGE},
                args=["--workers", "2", "--handler-timeout", "2"],
                dev=False) as s:
        W.all_ready(s, n=2, timeout=limit(15.0))
        r = W.fresh_get(s, "/hang", timeout=limit(15.0))
        check(r is not None and r.status in (503, 504), "first: %r" % r)
        check(wait_until(lambda: "will not run again" in s.stderr(),
                         limit(5.0)), "no refusal logged")
        r = W.fresh_get(s, "/hang")
        check_eq(r and r.status, 503, "a later request")
        time.sleep(0.5 * SLACK)
        err = s.stderr()
        check_eq(s.get_ok("/hello").text, "hello", "a good page")
        for words in ("init hook", "this init"):
            check(words not in err, "a hung constructor called %r: %s"
                  % (words, short(err, 1500)))


# ---- 6. COPY through hp_db_exec/hp_db_query spins forever -------------------------

def test_pg_copy_statement_fails_instead_of_spinning():
    """FRESH8-6 (PostgreSQL). `COPY t TO STDOUT` or `COPY t FROM STDIN`
    through hp_db_query/hp_db_exec (or a batch of it) never returns: its
    thread spins at 100% CPU (and so does the main thread) holding the
    pool's connection, so every later database request waits for the
    acquire timeout and answers 503; only --handler-timeout (workers >= 1)
    ends it, by replacing the worker. docs/database.md lists COPY as not
    supported: expected an error (a 500) at once, and the connection back."""
    eng = pg_engine()
    with D.db_server(eng, {}, ONE_CONN + ["--handler-timeout", "60",
                                          "--db-acquire-timeout", "2000"]) \
            as s:
        s.check_exit = False  # a spinning thread may outlive the drain
        D.script(s, "CREATE TABLE f8c (x INTEGER)")
        for sql in ("COPY f8c TO STDOUT", "COPY f8c FROM STDIN"):
            try:
                r = post(s, "/admin/value", q=sql)
            except OSError as e:  # socket.timeout
                fail("%s: no answer within %.0f s (%r)" % (sql, 15, e))
            check(r.status == 500, "%s: %s %s" % (sql, r.status,
                                                 short(r.body)))
            check_eq(one_value(s, "SELECT 7"), "7", "the next request")


# ---- 7. the rollback's log line names the refusal, not the failure -----------------

RUN2 = page(r"""
HP_HANDLER(two)
{
    hp_db *db = hp_db(req);
    hp_db_exec(db, "SELECT * FROM f8_missing_table");
    hp_db_exec(db, "SELECT 1"); /* refused: 25P02 */
    return HP_OK;
}
""")


def test_rollback_line_names_the_statement_that_failed():
    """FRESH8-7 (log wording, both engines). A request whose statement
    failed and which ran one more (refused, 25P02) logs 'a statement failed
    in this request's transaction (current transaction is aborted, commands
    ignored until end of transaction block); rolling it back': the reason
    in parentheses is the refusal, not the failure (no such table
    f8_missing_table), which the operator then has to look for above."""
    bad = []
    for eng in engines():
        with D.db_server(eng, {"r.c": RUN2}, ONE_CONN) as s:
            check_eq(s.post("/r/two", "").status, 500, "status")
            ok = wait_until(lambda: "rolling it back" in s.stderr(), 5)
            line = [l for l in s.stderr().split("\n")
                    if "rolling it back" in l]
            if not ok or "f8_missing_table" not in line[-1]:
                bad.append("%s: %s" % (eng.name, line and line[-1]))
    check_eq(bad, [], "rollback lines without the failure's reason")


# ---- 8. one worker: a crashing constructor takes the good requests with it --------

def test_lone_worker_first_load_does_not_lose_good_requests():
    """FRESH8-8. --workers 1: a new page whose constructor crashes is loaded
    while 5 requests of a good page (300 ms each) run on the same worker;
    the worker dies and all 5 are lost (503, 'request lost with worker').
    With 4 workers the loader first lets running handlers finish
    (workers.py first_load_of_a_crashing_constructor_kills_one_worker);
    the lone worker skips that (26112a8: it does not pause accepting), so
    good pages do not keep answering 200. Expected: the running requests
    finish (200) before the unknown code is loaded."""
    bad = page(W.LOAD_KILLERS["segv"][0] + '\nHP_HANDLER(http_handler) '
               '{ hp_puts(req, "bad"); return HP_OK; }',
               includes="#include <stdlib.h>")
    slow = page('HP_HANDLER(http_handler) { usleep(300000); '
                'hp_puts(req, "slow"); return HP_OK; }',
                includes="#include <unistd.h>")
    with Server(files={"slow.c": slow}, args=["--workers", "1"],
                dev=False) as s:
        W.all_ready(s, n=1, timeout=limit(15.0))
        for _ in range(3):
            s.get_ok("/slow")
        s.write("bad.c", bad, how="rename")
        time.sleep(0.3)
        got = [None] * 5

        def one(i):
            r = W.fresh_get(s, "/slow", timeout=limit(10.0))
            got[i] = r and r.status
        ts = [threading.Thread(target=one, args=(i,)) for i in range(5)]
        for t in ts:
            t.start()
        time.sleep(0.08)
        r = W.fresh_get(s, "/bad", timeout=limit(10.0))
        for t in ts:
            t.join()
        check(r is None or r.status == 503, "the bad page: %r" % r)
        check_eq(got, [200] * 5, "the good requests running as it loaded")


# ---- 9. a hanging constructor holds the dynamic loader's lock ---------------------

def _hang_blocks_other_loads(workers):
    """What else fails while a constructor hangs, with --workers N: a
    list of problems."""
    with Server(files={"hello.c": simple_page("hello"), "hang.c": HANG_PAGE,
                       "slow.c": simple_page("other")},
                args=["--workers", str(workers)], dev=False,
                check_exit=False) as s:
        s.get_ok("/hello")
        bg = harness.BackgroundRequest(s.port, "/hang", timeout=20)
        bg.start()
        time.sleep(0.5)
        problems = []
        r = W.fresh_get(s, "/slow", timeout=limit(3.0))
        if r is None or r.status != 200:
            problems.append("--workers %d: first load of another page: %r"
                            % (workers, r))
        s.write("hello.c", simple_page("hello2"), how="rename")
        time.sleep(0.3)
        r = W.fresh_get(s, "/hello", timeout=limit(3.0))
        if r is None or r.status != 200:
            problems.append("--workers %d: an edited good page: %r"
                            % (workers, r))
        return problems


def test_hanging_constructor_does_not_block_other_pages_loading():
    """FRESH8-9. A constructor that hangs runs inside dlopen, which holds
    glibc's loader lock: every other dlopen of the process waits behind
    it. With --workers 0 (no handler timeout) every page loaded or edited
    afterwards hangs for ever (the first load of another page and the new
    version of an edited, already-loaded page: both time out); with
    --workers 1 (the lone worker does not pause accepting) until
    --handler-timeout (30 s) replaces the worker. HP_INIT hanging does not
    do this (it runs after dlopen). Expected: other pages load and
    reload; e.g. load pages in a child, or refuse a constructor that does
    not return within a bound."""
    problems = _hang_blocks_other_loads(0) + _hang_blocks_other_loads(1)
    check_eq(problems, [], "other pages blocked by a hanging constructor")


if __name__ == "__main__":
    sys.exit(harness.run_suite(globals(), sys.argv[1:],
                               suite_budget=SUITE_BUDGET,
                               test_timeout=TEST_TIMEOUT,
                               verbose_total=False))
