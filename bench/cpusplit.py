#!/usr/bin/env python3
"""cpusplit: where a request's CPU goes, hotpub against nginx, user and kernel.

For a page that does almost nothing (bench/tfb's /json and /plaintext, or
/hello), req/s is decided by the CPU each server spends per request; this
splits it into user space (the server's own code and its libraries) and
kernel (TCP over loopback, system calls), so that a gap can be named.

Method: hotpub (`--workers 1`, one event loop, the pages of bench/tfb/)
and nginx (1 worker, `return 200` of the same body) run at once, both
pinned to --server-cpu (1); `wrk -t1 -cN -dD` pinned to --client-cpu (0)
measures one, then the other, order alternating per round. CPU per
request = delta of utime (user) and stime (kernel) of every thread of the
server's processes (/proc/PID/task/*/stat) / requests. Prints each round
and the medians, and the per-round req/s ratio. No target: an explanation.

Usage: bench/cpusplit.sh [--path /json] [--rounds 8] [--conns 32]
       [--duration 4s] [--hotpub-args "..."]
Needs wrk, nginx, taskset.
"""
import argparse
import os
import re
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
BODIES = {"/json": ("application/json", '{"message":"Hello, World!"}'),
          "/plaintext": ("text/plain", "Hello, World!")}
NGINX = """worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  keepalive_requests 100000;  # as bench/benchlib.py: clients stay on keep-alive
  server {{
    listen 127.0.0.1:{port} backlog=4096;
{locations}
  }}
}}
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ticks(pid):
    """utime, stime (clock ticks) of every thread of pid and its children."""
    kids = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True,
                          text=True).stdout.split()
    u = s = 0
    for q in [pid] + [int(k) for k in kids]:
        try:
            for t in os.listdir("/proc/%d/task" % q):
                with open("/proc/%d/task/%s/stat" % (q, t)) as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                u += int(fields[11])
                s += int(fields[12])
        except OSError:
            pass  # a thread or child that ended meanwhile
    return u, s


def wrk(cpu, conns, duration, url):
    out = subprocess.run(["taskset", "-c", str(cpu), "wrk", "-t1",
                          "-c%d" % conns, "-d" + duration, url],
                         capture_output=True, text=True).stdout
    n = re.search(r"(\d+) requests in ([\d.]+)(m?s)", out)
    if not n:
        sys.exit("cpusplit: wrk printed no result:\n" + out)
    secs = float(n.group(2)) / (1000 if n.group(3) == "ms" else 1)
    return int(n.group(1)), secs


def wait_up(port, path):
    for _ in range(100):
        try:
            with socket.create_connection(("127.0.0.1", port), 0.2) as s:
                s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\nConnection: close"
                           "\r\n\r\n" % path).encode())
                if s.recv(12).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    sys.exit("cpusplit: no 200 for %s on port %d" % (path, port))


def main():
    ap = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--path", default="/json", choices=sorted(BODIES))
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--conns", type=int, default=32)
    ap.add_argument("--duration", default="4s")
    ap.add_argument("--server-cpu", type=int, default=1)
    ap.add_argument("--client-cpu", type=int, default=0)
    ap.add_argument("--hotpub", default=os.path.join(REPO, "hotpub"))
    ap.add_argument("--hotpub-args", default="")
    args = ap.parse_args()
    for tool in ("wrk", "nginx", "taskset"):
        if not shutil.which(tool):
            sys.exit("cpusplit: needs %s (sh tools/deps.sh --bench)" % tool)

    d = tempfile.mkdtemp(prefix="hotpub-cpusplit.")
    root = os.path.join(d, "root")
    shutil.copytree(os.path.join(HERE, "tfb"), root,
                    ignore=shutil.ignore_patterns("_php", "*.py", "*.sh"))
    hp_port, ng_port = free_port(), free_port()
    locations = "\n".join(
        "    location = %s { default_type %s; return 200 '%s'; }" % (p, t, b)
        for p, (t, b) in BODIES.items())
    with open(os.path.join(d, "nginx.conf"), "w") as f:
        f.write(NGINX.format(d=d, port=ng_port, locations=locations))
    cpu = str(args.server_cpu)
    hp = subprocess.Popen(
        ["taskset", "-c", cpu, args.hotpub, "serve", "--listen",
         "127.0.0.1:%d" % hp_port, "--cache-dir", os.path.join(d, "cache"),
         "--access-log", "off", "--no-dev", "--workers", "1",
         "--include-dir", os.path.join(REPO, "include")]
        + shlex.split(args.hotpub_args) + [root],
        stdout=subprocess.DEVNULL, stderr=open(os.path.join(d, "hotpub.log"),
                                               "w"))
    ng = subprocess.Popen(["taskset", "-c", cpu, "nginx", "-c",
                           os.path.join(d, "nginx.conf"), "-p", d],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    servers = [("hotpub", hp_port, hp), ("nginx", ng_port, ng)]
    res = {name: [] for name, _, _ in servers}
    try:
        for name, port, p in servers:
            wait_up(port, args.path)
            wrk(args.client_cpu, args.conns, "2s",  # warm-up, untimed
                "http://127.0.0.1:%d%s" % (port, args.path))
        print("cpusplit %s, %d rounds of wrk -t1 -c%d -d%s; hotpub %s" % (
            args.path, args.rounds, args.conns, args.duration,
            args.hotpub_args or "(defaults)"))
        for r in range(args.rounds):
            for name, port, p in servers if r % 2 == 0 else servers[::-1]:
                u0, s0 = ticks(p.pid)
                n, secs = wrk(args.client_cpu, args.conns, args.duration,
                              "http://127.0.0.1:%d%s" % (port, args.path))
                u1, s1 = ticks(p.pid)
                tick_us = 1e6 / os.sysconf("SC_CLK_TCK")
                row = (n / secs, (u1 - u0) * tick_us / n,
                       (s1 - s0) * tick_us / n)
                res[name].append(row)
                print("  round %d %-6s %8.0f req/s  user %5.2f us  kernel "
                      "%5.2f us" % (r + 1, name, *row), flush=True)
    finally:
        for _, _, p in servers:
            p.terminate()
            p.wait()
        shutil.rmtree(d, ignore_errors=True)
    for name, rows in res.items():
        med = [statistics.median(x[i] for x in rows) for i in range(3)]
        print("%-6s median %8.0f req/s  user %5.2f us  kernel %5.2f us  "
              "total %5.2f us" % (name, med[0], med[1], med[2],
                                  med[1] + med[2]))
    ratios = [a[0] / b[0] for a, b in zip(res["hotpub"], res["nginx"])]
    print("hotpub/nginx req/s per round: %s; median %.2f" % (
        " ".join("%.2f" % x for x in ratios), statistics.median(ratios)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
