#!/usr/bin/env python3
"""hotpub end-to-end tests from a tester's round on the reactor (pages
that wait on PostgreSQL run as coroutines, src/reactor.c): each test is a
finding, FRESH11-N in its docstring, fixed. Every test needs
PostgreSQL: without HOTPUB_PG_URL each prints "skip" and does not
count.

    HOTPUB_BIN=/abs/path/hotpub HOTPUB_PG_URL=postgresql://... \\
        python3 tests/e2e/fresh11.py [NAME-SUBSTRING...]
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
PG_URL = os.environ.get("HOTPUB_PG_URL", "").strip()

# /q: one query (pg_sleep ?s=), then optionally: ?spin=1 loops forever on
# its thread, ?block=MS sleeps on it, ?every=N blocks 20 ms every Nth run;
# ?id= is echoed back by the database (results must not mix).
Q_PAGE = page(r'''
static atomic_int runs;

HP_HANDLER(http_handler)
{
    hp_db *db = hp_db(req);
    const char *s = hp_arg(req, "s");
    const char *id = hp_arg(req, "id");
    hp_db_res *r = hp_db_query(db,
        "SELECT $2::text FROM (SELECT pg_catalog.pg_sleep($1)) x",
        s ? s : "0", id ? id : "-");
    if (!r) {
        hp_printf(req, "ERR %s", hp_db_error(db));
        return 500;
    }
    const char *got = hp_db_next(r) ? hp_db_text(r, 0) : "?";
    const char *e = hp_arg(req, "every");
    if (e && atomic_fetch_add(&runs, 1) % atoi(e) == 0)
        usleep(20000);
    const char *b = hp_arg(req, "block");
    if (b)
        usleep((useconds_t)atoi(b) * 1000);
    if (hp_arg(req, "spin"))
        for (volatile int x = 0;; x++)
            ;
    hp_printf(req, "ok %s", got);
    return HP_OK;
}
''', includes="#include <stdatomic.h>\n#include <stdlib.h>\n"
              "#include <unistd.h>")


def need_pg():
    if not PG_URL:
        raise harness.Skip("no HOTPUB_PG_URL")


def pg_server(args=None, files=None, pool=32):
    files = dict(files or {})
    files.setdefault("q.c", Q_PAGE)
    return Server(files=files,
                  args=["--db", PG_URL, "--db-pool-size", str(pool)] +
                  list(args or []))


def status(s):
    return json.loads(s.get_ok("/_hotpub/status.json").text)["server"]


def promote(s, path="/q"):
    before = status(s)["coroutines"]
    sep = "&" if "?" in path else "?"
    for i in range(400):
        s.get_ok(path + sep + "id=w%d" % i)
        if status(s)["coroutines"] > before:
            return
    harness.fail("%s never ran on the reactor; log:\n%s"
                 % (path, s.stderr_tail(15)))


def parallel(s, paths, timeout=20.0, method="GET", body=None, headers=None):
    out = [None] * len(paths)

    def one(i, p):
        try:
            h = {"Connection": "close"}
            h.update(headers or {})
            out[i] = s.request(p, method=method, body=body, headers=h,
                               timeout=timeout)
        except Exception as e:  # noqa: BLE001 - reported as the error
            out[i] = e
    ts = [threading.Thread(target=one, args=(i, p), daemon=True)
          for i, p in enumerate(paths)]
    t0 = time.monotonic()
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout + 5)
    return out, time.monotonic() - t0


def st(r):
    return getattr(r, "status", repr(r))



# /sess: reads n from the session, waits ?s= on the database, writes n+1.
SESS_PAGE = page(r'''
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
''', includes="#include <stdio.h>\n#include <stdlib.h>")


# _app.c whose hooks carry the request's id from prepare to commit in a
# _Thread_local, as docs/hooks.md says they may; commit fails (500) and
# logs when it finds another request's id there.
TL_APP = page(r'''
static _Thread_local char mine[32];

HP_HOOK(prepare)
{
    const char *id = hp_arg(req, "id");
    snprintf(mine, sizeof mine, "%s", id ? id : "");
    return HP_OK;
}

HP_HOOK(commit)
{
    const char *id = hp_arg(req, "id");
    if (strcmp(mine, id ? id : "") != 0) {
        hp_log(req, "prepare's thread-local says %s, this is %s", mine,
               id ? id : "");
        return 500;
    }
    return HP_OK;
}
''', includes="#include <stdio.h>\n#include <string.h>")


def test_fresh11_1_two_requests_of_one_session_freeze_the_reactor():
    """FRESH11-1. A page on the reactor that uses the session (stored in
    PostgreSQL) and waits 0.5 s on the database; two requests of one
    session at once (a browser's parallel fetches), and a third of another
    session 0.1 s later. What happened: the second request blocked the
    reactor thread in the session's in-process lock (a condition variable,
    sesslock.c), so the first, which holds the session and waits on the
    same thread, could not go on: the whole reactor stood still for
    --session-lock-timeout (10 s), the second got 503 "session is busy",
    the other session's request took 10.1 s, and the page was sent back
    to the handler threads for good ("held the reactor 10000 ms").
    Expected: the second waits for the session without holding the
    thread; both answer 200 (n+1, n+2) in about 1 s, the other at once.
    Fixed: on a thread with a wait hook the in-process stage naps through
    hp_wait_fd."""
    need_pg()
    with pg_server(["--workers", "0"], files={"sess.c": SESS_PAGE}) as s:
        r = s.request("/sess")
        cookie = r.header("Set-Cookie").split(";")[0]
        h = {"Cookie": cookie}
        for _ in range(300):
            s.request("/sess", headers=h)
            if status(s)["coroutines"] > 0:
                break
        check(status(s)["coroutines"] > 0, "never promoted:\n" +
              s.stderr_tail(5))
        base = int(s.request("/sess", headers=h).text.split()[1])
        bgs = [harness.BackgroundRequest(s.port, "/sess?s=0.5", headers=h,
                                         timeout=30) for _ in range(2)]
        t0 = time.monotonic()
        for b in bgs:
            b.start()
        time.sleep(0.1)
        other = s.request("/sess?s=0.1", timeout=30)  # a session of its own
        t_other = time.monotonic() - t0
        for b in bgs:
            b.join(30)
        took = time.monotonic() - t0
        got = sorted((st(b.response), getattr(b.response, "text", ""))
                     for b in bgs)
        check_eq(got, [(200, "n %d" % (base + 1)), (200, "n %d" % (base + 2))],
                 "the two requests of one session")
        check(took < limit(2.0), "the two took %.2f s" % took)
        check_eq(other.status, 200, "the other session's request")
        check(t_other < limit(1.0), "the other session's request took %.2f s"
              % t_other)
        check("held the reactor" not in s.stderr(),
              "the session wait counted as holding the reactor:\n" +
              s.stderr_tail(3))


def spin_with_neighbours(s, late=True, timeout=12):
    """Three requests wait 0.5 s on the reactor; one spins forever after
    its query; with late, one more arrives 0.3 s after the spin began.
    Returns (the waiting BackgroundRequests, the spinner's)."""
    promote(s)
    bgs = [harness.BackgroundRequest(s.port, "/q?s=0.5&id=h%d" % i,
                                     timeout=timeout) for i in range(3)]
    for b in bgs:
        b.start()
    time.sleep(0.15)
    spin = harness.BackgroundRequest(s.port, "/q?spin=1", timeout=12)
    spin.start()
    if late:
        time.sleep(0.3)
        b = harness.BackgroundRequest(s.port, "/q?id=late", timeout=12)
        b.start()
        bgs.append(b)
    return bgs, spin


def test_fresh11_2_a_page_spinning_on_the_reactor_answers_its_neighbours():
    """FRESH11-2. --workers 0, dev mode: a promoted page loops forever
    after its query, while three requests of it wait 0.5 s on the database
    on the same reactor and a fourth arrives 0.3 s later. What happened:
    none of the four ever answered (clients timed out at 12 s); at SIGTERM
    the server waited 10 s and exited with "4 requests still running".
    Fixed, with the answer that can be given: the three had started on
    the reactor, and a started run is a coroutine that cannot move to
    another thread (its code may keep addresses of the reactor thread's
    thread-locals), so it cannot finish with a 200 while the reactor is
    held. Once the reactor has been held a second, each of the three is
    answered 503 with Retry-After: 1, the body naming the page whose run
    holds it, and given up; the fourth had not started and answers 200 on
    a handler thread. All four within 3 s, none hangs."""
    need_pg()
    s = pg_server(["--workers", "0"])
    s.start()
    try:
        bgs, _ = spin_with_neighbours(s)
        time.sleep(1.5)
        r = s.request("/q?id=new", timeout=5)
        check_eq((r.status, r.text), (200, "ok new"), "a request 1.5 s later")
        for b in bgs:
            b.join(12)
        got = [(st(b.response), b.error and type(b.error).__name__,
                round(b.elapsed(), 1)) for b in bgs]
        for b in bgs[:3]:
            check(b.response is not None and b.response.status == 503 and
                  b.response.header("Retry-After") == "1" and
                  "q.c" in b.response.text and b.elapsed() < limit(3.0),
                  "a request waiting on the held reactor: %r" % got)
        late = bgs[3]
        check(late.response is not None and
              (late.response.status, late.response.text) == (200, "ok late")
              and late.elapsed() < limit(3.0),
              "the request queued behind the spin: %r" % got)
        check(status(s)["reactor"]["abandoned"] >= 3, "status.json's "
              "reactor.abandoned: %r" % status(s)["reactor"])
    finally:
        s.kill()  # the spinning run never ends: no clean stop to check


def test_fresh11_3_with_workers_the_spinners_neighbours_wait_for_the_drain():
    """FRESH11-3. --workers 1 --handler-timeout 2: as FRESH11-2. The
    spinning request is answered 504 at 2 s and the worker replaced, as
    documented. What happened to the three requests whose 0.5 s queries
    finished meanwhile on the same reactor: they get 503 only after about
    12 s, when the old worker's drain (--shutdown-timeout, 10 s) gives up
    ("1 handlers stuck past --handler-timeout; exiting"). Expected: they
    are answered promptly (their results were ready at 0.5 s; on the
    handler threads they answer 200), at the latest with the 504 at the
    handler timeout, not 10 s later."""
    need_pg()
    with pg_server(["--workers", "1", "--handler-timeout", "2"]) as s:
        bgs, spin = spin_with_neighbours(s, late=False, timeout=20)
        spin.join(12)
        check_eq(st(spin.response), 504, "the spinning request")
        for b in bgs:
            b.join(20)
        got = [(st(b.response), b.error and type(b.error).__name__,
                round(b.elapsed(), 1)) for b in bgs]
        check(all(b.response is not None and b.elapsed() < limit(3.5)
                  for b in bgs),
              "the neighbours of the spinning run: %r" % got)


def test_fresh11_4_a_thread_local_from_prepare_to_commit_mixes_requests():
    """FRESH11-4. docs/hooks.md: "All the hooks and the handler of one
    request run in sequence on one thread, so a _Thread_local variable in
    a module can carry a value from its prepare to its release (the
    example application measures each request's time that way)". An
    _app.c keeps the request's id in a _Thread_local in prepare and checks
    it in commit; its page runs on the reactor and waits 50 ms on the
    database; 20 requests at once. What happened: 19 of 20 commits found
    another request's id (the last prepare's) and answered 500; the
    example app's timings would be as wrong. Expected: as documented
    (or the page kept off the reactor while its chain has request hooks,
    or the docs and the example say a thread-local is not the request's
    there)."""
    need_pg()
    with pg_server(["--workers", "1", "--handler-timeout", "5"],
                   files={"_app.c": TL_APP}) as s:
        # as many runs as would promote a page without thread-locals
        for i in range(80):
            check_eq(st(s.get("/q?id=w%d" % i)), 200, "a warm-up run")
        check_in("has thread-local variables", s.stderr(), "the log")
        st0 = status(s)["coroutines"]
        rs, _ = parallel(s, ["/q?s=0.05&id=t%d" % i for i in range(20)])
        bad = [(i, st(r)) for i, r in enumerate(rs) if st(r) != 200]
        check(not bad, "%d of 20 failed: %r" % (len(bad), bad[:5]))
        check_eq(status(s)["coroutines"], st0, "requests run on the reactor")


def test_fresh11_5_no_coroutine_stack_stalls_the_reactor():
    """FRESH11-5. A worker whose address space is limited (RLIMIT_AS, as
    `ulimit -v`, set on the running server: room for about 30 coroutines,
    each reserving a 1 GiB guard) gets 120 requests at once to a page on
    the reactor that waits 0.3 s, pool of 4. What happened: the requests
    that got no coroutine stack ran on the reactor's own stack ("a request
    runs without one"); each blocked the reactor in its waits, and its
    wait for a pool connection held by a suspended coroutine never ended
    (the holder cannot resume): 0 answers in 4 s under wrk, a request
    after that got none either. Expected: they wait for a stack (or a
    handler thread) and all answer 200. Fixed: start() leaves a job queued
    while other jobs run and no stack can be had."""
    need_pg()
    import resource
    with pg_server(["--workers", "0", "--db-acquire-timeout", "30000"],
                   pool=4) as s:
        promote(s)
        with open("/proc/%d/status" % s.proc.pid) as f:
            vm = [ln for ln in f if ln.startswith("VmSize:")][0]
        size = int(vm.split()[1]) * 1024
        room = size + (30 << 30)
        resource.prlimit(s.proc.pid, resource.RLIMIT_AS, (room, room))
        paths = ["/q?s=0.3&id=n%d" % i for i in range(120)]
        rs, took = parallel(s, paths, timeout=25)
        bad = [(p, st(r)) for p, r in zip(paths, rs)
               if st(r) != 200 or r.text != "ok " + p.split("id=")[1]]
        check(not bad, "%d of 120 not answered right in %.1f s: %r"
              % (len(bad), took, bad[:4]))
        check_in("no coroutine stack", s.stderr(), "the log")


if __name__ == "__main__":
    sys.exit(harness.run_suite(globals(), sys.argv[1:],
                               suite_budget=SUITE_BUDGET,
                               test_timeout=TEST_TIMEOUT,
                               verbose_total=False))
