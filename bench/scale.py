#!/usr/bin/env python3
"""Scale-out: hotpub nodes behind HAProxy (contrib/haproxy/hotpub.cfg).

1. Throughput of the hello page through HAProxy with 1, 2 and 3 hotpub
   nodes (each --workers 1; nodes taken out with the runtime API's
   `set server ... state maint`), and straight to one node (the proxy
   hop's cost). On a 2-core machine expect no speed-up: the point is the
   overhead of the hop and that nothing is lost (non-2xx and socket errors
   are printed).
2. The mixed-release window of a deploy of 3 nodes under load through
   HAProxy: hotpub with contrib/hotpub-deploy (stage + warm, switch all),
   and PHP-FPM 8.2 (3 pools, opcache on with Debian's defaults, each its
   own docroot symlink, HAProxy's FastCGI client) switched by the same
   symlink renames. The window runs from the first answer of the new
   release to the last answer of the old one, both through HAProxy, and
   is bounded by --window-max (PHP's realpath cache can keep serving the
   old tree for realpath_cache_ttl, 120 s by default).

Usage: bench/scale.sh [--duration 10s] [--conns 50] [--window-max 10]
Needs haproxy, wrk, PostgreSQL not needed; php-fpm8.2 for part 2's peer
(`sh tools/deps.sh --bench`), root for php-fpm (-R, pools as www-data).
"""

import argparse
import http.client
import os
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import (REPO, Bench, die, free_port, have,  # noqa: E402
                      hello_source, hotpub_binary, describe_env, log,
                      main_wrapper, note, run_wrk)

CFG = os.path.join(REPO, "contrib", "haproxy", "hotpub.cfg")
DEPLOY = os.path.join(REPO, "contrib", "hotpub-deploy")
REL_C = '#include <hotpub.h>\n#include "_rel.h"\n' \
        'HP_HANDLER(http_handler) { hp_puts(req, REL); return HP_OK; }\n'


def wait_port(port, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    die("nothing listens on port %d" % port)


def admin(sock, line):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(5)
    s.connect(sock)
    s.sendall(line.encode() + b"\n")
    out = b""
    while True:
        d = s.recv(65536)
        if not d:
            break
        out += d
    return out.decode()


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def site(root, files_by_rel):
    """root/releases/r1 with files, root/current -> releases/r1."""
    for name, files in files_by_rel.items():
        for rel, text in files.items():
            write(os.path.join(root, "releases", name, rel), text)
    os.symlink("releases/r1", os.path.join(root, "current"))


class Poller:
    """Threads GETting path through port; (end time, status, body)."""

    def __init__(self, port, path, threads=4):
        self.out, self.stop_ = [], False
        self.ts = [threading.Thread(target=self.run, args=(port, path),
                                    daemon=True) for _ in range(threads)]
        for t in self.ts:
            t.start()

    def run(self, port, path):
        c = None
        while not self.stop_:
            try:
                c = c or http.client.HTTPConnection("127.0.0.1", port,
                                                    timeout=10)
                c.request("GET", path)
                r = c.getresponse()
                self.out.append((time.monotonic(), r.status,
                                 r.read().decode().strip()))
            except (OSError, http.client.HTTPException) as e:
                self.out.append((time.monotonic(), None, repr(e)))
                c = None

    def stop(self):
        self.stop_ = True
        for t in self.ts:
            t.join(15)
        return self.out


def window(res, old, new, t_switch):
    first = [t for t, s, b in res if s == 200 and b == new]
    last = [t for t, s, b in res if s == 200 and b == old and t >= t_switch]
    bad = [r for r in res if r[1] != 200]
    if not first:
        return None, bad
    return max(0.0, (max(last) if last else 0) - min(first)), bad


def measure_deploy(b, lb_port, sites, path, stage, max_s):
    poll = Poller(lb_port, path)
    time.sleep(1.0)
    if stage:
        subprocess.run([sys.executable, DEPLOY, "stage"] + stage + sites,
                       check=True, stdout=subprocess.DEVNULL,
                       env=dict(os.environ, HOTPUB=b.hotpub))
    t0 = time.monotonic()
    subprocess.run([sys.executable, DEPLOY, "switch", "r2"] + sites,
                   check=True, stdout=subprocess.DEVNULL)
    deadline = t0 + max_s
    while time.monotonic() < deadline:
        recent = [x for x in poll.out[-40:] if x[0] > time.monotonic() - 0.5]
        if recent and all(x[2] == "r2" for x in recent):
            break
        time.sleep(0.1)
    time.sleep(0.5)
    res = poll.stop()
    w, bad = window(res, "r1", "r2", t0)
    still = [x for x in res if x[2] == "r1" and x[0] > deadline - 0.5]
    return w, bad, len(res), bool(still)


def hotpub_part(b, a):
    nodes, env = [], dict(os.environ)
    for i in range(3):
        root = b.path("node%d" % (i + 1))
        site(root, {"r1": {"hello.c": hello_source()[0], "rel.c": REL_C,
                           "_rel.h": '#define REL "r1"\n'}})
        write(os.path.join(root, "hotpub.ini"),
              "[server]\ncache-dir = %s\n" % os.path.join(root, "cache"))
        port = free_port()
        b.spawn([b.hotpub, "serve", "--config",
                 os.path.join(root, "hotpub.ini"), "--listen",
                 "127.0.0.1:%d" % port, "--workers", "1", "--no-dev",
                 "--db", "off", os.path.join(root, "current")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(port)
        nodes.append((root, port))
        env["HOTPUB_NODE%d" % (i + 1)] = "127.0.0.1:%d" % port
    lb = free_port()
    sock = b.path("haproxy.sock")
    env.update(HOTPUB_LB_BIND="127.0.0.1:%d" % lb, HOTPUB_LB_SOCKET=sock)
    b.spawn(["haproxy", "-db", "-f", CFG], env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(lb)
    time.sleep(2.5)  # two good checks each
    rows = []
    w = run_wrk(b, "http://127.0.0.1:%d/hello" % nodes[0][1],
                conns=a.conns, duration=a.duration)
    rows.append(("direct, 1 node", w))
    for n in (1, 2, 3):
        for i in range(3):
            admin(sock, "set server hotpub/node%d state %s"
                  % (i + 1, "ready" if i < n else "maint"))
        time.sleep(0.3)
        w = run_wrk(b, "http://127.0.0.1:%d/hello" % lb, conns=a.conns,
                    duration=a.duration)
        rows.append(("HAProxy, %d node%s" % (n, "s" if n > 1 else ""), w))
    log("%-18s %10s %8s %8s %s" % ("path", "req/s", "p50 ms", "p99 ms",
                                   "errors"))
    for name, w in rows:
        c, rd, wr, to = w["sock"]
        log("%-18s %10.0f %8.2f %8.2f non2xx=%d sock=%d" % (
            name, w["rps"], w["lat_p50"] * 1000, w["lat_p99"] * 1000,
            w["non2xx"], c + rd + wr + to))
    src = b.path("src-r2")
    for rel, text in {"hello.c": hello_source()[0], "rel.c": REL_C,
                      "_rel.h": '#define REL "r2"\n'}.items():
        write(os.path.join(src, rel), text)
    res = measure_deploy(b, lb, [r for r, _ in nodes], "/rel", [src, "r2"],
                         a.window_max)
    return rows, res


PHP_POOL = """[global]
error_log = {d}/fpm.log
[www]
user = www-data
group = www-data
listen = 127.0.0.1:{port}
pm = static
pm.max_children = 2
php_admin_value[opcache.enable] = 1
"""

PHP_LB = """global
    maxconn 4096
defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
frontend www
    bind 127.0.0.1:{port}
    use_backend php%[rand(3)]
"""
PHP_BACKEND = """fcgi-app app{i}
    docroot {root}/current
backend php{i}
    use-fcgi-app app{i}
    server s{i} 127.0.0.1:{port} proto fcgi
"""


def php_part(b, a):
    fpm = "/usr/sbin/php-fpm8.2"
    if not os.path.exists(fpm) or os.getuid() != 0:
        log("# PHP-FPM part skipped: needs root and php8.2-fpm")
        return None
    os.chmod(b.tmp, 0o755)
    lb = free_port()
    cfg = PHP_LB.format(port=lb)
    roots = []
    for i in range(3):
        root = b.path("php%d" % i)
        site(root, {"r1": {"rel.php": "r1"}, "r2": {"rel.php": "r2"}})
        port = free_port()
        write(os.path.join(root, "fpm.conf"), PHP_POOL.format(d=root,
                                                               port=port))
        b.spawn([fpm, "-F", "-R", "-y", os.path.join(root, "fpm.conf")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(port)
        cfg += PHP_BACKEND.format(i=i, root=root, port=port)
        roots.append(root)
    write(b.path("php-haproxy.cfg"), cfg)
    b.spawn(["haproxy", "-db", "-f", b.path("php-haproxy.cfg")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(lb)
    return measure_deploy(b, lb, roots, "/rel.php", None, a.window_max)


def fmt(res, max_s):
    w, bad, n, still = res
    if w is None:
        return ("the new release never answered within the bound "
                "(%d requests, %d failed): window >= the bound" % (n, len(bad)))
    return "%s%.1f ms, %d requests, %d failed" % (
        ">= " if still else "", (max_s * 1000 if still else w * 1000), n,
        len(bad))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--duration", default="10s")
    p.add_argument("--conns", type=int, default=50)
    p.add_argument("--window-max", type=float, default=10.0)
    a = p.parse_args()
    for cmd in ("haproxy", "wrk"):
        if not have(cmd):
            die("%s is not installed" % cmd)
    b = Bench("scale")
    b.hotpub, src, digest = hotpub_binary(b)
    describe_env(b, src, digest)
    rows, hp = hotpub_part(b, a)
    php = php_part(b, a)
    note("mixed-release window of a 3-node symlink deploy under load:")
    log("hotpub (warm, hotpub-deploy switch): %s" % fmt(hp, a.window_max))
    if php:
        log("PHP-FPM (opcache, same renames):     %s"
            % fmt(php, a.window_max))
    direct = rows[0][1]["rps"]
    log("RESULT scale direct_rps=%.0f lb1_rps=%.0f lb2_rps=%.0f lb3_rps=%.0f "
        "hop_ratio=%.2f hotpub_window_ms=%.1f php_window_ms=%s" % (
            direct, rows[1][1]["rps"], rows[2][1]["rps"], rows[3][1]["rps"],
            rows[1][1]["rps"] / direct if direct else 0,
            (hp[0] or 0) * 1000,
            "%.1f" % ((php[0] or 0) * 1000) if php and not php[3]
            else (">=%.0f" % (a.window_max * 1000) if php else "na")))
    return 0


if __name__ == "__main__":
    main_wrapper(main)
