#!/usr/bin/env python3
"""hotpub end-to-end tests for the edit-refresh loop (issue 14): the fast
compile tier (tcc, published at once, the optimized tier behind it), no
writable+executable mapping, undeclared functions as compile errors, live
reload over GET /_hotpub/events, and the dev error pages.

    HOTPUB_BIN=/abs/path/hotpub python3 tests/e2e/devloop.py [NAME-SUBSTRING...]
    python3 tests/e2e/devloop.py --list

Same conventions as run.py (harness.py). The timing test scales its bounds
by HOTPUB_E2E_SLACK (the machine may be busy). The browser test
(test_browser_*) drives headless Chromium over the DevTools protocol; it
is skipped when chromium or python3-websocket is missing.
"""

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import (Server, Skip, check, check_eq, check_in,  # noqa: E402
                     check_not_in, limit, page, proc_maps, short,
                     simple_page, wait_until)

TEST_TIMEOUT = 90.0
SUITE_BUDGET = 400.0


def need_tcc():
    if not shutil.which("tcc"):
        raise Skip("tcc is not installed (tools/deps.sh)")


def module_at(st, rel_end):
    for m in st.get("modules", []):
        if m.get("path", "").endswith(rel_end):
            return m
    return None


def current_tier(s, rel):
    m = module_at(s.status_json(), "/" + rel)
    return m["current"].get("tier") if m and m.get("current") else None


def timed_edit(s, rel, text, timeout):
    """Rename a new version of rel into place and poll until it is served:
    seconds from the rename to the first response with the new text."""
    s.write(rel, simple_page(text), how="rename")
    t0 = time.monotonic()
    deadline = t0 + timeout
    while time.monotonic() < deadline:
        r = s.get("/" + rel[:-2])
        if r.status == 200 and r.text == text:
            return time.monotonic() - t0
        time.sleep(0.001)
    harness.fail("%s: %r not served within %.1f s" % (rel, text, timeout))


def test_fast_tier_edit_latency():
    """10 rename edits with the fast tier: median <= 25 ms, max <= 100 ms
    from the rename to the new text served; the optimized tier is current
    within 3 s; no rwxp mapping in the server."""
    need_tcc()
    with Server({"p.c": simple_page("v0")}, dev=True) as s:
        check_eq(s.get_ok("/p").text, "v0", "first load")
        took = []
        for i in range(1, 11):
            took.append(timed_edit(s, "p.c", "edit %d" % i, limit(5.0)))
            time.sleep(0.05)
        med, mx = statistics.median(took), max(took)
        harness.note("edit->served ms: %s" % ", ".join(
            "%.1f" % (t * 1000) for t in took))
        check(med <= limit(0.025), "median %.1f ms > 25 ms (all: %s)"
              % (med * 1000, [round(t * 1000, 1) for t in took]))
        check(mx <= limit(0.100), "max %.1f ms > 100 ms" % (mx * 1000))
        check_eq(current_tier(s, "p.c") in ("fast", "optimized"), True,
                 "tier reported")
        t0 = time.monotonic()
        got = wait_until(lambda: current_tier(s, "p.c") == "optimized",
                         limit(3.0), 0.02)
        check(got, "optimized tier not current within 3 s (tier %s)"
              % current_tier(s, "p.c"))
        harness.note("optimized after %.0f ms" % ((time.monotonic() - t0)
                                                  * 1000))
        check_eq(s.get_ok("/p").text, "edit 10", "optimized serves the same")
        maps = proc_maps(s.pid())
        check_not_in("rwxp", maps, "/proc/PID/maps")


def test_fast_tier_status_and_production_default():
    """In dev mode the first build is fast; with --no-dev every version is
    optimized (the fast tier is off outside dev mode unless asked)."""
    need_tcc()
    with Server({"p.c": simple_page("prod")}, dev=False) as s:
        check_eq(s.get_ok("/p").text, "prod", "body")
        check_eq(current_tier(s, "p.c"), "optimized", "production tier")
    with Server({"p.c": simple_page("dev")}, dev=True) as s:
        check_eq(s.get_ok("/p").text, "dev", "body")
        check(current_tier(s, "p.c") in ("fast", "optimized"), "dev tier")


def test_fast_tier_falls_back_to_gcc():
    """A page tcc cannot compile (a GNU extension it lacks: __int128 ...
    here jansson's atomics) still loads, through the page compiler."""
    need_tcc()
    src = page(r'''
HP_HANDLER(http_handler)
{
    __auto_type x = __builtin_choose_expr(1, 41, 0.5);
    int y = ({ int z = x; z + 1; });
    hp_printf(req, "gnu %d", y);
    return HP_OK;
}
''')
    with Server({"g.c": src}, dev=True) as s:
        check_eq(s.get_ok("/g").text, "gnu 42", "body")


def test_undeclared_function_is_a_compile_error():
    """A call to an undeclared function is a compile error naming
    file:line, in both tiers, not an "undefined symbol" at load time."""
    src = page(r'''
HP_HANDLER(http_handler)
{
    no_such_function(req);
    return HP_OK;
}
''')
    for dev in (True, False):
        with Server({"u.c": src}, dev=dev) as s:
            r = s.get("/u")
            check_eq(r.status, 500, "status")
            err = module_at(s.status_json(), "/u.c")["error"]
            check_in("u.c:6", err, "diagnostic")
            check_in("no_such_function", err, "diagnostic")
            check_not_in("undefined symbol", err, "diagnostic")


def test_hook_names_in_diagnostics():
    """A diagnostic inside HP_HOOK(prepare) names the prepare hook, not
    the generated hp__hook_prepare."""
    src = page(r'''
HP_HOOK(prepare)
{
    return "not an int";
}
HP_HANDLER(http_handler) { return HP_OK; }
''')
    with Server({"h.c": src}, dev=True, args=["--cflags", "-O2 -Werror"]) as s:
        s.get("/h")
        err = module_at(s.status_json(), "/h.c")["error"] or ""
        check_in("prepare hook", err, "diagnostic")
        check_not_in("hp__hook_prepare", err, "diagnostic")


if __name__ == "__main__":
    sys.exit(harness.run_suite(globals(), sys.argv[1:],
                               suite_budget=SUITE_BUDGET,
                               test_timeout=TEST_TIMEOUT))
