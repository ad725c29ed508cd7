"""Shared helpers for hotpub's end-to-end tests (standard library only).

A test is a function test_*(). It builds a document root, starts a real
`hotpub serve` on a free loopback port with `Server`, talks HTTP to it and
raises TestFailure (via check/check_eq/...) on a wrong answer.

Every wait here is bounded: sockets have timeouts, polls have deadlines and
a server is always stopped (SIGTERM, then SIGKILL) when its `with` ends.
"""

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))

# Multiplier for the latency bounds of the contract (reload within 1 s, ...).
# Sanitizer builds run slower; HOTPUB_E2E_SLACK overrides.
def _default_slack():
    env = os.environ.get("HOTPUB_E2E_SLACK")
    if env:
        return float(env)
    b = os.path.basename(os.environ.get("HOTPUB_BIN", ""))
    if b.endswith("-asan") or b.endswith("-tsan"):
        return 2.0
    return 1.0


SLACK = _default_slack()


def limit(seconds):
    """A latency bound of the contract, scaled by SLACK."""
    return seconds * SLACK

START_TIMEOUT = 10.0 * max(1.0, SLACK)   # server must accept connections
STOP_TIMEOUT = 15.0                      # SIGTERM -> exit
HTTP_TIMEOUT = 15.0                      # any single request
SANITIZER_MARKS = (
    "ERROR: AddressSanitizer",
    "ERROR: LeakSanitizer",
    "WARNING: ThreadSanitizer",
    "runtime error:",
)


class TestFailure(Exception):
    pass


class Skip(Exception):
    """Raised by a test that does not apply (e.g. to this database engine):
    the runner prints "skip NAME: reason" and counts it neither way."""


def fail(msg):
    raise TestFailure(msg)


def note(msg):
    """Extra detail printed under the test's line with HOTPUB_E2E_VERBOSE=1."""
    if os.environ.get("HOTPUB_E2E_VERBOSE"):
        print("     note: %s" % msg, flush=True)


def check(cond, msg):
    if not cond:
        raise TestFailure(msg)


def short(v, n=300):
    if isinstance(v, bytes):
        v = v.decode("utf-8", "replace")
    v = str(v)
    return v if len(v) <= n else v[:n] + "...(%d chars)" % len(v)


def check_eq(got, want, what="value"):
    if got != want:
        raise TestFailure("%s: got %s, want %s" % (what, short(repr(got)),
                                                    short(repr(want))))


def check_in(needle, hay, what="body"):
    if needle not in hay:
        raise TestFailure("%s does not contain %r: %s" % (what, needle,
                                                          short(repr(hay))))


def check_not_in(needle, hay, what="body"):
    if needle in hay:
        raise TestFailure("%s must not contain %r: %s" % (what, needle,
                                                          short(repr(hay))))


def check_port_closed(port):
    """Fail if something still accepts connections on port (after the
    server exited)."""
    try:
        c = socket.create_connection(("127.0.0.1", port), timeout=1)
        c.close()
        fail("port still accepts connections after exit")
    except OSError:
        pass


def hotpub_bin():
    b = os.environ.get("HOTPUB_BIN", "")
    if not b or not os.path.isfile(b) or not os.access(b, os.X_OK):
        return None
    return os.path.abspath(b)


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def wait_until(fn, timeout, interval=0.02):
    """Call fn() until it returns a true value or timeout passes.
    Returns the value, or None on timeout. Exceptions from fn count as
    'not yet' (the last one is kept in wait_until.last_error)."""
    deadline = time.monotonic() + timeout
    wait_until.last_error = None
    while True:
        try:
            v = fn()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 - polling
            wait_until.last_error = e
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval)


wait_until.last_error = None


# ---- files -------------------------------------------------------------

def write_file(path, content, how="inplace", scratch=None):
    """Write content (str or bytes) to path.
    how: 'inplace' (open 'w' + write), 'copy' (shutil.copyfile from another
    file, made in `scratch`), 'rename' (write a temp file in the same
    directory, then os.rename onto path)."""
    data = content.encode() if isinstance(content, str) else content
    d = os.path.dirname(path)
    if d:
        os.makedirs(d, exist_ok=True)
    if how == "inplace":
        with open(path, "wb") as f:
            f.write(data)
    elif how == "copy":
        fd, tmp = tempfile.mkstemp(prefix="copysrc-",
                                   dir=scratch or tempfile.gettempdir())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        shutil.copyfile(tmp, path)
        os.unlink(tmp)
    elif how == "rename":
        # the temp name starts with '.', like an editor's, in the same dir
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".part", dir=d)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.rename(tmp, path)
    else:
        raise ValueError(how)


def page(body, includes=""):
    """C source of a page: body is the rest of the file after the include."""
    return "#include <hotpub.h>\n%s\n%s\n" % (includes, body)


def simple_page(text, extra=""):
    """A page whose http_handler prints exactly `text`."""
    return page('HP_HANDLER(http_handler)\n{\n    %s\n    hp_puts(req, "%s");\n'
                "    return HP_OK;\n}\n" % (extra, c_escape(text)))


def build_page_so(src, tmp):
    """A prebuilt .so page (docs/pages.md "Prebuilt .so pages") of the C
    source src, built in tmp with the documented command: its bytes."""
    inc = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                       "include")
    c, so = os.path.join(tmp, "prebuilt.c"), os.path.join(tmp, "prebuilt.so")
    with open(c, "w") as f:
        f.write(src)
    subprocess.run(["cc", "-O2", "-shared", "-fPIC", "-fvisibility=hidden",
                    "-I", inc, "-o", so, c], check=True)
    with open(so, "rb") as f:
        return f.read()


def c_escape(s):
    return s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


# ---- HTTP ----------------------------------------------------------------

class Response:
    def __init__(self, status, headers, body, raw_headers=None):
        self.status = status
        self.headers = headers      # lower-case name -> last value
        self.raw_headers = raw_headers or []  # [(name, value)] as received
        self.body = body            # bytes

    @property
    def text(self):
        return self.body.decode("utf-8", "replace")

    def header(self, name):
        return self.headers.get(name.lower())

    def all(self, name):
        n = name.lower()
        return [v for k, v in self.raw_headers if k.lower() == n]

    def __iter__(self):  # (status, headers, body) unpacking
        return iter((self.status, self.headers, self.text))

    def __repr__(self):
        return "<%s %s>" % (self.status, short(self.body, 120))


def _mkresponse(r, body):
    raw = list(r.getheaders())
    return Response(r.status, {k.lower(): v for k, v in raw}, body, raw)


def request(port, path, method="GET", body=None, headers=None,
            timeout=HTTP_TIMEOUT, conn=None):
    """One HTTP request. With conn (an http.client.HTTPConnection) reuses it."""
    own = conn is None
    if own:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        if isinstance(body, str):
            body = body.encode()
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        data = r.read()
        return _mkresponse(r, data)
    finally:
        if own:
            conn.close()


def raw_request(port, data, timeout=5.0, read_all=False):
    """Send raw bytes; parse one response. Returns Response, or None if the
    server closed the connection without answering.
    Send errors (the server may close early) are ignored: the answer counts."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        try:
            s.sendall(data)
        except OSError:
            pass
        buf = b""
        deadline = time.monotonic() + timeout
        head_end = -1
        clen = None
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            except OSError:
                break
            if not chunk:
                break
            buf += chunk
            if head_end < 0:
                head_end = buf.find(b"\r\n\r\n")
                if head_end >= 0:
                    for line in buf[:head_end].split(b"\r\n")[1:]:
                        k, _, v = line.partition(b":")
                        if k.strip().lower() == b"content-length":
                            try:
                                clen = int(v.strip())
                            except ValueError:
                                pass
            if head_end >= 0 and not read_all and clen is not None and \
                    len(buf) >= head_end + 4 + clen:
                break
        if not buf:
            return None
        return parse_raw_response(buf)
    finally:
        s.close()


def parse_raw_response(buf):
    head, _, body = buf.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    try:
        status = int(parts[1])
    except (IndexError, ValueError):
        fail("unparseable status line: %r" % lines[0][:200])
    raw = []
    for line in lines[1:]:
        k, _, v = line.partition(b":")
        raw.append((k.decode("latin-1").strip(), v.decode("latin-1").strip()))
    return Response(status, {k.lower(): v for k, v in raw}, body, raw)


# ---- the server ------------------------------------------------------------

_live = set()          # servers not yet stopped (the runner's watchdog kills)
_live_lock = threading.Lock()
_started = []          # every Server of the current test, for stderr tails
_owned = []            # the temp trees the current test's Servers made


def _sweep_owned(passed):
    """After a test's attempt: the temp trees its Servers made (tmp=None)
    go if it passed or was skipped; a failed attempt's stay, where
    stderr_tails names them. A Server leaves its tree on its own only at
    the clean end of a `with` block, and most tests stop theirs otherwise
    (explicit stop, a restart, an exception they expect)."""
    if passed:
        for d in _owned:
            shutil.rmtree(d, ignore_errors=True)
    del _owned[:]


def reset_test_state():
    del _started[:]


def kill_all_live():
    with _live_lock:
        servers = list(_live)
    for s in servers:
        s.kill()


def stderr_tails(lines=25):
    out = []
    for s in _started:
        t = s.stderr_tail(lines)
        if t.strip():
            out.append("--- server %s (port %s, files in %s) stderr tail:" % (
                s.proc.pid if s.proc else "?", s.port, s.tmp))
            out.extend("    | " + l for l in t.rstrip("\n").split("\n"))
    return "\n".join(out)


class Server:
    """`with Server(files={...}, args=[...]) as s:` runs hotpub serve.

    files: {relative path: content}; a directory gets created as needed.
    The temp tree is tmp/root (docroot), tmp/cache, tmp/scratch, tmp/logs.
    check_exit: on stop, fail unless the server exited 0 on SIGTERM and its
    stderr carries no sanitizer report.
    fast_tier: --fast-tier (True), --no-fast-tier (False, the default: one
    build per edit, the timing and version sequences most tests expect),
    or None for the server's auto (on in dev mode); tests/e2e/devloop.py
    tests the fast tier.
    workers: --workers N; the default 0 runs one process, which the tests
    that look at pids, /proc/PID/maps and per-process state rely on. None
    passes no flag (the server's own default).
    """

    def __init__(self, files=None, args=None, dev=None, tmp=None,
                 check_exit=True, start=True, env=None, workers=0,
                 fast_tier=False):
        self.own_tmp = tmp is None
        self.tmp = tmp or tempfile.mkdtemp(prefix="hotpub-e2e-")
        if self.own_tmp:
            _owned.append(self.tmp)
        self.root = os.path.join(self.tmp, "root")
        self.cache = os.path.join(self.tmp, "cache")
        os.makedirs(self.root, exist_ok=True)
        os.makedirs(self.cache, exist_ok=True)
        os.makedirs(os.path.join(self.tmp, "logs"), exist_ok=True)
        # outside the docroot: sources for 'copy' writes
        self.scratch = os.path.join(self.tmp, "scratch")
        os.makedirs(self.scratch, exist_ok=True)
        for rel, content in (files or {}).items():
            write_file(self.path(rel), content)
        self.args = list(args or [])
        self.dev = dev
        self.fast_tier = fast_tier
        self.workers = workers
        self.check_exit = check_exit
        self.extra_env = env or {}
        self.port = None
        self.proc = None
        self.returncode = None
        self.stopped = False
        self._errf = None
        self._outf = None
        self.stderr_path = None
        self.stdout_path = None
        self._start_now = start

    # paths
    def path(self, rel):
        return os.path.join(self.root, rel)

    def canon(self, rel):
        return os.path.join(os.path.realpath(self.root), rel)

    def write(self, rel, content, how="inplace"):
        write_file(self.path(rel), content, how, self.scratch)

    def url(self, path="/"):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    # lifecycle
    def __enter__(self):
        if self._start_now:
            self.start()
        return self

    def __exit__(self, et, ev, tb):
        self.stop(check=(et is None))
        if self.own_tmp and et is None:
            shutil.rmtree(self.tmp, ignore_errors=True)
        return False

    def command(self):
        b = hotpub_bin()
        if not b:
            fail("HOTPUB_BIN is not an executable file: %r"
                 % os.environ.get("HOTPUB_BIN"))
        cmd = [b, "serve", "--listen", "127.0.0.1:%d" % self.port,
               "--cache-dir", self.cache]
        if self.dev is True:
            cmd.append("--dev")
        elif self.dev is False:
            cmd.append("--no-dev")
        if self.fast_tier is True:
            cmd.append("--fast-tier")
        elif self.fast_tier is False:
            cmd.append("--no-fast-tier")
        if self.workers is not None:
            cmd += ["--workers", str(self.workers)]
        # The whole suite again with one event loop per process, which the
        # reactor's thread runs (make test runs part of it this way).
        io = os.environ.get("HOTPUB_E2E_IO_THREADS")
        if io and "--io-threads" not in self.args:
            cmd += ["--io-threads", io]
        cmd += self.args
        cmd.append(self.root)
        return cmd

    def start(self):
        # A free port can be taken by someone else before the server binds
        # it: then start again on another one.
        for attempt in range(3):
            if self._start_once(last=(attempt == 2)):
                return self

    def _start_once(self, last):
        self.port = free_port()
        n = len([s for s in _started if s.tmp == self.tmp])
        self.stderr_path = os.path.join(self.tmp, "logs", "stderr.%d" % n)
        self._errf = open(self.stderr_path, "wb")
        self.stdout_path = os.path.join(self.tmp, "logs", "stdout.%d" % n)
        self._outf = open(self.stdout_path, "wb")
        env = dict(os.environ)
        # whatever the server keeps per user (e.g. the default database)
        # stays in the test's temp dir
        env["XDG_DATA_HOME"] = os.path.join(self.tmp, "xdg-data")
        env.update(self.extra_env)
        self.cmd = self.command()
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL,
                                     stdout=self._outf, stderr=self._errf,
                                     env=env, cwd=self.tmp)
        self.stopped = False
        _started.append(self)
        with _live_lock:
            _live.add(self)

        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._close_files()
                if not last and "in use" in self.stderr().lower():
                    return False
                fail("server exited with %s during start-up: %s"
                     % (self.proc.returncode, " ".join(self.cmd)))
            try:
                c = socket.create_connection(("127.0.0.1", self.port),
                                             timeout=0.5)
                c.close()
                return True
            except OSError:
                pass
            time.sleep(0.05)
        self.kill()
        fail("server did not accept connections on port %d within %.0f s"
             % (self.port, START_TIMEOUT))

    def kill(self):
        if self.proc and self.proc.poll() is None:
            try:
                self.proc.kill()
            except OSError:
                pass
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        self._close_files()

    def _close_files(self):
        with _live_lock:
            _live.discard(self)
        for f in (self._errf, self._outf):
            if f:
                try:
                    f.close()
                except OSError:
                    pass

    def terminate(self, timeout=STOP_TIMEOUT):
        """SIGTERM and wait; returns the exit status (None if it had to be
        killed)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                self.returncode = None
                self.stopped = True
                return None
        self.returncode = self.proc.returncode
        self.stopped = True
        self._close_files()
        return self.returncode

    def stop(self, check=True):
        if self.proc is None or self.stopped:
            self._close_files()
            return
        was_running = self.proc.poll() is None
        rc = self.terminate()
        if not (check and self.check_exit):
            return
        if not was_running:
            fail("server was not running any more at the end of the test "
                 "(exit status %s)" % self.proc.returncode)
        if rc is None:
            fail("server did not exit within %.0f s of SIGTERM" % STOP_TIMEOUT)
        err = self.stderr()
        for mark in SANITIZER_MARKS:
            if mark in err:
                at = err.index(mark)
                fail("sanitizer report in server stderr (%s): %s" % (
                    mark, err[at:at + 1500]))
        if rc != 0:
            fail("server exited with status %s after SIGTERM" % rc)

    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stderr(self):
        if not self.stderr_path:
            return ""
        try:
            if self._errf and not self._errf.closed:
                self._errf.flush()
            with open(self.stderr_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def stderr_tail(self, lines=25):
        return "\n".join(self.stderr().split("\n")[-lines:])

    # HTTP
    def request(self, path, method="GET", body=None, headers=None,
                timeout=HTTP_TIMEOUT, conn=None):
        return request(self.port, path, method, body, headers, timeout, conn)

    def get(self, path, headers=None, timeout=HTTP_TIMEOUT):
        return self.request(path, headers=headers, timeout=timeout)

    def post(self, path, body, content_type="application/x-www-form-urlencoded",
             headers=None, timeout=HTTP_TIMEOUT):
        h = {"Content-Type": content_type}
        h.update(headers or {})
        return self.request(path, "POST", body, h, timeout)

    def head(self, path, headers=None):
        return self.request(path, "HEAD", headers=headers)

    def raw(self, data, timeout=5.0, read_all=False):
        return raw_request(self.port, data, timeout, read_all)

    def connection(self, timeout=HTTP_TIMEOUT):
        return http.client.HTTPConnection("127.0.0.1", self.port,
                                          timeout=timeout)

    def get_ok(self, path, **kw):
        r = self.get(path, **kw)
        if r.status != 200:
            fail("GET %s: status %s, body %s" % (path, r.status,
                                                 short(r.body)))
        return r

    def status_json(self):
        r = self.get("/_hotpub/status.json")
        if r.status != 200:
            fail("GET /_hotpub/status.json: status %s, body %s"
                 % (r.status, short(r.body)))
        try:
            return json.loads(r.text)
        except ValueError as e:
            fail("status.json is not JSON (%s): %s" % (e, short(r.body)))

    def module(self, rel, st=None):
        """The status.json entry of page rel (canonical path), or None."""
        st = st or self.status_json()
        want = self.canon(rel)
        for m in st.get("modules", []):
            if m.get("path") == want:
                return m
        return None

    def wait_for(self, path, done, allowed, timeout, what="the change"):
        """Poll GET path until done(response). Every answer before that must
        satisfy allowed(response), else fail at once; fail at the deadline.
        Returns (seconds it took, response)."""
        t0 = time.monotonic()
        deadline = t0 + timeout
        while True:
            r = self.get(path)
            if done(r):
                return time.monotonic() - t0, r
            if not allowed(r):
                fail("GET %s while waiting for %s: unexpected status %s body %s"
                     % (path, what, r.status, short(r.body)))
            if time.monotonic() >= deadline:
                fail("GET %s: %s not seen after %.2f s (still status %s "
                     "body %s)" % (path, what, timeout, r.status,
                                   short(r.body)))
            time.sleep(0.02)

    def wait_body(self, path, want, timeout, allowed_bodies=(),
                  allowed_status=()):
        """Poll until GET path answers 200 with body == want. Meanwhile only
        200 with one of allowed_bodies, or a status in allowed_status, may
        come back. Returns the seconds it took."""
        took, _ = self.wait_for(
            path, lambda r: r.status == 200 and r.text == want,
            lambda r: (r.status == 200 and r.text in allowed_bodies)
            or r.status in allowed_status,
            timeout, "body %r" % want)
        return took


def run_hotpub(args, timeout=120, env=None, cwd=None):
    """Run the hotpub binary with args; returns CompletedProcess (text)."""
    b = hotpub_bin()
    if not b:
        fail("HOTPUB_BIN is not an executable file")
    e = dict(os.environ)
    e.update(env or {})
    try:
        return subprocess.run([b] + list(args), stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              timeout=timeout, env=e, cwd=cwd,
                              universal_newlines=True, errors="replace")
    except subprocess.TimeoutExpired:
        fail("hotpub %s did not finish within %d s" % (" ".join(args),
                                                        timeout))


def proc_maps(pid):
    try:
        with open("/proc/%d/maps" % pid) as f:
            return f.read()
    except OSError as e:
        fail("cannot read /proc/%d/maps: %s" % (pid, e))


class BackgroundRequest(threading.Thread):
    """A request run on its own thread: start(), later join_result()."""

    def __init__(self, port, path, method="GET", body=None, headers=None,
                 timeout=HTTP_TIMEOUT):
        super().__init__(daemon=True)
        self.args = (port, path, method, body, headers, timeout)
        self.response = None
        self.error = None
        self.t_start = None
        self.t_end = None

    def run(self):
        self.t_start = time.monotonic()
        try:
            self.response = request(*self.args)
        except Exception as e:  # noqa: BLE001 - reported by join_result
            self.error = e
        self.t_end = time.monotonic()

    def elapsed(self):
        return (self.t_end or time.monotonic()) - (self.t_start or 0)

    def join_result(self, timeout=HTTP_TIMEOUT + 5):
        self.join(timeout)
        if self.is_alive():
            fail("background request %s did not finish in %.0f s"
                 % (self.args[1], timeout))
        if self.error is not None:
            fail("background request %s failed: %r" % (self.args[1],
                                                      self.error))
        return self.response


def bounded_503s(port, path, n=3, before=2.0, after=1.2, timeout=20,
                 method="GET"):
    """FRESH17-2: n requests of path at once, each held by a wait the
    server bounds by --handler-timeout (docs/database.md, "The wait ends
    before --handler-timeout"): each must answer 503 with Retry-After: 1,
    after `after` s (it did wait) and before `before` s (the handler
    timeout), not the watchdog's 504. The responses, in order."""
    body = b"" if method == "POST" else None
    ws = [BackgroundRequest(port, path, method=method, body=body,
                            timeout=timeout) for _ in range(n)]
    for w in ws:
        w.start()
    res = [w.join_result(timeout) for w in ws]
    took = [round(w.elapsed(), 2) for w in ws]
    check_eq([r.status for r in res], [503] * n,
             "the waiters' statuses (after %s s)" % took)
    check(all(after <= t < before for t in took),
          "503s after %s s, want before the %g s handler timeout"
          % (took, before))
    for r in res:
        check_eq(r.header("Retry-After"), "1", "Retry-After")
    return res


class SilentListener:
    """A loopback TCP listener that accepts every connection and never
    answers (a database that is up at the TCP level and stuck): with it,
    `port`; the sockets stay open until the with block ends."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.held = []
        self.accepted = 0
        self._stop = False
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        self.sock.settimeout(0.1)
        while not self._stop:
            try:
                c, _ = self.sock.accept()
            except OSError:
                continue
            self.held.append(c)
            self.accepted += 1

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop = True
        self._t.join(2)
        for c in self.held:
            c.close()
        self.sock.close()


# ---- the runner --------------------------------------------------------------

class Param:
    """One variant of a parametrised suite: every test_*(arg) runs once per
    Param, as "name[label]", with arg = make() (called just before the run).
    With skip set, the variant prints "skip name[label]: SKIP" instead."""

    def __init__(self, label, make, skip=None):
        self.label, self.make, self.skip = label, make, skip


def collect(g):
    """The test_* functions of a module's globals g, in file order."""
    fns = [g[n] for n in g if n.startswith("test_") and callable(g[n])]
    return sorted(fns, key=lambda f: f.__code__.co_firstlineno)


def run_one(call, test_timeout):
    """Run call() on a thread with a deadline. Returns None on success,
    ("skip", why) on Skip, else the failure text."""
    box = {}

    def body():
        try:
            call()
        except Skip as e:
            box["skip"] = str(e)
        except TestFailure as e:
            box["err"] = str(e)
        except Exception as e:  # noqa: BLE001
            tb = traceback.extract_tb(e.__traceback__)
            where = ["%s:%d" % (os.path.basename(f.filename), f.lineno)
                     for f in tb[-3:]]
            box["err"] = "%s: %s (at %s)" % (type(e).__name__, e,
                                             " < ".join(reversed(where)))
        finally:
            box["done"] = True

    t = threading.Thread(target=body, daemon=True)
    t.start()
    t.join(test_timeout)
    if not box.get("done"):
        kill_all_live()
        t.join(10)
        return "timed out after %.0f s" % test_timeout
    if "skip" in box:
        return ("skip", box["skip"])
    return box.get("err")


def _cases(tests, params):
    """(name, call or None, skip reason) for every run of every test."""
    for fn in tests:
        base = fn.__name__[len("test_"):]
        if params is None:
            yield base, fn, None
            continue
        for p in params:
            yield ("%s[%s]" % (base, p.label),
                   lambda fn=fn, p=p: fn(p.make()), p.skip)


# A failed test runs once more (HOTPUB_E2E_RERUN=0: never): see run_suite.
RERUN = os.environ.get("HOTPUB_E2E_RERUN", "1") != "0"


def run_suite(g, argv, suite_budget, test_timeout, params=None,
              list_full_names=True, verbose_total=True):
    """The command line of a test file: `FILE.py [--list] [SUBSTRING...]`.

    g: the file's globals(); its test_* functions run in file order, those
    whose name contains one of the SUBSTRINGs (all without any). Each runs
    on a thread bounded by test_timeout (then its servers are killed); once
    the suite has taken suite_budget seconds, the rest fail unrun. Prints
    "ok   name", "FAIL name: reason" (plus the servers' stderr tails),
    "FLAKY name: first failure" (a failure that passed when run once more,
    see RERUN) or "skip name: reason" per test, then "N passed, N failed"
    (and ", N flaky") and the file's time, "(51.2 s)"; returns the
    exit status (1 if any failed). params: a list of Param, for tests that
    take an argument. --list prints the test functions' names (without
    the "test_" prefix unless list_full_names). HOTPUB_E2E_VERBOSE adds
    each test's time, and the total with verbose_total."""
    tests = collect(g)
    if "--list" in argv:
        for t in tests:
            print(t.__name__ if list_full_names
                  else t.__name__[len("test_"):])
        return 0
    pats = [a for a in argv if not a.startswith("-")]
    if pats:
        tests = [t for t in tests if any(p in t.__name__ for p in pats)]
    if hotpub_bin() is None:
        print("FAIL setup: HOTPUB_BIN=%r is not an executable file"
              % os.environ.get("HOTPUB_BIN"))
        print("0 passed, 1 failed")
        return 1
    verbose = os.environ.get("HOTPUB_E2E_VERBOSE")
    passed = failed = flaky = 0
    t_all = time.monotonic()
    for name, call, skip in _cases(tests, params):
        if skip is not None:
            print("skip %s: %s" % (name, skip), flush=True)
            continue
        reset_test_state()
        t0 = time.monotonic()
        if t0 - t_all > suite_budget:
            err = "not run: the suite took more than %.0f s" % suite_budget
            first = None
        else:
            err = run_one(call, test_timeout)
            kill_all_live()
            _sweep_owned(not isinstance(err, str))
            first = err if isinstance(err, str) and RERUN else None
            if first is not None:
                # Once more, from a clean state: a bound that only a
                # loaded machine misses must not hide a real failure (one
                # that fails twice), nor fail the run on its own; a pass
                # the second time is reported as FLAKY, with the first
                # failure, and counted.
                first_tails = stderr_tails()
                reset_test_state()
                err = run_one(call, test_timeout)
        kill_all_live()
        _sweep_owned(not isinstance(err, str))
        if isinstance(err, tuple):
            print("skip %s: %s" % (name, err[1]), flush=True)
        elif err is None and first is not None:
            passed += 1
            flaky += 1
            print("FLAKY %s: passed when rerun; first run: %s"
                  % (name, first.replace("\n", " | ")))
            if first_tails:
                print(first_tails)
            sys.stdout.flush()
        elif err is None:
            passed += 1
            print("ok   %s" % name, flush=True)
        else:
            failed += 1
            print("FAIL %s: %s" % (name, err.replace("\n", " | ")))
            tails = stderr_tails()
            if tails:
                print(tails)
            sys.stdout.flush()
        if verbose:
            print("     (%.2f s)" % (time.monotonic() - t0), flush=True)
    if verbose and verbose_total:
        print("     total %.1f s" % (time.monotonic() - t_all))
    print("%d passed, %d failed%s (%.1f s)" % (
        passed, failed, ", %d flaky (passed when rerun)" % flaky
        if flaky else "", time.monotonic() - t_all), flush=True)
    return 1 if failed else 0
