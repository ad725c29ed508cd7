#!/usr/bin/env python3
"""hotpub end-to-end tests of form and cookie decoding (src/form.c,
docs/pages.md "Arguments"): one decoder for query strings and urlencoded
bodies (WHATWG URL), multipart/form-data (RFC 7578) with nameless parts
skipped (this once crashed the server), 400 for a malformed multipart body,
the field cap (--max-fields, default 1000: 413 before the handler runs),
and Cookie parsing (RFC 6265).

    HOTPUB_BIN=/abs/path/hotpub python3 tests/e2e/forms.py [NAME-SUBSTRING...]
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import (Server, check, check_eq, check_in,  # noqa: E402
                     check_not_in, limit, page, raw_request)

TEST_TIMEOUT = 60.0
SUITE_BUDGET = 300.0

# Prints every value of a few names: "NAME#COUNT=[v0][v1]..." per line;
# "ran" first so a test can tell that the handler did not run.
FIELDS = page(r'''
static void dump(hp_req *req, const char *name)
{
    unsigned n = hp_arg_count(req, name);
    hp_printf(req, "%s#%u=", name, n);
    for (unsigned i = 0; i < n; i++)
        hp_printf(req, "[%s]", hp_arg_n(req, name, i));
    hp_puts(req, "\n");
}

HP_HANDLER(http_handler)
{
    static const char *names[] = {"", "a", "b", "c", "k", "j", "up", "x"};
    hp_puts(req, "ran\n");
    for (unsigned i = 0; i < sizeof names / sizeof names[0]; i++)
        dump(req, names[i]);
    const char *first = hp_arg(req, "a");
    hp_printf(req, "first-a=%s\n", first ? first : "(null)");
    return HP_OK;
}

HP_HANDLER(cookies)
{
    static const char *names[] = {"a", "b", "c", "d", "e", "x", "sid", "Sid"};
    for (unsigned i = 0; i < sizeof names / sizeof names[0]; i++) {
        const char *v = hp_cookie(req, names[i]);
        hp_printf(req, "%s=%s\n", names[i], v ? v : "(null)");
    }
    return HP_OK;
}
''')

NAMELESS = (b"--XyZ\r\nContent-Type: text/plain\r\n\r\nhello\r\n"
            b"--XyZ--\r\n")
MP = "multipart/form-data; boundary=XyZ"


def lines(r):
    return r.text.split("\n")


def post_raw(s, body, content_type):
    """A POST with exactly this body, on its own connection."""
    head = ("POST /f HTTP/1.1\r\nHost: t\r\nContent-Type: %s\r\n"
            "Content-Length: %d\r\nConnection: close\r\n\r\n"
            % (content_type, len(body))).encode()
    return raw_request(s.port, head + body, timeout=10)


def test_nameless_multipart_part_is_skipped_not_a_crash():
    # The remote crash: with --workers 0 the whole server used to exit.
    with Server(files={"f.c": FIELDS}) as s:
        for _ in range(5):
            r = post_raw(s, NAMELESS, MP)
            check(r is not None, "no answer: the server died")
            check_eq(r.status, 200, "status of a nameless part")
            check_in("ran", r.text)
            check_in("a#0=", lines(r))
        check(s.alive(), "server exited")
        # Nameless parts between named ones: skipped, the others kept.
        body = (b"--XyZ\r\nContent-Disposition: form-data; name=a\r\n\r\n1"
                b"\r\n--XyZ\r\nContent-Disposition: form-data\r\n\r\nno"
                b"\r\n--XyZ\r\n\r\nbare\r\n--XyZ\r\nContent-Disposition: "
                b"form-data; name=\"b\"\r\n\r\n2\r\n--XyZ--\r\n")
        r = post_raw(s, body, MP)
        check_eq(r.status, 200, "status")
        for line in ("a#1=[1]", "b#1=[2]", "#0="):
            check(line in lines(r), "%r missing in %r" % (line, r.text))
        check_eq(s.get("/f?a=after").status, 200, "a request afterwards")


def test_nameless_part_with_workers():
    with Server(files={"f.c": FIELDS}, workers=2) as s:
        for _ in range(10):
            r = post_raw(s, NAMELESS, MP)
            check(r is not None and r.status == 200,
                  "nameless part with workers: %r" % r)
        err = s.stderr()
        for mark in ("crashed", "died", "killed by signal"):
            check_not_in(mark, err, "server stderr")


def test_post_parses_like_the_query_string():
    want = {
        "=v&a=1&b=2": ["#1=[v]", "a#1=[1]", "b#1=[2]"],
        "a=%zz&b=1": ["a#1=[%zz]", "b#1=[1]"],
        "k&j=2": ["k#1=[]", "j#1=[2]"],
        "a=%4&b=%&c=%%41": ["a#1=[%4]", "b#1=[%]", "c#1=[%A]"],
        "&&a=x+y%2B&&": ["a#1=[x y+]", "b#0="],
    }
    with Server(files={"f.c": FIELDS}) as s:
        for text, expect in want.items():
            q = s.get("/f?" + text)
            p = s.post("/f", text)
            check_eq(q.status, 200, "GET status for %r" % text)
            check_eq(p.status, 200, "POST status for %r" % text)
            check_eq(p.text, q.text, "POST body vs query for %r" % text)
            for line in expect:
                check(line in lines(q), "%r: %r missing in %r"
                      % (text, line, q.text))
        # Parameters of the media type are ignored, the type is caseless.
        p = s.post("/f", "=v&a=1", "Application/X-WWW-Form-URLEncoded; "
                   "charset=UTF-8")
        check_in("#1=[v]", lines(p))
        # Query fields come first.
        p = s.post("/f?a=q", "a=b")
        check_in("a#2=[q][b]", lines(p))
        check_in("first-a=q", lines(p))


def test_multipart_fields_files_and_quoted_boundary():
    with Server(files={"f.c": FIELDS}) as s:
        body = (b"preamble\r\n--a b:c\r\nContent-Disposition: form-data; "
                b"name=\"up\"; filename=\"x.txt\"\r\nContent-Type: "
                b"text/plain\r\n\r\nfile text\r\n--a b:c\r\n"
                b"Content-Disposition: form-data; name=x\r\n\r\n"
                b"line1\r\nline2\r\n--a b:c--\r\nepilogue")
        r = post_raw(s, body, 'multipart/form-data; boundary="a b:c"')
        check_eq(r.status, 200, "status")
        # A file field's value is its file name (hp_file has the content;
        # tests/e2e/stream.py).
        check_in("up#1=[x.txt]", lines(r))
        check_in("x#1=[line1\r", lines(r))


def test_malformed_multipart_is_400_before_the_handler():
    cases = {
        "no boundary": (b"--XyZ\r\n\r\n--XyZ--\r\n", "multipart/form-data"),
        "no closing delimiter": (
            b"--XyZ\r\nContent-Disposition: form-data; name=a\r\n\r\n1\r\n",
            MP),
        "header without blank line": (
            b"--XyZ\r\nContent-Disposition: form-data; name=a\r\n"
            b"--XyZ--\r\n", MP),
        "no delimiter at all": (b"just text", MP),
        "unterminated quote": (
            b"--XyZ\r\nContent-Disposition: form-data; name=\"a\r\n\r\n1"
            b"\r\n--XyZ--", MP),
    }
    with Server(files={"f.c": FIELDS}) as s:
        for what, (body, ct) in cases.items():
            r = post_raw(s, body, ct)
            check(r is not None, "%s: no answer" % what)
            check_eq(r.status, 400, "status for %s" % what)
            check_not_in("ran", r.text, "body for %s" % what)
        check_eq(s.get("/f").status, 200, "a request afterwards")


def test_field_cap_413():
    # libmicrohttpd also files each query field in its per-connection pool
    # (--max-header + 4 KiB): ~270 query fields fill the default one (431).
    with Server(files={"f.c": FIELDS}, args=["--max-header", "256k"]) as s:
        body = "&".join("f%d=1" % i for i in range(1000))
        check_eq(s.post("/f", body).status, 200, "1000 fields")
        r = s.post("/f", body + "&x=1")
        check_eq(r.status, 413, "1001 fields")
        check_not_in("ran", r.text)
        check_eq(s.get("/f?" + body).status, 200, "1000 query fields")
        check_eq(s.get("/f?" + body + "&x").status, 413,
                 "1001 query fields")
        # Query and body share the cap; empty sequences do not count.
        q = "&".join("q%d" % i for i in range(600))
        b = "&".join("b%d" % i for i in range(400))
        check_eq(s.post("/f?" + q, b + "&&&&").status, 200, "600 + 400")
        check_eq(s.post("/f?" + q, b + "&x").status, 413, "600 + 401")
        parts = "".join("--XyZ\r\nContent-Disposition: form-data; "
                        "name=p%d\r\n\r\nv\r\n" % i for i in range(1001))
        r = post_raw(s, (parts + "--XyZ--\r\n").encode(), MP)
        check_eq(r.status, 413, "1001 multipart fields")


def vm(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])  # kB
    return 0


def test_huge_field_count_body_is_cheap():
    # 2 MiB of "a&a&...": a million fields once cost ~100 MB of memory.
    with Server(files={"f.c": FIELDS}) as s:
        s.get_ok("/f")
        before = vm(s.pid(), "VmHWM")
        body = b"a&" * (1 << 20)
        t0 = time.monotonic()
        r = s.post("/f", body)
        dt = time.monotonic() - t0
        check_eq(r.status, 413, "status")
        check(dt < limit(2.0), "413 took %.2f s" % dt)
        grown = vm(s.pid(), "VmHWM") - before
        harness.note("peak RSS grew %d kB" % grown)
        check(grown < 24 * 1024, "peak RSS grew by %d kB" % grown)


def test_cookies():
    with Server(files={"f.c": FIELDS}) as s:
        r = s.get_ok("/f/cookies", headers={
            "Cookie": 'a=1; b="two words";c ;  d = 4 ;e=5=6; a=again; '
                      'Sid=exact; sid=lower'})
        d = lines(r)
        for line in ("a=1", "b=two words", "c=(null)", "d=4", "e=5=6",
                     "x=(null)", "sid=lower", "Sid=exact"):
            check(line in d, "%r missing in %r" % (line, r.text))
        # No exact match: a case-insensitive one, as before.
        r = s.get_ok("/f/cookies", headers={"Cookie": "SID=up; X=\"\""})
        check_in("sid=up", lines(r))
        check_in("x=", lines(r))
        check_in("a=(null)", lines(s.get_ok("/f/cookies")))


if __name__ == "__main__":
    sys.exit(harness.run_suite(globals(), sys.argv[1:],
                               suite_budget=SUITE_BUDGET,
                               test_timeout=TEST_TIMEOUT))
