#!/usr/bin/env python3
"""hotpub end-to-end tests for the edit-refresh loop (issue 14): the fast
compile tier (tcc, published at once, the optimized tier behind it), no
writable+executable mapping, undeclared functions as compile errors, live
reload over GET /_hotpub/events (an external script, so that a page's
Content-Security-Policy allowing 'self' runs it), the dev error pages, and
the Host rule against DNS rebinding (421 for /_hotpub/, no dev details for
a foreign Host).

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
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import (Server, Skip, check, check_eq, check_in, fail,  # noqa: E402
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
    """10 rename edits with the fast tier: median <= 40 ms, max <= 150 ms
    from the rename to the new text served; the optimized tier is current
    within 3 s; no rwxp mapping in the server. The bound is the 20 ms
    settle window plus the fast tier's compile and load with room for a
    machine half as fast (median 21 ms on the reference machine,
    design.md; 26 ms once on a slower one, which the old 25 ms bound
    failed); the optimized tier's compile alone takes longer, so the
    bound still tells which tier served. Speed itself is measured in
    bench/edit_refresh.py."""
    need_tcc()
    with Server({"p.c": simple_page("v0")}, dev=True, fast_tier=None) as s:
        check_eq(s.get_ok("/p").text, "v0", "first load")
        took = []
        for i in range(1, 11):
            took.append(timed_edit(s, "p.c", "edit %d" % i, limit(5.0)))
            time.sleep(0.05)
        med, mx = statistics.median(took), max(took)
        harness.note("edit->served ms: %s" % ", ".join(
            "%.1f" % (t * 1000) for t in took))
        check(med <= limit(0.040), "median %.1f ms > 40 ms (all: %s)"
              % (med * 1000, [round(t * 1000, 1) for t in took]))
        check(mx <= limit(0.150), "max %.1f ms > 150 ms" % (mx * 1000))
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
    with Server({"p.c": simple_page("prod")}, dev=False,
                fast_tier=None) as s:
        check_eq(s.get_ok("/p").text, "prod", "body")
        check_eq(current_tier(s, "p.c"), "optimized", "production tier")
    with Server({"p.c": simple_page("dev")}, dev=True, fast_tier=None) as s:
        check_eq(s.get_ok("/p").text, "dev", "body")
        check(current_tier(s, "p.c") in ("fast", "optimized"), "dev tier")


RUNTIME_PAGE = page(r'''
#include <stdarg.h>
static int sum(int n, ...)
{
    va_list ap;
    va_start(ap, n);
    int t = 0;
    for (int i = 0; i < n; i++)
        t += va_arg(ap, int);
    va_end(ap);
    return t;
}
static void bye(void) {}
HP_HANDLER(http_handler)
{
    volatile double d = 3e10;
    unsigned long long u = (unsigned long long)d;
    hp_printf(req, "sum %d u %llu atexit %d", sum(3, 1, 2, 3), u, atexit(bye));
    return HP_OK;
}
''', includes="#include <stdlib.h>")
RUNTIME_BODY = "sum 6 u 30000000000 atexit 0"


def test_tcc_objects_get_tccs_runtime_and_the_start_files():
    """Code tcc generates calls into libtcc1.a (va_arg's __va_arg, float
    conversions) and atexit needs libc_nonshared.a with crtbeginS.o's
    __dso_handle: the fast tier links them, so such a page is served from
    the fast tier, not an 'undefined symbol'."""
    if not shutil.which("tcc"):
        raise Skip("tcc is not installed")
    with Server({"r.c": RUNTIME_PAGE}, dev=True, fast_tier=None,
                workers=0) as s:
        check_eq(s.get_ok("/r").text, RUNTIME_BODY, "body")
        check_eq(current_tier(s, "r.c"), "fast", "tier of the first load")
        check("did not load" not in s.stderr(), "a load failure logged")


def test_fast_object_that_does_not_load_is_built_optimized_at_once():
    """A fast-tier object that cannot be loaded (here: a tcc whose runtime
    cannot be found, so va_arg stays undefined) is not an error page: the
    optimized tier is built at once and serves the page."""
    if not shutil.which("tcc"):
        raise Skip("tcc is not installed")
    with Server({"r.c": RUNTIME_PAGE}, dev=True, fast_tier=None,
                workers=0, start=False) as s:
        fake = os.path.join(s.tmp, "faketcc")
        with open(fake, "w") as f:
            f.write("#!/bin/sh\n"
                    "[ \"$1\" = -print-search-dirs ] && "
                    "{ echo 'install: /nonexistent'; exit 0; }\n"
                    "exec %s \"$@\"\n" % shutil.which("tcc"))
        os.chmod(fake, 0o755)
        s.args += ["--fast-cc", fake]
        s.start()
        r = s.get("/r")
        check_eq((r.status, r.text), (200, RUNTIME_BODY), "served")
        check_eq(current_tier(s, "r.c"), "optimized", "tier")
        check_in("the fast tier's object did not load", s.stderr(), "log")


def ctor_page(tag, log):
    """A page whose constructor sets a value, whose destructor appends
    'bye TAG inited=N' to log, and whose handler shows the value and the
    size of a packed struct (5: attributes are honoured)."""
    return page(r"""
#include <stdio.h>
static int inited;
struct __attribute__((packed)) pk { char c; int i; };
__attribute__((constructor)) static void setup(void) { inited = 42; }
__attribute__((destructor)) static void bye(void)
{
    FILE *f = fopen("%s", "a");
    if (f) { fprintf(f, "bye %s inited=%%d\n", inited); fclose(f); }
}
HP_HANDLER(http_handler)
{
    hp_printf(req, "%s inited=%%d packed=%%d", inited, (int)sizeof(struct pk));
    return HP_OK;
}
""" % (log, tag, tag))


def slow_cc(s, seconds):
    """A --cc that takes `seconds` longer to build an object (the
    optimized tier), so the fast tier's version serves meanwhile."""
    path = os.path.join(s.tmp, "slowcc")
    with open(path, "w") as f:
        f.write('#!/bin/sh\nfor a; do [ "$a" = -shared ] && sleep %g; done\n'
                'exec cc "$@"\n' % seconds)
    os.chmod(path, 0o755)
    return path


def read_or_empty(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def test_constructors_and_destructors_run_in_the_fast_tier():
    """tcc's objects run __attribute__((constructor)) at load and
    ((destructor)) when a retired version is unloaded, and keep packed
    layouts, exactly as the optimized tier's do (glibc's sys/cdefs.h
    defines __attribute__ away for tcc unless include/hotpub-tcc is on
    its include path)."""
    need_tcc()
    log = tempfile.mktemp(prefix="hp-dtor-")
    try:
        with Server({"c.c": ctor_page("v1", log)}, dev=True, fast_tier=True,
                    start=False) as s:
            s.args += ["--cc", slow_cc(s, 3 * harness.SLACK)]
            s.start()
            check_eq(s.get_ok("/c").text, "v1 inited=42 packed=5", "fast v1")
            check_eq(current_tier(s, "c.c"), "fast", "tier of v1")
            s.write("c.c", ctor_page("v2", log), how="rename")
            check(wait_until(lambda: s.get("/c").text.startswith("v2"),
                             limit(5.0), 0.02), "v2 not served")
            check_eq(s.get_ok("/c").text, "v2 inited=42 packed=5", "fast v2")
            check_eq(current_tier(s, "c.c"), "fast", "tier of v2")
            check(wait_until(lambda: "bye v1" in read_or_empty(log),
                             limit(5.0), 0.02),
                  "fast v1's destructor did not run: %r" % read_or_empty(log))
            check_eq(read_or_empty(log), "bye v1 inited=42\n", "v1's fini")
            check(wait_until(lambda: current_tier(s, "c.c") == "optimized",
                             limit(15.0), 0.05), "optimized v2 not current")
            check_eq(s.get_ok("/c").text, "v2 inited=42 packed=5",
                     "optimized v2 answers as the fast one did")
            check(wait_until(lambda: "bye v2" in read_or_empty(log),
                             limit(5.0), 0.02), "fast v2's destructor")
            check_eq(read_or_empty(log).count("bye v2 inited=42\n"), 1,
                     "fast v2's destructor, once")
    finally:
        if os.path.exists(log):
            os.unlink(log)


def test_constructor_that_aborts_names_the_page():
    """A constructor runs inside dlopen: its crash is logged as the
    module's constructor hook, not 'no page handler was running', and the
    request that loaded it is answered 503 naming the constructor's call
    (function, line, address: not a made-up 0x0), in the fast tier as in
    the optimized one."""
    src = page(r"""
__attribute__((constructor)) static void boom(void) { abort(); }
HP_HANDLER(http_handler) { hp_puts(req, "ok"); return HP_OK; }
""", includes="#include <stdlib.h>")
    for fast in ([True] if shutil.which("tcc") else []) + [False]:
        with Server({"b.c": src}, dev=True, fast_tier=fast, workers=1,
                    check_exit=False) as s:
            r = s.get("/b")
            check_eq(r.status, 503, "the loading request (fast %s)" % fast)
            # the constructor's call to abort, found on the stack though
            # dlopen has not returned: its function, line and address
            check_in("boom\n", r.text, "the constructor named")
            check_in("b.c:4\n", r.text, "its line (fast %s)" % fast)
            check_not_in("Address in the object: 0x0.", r.text, "no 0x0")
            want = "a constructor of the page b.c"
            check(wait_until(lambda: want in s.stderr(), limit(5.0), 0.05),
                  "log does not name the page (fast %s): %s"
                  % (fast, s.stderr()[-600:]))
            check_not_in("no page handler was running", s.stderr(), "log")
            r = s.get("/b")
            check_eq(r.status, 503, "refused until the file changes")
            check_in("a constructor of the page b.c", r.text, "why")


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
    with Server({"g.c": src, "ax.c": ATEXIT_DIVTI3_PAGE}, dev=True,
                fast_tier=None) as s:
        check_eq(s.get_ok("/g").text, "gnu 42", "body")
        check_eq(s.get_ok("/ax").text, "atexit 0 q 142857142857", "libgcc")
        check_eq(len(pch_files(s)), 1, "the fallback's precompiled header")


def test_fast_tier_timeout_does_not_fall_back():
    """A page that includes a FIFO: tcc blocks opening it until
    --compile-timeout (2 s) stops it. That verdict is the answer: no gcc
    fallback waiting out a second timeout (it did: ~4 s a request, and a
    timeout is not cached). tcc's own refusals still fall back
    (test_fast_tier_falls_back_to_gcc)."""
    need_tcc()
    fifo_page = page("HP_HANDLER(http_handler) { return HP_OK; }",
                     includes='#include "_fifo.h"')
    with Server({"good.c": simple_page("good")}, dev=True, fast_tier=True,
                start=False, args=["--compile-timeout", "2"]) as s:
        os.mkfifo(s.path("_fifo.h"))
        s.start()
        check_eq(s.get_ok("/good").text, "good", "good page")
        for name in ("f1", "f2"):  # from the write: one timeout, not two
            t0 = time.monotonic()
            s.write(name + ".c", fifo_page, how="rename")
            r = s.get("/" + name)
            took = time.monotonic() - t0
            harness.note("FIFO include, /%s: %d after %.2f s"
                         % (name, r.status, took))
            check_eq(r.status, 500, "status of the FIFO page")
            check_in("compile-timeout = 2 s", r.text)
            check(1.9 <= took < 3.5, "diagnostic after %.2f s (one 2 s "
                  "timeout, not two)" % took)
        check_eq(len(pch_files(s)), 0, "the gcc fallback ran")
        check(s.alive(), "server died")


# --cc for the test below: a source with SLOW_MARKER waits in the wrapper,
# before gcc, until the file "release" appears beside it (60 s at most);
# "slow.started" says that one does. The fast tier (tcc) does not run it.
HELD_CC = r"""#!/bin/sh
here=$(dirname "$0")
src=
for a in "$@"; do case $a in *.c) src=$a ;; esac; done
if [ -n "$src" ] && grep -q SLOW_MARKER "$src"; then
    : > "$here/slow.started"
    i=0
    while [ ! -e "$here/release" ] && [ $i -lt 1200 ]; do
        sleep 0.05
        i=$((i + 1))
    done
fi
exec gcc "$@"
"""


def test_optimized_build_of_an_older_save_never_hides_a_newer_error():
    """A good save ("Items v2") whose optimized build is slow (held in the
    --cc wrapper), then a save that does not compile: the dev error page,
    the error in status.json and an error event. When the held optimized
    build of the good save ends, it is dropped, not published: before,
    it went live as "version N replaces M", cleared the error and served
    200 "Items v2" until the next save."""
    need_tcc()
    with Server({"items.c": simple_page("Items v1")}, dev=True,
                fast_tier=True, start=False) as s:
        wrapper = os.path.join(s.tmp, "held-cc")
        with open(wrapper, "w") as f:
            f.write(HELD_CC)
        os.chmod(wrapper, 0o755)
        s.args += ["--cc", wrapper]
        s.start()
        check_eq(s.get_ok("/items").text, "Items v1", "first load")
        check(wait_until(lambda: current_tier(s, "items.c") == "optimized",
                         limit(10)), "v1 never went optimized")
        es = EventStream(s.port)
        try:
            es.head()
            s.write("items.c", simple_page("Items v2", "/* SLOW_MARKER */"),
                    how="rename")
            check(wait_until(lambda: s.get("/items").text == "Items v2",
                             limit(3)), "v2 (fast tier) not served")
            check(wait_until(lambda: os.path.exists(
                os.path.join(s.tmp, "slow.started")), limit(5)),
                "the optimized build of v2 did not start")
            broken = simple_page("Items v2").replace(
                'hp_puts(req, "Items', 'hp_putz(req, "Items')
            s.write("items.c", broken, how="rename")
            r = wait_until(lambda: (lambda r: r if r.status == 500 else None)(
                s.get("/items")), limit(5))
            check(r, "the broken save did not answer 500")
            check_in("hp_putz", r.text, "the dev error page's diagnostic")
            ev = es.wait(lambda e: e.get("path") == "/items.c" and
                         e.get("error"), limit(3))
            check(ev, "no error event: %r" % es.buf[-300:])
            es.buf = b""
            published = s.stderr().count("items.c: version")
            with open(os.path.join(s.tmp, "release"), "w"):
                pass
            # the held build ends: dropped (fixed) or published (the bug)
            check(wait_until(
                lambda: "is not published" in s.stderr() or
                s.stderr().count("items.c: version") > published,
                limit(10)), "the held optimized build never ended")
            time.sleep(0.2)
            r = s.get("/items")
            check_eq(r.status, 500, "status after the older optimized build "
                     "ended (body %r)" % short(r.text))
            check_in("hp_putz", r.text, "diagnostic still shown")
            url = json.loads(s.get("/_hotpub/status.json?url=/items")
                             .text)["url"]
            check(url.get("error") and "hp_putz" in url["error"],
                  "status.json url error: %r" % url.get("error"))
            check_eq(current_tier(s, "items.c"), "fast", "tier serving")
            check(es.wait(lambda e: e.get("path") == "/items.c" and
                          e.get("error") is None, 0.3) is None,
                  "a reload event cleared the overlay")
            drop = [l for l in s.stderr().split("\n")
                    if "is not published" in l]
            check(drop and "version" in drop[0], "the drop names the version")
            harness.note(drop[0].split("[info] ")[-1])
            check_not_in("the fast tier keeps", s.stderr(), "log")
            # the fix goes live, and its own optimized build after it
            s.write("items.c", simple_page("Items v3"), how="rename")
            check(wait_until(lambda: s.get("/items").text == "Items v3",
                             limit(3)), "the fix not served")
            check(wait_until(lambda: current_tier(s, "items.c") ==
                             "optimized", limit(10)), "v3 never optimized")
            check_eq(s.get_ok("/items").text, "Items v3", "after optimizing")
        finally:
            es.close()


ATEXIT_DIVTI3_PAGE = page(r'''
static void bye(void) {}
HP_HANDLER(http_handler)
{
    volatile __int128 a = 1000000000000LL, b = 7; /* __divti3: libgcc */
    __int128 q = a / b;
    int r = atexit(bye); /* libc_nonshared.a, with crtbeginS's __dso_handle */
    hp_printf(req, "atexit %d q %lld", r, (long long)q);
    return HP_OK;
}
''', includes="#include <stdlib.h>")


def pch_files(s):
    obj = os.path.join(s.cache, "obj")
    return [os.path.join(obj, d, "hotpub.h.gch") for d in os.listdir(obj)
            if d.startswith("pch-")
            and os.path.exists(os.path.join(obj, d, "hotpub.h.gch"))]


def test_fast_tier_gcc_fallback_without_tcc():
    """--fast-cc off: the fast tier is gcc -O0 -c against a precompiled
    hotpub.h, linked by ld itself. An edit is served, status.json shows
    tier fast then optimized, the .gch is in the compile cache, a page
    that needs libgcc (__divti3) and libc_nonshared.a (atexit) loads, the
    object has no executable stack and no rwxp mapping appears."""
    with Server({"p.c": simple_page("v0"), "ax.c": ATEXIT_DIVTI3_PAGE},
                dev=True, fast_tier=None, args=["--fast-cc", "off"]) as s:
        check_eq(s.get_ok("/p").text, "v0", "first load")
        check_eq(s.get_ok("/ax").text, "atexit 0 q 142857142857", "libgcc")
        check(wait_until(lambda: current_tier(s, "p.c") == "optimized",
                         limit(5.0)), "optimized after the first load")
        took = timed_edit(s, "p.c", "v1", limit(5.0))
        tier = current_tier(s, "p.c")
        harness.note("edit->served %.0f ms with gcc -O0 (tier %s)"
                     % (took * 1000, tier))
        check_eq(tier, "fast", "tier right after the edit")
        check(wait_until(lambda: current_tier(s, "p.c") == "optimized",
                         limit(5.0)), "optimized tier not current within 5 s")
        check_eq(s.get_ok("/p").text, "v1", "optimized serves the same")
        check_eq(len(pch_files(s)), 1, "one precompiled hotpub.h")
        check(os.path.getsize(pch_files(s)[0]) > 100000, ".gch size")
        obj = os.path.join(s.cache, "obj")
        for so in [f for f in os.listdir(obj) if f.endswith(".so")]:
            out = subprocess.run(["readelf", "-lW", os.path.join(obj, so)],
                                 capture_output=True, text=True).stdout
            check_in("GNU_STACK", out, so)
            check_not_in("RWE", out, so)
        check_not_in("rwxp", proc_maps(s.pid()), "/proc/PID/maps")


def test_gcc_fallback_diagnostics_without_tcc():
    """--fast-cc off: a compile error names file:line (one compile, not
    two), and a function declared but defined nowhere is explained from
    the directly linked object's load failure."""
    bad = page(r'''
HP_HANDLER(http_handler)
{
    no_such_function(req);
    return HP_OK;
}
''')
    undef = page(r'''
int hp_nowhere_defined(int x);
HP_HANDLER(http_handler)
{
    hp_printf(req, "%d", hp_nowhere_defined(1));
    return HP_OK;
}
''')
    with Server({"u.c": bad, "d.c": undef}, dev=True, fast_tier=None,
                args=["--fast-cc", "off"]) as s:
        check_eq(s.get("/u").status, 500, "status")
        err = module_at(s.status_json(), "/u.c")["error"]
        check_in("u.c:6", err, "diagnostic")
        check_in("no_such_function", err, "diagnostic")
        check_eq(s.status_json()["server"]["compiles"], 1,
                 "one compiler run for a compile error")
        check_eq(s.get("/d").status, 500, "status")
        err = module_at(s.status_json(), "/d.c")["error"]
        check_in("d.c:4: error: 'hp_nowhere_defined' is declared but "
                 "defined nowhere", err, "diagnostic")
        check_in("d.c:7: note:", err, "the call")


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
        with Server({"u.c": src}, dev=dev, fast_tier=None) as s:
            r = s.get("/u")
            check_eq(r.status, 500, "status")
            err = module_at(s.status_json(), "/u.c")["error"]
            check_in("u.c:6", err, "diagnostic")
            check_in("no_such_function", err, "diagnostic")
            check_not_in("undefined symbol", err, "diagnostic")


def test_declared_but_undefined_function_names_its_lines():
    """A function declared but defined nowhere: the load failure names the
    file:line that declares and uses it, in both tiers."""
    src = page(r'''
int hp_nowhere_defined(int x);
HP_HANDLER(http_handler)
{
    hp_printf(req, "%d", hp_nowhere_defined(1));
    return HP_OK;
}
''')
    for dev in (True, False):
        with Server({"d.c": src}, dev=dev, fast_tier=None) as s:
            check_eq(s.get("/d").status, 500, "status")
            err = module_at(s.status_json(), "/d.c")["error"]
            check_in("d.c:4: error: 'hp_nowhere_defined' is declared but "
                     "defined nowhere", err, "diagnostic")
            check_in("d.c:7: note:", err, "the call")


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
    with Server({"h.c": src}, dev=True, fast_tier=None,
                args=["--cflags", "-O2 -Werror"]) as s:
        s.get("/h")
        err = module_at(s.status_json(), "/h.c")["error"] or ""
        check_in("prepare hook", err, "diagnostic")
        check_not_in("hp__hook_prepare", err, "diagnostic")


HTML_PAGE = r"""
HP_HANDLER(http_handler)
{
    hp_puts(req, "<!doctype html><html><head><title>t</title>"
                 "<link rel=stylesheet href=/s.css></head>"
                 "<body><p id=msg>TEXT</p></body></html>");
    return HP_OK;
}
"""

TEXT_PAGE = r"""
HP_HANDLER(http_handler)
{
    hp_set_header(req, "Content-Type", "text/plain");
    hp_puts(req, "plain </body> text");
    return HP_OK;
}
"""

STATIC_HTML = "<!doctype html><html><body><p>static</p></body></html>\n"

STREAMED_PAGE = r"""
HP_HANDLER(http_handler)
{
    hp_puts(req, "<!doctype html><html><body><p>part one</p>");
    hp_flush(req);
    hp_puts(req, "<p>part two</p></body></html>");
    return HP_OK;
}
"""


CSP_PAGE = r"""
HP_HANDLER(http_handler)
{
    hp_set_header(req, "Content-Security-Policy", "default-src 'self'");
    hp_puts(req, "<!doctype html><html><head><title>t</title>"
                 "<script src=/watch.js></script>"
                 "<link rel=stylesheet href=/s.css></head>"
                 "<body><p id=msg>TEXT</p></body></html>");
    return HP_OK;
}
"""

# A policy that allows scripts and styles by nonce only (strict-dynamic
# ignores 'self' for scripts), as CSP Level 3's "strict CSP" advice has it.
CSP_NONCE_PAGE = r"""
HP_HANDLER(http_handler)
{
    hp_set_header(req, "Content-Security-Policy",
                  "default-src 'self'; script-src 'nonce-r4nD0m+/=' "
                  "'strict-dynamic'; style-src 'nonce-r4nD0m+/='");
    hp_puts(req, "<!doctype html><html><head><title>t</title>"
                 "<script nonce=r4nD0m+/= src=/watch.js></script>"
                 "<link nonce=r4nD0m+/= rel=stylesheet href=/s.css></head>"
                 "<body><p id=msg>TEXT</p></body></html>");
    return HP_OK;
}
"""

# Counts what the page's Content-Security-Policy refused (an external
# script, so the policy lets it run).
CSP_WATCH_JS = ("window.__cspRefused = [];"
                "document.addEventListener('securitypolicyviolation',"
                "function(e){window.__cspRefused.push(e.violatedDirective +"
                "' ' + e.blockedURI)});\n")


def html_page(text, csp=False):
    """A page answering HTML that shows text in #msg; csp: with the
    guestbook's Content-Security-Policy (default-src 'self')."""
    src = CSP_NONCE_PAGE if csp == "nonce" else CSP_PAGE if csp else HTML_PAGE
    return page(src.replace("TEXT", text))


def test_live_reload_script_only_in_dev_html():
    """The script goes before </body> of text/html in dev mode; not into
    text/plain, not outside dev mode."""
    files = {"h.c": html_page("hello"), "t.c": page(TEXT_PAGE),
             "st.c": page(STREAMED_PAGE), "doc.html": STATIC_HTML,
             "notes.txt": "plain </body> text\n"}
    with Server(files, dev=True, fast_tier=None) as s:
        body = s.get_ok("/h").text
        check_in("data-hotpub-live-reload", body, "dev HTML")
        check(body.index("data-hotpub-live-reload") < body.index("</body>"),
              "script before </body>")
        check_in('src="/_hotpub/live-reload.js"', body, "an external script")
        check_in('data-deps="[&quot;/h.c&quot;]"', body,
                 "the page is among the script's files")
        check_not_in("hotpub", s.get_ok("/t").text, "text/plain")
        check_not_in("data-hotpub-live-reload", s.get_ok("/st").text,
                     "streamed HTML (hp_flush)")
        r = s.get_ok("/doc.html")
        check_in('&quot;/doc.html&quot;]', r.text, "static HTML lists itself")
        check_eq(r.header("Cache-Control"), "no-store", "static HTML in dev")
        check_not_in("hotpub", s.get_ok("/notes.txt").text, "static text")
    with Server(files, dev=False, fast_tier=None) as s:
        check_not_in("data-hotpub-live-reload", s.get_ok("/h").text,
                     "production HTML")
        check_eq(s.get_ok("/doc.html").text, STATIC_HTML,
                 "production static HTML")
        check_eq(s.get("/_hotpub/events").status, 404, "events outside dev")
        check_eq(s.get("/_hotpub/live-reload.js").status, 404,
                 "the script outside dev")


# ---- DNS rebinding: the Host rule -----------------------------------------

EVIL = "evil.example"

INIT_PAGE = r"""
#include <fcntl.h>
#include <unistd.h>

HP_INIT
{
    int fd = open("INIT_MARK", O_CREAT | O_WRONLY, 0600);
    if (fd >= 0)
        close(fd);
    return 0;
}

HP_HANDLER(http_handler) { hp_puts(req, "<p>init</p>"); return HP_OK; }
"""

BROKEN_PAGE = r"""
HP_HANDLER(http_handler)
{
    int x = "definitely not an int" * 2;
    return HP_OK;
}
"""

HOTPUB_PATHS = ("/_hotpub/status.json", "/_hotpub/status.json?url=/i",
                "/_hotpub/", "/_hotpub/metrics", "/_hotpub/health",
                "/_hotpub/status.events", "/_hotpub/events",
                "/_hotpub/live-reload.js", "/_hotpub/live-reload.css",
                "/_hotpub/nothing")


def check_refused(s, path, host, what):
    """A 421 (RFC 9110 §15.5.20) whose body says nothing of the server."""
    r = s.get(path, headers={"Host": host}, timeout=5)
    check_eq(r.status, 421, "%s %s with Host %s" % (what, path, host))
    for leak in (s.root, str(s.proc.pid), "hotpub", "error"):
        check_not_in(leak, r.text, "the 421's body")


def test_rebinding_host_refused_for_hotpub():
    """A page on evil.example that rebinds its name to 127.0.0.1 reaches
    hotpub from the developer's browser with a loopback address but Host:
    evil.example: every /_hotpub/ path answers it 421 with nothing of the
    server in the body, and ?url= loads nothing (its HP_INIT does not
    run); loopback names and addresses, with any port, are answered."""
    mark = tempfile.mktemp(prefix="hp-init-mark-")
    files = {"i.c": page(INIT_PAGE.replace("INIT_MARK", mark)),
             "h.c": html_page("hello")}
    try:
        with Server(files, dev=True, fast_tier=None) as s:
            for path in HOTPUB_PATHS:
                for host in (EVIL, "%s:%d" % (EVIL, s.port),
                             "localhost.%s" % EVIL, "127.0.0.1.nip.io"):
                    check_refused(s, path, host, "rebinding page")
            check(not os.path.exists(mark), "?url= ran HP_INIT for %s" % EVIL)
            check(module_at(s.status_json(), "/i.c") is None,
                  "?url= loaded the page for %s" % EVIL)
            for host in ("localhost", "localhost:%d" % s.port,
                         "app.localhost:%d" % s.port, "127.0.0.1",
                         "127.0.0.1:%d" % s.port, "127.8.9.10:1",
                         "[::1]:%d" % s.port, "LocalHost"):
                r = s.get("/_hotpub/status.json", headers={"Host": host})
                check_eq(r.status, 200, "status.json with Host " + host)
            r = s.get("/_hotpub/status.json?url=/i",
                      headers={"Host": "localhost:%d" % s.port})
            check_eq(r.status, 200, "?url= from localhost")
            check(os.path.exists(mark), "?url= from localhost ran HP_INIT")
    finally:
        if os.path.exists(mark):
            os.unlink(mark)


def test_rebinding_allowed_hosts_and_token():
    """--allowed-hosts names the operator's own names (exact, or .suffix
    for subdomains); a valid --admin-token makes up for a foreign Host (a
    rebinding page cannot know it); without it the answer is 421, not
    401."""
    files = {"h.c": html_page("hello")}
    with Server(files, dev=True, fast_tier=None,
                args=["--allowed-hosts", "dev.example.test,.apps.test",
                      "--admin-token", "s3cret"]) as s:
        for host in ("dev.example.test:%d" % s.port, "apps.test",
                     "a.apps.test:%d" % s.port):
            r = s.get("/_hotpub/status.json", headers={"Host": host})
            check_eq(r.status, 200, "status.json with Host " + host)
        check_refused(s, "/_hotpub/status.json", "x.dev.example.test",
                      "not listed")
        check_refused(s, "/_hotpub/status.json", EVIL, "no token")
        r = s.get("/_hotpub/status.json",
                  headers={"Host": EVIL, "Authorization": "Bearer s3cret"})
        check_eq(r.status, 200, "a foreign Host with the token")
        check_refused(s, "/_hotpub/metrics", EVIL, "a wrong token")
    r = subprocess.run([harness.hotpub_bin(), "serve", "--allowed-hosts",
                        "example.test:80", "/nonexistent"],
                       capture_output=True, text=True, timeout=30)
    check(r.returncode != 0, "a port in --allowed-hosts is refused")
    check_in("is not a host name", r.stderr, "why")


def test_rebinding_gets_no_dev_details():
    """Dev mode's details are for the developer's own tab: for a foreign
    Host a broken page or template answers the plain 500 (no diagnostic,
    no path), an
    HTML page and a static HTML file get no live-reload script; the page
    itself is still served."""
    files = {"e.c": page(BROKEN_PAGE), "h.c": html_page("hello"),
             "doc.html": STATIC_HTML,
             "t.c": page("HP_HANDLER(http_handler) "
                         "{ return hp_render(req, \"bad.tpl\", NULL); }\n"),
             "bad.tpl": "{{#open}} never closed\n"}
    with Server(files, dev=True, fast_tier=None) as s:
        evil = {"Host": EVIL}
        r = s.get("/e", headers=evil)
        check_eq(r.status, 500, "broken page")
        for leak in ("e.c", "hp-err", "definitely", s.root, "hotpub"):
            check_not_in(leak, r.text, "the 500 for a foreign Host")
        r = s.get("/t", headers=evil)
        check_eq(r.status, 500, "broken template")
        for leak in ("bad.tpl", "open", "template", s.root):
            check_not_in(leak, r.text, "the template's 500 for a foreign Host")
        check_in("bad.tpl", s.get("/t").text, "the template error for 127.0.0.1")
        r = s.get("/h", headers=evil)
        check_eq(r.status, 200, "the page is served")
        check_in("hello", r.text, "the page")
        check_not_in("hotpub", r.text, "HTML for a foreign Host")
        check_eq(s.get("/doc.html", headers=evil).text, STATIC_HTML,
                 "static HTML for a foreign Host")
        # the developer's own tab still gets them
        r = s.get("/e", headers={"Host": "localhost:%d" % s.port})
        check_in("e.c:", r.text, "the diagnostic for localhost")
        check_in("data-hotpub-live-reload", s.get_ok("/h").text,
                 "the script for 127.0.0.1")


def test_rebinding_gets_no_crash_page():
    """The dev crash page names the signal, the page's path and its
    source line: a foreign Host gets none of it (the worker still dies
    and is replaced); the developer's own tab gets it."""
    src = page(CRASH_PAGE)
    with Server({"page.c": src}, dev=True, workers=2) as s:
        r = s.raw(b"GET /page HTTP/1.1\r\nHost: " + EVIL.encode() +
                  b"\r\nConnection: close\r\n\r\n", read_all=True)
        text = r.text if r else ""
        for leak in ("SIGSEGV", "page.c", s.root, "http_handler"):
            check_not_in(leak, text, "the crash answer for a foreign Host")
        check(wait_until(lambda: s.get("/_hotpub/health").status == 200,
                         limit(5)), "served after it")
        r = s.get("/page")
        check_eq(r.status, 502, "the crash page for 127.0.0.1")
        check_in("SIGSEGV", r.text, "signal named for 127.0.0.1")
    # the single process (--workers 0): it dies all the same, silently
    with Server({"page.c": src}, dev=True, workers=0) as s:
        r = s.raw(b"GET /page HTTP/1.1\r\nHost: " + EVIL.encode() +
                  b"\r\nConnection: close\r\n\r\n", read_all=True)
        text = r.text if r else ""
        for leak in ("SIGSEGV", "page.c", s.root, "http_handler"):
            check_not_in(leak, text, "the single process's crash answer")
        try:
            s.proc.wait(timeout=limit(5.0))
        except subprocess.TimeoutExpired:
            raise AssertionError("the single process outlived its crash")
        s.check_exit = False  # it died, as it had to


class EventStream:
    """A raw GET /_hotpub/events: events() returns the JSON of each data:
    line received so far (waiting up to timeout for at least one more)."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.sock.sendall(b"GET /_hotpub/events HTTP/1.1\r\n"
                          b"Host: 127.0.0.1\r\n\r\n")
        self.buf = b""
        self.seen = 0

    def _read(self, timeout):
        self.sock.settimeout(timeout)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            return False
        if not chunk:
            return False
        self.buf += chunk
        return True

    def head(self, timeout=5.0):
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in self.buf and time.monotonic() < deadline:
            self._read(deadline - time.monotonic())
        return self.buf.split(b"\r\n\r\n", 1)[0].decode()

    def wait(self, pred, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.buf.split(b"\nevent: reload\n")[1:]:
                if line.startswith(b"data: "):
                    try:
                        ev = json.loads(line[6:].decode())
                    except ValueError:
                        continue  # cut across two reads
                    if pred(ev):
                        return ev
            self._read(max(0.01, deadline - time.monotonic()))
        return None

    def close(self):
        self.sock.close()

    def all(self):
        """Every event received so far (complete ones only)."""
        evs = []
        for part in self.buf.split(b"\nevent: reload\n")[1:]:
            line = part.split(b"\n", 1)[0]
            if line.startswith(b"data: "):
                try:
                    evs.append(json.loads(line[6:].decode()))
                except ValueError:
                    pass  # not all of it here yet
        return evs

    def count_after(self, save, first, quiet):
        """Forget what came so far, run save(), then collect events until
        one satisfying first has come (up to 5 s; None: none expected) and
        quiet seconds more have passed: every event the save caused."""
        self.buf = b"\n"  # each event is preceded by a blank line
        save()
        if first:
            self.wait(first, limit(5.0))
        end = time.monotonic() + quiet
        while time.monotonic() < end:
            self._read(max(0.01, end - time.monotonic()))
        return self.all()


def test_events_stream_reports_changes_and_errors():
    """GET /_hotpub/events: a page published sends its path; a broken save
    sends the error with file:line and the overlay's HTML; the fix sends
    the path again."""
    with Server({"p.c": html_page("one")}, dev=True, fast_tier=None) as s:
        s.get_ok("/p")
        es = EventStream(s.port)
        try:
            head = es.head()
            check_in("200", head.split("\r\n")[0], "status line")
            check_in("text/event-stream", head, "content type")
            s.write("p.c", html_page("two"), how="rename")
            ev = es.wait(lambda e: e.get("path") == "/p.c" and
                         e.get("error") is None, limit(2.0))
            check(ev, "no change event for /p.c: %r" % es.buf[-300:])
            es.buf = b""
            bad = html_page("three") + "\nint broken = ;\n"
            s.write("p.c", bad, how="rename")
            ev = es.wait(lambda e: e.get("error"), limit(3.0))
            check(ev, "no error event: %r" % es.buf[-300:])
            check_eq(ev["path"], "/p.c", "error path")
            check_in("p.c:%d" % (bad.split("\n").index("int broken = ;") + 1),
                     ev["error"], "diagnostic file:line")
            check_in("broken", ev["html"], "overlay source excerpt")
            check_in("hp-err", ev["html"], "overlay styled")
            es.buf = b""
            s.write("p.c", html_page("fixed"), how="rename")
            ev = es.wait(lambda e: e.get("path") == "/p.c" and
                         e.get("error") is None, limit(3.0))
            check(ev, "no recovery event")
            check_in("fixed", s.get_ok("/p").text, "fixed page")
        finally:
            es.close()


def test_events_streams_hold_no_handler_thread():
    """Event streams are suspended connections: 12 of them open with 2
    handler threads, a page that runs on a handler thread still answers,
    and the server stops promptly."""
    slow = page(r"""
HP_HANDLER(http_handler)
{
    usleep(60000); /* > the inline mark: demoted to the handler threads */
    hp_puts(req, "ok");
    return HP_OK;
}
""", "#include <unistd.h>")
    with Server({"s.c": slow}, dev=True, fast_tier=None,
                args=["--threads", "2"]) as s:
        streams = [EventStream(s.port) for _ in range(12)]
        try:
            for es in streams:
                check_in("200", es.head().split("\r\n")[0], "stream status")
            for _ in range(3):
                check_eq(s.get_ok("/s").text, "ok", "page beside streams")
            s.write("s.c", slow.replace('"ok"', '"ok2"'), how="rename")
            for es in streams:
                check(es.wait(lambda e: e.get("path") == "/s.c", limit(3.0)),
                      "every stream hears the change")
        finally:
            t0 = time.monotonic()
            s.stop()
            check(time.monotonic() - t0 < limit(5.0), "stop with streams")
            for es in streams:
                es.close()


def write_bytes(path, data):
    with open(path, "wb") as f:
        f.write(data)


def sed_save(path, script):
    """sed -i: a temporary sedXXXXXX beside the file (a name that would
    be published), written, then renamed over it."""
    subprocess.run(["sed", "-i", script, path], check=True)


def vim_save(path, data):
    """What vim does on :w with 'writebackup' and 'backupcopy' no, while
    its swap file is open: the swap probe .NAME.swx, the swap file
    .NAME.swp, the directory probe 4913 (created, removed), the file
    renamed to NAME~, the new file written and synced, NAME~ removed."""
    d, name = os.path.split(path)
    swx = os.path.join(d, "." + name + ".swx")
    write_bytes(swx, b"")
    os.unlink(swx)
    swp = os.path.join(d, "." + name + ".swp")
    write_bytes(swp, b"b0VIM 9.0")
    probe = os.path.join(d, "4913")
    write_bytes(probe, b"")
    os.unlink(probe)
    os.rename(path, path + "~")
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.unlink(path + "~")
    os.unlink(swp)


def inplace_save(path, data):
    """An editor that truncates the file and writes it in place, in two
    writes a moment apart (one open, one close)."""
    with open(path, "r+b") as f:
        f.truncate(0)
        f.flush()
        time.sleep(0.005)
        f.write(data[:10])
        f.flush()
        time.sleep(0.005)
        f.write(data[10:])


def unpublished_names(s):
    """Files never served (names starting with '.' or '_', under a '_'
    directory, editor leftovers) written, then removed."""
    names = ["#s.css#", "notes.txt~", "s.css.swp", "s.css.swx", "4913",
             ".hidden.css", "_draft.css", "_parts/x.css", "s.css.bak"]
    for n in names:
        write_bytes(s.path(n), b"x")
    os.symlink("me@host.1234:1", s.path(".#s.css"))  # Emacs's lock
    time.sleep(0.1)
    for n in names + [".#s.css"]:
        os.unlink(s.path(n))


def test_one_reload_event_per_save_whatever_the_editor():
    """One save is one reload event, whichever way it is written: sed -i
    (its temporary sedXXXXXX is created and renamed away), vim's
    sequence (swap files, the 4913 probe, the NAME~ backup), cp, and an
    editor that truncates and writes in place, for a static file and for
    a page (a page that does not compile: its error event, once). Names
    that are never published (dot, underscore, editor leftovers) send
    nothing. One server for all of them."""
    css = "body { color: red }\n"
    with Server({"p.c": html_page("one"), "q.c": html_page("q"), "s.css": css,
                 "_parts/keep.txt": "k"}, dev=True, fast_tier=None) as s:
        s.get_ok("/p")
        es = EventStream(s.port)
        quiet = limit(0.6)  # the static settle (50 ms) and then some
        try:
            check_in("200", es.head().split("\r\n")[0], "stream status")
            css_path, src = s.path("s.css"), s.scratch + "/new.css"

            def is_css(e):
                return e.get("path") == "/s.css"

            def page_ok(e):
                return e.get("path") == "/p.c" and e.get("error") is None

            write_bytes(src, b"body { color: green }\n")
            steps = [
                ("sed -i s.css", lambda: sed_save(css_path, "s/red/blue/"),
                 is_css),
                ("vim s.css", lambda: vim_save(
                    css_path, b"body { color: navy }\n"), is_css),
                ("cp s.css", lambda: subprocess.run(
                    ["cp", src, css_path], check=True), is_css),
                ("in place s.css", lambda: inplace_save(
                    css_path, b"body { color: black; margin: 0 }\n"), is_css),
                ("unpublished names", lambda: unpublished_names(s), None),
                # a page not requested since the start (a tab open from
                # an earlier run shows it): its own event, as before
                ("sed -i q.c", lambda: sed_save(s.path("q.c"), "s/q/Q/"),
                 lambda e: e.get("path") == "/q.c"),
                ("sed -i p.c", lambda: sed_save(s.path("p.c"), "s/one/two/"),
                 page_ok),
                ("vim p.c", lambda: vim_save(
                    s.path("p.c"), html_page("three").encode()), page_ok),
                ("sed -i p.c, broken", lambda: sed_save(
                    s.path("p.c"), "$a int broken = ;"),
                 lambda e: e.get("error")),
                ("sed -i p.c, fixed", lambda: sed_save(
                    s.path("p.c"), "/int broken/d; s/three/four/"),
                 page_ok),
            ]
            got = {}
            for what, save, first in steps:
                evs = es.count_after(save, first, quiet)
                got[what] = [(e.get("path"), bool(e.get("error")))
                             for e in evs]
            harness.note("events: %r" % got)
            # "sed -i p.c, broken": one error event for /p.c
            want = {w: ([] if f is None else
                        [("/" + [t for t in w.replace(",", "").split()
                                 if "." in t][0], "broken" in w)])
                    for w, _, f in steps}
            check_eq(got, want, "events of each save")
            check_in("four", s.get_ok("/p").text, "the last save served")
        finally:
            es.close()


def test_compile_error_page_is_styled_with_excerpt():
    """The dev compile-error page: the file:line as a link, the source
    line itself in an excerpt, the diagnostic; the live-reload script so
    it recovers by itself."""
    src = page(r"""
HP_HANDLER(http_handler)
{
    int x = "definitely not an int" * 2;
    return HP_OK;
}
""")
    with Server({"e.c": src}, dev=True, fast_tier=None) as s:
        r = s.get("/e")
        check_eq(r.status, 500, "status")
        check_in("hp-err", r.text, "styled")
        check_in("e.c:6", r.text, "file:line")
        check_in('class="hit"', r.text, "excerpt marks the line")
        check_in("definitely not an int", r.text, "source excerpt")
        check_in("data-hotpub-live-reload", r.text, "recovers by itself")


CRASH_PAGE = r"""
HP_HANDLER(http_handler)
{
    volatile int *p = 0;
    hp_puts(req, "before");
    *p = 42; /* CRASH LINE */
    return HP_OK;
}
"""


def crash_line(src):
    return src.split("\n").index([l for l in src.split("\n")
                                  if "CRASH LINE" in l][0]) + 1


RECURSE_PAGE = r"""
static int down(volatile int n)
{
    volatile char pad[256];
    pad[0] = (char)n;
    return down(n + 1) + pad[0]; /* CRASH LINE */
}

HP_HANDLER(http_handler)
{
    hp_printf(req, "%d", down(0));
    return HP_OK;
}
"""


def test_stack_overflow_in_dev_mode_answers_with_the_crash_page():
    """Recursion without end overflows the handler thread's stack; the
    fatal-signal handler runs on an alternate stack, so the browser still
    gets the crash page (SIGSEGV, page.c:LINE), not an empty reply."""
    src = page(RECURSE_PAGE)
    with Server({"page.c": src}, dev=True, workers=2) as s:
        r = s.get("/page")
        check_eq(r.status, 502, "status")
        check_in("SIGSEGV", r.text, "signal named")
        # the fault is in down()'s prologue or body: its lines 4-8
        where = r.text.split("<pre>")[1].split("</pre>")[0]
        check_in("down\n", where, "the function named")
        check(any("page.c:%d" % n in where for n in range(4, 9)),
              "a line of down(): %r" % where)
        check_eq(s.get("/_hotpub/health").status, 200, "served after it")


# A 4 MiB frame on a 512 KiB handler stack: its first write lands 3.5 MiB
# below the stack, past a one-page guard, in whatever mapping is there.
BIG_FRAME_PAGE = r"""
HP_HANDLER(http_handler)
{
    volatile char big[4 << 20];
    big[0] = 1;
    big[sizeof big - 1] = 2;
    hp_printf(req, "%d", big[0] + big[sizeof big - 1]);
    return HP_OK;
}
"""


def test_frame_larger_than_the_stack_crashes_in_every_tier():
    """A frame that jumps the handler stack's guard page is a SIGSEGV and
    the crash page (a 502), never a write into another mapping and a 200:
    gcc pages are built with -fstack-clash-protection (the optimized tier
    and the fast tier's gcc fallback), and handler and event-loop threads
    have a guard larger than such a frame for tcc's, which cannot probe."""
    src = page(BIG_FRAME_PAGE)
    cases = ((None, []), (None, ["--fast-cc", "off"]), (False, []))
    for tier, args in cases:
        if tier is None and not args and not shutil.which("tcc"):
            continue
        with Server({"page.c": src}, dev=True, fast_tier=tier, workers=2,
                    args=args) as s:
            what = "(tier %r %s)" % (tier, " ".join(args))
            r = s.get("/page")
            check_eq(r.status, 502, "status " + what)
            check_in("SIGSEGV", r.text, "signal named " + what)
            check_eq(s.get("/_hotpub/health").status, 200, "served after it")
    # production (no fast tier): the worker dies, the client gets a 502
    with Server({"page.c": src}, dev=False, workers=2) as s:
        r = s.get("/page")
        check_eq(r.status, 502, "production status")
        check(wait_until(lambda: "killed by signal 11" in s.stderr(),
                         limit(5.0)),
              "the log names the signal: %s" % short(s.stderr()))


# A 16 MiB frame: twice the old 8 MiB guard. tcc (the fast tier) cannot
# probe it, so only a guard larger than the frame makes it fault; below an
# 8 MiB guard lay another thread's stack, and the write went there. The
# frame is a function of its own: tcc reserves it on entry, and the
# handler's cheap path (?-less) must run without it, to be promoted to the
# event-loop threads.
HUGE_FRAME_PAGE = r"""
static int huge(void)
{
    volatile char big[16 << 20];
    big[0] = 1;
    big[sizeof big - 1] = 2;
    return big[0] + big[sizeof big - 1];
}

HP_HANDLER(http_handler)
{
    if (!hp_query(req)[0]) {
        hp_puts(req, "small");
        return HP_OK;
    }
    hp_printf(req, "%d", huge());
    return HP_OK;
}
"""


def _huge_frame_crashes(s, what, event_loop=False):
    r = s.get("/page?big", timeout=limit(20.0))
    check_eq(r.status, 502, "status " + what)
    check_in("SIGSEGV", r.text, "signal named " + what)
    if event_loop:
        # --thread-stack-size sets only the handler threads' stacks: the
        # hint names what sets an event-loop thread's, and the way out
        check_in("inline on an event-loop thread", r.text, "the thread kind")
        check_in("ulimit -s", r.text, "what sets its stack " + what)
        check_in("--inline false", r.text, "the way out " + what)
        check_not_in("raise --thread-stack-size", r.text, "a useless hint")
    else:
        check_in("--thread-stack-size", r.text, "the hint " + what)
        check_not_in("ulimit", r.text, "the hint " + what)
    check_eq(s.get_ok("/other").text, "other", "served after it " + what)


def test_huge_frame_in_the_fast_tier_is_a_stack_overflow():
    """docs/security.md "Pages are trusted code": a dev-mode page built by
    tcc (which cannot probe its frames) with a 16 MiB local array gets the
    stack-overflow crash page (502, SIGSEGV, the hint naming
    --thread-stack-size on a handler thread, and on an event-loop thread,
    whose stack that setting does not set, ulimit -s and --inline false),
    not a write into another thread's stack and a
    200, nor a hang, on a handler thread and on an event-loop thread (a
    page promoted to run inline): both keep HP_THREAD_GUARD (1 GiB of
    address space) below their stacks."""
    if not shutil.which("tcc"):
        fail("tcc is not installed (tools/deps.sh installs it)")
    src = page(HUGE_FRAME_PAGE)
    with Server({"page.c": src, "other.c": simple_page("other")}, dev=True,
                fast_tier=None, workers=1, args=["--threads", "4"]) as s:
        for i in range(3):  # a different handler thread may take each
            _huge_frame_crashes(s, "(handler thread, run %d)" % i)

        def inlined():
            for _ in range(50):
                check_eq(s.get_ok("/page").text, "small", "the small path")
            st = json.loads(s.get_ok("/_hotpub/status.json").text)
            return st["server"]["inlined"] > 0
        check(wait_until(inlined, limit(30.0), 0.0),
              "the page was never run on an event-loop thread")
        _huge_frame_crashes(s, "(event-loop thread)", event_loop=True)
        check(wait_until(lambda: "ulimit -s" in s.stderr(), limit(5.0)),
              "the log's hint names ulimit -s: %s" % short(s.stderr()))


def test_crash_in_dev_mode_answers_with_signal_and_line():
    """A page that dereferences NULL in dev mode (worker processes): the
    browser gets a 502 naming SIGSEGV, the page, the handler and
    page.c:LINE, for both tiers, tcc's and the gcc fallback's (its object
    linked by ld itself) first; every retry too (no quarantine in dev
    mode), and the fix is served."""
    src = page(CRASH_PAGE)
    line = crash_line(src)
    # tcc's object (dev mode's default), gcc's fast fallback (--fast-cc
    # off) and gcc -O2 alone (no fast tier): addr2line must read each.
    for tier, args in ((None, []), (None, ["--fast-cc", "off"]), (False, [])):
        with Server({"page.c": src}, dev=True, fast_tier=tier, workers=2,
                    args=args) as s:
            for attempt in range(3):
                r = s.get("/page")
                what = "(tier %r %s, try %d)" % (tier, " ".join(args),
                                                 attempt)
                check_eq(r.status, 502, "status of the crash " + what)
                check_in("SIGSEGV", r.text, "signal named " + what)
                check_in("page.c:%d" % line, r.text, "source line " + what)
                check("/obj/" not in r.text and "//" not in
                      r.text.split("<pre>")[1].split("</pre>")[0],
                      "a compile directory in the source path " + what)
                check_in("http_handler", r.text, "handler named " + what)
                check_in("/page.c", r.text, "page named " + what)
                time.sleep(0.3)  # the optimized tier meanwhile
            s.write("page.c", simple_page("fixed"), how="rename")
            s.wait_body("/page", "fixed", limit(5.0),
                        allowed_status=(500, 502))


LIBC_CRASH_PAGE = r"""
#include <string.h>

HP_HANDLER(http_handler)
{
    const char *x = hp_arg(req, "x");
    size_t n = strlen(x); /* CRASH LINE */
    hp_printf(req, "%zu", n);
    return HP_OK;
}
"""


def test_crash_in_libc_names_the_pages_call():
    """The commonest crash: the page passes NULL to libc (strlen of a
    missing query field). The fault is in libc, not the page's object: the
    crash page still names page.c:LINE of the call, says the fault was in
    a function the page called, for tcc's object (no unwind tables of its
    own), the gcc fallback's and gcc -O2's."""
    src = page(LIBC_CRASH_PAGE)
    line = crash_line(src)
    for tier, args in ((None, []), (None, ["--fast-cc", "off"]), (False, [])):
        with Server({"page.c": src}, dev=True, fast_tier=tier, workers=2,
                    args=args) as s:
            what = "(tier %r %s)" % (tier, " ".join(args))
            r = s.get("/page")
            check_eq(r.status, 502, "status of the crash " + what)
            check_in("SIGSEGV", r.text, "signal named " + what)
            where = r.text.split("<pre>")[1].split("</pre>")[0]
            check_in("page.c:%d" % line, where, "the call's line " + what)
            check_in("a function the page called", r.text,
                     "says the fault was outside the page " + what)
            check_eq(s.get("/page?x=abc").text, "3", "served after it " + what)


def test_init_that_refuses_runs_once_per_save():
    """An init that refuses (hp_module_error) in the fast tier is the
    page's error, as in any build: it is not taken for an object that did
    not load and run again from an optimized build (which ran the init
    twice, with its side effects, and logged a wrong reason)."""
    runs = tempfile.mktemp(prefix="hp-init-runs-")
    src = page(r"""
#include <stdio.h>
HP_INIT
{
    FILE *f = fopen("%s", "a");
    if (f) { fputs("run\n", f); fclose(f); }
    hp_module_error(m, "no database yet");
    return NULL;
}
HP_HANDLER(http_handler) { hp_puts(req, "up"); return HP_OK; }
""" % runs)
    try:
        with Server({"page.c": src}, dev=True, fast_tier=None,
                    workers=1) as s:
            for _ in range(3):
                r = s.get("/page")
                check_eq(r.status, 500, "the init's refusal")
                check_in("no database yet", r.text, "its message shown")
            time.sleep(0.5)
            with open(runs) as f:
                check_eq(f.read().count("run"), 1, "init runs for one save")
            check_not_in("did not load", s.stderr(), "a load failure logged")
    finally:
        if os.path.exists(runs):
            os.unlink(runs)


def test_crash_in_dev_mode_single_process_answers_then_dies():
    """--workers 0 in dev mode (a developer running under gdb): the crash
    still answers the browser with the crash page naming SIGSEGV and
    page.c:LINE, then the process dies of the signal, as a single process
    must (nobody would replace it; docs/operations.md)."""
    src = page(CRASH_PAGE)
    line = crash_line(src)
    with Server({"page.c": src}, dev=True, workers=0) as s:
        r = s.get("/page")
        check_eq(r.status, 502, "status of the crash")
        check_in("SIGSEGV", r.text, "signal named")
        check_in("page.c:%d" % line, r.text, "source line")
        check_in("http_handler", r.text, "handler named")
        try:
            rc = s.proc.wait(timeout=limit(5.0))
        except subprocess.TimeoutExpired:
            raise AssertionError("the single process outlived its crash")
        check_eq(rc, -signal.SIGSEGV, "the process died of the signal")
        check_in("single process", r.text, "the page says nothing replaces it")
        check("being replaced" not in r.text, "it promised a replacement")
        err = s.stderr()
        check_in("SIGSEGV while running %s, handler 'http_handler'"
                 % s.canon("page.c"), err, "the log names the page")
        for mark in harness.SANITIZER_MARKS:
            check(mark not in err, "sanitizer report (%s)" % mark)
        s.check_exit = False  # it died, as it had to


# ---- a real browser: headless Chromium over the DevTools protocol ---------

from browser import Browser  # noqa: E402


MSG = ("(function(){var e=document.getElementById('msg');"
       "return e?e.textContent:null})()")
OVERLAY = ("(function(){var o=document.getElementById('hotpub-overlay');"
           "return o?o.textContent:null})()")


def wait_text(b, want, timeout):
    """Seconds until #msg shows want (polled every few ms), or None."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            if b.eval(MSG) == want:
                return time.monotonic() - t0
        except Exception:  # noqa: BLE001 - a navigation in progress
            pass
        time.sleep(0.005)
    return None


def browser_edits(s, b, n, csp=False):
    """n rename edits of /p.c: seconds from each rename to the new text on
    the open page (edit -> repaint, the reload the script does included)."""
    took = []
    for i in range(n):
        text = "edit %d" % i
        s.write("p.c", html_page(text, csp), how="rename")
        t = wait_text(b, text, limit(1.0))
        check(t is not None, "%r not shown within 1 s (shows %r)"
              % (text, b.eval(MSG)))
        took.append(t)
    return took


def test_browser_live_reload_overlay_and_recovery():
    """Open a page in headless Chromium; edit it: the new text within 1 s
    with no reload by hand; break it: the overlay shows file:line; fix it:
    the page recovers by itself. HOTPUB_BROWSER_EDITS=N also reports the
    median edit -> repaint over N edits (bench/reload_latency.sh)."""
    browser_live_reload(csp=False)


def test_browser_live_reload_under_csp():
    """The same under the guestbook's Content-Security-Policy
    (default-src 'self': no inline script or style): the injected script
    runs, the overlay shows styled (its stylesheet applies), and the
    policy refuses nothing of hotpub's."""
    browser_live_reload(csp=True)


def test_browser_live_reload_under_nonce_csp():
    """The same under a policy that allows scripts and styles by nonce
    only ('strict-dynamic'): the injected script carries the response's
    nonce, gives it to the overlay's stylesheet, and the policy refuses
    nothing of hotpub's."""
    browser_live_reload(csp="nonce")


def browser_live_reload(csp):
    tmp = tempfile.mkdtemp(prefix="hotpub-chromium-")
    b = Browser(tmp)
    try:
        with Server({"p.c": html_page("first", csp),
                     "s.css": "#msg { color: rgb(255, 0, 0); }\n",
                     "watch.js": CSP_WATCH_JS},
                    dev=True, fast_tier=None) as s:
            s.get_ok("/p")
            b.connect()
            b.call("Page.enable")
            b.call("Page.navigate", url=s.url("/p"))
            check(wait_text(b, "first", limit(10)) is not None,
                  "the page did not load")
            check(wait_until(lambda: b.eval(
                "window.__hotpubLiveReload && "
                "window.__hotpubLiveReload.readyState") == 1, limit(5)),
                "the event stream did not open (refused by the policy: %r)"
                % b.eval("window.__cspRefused"))
            n = int(os.environ.get("HOTPUB_BROWSER_EDITS", "3"))
            took = browser_edits(s, b, n, csp)
            print("edit->repaint in chromium over %d edits: median %.1f ms, "
                  "max %.1f ms" % (n, statistics.median(took) * 1000,
                                   max(took) * 1000), flush=True)
            bad = html_page("broken", csp) + "\nint broken = ;\n"
            s.write("p.c", bad, how="rename")
            where = "p.c:%d" % (bad.split("\n").index("int broken = ;") + 1)
            ok = wait_until(lambda: where in (b.eval(OVERLAY) or ""),
                            limit(3))
            check(ok, "no overlay naming %s (overlay %r, page %r)"
                  % (where, short(b.eval(OVERLAY) or ""), b.eval(MSG)))
            check_in("int broken = ;", b.eval(OVERLAY), "source excerpt")
            # styled: the excerpt's marked line has its background
            hit = ("(function(){var e=document.querySelector("
                   "'#hotpub-overlay .hit');return e?getComputedStyle(e)"
                   ".backgroundColor:null})()")
            check(wait_until(lambda: b.eval(hit) == "rgb(90, 30, 30)",
                             limit(3)),
                  "the overlay is not styled (.hit background %r)"
                  % b.eval(hit))
            if csp:
                check_eq(b.eval("window.__cspRefused"), [],
                         "what the page's policy refused")
            s.write("p.c", html_page("fixed", csp), how="rename")
            check(wait_text(b, "fixed", limit(3)) is not None,
                  "the page did not recover (shows %r)" % b.eval(MSG))
            check_eq(b.eval(OVERLAY), None, "overlay gone")
            # a stylesheet swaps in place: the page is not reloaded
            b.eval("window.__notReloaded = 1")
            s.write("s.css", "#msg { color: rgb(0, 128, 0); }\n",
                    how="rename")
            color = ("getComputedStyle(document.getElementById('msg'))"
                     ".color")
            check(wait_until(lambda: b.eval(color) == "rgb(0, 128, 0)",
                             limit(3)),
                  "the new CSS did not apply (color %r)" % b.eval(color))
            check_eq(b.eval("window.__notReloaded"), 1,
                     "the page was reloaded for a CSS change")
    finally:
        b.close()
        shutil.rmtree(tmp, ignore_errors=True)


def test_browser_live_reload_on_the_guestbook():
    """The application the README says to start from, as it is: its
    Content-Security-Policy (default-src 'self') lets the injected script
    run, so an edit of its footer template shows in the open tab."""
    examples = os.path.join(os.path.dirname(os.path.dirname(
        os.path.dirname(os.path.abspath(__file__)))), "examples")
    tmp = tempfile.mkdtemp(prefix="hotpub-chromium-")
    b = Browser(tmp)
    try:
        s = Server(start=False, dev=True, fast_tier=None)
        shutil.rmtree(s.root)
        shutil.copytree(examples, s.root, symlinks=True)
        s.start()
        with s:
            r = s.get_ok("/guestbook/")
            check_in("default-src 'self'",
                     r.header("Content-Security-Policy") or "", "its policy")
            b.connect()
            b.call("Page.enable")
            b.call("Page.navigate", url=s.url("/guestbook/"))
            check(wait_until(lambda: b.eval(
                "window.__hotpubLiveReload && "
                "window.__hotpubLiveReload.readyState") == 1, limit(10)),
                "the event stream did not open on /guestbook/")
            footer = "guestbook/templates/footer.tpl"
            with open(s.path(footer)) as f:
                text = f.read()
            s.write(footer, text.replace("An example application",
                                         "Edited live"), how="rename")
            foot = "document.querySelector('footer').textContent"
            check(wait_until(lambda: "Edited live" in (b.eval(foot) or ""),
                             limit(5)),
                  "the edit did not show (footer %r)" % b.eval(foot))
    finally:
        b.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(harness.run_suite(globals(), sys.argv[1:],
                               suite_budget=SUITE_BUDGET,
                               test_timeout=TEST_TIMEOUT))
