#!/usr/bin/env python3
"""hotpub end-to-end tests of what operators see (docs/operations.md): the
Prometheus metrics of the whole node, the health check and its drain
delay, the dashboard's live feed (and the dashboard in headless Chromium),
and HTTPS.

    HOTPUB_BIN=/abs/path/hotpub python3 tests/e2e/ops.py [NAME-SUBSTRING...]
    python3 tests/e2e/ops.py --list

Uses Debian's python3-prometheus-client (the metrics parser), openssl (a
self-signed certificate), chromium and python3-websocket (the browser
test), promtool when installed (package prometheus): tools/deps.sh --test.
Output, as in run.py: one line per test, then "N passed, N failed".
"""

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import http.client
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import (BackgroundRequest, Server, Skip, check,  # noqa: E402
                     check_eq, check_in, check_not_in, fail, limit, note, page,
                     simple_page, wait_until)

# Debian's packages live in the system interpreter's dist-packages: reach
# them from another Python 3 (pyenv, a venv) too.
for _d in ("/usr/lib/python3/dist-packages",):
    if os.path.isdir(_d) and _d not in sys.path:
        sys.path.append(_d)

TEST_TIMEOUT = 120.0
SUITE_BUDGET = 600.0

SLOW = page(r'''
HP_HANDLER(http_handler)
{
    const char *ms = hp_arg(req, "ms");
    if (ms)
        usleep((useconds_t)atoi(ms) * 1000);
    hp_printf(req, "slow %d", (int)getpid());
    return HP_OK;
}
''', includes="#include <stdlib.h>\n#include <unistd.h>")

SESSION = page(r'''
HP_HANDLER(http_handler)
{
    hp_session_set(req, "k", "v");
    hp_puts(req, "set");
    return HP_OK;
}
''')


def parse_metrics(text):
    """{(name, frozenset(labels.items())): value} and the families, by the
    Prometheus Python client's parser (it raises on invalid text)."""
    try:
        from prometheus_client.parser import text_string_to_metric_families
    except ImportError:
        raise Skip("python3-prometheus-client is not installed")
    samples, fams = {}, {}
    for fam in text_string_to_metric_families(text):
        fams[fam.name] = fam
        for s in fam.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples, fams


def metrics(s):
    r = s.get("/_hotpub/metrics")
    check_eq(r.status, 200, "/_hotpub/metrics status")
    check_in("version=0.0.4", r.header("Content-Type"), "Content-Type")
    return r.text


def sample(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_metrics_parse_and_count_the_whole_node():
    with Server(files={"hello.c": simple_page("hi")}, workers=2) as s:
        for _ in range(3):
            s.get_ok("/hello")
        before, fams = parse_metrics(metrics(s))
        for fam in ("hotpub_http_request_duration_seconds",
                    "hotpub_compile_duration_seconds"):
            check_eq(fams[fam].type, "histogram", fam + " type")
        for fam in ("hotpub_http_requests", "hotpub_reloads",
                    "hotpub_versions_retired", "hotpub_versions_unloaded",
                    "hotpub_worker_restarts", "hotpub_db_pool_timeouts"):
            check_eq(fams[fam].type, "counter", fam + " type")
        for fam in ("hotpub_open_connections", "hotpub_quarantined_versions",
                    "hotpub_db_pool_connections_in_use",
                    "hotpub_db_pool_waiting"):
            check_eq(fams[fam].type, "gauge", fam + " type")
        # Fresh connections each: libmicrohttpd's accept spreads them over
        # both workers, and whichever answers counts them all.
        n = 20
        for _ in range(n):
            s.get_ok("/hello")
        st = s.status_json()
        pids = [w["pid"] for w in st["node"]["workers"] if w["requests"]]
        after, _ = parse_metrics(metrics(s))
        got = (sample(after, "hotpub_http_requests_total", page="hello.c",
                      code="2xx")
               - sample(before, "hotpub_http_requests_total", page="hello.c",
                        code="2xx"))
        check_eq(got, n, "hello.c 2xx requests counted")
        note("workers that served: %d" % len(pids))
        # Histogram buckets are cumulative and end at the count.
        le = sorted(((float(dict(k[1])["le"]), v) for k, v in after.items()
                     if k[0] == "hotpub_http_request_duration_seconds_bucket"
                     and dict(k[1])["page"] == "hello.c"))
        vals = [v for _, v in le]
        check(vals == sorted(vals), "buckets not cumulative: %r" % le)
        check_eq(vals[-1], sample(after,
                                  "hotpub_http_request_duration_seconds_count",
                                  page="hello.c"), "+Inf bucket vs count")
        check_eq(le[-1][0], float("inf"), "last bucket")
        check(sample(after, "hotpub_reloads_total", result="ok") >= 1,
              "no successful build counted")
        check_eq(sample(after, "hotpub_worker_processes"), 2, "workers")
        # No raw URL becomes a label.
        s.get("/nope/%d" % time.time_ns())
        text = metrics(s)
        check("/nope" not in text, "a request target became a label")
        check_in('page="_notfound",code="4xx"', text, "metrics")
        if shutil.which("promtool"):
            p = subprocess.run(["promtool", "check", "metrics"],
                               input=text.encode(), capture_output=True,
                               timeout=30)
            check_eq(p.returncode, 0, "promtool check metrics (%s)"
                     % p.stdout.decode() + p.stderr.decode())
        else:
            note("promtool not installed: checked with the Python parser only")


def test_metrics_reloads_and_history():
    with Server(files={"hello.c": simple_page("v1")}, workers=0) as s:
        s.get_ok("/hello")
        before, _ = parse_metrics(metrics(s))
        s.write("hello.c", simple_page("v2"))
        s.wait_body("/hello", "v2", limit(5), allowed_bodies=("v1",))
        s.write("hello.c", page("this is not C"))
        check(wait_until(lambda: s.get("/hello").status == 500, limit(5)),
              "the broken page did not fail")
        after, _ = parse_metrics(metrics(s))
        check_eq(sample(after, "hotpub_reloads_total", result="ok")
                 - sample(before, "hotpub_reloads_total", result="ok"), 1,
                 "successful reloads")
        check_eq(sample(after, "hotpub_reloads_total", result="failed"), 1,
                 "failed builds")
        check_eq(sample(after, "hotpub_versions_retired_total"), 1,
                 "versions retired")
        check(wait_until(lambda: sample(parse_metrics(metrics(s))[0],
                                        "hotpub_versions_unloaded_total") == 1,
                         limit(3)), "the retired version was not unloaded")
        hist = s.status_json()["node"]["reloads"]
        check_eq([h["result"] for h in hist[:3]], ["failed", "ok", "ok"],
                 "reload history, newest first")
        check_eq(hist[0]["page"], "hello.c", "history page")
        check(hist[0]["error"], "the failure's error is missing")
        check(hist[1]["compile_seconds"] > 0, "compile time")


def test_hotpub_endpoints_answer_only_get_and_head():
    """hotpub's own endpoints only read: another method gets 405 with
    Allow (RFC 9110 §15.5.6) and changes nothing; a name that is not an
    endpoint stays 404 whatever the method; HEAD answers like GET
    without a body."""
    with Server(files={"p.c": simple_page("p")}, dev=False) as s:
        for name in ("status.json", "metrics", "health", "", "status.events"):
            for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS"):
                r = s.request("/_hotpub/" + name, method, body="x=1",
                              headers={"Content-Type":
                                       "application/x-www-form-urlencoded"})
                check_eq(r.status, 405, "%s /_hotpub/%s" % (method, name))
                check_eq(r.headers.get("allow"), "GET, HEAD",
                         "Allow of %s /_hotpub/%s" % (method, name))
        for name in ("status.json", "metrics", "health", ""):
            r = s.request("/_hotpub/" + name, "HEAD")
            check_eq((r.status, r.body), (200, b""), "HEAD /_hotpub/" + name)
        check_eq(s.request("/_hotpub/nothing", "POST", body="").status, 404,
                 "POST to a name that is no endpoint")
        check_eq(s.request("/_hotpub/events", "GET").status, 404,
                 "dev mode's live-reload feed in production")
        check_eq(s.get("/_hotpub/health").status, 200, "GET still answers")


def test_health_and_drain_delay():
    with Server(files={"slow.c": SLOW}, workers=1,
                args=["--drain-delay", "2"]) as s:
        r = s.get("/_hotpub/health")
        check_eq((r.status, r.text), (200, "ok\n"), "health while serving")
        slow = BackgroundRequest(s.port, "/slow?ms=2500")
        slow.start()
        time.sleep(0.3)
        t0 = time.monotonic()
        os.kill(s.proc.pid, signal.SIGTERM)
        check(wait_until(lambda: s.get("/_hotpub/health").status == 503,
                         limit(1)), "health did not turn 503 on SIGTERM")
        # Still accepting and serving through the delay.
        check_eq(s.get("/slow").status, 200, "a page during the drain delay")
        check(time.monotonic() - t0 < 2, "the delay was already over")
        status, _, body = slow.join_result()
        check_eq(status, 200, "the in-flight request")
        check(wait_until(lambda: not s.alive(), limit(10)), "did not stop")
        check(time.monotonic() - t0 >= 2, "stopped before the drain delay")
        check_eq(s.terminate(), 0, "exit status")


def test_events_do_not_pin_handler_threads():
    """Ten open dashboard feeds on a worker with one handler thread: pages
    are still served, and each feed gets a new event every second."""
    with Server(files={"slow.c": SLOW}, workers=0,
                args=["--threads", "1", "--max-threads", "1"]) as s:
        socks = []
        for _ in range(10):
            c = socket.create_connection(("127.0.0.1", s.port), timeout=5)
            c.sendall(b"GET /_hotpub/status.events HTTP/1.1\r\n"
                      b"Host: 127.0.0.1\r\n\r\n")
            socks.append(c)
        time.sleep(0.5)
        for _ in range(5):
            check_eq(s.get("/slow?ms=10").status, 200, "page beside feeds")
        buf = b""
        deadline = time.monotonic() + limit(5)
        while buf.count(b"event: status") < 3 and time.monotonic() < deadline:
            buf += socks[0].recv(65536)
        check_in(b"text/event-stream", buf, "feed head")
        check(buf.count(b"event: status") >= 3, "fewer than 3 events")
        for c in socks:
            c.close()


def make_cert(tmp, name):
    if not shutil.which("openssl"):
        raise Skip("openssl is not installed")
    cert, key = (os.path.join(tmp, name + ".crt"),
                 os.path.join(tmp, name + ".key"))
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", key,
                    "-out", cert, "-days", "2", "-subj", "/CN=localhost"],
                   check=True, capture_output=True, timeout=30)
    return cert, key


def tls_get(port, path, ctx, conn=None):
    own = conn is None
    if own:
        conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx,
                                           timeout=10)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read(), conn
    finally:
        if own:
            conn.close()


def client_ctx(cafile):
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.check_hostname = False
    return ctx


def peer_cert(port):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw) as t:
            return t.getpeercert(binary_form=True), t.version()


NETNS_SCRIPT = r"""
set -e
ip link set lo up
ip addr add 10.9.9.9/32 dev lo
"$BIN" serve "$ROOT" --listen 10.9.9.9:8080 --workers 0 --no-dev \
    --cache-dir "$ROOT/.cache" --access-log off --admin-token sekrit \
    --health-allow 10.9.9.0/24 2>"$ROOT/.err" &
pid=$!
code() { curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$@" || true; }
for i in $(seq 100); do
    [ "$(code http://10.9.9.9:8080/)" != 000 ] && break
    sleep 0.05
done
u=http://10.9.9.9:8080/_hotpub
echo "none $(code $u/status.json)"
echo "token $(code -H 'Authorization: Bearer sekrit' $u/status.json)"
echo "lower $(code -H 'Authorization: bearer sekrit' $u/metrics)"
echo "wrong $(code -H 'Authorization: Bearer sekrjt' $u/status.json)"
echo "short $(code -H 'Authorization: Bearer sekri' $u/status.json)"
echo "two $(code -H 'Authorization: Bearer sekrit' -H 'Authorization: Bearer x' $u/status.json)"
echo "health $(code $u/health)"
echo "dashboard $(code $u/)"
echo "post $(code -X POST -H 'Authorization: Bearer sekrit' $u/status.json)"
echo "challenge $(curl -s -o /dev/null -D - --max-time 5 $u/status.json |
    tr -d '\r' | sed -n 's/^[Ww][Ww][Ww]-[Aa]uthenticate: //p' |
    tr ' ' _)"
kill $pid; wait $pid || true
"""


def test_admin_token_from_another_address():
    """From a non-loopback address (10.9.9.9 on the loopback interface of
    a network namespace of our own, client and server both inside it): /_hotpub/
    needs the bearer token (401 without, or wrong; two Authorization
    fields, a singleton field (RFC 9110 §11.6.2), are refused at the
    request edge: 400) and the
    401 names the scheme (WWW-Authenticate, RFC 9110 §11.6.1); health is
    open to --health-allow; with the token, a POST is still 405."""
    if os.geteuid() != 0 or not shutil.which("unshare") or \
            not shutil.which("ip") or not shutil.which("curl"):
        raise Skip("needs root, unshare, ip and curl")
    root = tempfile.mkdtemp(prefix="hp-netns-")
    try:
        env = dict(os.environ, BIN=harness.hotpub_bin(), ROOT=root)
        p = subprocess.run(["unshare", "--net", "sh", "-c", NETNS_SCRIPT],
                           env=env, capture_output=True, text=True,
                           timeout=60)
        if "Operation not permitted" in p.stderr:
            raise Skip("no network namespaces here: " + p.stderr.strip())
        got = dict((line.split() + [""])[:2]
                   for line in p.stdout.split("\n") if line)
        want = {"none": "401", "token": "200", "lower": "200",
                "wrong": "401", "short": "401", "two": "400",
                "health": "200", "dashboard": "401", "post": "405",
                "challenge": 'Bearer_realm="hotpub"'}
        check_eq(got, want, "statuses (stderr: %s)" % p.stderr[-300:])
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_https():
    tmp = tempfile.mkdtemp(prefix="hotpub-tls-")
    cert, key = make_cert(tmp, "a")
    rport = harness.free_port()
    with Server(files={"hello.c": simple_page("hi"), "sess.c": SESSION},
                workers=1, args=["--tls-cert", cert, "--tls-key", key,
                                 "--tls-redirect",
                                 "127.0.0.1:%d" % rport,
                                 "--max-header", "64k"]) as s:
        ctx = client_ctx(cert)
        status, _, body, _ = tls_get(s.port, "/hello", ctx)
        check_eq((status, body), (200, b"hi"), "GET over HTTPS")
        _, version = peer_cert(s.port)
        check(version in ("TLSv1.3", "TLSv1.2"), "protocol %s" % version)
        # Keep-alive over TLS.
        conn = http.client.HTTPSConnection("127.0.0.1", s.port, context=ctx,
                                           timeout=10)
        for _ in range(3):
            conn.request("GET", "/hello")
            check_eq(conn.getresponse().read(), b"hi", "keep-alive body")
        conn.close()
        # TLS 1.1 is refused, TLS 1.2 accepted (openssl s_client offers
        # exactly the version asked for).
        def handshake(flag):
            p = subprocess.run(
                ["openssl", "s_client", "-connect", "127.0.0.1:%d" % s.port,
                 flag, "-cipher", "DEFAULT@SECLEVEL=0"],
                input=b"", capture_output=True, timeout=20)
            out = p.stdout.decode("utf-8", "replace")
            return p.returncode == 0 and "Cipher is (NONE)" not in out
        check(handshake("-tls1_2"), "a TLS 1.2 handshake failed")
        check(not handshake("-tls1_1"), "a TLS 1.1 handshake succeeded")
        # Plain HTTP on the TLS port gets no HTTP answer.
        r = s.raw(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        check(r is None or r.status != 200, "plain HTTP served on TLS port")
        # The redirect listener: 308 to the same target over HTTPS.
        r = harness.request(rport, "/hello?a=1%20b", method="POST", body="x",
                            headers={"Host": "example.com:%d" % rport})
        check_eq((r.status, r.header("Location")),
                 (308, "https://example.com:%d/hello?a=1%%20b" % s.port),
                 "redirect to HTTPS")
        r = harness.request(rport, "/", headers={"Host": "bad host"})
        check_eq(r.status, 400, "redirect with an invalid Host")
        # A target as long as --max-header allows is redirected too: its
        # Location (the target again) once did not fit libmicrohttpd's
        # memory beside the request, and the connection closed silently.
        for n in (20000, 60000):
            target = b"/" + b"a" * n + b"?q=1"
            out, _ = plain_raw(rport, b"GET " + target + b" HTTP/1.1\r\n"
                               b"Host: example.com\r\n\r\n", timeout=10.0)
            check(out.startswith(b"HTTP/1.1 308 "),
                  "308 for a %d-byte target: %r" % (n, out[:60]))
            check_in(b"\r\nLocation: https://example.com:%d%s\r\n"
                     % (s.port, target), out, "the long Location")
        # The session cookie is Secure over HTTPS.
        status, headers, _, _ = tls_get(s.port, "/sess", ctx)
        cookie = headers.get("Set-Cookie", "")
        check_in("Secure", cookie, "session cookie over HTTPS")


def read_to_close(sock, timeout):
    """Everything sock reads until the peer closes or timeout seconds pass:
    (bytes, closed). An error reading (a reset, a TLS alert) ends it too."""
    out = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            d = sock.recv(65536)
        except (ssl.SSLError, OSError):
            return out, True
        if not d:
            return out, True
        out += d
    return out, False


def tls_raw(port, ctx, chunks, timeout=10.0):
    """Send chunks [(delay_s, bytes)] over TLS; everything read until the
    server closes (or timeout), decrypted."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    with ctx.wrap_socket(raw, server_hostname="localhost") as t:
        for delay, data in chunks:
            time.sleep(delay)
            t.sendall(data)
        return read_to_close(t, timeout)[0]


def test_https_edge_answers_refusals():
    """Over HTTPS the request edge answers as over HTTP, through the TLS
    session: a malformed request gets its 400 (after the good request
    before it in the pipeline), an oversized head 431, a head not complete
    within --header-timeout 408, each with the connection closed."""
    tmp = tempfile.mkdtemp(prefix="hotpub-tls-")
    cert, key = make_cert(tmp, "a")
    with Server(files={"hello.c": simple_page("hi")}, workers=1,
                args=["--tls-cert", cert, "--tls-key", key,
                      "--header-timeout", "1"]) as s:
        ctx = client_ctx(cert)
        out = tls_raw(s.port, ctx, [(0, b"GET /hello HTTP/1.1\r\nHost: x\r\n"
                                       b"Content-Length: 1\r\n"
                                       b"Content-Length: 2\r\n\r\n")])
        check(out.startswith(b"HTTP/1.1 400 "), "400 over TLS: %r" % out[:80])
        out = tls_raw(s.port, ctx, [(0, b"GET /hello HTTP/1.1\r\nHost: x\r\n"
                                       b"\r\nGET * HTTP/1.1\r\nHost: x\r\n\r\n")])
        check(out.startswith(b"HTTP/1.1 200 ") and
              b"HTTP/1.1 400 " in out and out.count(b"HTTP/1.1") == 2,
              "the good request answered, then 400: %r" % out[:300])
        out = tls_raw(s.port, ctx, [(0, b"GET /hello HTTP/1.1\r\nHost: x\r\n" +
                                       b"X-Big: " + b"a" * 20000 + b"\r\n\r\n")])
        check(out.startswith(b"HTTP/1.1 431 "), "431 over TLS: %r" % out[:80])
        t0 = time.monotonic()
        out = tls_raw(s.port, ctx, [(0, b"GET /hello HTTP/1.1\r\nHost")],
                      timeout=limit(6.0))
        check(out.startswith(b"HTTP/1.1 408 "), "408 over TLS: %r" % out[:80])
        check(time.monotonic() - t0 < limit(4.0), "the 408 came late")
        status, _, body, _ = tls_get(s.port, "/hello", ctx)
        check_eq((status, body), (200, b"hi"), "served after them")


# Requests the request edge refuses (framing.c), each on its own connection.
EDGE_FAULTS = [
    b"GET /hello HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n"
    b"Content-Length: 2\r\n\r\n",
    b"GET /hello HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
    b"Content-Length: 3\r\n\r\n",
    b"GET /hello HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
    b"GET /hello HTTP/1.1\r\nHost: x\r\nX-A : b\r\n\r\n",
    b"GET /a%00b HTTP/1.1\r\nHost: x\r\n\r\n",
    b"G3T /hello HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /hello HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
    b"TRACE /hello HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /hello HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 20000 + b"\r\n\r\n",
]


def test_tls_redirect_edge():
    """docs/security.md: the --tls-redirect listener's requests pass the
    same request edge as the main listener's: what the main listener
    refuses gets the same status there (never a 308), with the connection
    closed; a good request still gets its 308."""
    tmp = tempfile.mkdtemp(prefix="hotpub-tls-")
    cert, key = make_cert(tmp, "a")
    rport = harness.free_port()
    with Server(files={"hello.c": simple_page("hi")}, workers=1,
                args=["--tls-cert", cert, "--tls-key", key,
                      "--tls-redirect", "127.0.0.1:%d" % rport]) as s:
        ctx = client_ctx(cert)
        for req in EDGE_FAULTS:
            main = tls_raw(s.port, ctx, [(0, req)], timeout=5.0)
            check(main.startswith(b"HTTP/1.1 4") or
                  main.startswith(b"HTTP/1.1 5"),
                  "main listener refuses %r: %r" % (req[:60], main[:80]))
            red, closed = plain_raw(rport, req, timeout=5.0)
            check_eq(red[:12], main[:12], "redirect listener's status "
                     "for %r (main: %r)" % (req[:60], main[:40]))
            check(closed, "connection closed after %r" % req[:60])
        # A path climbing above the root: 400 on both, not a 308 to it.
        for path in (b"/../x", b"/%2e%2e/x", b"/a/../../x"):
            req = b"GET " + path + b" HTTP/1.1\r\nHost: example.com\r\n\r\n"
            main = tls_raw(s.port, ctx, [(0, req)], timeout=5.0)
            check(main.startswith(b"HTTP/1.1 400 "), "main listener: %r %r"
                  % (path, main[:40]))
            red, closed = plain_raw(rport, req, timeout=5.0)
            check(red.startswith(b"HTTP/1.1 400 "), "redirect listener: %r %r"
                  % (path, red[:40]))
        # A good request is still redirected, then the connection closes.
        out, closed = plain_raw(rport, b"GET /hello?a=1 HTTP/1.1\r\n"
                                b"Host: example.com\r\n\r\n", timeout=5.0)
        check(out.startswith(b"HTTP/1.1 308 "), "308: %r" % out[:80])
        check_in(b"Location: https://example.com:%d/hello?a=1" % s.port,
                 out, "Location")


def plain_raw(port, data, timeout=10.0):
    """Send data over plain TCP; (everything read, whether the server
    closed) as read_to_close."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as c:
        c.sendall(data)
        return read_to_close(c, timeout)


def test_https_port_answers_plain_http_400():
    """Plain HTTP sent to the HTTPS port (http:// typed for an https://
    address) gets a plain-text 400 saying so, as from nginx, and the
    connection is closed; bytes that are neither TLS nor a request line
    are closed on without an answer; TLS clients are served throughout,
    and each refusal is in the access log."""
    tmp = tempfile.mkdtemp(prefix="hotpub-tls-")
    cert, key = make_cert(tmp, "a")
    log = os.path.join(tmp, "access.log")
    with Server(files={"hello.c": simple_page("hi")}, workers=1,
                args=["--tls-cert", cert, "--tls-key", key,
                      "--access-log", log]) as s:
        ctx = client_ctx(cert)
        for req in (b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n",
                    b"POST /hello HTTP/1.0\r\nContent-Length: 0\r\n\r\n",
                    b"G"):
            out, closed = plain_raw(s.port, req)
            check(out.startswith(b"HTTP/1.1 400 Bad Request\r\n"),
                  "plain HTTP on the HTTPS port: %r" % out[:80])
            check_in(b"plain HTTP request was sent to the HTTPS port", out,
                     "the 400's body")
            check(closed, "the connection stayed open after the 400")
            status, _, body, _ = tls_get(s.port, "/hello", ctx)
            check_eq((status, body), (200, b"hi"), "TLS after plain HTTP")
        out, closed = plain_raw(s.port, b"\x00\x01\x02\x03garbage\r\n\r\n")
        check_eq(out, b"", "an answer to bytes that are no request")
        check(closed, "garbage left the connection open")
        status, _, body, _ = tls_get(s.port, "/hello", ctx)
        check_eq((status, body), (200, b"hi"), "TLS after garbage")
        wait_until(lambda: os.path.exists(log) and
                   open(log).read().count('" 400 ') >= 3, limit(3.0))
        check(open(log).read().count('" 400 ') >= 3,
              "the refusals in the access log: %r" % open(log).read())


CRASH2 = page(r"""
HP_HANDLER(http_handler)
{
    if (hp_arg(req, "boom"))
        *(volatile int *)0 = 1;
    hp_puts(req, "fine");
    return HP_OK;
}
""")

SPIN = page(r"""
HP_HANDLER(http_handler)
{
    for (;;)
        ;
    return HP_OK;
}
""")


def log_lines(path, needle):
    try:
        with open(path) as f:
            return [ln for ln in f if needle in ln]
    except OSError:
        return []


def test_access_log_and_metrics_of_a_dying_worker():
    """FRESH17-1, docs/operations.md "Logs": a worker that crashes loses
    none of the access log lines of the requests it completed (its buffer
    is written as it dies), and the answers it writes as it dies, the
    crash's 502 and the in-flight request's 503, have their lines and
    count in hotpub_http_requests_total."""
    tmp = tempfile.mkdtemp(prefix="hotpub-acc-")
    log = os.path.join(tmp, "access.log")
    with Server(files={"hello.c": simple_page("hi"), "crash2.c": CRASH2,
                       "slow.c": SLOW}, workers=1, dev=False,
                args=["--access-log", log]) as s:
        s.get_ok("/crash2")  # compiled and loaded before the counts
        s.get_ok("/slow")
        before, _ = parse_metrics(metrics(s))
        for i in range(3):
            s.get_ok("/hello?n=%d" % i)
        slow = BackgroundRequest(s.port, "/slow?ms=2000")
        slow.start()
        time.sleep(0.5)
        r = s.get("/crash2?boom=1")
        check_eq(r.status, 502, "the crashing request")
        got = slow.join_result(limit(10.0))
        check_eq(got.status, 503, "the request in flight in the worker")
        check_eq(got.header("Retry-After"), "1", "its Retry-After")
        wait_until(lambda: len(log_lines(log, '" 50')) >= 2, limit(3.0))
        for i in range(3):
            check(any('"GET /hello?n=%d HTTP/1.1" 200 2 ' % i in ln
                      for ln in log_lines(log, "/hello")),
                  "the line of /hello?n=%d, completed before the crash: %r"
                  % (i, log_lines(log, "")))
        check(log_lines(log, '"GET /crash2?boom=1 HTTP/1.1" 502 72 '),
              "no 502 line for the crash: %r" % log_lines(log, ""))
        check(log_lines(log, '"GET /slow?ms=2000 HTTP/1.1" 503 0 '),
              "no 503 line for the request in flight: %r"
              % log_lines(log, ""))

        def counted():
            after, _ = parse_metrics(metrics(s))
            return {p: sample(after, "hotpub_http_requests_total", page=p,
                              code="5xx")
                    - sample(before, "hotpub_http_requests_total", page=p,
                             code="5xx") for p in ("crash2.c", "slow.c")}
        wait_until(lambda: counted() == {"crash2.c": 1, "slow.c": 1},
                   limit(5.0))
        check_eq(counted(), {"crash2.c": 1, "slow.c": 1},
                 "5xx counted in hotpub_http_requests_total")


def _count_5xx(s, before, page_):
    after, _ = parse_metrics(metrics(s))
    return (sample(after, "hotpub_http_requests_total", page=page_,
                   code="5xx")
            - sample(before, "hotpub_http_requests_total", page=page_,
                     code="5xx"))


def test_access_log_and_metrics_of_a_dev_mode_crash_page():
    """Dev mode's crash page (a 502 with the backtrace) has its access log
    line, with the request's Referer and User-Agent and the body's bytes,
    and its count in hotpub_http_requests_total, as production's 502 has
    (before, it had neither: the crash page claimed the socket, so the
    dying worker's own answers skipped it)."""
    tmp = tempfile.mkdtemp(prefix="hotpub-acc-")
    log = os.path.join(tmp, "access.log")
    with Server(files={"hello.c": simple_page("hi"), "crash2.c": CRASH2},
                workers=1, dev=True, args=["--access-log", log]) as s:
        s.get_ok("/crash2")
        before, _ = parse_metrics(metrics(s))
        s.get_ok("/hello?n=1")
        r = s.get("/crash2?boom=1", headers={"Referer": "http://r.example/",
                                             "User-Agent": "crash-agent/1"})
        check_eq(r.status, 502, "the crashing request")
        check_in("crash2.c", r.text, "the crash page names the page")
        want = '"GET /crash2?boom=1 HTTP/1.1" 502 %d ' % len(r.body)
        wait_until(lambda: log_lines(log, want), limit(3.0))
        lines = log_lines(log, "/crash2?boom=1")
        check_eq(len(lines), 1, "lines of the crash: %r" % log_lines(log, ""))
        check(lines[0].rstrip("\n").endswith(
                  want + '"http://r.example/" "crash-agent/1"'),
              "the crash page's line: %r" % lines[0])
        check(log_lines(log, '"GET /hello?n=1 HTTP/1.1" 200 2 '),
              "the line of /hello before the crash: %r" % log_lines(log, ""))
        wait_until(lambda: _count_5xx(s, before, "crash2.c") == 1, limit(5.0))
        check_eq(_count_5xx(s, before, "crash2.c"), 1,
                 "the crash page in hotpub_http_requests_total")


EXIT_PAGE = page(r"""
HP_HANDLER(http_handler)
{
    if (hp_arg(req, "bye"))
        exit(3);
    hp_puts(req, "here");
    return HP_OK;
}
""", includes="#include <stdlib.h>")


def test_access_log_and_metrics_of_a_dev_mode_exit_page():
    """Dev mode: a page that calls exit gets the crash page saying so; it
    has its access log line and its count, as the crash's 502."""
    tmp = tempfile.mkdtemp(prefix="hotpub-acc-")
    log = os.path.join(tmp, "access.log")
    with Server(files={"ex.c": EXIT_PAGE}, workers=1, dev=True,
                args=["--access-log", log]) as s:
        s.get_ok("/ex")
        before, _ = parse_metrics(metrics(s))
        r = s.get("/ex?bye=1", headers={"User-Agent": "exit-agent/3"})
        check_eq(r.status, 502, "the page that called exit")
        want = '"GET /ex?bye=1 HTTP/1.1" 502 %d "-" "exit-agent/3"' \
            % len(r.body)
        wait_until(lambda: log_lines(log, want), limit(3.0))
        check_eq(len(log_lines(log, "/ex?bye=1")), 1,
                 "lines of the exit: %r" % log_lines(log, ""))
        check(log_lines(log, want), "no line %r: %r"
              % (want, log_lines(log, "")))
        wait_until(lambda: _count_5xx(s, before, "ex.c") == 1, limit(5.0))
        check_eq(_count_5xx(s, before, "ex.c"), 1,
                 "the exit's 502 in hotpub_http_requests_total")


INIT_CRASH_APP = page(r"""
HP_INIT
{
    volatile int *p = 0;
    *p = 1;
    return NULL;
}
""")

APP_PAGE = page(r"""
HP_HANDLER(http_handler)
{
    hp_puts(req, "app page");
    return HP_OK;
}
""")


def _init_crash_503_logged(dev):
    tmp = tempfile.mkdtemp(prefix="hotpub-acc-")
    log = os.path.join(tmp, "access.log")
    with Server(files={"hello.c": simple_page("hi"),
                       "sub/_app.c": INIT_CRASH_APP, "sub/page.c": APP_PAGE},
                workers=1, dev=dev, args=["--access-log", log]) as s:
        before, _ = parse_metrics(metrics(s))
        r = s.get("/sub/page", headers={"User-Agent": "init-agent/2"})
        check_eq(r.status, 503, "the request whose load ran the init")
        check(r.body, "a 503 with a body")
        want = '"GET /sub/page HTTP/1.1" 503 %d ' % len(r.body)
        wait_until(lambda: log_lines(log, want), limit(3.0))
        lines = log_lines(log, "/sub/page")
        check_eq(len(lines), 1, "lines of /sub/page: %r" % log_lines(log, ""))
        check(lines[0].rstrip("\n").endswith(want + '"-" "init-agent/2"'),
              "the 503's line: %r" % lines[0])
        wait_until(lambda: _count_5xx(s, before, "sub/page.c") == 1, limit(5.0))
        after, _ = parse_metrics(metrics(s))
        check_eq(sum(v - before.get(k, 0.0) for k, v in after.items()
                     if k[0] == "hotpub_http_requests_total"
                     and ("code", "5xx") in k[1]), 1.0,
                 "5xx counted in hotpub_http_requests_total")


def test_access_log_of_an_app_init_crash_503_production():
    """The 503 a worker answers as an application module's init crashes
    under the request that loaded it has its access log line (with the
    request's User-Agent) and its count; before, neither."""
    _init_crash_503_logged(False)


def test_access_log_of_an_app_init_crash_503_dev():
    """The same in dev mode, whose 503 is the crash page."""
    _init_crash_503_logged(True)


def test_access_log_and_metrics_of_the_handler_timeout_504():
    """The watchdog's 504 (--handler-timeout) is logged and counted when
    it is written, though the handler never returns."""
    tmp = tempfile.mkdtemp(prefix="hotpub-acc-")
    log = os.path.join(tmp, "access.log")
    with Server(files={"spin.c": SPIN, "hello.c": simple_page("hi")},
                workers=1, dev=False,
                args=["--access-log", log, "--handler-timeout", "1"]) as s:
        s.get_ok("/hello")
        r = s.get("/spin", timeout=limit(10.0))
        check_eq(r.status, 504, "the spinning page")
        wait_until(lambda: log_lines(log, '"GET /spin HTTP/1.1" 504 '),
                   limit(3.0))
        lines = log_lines(log, "/spin")
        check_eq(len(lines), 1, "lines of /spin: %r" % lines)
        check_in('"GET /spin HTTP/1.1" 504 ', lines[0], "the 504's line")

        def counted():
            after, _ = parse_metrics(metrics(s))
            return sample(after, "hotpub_http_requests_total",
                          page="spin.c", code="5xx")
        wait_until(lambda: counted() == 1, limit(3.0))
        check_eq(counted(), 1, "the 504 in hotpub_http_requests_total")


def test_https_crash_502_is_logged():
    """Over HTTPS the crash's 502 cannot be written in plaintext (the
    connection is closed): the access log still has its line, 0 bytes."""
    _https_crash_502_is_logged(False)


def test_https_dev_mode_crash_page_is_not_plaintext_and_is_logged():
    """The same in dev mode: the crash page is not written in plaintext
    inside the TLS session (it was: garbage to the client, and no line);
    the connection is closed and the line says 502, 0 bytes."""
    _https_crash_502_is_logged(True)


def _https_crash_502_is_logged(dev):
    tmp = tempfile.mkdtemp(prefix="hotpub-tls-")
    cert, key = make_cert(tmp, "a")
    log = os.path.join(tmp, "access.log")
    with Server(files={"hello.c": simple_page("hi"), "crash2.c": CRASH2},
                workers=1, dev=dev,
                args=["--tls-cert", cert, "--tls-key", key,
                      "--access-log", log]) as s:
        ctx = client_ctx(cert)
        check_eq(tls_get(s.port, "/hello", ctx)[0], 200, "/hello")
        try:
            status = tls_get(s.port, "/crash2?boom=1", ctx)[0]
        except (OSError, http.client.HTTPException):
            status = None
        check(status in (None, 502), "the crash over TLS: %r" % status)
        wait_until(lambda: log_lines(log, '" 502 '), limit(3.0))
        check(log_lines(log, '"GET /hello HTTP/1.1" 200 2 '),
              "the line of /hello before the crash: %r" % log_lines(log, ""))
        check(log_lines(log, '"GET /crash2?boom=1 HTTP/1.1" 502 0 '),
              "no 502 line for the crash over TLS: %r" % log_lines(log, ""))


def test_https_master_start_line_says_https():
    """The parent's start-up line names the scheme it serves: https:// on a
    TLS port."""
    tmp = tempfile.mkdtemp(prefix="hotpub-tls-")
    cert, key = make_cert(tmp, "a")
    with Server(files={"hello.c": simple_page("hi")}, workers=1,
                args=["--tls-cert", cert, "--tls-key", key]) as s:
        status, _, body, _ = tls_get(s.port, "/hello", client_ctx(cert))
        check_eq((status, body), (200, b"hi"), "served over TLS")
        err = s.stderr()
        check_in("worker processes on https://127.0.0.1:%d" % s.port, err,
                 "the master's start-up line")
        check_not_in("on http://", err, "the log")


def test_https_client_renegotiation_refused():
    """A TLS 1.2 client that asks to renegotiate (a CPU cost a client can
    repeat at will; nginx refuses it too) loses the connection; the same
    client without --rehandshake is served."""
    if not shutil.which("gnutls-cli"):
        raise Skip("gnutls-cli is not installed (gnutls-bin)")
    tmp = tempfile.mkdtemp(prefix="hotpub-tls-")
    cert, key = make_cert(tmp, "a")
    with Server(files={"hello.c": simple_page("hi")}, workers=1,
                args=["--tls-cert", cert, "--tls-key", key]) as s:
        def cli(extra):
            p = subprocess.Popen(
                ["gnutls-cli", "--insecure", "--priority",
                 "NORMAL:-VERS-ALL:+VERS-TLS1.2", "-p", str(s.port)] +
                extra + ["127.0.0.1"], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            time.sleep(1.0 * harness.SLACK)
            try:
                out, _ = p.communicate(
                    b"GET /hello HTTP/1.1\r\nHost: x\r\n"
                    b"Connection: close\r\n\r\n", timeout=limit(10))
            except subprocess.TimeoutExpired:
                p.kill()
                out, _ = p.communicate()
            return out.decode(errors="replace")
        plain = cli([])
        check_in("HTTP/1.1 200 OK", plain, "served over TLS 1.2")
        reneg = cli(["--rehandshake"])
        check_in("ReHandshake has failed", reneg, "renegotiation refused")
        check("HTTP/1.1 200" not in reneg, "served after a renegotiation")


def test_https_certificate_renewed_on_sighup_under_load():
    tmp = tempfile.mkdtemp(prefix="hotpub-tls-")
    cert, key = make_cert(tmp, "a")
    cert2, key2 = make_cert(tmp, "b")
    with Server(files={"hello.c": simple_page("hi")}, workers=2,
                args=["--tls-cert", cert, "--tls-key", key]) as s:
        first, _ = peer_cert(s.port)
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        stop = threading.Event()
        counts = {"ok": 0, "failed": 0}
        errors = []

        def load():
            while not stop.is_set():
                try:
                    status, _, body, _ = tls_get(s.port, "/hello", ctx)
                    ok = status == 200 and body == b"hi"
                except Exception as e:  # noqa: BLE001 - any failure counts
                    ok = False
                    errors.append(repr(e))
                counts["ok" if ok else "failed"] += 1

        threads = [threading.Thread(target=load) for _ in range(4)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        shutil.copy(cert2, cert)
        shutil.copy(key2, key)
        os.kill(s.proc.pid, signal.SIGHUP)
        renewed = wait_until(lambda: peer_cert(s.port)[0] != first, limit(5))
        time.sleep(0.5)
        stop.set()
        for t in threads:
            t.join(10)
        check(renewed, "the renewed certificate was not served")
        note("requests during the renewal: %d ok, %d failed"
             % (counts["ok"], counts["failed"]))
        check(counts["ok"] > 20, "too little load: %r" % counts)
        check_eq(counts["failed"], 0, "failed requests (%s)" % errors[:3])


# ---- the dashboard in headless Chromium, over the DevTools protocol ------

from browser import Browser  # noqa: E402


ROWS = ("Array.from(document.querySelectorAll('#%s tbody tr'))"
        ".map(r => Array.from(r.cells).map(c => c.textContent))")


def test_dashboard_in_headless_chromium():
    tmp = tempfile.mkdtemp(prefix="hotpub-chromium-")
    b = Browser(tmp)
    try:
        with Server(files={"hello.c": simple_page("v1"),
                           "about.c": simple_page("about")},
                    workers=2) as s:
            s.get_ok("/hello")
            s.get_ok("/about")
            b.connect()
            b.call("Page.enable")
            b.call("Page.navigate", url=s.url("/_hotpub/"))
            check(wait_until(lambda: b.eval("document.getElementById('state')"
                                            ".textContent") == "serving",
                             limit(10)), "the dashboard did not go live")
            # Each worker publishes its modules once a second: the one
            # that served about.c may be the other one.
            def names():
                return sorted(r[0] for r in b.eval(ROWS % "modules") or [])
            wait_until(lambda: names() == ["about.c", "hello.c"], limit(3))
            check_eq(names(), ["about.c", "hello.c"], "modules listed")
            workers = b.eval(ROWS % "workers") or []
            check_eq(len(workers), 2, "worker rows")
            pages = [r[0] for r in b.eval(ROWS % "pages") or []]
            check_in("hello.c", pages, "pages table")
            before = len(b.eval(ROWS % "reloads") or [])
            # An edit shows in the reload history without a page reload.
            b.eval("window.__marker = 1")
            s.write("hello.c", simple_page("v2"))
            s.wait_body("/hello", "v2", limit(5), allowed_bodies=("v1",))
            check(wait_until(lambda: len(b.eval(ROWS % "reloads") or [])
                             > before, limit(5)),
                  "the reload history did not update by itself")
            check_eq(b.eval("window.__marker"), 1,
                     "the page was reloaded (marker lost)")
            top = b.eval(ROWS % "reloads")[0]
            check_eq((top[1], top[3]), ("hello.c", "ok"), "newest reload")
    finally:
        b.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(harness.run_suite(globals(), sys.argv[1:],
                               suite_budget=SUITE_BUDGET,
                               test_timeout=TEST_TIMEOUT,
                               verbose_total=False))
