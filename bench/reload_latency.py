#!/usr/bin/env python3
"""reload_latency: how long an edit takes to show, under load, and whether
any request fails meanwhile.

Layout (as in hello): server pinned to CPU 1 (the compiler it spawns
inherits that), wrk -t1 -c20 and this poller pinned to CPU 0; --no-pin
lets everything float. wrk keeps loading the edited page (--load same,
default) or another page (--load other) for the whole run.

Each of 20 edits writes a temp file next to the page and renames it over
the page (a new counter value in the output each time). Latency = time from
the rename returning to the first response showing the new value, polled
on one keep-alive connection every ~2 ms. After each edit the poller keeps
polling for --hold ms to catch a response going back to an old value.

Printed: median and p99 latency; failed requests seen by wrk (non-2xx,
socket errors incl. its 2 s timeouts) and by the poller (non-200, errors,
wrong/old value after the new one was seen, edits never seen). Target:
0 failed requests.
"""
import argparse
import os
import signal
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import (Bench, Hotpub, HELLO_C, KAClient, describe_env,  # noqa: E402
                      die, fmt_err, have, hotpub_binary, log, main_wrapper,
                      median, note, p99, parse_wrk, passmiss, wrk_argv)

PAGE = r"""#include <hotpub.h>

/* edited by bench/reload_latency.py: version %(n)d */
HP_HANDLER(http_handler)
{
    hp_printf(req, "count=%%d", %(n)d);
    return HP_OK;
}
"""


def write_page(path, n):
    tmp = os.path.join(os.path.dirname(path), ".%s.tmp" % os.path.basename(path))
    with open(tmp, "w") as f:
        f.write(PAGE % {"n": n})
    os.rename(tmp, path)
    return time.perf_counter()


def bare_compile_ms(b, page, cflags, cpu, n=5):
    """The compile alone, as hotpub runs it (cc, flags, -fPIC -shared ...),
    on the server's cpu: the floor under the reload latency."""
    from benchlib import REPO
    import subprocess
    out = b.path("bare.so")
    argv = ["cc"] + (cflags.split() if cflags is not None else ["-O2"]) + [
        "-fPIC", "-shared", "-fvisibility=hidden",
        "-I" + os.path.join(REPO, "include"), "-iquote",
        os.path.dirname(page), "-MD", "-MF", b.path("bare.d"), "-o", out, page]
    if cpu is not None:
        argv = ["taskset", "-c", str(cpu)] + argv
    ts = []
    for _ in range(n):
        t0 = time.perf_counter()
        if subprocess.run(argv, capture_output=True, timeout=60).returncode:
            return float("nan")
        ts.append(time.perf_counter() - t0)
    return median(ts) * 1e3


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--edits", type=int, default=20)
    ap.add_argument("--conns", type=int, default=20,
                    help="wrk -c; 0 = no background load (a baseline)")
    ap.add_argument("--load", choices=("same", "other"), default="same")
    ap.add_argument("--interval-ms", type=float, default=2.0)
    ap.add_argument("--hold", type=float, default=200.0,
                    help="ms to keep polling after the new value shows")
    ap.add_argument("--edit-timeout", type=float, default=30.0)
    ap.add_argument("--no-pin", action="store_true")
    ap.add_argument("--cflags", default=None, help="pass --cflags to hotpub")
    args = ap.parse_args()
    if not have("wrk"):
        die("wrk is not installed")
    srv_cpu, cli_cpu = (None, None) if args.no_pin else (1, 0)

    b = Bench("reload-latency")
    binary, src, digest = hotpub_binary(b)
    log("== reload_latency: %d edits (write temp + rename) under %s; "
        "poll every %.0f ms; %s" %
        (args.edits, "wrk -t1 -c%d on the %s page" % (args.conns, args.load)
         if args.conns > 0 else "no load", args.interval_ms,
         "unpinned" if args.no_pin else "server cpu 1, wrk+poller cpu 0"))
    describe_env(b, src, digest)
    if cli_cpu is not None:
        os.sched_setaffinity(0, {cli_cpu})
    docroot = b.path("root")
    os.makedirs(docroot)
    with open(os.path.join(docroot, "hello.c"), "w") as f:
        f.write(HELLO_C)
    page = os.path.join(docroot, "counter.c")
    write_page(page, 0)
    bare_before = bare_compile_ms(b, page, args.cflags, srv_cpu)
    extra = ["--cflags", args.cflags] if args.cflags is not None else []
    hp = Hotpub(b, binary, docroot, b.path("cache"), extra=extra, cpu=srv_cpu)

    poller = KAClient(hp.port, timeout=60)
    st, body = poller.get("/counter")
    if st != 200 or body != "count=0":
        die("/counter answered %s %r\n%s" % (st, body[:300], hp.log_tail()))
    st, body = poller.get("/hello")
    if st != 200:
        die("/hello answered %s" % st)
    compiles0 = hp.status()["server"]["compiles"]

    load_path = "/counter" if args.load == "same" else "/hello"
    wrk_out = b.path("wrk-load.out")
    wf = open(wrk_out, "wb")
    budget = int(args.edits * (args.edit_timeout + 2) + 30)
    wrk = None
    if args.conns > 0:
        wrk = b.spawn(wrk_argv("http://%s%s" % (hp.base, load_path), 1,
                               args.conns, "%ds" % budget), cpu=cli_cpu,
                      stdout=wf, stderr=wf)
        time.sleep(1.0)
        if wrk.poll() is not None:
            die("wrk exited early")

    lat, events = [], []
    fails = {"poll_non200": 0, "poll_errors": 0, "reverted": 0,
             "unexpected": 0, "not_seen": 0}
    interval = args.interval_ms / 1000.0
    t_start = time.time()
    for i in range(1, args.edits + 1):
        want, old = "count=%d" % i, "count=%d" % (i - 1)
        t0 = write_page(page, i)
        seen = None
        polls = 0
        while time.perf_counter() - t0 < args.edit_timeout:
            st, body = poller.get("/counter")
            now = time.perf_counter()
            polls += 1
            if st is None:
                fails["poll_errors"] += 1
                events.append("edit %d: poll error %s" % (i, body))
            elif st != 200:
                fails["poll_non200"] += 1
                events.append("edit %d: HTTP %d %r" % (i, st, body[:120]))
            elif body == want:
                seen = now - t0
                break
            elif body != old:
                fails["unexpected"] += 1
                events.append("edit %d: unexpected body %r" % (i, body[:120]))
            time.sleep(interval)
        if seen is None:
            fails["not_seen"] += 1
            events.append("edit %d: new value not seen in %.0f s" %
                          (i, args.edit_timeout))
            continue
        lat.append(seen)
        t_hold = time.perf_counter()
        while time.perf_counter() - t_hold < args.hold / 1000.0:
            st, body = poller.get("/counter")
            if st is None:
                fails["poll_errors"] += 1
                events.append("edit %d (hold): poll error %s" % (i, body))
            elif st != 200:
                fails["poll_non200"] += 1
                events.append("edit %d (hold): HTTP %d" % (i, st))
            elif body != want:
                fails["reverted"] += 1
                events.append("edit %d (hold): went back to %r" % (i, body[:60]))
            time.sleep(interval)
    elapsed = time.time() - t_start
    bare_after = bare_compile_ms(b, page, args.cflags, srv_cpu)
    time.sleep(0.3)
    if wrk is not None:
        if wrk.poll() is None:
            os.kill(wrk.pid, signal.SIGINT)  # wrk prints its statistics
        try:
            wrk.wait(timeout=15)
        except Exception:
            b.stop(wrk, signal.SIGKILL)
    wf.close()
    with open(wrk_out, encoding="utf-8", errors="replace") as f:
        wtext = f.read()
    if wrk is None:
        wtext = "0 requests in 0.00s\nRequests/sec: 0\n"
    w = parse_wrk(wtext)
    if w is None:
        die("could not parse wrk's output:\n%s" % wtext)
    if hp.proc.poll() is not None:
        die("hotpub died during the run:\n%s" % hp.log_tail())
    stat = hp.status()
    mod = [m for m in stat["modules"] if m["path"].endswith("/counter.c")][0]
    compiles = stat["server"]["compiles"] - compiles0

    poll_fail = sum(fails.values())
    total_fail = poll_fail + w["errors"]
    for e in events[:15]:
        note(e)
    if len(events) > 15:
        note("... %d more poller events" % (len(events) - 15))
    log("latencies ms: " + " ".join("%.0f" % (x * 1e3) for x in lat))
    log("reload latency: median %.1f ms, p99 %.1f ms, max %.1f ms "
        "(%d of %d edits seen, %d compiles)" %
        (median(lat) * 1e3, p99(lat) * 1e3, max(lat or [float("nan")]) * 1e3,
         len(lat), args.edits, compiles))
    log("peer: the bare compile (cc %s, same flags, same cpu, no load): "
        "median %.0f ms before, %.0f ms after the edits; latency - compile "
        "= %.0f ms" % (args.cflags or "-O2", bare_before, bare_after,
                        median(lat) * 1e3 - (bare_before + bare_after) / 2))
    log("wrk on %s during the edits: %d requests in %.1f s (%.0f req/s), "
        "p99 %.1f ms, max %.1f ms, %s" %
        (load_path, w["requests"], w["seconds"], w["rps"],
         w["lat_p99"] * 1e3, w["lat_max"] * 1e3, fmt_err(w)))
    log("poller: %s, reconnects %d" %
        (" ".join("%s=%d" % kv for kv in fails.items()), poller.reconnects))
    log("failed requests: wrk %d + poller %d = %d   (target 0) %s" %
        (w["errors"], poll_fail, total_fail, passmiss(total_fail == 0)))
    log("after the edits: current id %s, retired %d, inflight %s" %
        (mod["current"]["id"] if mod["current"] else None, len(mod["retired"]),
         mod["current"]["inflight"] if mod["current"] else None))
    note("edits took %.1f s in all" % elapsed)
    log("RESULT reload_latency median_ms=%.1f p99_ms=%.1f seen=%d/%d "
        "wrk_errors=%d poller_errors=%d failed=%s wrk_max_ms=%.0f "
        "bare_compile_ms=%.0f" %
        (median(lat) * 1e3, p99(lat) * 1e3, len(lat), args.edits,
         w["errors"], poll_fail, passmiss(total_fail == 0), w["lat_max"] * 1e3,
         (bare_before + bare_after) / 2))
    poller.close()
    hp.stop()
    if not lat:
        die("no edit was ever seen")
    return 0


if __name__ == "__main__":
    main_wrapper(main)
