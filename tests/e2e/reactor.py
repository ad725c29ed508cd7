#!/usr/bin/env python3
"""hotpub end-to-end tests: pages that wait on PostgreSQL run as coroutines
on each worker's reactor (src/reactor.c, src/placement.c, docs/design.md
"Where a page runs"). Every test needs PostgreSQL: without HOTPUB_PG_URL
each prints "skip" and does not count.

    HOTPUB_BIN=/abs/path/hotpub HOTPUB_PG_URL=postgresql://... \\
        python3 tests/e2e/reactor.py [NAME-SUBSTRING...]

Output, as in run.py: one line per test ("ok   name", "skip name: why" or
"FAIL name: reason", then the server's stderr tail), then "N passed, N
failed"; the exit status is 1 if any test failed.
"""

import json
import os
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import (Server, check, check_eq, check_in,  # noqa: E402
                     limit, page)

TEST_TIMEOUT = 90.0
SUITE_BUDGET = 300.0
PG_URL = os.environ.get("HOTPUB_PG_URL", "").strip()

# /q: one query, pg_sleep(s) when ?s= is given; ?block=MS sleeps on the
# thread after it (not a wait the reactor can overlap); ?crash=1 faults
# after the query. It answers the thread it ran on, for the tests to see.
Q_PAGE = page(r'''
/* A frame larger than any coroutine stack hotpub is given by default. */
__attribute__((noinline)) static int deep(hp_req *req)
{
    volatile char big[8 << 20];
    big[0] = 1;
    big[sizeof big - 1] = 2;
    hp_printf(req, "%d", big[0] + big[sizeof big - 1]);
    return HP_OK;
}

HP_HANDLER(http_handler)
{
    hp_db *db = hp_db(req);
    const char *s = hp_arg(req, "s");
    hp_db_res *r = hp_db_query(db, "SELECT pg_catalog.pg_sleep($1)::text",
                               s ? s : "0");
    if (!r) {
        hp_printf(req, "ERR %s", hp_db_error(db));
        return 500;
    }
    while (hp_db_next(r))
        ;
    const char *b = hp_arg(req, "block");
    if (b)
        usleep((useconds_t)atoi(b) * 1000);
    if (hp_arg(req, "crash"))
        *(volatile int *)16 = 1;
    if (hp_arg(req, "deep"))
        return deep(req);
    if (hp_arg(req, "spin"))
        for (volatile int i = 0;; i++)
            ;
    hp_printf(req, "ok %ld", (long)syscall(SYS_gettid));
    return HP_OK;
}
''', includes="#include <stdlib.h>\n#include <sys/syscall.h>\n"
              "#include <unistd.h>")


def need_pg():
    if not PG_URL:
        raise harness.Skip("no HOTPUB_PG_URL")


def pg_server(args=None, files=None):
    files = dict(files or {})
    files.setdefault("q.c", Q_PAGE)
    return Server(files=files,
                  args=["--db", PG_URL, "--db-pool-size", "32"] +
                  list(args or []))


def status(s):
    return json.loads(s.get_ok("/_hotpub/status.json").text)["server"]


def promote(s, path="/q"):
    """Run path until its requests run on the reactor (status.json's
    coroutines count grows); fails if they never do."""
    before = status(s)["coroutines"]
    for _ in range(400):
        s.get_ok(path)
        if status(s)["coroutines"] > before:
            return
    harness.fail("%s never ran on the reactor; log:\n%s"
                 % (path, s.stderr_tail(15)))


def parallel(s, paths, timeout=20.0):
    """GET every path at once, each on its own connection; the responses
    in order (None for a failure) and the seconds all took."""
    out = [None] * len(paths)

    def one(i, p):
        try:
            out[i] = s.request(p, headers={"Connection": "close"},
                               timeout=timeout)
        except Exception:  # noqa: BLE001 - reported as None
            out[i] = None
    ts = [threading.Thread(target=one, args=(i, p))
          for i, p in enumerate(paths)]
    t0 = time.monotonic()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return out, time.monotonic() - t0


def test_waits_overlap_on_the_reactor_with_one_handler_thread():
    """With one handler thread, ten requests that each wait 0.4 s on
    PostgreSQL finish together once the page runs on the reactor (about
    0.4 s, not 4 s one after the other), all on one thread."""
    need_pg()
    with pg_server(["--workers", "0", "--threads", "1",
                    "--max-threads", "1"]) as s:
        promote(s)
        check_in("now run as coroutines on the reactor", s.stderr())
        rs, took = parallel(s, ["/q?s=0.4"] * 10)
        check(all(r is not None and r.status == 200 for r in rs),
              "every request answered 200: %r" % [r and r.status for r in rs])
        check(took < limit(2.0), "ten 0.4 s waits took %.2f s" % took)
        tids = {r.text.split()[1] for r in rs}
        check_eq(len(tids), 1, "threads the ten ran on")
        st = status(s)
        check(st["reactor"]["waits"] >= 10, "reactor waits %r" % st["reactor"])


def test_a_page_that_blocks_on_the_reactor_leaves_it():
    """A promoted page whose run holds the reactor 200 ms without waiting
    on the database (usleep) runs on the handler threads from then on, for
    good (over 50 ms), and the log says so; its requests still answer."""
    need_pg()
    with pg_server(["--workers", "0"]) as s:
        promote(s)
        check_eq(s.get_ok("/q?block=200").status, 200, "the blocking run")
        check_in("held the reactor", s.stderr())
        check_in("for good", s.stderr())
        before = status(s)["coroutines"]
        for _ in range(80):
            s.get_ok("/q")
        check_eq(status(s)["coroutines"], before, "coroutine runs after")


def test_a_wait_past_the_handler_timeout_gets_504_and_the_pool_recovers():
    """--handler-timeout 1: a query of 5 s on the reactor is given up at
    about 1 s with a 504; the connection is not pooled again, and the next
    requests (on the reactor too) answer."""
    need_pg()
    with pg_server(["--workers", "0", "--handler-timeout", "1"]) as s:
        promote(s)
        t0 = time.monotonic()
        r = s.request("/q?s=5", timeout=10)
        took = time.monotonic() - t0
        check_eq(r.status, 504, "the 5 s query")
        check(took < limit(3.0), "the 504 took %.2f s" % took)
        for _ in range(20):
            check_eq(s.get_ok("/q").status, 200, "a request after")


def test_other_requests_go_on_while_one_waits_long():
    """One request waits 1.5 s on the reactor; meanwhile forty short ones
    on the same page answer, each well before it."""
    need_pg()
    with pg_server(["--workers", "0", "--threads", "1",
                    "--max-threads", "1"]) as s:
        promote(s)
        slow = harness.BackgroundRequest(s.port, "/q?s=1.5", timeout=20)
        slow.start()
        time.sleep(0.2)
        t0 = time.monotonic()
        for _ in range(40):
            s.get_ok("/q")
        took = time.monotonic() - t0
        check(took < limit(1.2), "forty short requests took %.2f s" % took)
        slow.join()
        check_eq(slow.response.status, 200, "the slow request")


def test_a_crash_on_the_reactor_names_the_page():
    """A fault in a page on the reactor is that page's: the worker's crash
    answer (502) names q.c, and the next worker serves the page."""
    need_pg()
    with pg_server(["--workers", "1"]) as s:
        promote(s)
        r = s.request("/q?crash=1", timeout=15)
        check_eq(r.status, 502, "the crashing request")
        check_in("q.c", r.text + s.stderr(), "the crash report")
        harness.wait_until(lambda: s.request("/q").status == 200, 15)


def test_a_stack_overflow_on_the_reactor_is_named_as_one():
    """A frame of 8 MiB on a coroutine's stack (--thread-stack-size, 512
    KiB by default) faults on its guard: the log calls it a stack overflow
    of a 512 KiB stack and names --thread-stack-size, as on a handler
    thread."""
    need_pg()
    with pg_server(["--workers", "1"]) as s:
        promote(s)
        r = s.request("/q?deep=1", timeout=15)
        check_eq(r.status, 502, "the overflowing request")
        check(harness.wait_until(lambda: "stack overflow" in s.stderr(),
                                 limit(3.0)),
              "the log does not say stack overflow")
        check_in("stack (512 KiB)", s.stderr(), "the log's size")
        check_in("--thread-stack-size", s.stderr(), "the log's hint")


def test_alone_in_production_a_run_that_holds_the_reactor_exits_70():
    """--workers 0, production, --handler-timeout 2: a run on the reactor
    spins for ever after its query while two others wait 0.5 s there (their
    results arrive, but the reactor cannot resume them).
    Past the timeout the process says so, stops as for a SIGTERM, answers
    the two it holds 503 rather than leaving them without an answer, and
    exits 70 for its supervisor."""
    need_pg()
    s = pg_server(["--workers", "0", "--handler-timeout", "2"])
    s.dev = False
    s.start()
    try:
        promote(s)
        held = [harness.BackgroundRequest(s.port, "/q?s=0.5", timeout=30)
                for _ in range(2)]
        for b in held:
            b.start()
        time.sleep(0.2)  # both wait on the database, on the reactor
        spin = harness.BackgroundRequest(s.port, "/q?spin=1", timeout=30)
        spin.start()
        check_eq(s.proc.wait(timeout=limit(20)), 70, "exit status")
        for b in held:
            b.join(10)
            check(b.response is not None and b.response.status == 503,
                  "a request held on the reactor: %r %r"
                  % (b.response and b.response.status, b.error))
            check(b.elapsed() < limit(8.0), "answered after %.1f s"
                  % b.elapsed())
        check_in("held the reactor", s.stderr())
    finally:
        s.stop(check=False)


def test_requests_queued_behind_a_run_that_holds_the_reactor_move():
    """--workers 0, dev mode: a run spins for ever on the reactor; a
    request that reached the reactor's queue 0.2 s later, before the
    reactor counted as stalled (1 s), is taken back and answered on a
    handler thread, and so are the next ones; the log says once that the
    reactor is held."""
    need_pg()
    s = pg_server(["--workers", "0", "--handler-timeout", "2"])
    s.start()
    try:
        promote(s)
        spin = harness.BackgroundRequest(s.port, "/q?spin=1", timeout=30)
        spin.start()
        time.sleep(0.2)
        t0 = time.monotonic()
        r = s.request("/q", timeout=10)
        check_eq(r.status, 200, "the request queued behind the spin")
        check(time.monotonic() - t0 < limit(3.0), "it took %.1f s"
              % (time.monotonic() - t0))
        check_eq(s.get_ok("/q").status, 200, "a later request")
        check(harness.wait_until(lambda: "has held the reactor" in
                                 s.stderr(), limit(5.0)),
              "the log does not say the reactor is held")
    finally:
        s.kill()  # the spinning run never ends: no clean stop to check


def test_shutdown_lets_requests_on_the_reactor_finish():
    """SIGTERM while five requests wait 0.8 s each on the reactor: all five
    answer 200 and the server exits 0."""
    need_pg()
    s = pg_server(["--workers", "0"])
    s.start()
    try:
        promote(s)
        bgs = [harness.BackgroundRequest(s.port, "/q?s=0.8", timeout=20)
               for _ in range(5)]
        for b in bgs:
            b.start()
        time.sleep(0.3)
        os.kill(s.proc.pid, signal.SIGTERM)
        for b in bgs:
            b.join()
            check(b.response is not None and b.response.status == 200,
                  "a request in flight at SIGTERM: %r" % b.response)
        check_eq(s.proc.wait(timeout=15), 0, "exit status")
    finally:
        s.stop(check=False)


def test_coroutines_false_keeps_pages_on_the_handler_threads():
    """--coroutines false: after many fast runs, none ran on the reactor."""
    need_pg()
    with pg_server(["--workers", "0", "--coroutines", "false"]) as s:
        for _ in range(120):
            s.get_ok("/q")
        check_eq(status(s)["coroutines"], 0, "coroutine runs")


if __name__ == "__main__":
    sys.exit(harness.run_suite(globals(), sys.argv[1:],
                               suite_budget=SUITE_BUDGET,
                               test_timeout=TEST_TIMEOUT,
                               verbose_total=False))
