#!/usr/bin/env python3
"""hotpub end-to-end tests from a tester's round (fresh13) on this
session's changes: the stalled reactor's 503s, thread-local state kept off
the reactor, the pool's one queue, templates, JSON and hp_db_int. Each
test_fresh13_N_* is a finding, open when written (it fails on the binary
it was written against); the test_fresh13_probe_* tests are what held.
Open when written: FRESH13-1 and 1b (a lock owned by a thread held across
a query: on the reactor a plain mutex deadlocks the page, a recursive one
excludes nothing), FRESH13-2 (hp_db_int of a positive value past
LLONG_MAX as a float reads LLONG_MIN). All three are fixed: a chain that
imports a lock function stays off the reactor (loader.c, lock_fns), and
hp_db_int saturates (db_result.c). Tests that need PostgreSQL print
"skip" without HOTPUB_PG_URL.

    HOTPUB_BIN=/abs/path/hotpub HOTPUB_PG_URL=postgresql://... \\
        python3 tests/e2e/fresh13.py [NAME-SUBSTRING...]
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
from fresh11 import PG_URL, need_pg  # noqa: E402

TEST_TIMEOUT = 90.0
SUITE_BUDGET = 900.0
TABLE = "hp_f13_%d_%d" % (os.getpid(), int(time.time() * 1000) % 100000)


# /w: ?setup / ?drop / ?count=1&id= manage the table; otherwise, unless
# ?nodb (no database at all), ?write=1 inserts id, a query sleeps ?s=
# (its failure ignored, as a careless page would), ?write2=1 inserts id
# again after it; then ?spin=MS holds the thread that long (-1: for ever)
# without waiting. ?sess=1 sets the session's k to id first (its lock);
# ?getsess=1 answers k.
W_PAGE = page(r"""
HP_HANDLER(http_handler)
{
    const char *id = hp_arg(req, "id");
    const char *spin = hp_arg(req, "spin");
    if (hp_arg(req, "getsess")) {
        const char *k = hp_session_get(req, "k");
        hp_printf(req, "%s", k ? k : "(none)");
        return HP_OK;
    }
    if (!hp_arg(req, "nodb")) {
        if (hp_arg(req, "sess"))
            hp_session_set(req, "k", id ? id : "-");
        hp_db *db = hp_db(req);
        if (hp_arg(req, "setup"))
            return hp_db_exec(db, "CREATE TABLE IF NOT EXISTS TBL (id text)")
                       == HP_OK ? HP_OK : 500;
        if (hp_arg(req, "drop"))
            return hp_db_exec(db, "DROP TABLE IF EXISTS TBL") == HP_OK
                       ? HP_OK : 500;
        if (hp_arg(req, "count")) {
            hp_db_res *r = hp_db_query(db,
                "SELECT count(*)::text FROM TBL WHERE id = $1", id);
            hp_printf(req, "%s", r && hp_db_next(r) ? hp_db_text(r, 0) : "?");
            return r ? HP_OK : 500;
        }
        if (hp_arg(req, "write"))
            hp_db_exec(db, "INSERT INTO TBL VALUES ($1)", id);
        const char *s = hp_arg(req, "s");
        hp_db_query(db, "SELECT pg_catalog.pg_sleep($1)", s ? s : "0");
        if (hp_arg(req, "write2"))
            hp_db_exec(db, "INSERT INTO TBL VALUES ($1)", id);
    }
    if (spin) {
        struct timespec t0, t;
        long ms = atol(spin);
        clock_gettime(CLOCK_MONOTONIC, &t0);
        do
            clock_gettime(CLOCK_MONOTONIC, &t);
        while (ms < 0 || (t.tv_sec - t0.tv_sec) * 1000 +
                   (t.tv_nsec - t0.tv_nsec) / 1000000 < ms);
    }
    hp_printf(req, "ok %s", id ? id : "-");
    return HP_OK;
}
""".replace("TBL", TABLE), includes="#include <stdlib.h>\n#include <time.h>")


def pg_server(args=None, files=None, pool=32, dev=None, env=None):
    files = dict(files or {})
    files.setdefault("w.c", W_PAGE)
    s = Server(files=files, env=env,
               args=["--db", PG_URL, "--db-pool-size", str(pool)] +
               list(args or []))
    if dev is not None:
        s.dev = dev
    return s


def status(s):
    return json.loads(s.get_ok("/_hotpub/status.json").text)["server"]


def promote(s, path="/w"):
    before = status(s)["coroutines"]
    sep = "&" if "?" in path else "?"
    for i in range(400):
        s.get_ok(path + sep + "id=p%d" % i)
        if status(s)["coroutines"] > before:
            return
    harness.fail("%s never ran on the reactor; log:\n%s"
                 % (path, s.stderr_tail(15)))


def promoted(s, path, n=150):
    before = status(s)["coroutines"]
    sep = "&" if "?" in path else "?"
    for i in range(n):
        s.get_ok(path + sep + "id=x%d" % i)
        if status(s)["coroutines"] > before:
            return True
    return False


class Held(threading.Thread):
    """One request (GET, or POST with a form body) on a connection of its
    own, read to the end: .response (None: closed unanswered), .extra (a
    second status line, which must never come)."""

    def __init__(self, port, path, method="GET", cookie=None, timeout=20.0):
        super().__init__(daemon=True)
        self.port, self.path, self.method = port, path, method
        self.cookie, self.timeout = cookie, timeout
        self.response = self.error = None
        self.extra = False
        self.t0 = self.t1 = None

    def run(self):
        self.t0 = time.monotonic()
        body = b"x=1" if self.method == "POST" else b""
        head = ("%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                % (self.method, self.path))
        if self.cookie:
            head += "Cookie: %s\r\n" % self.cookie
        if self.method == "POST":
            head += ("Content-Type: application/x-www-form-urlencoded\r\n"
                     "Content-Length: %d\r\n" % len(body))
        try:
            self.response = harness.raw_request(
                self.port, (head + "\r\n").encode() + body,
                timeout=self.timeout, read_all=True)
            if self.response is not None:
                self.extra = b"HTTP/1." in self.response.body
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.error = e
        self.t1 = time.monotonic()

    def summary(self):
        r = self.response
        return (self.path, r and r.status, r and r.header("Retry-After"),
                self.error and type(self.error).__name__, self.extra,
                round((self.t1 or time.monotonic()) - (self.t0 or 0), 2))


def st(r):
    return getattr(r, "status", repr(r))


def held_scenario(s, n=4, secs="0.6", spin="3000", method="GET",
                  gap=0.15, cookie=None, write2=False, spin_db=False):
    """n writers on the reactor (each inserts its id, waits secs on the
    database, with write2 inserts again), then a run holds the reactor
    spin ms (without a database call unless spin_db). Returns (writers,
    spinner)."""
    ws = []
    for i in range(n):
        p = "/w?write=1&id=%s%d&s=%s" % (TAG, i, secs)
        if write2:
            p += "&write2=1"
        if cookie:
            p += "&sess=1"
        w = Held(s.port, p, method=method, cookie=cookie)
        w.start()
        ws.append(w)
        time.sleep(0.02)
    time.sleep(gap)
    sp = Held(s.port, "/w?id=spin&spin=%s%s" % (spin, "" if spin_db
                                                 else "&nodb=1"),
              timeout=30)
    sp.start()
    for w in ws:
        w.join(25)
    return ws, sp


TAG = "t"


def check_writers(s, ws, allow_200=True):
    """Each writer answered once: 503 with Retry-After: 1, or 200; a 503's
    rows are absent, a 200's present."""
    bad = []
    for w in ws:
        r = w.response
        wid = w.path.split("id=")[1].split("&")[0]
        rows = []

        def count():
            r2 = s.get("/w?count=1&id=" + wid)
            if r2.status == 200:
                rows.append(r2.text)
            return bool(rows)
        harness.wait_until(count, limit(8.0), interval=0.2)
        rows = rows[0] if rows else "unknown"
        ok = r is not None and not w.extra and (
            (r.status == 503 and r.header("Retry-After") == "1" and
             rows == "0") or
            (allow_200 and r.status == 200 and r.text == "ok " + wid and
             rows in ("1", "2")))
        if not ok:
            bad.append((w.summary(), "rows", rows))
    check(not bad, "writers answered wrongly: %r; log:\n%s"
          % (bad, s.stderr_tail(10)))


def check_recovered(s):
    check(harness.wait_until(lambda: s.get("/w?id=ready").status == 200,
                             limit(8.0), interval=0.2), "never ready again")
    check_eq(s.get_ok("/w?write=1&id=after").text, "ok after", "a write after")
    check_eq(s.get_ok("/w?count=1&id=after").text, "1", "rows after")
    check(harness.wait_until(lambda: status(s)["inflight"] <= 1, limit(5.0)),
          "requests in flight: %r" % status(s)["inflight"])
    rs = status(s)["reactor"]
    check_eq((rs["active"], rs["queued"]), (0, 0), "reactor counters")
    check(harness.wait_until(lambda: pool_idle(s), limit(5.0)),
          "the pool is not back to idle: %r" % pool_of(s))
    m = []

    def metrics_idle():
        m[:] = [ln for ln in s.get_ok("/_hotpub/metrics").text.splitlines()
                if ln.startswith(("hotpub_db_pool_connections_in_use",
                                  "hotpub_db_pool_waiting"))]
        return m and all(ln.rsplit(" ", 1)[1] == "0" for ln in m)
    # The metrics' gauges are sampled once a second.
    check(harness.wait_until(metrics_idle, limit(10.0), interval=0.5),
          "metrics 10 s after (status.json: %r): %r" % (pool_of(s), m))


def pool_of(s):
    """The default pool's object in status.json, wherever it sits."""
    found = []

    def walk(v):
        if isinstance(v, dict):
            if "in_use" in v and "waiters" in v:
                found.append(v)
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)
    walk(json.loads(s.get_ok("/_hotpub/status.json").text))
    return found


def pool_idle(s):
    """Every pool: nothing in use (the status request itself takes no
    connection), no waiters."""
    ps = pool_of(s)
    return bool(ps) and all(p["in_use"] == 0 and p["waiters"] == 0
                            for p in ps)


def test_fresh13_probe_dev_pool1_writers_in_pool_wait_spin3s():
    """Dev, --workers 0, --db-pool-size 1: four writers (the first holds the
    connection 0.6 s, three wait in the pool's queue), then a run holds the
    reactor 3 s without the database. Each writer answered once (503 with
    Retry-After: 1 or 200); a 503's rows absent; recovery; SIGTERM exit
    0."""
    need_pg()
    s = pg_server(["--workers", "0"], pool=1)
    s.start()
    try:
        check_eq(s.request("/w?setup=1").status, 200, "create the table")
        promote(s)
        ws, sp = held_scenario(s, n=4, secs="0.6", spin="3000")
        sp.join(20)
        check_eq(st(sp.response), 200, "the spinner")
        check_writers(s, ws)
        check_recovered(s)
    finally:
        s.request("/w?drop=1")
        s.terminate()
        check_eq(s.proc.wait(timeout=15), 0, "exit status")


# /m: the pattern of docs/pages.md ("protect it with a mutex"), with the
# lock held across a query: the read-modify-write of a counter that a
# query's result feeds.
M_PAGE = page(r"""
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static unsigned long hits;

HP_HANDLER(http_handler)
{
    hp_db *db = hp_db(req);
    const char *s = hp_arg(req, "s");
    pthread_mutex_lock(&mu);
    hp_db_res *r = hp_db_query(db, "SELECT pg_catalog.pg_sleep($1)",
                               s ? s : "0");
    unsigned long n = ++hits;
    pthread_mutex_unlock(&mu);
    hp_printf(req, "%s %lu", r ? "ok" : "ERR", n);
    return HP_OK;
}
""", includes="#include <pthread.h>")


def mutex_run(s, TMO=12):
    hs = [Held(s.port, "/m?s=0.3&id=%d" % i, timeout=TMO)
          for i in range(3)]
    for h in hs:
        h.start()
        time.sleep(0.02)
    for h in hs:
        h.join(20)
    return hs


def test_fresh13_1_a_mutex_held_across_a_query_deadlocks_the_reactor():
    """FRESH13-1. Dev mode, --workers 0. A page follows docs/pages.md
    ("protect it with a mutex": a static PTHREAD_MUTEX_INITIALIZER) and
    holds the lock across one query (pg_sleep 0.3 s), as a read-modify-
    write fed by the database would. Its sequential requests get it
    promoted to the reactor; then three requests at once. What happened:
    the first is answered 503 after ~1.8 s (the stall's give-up), the
    other two never (12 s), and every later request of the page hangs
    too: the second run, on the reactor's thread, blocks in
    pthread_mutex_lock on a lock whose owner is a suspended coroutine of
    that same thread, which can never resume; the page is dead until a
    restart (SIGTERM then waits out --shutdown-timeout, "3 requests still
    running after 10 s; exiting anyway"). Editing the page brings it back
    (on the handler threads), but the reactor's thread stays blocked:
    status.json reactor.active stays 2 and no page is promoted again for
    the life of the process. In production the watchdog
    answers 504 and replaces the worker at --handler-timeout, and alone
    the process exits 70 (the two answered 503 after ~13 s): each new
    worker promotes the page again and deadlocks again under concurrency.
    On the handler threads (--coroutines false, the probe below) the same
    three answer 200 in about 0.9 s. Expected: a page
    that is correct on the handler threads stays correct (a chain
    importing pthread_mutex_lock stays off the reactor, as one importing
    pthread_setspecific does), or at least the docs' mutex advice says
    not to hold it across a query."""
    need_pg()
    with pg_server(["--workers", "0"], files={"m.c": M_PAGE}) as s:
        # Fixed: a chain that imports pthread_mutex_lock stays off the
        # reactor (loader.c, lock_fns), and the log says why.
        check(not promoted(s, "/m"), "/m ran on the reactor")
        check_in("waits on pthread_mutex_lock", s.stderr(), "the log")
        hs = mutex_run(s)
        got = [h.summary() for h in hs]
        check(all(h.response is not None and h.response.status == 200
                  for h in hs), "three requests of the mutex page: %r" % got)


def test_fresh13_probe_mutex_page_on_handler_threads():
    """The control of FRESH13-1: --coroutines false, the same mutex page,
    three at once: all 200 ("ok N"), serialised, within a few seconds."""
    need_pg()
    with pg_server(["--workers", "0", "--coroutines", "false"],
                   files={"m.c": M_PAGE}) as s:
        for i in range(60):
            s.get_ok("/m?id=%d" % i)
        hs = mutex_run(s)
        got = [h.summary() for h in hs]
        check(all(h.response is not None and h.response.status == 200 and
                  h.response.text.startswith("ok ") for h in hs),
              "three requests: %r" % got)
        check_eq(status(s)["coroutines"], 0, "coroutine runs")


# /i?v=TEXT&n=INT: hp_db_int of TEXT as a text cell and as a float cell,
# and the integer n (strtoll) as a typed parameter, back as text and as
# hp_db_int. ?pg=1 for PostgreSQL's SQL (?nof=1: no float8 cast of TEXT).
I_PAGE = page(r"""
HP_HANDLER(http_handler)
{
    hp_db *db = hp_db(req);
    const char *v = hp_arg(req, "v");
    const char *n = hp_arg(req, "n");
    long long i = n ? strtoll(n, NULL, 10) : 0;
    hp_db_res *r = hp_arg(req, "pg")
        ? hp_db_queryv(db, hp_arg(req, "nof")
                               ? "SELECT $1::text, 0::float8, "
                                 "$2::int8::text, $2::int8"
                               : "SELECT $1::text, $1::text::float8, "
                                 "$2::int8::text, $2::int8",
                       HP_TEXT(v ? v : "0"), HP_INT(i))
        : hp_db_queryv(db, "SELECT CAST($1 AS TEXT), CAST($1 AS REAL), "
                           "CAST($2 AS TEXT), $2",
                       HP_TEXT(v ? v : "0"), HP_INT(i));
    if (!r || !hp_db_next(r)) {
        hp_printf(req, "ERR %s", hp_db_error(db));
        return 500;
    }
    hp_printf(req, "%lld %lld %s %lld", hp_db_int(r, 0), hp_db_int(r, 1),
              hp_db_text(r, 2), hp_db_int(r, 3));
    return HP_OK;
}
""", includes="#include <stdlib.h>")

LLMAX = 9223372036854775807
LLMIN = -9223372036854775808


def int_server(pg):
    if pg:
        need_pg()
        return Server(files={"i.c": I_PAGE},
                      args=["--workers", "0", "--db", PG_URL])
    s = Server(files={"i.c": I_PAGE}, start=False)
    s.args = ["--workers", "0", "--db",
              "sqlite:" + os.path.join(s.tmp, "i.db")]
    return s


def ints(s, v, n=0, pg=False, nof=False):
    from urllib.parse import quote
    r = s.get_ok("/i?v=%s&n=%d%s%s" % (quote(v), n, "&pg=1" if pg else "",
                                       "&nof=1" if nof else ""))
    a, b, c, d = r.text.split(" ")
    return int(a), int(b), c, int(d)


def big_positive(pg):
    with int_server(pg) as s:
        if not pg:
            s.start()
        got = {v: ints(s, v, pg=pg)[:2] for v in ("1e30", "9.3e18", "1e19")}
        neg = {v: g for v, g in got.items() if g[0] < 0 or g[1] < 0}
        check(not neg, "hp_db_int of positive values read negative: %r "
              "(the text 99999999999999999999 reads %d)"
              % (neg, ints(s, "99999999999999999999", pg=pg)[0]))


def test_fresh13_2_hp_db_int_of_a_large_positive_float_is_negative_sqlite():
    """FRESH13-2 (SQLite). hp_db_int (docs/database.md: "the value as a
    number") of the text cell '1e30', '9.3e18' or '1e19' and of the REAL
    cell 1e30: what happened: -9223372036854775808 (LLONG_MIN), a
    positive value read as the most negative integer (db_result.c casts a
    double out of long long's range, which C leaves undefined; x86 gives
    LLONG_MIN). The text '99999999999999999999' saturates to LLONG_MAX.
    Expected: a positive value never reads negative (saturate, as strtoll
    does)."""
    big_positive(False)


def test_fresh13_2b_hp_db_int_of_a_large_positive_float_is_negative_pg():
    """FRESH13-2 on PostgreSQL: text '1e30' and float8 1e30 read
    LLONG_MIN with hp_db_int."""
    big_positive(True)


def odd_text(pg):
    with int_server(pg) as s:
        if not pg:
            s.start()
        want = {"  12": 12, "+5": 5, "1e3": 1000, "12abc": 12, "1.9": 1,
                "-1.9": -1, "99999999999999999999": LLMAX,
                "-9223372036854775808": LLMIN, "9223372036854775807": LLMAX,
                "-0": 0, "000000000000000000042": 42}
        got = {v: ints(s, v, pg=pg, nof=True)[0] for v in want}
        check_eq(got, want, "hp_db_int of odd text")
        for n in (LLMAX, LLMIN, LLMAX - 1, LLMIN + 1, 0, -1,
                  999999999999999999, 1000000000000000000,
                  -999999999999999999, -1000000000000000000):
            _, _, text, back = ints(s, "0", n, pg=pg, nof=True)
            check_eq((text, back), (str(n), n), "the parameter %d" % n)


def test_fresh13_probe_hp_db_int_odd_text_and_extreme_params_sqlite():
    """hp_db_int of "  12", "+5", "1e3", "12abc", "1.9", overflowing and
    extreme decimal text reads as strtoll/strtod would; HP_INT parameters
    at LLONG_MIN/LLONG_MAX and around 10^18 come back whole (SQLite)."""
    odd_text(False)


def test_fresh13_probe_hp_db_int_odd_text_and_extreme_params_pg():
    """The same on PostgreSQL."""
    odd_text(True)


# /r: a recursive mutex (ownership per thread) around a read, a query
# and a write of a counter: the answer is the value it wrote.
R_PAGE = page(r"""
static pthread_mutex_t mu;
static unsigned long hits;

__attribute__((constructor)) static void init(void)
{
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&mu, &a);
}

HP_HANDLER(http_handler)
{
    hp_db *db = hp_db(req);
    const char *s = hp_arg(req, "s");
    pthread_mutex_lock(&mu);
    unsigned long n = hits;
    hp_db_res *r = hp_db_query(db, "SELECT pg_catalog.pg_sleep($1)",
                               s ? s : "0");
    hits = n + 1;
    pthread_mutex_unlock(&mu);
    hp_printf(req, "%s %lu", r ? "ok" : "ERR", n + 1);
    return HP_OK;
}
""", includes="#include <pthread.h>")


def test_fresh13_1b_a_recursive_mutex_on_the_reactor_excludes_nothing():
    """FRESH13-1b. Dev mode, --workers 0. As FRESH13-1 with a recursive
    mutex (PTHREAD_MUTEX_RECURSIVE; flockfile's locks are
    the same kind) guarding read counter / query 0.3 s / write counter+1.
    Promoted, then four requests at once. What happened: all four were
    in the critical section together (the reactor's thread owns the lock,
    so each coroutine's lock succeeds): they answered the same number,
    three updates lost, silently. Expected: four distinct numbers, as on
    the handler threads."""
    need_pg()
    with pg_server(["--workers", "0"], files={"r.c": R_PAGE}) as s:
        check(not promoted(s, "/r"), "/r ran on the reactor")
        hs = [Held(s.port, "/r?s=0.3&id=%d" % i, timeout=12)
              for i in range(4)]
        for h in hs:
            h.start()
            time.sleep(0.02)
        for h in hs:
            h.join(20)
        got = [h.response and h.response.text for h in hs]
        check(all(h.response is not None and h.response.status == 200
                  for h in hs) and len(set(got)) == 4,
              "four requests under one recursive mutex answered %r" % got)


def db_page(decl, use, includes=""):
    """A page that waits on the database once (pg_sleep ?s=), with decl at
    file scope and use in its handler before the query."""
    return page(decl + r"""
HP_HANDLER(http_handler)
{
    hp_db *db = hp_db(req);
""" + use + r"""
    const char *s = hp_arg(req, "s");
    hp_db_res *r = hp_db_query(db, "SELECT pg_catalog.pg_sleep($1)",
                               s ? s : "0");
    hp_puts(req, r ? "ok" : "ERR");
    return HP_OK;
}
""", includes=includes)


TLS_PAGES = {
    "loc.c": db_page("", "    locale_t l = newlocale(LC_ALL_MASK, \"C\", 0);\n"
                     "    locale_t old = uselocale(l);\n"
                     "    uselocale(old);\n    freelocale(l);\n",
                     "#include <locale.h>"),
    "tss.c": db_page("static tss_t key;\nstatic once_flag once = "
                     "ONCE_FLAG_INIT;\nstatic void mk(void)\n{\n"
                     "    tss_create(&key, NULL);\n}\n",
                     "    call_once(&once, mk);\n"
                     "    tss_set(key, req);\n", "#include <threads.h>"),
    "tl.c": db_page("static __thread int n;\n", "    n++;\n"),
    "k/_app.c": page(r"""
static pthread_key_t key;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static void mk(void)
{
    pthread_key_create(&key, NULL);
}

HP_HOOK(prepare)
{
    pthread_once(&once, mk);
    pthread_setspecific(key, req);
    return HP_OK;
}
""", includes="#include <pthread.h>"),
    "k/p.c": db_page("", ""),
    "plain.c": db_page("", ""),
}


def test_fresh13_probe_per_thread_state_stays_off_the_reactor():
    """Dev, --workers 0: pages using uselocale, C11 tss_set, a __thread
    variable, and a plain page under an _app.c whose prepare hook uses
    pthread_setspecific: 150 requests each, none runs as a coroutine, and
    the log says why; a plain page next to them is promoted (status.json
    coroutines grows, reactor counters back to 0)."""
    need_pg()
    with pg_server(["--workers", "0"], files=TLS_PAGES) as s:
        for p in ("/loc", "/tss", "/tl", "/k/p"):
            check(not promoted(s, p), "%s ran on the reactor" % p)
        check(promoted(s, "/plain"), "/plain never promoted")
        log = s.stderr()
        check_in("has thread-local variables", log, "the log")
        for name in ("uselocale", "tss_set", "pthread_setspecific"):
            check_in(name, log, "the log")
        rs = status(s)["reactor"]
        check_eq((rs["active"], rs["queued"]), (0, 0), "reactor counters")


def mixed_pool(pool, n, secs, timeout_ms):
    """n clients at once, alternating /tl (a __thread: handler threads)
    and /plain (promoted: the reactor), each holding the pool's one
    connection secs. Returns (responses, seconds, the server's pools
    afterwards)."""
    files = {"tl.c": TLS_PAGES["tl.c"], "plain.c": TLS_PAGES["plain.c"]}
    with pg_server(["--workers", "0", "--db-acquire-timeout",
                    str(timeout_ms)], files=files, pool=pool) as s:
        promote(s, "/plain")
        out = [None] * n

        def one(i):
            p = ("/tl" if i % 2 else "/plain") + "?s=%s&id=%d" % (secs, i)
            try:
                out[i] = s.request(p, headers={"Connection": "close"},
                                   timeout=30)
            except Exception as e:  # noqa: BLE001 - reported
                out[i] = e
        ts = [threading.Thread(target=one, args=(i,), daemon=True)
              for i in range(n)]
        t0 = time.monotonic()
        for t in ts:
            t.start()
            time.sleep(0.002)
        for t in ts:
            t.join(40)
        took = time.monotonic() - t0
        idle = harness.wait_until(lambda: pool_idle(s), limit(5.0))
        return out, took, idle, pool_of(s), status(s)["reactor"]


def test_fresh13_probe_mixed_pool_waiters_all_served():
    """--db-pool-size 1, acquire timeout 5 s: 24 clients at once, half on
    a TLS page (handler threads), half on a promoted page (reactor), each
    holding the connection 0.05 s (1.2 s of work in all): every one 200
    "ok" (first come, first served leaves none past 5 s), the pool back to
    idle, the reactor's counters 0."""
    need_pg()
    out, took, idle, pools, rs = mixed_pool(1, 24, "0.05", 5000)
    codes = [st(r) for r in out]
    check(all(c == 200 for c in codes),
          "codes %r after %.1f s" % (codes, took))
    check(idle, "pool not idle: %r" % pools)
    check_eq((rs["active"], rs["queued"]), (0, 0), "reactor counters")


def test_fresh13_probe_mixed_pool_acquire_timeout_503():
    """--db-pool-size 2, acquire timeout 300 ms: 30 clients, half TLS
    page, half promoted, each 0.2 s: each answers 200 or 503 (some of
    each), none hangs (all done in a few seconds), the pool returns to
    idle with no waiters."""
    need_pg()
    out, took, idle, pools, rs = mixed_pool(2, 30, "0.2", 300)
    codes = [st(r) for r in out]
    check(all(c in (200, 503) for c in codes), "codes %r" % codes)
    check(200 in codes and 503 in codes, "codes %r" % codes)
    check(took < limit(8.0), "took %.1f s" % took)
    check(idle, "pool not idle: %r" % pools)


def scenario_test(args, pool=4, dev=None, exit_code=0, **kw):
    s = pg_server(args, pool=pool, dev=dev)
    s.start()
    try:
        check_eq(s.request("/w?setup=1").status, 200, "create the table")
        promote(s)
        if kw.get("cookie") == "auto":
            r = s.get_ok("/w?sess=1&id=c")
            kw["cookie"] = r.header("Set-Cookie").split(";")[0]
        ws, sp = held_scenario(s, **kw)
        sp.join(25)
        check_writers(s, ws)
        if kw.get("cookie"):
            k = s.get_ok("/w?getsess=1",
                         headers={"Cookie": kw["cookie"]}).text
            ok_ids = ["c"] + [w.path.split("id=")[1].split("&")[0]
                              for w in ws if w.response.status == 200]
            check(k in ok_ids, "the session's k is %r: written by a "
                  "given-up request (answers %r)"
                  % (k, [w.summary() for w in ws]))
        check(not any(w.response.status == 200 for w in ws) or
              kw.get("spin") != "-1", "a writer answered 200 next to a "
              "run that never returns: %r" % [w.summary() for w in ws])
        check_recovered(s)
        return sp
    finally:
        s.request("/w?drop=1")
        s.terminate()
        check_eq(s.proc.wait(timeout=20), exit_code, "exit status")


def test_fresh13_probe_dev_post_writers_pg_sleep_spin2s():
    """Dev, --workers 0, pool 4: four POST writers (insert, pg_sleep 1.5 s,
    insert again), a run holds the reactor 2 s: each answered once, 503
    with Retry-After: 1 and no row, or 200 with its rows; recovery."""
    need_pg()
    sp = scenario_test(["--workers", "0"], n=4, secs="1.5", spin="2000",
                       write2=True, method="POST")
    check_eq(st(sp.response), 200, "the spinner")


def test_fresh13_probe_dev_session_lock_waiters_spin3s():
    """Dev, --workers 0: three writers of one session (the session's lock:
    the second and third wait for it), a run of the page holding the
    reactor 3 s after its own database call: each answered once, a 503's
    rows absent, the session's value not one a given-up request set;
    recovery."""
    need_pg()
    scenario_test(["--workers", "0"], n=3, secs="0.8", spin="3000",
                  write2=True, cookie="auto", spin_db=True)


def test_fresh13_probe_dev_spinner_returning_around_one_second():
    """Dev, --workers 0, pool 4: writers waiting 1.0-1.45 s, the run holding
    the reactor 1.2, 1.5, 1.9 s (around the stall's one-to-two-second
    detection): whichever way each writer goes, it is answered once and
    its rows match its answer."""
    need_pg()
    for ms, secs in (("1200", "1.25"), ("1500", "1.45"), ("1900", "1.0")):
        scenario_test(["--workers", "0"], n=3, secs=secs, spin=ms,
                      write2=True, gap=0.05)


def test_fresh13_probe_production_worker_spin_forever_pool1():
    """Production, --workers 1, --handler-timeout 3, pool 1: four writers
    (three in the pool's queue), a run spinning for ever: the writers get
    503 Retry-After: 1 with no rows, the spinner 504, the worker is
    replaced and serves; SIGTERM exits 0."""
    need_pg()
    sp = scenario_test(["--workers", "1", "--handler-timeout", "3"],
                       pool=1, dev=False, n=4, secs="0.6", spin="-1",
                       write2=True)
    check_eq(st(sp.response), 504, "the spinner")


# /t: the request body (any bytes of UTF-8) as "s" at the top, inside
# three nested sections and in a list, with integers at their extremes;
# rendered through t.tpl, or as JSON with ?json=1. /j: a JSON body back
# as JSON, or through deep.tpl with ?tpl=1.
T_PAGE = page(r"""
HP_HANDLER(http_handler)
{
    size_t len = 0;
    const char *s = hp_body(req, &len);
    json_t *d = json_object();
    json_object_set_new(d, "s", json_stringn(s ? s : "", len));
    json_object_set_new(d, "o", json_pack("{s:{s:{s:o}}}", "p", "q", "s",
                                          json_stringn(s ? s : "", len)));
    json_t *a = json_array();
    json_array_append_new(a, json_stringn(s ? s : "", len));
    json_array_append_new(a, json_integer(-9223372036854775807LL - 1));
    json_object_set_new(d, "arr", a);
    json_object_set_new(d, "n", json_integer(9223372036854775807LL));
    json_object_set_new(d, "b", json_true());
    int rc = HP_OK;
    if (hp_arg(req, "json"))
        hp_write_json(req, d);
    else
        rc = hp_render(req, "t.tpl", d);
    json_decref(d);
    return rc;
}
""")
T_TPL = ("[{{s}}|{{{s}}}|{{#o}}{{#p}}{{#q}}{{s}}{{/q}}{{/p}}{{/o}}|"
         "{{#arr}}{{.}},{{/arr}}|{{n}}|{{b}}]\n")
J_PAGE = page(r"""
HP_HANDLER(http_handler)
{
    json_t *v = hp_json_body(req);
    if (!v)
        return 400;
    int rc = HP_OK;
    if (hp_arg(req, "tpl"))
        rc = hp_render(req, "deep.tpl", v);
    else
        hp_write_json(req, v);
    /* no json_decref: hp_json_body's value is the request's (hotpub.h) */
    return rc;
}
""")


def html_escape(s):
    return (s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;").replace("'", "&#39;"))


def test_fresh13_probe_template_and_json_escaping():
    """300 bodies of random length (0-300, around 16/32/64, and up to 70
    KB) mixing & < > " ' / = ` \\ controls, 2-4 byte UTF-8 and plain runs:
    {{s}} is exactly the HTML escape at the top, three sections deep and
    in a list, {{{s}}} the bytes; LLONG_MIN/MAX render whole; the JSON
    answer parses back to the same strings."""
    import random
    rnd = random.Random(13)
    alpha = list("&<>\"'abc/=`\\\n\t\x01\x7f") + ["\u00e9", "\u20ac",
                                                   "\U0001d11e"]
    D = 40
    deep = ("{{#k}}" * D) + "{{v}}" + ("{{/k}}" * D) + "\n"
    with Server(files={"t.c": T_PAGE, "t.tpl": T_TPL, "j.c": J_PAGE,
                       "deep.tpl": deep}) as s:
        bad = []
        for i in range(300):
            n = rnd.choice([0, 1, 15, 16, 17, 31, 32, 33, 63, 64, 65,
                            rnd.randint(0, 300), rnd.randint(1000, 70000)])
            txt = "".join(rnd.choice(alpha if rnd.random() < 0.5 else "x")
                          for _ in range(n))
            b = txt.encode()
            r = s.post("/t", b, content_type="text/plain")
            e = html_escape(txt)
            want = ("[%s|%s|%s|%s,-9223372036854775808,|9223372036854775807|"
                    "true]\n" % (e, txt, e, e))
            if r.status != 200 or r.body.decode() != want:
                bad.append(("tpl", n, txt[:40]))
            r = s.post("/t?json=1", b, content_type="text/plain")
            d = json.loads(r.body)
            if not (d["s"] == txt and d["o"]["p"]["q"]["s"] == txt and
                    d["arr"] == [txt, -9223372036854775808] and
                    d["n"] == 9223372036854775807):
                bad.append(("json", n, txt[:40]))
        check(not bad, "%d wrong, first %r" % (len(bad), bad[:3]))
        o = {"v": "<leaf>"}
        for _ in range(D):
            o = {"k": o}
        r = s.post("/j?tpl=1", json.dumps(o), content_type="application/json")
        check_eq(r.body, b"&lt;leaf&gt;\n", "40 sections deep")
        for d, code in ((100, 200), (100000, 400)):
            r = s.post("/j", "[" * d + "]" * d,
                       content_type="application/json")
            check_eq(r.status, code, "JSON %d deep" % d)


def test_fresh13_probe_a_linked_librarys_thread_local_keeps_the_page_off():
    """A shared library (built here, found through a .pc file on the
    server's PKG_CONFIG_PATH) defines `__thread int f13_var`; a page with
    HP_PKG("f13tl") uses `extern __thread int f13_var` around its query:
    150 requests, none as a coroutine, the log says why; a plain page in
    the same server is promoted."""
    need_pg()
    import subprocess
    import tempfile
    d = tempfile.mkdtemp(prefix="hotpub-f13lib-")
    with open(os.path.join(d, "f13tl.c"), "w") as f:
        f.write("__thread int f13_var;\n")
    subprocess.check_call(["cc", "-shared", "-fPIC", "-o",
                           os.path.join(d, "libf13tl.so"),
                           os.path.join(d, "f13tl.c")])
    with open(os.path.join(d, "f13tl.pc"), "w") as f:
        f.write("Name: f13tl\nDescription: test\nVersion: 1\n"
                "Libs: -L%s -Wl,-rpath,%s -lf13tl\nCflags:\n" % (d, d))
    imp = db_page("HP_PKG(\"f13tl\");\nextern __thread int f13_var;\n",
                  "    f13_var++;\n")
    with pg_server(["--workers", "0"], files={"imp.c": imp,
                                              "plain.c": TLS_PAGES["plain.c"]},
                   env={"PKG_CONFIG_PATH": d}) as s:
        s.get_ok("/imp")
        check(not promoted(s, "/imp"), "/imp ran on the reactor; log:\n" +
              s.stderr_tail(6))
        check(promoted(s, "/plain"), "/plain never promoted")
        check_in("imp.c", s.stderr(), "the log")


if __name__ == "__main__":
    sys.exit(harness.run_suite(globals(), sys.argv[1:],
                               suite_budget=SUITE_BUDGET,
                               test_timeout=TEST_TIMEOUT,
                               verbose_total=False))
