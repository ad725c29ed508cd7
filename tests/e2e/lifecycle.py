#!/usr/bin/env python3
"""hotpub end-to-end tests of a server's life: stopping to accept on SIGTERM,
many SIGHUPs under load, the liveness check, and what the clients of a
crashing worker get (docs/operations.md).

    HOTPUB_BIN=/abs/path/hotpub python3 tests/e2e/lifecycle.py [NAME-SUBSTRING...]
    python3 tests/e2e/lifecycle.py --list

HOTPUB_E2E_SIGHUPS sets the number of SIGHUPs of the reload test (200 by
default, as the suite runs it). Output, as in run.py: one line per test,
then "N passed, N failed"; the exit status is 1 if any test failed.
"""

import errno
import json
import os
import re
import signal
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import (BackgroundRequest, Server,  # noqa: E402
                     check, check_eq, check_in, check_not_in, fail, limit,
                     note, page, short, wait_until)

TEST_TIMEOUT = 240.0
SUITE_BUDGET = 600.0
SIGHUPS = int(os.environ.get("HOTPUB_E2E_SIGHUPS", "200"))

# ?ms=N sleeps N milliseconds first; prints the worker's pid.
SLOW = page(r'''
HP_HANDLER(http_handler)
{
    const char *ms = hp_arg(req, "ms");
    if (ms)
        usleep((useconds_t)atoi(ms) * 1000);
    hp_printf(req, "slow %d", (int)getpid());
    return HP_OK;
}
''', includes="#include <stdlib.h>\n#include <unistd.h>")


# ---- a small HTTP/1.1 client that knows when a retry is allowed ----------

class Closed(Exception):
    """The connection closed before any byte of the response: RFC 9112
    §9.3.1 lets a client retry an idempotent request then."""


def read_response(sock):
    """One response from sock: (status, headers dict, body bytes). Raises
    Closed if the connection ended before its first byte, OSError or
    ValueError for a response cut short or malformed."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            if not buf:
                raise Closed()
            raise
        if not chunk:
            if not buf:
                raise Closed()
            raise ValueError("response head cut short: %r" % buf[:200])
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ")[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(b":")
        headers[k.strip().lower().decode()] = v.strip().decode()
    n = int(headers.get("content-length", "0"))
    while len(body) < n:
        chunk = sock.recv(65536)
        if not chunk:
            raise ValueError("response body cut short")
        body += chunk
    return status, headers, body[:n]


class Client(threading.Thread):
    """GETs path in a loop until stop(): on a new connection per request
    (keep_alive False), or on one keep-alive connection that is reopened
    when the server closes it, retrying a request only when the connection
    closed before any response byte. Counts answers, retries and failures
    (anything but 200 with a body starting with `want`)."""

    def __init__(self, port, path, want, keep_alive):
        super().__init__(daemon=True)
        self.port, self.path, self.want = port, path, want
        self.keep_alive = keep_alive
        self.ok = self.retries = 0
        self.errors = []
        self._halt = threading.Event()
        self.req = ("GET %s HTTP/1.1\r\nHost: t\r\n%s\r\n" % (
            path, "" if keep_alive else "Connection: close\r\n")).encode()

    def connect(self):
        return socket.create_connection(("127.0.0.1", self.port), timeout=10)

    def once(self, sock):
        """Send the request on sock and read the answer; returns whether the
        connection may be used again."""
        try:
            sock.sendall(self.req)
        except (BrokenPipeError, ConnectionResetError):
            raise Closed()
        status, headers, body = read_response(sock)
        if status != 200 or not body.decode().startswith(self.want):
            self.errors.append("%s %s" % (status, short(body, 80)))
        else:
            self.ok += 1
        return headers.get("connection", "").lower() != "close"

    def run(self):
        sock = None
        while not self._halt.is_set():
            fresh = sock is None
            try:
                if sock is None:
                    sock = self.connect()
                reuse = self.once(sock)
                if not reuse or not self.keep_alive:
                    sock.close()
                    sock = None
            except Closed:
                sock.close()
                sock = None
                if fresh or not self.keep_alive:
                    self.errors.append("closed without a response on a "
                                       "new connection")
                else:
                    self.retries += 1  # an idle keep-alive connection
            except (OSError, ValueError) as e:
                self.errors.append(repr(e))
                if sock:
                    sock.close()
                sock = None
        if sock:
            sock.close()

    def stop(self):
        self._halt.set()
        self.join(20)


def procs(s):
    r = s.get("/_hotpub/status.json")
    check_eq(r.status, 200, "status.json")
    return json.loads(r.text)["processes"]


def ready_pids(p):
    return sorted(w["pid"] for w in p["workers"] if w["state"] == "ready")


def alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def connect_refused(port):
    """True if a connection to port is refused now; False if accepted."""
    s = socket.socket()
    s.settimeout(1)
    try:
        s.connect(("127.0.0.1", port))
        return False
    except (ConnectionRefusedError, ConnectionResetError):
        # Reset: the handshake raced the close of the last copy of the
        # listening socket (the kernel resets what is left in its
        # backlog). Either way the server no longer takes it.
        return True
    except OSError as e:
        if e.errno in (errno.ECONNREFUSED, errno.ECONNRESET):
            return True
        raise
    finally:
        s.close()


# ---- SIGTERM ----------------------------------------------------------------

def _sigterm_refuses_at_once(workers):
    with Server(files={"slow.c": SLOW}, args=["--workers", str(workers)],
                check_exit=False) as s:
        s.get_ok("/slow")
        slow = BackgroundRequest(s.port, "/slow?ms=1500")
        slow.start()
        time.sleep(0.4)
        t0 = time.monotonic()
        os.kill(s.pid(), signal.SIGTERM)
        accepted = 0
        while True:
            if connect_refused(s.port):
                break
            accepted += 1
            if time.monotonic() - t0 > 5:
                fail("new connections still accepted 5 s after SIGTERM")
            time.sleep(0.002)
        dt = time.monotonic() - t0
        note("refused %.1f ms after SIGTERM (%d accepted before)"
             % (dt * 1000, accepted))
        check(dt < limit(0.1), "a new connection was refused only %.0f ms "
              "after SIGTERM" % (dt * 1000))
        r = slow.join_result()
        check_eq(r.status, 200, "the request in flight at SIGTERM")
        check(r.text.startswith("slow "), "its body: %s" % r.text)
        check(slow.t_end - t0 > 0.8, "the slow request ended before its "
              "time (%.2f s)" % (slow.t_end - t0))
        check(wait_until(lambda: not s.alive(), 10), "the server did not "
              "exit after SIGTERM")
        check_eq(s.proc.returncode, 0, "exit status")


def test_sigterm_refuses_new_connections_at_once_workers():
    """SIGTERM to the parent: the parent and every worker close their
    copies of the listening socket at once, so a new connection is refused
    within 100 ms, while the request in flight still completes 200."""
    _sigterm_refuses_at_once(2)


def test_sigterm_refuses_new_connections_at_once_single_process():
    _sigterm_refuses_at_once(0)


def test_sigterm_answers_the_backlog():
    """Connections waiting in the listen backlog when SIGTERM arrives are
    accepted and answered (with Connection: close), not reset."""
    with Server(files={"slow.c": SLOW},
                args=["--workers", "0", "--connection-limit", "2",
                      "--threads", "4"], check_exit=False) as s:
        s.get_ok("/slow")
        busy = [BackgroundRequest(s.port, "/slow?ms=1200") for _ in range(2)]
        for b in busy:
            b.start()
        time.sleep(0.3)  # both connections taken: the next ones wait
        waiting = [BackgroundRequest(s.port, "/slow") for _ in range(3)]
        for w in waiting:
            w.start()
        time.sleep(0.3)
        os.kill(s.pid(), signal.SIGTERM)
        for b in busy + waiting:
            r = b.join_result()
            check_eq(r.status, 200, "a request made before SIGTERM")
        m = re.search(r"took (\d+) connections from the listen backlog",
                      s.stderr())
        check(m and int(m.group(1)) >= 3, "the log does not say the 3 "
              "waiting connections were taken: %s" % short(s.stderr()[-800:],
                                                           800))


# ---- SIGHUP -----------------------------------------------------------------

def test_many_sighups_under_load_lose_nothing():
    """HOTPUB_E2E_SIGHUPS (200) SIGHUPs, each waited for until the new
    generation serves, under a load of new-connection and keep-alive
    clients: no request fails (a keep-alive client retries only a request
    whose connection closed before any response byte, RFC 9112 §9.3.1),
    no worker aborts or dies of a signal, no restart but the reloads."""
    with Server(files={"slow.c": SLOW},
                args=["--workers", "2", "--access-log", "off"]) as s:
        s.get_ok("/slow")
        clients = [Client(s.port, "/slow", "slow ", keep_alive=(i % 2 == 1))
                   for i in range(6)]
        slow = Client(s.port, "/slow?ms=150", "slow ", keep_alive=False)
        for c in clients + [slow]:
            c.start()
        t0 = time.monotonic()
        offset = 0
        log = ""
        for n in range(2, SIGHUPS + 2):
            os.kill(s.pid(), signal.SIGHUP)
            want = "worker generation %d is serving" % n

            def served():
                nonlocal offset, log
                with open(s.stderr_path, "rb") as f:
                    f.seek(offset)
                    more = f.read().decode("utf-8", "replace")
                offset += len(more.encode("utf-8", "replace"))
                log += more
                cut = log.rfind("\n", 0, max(0, len(log) - 4096))
                found = want in log
                if cut > 0:
                    log = log[cut:]
                return found
            if not wait_until(served, 15, 0.005):
                fail("generation %d not serving 15 s after its SIGHUP" % n)
        took = time.monotonic() - t0
        time.sleep(1.5)  # the last old workers drain
        for c in clients + [slow]:
            c.stop()
        errors = [e for c in clients + [slow] for e in c.errors]
        total = sum(c.ok for c in clients + [slow])
        retries = sum(c.retries for c in clients)
        note("%d SIGHUPs in %.1f s (%.0f ms each); %d requests, %d keep-alive "
             "retries" % (SIGHUPS, took, took * 1000 / SIGHUPS, total,
                          retries))
        check(not errors, "%d of %d requests failed: %s"
              % (len(errors), total + len(errors), errors[:5]))
        check(total > SIGHUPS, "too few requests: %d" % total)
        err = s.stderr()
        for bad in ("abort", "killed by signal", "exited with status",
                    "died"):
            check_not_in(bad, err.lower(), "the log")
        p = procs(s)
        check_eq(p["generation"], SIGHUPS + 1, "generation")
        check_eq(p["crashes"], 0, "crashes")
        check_eq(sum(p["restart_causes"].values()), 0,
                 "restart_causes %s" % p["restart_causes"])
        check_eq(len(ready_pids(p)), 2, "ready workers")


# ---- liveness ---------------------------------------------------------------

CLOSER = page(r'''
HP_HANDLER(http_handler)
{
    for (int fd = 0; fd <= 100; fd++)
        close(fd);
    hp_puts(req, "closed");
    return HP_OK;
}

HP_HANDLER(stop) /* the whole worker stops, accept thread and all */
{
    raise(SIGSTOP);
    return HP_OK;
}
''', includes="#include <signal.h>\n#include <unistd.h>")


def _pid_of(s):
    r = s.get("/slow", timeout=5)
    check_eq(r.status, 200, "GET /slow")
    return int(r.text.split()[1])


def _poke(s, path):
    """GET path, which may never be answered (the page breaks its worker)."""
    b = BackgroundRequest(s.port, path, timeout=30)
    b.start()
    return b


def test_closed_descriptors_replace_the_worker():
    """A page that closes descriptors 0-100 leaves a worker that cannot
    serve: it says so and exits 70 within a second or two, the parent
    replaces it within 5 s, requests are served after, and status.json
    counts it under restart_causes.descriptors."""
    with Server(files={"slow.c": SLOW, "closer.c": CLOSER},
                args=["--workers", "1"]) as s:
        before = _pid_of(s)
        t0 = time.monotonic()
        _poke(s, "/closer")
        got = wait_until(lambda: (lambda p: p if p != before else None)(
            _pid_of(s)), limit(5.0), 0.05)
        check(got, "the worker was not replaced within 5 s of closing its "
              "descriptors")
        note("replaced in %.2f s" % (time.monotonic() - t0))
        for _ in range(5):
            _pid_of(s)
        err = s.stderr()
        check(re.search(r"descriptor \d+ \(.*\) was closed", err),
              "no log line naming the closed descriptor: %s"
              % short(err[-1500:], 1500))
        check_in("exiting with status 70", err, "the worker's last words")
        check_in("exited with status 70", err, "the parent's log")
        p = procs(s)
        check_eq(p["restart_causes"]["descriptors"], 1,
                 "restart_causes.descriptors")
        check_eq(p["restart_causes"]["crash"], 0, "restart_causes.crash")
        if os.path.basename(s.cmd[0]).endswith("-tsan"):
            # The page closes descriptors other threads use: ThreadSanitizer
            # rightly reports that race (the page's, by design) in the
            # replaced worker. Check the stop without its report.
            s.check_exit = False
            check_eq(s.terminate(), 0, "exit status after SIGTERM")


def test_closed_descriptors_under_load_exit_70_not_abort():
    """The same page while clients keep the worker's event loops busy: the
    loops find their epoll descriptor and sockets closed before the
    liveness check does (libmicrohttpd then panics, "Failed to remove FD
    from epoll set"); the worker must still exit 70, counted under
    restart_causes.descriptors, not die of SIGABRT as a crash. Before
    server.c's panic hook a round aborted about one time in three, and
    this test (three rounds) failed 3 runs of 3."""
    with Server(files={"slow.c": SLOW, "closer.c": CLOSER},
                args=["--workers", "1"]) as s:
        _pid_of(s)
        for _ in range(3):  # the first run of closer.c compiles it
            clients = [Client(s.port, "/slow", "slow", keep_alive=k % 2 == 0)
                       for k in range(8)]
            for c in clients:
                c.start()
            time.sleep(0.3)
            before = _pid_of(s)
            _poke(s, "/closer")
            got = wait_until(lambda: (lambda p: p if p != before else None)(
                _pid_of(s)), limit(5.0), 0.05)
            for c in clients:
                c.stop()
            check(got, "the worker was not replaced within 5 s")
        err = s.stderr()
        check_not_in("killed by signal", err, "the parent's log")
        check_eq(err.count("exited with status 70"), 3, "workers that "
                 "exited with status 70")
        p = procs(s)
        check_eq(p["restart_causes"]["descriptors"], 3,
                 "restart_causes.descriptors")
        check_eq(p["restart_causes"]["crash"], 0, "restart_causes.crash")
        if os.path.basename(s.cmd[0]).endswith("-tsan"):
            # as in test_closed_descriptors_replace_the_worker
            s.check_exit = False
            check_eq(s.terminate(), 0, "exit status after SIGTERM")


def test_closed_descriptors_single_process_exits_70():
    """--workers 0: nobody can replace the process, so it exits 70 with a
    log line (systemd's Restart=on-failure then restarts it)."""
    with Server(files={"slow.c": SLOW, "closer.c": CLOSER},
                args=["--workers", "0"]) as s:
        _pid_of(s)
        _poke(s, "/closer")
        check(wait_until(lambda: not s.alive(), limit(5.0)),
              "the server still runs 5 s after its descriptors were closed")
        check_eq(s.proc.returncode, 70, "exit status")
        check(re.search(r"descriptor \d+ \(.*\) was closed.*exiting with "
                        r"status 70", s.stderr()),
              "no log line: %s" % short(s.stderr()[-1500:], 1500))
        s.check_exit = False


def test_silent_worker_is_killed_and_replaced():
    """A worker that stops beating (here: SIGSTOPped by a page) is killed
    after --worker-heartbeat-timeout and replaced; status.json counts it
    under restart_causes.heartbeat."""
    with Server(files={"slow.c": SLOW, "closer.c": CLOSER},
                args=["--workers", "1", "--worker-heartbeat-timeout",
                      "2"]) as s:
        before = _pid_of(s)
        t0 = time.monotonic()
        _poke(s, "/closer/stop")
        got = wait_until(lambda: (lambda p: p if p != before else None)(
            _pid_of(s)), limit(6.0), 0.1)
        check(got, "the stopped worker was not replaced within 6 s")
        dt = time.monotonic() - t0
        note("replaced in %.2f s" % dt)
        check(dt > 0.9, "replaced after %.2f s, before the timeout" % dt)
        err = s.stderr()
        check_in("has not beaten for", err, "log")
        check_in("killed by signal 9", err, "log")
        p = procs(s)
        check_eq(p["restart_causes"]["heartbeat"], 1,
                 "restart_causes.heartbeat")
        check_eq(p["crashes"], 0, "crashes")


# ---- a crash and the other requests of its worker -----------------------------

CRASHER = page(r'''
HP_HANDLER(http_handler)
{
    volatile int *p = 0;
    *p = 1;
    return HP_OK;
}
''')


def test_crash_answers_unstarted_requests_503():
    """A worker that crashes answers the requests it had read and not yet
    begun to answer with 503 + Retry-After: 1 + Connection: close (their
    clients may retry), the crashing one with 502; an idle keep-alive
    connection gets no bytes (its client retries by RFC 9112 §9.3.1)."""
    with Server(files={"slow.c": SLOW, "crash.c": CRASHER},
                args=["--workers", "1", "--threads", "16"]) as s:
        s.get_ok("/slow")
        idle = socket.create_connection(("127.0.0.1", s.port), timeout=10)
        idle.sendall(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
        st, _, _ = read_response(idle)
        check_eq(st, 200, "the keep-alive connection's first request")
        slow = [BackgroundRequest(s.port, "/slow?ms=3000") for _ in range(6)]
        for b in slow:
            b.start()
        time.sleep(0.5)
        crash = socket.create_connection(("127.0.0.1", s.port), timeout=10)
        crash.sendall(b"GET /crash HTTP/1.1\r\nHost: t\r\n\r\n")
        try:
            st, headers, _ = read_response(crash)
        except Closed:
            st, headers = None, {}
        check_eq(st, 502, "the crashing request")
        for b in slow:
            r = b.join_result()
            check_eq(r.status, 503, "a request in flight in the crashing "
                     "worker")
            check_eq(r.header("Retry-After"), "1", "Retry-After")
            check_eq((r.header("Connection") or "").lower(), "close",
                     "Connection")
            check(b.elapsed() < 2.5, "the 503 came after %.1f s, not at the "
                  "crash" % b.elapsed())
        idle.settimeout(5)
        try:
            rest = idle.recv(100)
        except ConnectionResetError:
            rest = b""
        check_eq(rest, b"", "bytes on the idle keep-alive connection")
        check(wait_until(lambda: s.get("/slow").status == 200, 5),
              "no worker serving after the crash")
        check_in("killed by signal 11", s.stderr(), "log")


if __name__ == "__main__":
    sys.exit(harness.run_suite(globals(), sys.argv[1:],
                               suite_budget=SUITE_BUDGET,
                               test_timeout=TEST_TIMEOUT,
                               verbose_total=False))
