#!/usr/bin/env python3
"""ops: what HTTPS and the metrics cost (issue 15).

1. HTTPS, hotpub vs nginx with the same self-signed ECDSA P-256 certificate
   and TLS 1.2/1.3 AEAD ciphers, in the same run: the hello page over
   keep-alive (wrk -c50) and with a new connection, so a new handshake, per
   request (wrk -H "Connection: close"). req/s, server us CPU/request,
   ratios hotpub/nginx.
2. Metrics: the hello page on two hotpub servers in the same run, one with
   --no-metrics; server us CPU/request with and without the counting.

Method as bench/hello.py: servers pinned to CPU 1 (taskset), wrk to CPU 0,
measurements alternate from run to run, medians of --runs. hotpub runs
--workers 1 (one process, like nginx's one worker). Needs root for nothing;
needs nginx (tools/deps.sh --bench), wrk and openssl.
"""
import argparse
import os
import socket
import ssl
import subprocess
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import (CLK_TCK, Bench, Hotpub, add_run_args,  # noqa: E402
                      die, fmt_err, free_port, hello_docroot, hotpub_binary,
                      log, main_wrapper, median, nginx_conf, note, require,
                      run_wrk, start_nginx, tree_ticks)

NGINX_TLS = """        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305;
        ssl_session_cache off;
        ssl_session_tickets off;
        location / {{ return 200 "Hello, world!"; }}
"""
REQUEST = b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


def wait_hello(port, proc, what, tls, timeout):
    """Poll GET /hello (HTTPS when tls, certificate unchecked) every 0.1 s
    until it answers 200; dies when proc (a Popen) exits or after timeout
    seconds. Compiles hotpub's page before the warm-up."""
    ctx = None
    if tls:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            die("%s exited at start" % what)
        try:
            with socket.create_connection(("127.0.0.1", port), 1) as s:
                with (ctx.wrap_socket(s) if tls else s) as t:
                    t.sendall(REQUEST)
                    if t.recv(100).startswith(b"HTTP/1.1 200"):
                        return
        except OSError:
            pass
        time.sleep(0.1)
    die("%s did not answer%s" % (what, " over TLS" if tls else ""))


def hotpub(b, binary, docroot, cpu, extra, name):
    """hotpub --workers 1 (not waited for: it may speak TLS only)."""
    return Hotpub(b, binary, docroot, b.path("cache"), cpu=cpu, name=name,
                  extra=["--workers", "1"] + list(extra), wait=False)


def measure(b, proc, url, args, headers=()):
    t0 = tree_ticks(proc.pid)
    w = run_wrk(b, url, cpu=args.client_cpu, conns=args.conns,
                duration=args.duration, headers=headers)
    ticks = tree_ticks(proc.pid) - t0
    if w["requests"] <= 0:
        die("wrk counted no requests on %s" % url)
    w["cpu_us"] = ticks / CLK_TCK / w["requests"] * 1e6
    return w


def compare(b, args, servers, headers, title):
    """servers: {name: (proc, url)}; returns {name: (rps, cpu_us, errors)}."""
    names = list(servers)
    for n in names:
        run_wrk(b, servers[n][1], cpu=args.client_cpu, conns=args.conns,
                duration=args.warmup, headers=headers)
    res = {n: [] for n in names}
    for i in range(args.runs):
        order = names if i % 2 == 0 else list(reversed(names))
        for n in order:
            w = measure(b, servers[n][0], servers[n][1], args, headers)
            res[n].append(w)
            log("%-22s run %d %-14s %9.0f req/s %8.2f us cpu/req  p99 %.2fms  %s"
                % (title, i + 1, n, w["rps"], w["cpu_us"], w["lat_p99"] * 1e3,
                   fmt_err(w)))
    return {n: (median([w["rps"] for w in res[n]]),
                median([w["cpu_us"] for w in res[n]]),
                sum(w["errors"] for w in res[n])) for n in names}


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_args(ap)
    args = ap.parse_args()
    require(("nginx", "wrk", "openssl"))
    b = Bench("ops")
    binary, _, _ = hotpub_binary(b)
    docroot = hello_docroot(b)
    cert, key = b.path("cert.pem"), b.path("key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", key,
                    "-out", cert, "-days", "2", "-subj", "/CN=localhost"],
                   check=True, capture_output=True)

    # 1. HTTPS
    hp = hotpub(b, binary, docroot, args.server_cpu,
                ["--tls-cert", cert, "--tls-key", key], "hotpub-tls")
    wait_hello(hp.port, hp.proc, "hotpub", True, 20)
    d = b.path("nginx")
    os.makedirs(d, exist_ok=True)
    ng_port = free_port()
    with open(os.path.join(d, "nginx.conf"), "w") as f:
        f.write(nginx_conf(d, ng_port, NGINX_TLS.format(cert=cert, key=key),
                           listen=" ssl"))
    ng = start_nginx(b, d, args.server_cpu)
    wait_hello(ng_port, ng.proc, "nginx", True, 20)
    tls = {"hotpub": (hp, "https://127.0.0.1:%d/hello" % hp.port),
           "nginx": (ng, "https://127.0.0.1:%d/" % ng_port)}
    ka = compare(b, args, tls, (), "https keep-alive")
    hs = compare(b, args, tls, ("Connection: close",), "https handshake/req")
    hp.stop()
    ng.stop()

    # 2. metrics on and off
    on = hotpub(b, binary, docroot, args.server_cpu, [], "metrics-on")
    off = hotpub(b, binary, docroot, args.server_cpu, ["--no-metrics"],
                 "metrics-off")
    wait_hello(on.port, on.proc, "hotpub", False, 30)
    wait_hello(off.port, off.proc, "hotpub --no-metrics", False, 30)
    met = compare(b, args, {
        "metrics": (on, "http://127.0.0.1:%d/hello" % on.port),
        "no-metrics": (off, "http://127.0.0.1:%d/hello" % off.port)},
        (), "http keep-alive")
    on.stop()
    off.stop()

    note("medians of %d runs, wrk -t1 -c%d -d%s" % (args.runs, args.conns,
                                                   args.duration))
    for title, r in (("keep-alive", ka), ("handshake/request", hs)):
        log("https %-18s hotpub %8.0f req/s %7.2f us/req | nginx %8.0f req/s "
            "%7.2f us/req | req/s ratio %.2f, cpu ratio %.2f | errors %d/%d" %
            (title, r["hotpub"][0], r["hotpub"][1], r["nginx"][0],
             r["nginx"][1], r["hotpub"][0] / r["nginx"][0],
             r["hotpub"][1] / r["nginx"][1], r["hotpub"][2], r["nginx"][2]))
    log("metrics: %.2f us cpu/req with, %.2f without (%+.2f us, %+.1f%%); "
        "req/s %.0f vs %.0f" %
        (met["metrics"][1], met["no-metrics"][1],
         met["metrics"][1] - met["no-metrics"][1],
         100 * (met["metrics"][1] / met["no-metrics"][1] - 1),
         met["metrics"][0], met["no-metrics"][0]))
    log("RESULT ops tls_ka_ratio=%.2f tls_hs_ratio=%.2f metrics_us=%.2f "
        "no_metrics_us=%.2f" %
        (ka["hotpub"][0] / ka["nginx"][0], hs["hotpub"][0] / hs["nginx"][0],
         met["metrics"][1], met["no-metrics"][1]))
    return 0


if __name__ == "__main__":
    main_wrapper(main)
