#!/usr/bin/env python3
"""hotpub end-to-end tests of streamed responses, file downloads and file
uploads (issue 12; docs/pages.md "Streaming", "Sending a file", "Uploads"):
hp_flush, hp_sse, hp_send_file, hp_file / hp_file_n / hp_file_count, the
memory they cost (VmHWM of the server process), a client that goes away, a
commit that fails after the response was committed, --max-body (413, with
nothing left on disk), --max-streams (503), and a client that goes away
during a request body (FIN, RST or half-close, over HTTP and HTTPS: its
files, descriptors and connection released within a second).

    HOTPUB_BIN=/abs/path/hotpub python3 tests/e2e/stream.py [NAME-SUBSTRING...]
"""

import hashlib
import http.client
import os
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import (Server, check, check_eq, check_in,  # noqa: E402
                     limit, page, wait_until)

TEST_TIMEOUT = 90.0
SUITE_BUDGET = 600.0

PIECE = 64 * 1024


def vm(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])  # kB
    return 0


def piece_bytes(i):
    """The i-th 64 KiB piece STREAM writes: its index repeated."""
    return (b"%07d\n" % i) * (PIECE // 8)


STREAM = page(r'''
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ?n=PIECES of 64 KiB ("%07d\n" repeated); ?sleep=MS after the first
 * flush; ?mark=PATH: write how the loop ended there. */
HP_HANDLER(http_handler)
{
    const char *a = hp_arg(req, "n"), *s = hp_arg(req, "sleep");
    const char *mark = hp_arg(req, "mark");
    long n = a ? atol(a) : 1, i, ms = s ? atol(s) : 0;
    static __thread char buf[65536 + 1]; /* snprintf's last NUL */
    int r = 0;
    hp_set_header(req, "Content-Type", "application/octet-stream");
    for (i = 0; i < n; i++) {
        for (int k = 0; k < 65536; k += 8)
            snprintf(buf + k, 9, "%07ld\n", i);
        hp_write(req, buf, 65536);
        if ((r = hp_flush(req)) < 0)
            break;
        if (i == 0 && ms)
            usleep((useconds_t)ms * 1000);
    }
    if (mark) {
        FILE *f = fopen(mark, "w");
        if (f) {
            /* The request's fields outlive its connection. */
            const char *host = hp_header(req, "Host");
            fprintf(f, "%s %ld %s %s\n", r < 0 ? "gone" : "done", i,
                    host ? host : "-", hp_method(req));
            fclose(f);
        }
    }
    return HP_OK;
}

HP_HANDLER(hello)
{
    hp_puts(req, "first;");
    hp_flush(req);
    hp_puts(req, "second");
    return HP_OK;
}
''')

COMMIT_FAILS = page(r'''
HP_HOOK(commit)
{
    return 500;
}

HP_HANDLER(http_handler)
{
    hp_puts(req, "committed already;");
    hp_flush(req);
    hp_puts(req, "never sent");
    return HP_OK;
}
''')

SSE = page(r'''
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

HP_HANDLER(http_handler)
{
    static const char *names[] = {"one", "two", "three"};
    for (int i = 0; i < 3; i++) {
        char data[32];
        snprintf(data, sizeof data, "event %d", i + 1);
        if (hp_sse(req, names[i], data) < 0)
            return HP_OK;
        if (i < 2)
            usleep(500000);
    }
    return HP_OK;
}

HP_HANDLER(lines)
{
    hp_sse(req, NULL, "a\nb\r\nc\rd");
    hp_sse(req, "x", "");
    return HP_OK;
}

/* One event, then silence for longer than --handler-timeout. */
HP_HANDLER(silent)
{
    hp_sse(req, "first", "1");
    sleep(3);
    hp_sse(req, "late", "2");
    return HP_OK;
}

/* Every 50 ms until the client is gone; then writes ?mark. */
HP_HANDLER(forever)
{
    const char *mark = hp_arg(req, "mark");
    long i = 0;
    while (hp_sse(req, "tick", "t") == 0 && i < 2000) {
        i++;
        usleep(50000);
    }
    FILE *f = mark ? fopen(mark, "w") : NULL;
    if (f) {
        fprintf(f, "%s %ld\n", i < 2000 ? "gone" : "timeout", i);
        fclose(f);
    }
    return HP_OK;
}
''')

SEND = page(r'''
#include <errno.h>

HP_HANDLER(http_handler)
{
    const char *p = hp_arg(req, "p");
    hp_puts(req, "this body is not sent");
    if (hp_send_file(req, p) < 0)
        return errno == ENOENT ? 404 : 500;
    hp_set_header(req, "Content-Disposition", "attachment");
    return HP_OK;
}
''')

# Describes each file of field "f" in response headers, sends the first
# one back (hp_send_file on its temporary file); ?keep=PATH renames it.
UPLOAD = page(r'''
#include <stdio.h>
#include <stdlib.h>

HP_HANDLER(http_handler)
{
    unsigned n = hp_file_count(req, "f");
    const char *keep = hp_arg(req, "keep");
    hp_set_header(req, "X-Count", hp_sprintf(req, "%u", n));
    hp_set_header(req, "X-Args", hp_sprintf(req, "%u", hp_arg_count(req, "f")));
    const char *a = hp_arg(req, "f"), *t = hp_arg(req, "t");
    hp_set_header(req, "X-Arg", a ? a : "(null)");
    hp_set_header(req, "X-T", t ? t : "(null)");
    for (unsigned i = 0; i < n; i++) {
        const struct hp_file *f = hp_file_n(req, "f", i);
        hp_set_header(req, hp_sprintf(req, "X-File-%u", i),
                      hp_sprintf(req, "%s|%s|%llu", f->filename,
                                 f->content_type,
                                 (unsigned long long)f->size));
    }
    const struct hp_file *f = hp_file(req, "f");
    if (!f)
        return HP_OK;
    hp_set_header(req, "X-Path", f->path);
    if (keep)
        return rename(f->path, keep) == 0 ? HP_OK : 500;
    if (hp_arg(req, "echo"))
        hp_send_file(req, f->path);
    return HP_OK;
}
''')


def mp_body(parts, boundary=b"XyZzY"):
    """parts: (name or None, filename or None, content type, bytes)."""
    out = b""
    for name, fname, ctype, data in parts:
        out += b"--" + boundary + b"\r\n"
        disp = b"Content-Disposition: form-data"
        if name is not None:
            disp += b'; name="' + name + b'"'
        if fname is not None:
            disp += b'; filename="' + fname + b'"'
        out += disp + b"\r\n"
        if ctype:
            out += b"Content-Type: " + ctype + b"\r\n"
        out += b"\r\n" + data + b"\r\n"
    return out + b"--" + boundary + b"--\r\n"


MP = "multipart/form-data; boundary=XyZzY"


def upload_dir(s):
    d = os.path.join(s.tmp, "uploads")
    os.makedirs(d, exist_ok=True)
    return d


def up_server(files, extra=()):
    s = Server(files=files, start=False)
    s.args = ["--upload-dir", upload_dir(s)] + list(extra)
    s.start()
    return s


def warm(s, path):
    """First request compiles the page (its memory is not the stream's)."""
    s.get(path)


# ---- hp_flush ----------------------------------------------------------------


def test_flush_first_byte_before_handler_returns():
    with Server(files={"s.c": STREAM}) as s:
        warm(s, "/s?n=1")
        sock = socket.create_connection(("127.0.0.1", s.port), timeout=10)
        t0 = time.monotonic()
        sock.sendall(b"GET /s?n=2&sleep=1500 HTTP/1.1\r\nHost: x\r\n\r\n")
        buf = b""
        while b"0000000\n" not in buf:
            chunk = sock.recv(65536)
            check(chunk, "connection closed before the first piece")
            buf += chunk
        first = time.monotonic() - t0
        while not buf.endswith(b"\r\n0\r\n\r\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            buf += chunk
        total = time.monotonic() - t0
        sock.close()
        harness.note("first piece after %.3f s, all after %.3f s"
                     % (first, total))
        check(first < limit(1.0), "first piece took %.2f s" % first)
        check(total >= 1.5, "whole response after %.2f s" % total)
        check_in(b"Transfer-Encoding: chunked", buf, "head")
        check(buf.endswith(b"\r\n0\r\n\r\n"), "chunked body terminated")
        # A second flush in a short page, HTTP/1.0: close-delimited.
        r = s.raw(b"GET /s/hello HTTP/1.0\r\n\r\n", read_all=True)
        check_eq(r.status, 200, "HTTP/1.0 status")
        check_eq(r.body, b"first;second", "HTTP/1.0 body")
        check(r.header("Transfer-Encoding") is None, "no chunking on 1.0")


def test_flush_200mb_bounded_memory():
    n = 3200  # 200 MiB in 64 KiB pieces
    with Server(files={"s.c": STREAM}) as s:
        warm(s, "/s?n=4")
        before = vm(s.pid(), "VmHWM")
        conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=60)
        conn.request("GET", "/s?n=%d" % n)
        r = conn.getresponse()
        check_eq(r.status, 200, "status")
        h = hashlib.sha256()
        want = hashlib.sha256()
        got = 0
        i = 0
        while True:
            data = r.read(1 << 20)
            if not data:
                break
            h.update(data)
            got += len(data)
        for i in range(n):
            want.update(piece_bytes(i))
        conn.close()
        grown = vm(s.pid(), "VmHWM") - before
        harness.note("200 MiB streamed; peak RSS grew %d kB" % grown)
        check_eq(got, n * PIECE, "bytes received")
        check_eq(h.hexdigest(), want.hexdigest(), "sha256 of the body")
        check(grown < 40 * 1024, "peak RSS grew by %d kB" % grown)


def test_flush_client_disconnect_ends_handler():
    with Server(files={"s.c": STREAM}) as s:
        warm(s, "/s?n=1")
        mark = os.path.join(s.tmp, "mark")
        sock = socket.create_connection(("127.0.0.1", s.port), timeout=10)
        sock.sendall(b"GET /s?n=100000&mark=" + mark.encode() +
                     b" HTTP/1.1\r\nHost: x\r\n\r\n")
        got = 0
        while got < 4 * PIECE:
            got += len(sock.recv(65536))
        sock.close()
        wait_until(lambda: os.path.exists(mark) and
                   open(mark).read().endswith("\n"), limit(10))
        text = open(mark).read()
        check(text.startswith("gone "), "the loop ended with %r" % text)
        check(int(text.split()[1]) < 100000, "it stopped early: %r" % text)
        check_eq(text.split()[2:], ["x", "GET"], "fields after the client left")
        # The server goes on serving.
        check_eq(s.get_ok("/s/hello").text, "first;second", "after")


def test_flush_commit_failure_aborts_stream():
    with Server(files={"c.c": COMMIT_FAILS}) as s:
        r = s.raw(b"GET /c HTTP/1.1\r\nHost: x\r\n\r\n", read_all=True)
        check_eq(r.status, 200, "status (committed before the hook)")
        raw = r.body
        check_in(b"committed already;", raw, "the flushed part")
        check(b"never sent" not in raw, "the rest must not be sent")
        check(not raw.endswith(b"0\r\n\r\n"),
              "the chunked body must not be terminated: %r" % raw[-40:])
        wait_until(lambda: "the stream is aborted" in s.stderr(), limit(5))


def test_flush_inline_buffers():
    # Promoted to the event loop after 32 fast runs, a page that flushes
    # still answers whole, and goes back to the handler threads.
    with Server(files={"s.c": STREAM}) as s:
        for i in range(40):
            check_eq(s.get_ok("/s/hello").text, "first;second", "run %d" % i)
        st = s.status_json()["server"]
        harness.note("inlined %d, offloaded %d" % (st["inlined"],
                                                   st["offloaded"]))
        check(st["inlined"] >= 1, "no run was inline: %r" % st)
        check_in("it flushes its response", s.stderr(), "the demotion logged")
        # Demoted for good: the next runs stream again.
        before = s.status_json()["server"]["inlined"]
        for i in range(5):
            s.get_ok("/s/hello")
        check_eq(s.status_json()["server"]["inlined"], before, "inline runs")


# ---- hp_sse ------------------------------------------------------------------


def read_events(sock, count, timeout):
    """(arrival time, event text) for count events of an SSE stream."""
    buf, out = b"", []
    deadline = time.monotonic() + timeout
    head_done = False
    while len(out) < count and time.monotonic() < deadline:
        chunk = sock.recv(65536)
        if not chunk:
            break
        buf += chunk
        if not head_done and b"\r\n\r\n" in buf:
            head, buf = buf.split(b"\r\n\r\n", 1)
            out.append((time.monotonic(), head.decode()))
            head_done = True
        # chunked: strip the size lines, keep the data
        while head_done:
            if b"\r\n" not in buf:
                break
            size_line, rest = buf.split(b"\r\n", 1)
            size = int(size_line, 16)
            if len(rest) < size + 2:
                break
            data, buf = rest[:size], rest[size + 2:]
            for ev in data.decode().split("\n\n"):
                if ev:
                    out.append((time.monotonic(), ev))
    return out


def test_sse_events_arrive_at_their_times():
    with Server(files={"e.c": SSE}) as s:
        s.get("/e/lines")
        sock = socket.create_connection(("127.0.0.1", s.port), timeout=10)
        t0 = time.monotonic()
        sock.sendall(b"GET /e HTTP/1.1\r\nHost: x\r\n\r\n")
        got = read_events(sock, 4, limit(10))
        sock.close()
        check_eq(len(got), 4, "head and three events: %r" % got)
        head = got[0][1]
        check_in("Content-Type: text/event-stream", head, "head")
        check_in("Cache-Control: no-cache", head, "head")
        evs = [e for _, e in got[1:]]
        check_eq(evs, ["event: one\ndata: event 1",
                       "event: two\ndata: event 2",
                       "event: three\ndata: event 3"], "events")
        ts = [t - t0 for t, _ in got[1:]]
        harness.note("events at %s s" % ", ".join("%.2f" % t for t in ts))
        check(ts[0] < limit(0.4), "first event at %.2f s" % ts[0])
        check(0.4 <= ts[1] - ts[0] < limit(1.0), "second %.2f s" % ts[1])
        check(0.4 <= ts[2] - ts[1] < limit(1.0), "third %.2f s" % ts[2])


def test_sse_multiline_data():
    with Server(files={"e.c": SSE}) as s:
        r = s.get_ok("/e/lines")
        check_eq(r.text, "data: a\ndata: b\ndata: c\ndata: d\n\n"
                 "event: x\ndata: \n\n", "body")
        check_eq(r.header("Content-Type"), "text/event-stream", "type")


def test_sse_client_disconnect_detected():
    with Server(files={"e.c": SSE}) as s:
        s.get("/e/lines")
        mark = os.path.join(s.tmp, "mark")
        sock = socket.create_connection(("127.0.0.1", s.port), timeout=10)
        sock.sendall(b"GET /e/forever?mark=" + mark.encode() +
                     b" HTTP/1.1\r\nHost: x\r\n\r\n")
        read_events(sock, 3, limit(5))
        sock.close()
        wait_until(lambda: os.path.exists(mark) and
                   open(mark).read().endswith("\n"), limit(5))
        check(open(mark).read().startswith("gone "), open(mark).read())
        st = s.status_json()["server"]
        check_eq(st["streams"], 0, "open streams after")


def test_sse_max_streams_503():
    with Server(files={"e.c": SSE}, args=["--max-streams", "1"]) as s:
        s.get("/e/lines")
        sock = socket.create_connection(("127.0.0.1", s.port), timeout=10)
        sock.sendall(b"GET /e/forever HTTP/1.1\r\nHost: x\r\n\r\n")
        read_events(sock, 2, limit(5))
        r = s.get("/e/forever")
        check_eq(r.status, 503, "a second stream over --max-streams 1")
        check_eq(r.header("Retry-After"), "1", "Retry-After")
        check_in(b"503", r.body, "the standard 503 body")
        check(b"event:" not in r.body, "not the page's events: %r" % r.body)
        sock.close()


def test_sse_outlives_handler_timeout_while_flushing():
    # Worker processes: --handler-timeout counts from the last flush.
    with Server(files={"e.c": SSE}, workers=1,
                args=["--handler-timeout", "1"]) as s:
        s.get("/e/lines")
        sock = socket.create_connection(("127.0.0.1", s.port), timeout=10)
        sock.sendall(b"GET /e/forever HTTP/1.1\r\nHost: x\r\n\r\n")
        t0 = time.monotonic()
        got = read_events(sock, 50, limit(10))
        took = time.monotonic() - t0
        sock.close()
        check_eq(len(got), 50, "head and 49 events over %.1f s" % took)
        check(took > 2.0, "the stream ran %.2f s, past the 1 s limit" % took)
        check(all(e == "event: tick\ndata: t" for _, e in got[1:]),
              "only events: %r" % [e for _, e in got[1:] if "tick" not in e])
        # (the watchdog logs "answered 504"; a bare "504" may be a timestamp)
        check("answered 504" not in s.stderr(), "no 504 logged")


def test_silent_stream_past_handler_timeout_is_cut_without_a_504():
    # Worker processes: a stream silent for longer than --handler-timeout
    # is stuck; its status line went out long ago, so the watchdog cuts the
    # connection (the chunked body unterminated) instead of writing a 504
    # into the body, and says so in the log.
    with Server(files={"e.c": SSE}, workers=1,
                args=["--handler-timeout", "1"]) as s:
        s.get("/e/lines")
        sock = socket.create_connection(("127.0.0.1", s.port), timeout=10)
        sock.sendall(b"GET /e/silent HTTP/1.1\r\nHost: x\r\n\r\n")
        buf, deadline = b"", time.monotonic() + limit(8)
        while time.monotonic() < deadline:
            try:
                d = sock.recv(65536)
            except OSError:
                break
            if not d:
                break
            buf += d
        sock.close()
        check(buf.startswith(b"HTTP/1.1 200 "), "the stream began: %r"
              % buf[:60])
        check_in(b"event: first", buf, "the first event")
        check(b"504" not in buf and b"Gateway" not in buf,
              "a 504 written into the stream: %r" % buf[-200:])
        check(not buf.endswith(b"0\r\n\r\n"), "a cut stream looked complete")
        check(b"late" not in buf, "the event after the limit was sent")
        check(wait_until(lambda: "its stream was cut" in s.stderr(),
                         limit(3)), "the log says the stream was cut")


def test_sse_stream_ends_at_shutdown():
    with Server(files={"e.c": SSE}) as s:
        s.get("/e/lines")
        mark = os.path.join(s.tmp, "mark")
        sock = socket.create_connection(("127.0.0.1", s.port), timeout=10)
        sock.sendall(b"GET /e/forever?mark=" + mark.encode() +
                     b" HTTP/1.1\r\nHost: x\r\n\r\n")
        read_events(sock, 2, limit(5))
        t0 = time.monotonic()
        rc = s.terminate()
        took = time.monotonic() - t0
        sock.close()
        check_eq(rc, 0, "exit status after SIGTERM with a stream open")
        check(took < limit(3.0), "stopping took %.2f s" % took)
        check(open(mark).read().startswith("gone "), "the handler's loop ended")


# ---- hp_send_file -------------------------------------------------------------


def big_file(s, name, size):
    path = os.path.join(s.scratch, name)
    block = hashlib.sha256(name.encode()).digest() * 2048  # 64 KiB
    with open(path, "wb") as f:
        left = size
        while left:
            f.write(block[:min(left, len(block))])
            left -= min(left, len(block))
    return path


def test_send_file_50mb_identical():
    with Server(files={"d.c": SEND}) as s:
        path = big_file(s, "data.csv", 50 * 1024 * 1024 + 123)
        conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=60)
        conn.request("GET", "/d?p=" + path)
        r = conn.getresponse()
        body = r.read()
        conn.close()
        check_eq(r.status, 200, "status")
        with open(path, "rb") as f:
            check(body == f.read(), "body differs from the file")
        check_eq(r.getheader("Content-Type"), "text/csv; charset=utf-8",
                 "type from the extension")
        check_eq(r.getheader("Content-Disposition"), "attachment",
                 "the page's header")
        check(r.getheader("ETag"), "ETag")
        check(r.getheader("Last-Modified"), "Last-Modified")
        check_eq(s.get("/d?p=/nonexistent").status, 404, "missing file")


def test_send_file_range_and_head():
    with Server(files={"d.c": SEND}) as s:
        path = big_file(s, "r.bin", 1000)
        data = open(path, "rb").read()
        r = s.get("/d?p=" + path, headers={"Range": "bytes=10-19"})
        check_eq(r.status, 206, "range status")
        check_eq(r.body, data[10:20], "range bytes")
        check_eq(r.header("Content-Range"), "bytes 10-19/1000", "range")
        r = s.get("/d?p=" + path, headers={"Range": "bytes=5000-"})
        check_eq(r.status, 416, "unsatisfiable")
        check_eq(r.header("Content-Range"), "bytes */1000", "416 range")
        r = s.head("/d?p=" + path)
        check_eq(r.status, 200, "HEAD status")
        check_eq(r.header("Content-Length"), "1000", "HEAD length")
        check_eq(r.body, b"", "HEAD body")
        etag = s.get("/d?p=" + path).header("ETag")
        r = s.get("/d?p=" + path, headers={"If-None-Match": etag})
        check_eq(r.status, 304, "If-None-Match")


SEND_ERRNO = page(r'''
#include <errno.h>
#include <string.h>

HP_HANDLER(http_handler)
{
    if (hp_send_file(req, hp_arg(req, "p")) < 0)
        hp_printf(req, "refused %s", errno == ENOENT   ? "ENOENT"
                                     : errno == EACCES ? "EACCES"
                                                       : strerror(errno));
    return HP_OK;
}
''')


def test_send_file_relative_to_the_page():
    """docs/pages.md hp_send_file: a relative path is the page's directory's
    (as hp_render's templates), not the server's working directory, and
    never leaves the document root, by ".." or by a symlink."""
    with Server(files={"sub/d.c": SEND_ERRNO, "sub/data.txt": "sub data\n",
                       "top.txt": "top data\n"}) as s:
        outside = os.path.join(s.scratch, "secret.txt")
        with open(outside, "w") as f:
            f.write("secret\n")
        os.symlink(outside, s.path("sub/link.txt"))
        cases = (("data.txt", "sub data\n"), ("./data.txt", "sub data\n"),
                 ("../top.txt", "top data\n"), ("../sub/data.txt", "sub data\n"),
                 ("nosuch.txt", "refused ENOENT"),
                 ("../../secret.txt", "refused EACCES"),
                 ("../" * 30 + "etc/passwd", "refused EACCES"),
                 ("link.txt", "refused EACCES"))
        for p, want in cases:
            r = s.get("/sub/d?p=" + urllib.parse.quote(p))
            check_eq((r.status, r.text), (200, want), "hp_send_file(%r)" % p)
        r = s.get("/sub/d?p=" + urllib.parse.quote(outside))
        check_eq(r.text, "secret\n", "an absolute path is taken as it is")


# ---- uploads -----------------------------------------------------------------


def test_upload_binary_name_type_size():
    data = bytes(range(256)) * 40 + b"\0\0end"
    with up_server({"u.c": UPLOAD}) as s:
        body = mp_body([(b"t", None, None, b"text field"),
                        (b"f", b"my <file> 1.bin", b"image/x-test", data)])
        r = s.post("/u?echo=1", body, MP)
        check_eq(r.status, 200, "status")
        check_eq(r.header("X-Count"), "1", "files")
        check_eq(r.header("X-File-0"),
                 "my <file> 1.bin|image/x-test|%d" % len(data), "file")
        check_eq(r.header("X-Arg"), "my <file> 1.bin", "hp_arg: the name")
        check_eq(r.header("X-T"), "text field", "a plain field")
        check(r.body == data, "content differs (%d bytes)" % len(r.body))
        tmp = r.header("X-Path")
        check(tmp.startswith(upload_dir(s)), "spooled in --upload-dir")
        wait_until(lambda: not os.path.exists(tmp), limit(2))
        check_eq(os.listdir(upload_dir(s)), [], "upload dir after")


def test_upload_several_files_and_nameless_part():
    with up_server({"u.c": UPLOAD}) as s:
        body = mp_body([(b"f", b"a.txt", b"text/plain", b"A" * 10),
                        (None, b"ignored.txt", b"text/plain", b"I" * 5),
                        (b"f", b"b.txt", None, b"B" * 20),
                        (b"f", b"", b"application/octet-stream", b"")])
        r = s.post("/u", body, MP)
        check_eq(r.status, 200, "status")
        check_eq(r.header("X-Count"), "3", "files in f")
        check_eq(r.header("X-Args"), "3", "hp_arg_count of f")
        check_eq(r.header("X-File-0"), "a.txt|text/plain|10", "first")
        check_eq(r.header("X-File-1"), "b.txt|application/octet-stream|20",
                 "second")
        check_eq(r.header("X-File-2"), "|application/octet-stream|0",
                 "no file chosen")
        wait_until(lambda: os.listdir(upload_dir(s)) == [], limit(2))


def test_upload_renamed_away_is_kept():
    with up_server({"u.c": UPLOAD}) as s:
        keep = os.path.join(s.tmp, "kept.bin")
        body = mp_body([(b"f", b"k.bin", None, b"keep me")])
        r = s.post("/u?keep=" + keep, body, MP)
        check_eq(r.status, 200, "status")
        check_eq(open(keep, "rb").read(), b"keep me", "the kept file")
        check_eq(os.listdir(upload_dir(s)), [], "upload dir after")


# A page that dies (abort) or overruns --handler-timeout with the upload
# still spooled: its process removes nothing, the parent must.
UP_ABORT = page(r'''
#include <stdlib.h>

HP_HANDLER(http_handler)
{
    if (hp_file(req, "f"))
        abort();
    return HP_OK;
}
''')

UP_SLOW = page(r'''
#include <unistd.h>

HP_HANDLER(http_handler)
{
    if (hp_file(req, "f"))
        sleep(120); /* far past --handler-timeout and the test */
    return HP_OK;
}
''')


def spooled(s):
    return sorted(n for n in os.listdir(upload_dir(s))
                  if n.startswith("hotpub-upload-"))


def test_upload_files_of_a_dead_worker_removed():
    """abort() (502) and a handler timeout (504, the worker retired): the
    parent removes the dead worker's spool files; uploads still work."""
    files = {"upcrash.c": UP_ABORT, "upslow.c": UP_SLOW, "u.c": UPLOAD}
    s = Server(files=files, start=False, workers=2)
    s.args = ["--upload-dir", upload_dir(s), "--handler-timeout", "2",
              "--max-body", "16m"]
    with s.start():
        for p in ("/upcrash", "/upslow", "/u"):
            warm(s, p)
        data = os.urandom(3 * 1024 * 1024)
        body = mp_body([(b"f", b"3MB.bin", None, data)])
        for path, want in (("/upslow", 504), ("/upcrash", 502)):
            r = s.post(path, body, MP, timeout=30)
            check_eq(r.status, want, "POST %s" % path)
            check(wait_until(lambda: spooled(s) == [], limit(5)),
                  "after POST %s (%d): left in --upload-dir: %s"
                  % (path, want, spooled(s)))
        r = s.post("/u?echo=1", body, MP, timeout=30)
        check_eq(r.status, 200, "a normal upload after them")
        check(r.body == data, "echoed upload differs")
        check(wait_until(lambda: spooled(s) == [], limit(2)),
              "after the normal upload: %s" % spooled(s))


def test_upload_start_removes_files_of_dead_processes():
    """At start (one process and with workers): a spool file named after a
    dead pid is removed, also one of a zombie (a worker killed with its
    supervisor lingers so until it is reaped), one of a live pid (this
    test) kept, and an unrelated or pid-less name is not touched."""
    for workers in (0, 2):
        dead = subprocess.Popen(["true"])
        dead.wait()  # reaped: its pid names no process
        zombie = subprocess.Popen(["true"])  # exited, not reaped (yet)
        wait_until(lambda: open("/proc/%d/stat" % zombie.pid).read()
                   .rsplit(")", 1)[1].split()[0] == "Z", limit(3))
        s = Server(files={"u.c": UPLOAD}, start=False, workers=workers)
        d = upload_dir(s)
        names = {"dead": "hotpub-upload-%d-a1B2c3" % dead.pid,
                 "zombie": "hotpub-upload-%d-z1B2c3" % zombie.pid,
                 "live": "hotpub-upload-%d-a1B2c3" % os.getpid(),
                 "old": "hotpub-upload-Xa1B2c", "other": "keep-%d" % dead.pid}
        for n in names.values():
            with open(os.path.join(d, n), "wb") as f:
                f.write(b"x")
        s.args = ["--upload-dir", d]
        with s.start():
            check(wait_until(lambda: not os.path.exists(
                os.path.join(d, names["dead"])), limit(3)),
                  "workers %d: the dead pid's file is still there" % workers)
            check(not os.path.exists(os.path.join(d, names["zombie"])),
                  "workers %d: the zombie's file is still there" % workers)
            r = s.post("/u", mp_body([(b"f", b"a.txt", None, b"A")]), MP)
            check_eq(r.status, 200, "an upload")
            want = sorted(names[k] for k in ("live", "old", "other"))
            check(wait_until(lambda: sorted(os.listdir(d)) == want,
                             limit(2)),
                  "workers %d: kept %s, want %s"
                  % (workers, sorted(os.listdir(d)), want))
        zombie.wait()


def post_stream(port, head, pieces):
    """Send a request head and body pieces; return (status, raw answer)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    try:
        sock.sendall(head)
        for p in pieces:
            try:
                sock.sendall(p)
            except OSError:
                break
        buf = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except OSError:
                break
            if not chunk:
                break
            buf += chunk
            if b"\r\n\r\n" in buf and b"X-Count" not in buf and \
                    not buf.startswith(b"HTTP/1.1 200"):
                break
            end = buf.find(b"\r\n\r\n")
            if end >= 0 and b"Content-Length: 0" in buf[:end]:
                break
        status = int(buf.split(b" ", 2)[1]) if buf else 0
        return status, buf
    finally:
        sock.close()


def test_upload_30mb_bounded_memory():
    size = 30 * 1024 * 1024
    with up_server({"u.c": UPLOAD}, ["--max-body", "64m"]) as s:
        warm(s, "/u")
        before = vm(s.pid(), "VmHWM")
        pre = (b"--XyZzY\r\nContent-Disposition: form-data; name=\"f\"; "
               b"filename=\"big.bin\"\r\n\r\n")
        post = b"\r\n--XyZzY--\r\n"
        block = b"0123456789abcdef" * 4096

        def pieces():
            yield pre
            for _ in range(size // len(block)):
                yield block
            yield post
        head = (b"POST /u HTTP/1.1\r\nHost: x\r\nContent-Type: " +
                MP.encode() + b"\r\nContent-Length: %d\r\n\r\n"
                % (len(pre) + size + len(post)))
        status, raw = post_stream(s.port, head, pieces())
        grown = vm(s.pid(), "VmHWM") - before
        harness.note("30 MiB upload; peak RSS grew %d kB" % grown)
        check_eq(status, 200, "status")
        check_in(b"X-File-0: big.bin|application/octet-stream|%d" % size,
                 raw, "head")
        check(grown < 20 * 1024, "peak RSS grew by %d kB" % grown)
        wait_until(lambda: os.listdir(upload_dir(s)) == [], limit(2))


def test_upload_over_max_body_413_nothing_on_disk():
    with up_server({"u.c": UPLOAD}, ["--max-body", "1m"]) as s:
        warm(s, "/u")
        big = b"x" * (3 * 1024 * 1024)
        body = mp_body([(b"f", b"big.bin", None, big)])
        # Content-Length over the limit: refused before the body is read.
        r = s.raw(b"POST /u HTTP/1.1\r\nHost: x\r\nContent-Type: " +
                  MP.encode() + b"\r\nContent-Length: %d\r\n\r\n"
                  % len(body) + body)
        check_eq(r.status, 413, "Content-Length over --max-body")
        check_eq(os.listdir(upload_dir(s)), [], "upload dir after 413")
        # Chunked: refused once the body passes the limit.
        head = (b"POST /u HTTP/1.1\r\nHost: x\r\nContent-Type: " +
                MP.encode() + b"\r\nTransfer-Encoding: chunked\r\n\r\n")

        def chunks():
            for i in range(0, len(body), 65536):
                c = body[i:i + 65536]
                yield b"%x\r\n%s\r\n" % (len(c), c)
            yield b"0\r\n\r\n"
        status, _ = post_stream(s.port, head, chunks())
        check_eq(status, 413, "chunked over --max-body")
        check_eq(os.listdir(upload_dir(s)), [], "upload dir after chunked")


def test_upload_malformed_400_removes_files():
    with up_server({"u.c": UPLOAD}) as s:
        body = mp_body([(b"f", b"a.txt", None, b"A" * 100)])[:-12]  # no end
        r = s.post("/u", body, MP)
        check_eq(r.status, 400, "no close delimiter")
        wait_until(lambda: os.listdir(upload_dir(s)) == [], limit(2))



# ---- a client that goes away during the body --------------------------------
#
# Whenever the client's FIN (or RST) arrives, the connection must close and
# what the body held (spooled files, their descriptors, a buffered body) go
# at once, not at --timeout: the FIN that follows the last data at once used
# to go unseen (libmicrohttpd took the short read for an empty socket).
# A half-close (shutdown(SHUT_WR)) mid-body is an abort as well: the body can
# never complete; as nginx, the connection is closed unanswered and the
# access log says 400.

BIG_CL = 8000000
FILE_PART = (b"--XyZzY\r\nContent-Disposition: form-data; name=\"f\"; "
             b"filename=\"big.bin\"\r\n\r\n")


def worker_fds(pid):
    """The worker's descriptors: their link targets ("socket:[N]", paths)."""
    d = "/proc/%d/fd" % pid
    out = []
    for n in os.listdir(d):
        try:
            out.append(os.readlink(os.path.join(d, n)))
        except OSError:
            pass  # closed meanwhile
    return out


def open_conns(port):
    """Server-side TCP connections on port not yet closed by the server
    (ESTABLISHED or CLOSE_WAIT): their peers' ports."""
    out = []
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            x = line.split()
            local, remote, st = x[1], x[2], x[3]
            if int(local.split(":")[1], 16) == port and st in ("01", "08"):
                out.append(int(remote.split(":")[1], 16))
    return out


def sockets(pid):
    return sum(t.startswith("socket:") for t in worker_fds(pid))


def quiet_baseline(s):
    """The worker's socket count once no client connection is open."""
    check(wait_until(lambda: not open_conns(s.port), limit(5)) is not None,
          "connections still open before the test: %s" % open_conns(s.port))
    return sockets(s.pid())


def check_released(s, base, what, ports=()):
    """Within a second: no file left in --upload-dir, no descriptor on
    one, the worker's sockets back to base, none of ports' connections
    open on the server side."""
    def state():
        fds = worker_fds(s.pid())
        return (sorted(os.listdir(upload_dir(s))),
                [t for t in fds if "hotpub-upload-" in t],
                sum(t.startswith("socket:") for t in fds) - base,
                [p for p in open_conns(s.port) if p in ports])
    t0 = time.monotonic()
    ok = wait_until(lambda: state() == ([], [], 0, []), limit(1.0))
    check(ok is not None, "%s: after %.1f s still (files, descriptors on "
          "them, extra sockets, open connections) = %r"
          % (what, time.monotonic() - t0, state()))
    harness.note("%s: released in %.2f s" % (what, time.monotonic() - t0))


def send_abandon(port, data, how, ctx=None):
    """Connect, send data, then go away at once: "close" (FIN), "rst"
    (SO_LINGER 0) or "shut_wr" (half-close; returns what the server sent
    before closing, b"" if nothing). Returns (client port, answer)."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    cport = raw.getsockname()[1]
    sock = ctx.wrap_socket(raw) if ctx else raw
    sock.sendall(data)
    got = b""
    if how == "rst":
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                        struct.pack("ii", 1, 0))
    elif how == "shut_wr":
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(limit(1.0))
        try:
            while True:
                c = sock.recv(65536)
                if not c:
                    break
                got += c
        except socket.timeout:
            got = None  # still open
        except OSError:
            pass  # reset, or TLS ended without close_notify: closed
    sock.close()
    return cport, got


def mp_head(path="/u", cl=BIG_CL, ctype=MP):
    return (b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: %s\r\n"
            b"Content-Length: %d\r\n\r\n" % (path.encode(), ctype.encode(),
                                             cl))


def abort_server():
    s = up_server({"u.c": UPLOAD}, ["--timeout", "30", "--max-body", "64m"])
    warm(s, "/u")
    return s


def test_upload_abandoned_mid_part_released_at_once():
    """The report: 3 MB of a file part of 8 MB, then close() at once, five
    times; then the same with an RST."""
    with abort_server() as s:
        base = quiet_baseline(s)
        data = mp_head() + FILE_PART + b"x" * (3 * 1000 * 1000)
        ports = [send_abandon(s.port, data, "close")[0] for _ in range(5)]
        check_released(s, base, "five closes after 3 MB", ports)
        port, _ = send_abandon(s.port, data, "rst")
        check_released(s, base, "RST after 3 MB", [port])
        check_eq(s.get("/u").status, 200, "served after the aborts")


def test_upload_abandoned_anywhere_in_the_body():
    """Mid-head, before the first part, between parts, mid-chunk, a plain
    body."""
    one = FILE_PART + b"a" * 100000 + b"\r\n"
    chunked = (b"POST /u HTTP/1.1\r\nHost: x\r\nContent-Type: " + MP.encode()
               + b"\r\nTransfer-Encoding: chunked\r\n\r\n")
    cases = [
        ("request head cut", b"POST /u HTTP/1.1\r\nHost: x\r\nContent-Ty"),
        ("head only", mp_head()),
        ("between parts", mp_head() + one + b"--XyZzY\r\n"),
        ("part head cut", mp_head() + one + b"--XyZzY\r\nContent-Disp"),
        ("mid-chunk", chunked + b"%x\r\n" % BIG_CL + FILE_PART +
         b"c" * (2 * 1000 * 1000)),
        ("between chunks", chunked + b"%x\r\n" % len(one) + one + b"\r\n"),
        ("plain body", mp_head(ctype="application/octet-stream") +
         b"p" * (3 * 1000 * 1000)),
    ]
    with abort_server() as s:
        base = quiet_baseline(s)
        for what, data in cases:
            port, _ = send_abandon(s.port, data, "close")
            check_released(s, base, what, [port])
        check_eq(s.get("/u").status, 200, "served after the aborts")


def test_upload_half_closed_mid_body_is_an_abort():
    """shutdown(SHUT_WR) mid-body: closed unanswered, 400 in the access
    log, the file gone; a complete body then a half-close is answered."""
    with abort_server() as s:
        base = quiet_baseline(s)
        data = mp_head() + FILE_PART + b"h" * (3 * 1000 * 1000)
        port, got = send_abandon(s.port, data, "shut_wr")
        check(got is not None, "the server kept the half-closed connection")
        check_eq(got, b"", "answer to a half-closed body")
        check_released(s, base, "half-close after 3 MB", [port])
        body = mp_body([(b"f", b"a.bin", None, b"A" * 5000)])
        port, got = send_abandon(s.port, mp_head(cl=len(body)) + body,
                                 "shut_wr")
        check(got and got.startswith(b"HTTP/1.1 200"),
              "a complete body, then half-closed: %r" % (got or b"")[:80])
        check_in(b"X-File-0: a.bin|application/octet-stream|5000", got,
                 "answer")
        check(wait_until(lambda: b'"POST /u HTTP/1.1" 400' in
                         open(s.stdout_path, "rb").read(), limit(2)),
              "access log line of the abort: %r"
              % open(s.stdout_path, "rb").read()[-400:])


def test_upload_abandoned_over_https():
    """Through GnuTLS: a FIN without close_notify, an RST, a half-close."""
    if not shutil.which("openssl"):
        raise harness.Skip("openssl is not installed")
    s = Server(files={"u.c": UPLOAD}, start=False)
    cert, key = os.path.join(s.tmp, "c.crt"), os.path.join(s.tmp, "c.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", key,
                    "-out", cert, "-days", "2", "-subj", "/CN=localhost"],
                   check=True, capture_output=True, timeout=30)
    ctx = ssl.create_default_context(cafile=cert)
    ctx.check_hostname = False
    s.args = ["--upload-dir", upload_dir(s), "--timeout", "30",
              "--max-body", "64m", "--tls-cert", cert, "--tls-key", key]
    with s.start():
        base = quiet_baseline(s)
        data = mp_head() + FILE_PART + b"t" * (3 * 1000 * 1000)
        for how in ("close", "rst", "shut_wr"):
            port, _ = send_abandon(s.port, data, how, ctx)
            check_released(s, base, "HTTPS, %s after 3 MB" % how, [port])


if __name__ == "__main__":
    sys.exit(harness.run_suite(globals(), sys.argv[1:],
                               suite_budget=SUITE_BUDGET,
                               test_timeout=TEST_TIMEOUT))
