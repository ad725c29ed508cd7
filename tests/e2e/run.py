#!/usr/bin/env python3
"""hotpub end-to-end tests.

    HOTPUB_BIN=/abs/path/hotpub python3 tests/e2e/run.py [NAME-SUBSTRING...]
    python3 tests/e2e/run.py --list

Each test_* function below gets its own temp document root, cache dir and
server process on a free loopback port (see harness.py). Output: one line
per test ("ok   name" or "FAIL name: reason", then the server's stderr tail),
then "N passed, N failed"; the exit status is 1 if any test failed.
"""

import email.utils
import html
import json
import os
import re
import shutil
import socket
import sys
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import (SLACK, BackgroundRequest, Server,  # noqa: E402
                     check, check_eq, check_in, check_not_in,
                     check_port_closed, fail, limit, page, proc_maps,
                     run_hotpub, short, simple_page, wait_until)

TEST_TIMEOUT = 60.0   # hard bound for one test (the watchdog kills servers)
SUITE_BUDGET = 270.0  # past this, the remaining tests fail without running

# ---- pages used by several tests ------------------------------------------

HELLO = page(r'''
HP_HANDLER(http_handler)
{
    const char *n = hp_arg(req, "name");
    hp_printf(req, "Hello, %s!", n ? n : "world");
    return HP_OK;
}

HP_HANDLER(json)
{
    hp_set_header(req, "Content-Type", "application/json");
    hp_puts(req, "{\"ok\":true,\"handler\":\"");
    hp_puts(req, hp_handler_name(req));
    hp_puts(req, "\"}");
    return HP_OK;
}
''')

ECHO = page(r'''
static void dump(hp_req *req, const char *name)
{
    unsigned n = hp_arg_count(req, name);
    const char *first = hp_arg(req, name);
    hp_printf(req, "%s#%u=%s\n", name, n, first ? first : "(null)");
    for (unsigned i = 0; i < n; i++) {
        const char *v = hp_arg_n(req, name, i);
        hp_printf(req, "%s[%u]=%s\n", name, i, v ? v : "(null)");
    }
    if (hp_arg_n(req, name, n))
        hp_printf(req, "%s[past-end]=%s\n", name, hp_arg_n(req, name, n));
}

HP_HANDLER(args)
{
    static const char *names[] = {"a", "b", "t", "name", "e", "f"};
    for (unsigned i = 0; i < sizeof names / sizeof names[0]; i++)
        dump(req, names[i]);
    return HP_OK;
}

HP_HANDLER(http_handler)
{
    const char *h = hp_header(req, "X-Test");
    const char *h2 = hp_header(req, "x-test");
    const char *c = hp_cookie(req, "b");
    hp_printf(req, "method=%s\n", hp_method(req));
    hp_printf(req, "path=%s\n", hp_path(req));
    hp_printf(req, "header=%s\n", h ? h : "(null)");
    hp_printf(req, "header-lc=%s\n", h2 ? h2 : "(null)");
    hp_printf(req, "cookie=%s\n", c ? c : "(null)");
    return HP_OK;
}

HP_HANDLER(body)
{
    size_t len = 0;
    const char *b = hp_body(req, &len);
    hp_printf(req, "len=%zu\n", len);
    if (b)
        hp_write(req, b, len);
    return HP_OK;
}
''')

STATUS = page(r'''
#include <string.h>

HP_HANDLER(forbidden)
{
    return 403;
}

HP_HANDLER(custom404)
{
    hp_puts(req, "custom not found body");
    return 404;
}

HP_HANDLER(removed)
{
    hp_set_header(req, "X-Gone", "1");
    hp_set_header(req, "X-Kept", "1");
    hp_set_cookie(req, "a", "1", NULL);
    hp_set_cookie(req, "b", "2", NULL);
    hp_set_header(req, "Content-Type", "text/plain");
    int r1 = hp_set_header(req, "x-gone", NULL);
    int r2 = hp_set_header(req, "Set-Cookie", NULL);
    int r3 = hp_set_header(req, "Content-Type", NULL);
    int r4 = hp_set_header(req, "X-Never-Set", NULL);
    int r5 = hp_set_header(req, "Content-Length", NULL);
    hp_printf(req, "%d %d %d %d %d", r1, r2, r3, r4, r5);
    return HP_OK;
}

HP_HANDLER(created)
{
    hp_status(req, 201);
    hp_set_header(req, "X-Thing", "42");
    hp_set_header(req, "Content-Type", "text/plain; charset=utf-8");
    hp_puts(req, "made");
    return HP_OK;
}

HP_HANDLER(inject)
{
    int r1 = hp_set_header(req, "X-Bad", "a\r\nX-Injected: 1");
    int r2 = hp_set_header(req, "X-Bad2\r\nX-Injected2", "b");
    /* the server frames the message; RFC 9110 5.5: no CTLs in values */
    int r3 = hp_set_header(req, "Transfer-Encoding", "chunked");
    int r4 = hp_set_header(req, "content-length", "5");
    int r5 = hp_set_header(req, "Connection", "close");
    int r6 = hp_set_header(req, "X-Esc", "a\x1b[31mb");
    int r7 = hp_set_header(req, "X-Tab", "a\tb");
    hp_printf(req, "r1=%d r2=%d r3=%d r4=%d r5=%d r6=%d r7=%d", r1, r2, r3,
              r4, r5, r6, r7);
    return HP_OK;
}

HP_HANDLER(binary)
{
    hp_write(req, "a\0b\0c", 5);
    return HP_OK;
}

HP_HANDLER(big)
{
    for (int i = 0; i < 100000; i++)
        hp_printf(req, "%09d\n", i);
    return HP_OK;
}

HP_HANDLER(redirect)
{
    hp_redirect(req, "/target?x=1");
    return HP_OK;
}

HP_HANDLER(cookies)
{
    hp_set_cookie(req, "sid", "abc123", "Path=/; HttpOnly");
    hp_set_cookie(req, "theme", "dark", NULL);
    const char *b = hp_cookie(req, "b");
    hp_printf(req, "b=%s", b ? b : "(null)");
    return HP_OK;
}

HP_HANDLER(bad_return)
{
    hp_puts(req, "partial");
    return 42;
}

HP_HANDLER(escape)
{
    const char *s = hp_arg(req, "s");
    hp_puts(req, "[");
    hp_write_html(req, s ? s : "");
    hp_puts(req, "]");
    return HP_OK;
}
''')

# The page API's edge (issue 8): 1xx statuses, returned redirects, cookies.
EDGE = page(r"""
#include <stdlib.h>
#include <string.h>

HP_HANDLER(interim)
{
    hp_status(req, 201);
    hp_status(req, 103); /* ignored: never a final status */
    hp_puts(req, "after");
    return HP_OK;
}

HP_HANDLER(ret1xx)
{
    hp_puts(req, "partial");
    return 101;
}

/* ?code=N&loc=L: hp_redirect(L) when loc is given, then return N. */
HP_HANDLER(ret)
{
    const char *loc = hp_arg(req, "loc"), *code = hp_arg(req, "code");
    if (loc)
        hp_redirect(req, loc);
    return code ? atoi(code) : HP_OK;
}

/* Date is the server's (RFC 9110 6.6.1); Server the page's to set. */
HP_HANDLER(date)
{
    hp_printf(req, "date=%d server=%d", hp_set_header(req, "Date", "1"),
              hp_set_header(req, "Server", "mine"));
    return HP_OK;
}

static const char *const bad_values[] = {
    "a b", "a\tb", "a\"b", "a,b", "a;b", "a\\b", "a\x01" "b", "a\x7f" "b",
    "\xc3\xa9", "\"a b\"",
};

HP_HANDLER(cookies)
{
    /* valid: plain, empty, quoted, every other cookie-octet */
    hp_printf(req, "ok=%d,%d,%d,%d\n", hp_set_cookie(req, "a", "1", NULL),
              hp_set_cookie(req, "e", "", "Max-Age=0"),
              hp_set_cookie(req, "q", "\"x\"", NULL),
              hp_set_cookie(req, "o", "!#$%&'()*+-./:<=>?@[]^_`{|}~", NULL));
    for (size_t i = 0; i < sizeof bad_values / sizeof *bad_values; i++)
        hp_printf(req, "value%zu=%d\n", i,
                  hp_set_cookie(req, "n", bad_values[i], NULL));
    static const char *const bad_names[] = {"", "a b", "a=b", "a;b", "a(b",
                                            "a\"b", "a/b", "a,b"};
    for (size_t i = 0; i < sizeof bad_names / sizeof *bad_names; i++)
        hp_printf(req, "name%zu=%d\n", i,
                  hp_set_cookie(req, bad_names[i], "v", NULL));
    /* raw Set-Cookie: the name=value part up to the first ';' */
    hp_printf(req, "raw-ok=%d,%d\n",
              hp_set_header(req, "Set-Cookie", "r=1; Path=/; HttpOnly"),
              hp_set_header(req, "set-cookie", "s=2"));
    static const char *const bad_raw[] = {
        "x=a b; Path=/", "x=a,b", "x=\"a", "=v", "novalue", "x y=1",
        "x=a\\b", "x=1 ; Path=/", "x=\x01",
    };
    for (size_t i = 0; i < sizeof bad_raw / sizeof *bad_raw; i++)
        hp_printf(req, "raw%zu=%d\n", i,
                  hp_set_header(req, "Set-Cookie", bad_raw[i]));
    return HP_OK;
}
""")


# the less common accessors, apart, so that one missing symbol fails one test
ACCESSORS = page(r'''
HP_HANDLER(http_handler)
{
    hp_printf(req, "query=%s\n", hp_query(req));
    hp_printf(req, "remote=%s\n", hp_remote_addr(req));
    hp_printf(req, "file=%s\n", hp_filename(req));
    hp_printf(req, "handler=%s\n", hp_handler_name(req));
    return HP_OK;
}

HP_HANDLER(other_name)
{
    hp_printf(req, "handler=%s\n", hp_handler_name(req));
    return HP_OK;
}
''')

BROKEN = page(r'''
#error "<b>bad</b> & worse"
HP_HANDLER(http_handler)
{
    hp_puts(req, "never");
    return undeclared_xyz;
}
''')


def sleeper(text, seconds, check_fast=True):
    """A page that sleeps `seconds` (unless ?fast=1) then prints text."""
    cond = 'if (!hp_arg(req, "fast")) ' if check_fast else ""
    return page('HP_HANDLER(http_handler)\n{\n    %ssleep(%d);\n'
                '    hp_puts(req, "%s");\n    return HP_OK;\n}\n'
                % (cond, seconds, text), includes="#include <unistd.h>")


def parse_lines(text):
    out = {}
    for line in text.split("\n"):
        if "=" in line:
            k, _, v = line.partition("=")
            out.setdefault(k, v)
    return out


# ---- the command line -------------------------------------------------------

def test_version():
    p = run_hotpub(["--version"], timeout=10)
    check_eq(p.returncode, 0, "exit status of hotpub --version")
    check_in("0.1.0", p.stdout + p.stderr, "hotpub --version output")


def test_check_good_tree_exits_0():
    with Server(files={"hello.c": HELLO, "sub/index.c": simple_page("x"),
                       "style.css": "p{}"}, start=False) as s:
        p = run_hotpub(["check", s.root], timeout=120,
                       env={"HOME": s.tmp, "XDG_CACHE_HOME": s.cache})
        if p.returncode != 0:
            fail("hotpub check on a good tree: exit %s, output %s"
                 % (p.returncode, short(p.stdout + p.stderr, 600)))


def test_check_warns_of_a_page_shadowed_by_a_directory():
    """docs/pages.md: with foo.c next to foo/, /foo is the directory's (a
    redirect to /foo/): hotpub check warns, and still exits 0."""
    with Server(files={"foo.c": HELLO, "foo/index.c": simple_page("dir"),
                       "bar.c": HELLO, "bar/x.txt": "x",
                       "sub/index.c": simple_page("x"), "ok.c": HELLO},
                start=False) as s:
        p = run_hotpub(["check", s.root], timeout=120,
                       env={"HOME": s.tmp, "XDG_CACHE_HOME": s.cache})
        out = p.stdout + p.stderr
        check_eq(p.returncode, 0, "exit status (output %s)" % short(out, 600))
        warns = sorted(l.split(":")[0] for l in out.splitlines()
                       if l.startswith("warn "))
        check_eq(warns, ["warn " + s.path("bar.c"), "warn " + s.path("foo.c")],
                 "warnings in %s" % short(out, 600))
        check_in("the directory /foo/ takes the URL /foo", out, "the why")


def test_check_names_and_refuses_a_crashing_constructor():
    """hotpub check loads each object to prove it links, which runs its
    constructors: one that aborts (a .c page and a prebuilt .so) is a
    FAIL naming the page, the constructor and the signal, the other pages
    are still checked and reported, and the exit status is 1 (before, the
    check itself died of the page's SIGABRT, with no report)."""
    ctor = page(r"""
__attribute__((constructor)) static void boom(void) { abort(); }
HP_HANDLER(http_handler) { hp_puts(req, "x"); return HP_OK; }
""", includes="#include <stdlib.h>")
    with Server(files={"a.c": ctor, "hello.c": HELLO, "z.c": HELLO},
                start=False) as s:
        s.write("so.so", harness.build_page_so(ctor, s.tmp))
        p = run_hotpub(["check", s.root], timeout=120,
                       env={"HOME": s.tmp, "XDG_CACHE_HOME": s.cache})
        out = p.stdout + p.stderr
        check_eq(p.returncode, 1, "exit status (output %s)" % short(out, 600))
        for name in ("a.c", "so.so"):
            check_in("FAIL " + s.path(name), out, "the page named")
        check_in("constructor", out, "the hook named")
        check_in("SIGABRT", out, "the signal named")
        check_in("ok   " + s.path("hello.c"), out, "a good page still checked")
        check_in("ok   " + s.path("z.c"), out, "the pages after it too")
        check_in("4 pages, 0 templates, 2 failed", out, "the summary")


def test_check_says_what_the_server_does_with_a_constructor_signal():
    """A constructor that raises SIGTERM: check says the server takes it
    for a crash (503, refused), which is what the server now does
    (workers.py constructor_raising_sigterm_is_a_crash_named_and_refused);
    one that raises SIGHUP, which the server ignores, is no FAIL."""
    term = page(r"""
__attribute__((constructor)) static void t(void) { raise(SIGTERM); }
HP_HANDLER(http_handler) { hp_puts(req, "x"); return HP_OK; }
""", includes="#include <signal.h>")
    hup = term.replace("SIGTERM", "SIGHUP")
    with Server(files={"term.c": term, "hup.c": hup}, start=False) as s:
        p = run_hotpub(["check", s.root], timeout=120,
                       env={"HOME": s.tmp, "XDG_CACHE_HOME": s.cache})
        out = p.stdout + p.stderr
        check_in("FAIL " + s.path("term.c"), out, "the page named")
        check_in("raised SIGTERM as the object loaded: the server takes it "
                 "for a crash, answers its requests 503", out, "the words")
        check_in("ok   " + s.path("hup.c"), out, "SIGHUP is ignored")


def test_check_broken_page_exits_1_with_diagnostic():
    with Server(files={"hello.c": HELLO, "broken.c": BROKEN},
                start=False) as s:
        p = run_hotpub(["check", s.root], timeout=120,
                       env={"HOME": s.tmp, "XDG_CACHE_HOME": s.cache})
        out = p.stdout + p.stderr
        check_eq(p.returncode, 1, "exit status of hotpub check, broken tree "
                 "(output %s)" % short(out, 400))
        check_in("undeclared_xyz", out, "hotpub check output")
        check_in("broken.c", out, "hotpub check output")
        check_in("error", out.lower(), "hotpub check output")


def test_check_follows_page_symlinks_as_the_server_does():
    """A page that is a symlink is served as the page it leads to (a
    rename), or answered 404 when it leads out of the root, to a private
    name (_ or .), to nothing, or to another kind of file: hotpub check
    says the same of each link (and checks the target where it is), and
    each verdict agrees with a request to the running server."""
    with Server(files={"lib/good.c": simple_page("via link"),
                       "sub/bad.c": BROKEN,
                       "_lib/hidden.c": simple_page("private"),
                       "notes.txt": "text"}, start=False) as s:
        outside = os.path.join(s.tmp, "outside.c")
        with open(outside, "w") as f:
            f.write(simple_page("outside"))
        links = {"alias.c": "lib/good.c", "badlink.c": "sub/bad.c",
                 "priv.c": "_lib/hidden.c", "out.c": outside,
                 "dangling.c": "lib/none.c", "text.c": "notes.txt"}
        for name, to in links.items():
            os.symlink(to, os.path.join(s.root, name))
        p = run_hotpub(["check", "--cache-dir", s.cache, s.root],
                       timeout=120)
        out = p.stdout + p.stderr
        check_eq(p.returncode, 1, "exit status (output %s)" % short(out, 600))
        lines = out.split("\n")

        def verdict(name):
            for ln in lines:
                if ln.startswith(("ok   ", "FAIL ")) and \
                        ln.split()[1].endswith("/" + name):
                    return ln.split()[0]
            return None
        for name, want in (("alias.c", "ok"), ("lib/good.c", "ok"),
                           ("badlink.c", "ok"), ("sub/bad.c", "FAIL"),
                           ("priv.c", "FAIL"), ("out.c", "FAIL"),
                           ("dangling.c", "FAIL"), ("text.c", "FAIL")):
            check_eq(verdict(name), want, "hotpub check on %s (output %s)"
                     % (name, short(out, 900)))
        for why in ("undeclared_xyz", "a private name",
                    "out of the document root", "a symlink to nothing",
                    "which is not a .c file"):
            check_in(why, out, "hotpub check's reasons")
        s.start()
        check_eq(s.get_ok("/alias").text, "via link", "through the link")
        for name in ("priv", "out", "dangling", "text"):
            check_eq(s.get("/" + name).status, 404, "/" + name)
        check_eq(s.get("/badlink").status, 500, "a link to a broken page")


def test_bundled_examples():
    """What the README tells a new user to run: the examples build and
    serve."""
    src = os.path.join(os.path.dirname(os.path.dirname(harness.HERE)),
                       "examples")
    check(os.path.isfile(os.path.join(src, "hello.c")),
          "examples/hello.c is missing (the README serves it)")
    s = Server(start=False)
    shutil.rmtree(s.root)
    shutil.copytree(src, s.root, symlinks=True)
    with s:
        p = run_hotpub(["check", "--cache-dir", s.cache, s.root], timeout=120)
        if p.returncode != 0:
            fail("hotpub check examples: exit %s, output %s"
                 % (p.returncode, short(p.stdout + p.stderr, 800)))
        s.start()
        check_eq(s.get_ok("/hello").text, "Hello, world!", "/hello")
        check_eq(s.get_ok("/hello?name=README").text, "Hello, README!",
                 "/hello?name=README")
        check_eq(s.get("/").status, 200, "status of /")
        for name in sorted(os.listdir(s.root)):
            if name.endswith(".c") and not name.startswith(("_", ".")):
                url = "/" + name[:-2] if name != "index.c" else "/"
                r = s.get(url)
                check_eq(r.status, 200, "status of %s (%s)" % (url,
                                                             short(r.body)))


# ---- pages, URL mapping, arguments ----------------------------------------

def test_options_asterisk_lists_the_methods_pages_may_answer():
    """RFC 9110 §9.3.7: OPTIONS * is about the server: 200, an Allow field
    naming the methods, no content and so no Content-Type; the connection
    stays open (the next request on it is answered)."""
    with Server({"hello.c": HELLO}) as s:
        r = harness.raw_request(
            s.port, b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n")
        check_eq(r.status, 200, "status")
        allow = [m.strip() for m in (r.header("Allow") or "").split(",")]
        for m in ("GET", "HEAD", "POST", "OPTIONS"):
            check_in(m, allow, "Allow lists %s" % m)
        check_eq(r.header("Content-Length"), "0", "Content-Length")
        check_eq(r.header("Content-Type"), None, "no Content-Type")
        both = harness.raw_request(
            s.port, b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            read_all=True)
        check_in(b"Hello", both.body, "the request after it is answered")


def test_trace_and_connect_refused_with_the_same_allow():
    """TRACE and CONNECT never reach a page: the edge answers 405 with the
    Allow field OPTIONS * gives, and closes the connection (as nginx); the
    page's output never appears. An unknown upper-case method (PROPFIND)
    still reaches the page."""
    with Server({"hello.c": HELLO}) as s:
        opts = harness.raw_request(
            s.port, b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n")
        for m in (b"TRACE", b"CONNECT"):
            r = harness.raw_request(
                s.port, m + b" /hello HTTP/1.1\r\nHost: x\r\n\r\n"
                b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n", read_all=True)
            check_eq(r.status, 405, "%s status" % m.decode())
            check_eq(r.header("Allow"), opts.header("Allow"),
                     "%s Allow (the one of OPTIONS *)" % m.decode())
            check_eq(r.header("Connection"), "close", "%s Connection"
                     % m.decode())
            check_not_in(b"Hello", r.body, "%s body (the page never runs, "
                         "nor the request after)" % m.decode())
        r = harness.raw_request(
            s.port, b"PROPFIND /hello HTTP/1.1\r\nHost: x\r\n"
            b"Connection: close\r\n\r\n", read_all=True)
        check_eq((r.status, r.body), (200, b"Hello, world!"), "PROPFIND")

def test_405_allow_of_hotpub_endpoints_whatever_the_method():
    """docs/operations.md: /_hotpub/ endpoints answer only GET and HEAD,
    so every 405 to them says `Allow: GET, HEAD` (RFC 9110 §15.5.6: the
    target resource's methods), the edge's to TRACE and CONNECT too (also
    with the prefix percent-encoded); a TRACE to a page keeps the pages'
    list."""
    with Server({"hello.c": HELLO}) as s:
        opts = harness.raw_request(
            s.port, b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n")
        for m, path in ((b"TRACE", b"/_hotpub/status.json"),
                        (b"CONNECT", b"/_hotpub/metrics"),
                        (b"TRACE", b"/%5Fhotpub/health"),
                        (b"POST", b"/_hotpub/status.json"),
                        (b"DELETE", b"/_hotpub/")):
            r = harness.raw_request(
                s.port, m + b" " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Length: 0\r\nConnection: close\r\n\r\n",
                read_all=True)
            what = "%s %s" % (m.decode(), path.decode())
            check_eq((r.status, r.header("Allow")), (405, "GET, HEAD"), what)
        r = harness.raw_request(
            s.port, b"TRACE /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        check_eq((r.status, r.header("Allow")), (405, opts.header("Allow")),
                 "TRACE to a page")


def test_hello_default_handler():
    with Server(files={"hello.c": HELLO}) as s:
        r = s.get("/hello")
        check_eq(r.status, 200, "status")
        check_eq(r.text, "Hello, world!", "body")
        ct = r.header("Content-Type") or ""
        check(ct.startswith("text/html"), "default Content-Type %r" % ct)
        check_eq(r.header("Content-Length"), "13", "Content-Length")


def test_named_handler():
    with Server(files={"hello.c": HELLO}) as s:
        r = s.get("/hello/json")
        check_eq(r.status, 200, "status")
        check_eq(r.header("Content-Type"), "application/json", "Content-Type")
        check_eq(json.loads(r.text), {"ok": True, "handler": "json"}, "body")
        check_eq(s.get_ok("/hello/json/").text, r.text, "with a trailing /")
        check_eq(s.get_ok("/hello/http_handler?name=x").text, "Hello, x!",
                 "/hello/http_handler")


def test_query_args():
    with Server(files={"hello.c": HELLO}) as s:
        check_eq(s.get_ok("/hello?name=Bob").text, "Hello, Bob!", "body")
        check_eq(s.get_ok("/hello?x=1&name=J%C3%B6rg+Z%26Co").text,
                 "Hello, J\u00f6rg Z&Co!", "decoded arg")
        check_eq(s.get_ok("/hello?name=").text, "Hello, !", "empty arg")
        check_eq(s.get_ok("/hello?other=1").text, "Hello, world!",
                 "absent arg")


def test_repeated_args():
    with Server(files={"echo.c": ECHO}) as s:
        r = s.get_ok("/echo/args?t=1&t=two&t=3&a=x%20y&e=")
        d = r.text.split("\n")
        for line in ("t#3=1", "t[0]=1", "t[1]=two", "t[2]=3", "a#1=x y",
                     "a[0]=x y", "b#0=(null)", "e#1=", "e[0]="):
            check(line in d, "line %r missing in %s" % (line, short(r.text)))
        check_not_in("past-end", r.text)


def test_post_form_args():
    with Server(files={"echo.c": ECHO}) as s:
        r = s.post("/echo/args?a=q", "a=b1&b=2%2B2&t=x&t=y+z")
        check_eq(r.status, 200, "status")
        d = r.text.split("\n")
        for line in ("a#2=q", "a[0]=q", "a[1]=b1", "b#1=2+2", "t#2=x",
                     "t[1]=y z"):
            check(line in d, "line %r missing in %s" % (line, short(r.text)))


def test_post_multipart_args():
    with Server(files={"echo.c": ECHO}) as s:
        bnd = "hpBoundary7MA4YWxk"
        body = ("--%s\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n"
                "first\r\n--%s\r\nContent-Disposition: form-data; "
                "name=\"b\"\r\n\r\nsecond value\r\n--%s--\r\n"
                % (bnd, bnd, bnd))
        r = s.post("/echo/args", body,
                   "multipart/form-data; boundary=%s" % bnd)
        check_eq(r.status, 200, "status")
        d = r.text.split("\n")
        for line in ("a#1=first", "b#1=second value"):
            check(line in d, "line %r missing in %s" % (line, short(r.text)))


def test_raw_body():
    with Server(files={"echo.c": ECHO}) as s:
        payload = json.dumps({"k": "v" * 300})
        r = s.post("/echo/body", payload, "application/json")
        check_eq(r.status, 200, "status")
        check_eq(r.text, "len=%d\n%s" % (len(payload), payload), "body")


def test_request_headers_method_path_cookie():
    with Server(files={"echo.c": ECHO}) as s:
        r = s.get_ok("/echo?a=1&b=%20", headers={"X-Test": "Hello there",
                                                  "Cookie": "a=1; b=two; c=3"})
        d = parse_lines(r.text)
        want = {"method": "GET", "path": "/echo", "header": "Hello there",
                "header-lc": "Hello there", "cookie": "two"}
        for k, v in want.items():
            check_eq(d.get(k), v, k)
        r = s.request("/echo", "PUT", body="x")
        check_eq(parse_lines(r.text).get("method"), "PUT", "hp_method (PUT)")
        r = s.get_ok("/echo/args")
        check_in("a#0=(null)", r.text)
        check_eq(parse_lines(s.get_ok("/echo/http_handler").text).get("path"),
                 "/echo/http_handler", "hp_path with a handler segment")


def test_request_query_remote_filename_handler():
    with Server(files={"acc.c": ACCESSORS}) as s:
        d = parse_lines(s.get_ok("/acc?a=1&b=%20").text)
        want = {"query": "a=1&b=%20", "remote": "127.0.0.1",
                "file": s.canon("acc.c"), "handler": "http_handler"}
        for k, v in want.items():
            check_eq(d.get(k), v, "hp_%s" % k)
        check_eq(parse_lines(s.get_ok("/acc/other_name").text).get("handler"),
                 "other_name", "hp_handler_name")
        check_eq(parse_lines(s.get_ok("/acc").text).get("query"), "",
                 "hp_query without a query string")


def test_index_pages():
    files = {"index.c": simple_page("root index") + page(
                 'HP_HANDLER(about)\n{\n    hp_puts(req, "root about");\n'
                 '    return HP_OK;\n}\n').replace("#include <hotpub.h>", ""),
             "sub/index.c": simple_page("sub index"),
             "sub/other.c": simple_page("sub other")}
    with Server(files=files) as s:
        check_eq(s.get_ok("/").text, "root index", "GET /")
        check_eq(s.get_ok("/sub/").text, "sub index", "GET /sub/")
        check_eq(s.get_ok("/sub/other").text, "sub other", "GET /sub/other")
        check_eq(s.get_ok("/about").text, "root about",
                 "GET /about (a handler of the root index.c)")
        # A directory without its '/' is redirected (nginx, Apache's
        # DirectorySlash): relative links in its index then resolve in it.
        for method, want in (("GET", 301), ("HEAD", 301), ("POST", 308)):
            r = s.request("/sub?a=1&b=%22", method=method, body="x=1"
                          if method == "POST" else None)
            check_eq((r.status, r.header("Location")), (want, "/sub/?a=1&b=%22"),
                     "%s /sub?a=1&b=%%22" % method)
        r = s.get("/sub")
        check_eq((r.status, r.header("Location")), (301, "/sub/"), "GET /sub")
        # "//sub" must not become a Location naming another host
        r = s.get("//sub")
        check_eq((r.status, r.header("Location")), (301, "/sub/"), "GET //sub")
        check_eq(s.get("/sub/other/").status, 404, "a page is no directory")


def test_html_escaping():
    with Server(files={"st.c": STATUS}) as s:
        raw = "<script>\"a\" & 'b'</script>"
        r = s.get_ok("/st/escape?s=%3Cscript%3E%22a%22%20%26%20%27b%27"
                     "%3C%2Fscript%3E")
        body = r.text
        check(body.startswith("[") and body.endswith("]"), "body %r" % body)
        inner = body[1:-1]
        for ch in "<>\"'":
            check_not_in(ch, inner, "escaped output")
        check_not_in("& ", inner, "escaped output")
        check_in("&lt;script&gt;", inner, "escaped output")
        check_eq(html.unescape(inner), raw, "unescaped output")


def test_redirect():
    with Server(files={"st.c": STATUS}) as s:
        r = s.get("/st/redirect")
        check_eq(r.status, 302, "status of GET redirect")
        loc = r.header("Location") or ""
        check(loc.endswith("/target?x=1"), "Location %r" % loc)
        r = s.post("/st/redirect", "a=1")
        check_eq(r.status, 303, "status of POST redirect")
        check((r.header("Location") or "").endswith("/target?x=1"),
              "Location %r" % r.header("Location"))


def test_cookies():
    with Server(files={"st.c": STATUS}) as s:
        r = s.get_ok("/st/cookies", headers={"Cookie": "a=1; b=two; c=3"})
        check_eq(r.text, "b=two", "hp_cookie")
        sc = r.all("Set-Cookie")
        check_eq(len(sc), 2, "number of Set-Cookie headers (%r)" % sc)
        sid = [c for c in sc if c.startswith("sid=abc123")]
        check(sid, "no sid cookie in %r" % sc)
        check("HttpOnly" in sid[0] and "Path=/" in sid[0],
              "cookie attributes %r" % sid[0])
        check(any(c.startswith("theme=dark") for c in sc),
              "no theme cookie in %r" % sc)
        check_eq(s.get_ok("/st/cookies").text, "b=(null)", "no cookie")


def test_status_and_headers():
    with Server(files={"st.c": STATUS}) as s:
        r = s.get("/st/created")
        check_eq(r.status, 201, "hp_status(201)")
        check_eq(r.header("X-Thing"), "42", "X-Thing")
        check_eq(r.header("Content-Type"), "text/plain; charset=utf-8",
                 "Content-Type")
        check_eq(r.text, "made", "body")


def test_set_header_null_removes():
    """hp_set_header(req, name, NULL) removes what the page set under that
    name (case-insensitively; every Set-Cookie line), Content-Type goes
    back to its default, and a framing field stays refused."""
    with Server(files={"st.c": STATUS}) as s:
        r = s.get_ok("/st/removed")
        check_eq(r.text, "0 0 0 0 -1", "return values")
        check_eq(r.header("X-Gone"), None, "X-Gone removed")
        check_eq(r.header("X-Kept"), "1", "X-Kept kept")
        check_eq(r.all("Set-Cookie"), [], "every Set-Cookie removed")
        check_eq(r.header("Content-Type"), "text/html; charset=utf-8",
                 "Content-Type back to its default")


def test_handler_returns_403():
    with Server(files={"st.c": STATUS}) as s:
        r = s.get("/st/forbidden")
        check_eq(r.status, 403, "status")
        check(len(r.body) > 0, "403 without a body")
        r = s.get("/st/custom404")
        check_eq(r.status, 404, "status")
        check_eq(r.text, "custom not found body", "handler's own body")


def test_handler_bad_return_value_500():
    with Server(files={"st.c": STATUS}) as s:
        r = s.get("/st/bad_return")
        check_eq(r.status, 500, "status when a handler returns 42")
        check(wait_until(lambda: "returned 42" in s.stderr(), limit(2.0)),
              "no log line 'handler returned 42' in stderr")


def test_header_injection_refused():
    with Server(files={"st.c": STATUS}) as s:
        r = s.get_ok("/st/inject")
        check_eq(r.text, "r1=-1 r2=-1 r3=-1 r4=-1 r5=-1 r6=-1 r7=0",
                 "hp_set_header return values")
        check_eq(r.header("Transfer-Encoding"), None, "Transfer-Encoding")
        check_eq(r.header("Content-Length"), str(len(r.body)),
                 "Content-Length")
        check_eq(r.header("X-Tab"), "a\tb", "a value with a tab")
        for h in ("X-Injected", "X-Injected2", "X-Bad", "X-Bad2", "X-Esc"):
            check(r.header(h) is None, "header %s was sent" % h)


def test_binary_and_large_bodies():
    with Server(files={"st.c": STATUS}) as s:
        r = s.get_ok("/st/binary")
        check_eq(r.body, b"a\0b\0c", "binary body")
        r = s.get_ok("/st/big")
        check_eq(len(r.body), 1000000, "length of big body")
        check_eq(r.header("Content-Length"), "1000000", "Content-Length")
        lines = r.text.split("\n")
        check(lines[0] == "000000000" and lines[99999] == "000099999",
              "big body content")


def test_unknown_module_and_handler_404():
    with Server(files={"hello.c": HELLO}) as s:
        for path in ("/nosuch", "/hello/nosuch", "/nosuch/json",
                     "/hello/json/extra"):
            r = s.get(path)
            check_eq(r.status, 404, "status of %s" % path)
            check(len(r.body) > 0, "404 of %s without a body" % path)
        check_eq(s.get_ok("/hello").text, "Hello, world!", "control")


def test_head_requests():
    with Server(files={"hello.c": HELLO, "style.css": "body{color:red}"}) as s:
        r = s.head("/hello")
        check_eq(r.status, 200, "status of HEAD /hello")
        check_eq(r.body, b"", "body of HEAD")
        cl = r.header("Content-Length")
        check(cl in (None, "13"), "Content-Length of HEAD /hello: %r" % cl)
        r = s.head("/style.css")
        check_eq(r.status, 200, "status of HEAD /style.css")
        check_eq(r.header("Content-Length"), "15", "Content-Length")
        # a raw HEAD: nothing after the head may be sent
        r = s.raw(b"HEAD /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                  b"\r\n", read_all=True)
        check(r is not None, "no answer to a raw HEAD")
        check_eq(r.status, 200, "status of raw HEAD")
        check_eq(r.body, b"", "bytes after the head of a HEAD response")


def test_keepalive():
    with Server(files={"hello.c": HELLO}) as s:
        conn = s.connection()
        try:
            first = None
            for i in range(6):
                path = "/hello?name=%d" % i if i % 2 == 0 else "/hello/json"
                r = harness.request(s.port, path, conn=conn)
                check_eq(r.status, 200, "status of request %d" % i)
                if i % 2 == 0:
                    check_eq(r.text, "Hello, %d!" % i, "body")
                check(conn.sock is not None,
                      "server closed the connection after request %d "
                      "(Connection: %s)" % (i, r.header("Connection")))
                if first is None:
                    first = conn.sock
                check(conn.sock is first,
                      "client had to reconnect before request %d" % i)
        finally:
            conn.close()


def test_request_memory_and_log_helpers():
    mem = page(r'''
#include <string.h>

static int vp(hp_req *req, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int vp(hp_req *req, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = hp_vprintf(req, fmt, ap);
    va_end(ap);
    return r;
}

HP_HANDLER(http_handler)
{
    char *a = hp_alloc(req, 64);
    if (!a)
        return 500;
    memset(a, 'z', 63);
    a[63] = 0;
    char *d = hp_strdup(req, "dup");
    char *f = hp_sprintf(req, "%s-%d", "fmt", 42);
    hp_log(req, "logged-line-%d", 7);
    vp(req, "%zu %s %s|", strlen(a), d, f);
    hp_puts(req, "end");
    return HP_OK;
}
''')
    with Server(files={"mem.c": mem}) as s:
        check_eq(s.get_ok("/mem").text, "63 dup fmt-42|end", "body")
        check(wait_until(lambda: "logged-line-7" in s.stderr(), limit(2.0)),
              "hp_log line not in the server's stderr")
        line = [l for l in s.stderr().split("\n") if "logged-line-7" in l][0]
        check_in("mem", line, "hp_log line (prefixed with the page)")


# ---- static files -----------------------------------------------------------

PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01"
       b"\x08\x06\x00\x00\x00\x1f\x15\xc4\x89\x00\x00\x00\x00IEND\xaeB`\x82")


def test_static_files():
    files = {"style.css": "body{color:red}", "img/dot.png": PNG,
             "notes.txt": "plain notes\n", "data.json": '{"a":1}',
             "sub/page.html": "<p>hi</p>", "app.js": "var x=1;"}
    with Server(files=files) as s:
        want = {"/style.css": "text/css", "/img/dot.png": "image/png",
                "/notes.txt": "text/plain", "/data.json": "application/json",
                "/sub/page.html": "text/html", "/app.js": "javascript"}
        for path, ct in want.items():
            r = s.get(path)
            check_eq(r.status, 200, "status of %s" % path)
            got = r.header("Content-Type") or ""
            check(ct in got, "Content-Type of %s: %r, want %s"
                  % (path, got, ct))
            with open(s.path(path[1:]), "rb") as f:
                check_eq(r.body, f.read(), "body of %s" % path)
        check_eq(s.get("/missing.css").status, 404, "status of a missing file")


def test_static_post_405():
    with Server(files={"style.css": "p{}"}) as s:
        r = s.post("/style.css", "a=1")
        check_eq(r.status, 405, "POST to a static file")
        check_eq(r.header("Allow"), "GET, HEAD", "Allow on the 405")
        check_eq(s.get_ok("/style.css").text, "p{}", "GET afterwards")


def test_static_last_modified_304():
    with Server(files={"style.css": "body{color:red}"}) as s:
        r = s.get_ok("/style.css")
        lm = r.header("Last-Modified")
        check(lm, "no Last-Modified header")
        t = email.utils.parsedate_to_datetime(lm).timestamp()
        mtime = os.stat(s.path("style.css")).st_mtime
        check(abs(t - int(mtime)) <= 1, "Last-Modified %r vs mtime %s"
              % (lm, mtime))
        r = s.get("/style.css", headers={"If-Modified-Since": lm})
        check_eq(r.status, 304, "status with If-Modified-Since = Last-Modified")
        check_eq(r.body, b"", "body of 304")
        r = s.get("/style.css", headers={
            "If-Modified-Since": "Sat, 01 Jan 2000 00:00:00 GMT"})
        check_eq(r.status, 200, "status with an old If-Modified-Since")
        check_eq(r.text, "body{color:red}", "body")
        # a changed file is served anew
        time.sleep(0.01)
        s.write("style.css", "body{color:blue}")
        os.utime(s.path("style.css"), (mtime + 5, mtime + 5))
        r = s.get("/style.css", headers={"If-Modified-Since": lm})
        check_eq(r.status, 200, "status after the file changed")
        check_eq(r.text, "body{color:blue}", "body after the file changed")


# ---- what must never be served ----------------------------------------------

def test_sources_not_served():
    files = {"hello.c": HELLO, "inc.h": "#define X 1\n", "lib.so": b"\x7fELF",
             "obj.o": b"\x7fELF", "sub/x.c": simple_page("x")}
    with Server(files=files) as s:
        check_eq(s.get_ok("/hello").text, "Hello, world!", "control")
        for path in ("/hello.c", "/inc.h", "/lib.so", "/obj.o", "/sub/x.c",
                     "/hello.c?x=1", "/hello%2ec", "/sub%2fx.c"):
            r = s.get(path)
            check_eq(r.status, 404, "status of %s" % path)
            check_not_in("HP_HANDLER", r.text, "body of %s" % path)
            check_not_in("ELF", r.text, "body of %s" % path)


def test_hidden_and_underscore_paths():
    files = {"hello.c": page(r'''
HP_HANDLER(_secret)
{
    hp_puts(req, "SECRET-HANDLER");
    return HP_OK;
}

HP_HANDLER(caller)
{
    return _secret(req);
}
'''),
             "_private.c": simple_page("SECRET-PRIVATE"),
             "_dir/page.c": simple_page("SECRET-DIRPAGE"),
             "_dir/file.txt": "SECRET-DIRFILE",
             ".hidden.txt": "SECRET-HIDDEN",
             ".git/config": "SECRET-GIT",
             ".dotdir/page.c": simple_page("SECRET-DOTPAGE"),
             "sub/_x.txt": "SECRET-SUBX",
             "sub/ok.txt": "visible"}
    with Server(files=files) as s:
        check_eq(s.get_ok("/sub/ok.txt").text, "visible", "control")
        check_eq(s.get_ok("/hello/caller").text, "SECRET-HANDLER",
                 "control: a handler may call an _underscore function")
        for path in ("/_private", "/_dir/page", "/_dir/file.txt",
                     "/.hidden.txt", "/.git/config", "/.dotdir/page",
                     "/sub/_x.txt", "/hello/_secret", "/%5fprivate",
                     "/%2ehidden.txt", "/hello/%5fsecret", "/_hotpub/nosuch",
                     "/sub/%2e%2e/_private", "/sub/..%2f_private"):
            r = s.get(path)
            check_eq(r.status, 404, "status of %s" % path)
            check_not_in("SECRET", r.text, "body of %s" % path)


def test_non_handler_functions_not_reachable():
    fns = page(r'''
int other(hp_req *req);

static int helper(hp_req *req)
{
    hp_puts(req, "LEAK-helper");
    return HP_OK;
}

int other(hp_req *req)
{
    hp_puts(req, "LEAK-other");
    return HP_OK;
}

HP_HANDLER(http_handler)
{
    if (hp_arg(req, "never-set")) {
        helper(req);
        other(req);
    }
    hp_puts(req, "main");
    return HP_OK;
}
''')
    with Server(files={"fns.c": fns}) as s:
        check_eq(s.get_ok("/fns").text, "main", "control")
        for name in ("helper", "other", "hp__handler_http_handler",
                     "hp__abi_version", "hp_puts", "printf", "main"):
            r = s.get("/fns/" + name)
            check_eq(r.status, 404, "status of /fns/%s" % name)
            check_not_in("LEAK", r.text, "body of /fns/%s" % name)
        check(s.alive(), "server died")


def _outside_tree(s):
    out = os.path.join(s.tmp, "outside")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "secret.txt"), "w") as f:
        f.write("TOPSECRET")
    with open(os.path.join(out, "evil.c"), "w") as f:
        f.write(simple_page("EVIL-RAN"))
    return out


def test_path_traversal_refused():
    with Server(files={"hello.c": HELLO, "sub/ok.txt": "ok"}) as s:
        _outside_tree(s)
        check_eq(s.get_ok("/sub/ok.txt").text, "ok", "control")
        literal = ["/../outside/secret.txt", "/sub/../../outside/secret.txt",
                   "/./../outside/secret.txt", "/../outside/evil",
                   "/sub/../../outside/evil", "/..", "/../"]
        encoded = ["/%2e%2e/outside/secret.txt", "/%2E%2E/outside/secret.txt",
                   "/..%2foutside%2fsecret.txt", "/..%2Foutside/secret.txt",
                   "/%2e%2e%2foutside%2fsecret.txt",
                   "/sub/%2e%2e/%2e%2e/outside/secret.txt",
                   "/sub/..%2f..%2foutside/secret.txt",
                   "/%2e%2e/outside/evil", "/sub/..%2f..%2foutside/evil",
                   "/%2e./outside/secret.txt", "/.%2e/outside/evil",
                   "/sub%2f..%2f..%2foutside%2fevil"]
        for path in literal + encoded:
            req = ("GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                   % path).encode()
            r = s.raw(req)
            check(r is not None, "no answer to GET %s" % path)
            # Each climbs above the root once decoded and merged (RFC 3986
            # §5.2.4, server.c merge_dots): 400, as nginx.
            ok = (400,)
            check(r.status in ok, "status of GET %s: %s, want %s"
                  % (path, r.status, "/".join(map(str, ok))))
            check_not_in(b"TOPSECRET", r.body, "body of %s" % path)
            check_not_in(b"EVIL-RAN", r.body, "body of %s" % path)
        check(s.alive(), "server died")


def test_symlinks_out_of_root_refused():
    with Server(files={"notes.txt": "notes", "inside.c": simple_page("in")}) \
            as s:
        out = _outside_tree(s)
        os.symlink(out, s.path("linkdir"))
        os.symlink(os.path.join(out, "secret.txt"), s.path("link.txt"))
        os.symlink(os.path.join(out, "evil.c"), s.path("linkpage.c"))
        check_eq(s.get_ok("/notes.txt").text, "notes", "control")
        check_eq(s.get_ok("/inside").text, "in", "control")
        for path in ("/linkdir/secret.txt", "/link.txt", "/linkpage",
                     "/linkdir/evil", "/linkdir/"):
            r = s.get(path)
            check_eq(r.status, 404, "status of %s" % path)
            check_not_in("TOPSECRET", r.text, "body of %s" % path)
            check_not_in("EVIL-RAN", r.text, "body of %s" % path)


# ---- protocol errors -----------------------------------------------------------

def test_malformed_requests_400():
    with Server(files={"hello.c": HELLO}) as s:
        cases = [b"GET /hello HTTP/1.1\r\n\r\n",          # HTTP/1.1 without Host
                 b"GET /hello HTTP/1.1\r\nHost: x\r\nBad header line\r\n\r\n",
                 b"GET /hello FOO\r\nHost: x\r\n\r\n",
                 b"GET /hello HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n"
                 b"\r\n"]
        wrong = []
        for data in cases:
            r = s.raw(data)
            if r is None or r.status != 400:
                wrong.append("%r -> %s" % (data, r.status if r else
                                           "no answer"))
        # no request line at all: a 400 or a closed connection, never a page
        r = s.raw(b"GARBAGE\r\n\r\n")
        if r is not None and r.status != 400:
            wrong.append("b'GARBAGE' -> %s" % r.status)
        check(not wrong, "want 400: %s" % "; ".join(wrong))
        check_eq(s.get_ok("/hello").text, "Hello, world!", "after bad requests")


def test_oversized_header_431():
    with Server(files={"hello.c": HELLO}) as s:
        data = (b"GET /hello HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100000 +
                b"\r\n\r\n")
        r = s.raw(data)
        check(r is not None, "no answer to a 100 kB header")
        check_eq(r.status, 431, "status for a 100 kB header")
        check_eq(s.get_ok("/hello").text, "Hello, world!", "afterwards")


def test_many_small_fields_get_hotpubs_431():
    """Many small field lines fill libmicrohttpd's per-connection memory
    before the head reaches --max-header: the edge answers first, with the
    same 431 page as for one huge field, and closes the connection (not
    libmicrohttpd's "Your HTTP header was too big" body)."""
    with Server(files={"hello.c": HELLO}) as s:
        big = s.raw(b"GET /hello HTTP/1.1\r\nHost: x\r\nX-Big: " +
                    b"a" * 100000 + b"\r\n\r\n", read_all=True)
        for n in (300, 5000):
            fields = b"".join(b"X%d: a\r\n" % i for i in range(n))
            r = s.raw(b"GET /hello HTTP/1.1\r\nHost: x\r\n" + fields +
                      b"\r\n", read_all=True)
            check(r is not None, "no answer to %d fields" % n)
            check_eq(r.status, 431, "status for %d small fields" % n)
            check_not_in("too big for the memory", r.text,
                         "libmicrohttpd's body for %d fields" % n)
            check_eq(r.body, big.body, "the same 431 page as a huge field")
            check_eq((r.header("Connection") or "").lower(), "close",
                     "Connection for %d fields" % n)
        fields = b"".join(b"X%d: a\r\n" % i for i in range(100))
        r = s.raw(b"GET /hello HTTP/1.1\r\nHost: x\r\n" + fields +
                  b"Connection: close\r\n\r\n", read_all=True)
        check_eq((r.status, r.text), (200, "Hello, world!"), "100 fields")


def test_body_too_large_413():
    with Server(files={"echo.c": ECHO}, args=["--max-body", "1024"]) as s:
        r = s.post("/echo/body", "x" * 500, "text/plain")
        check_eq(r.status, 200, "status for 500 bytes")
        check_eq(r.text, "len=500\n" + "x" * 500, "body")
        r = s.raw(b"POST /echo/body HTTP/1.1\r\nHost: x\r\nContent-Type: "
                  b"text/plain\r\nContent-Length: 4000\r\nConnection: close"
                  b"\r\n\r\n" + b"y" * 4000)
        check(r is not None, "no answer to a 4000 byte body")
        check_eq(r.status, 413, "status for a 4000 byte body")
        check_not_in(b"len=", r.body, "413 body")
        r = s.post("/echo/body", "z" * 1024, "text/plain")
        check_eq(r.status, 200, "status for exactly --max-body bytes")


# ---- compile errors ---------------------------------------------------------------

def test_compile_error_dev_shows_diagnostic():
    with Server(files={"broken.c": BROKEN}, dev=True) as s:
        r = s.get("/broken")
        check_eq(r.status, 500, "status")
        check_in("text/html", r.header("Content-Type") or "", "Content-Type")
        check_in("error", r.text.lower())
        check_in("undeclared_xyz", r.text)
        check_in("&lt;b&gt;bad&lt;/b&gt; &amp; worse", r.text)
        check_not_in("<b>bad</b>", r.text)
        s.write("broken.c", simple_page("fixed now"))
        took = s.wait_body("/broken", "fixed now", limit(1.0),
                           allowed_status=(500,))
        check(took <= limit(1.0), "fix served after %.2f s" % took)


def test_compile_error_nodev_keeps_last_good():
    with Server(files={"p.c": simple_page("version one")}, dev=False) as s:
        check_eq(s.get_ok("/p").text, "version one", "first version")
        s.write("p.c", BROKEN, how="rename")
        t0 = time.monotonic()
        # for 1.5 s every answer is the last good version
        while time.monotonic() - t0 < 1.5:
            r = s.get("/p")
            check_eq((r.status, r.text), (200, "version one"),
                     "answer while the page is broken")
            time.sleep(0.05)
        got = wait_until(lambda: "undeclared_xyz" in s.stderr(), limit(2.0))
        check(got, "compile error not logged to stderr")
        m = s.module("p.c")
        check(m is not None, "p.c not in status.json")
        check(m.get("error"), "status.json error of p.c is %r" % m.get("error"))
        s.write("p.c", simple_page("version two"), how="rename")
        s.wait_body("/p", "version two", limit(1.0),
                    allowed_bodies=("version one",))
        m = s.module("p.c")
        check_eq(m.get("error"), None, "status.json error after the fix")


def test_compile_error_nodev_never_good_500():
    with Server(files={"broken.c": BROKEN}, dev=False) as s:
        r = s.get("/broken")
        check_eq(r.status, 500, "status")
        for leak in ("undeclared", "worse", "bad</b>", "bad&lt;", "#error"):
            check_not_in(leak, r.text, "500 body in --no-dev")
        check(wait_until(lambda: "undeclared_xyz" in s.stderr(), limit(2.0)),
              "compile error not logged to stderr")


def test_dev_is_default_on_loopback():
    with Server(files={"hello.c": HELLO}) as s:
        st = s.status_json()
        check_eq(st.get("server", {}).get("dev"), True, "server.dev by default")
    with Server(files={"hello.c": HELLO}, dev=False) as s:
        check_eq(s.status_json().get("server", {}).get("dev"), False,
                 "server.dev with --no-dev")


# ---- reloading ---------------------------------------------------------------

def _reload(how):
    with Server(files={"r.c": simple_page("reload one")}) as s:
        check_eq(s.get_ok("/r").text, "reload one", "first version")
        time.sleep(0.05)
        for i, text in enumerate(("reload two", "reload three!")):
            old = "reload one" if i == 0 else "reload two"
            s.write("r.c", simple_page(text), how=how)
            took = s.wait_body("/r", text, limit(1.0), allowed_bodies=(old,))
            check(took <= limit(1.0), "%s: new version served after %.2f s"
                  % (how, took))
            for _ in range(5):
                check_eq(s.get_ok("/r").text, text, "after the reload")


def test_reload_inplace_write():
    _reload("inplace")


def test_reload_cp_onto():
    _reload("copy")


def test_reload_rename_onto():
    _reload("rename")


def test_reload_included_header():
    files = {"inc.h": '#define MSG "header one"\n',
             "h.c": page('HP_HANDLER(http_handler)\n{\n    hp_puts(req, MSG);'
                         '\n    return HP_OK;\n}\n',
                         includes='#include "inc.h"')}
    with Server(files=files) as s:
        check_eq(s.get_ok("/h").text, "header one", "first version")
        s.write("inc.h", '#define MSG "header two"\n')
        s.wait_body("/h", "header two", limit(1.0),
                    allowed_bodies=("header one",))
        s.write("inc.h", '#define MSG "header three"\n', how="rename")
        s.wait_body("/h", "header three", limit(1.0),
                    allowed_bodies=("header two",))
        check_eq(s.get("/inc.h").status, 404, "the header as a static file")


def test_new_page_appears():
    with Server(files={"hello.c": HELLO}) as s:
        check_eq(s.get("/fresh").status, 404, "before the page exists")
        s.write("fresh.c", simple_page("fresh page"), how="rename")
        s.wait_body("/fresh", "fresh page", limit(1.0), allowed_status=(404,))
        os.makedirs(s.path("newdir"))
        s.write("newdir/index.c", simple_page("new dir"))
        s.wait_body("/newdir/", "new dir", limit(1.0), allowed_status=(404,))


def test_deleted_page_404():
    with Server(files={"gone.c": simple_page("still here"),
                       "gone.txt": "static here"}) as s:
        check_eq(s.get_ok("/gone").text, "still here", "first")
        check_eq(s.get_ok("/gone.txt").text, "static here", "first")
        os.unlink(s.path("gone.c"))
        os.unlink(s.path("gone.txt"))
        s.wait_for("/gone", lambda r: r.status == 404,
                   lambda r: r.status == 200 and r.text == "still here",
                   limit(1.0), "404 after deleting the page")
        check_eq(s.get("/gone.txt").status, 404, "deleted static file")


def test_page_globals_fresh_per_version():
    counter = page(r'''
static int n;

HP_HANDLER(http_handler)
{
    hp_printf(req, "%s %d", TAG, ++n);
    return HP_OK;
}
''', includes='#define TAG "TAGVALUE"')
    with Server(files={"cnt.c": counter.replace("TAGVALUE", "one")}, args=["--threads", "1"]) as s:
        for i in (1, 2, 3):
            check_eq(s.get_ok("/cnt").text, "one %d" % i, "request %d" % i)
        s.write("cnt.c", counter.replace("TAGVALUE", "two"), how="rename")
        s.wait_body("/cnt", "two 1", limit(1.0),
                    allowed_bodies=("one 4", "one 5", "one 6", "one 7",
                                    "one 8", "one 9", "one 10", "one 11"))
        check_eq(s.get_ok("/cnt").text, "two 2", "the new version's state")


def test_concurrent_first_load_compiles_once():
    with Server(files={"first.c": sleeper("first", 0, check_fast=False)},
                args=["--threads", "8"]) as s:
        bgs = [BackgroundRequest(s.port, "/first") for _ in range(8)]
        for b in bgs:
            b.start()
        for b in bgs:
            r = b.join_result()
            check_eq((r.status, r.text), (200, "first"), "concurrent first load")
        st = s.status_json()
        check_eq(st["server"]["compiles"], 1, "compiles for 8 concurrent "
                 "first requests")
        m = s.module("first.c", st)
        check(m and m.get("current"), "no current version")
        check_eq(m.get("retired"), [], "retired versions")


def test_broken_header_recovers():
    files = {"inc.h": '#define MSG "good one"\n',
             "h.c": page('HP_HANDLER(http_handler)\n{\n    hp_puts(req, MSG);'
                         '\n    return HP_OK;\n}\n',
                         includes='#include "inc.h"')}
    with Server(files=files, dev=True) as s:
        check_eq(s.get_ok("/h").text, "good one", "first version")
        s.write("inc.h", '#define MSG undeclared_in_header\n')
        took, r = s.wait_for("/h", lambda r: r.status == 500,
                             lambda r: r.status == 200,
                             limit(1.0), "the error from the header")
        check_in("undeclared_in_header", r.text, "dev error page")
        s.write("inc.h", '#define MSG "good two"\n')
        s.wait_body("/h", "good two", limit(1.0), allowed_status=(500,))


def test_inflight_request_keeps_old_version():
    with Server(files={"pin.c": sleeper("v1", 1)}) as s:
        check_eq(s.get_ok("/pin?fast=1").text, "v1", "warm-up")
        bg = BackgroundRequest(s.port, "/pin")
        bg.start()
        time.sleep(0.3)
        s.write("pin.c", sleeper("v2", 1), how="rename")
        t_write = time.monotonic()
        s.wait_body("/pin?fast=1", "v2", limit(0.7), allowed_bodies=("v1",))
        overlapped = bg.is_alive()
        r = bg.join_result()
        check_eq((r.status, r.text), (200, "v1"), "the in-flight request")
        check(overlapped or SLACK > 1, "v2 was served only %.2f s after the "
              "write, after the in-flight request ended"
              % (time.monotonic() - t_write))
        check_eq(s.get_ok("/pin").text, "v2", "a later slow request")


def test_old_version_unloaded_after_inflight_ends():
    with Server(files={"pin.c": sleeper("v1", 2)}) as s:
        check_eq(s.get_ok("/pin?fast=1").text, "v1", "warm-up")
        st = s.status_json()
        pid = st.get("server", {}).get("pid")
        check_eq(pid, s.pid(), "server.pid")
        m = s.module("pin.c", st)
        check(m and m.get("current"), "pin.c has no current version: %r" % m)
        old_id, old_obj = m["current"]["id"], m["current"]["object"]
        check(old_obj and old_obj in proc_maps(pid),
              "current object %r not mapped" % old_obj)
        bg = BackgroundRequest(s.port, "/pin")
        bg.start()
        time.sleep(0.3)
        s.write("pin.c", sleeper("v2", 2), how="rename")
        s.wait_body("/pin?fast=1", "v2", limit(1.0), allowed_bodies=("v1",))
        if bg.is_alive():
            m = s.module("pin.c")
            check(m["current"]["id"] != old_id, "current id did not change")
            ret = {v.get("id"): v for v in m.get("retired") or []}
            check(old_id in ret, "old version %s not in retired %r"
                  % (old_id, m.get("retired")))
            check_eq(ret[old_id].get("inflight"), 1, "retired inflight")
            check_eq(ret[old_id].get("object"), old_obj, "retired object")
            check_in(old_obj, proc_maps(pid), "maps while in flight")
        else:
            check(SLACK > 1, "v2 served only after the 2 s request ended")
        r = bg.join_result()
        check_eq((r.status, r.text), (200, "v1"), "the in-flight request")

        def unloaded():
            m2 = s.module("pin.c")
            return (not m2.get("retired")) and old_obj not in proc_maps(pid)
        check(wait_until(unloaded, 2.0, 0.05),
              "old version still loaded 2 s after its last request: retired "
              "%r, mapped %s" % (s.module("pin.c").get("retired"),
                                 old_obj in proc_maps(pid)))
        m = s.module("pin.c")
        check(m["current"]["object"] in proc_maps(pid),
              "current object not mapped")


def test_status_json():
    with Server(files={"hello.c": HELLO, "style.css": "x"}, dev=True) as s:
        s.get_ok("/hello")
        s.get_ok("/hello/json")
        s.get_ok("/style.css")
        st = s.status_json()
        srv = st.get("server")
        check(isinstance(srv, dict), "no server object: %s" % short(st))
        check_eq(srv.get("version"), "0.1.0", "server.version")
        check_eq(srv.get("pid"), s.pid(), "server.pid")
        check_eq(srv.get("dev"), True, "server.dev")
        check(isinstance(srv.get("compiles"), int) and srv["compiles"] >= 1,
              "server.compiles %r" % srv.get("compiles"))
        check(isinstance(srv.get("requests"), int) and srv["requests"] >= 3,
              "server.requests %r" % srv.get("requests"))
        mods = st.get("modules")
        check(isinstance(mods, list), "modules %r" % mods)
        check_eq([m.get("path") for m in mods], [s.canon("hello.c")],
                 "module paths")
        m = mods[0]
        cur = m.get("current")
        check(isinstance(cur, dict), "current %r" % cur)
        check(isinstance(cur.get("id"), int), "current.id %r" % cur.get("id"))
        check_eq(cur.get("inflight"), 0, "current.inflight")
        obj = cur.get("object")
        check(isinstance(obj, str) and obj.startswith("/"),
              "current.object %r" % obj)
        check_in(obj, proc_maps(s.pid()), "/proc/PID/maps")
        check(isinstance(cur.get("loaded_at"), (int, float)),
              "current.loaded_at %r" % cur.get("loaded_at"))
        check_eq(m.get("retired"), [], "retired")
        check_eq(m.get("error"), None, "error")
        check_eq(m.get("stale"), False, "stale")
        n = srv["requests"]
        s.get_ok("/hello")
        check(s.status_json()["server"]["requests"] > n,
              "server.requests does not grow")


def test_compile_cache_reused_across_restarts():
    with Server(files={"hello.c": HELLO}, dev=True) as s1:
        s1.get_ok("/hello")
        c1 = s1.status_json()["server"]["compiles"]
        check(c1 >= 1, "compiles %r" % c1)
        s1.stop()
        with Server(tmp=s1.tmp, dev=True) as s2:
            check_eq(s2.get_ok("/hello").text, "Hello, world!", "body")
            check_eq(s2.status_json()["server"]["compiles"], 0,
                     "compiles after a restart with a warm cache")


# ---- concurrency ------------------------------------------------------------

def test_slow_handler_does_not_stall_others():
    files = {"slow.c": sleeper("slow done", 2), "fast.c": simple_page("fast"),
             "style.css": "x"}
    with Server(files=files) as s:
        s.get_ok("/slow?fast=1")
        s.get_ok("/fast")
        bg = BackgroundRequest(s.port, "/slow")
        bg.start()
        time.sleep(0.2)
        for i in range(6):
            t0 = time.monotonic()
            r = s.get("/fast" if i % 2 == 0 else "/style.css", timeout=5)
            dt = time.monotonic() - t0
            check_eq(r.status, 200, "fast request status")
            check(dt < limit(0.5), "request %d took %.2f s while a slow "
                  "handler ran" % (i, dt))
        alive = bg.is_alive()
        r = bg.join_result()
        check(alive, "slow request finished too early: %s %r" % (r.status, r.text))
        r = bg.join_result()
        check_eq((r.status, r.text), (200, "slow done"), "slow request")
        check(bg.elapsed() >= 1.9, "slow took only %.2f s" % bg.elapsed())


MIXED_PAGE = r'''
HP_HANDLER(http_handler)
{
    if (hp_arg(req, "slow"))
        sleep(2);
    hp_puts(req, "mixed");
    return HP_OK;
}
'''


def stalls_while_mixed_blocks(s, strict=True):
    """Warm /mixed up (fast), then block it for 2 s while other requests run
    on keep-alive connections opened before and on new ones; returns the
    requests that took over 0.5 s."""
    conn = s.connection()
    try:
        for _ in range(100):
            r = harness.request(s.port, "/mixed", conn=conn)
            check_eq((r.status, r.text), (200, "mixed"), "warm-up")
    finally:
        conn.close()
    s.get_ok("/fast")
    # keep-alive connections opened before the slow request, spread over
    # whatever threads the server has
    idle = [s.connection(timeout=5) for _ in range(8)]
    try:
        for c in idle:
            check_eq(harness.request(s.port, "/fast", conn=c).status, 200,
                     "status on a keep-alive connection")
        bg = BackgroundRequest(s.port, "/mixed?slow=1")
        bg.start()
        time.sleep(0.2)
        times = []
        for i, c in enumerate(idle):
            t0 = time.monotonic()
            r = harness.request(s.port, "/fast" if i % 2 else "/style.css",
                                conn=c)
            times.append(("existing", time.monotonic() - t0))
            check_eq(r.status, 200, "status on an existing connection")
        for i in range(6):
            t0 = time.monotonic()
            r = s.get("/fast" if i % 2 == 0 else "/style.css", timeout=5)
            times.append(("new", time.monotonic() - t0))
            check_eq(r.status, 200, "status on a new connection")
        alive = bg.is_alive()
        r = bg.join_result()
        # (a stalled loop delays the others past the sleep: only then is
        # an early finish expected)
        check(alive or not strict, "slow request finished too early: %s %r"
              % (r.status, r.text))
        check_eq((r.status, r.text), (200, "mixed"), "slow request")
        return [(k, round(t, 2)) for k, t in times if t >= limit(0.5)]
    finally:
        for c in idle:
            c.close()


def test_slow_run_of_a_fast_page_does_not_stall_others_without_inline():
    """With --inline false every page runs on the handler threads: a page that
    was fast for many requests and then blocks stalls nothing."""
    files = {"mixed.c": page(MIXED_PAGE, includes="#include <unistd.h>"),
             "fast.c": simple_page("fast"), "style.css": "x"}
    with Server(files=files, args=["--inline", "false"]) as s:
        slow = stalls_while_mixed_blocks(s)
        check(not slow, "requests stalled while a previously fast page "
              "blocked for 2 s: %s" % (slow,))


def test_fast_page_that_blocks_is_demoted():
    """By default a page proven fast runs on the event loops; the first run
    that blocks may hold up that loop's connections once (documented in
    docs/design.md), is logged, and demotes the version to the handler threads
    for good: the next block stalls nothing."""
    files = {"mixed.c": page(MIXED_PAGE, includes="#include <unistd.h>"),
             "fast.c": simple_page("fast"), "style.css": "x"}
    with Server(files=files) as s:
        stalls_while_mixed_blocks(s, strict=False)
        check(wait_until(lambda: "now runs on the handler threads" in s.stderr(),
                         limit(2.0), 0.05),
              "no demotion logged: %s" % s.stderr()[-600:])
        slow = stalls_while_mixed_blocks(s)
        check(not slow, "requests stalled after the page was demoted: %s"
              % (slow,))


def test_request_values_between_hooks_and_handler():
    """hp_req_set in prepare, hp_req_get in the handler; values live for one
    request only."""
    src = page(r'''
HP_HOOK(prepare)
{
    const char *who = hp_arg(req, "who");
    if (who)
        hp_req_set(req, "who", hp_strdup(req, who));
    hp_req_set(req, "n", hp_strdup(req, "1"));
    hp_req_set(req, "n", hp_strdup(req, "2"));   /* replaces */
    return HP_OK;
}
HP_HANDLER(http_handler)
{
    const char *who = hp_req_get(req, "who");
    hp_printf(req, "%s %s %s", who ? who : "(none)",
              (const char *)hp_req_get(req, "n"),
              hp_req_get(req, "missing") ? "bad" : "ok");
    return HP_OK;
}
''')
    with Server(files={"vals.c": src}) as s:
        check_eq(s.get_ok("/vals?who=ann").text, "ann 2 ok", "values")
        check_eq(s.get_ok("/vals").text, "(none) 2 ok", "next request")


def test_threads_run_handlers_in_parallel():
    with Server(files={"slow.c": sleeper("slow done", 2)},
                args=["--threads", "4"]) as s:
        s.get_ok("/slow?fast=1")
        t0 = time.monotonic()
        bgs = [BackgroundRequest(s.port, "/slow") for _ in range(3)]
        for b in bgs:
            b.start()
        for b in bgs:
            r = b.join_result()
            check_eq((r.status, r.text), (200, "slow done"), "slow request")
        dt = time.monotonic() - t0
        check(dt < 3.5, "3 parallel 2 s requests took %.2f s with 4 threads"
              % dt)


def test_reload_storm():
    """8 keep-alive clients for 10 s while the page is renamed over every
    50 ms: every answer is a 200 with a whole version, no client sees an
    older version after a newer one, no answer is older than the 1 s reload
    bound, and the last version is served at the end."""
    duration = 10.0
    written = {0: 0.0}     # version -> monotonic time it landed on disk
    counter = [0]

    def src(n):
        return simple_page("storm %d" % n)

    with Server(files={"storm.c": src(0)}) as s:
        check_eq(s.get_ok("/storm").text, "storm 0", "first version")
        stop = threading.Event()
        results = []           # per thread: dict
        lock = threading.Lock()
        pat = re.compile(r"^storm (\d+)$")
        bound = limit(1.0)

        def client(idx):
            st = {"ok": 0, "fail": 0, "errors": [], "backwards": 0,
                  "stale": 0, "max_stale": 0.0, "lat": [], "seen": set()}
            conn = s.connection(timeout=10)
            last = -1
            try:
                while not stop.is_set():
                    t0 = time.monotonic()
                    try:
                        r = harness.request(s.port, "/storm", conn=conn)
                    except Exception as e:  # noqa: BLE001
                        st["fail"] += 1
                        st["errors"].append("exception %r" % e)
                        conn.close()
                        conn = s.connection(timeout=10)
                        continue
                    st["lat"].append(time.monotonic() - t0)
                    mt = pat.match(r.text) if r.status == 200 else None
                    if not mt:
                        st["fail"] += 1
                        st["errors"].append("status %s body %s"
                                            % (r.status, short(r.body, 100)))
                        continue
                    n = int(mt.group(1))
                    st["seen"].add(n)
                    if n < last:
                        st["backwards"] += 1
                        st["errors"].append("went back from %d to %d"
                                            % (last, n))
                    last = n
                    # how long had a newer version been on disk?
                    newer = written.get(n + 1)
                    if newer is not None and t0 > newer:
                        st["max_stale"] = max(st["max_stale"], t0 - newer)
                        if t0 - newer > bound:
                            st["stale"] += 1
                    st["ok"] += 1
            finally:
                conn.close()
                with lock:
                    results.append(st)

        def writer():
            while not stop.is_set():
                n = counter[0] + 1
                s.write("storm.c", src(n), how="rename")
                written[n] = time.monotonic()
                counter[0] = n
                stop.wait(0.05)

        threads = [threading.Thread(target=client, args=(i,), daemon=True)
                   for i in range(8)]
        wt = threading.Thread(target=writer, daemon=True)
        for t in threads:
            t.start()
        wt.start()
        time.sleep(duration)
        stop.set()
        wt.join(5)
        for t in threads:
            t.join(15)
        check(not any(t.is_alive() for t in threads) and not wt.is_alive(),
              "storm threads did not stop")
        check_eq(len(results), 8, "client threads that reported")
        ok = sum(r["ok"] for r in results)
        bad = sum(r["fail"] for r in results)
        back = sum(r["backwards"] for r in results)
        stale = sum(r["stale"] for r in results)
        seen = set().union(*(r["seen"] for r in results))
        errs = [e for r in results for e in r["errors"]][:5]
        lat = sorted(x for r in results for x in r["lat"]) or [0.0]
        stats = ("%d requests, %d failed, %d versions written, %d distinct "
                 "seen, latency p50 %.3f s p99 %.3f s max %.2f s, %d answers "
                 "staler than %.1f s, max staleness %.2f s"
                 % (ok + bad, bad, counter[0], len(seen),
                    lat[len(lat) // 2], lat[int(len(lat) * 0.99)], lat[-1],
                    stale, bound, max(r["max_stale"] for r in results)))
        harness.note(stats)
        check(bad == 0, "failed requests during the storm (%s), e.g. %s"
              % (stats, errs))
        check(back == 0, "answers went back to an older version (%s): %s"
              % (stats, errs))
        check(counter[0] >= 50, "only %d rewrites" % counter[0])
        check(stale == 0, "stale answers during the storm: %s" % stats)
        check(ok >= 50, "too few requests to mean anything: %s" % stats)
        final = "storm %d" % counter[0]
        s.wait_for("/storm", lambda r: r.status == 200 and r.text == final,
                   lambda r: r.status == 200 and pat.match(r.text),
                   limit(1.0), "the final version %r" % final)
        pid = s.pid()

        def settled():
            m = s.module("storm.c")
            return m if m and not m.get("retired") and m.get("current") \
                else None
        m = wait_until(settled, 2.0, 0.05)
        check(m, "retired versions still there 2 s after the storm: %r"
              % (s.module("storm.c") or {}).get("retired"))
        obj = m["current"]["object"]
        maps = proc_maps(pid)
        d = os.path.dirname(obj)
        mapped = {line.split(None, 5)[5].replace(" (deleted)", "")
                  for line in maps.split("\n")
                  if len(line.split(None, 5)) == 6 and
                  line.split(None, 5)[5].startswith(d + "/")}
        check(len(mapped) <= 2, "%d page objects still mapped after the storm "
              "(%s...)" % (len(mapped), sorted(mapped)[:3]))


# ---- worker processes (--workers N) -------------------------------------------

def worker_page(text):
    """A page that prints text and the pid of the process that ran it."""
    return page('HP_HANDLER(http_handler)\n{\n    hp_printf(req, "%%s|%%d", '
                '"%s", (int)getpid());\n    return HP_OK;\n}\n' % text,
                includes="#include <unistd.h>")


def _spread(s, path, seconds=None, rounds=6, threads=8):
    """GET path from `threads` parallel clients, new connection each time
    (so that the requests land on every worker process), `rounds` each or
    for `seconds`. Returns ({(status, text): count}, {pid, ...}) for pages
    made by worker_page."""
    out, pids, lock = {}, set(), threading.Lock()
    t0 = time.monotonic()

    def client():
        n = 0
        while (seconds is not None and time.monotonic() - t0 < seconds) or \
                (seconds is None and n < rounds):
            n += 1
            try:
                r = s.get(path, timeout=10)
                text, sep, pid = r.text.rpartition("|")
                if not sep:
                    text, pid = r.text, None
                key = (r.status, text) if r.status == 200 else \
                    (r.status, short(r.body, 60))
                with lock:
                    if r.status == 200 and pid:
                        pids.add(pid)
                    out[key] = out.get(key, 0) + 1
            except Exception as e:  # noqa: BLE001
                with lock:
                    out[("error", repr(e))] = out.get(("error", repr(e)), 0) + 1

    ts = [threading.Thread(target=client, daemon=True) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    return out, pids


def _all(answers, want):
    return {k: v for k, v in answers.items() if k != (200, want)}


def test_workers_reload_reaches_every_worker():
    with Server(files={"r.c": worker_page("reload one")}, workers=2) as s:
        got, pids = _spread(s, "/r")
        check(not _all(got, "reload one"), "first version: %r" % got)
        check(len(pids) >= 2, "requests reached only worker(s) %s" % pids)
        for text in ("reload two", "reload three"):
            s.write("r.c", worker_page(text), how="rename")
            t_write = time.monotonic()
            time.sleep(max(0.0, t_write + limit(1.0) - time.monotonic()))
            got, pids = _spread(s, "/r")
            check(not _all(got, text), "answers %.1f s after the write: %r"
                  % (limit(1.0), got))
            check(len(pids) >= 2, "requests reached only worker(s) %s" % pids)


def test_workers_nodev_keeps_last_good():
    """--no-dev with 2 worker processes: once a good version was served, a
    broken edit must not turn into 500s on the worker that had not loaded
    the page yet."""
    with Server(files={"p.c": worker_page("version one")}, dev=False,
                workers=2) as s:
        check_eq(s.get_ok("/p").text.split("|")[0], "version one", "first")
        s.write("p.c", BROKEN, how="rename")
        time.sleep(0.3)
        got, pids = _spread(s, "/p", seconds=1.5)
        check(not _all(got, "version one"),
              "answers while the page is broken (2 workers): %r" % got)
        check(len(pids) >= 2, "requests reached only worker(s) %s" % pids)
        s.write("p.c", worker_page("version two"), how="rename")
        time.sleep(limit(1.0))
        got, pids = _spread(s, "/p")
        check(not _all(got, "version two"),
              "answers 1 s after the fix (2 workers): %r" % got)


def test_workers_sigterm_finishes_inflight_requests():
    with Server(files={"slow.c": sleeper("finished", 1)}, workers=2,
                check_exit=False) as s:
        _spread(s, "/slow?fast=1", rounds=1, threads=4)
        bgs = [BackgroundRequest(s.port, "/slow") for _ in range(2)]
        for b in bgs:
            b.start()
        time.sleep(0.3)
        rc = s.terminate(timeout=10)
        for b in bgs:
            r = b.join_result()
            check_eq((r.status, r.text), (200, "finished"), "in-flight request")
        check_eq(rc, 0, "exit status after SIGTERM (2 workers)")
        err = s.stderr()
        for mark in harness.SANITIZER_MARKS:
            check_not_in(mark, err, "server stderr")


def test_workers_handler_timeout_504():
    files = {"hang.c": sleeper("too late", 5), "fast.c": simple_page("fast")}
    with Server(files=files, workers=2, args=["--handler-timeout", "1"]) as s:
        s.get_ok("/hang?fast=1")
        t0 = time.monotonic()
        r = s.get("/hang")
        dt = time.monotonic() - t0
        check_eq(r.status, 504, "status of a handler over --handler-timeout")
        check(dt < limit(3.0), "504 came after %.1f s" % dt)
        got, _ = _spread(s, "/fast", rounds=2, threads=4)
        check_eq(got, {(200, "fast"): 8}, "other pages afterwards")


def test_sigterm_finishes_inflight_requests():
    with Server(files={"slow.c": sleeper("finished", 1)}, check_exit=False) \
            as s:
        s.get_ok("/slow?fast=1")
        bg = BackgroundRequest(s.port, "/slow")
        bg.start()
        time.sleep(0.3)
        t0 = time.monotonic()
        rc = s.terminate(timeout=10)
        dt = time.monotonic() - t0
        r = bg.join_result()
        check_eq((r.status, r.text), (200, "finished"), "in-flight request")
        check_eq(rc, 0, "exit status after SIGTERM")
        check(dt < 5, "exit took %.1f s" % dt)
        check_port_closed(s.port)
        err = s.stderr()
        for mark in harness.SANITIZER_MARKS:
            check_not_in(mark, err, "server stderr")


def test_access_log():
    s = Server(files={"hello.c": HELLO}, start=False)
    logp = os.path.join(s.tmp, "logs", "access.log")
    s.args = ["--access-log", logp]
    with s:
        s.start()
        s.get_ok("/hello?name=logged")
        check_eq(s.get("/nosuch-page").status, 404, "status")
        s.stop()
        with open(logp) as f:
            text = f.read()
        lines = [l for l in text.split("\n") if l.strip()]
        check(any("/hello" in l and " 200" in l for l in lines),
              "no line for GET /hello 200 in %s" % short(text))
        check(any("/nosuch-page" in l and " 404" in l for l in lines),
              "no line for the 404 in %s" % short(text))
    with Server(files={"hello.c": HELLO},
                args=["--access-log", "off"]) as s:
        s.get_ok("/hello?name=quiet")
        s.stop()
        for p in (s.stderr_path, s.stdout_path):
            with open(p, errors="replace") as f:
                check_not_in("name=quiet", f.read(),
                             "server output with --access-log off")


def test_access_log_fields_cannot_be_forged():
    """A '"' in User-Agent or Referer, or a '\\' in the target, is written
    as \\xHH (nginx's escaping): the client cannot close a quoted field and
    forge the status, size or User-Agent a log parser reads."""
    s = Server(files={"hello.c": HELLO}, start=False)
    logp = os.path.join(s.tmp, "logs", "access.log")
    s.args = ["--access-log", logp]
    with s:
        s.start()
        r = s.request("/hello?q=a%5Cb\\c", headers={
            "User-Agent": 'x" 404 0 "http://forged/" "Mozilla',
            "Referer": 'r" "z'})
        check_eq(r.status, 200, "status")
        s.stop()
        with open(logp) as f:
            lines = [l for l in f.read().split("\n") if "/hello" in l]
        check_eq(len(lines), 1, "lines for GET /hello")
        line = lines[0] if lines else ""
        check_in(' 200 ', line, "status field")
        check_in('"r\\x22 \\x22z" "x\\x22 404 0 \\x22http://forged/\\x22 '
                 '\\x22Mozilla"', line, "escaped Referer and User-Agent")
        check_in("q=a%5Cb\\x5Cc", line, "escaped backslash in the target")
        check_eq(line.count('"'), 6, "quotes in %r" % line)


def test_edge_refusals_logged():
    """A connection the request edge refuses before libmicrohttpd saw a
    request is in the access log, and the error log says why, at most one
    line a second (security.md, the request edge)."""
    s = Server(files={"hello.c": HELLO}, start=False)
    logp = os.path.join(s.tmp, "logs", "access.log")
    s.args = ["--access-log", logp, "--workers", "0"]
    with s:
        s.start()
        for _ in range(20):
            r = s.raw(b"GET /hello HTTP/1.1\r\nHost : a\r\n\r\n")
            check_eq(r.status, 400, "whitespace before the colon")
        s.get_ok("/hello")
        s.stop()
        with open(logp) as f:
            lines = [l for l in f.read().split("\n") if " 400 " in l]
        check_eq(len(lines), 20, "access-log lines for 20 refusals")
        check(lines[0].startswith("127.0.0.1 "), "address in %r" % lines[0])
        err = s.stderr()
        n = err.count("whitespace before a field's colon")
        check(1 <= n <= 3, "%d error-log lines for 20 refusals in about a "
              "second: %s" % (n, short(err)))


def test_access_log_head_bytes_and_refused_request_line():
    """The access log counts the body bytes sent (none to a HEAD, as
    nginx's $body_bytes_sent), and a request the edge refuses before it is
    parsed ("get" is no method: 400) is logged with its request line as
    received, escaped as every field is; "-" only when none came."""
    s = Server(files={"hello.c": simple_page("hello!")}, start=False)
    log = os.path.join(s.tmp, "logs", "access.log")
    s.args = ["--access-log", log]
    with s:
        s.start()
        check_eq(s.get("/hello").body, b"hello!", "GET")
        check_eq(s.head("/hello").status, 200, "HEAD")
        r = s.raw(b"get /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        check(r is not None and r.status == 400, "get: %r" % (r,))
        # the request line split over two reads, with a quote in it
        with socket.create_connection(("127.0.0.1", s.port), timeout=10) as c:
            c.sendall(b"GE")
            time.sleep(0.3)
            c.sendall(b't /a"b HTTP/1.1\r\nHost: x\r\n\r\n')
            check(c.recv(100).startswith(b"HTTP/1.1 400 "), "GEt: a 400")
        s.stop()  # flushes the access log
        text = open(log).read()
        check_in('"GET /hello HTTP/1.1" 200 6 ', text, "the GET's line")
        check_in('"HEAD /hello HTTP/1.1" 200 0 ', text, "the HEAD's line")
        check_in('"get /hello HTTP/1.1" 400 0 ', text, "the refused get")
        check_in('"GEt /a\\x22b HTTP/1.1" 400 0 ', text,
                 "the refused line read in two pieces")
        check('"- - -"' not in text, "a line without its request: %r" % text)


def test_connection_limit_logged_once_a_second():
    """At --connection-limit libmicrohttpd stops accepting (the rest wait
    in the backlog); the error log says so at most once a second."""
    with Server(files={"hello.c": HELLO},
                args=["--connection-limit", "4", "--workers", "0"]) as s:
        socks = []
        try:
            for _ in range(60):
                try:
                    c = socket.create_connection(("127.0.0.1", s.port),
                                                 timeout=2)
                    socks.append(c)
                except OSError:
                    pass
            time.sleep(0.3)
        finally:
            for c in socks:
                c.close()
        check(wait_until(lambda: "connection limit" in s.stderr(),
                         limit(2.0)), "no log line for the limit")
        n = s.stderr().count("connection limit")
        check(n <= 3, "%d log lines for ~56 connections over the limit in "
              "under a second" % n)
        s.get_ok("/hello")


def test_status_1xx_is_never_final():
    """hp_status with 1xx is ignored (RFC 9110 15.2) and logged; a handler
    returning a 1xx gets 500."""
    with Server(files={"edge.c": EDGE}) as s:
        r = s.get("/edge/interim", timeout=5)
        check_eq((r.status, r.text), (201, "after"),
                 "hp_status(201) then hp_status(103)")
        check(wait_until(lambda: "hp_status(103) ignored" in s.stderr(),
                         limit(2.0)), "no log line for hp_status(103)")
        # rate-limited: a second request adds no second line
        s.get("/edge/interim", timeout=5)
        time.sleep(0.2)
        check_eq(s.stderr().count("hp_status(103) ignored"), 1,
                 "log lines for two hp_status(103)")
        r = s.raw(b"GET /edge/ret1xx HTTP/1.1\r\nHost: x\r\n"
                  b"Connection: close\r\n\r\n", timeout=5, read_all=True)
        check(r is not None, "no answer to a handler returning 101")
        check_eq(r.status, 500, "status when a handler returns 101")
        check_not_in(b"partial", r.body, "500 body")


def test_date_is_the_servers_and_server_is_the_pages():
    """hp_set_header refuses Date (the origin server's clock, RFC 9110
    6.6.1): the response carries a real HTTP-date. No Server field is sent
    unless the page sets one."""
    with Server(files={"edge.c": EDGE}) as s:
        r = s.get("/edge/date")
        check_eq(r.text, "date=-1 server=0", "return values")
        check(re.match(r"^[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} "
                       r"\d\d:\d\d:\d\d GMT$", r.header("Date") or ""),
              "Date %r" % r.header("Date"))
        check_eq(r.all("Date"), [r.header("Date")], "one Date field")
        check_eq(r.header("Server"), "mine", "the page's Server")
        check_eq(s.get("/edge/ret").header("Server"), None,
                 "no Server by default")


def test_handler_returns_redirect():
    """A handler may return 301/302/303/307/308 after setting Location;
    without Location a returned 3xx is a 500."""
    with Server(files={"edge.c": EDGE}) as s:
        for code in (301, 302, 303, 307, 308):
            r = s.get("/edge/ret?code=%d&loc=/there" % code)
            check_eq(r.status, code, "status of a returned %d" % code)
            check_eq(r.header("Location"), "/there", "Location of %d" % code)
        r = s.get("/edge/ret?code=302")
        check_eq(r.status, 500, "a returned 302 without Location")
        # hp_redirect percent-encodes what a URI may not hold as it is
        r = s.get("/edge/ret?code=302&loc=" + urllib.parse.quote(
            "/a b/caf\u00e9?q=<x>|%41"))
        check_eq(r.status, 302, "status of an encoded redirect")
        check_eq(r.header("Location"), "/a%20b/caf%C3%A9?q=%3Cx%3E%7C%41",
                 "Location encoded")
        # and refuses a control byte: no Location, so a returned 302 is
        # a 500
        r = s.get("/edge/ret?code=302&loc=%2Fa%09b")
        check_eq(r.status, 500, "a redirect with a tab")
        for code in (304, 300, 305):
            r = s.get("/edge/ret?code=%d&loc=/there" % code)
            check_eq(r.status, 500, "a returned %d" % code)


def test_set_cookie_rfc6265():
    """hp_set_cookie and a raw Set-Cookie refuse what RFC 6265 4.1.1
    forbids in cookie-name / cookie-value, and set nothing then."""
    with Server(files={"edge.c": EDGE}) as s:
        r = s.get_ok("/edge/cookies")
        lines = dict(l.split("=", 1) for l in r.text.strip().split("\n"))
        check_eq(lines.pop("ok"), "0,0,0,0", "valid hp_set_cookie calls")
        check_eq(lines.pop("raw-ok"), "0,0", "valid raw Set-Cookie")
        bad = {k: v for k, v in lines.items() if v != "-1"}
        check_eq(bad, {}, "calls that must have returned -1")
        check_eq(len(lines), 10 + 8 + 9, "number of refused calls reported")
        check_eq(sorted(r.all("Set-Cookie")),
                 sorted(["a=1", "e=; Max-Age=0", 'q="x"',
                         "o=!#$%&'()*+-./:<=>?@[]^_`{|}~",
                         "r=1; Path=/; HttpOnly", "s=2"]),
                 "Set-Cookie fields sent")


if __name__ == "__main__":
    sys.exit(harness.run_suite(globals(), sys.argv[1:],
                               suite_budget=SUITE_BUDGET,
                               test_timeout=TEST_TIMEOUT))
