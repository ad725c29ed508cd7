#!/usr/bin/env python3
"""hello: the hello page on hotpub vs nginx `return 200 "Hello, world!"`.

Method: both servers run at once, pinned to CPU 1 (taskset -c 1); wrk
-t1 -c50 -d10s (keep-alive) pinned to CPU 0 measures one, then the other,
in the same run (order alternates from run to run); 3 runs; medians.
Server CPU per request = delta(utime+stime of the server process, nginx:
master + worker) / CLK_TCK / requests. Target: hotpub/nginx req/s >= 0.8
(goal 0.9).
"""
import argparse
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import (Bench, Hotpub, Nginx, add_run_args,  # noqa: E402
                      describe_env, die, fmt_err, hello_docroot, hotpub_binary,
                      http_get, log, log_noise, main_wrapper, measure_cpu,
                      median, note, passmiss, run_wrk, tree_ticks)

TARGET, GOAL = 0.8, 0.9
NOISY = 25.0  # other% above this: another process competed for the cpus


def measure(b, name, srv, url, args):
    """measure_cpu of one wrk run; server CPU: the process (nginx: master +
    worker)."""
    return measure_cpu(name, lambda: tree_ticks(srv.pid),
                       lambda: srv.proc.poll() is None, args.server_cpu,
                       lambda: run_wrk(b, url, cpu=args.client_cpu,
                                       conns=args.conns,
                                       duration=args.duration,
                                       headers=args.headers))


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_args(ap)
    ap.add_argument("--hotpub-args", default="",
                    help="not the method: more hotpub flags, e.g. "
                    "\"--inline false\" (every request on a handler thread)")
    ap.add_argument("--close", action="store_true",
                    help="not the method: send Connection: close (a new "
                    "connection, so a new hotpub thread, per request)")
    args = ap.parse_args()
    args.headers = ["Connection: close"] if args.close else []

    b = Bench("hello")
    binary, src, digest = hotpub_binary(b)
    log("== hello: hotpub vs nginx, %d runs of wrk -t1 -c%d -d%s (%s); "
        "servers on cpu %d, wrk on cpu %d" % (args.runs, args.conns,
                                             args.duration,
                                             "Connection: close" if args.close
                                             else "keep-alive", args.server_cpu,
                                             args.client_cpu))
    describe_env(b, src, digest)
    docroot = hello_docroot(b)

    hp = Hotpub(b, binary, docroot, b.path("cache"), cpu=args.server_cpu,
                extra=args.hotpub_args.split())
    if args.hotpub_args:
        note("hotpub flags added: %s" % args.hotpub_args)
    ng = Nginx(b, cpu=args.server_cpu)
    note("hotpub pid %d, nginx master %d workers %s; nginx keepalive_requests "
         "100000 so both stay on keep-alive" % (hp.pid, ng.pid, ng.workers()))

    hp_url = "http://127.0.0.1:%d/hello" % hp.port
    ng_url = "http://127.0.0.1:%d/" % ng.port
    for name, port, path in (("hotpub", hp.port, "/hello"),
                             ("nginx", ng.port, "/")):
        st, body = http_get(port, path, timeout=60)  # hotpub compiles here
        if st != 200 or body != "Hello, world!":
            die("%s %s answered %s %r" % (name, path, st, body[:200]))

    servers = {"hotpub": (hp, hp_url), "nginx": (ng, ng_url)}
    for name in ("hotpub", "nginx"):
        run_wrk(b, servers[name][1], cpu=args.client_cpu, conns=args.conns,
                duration=args.warmup, headers=args.headers)

    res = {"hotpub": [], "nginx": []}
    log("%-3s %-6s %9s %11s %6s %6s %6s %6s %9s  %s" %
        ("run", "server", "req/s", "us cpu/req", "srv%", "cpu1%", "sirq%",
         "other%", "p99", "errors"))
    for i in range(args.runs):
        order = ["hotpub", "nginx"] if i % 2 == 0 else ["nginx", "hotpub"]
        for name in order:
            srv, url = servers[name]
            w = measure(b, name, srv, url, args)
            res[name].append(w)
            log("%-3d %-6s %9.0f %11.2f %6.1f %6.1f %6.1f %6.1f %7.2fms  %s%s" %
                (i + 1, name, w["rps"], w["cpu_us"], w["srv_pct"],
                 w["cpu1_busy_pct"], w["cpu1_softirq_pct"], w["other_pct"],
                 w["lat_p99"] * 1e3, fmt_err(w),
                 ("  <-- FAILED REQUESTS" if w["errors"] else "") +
                 ("  NOISY" if w["other_pct"] > NOISY else "")))

    med = {n: {"rps": median([w["rps"] for w in res[n]]),
               "cpu_us": median([w["cpu_us"] for w in res[n]])}
           for n in res}
    errors = {n: sum(w["errors"] for w in res[n]) for n in res}
    ratio = med["hotpub"]["rps"] / med["nginx"]["rps"]
    cpu_ratio = med["hotpub"]["cpu_us"] / med["nginx"]["cpu_us"]
    spread = {n: (min(w["rps"] for w in res[n]), max(w["rps"] for w in res[n]))
              for n in res}
    note("srv%% = server process cpu, cpu1%% = all of cpu %d busy, sirq%% = its "
         "softirq share, other%% = all cpus minus server and wrk (noise from "
         "other processes + uncharged softirq), each in %% of one cpu"
         % args.server_cpu)
    log("median hotpub: %8.0f req/s  %6.2f us cpu/req  (runs %0.f..%0.f)" %
        (med["hotpub"]["rps"], med["hotpub"]["cpu_us"], *spread["hotpub"]))
    log("median nginx:  %8.0f req/s  %6.2f us cpu/req  (runs %0.f..%0.f)" %
        (med["nginx"]["rps"], med["nginx"]["cpu_us"], *spread["nginx"]))
    log("ratio req/s hotpub/nginx: %.2fx   target >= %.1fx %s   goal >= %.1fx %s" %
        (ratio, TARGET, passmiss(ratio >= TARGET), GOAL,
         passmiss(ratio >= GOAL)))
    log("ratio cpu/request hotpub/nginx: %.2fx" % cpu_ratio)
    noisy = log_noise([w for n in res for w in res[n]], NOISY)
    log("failed requests (non-2xx + socket errors): hotpub %d, nginx %d %s" %
        (errors["hotpub"], errors["nginx"],
         passmiss(errors["hotpub"] == 0)))
    log("RESULT hello hotpub_rps=%.0f nginx_rps=%.0f ratio=%.2f target=%s "
        "goal=%s hotpub_us_req=%.2f nginx_us_req=%.2f cpu_ratio=%.2f "
        "hotpub_errors=%d noisy=%d" %
        (med["hotpub"]["rps"], med["nginx"]["rps"], ratio,
         passmiss(ratio >= TARGET), passmiss(ratio >= GOAL),
         med["hotpub"]["cpu_us"], med["nginx"]["cpu_us"], cpu_ratio,
         errors["hotpub"], noisy))
    hp.stop()
    ng.stop()
    return 0


if __name__ == "__main__":
    main_wrapper(main)
