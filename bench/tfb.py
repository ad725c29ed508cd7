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
does (queries and updates: their highest level, 20 queries a request,
which TFB's charts rank by; every level is printed): targets hotpub >= 5x PHP-FPM (db, queries, fortunes, updates) and
hotpub >= 0.9x nginx (json, plaintext). Server CPU per request: the
server's process tree (hotpub; nginx + php-fpm), PostgreSQL's separately.
--perf db,fortunes: after measuring those tests, one more run at the
highest level under `perf record -g` of the hotpub processes, and the
symbols that took >= 1% of the samples (where hotpub's CPU goes).
When db is among the tests, the run ends with PostgreSQL's own ceiling:
pgbench (-M prepared) sends /db's statement on the server's cpu, with no
HTTP server: as a bare autocommit SELECT (what bench/tfb/db.c sends: it
reads in autocommit, hp_db_autocommit), as a transaction in one round
trip (BEGIN, SELECT, COMMIT pipelined) and as a page's read in hotpub's
request transaction (with the read guard, or the write check); the
best tps (and PostgreSQL's cpu per transaction, from
/proc/stat of its cpu) is printed beside 5x PHP-FPM's /db: no server can
answer /db faster than PostgreSQL answers its statement (--no-ceiling
skips it).
--baseline BINARY: another hotpub binary started the same way ("base"),
measured in the same run in alternation with the one under test; each
test then prints hotpub/base ratios of req/s and CPU per request.
--baseline-root DIR: the pages the baseline serves (default: bench/tfb, the
same as hotpub's), for a baseline that lacks an API today's pages use:
e.g. `git archive 0950ade bench/tfb | tar -x -C /tmp/old` then
--baseline-root /tmp/old/bench/tfb.
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
from benchlib import (CLK_TCK, CannotMeasure, FPM_STATIC, REPO, WEB_USER,  # noqa: E402
                      cpu_jiffies,
                      Bench, FpmNginx, Hotpub, descendants, describe_env, die,
                      fmt_err, fpm_conf, free_port, have, hotpub_binary, log,
                      main_wrapper, nginx_conf, note, passmiss, run_wrk,
                      thread_statuses, ticks_of, wait_http)

TFB = os.path.join(BENCH, "tfb")
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
        except (OSError, ValueError, SystemExit, CannotMeasure):
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

NGINX_HTTP = ("keepalive_requests 1000000",)

NGINX_FIXED = """
        location = /json {
            default_type application/json;
            return 200 '{"message":"Hello, World!"}';
        }
        location = /plaintext {
            default_type text/plain;
            return 200 'Hello, World!';
        }
"""

NGINX_FPM = """
        root {d}/www;
        location ~ ^/(json|plaintext|db|queries|fortunes|updates)$ {{
            include /etc/nginx/fastcgi.conf;
            fastcgi_param SCRIPT_FILENAME {d}/www/$1.php;
            fastcgi_keep_conn on;
            fastcgi_pass fpm;
        }}
"""

NGINX_UPSTREAM = """    upstream fpm {{
        server unix:{d}/fpm.sock;
        keepalive 32;
    }}
"""


def tfb_nginx_conf(d, port, user, server, tail=""):
    """nginx as TFB's peers run it: 4096 connections and listen backlog."""
    return nginx_conf(d, port, server, user=user.pw_name, connections=4096,
                      http=NGINX_HTTP, listen=" backlog=4096", tail=tail)


class NginxFixed(FpmNginx):
    """nginx alone, answering /json and /plaintext with `return 200`."""
    name = "nginx"

    def __init__(self, b, cpu, user):
        d = b.path("nginx")
        os.makedirs(d)
        port = free_port()
        super().__init__(b, d, port, cpu, user,
                         tfb_nginx_conf(d, port, user, NGINX_FIXED), None,
                         "/plaintext", hint="sh tools/deps.sh --bench",
                         what="nginx")


class PhpFpm(FpmNginx):
    name = "php-fpm"

    def __init__(self, b, cpu, children, user, pg):
        d = b.path("php")
        shutil.copytree(os.path.join(TFB, "_php"), os.path.join(d, "www"))
        port = free_port()
        dsn, dbuser, dbpass = pg.pdo_dsn()
        env = ['env[TFB_PDO_DSN] = "%s"\n' % dsn]
        # php-fpm refuses an env[] line with an empty value
        env += ['env[TFB_PDO_%s] = "%s"\n' % (k, v)
                for k, v in (("USER", dbuser), ("PASSWORD", dbpass)) if v]
        super().__init__(
            b, d, port, cpu, user,
            tfb_nginx_conf(d, port, user, NGINX_FPM.format(d=d),
                           NGINX_UPSTREAM.format(d=d)),
            fpm_conf(d, user.pw_name, FPM_STATIC % children, pool="tfb",
                     backlog=4096, extra="clear_env = yes\n" + "".join(env)),
            "/db", hint="sh tools/deps.sh --bench")


class HotpubTfb:
    name = "hotpub"

    def __init__(self, b, binary, cpu, pg, extra, name="hotpub", src=TFB):
        self.name = name
        sfx = "" if name == "hotpub" else "-" + name
        root = b.path("tfb-root" + sfx)
        shutil.copytree(src, root, ignore=shutil.ignore_patterns(
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
    # wrk as TFB runs it (--latency, --timeout 8); the pipelining script
    # gets the depth as its argument
    w = run_wrk(b, url, cpu=args.client_cpu, conns=conns_of(test, level),
                duration=duration, headers=headers, script=script,
                wrk_timeout="8", script_args=(PIPELINE,) if script else ())
    t1, p1 = ticks_of(srv.pids), ticks_of(pg.pids())
    if not srv.alive():
        die("%s died during %s" % (srv.name, url))
    n = max(1, w["requests"])
    w["cpu_us"] = (t1 - t0) / CLK_TCK / n * 1e6
    w["pg_us"] = (p1 - p0) / CLK_TCK / n * 1e6
    return w


def fmt_rps(w):
    if w is None:
        return "%10s" % "-"
    mark = "!" if w["errors"] else " "
    return "%9.0f%s" % (w["rps"], mark)


def settle(servers, pg, timeout=20.0, window=0.3):
    """Wait until no server and not PostgreSQL is still working off the
    previous run: wrk stops at its deadline, but a server with a backlog
    (php-fpm's listen queue holds requests for seconds at the higher
    levels) goes on answering them on the server core, and the next
    server measured there would get less of it. Idle: at most 2 clock
    ticks (20 ms of CPU) in a 0.3 s window. Returns the seconds waited."""
    pids = [p for s in servers for p in s.pids] + list(pg.pids())
    t0 = time.monotonic()
    last = ticks_of(pids)
    while time.monotonic() - t0 < timeout:
        time.sleep(window)
        now = ticks_of(pids)
        if now - last <= 2:
            return time.monotonic() - t0
        last = now
    log("# not idle after %.0f s: measuring anyway" % timeout)
    return timeout


def measure_test(b, args, test, servers, pg, levels):
    names = [s.name for s in servers]
    for s in servers:  # warm-up: compile, promote, fill the pools
        one_run(b, args, s, pg, test, levels[-1], args.warmup)
    rows = []
    for k, level in enumerate(levels):
        order = servers if k % 2 == 0 else list(reversed(servers))
        res = {}
        for s in order:
            waited = settle(servers, pg)
            if waited > 1.0:
                log("# waited %.1f s for the servers to go idle before %s"
                    % (waited, s.name))
            res[s.name] = one_run(b, args, s, pg, test, level, args.duration)
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


def switches_of(pids):
    """Context switches (voluntary, involuntary) of every thread of every
    process under pids. Threads that ended meanwhile are not counted."""
    vol = invol = 0
    for _, st in thread_statuses(pids):
        vol += int(st.get("voluntary_ctxt_switches", 0))
        invol += int(st.get("nonvoluntary_ctxt_switches", 0))
    return vol, invol


def profile(b, args, srv, pg, test, level):
    """perf record of the hotpub processes during one more run of test at
    level; prints the symbols that took at least 1% of the samples."""
    pids = ",".join(str(p) for root in srv.pids for p in descendants(root))
    data = b.path("perf-%s.data" % test)
    with open(b.path("perf-%s.out" % test), "wb") as f:
        perf = b.spawn(["perf", "record", "-F", "999", "-g", "-o", data,
                        "-p", pids], stdout=f, stderr=subprocess.STDOUT)
        time.sleep(0.5)
        s0 = switches_of(srv.pids)
        w = one_run(b, args, srv, pg, test, level, args.duration)
        s1 = switches_of(srv.pids)
        b.stop(perf, signal.SIGINT, timeout=60)
    n = max(1, w["requests"])
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
    log("perf %s %s (%.0f req/s, hotpub %.0f us/request, PostgreSQL %.0f; "
        "hotpub's threads switched %.2f times a request voluntarily, %.2f "
        "involuntarily):"
        % (srv.name, path_of(test, level), w["rps"], w["cpu_us"],
           w["pg_us"], (s1[0] - s0[0]) / n, (s1[1] - s0[1]) / n))
    for ln in lines[:38] or ["(no samples: %s)" % rep.stderr.strip()]:
        log("  " + ln.rstrip())


# The statements of /db as pgbench sends them, with no HTTP server at all:
# what PostgreSQL alone can answer on its cpu bounds every server's /db.
PG_CEILING = (
    ("bare SELECT, autocommit (1 statement, 1 round trip; hotpub's /db, "
     "whose page reads in autocommit)",
     "\\set id random(1, 10000)\n"
     "SELECT id, randomnumber FROM world WHERE id = :id;\n"),
    ("a transaction in one round trip (BEGIN, SELECT, COMMIT pipelined)",
     "\\set id random(1, 10000)\n\\startpipeline\nBEGIN;\n"
     "SELECT id, randomnumber FROM world WHERE id = :id;\nCOMMIT;\n"
     "\\endpipeline\n"),
    ("a GET's read in hotpub's request transaction under READ COMMITTED "
     "(SELECT and read guard pipelined, one implicit transaction)",
     "\\set id random(1, 10000)\n\\startpipeline\n"
     "SELECT id, randomnumber FROM world WHERE id = :id;\n"
     "SELECT 1 / (pg_catalog.pg_current_xact_id_if_assigned() IS NULL AND"
     " pg_catalog.current_setting('transaction_isolation') IN"
     " ('read committed', 'read uncommitted'))::int;\n"
     "\\endpipeline\n"),
    ("a GET's read in hotpub's request transaction under REPEATABLE READ "
     "(BEGIN, SELECT, write check pipelined; COMMIT)",
     "\\set id random(1, 10000)\n\\startpipeline\nBEGIN;\n"
     "SELECT id, randomnumber FROM world WHERE id = :id;\n"
     "SELECT pg_catalog.pg_current_xact_id_if_assigned(),"
     " pg_catalog.current_setting('transaction_isolation');\n"
     "\\endpipeline\nCOMMIT;\n"),
)


def pg_ceiling(b, args, pg, levels):
    """PostgreSQL's own ceiling for /db: pgbench (-M prepared, -j 1) on the
    server's cpu, PostgreSQL where the run placed it, each script at the
    db levels; best level. PostgreSQL's cpu per transaction is read from
    /proc/stat of its cpu (pinned runs only: nothing else runs there).
    Returns [(label, tps, us per transaction or None)]."""
    if not have("pgbench"):
        log("# pgbench not installed: no PostgreSQL ceiling")
        return []
    u = urllib.parse.urlsplit(pg.url)
    q = dict(urllib.parse.parse_qsl(u.query))
    base = ["pgbench", "-n", "-M", "prepared", "-j", "1", "-T",
            str(max(2, int(float(args.duration.rstrip("s")))))]
    for opt, key in (("-h", "host"), ("-p", "port"), ("-U", "user")):
        if q.get(key):
            base += [opt, q[key]]
    if args.server_cpu is not None:
        base = ["taskset", "-c", str(args.server_cpu)] + base
    out = []
    for label, script in PG_CEILING:
        path = b.path("ceiling-%d.sql" % len(out))
        with open(path, "w") as f:
            f.write(script)
        top = (0.0, None)
        for c in levels:
            j0 = cpu_jiffies(args.pg_cpu) \
                if args.pg_cpu is not None and not args.db \
                else None
            p = subprocess.run(base + ["-f", path, "-c", str(c),
                                       u.path.lstrip("/") or "hello_world"],
                               capture_output=True, text=True, timeout=600)
            j1 = cpu_jiffies(args.pg_cpu) if j0 else None
            tps = re.search(r"tps = ([0-9.]+)", p.stdout)
            n = re.search(r"actually processed: (\d+)", p.stdout)
            if p.returncode != 0 or not tps or not n:
                log("# pgbench failed: %s" % (p.stderr or p.stdout)[-500:])
                return out
            us = (j1["busy"] - j0["busy"]) / CLK_TCK / int(n.group(1)) \
                * 1e6 if j0 else None
            log("# ceiling c=%-3d %8.0f tps  %s  %s" % (
                c, float(tps.group(1)),
                "%.1f us PostgreSQL cpu/tx" % us if us else "", label))
            if float(tps.group(1)) > top[0]:
                top = (float(tps.group(1)), us)
        out.append((label, top[0], top[1]))
    return out


def best(rows, name):
    return max((r[name] for _, r in rows), key=lambda w: w["rps"])


def last(rows, name):
    """The highest level's run (queries and updates: 20 a request)."""
    return rows[-1][1][name]


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
    ap.add_argument("--no-ceiling", action="store_true",
                    help="skip pgbench's PostgreSQL ceiling for /db")
    ap.add_argument("--baseline", metavar="BINARY",
                    help="also measure this other hotpub binary (as "
                    "\"base\") in the same run, alternating with the one "
                    "under test, and print hotpub/base ratios: a before/"
                    "after comparison a busy machine cannot skew")
    ap.add_argument("--baseline-root", metavar="DIR",
                    help="the pages the baseline serves (default: "
                    "bench/tfb), e.g. an older bench/tfb from git archive")
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

    b = Bench("tfb")
    os.chmod(b.tmp, 0o755)  # www-data reaches the PHP pages and the socket
    binary, src, digest = hotpub_binary(b)
    describe_env(b, src, digest)
    pg = Postgres(b, args.pg_cpu, args.db)
    b.at_cleanup(pg.stop)
    setup = subprocess.run(["sh", os.path.join(TFB, "setup.sh"), pg.url],
                           capture_output=True, text=True, timeout=300)
    if setup.returncode != 0:
        die("bench/tfb/setup.sh failed:\n%s" % setup.stderr)
    note("PostgreSQL %s, synchronous_commit %s" % (
        pg.psql(pg.url, "SHOW server_version"),
        pg.psql(pg.url, "SHOW synchronous_commit")))

    hp = HotpubTfb(b, binary, args.server_cpu, pg, shlex.split(args.hotpub_args))
    base = HotpubTfb(b, os.path.abspath(args.baseline), args.server_cpu, pg,
                     shlex.split(args.hotpub_args), name="base",
                     src=os.path.abspath(args.baseline_root or TFB)) \
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
        # TFB ranks queries and updates at 20 queries a request (its
        # charts' default); the others at their best level
        pick = last if test in ("queries", "updates") else best
        bh = pick(rows, "hotpub")
        peer = "nginx" if test in ("json", "plaintext") else "php-fpm"
        target = TARGET_NGINX if peer == "nginx" else TARGET_PHP
        bp = pick(rows, peer)
        ratio = bh["rps"] / max(bp["rps"], 1e-9)
        vs_php = bh["rps"] / max(pick(rows, "php-fpm")["rps"], 1e-9)
        summary.append((test, bh["rps"], pick(rows, "php-fpm")["rps"],
                        bp["rps"] if peer == "nginx" else None, vs_php,
                        peer, ratio, target))
        results.append("%s=%.0f/%.0f" % (test, bh["rps"], bp["rps"]))
        if test in args.perf.split(","):
            settle(servers, pg)
            profile(b, args, hp, pg, test, levels[-1])

    ceiling = pg_ceiling(b, args, pg, LEVELS["db"][1 if args.quick else 0]) \
        if "db" in tests and not args.no_ceiling else []
    log("")
    log("best level per test (req/s; queries and updates at their highest"
        " level, 20 queries a request, where TFB ranks them):")
    log("%-9s %10s %10s %10s %9s   %s" % ("test", "hotpub", "php-fpm",
                                          "nginx", "hp/php", "target"))
    for test, h, p, n, vp, peer, ratio, target in summary:
        log("%-9s %10.0f %10.0f %10s %8.2fx   hotpub/%s %.2fx >= %.1fx %s"
            % (test, h, p, "%.0f" % n if n else "-", vp, peer, ratio,
               target, passmiss(ratio >= target)))
    php_db = [p for t, h, p, n, vp, pe, r, tg in summary if t == "db"]
    for label, tps, us in ceiling:
        log("PostgreSQL alone, %s: %.0f tps%s; 5x php-fpm's db is %.0f req/s"
            % (label, tps, " (%.1f us of its cpu each)" % us if us else "",
               5 * php_db[0] if php_db else float("nan")))
    for test, rows in vs_base:
        log("%-9s hotpub/base: %s" % (test, "  ".join(
            "%s %.2fx req/s, %.2fx cpu/req, %s pg/req" % (
                ("q=%d" if test in ("queries", "updates") else "c=%d") % lv,
                r["hotpub"]["rps"] / max(r["base"]["rps"], 1e-9),
                r["hotpub"]["cpu_us"] / max(r["base"]["cpu_us"], 1e-9),
                # json and plaintext use no database: no ratio of zeros
                "%.2fx" % (r["hotpub"]["pg_us"] / r["base"]["pg_us"])
                if r["base"]["pg_us"] > 0.5 and r["hotpub"]["pg_us"] > 0.5
                else "-")
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
