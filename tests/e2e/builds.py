#!/usr/bin/env python3
"""hotpub end-to-end tests for how pages are built: a slow build never
delays an unrelated page (issue 10), failed compiles are cached by source
identity across worker processes (issue 10), and pages declare the
pkg-config packages they use with HP_PKG (issue 13).

    HOTPUB_BIN=/abs/path/hotpub python3 tests/e2e/builds.py [NAME-SUBSTRING...]
    python3 tests/e2e/builds.py --list

Same conventions as run.py (harness.py): each test_* function gets its own
temp document root and server on a free loopback port; one line per test,
then "N passed, N failed"; exit status 1 if any test failed.
"""

import http.client
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import (Server, check, check_eq, check_in, limit, page,  # noqa
                     short, simple_page, wait_until)

TEST_TIMEOUT = 90.0   # hard bound for one test (the watchdog kills servers)
SUITE_BUDGET = 400.0  # past this, the remaining tests fail without running

# A compiler wrapper (--cc): every run appends a line to cc.log next to it;
# a source that contains SLOW_MARKER takes 10 s, or N s with SLOW_SECONDS N
# (in a child of the wrapper, as cc1 is gcc's; its pid goes to
# sleeper.pid); the rest goes to gcc.
WRAPPER = r'''#!/bin/sh
here=$(dirname "$0")
src=
for a in "$@"; do case $a in *.c) src=$a ;; esac; done
id=
[ -n "$src" ] && id=$(grep -o 'PAGE_ID [a-z0-9_]*' "$src" | head -1)
echo "$src $id" >> "$here/cc.log"
if [ -n "$src" ] && grep -q SLOW_MARKER "$src"; then
    secs=$(grep -o 'SLOW_SECONDS [0-9]*' "$src" | head -1 | cut -d' ' -f2)
    sleep "${secs:-10}" &
    echo $! > "$here/sleeper.pid"
    wait
fi
exec gcc "$@"
'''


def with_wrapper(s, extra_args=()):
    """Install the compiler wrapper in s's temp dir and pass it as --cc."""
    wrapper = os.path.join(s.tmp, "cc-wrapper")
    with open(wrapper, "w") as f:
        f.write(WRAPPER)
    os.chmod(wrapper, 0o755)
    s.args = ["--cc", wrapper] + list(extra_args)
    return os.path.join(s.tmp, "cc.log")


def cc_runs(log):
    try:
        with open(log) as f:
            return [l.strip() for l in f if l.strip()]
    except FileNotFoundError:
        return []


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return " Z " not in f.read()
    except OSError:
        return False


def runs_of(log, page_id):
    """Compiler runs for the page marked /* PAGE_ID page_id */."""
    return sum(1 for l in cc_runs(log) if l.endswith("PAGE_ID " + page_id))


def wait_sleeper(s, rel):
    """The pid of the slow compile's sleeper, once the wrapper wrote it
    (the file exists, empty, a moment before)."""
    pidf = os.path.join(s.tmp, "sleeper.pid")

    def pid():
        try:
            with open(pidf) as f:
                return int(f.read())
        except (OSError, ValueError):
            return None
    got = wait_until(pid, limit(3.0), 0.005)
    check(got, "the slow compile of %s did not start" % rel)
    return got


def wait_batch_started(s, rel):
    """Wait until a batch has chosen rel (status.json: building), i.e. its
    settle window closed. A compile may start before that: the watcher
    prefetches a saved page on its first event, so a started compile no
    longer says that the window is over."""
    check(wait_until(lambda: (s.module(rel) or {}).get("building"),
                     limit(3.0), 0.01),
          "no batch chose %s within 3 s" % rel)


# A build that must outlast a test's checks (each bounded by limit(2.0) at
# most, from about 0.5 s into it): 5 s, 8 s under a sanitizer (SLACK 2).
LONG_BUILD_S = max(5, int(4 * harness.SLACK))


# ---- a slow build never delays an unrelated page --------------------------

def test_slow_build_does_not_delay_other_page():
    """A is saved with a slow compile (LONG_BUILD_S); B, saved just after,
    is served new within 1 s while A still compiles; A's new version goes
    live after."""
    files = {"a.c": simple_page("a one"), "b.c": simple_page("b one")}
    with Server(files=files, dev=True, start=False) as s:
        with_wrapper(s)
        s.start()
        check_eq(s.get_ok("/a").text, "a one", "first /a")
        check_eq(s.get_ok("/b").text, "b one", "first /b")
        s.write("a.c", simple_page("a two", "/* SLOW_MARKER SLOW_SECONDS %d */"
                                   % LONG_BUILD_S), how="rename")
        sleeper = wait_sleeper(s, "a.c")
        # The compile starts on the save's event (the watcher's prefetch);
        # b must be saved after a's window closed (a's batch chose it).
        wait_batch_started(s, "a.c")
        t_a = time.monotonic()
        s.write("b.c", simple_page("b two"), how="rename")
        took = s.wait_body("/b", "b two", limit(1.0),
                           allowed_bodies=("b one",))
        harness.note("b served new after %.2f s while a compiles" % took)
        check(took < limit(1.0), "b served new only after %.2f s" % took)
        check(alive(sleeper), "a.c's compile ended before b went live: the "
              "test proves nothing")
        m = s.module("a.c")
        check(m and m.get("building") and m.get("stale"),
              "a.c not shown building while its compile runs: %s" % m)
        check(not s.module("b.c").get("building"), "b.c still building")
        # A goes live once its compile is over (and not much later).
        took_a = s.wait_body("/a", "a two", limit(14.0),
                             allowed_bodies=("a one",))
        harness.note("a went live %.2f s after its save"
                     % (time.monotonic() - t_a + 0))
        check(took_a >= 0, "a served")
        check(not alive(sleeper), "slow compile still running")
        check_eq(s.get_ok("/b").text, "b two", "/b after a went live")


def test_slow_first_load_does_not_delay_other_page():
    """The first request for a page whose compile is slow (LONG_BUILD_S)
    builds it; B, saved meanwhile, is served new within 1 s (its batch
    does not wait for the first load)."""
    files = {"slow.c": simple_page("slow", "/* SLOW_MARKER SLOW_SECONDS %d */"
                                   % LONG_BUILD_S),
             "b.c": simple_page("b one")}
    with Server(files=files, dev=True, start=False) as s:
        with_wrapper(s)
        s.start()
        check_eq(s.get_ok("/b").text, "b one", "first /b")
        first = harness.BackgroundRequest(s.port, "/slow")
        first.start()
        sleeper = wait_sleeper(s, "slow.c")
        s.write("b.c", simple_page("b two"), how="rename")
        took = s.wait_body("/b", "b two", limit(1.0),
                           allowed_bodies=("b one",))
        harness.note("b served new after %.2f s during slow.c's first load"
                     % took)
        check(took < limit(1.0), "b served new only after %.2f s" % took)
        check(alive(sleeper), "slow.c's compile ended before b went live")
        r = first.join_result()
        check_eq((r.status, r.text), (200, "slow"), "the first /slow")


def test_page_changed_again_during_its_build_is_rebuilt():
    """A slow build of A; A saved again (fast) meanwhile, with B in the same
    window: B and A's second save go live together after the slow build,
    and nothing of the second save is lost."""
    files = {"a.c": simple_page("a one"), "b.c": simple_page("b one")}
    with Server(files=files, dev=True, start=False) as s:
        with_wrapper(s)
        s.start()
        check_eq(s.get_ok("/a").text, "a one", "first /a")
        check_eq(s.get_ok("/b").text, "b one", "first /b")
        # 7 s: /b's wait below is what is left of it, about 6 s, checked
        # to be over 3 s
        s.write("a.c", simple_page("a two",
                                   "/* SLOW_MARKER SLOW_SECONDS 7 */"),
                how="rename")
        wait_sleeper(s, "a.c")
        wait_batch_started(s, "a.c")
        # one window: a again (fast this time) and b
        s.write("a.c", simple_page("a three"), how="rename")
        s.write("b.c", simple_page("b two"), how="rename")
        time.sleep(0.5)
        # b changed in a's new save's window: a request for it waits for
        # that batch, which waits for the slow build, then both go live
        t0 = time.monotonic()
        r = s.get("/b")
        waited = time.monotonic() - t0
        check_eq((r.status, r.text), (200, "b two"), "/b")
        check_eq(s.get_ok("/a").text, "a three", "/a right after /b")
        check(waited > 3.0, "/b went live after %.2f s, without waiting for "
              "the a.c saved with it" % waited)
        took = waited
        harness.note("a's second save live after %.2f s" % took)


# ---- a request for a page being rebuilt (FRESH17-3) ------------------------

def slow_save(s, rel, text, seconds):
    """Save rel as a page answering text whose compile takes `seconds`;
    return once that compile runs (the watcher's prefetch starts it on the
    save's event)."""
    s.write(rel, simple_page(text, "/* SLOW_MARKER SLOW_SECONDS %d */"
                             % seconds), how="rename")
    return wait_sleeper(s, rel)


def stale_served(s):
    """hotpub_stale_served_total from /_hotpub/metrics."""
    r = s.get("/_hotpub/metrics")
    check_eq(r.status, 200, "/_hotpub/metrics")
    for line in r.text.splitlines():
        if line.startswith("hotpub_stale_served_total "):
            return int(float(line.split()[1]))
    return None


def test_stale_page_answers_with_last_good_version_in_production():
    """Production: a page saved with a 4 s compile. A request during the
    build waits at most --stale-wait-ms (1 s) and is answered by the last
    good version; the next one at once; the log says so once, the metrics
    count both; after the build, the new version. (Before: each request
    waited for the build, FRESH17-3.)"""
    files = {"a.c": simple_page("a one")}
    with Server(files=files, dev=False, workers=0, start=False) as s:
        with_wrapper(s)
        s.start()
        check_eq(s.get_ok("/a").text, "a one", "first /a")
        sleeper = slow_save(s, "a.c", "a two", 4)
        t0 = time.monotonic()
        r = s.get("/a")
        took = time.monotonic() - t0
        harness.note("/a during its build: %d %r after %.2f s"
                     % (r.status, r.text, took))
        check_eq((r.status, r.text), (200, "a one"), "/a during its build")
        check(took < limit(1.5), "/a waited %.2f s for its build" % took)
        t0 = time.monotonic()
        r = s.get("/a")
        took2 = time.monotonic() - t0
        check_eq((r.status, r.text), (200, "a one"), "/a again")
        check(took2 < limit(0.3), "the second /a waited %.2f s, though the "
              "first had waited this build out" % took2)
        check(alive(sleeper), "the build ended before the requests: the "
              "test proves nothing")
        check_eq(stale_served(s), 2, "hotpub_stale_served_total")
        lines = [l for l in s.stderr().splitlines()
                 if "serving version" in l and "a.c" in l]
        check_eq(len(lines), 1, "log lines 'serving version' (%r)" % lines)
        check_in("while a new version builds", lines[0], "the log line")
        s.wait_body("/a", "a two", limit(8.0), allowed_bodies=("a one",))
        check(not alive(sleeper), "new version before its compile ended")


def test_stale_wait_zero_serves_last_good_version_at_once():
    """--stale-wait-ms 0: a request for a page being rebuilt gets its last
    good version without waiting."""
    files = {"a.c": simple_page("a one")}
    with Server(files=files, dev=False, workers=0, start=False) as s:
        with_wrapper(s, ["--stale-wait-ms", "0"])
        s.start()
        check_eq(s.get_ok("/a").text, "a one", "first /a")
        sleeper = slow_save(s, "a.c", "a two", 4)
        wait_batch_started(s, "a.c")
        t0 = time.monotonic()
        r = s.get("/a")
        took = time.monotonic() - t0
        check_eq((r.status, r.text), (200, "a one"), "/a during its build")
        check(took < limit(0.3), "/a waited %.2f s" % took)
        check(alive(sleeper), "the build ended first: the test proves nothing")
        s.wait_body("/a", "a two", limit(8.0), allowed_bodies=("a one",))


def test_stale_page_does_not_hold_the_connection_limit():
    """Production with --connection-limit 8: eight requests for a page
    whose build takes 5 s (8 s under a sanitizer), then one for another
    page. The other page is answered within about --stale-wait-ms, and
    the eight by the last good version (before: all eight connections
    waited for the build and the other page could not get one until it
    ended, FRESH17-3)."""
    files = {"a.c": simple_page("a one"), "b.c": simple_page("b")}
    with Server(files=files, dev=False, workers=0, start=False) as s:
        with_wrapper(s, ["--connection-limit", "8"])
        s.start()
        check_eq(s.get_ok("/a").text, "a one", "first /a")
        check_eq(s.get_ok("/b").text, "b", "first /b")
        sleeper = slow_save(s, "a.c", "a two", LONG_BUILD_S)
        wait_batch_started(s, "a.c")
        reqs = [harness.BackgroundRequest(s.port, "/a") for _ in range(8)]
        for q in reqs:
            q.start()
        time.sleep(0.3)
        t0 = time.monotonic()
        got = None
        while time.monotonic() - t0 < limit(5.0):
            try:
                r = s.get("/b", timeout=limit(5.0))
                if r.status == 200:
                    got = time.monotonic() - t0
                    break
            except OSError:
                pass
            time.sleep(0.05)
        check(got is not None, "/b not answered within %.1f s of the eight "
              "/a requests" % limit(5.0))
        harness.note("/b answered after %.2f s while a.c builds" % got)
        check(got < limit(2.0), "/b answered only after %.2f s" % got)
        check(alive(sleeper), "a.c's build ended before /b: the test proves "
              "nothing")
        for q in reqs:
            r = q.join_result()
            check_eq((r.status, r.text), (200, "a one"), "an /a during the "
                     "build")
            check(q.elapsed() < limit(1.5), "an /a took %.2f s" % q.elapsed())
        s.wait_body("/a", "a two", limit(12.0), allowed_bodies=("a one",))


def test_stale_page_dev_mode_waits_for_the_new_version():
    """Dev mode keeps the edit/refresh loop's promise: a request during a
    4 s build waits for it and gets the new version (--stale-wait-ms, 1 s
    by default, does not apply). Unchanged behaviour: passes on the binary
    before FRESH17-3 too."""
    files = {"a.c": simple_page("a one")}
    with Server(files=files, dev=True, workers=0, start=False) as s:
        with_wrapper(s)
        s.start()
        check_eq(s.get_ok("/a").text, "a one", "first /a")
        sleeper = slow_save(s, "a.c", "a two", 4)
        t0 = time.monotonic()
        r = s.get("/a")
        took = time.monotonic() - t0
        check_eq((r.status, r.text), (200, "a two"), "/a during its build")
        check(not alive(sleeper), "answered before the build ended")
        harness.note("/a waited %.2f s for its build" % took)


def test_stale_page_dev_mode_wait_ends_before_handler_timeout():
    """Dev mode with --handler-timeout 2: a request during a 5 s build (8 s
    under a sanitizer) waits until just before the handler's deadline,
    then gets a 503 with Retry-After saying the page is still building
    (with the live-reload script that loads the new version once it is
    live), not a wait past --handler-timeout (before: it waited for the
    whole build, FRESH17-3); then the new version."""
    files = {"a.c": simple_page("a one")}
    with Server(files=files, dev=True, workers=0, start=False) as s:
        with_wrapper(s, ["--handler-timeout", "2"])
        s.start()
        check_eq(s.get_ok("/a").text, "a one", "first /a")
        sleeper = slow_save(s, "a.c", "a two", LONG_BUILD_S)
        t0 = time.monotonic()
        r = s.get("/a")
        took = time.monotonic() - t0
        harness.note("/a during its build: %d after %.2f s" % (r.status, took))
        check_eq(r.status, 503, "/a during its build (%r)" % short(r.text))
        check(1.5 <= took < limit(2.0), "503 after %.2f s, not just before "
              "--handler-timeout 2" % took)
        check_eq(r.header("Retry-After"), "1", "Retry-After")
        check_in("Still building", r.text)
        check_in("live-reload", r.text)
        check(alive(sleeper), "the build ended first: the test proves nothing")
        s.wait_body("/a", "a two", limit(12.0), allowed_status=(503,))


# ---- failed compiles are cached across workers ------------------------------

def fresh_get(s, path):
    """GET on a new connection, so the kernel may hand it to any worker."""
    try:
        return s.request(path, headers={"Connection": "close"}, timeout=10.0)
    except (OSError, http.client.HTTPException):
        return None


def worker_status(s):
    r = fresh_get(s, "/_hotpub/status.json")
    if r is None or r.status != 200:
        return None
    return json.loads(r.text)


def broken_everywhere(s, path, rel, want_text, n=2, timeout=10.0):
    """GET path on fresh connections until n workers have each tried it
    (their status.json shows rel with an error). Every answer must be a 500
    with want_text in it. Returns the number of requests made."""
    seen, count = set(), 0
    canon = s.canon(rel)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = fresh_get(s, path)
        if r is not None:
            count += 1
            check_eq(r.status, 500, "GET %s (broken)" % path)
            check_in(want_text, r.text)
        st = worker_status(s)
        if st and "processes" in st:
            for m in st.get("modules", []):
                if m.get("path") == canon and m.get("error"):
                    seen.add(st["processes"]["worker"]["pid"])
        if len(seen) >= n and count >= 6:
            return count
    harness.fail("%s: not tried by %d workers within %.0f s (saw %s)"
                 % (path, n, timeout, sorted(seen)))


def fixed_everywhere(s, path, want, n=2, timeout=10.0):
    """GET path on fresh connections until n different workers answered
    200 with want (pages print "want <pid>")."""
    pids = set()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = fresh_get(s, path)
        if r is not None and r.status == 200 and r.text.startswith(want + " "):
            pids.add(r.text.split()[-1])
            if len(pids) >= n:
                return
        time.sleep(0.02)
    states = {}
    for _ in range(20):
        st = worker_status(s)
        if st and "processes" in st:
            states[st["processes"]["worker"]["pid"]] = [
                m for m in st.get("modules", [])
                if m.get("path", "").endswith(path + ".c")]
    harness.fail("%s: %r not served by %d workers within %.0f s (last %s; "
                 "modules %s)" % (path, want, n, timeout, r and short(r.body),
                                  short(json.dumps(states), 2000)))


def pid_page(text, page_id, extra_includes=""):
    return page('/* PAGE_ID %s */\n#include <unistd.h>\n'
                'HP_HANDLER(http_handler)\n{\n'
                '    hp_printf(req, "%s %%d", (int)getpid());\n'
                '    return HP_OK;\n}\n' % (page_id, text),
                extra_includes)


def test_failed_compile_cached_across_workers():
    """2 workers: a broken page requested through both is compiled once;
    its diagnostic is shown every time; fixing the page serves it."""
    broken = page("/* PAGE_ID broken */\nint oops = ;\n")
    files = {"ok.c": pid_page("ok", "ok"), "broken.c": broken}
    with Server(files=files, dev=True, start=False, workers=2) as s:
        log = with_wrapper(s)
        s.start()
        fixed_everywhere(s, "/ok", "ok")
        n = broken_everywhere(s, "/broken", "broken.c", "expected expression")
        harness.note("%d requests for the broken page" % n)
        check_eq(runs_of(log, "broken"), 1,
                 "compiler runs for the broken page (2 workers, %d requests)"
                 % n)
        objdir = os.path.join(s.cache, "obj")
        errs = [f for f in os.listdir(objdir) if f.endswith(".err")]
        check_eq(len(errs), 1, "failure records in the compile cache")
        s.write("broken.c", pid_page("fixed", "broken"), how="rename")
        fixed_everywhere(s, "/broken", "fixed")
        check_eq(runs_of(log, "broken"), 2, "compiler runs after the fix")


def test_failed_compile_by_header_not_sticky():
    """A page broken by its header, and one broken by a header that does not
    exist yet: each compiled once for 2 workers; fixing the header, or
    creating the missing one, serves them (the cached failure does not
    stick)."""
    files = {"ok.c": pid_page("ok", "ok"),
             "inc.h": "int from_header = ;\n",
             "h.c": pid_page("h", "h", '#include "inc.h"'),
             "m.c": pid_page("m", "m", '#include "sub/later.h"')}
    with Server(files=files, dev=True, start=False, workers=2) as s:
        log = with_wrapper(s)
        s.start()
        fixed_everywhere(s, "/ok", "ok")
        # one at a time, so each page's compiler runs are counted apart (a
        # header's change retries every broken page)
        broken_everywhere(s, "/h", "h.c", "inc.h")
        check_eq(runs_of(log, "h"), 1, "compiler runs for h.c (2 workers)")
        s.write("inc.h", "int from_header = 1;\n", how="rename")
        fixed_everywhere(s, "/h", "h")
        broken_everywhere(s, "/m", "m.c", "later.h")
        check_eq(runs_of(log, "m"), 1, "compiler runs for m.c (2 workers)")
        os.makedirs(s.path("sub"))
        s.write("sub/later.h", "int later = 2;\n")
        fixed_everywhere(s, "/m", "m")


def msg_page(page_id):
    """A page printing MSG from _h.h and its worker's pid."""
    return page('/* PAGE_ID %s */\n#include <unistd.h>\n#include "_h.h"\n'
                'HP_HANDLER(http_handler)\n{\n'
                '    hp_printf(req, "%%s %%d", MSG, (int)getpid());\n'
                '    return HP_OK;\n}\n' % page_id)


def failing_everywhere(s, path, want_text, n=10, timeout=10.0):
    """GET path on fresh connections until n answers in a row are 500s
    with want_text (the change has reached every worker)."""
    run, r = 0, None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and run < n:
        r = fresh_get(s, path)
        ok = r is not None and r.status == 500 and want_text in r.text
        run = run + 1 if ok else 0
        if not ok:
            time.sleep(0.05)
    if run < n:
        harness.fail("%s: not a 500 with %r everywhere within %.0f s (last "
                     "%s)" % (path, want_text, timeout, r and short(r.body)))


def test_unchanged_broken_page_does_not_hold_header_batch():
    """2 workers, a page broken on its own (it includes no header) loaded
    by both: a header's change retries it (a failed compile has no
    dependency list), but it fails as before and does not hold back the
    page that includes the header, so every worker serves the new version.
    Then the header is broken and fixed again: the including page's error
    clears in every worker."""
    files = {"_h.h": '#define MSG "h1"\n', "hh.c": msg_page("hh"),
             "broken.c": page("/* PAGE_ID broken */\nint oops = ;\n")}
    with Server(files=files, dev=True, start=False, workers=2) as s:
        log = with_wrapper(s)
        s.start()
        fixed_everywhere(s, "/hh", "h1")
        broken_everywhere(s, "/broken", "broken.c", "expected expression")
        s.write("_h.h", '#define MSG "h2"\n', how="rename")
        fixed_everywhere(s, "/hh", "h2")
        check(runs_of(log, "broken") >= 2, "the broken page was retried "
              "(%d compiler runs)" % runs_of(log, "broken"))
        s.write("_h.h", '#define MSG "h3" +\n', how="rename")
        failing_everywhere(s, "/hh", "_h.h")
        s.write("_h.h", '#define MSG "h4"\n', how="rename")
        fixed_everywhere(s, "/hh", "h4")
        r = fresh_get(s, "/broken")
        check_eq(r and r.status, 500, "GET /broken after the header edits")



def module_states(s, rel, n, pred, timeout=10.0):
    """Poll status.json on fresh connections until n worker processes (or
    the single process, n=1) show module rel in a state pred(module) accepts;
    fail otherwise."""
    canon, seen = s.canon(rel), set()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = worker_status(s)
        for m in (st or {}).get("modules", []):
            if m.get("path") == canon and pred(m):
                seen.add(st.get("processes", {}).get("worker", {}).get("pid"))
        if len(seen) >= n:
            return
        time.sleep(0.02)
    harness.fail("%s: not in the expected state in %d processes within "
                 "%.0f s (saw %d)" % (rel, n, timeout, len(seen)))


def new_page_after_failed_batch(dev, workers):
    """a.c and b.c (both loaded everywhere) are saved together, b.c broken:
    a.c is held back. Later n.c is created alone: it is served as soon as
    it builds (the older failure of other files holds nothing), while a.c
    stays held and b.c keeps its error."""
    files = {"a.c": pid_page("a1", "a"), "b.c": pid_page("b1", "b")}
    n = max(workers, 1)
    with Server(files=files, dev=dev, workers=workers) as s:
        fixed_everywhere(s, "/a", "a1", n=n)
        fixed_everywhere(s, "/b", "b1", n=n)
        s.write("a.c", pid_page("a2", "a"), how="rename")
        s.write("b.c", page("/* PAGE_ID b */\nint oops = ;\n"), how="rename")
        module_states(s, "a.c", n, lambda m: m.get("held"))
        module_states(s, "b.c", n, lambda m: m.get("error"))
        time.sleep(1.0)  # well past the settle window: a batch of its own
        s.write("n.c", pid_page("n1", "n"))
        fixed_everywhere(s, "/n", "n1", n=n)
        for _ in range(10):
            r = fresh_get(s, "/n")
            check_eq(r and r.status, 200, "GET /n (a new page, saved alone)")
        st = worker_status(s)
        r = fresh_get(s, "/_hotpub/status.json?url=/n")
        err = json.loads(r.text)["url"]["error"] if r else "no answer"
        check_eq(err, None, "status.json?url=/n error")
        canon = {m["path"]: m for m in st["modules"]}
        check(canon[s.canon("a.c")]["held"], "a.c still held back")
        check_in("expected expression", canon[s.canon("b.c")]["error"] or "")
        if not dev:  # production: the held page keeps its old version
            r = fresh_get(s, "/a")
            check(r is not None and r.status == 200 and
                  r.text.startswith("a1 "), "GET /a keeps a1 while held")


def test_new_page_not_held_by_older_failure():
    """Production mode, 2 workers: see new_page_after_failed_batch."""
    new_page_after_failed_batch(dev=False, workers=2)


def test_new_page_not_held_by_older_failure_dev():
    """Dev mode, one process: see new_page_after_failed_batch."""
    new_page_after_failed_batch(dev=True, workers=0)


def test_new_page_saved_with_failure_is_held():
    """A page never requested, saved in the same batch as a broken page, is
    held back on its first request (500, status says why) until the broken
    page is fixed; then it is served. Files saved together go live
    together, loaded before or not."""
    files = {"b.c": pid_page("b1", "b")}
    with Server(files=files, dev=False) as s:
        fixed_everywhere(s, "/b", "b1", n=1)
        s.write("n.c", pid_page("n1", "n"), how="rename")
        s.write("b.c", page("/* PAGE_ID b */\nint oops = ;\n"), how="rename")
        module_states(s, "b.c", 1, lambda m: m.get("error"))
        r = fresh_get(s, "/n")
        check_eq(r and r.status, 500, "GET /n (saved with the broken b.c)")
        r = fresh_get(s, "/_hotpub/status.json?url=/n")
        err = json.loads(r.text)["url"]["error"] if r else None
        check_in("held back", err or "")
        s.write("b.c", pid_page("b2", "b"), how="rename")
        fixed_everywhere(s, "/b", "b2", n=1)
        fixed_everywhere(s, "/n", "n1", n=1)

def test_held_batch_waits_for_its_fix_not_the_next_save():
    """a.c saved good together with b.c saved broken: a.c is held back.
    Saving an unrelated s.c next puts s.c live, but not a.c's new version
    while b.c is still broken (b.c failing again the same way is not an
    old, unrelated failure: it is the one holding a.c); the fix of b.c puts
    a.c and b.c live together."""
    files = {"a.c": pid_page("a1", "a"), "b.c": pid_page("b1", "b"),
             "s.c": pid_page("s1", "s")}
    with Server(files=files, dev=False) as s:
        for path, want in (("/a", "a1"), ("/b", "b1"), ("/s", "s1")):
            fixed_everywhere(s, path, want, n=1)
        s.write("a.c", pid_page("a2", "a"), how="rename")
        s.write("b.c", page("/* PAGE_ID b */\nint oops = ;\n"), how="rename")
        module_states(s, "b.c", 1, lambda m: m.get("error"))
        module_states(s, "a.c", 1, lambda m: m.get("held"))
        s.write("s.c", pid_page("s2", "s"), how="rename")
        fixed_everywhere(s, "/s", "s2", n=1)  # s.c goes live on its own
        for _ in range(5):
            r = fresh_get(s, "/a")
            check(r is not None and r.status == 200 and
                  r.text.startswith("a1 "),
                  "a.c went live without the fix of b.c: %r"
                  % (r and r.text))
        s.write("b.c", pid_page("b2", "b"), how="rename")
        for path, want in (("/a", "a2"), ("/b", "b2"), ("/s", "s2")):
            fixed_everywhere(s, path, want, n=1)


# ---- HP_PKG: pkg-config packages, per page ---------------------------------

ZLIB_PAGE = page(r'''#include <string.h>
#include <zlib.h>
HP_PKG("zlib");
/* HP_PKG("not-this-one"); a comment does not declare */
HP_HANDLER(http_handler)
{
    const char *msg = "hello hello hello hello hello";
    unsigned char z[128], back[128];
    uLongf zn = sizeof z, bn = sizeof back;
    if (compress(z, &zn, (const unsigned char *)msg, strlen(msg) + 1) != Z_OK ||
        uncompress(back, &bn, z, zn) != Z_OK)
        return 500;
    hp_printf(req, "zlib %s: %s (%lu bytes compressed)", zlibVersion(),
              (const char *)back, (unsigned long)zn);
    return HP_OK;
}
''')

FAKE_PC = """Name: hpfake
Description: a package for hotpub's tests
Version: 1.0
Cflags: -DHP_FAKE_PKG=42
Libs:
"""

FLAGS_PAGE = page(r'''%s
HP_HANDLER(http_handler)
{
#ifdef HP_FAKE_PKG
    hp_printf(req, "HP_FAKE_PKG=%%d", HP_FAKE_PKG);
#else
    hp_puts(req, "no package flags");
#endif
    return HP_OK;
}
''')

UNKNOWN_PAGE = page('''
HP_PKG("zlib");
HP_PKG("hp-no-such-package");
HP_HANDLER(http_handler) { return HP_OK; }
''')


def zlib_version():
    out = subprocess.run(["pkg-config", "--modversion", "zlib"],
                         stdout=subprocess.PIPE, universal_newlines=True)
    if out.returncode != 0:
        raise harness.Skip("zlib1g-dev is not installed (tools/deps.sh --test)")
    return out.stdout.strip()


def test_pkg_zlib_page_links_and_runs():
    """A page with HP_PKG("zlib") calls zlib; its object needs libz."""
    ver = zlib_version()
    with Server(files={"z.c": ZLIB_PAGE}, dev=True) as s:
        r = s.get_ok("/z")
        check_in("zlib %s" % ver.split("-")[0], r.text)
        check_in(": hello hello hello hello hello (", r.text)
        obj = s.module("z.c")["current"]["object"]
        dyn = subprocess.run(["readelf", "-d", obj], stdout=subprocess.PIPE,
                             universal_newlines=True).stdout
        check_in("[libz.so", dyn, "the page object's dynamic section")


def line_of(text, needle):
    return text[:text.index(needle)].count("\n") + 1


def test_pkg_unknown_package_is_a_diagnostic():
    """An unknown package: a 500 naming it and its line; `hotpub check`
    says the same and exits 1; the other pages are unaffected."""
    zlib_version()
    files = {"u.c": UNKNOWN_PAGE, "z.c": ZLIB_PAGE}
    with Server(files=files, dev=True) as s:
        r = s.get("/u")
        check_eq(r.status, 500, "status of the page with an unknown package")
        ln = line_of(UNKNOWN_PAGE, "hp-no-such")
        check_in("u.c:%d: error: HP_PKG(&quot;hp-no-such-package&quot;)"
                 % ln, r.text)
        check_in("was not found in the pkg-config search path", r.text)
        check_in("zlib", s.get_ok("/z").text)
        res = harness.run_hotpub(["check", "--cache-dir", s.cache, s.root])
        check_eq(res.returncode, 1, "hotpub check's exit status")
        check_in("FAIL %s" % s.path("u.c"), res.stdout, "hotpub check")
        check_in('u.c:%d: error: HP_PKG("hp-no-such-package")' % ln,
                 res.stdout, "hotpub check")
        check_in("ok   %s" % s.path("z.c"), res.stdout, "hotpub check")
        # declaring it badly is a diagnostic too
        bad = page('HP_PKG("bad name");\n'
                   'HP_HANDLER(http_handler) { return HP_OK; }\n')
        s.write("u.c", bad, how="rename")
        # (the dev error page quotes the file as it is now: wait for the
        # new diagnostic, not merely the new source)
        took, r = s.wait_for("/u", lambda r: "not a pkg-config" in r.text,
                             lambda r: r.status == 500, limit(3.0))
        check_in("u.c:%d: error: HP_PKG: not a pkg-config package name"
                 % line_of(bad, "bad name"), r.text)


def test_pkg_flags_are_per_page():
    """Two pages, one declaring a package whose --cflags define a macro and
    one not: only the first sees it; editing the second to declare it, it
    does; `hotpub check` builds both the same way."""
    with Server(files={"with.c": FLAGS_PAGE % 'HP_PKG("hpfake");',
                       "without.c": FLAGS_PAGE % ""},
                dev=True, start=False) as s:
        pcdir = os.path.join(s.tmp, "pc")
        os.makedirs(pcdir)
        with open(os.path.join(pcdir, "hpfake.pc"), "w") as f:
            f.write(FAKE_PC)
        s.extra_env = {"PKG_CONFIG_PATH": pcdir}
        s.start()
        check_eq(s.get_ok("/with").text, "HP_FAKE_PKG=42", "/with")
        check_eq(s.get_ok("/without").text, "no package flags", "/without")
        check_eq(s.get_ok("/with").text, "HP_FAKE_PKG=42", "/with again")
        s.write("without.c", FLAGS_PAGE % 'HP_PKG("hpfake");', how="rename")
        s.wait_body("/without", "HP_FAKE_PKG=42", limit(2.0),
                    allowed_bodies=("no package flags",))
        res = harness.run_hotpub(["check", s.root],
                                 env={"PKG_CONFIG_PATH": pcdir})
        check_eq(res.returncode, 0, "hotpub check: %s" % short(res.stdout))


if __name__ == "__main__":
    sys.exit(harness.run_suite(globals(), sys.argv[1:],
                               suite_budget=SUITE_BUDGET,
                               test_timeout=TEST_TIMEOUT))
