#!/usr/bin/env python3
"""fresh8: regression tests for defects found by a fresh user's and an
attacker's tests of the last session's changes (database batches and
transaction rules, pooled session resets, hostile page constructors;
its placement tests, FRESH8-4, are in sched.py). Each test names the
defect it pins; on the code they were written against (4333a6d) every one
of them FAILS.

    HOTPUB_BIN=/abs/path/hotpub [HOTPUB_PG_URL=postgresql://...] \\
        python3 tests/e2e/fresh8.py [NAME-SUBSTRING...]

Its database tests (FRESH8-1, -2, -2b, -6, -7) moved to tests/e2e/db.py
once fixed (the lexer of db_lex.c, COPY refused, the rollback line); -2b
became a documented limit there (docs/database.md, "Sequences").
FRESH8-3 and -3b (stray signals) moved to workers.py (stray_*), FRESH8-8
to workers.py (lone_worker_*).
"""

import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import (SLACK, Server, check, check_eq,  # noqa: E402
                     limit, page, short, simple_page, wait_until)
import workers as W  # noqa: E402  (its first-load harness)

TEST_TIMEOUT = 120.0
SUITE_BUDGET = 600.0

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
