#!/usr/bin/env python3
"""syscalls: system calls per request of the hello page in the steady state.

hotpub runs unpinned. The page is warmed (compiled, loaded, resolved) and a
keep-alive client connection is opened and used; only then is strace
attached (`strace -c -f -p PID -o FILE`, every thread). The client sends
exactly N (default 10,000) keep-alive requests on that connection, strace is
detached (SIGINT) before the connection closes, and the server is stopped
with SIGTERM. The same is done to nginx's worker as the peer, in the same
run. Printed: the counts of the stat family (stat, lstat, fstat, newfstatat,
statx), the open family (open, openat, openat2, creat) and access/faccessat,
per request, and all syscalls per request for both servers. hotpub is
then traced as long again with no request: the PASS/MISS lines count the
calls of the loaded window minus those of that idle one (the background:
the liveness census fstat()s the process's descriptors once a second).

Expected for hotpub: 0 stat/open per request (src/cache.c: "the steady
state makes no syscall"; src/resolve.c: "a repeated URL cost[s] no
syscalls"). PASS when each family is <= 0.001 per request (a few background
calls in 10k requests).
"""
import argparse
import os
import signal
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import (Bench, Hotpub, Nginx, hello_docroot, KAClient,  # noqa: E402
                      describe_env, die, have, hotpub_binary, log,
                      main_wrapper, note, passmiss)

STAT = ("stat", "lstat", "fstat", "newfstatat", "statx", "fstatat64",
        "stat64", "lstat64", "fstat64")
OPEN = ("open", "openat", "openat2", "creat")
ACCESS = ("access", "faccessat", "faccessat2")
LIMIT = 0.001


def parse_strace_c(path):
    counts = {}
    with open(path) as f:
        for line in f:
            p = line.split()
            if len(p) < 5 or p[-1] == "total" or p[0].startswith(("%", "-")):
                continue
            try:
                float(p[0])
                counts[p[-1]] = int(p[3])
            except ValueError:
                continue
    return counts


def all_traced(pids):
    for pid in pids:
        try:
            tids = os.listdir("/proc/%d/task" % pid)
        except OSError:
            return False
        for tid in tids:
            try:
                with open("/proc/%d/task/%s/status" % (pid, tid)) as f:
                    for line in f:
                        if line.startswith("TracerPid:"):
                            if int(line.split()[1]) == 0:
                                return False
            except OSError:
                pass
    return True


def traced_requests(b, name, pids, port, path, expect, n, idle=None):
    """Warm a keep-alive connection, attach strace, send n requests,
    detach; returns the syscall counts and the seconds traced. With idle
    (seconds), send nothing and stay attached that long instead: the
    background calls (the liveness census, timers) of the same window."""
    c = KAClient(port, timeout=30)
    for _ in range(50):
        st, body = c.get(path)
        if st != 200 or body != expect:
            die("%s %s answered %s %r" % (name, path, st, body[:200]))
    if c.reconnects:
        die("%s: warm-up connection was not kept alive" % name)
    if idle is not None:
        name += "-idle"
    out = b.path("strace-%s.txt" % name)
    argv = ["strace", "-c", "-f", "-o", out]
    for pid in pids:
        argv += ["-p", str(pid)]
    errf = open(b.path("strace-%s.err" % name), "wb")
    st = b.spawn(argv, stderr=errf)
    deadline = time.time() + 15
    while not all_traced(pids):
        if st.poll() is not None or time.time() > deadline:
            die("strace could not attach to %s %s" % (name, pids))
        time.sleep(0.02)
    time.sleep(0.2)
    t0 = time.time()
    bad = 0
    if idle is not None:
        time.sleep(idle)
        n = 0
    for _ in range(n):
        s, body = c.get(path)
        if s != 200 or body != expect:
            bad += 1
    dt = time.time() - t0
    b.stop(st, signal.SIGINT, timeout=30)  # detach: writes the summary
    errf.close()
    reconnects = c.reconnects
    c.close()
    if not os.path.exists(out) or os.path.getsize(out) == 0:
        die("strace wrote no summary for %s" % name)
    counts = parse_strace_c(out)
    if not counts:
        die("empty strace summary for %s" % name)
    note("%s: %d requests in %.1f s under strace, %d bad, %d reconnects"
         % (name, n, dt, bad, reconnects))
    return counts, bad + c.errors, dt


def fam(counts, names):
    return sum(counts.get(x, 0) for x in names)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=10000)
    ap.add_argument("--no-nginx", action="store_true", help="skip the peer")
    args = ap.parse_args()
    if not have("strace"):
        die("strace is not installed")
    n = args.requests

    b = Bench("syscalls")
    binary, src, digest = hotpub_binary(b)
    log("== syscalls: %d keep-alive requests of the hello page under "
        "strace -c -f (attached after warm-up, detached before close)" % n)
    describe_env(b, src, digest)
    docroot = hello_docroot(b)

    # One process (--workers 0): strace -p follows the process it is given,
    # and with worker processes the requests are served by the children;
    # each worker runs this same request path.
    hp = Hotpub(b, binary, docroot, b.path("cache"), extra=("--workers", "0"))
    hp_counts, hp_bad, dt = traced_requests(b, "hotpub", [hp.pid], hp.port,
                                            "/hello", "Hello, world!", n)
    # The same window with no request: what the process calls anyway (its
    # liveness census fstat()s its descriptors once a second), which a
    # per-request figure must not be charged.
    idle, _, _ = traced_requests(b, "hotpub", [hp.pid], hp.port, "/hello",
                                 "Hello, world!", n, idle=dt)
    hp.stop()
    note("hotpub idle for %.1f s under strace: %s" % (dt, ", ".join(
        "%s %d" % (k, v) for k, v in sorted(idle.items())) or "no calls"))
    hp_bg = {k: max(0, v - idle.get(k, 0)) for k, v in hp_counts.items()}
    results = {"hotpub": hp_counts}
    if not args.no_nginx:
        ng = Nginx(b)
        ng_counts, _, _ = traced_requests(b, "nginx", ng.workers(), ng.port,
                                          "/", "Hello, world!", n)
        ng.stop()
        results["nginx"] = ng_counts

    names = list(results)
    log("%-12s " % "syscall" + " ".join("%10s %8s" % (x, "per req")
                                        for x in names))
    for sc in STAT + OPEN + ACCESS:
        if any(sc in results[x] for x in names) or sc in (
                "stat", "statx", "newfstatat", "fstat", "open", "openat",
                "access"):
            log("%-12s " % sc + " ".join(
                "%10d %8.4f" % (results[x].get(sc, 0),
                                results[x].get(sc, 0) / n) for x in names))
    log("-- busiest syscalls")
    top = sorted(set().union(*[set(results[x]) for x in names]),
                 key=lambda s: -results["hotpub"].get(s, 0))[:12]
    for sc in top:
        log("%-12s " % sc + " ".join(
            "%10d %8.4f" % (results[x].get(sc, 0), results[x].get(sc, 0) / n)
            for x in names))
    tot = {x: sum(results[x].values()) for x in names}
    log("%-12s " % "ALL" + " ".join("%10d %8.2f" % (tot[x], tot[x] / n)
                                    for x in names))

    # The PASS/MISS lines: the loaded window minus the idle one.
    s_pr = fam(hp_bg, STAT) / n
    o_pr = fam(hp_bg, OPEN) / n
    a_pr = fam(hp_bg, ACCESS) / n
    log("(the lines below: calls during the requests minus those of the "
        "idle window)")
    log("hotpub stat-family calls per request: %.4f   (expect 0, <= %g) %s"
        % (s_pr, LIMIT, passmiss(s_pr <= LIMIT)))
    log("hotpub open-family calls per request: %.4f   (expect 0, <= %g) %s"
        % (o_pr, LIMIT, passmiss(o_pr <= LIMIT)))
    log("hotpub access-family calls per request: %.4f (expect 0, <= %g) %s"
        % (a_pr, LIMIT, passmiss(a_pr <= LIMIT)))
    line = ("RESULT syscalls stat_per_req=%.4f open_per_req=%.4f "
            "access_per_req=%.4f hotpub_all_per_req=%.2f stat=%s open=%s "
            "bad_responses=%d" % (s_pr, o_pr, a_pr, tot["hotpub"] / n,
                                  passmiss(s_pr <= LIMIT),
                                  passmiss(o_pr <= LIMIT), hp_bad))
    if "nginx" in tot:
        log("all syscalls per request: hotpub %.2f, nginx %.2f, ratio "
            "hotpub/nginx %.2fx" % (tot["hotpub"] / n, tot["nginx"] / n,
                                    tot["hotpub"] / max(1, tot["nginx"])))
        line += " nginx_all_per_req=%.2f ratio=%.2f" % (
            tot["nginx"] / n, tot["hotpub"] / max(1, tot["nginx"]))
    log(line)
    return 0


if __name__ == "__main__":
    main_wrapper(main)
