"""Raw-request conformance suite for hotpub's request edge (issue 8).

Every case sends raw bytes on a fresh connection and checks what came
back: the final status, optionally the body, how many responses were sent
(a smuggled second request in the same bytes must never be answered) and
whether the server closed the connection (read until EOF with a deadline:
"at once" means within about a second, not after an idle timeout).

    HOTPUB_BIN=$PWD/hotpub python3 tests/conformance/run.py [SUBSTRING...]
    python3 tests/conformance/run.py --against nginx [SUBSTRING...]

Prints "ok   name" or "FAIL name: why" per case, then "N passed,
N failed (T s)" with the time the cases took; exits 1 if any case failed. --against nginx runs the same
bytes against /usr/sbin/nginx (Debian's nginx 1.22) with a generated
config; bench/edge_nginx.sh prints both side by side.
"""

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))

import harness  # noqa: E402
from harness import Server, page, free_port, limit  # noqa: E402

# ---- the document root ------------------------------------------------------

ECHO = page(r'''
static void field(hp_req *req, const char *name)
{
    const char *v = hp_header(req, name);
    hp_printf(req, "%s=%s\n", name, v ? v : "(null)");
}

/* "name#count=first value" of a query or form field */
static void arg(hp_req *req, const char *name)
{
    const char *v = hp_arg(req, name);
    hp_printf(req, "%s#%u=%s\n", name, hp_arg_count(req, name),
              v ? v : "(null)");
}

HP_HANDLER(http_handler)
{
    size_t len = 0;
    const char *b = hp_body(req, &len);
    hp_printf(req, "method=%s\npath=%s\nlen=%zu\n", hp_method(req),
              hp_path(req), len);
    field(req, "Host");
    field(req, "Content-Length");
    field(req, "Transfer-Encoding");
    field(req, "X-A");
    arg(req, "a");
    arg(req, "b");
    hp_puts(req, "body=");
    if (b)
        hp_write(req, b, len);
    return HP_OK;
}
''')

HELLO_BODY = "hello\n"
HELLO = page('HP_HANDLER(http_handler)\n{\n    hp_puts(req, "hello\\n");\n'
             '    return HP_OK;\n}\n')

# A static file, its mtime set to STATIC_MTIME (2000-01-01) in both roots.
STATIC_BODY = "0123456789"
STATIC_MTIME = 946684800
FILES = {"echo.c": ECHO, "hello.c": HELLO, "static.txt": STATIC_BODY}

# What a lenient parser would answer as a second response.
SMUG = b"GET /hello?smuggled=1 HTTP/1.1\r\nHost: x\r\n\r\n"

# ---- cases ------------------------------------------------------------------


class Case:
    """One raw exchange.

    send: bytes, or a list of (delay_s, bytes) pieces (each sent after its
    delay; the reader runs meanwhile). status: the final status wanted (an
    int, or a tuple of acceptable ones, the first shown as "expected").
    close: True (the server must close, at once), False (must keep the
    connection open), None (either). responses: how many final responses
    the bytes must produce (1 for every case carrying SMUG). body: a
    substring the first final response's body must contain (checked
    against hotpub only: nginx serves "ok" for /echo). at_once: the answer
    must come within ~1 s. wait: seconds to read for an answer / EOF.
    group: extra hotpub flags and nginx directives this case needs.
    """

    def __init__(self, name, rfc, send, status, close=None, responses=1,
                 body=None, at_once=False, wait=2.0, group="default",
                 note=""):
        self.name, self.rfc, self.send = name, rfc, send
        self.status = status if isinstance(status, tuple) else (status,)
        self.close, self.responses, self.body = close, responses, body
        self.at_once, self.wait, self.group = at_once, wait, group
        self.note = note


def post(target, fields, body=b"", version=b"HTTP/1.1"):
    return (b"POST " + target + b" " + version + b"\r\n" + fields +
            b"\r\n" + body)


def get(target, fields=b"Host: x\r\n", version=b"HTTP/1.1"):
    return b"GET " + target + b" " + version + b"\r\n" + fields + b"\r\n"


CHUNKED_0 = b"0\r\n\r\n"
# More header bytes than the default --max-header (16 KiB) in one line ...
LONG_TARGET = b"/hello?" + b"a" * 20000
# ... and in a block of short fields.
BIG_BLOCK = b"".join(b"X-F%d: %s\r\n" % (i, b"v" * 480) for i in range(40))


def slow_head():
    data = get(b"/hello")
    return [(0 if i == 0 else 1.0, data[i:i + 1]) for i in range(len(data))]


def slow_body():
    head = post(b"/echo", b"Host: x\r\nContent-Length: 100000\r\n")
    return [(0, head)] + [(0.5, b"x" * 5) for _ in range(40)]


def expect_100():
    head = post(b"/echo", b"Host: x\r\nContent-Length: 5\r\n"
                b"Expect: 100-continue\r\n")
    return [(0, head), (0.5, b"hello")]


NAMELESS = (b"--XyZ\r\nContent-Type: text/plain\r\n\r\nhello\r\n"
            b"--XyZ--\r\n")
MANY_FIELDS = b"&".join([b"a"] * 1001)


def form_case(name, body, want):
    """A urlencoded POST body must parse like a query string (WHATWG
    application/x-www-form-urlencoded parsing)."""
    return Case(name, "WHATWG URL 5.1",
                post(b"/echo", b"Host: x\r\nContent-Type: application/"
                     b"x-www-form-urlencoded\r\nContent-Length: %d\r\n"
                     % len(body), body),
                200, close=False, body=want)


def ims_case(name, date, status):
    """If-Modified-Since on a file last modified 2000-01-01 (nginx runs
    with if_modified_since before, the RFC's comparison)."""
    return Case(name, "RFC 9110 13.1.3, 5.6.7",
                get(b"/static.txt", b"Host: x\r\nIf-Modified-Since: %s\r\n"
                    % date), status, close=False)


def pct(target):
    return Case("path_" + target.decode().strip("/").replace("%", "pct"),
                "RFC 3986 2.1, RFC 9110 4.2.1", get(target), 400,
                note="a decoded control character in the path")


def bad_pct(name, target):
    return Case(name, "RFC 3986 2.1", get(target), 400,
                note="a '%' not followed by two hex digits in the path "
                     "(nginx: 400)")


CASES = [
    # ---- message framing (RFC 9112 6) ----
    Case("cl_cl_differ", "RFC 9112 6.3 (5)",
         post(b"/echo", b"Host: x\r\nContent-Length: 0\r\n"
              b"Content-Length: %d\r\n" % len(SMUG), SMUG),
         400, close=True, at_once=True),
    Case("cl_list_differ", "RFC 9112 6.3 (5), RFC 9110 8.6",
         post(b"/echo", b"Host: x\r\nContent-Length: 0, %d\r\n" % len(SMUG),
              SMUG),
         400, close=True, at_once=True),
    Case("cl_negative", "RFC 9110 8.6",
         post(b"/echo", b"Host: x\r\nContent-Length: -1\r\n", SMUG),
         400, close=True, at_once=True),
    Case("cl_and_te", "RFC 9112 6.3 (3), 6.1",
         post(b"/echo", b"Host: x\r\nContent-Length: %d\r\n"
              b"Transfer-Encoding: chunked\r\n" % (len(CHUNKED_0)),
              CHUNKED_0 + SMUG),
         (400, 200), close=True, at_once=True,
         note="400, or processed as chunked and closed (issue 8)"),
    Case("te_http10", "RFC 9112 6.1",
         post(b"/echo", b"Host: x\r\nTransfer-Encoding: chunked\r\n",
              CHUNKED_0, version=b"HTTP/1.0"),
         400, close=True, at_once=True),
    Case("te_gzip", "RFC 9112 6.1, 6.3 (4)",
         post(b"/echo", b"Host: x\r\nTransfer-Encoding: gzip\r\n", SMUG),
         501, close=True, at_once=True),
    Case("te_gzip_chunked", "RFC 9112 6.1, 7",
         post(b"/echo", b"Host: x\r\nTransfer-Encoding: gzip, chunked\r\n",
              CHUNKED_0 + SMUG),
         501, close=True, at_once=True),
    Case("te_chunked_gzip", "RFC 9112 6.1, 6.3 (4)",
         post(b"/echo", b"Host: x\r\nTransfer-Encoding: chunked, gzip\r\n",
              CHUNKED_0 + SMUG),
         400, close=True, at_once=True),
    Case("te_chunked_chunked", "RFC 9112 7",
         post(b"/echo", b"Host: x\r\nTransfer-Encoding: chunked, chunked\r\n",
              CHUNKED_0 + SMUG),
         400, close=True, at_once=True),
    # Values libmicrohttpd would read differently from a lenient reader
    # (it knows only the first field, and exactly "chunked").
    *[Case("te_" + name, "RFC 9112 6.1, 6.3",
           post(b"/echo", b"Host: x\r\n" + fields,
                b"3\r\nabc\r\n" + CHUNKED_0 + SMUG),
           400, close=True, at_once=True,
           note="not exactly one Transfer-Encoding: chunked")
      for name, fields in (
          ("trailing_space", b"Transfer-Encoding: chunked \r\n"),
          ("trailing_tab", b"Transfer-Encoding: chunked\t\r\n"),
          ("leading_comma", b"Transfer-Encoding: ,chunked\r\n"),
          ("trailing_comma", b"Transfer-Encoding: chunked,\r\n"),
          ("parameter", b"Transfer-Encoding: chunked;x=1\r\n"),
          ("empty_then_chunked",
           b"Transfer-Encoding: \r\nTransfer-Encoding: chunked\r\n"))],
    Case("cl_trailing_space", "RFC 9112 6.3, RFC 9110 8.6",
         post(b"/echo", b"Host: x\r\nContent-Length: 3 \r\n", b"abc" + SMUG),
         400, close=True, at_once=True,
         note="libmicrohttpd refuses it with a malformed answer of its own"),
    Case("chunk_bare_lf", "RFC 9112 7.1",
         post(b"/echo", b"Host: x\r\nTransfer-Encoding: chunked\r\n",
              b"3\nabc\r\n" + CHUNKED_0 + SMUG),
         400, close=True, at_once=True, note="chunk framing takes CRLF only"),
    Case("ws_before_colon", "RFC 9112 5.1",
         post(b"/echo", b"Host: x\r\nContent-Length : %d\r\n" % len(SMUG),
              SMUG),
         400, close=True, at_once=True),
    Case("obs_fold", "RFC 9112 5.2",
         get(b"/hello", b"Host: x\r\nX-A: a\r\n b\r\n") + SMUG,
         400, close=True, at_once=True),
    # FRESH16-6c: the value a page reads excludes the whitespace around it
    # (libmicrohttpd keeps the trailing; an X-CSRF-Token sent with it was
    # refused)
    Case("field_value_ows_excluded", "RFC 9110 5.5, RFC 9112 5",
         get(b"/echo", b"Host: x\r\nX-A: \t a b \t \r\n"), 200,
         body="X-A=a b\n"),
    Case("host_twice", "RFC 9112 3.2",
         get(b"/hello", b"Host: a\r\nHost: b\r\n") + SMUG,
         400, close=True, at_once=True),
    # A singleton field hotpub reads, twice: libmicrohttpd hands over the
    # first, another reader the last (a JSON body parsed behind a form's
    # Content-Type); refused whatever the case and values.
    Case("content_type_twice", "RFC 9110 5.3, 8.3",
         post(b"/echo", b"Host: x\r\nContent-Type: application/x-www-form-"
              b"urlencoded\r\ncontent-type: application/json\r\n"
              b"Content-Length: 7\r\n", b'{"a":1}' + SMUG),
         400, close=True, at_once=True),
    *[Case("singleton_twice_" + name.decode().lower(), "RFC 9110 5.3",
           get(b"/hello", b"Host: x\r\n%s: %s\r\nX-A: b\r\n%s: %s\r\n"
               % (name, value, name.upper(), value)) + SMUG,
           400, close=True, at_once=True)
      for name, value in (
          (b"Content-Type", b"text/plain"),
          (b"Authorization", b"Basic YTpi"),
          (b"Range", b"bytes=0-1"),
          (b"If-Range", b'"x"'),
          (b"If-Modified-Since", b"Sat, 01 Jan 2000 00:00:00 GMT"),
          (b"If-Unmodified-Since", b"Sat, 01 Jan 2000 00:00:00 GMT"),
          (b"Origin", b"http://x"),
          (b"Referer", b"http://x/"),
          (b"Sec-Fetch-Site", b"same-origin"),
          (b"X-CSRF-Token", b"t"))],
    Case("list_fields_and_cookie_repeat", "RFC 9110 5.3, RFC 6265 5.4",
         get(b"/echo", b"Host: x\r\nIf-None-Match: \"a\"\r\n"
             b"If-None-Match: \"b\"\r\nAccept: text/html\r\n"
             b"Accept: */*\r\nCookie: a=1\r\nCookie: b=2\r\n"
             b"Cookie: c=3\r\nX-A: 1\r\nX-A: 2\r\n"),
         200, close=False, body="X-A=1"),
    Case("host_space", "RFC 9112 3.2, RFC 3986 3.2.2",
         get(b"/hello", b"Host: a b\r\n") + SMUG, 400, close=True,
         at_once=True),
    Case("host_slash", "RFC 9112 3.2, RFC 3986 3.2.2",
         get(b"/hello", b"Host: a/b\r\n") + SMUG, 400, close=True,
         at_once=True),
    Case("host_open_bracket", "RFC 9112 3.2, RFC 3986 3.2.2",
         get(b"/hello", b"Host: [::1\r\n") + SMUG, 400, close=True,
         at_once=True),
    Case("host_bad_port", "RFC 9112 3.2, RFC 3986 3.2.3",
         get(b"/hello", b"Host: a:port\r\n") + SMUG, 400, close=True,
         at_once=True),
    Case("host_empty", "RFC 9112 3.2",
         get(b"/hello", b"Host:\r\n") + SMUG, 400, close=True,
         at_once=True, note="issue 8: an invalid Host value"),
    Case("host_missing", "RFC 9112 3.2",
         get(b"/hello", b"") + SMUG, 400, close=True, at_once=True),
    Case("bare_cr_in_value", "RFC 9112 2.2, RFC 9110 5.5",
         get(b"/hello", b"Host: x\r\nX-A: a\rb\r\n") + SMUG, 400,
         close=True, at_once=True),
    Case("nul_in_value", "RFC 9110 5.5",
         get(b"/hello", b"Host: x\r\nX-A: a\x00b\r\n") + SMUG, 400,
         close=True, at_once=True),
    Case("chunk_size_overflow", "RFC 9112 7.1",
         post(b"/echo", b"Host: x\r\nTransfer-Encoding: chunked\r\n",
              b"10000000000000000000001\r\nA\r\n0\r\n\r\n" + SMUG),
         400, close=True, at_once=True),
    Case("chunk_size_junk", "RFC 9112 7.1",
         post(b"/echo", b"Host: x\r\nTransfer-Encoding: chunked\r\n",
              b"1g\r\nA\r\n0\r\n\r\n" + SMUG),
         400, close=True, at_once=True),
    # ---- request target and head size ----
    Case("version_unsupported", "RFC 9110 15.6.6, RFC 9112 2.3",
         get(b"/hello", version=b"HTTP/3.0") + SMUG, 505, close=True,
         at_once=True),
    Case("absolute_form", "RFC 9112 3.2.2",
         get(b"http://example.test/hello", b"Host: example.test\r\n"),
         200, close=False, body=HELLO_BODY),
    Case("absolute_form_authority_is_host", "RFC 9112 3.2.2",
         get(b"HTTP://target.test:8080/echo?a=1", b"Host: other.test\r\n"),
         200, close=False, body="path=/echo\nlen=0\nHost=target.test:8080\n",
         note="the target's authority stands for Host; the scheme is "
              "case-insensitive"),
    Case("request_line_too_long", "RFC 9110 15.5.15",
         get(LONG_TARGET), 414, close=True, at_once=True,
         note="20 KB request line, --max-header 16 KiB"),
    Case("header_block_too_big", "RFC 6585 5",
         get(b"/hello", b"Host: x\r\n" + BIG_BLOCK), 431, close=True,
         at_once=True, note="19 KB of 500-byte fields, --max-header 16 KiB"),
    Case("target_not_path_or_uri", "RFC 9112 3.2", get(b"hello") + SMUG,
         400, close=True, at_once=True),
    Case("target_fragment", "RFC 9112 3.2, RFC 9110 4.1",
         get(b"/hello#frag") + SMUG, 400, close=True, at_once=True),
    Case("options_asterisk", "RFC 9110 9.3.7, RFC 9112 3.2.4",
         b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", 200, close=False,
         body="", note="the server's own options: an Allow field, no content"),
    Case("asterisk_form_not_options", "RFC 9112 3.2.4",
         get(b"*"), 400, close=True, at_once=True,
         note="the asterisk-form is only for OPTIONS"),
    Case("asterisk_form_lower_case_options", "RFC 9110 9.1, RFC 9112 3.2.4",
         b"options * HTTP/1.1\r\nHost: x\r\n\r\n", 400, close=True,
         at_once=True, note="method names are case-sensitive"),
    # ---- methods (nginx's rule: A-Z, '_' and '-'; TRACE, CONNECT 405) ----
    *[Case("method_" + name, "RFC 9110 9.1, as nginx",
           method + b" /hello HTTP/1.1\r\nHost: x\r\n\r\n" + SMUG, 400,
           close=True, at_once=True,
           note="a method byte other than A-Z, '_' or '-' (nginx: invalid "
                "method)")
      for name, method in (("lower_case", b"get"), ("mixed_case", b"Get"),
                           ("digit", b"G3T"), ("dot", b"GE.T"))],
    Case("method_trace", "RFC 9110 9.3.8, 15.5.6",
         b"TRACE /hello HTTP/1.1\r\nHost: x\r\n\r\n" + SMUG, 405,
         close=True, at_once=True, body="405 Method Not Allowed",
         note="TRACE echoes the request (cross-site tracing): refused by "
              "the edge with Allow, connection closed (as nginx)"),
    Case("method_trace_absolute_form", "RFC 9110 9.3.8, RFC 9112 3.2.2",
         b"TRACE http://x/hello HTTP/1.1\r\nHost: x\r\n\r\n" + SMUG, 405,
         close=True, at_once=True),
    Case("method_trace_with_body", "RFC 9110 9.3.8",
         b"TRACE /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
         % len(SMUG) + SMUG, 405, close=True, at_once=True),
    Case("method_connect", "RFC 9110 9.3.6, 15.5.6",
         b"CONNECT /hello HTTP/1.1\r\nHost: x\r\n\r\n" + SMUG, 405,
         close=True, at_once=True, body="405 Method Not Allowed",
         note="hotpub is not a proxy (nginx >= 1.21.1 answers 405 too)"),
    Case("method_connect_authority_form", "RFC 9112 3.2.3",
         b"CONNECT example.test:443 HTTP/1.1\r\nHost: example.test:443"
         b"\r\n\r\n" + SMUG, 400, close=True, at_once=True,
         note="the authority-form is no target hotpub (or nginx) takes"),
    Case("method_trace_after_good_request", "RFC 9112 9.3.2",
         get(b"/hello") + b"TRACE /hello HTTP/1.1\r\nHost: x\r\n\r\n" +
         SMUG, (200, 405), close=True, responses=2, body=HELLO_BODY,
         note="the request before is served, nothing after the TRACE"),
    Case("method_unknown_reaches_page", "RFC 9110 9.1",
         b"FOO /echo HTTP/1.1\r\nHost: x\r\n\r\n" + get(b"/hello"), 200,
         close=False, responses=2, body="method=FOO\n",
         note="an unknown method in upper case is the page's to answer"),
    Case("method_propfind_reaches_page", "RFC 4918 9.1",
         b"PROPFIND /echo HTTP/1.1\r\nHost: x\r\nDepth: 0\r\n\r\n", 200,
         close=False, body="method=PROPFIND\n",
         note="WebDAV methods are the page's to answer"),
    Case("absolute_form_empty_host", "RFC 9110 4.2.1",
         get(b"http:///hello"), 400, close=True, at_once=True),
    Case("absolute_form_bad_port", "RFC 3986 3.2.3",
         get(b"http://x:abc/hello"), 400, close=True, at_once=True),
    Case("query_fields_over_memory", "hotpub --max-header, --max-fields",
         get(b"/echo?" + b"&".join(b"a%d=%d" % (i, i) for i in range(300))),
         413, close=True, at_once=True,
         note="more query pieces than libmicrohttpd has memory for (it "
              "would hang); 300 at the default --max-header"),
    pct(b"/hello%00.c"),
    pct(b"/echo%00/x"),
    pct(b"/hello%01"),
    pct(b"/hello%0a"),
    pct(b"/hello%7f"),
    bad_pct("path_pct_not_hex", b"/%zz"),
    bad_pct("path_pct_one_digit", b"/hello%4"),
    bad_pct("path_pct_at_end", b"/hello%"),
    bad_pct("path_pct_cut_by_query", b"/echo%2?x=1"),
    Case("query_pct_malformed_passes", "RFC 3986 2.1, 3.4",
         get(b"/echo?x=%zz&y=%4&z=%"), 200, close=False,
         note="the query passes through untouched (as nginx); the page's "
              "decoder reads it"),
    # ---- forms (issue 8: one decoder; no client input crashes) ----
    Case("multipart_nameless_part", "RFC 7578 4.2",
         post(b"/echo", b"Host: x\r\nContent-Type: multipart/form-data; "
              b"boundary=XyZ\r\nContent-Length: %d\r\n" % len(NAMELESS),
              NAMELESS),
         200, close=False, body="len=0\n",
         note="a part without name= is skipped; it crashed the server. "
              "A multipart body is decoded as it arrives and not kept: "
              "hp_body is empty (as PHP's php://input)"),
    form_case("form_empty_name", b"=v&a=1&b=2", "a#1=1\nb#1=2\n"),
    form_case("form_bad_escape", b"a=%zz&b=2", "a#1=%zz\nb#1=2\n"),
    form_case("form_key_without_eq", b"a&b=2", "a#1=\nb#1=2\n"),
    form_case("form_key_without_eq_last", b"b=2&a", "a#1=\nb#1=2\n"),
    form_case("form_incomplete_escape", b"a=%4&b=2", "a#1=%4\nb#1=2\n"),
    form_case("form_bad_escape_first", b"a=%zz%41&b=%2", "a#1=%zzA\nb#1=%2\n"),
    Case("form_too_many_fields", "hotpub --max-fields (default 1000)",
         post(b"/echo", b"Host: x\r\nContent-Type: application/"
              b"x-www-form-urlencoded\r\nContent-Length: %d\r\n"
              % len(MANY_FIELDS), MANY_FIELDS),
         (413, 400), close=None, note="1001 fields `a&a&...`"),
    # ---- static files (RFC 9110 13, 14) ----
    Case("range_single", "RFC 9110 14.2, 15.3.7",
         get(b"/static.txt", b"Host: x\r\nRange: bytes=2-5\r\n"),
         206, close=False, body="2345"),
    Case("range_unsatisfiable", "RFC 9110 14.2, 15.5.17",
         get(b"/static.txt", b"Host: x\r\nRange: bytes=100-200\r\n"),
         416, close=None),
    Case("if_none_match_star", "RFC 9110 13.1.2",
         get(b"/static.txt", b"Host: x\r\nIf-None-Match: *\r\n"),
         304, close=False),
    ims_case("ims_imf_fixdate", b"Sat, 01 Jan 2005 00:00:00 GMT", 304),
    ims_case("ims_rfc850", b"Saturday, 01-Jan-05 00:00:00 GMT", 304),
    ims_case("ims_asctime", b"Sat Jan  1 00:00:00 2005", 304),
    ims_case("ims_future_ignored", b"Thu, 01 Jan 2099 00:00:00 GMT", 200),
    ims_case("ims_trailing_garbage", b"Sat, 01 Jan 2005 00:00:00 GMT x", 200),
    # ---- slow clients ----
    Case("slow_head", "RFC 9110 15.5.9",
         slow_head(), 408, close=True, wait=6.0, group="slow",
         note="1 byte/s; --header-timeout 2 (nginx client_header_timeout 2s)"),
    Case("slow_body", "RFC 9110 15.5.9",
         slow_body(), 408, close=True, wait=8.0, group="slow",
         note="10 B/s; --body-timeout 2 --body-min-rate 500 "
              "(nginx client_body_timeout 2s)"),
    # ---- good requests that must still work ----
    Case("pipelined_two", "RFC 9112 9.3.2",
         get(b"/hello") + get(b"/echo"), 200, close=False, responses=2,
         body=HELLO_BODY),
    Case("chunked_with_trailer", "RFC 9112 7.1.2",
         post(b"/echo", b"Host: x\r\nTransfer-Encoding: chunked\r\n",
              b"5\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\n"),
         200, close=False, body="len=5\n"),
    Case("bare_lf", "RFC 9112 2.2",
         b"GET /hello HTTP/1.1\nHost: x\n\n", 200, close=False,
         body=HELLO_BODY),
    Case("leading_empty_line", "RFC 9112 2.2",
         b"\r\n" + get(b"/hello"), 200, close=False, body=HELLO_BODY),
    Case("te_chunked_mixed_case", "RFC 9112 7",
         post(b"/echo", b"Host: x\r\nTransfer-Encoding: Chunked\r\n",
              b"3\r\nabc\r\n0\r\n\r\n"),
         200, close=False, body="len=3\n"),
    Case("expect_100_continue", "RFC 9110 10.1.1",
         expect_100(), 200, close=False, body="len=5\n"),
]

GROUPS = {
    "default": {"hotpub": [], "nginx": ""},
    "slow": {"hotpub": ["--header-timeout", "2", "--body-timeout", "2",
                        "--body-min-rate", "500"],
             "nginx": "client_header_timeout 2s; client_body_timeout 2s;"},
}

# ---- talking to a server ------------------------------------------------------


class Exchange:
    """What one connection saw: final responses [(status, body)], interim
    (1xx) statuses, whether EOF (or a reset) came, seconds to the first
    byte, and the raw bytes."""

    def __init__(self):
        self.finals, self.interim = [], []
        self.closed, self.first_byte, self.raw = False, None, b""
        self.complete = True


def parse_stream(buf, closed):
    """Split buf into responses. Returns (finals, interim, complete):
    complete is False when the last response is cut off."""
    finals, interim = [], []
    while buf:
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            return finals, interim, False
        lines = buf[:end].split(b"\r\n")
        try:
            status = int(lines[0].split(b" ", 2)[1])
        except (IndexError, ValueError):
            return finals, interim, False
        fields = {}
        for line in lines[1:]:
            k, _, v = line.partition(b":")
            fields[k.strip().lower()] = v.strip()
        rest = buf[end + 4:]
        if 100 <= status < 200:
            interim.append(status)
            buf = rest
            continue
        if b"content-length" in fields:
            n = int(fields[b"content-length"])
            if len(rest) < n:
                return finals, interim, False
            finals.append((status, rest[:n]))
            buf = rest[n:]
        elif fields.get(b"transfer-encoding", b"").lower() == b"chunked":
            body, used = dechunk(rest)
            if used is None:
                return finals, interim, False
            finals.append((status, body))
            buf = rest[used:]
        elif status in (204, 304):
            finals.append((status, b""))
            buf = rest
        else:  # delimited by the close
            finals.append((status, rest))
            return finals, interim, closed
    return finals, interim, True


def dechunk(data):
    body, pos = b"", 0
    while True:
        eol = data.find(b"\r\n", pos)
        if eol < 0:
            return body, None
        size = int(data[pos:eol].split(b";")[0], 16)
        pos = eol + 2
        if size == 0:
            end = data.find(b"\r\n\r\n", pos - 2)
            return (body, end + 4) if end >= 0 else (body, None)
        if len(data) < pos + size + 2:
            return body, None
        body += data[pos:pos + size]
        pos += size + 2


def exchange(port, case):
    """Send case.send on a new connection; read until EOF, or (for a
    connection that may stay open) until the wanted responses arrived and
    0.5 s more passed, or until case.wait seconds passed."""
    pieces = case.send if isinstance(case.send, list) else [(0, case.send)]
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    ex, stop = Exchange(), threading.Event()

    def sender():
        for delay, data in pieces:
            if stop.wait(delay):
                return
            try:
                s.sendall(data)
            except OSError:
                return

    t0 = time.monotonic()
    th = threading.Thread(target=sender, daemon=True)
    th.start()
    deadline = t0 + limit(case.wait)
    done_at = None
    s.settimeout(0.05)
    try:
        while time.monotonic() < (done_at or deadline):
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                chunk = None
            except OSError:  # a reset counts as closed
                ex.closed = True
                break
            if chunk == b"":
                ex.closed = True
                break
            if chunk:
                if ex.first_byte is None:
                    ex.first_byte = time.monotonic() - t0
                ex.raw += chunk
                finals, _, complete = parse_stream(ex.raw, False)
                if (case.close is not True and complete and
                        len(finals) >= case.responses and done_at is None):
                    done_at = min(deadline, time.monotonic() + 0.5)
    finally:
        stop.set()
        s.close()
    ex.finals, ex.interim, ex.complete = parse_stream(ex.raw, ex.closed)
    return ex


def judge(case, ex, target):
    """None if ex is the right answer to case, else why not."""
    if not ex.finals:
        return "no answer within %.1f s (%s)" % (
            limit(case.wait), "closed" if ex.closed else "still open")
    status, body = ex.finals[0]
    if status not in case.status:
        return "status %d, want %s (body %s)" % (
            status, "/".join(map(str, case.status)),
            oneline(body, 60))
    if len(ex.finals) != case.responses:
        return "%d responses, want %d (statuses %s)" % (
            len(ex.finals), case.responses, [f[0] for f in ex.finals])
    lines = len(re.findall(rb"(?:^|\r?\n)HTTP/1\.[01] [0-9]{3} ", ex.raw))
    if lines - len(ex.interim) > case.responses:
        return ("%d status lines, want %d (a smuggled request answered, or "
                "a head sent twice): %s" % (lines - len(ex.interim),
                                            case.responses,
                                            oneline(ex.raw, 100)))
    for st, _ in ex.finals[1:]:
        if st not in case.status:
            return "later response status %d" % st
    if case.close is True and not ex.closed:
        return "connection not closed within %.1f s" % limit(case.wait)
    if case.close is False and ex.closed:
        return "connection closed, want it kept open"
    if case.at_once and ex.first_byte > limit(1.0):
        return "answered after %.1f s, want at once" % ex.first_byte
    if case.body and target == "hotpub" and \
            case.body.encode() not in body:
        return "body lacks %r: %s" % (case.body, oneline(body, 120))
    return None


def oneline(b, n):
    """b shortened to n characters, on one line."""
    return repr(b[:n]) + ("..." if len(b) > n else "")


def describe(ex):
    """'400 closed' / '200 open' / '- closed' for the table."""
    st = "/".join(str(f[0]) for f in ex.finals) or "-"
    return "%s %s" % (st, "closed" if ex.closed else "open")


# ---- the servers --------------------------------------------------------------


class Nginx:
    """nginx 1.22 from Debian as a foreground single process on a free
    loopback port, root = a temp dir with `hello`; /echo is proxied to a
    second server block answering "ok" so the request body is read in
    full (client_body_timeout applies) before the answer."""

    BIN = "/usr/sbin/nginx"

    def __init__(self, directives=""):
        self.tmp = tempfile.mkdtemp(prefix="hotpub-nginx-")
        self.port, self.up = free_port(), free_port()
        os.makedirs(os.path.join(self.tmp, "root"))
        os.makedirs(os.path.join(self.tmp, "logs"))
        with open(os.path.join(self.tmp, "root", "hello"), "w") as f:
            f.write(HELLO_BODY)
        st = os.path.join(self.tmp, "root", "static.txt")
        with open(st, "w") as f:
            f.write(STATIC_BODY)
        os.utime(st, (STATIC_MTIME, STATIC_MTIME))
        conf = os.path.join(self.tmp, "nginx.conf")
        t = self.tmp
        with open(conf, "w") as f:
            f.write("""daemon off; master_process off; user root root;
error_log %(t)s/logs/error.log info; pid %(t)s/nginx.pid;
events { worker_connections 256; }
http {
  access_log %(t)s/logs/access.log;
  client_body_temp_path %(t)s/body; proxy_temp_path %(t)s/proxy;
  fastcgi_temp_path %(t)s/fcgi; uwsgi_temp_path %(t)s/uwsgi;
  scgi_temp_path %(t)s/scgi;
  default_type text/plain; if_modified_since before;
  server {
    listen 127.0.0.1:%(port)d; root %(t)s/root; %(dir)s
    location /echo { proxy_pass http://127.0.0.1:%(up)d; }
  }
  server { listen 127.0.0.1:%(up)d; location / { return 200 "ok\\n"; } }
}
""" % {"t": t, "port": self.port, "up": self.up, "dir": directives})
        self.proc = subprocess.Popen(
            [self.BIN, "-p", t, "-e", t + "/logs/error.log", "-c", conf],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE)
        ok = harness.wait_until(lambda: self._accepts(), 10)
        if not ok:
            self.stop()
            raise RuntimeError("nginx did not start: %s"
                               % self.proc.stderr.read().decode()[:500])

    def _accepts(self):
        if self.proc.poll() is not None:
            raise RuntimeError("nginx exited")
        socket.create_connection(("127.0.0.1", self.port), 0.5).close()
        return True

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        shutil.rmtree(self.tmp, ignore_errors=True)


def start(target, group):
    """(port, stop function, alive function) of a server for target
    running group's settings, or raise with why it could not start."""
    if target == "nginx":
        n = Nginx(GROUPS[group]["nginx"])
        return n.port, n.stop, lambda: n.proc.poll() is None
    s = Server(files=FILES, args=GROUPS[group]["hotpub"], check_exit=False,
               start=False)
    os.utime(s.path("static.txt"), (STATIC_MTIME, STATIC_MTIME))
    s.start()
    # Compile both pages before the timed cases.
    s.get("/hello")
    s.get("/echo")

    def stop():
        s.stop(check=False)
        shutil.rmtree(s.tmp, ignore_errors=True)
    return s.port, stop, s.alive


def run_cases(target, cases):
    """[(case, Exchange or None, failure text or None)] for target."""
    out = []
    for group in GROUPS:
        todo = [c for c in cases if c.group == group]
        if not todo:
            continue
        server = None
        for c in todo:
            if server is None:
                try:
                    server = start(target, group)
                except Exception as e:  # noqa: BLE001 - reported per case
                    out.append((c, None, "server did not start: %s"
                                % str(e).replace("\n", " ")[:200]))
                    continue
            out.append(run_case(server, c, target))
            if not server[2]():  # crashed: the next case gets a new one
                server[1]()
                server = None
        if server is not None:
            server[1]()
    return out


def run_case(server, case, target):
    """(case, Exchange or None, failure text or None) on a running server;
    a server that is gone afterwards fails the case, whatever it sent."""
    port, _, alive = server
    try:
        ex = exchange(port, case)
    except OSError as e:
        return case, None, "cannot connect: %s" % e
    if ex.closed:  # a crash closes the connection: give it time to show
        harness.wait_until(lambda: not alive(), 0.2)
    if not alive():
        return case, ex, "the server died (%s)" % describe(ex)
    return case, ex, judge(case, ex, target)


def select(argv):
    pats = [a for a in argv if not a.startswith("-")]
    return [c for c in CASES if not pats or any(p in c.name for p in pats)]


def main(argv):
    target = "hotpub"
    if "--against" in argv:
        i = argv.index("--against")
        target = argv[i + 1]
        argv = argv[:i] + argv[i + 2:]
    if target == "hotpub" and harness.hotpub_bin() is None:
        print("FAIL setup: HOTPUB_BIN=%r is not an executable file"
              % os.environ.get("HOTPUB_BIN"))
        print("0 passed, 1 failed")
        return 1
    passed = failed = 0
    t_all = time.monotonic()
    for case, ex, err in run_cases(target, select(argv)):
        if err is None:
            passed += 1
            print("ok   %s" % case.name, flush=True)
        else:
            failed += 1
            print("FAIL %s: %s" % (case.name, err), flush=True)
    print("%d passed, %d failed (%.1f s)"
          % (passed, failed, time.monotonic() - t_all), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
