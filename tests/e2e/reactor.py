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


STREAM_HOLDER = harness.page(r'''
HP_HANDLER(http_handler)
{
    hp_db *db = hp_db(req);
    if (hp_db_exec(db, "SELECT 1") != HP_OK)
        return 500;
    /* the pool's only connection for 3.5 s, flushing every 0.5 s: each
     * flush starts --handler-timeout again, so the holder is not stuck */
    for (int i = 0; i < 7; i++) {
        hp_puts(req, "held\n");
        hp_flush(req);
        usleep(500000);
    }
    return HP_OK;
}
''', includes="#include <unistd.h>")


def test_pool_wait_on_the_reactor_ends_before_the_handler_timeout():
    """FRESH17-2 on the reactor: --db-pool-size 1, --db-acquire-timeout
    5000, --handler-timeout 2; the connection held 3.5 s by a streaming
    page: three requests of /q waiting for it on the reactor answer 503
    with Retry-After before 2 s (counted as pool timeouts), not 504."""
    need_pg()
    with pg_server(["--workers", "1", "--handler-timeout", "2",
                    "--db-pool-size", "1", "--db-acquire-timeout", "5000"],
                   files={"h.c": STREAM_HOLDER}) as s:
        promote(s)
        holder = harness.BackgroundRequest(s.port, "/h", timeout=20)
        holder.start()
        time.sleep(0.5)
        before = status(s)["coroutines"]
        harness.bounded_503s(s.port, "/q")
        check(status(s)["coroutines"] >= before + 3,
              "the waiters did not run on the reactor")
        check_eq(holder.join_result(20).status, 200, "the holder")
        check_eq(s.get_ok("/q").status, 200, "a request after")
        check("will be replaced" not in s.stderr(), "a worker replaced")


# /b: a query on the default pool (so that the page runs on the reactor),
# then, with ?hole=1, a connection from a pool on $HOLE_URL (opened on
# first use: one reactor thread, so no race).
HOLE_PAGE = harness.page(r'''
static hp_db_pool *hole;

HP_HANDLER(http_handler)
{
    if (hp_db_exec(hp_db(req), "SELECT 1") != HP_OK)
        return 500;
    if (hp_arg(req, "hole")) {
        if (!hole)
            hole = hp_db_pool_open(getenv("HOLE_URL"),
                                   &(struct hp_db_pool_opts){
                                       .name = "hole",
                                       .acquire_timeout_ms = 5000},
                                   NULL);
        if (!hp_db_from(req, hole))
            return 500;
    }
    hp_puts(req, "ok");
    return HP_OK;
}
''', includes="#include <stdlib.h>")


def test_connect_on_the_reactor_ends_before_the_handler_timeout():
    """Opening a PostgreSQL connection on the reactor is bounded like the
    pool's wait: a pool (acquire timeout 5 s) on a listener that accepts
    and never answers, --handler-timeout 2: three requests on the reactor
    answer 503 with Retry-After before 2 s, not 504, and no worker is
    replaced."""
    need_pg()
    with harness.SilentListener() as hole:
        s = Server(files={"b.c": HOLE_PAGE, "q.c": Q_PAGE},
                   args=["--db", PG_URL, "--workers", "1",
                         "--handler-timeout", "2"],
                   env={"HOLE_URL": "postgresql://u@127.0.0.1:%d/x"
                        % hole.port})
        with s:
            promote(s, "/b")
            before = status(s)["coroutines"]
            harness.bounded_503s(s.port, "/b?hole=1")
            check(status(s)["coroutines"] >= before + 3,
                  "the requests did not run on the reactor")
            check(hole.accepted >= 3, "the listener accepted %d"
                  % hole.accepted)
            check_eq(s.get_ok("/b").status, 200, "a request after")
            log = s.stderr()
            check("will be replaced" not in log and "stuck past" not in log,
                  "a worker replaced: %s" % log[-1500:])


# /s: a query on the default pool (the page runs on the reactor); with
# ?lite=1, SQLite's write lock on a pool on $LITE_URL (BEGIN IMMEDIATE),
# held across a pg_sleep(?s=) when given, then COMMIT.
LITE_PAGE = harness.page(r'''
static hp_db_pool *lite;

HP_HANDLER(http_handler)
{
    char *err = NULL;
    hp_db *pg = hp_db(req);
    if (hp_db_exec(pg, "SELECT 1") != HP_OK)
        return 500;
    if (!hp_arg(req, "lite")) {
        hp_puts(req, "ok");
        return HP_OK;
    }
    if (!lite)
        lite = hp_db_pool_open(getenv("LITE_URL"),
                               &(struct hp_db_pool_opts){.name = "lite"}, NULL);
    hp_db *l = hp_db_pool_acquire(lite, &err);
    if (!l)
        return 500;
    const char *s = hp_arg(req, "s");
    int ok = hp_db_exec(l, "BEGIN IMMEDIATE") == HP_OK &&
             hp_db_exec(l, "CREATE TABLE IF NOT EXISTS t (v)") == HP_OK &&
             (!s || hp_db_exec(pg, "SELECT pg_catalog.pg_sleep($1)::text",
                               s) == HP_OK) &&
             hp_db_exec(l, "COMMIT") == HP_OK;
    if (ok)
        hp_puts(req, "ok");
    else /* the failure is l's or pg's: the other's error is NULL */
        hp_printf(req, "ERR %s%s", hp_db_error(l) ? hp_db_error(l) : "",
                  hp_db_error(pg) ? hp_db_error(pg) : "");
    hp_db_pool_release(l);
    return ok ? HP_OK : 500;
}
''', includes="#include <stdlib.h>")


def test_sqlite_lock_waiter_on_the_reactor_lets_the_holder_commit():
    """Two requests on the reactor: one holds SQLite's write lock while it
    waits 1 s on PostgreSQL, the other wants the lock meanwhile. The
    waiter parks (it does not sleep the reactor's thread, which the holder
    needs to go on and commit): both answer 200, the waiter as soon as the
    holder commits."""
    need_pg()
    tmp = harness.tempfile.mkdtemp(prefix="hotpub-e2e-lite-")
    try:
        s = Server(files={"s.c": LITE_PAGE},
                   args=["--db", PG_URL, "--workers", "1"],
                   env={"LITE_URL": "sqlite:" + os.path.join(tmp, "lite.db")})
        with s:
            # on the handler threads first: the pool's two connections opened
            # (the file, WAL) there, not on the reactor, whose placement sends
            # a page that holds it that long back to the threads
            warm = harness.BackgroundRequest(s.port, "/s?lite=1&s=0.3")
            warm.start()
            time.sleep(0.1)
            check_eq(s.get_ok("/s?lite=1").status, 200, "warm-up")
            check_eq(warm.join_result(20).status, 200, "warm-up holder")
            promote(s, "/s")
            before = status(s)["coroutines"]
            holder = harness.BackgroundRequest(s.port, "/s?lite=1&s=1",
                                               timeout=20)
            holder.start()
            time.sleep(0.3)
            t0 = time.monotonic()
            r = s.request("/s?lite=1", timeout=20)
            took = time.monotonic() - t0
            h = holder.join_result(20)
            check_eq((h.status, h.text), (200, "ok"), "the holder")
            check_eq((r.status, r.text), (200, "ok"), "the waiter")
            check(took < limit(1.2), "the waiter took %.2f s (the holder "
                  "committed about 0.7 s after it came)" % took)
            check(status(s)["coroutines"] >= before + 2,
                  "the requests did not run on the reactor")
    finally:
        harness.shutil.rmtree(tmp, ignore_errors=True)


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


class HeldRequest(threading.Thread):
    """GET path on a connection of its own, reading to the end of the
    connection: .response (None: closed unanswered), .extra (a second
    status line after the first response, which must never come)."""

    def __init__(self, port, path, timeout=10.0):
        super().__init__(daemon=True)
        self.port, self.path, self.timeout = port, path, timeout
        self.response = self.error = None
        self.extra = False
        self.t0 = self.t1 = None

    def run(self):
        self.t0 = time.monotonic()
        try:
            self.response = harness.raw_request(
                self.port, ("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                            "Connection: close\r\n\r\n"
                            % self.path).encode(), timeout=self.timeout,
                read_all=True)
            if self.response is not None:
                self.extra = b"HTTP/1." in self.response.body
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.error = e
        self.t1 = time.monotonic()

    def elapsed(self):
        return (self.t1 or time.monotonic()) - (self.t0 or 0)

    def summary(self):
        r = self.response
        return (r and r.status, r and r.header("Retry-After"),
                self.error and type(self.error).__name__,
                round(self.elapsed(), 1))


def spinners_batch(s):
    """FRESH12-3's timing: a run holds the reactor 30 ms (under the 50 ms
    that demotes for good); meanwhile a run that spins for ever and three
    plain requests reach the reactor's queue, 4 ms apart. The three's
    HeldRequests."""
    promote(s)
    blk = harness.BackgroundRequest(s.port, "/q?block=30", timeout=20)
    blk.start()
    time.sleep(0.005)
    spin = harness.BackgroundRequest(s.port, "/q?spin=1", timeout=30)
    spin.start()
    behind = []
    for _ in range(3):
        time.sleep(0.004)
        b = HeldRequest(s.port, "/q")
        b.start()
        behind.append(b)
    return behind


def check_behind_the_spinner(behind, dev):
    """Each of the requests behind the spinner: 200 (it had not started:
    a handler thread ran it) or 503 with Retry-After: 1 (it had started
    and waited on the reactor: a coroutine cannot move to another thread,
    so it is answered and given up), within about 2 s, once."""
    for b in behind:
        b.join(12)
    got = [b.summary() for b in behind]
    harness.note("behind the spinner: %r" % (got,))
    for b in behind:
        r = b.response
        check(r is not None and b.elapsed() < limit(2.5) and not b.extra and
              (r.status == 200 or
               (r.status == 503 and r.header("Retry-After") == "1" and
                (not dev or b"q.c" in r.body))),
              "requests behind the spinner: %r" % (got,))


def test_fresh12_3_requests_started_before_a_spin_are_answered():
    """FRESH12-3. Dev mode, --workers 0, --handler-timeout 2: a 30 ms
    block, then a spinner and three plain requests 4 ms apart. What
    happened: the three never got an answer. They start on the reactor
    (their query is under way when the spinner's returns and it spins),
    and a started run cannot be finished on another thread, so a 200 is
    not to be had while the reactor is held: expected, each gets 200 if it
    had not started (moved to a handler thread after a second), else 503
    with Retry-After: 1 naming the spinning page, within about 2 s; none
    hangs, none is dropped unanswered."""
    need_pg()
    s = pg_server(["--workers", "0", "--handler-timeout", "2"])
    s.start()
    try:
        behind = spinners_batch(s)
        time.sleep(1.5)
        late = s.request("/q", timeout=8)
        check_eq(late.status, 200, "a request 1.5 s later")
        check_behind_the_spinner(behind, dev=True)
    finally:
        s.kill()  # the spinning run never ends: no clean stop to check


def test_fresh12_3b_with_workers_requests_started_before_a_spin_answered():
    """FRESH12-3b. Production, --workers 1, --handler-timeout 2: as
    FRESH12-3. What happened: the three got the drain's 503 at 3.2 s, when
    the worker was replaced. Expected as FRESH12-3: 200 if not started,
    else 503 with Retry-After: 1, within about 2 s (before the watchdog's
    504 and the drain, which then has nothing of theirs left to answer:
    each gets one response)."""
    need_pg()
    s = pg_server(["--handler-timeout", "2"])
    s.workers = 1
    s.dev = False
    s.start()
    try:
        check_behind_the_spinner(spinners_batch(s), dev=False)
    finally:
        s.stop(check=False)


def test_alone_in_production_held_requests_are_answered_once():
    """Production, --workers 0, --handler-timeout 2: two requests wait
    0.5 s on the reactor, a run spins there for ever. The two get 503 with
    Retry-After: 1 after about a second, and nothing more on their
    connections when the process exits 70 at the timeout (the drain's 503
    is for those not answered yet)."""
    need_pg()
    s = pg_server(["--workers", "0", "--handler-timeout", "2"])
    s.dev = False
    s.start()
    try:
        promote(s)
        held = [HeldRequest(s.port, "/q?s=0.5", timeout=20)
                for _ in range(2)]
        for b in held:
            b.start()
        time.sleep(0.2)
        spin = harness.BackgroundRequest(s.port, "/q?spin=1", timeout=30)
        spin.start()
        check_eq(s.proc.wait(timeout=limit(20)), 70, "exit status")
        for b in held:
            b.join(10)
        got = [b.summary() for b in held]
        check(all(b.response is not None and b.response.status == 503 and
                  b.response.header("Retry-After") == "1" and not b.extra and
                  b.elapsed() < limit(2.5) for b in held),
              "requests held on the reactor: %r" % (got,))
        check(b"q.c" not in held[0].response.body,
              "production's 503 names no file")
        check_in("q.c: a run has held the reactor", s.stderr(), "the log")
    finally:
        s.stop(check=False)


TABLE = "hp_held_%d_%d" % (os.getpid(), int(time.time() * 1000) % 100000)

# /w: ?setup=1 creates the table, ?drop=1 drops it, ?count=1&id= counts
# the rows of id; otherwise ?write=1 inserts id, then a query sleeps ?s=
# (its failure ignored, as a careless page would), then ?spin=MS holds
# the thread that long without waiting.
W_PAGE = page(r"""
HP_HANDLER(http_handler)
{
    hp_db *db = hp_db(req);
    const char *id = hp_arg(req, "id");
    if (hp_arg(req, "setup"))
        return hp_db_exec(db, "CREATE TABLE IF NOT EXISTS TBL (id text)")
                   == HP_OK ? HP_OK : 500;
    if (hp_arg(req, "drop"))
        return hp_db_exec(db, "DROP TABLE IF EXISTS TBL") == HP_OK ? HP_OK
                                                                   : 500;
    if (hp_arg(req, "count")) {
        hp_db_res *r = hp_db_query(db,
            "SELECT count(*)::text FROM TBL WHERE id = $1", id);
        hp_printf(req, "%s", r && hp_db_next(r) ? hp_db_text(r, 0) : "?");
        return r ? HP_OK : 500;
    }
    if (hp_arg(req, "write") &&
        hp_db_exec(db, "INSERT INTO TBL VALUES ($1)", id) != HP_OK)
        return 500;
    const char *s = hp_arg(req, "s");
    hp_db_query(db, "SELECT pg_catalog.pg_sleep($1)", s ? s : "0");
    const char *spin = hp_arg(req, "spin");
    if (spin) {
        struct timespec t0, t;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        do
            clock_gettime(CLOCK_MONOTONIC, &t);
        while ((t.tv_sec - t0.tv_sec) * 1000 +
                   (t.tv_nsec - t0.tv_nsec) / 1000000 < atoi(spin));
    }
    hp_printf(req, "ok %s", id ? id : "-");
    return HP_OK;
}
""".replace("TBL", TABLE), includes="#include <stdlib.h>\n#include <time.h>")


def test_a_write_given_up_on_a_held_reactor_is_not_committed():
    """Dev mode, --workers 0: a request inserts a row, then waits 1.5 s on
    the database on the reactor; a run of the same page then holds the
    reactor 3 s without waiting. The writer is answered 503 (Retry-After:
    1, the body naming w.c) after about a second. When the spinner
    returns, the writer's wait fails (as past --handler-timeout: its
    connection is closed), its transaction rolls back, and although the
    page ignores that failure and returns HP_OK, nothing is committed: the
    row is absent. The server answers normally afterwards, its counters
    are back to 0, and it stops cleanly at SIGTERM."""
    need_pg()
    with pg_server(["--workers", "0"], files={"w.c": W_PAGE}) as s:
        check_eq(s.request("/w?setup=1").status, 200, "create the table")
        try:
            promote(s, "/w")
            writer = HeldRequest(s.port, "/w?write=1&id=gone&s=1.5")
            writer.start()
            time.sleep(0.2)  # inserted, waiting on the database
            spin = harness.BackgroundRequest(s.port, "/w?spin=3000",
                                             timeout=20)
            spin.start()
            writer.join(10)
            spin.join(15)
            rows = s.get_ok("/w?count=1&id=gone").text
            r = writer.response
            check(r is not None and r.status == 503 and
                  r.header("Retry-After") == "1" and b"w.c" in r.body and
                  not writer.extra and writer.elapsed() < limit(3.0),
                  "the writer: %r (its rows: %s)" % (writer.summary(), rows))
            check_eq(rows, "0", "rows of the given-up writer")
            check_eq(st(spin.response), 200, "the spinner")
            check_eq(s.get_ok("/w?write=1&id=kept").text, "ok kept",
                     "a write after")
            check_eq(s.get_ok("/w?count=1&id=kept").text, "1",
                     "rows of the write after")
            check(harness.wait_until(
                lambda: status(s)["inflight"] == 0, limit(3.0)),
                "requests in flight: %r" % status(s)["inflight"])
            rs = status(s)["reactor"]
            check_eq((rs["active"], rs["queued"]), (0, 0), "reactor counters")
            check(rs["abandoned"] >= 1, "reactor.abandoned %r" % rs)
        finally:
            s.request("/w?drop=1")


def test_sigterm_while_a_run_holds_the_reactor_drains_when_it_returns():
    """Dev mode, --workers 0: two requests wait on the reactor, a run holds
    it 3 s; the two get 503 after about a second; SIGTERM then: the
    server waits for the run, which answers 200, and exits 0."""
    need_pg()
    s = pg_server(["--workers", "0"], files={"w.c": W_PAGE})
    s.start()
    try:
        promote(s, "/w")
        held = [HeldRequest(s.port, "/w?s=1&id=h%d" % i) for i in range(2)]
        for b in held:
            b.start()
        time.sleep(0.2)
        spin = harness.BackgroundRequest(s.port, "/w?spin=3000", timeout=20)
        spin.start()
        for b in held:
            b.join(10)
        got = [b.summary() for b in held]
        check(all(b.response is not None and b.response.status == 503
                  for b in held), "held: %r" % (got,))
        check(spin.is_alive(), "the spinner returned before the SIGTERM")
        os.kill(s.proc.pid, signal.SIGTERM)
        spin.join(15)
        check_eq(st(spin.response), 200, "the spinner")
        check_eq(s.proc.wait(timeout=15), 0, "exit status")
    finally:
        s.stop(check=False)


def st(r):
    return getattr(r, "status", repr(r))


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



def test_one_event_loop_runs_on_the_reactors_thread():
    """--io-threads 1: status.json says the reactor's thread runs the event
    loop; with two event loops, or --coroutines false, it does not. On it,
    waits still overlap (8 requests of 0.5 s each in well under 4 s), and a
    page a handler thread answers (its first run, while it compiles) is
    sent at once: the handler thread pokes the reactor."""
    need_pg()
    for args, want in ((["--io-threads", "1"], True),
                       (["--io-threads", "2"], False),
                       (["--io-threads", "1", "--coroutines", "false"],
                        False)):
        with pg_server(["--workers", "0"] + args,
                       files={"h.c": harness.simple_page("hi")}) as s:
            st_ = status(s)
            check_eq((st_["io_threads"], st_["loop_on_reactor"]),
                     (1 if "1" in args else 2, want), "with %r" % args)
            if not want:
                continue
            t0 = time.monotonic()
            check_eq(s.get_ok("/h").text, "hi", "a page's first run")
            check(time.monotonic() - t0 < limit(5.0), "it took %.1f s"
                  % (time.monotonic() - t0))
            promote(s)
            out, took = parallel(s, ["/q?s=0.5"] * 8)
            check(all(r is not None and r.status == 200 for r in out),
                  "the eight: %r" % [r and r.status for r in out])
            check(took < limit(2.5), "eight 0.5 s waits took %.1f s" % took)


def test_one_event_loop_takes_many_connections_at_once():
    """--io-threads 1: 300 connections opened at once (the accept thread
    queues them for the reactor's thread, which adds them to
    libmicrohttpd) are each answered."""
    with Server(files={"a.txt": "x" * 100},
                args=["--workers", "0", "--io-threads", "1",
                      "--connection-limit", "1000"]) as s:
        out = [None] * 300

        def one(i):
            try:
                out[i] = s.request("/a.txt", headers={"Connection": "close"},
                                   timeout=20)
            except Exception:  # noqa: BLE001 - reported as None
                out[i] = None
        ts = [threading.Thread(target=one, args=(i,)) for i in range(300)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        bad = [r and r.status for r in out if r is None or r.status != 200]
        check_eq(bad, [], "connections not answered 200")


def test_one_event_loop_is_served_while_a_run_holds_the_reactor():
    """--io-threads 1, --workers 0, dev mode: a run spins for ever on the
    reactor, which also runs the event loop. Once it has held it a second,
    the rescue thread runs the loop: a static file, a page on the handler
    threads and a request for the spinning page (reclaimed to a handler
    thread) are answered within about 2 s, and again later."""
    need_pg()
    s = pg_server(["--workers", "0", "--io-threads", "1",
                   "--handler-timeout", "30"],
                  files={"a.txt": "static", "h.c": harness.simple_page("hi")})
    s.start()
    try:
        check_eq(status(s)["loop_on_reactor"], True, "loop_on_reactor")
        s.get_ok("/h")
        promote(s)
        spin = harness.BackgroundRequest(s.port, "/q?spin=1", timeout=60)
        spin.start()
        time.sleep(0.2)
        for round_ in (1, 2):
            out, took = parallel(s, ["/a.txt", "/h", "/q"], timeout=10)
            check_eq([r and r.status for r in out], [200, 200, 200],
                     "round %d while the reactor is held" % round_)
            check_eq(out[0].text, "static", "the static file")
            check(took < limit(3.0), "round %d took %.1f s" % (round_, took))
    finally:
        s.kill()  # the spinning run never ends: no clean stop to check

if __name__ == "__main__":
    sys.exit(harness.run_suite(globals(), sys.argv[1:],
                               suite_budget=SUITE_BUDGET,
                               test_timeout=TEST_TIMEOUT,
                               verbose_total=False))
