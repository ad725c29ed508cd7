"""Shared helpers for hotpub's benchmarks (python3 standard library only).

Every benchmark:
  * works in one mktemp directory (removed at exit; BENCH_KEEP=1 keeps it),
  * starts each process in a session of its own and, at exit or on
    SIGINT/SIGTERM, stops exactly those processes (by their ids),
  * bounds every wait,
  * prints its figures, PASS/MISS next to a target, and one machine-readable
    line "RESULT <name> key=value ..." that bench/run-all.sh collects,
  * exits 0 when it measured (even if a target is missed), 1 when it could
    not measure, 2 on a usage error.

What it holds, so a benchmark states only its method:
  Bench, main_wrapper           the temp directory, our processes, exits
  Hotpub, Nginx                 hotpub serve; nginx answering "Hello, world!"
  Proc, wait_http, write_files, chown_tree, require
                                any other server we start, and its files
  nginx_conf, start_nginx       nginx.conf of one foreground 1-worker nginx
  fpm_conf, fpm_server, FpmNginx
                                php-fpm behind nginx (pools, the *.php route)
  ModPythonApache               Apache mpm_event + mod_python.publisher
  descendants, ticks_of, tree_ticks, cpu_jiffies, measure_cpu, log_noise
                                server CPU per request, other processes' noise
  run_wrk, parse_wrk, add_run_args, fmt_err
                                wrk runs and the options that drive them

Environment:
  HOTPUB       the binary to measure (default: <repo>/hotpub). It is copied
               into the temp directory first, so a concurrent `make` cannot
               swap it half-way through a run.
  BENCH_KEEP=1 keep the temp directory (its path is printed).
"""

import atexit
import glob
import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
CLK_TCK = os.sysconf("SC_CLK_TCK")

HELLO_C = r"""#include <hotpub.h>

/* examples-like hello page: GET /hello -> "Hello, world!" */
HP_HANDLER(http_handler)
{
    const char *name = hp_arg(req, "name");
    hp_printf(req, "Hello, %s!", name ? name : "world");
    return HP_OK;
}
"""


def hello_docroot(b):
    """A document root holding the hello page; returns its path."""
    docroot = b.path("root")
    os.makedirs(docroot)
    text, origin = hello_source()
    with open(os.path.join(docroot, "hello.c"), "w") as f:
        f.write(text)
    note("page: %s" % origin)
    return docroot


def hello_source():
    """examples/hello.c when the repo has it (GET /hello -> "Hello, world!"),
    else the same page built in."""
    p = os.path.join(REPO, "examples", "hello.c")
    try:
        with open(p) as f:
            return f.read(), "examples/hello.c"
    except OSError:
        return HELLO_C, "built-in hello.c"


class CannotMeasure(Exception):
    """Raised when a figure could not be obtained (exit status 1)."""


def die(msg):
    raise CannotMeasure(msg)


def log(msg=""):
    print(msg, flush=True)


def note(msg):
    print("# " + msg, flush=True)


def passmiss(ok):
    return "PASS" if ok else "MISS"


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def p99(xs):
    """Nearest-rank 99th percentile."""
    if not xs:
        return float("nan")
    s = sorted(xs)
    k = max(0, min(len(s) - 1, int(-(-0.99 * len(s) // 1)) - 1))
    return s[k]


# ---- processes and the temp directory ---------------------------------------

class Bench:
    def __init__(self, name):
        self.name = name
        self.tmp = tempfile.mkdtemp(prefix="hotpub-bench-%s-" % name)
        self.procs = []  # Popen objects we started, each leading its session
        self.hooks = []  # at_cleanup() functions, run after the processes stop
        self._cleaned = False
        atexit.register(self.cleanup)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum, frame):
        log("# %s: signal %d, cleaning up" % (self.name, signum))
        self.cleanup()
        os._exit(128 + signum)

    def path(self, *parts):
        return os.path.join(self.tmp, *parts)

    def at_cleanup(self, fn):
        """Call fn() once at cleanup (at exit or on a signal), after our
        processes are stopped and before the temp directory goes: for what
        is not a process of ours, e.g. a PostgreSQL cluster pg_ctl detached.
        An exception from fn is printed and the rest still runs."""
        self.hooks.append(fn)

    def spawn(self, argv, cpu=None, stdout=None, stderr=None, stdin=None,
              env=None):
        if cpu is not None:
            argv = ["taskset", "-c", str(cpu)] + list(argv)
        p = subprocess.Popen(argv, stdout=stdout, stderr=stderr,
                             stdin=stdin if stdin is not None
                             else subprocess.DEVNULL,
                             start_new_session=True, env=env)
        self.procs.append(p)
        return p

    def stop(self, p, sig=signal.SIGTERM, timeout=15.0):
        """Signal the process itself, wait, then kill its session group."""
        if p.poll() is None:
            try:
                os.kill(p.pid, sig)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        self._kill_group(p)
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        return p.returncode

    @staticmethod
    def _kill_group(p):
        # The session/group was created for this process (start_new_session),
        # so its id is p.pid: this ends only what we started (and its
        # children, e.g. a compiler hotpub spawned).
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def cleanup(self):
        if self._cleaned:
            return
        self._cleaned = True
        for p in reversed(self.procs):
            if p.poll() is None:
                try:
                    os.kill(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.time() + 5
        for p in reversed(self.procs):
            try:
                p.wait(timeout=max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                pass
            self._kill_group(p)
        for hook in self.hooks:
            try:
                hook()
            except Exception as e:  # noqa: BLE001 - clean up the rest
                log("# cleanup: %s" % e)
        if os.environ.get("BENCH_KEEP") == "1":
            log("# kept temp dir %s" % self.tmp)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)


def main_wrapper(fn):
    """Run fn(); map CannotMeasure to exit 1 with a message."""
    try:
        rc = fn()
    except CannotMeasure as e:
        log("ERROR: could not measure: %s" % e)
        sys.exit(1)
    sys.exit(rc or 0)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def have(cmd):
    return shutil.which(cmd) is not None


# ---- the binary ---------------------------------------------------------------

def hotpub_binary(b):
    src = os.environ.get("HOTPUB", os.path.join(REPO, "hotpub"))
    if not os.path.isfile(src) or not os.access(src, os.X_OK):
        die("no hotpub binary at %s (run `make` in %s or set HOTPUB)"
            % (src, REPO))
    os.makedirs(b.path("bin"), exist_ok=True)
    dst = b.path("bin", "hotpub")
    shutil.copy2(src, dst)
    with open(dst, "rb") as f:
        digest = hashlib.sha1(f.read()).hexdigest()[:12]
    return dst, src, digest


def describe_env(b, binary_src, digest):
    try:
        head = subprocess.run(["git", "-C", REPO, "log", "-1", "--format=%h"],
                              capture_output=True, text=True,
                              timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "-C", REPO, "status", "--short",
                                "--untracked-files=no"],
                               capture_output=True, text=True,
                               timeout=5).stdout.split("\n")
        dirty = [d for d in dirty if d.strip()]
    except Exception:
        head, dirty = "?", []
    mt = time.strftime("%H:%M:%S", time.localtime(os.path.getmtime(binary_src)))
    note("binary %s (sha1 %s, built %s), repo HEAD %s%s" %
         (binary_src, digest, mt, head,
          " + %d modified tracked files" % len(dirty) if dirty else ""))
    with open("/proc/loadavg") as f:
        note("cpus %d, loadavg %s" % (os.cpu_count(), " ".join(f.read().split()[:3])))


# ---- hotpub -----------------------------------------------------------------

class Hotpub:
    """`hotpub serve` of docroot on a free port of 127.0.0.1 (base), the
    measuring flags (--access-log off --no-dev) and extra, pinned to cpu,
    logging to b.path(name + ".log"); waits until /_hotpub/status.json
    answers (15 s) unless wait=False (e.g. a TLS-only server)."""

    def __init__(self, b, binary, docroot, cache_dir, extra=(), cpu=None,
                 name="hotpub", wait=True):
        self.b = b
        self.port = free_port()
        self.base = "127.0.0.1:%d" % self.port
        self.docroot = docroot
        self.cache_dir = cache_dir
        self.logpath = b.path("%s.log" % name)
        argv = [binary, "serve", "--listen", self.base, "--cache-dir",
                cache_dir, "--access-log", "off", "--no-dev",
                "--include-dir", os.path.join(REPO, "include")] + list(extra) + [docroot]
        self.argv = argv
        self.comm = os.path.basename(binary)[:15]  # the kernel's comm
        self.logf = open(self.logpath, "ab")
        self.proc = b.spawn(argv, cpu=cpu, stdout=self.logf, stderr=self.logf)
        self.pid = self.proc.pid  # taskset execs the server: same pid
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout=15.0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                die("hotpub exited (%s) at start; log:\n%s" %
                    (self.proc.returncode, self.log_tail()))
            try:
                st, _ = http_get(self.port, "/_hotpub/status.json", timeout=1)
                if st == 200:
                    # make sure the pid we track is the server (taskset exec'd)
                    with open("/proc/%d/comm" % self.pid) as f:
                        if f.read().strip() != self.comm:
                            time.sleep(0.05)
                            continue
                    return
            except OSError:
                pass
            time.sleep(0.05)
        die("hotpub did not answer within %.0f s; log:\n%s" %
            (timeout, self.log_tail()))

    def status(self):
        st, body = http_get(self.port, "/_hotpub/status.json", timeout=10)
        if st != 200:
            die("status.json answered %d" % st)
        return json.loads(body)

    def module(self, path):
        for m in self.status()["modules"]:
            if m["path"] == path or m["path"].endswith("/" + os.path.basename(path)):
                return m
        return None

    def log_tail(self, n=20):
        try:
            with open(self.logpath, "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()
            return "\n".join(lines[-n:])
        except OSError:
            return ""

    def stop(self):
        rc = self.b.stop(self.proc, signal.SIGTERM, timeout=15)
        self.logf.close()
        return rc


# ---- servers we start: processes, readiness, files ----------------------------

WEB_USER = "www-data"  # the user php-fpm, nginx and apache2 drop to (as root)


class Proc:
    """A server process started by us (Bench.spawn: a session of its own,
    pinned to cpu when not None), its stdout and stderr appended to
    logpath. pid: the server's own id (taskset execs it: the same pid)."""

    def __init__(self, b, argv, cpu, logpath, env=None):
        self.b, self.logpath = b, logpath
        self.logf = open(logpath, "ab")
        self.proc = b.spawn(argv, cpu=cpu, stdout=self.logf,
                            stderr=subprocess.STDOUT, env=env)
        self.pid = self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def tail(self, *paths):
        """The last 2000 bytes of its log and of each of paths (text)."""
        out = []
        for p in (self.logpath,) + paths:
            try:
                with open(p, "rb") as f:
                    out.append(f.read()[-2000:].decode("utf-8", "replace"))
            except OSError:
                pass
        return "\n".join(out)

    def stop(self, sig=signal.SIGTERM):
        """sig to the process, up to 10 s, then SIGKILL to its session."""
        self.b.stop(self.proc, sig, timeout=10)
        self.logf.close()


def wait_http(port, path, alive, what, logs=lambda: "", timeout=20.0):
    """Poll GET path on 127.0.0.1:port every 0.1 s until it answers 200;
    returns the body (text). Dies (CannotMeasure) when alive() turns false
    or after timeout seconds, with what (a name for the message) and
    logs() (text, e.g. Proc.tail) in the message."""
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


def write_files(d, files):
    """Write each (name, text) of files into directory d (which exists)."""
    for name, text in files:
        with open(os.path.join(d, name), "w") as f:
            f.write(text)


def chown_tree(d, owner):
    """Give d and everything below it to owner (a pwd entry: uid and gid)."""
    for root, dirs, files in os.walk(d):
        os.chown(root, owner.pw_uid, owner.pw_gid)
        for f in files:
            os.chown(os.path.join(root, f), owner.pw_uid, owner.pw_gid)


def require(tools, hint="tools/deps.sh --bench"):
    """Die unless every command of tools is on PATH."""
    for tool in tools:
        if not have(tool):
            die("%s is not installed (%s)" % (tool, hint))


# ---- nginx --------------------------------------------------------------------

NGINX_CONF = """{user}worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/nginx-error.log warn;
events {{ worker_connections {connections}; }}
http {{
    access_log off;
{http}    client_body_temp_path {d}/ngx-body;
    proxy_temp_path {d}/ngx-proxy;
    fastcgi_temp_path {d}/ngx-fastcgi;
    uwsgi_temp_path {d}/ngx-uwsgi;
    scgi_temp_path {d}/ngx-scgi;
    server {{
        listen 127.0.0.1:{port}{listen};
{server}    }}
{tail}}}
"""


def nginx_conf(d, port, server, user=None, connections=1024,
               http=("keepalive_requests 100000",), listen="", tail=""):
    """An nginx.conf (text) for one foreground nginx with 1 worker whose
    pid file, error log (d/nginx-error.log) and temp paths are in directory
    d, no access log, one server on 127.0.0.1:port.
      server       the server block's body after its listen line (text,
                   indented 8, each line ending in a newline)
      user         the user workers run as (None: nginx's default; only
                   as root)
      connections  worker_connections
      http         http-level directives, each without its ';'
                   (default: keepalive_requests 100000, so clients stay on
                   keep-alive)
      listen       more listen parameters, e.g. " ssl", " backlog=4096"
      tail         http-level blocks after the server (text, indented 4)"""
    return NGINX_CONF.format(
        user="user %s;\n" % user if user else "", d=d, port=port,
        connections=connections, listen=listen, server=server, tail=tail,
        http="".join("    %s;\n" % h for h in http))


def start_nginx(b, d, cpu):
    """nginx -c d/nginx.conf in the foreground, pinned to cpu, as a Proc
    logging to d/nginx.out (its own errors: d/nginx-error.log)."""
    return Proc(b, ["nginx", "-c", os.path.join(d, "nginx.conf"), "-g",
                    "daemon off;", "-e", os.path.join(d, "nginx-error.log")],
                cpu, os.path.join(d, "nginx.out"))


HELLO_SERVER = '        location / { return 200 "Hello, world!"; }\n'


class Nginx:
    """nginx answering GET / with `return 200 "Hello, world!"` (1 worker,
    keepalive_requests as given) in b.path("nginx"), ready when it answers
    and its worker runs. pid: the master; workers(): the worker ids."""

    def __init__(self, b, cpu=None, keepalive_requests=100000):
        if not have("nginx"):
            die("nginx is not installed")
        self.b = b
        self.port = free_port()
        d = b.path("nginx")
        os.makedirs(d, exist_ok=True)
        self.conf = os.path.join(d, "nginx.conf")
        with open(self.conf, "w") as f:
            f.write(nginx_conf(d, self.port, HELLO_SERVER, http=(
                "keepalive_requests %d" % keepalive_requests,)))
        self.p = start_nginx(b, d, cpu)
        self.proc, self.pid = self.p.proc, self.p.pid
        err = os.path.join(d, "nginx-error.log")
        deadline = time.time() + 10
        while time.time() < deadline:
            if self.proc.poll() is not None:
                die("nginx exited at start: %s" % self.p.tail(err))
            try:
                st, body = http_get(self.port, "/", timeout=1)
                if st == 200 and self.workers():
                    return
            except OSError:
                pass
            time.sleep(0.05)
        die("nginx did not answer within 10 s")

    def workers(self):
        return children_of(self.pid)

    def stop(self):
        # SIGTERM to the master: fast shutdown of master and worker.
        self.p.stop()
        return self.proc.returncode


# ---- PHP-FPM behind nginx ------------------------------------------------------

FPM_CONF = """[global]
pid = {d}/fpm.pid
error_log = {d}/fpm-error.log
daemonize = no

[{pool}]
user = {user}
group = {user}
listen = {d}/fpm.sock
listen.owner = {user}
listen.group = {user}
listen.mode = 0660
{backlog}{pm}
pm.max_requests = 0
{extra}"""

FPM_STATIC = "pm = static\npm.max_children = %d"


def fpm_conf(d, user, pm, pool="bench", backlog=None, extra=""):
    """A php-fpm.conf (text): php-fpm in the foreground, its pid file and
    error log (d/fpm-error.log) in directory d, one pool (named pool) of
    user listening on the unix socket d/fpm.sock (mode 0660, user's), with
    the pm lines given (e.g. FPM_STATIC % 4), children never recycled
    (pm.max_requests = 0), listen.backlog when not None, and extra pool
    lines (text, each ending in a newline, e.g. php_admin_value[...])."""
    return FPM_CONF.format(d=d, user=user, pool=pool, pm=pm, extra=extra,
                           backlog="" if backlog is None else
                           "listen.backlog = %d\n" % backlog)


# nginx in front of php-fpm: every *.php of d/www through fastcgi_pass.
FPM_SERVER = """        root {d}/www;
        location ~ \\.php$ {{
            include /etc/nginx/fastcgi.conf;
{fastcgi}            fastcgi_pass unix:{d}/fpm.sock;
        }}
"""


def fpm_server(d, fastcgi=()):
    """nginx_conf's server body: root d/www, each *.php passed to php-fpm
    on d/fpm.sock, with the fastcgi directives given (each without ';')."""
    return FPM_SERVER.format(d=d, fastcgi="".join(
        "            %s;\n" % x for x in fastcgi))


def fpm_binary():
    """Debian's php-fpm (php-fpm8.2, php-fpm, /usr/sbin/php-fpm*), or None."""
    for c in ["php-fpm8.2", "php-fpm"] + sorted(glob.glob("/usr/sbin/php-fpm*"),
                                               reverse=True):
        p = shutil.which(c) or (c if os.path.isabs(c) and os.access(c, os.X_OK)
                                else None)
        if p:
            return p
    return None


class FpmNginx:
    """php-fpm and nginx (1 worker) in front of it, pinned to cpu, in
    directory d, whose www/ the caller has filled with the pages.
      nginx_text  d/nginx.conf (nginx_conf(...), e.g. with fpm_server(d))
      fpm_text    d/fpm.conf (fpm_conf(...)); None: nginx alone
      probe       a path that must answer 200 once both run; info is its
                  body (text)
      hint        where the missing packages come from (for the message)
    Gives d to user (a pwd entry), starts php-fpm and waits for its socket
    (15 s), then nginx, then for the probe (20 s); dies otherwise with the
    logs. pids: [nginx master, php-fpm master] (their children below them,
    for ticks_of). stop(): nginx by SIGTERM, php-fpm by stop_signal
    (SIGQUIT: graceful; SIGTERM: at once)."""

    def __init__(self, b, d, port, cpu, user, nginx_text, fpm_text, probe,
                 hint="tools/deps.sh --bench", what="nginx+php-fpm",
                 stop_signal=signal.SIGQUIT):
        fpm = fpm_binary() if fpm_text is not None else None
        if (fpm_text is not None and not fpm) or not have("nginx"):
            die("php-fpm or nginx is not installed (%s)" % hint)
        self.b, self.d, self.port = b, d, port
        self.stop_signal = stop_signal
        with open(os.path.join(d, "nginx.conf"), "w") as f:
            f.write(nginx_text)
        if fpm_text is not None:
            with open(os.path.join(d, "fpm.conf"), "w") as f:
                f.write(fpm_text)
        chown_tree(d, user)
        self.fpm = self.nginx = None
        logs = lambda: (self.fpm or self.nginx).tail(  # noqa: E731
            os.path.join(d, "fpm-error.log"),
            os.path.join(d, "nginx-error.log"))
        if fpm_text is not None:
            # php-fpm reads the fpm SAPI's php.ini as Debian packages it
            # (/etc/php/X/fpm/php.ini + conf.d: opcache on, JIT off).
            self.fpm = Proc(b, [fpm, "--nodaemonize", "--fpm-config",
                                os.path.join(d, "fpm.conf")],
                            cpu, os.path.join(d, "fpm.out"))
            deadline = time.time() + 15
            while not os.path.exists(os.path.join(d, "fpm.sock")):
                if not self.fpm.alive() or time.time() > deadline:
                    die("php-fpm did not start:\n%s" % logs())
                time.sleep(0.05)
        self.nginx = start_nginx(b, d, cpu)
        self.info = wait_http(port, probe, self.alive, what, logs)
        self.pids = [self.nginx.pid] + ([self.fpm.pid] if self.fpm else [])

    def www(self, name):
        return os.path.join(self.d, "www", name)

    def alive(self):
        return ((self.fpm is None or self.fpm.alive()) and
                (self.nginx is None or self.nginx.alive()))

    def stop(self):
        self.nginx.stop()
        if self.fpm:
            self.fpm.stop(self.stop_signal)


# ---- Apache + mod_python ---------------------------------------------------------

APACHE_CONF = """ServerRoot /etc/apache2
DefaultRuntimeDir {d}
PidFile {d}/apache2.pid
Mutex file:{d} default
Listen 127.0.0.1:{port}
ServerName 127.0.0.1
User {user}
Group {user}
ErrorLog {d}/error.log
LogLevel warn
{mpm}
LoadModule authz_core_module /usr/lib/apache2/modules/mod_authz_core.so
LoadModule mime_module /usr/lib/apache2/modules/mod_mime.so
TypesConfig /dev/null
LoadModule python_module /usr/lib/apache2/modules/mod_python.so
KeepAlive On
MaxKeepAliveRequests 0
KeepAliveTimeout 5
DocumentRoot {d}/www
<Directory />
    AllowOverride None
    Require all denied
</Directory>
<Directory {d}/www>
    AllowOverride None
    Require all granted
    AddHandler mod_python .py
    PythonHandler mod_python.publisher
    PythonDebug Off
</Directory>
"""


# Debian's default MPM (event) as a fixed pool, like php-fpm's pm = static:
# no process is started or reaped while measuring, and each process has more
# request threads than wrk's 50 connections. (With Debian's mpm_event.conf
# numbers, 2-6 processes of 25 threads, a process whose threads are all busy
# closes its keep-alive connections early: wrk counted read errors.)
APACHE_MPM = """LoadModule mpm_event_module /usr/lib/apache2/modules/mod_mpm_event.so
ServerLimit             2
StartServers            2
ThreadLimit             64
ThreadsPerChild         64
MinSpareThreads         1
MaxSpareThreads         128
MaxRequestWorkers       128
MaxConnectionsPerChild  0"""
APACHE_MPM_DESC = "mpm_event, 2 processes x 64 threads, fixed"
SYS_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class ModPythonApache:
    """Debian's apache2 (APACHE_CONF: APACHE_MPM, KeepAlive On and
    unlimited, mod_python.publisher for every *.py of d/www) in the
    foreground, pinned to cpu, in directory d, whose www/ the caller has
    filled. Gives d to user (a pwd entry), starts apache2 on a free port
    and waits (20 s) for probe to answer 200; info is its body (text).
    hint: where the packages come from (for the message). pids: [the
    parent] (its children below it). stop(): SIGTERM, the parent stops its
    children at once (no graceful wait)."""

    def __init__(self, b, d, cpu, user, probe, hint="tools/deps.sh --bench"):
        if not (os.path.exists("/usr/lib/apache2/modules/mod_python.so") and
                (have("apache2") or os.path.exists("/usr/sbin/apache2"))):
            die("apache2 / mod_python not installed (%s)" % hint)
        self.b, self.d = b, d
        self.port = free_port()
        with open(os.path.join(d, "apache2.conf"), "w") as f:
            f.write(APACHE_CONF.format(d=d, user=user.pw_name, port=self.port,
                                       mpm=APACHE_MPM))
        chown_tree(d, user)
        apache2 = shutil.which("apache2") or "/usr/sbin/apache2"
        # the environment Debian's apache2ctl gives it (envvars): embedded
        # Python must find Debian's python3, not one earlier in our PATH
        env = {"PATH": SYS_PATH, "LANG": "C"}
        self.apache = Proc(b, [apache2, "-f", os.path.join(d, "apache2.conf"),
                               "-DFOREGROUND"],
                           cpu, os.path.join(d, "apache2.out"), env=env)
        self.info = wait_http(self.port, probe, self.alive,
                              "apache2+mod_python",
                              lambda: self.apache.tail(
                                  os.path.join(d, "error.log")))
        self.pids = [self.apache.pid]

    def alive(self):
        return self.apache.alive()

    def stop(self):
        self.apache.stop()


# ---- /proc ---------------------------------------------------------------------

def children_of(pid):
    kids = []
    try:
        for tid in os.listdir("/proc/%d/task" % pid):
            try:
                with open("/proc/%d/task/%s/children" % (pid, tid)) as f:
                    kids += [int(x) for x in f.read().split()]
            except OSError:
                pass
    except OSError:
        pass
    return kids


def descendants(pid):
    """pid and every process below it (children, theirs, ...), pid first:
    a list of process ids, read from /proc at the time of the call."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children_of(p)
    return out


def thread_statuses(pids):
    """Each thread of each process under pids (descendants()): yields
    (pid, the thread's /proc/PID/task/TID/status as a dict of its fields,
    values as text). Processes and threads that end meanwhile are
    skipped."""
    for root in pids:
        for p in descendants(root):
            try:
                tids = os.listdir("/proc/%d/task" % p)
            except OSError:
                continue
            for t in tids:
                try:
                    with open("/proc/%d/task/%s/status" % (p, t)) as f:
                        st = dict(ln.split(":", 1) for ln in f if ":" in ln)
                except OSError:
                    continue
                yield p, {k: v.strip() for k, v in st.items()}


def _stat_fields(pid):
    """/proc/PID/stat's fields after the command name (field 3 is [0])."""
    with open("/proc/%d/stat" % pid) as f:
        s = f.read()
    return s[s.rindex(")") + 2:].split()


def proc_ticks(pid):
    """utime+stime of the whole process (all threads, live and exited)."""
    rest = _stat_fields(pid)
    return int(rest[11]) + int(rest[12])  # fields 14 and 15


def ticks_of(pids, reaped=False):
    """CPU time in clock ticks (CLK_TCK a second) of every process under
    each of pids (descendants(), so a server's master and all its workers):
    utime+stime of each (all its threads, live and exited); reaped=True
    adds cutime+cstime, so children that exited and were reaped (a php-fpm
    child recycled, a compiler) count too, in their parent's. A process
    gone while it is read counts 0."""
    t = 0
    for root in pids:
        for p in descendants(root):
            try:
                v = _stat_fields(p)
            except OSError:
                continue
            t += int(v[11]) + int(v[12])  # fields 14 and 15
            if reaped:
                t += int(v[13]) + int(v[14])  # fields 16 and 17
    return t


def tree_ticks(pid):
    """The process and its direct children (nginx master + worker)."""
    t = proc_ticks(pid)
    for c in children_of(pid):
        try:
            t += proc_ticks(c)
        except OSError:
            pass
    return t


def cpu_jiffies(cpu=None):
    """Jiffies of one CPU (or all, cpu=None) from /proc/stat:
    dict busy, total, softirq, irq."""
    key = "cpu " if cpu is None else "cpu%d " % cpu
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith(key):
                v = [int(x) for x in line.split()[1:9]]
                total = sum(v)
                return {"busy": total - v[3] - v[4], "total": total,
                        "irq": v[5], "softirq": v[6]}
    return {"busy": 0, "total": 0, "irq": 0, "softirq": 0}


def children_ticks():
    """utime+stime of our reaped children (wrk, strace, ...), in ticks."""
    import resource
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (r.ru_utime + r.ru_stime) * CLK_TCK


def proc_status(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return line.split(":", 1)[1].strip()
    return None


def vmrss_kib(pid):
    v = proc_status(pid, "VmRSS")
    return int(v.split()[0]) if v else -1


def dir_size(path):
    total = files = 0
    for root, dirs, fs in os.walk(path):
        for n in fs:
            try:
                total += os.lstat(os.path.join(root, n)).st_size
                files += 1
            except OSError:
                pass
    return total, files


# ---- HTTP ------------------------------------------------------------------------

def http_get(port, path, timeout=5):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read().decode("utf-8", "replace")
    finally:
        c.close()


class KAClient:
    """One keep-alive connection; reconnects (and counts it) on errors."""

    def __init__(self, port, timeout=10):
        self.port = port
        self.timeout = timeout
        self.conn = None
        self.errors = 0
        self.reconnects = 0
        self.last_error = None

    def _connect(self):
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port,
                                               timeout=self.timeout)
        self.conn.connect()

    def get(self, path):
        """(status, body) or (None, error text)."""
        try:
            if self.conn is None:
                self._connect()
            self.conn.request("GET", path)
            r = self.conn.getresponse()
            body = r.read().decode("utf-8", "replace")
            if r.will_close:
                self.close()
                self.reconnects += 1
            return r.status, body
        except (OSError, http.client.HTTPException) as e:
            self.errors += 1
            self.last_error = "%s: %s" % (type(e).__name__, e)
            self.close()
            self.reconnects += 1
            return None, self.last_error

    def close(self):
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:
                pass
        self.conn = None


# ---- wrk -------------------------------------------------------------------------

_UNIT = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def _dur(s):
    m = re.match(r"([\d.]+)(us|ms|s|m|h)$", s)
    return float(m.group(1)) * _UNIT[m.group(2)] if m else float("nan")


def parse_wrk(text):
    r = {"raw": text}
    m = re.search(r"(\d+) requests in ([\d.]+(?:us|ms|s|m|h))", text)
    if not m:
        return None
    r["requests"] = int(m.group(1))
    r["seconds"] = _dur(m.group(2))
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    r["rps"] = float(m.group(1)) if m else float("nan")
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    r["non2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), "
                  r"timeout (\d+)", text)
    r["sock"] = tuple(int(x) for x in m.groups()) if m else (0, 0, 0, 0)
    r["errors"] = r["non2xx"] + sum(r["sock"])
    m = re.search(r"Latency\s+(\S+)\s+(\S+)\s+(\S+)", text)
    r["lat_max"] = _dur(m.group(3)) if m else float("nan")
    r["lat_avg"] = _dur(m.group(1)) if m else float("nan")
    for pct in ("50", "99"):
        m = re.search(r"^\s+%s%%\s+(\S+)" % pct, text, re.M)
        r["lat_p" + pct] = _dur(m.group(1)) if m else float("nan")
    return r


def wrk_argv(url, threads=1, conns=50, duration="10s", latency=True,
             timeout=None, headers=(), script=None):
    argv = ["wrk", "-t%d" % threads, "-c%d" % conns, "-d%s" % duration]
    for h in headers:
        argv += ["-H", h]
    if script:
        argv += ["-s", script]
    if latency:
        argv.append("--latency")
    if timeout:
        argv += ["--timeout", timeout]
    return argv + [url]


def run_wrk(b, url, cpu=0, threads=1, conns=50, duration="10s",
            timeout_s=None, headers=(), script=None, wrk_timeout=None,
            script_args=()):
    """One wrk run (--latency) pinned to cpu; parse_wrk's dict of it.
    duration: wrk's -d ("10s"); timeout_s: seconds to wait for wrk (default
    duration + 30); wrk_timeout: wrk's --timeout (a request slower counts
    as a socket timeout; wrk's default is 2s); script: a Lua script (-s)
    and script_args the arguments it gets (after "--"). Dies when wrk
    fails, prints nothing parsable or overruns."""
    if not have("wrk"):
        die("wrk is not installed")
    argv = wrk_argv(url, threads, conns, duration, headers=headers,
                    script=script, timeout=wrk_timeout)
    if script_args:
        argv += ["--"] + [str(a) for a in script_args]
    secs = _dur(duration)
    out = b.path("wrk-%d.out" % time.time_ns())
    with open(out, "wb") as f:
        p = b.spawn(argv, cpu=cpu, stdout=f, stderr=subprocess.STDOUT)
        try:
            p.wait(timeout=timeout_s or secs + 30)
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


def measure_cpu(name, ticks, alive, server_cpu, run):
    """One measured run: w = run() (a run_wrk dict) between two samples of
    ticks() (the server's CPU, clock ticks, e.g. ticks_of(pids)) and of
    /proc/stat; dies when alive() is false afterwards or wrk counted no
    request (name: the server, for the message). Adds to w:
      cpu_us            server CPU per request, microseconds
      srv_pct           server CPU, % of one CPU over the run
      cpu1_busy_pct     server_cpu's busy time, % of it
      cpu1_softirq_pct  server_cpu's softirq time, % of it
      other_pct         every CPU's busy time minus the server's and our
                        reaped children's (wrk), % of one CPU: other
                        processes' noise + softirq charged to no process
    The wall time is server_cpu's total jiffies (None: all CPUs')."""
    t0 = ticks()
    c0, a0, k0 = cpu_jiffies(server_cpu), cpu_jiffies(), children_ticks()
    w = run()
    c1, a1, k1 = cpu_jiffies(server_cpu), cpu_jiffies(), children_ticks()
    t1 = ticks()
    if not alive():
        die("%s died during the run" % name)
    if w["requests"] <= 0:
        die("%s: wrk counted no requests" % name)
    used = t1 - t0
    wall = max(1, c1["total"] - c0["total"])  # jiffies of one cpu
    w["cpu_us"] = used / CLK_TCK / w["requests"] * 1e6
    w["srv_pct"] = 100.0 * used / wall
    w["cpu1_busy_pct"] = 100.0 * (c1["busy"] - c0["busy"]) / wall
    w["cpu1_softirq_pct"] = 100.0 * (c1["softirq"] - c0["softirq"]) / wall
    w["other_pct"] = 100.0 * ((a1["busy"] - a0["busy"]) - used -
                              (k1 - k0)) / wall
    return w


def log_noise(ws, noisy):
    """Print how many of the measurements ws (measure_cpu dicts) had
    other_pct above noisy (%); returns that count."""
    n = sum(1 for w in ws if w["other_pct"] > noisy)
    log("noise: %d of %d measurements had other%% > %.0f%% (CPU taken by "
        "other processes); %s" % (n, len(ws), noisy,
                                  "figures unreliable, rerun when idle"
                                  if n else "ok"))
    return n


def add_run_args(ap, conns=50, warmup=True):
    """The options of the wrk benchmarks, on an argparse parser: --runs (3),
    --duration (wrk -d, 10s), --conns (wrk -c), --warmup (an untimed wrk
    run per server, 2s; warmup=False: none), --server-cpu (1) and
    --client-cpu (0)."""
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--duration", default="10s", help="wrk -d (default 10s)")
    ap.add_argument("--conns", type=int, default=conns,
                    help="wrk -c (default %d)" % conns)
    if warmup:
        ap.add_argument("--warmup", default="2s",
                        help="untimed wrk run per server")
    ap.add_argument("--server-cpu", type=int, default=1)
    ap.add_argument("--client-cpu", type=int, default=0)


def fmt_err(w):
    c, rd, wr, to = w["sock"]
    return "non2xx=%d sock(c/r/w/t)=%d/%d/%d/%d" % (w["non2xx"], c, rd, wr, to)
