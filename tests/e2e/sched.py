#!/usr/bin/env python3
"""hotpub scheduling end-to-end tests (docs/design.md, "Threading model").

    HOTPUB_BIN=/abs/path/hotpub python3 tests/e2e/sched.py [NAME-SUBSTRING...]
    python3 tests/e2e/sched.py --list

Many requests that block (a sleep, a held database connection) next to a
fast page: the handler threads grow, each module has its own queue and a
share of the threads, so the fast page keeps its latency, also right after
an edit (a cold new version). The load on the fast page is `wrk -c10 -d2s`
when wrk is installed, else ten Python keep-alive clients for 2 s.
HOTPUB_E2E_SLACK scales every time bound.
"""

import os
import re
import shutil
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import (Server, check, check_eq, fail, limit, note,  # noqa: E402
                     page, short, simple_page, wait_until)

TEST_TIMEOUT = 90.0
SUITE_BUDGET = 300.0
N_SLOW = 200


def sleeper(text, seconds=2):
    """Sleeps `seconds` (not with ?fast=1), then prints text."""
    return page('HP_HANDLER(http_handler)\n{\n'
                '    if (!hp_arg(req, "fast"))\n        sleep(%d);\n'
                '    hp_puts(req, "%s");\n    return HP_OK;\n}\n'
                % (seconds, text), includes="#include <unistd.h>")


class Blockers:
    """n concurrent GETs of path, one thread and connection each."""

    def __init__(self, port, path, n):
        self.port, self.path = port, path
        self.results = [None] * n
        self.threads = [threading.Thread(target=self._one, args=(i,),
                                         daemon=True) for i in range(n)]

    def _one(self, i):
        t0 = time.monotonic()
        try:
            r = harness.request(self.port, self.path, timeout=30)
            self.results[i] = (r.status, r.text, time.monotonic() - t0)
        except Exception as e:  # noqa: BLE001 - reported by check()
            self.results[i] = ("error", repr(e), time.monotonic() - t0)

    def start(self):
        self.t0 = time.monotonic()
        for t in self.threads:
            t.start()
        return self

    def join(self, timeout):
        deadline = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.0, deadline - time.monotonic()))
        return time.monotonic() - self.t0

    def check(self, want_text, within, statuses=(200,)):
        took = self.join(within + 5)
        bad = [r for r in self.results
               if r is None or r[0] not in statuses
               or (r[0] == 200 and r[1] != want_text)]
        check(not bad, "%d of %d blocking requests failed, e.g. %s"
              % (len(bad), len(self.results), short(repr(bad[:3]))))
        slowest = max(r[2] for r in self.results)
        note("%d blocking requests, the slowest took %.2f s (all done after "
             "%.2f s)" % (len(self.results), slowest, took))
        check(slowest <= within, "a blocking request took %.2f s, bound "
              "%.2f s" % (slowest, within))
        return self.results


# ---- load on the fast page -----------------------------------------------

def _wrk(port, path, conns, seconds):
    out = subprocess.run(["wrk", "-t2", "-c%d" % conns, "-d%ds" % seconds,
                          "--latency", "--timeout", "5s",
                          "http://127.0.0.1:%d%s" % (port, path)],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         universal_newlines=True, timeout=seconds + 30)
    text = out.stdout
    m = re.search(r"(\d+) requests in", text)
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    if out.returncode != 0 or not m or not p99:
        fail("wrk failed: %s" % short(text, 800))
    scale = {"us": 1e-6, "ms": 1e-3, "s": 1.0}[p99.group(2)]
    errors = 0
    e = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    errors += int(e.group(1)) if e else 0
    e = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), "
                  r"timeout (\d+)", text)
    errors += sum(int(x) for x in e.groups()) if e else 0
    return int(m.group(1)), float(p99.group(1)) * scale, errors


def _python_load(port, path, conns, seconds):
    lat, errors = [], [0]
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def client():
        c = harness.http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        mine, bad = [], 0
        while time.monotonic() < stop:
            t0 = time.monotonic()
            try:
                r = harness.request(port, path, conn=c)
                if r.status != 200:
                    bad += 1
            except Exception:  # noqa: BLE001 - counted
                bad += 1
                c.close()
                c = harness.http.client.HTTPConnection("127.0.0.1", port,
                                                       timeout=5)
            mine.append(time.monotonic() - t0)
        c.close()
        with lock:
            lat.extend(mine)
            errors[0] += bad

    ts = [threading.Thread(target=client, daemon=True) for _ in range(conns)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(seconds + 20)
    lat.sort()
    p99 = lat[max(0, int(len(lat) * 0.99) - 1)] if lat else float("inf")
    return len(lat), p99, errors[0]


def load(port, path, conns=10, seconds=2):
    """(requests, p99 seconds, errors) of `conns` keep-alive clients."""
    if shutil.which("wrk"):
        return _wrk(port, path, conns, seconds)
    return _python_load(port, path, conns, seconds)


def check_fast_under_load(s, path, want):
    """Every single request on path answers want within 0.5 s, and ten
    keep-alive clients for 2 s see p99 under 100 ms and no error."""
    for _ in range(5):
        t0 = time.monotonic()
        r = s.get(path, timeout=10)
        dt = time.monotonic() - t0
        check_eq((r.status, r.text), (200, want), "GET %s" % path)
        check(dt < limit(0.5), "GET %s took %.2f s" % (path, dt))
    n, p99, errors = load(s.port, path)
    note("load on %s: %d requests, p99 %.1f ms, %d errors"
         % (path, n, p99 * 1e3, errors))
    check_eq(errors, 0, "failed requests under load on %s" % path)
    check(n > 0, "no request under load")
    check(p99 < limit(0.1), "p99 %.1f ms on %s while others block"
          % (p99 * 1e3, path))


def wait_running(s, rel, n, timeout):
    """Until status.json shows at least n requests of module rel running on
    the handler threads; returns that module's entry."""
    def ok():
        m = s.module(rel)
        return m if m and m.get("running", 0) >= n else None
    m = wait_until(ok, timeout, 0.05)
    check(m, "module %s never had %d requests running: %s"
          % (rel, n, short(repr(s.module(rel)))))
    return m


# ---- the tests -------------------------------------------------------------

def test_edited_fast_page_beside_200_blocking_requests():
    """200 requests to a page that sleeps 2 s all succeed within 8 s;
    meanwhile a fast page just edited (a cold new version) serves its new
    output within 0.5 s, and under ten keep-alive clients for 2 s keeps a
    p99 under 100 ms with no error."""
    files = {"slow.c": sleeper("slow done"), "fast.c": simple_page("v1")}
    with Server(files=files) as s:
        s.get_ok("/slow?fast=1")
        check_eq(s.get_ok("/fast").text, "v1", "fast page before the edit")
        b = Blockers(s.port, "/slow", N_SLOW).start()
        m = wait_running(s, "slow.c", 32, limit(3.0))
        t_edit = time.monotonic()
        s.write("fast.c", simple_page("v2"), how="rename")
        took = s.wait_body("/fast", "v2", limit(2.0), allowed_bodies=("v1",))
        note("the edit served after %.3f s (slow.c: %s)"
             % (took, {k: m.get(k) for k in ("running", "queued")}))
        check(time.monotonic() - t_edit < limit(0.5) + 0.06,
              "the edited fast page took %.2f s to serve its new output"
              % (time.monotonic() - t_edit))
        check_fast_under_load(s, "/fast", "v2")
        st = s.status_json()
        th = st["server"]["threads"]
        note("threads %s" % th)
        check(th["live"] > 32 and th["max"] >= th["live"],
              "threads did not grow: %s" % th)
        b.check("slow done", limit(8.0))


def test_edited_slow_page_beside_a_fast_page():
    """The same, with the slow page edited just before 200 requests reach
    its cold new version: they wait for its build on the handler threads,
    then all succeed within 8 s with the new output; the fast page keeps
    answering within 0.5 s and its p99 under 100 ms."""
    files = {"slow.c": sleeper("slow v1"), "fast.c": simple_page("fast")}
    with Server(files=files) as s:
        s.get_ok("/slow?fast=1")
        s.get_ok("/fast")
        s.write("slow.c", sleeper("slow v2"), how="rename")
        b = Blockers(s.port, "/slow", N_SLOW).start()
        check_fast_under_load(s, "/fast", "fast")
        m = s.module("slow.c")
        note("slow.c after the load: running %s queued %s"
             % (m.get("running"), m.get("queued")))
        results = b.check("slow v2", limit(8.0))
        check(all(r[2] >= 1.9 for r in results),
              "a request of the sleeping page took under 1.9 s")
        st = s.status_json()
        m = s.module("slow.c", st)
        check_eq((m["running"], m["queued"]), (0, 0),
                 "slow.c running and queued once done")


HOLDER = page(r'''
HP_HANDLER(hold)
{
    hp_db *db = hp_db(req);
    if (hp_db_exec(db, "SELECT 1") != HP_OK)
        return 500;
    sleep(2); /* keeps its connection */
    hp_puts(req, "held");
    return HP_OK;
}
''', includes="#include <unistd.h>")


def test_page_holding_db_connections_does_not_stall_others():
    """40 requests to a page that holds a database connection for 2 s (a
    pool of 4, so most wait for one and get 503 after the 1 s acquire
    timeout): pages that do not use the database keep answering within
    0.5 s with a p99 under 100 ms."""
    files = {"h.c": HOLDER, "fast.c": simple_page("fast"),
             "other.c": simple_page("other")}
    s = Server(files=files, start=False)
    s.args += ["--db", "sqlite:" + os.path.join(s.tmp, "app.db"),
               "--db-pool-size", "4", "--db-acquire-timeout", "1000"]
    with s.start():
        s.get_ok("/fast")
        b = Blockers(s.port, "/h/hold", 40).start()
        wait_until(lambda: (s.status_json().get("pools") or [{}])[0]
                   .get("waiters", 0) > 0, limit(3.0), 0.05) or \
            fail("no request waited for a database connection: %s"
                 % short(repr(s.status_json().get("pools"))))
        check_fast_under_load(s, "/fast", "fast")
        check_eq(s.get_ok("/other").text, "other", "a page loaded meanwhile")
        results = b.check("held", limit(8.0), statuses=(200, 503))
        ok = sum(1 for r in results if r[0] == 200)
        busy = [r for r in results if r[0] == 503]
        note("%d held a connection, %d got 503" % (ok, len(busy)))
        check(ok >= 4, "only %d requests got a connection" % ok)
        check(busy, "no request got 503 with 4 connections held 2 s and a "
              "1 s acquire timeout")
        check(all("database busy" in r[1] for r in busy),
              "503 body: %s" % short(busy[0][1]))
        check(all(r[2] >= 0.9 for r in busy),
              "a 503 came before the acquire timeout: %.2f s"
              % min(r[2] for r in busy))


QUICK_DB = page(r'''
HP_HANDLER(q)
{
    if (hp_db_exec(hp_db(req), "SELECT 1") != HP_OK)
        return 500;
    hp_puts(req, "q");
    return HP_OK;
}
''')


def test_promoted_db_page_does_not_wait_on_an_event_loop():
    """A page proven fast (promoted to the event loops) that uses the
    database is offloaded while the pool has no free connection, so its
    wait for one (here: a 503 after the 2 s acquire timeout) stalls no
    event loop: pages on the other connections keep answering."""
    files = {"h.c": HOLDER.replace("sleep(2)", "sleep(3)"), "d.c": QUICK_DB,
             "fast.c": simple_page("fast")}
    s = Server(files=files, start=False)
    s.args += ["--db", "sqlite:" + os.path.join(s.tmp, "app.db"),
               "--db-pool-size", "4", "--db-acquire-timeout", "2000"]
    with s.start():
        conn = s.connection()
        for _ in range(100):
            check_eq(harness.request(s.port, "/d/q", conn=conn).text, "q",
                     "warm-up of the database page")
        n0 = s.status_json()["server"]["inlined"]
        for _ in range(5):
            harness.request(s.port, "/d/q", conn=conn)
        conn.close()
        if s.status_json()["server"]["inlined"] < n0 + 5:
            raise harness.Skip("the database page was not promoted (a "
                               "slow run on this busy machine)")
        idle = [s.connection(timeout=10) for _ in range(8)]
        for c in idle:
            check_eq(harness.request(s.port, "/fast", conn=c).status, 200,
                     "a keep-alive connection")
        holders = Blockers(s.port, "/h/hold", 4).start()
        wait_until(lambda: s.status_json()["pools"][0]["in_use"] == 4,
                   limit(3.0), 0.05) or fail("the holders took no connection")
        waiting = Blockers(s.port, "/d/q", 8).start()
        time.sleep(0.3)
        slow = []
        for i, c in enumerate(idle * 2):
            t0 = time.monotonic()
            r = harness.request(s.port, "/fast", conn=c)
            dt = time.monotonic() - t0
            check_eq(r.status, 200, "/fast on a keep-alive connection")
            if dt >= limit(0.5):
                slow.append((i, round(dt, 2)))
        for c in idle:
            c.close()
        check(not slow, "requests stalled while a promoted database page "
              "waited for a connection: %s" % (slow,))
        waiting.check("q", limit(6.0), statuses=(200, 503))
        holders.check("held", limit(6.0))


def test_threads_grow_and_shrink():
    """The floor is --threads; blocking work grows the pool past it up to
    --max-threads, and threads idle for --thread-idle-timeout exit; the
    module's share caps how many of its requests run at once."""
    with Server(files={"slow.c": sleeper("done", 1)},
                args=["--threads", "2", "--max-threads", "20",
                      "--module-thread-share", "50",
                      "--thread-idle-timeout", "0.5"]) as s:
        th = s.status_json()["server"]["threads"]
        check_eq((th["live"], th["min"], th["max"], th["module_share"]),
                 (2, 2, 20, 10), "threads at start")
        s.get_ok("/slow?fast=1")
        b = Blockers(s.port, "/slow", 15).start()
        m = wait_running(s, "slow.c", 10, limit(3.0))
        time.sleep(0.2)
        st = s.status_json()
        m = s.module("slow.c", st)
        th = st["server"]["threads"]
        check_eq((m["running"], m["queued"]), (10, 5),
                 "slow.c running and queued at its share of 10")
        check(th["live"] >= 10 and th["busy"] == 10, "threads %s" % th)
        b.check("done", limit(4.0))
        shrunk = wait_until(
            lambda: s.status_json()["server"]["threads"]["live"] == 2,
            limit(3.0), 0.1)
        check(shrunk, "threads did not shrink back to 2: %s"
              % s.status_json()["server"]["threads"])
        check(s.status_json()["server"]["threads"]["retired"] >= 8,
              "retired count")


def test_every_worker_shows_its_threads():
    """With worker processes, status.json lists each worker's handler
    threads (live, busy, max), whichever worker answers."""
    with Server(files={"slow.c": sleeper("done", 1)}, workers=2,
                args=["--threads", "3", "--max-threads", "40"]) as s:
        def two_ready():
            st = s.status_json().get("processes", {})
            ws = [w for w in st.get("workers", []) if w["state"] == "ready"]
            return ws if len(ws) == 2 else None
        ws = wait_until(two_ready, limit(10.0), 0.1)
        check(ws, "two ready workers: %s" % short(repr(s.status_json()
                                                     .get("processes"))))
        for w in ws:
            check_eq((w["threads"]["live"], w["threads"]["max"]), (3, 40),
                     "threads of worker %s" % w["pid"])
        st = s.status_json()
        check_eq((st["server"]["threads"]["live"],
                  st["server"]["threads"]["max"]), (3, 40),
                 "the answering worker's threads")
        b = Blockers(s.port, "/slow", 12).start()

        def busy():
            ws = s.status_json()["processes"]["workers"]
            n = sum(w["threads"]["busy"] for w in ws)
            return ws if n >= 12 else None
        ws = wait_until(busy, limit(3.0), 0.05)
        check(ws, "12 busy threads over the workers: %s" % short(repr(
            s.status_json()["processes"]["workers"])))
        check(sum(w["threads"]["live"] for w in ws) >= 12,
              "threads did not grow: %s" % ws)
        b.check("done", limit(4.0))


# ---- a page that blocks now and then (placement.c) --------------------------

def periodic_page(every, sleep_us):
    """Sleeps sleep_us once in every `every` runs (the last of each)."""
    return page(r"""
#include <stdatomic.h>
#include <unistd.h>
static atomic_long runs;
HP_HANDLER(http_handler)
{
    if (atomic_fetch_add(&runs, 1) %% %d == %d)
        usleep(%d);
    hp_puts(req, "p");
    return HP_OK;
}
""" % (every, every - 1, sleep_us))


def _stalls(every, sleep_ms, runs):
    """(sleeps seen by /p's client, sleeps that stalled /hello, n /hello,
    log): /hello on 4 keep-alive connections while one client runs /p
    `runs` times (one event loop of --workers 0 or another holds them). A
    sleep of /p stalled /hello when a /hello request was in flight for
    over 75% of that sleep while /p slept, and took that long: held up by
    its event loop (offloaded, /p holds only a handler thread)."""
    with Server(files={"p.c": periodic_page(every, sleep_ms * 1000),
                       "hello.c": simple_page("hello")},
                args=["--workers", "0"], dev=False) as s:
        s.get_ok("/hello")
        stop = threading.Event()
        lat = []
        bound = sleep_ms * 0.75 / 1000

        def hello():
            c = s.connection(timeout=30)
            while not stop.is_set():
                t0 = time.monotonic()
                s.request("/hello", conn=c)
                lat.append((t0, time.monotonic()))
                time.sleep(0.005)
        hs = [threading.Thread(target=hello, daemon=True) for _ in range(4)]
        for h in hs:
            h.start()
        c = s.connection(timeout=30)
        sleeps = []
        for _ in range(runs):
            t0 = time.monotonic()
            r = s.request("/p", conn=c)
            check_eq(r.status, 200, "/p")
            if time.monotonic() - t0 > bound:
                sleeps.append((t0, time.monotonic()))
        stop.set()
        for h in hs:
            h.join(30)
        held = [(a, b) for a, b in lat if b - a > bound]
        stalls = sum(1 for p0, p1 in sleeps
                     if any(min(b, p1) - max(a, p0) > bound for a, b in held))
        note("/p slept %d times, /hello n=%d, slow %d, stalled by %d sleeps"
             % (len(sleeps), len(lat), len(held), stalls))
        return len(sleeps), stalls, len(lat), s.stderr()


def test_page_that_blocks_now_and_then_stalls_an_event_loop_once():
    """FRESH8-4. docs/design.md ("Where a page runs"): an inline run over
    50 ms of the page's own time (not waiting for a CPU) demotes it for
    good. placement.c made such a run only a strike and a 'suspect' (back
    inline after 32 fast runs), demoted after 3 strikes, and strikes
    expired after 1024 fast runs: a page that sleeps 200 ms once every
    1100 requests was promoted again after each sleep, and each of its
    sleeps stalled every keep-alive connection of its event loop (/hello
    waited 200 ms five times in 5500 runs). Expected: at most one such
    stall, and the page demoted (logged)."""
    slow, stalls, n, err = _stalls(1100, 200, 5500)
    check(slow >= 4, "the page did not sleep as planned (%d)" % slow)
    check(stalls <= 1, "/hello was held by %d of /p's %d sleeps (%d "
          "requests); the log: %s" % (stalls, slow, n, short(err, 800)))
    check(stalls == 0 or "for good" in err,
          "a stall and no demotion in the log: %s" % short(err, 800))


def test_page_that_blocks_45ms_every_40_runs_is_demoted():
    """FRESH8-4b. A run under 50 ms inline was not even a strike, only a
    'suspect': a page that sleeps 45 ms every 40th request went back
    inline after each 32 fast runs and stalled its event loop 45 ms every
    40 requests for ever (50 stalls in 2000 runs, one log line). Now each
    such suspicion doubles the fast runs in a row re-promotion needs, and
    a sleep on the handler threads (probed) is a strike that restarts the
    count: the page is not promoted again, and demoted after 3 strikes.
    Expected: at most 3 stalls."""
    slow, stalls, n, err = _stalls(40, 45, 2000)
    check(slow >= 20, "the page did not sleep as planned (%d)" % slow)
    check(stalls <= 3, "/hello was held by %d of /p's %d sleeps (%d "
          "requests); the log: %s" % (stalls, slow, n, short(err, 800)))


if __name__ == "__main__":
    sys.exit(harness.run_suite(globals(), sys.argv[1:],
                               suite_budget=SUITE_BUDGET,
                               test_timeout=TEST_TIMEOUT))
