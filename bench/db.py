#!/usr/bin/env python3
"""db: one row by primary key from a 10,000-row SQLite table, on hotpub vs
PHP-FPM (PDO SQLite behind nginx) vs the mod_python publisher (sqlite3).

The data: one SQLite file, table items(id INTEGER PRIMARY KEY, name TEXT,
price REAL), 10,000 rows, built in SQLite's default rollback journal.
Each server gets its own copy in a directory of its own (no shared
journal/-wal/-shm or locks) and opens it read-only (hotpub:
sqlite:file:PATH?mode=ro; PDO: SQLITE_OPEN_READONLY; sqlite3:
file:PATH?mode=ro). Journal modes: hotpub's copy is switched to WAL before
it starts (hotpub sets WAL on every connection it opens, and cannot on a
read-only one); the PHP and Python copies keep the rollback journal
(--peer-journal), because opening a WAL database is much dearer and both
open the database per request (PDO open+query+close measured on this
2-core box: ~150 us rollback vs ~500 us WAL). Every page runs
    SELECT id, name, price FROM items WHERE id = ?
with the id of the query string (?item_id=N), bound as an integer, and
answers "ID NAME PRICE\\n" (text/plain), 404 for an unknown id.

Why item_id and not id: Debian 12's libapache2-mod-python
(3.5.0+git20211031, Python 3.11) mangles short form-field names in its C
parse_qsl (`id=3` arrives as {'3': '3'}; upstream grisha/mod_python #117,
#144), so the publisher would never pass `id` to the page; names of 4+
characters arrive intact. All three servers use the same query string.
Also, that build segfaults in req.get_addhandler_exts() when the handler
is set with SetHandler, so the page is mapped the documented way
(AddHandler mod_python .py + PythonHandler mod_python.publisher).

Servers (all started at once, every process pinned to CPU 1 by taskset on
the launcher, inherited by children; checked):
  hotpub      --db sqlite:file:PATH?mode=ro --access-log off --no-dev
              --workers 0 (one process); and a second one with --workers auto
              (one worker per online CPU, the parent and 2 workers on this
              box: what the server's default of workers amounts to here),
              reported too, when it runs. The request's transaction
              (deferred BEGIN/COMMIT) is part of what is measured.
  PHP-FPM     Debian's php-fpm (php.ini of the fpm SAPI as packaged: opcache
              on, JIT off), pm = static, pm.max_children = 4 (--fpm-children),
              nginx (1 worker, keep-alive to the client, keepalive_requests
              100000) fastcgi_pass to its unix socket; a PDO opened per request
              (not persistent; --persistent for PDO::ATTR_PERSISTENT).
  mod_python  Debian's apache2 with mpm_event (Debian's default MPM) as a
              fixed pool of 2 processes x 64 threads (like pm = static;
              see APACHE_MPM), mod_python.publisher, a .py page
              `def index(req, item_id='1')` that opens sqlite3 per request (typical
              usage; --persistent: one module-level connection,
              check_same_thread=False). KeepAlive On, MaxKeepAliveRequests 0
              (unlimited, like nginx's 100000) so all stay on keep-alive.

Method (as bench/hello.py): wrk -t1 -c50 -d10s (keep-alive) pinned to CPU 0
with a Lua script cycling ids 1..10000; one untimed warm-up per server; 3
runs, servers measured one after another in the same run, order rotating;
medians. Server CPU per request = delta of utime+stime of every process of
the server (hotpub: the process, with workers the parent and workers;
PHP-FPM: nginx master + worker + the php-fpm master + every child; Apache:
the parent + every child), reaped children included (cutime+cstime), /
CLK_TCK / requests. Target: hotpub (--workers 0) req/s >= 5x PHP-FPM's.
"""
import argparse
import os
import pwd
import shutil
import sqlite3
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402
from benchlib import (APACHE_MPM_DESC, FPM_STATIC, WEB_USER,  # noqa: E402
                      Bench, FpmNginx, Hotpub, ModPythonApache, add_run_args,
                      chown_tree, descendants, describe_env, die, fmt_err,
                      fpm_conf, fpm_server, free_port, hotpub_binary, http_get,
                      log, log_noise, main_wrapper, measure_cpu, median,
                      nginx_conf, note, passmiss, thread_statuses, ticks_of,
                      write_files)

ROWS = 10000
TARGET = 5.0      # hotpub / PHP-FPM req/s
NOISY = 25.0      # other% above this: another process competed for the cpus
SQL = "SELECT id, name, price FROM items WHERE id = ?"
PACKAGES = "php8.2-fpm php8.2-sqlite3 nginx-light apache2 libapache2-mod-python"


def row_of(i):
    return i, "item-%05d" % i, i * 1.25


def body_of(i):
    return "%d %s %.2f\n" % row_of(i)


# ---- pages --------------------------------------------------------------------

HOTPUB_PAGE = r"""#include <hotpub.h>
#include <stdlib.h>

/* GET /item?item_id=N -> "N item-0000N PRICE\n" from the items table */
HP_HANDLER(http_handler)
{
    const char *s = hp_arg(req, "item_id");
    long long id = s ? strtoll(s, NULL, 10) : 1;
    hp_db_res *r = hp_db_queryv(hp_db(req),
                                "SELECT id, name, price FROM items WHERE id = $1",
                                HP_INT(id));
    if (!r)
        return 500;
    if (!hp_db_next(r))
        return 404;
    hp_set_header(req, "Content-Type", "text/plain; charset=utf-8");
    hp_printf(req, "%lld %s %.2f\n", hp_db_int(r, 0), hp_db_text(r, 1),
              hp_db_float(r, 2));
    return HP_OK;
}
"""

PHP_PAGE = r"""<?php
$id = (int)($_GET['item_id'] ?? 1);
$db = new PDO('sqlite:%(db)s', null, null, [
    PDO::SQLITE_ATTR_OPEN_FLAGS => PDO::SQLITE_OPEN_READONLY,
    PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION,
    PDO::ATTR_PERSISTENT => %(persistent)s,
]);
$st = $db->prepare('SELECT id, name, price FROM items WHERE id = ?');
$st->execute([$id]);
$row = $st->fetch(PDO::FETCH_NUM);
if (!$row) {
    http_response_code(404);
    exit;
}
header('Content-Type: text/plain; charset=utf-8');
printf("%%d %%s %%.2f\n", $row[0], $row[1], $row[2]);
"""

PHP_INFO = r"""<?php
header('Content-Type: text/plain');
$s = function_exists('opcache_get_status') ? opcache_get_status(false) : false;
echo 'php=', PHP_VERSION, ' opcache=', ($s && $s['opcache_enabled']) ? 'on' : 'off',
     ' jit=', ($s && !empty($s['jit']['enabled'])) ? 'on' : 'off',
     ' pdo_sqlite=', extension_loaded('pdo_sqlite') ? 'yes' : 'no',
     ' sqlite=', (new PDO('sqlite::memory:'))->query('select sqlite_version()')->fetchColumn(),
     "\n";
"""

PY_PAGE_PER_REQUEST = r"""import sqlite3
from mod_python import apache

DB = 'file:%(db)s?mode=ro'


def index(req, item_id='1'):
    conn = sqlite3.connect(DB, uri=True)
    try:
        row = conn.execute('SELECT id, name, price FROM items WHERE id = ?',
                           (int(item_id),)).fetchone()
    finally:
        conn.close()
    if row is None:
        raise apache.SERVER_RETURN(apache.HTTP_NOT_FOUND)
    req.content_type = 'text/plain; charset=utf-8'
    return '%%d %%s %%.2f\n' %% row
"""

PY_PAGE_PERSISTENT = r"""import sqlite3
from mod_python import apache

conn = sqlite3.connect('file:%(db)s?mode=ro', uri=True,
                       check_same_thread=False)


def index(req, item_id='1'):
    row = conn.execute('SELECT id, name, price FROM items WHERE id = ?',
                       (int(item_id),)).fetchone()
    if row is None:
        raise apache.SERVER_RETURN(apache.HTTP_NOT_FOUND)
    req.content_type = 'text/plain; charset=utf-8'
    return '%%d %%s %%.2f\n' %% row
"""

PY_INFO = r"""import sys, sqlite3
from mod_python import apache


def index(req):
    req.content_type = 'text/plain'
    return 'python=%s sqlite=%s mpm_threaded=%s\n' % (
        sys.version.split()[0], sqlite3.sqlite_version,
        apache.mpm_query(apache.AP_MPMQ_IS_THREADED))
"""

WRK_LUA = """-- cycle ids 1..%(rows)d, one per request
local i = 0
request = function()
  i = i %% %(rows)d + 1
  return wrk.format("GET", "%(path)s?item_id=" .. i)
end
"""

# ---- the database ---------------------------------------------------------------


def make_db(path):
    c = sqlite3.connect(path)
    c.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, "
              "price REAL)")
    c.executemany("INSERT INTO items VALUES (?, ?, ?)",
                  (row_of(i) for i in range(1, ROWS + 1)))
    c.commit()
    n = c.execute("SELECT count(*) FROM items").fetchone()[0]
    mode = c.execute("PRAGMA journal_mode").fetchone()[0]
    c.close()
    if n != ROWS or mode != "delete":
        die("building the database: %d rows, journal %s" % (n, mode))


def set_journal(path, mode):
    """Switch a database file's (persistent) journal mode; returns it."""
    c = sqlite3.connect(path)
    got = c.execute("PRAGMA journal_mode = %s" % mode).fetchone()[0]
    c.close()  # the last connection: a WAL database checkpoints, drops -wal
    if got != mode:
        die("%s: journal_mode %s, wanted %s" % (path, got, mode))
    return got


def server_dir(b, name, owner=None, journal="delete"):
    """A directory of its own for one server, holding its copy of the db."""
    d = b.path(name)
    os.makedirs(d)
    shutil.copy2(b.path("master.db"), os.path.join(d, "items.db"))
    if journal != "delete":
        set_journal(os.path.join(d, "items.db"), journal)
    if owner is not None:
        chown_tree(d, owner)
    return d


# ---- process trees -------------------------------------------------------------


def affinity_report(pids):
    """(n processes, n threads, set of Cpus_allowed_list values)."""
    procs, threads, seen = set(), 0, set()
    for p, st in thread_statuses(pids):
        procs.add(p)
        threads += 1
        seen.add(st.get("Cpus_allowed_list", ""))
    return len(procs), threads, seen


# ---- servers ---------------------------------------------------------------------

class PhpFpm(FpmNginx):
    """php-fpm (pm static) + nginx (1 worker) in front of it, on a copy of
    the database; fpm_extra: more pool lines, info_page: the probe page's
    PHP (its answer is .info)."""

    def __init__(self, b, cpu, children, persistent, user, journal,
                 fpm_extra="", info_page=PHP_INFO):
        d = server_dir(b, "php", journal=journal)
        self.db = os.path.join(d, "items.db")
        os.makedirs(os.path.join(d, "www"))
        write_files(os.path.join(d, "www"), (
            ("item.php", PHP_PAGE % {"db": self.db, "persistent":
                                     "true" if persistent else "false"}),
            ("info.php", info_page)))
        port = free_port()
        super().__init__(b, d, port, cpu, user,
                         nginx_conf(d, port, fpm_server(d), user=user.pw_name),
                         fpm_conf(d, user.pw_name, FPM_STATIC % children,
                                  extra=fpm_extra),
                         "/info.php", hint="apt-get install %s" % PACKAGES)
        self.info = self.info.strip()
        self.path = "/item.php"


class ModPython(ModPythonApache):
    """apache2 + mod_python.publisher on a copy of the database."""

    def __init__(self, b, cpu, persistent, user, journal):
        d = server_dir(b, "modpython", journal=journal)
        self.db = os.path.join(d, "items.db")
        os.makedirs(os.path.join(d, "www"))
        page = PY_PAGE_PERSISTENT if persistent else PY_PAGE_PER_REQUEST
        write_files(os.path.join(d, "www"), (("item.py", page % {"db": self.db}),
                                             ("info.py", PY_INFO)))
        super().__init__(b, d, cpu, user, "/info.py",
                         hint="apt-get install %s" % PACKAGES)
        self.info = self.info.strip()
        self.path = "/item.py"


class HotpubSrv:
    def __init__(self, b, binary, name, cpu, workers, docroot):
        self.d = d = server_dir(b, name, journal="wal")
        self.db = os.path.join(d, "items.db")
        self.workers = workers
        self.hp = Hotpub(b, binary, docroot, os.path.join(d, "cache"),
                         extra=["--db", "sqlite:file:%s?mode=ro" % self.db,
                                "--workers", workers],
                         cpu=cpu, name=name)
        self.port = self.hp.port
        self.path = "/item"
        self.pids = [self.hp.pid]
        self.info = "workers=%s" % workers

    def alive(self):
        return self.hp.proc.poll() is None

    def stop(self):
        self.hp.stop()


# ---- wrk with the id script ---------------------------------------------------------

def run_wrk(b, srv, script, args, duration):
    return benchlib.run_wrk(b, "http://127.0.0.1:%d/" % srv.port,
                            cpu=args.client_cpu, conns=args.conns,
                            duration=duration, timeout_s=60, script=script)


def measure(b, name, srv, script, args):
    return measure_cpu(name, lambda: ticks_of(srv.pids, reaped=True),
                       srv.alive, args.server_cpu,
                       lambda: run_wrk(b, srv, script, args, args.duration))


def check_answers(name, srv):
    for i in (1, 42, 4711, ROWS):
        st, body = http_get(srv.port, "%s?item_id=%d" % (srv.path, i), timeout=60)
        if st != 200 or body != body_of(i):
            die("%s %s?item_id=%d answered %s %r, expected 200 %r"
                % (name, srv.path, i, st, body[:200], body_of(i)))
    st, body = http_get(srv.port, "%s?item_id=%d" % (srv.path, ROWS + 1), timeout=10)
    if st != 404:
        die("%s %s?item_id=%d (no such row) answered %s, expected 404"
            % (name, srv.path, ROWS + 1, st))


# ---- main ------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_args(ap)
    ap.add_argument("--fpm-children", type=int, default=4,
                    help="php-fpm pm.max_children, pm = static (default 4)")
    ap.add_argument("--persistent", action="store_true",
                    help="PHP: PDO::ATTR_PERSISTENT; mod_python: one "
                    "module-level sqlite3 connection (default: both open "
                    "the database per request)")
    ap.add_argument("--peer-journal", choices=("delete", "wal"),
                    default="delete", help="journal mode of the PHP and "
                    "Python copies (default: delete, SQLite's default; "
                    "hotpub's copy is always WAL)")
    ap.add_argument("--no-auto", action="store_true",
                    help="skip the second hotpub (--workers auto)")
    args = ap.parse_args()

    if os.geteuid() != 0:
        die("needs root (php-fpm and apache2 drop to %s)" % WEB_USER)
    try:
        user = pwd.getpwnam(WEB_USER)
    except KeyError:
        die("no user %s (apt-get install %s)" % (WEB_USER, PACKAGES))

    b = Bench("db")
    # the web servers' users must reach their directories inside it
    os.chmod(b.tmp, 0o711)
    binary, src, digest = hotpub_binary(b)
    log("== db: one row by primary key of %d (SQLite), %d runs of wrk -t1 -c%d "
        "-d%s keep-alive, ids 1..%d cycled; servers on cpu %d, wrk on cpu %d"
        % (ROWS, args.runs, args.conns, args.duration, ROWS, args.server_cpu,
           args.client_cpu))
    describe_env(b, src, digest)

    make_db(b.path("master.db"))
    note("database: items(id INTEGER PRIMARY KEY, name TEXT, price REAL), %d "
         "rows, %d bytes; a copy per server, opened read-only; journal: "
         "hotpub wal, php-fpm and mod_python %s"
         % (ROWS, os.path.getsize(b.path("master.db")), args.peer_journal))

    docroot = b.path("hp-root")
    os.makedirs(docroot)
    with open(os.path.join(docroot, "item.c"), "w") as f:
        f.write(HOTPUB_PAGE)

    servers = {}
    order = []
    servers["hotpub"] = HotpubSrv(b, binary, "hotpub", args.server_cpu, "0",
                                  docroot)
    order.append("hotpub")
    if not args.no_auto:
        try:
            servers["hotpub-auto"] = HotpubSrv(b, binary, "hotpub-auto",
                                               args.server_cpu, "auto", docroot)
            order.append("hotpub-auto")
        except Exception as e:  # reported, not fatal: the brief's is workers 0
            note("hotpub --workers auto did not start, left out: %s" % e)
    servers["php-fpm"] = PhpFpm(b, args.server_cpu, args.fpm_children,
                                args.persistent, user, args.peer_journal)
    order.append("php-fpm")
    servers["mod_python"] = ModPython(b, args.server_cpu, args.persistent,
                                      user, args.peer_journal)
    order.append("mod_python")

    scripts = {}
    for name in order:
        srv = servers[name]
        check_answers(name, srv)
        scripts[name] = b.path("ids-%s.lua" % name)
        with open(scripts[name], "w") as f:
            f.write(WRK_LUA % {"rows": ROWS, "path": srv.path})

    note("hotpub: --db sqlite:file:PATH?mode=ro --access-log off --no-dev "
         "--workers 0%s; page item.c (hp_db_queryv + HP_INT, a request "
         "transaction)" % ("" if "hotpub-auto" not in servers else
                           "; hotpub-auto: the same with --workers auto"))
    note("php-fpm: pm=static pm.max_children=%d, PDO %s, nginx 1 worker "
         "fastcgi_pass unix socket; %s"
         % (args.fpm_children, "persistent" if args.persistent
            else "opened per request", servers["php-fpm"].info))
    note("mod_python: apache2 %s, KeepAlive On, MaxKeepAliveRequests 0, "
         "publisher, sqlite3 %s; %s"
         % (APACHE_MPM_DESC,
            "module-level connection (check_same_thread=False)"
            if args.persistent else "connect() per request",
            servers["mod_python"].info))
    note("every server answered ids 1, 42, 4711, %d with the right row and %d "
         "with 404" % (ROWS, ROWS + 1))

    for name in order:  # warm-up: compiles, opcache, python imports, processes
        run_wrk(b, servers[name], scripts[name], args, args.warmup)
    pin = {}
    for name in order:
        procs, threads, seen = affinity_report(servers[name].pids)
        pin[name] = seen == {str(args.server_cpu)}
        note("%-11s %3d processes, %4d threads, allowed cpus %s %s"
             % (name, procs, threads, ",".join(sorted(seen)),
                "ok" if pin[name] else "NOT PINNED"))

    res = {n: [] for n in order}
    log("%-3s %-11s %9s %11s %6s %6s %6s %9s  %s" %
        ("run", "server", "req/s", "us cpu/req", "srv%", "cpu1%", "other%",
         "p99", "errors"))
    for i in range(args.runs):
        k = i % len(order)
        for name in order[k:] + order[:k]:
            w = measure(b, name, servers[name], scripts[name], args)
            res[name].append(w)
            log("%-3d %-11s %9.0f %11.1f %6.1f %6.1f %6.1f %7.2fms  %s%s" %
                (i + 1, name, w["rps"], w["cpu_us"], w["srv_pct"],
                 w["cpu1_busy_pct"], w["other_pct"], w["lat_p99"] * 1e3,
                 fmt_err(w),
                 ("  <-- FAILED REQUESTS" if w["errors"] else "") +
                 ("  NOISY" if w["other_pct"] > NOISY else "")))
    # the servers still answer the right rows after the load
    for name in order:
        check_answers(name, servers[name])

    med = {n: {"rps": median([w["rps"] for w in res[n]]),
               "cpu_us": median([w["cpu_us"] for w in res[n]])} for n in order}
    errors = {n: sum(w["errors"] for w in res[n]) for n in order}
    note("srv% = the server's processes' cpu, cpu1% = all of cpu {0} busy, "
         "other% = all cpus minus server and wrk (other processes' noise + "
         "uncharged softirq), each in % of one cpu".format(args.server_cpu))
    for n in order:
        rs = [w["rps"] for w in res[n]]
        log("median %-11s %8.0f req/s  %7.1f us cpu/req  (runs %.0f..%.0f)"
            % (n + ":", med[n]["rps"], med[n]["cpu_us"], min(rs), max(rs)))
    hp = med["hotpub"]
    ratio_php = hp["rps"] / med["php-fpm"]["rps"]
    ratio_py = hp["rps"] / med["mod_python"]["rps"]
    cpu_php = med["php-fpm"]["cpu_us"] / hp["cpu_us"]
    cpu_py = med["mod_python"]["cpu_us"] / hp["cpu_us"]
    log("ratio req/s hotpub/PHP-FPM:    %5.2fx   target >= %.0fx %s"
        % (ratio_php, TARGET, passmiss(ratio_php >= TARGET)))
    log("ratio req/s hotpub/mod_python: %5.2fx" % ratio_py)
    log("cpu/request PHP-FPM/hotpub: %.2fx, mod_python/hotpub: %.2fx "
        "(times more server cpu per request than hotpub)" % (cpu_php, cpu_py))
    auto = ""
    if "hotpub-auto" in med:
        ha = med["hotpub-auto"]
        ra_php = ha["rps"] / med["php-fpm"]["rps"]
        ra_py = ha["rps"] / med["mod_python"]["rps"]
        log("hotpub --workers auto: req/s %.2fx PHP-FPM (%s vs target %.0fx), "
            "%.2fx mod_python; cpu/req %.1f us"
            % (ra_php, passmiss(ra_php >= TARGET), TARGET, ra_py,
               ha["cpu_us"]))
        auto = (" hotpub_auto_rps=%.0f hotpub_auto_us_req=%.1f "
                "auto_ratio_php=%.2f" % (ha["rps"], ha["cpu_us"], ra_php))
    noisy = log_noise([w for n in order for w in res[n]], NOISY)
    log("failed requests (non-2xx + socket errors): %s %s"
        % (", ".join("%s %d" % (n, errors[n]) for n in order),
           passmiss(all(v == 0 for v in errors.values()))))
    if not all(pin.values()):
        log("WARNING: not every server process was pinned to cpu %d"
            % args.server_cpu)
    log("RESULT db hotpub_rps=%.0f php_rps=%.0f modpython_rps=%.0f "
        "ratio_php=%.2f ratio_modpython=%.2f target=%s hotpub_us_req=%.1f "
        "php_us_req=%.1f modpython_us_req=%.1f%s errors=%d noisy=%d" %
        (hp["rps"], med["php-fpm"]["rps"], med["mod_python"]["rps"],
         ratio_php, ratio_py, passmiss(ratio_php >= TARGET), hp["cpu_us"],
         med["php-fpm"]["cpu_us"], med["mod_python"]["cpu_us"], auto,
         sum(errors.values()), noisy))
    for name in reversed(order):
        servers[name].stop()
    return 0


if __name__ == "__main__":
    main_wrapper(main)
