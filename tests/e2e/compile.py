#!/usr/bin/env python3
"""hotpub end-to-end tests for compiles that misbehave (issue 10, "Compiles
that misbehave"): the compiler runs under --compile-timeout and the
RLIMIT_AS / RLIMIT_CPU / RLIMIT_FSIZE limits, and a compile they stop is a
readable diagnostic naming the limit, not a server that eats the machine.

    HOTPUB_BIN=/abs/path/hotpub python3 tests/e2e/compile.py [NAME-SUBSTRING...]
    python3 tests/e2e/compile.py --list

Same conventions as run.py (harness.py): each test_* function gets its own
temp document root and server on a free loopback port; one line per test,
then "N passed, N failed"; exit status 1 if any test failed.
"""

import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import (Server, check, check_eq, check_in, limit, page,  # noqa
                     short, simple_page, wait_until)

TEST_TIMEOUT = 90.0   # hard bound for one test (the watchdog kills servers)
SUITE_BUDGET = 240.0  # past this, the remaining tests fail without running

# The report's page: gcc reads /dev/zero until memory runs out.
DEV_ZERO = page("", includes='#include "/dev/zero"')

# A compiler wrapper: sources that contain SLOW_MARKER take 60 s to
# compile (in a child of the wrapper, as cc1 is gcc's); others go to cc.
SLOW_CC = r'''#!/bin/sh
for a in "$@"; do last=$a; done
if grep -q SLOW_MARKER "$last"; then
    sleep 60 &
    echo $! > "$(dirname "$0")/sleeper.pid"
    wait
fi
exec cc "$@"
'''


def peak_rss_kb(pid):
    """The process's peak resident set (VmHWM), in KiB."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return -1


def timed_get(s, path):
    t0 = time.monotonic()
    r = s.get(path)
    return time.monotonic() - t0, r


def test_dev_zero_include_hits_memory_limit():
    """Default limits, dev mode: a 500 naming compile-memory-limit within
    seconds; the server stays small; a good page is unaffected."""
    files = {"zero.c": DEV_ZERO, "good.c": simple_page("still good")}
    with Server(files=files, dev=True) as s:
        check_eq(s.get_ok("/good").text, "still good", "good page")
        took, r = timed_get(s, "/zero")
        harness.note("/dev/zero include: %d after %.2f s" % (r.status, took))
        check_eq(r.status, 500, "status of the /dev/zero page")
        check_in("compile-memory-limit = 2G", r.text)
        check_in("out of memory", r.text)
        check(took < limit(8.0), "diagnostic after %.2f s" % took)
        rss = peak_rss_kb(s.pid())
        harness.note("server peak RSS %d KiB" % rss)
        check(0 < rss < 200 * 1024, "server peak RSS %d KiB" % rss)
        check_eq(s.get_ok("/good").text, "still good", "good page after")
        check(s.alive(), "server died")


def test_memory_limit_nodev_keeps_last_good():
    """Production: the last good build keeps serving, the log names the
    limit and the setting."""
    with Server(files={"p.c": simple_page("version one")}, dev=False,
                args=["--compile-memory-limit", "512m"]) as s:
        check_eq(s.get_ok("/p").text, "version one", "first version")
        s.write("p.c", DEV_ZERO, how="rename")
        got = wait_until(lambda: "compile-memory-limit = 512M" in s.stderr(),
                         limit(10.0))
        check(got, "memory limit not logged: %s" % short(s.stderr_tail(), 600))
        check_in("--compile-memory-limit", s.stderr(), "stderr")
        r = s.get("/p")
        check_eq((r.status, r.text), (200, "version one"),
                 "answer while the page is broken")
        s.write("p.c", simple_page("version two"), how="rename")
        s.wait_body("/p", "version two", limit(2.0),
                    allowed_bodies=("version one",))


def test_compile_timeout_stops_slow_compile():
    """--compile-timeout 2 and a compiler that takes 60 s: a 500 naming
    compile-timeout after about 2 s, its child killed; other pages build
    with the same compiler."""
    with Server(files={"slow.c": simple_page("slow", "/* SLOW_MARKER */"),
                       "good.c": simple_page("good")},
                dev=True, start=False) as s:
        wrapper = os.path.join(s.tmp, "slow-cc")
        with open(wrapper, "w") as f:
            f.write(SLOW_CC)
        os.chmod(wrapper, 0o755)
        s.args = ["--cc", wrapper, "--compile-timeout", "2"]
        s.start()
        check_eq(s.get_ok("/good").text, "good", "good page")
        took, r = timed_get(s, "/slow")
        harness.note("slow page: %d after %.2f s" % (r.status, took))
        check_eq(r.status, 500, "status of the slow page")
        check_in("compile-timeout = 2 s", r.text)
        check_in("--compile-timeout", r.text)
        check(1.9 <= took < limit(6.0), "timeout diagnostic after %.2f s"
              % took)
        with open(os.path.join(s.tmp, "sleeper.pid")) as f:
            sleeper = int(f.read())
        gone = wait_until(lambda: not os.path.exists("/proc/%d" % sleeper)
                          or " Z " in open("/proc/%d/stat" % sleeper).read(),
                          limit(2.0))
        check(gone, "the compiler's child %d outlived the timeout" % sleeper)
        s.write("good.c", simple_page("good two"), how="rename")
        s.wait_body("/good", "good two", limit(2.0), allowed_bodies=("good",))


def test_sigterm_kills_a_running_compile_with_its_children():
    """A server stopped (SIGTERM) while a compile runs kills the compile's
    process group as --compile-timeout does: the --cc wrapper's own child
    (a 60 s sleep) does not outlive the server, alone or with workers."""
    for workers in (0, 1):
        with Server(files={"slow.c": simple_page("slow", "/* SLOW_MARKER */")},
                    dev=True, start=False, workers=workers,
                    check_exit=False) as s:
            wrapper = os.path.join(s.tmp, "slow-cc")
            with open(wrapper, "w") as f:
                f.write(SLOW_CC)
            os.chmod(wrapper, 0o755)
            pidfile = os.path.join(s.tmp, "sleeper.pid")
            s.args = ["--cc", wrapper, "--shutdown-timeout", "1"]
            s.start()
            req = harness.BackgroundRequest(s.port, "/slow")
            req.start()
            check(wait_until(lambda: os.path.exists(pidfile) and
                             open(pidfile).read().strip(), limit(10.0)),
                  "the compile never started")
            with open(pidfile) as f:
                sleeper = int(f.read())
            s.stop()
            gone = wait_until(
                lambda: not os.path.exists("/proc/%d" % sleeper)
                or " Z " in open("/proc/%d/stat" % sleeper).read(),
                limit(3.0))
            if not gone:
                os.kill(sleeper, signal.SIGKILL)
            check(gone, "workers %d: the compiler's child %d outlived the "
                  "server" % (workers, sleeper))
            req.join(limit(10.0))


def _ppid(pid):
    with open("/proc/%d/stat" % pid) as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def _gone(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_sigkilled_worker_takes_its_compile_with_it():
    """A worker killed by SIGKILL mid-compile (the heartbeat's kill, the
    OOM killer's) cannot kill its compile: the supervisor kills the
    compile's process group as it reaps the worker, so the --cc wrapper's
    own child (a 60 s sleep) is gone within 2 s. Before, it ran on."""
    with Server(files={"slow.c": simple_page("slow", "/* SLOW_MARKER */")},
                dev=True, start=False, workers=1, check_exit=False) as s:
        wrapper = os.path.join(s.tmp, "slow-cc")
        with open(wrapper, "w") as f:
            f.write(SLOW_CC)
        os.chmod(wrapper, 0o755)
        pidfile = os.path.join(s.tmp, "sleeper.pid")
        s.args = ["--cc", wrapper]
        s.start()
        req = harness.BackgroundRequest(s.port, "/slow")
        req.start()
        check(wait_until(lambda: os.path.exists(pidfile) and
                         open(pidfile).read().strip(), limit(10.0)),
              "the compile never started")
        with open(pidfile) as f:
            sleeper = int(f.read())
        worker = _ppid(_ppid(sleeper))  # sleep <- the wrapper <- the worker
        check(worker != s.proc.pid, "the compile runs in a worker")
        os.kill(worker, signal.SIGKILL)
        gone = wait_until(lambda: _gone(sleeper), limit(2.0))
        if not gone:
            os.kill(sleeper, signal.SIGKILL)
        check(gone, "the compiler's child %d outlived its SIGKILLed worker"
              % sleeper)
        req.join(limit(10.0))


def test_cache_dir_inside_the_document_root():
    """--cache-dir under the document root (a dot directory, so never
    published): the copy of the page being compiled lives there, was
    written just before the compile, and must not count as a header that
    changed under it (it once did: every compile retried, then failed)."""
    files = {"_lib/x.h": "static inline int f(void) { return 1; }\n",
             "p.c": '#include <hotpub.h>\n#include "_lib/x.h"\n'
                    'HP_HANDLER(http_handler) { hp_printf(req, "v%d", f());'
                    ' return HP_OK; }\n'}
    s = Server(files=files, start=False)
    s.args += ["--cache-dir", s.path(".cache")]
    with s.start():
        r = s.get("/p")
        check_eq((r.status, r.text), (200, "v1"), "first compile")
        s.write("_lib/x.h", "static inline int f(void) { return 2; }\n")
        check(harness.wait_until(lambda: s.get("/p").text == "v2",
                                 limit(5)), "a header edit is still seen")
        check_eq(s.get("/.cache/").status, 404, "the cache is not served")


def test_cache_dir_removed_while_running():
    """rm -rf of the cache dir under a running server (a tmp cleaner does
    it to the /tmp default): the next edit is compiled and served, the
    directories (obj, run-PID) are created again, with one log line. It
    once answered 500 "cannot write .../obj/tmp-...c" until a restart."""
    import shutil
    with Server(files={"p.c": simple_page("one")}, dev=True) as s:
        check_eq(s.get_ok("/p").text, "one", "first version")
        shutil.rmtree(s.cache)
        s.write("p.c", simple_page("two"))
        check(wait_until(lambda: s.get("/p").text == "two", limit(5.0)),
              "the edit after the removal is served: %s"
              % short(s.get("/p").text))
        check_in("the cache directory %s was removed; created it again"
                 % s.cache, s.stderr())
        check(os.path.isdir(os.path.join(s.cache, "obj")), "obj again")


def test_compile_limits_flags_validated():
    """A bad value stops the server at start with exit status 2."""
    r = harness.run_hotpub(["serve", "--compile-timeout", "0", "."],
                           timeout=20)
    check_eq(r.returncode, 2, "exit status for --compile-timeout 0")
    check_in("compile-timeout", r.stderr, "stderr")
    check_in("1 to 3600", r.stderr, "stderr")
    r = harness.run_hotpub(["serve", "--compile-memory-limit", "2GB", "."],
                           timeout=20)
    check_eq(r.returncode, 2, "exit status for --compile-memory-limit 2GB")
    check_in("expected a size", r.stderr, "stderr")


if __name__ == "__main__":
    sys.exit(harness.run_suite(globals(), sys.argv[1:],
                               suite_budget=SUITE_BUDGET,
                               test_timeout=TEST_TIMEOUT))
