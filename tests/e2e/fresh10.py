#!/usr/bin/env python3
"""hotpub end-to-end tests: defects a fresh user found in the stray-signal
handling (stray.c) and the bounded wait behind a hanging constructor (loader.c, server.c).

    HOTPUB_BIN=/abs/path/hotpub python3 tests/e2e/fresh10.py [NAME-SUBSTRING...]
    python3 tests/e2e/fresh10.py --list

Output, as in run.py: one line per test ("ok   name" or "FAIL name:
reason", then the server's stderr tail), then "N passed, N failed"; the
exit status is 1 if any test failed.
"""

import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import (SLACK, BackgroundRequest, Server,  # noqa: E402
                     check, check_eq, check_not_in, limit, page, short,
                     simple_page, wait_until)
from workers import all_ready, fresh_get, hang_page  # noqa: E402

TEST_TIMEOUT = 90.0
SUITE_BUDGET = 300.0

# ---- a page's own handler outlives its version (FRESH10-1) -----------------

# Installs its own SIGUSR2 handler (docs/operations.md "Signals": a page's
# own handler wins) and prints its pid.
OWN_USR2 = page(r'''
static volatile sig_atomic_t got;
static void on(int sig) { (void)sig; got++; }
HP_HANDLER(http_handler)
{
    signal(SIGUSR2, on);
    raise(SIGUSR2);
    hp_printf(req, "v1 caught %d pid %d", (int)got, (int)getpid());
    return HP_OK;
}''', includes="#include <signal.h>\n#include <unistd.h>")


def _own_handler_then_edit(s):
    """Load OWN_USR2, replace it with another version, wait for the first
    to be unloaded, then send SIGUSR2 to the process that ran it."""
    r = fresh_get(s, "/own", timeout=limit(15.0))
    check(r is not None and r.status == 200 and r.text.startswith("v1"),
          "v1: %r" % r)
    pid = int(r.text.split()[-1])
    s.write("own.c", simple_page("v2"), how="rename")
    check(wait_until(lambda: (lambda x: x is not None and x.text == "v2")(
        fresh_get(s, "/own")), limit(10.0), 0.1), "v2 not served")
    # the old version is unloaded once its last request ends
    time.sleep(1.0 * SLACK)
    os.kill(pid, signal.SIGUSR2)
    time.sleep(1.0 * SLACK)
    return pid


def test_own_handler_of_an_unloaded_version_single_process():
    """FRESH10-1. --workers 0, dev: a page installs its own SIGUSR2 handler,
    is edited (its object dlclosed), then SIGUSR2 arrives: the signal
    jumped into the unmapped object and the process ended with SIGSEGV
    ('SIGSEGV while running (no page handler)'). Expected: 'stray signals
    are ignored and said, never the end of a process'; the handler of an
    unloaded version is not left installed."""
    with Server(files={"own.c": OWN_USR2, "good.c": simple_page("good")},
                args=["--workers", "0"], dev=True, check_exit=False) as s:
        _own_handler_then_edit(s)
        check(s.alive(), "the process ended (status %r): %s"
              % (s.proc.returncode, short(s.stderr(), 1500)))
        check_eq(s.get_ok("/good").text, "good", "served after")


def test_own_handler_of_an_unloaded_version_worker():
    """FRESH10-1 (--workers 1, production): the worker died 'killed by
    signal 11 ... while no page handler was running', the page not
    named. Expected: the worker outlives the signal."""
    with Server(files={"own.c": OWN_USR2, "good.c": simple_page("good")},
                args=["--workers", "1"], dev=False) as s:
        all_ready(s, n=1, timeout=limit(15.0))
        _own_handler_then_edit(s)
        check_not_in("killed by signal", s.stderr(), "a worker died")
        check_eq(s.get_ok("/good").text, "good", "served after")


# ---- hotpub check refuses what the server serves (FRESH10-4) -----------------

def _raiser(sig):
    return page('__attribute__((constructor)) static void k(void) '
                '{ raise(%s); }\n'
                'HP_HANDLER(http_handler) { hp_puts(req, "served"); '
                'return HP_OK; }' % sig,
                includes="#include <signal.h>\n#include <unistd.h>")


def test_check_agrees_with_the_server_on_stray_signals():
    """FRESH10-4. A constructor that raises SIGUSR2 or SIGALRM: the server
    ignores the signal and serves the page (200 'served', stray.c), but
    `hotpub check` (the deploy gate) fails it: 'usr2.c: a constructor
    crashed (SIGUSR2) as the object loaded: the server answers its
    requests 503 and refuses it' and 'al.c: a constructor did not return
    within 30 s' (it returned at once), exit 1. Expected: check loads the
    object as the server does (stray signals ignored), exit 0."""
    with Server(files={"usr2.c": _raiser("SIGUSR2"),
                       "al.c": _raiser("SIGALRM")},
                args=["--workers", "1"], dev=False) as s:
        all_ready(s, n=1, timeout=limit(15.0))
        for p in ("/usr2", "/al"):
            r = fresh_get(s, p, timeout=limit(15.0))
            check_eq(r and r.status, 200, "the server serves %s" % p)
        res = harness.run_hotpub(["check", "--cache-dir", s.cache, s.root],
                                 timeout=120)
        out = res.stdout + res.stderr
        check_not_in("did not return within", out, "check's output")
        check_not_in("crashed (SIGUSR2)", out, "check's output")
        check_eq(res.returncode, 0, "check's exit status (%s)"
                 % short(out, 800))


# ---- dev single process: requests for the hung page never answered (FRESH10-6)

def test_dev_single_process_answers_a_second_request_for_the_hung_page():
    """FRESH10-6. --workers 0, dev, --handler-timeout 2: a constructor
    hangs. Past --handler-timeout the log says 'no page can be loaded in
    this process again ... restart hotpub', but a second request for the
    hung page (the developer reloading the tab) never gets an answer (60 s
    and on), though docs/operations.md says a waiter answers the refused
    version's 503 once the loader's time passes --handler-timeout + 2 s.
    Expected: a 503 within about 4 s that says what to do."""
    with Server(files={"good.c": simple_page("good"),
                       "hang.c": hang_page(1000)},
                args=["--workers", "0", "--handler-timeout", "2"],
                dev=True, check_exit=False) as s:
        s.get_ok("/good")
        BackgroundRequest(s.port, "/hang", timeout=30).start()
        time.sleep(1.0)
        t0 = time.monotonic()
        r = fresh_get(s, "/hang", timeout=limit(12.0))
        took = time.monotonic() - t0
        check(r is not None, "no answer to the second request for /hang "
              "within %.0f s" % took)
        check_eq(r.status, 503, "the second request for /hang")
        check_eq(s.get_ok("/good").text, "good", "a loaded page after")


if __name__ == "__main__":
    sys.exit(harness.run_suite(globals(), sys.argv[1:],
                               suite_budget=SUITE_BUDGET,
                               test_timeout=TEST_TIMEOUT,
                               verbose_total=False))
