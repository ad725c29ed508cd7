#!/usr/bin/env python3
"""hotpub end-to-end tests from a tester's round (fresh16). Each
test_fresh16_N_* is a finding, open when written (it fails on the binary
it was written against, /tmp/hotpub-b050127); test_fresh16_probe_* held.

FRESH16-1: a head with a large Cookie field (one 10 KB cookie, or a few
hundred short pairs), well under --max-header, got libmicrohttpd's own 431
and then the page's answer too: two responses, the first one's
Content-Length covering the second's head. libmicrohttpd 0.9.75 copies the
first Cookie field into its per-connection memory and adds a record a
pair; when that runs out it queues a 431 and goes on. Fixed: the edge hands
libmicrohttpd Cookie fields under another name (src/framing.h,
hp_frame_feed_edit), hotpub reads them under theirs; a head over
--max-header gets exactly one 431 from the edge, and the connection closes.

    HOTPUB_BIN=/abs/path/hotpub python3 tests/e2e/fresh16.py [NAME...]
"""

import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import Server, check, check_eq, check_in, page  # noqa: E402

TEST_TIMEOUT = 60.0
SUITE_BUDGET = 300.0
MAX_HEADER = 16384  # --max-header's default

# /c: what hotpub reads of the Cookie fields: the field (any case), its
# length, and the cookie ?n= (default c) with its length.
COOKIES = page(r"""
#include <string.h>

HP_HANDLER(http_handler)
{
    const char *n = hp_arg(req, "n");
    const char *h = hp_header(req, "Cookie");
    const char *H = hp_header(req, "COOKIE");
    const char *c = hp_cookie(req, n ? n : "c");
    hp_printf(req, "field=%zu same=%d cookie=%zu:%.20s x=%s",
              h ? strlen(h) : (size_t)0, h == H, c ? strlen(c) : (size_t)0,
              c ? c : "(none)",
              hp_header(req, "X-After") ? hp_header(req, "X-After") : "-");
    return HP_OK;
}
""")

# /s: ?set=V stores V in the session under k; otherwise prints k.
SESS = page(r"""
HP_HANDLER(http_handler)
{
    const char *v = hp_arg(req, "set");
    if (v)
        return hp_session_set(req, "k", v) == HP_OK ? HP_OK : 500;
    const char *k = hp_session_get(req, "k");
    hp_printf(req, "k=%s", k ? k : "(none)");
    return HP_OK;
}
""")


def exchange(port, data, timeout=5.0):
    """Send data, read until the server closes (or timeout). Returns
    (bytes, closed)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        try:
            s.sendall(data)
        except OSError:
            pass
        buf, closed = b"", False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            except OSError:
                closed = True
                break
            if not chunk:
                closed = True
                break
            buf += chunk
        return buf, closed
    finally:
        s.close()


def responses(buf):
    """Split raw bytes into (status, head, body) by Content-Length; what
    does not parse is left as a last ("junk", ...) entry."""
    out = []
    while buf:
        end = buf.find(b"\r\n\r\n")
        if not buf.startswith(b"HTTP/1.") or end < 0:
            out.append(("junk", buf[:200], b""))
            break
        head = buf[:end].decode("latin-1")
        clen = 0
        for line in head.split("\r\n")[1:]:
            k, _, v = line.partition(":")
            if k.strip().lower() == "content-length":
                clen = int(v.strip())
        body = buf[end + 4:end + 4 + clen]
        out.append((int(head.split(" ")[1]), head, body))
        buf = buf[end + 4 + clen:]
    return out


def one_answer(s, head, what):
    """The head (with Connection: close) gets exactly one well-framed
    response: (status, body)."""
    buf, closed = exchange(s.port, head)
    rs = responses(buf)
    check_eq(len(rs), 1, "responses to %s (%r)" %
             (what, [(r[0], r[1][:40]) for r in rs]))
    check(closed, "connection closed after %s" % what)
    return rs[0][0], rs[0][2].decode("latin-1")


def request(cookie_lines, extra=b"", path=b"/c"):
    return (b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n" +
            b"".join(b"Cookie: " + c + b"\r\n" for c in cookie_lines) +
            extra + b"Connection: close\r\n\r\n")


def test_fresh16_1_big_cookie_just_under_max_header():
    """The tester's 10200-byte cookie, and one that makes the largest head
    the edge lets through (--max-header less 64 bytes a field line, what
    libmicrohttpd's records take, docs/configuration.md): one 200 each, the
    page reads all of it."""
    with Server(files={"c.c": COOKIES}) as s:
        base = len(request([b"c="]))
        for size in (10200, MAX_HEADER - 3 * 64 - base):
            st, body = one_answer(s, request([b"c=" + b"v" * size]),
                                  "a %d-byte cookie" % size)
            check_eq(st, 200, "status for a %d-byte cookie" % size)
            check_in("field=%d same=1 cookie=%d:vvvv" % (size + 2, size),
                     body, "what the page read")
        check("Not enough memory in pool" not in s.stderr(),
              "libmicrohttpd's own 431 in the log")


def test_fresh16_1_many_small_pairs():
    """274 pairs (the tester's 1.4 KB), then 1000 and 1600 (8 and 14 KB):
    one 200 each, and the last pair is read."""
    with Server(files={"c.c": COOKIES}) as s:
        for n in (274, 1000, 1600):
            val = b"; ".join(b"a%d=b%d" % (i, i) for i in range(n // 2)) + \
                b"; " + b"; ".join(b"a%d=b" % i for i in range(n // 2, n))
            st, body = one_answer(
                s, request([val], path=b"/c?n=a%d" % (n - 1)),
                "%d pairs" % n)
            check_eq(st, 200, "status for %d pairs" % n)
            check_in("field=%d same=1 cookie=1:b x=-" % len(val),
                     body, "what the page read of %d pairs" % n)


def test_fresh16_1_cookie_and_many_fields():
    """8 KB of cookies in 500 pairs and 100 other fields, and two Cookie
    fields: one 200 each, every field still read."""
    with Server(files={"c.c": COOKIES}) as s:
        val = b"; ".join(b"p%03d=%s" % (i, b"q" * 10) for i in range(500))
        extra = b"".join(b"X-F%d: %d\r\n" % (i, i) for i in range(100))
        st, body = one_answer(
            s, request([val], extra + b"X-After: yes\r\n",
                       path=b"/c?n=p499"),
            "a Cookie and 100 fields")
        check_eq(st, 200, "status")
        check_in("cookie=10:qqqqqqqqqq x=yes", body, "what the page read")
        # two Cookie fields: hp_cookie reads both (RFC 6265 §5.4 sends
        # one, HTTP/2 gateways split it)
        st, body = one_answer(s, request([b"a=1; c=" + b"w" * 9000,
                                          b"d=2"]), "two Cookie fields")
        check_eq(st, 200, "status for two Cookie fields")
        check_in("cookie=9000:wwww", body, "the first field's c")
        st, body = one_answer(s, request([b"a=1", b"d=2"],
                                         path=b"/c?n=d"), "two small ones")
        check_in("cookie=1:2", body, "the second field's d")


def test_fresh16_1_over_max_header_one_431_and_close():
    """A Cookie field past --max-header, and the tester's command at a
    --max-header of 8 KiB: exactly one 431, the connection closed."""
    with Server(files={"c.c": COOKIES}) as s:
        st, body = one_answer(s, request([b"c=" + b"v" * MAX_HEADER]),
                              "a cookie past --max-header")
        check_eq(st, 431, "status past --max-header")
        val = b"; ".join(b"a%d=b" % i for i in range(2000))
        st, body = one_answer(s, request([val]), "2000 pairs (17 KB)")
        check_eq(st, 431, "status for 2000 pairs")
    with Server(files={"c.c": COOKIES},
                args=["--max-header", "8192"]) as s:
        st, body = one_answer(s, request([b"c=" + b"v" * 7900]),
                              "a 7900-byte cookie at --max-header 8192")
        check_eq(st, 200, "7900-byte cookie under an 8 KiB --max-header")
        st, body = one_answer(s, request([b"c=" + b"v" * 10200]),
                              "the tester's 10200-byte cookie at 8 KiB")
        check_eq(st, 431, "status past an 8 KiB --max-header")
        check("Not enough memory in pool" not in s.stderr(),
              "libmicrohttpd's own 431 in the log")


def test_fresh16_1_split_name_and_keep_alive():
    """The field name split between reads ("Cook" | "ie: ..."), then a
    second request on the same connection: both 200, both read."""
    with Server(files={"c.c": COOKIES}) as s:
        c = socket.create_connection(("127.0.0.1", s.port), timeout=5)
        try:
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            c.sendall(b"GET /c HTTP/1.1\r\nHost: x\r\nCook")
            time.sleep(0.2)
            c.sendall(b"ie: c=" + b"v" * 10200 + b"\r\n\r\n")
            time.sleep(0.3)
            c.sendall(request([b"c=" + b"z" * 12000]))
            buf = b""
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                chunk = c.recv(65536)
                if not chunk:
                    break
                buf += chunk
        finally:
            c.close()
        rs = responses(buf)
        check_eq([r[0] for r in rs], [200, 200], "statuses")
        check_in("cookie=10200:vvvv", rs[0][2].decode(), "first")
        check_in("cookie=12000:zzzz", rs[1][2].decode(), "second")


def test_fresh16_probe_internal_name_is_no_clients():
    """A client field named as the edge renames Cookie ("Cooki{") is no
    field name at all (not a token): 400, never read as a Cookie."""
    with Server(files={"c.c": COOKIES}) as s:
        st, _ = one_answer(s, b"GET /c HTTP/1.1\r\nHost: x\r\nCooki{: c=1"
                           b"\r\nConnection: close\r\n\r\n", "Cooki{")
        check_eq(st, 400, "status for a Cooki{ field")


def test_fresh16_1_session_with_big_cookies():
    """A session cookie beside 10 KB of other cookies is still read
    (hp_session_get, hp_cookie)."""
    s = Server(files={"s.c": SESS}, start=False)
    s.args += ["--db", "sqlite:" + os.path.join(s.tmp, "app.db")]
    with s:
        s.start()
        r = s.get("/s?set=hello")
        check_eq(r.status, 200, "set")
        sc = r.header("Set-Cookie") or ""
        check_in("hotpub_session=", sc, "Set-Cookie")
        sess = sc.split(";")[0].encode()
        big = b"; ".join(b"t%d=%s" % (i, b"x" * 40) for i in range(230))
        st, body = one_answer(s, request([big + b"; " + sess],
                                         path=b"/s"), "session + 10 KB")
        check_eq((st, body), (200, "k=hello"), "the session, read")


def test_fresh16_1_big_cookie_over_https():
    """Over HTTPS libmicrohttpd reads through gnutls_record_recv, which the
    edge wraps too: the 10 KB cookie gets one 200, read whole."""
    import tempfile
    from ops import client_ctx, make_cert, tls_raw
    tmp = tempfile.mkdtemp(prefix="hotpub-f16tls-")
    cert, key = make_cert(tmp, "a")
    with Server(files={"c.c": COOKIES},
                args=["--tls-cert", cert, "--tls-key", key]) as s:
        out = tls_raw(s.port, client_ctx(cert),
                      [(0, request([b"c=" + b"v" * 10200]))])
        rs = responses(out)
        check_eq([r[0] for r in rs], [200], "statuses over HTTPS")
        check_in("cookie=10200:vvvv", rs[0][2].decode(), "what was read")


def test_fresh16_1_fields_then_a_long_line():
    """Same class: 100 to 200 small fields, then one long field line (the
    head under --max-header). libmicrohttpd holds the records of the fields
    before and the long line's bytes as they come, and ran out before the
    line ended, where the edge counted: its own 431 page. Now the edge
    refuses as the line outgrows the room left: hotpub's 431, once."""
    with Server(files={"c.c": COOKIES}) as s:
        big, _ = exchange(s.port, b"GET /c HTTP/1.1\r\nHost: x\r\nX: " +
                          b"a" * 20000 + b"\r\n\r\n")
        hotpubs = responses(big)[0][2]
        for n, last in ((100, 14500), (200, 13000)):
            fields = b"".join(b"X%d: a\r\n" % i for i in range(n))
            st, body = one_answer(
                s, b"GET /c HTTP/1.1\r\nHost: x\r\n" + fields +
                b"X-Last: " + b"l" * last + b"\r\nConnection: close\r\n\r\n",
                "%d fields and a %d-byte one" % (n, last))
            check_eq(st, 431, "status")
            check_eq(body.encode("latin-1"), hotpubs,
                     "hotpub's 431 page for %d fields and a long one" % n)


def test_fresh16_1_trailer_fields_count_with_the_head():
    """Same class: libmicrohttpd keeps a chunked body's trailer fields
    beside the head's, and the edge did not count them: 300 small trailer
    fields, or a 10 KB head with a 12 KB trailer field, got libmicrohttpd's
    own 431 ("too big for the memory constraints"). Now the edge's 431, one
    response, the connection closed; a 15 KB trailer after a small head
    still passes."""
    with Server(files={"c.c": COOKIES}) as s:
        big, _ = exchange(s.port, b"GET /c HTTP/1.1\r\nHost: x\r\nX: " +
                          b"a" * 20000 + b"\r\n\r\n")
        hotpubs = responses(big)[0][2]

        def post(pad, trailer):
            return (b"POST /c HTTP/1.1\r\nHost: x\r\n"
                    b"Transfer-Encoding: chunked\r\n" +
                    (b"X-Pad: " + b"p" * pad + b"\r\n" if pad else b"") +
                    b"Connection: close\r\n\r\n1\r\nx\r\n0\r\n" +
                    trailer + b"\r\n")
        small = b"".join(b"T%d: a\r\n" % i for i in range(300))
        for what, data in (("300 trailer fields", post(0, small)),
                           ("10 KB head, 12 KB trailer",
                            post(10000, b"T: " + b"t" * 12000 + b"\r\n"))):
            st, body = one_answer(s, data, what)
            check_eq(st, 431, "status for " + what)
            check_eq(body.encode("latin-1"), hotpubs,
                     "hotpub's 431 page for " + what)
        st, body = one_answer(s, post(0, b"T: " + b"t" * 15000 + b"\r\n"),
                              "a 15 KB trailer field")
        check_eq(st, 200, "status for a 15 KB trailer field")


if __name__ == "__main__":
    sys.exit(harness.run_suite(globals(), sys.argv[1:],
                               suite_budget=SUITE_BUDGET,
                               test_timeout=TEST_TIMEOUT,
                               verbose_total=False))
