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

Environment:
  HOTPUB       the binary to measure (default: <repo>/hotpub). It is copied
               into the temp directory first, so a concurrent `make` cannot
               swap it half-way through a run.
  BENCH_KEEP=1 keep the temp directory (its path is printed).
"""

import atexit
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
    def __init__(self, b, binary, docroot, cache_dir, extra=(), cpu=None,
                 name="hotpub"):
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
        self.logf = open(self.logpath, "ab")
        self.proc = b.spawn(argv, cpu=cpu, stdout=self.logf, stderr=self.logf)
        self.pid = self.proc.pid  # taskset execs the server: same pid
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
                        if f.read().strip() != "hotpub":
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


# ---- nginx --------------------------------------------------------------------

NGINX_CONF = """worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    keepalive_requests {kareq};
    client_body_temp_path {tmp}/ngx-body;
    proxy_temp_path {tmp}/ngx-proxy;
    fastcgi_temp_path {tmp}/ngx-fastcgi;
    uwsgi_temp_path {tmp}/ngx-uwsgi;
    scgi_temp_path {tmp}/ngx-scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{ return 200 "Hello, world!"; }}
    }}
}}
"""


class Nginx:
    def __init__(self, b, cpu=None, keepalive_requests=100000):
        if not have("nginx"):
            die("nginx is not installed")
        self.b = b
        self.port = free_port()
        d = b.path("nginx")
        os.makedirs(d, exist_ok=True)
        self.conf = os.path.join(d, "nginx.conf")
        with open(self.conf, "w") as f:
            f.write(NGINX_CONF.format(tmp=d, port=self.port,
                                      kareq=keepalive_requests))
        self.logf = open(os.path.join(d, "out.log"), "ab")
        self.proc = b.spawn(["nginx", "-c", self.conf, "-g", "daemon off;",
                             "-e", os.path.join(d, "nginx-error.log")],
                            cpu=cpu, stdout=self.logf, stderr=self.logf)
        self.pid = self.proc.pid
        deadline = time.time() + 10
        while time.time() < deadline:
            if self.proc.poll() is not None:
                with open(os.path.join(d, "nginx-error.log"), "a+") as f:
                    f.seek(0)
                    die("nginx exited at start: %s" % f.read()[-2000:])
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
        rc = self.b.stop(self.proc, signal.SIGTERM, timeout=10)
        self.logf.close()
        return rc


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


def proc_ticks(pid):
    """utime+stime of the whole process (all threads, live and exited)."""
    with open("/proc/%d/stat" % pid) as f:
        s = f.read()
    rest = s[s.rindex(")") + 2:].split()
    return int(rest[11]) + int(rest[12])  # fields 14 and 15


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
            timeout_s=None, headers=(), script=None, wrk_timeout=None):
    """wrk_timeout: wrk's --timeout (a request slower counts as a socket
    timeout; wrk's default is 2s)."""
    if not have("wrk"):
        die("wrk is not installed")
    argv = wrk_argv(url, threads, conns, duration, headers=headers,
                    script=script, timeout=wrk_timeout)
    secs = _dur(duration)
    out = b.path("wrk-%d.out" % time.time_ns())
    with open(out, "wb") as f:
        p = b.spawn(argv, cpu=cpu, stdout=f, stderr=subprocess.STDOUT)
        try:
            p.wait(timeout=timeout_s or secs + 30)
        except subprocess.TimeoutExpired:
            b.stop(p, signal.SIGINT, timeout=5)
            die("wrk did not finish in time")
    with open(out, encoding="utf-8", errors="replace") as f:
        text = f.read()
    r = parse_wrk(text)
    if r is None or p.returncode != 0:
        die("wrk failed (rc %s):\n%s" % (p.returncode, text))
    return r


def fmt_err(w):
    c, rd, wr, to = w["sock"]
    return "non2xx=%d sock(c/r/w/t)=%d/%d/%d/%d" % (w["non2xx"], c, rd, wr, to)
