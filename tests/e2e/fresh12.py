#!/usr/bin/env python3
"""hotpub end-to-end tests from a tester's round (fresh12) on the
reactor's latest fixes: thread-local chains stay off the reactor, the
stalled reactor's queue moves to the handler threads, the pool wait parks
on an eventfd. Each test is a finding, FRESH12-N in its docstring, open
when written; the fresh12_probe_* tests are what held. FRESH12-1 is
fixed (0f6b6a4); FRESH12-2 (the loader reads an object's imports:
pthread keys keep a page off the reactor) and FRESH12-4 (the pool's
waiters of both kinds are one queue, first come, first served) are
fixed; FRESH12-3 and 3b are fixed too (requests a stalled reactor had
started get 503 with Retry-After), their tests now in reactor.py. Every
test needs PostgreSQL: without HOTPUB_PG_URL each prints "skip" and does
not count.

    HOTPUB_BIN=/abs/path/hotpub HOTPUB_PG_URL=postgresql://... \\
        python3 tests/e2e/fresh12.py [NAME-SUBSTRING...]
"""

import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import (Server, check, check_eq, check_in,  # noqa: E402
                     limit, page)

TEST_TIMEOUT = 90.0
SUITE_BUDGET = 600.0

# The page and helpers of the fresh11 round, shared.
from fresh11 import (PG_URL, Q_PAGE, need_pg, parallel,  # noqa: E402,F401
                     pg_server, promote, st, status)




def app_with(tls):
    decl = "static _Thread_local int seen;\n" if tls else ""
    use = "    seen++;\n" if tls else ""
    return page(decl + "HP_HOOK(prepare)\n{\n    (void)req;\n" + use +
                "    return HP_OK;\n}\n")


def promoted(s, path="/q", n=200):
    """Whether path ran as a coroutine within n requests."""
    before = status(s)["coroutines"]
    sep = "&" if "?" in path else "?"
    for i in range(n):
        s.get_ok(path + sep + "id=w%d" % i)
        if status(s)["coroutines"] > before:
            return True
    return False


def test_fresh12_probe_tls_only_in_app_stays_off():
    """TLS only in an _app.c: the page never runs on the reactor, the log
    names the _app.c."""
    need_pg()
    with pg_server(["--workers", "0"], files={"_app.c": app_with(True)}) as s:
        check(not promoted(s), "ran on the reactor with a TLS _app.c")
        check_in("has thread-local variables", s.stderr(), "the log")


def test_fresh12_probe_static_thread_in_function_and_inline_header():
    """A page with `static __thread` inside a function, and one whose header
    has a static inline function with a static thread-local, stay off; a
    page without TLS next to them is promoted."""
    need_pg()
    fn = Q_PAGE.replace("static atomic_int runs;",
                        "static atomic_int runs;\nstatic int bump(void)\n{\n"
                        "    static __thread int k;\n    return ++k;\n}\n")
    fn = fn.replace("hp_printf(req, \"ok %s\", got);",
                    "hp_printf(req, \"ok %s\", got + 0 * bump());")
    hdr = ("#pragma once\nstatic inline int counter(void)\n{\n"
           "    static _Thread_local int n;\n    return ++n;\n}\n")
    inl = Q_PAGE.replace("static atomic_int runs;",
                         "#include \"tl.h\"\nstatic atomic_int runs;")
    inl = inl.replace("hp_printf(req, \"ok %s\", got);",
                      "hp_printf(req, \"ok %s\", got + 0 * counter());")
    with pg_server(["--workers", "0"],
                   files={"fn.c": fn, "tl.h": hdr, "inl.c": inl}) as s:
        check(not promoted(s, "/fn"), "fn ran on the reactor")
        check(not promoted(s, "/inl"), "inl ran on the reactor")
        check(promoted(s, "/q"), "q (no TLS) never promoted")


def test_fresh12_1_app_loses_its_tls_page_stays_off_reactor():
    """FRESH12-1. The _app.c has a _Thread_local; /q stays on the handler
    threads (logged). Then the _app.c is edited to drop the thread-local
    while q.c stays the same, and /q served 200 more requests that wait on
    the database. What happened: /q never ran as a coroutine again
    (coro_never stays set on the unchanged page version). Expected: the
    chain no longer has thread-local variables, so /q is promoted as any
    page (only a page edit clears it now)."""
    need_pg()
    with pg_server(["--workers", "0"], files={"_app.c": app_with(True)}) as s:
        check(not promoted(s, n=80), "ran on the reactor with a TLS _app.c")
        check_in("has thread-local variables", s.stderr(), "the log")
        s.write("_app.c", app_with(False))
        time.sleep(1.0)
        s.get_ok("/q")
        check(promoted(s, n=200), "/q never promoted after the _app.c lost "
              "its thread-local; log:\n" + s.stderr_tail(8))


def test_fresh12_probe_app_gains_tls_after_promotion():
    """The page is on the reactor; its _app.c is edited to add a
    _Thread_local: no request runs as a coroutine after that."""
    need_pg()
    with pg_server(["--workers", "0"], files={"_app.c": app_with(False)}) as s:
        promote(s)
        s.write("_app.c", app_with(True))
        time.sleep(1.0)
        s.get_ok("/q")
        before = status(s)["coroutines"]
        for i in range(80):
            s.get_ok("/q?id=a%d" % i)
        check_eq(status(s)["coroutines"], before, "coroutine runs after")


def test_fresh12_probe_pool_wait_fifo_and_503():
    """--db-pool-size 1, acquire timeout 300 ms, 40 concurrent 0.05 s
    queries on the reactor: each answers 200 with its own id or 503; none
    hang; the reactor counters return to 0."""
    need_pg()
    with pg_server(["--workers", "0", "--db-acquire-timeout", "300"],
                   pool=1) as s:
        promote(s)
        paths = ["/q?s=0.05&id=p%d" % i for i in range(40)]
        rs, took = parallel(s, paths, timeout=15)
        codes = [st(r) for r in rs]
        bad = [(p, c) for p, c, r in zip(paths, codes, rs)
               if not (c == 503 or (c == 200 and
                                    r.text == "ok " + p.split("id=")[1]))]
        check(not bad, "wrong answers %r" % bad[:5])
        check(503 in codes and 200 in codes, "codes %r" % codes)
        check(took < limit(3.0), "took %.2f s" % took)
        time.sleep(0.5)
        r = status(s)["reactor"]
        harness.note("reactor %r codes %r" % (r, sorted(codes, key=str)))
        for k, v in r.items():
            if isinstance(v, int) and k in ("queued", "running",
                                            "suspended", "waiting",
                                            "parked", "pool_waiting"):
                check_eq(v, 0, "reactor " + k)
        check_eq(s.get_ok("/q?id=z").text, "ok z", "after")



SESS_PAGE = page(r"""
HP_HANDLER(http_handler)
{
    const char *n = hp_session_get(req, "n");
    int v = n ? atoi(n) : 0;
    hp_db *db = hp_db(req);
    const char *s = hp_arg(req, "s");
    hp_db_res *r = hp_db_query(db, "SELECT pg_catalog.pg_sleep($1)",
                               s ? s : "0");
    if (!r)
        return 500;
    char b[16];
    snprintf(b, sizeof b, "%d", v + 1);
    if (hp_session_set(req, "n", b) != HP_OK)
        return 500;
    hp_printf(req, "n %d", v + 1);
    return HP_OK;
}
""", includes="#include <stdio.h>\n#include <stdlib.h>")


def test_fresh12_probe_session_lock_timeout_on_the_reactor():
    """--session-lock-timeout 500: one request of a session waits 1.5 s on
    the database on the reactor, a second of the same session comes 0.1 s
    later: it gets 503 after about 0.5 s, and a third request of another
    session meanwhile answers at once; the first answers 200."""
    need_pg()
    with pg_server(["--workers", "0", "--session-lock-timeout", "500"],
                   files={"sess.c": SESS_PAGE}) as s:
        r = s.request("/sess")
        h = {"Cookie": r.header("Set-Cookie").split(";")[0]}
        for _ in range(300):
            s.request("/sess", headers=h)
            if status(s)["coroutines"] > 0:
                break
        check(status(s)["coroutines"] > 0, "never promoted")
        first = harness.BackgroundRequest(s.port, "/sess?s=1.5", headers=h,
                                          timeout=30)
        first.start()
        time.sleep(0.1)
        second = harness.BackgroundRequest(s.port, "/sess", headers=h,
                                           timeout=30)
        second.start()
        time.sleep(0.1)
        t0 = time.monotonic()
        other = s.request("/sess", timeout=10)
        t_other = time.monotonic() - t0
        second.join(10)
        first.join(10)
        check_eq(other.status, 200, "other session")
        check(t_other < limit(0.3), "other session took %.2f s" % t_other)
        check(second.response is not None and second.response.status == 503,
              "second: %r %r" % (second.response and second.response.status,
                                 second.error))
        check(second.elapsed() < limit(1.2), "second took %.2f s"
              % second.elapsed())
        check_eq(first.response and first.response.status, 200, "first")


def test_fresh12_probe_workers_spin_past_timeout_drains_503():
    """--workers 1, --handler-timeout 2: two requests wait 3 s on the
    database on the reactor, a third spins there for ever. The worker is
    replaced; the two held get 503 within a few seconds of the timeout,
    and a request after that answers 200 on the new worker."""
    need_pg()
    s = pg_server(["--handler-timeout", "2"], pool=8)
    s.workers = 1
    s.dev = False
    s.start()
    try:
        promote(s)
        held = [harness.BackgroundRequest(s.port, "/q?s=0.5&id=h%d" % i,
                                          timeout=30) for i in range(2)]
        for b in held:
            b.start()
        time.sleep(0.2)
        t0 = time.monotonic()
        spin = harness.BackgroundRequest(s.port, "/q?spin=1", timeout=30)
        spin.start()
        time.sleep(1.3)
        mid = s.request("/q?id=mid", timeout=10)
        check_eq((mid.status, mid.text), (200, "ok mid"),
                 "a new request 1.3 s into the spin")
        for b in held:
            b.join(15)
            check(b.response is not None and b.response.status == 503,
                  "held: %r %r" % (b.response and b.response.status, b.error))
            check(time.monotonic() - t0 < limit(6.0),
                  "held answered %.1f s after the spin began"
                  % (time.monotonic() - t0))
        ok = harness.wait_until(
            lambda: s.request("/q?id=after", timeout=5).status == 200,
            limit(10))
        check(ok, "no 200 after the worker was replaced")
        spin.join(10)
        harness.note("spin got %r" % (spin.response and spin.response.status))
    finally:
        s.stop(check=False)



# _app.c carrying the request's id from prepare to commit through a POSIX
# thread-specific key (pthread_setspecific), the pre-C11 spelling of a
# _Thread_local; commit answers 500 when it finds another request's id.
KEY_APP = page(r"""
static pthread_key_t key;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static void mk(void) { pthread_key_create(&key, free); }

HP_HOOK(prepare)
{
    pthread_once(&once, mk);
    const char *id = hp_arg(req, "id");
    free(pthread_getspecific(key));
    pthread_setspecific(key, strdup(id ? id : ""));
    return HP_OK;
}

HP_HOOK(commit)
{
    const char *id = hp_arg(req, "id");
    const char *mine = pthread_getspecific(key);
    if (!mine || strcmp(mine, id ? id : "") != 0) {
        hp_log(req, "prepare's key says %s, this is %s", mine ? mine : "-",
               id ? id : "");
        return 500;
    }
    return HP_OK;
}
""", includes="#include <pthread.h>\n#include <stdlib.h>\n#include <string.h>")


def test_fresh12_2_pthread_key_in_app_mixes_requests_on_the_reactor():
    """FRESH12-2 (fixed). An _app.c keeps the request's id from prepare to
    commit with pthread_setspecific/pthread_getspecific (what a
    _Thread_local does, in POSIX spelling; hooks.md: "all the hooks and the
    handler of one request run in sequence on one thread"). What happened:
    /q was promoted to the reactor (no TLS segment, so the FRESH11-4 check
    did not see it) and, of 20 concurrent requests waiting 0.3 s on the
    database, most got 500: commit read another request's id. Expected,
    and now: the loader sees the _app.c import pthread_setspecific, /q
    stays on the handler threads (logged: "uses pthread_setspecific"),
    and each of the 20 reads its own id."""
    need_pg()
    with pg_server(["--workers", "0"], files={"_app.c": KEY_APP}) as s:
        check(not promoted(s), "ran on the reactor with pthread keys in "
              "the _app.c")
        check_in("uses pthread_setspecific", s.stderr(), "the log")
        paths = ["/q?s=0.3&id=k%d" % i for i in range(20)]
        rs, _ = parallel(s, paths, timeout=15)
        bad = [(p, st(r)) for p, r in zip(paths, rs) if st(r) != 200]
        check(not bad, "%d of 20 read another request's key: %r"
              % (len(bad), bad[:4]))
        check_eq(status(s)["coroutines"], 0, "coroutine runs")


# _app.c calling pthread and C-library functions that keep no per-thread
# state past the call (an atomic, pthread_self, strtok_r, strerror).
PLAIN_APP = page(r"""
static atomic_int calls;

HP_HOOK(prepare)
{
    char buf[32], *save = NULL;
    const char *id = hp_arg(req, "id");
    atomic_fetch_add(&calls, 1);
    if (pthread_self() == 0)
        hp_log(req, "no thread");
    snprintf(buf, sizeof buf, "%s", id ? id : "");
    if (strcmp(strerror(0), "") == 0 || !strtok_r(buf, "&", &save))
        hp_log(req, "empty id");
    return HP_OK;
}
""", includes="#include <pthread.h>\n#include <stdatomic.h>\n"
              "#include <stdio.h>\n#include <string.h>")


def test_fresh12_probe_app_with_other_pthread_calls_is_promoted():
    """An _app.c that calls pthread_self, an atomic, strtok_r and strerror
    (no per-thread state kept past the call, no lock: a lock keeps a chain
    off since FRESH13-1, fresh13.py): /q still goes to the reactor, and
    the log names no reason to keep it off."""
    need_pg()
    with pg_server(["--workers", "0"], files={"_app.c": PLAIN_APP}) as s:
        check(promoted(s), "/q never promoted; log:\n" + s.stderr_tail(8))
        check("stay on the handler threads" not in s.stderr(), "the log")



def test_fresh12_probe_pool_shared_by_reactor_and_handler_threads():
    """--db-pool-size 1, --db-acquire-timeout 3000: 12 requests of /q on
    the reactor and 12 of /tl (a page with a thread-local, on the handler
    threads) at once, each holding the one connection 0.05 s: all 24
    answer 200 with their own id in about 1.2 s; a release wakes a
    waiter of either kind."""
    need_pg()
    tl = Q_PAGE.replace("static atomic_int runs;",
                        "static atomic_int runs;\nstatic _Thread_local int t;")
    tl = tl.replace("hp_printf(req, \"ok %s\", got);",
                    "t++;\n    hp_printf(req, \"ok %s\", got);")
    with pg_server(["--workers", "0", "--db-acquire-timeout", "3000"],
                   files={"tl.c": tl}, pool=1) as s:
        promote(s)
        for i in range(40):
            s.get_ok("/tl?id=x%d" % i)
        paths = []
        for i in range(12):
            paths += ["/q?s=0.05&id=r%d" % i, "/tl?s=0.05&id=t%d" % i]
        rs, took = parallel(s, paths, timeout=15)
        bad = [(p, st(r)) for p, r in zip(paths, rs)
               if st(r) != 200 or r.text != "ok " + p.split("id=")[1]]
        check(not bad, "%d of 24 wrong in %.2f s: %r" % (len(bad), took,
                                                          bad[:6]))
        check(took < limit(2.5), "took %.2f s" % took)
        r = status(s)["reactor"]
        check_eq((r["active"], r["queued"]), (0, 0), "reactor counters")


def test_fresh12_probe_pool_two_many_waiters_no_hang():
    """--db-pool-size 2, --db-acquire-timeout 200: 80 concurrent 0.1 s
    queries on the reactor: 200 (own id) or 503 each, within 2 s; after
    that a request answers 200 and the counters are 0."""
    need_pg()
    with pg_server(["--workers", "0", "--db-acquire-timeout", "200"],
                   pool=2) as s:
        promote(s)
        paths = ["/q?s=0.1&id=m%d" % i for i in range(80)]
        rs, took = parallel(s, paths, timeout=15)
        codes = [st(r) for r in rs]
        bad = [(p, c) for p, c, r in zip(paths, codes, rs)
               if not (c == 503 or (c == 200 and
                                    r.text == "ok " + p.split("id=")[1]))]
        check(not bad, "wrong %r" % bad[:5])
        n200 = codes.count(200)
        check(2 <= n200 <= 8, "%d answered 200" % n200)
        check(took < limit(2.0), "took %.2f s" % took)
        check_eq(s.get_ok("/q?id=z").text, "ok z", "after")
        r = status(s)["reactor"]
        check_eq((r["active"], r["queued"]), (0, 0), "reactor counters")



TL_Q = Q_PAGE.replace("static atomic_int runs;",
                      "static atomic_int runs;\nstatic _Thread_local int t;"
                      ).replace("hp_printf(req, \"ok %s\", got);",
                                "t++;\n    hp_printf(req, \"ok %s\", got);")


def test_fresh12_probe_block_1500_queued_and_held_all_answer_once():
    """Dev, --workers 0: three requests wait 0.3 s on the reactor, a run
    blocks it 1.5 s (usleep), five more come 0.2 s later: the five answer
    200 with their own id within about 1.5 s; the blocking run answers
    200; each of the three held answers once, 200, or 503 with
    Retry-After when the once-a-second stall check found the reactor held
    (operations.md, "The handler timeout": a request the reactor had
    started cannot move to another thread)."""
    need_pg()
    with pg_server(["--workers", "0"]) as s:
        promote(s)
        held = [harness.BackgroundRequest(s.port, "/q?s=0.3&id=h%d" % i,
                                          timeout=20) for i in range(3)]
        for b in held:
            b.start()
        time.sleep(0.1)
        blk = harness.BackgroundRequest(s.port, "/q?block=1500&id=b",
                                        timeout=20)
        blk.start()
        time.sleep(0.2)
        paths = ["/q?s=0.05&id=n%d" % i for i in range(5)]
        rs, took = parallel(s, paths, timeout=15)
        bad = [(p, st(r)) for p, r in zip(paths, rs)
               if st(r) != 200 or r.text != "ok " + p.split("id=")[1]]
        check(not bad, "queued: %r" % bad)
        check(took < limit(1.8), "queued took %.2f s" % took)
        blk.join(10)
        check(blk.response is not None and blk.response.status == 200,
              "blocker: %r %r" % (blk.response and blk.response.status,
                                  blk.error))
        for b in held:
            b.join(10)
            r = b.response
            check(r is not None and (r.status == 200 or (
                r.status == 503 and r.header("Retry-After") == "1")),
                  "held: %r %r" % (r and r.status, b.error))
        r = status(s)["reactor"]
        check_eq((r["active"], r["queued"]), (0, 0), "reactor counters")


def test_fresh12_probe_alone_production_exit70_lets_handler_run_finish():
    """Production, --workers 0, --handler-timeout 3: /tl (thread-local, on
    a handler thread) waits 2.5 s on the database; 0.2 s later a run
    spins on the reactor. The process exits 70; /tl, which was not on the
    reactor, gets its 200 (the stop is "as for a SIGTERM")."""
    need_pg()
    s = pg_server(["--workers", "0", "--handler-timeout", "3"],
                  files={"tl.c": TL_Q})
    s.dev = False
    s.start()
    try:
        promote(s)
        s.get_ok("/tl?id=warm")
        slow = harness.BackgroundRequest(s.port, "/tl?s=2.5&id=slow",
                                         timeout=30)
        slow.start()
        time.sleep(0.2)
        spin = harness.BackgroundRequest(s.port, "/q?spin=1", timeout=30)
        spin.start()
        check_eq(s.proc.wait(timeout=limit(20)), 70, "exit status")
        slow.join(10)
        check(slow.response is not None and slow.response.status == 200
              and slow.response.text == "ok slow",
              "the handler thread's request: %r %r"
              % (slow.response and (slow.response.status,
                                    slow.response.text), slow.error))
    finally:
        s.stop(check=False)



def test_fresh12_probe_ten_requests_of_one_session_on_the_reactor():
    """Ten requests of one session at once on the reactor, each waiting
    0.1 s on the database: all 200, each sees the one before (n+1..n+10
    exactly once), in about 1 s; another session's request meanwhile
    answers at once."""
    need_pg()
    with pg_server(["--workers", "0"], files={"sess.c": SESS_PAGE}) as s:
        r = s.request("/sess")
        h = {"Cookie": r.header("Set-Cookie").split(";")[0]}
        for _ in range(300):
            s.request("/sess", headers=h)
            if status(s)["coroutines"] > 0:
                break
        check(status(s)["coroutines"] > 0, "never promoted")
        base = int(s.request("/sess", headers=h).text.split()[1])
        out = {}

        def other():
            time.sleep(0.3)
            t0 = time.monotonic()
            o = s.request("/sess", timeout=10)
            out["other"] = (o.status, time.monotonic() - t0)
        t = threading.Thread(target=other, daemon=True)
        t.start()
        rs, took = parallel(s, ["/sess?s=0.1"] * 10, timeout=20, headers=h)
        t.join(10)
        codes = [st(x) for x in rs]
        check(codes == [200] * 10, "codes %r" % codes)
        got = sorted(int(x.text.split()[1]) for x in rs)
        check_eq(got, list(range(base + 1, base + 11)), "values")
        check(took < limit(2.0), "took %.2f s" % took)
        check(out.get("other", (0, 9))[0] == 200 and
              out["other"][1] < limit(0.3), "other session %r"
              % (out.get("other"),))
        r = status(s)["reactor"]
        check_eq((r["active"], r["queued"]), (0, 0), "reactor counters")



def test_fresh12_probe_alone_production_spinners_batch_answered():
    """Production, --workers 0, --handler-timeout 2, the batch of
    FRESH12-3: the process exits 70 and the three get an answer (200 or
    503), not a dropped connection."""
    need_pg()
    # Two event loops: the requests reach the reactor's queue while the
    # 30 ms block holds it. With one, the reactor's thread runs the loop
    # and reads them only after the block, when the page has been sent to
    # the handler threads: the spinner spins there, which --handler-timeout
    # does not bound without worker processes, and the process never exits.
    s = pg_server(["--workers", "0", "--handler-timeout", "2",
                   "--io-threads", "2"])
    s.dev = False
    s.start()
    try:
        promote(s)
        blk = harness.BackgroundRequest(s.port, "/q?block=30&id=b",
                                        timeout=20)
        blk.start()
        time.sleep(0.005)
        spin = harness.BackgroundRequest(s.port, "/q?spin=1", timeout=30)
        spin.start()
        behind = []
        for i in range(3):
            time.sleep(0.004)
            b = harness.BackgroundRequest(s.port, "/q?id=x%d" % i,
                                          timeout=10)
            b.start()
            behind.append(b)
        check_eq(s.proc.wait(timeout=limit(20)), 70, "exit status")
        for b in behind:
            b.join(12)
        got = [(b.response and b.response.status, b.error and
                repr(b.error)[:60], round(b.elapsed(), 1)) for b in behind]
        harness.note("behind: %r" % got)
        check(all(b.response is not None and
                  b.response.status in (200, 503) for b in behind),
              "requests behind the spinner: %r" % got)
    finally:
        s.stop(check=False)



def test_fresh12_probe_new_nested_app_with_tls_takes_page_off():
    """sub/q.c is promoted to the reactor under a root _app.c without TLS;
    then sub/_app.c (new file) with a _Thread_local appears: no request of
    /sub/q runs as a coroutine after that, and each answers its own id."""
    need_pg()
    with pg_server(["--workers", "0"],
                   files={"_app.c": app_with(False), "sub/q.c": Q_PAGE}) as s:
        promote(s, "/sub/q")
        s.write("sub/_app.c", app_with(True))
        time.sleep(1.0)
        s.get_ok("/sub/q")
        before = status(s)["coroutines"]
        for i in range(60):
            check_eq(s.get_ok("/sub/q?id=a%d" % i).text, "ok a%d" % i, "id")
        check_eq(status(s)["coroutines"], before, "coroutine runs after")



def test_fresh12_probe_pool_wait_is_first_come_first_served():
    """--db-pool-size 1, acquire timeout 5 s: 10 reactor requests sent
    15 ms apart, each holding the one connection 0.1 s: they finish in
    the order they came (the eventfd wait is first come, first served)."""
    need_pg()
    with pg_server(["--workers", "0", "--db-acquire-timeout", "5000"],
                   pool=1) as s:
        promote(s)
        bs = []
        for i in range(10):
            b = harness.BackgroundRequest(s.port, "/q?s=0.1&id=f%d" % i,
                                          timeout=20)
            b.start()
            bs.append(b)
            time.sleep(0.015)
        done = []
        for b in bs:
            b.join(15)
        for i, b in enumerate(bs):
            check(b.response is not None and b.response.status == 200,
                  "f%d: %r" % (i, b.error))
            done.append((b.t_end, i))
        order = [i for _, i in sorted(done)]
        check_eq(order, list(range(10)), "finish order")



def test_fresh12_4_pool_waiters_on_handler_threads_wait_behind_reactor():
    """FRESH12-4. --db-pool-size 1, --db-acquire-timeout 5000; /q runs on
    the reactor, /tl (a page with a _Thread_local) on the handler threads;
    12 requests alternating /q and /tl, 15 ms apart, each holding the one
    connection 0.1 s. What happened: the reactor's requests got the
    connection first, all of them, the handler threads' after: finish
    order e.g. [0, 2, 4, 6, 1, 7, 9, 11, 8, 5, 3, 10] (a given-back
    connection signals one condition-variable waiter and wakes one parked
    waiter; the loser re-queues, a parked one at the tail). Expected
    (design.md: "first come, first served; a connection given back wakes
    the first"): arrival order, or the docs say the order holds only
    among the reactor's waiters. Low severity: fairness, no 503 seen
    (fresh12_probe_first_handler_waiter_not_starved_by_reactor)."""
    need_pg()
    with pg_server(["--workers", "0", "--db-acquire-timeout", "5000"],
                   files={"tl.c": TL_Q}, pool=1) as s:
        promote(s)
        for i in range(40):
            s.get_ok("/tl?id=w%d" % i)
        bs = []
        for i in range(12):
            pg = "/q" if i % 2 == 0 else "/tl"
            b = harness.BackgroundRequest(s.port, pg + "?s=0.1&id=f%d" % i,
                                          timeout=20)
            b.start()
            bs.append(b)
            time.sleep(0.015)
        for b in bs:
            b.join(15)
        for i, b in enumerate(bs):
            check(b.response is not None and b.response.status == 200,
                  "f%d: %r" % (i, b.error))
        order = [i for _, i in sorted((b.t_end, i) for i, b in enumerate(bs))]
        check_eq(order, list(range(12)), "finish order")



def test_fresh12_probe_first_handler_waiter_not_starved_by_reactor():
    """(Passes: FRESH12-4's disorder does not starve here.) --db-pool-size 1,
    --db-acquire-timeout 1000: /q?s=0.3 holds the connection; 15 ms later
    /tl (handler threads) asks for it, then ten /q?s=0.1 (reactor) 15 ms
    apart. First come, first served, /tl gets it at ~0.3 s and answers
    200."""
    need_pg()
    with pg_server(["--workers", "0", "--db-acquire-timeout", "1000"],
                   files={"tl.c": TL_Q}, pool=1) as s:
        promote(s)
        for i in range(40):
            s.get_ok("/tl?id=w%d" % i)
        hold = harness.BackgroundRequest(s.port, "/q?s=0.3&id=hold",
                                         timeout=20)
        hold.start()
        time.sleep(0.015)
        tl = harness.BackgroundRequest(s.port, "/tl?s=0.05&id=first",
                                       timeout=20)
        tl.start()
        rest = []
        for i in range(10):
            time.sleep(0.015)
            b = harness.BackgroundRequest(s.port, "/q?s=0.1&id=r%d" % i,
                                          timeout=20)
            b.start()
            rest.append(b)
        for b in [hold, tl] + rest:
            b.join(15)
        check(tl.response is not None and tl.response.status == 200 and
              tl.response.text == "ok first",
              "the first waiter (handler thread): %r after %.2f s; later "
              "reactor requests: %r" % (tl.response and tl.response.status,
                                        tl.elapsed(),
                                        [b.response and b.response.status
                                         for b in rest]))



if __name__ == "__main__":
    sys.exit(harness.run_suite(globals(), sys.argv[1:],
                               suite_budget=SUITE_BUDGET,
                               test_timeout=TEST_TIMEOUT,
                               verbose_total=False))
