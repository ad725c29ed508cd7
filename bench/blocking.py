#!/usr/bin/env python3
"""blocking: a fast page's throughput and p99 while N requests block 2 s,
on hotpub vs the mod_python publisher (Apache mpm_event, 2 x 64 threads)
vs PHP-FPM behind nginx (pm = static 4, and pm = dynamic up to 50).

Pages, on every server: `slow` sleeps 2 s then answers "slow"; `fast`
answers "Hello, world!" (hotpub: slow.c and fast.c; PHP: slow.php and
fast.php; mod_python: slow.py and fast.py, each `def index(req)`).

Method, per server and per N in --blocking (default 40,200): a fresh
server (pinned to CPU 1 by taskset; children inherit it), warmed up with
50 requests to the fast page (hotpub promotes it to the event loops after
32) and one to the slow page (hotpub demotes it to the handler threads at
its first run, as it would be in production after its first 2 s run); then
N clients (threads of this process, pinned with it to CPU 0), each with a
keep-alive connection, request the slow page over and over so that N of
them are always in flight; after a 1 s ramp, `wrk -t1 -c10 -dDURATION
--timeout 5s --latency` on the fast page (CPU 0). Reported: the fast
page's req/s, p50, p99 and failed requests (non-2xx + socket errors, wrk's
timeouts included: a request that waited over 5 s), and the slow
requests completed meanwhile. The server is stopped after each
measurement: requests queued behind the slow ones (PHP-FPM's backlog)
would otherwise spill into the next one. --runs (default 3) repeats it
all, servers in rotating order; medians. Ratios: hotpub's fast-page req/s
over each peer's, and each peer's p99 over hotpub's (how many times
higher). A server that answered no fast request in a run counts 0 req/s
and the p99 as the 5 s timeout. Needs root (the peers drop to www-data)
and `tools/deps.sh --bench`.

hotpub: --workers 0 --no-dev --access-log off and its defaults
(--threads 2 x CPUs, --max-threads 256, --module-thread-share 50: the slow
page runs on at most 128 threads at once, the rest of it queues).
"""
import argparse
import os
import pwd
import signal
import sys
import threading
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402
from benchlib import (APACHE_MPM_DESC, WEB_USER, Bench,  # noqa: E402
                      FpmNginx, Hotpub, ModPythonApache, add_run_args,
                      describe_env, die, fmt_err, fpm_conf, fpm_server,
                      free_port, have, hotpub_binary, http_get, log,
                      main_wrapper, median, nginx_conf, note, write_files)

SLEEP = 2
WRK_TIMEOUT = 5
PACKAGES = "php8.2-fpm nginx-light apache2 libapache2-mod-python wrk"
FAST_BODY = "Hello, world!"

HP_SLOW = """#include <hotpub.h>
#include <unistd.h>

HP_HANDLER(http_handler)
{
    sleep(%d);
    hp_puts(req, "slow");
    return HP_OK;
}
""" % SLEEP

HP_FAST = """#include <hotpub.h>

HP_HANDLER(http_handler)
{
    hp_puts(req, "%s");
    return HP_OK;
}
""" % FAST_BODY

PHP_SLOW = "<?php\nsleep(%d);\necho 'slow';\n" % SLEEP
PHP_FAST = "<?php\necho '%s';\n" % FAST_BODY
PY_SLOW = """import time


def index(req):
    time.sleep(%d)
    return 'slow'
""" % SLEEP
PY_FAST = """def index(req):
    return '%s'
""" % FAST_BODY

FPM_STATIC = """pm = static
pm.max_children = 4"""
FPM_DYNAMIC = """pm = dynamic
pm.max_children = 50
pm.start_servers = 4
pm.min_spare_servers = 2
pm.max_spare_servers = 8"""

# ---- servers ----------------------------------------------------------------

class HotpubSrv:
    def __init__(self, b, binary, cpu, tag, extra):
        root = b.path("hp-root")
        if not os.path.isdir(root):
            os.makedirs(root)
            write_files(root, (("slow.c", HP_SLOW), ("fast.c", HP_FAST)))
        self.hp = Hotpub(b, binary, root, b.path("hp-cache"),
                         extra=["--workers", "0"] + extra, cpu=cpu,
                         name="hotpub-%s" % tag)
        self.port = self.hp.port
        self.fast, self.slow = "/fast", "/slow"

    def stop(self):
        self.hp.stop()


class PhpFpmSrv(FpmNginx):
    """php-fpm (pm as given) + nginx (1 worker) in front of it."""

    def __init__(self, b, cpu, tag, pm, user):
        d = b.path("php-%s" % tag)
        os.makedirs(os.path.join(d, "www"))
        write_files(os.path.join(d, "www"), (("slow.php", PHP_SLOW),
                                             ("fast.php", PHP_FAST)))
        port = free_port()
        super().__init__(b, d, port, cpu, user,
                         nginx_conf(d, port, fpm_server(d), user=user.pw_name),
                         fpm_conf(d, user.pw_name, pm, backlog=1024),
                         "/fast.php", hint="tools/deps.sh --bench: %s"
                         % PACKAGES, stop_signal=signal.SIGTERM)
        self.fast, self.slow = "/fast.php", "/slow.php"


class ModPythonSrv(ModPythonApache):
    def __init__(self, b, cpu, tag, user):
        d = b.path("modpython-%s" % tag)
        os.makedirs(os.path.join(d, "www"))
        write_files(os.path.join(d, "www"), (("slow.py", PY_SLOW),
                                             ("fast.py", PY_FAST)))
        super().__init__(b, d, cpu, user, "/fast.py",
                         hint="tools/deps.sh --bench: %s" % PACKAGES)
        self.fast, self.slow = "/fast.py", "/slow.py"


SERVERS = ["hotpub", "mod_python", "php-fpm-static4", "php-fpm-dynamic50"]


def start(b, name, binary, args, user, tag):
    cpu = args.server_cpu
    if name == "hotpub":
        return HotpubSrv(b, binary, cpu, tag, args.hotpub_args.split())
    if name == "mod_python":
        return ModPythonSrv(b, cpu, tag, user)
    if name == "php-fpm-static4":
        return PhpFpmSrv(b, cpu, tag, FPM_STATIC, user)
    return PhpFpmSrv(b, cpu, tag, FPM_DYNAMIC, user)


# ---- the blocking clients ---------------------------------------------------

class Blockers:
    """n threads, each keeping one request to the slow page in flight."""

    def __init__(self, port, path, n):
        self.port, self.path = port, path
        self.stop_at = None
        self.lock = threading.Lock()
        self.done = self.failed = 0
        self.window = None  # (t0, t1): count completions inside it
        self.in_window = 0
        self.threads = [threading.Thread(target=self._loop, daemon=True)
                        for _ in range(n)]

    def _loop(self):
        c = benchlib.KAClient(self.port, timeout=SLEEP * 60)
        while not self.stop_at:
            st, body = c.get(self.path)
            now = time.monotonic()
            with self.lock:
                if st == 200 and body == "slow":
                    self.done += 1
                    w = self.window
                    if w and w[0] <= now <= (w[1] or now):
                        self.in_window += 1
                elif not self.stop_at:
                    self.failed += 1
        c.close()

    def start(self):
        for t in self.threads:
            t.start()

    def stop(self):
        self.stop_at = time.monotonic()


def warm_up(srv):
    for _ in range(50):
        st, body = http_get(srv.port, srv.fast, timeout=60)
        if st != 200 or body != FAST_BODY:
            die("GET %s answered %s %r" % (srv.fast, st, body[:200]))
    st, body = http_get(srv.port, srv.slow, timeout=60)
    if st != 200 or body != "slow":
        die("GET %s answered %s %r" % (srv.slow, st, body[:200]))


def measure(b, name, binary, args, user, n, tag):
    srv = start(b, name, binary, args, user, tag)
    stoppers = []
    try:
        warm_up(srv)
        bl = Blockers(srv.port, srv.slow, n)
        stoppers.append(bl)
        bl.start()
        time.sleep(args.ramp)
        t0 = time.monotonic()
        bl.window = (t0, None)
        w = benchlib.run_wrk(b, "http://127.0.0.1:%d%s" % (srv.port, srv.fast),
                             cpu=args.client_cpu, conns=args.conns,
                             duration=args.duration, timeout_s=120,
                             wrk_timeout="%ds" % WRK_TIMEOUT)
        bl.window = (t0, time.monotonic())
        w["slow_done"] = bl.in_window
        w["slow_failed"] = bl.failed
    finally:
        for bl in stoppers:
            bl.stop()
        srv.stop()
    if w["requests"] == 0 or w["lat_p99"] != w["lat_p99"]:
        w["rps"], w["lat_p99"], w["lat_p50"] = 0.0, WRK_TIMEOUT, WRK_TIMEOUT
    return w


def report(res, order, ns):
    for n in ns:
        log("-- while %d requests block %d s: medians" % (n, SLEEP))
        log("%-18s %9s %9s %9s %8s %10s" % ("server", "req/s", "p50", "p99",
                                             "errors", "slow done"))
        med = {}
        for name in order:
            ws = res[(name, n)]
            med[name] = {k: median([w[k] for w in ws])
                         for k in ("rps", "lat_p50", "lat_p99", "errors",
                                   "slow_done")}
            m = med[name]
            log("%-18s %9.0f %7.1fms %7.1fms %8.0f %10.0f" %
                (name, m["rps"], m["lat_p50"] * 1e3, m["lat_p99"] * 1e3,
                 m["errors"], m["slow_done"]))
        hp = med["hotpub"]
        parts = []
        for name in order:
            if name == "hotpub":
                continue
            p = med[name]
            rr = hp["rps"] / p["rps"] if p["rps"] else float("inf")
            pr = p["lat_p99"] / hp["lat_p99"] if hp["lat_p99"] else float("nan")
            log("ratio hotpub/%s: req/s %.2fx, p99 %s/hotpub %.1fx" %
                (name, rr, name, pr))
            key = name.replace("-", "_")
            parts.append("rps_ratio_%s=%.2f p99_ratio_%s=%.1f" %
                         (key, rr, key, pr))
        log("RESULT blocking_%d hotpub_rps=%.0f hotpub_p99_ms=%.1f "
            "hotpub_errors=%.0f %s" % (n, hp["rps"], hp["lat_p99"] * 1e3,
                                       hp["errors"], " ".join(parts)))


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_args(ap, conns=10, warmup=False)
    ap.add_argument("--blocking", default="40,200",
                    help="N: requests kept blocking (default 40,200)")
    ap.add_argument("--ramp", type=float, default=1.0,
                    help="seconds between starting the blockers and wrk")
    ap.add_argument("--servers", default=",".join(SERVERS),
                    help="subset of %s" % ",".join(SERVERS))
    ap.add_argument("--hotpub-args", default="",
                    help="more hotpub flags, e.g. \"--inline false\" (every "
                    "request offloaded, as a page not yet proven fast)")
    args = ap.parse_args()
    ns = [int(x) for x in args.blocking.split(",") if x]
    order = [s for s in args.servers.split(",") if s]
    if "hotpub" not in order or any(s not in SERVERS for s in order):
        die("--servers: hotpub and any of %s" % ",".join(SERVERS))
    if len(order) > 1 and os.geteuid() != 0:
        die("needs root (php-fpm and apache2 drop to %s)" % WEB_USER)
    user = pwd.getpwnam(WEB_USER) if len(order) > 1 else None
    if not have("wrk"):
        die("wrk is not installed (%s)" % PACKAGES)

    b = Bench("blocking")
    os.chmod(b.tmp, 0o711)  # the peers' users reach their directories
    binary, src, digest = hotpub_binary(b)
    # wrk and the blocking clients on the client cpu (servers: taskset)
    os.sched_setaffinity(0, {args.client_cpu})
    log("== blocking: fast page under wrk -t1 -c%d -d%s while N in %s "
        "requests block %d s; %d runs; servers on cpu %d, clients on cpu %d"
        % (args.conns, args.duration, ns, SLEEP, args.runs, args.server_cpu,
           args.client_cpu))
    describe_env(b, src, digest)
    if args.hotpub_args:
        note("hotpub flags added: %s" % args.hotpub_args)
    note("mod_python: apache2 %s; php-fpm: nginx 1 worker + pm static 4 / "
         "dynamic 50 (start 4, spare 2-8)" % APACHE_MPM_DESC)
    res = {}
    log("%-3s %-18s %5s %9s %9s %9s %10s  %s" % (
        "run", "server", "N", "req/s", "p50", "p99", "slow done", "errors"))
    for i in range(args.runs):
        k = i % len(order)
        for name in order[k:] + order[:k]:
            for n in ns:
                w = measure(b, name, binary, args, user, n,
                            "%s-%d-%d" % (name, i, n))
                res.setdefault((name, n), []).append(w)
                log("%-3d %-18s %5d %9.0f %7.1fms %7.1fms %10d  %s" %
                    (i + 1, name, n, w["rps"], w["lat_p50"] * 1e3,
                     w["lat_p99"] * 1e3, w["slow_done"], fmt_err(w)))
    report(res, order, ns)
    return 0


if __name__ == "__main__":
    main_wrapper(main)
