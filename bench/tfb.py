#!/usr/bin/env python3
"""tfb: TechEmpower's six test types on hotpub, PHP-FPM and nginx.

Servers, all started here, in the same run:
  hotpub   `hotpub serve` on a copy of bench/tfb/ (the pages answering
           /json /plaintext /db /queries /fortunes /updates), --db on the
           PostgreSQL below, default workers (auto) and pool size.
  php-fpm  Debian's php8.2-fpm (pm = static, --fpm-children) behind nginx
           (1 worker), pages bench/tfb/_php/*.php written the way TFB's PHP
           entry (frameworks/PHP/php) is: PDO pgsql with persistent
           connections, prepared statements, json_encode, htmlspecialchars;
           its updates are one UPDATE per row, as TFB's updateraw.php.
  nginx    `return 200` of the fixed body, 1 worker, for json and
           plaintext only (the ceiling a static answer sets).
PostgreSQL: a throwaway cluster (.ci/pg-start.sh) with TFB's
synchronous_commit = off, filled by bench/tfb/setup.sh; or --db URL.

Method: every server pinned to --server-cpu (1); wrk -t1 pinned to
--client-cpu (0), and PostgreSQL there too (--pg-cpu): TFB runs its
database on a machine of its own, so the server's core runs only the
server; wrk takes little of its core at database-bound rates
(--no-pin: nothing pinned). Before measuring,
bench/tfb/verify.py checks hotpub and PHP-FPM against TFB's rules (a
failure is printed and marks the figures UNVERIFIED). Each test has an
untimed warm-up (--warmup) per server at its highest level, then every
level is measured on each server in turn (order alternating by level).
TFB's levels, scaled from its 28-core machines to 2 cores:
  json, db, fortunes   connections 16, 32, 64   (TFB 16 ... 512)
  plaintext            connections 64, 256, 16 requests pipelined per
                       connection (wrk Lua script, as TFB's pipeline.sh)
                       (TFB 256 ... 16384)
  queries, updates     connections 64, queries 1, 5, 10, 15, 20
                       (TFB 512 connections, the same queries)
--quick: 2 levels each, 2 s runs, 1 s warm-ups (a check that it runs).
Per test the best level of each server is compared, as TFB's ranking
does: targets hotpub >= 5x PHP-FPM (db, queries, fortunes, updates) and
hotpub >= 0.9x nginx (json, plaintext). Server CPU per request: the
server's process tree (hotpub; nginx + php-fpm), PostgreSQL's separately.
--perf db,fortunes: after measuring those tests, one more run at the
highest level under `perf record -g` of the hotpub processes, and the
symbols that took >= 1% of the samples (where hotpub's CPU goes).
--baseline BINARY: another hotpub binary started the same way ("base"),
measured in the same run in alternation with the one under test; each
test then prints hotpub/base ratios of req/s and CPU per request.
Needs root (php-fpm runs its children as www-data), wrk, nginx,
php8.2-fpm, php8.2-pgsql, postgresql: `sh tools/deps.sh --bench`.
"""
import argparse
import shlex
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse

sys.dont_write_bytecode = True
BENCH = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, BENCH)
from benchlib import (CLK_TCK, REPO, Bench, Hotpub, children_of,  # noqa: E402
                      describe_env, die, fmt_err, free_port, have,
                      hotpub_binary, http_get, log, main_wrapper, note,
                      parse_wrk, passmiss, proc_ticks)
from benchlib import _dur  # noqa: E402

TFB = os.path.join(BENCH, "tfb")
WEB_USER = "www-data"
PACKAGES = "wrk nginx-light php8.2-fpm php8.2-pgsql postgresql"
TARGET_PHP, TARGET_NGINX = 5.0, 0.9
DB_TESTS = ("db", "queries", "fortunes", "updates")
TESTS = ("json", "plaintext", "db", "queries", "fortunes", "updates")

# Test -> (levels, quick levels). Levels are connection counts, except for
# queries/updates, where they are the queries argument at QUERY_CONNS.
LEVELS = {
    "json": ([16, 32, 64], [16, 64]),
    "plaintext": ([64, 256], [64, 256]),
    "db": ([16, 32, 64], [16, 64]),
    "fortunes": ([16, 32, 64], [16, 64]),
    "queries": ([1, 5, 10, 15, 20], [1, 20]),
    "updates": ([1, 5, 10, 15, 20], [1, 20]),
}
QUERY_CONNS = 64
PIPELINE = 16
ACCEPT = {
    "json": "application/json,text/html;q=0.9,application/xhtml+xml;q=0.9,"
            "application/xml;q=0.8,*/*;q=0.7",
    "plaintext": "text/plain,text/html;q=0.9,application/xhtml+xml;q=0.9,"
                 "application/xml;q=0.8,*/*;q=0.7",
}

PIPELINE_LUA = """-- wrk: send DEPTH requests at once on every connection (HTTP/1.1
-- pipelining), as TFB's plaintext test does (pipeline.sh, 16 deep).
init = function(args)
  local depth = tonumber(args[1]) or 1
  local r = {}
  for i = 1, depth do
    r[i] = wrk.format()
  end
  req = table.concat(r)
end

request = function()
  return req
end
"""

# ---- processes ------------------------------------------------------------------


def descendants(pid):
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children_of(p)
    return out


def ticks_of(pids):
    t = 0
    for root in pids:
        for p in descendants(root):
            try:
                t += proc_ticks(p)
            except OSError:
                pass
    return t


class Proc:
    def __init__(self, b, argv, cpu, logpath, env=None):
        self.b, self.logpath = b, logpath
        self.logf = open(logpath, "ab")
        self.proc = b.spawn(argv, cpu=cpu, stdout=self.logf,
                            stderr=subprocess.STDOUT, env=env)
        self.pid = self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def tail(self, *paths):
        out = []
        for p in (self.logpath,) + paths:
            try:
                with open(p, "rb") as f:
                    out.append(f.read()[-2000:].decode("utf-8", "replace"))
            except OSError:
                pass
        return "\n".join(out)

    def stop(self, sig=signal.SIGTERM):
        self.b.stop(self.proc, sig, timeout=10)
        self.logf.close()


def wait_http(port, path, alive, what, logs, timeout=20.0):
    deadline, last = time.time() + timeout, None
    while time.time() < deadline:
        if not alive():
            die("%s exited at start:\n%s" % (what, logs()))
        try:
            st, body = http_get(port, path, timeout=5)
            if st == 200:
                return body
            last = "%s %r" % (st, body[:300])
        except OSError as e:
            last = str(e)
        time.sleep(0.1)
    die("%s did not answer %s within %.0f s (last: %s):\n%s"
        % (what, path, timeout, last, logs()))


class TfbBench(Bench):
    """A Bench that also runs hooks at its cleanup (at exit and on a signal):
    the PostgreSQL cluster is stopped by pg_ctl, not by signalling a
    process of ours (pg_ctl's server detaches from it)."""

    def __init__(self, name):
        self.hooks = []
        super().__init__(name)

    def cleanup(self):
        first = not self._cleaned
        super().cleanup()
        for hook in self.hooks if first else ():
            try:
                hook()
            except Exception as e:  # noqa: BLE001 - clean up the rest
                log("# cleanup: %s" % e)


# ---- PostgreSQL -------------------------------------------------------------------

class Postgres:
    """A throwaway cluster from .ci/pg-start.sh, or the one of --db."""

    def __init__(self, b, cpu, url=None):
        self.b, self.dir, self.url = b, None, url
        if url:
            self.admin = url
            return
        port = 20000 + os.getpid() % 20000  # names the socket only
        env = dict(os.environ, HOTPUB_PG_PORT=str(port))
        argv = ["bash", os.path.join(REPO, ".ci", "pg-start.sh")]
        if cpu is not None:
            argv = ["taskset", "-c", str(cpu)] + argv
        p = subprocess.run(argv, capture_output=True, text=True, env=env,
                           timeout=120)
        if p.returncode != 0:
            die("PostgreSQL did not start:\n%s" % p.stderr[-2000:])
        self.admin = p.stdout.strip()
        m = re.search(r"host=([^&]+)", self.admin)
        self.dir = m.group(1)
        self.socket_dir, self.port = self.dir, port
        # TFB's postgresql.conf: commits do not wait for the WAL flush.
        self.psql(self.admin, "ALTER SYSTEM SET synchronous_commit = off")
        self.psql(self.admin, "SELECT pg_reload_conf()")
        self.url = self.admin.replace("/postgres?", "/hello_world?", 1)

    def psql(self, url, sql):
        p = subprocess.run(["psql", "-X", "-q", "-A", "-t", "-v",
                            "ON_ERROR_STOP=1", "-d", url, "-c", sql],
                           capture_output=True, text=True, timeout=60)
        if p.returncode != 0:
            die("psql %r: %s" % (sql, p.stderr.strip()))
        return p.stdout.strip()

    def pids(self):
        """The postmaster (and through it every backend)."""
        try:
            pdir = self.psql(self.url, "SHOW data_directory")
            with open(os.path.join(pdir, "postmaster.pid")) as f:
                return [int(f.readline())]
        except (OSError, ValueError, SystemExit):
            return []

    def pdo_dsn(self):
        """(PDO DSN, user, password) for the same database as self.url (a libpq URL:
        host, port and user from the authority or the query)."""
        u = urllib.parse.urlsplit(self.url)
        q = dict(urllib.parse.parse_qsl(u.query))
        host = q.get("host") or u.hostname or "/run/postgresql"
        port = q.get("port") or u.port or 5432
        db = urllib.parse.unquote(u.path.lstrip("/")) or "hello_world"
        return ("pgsql:host=%s;port=%s;dbname=%s" % (host, port, db),
                q.get("user") or u.username or "",
                q.get("password") or u.password or "")

    def stop(self):
        if not self.dir:
            return
        bindir = max(os.listdir("/usr/lib/postgresql"), key=lambda v: [
            int(x) if x.isdigit() else 0 for x in v.split(".")])
        ctl = "/usr/lib/postgresql/%s/bin/pg_ctl" % bindir
        argv = [ctl, "-D", os.path.join(self.dir, "data"), "stop", "-m",
                "fast"]
        if os.getuid() == 0:
            argv = ["runuser", "-u", "postgres", "--"] + argv
        subprocess.run(argv, capture_output=True, timeout=60)
        shutil.rmtree(self.dir, ignore_errors=True)


# ---- nginx, PHP-FPM -----------------------------------------------------------------

NGINX_HEAD = """user {user};
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path {d}/ngx-body;
    proxy_temp_path {d}/ngx-proxy;
    fastcgi_temp_path {d}/ngx-fastcgi;
    uwsgi_temp_path {d}/ngx-uwsgi;
    scgi_temp_path {d}/ngx-scgi;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
"""

NGINX_FIXED = NGINX_HEAD + """
        location = /json {{
            default_type application/json;
            return 200 '{{"message":"Hello, World!"}}';
        }}
        location = /plaintext {{
            default_type text/plain;
            return 200 'Hello, World!';
        }}
    }}
}}
"""

NGINX_FPM = NGINX_HEAD + """
        root {d}/www;
        location ~ ^/(json|plaintext|db|queries|fortunes|updates)$ {{
            include /etc/nginx/fastcgi.conf;
            fastcgi_param SCRIPT_FILENAME {d}/www/$1.php;
            fastcgi_keep_conn on;
            fastcgi_pass fpm;
        }}
    }}
    upstream fpm {{
        server unix:{d}/fpm.sock;
        keepalive 32;
    }}
}}
"""

FPM_CONF = """[global]
pid = {d}/fpm.pid
error_log = {d}/fpm-error.log
daemonize = no

[tfb]
user = {user}
group = {user}
listen = {d}/fpm.sock
listen.owner = {user}
listen.group = {user}
listen.mode = 0660
listen.backlog = 4096
pm = static
pm.max_children = {children}
pm.max_requests = 0
clear_env = yes
env[TFB_PDO_DSN] = "{dsn}"
"""


def chown_tree(d, owner):
    for root, dirs, files in os.walk(d):
        os.chown(root, owner.pw_uid, owner.pw_gid)
        for f in files:
            os.chown(os.path.join(root, f), owner.pw_uid, owner.pw_gid)


def start_nginx(b, d, conf, cpu, what, logs=lambda: ""):
    p = Proc(b, ["nginx", "-c", conf, "-g", "daemon off;", "-e",
                 os.path.join(d, "nginx-error.log")], cpu,
             os.path.join(d, "nginx.out"))
    return p


class NginxFixed:
    name = "nginx"

    def __init__(self, b, cpu, user):
        d = b.path("nginx")
        os.makedirs(d)
        self.port = free_port()
        conf = os.path.join(d, "nginx.conf")
        with open(conf, "w") as f:
            f.write(NGINX_FIXED.format(d=d, port=self.port, user=user.pw_name))
        self.p = start_nginx(b, d, conf, cpu, "nginx")
        wait_http(self.port, "/plaintext", self.p.alive, "nginx",
                  lambda: self.p.tail(os.path.join(d, "nginx-error.log")))
        self.pids = [self.p.pid]

    def alive(self):
        return self.p.alive()

    def stop(self):
        self.p.stop()


class PhpFpm:
    name = "php-fpm"

    def __init__(self, b, cpu, children, user, pg):
        fpm = shutil.which("php-fpm8.2") or shutil.which("php-fpm")
        if not fpm:
            die("php-fpm is not installed (sh tools/deps.sh --bench)")
        d = b.path("php")
        shutil.copytree(os.path.join(TFB, "_php"), os.path.join(d, "www"))
        self.port = free_port()
        dsn, dbuser, dbpass = pg.pdo_dsn()
        with open(os.path.join(d, "fpm.conf"), "w") as f:
            f.write(FPM_CONF.format(d=d, user=user.pw_name, children=children,
                                    dsn=dsn))
            # php-fpm refuses an env[] line with an empty value
            for k, v in (("USER", dbuser), ("PASSWORD", dbpass)):
                if v:
                    f.write('env[TFB_PDO_%s] = "%s"\n' % (k, v))
        conf = os.path.join(d, "nginx.conf")
        with open(conf, "w") as f:
            f.write(NGINX_FPM.format(d=d, port=self.port, user=user.pw_name))
        chown_tree(d, user)
        logs = lambda: self.fpm.tail(os.path.join(d, "fpm-error.log"),  # noqa
                                     os.path.join(d, "nginx-error.log"))
        self.fpm = Proc(b, [fpm, "--nodaemonize", "--fpm-config",
                            os.path.join(d, "fpm.conf")], cpu,
                        os.path.join(d, "fpm.out"))
        deadline = time.time() + 15
        while not os.path.exists(os.path.join(d, "fpm.sock")):
            if not self.fpm.alive() or time.time() > deadline:
                die("php-fpm did not start:\n%s" % logs())
            time.sleep(0.05)
        self.nginx = start_nginx(b, d, conf, cpu, "nginx+php-fpm")
        wait_http(self.port, "/db", self.alive, "nginx+php-fpm", logs)
        self.pids = [self.nginx.pid, self.fpm.pid]

    def alive(self):
        return self.fpm.alive() and self.nginx.alive()

    def stop(self):
        self.nginx.stop()
        self.fpm.stop(signal.SIGQUIT)


class HotpubTfb:
    name = "hotpub"

    def __init__(self, b, binary, cpu, pg, extra, name="hotpub"):
        self.name = name
        sfx = "" if name == "hotpub" else "-" + name
        root = b.path("tfb-root" + sfx)
        shutil.copytree(TFB, root, ignore=shutil.ignore_patterns(
            "_php", "*.py", "*.sh", "__pycache__"))
        self.hp = Hotpub(b, binary, root, b.path("cache" + sfx),
                         extra=["--db", pg.url] + list(extra), cpu=cpu,
                         name=name)
        self.port = self.hp.port
        # The first request of each page compiles it.
        for t in TESTS:
            wait_http(self.port, "/" + t, self.alive, "hotpub /" + t,
                      self.hp.log_tail, timeout=60)
        self.pids = [self.hp.pid]

    def alive(self):
        return self.hp.proc.poll() is None

    def stop(self):
        self.hp.stop()


# ---- measuring -----------------------------------------------------------------------

def verify(srv, pg, tests):
    p = subprocess.run([sys.executable, os.path.join(TFB, "verify.py"),
                        "--url", "http://127.0.0.1:%d" % srv.port,
                        "--db", pg.url, "--only", ",".join(tests)],
                       capture_output=True, text=True, timeout=600)
    for line in p.stdout.strip().split("\n"):
        note("verify %s: %s" % (srv.name, line))
    if p.returncode != 0:
        log("WARNING: %s does not pass bench/tfb/verify.py: its figures "
            "are UNVERIFIED" % srv.name)
    return p.returncode == 0


def path_of(test, level):
    if test in ("queries", "updates"):
        return "/%s?queries=%d" % (test, level)
    return "/" + test


def conns_of(test, level):
    return QUERY_CONNS if test in ("queries", "updates") else level


def one_run(b, args, srv, pg, test, level, duration):
    url = "http://127.0.0.1:%d%s" % (srv.port, path_of(test, level))
    headers = ["Accept: " + ACCEPT.get(test, ACCEPT["json"]),
               "Connection: keep-alive"]
    script = None
    if test == "plaintext":
        script = b.path("pipeline.lua")
        if not os.path.exists(script):
            with open(script, "w") as f:
                f.write(PIPELINE_LUA)
    t0, p0 = ticks_of(srv.pids), ticks_of(pg.pids())
    w = wrk(b, url, args.client_cpu, conns_of(test, level), duration,
            headers, script)
    t1, p1 = ticks_of(srv.pids), ticks_of(pg.pids())
    if not srv.alive():
        die("%s died during %s" % (srv.name, url))
    n = max(1, w["requests"])
    w["cpu_us"] = (t1 - t0) / CLK_TCK / n * 1e6
    w["pg_us"] = (p1 - p0) / CLK_TCK / n * 1e6
    return w


def wrk(b, url, cpu, conns, duration, headers, script=None):
    """wrk as TFB runs it (--latency, --timeout 8); a Lua script gets the
    pipeline depth as its argument."""
    argv = ["wrk", "-t1", "-c%d" % conns, "-d%s" % duration, "--latency",
            "--timeout", "8"]
    for h in headers:
        argv += ["-H", h]
    if script:
        argv += ["-s", script]
    argv.append(url)
    if script:
        argv += ["--", str(PIPELINE)]
    out = b.path("wrk-%d.out" % time.time_ns())
    with open(out, "wb") as f:
        p = b.spawn(argv, cpu=cpu, stdout=f, stderr=subprocess.STDOUT)
        try:
            p.wait(timeout=_dur(duration) + 30)
        except subprocess.TimeoutExpired:
            b.stop(p, signal.SIGINT, timeout=5)
            die("wrk did not finish in time: %s" % " ".join(argv))
    with open(out, encoding="utf-8", errors="replace") as f:
        text = f.read()
    r = parse_wrk(text)
    if r is None or p.returncode != 0:
        die("wrk failed (rc %s): %s\n%s" % (p.returncode, " ".join(argv),
                                            text))
    return r


def fmt_rps(w):
    if w is None:
        return "%10s" % "-"
    mark = "!" if w["errors"] else " "
    return "%9.0f%s" % (w["rps"], mark)


def measure_test(b, args, test, servers, pg, levels):
    names = [s.name for s in servers]
    for s in servers:  # warm-up: compile, promote, fill the pools
        one_run(b, args, s, pg, test, levels[-1], args.warmup)
    rows = []
    for k, level in enumerate(levels):
        order = servers if k % 2 == 0 else list(reversed(servers))
        res = {s.name: one_run(b, args, s, pg, test, level, args.duration)
               for s in order}
        rows.append((level, res))
        cells = "  ".join("%s %s p99 %6.1fms cpu %5.0fus pg %5.0fus" % (
            n, fmt_rps(res[n]), res[n]["lat_p99"] * 1e3, res[n]["cpu_us"],
            res[n]["pg_us"]) for n in names)
        log("%-9s %-12s %s" % (test, ("q=%d" if test in ("queries", "updates")
                                      else "c=%d") % level, cells))
        for n in names:
            if res[n]["errors"]:
                log("  ! %s: %s" % (n, fmt_err(res[n])))
    return rows


def profile(b, args, srv, pg, test, level):
    """perf record of the hotpub processes during one more run of test at
    level; prints the symbols that took at least 1% of the samples."""
    pids = ",".join(str(p) for root in srv.pids for p in descendants(root))
    data = b.path("perf-%s.data" % test)
    with open(b.path("perf-%s.out" % test), "wb") as f:
        perf = b.spawn(["perf", "record", "-F", "999", "-g", "-o", data,
                        "-p", pids], stdout=f, stderr=subprocess.STDOUT)
        time.sleep(0.5)
        w = one_run(b, args, srv, pg, test, level, args.duration)
        b.stop(perf, signal.SIGINT, timeout=60)
    rep = subprocess.run(["perf", "report", "-i", data, "--stdio", "-g",
                          "none", "--no-children", "--sort", "dso,symbol",
                          "--percent-limit", "1"],
                         capture_output=True, text=True, timeout=300)
    lines = [ln for ln in rep.stdout.split("\n")
             if ln.strip() and not ln.startswith("#")]
    by_dso = subprocess.run(["perf", "report", "-i", data, "--stdio", "-g",
                             "none", "--no-children", "--sort", "dso",
                             "--percent-limit", "1"],
                            capture_output=True, text=True, timeout=300)
    lines = [ln for ln in by_dso.stdout.split("\n")
             if ln.strip() and not ln.startswith("#")][:8] + lines
    log("perf %s %s (%.0f req/s, hotpub %.0f us/request, PostgreSQL %.0f):"
        % (srv.name, path_of(test, level), w["rps"], w["cpu_us"],
           w["pg_us"]))
    for ln in lines[:38] or ["(no samples: %s)" % rep.stderr.strip()]:
        log("  " + ln.rstrip())


def best(rows, name):
    return max((r[name] for _, r in rows), key=lambda w: w["rps"])


def main():
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", default="10s", help="wrk -d (default 10s)")
    ap.add_argument("--warmup", default="5s", help="untimed run per server")
    ap.add_argument("--quick", action="store_true",
                    help="2 levels per test, 2 s runs, 1 s warm-ups")
    ap.add_argument("--tests", default=",".join(TESTS),
                    help="comma-separated subset of %s" % ",".join(TESTS))
    ap.add_argument("--server-cpu", type=int, default=1)
    ap.add_argument("--client-cpu", type=int, default=0)
    ap.add_argument("--pg-cpu", type=int, default=None,
                    help="PostgreSQL's CPU (default: --client-cpu, as if on "
                    "another machine, as in TFB)")
    ap.add_argument("--no-pin", action="store_true")
    ap.add_argument("--perf", default="",
                    help="comma-separated tests to profile hotpub on with "
                    "perf record after measuring, e.g. db,fortunes")
    ap.add_argument("--fpm-children", type=int, default=16,
                    help="php-fpm pm.max_children, pm = static (default 16)")
    ap.add_argument("--db", help="use this PostgreSQL (libpq URL of a "
                    "database setup.sh may fill) instead of a throwaway one")
    ap.add_argument("--hotpub-args", default="",
                    help="extra `hotpub serve` flags, e.g. '--workers 0'")
    ap.add_argument("--no-verify", action="store_true")
    ap.add_argument("--baseline", metavar="BINARY",
                    help="also measure this other hotpub binary (as "
                    "\"base\") in the same run, alternating with the one "
                    "under test, and print hotpub/base ratios: a before/"
                    "after comparison a busy machine cannot skew")
    args = ap.parse_args()
    tests = [t for t in args.tests.split(",") if t]
    if any(t not in TESTS for t in tests):
        ap.error("--tests: known tests are %s" % ", ".join(TESTS))
    if args.quick:
        args.duration, args.warmup = "2s", "1s"
    if args.pg_cpu is None:
        args.pg_cpu = args.client_cpu
    if args.no_pin:
        args.server_cpu = args.client_cpu = args.pg_cpu = None
    if os.getuid() != 0:
        die("needs root (php-fpm runs its children as %s)" % WEB_USER)
    for cmd in ("wrk", "nginx", "psql", "taskset"):
        if not have(cmd):
            die("%s is not installed (sh tools/deps.sh --bench: %s)"
                % (cmd, PACKAGES))
    user = pwd.getpwnam(WEB_USER)

    b = TfbBench("tfb")
    os.chmod(b.tmp, 0o755)  # www-data reaches the PHP pages and the socket
    binary, src, digest = hotpub_binary(b)
    describe_env(b, src, digest)
    pg = Postgres(b, args.pg_cpu, args.db)
    b.hooks.append(pg.stop)
    setup = subprocess.run(["sh", os.path.join(TFB, "setup.sh"), pg.url],
                           capture_output=True, text=True, timeout=300)
    if setup.returncode != 0:
        die("bench/tfb/setup.sh failed:\n%s" % setup.stderr)
    note("PostgreSQL %s, synchronous_commit %s" % (
        pg.psql(pg.url, "SHOW server_version"),
        pg.psql(pg.url, "SHOW synchronous_commit")))

    hp = HotpubTfb(b, binary, args.server_cpu, pg, shlex.split(args.hotpub_args))
    base = HotpubTfb(b, os.path.abspath(args.baseline), args.server_cpu, pg,
                     shlex.split(args.hotpub_args), name="base") \
        if args.baseline else None
    php = PhpFpm(b, args.server_cpu, args.fpm_children, user, pg)
    ngx = NginxFixed(b, args.server_cpu, user) \
        if {"json", "plaintext"} & set(tests) else None
    note("hotpub %s; php-fpm pm=static max_children=%d + nginx 1 worker; "
         "nginx 1 worker; wrk -t1; server cpu %s, wrk cpu %s, "
         "PostgreSQL cpu %s" % (" ".join(hp.hp.argv[1:-1]),
                                args.fpm_children, args.server_cpu,
                                args.client_cpu, args.pg_cpu))
    verified = {}
    if not args.no_verify:
        verified["hotpub"] = verify(hp, pg, tests)
        verified["php-fpm"] = verify(php, pg, tests)

    summary, results, vs_base = [], [], []
    for test in tests:
        levels = LEVELS[test][1 if args.quick else 0]
        servers = [hp] + ([base] if base else []) + [php] + \
            ([ngx] if test in ("json", "plaintext") else [])
        rows = measure_test(b, args, test, servers, pg, levels)
        if base:
            vs_base.append((test, rows))
        bh = best(rows, "hotpub")
        peer = "nginx" if test in ("json", "plaintext") else "php-fpm"
        target = TARGET_NGINX if peer == "nginx" else TARGET_PHP
        bp = best(rows, peer)
        ratio = bh["rps"] / max(bp["rps"], 1e-9)
        vs_php = bh["rps"] / max(best(rows, "php-fpm")["rps"], 1e-9)
        summary.append((test, bh["rps"], best(rows, "php-fpm")["rps"],
                        bp["rps"] if peer == "nginx" else None, vs_php,
                        peer, ratio, target))
        results.append("%s=%.0f/%.0f" % (test, bh["rps"], bp["rps"]))
        if test in args.perf.split(","):
            profile(b, args, hp, pg, test, levels[-1])

    log("")
    log("best level per test (req/s):")
    log("%-9s %10s %10s %10s %9s   %s" % ("test", "hotpub", "php-fpm",
                                          "nginx", "hp/php", "target"))
    for test, h, p, n, vp, peer, ratio, target in summary:
        log("%-9s %10.0f %10.0f %10s %8.2fx   hotpub/%s %.2fx >= %.1fx %s"
            % (test, h, p, "%.0f" % n if n else "-", vp, peer, ratio,
               target, passmiss(ratio >= target)))
    for test, rows in vs_base:
        log("%-9s hotpub/base: %s" % (test, "  ".join(
            "%s %.2fx req/s, %.2fx cpu/req, %.2fx pg/req" % (
                ("q=%d" if test in ("queries", "updates") else "c=%d") % lv,
                r["hotpub"]["rps"] / max(r["base"]["rps"], 1e-9),
                r["hotpub"]["cpu_us"] / max(r["base"]["cpu_us"], 1e-9),
                r["hotpub"]["pg_us"] / max(r["base"]["pg_us"], 1e-9))
            for lv, r in rows)))
    if verified and not all(verified.values()):
        log("UNVERIFIED: %s failed bench/tfb/verify.py (see above)"
            % ", ".join(n for n, ok in verified.items() if not ok))
    log("RESULT tfb %s verified=%s" % (
        " ".join(results),
        "skipped" if not verified else
        ",".join("%s:%s" % (n, "yes" if ok else "NO")
                 for n, ok in verified.items())))
    for s in [hp, base, php, ngx]:
        if s:
            s.stop()
    return 0


if __name__ == "__main__":
    main_wrapper(main)
