#!/usr/bin/env python3
"""hotpub scaled out: three nodes behind HAProxy on one PostgreSQL
(docs/scaling.md).

    HOTPUB_BIN=/abs/path/hotpub HOTPUB_PG_URL=postgresql://... \\
        python3 tests/e2e/scale.py [NAME-SUBSTRING...]

Each node is a hotpub process (one worker) on its own loopback port with
its own site directory (releases/NAME, current -> releases/NAME) and its
own compile cache; all share one PostgreSQL database (a schema per test).
HAProxy runs contrib/haproxy/hotpub.cfg as it is, on loopback ports, and
deploys run contrib/hotpub-deploy. Without HOTPUB_PG_URL or haproxy the
cluster tests print "skip"; the compile-cache warm test needs neither.
Measurements (mixed-release windows, failed requests) are printed.
"""

import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import (Server, Skip, check, check_eq, fail, limit,  # noqa: E402
                     page, short, wait_until)
import db  # noqa: E402  (ADMIN page)

TEST_TIMEOUT = 100.0
SUITE_BUDGET = 240.0
PG_URL = os.environ.get("HOTPUB_PG_URL", "").strip()
REPO = os.path.dirname(os.path.dirname(harness.HERE))
HAPROXY_CFG = os.path.join(REPO, "contrib", "haproxy", "hotpub.cfg")
DEPLOY = os.path.join(REPO, "contrib", "hotpub-deploy")
DRAIN_DELAY = 3  # > HAProxy's inter 1 s x fall 2, plus slack
COOKIE = "hotpub_session"

# A release: the page names its release through a header (so a release
# that changes only the header must still be served whole) and its node.
REL_PAGE = page(r'''
#include <stdlib.h>
#include <unistd.h>
#include "_rel.h"

HP_HANDLER(http_handler)
{
    const char *ms = hp_arg(req, "ms");
    if (ms)
        usleep((useconds_t)atoi(ms) * 1000);
    const char *node = getenv("HOTPUB_NODE");
    hp_printf(req, "%s %s", REL, node ? node : "?");
    return HP_OK;
}
''')

SESS_PAGE = page(r'''
static const char *arg(hp_req *req, const char *n)
{
    const char *v = hp_arg(req, n);
    return v ? v : "";
}

HP_HANDLER(set)
{
    if (hp_session_set(req, arg(req, "k"), arg(req, "v")) != HP_OK)
        return 500;
    hp_puts(req, "ok");
    return HP_OK;
}

HP_HANDLER(get)
{
    const char *v = hp_session_get(req, arg(req, "k"));
    hp_printf(req, "%s %s", v ? v : "(none)", getenv("HOTPUB_NODE"));
    return HP_OK;
}

HP_HANDLER(token)
{
    const char *t = hp_csrf_token(req);
    hp_puts(req, t ? t : "(null)");
    return HP_OK;
}

HP_HANDLER(post)
{
    hp_printf(req, "posted on %s", getenv("HOTPUB_NODE"));
    return HP_OK;
}
''', "#include <stdlib.h>")


def release_files(name):
    return {"rel.c": REL_PAGE, "_rel.h": '#define REL "%s"\n' % name,
            "s.c": SESS_PAGE, "admin.c": db.ADMIN}


def write_tree(root, files):
    for rel, content in files.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(content)


def deploy(*args):
    """Run contrib/hotpub-deploy; its output."""
    env = dict(os.environ, HOTPUB=harness.hotpub_bin())
    p = subprocess.run([sys.executable, DEPLOY] + list(args), env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       universal_newlines=True, timeout=120)
    if p.returncode != 0:
        fail("hotpub-deploy %s: %s" % (" ".join(args), p.stdout))
    return p.stdout


class Node:
    """One hotpub node: site dir tmp/site (releases/r1, current), cache
    tmp/cache, its settings in tmp/site/hotpub.ini (used by the deploy's
    warm step and by the server)."""

    def __init__(self, name, base, db_url):
        self.name = name
        self.tmp = os.path.join(base, name)
        self.site = os.path.join(self.tmp, "site")
        write_tree(os.path.join(self.site, "releases", "r1"),
                   release_files("r1"))
        os.symlink("releases/r1", os.path.join(self.site, "current"))
        self.server = Server(tmp=self.tmp, start=False, workers=1,
                             env={"HOTPUB_NODE": name})
        with open(os.path.join(self.site, "hotpub.ini"), "w") as f:
            f.write("[server]\ncache-dir = %s\n" % self.server.cache)
        self.server.root = os.path.join(self.site, "current")
        self.server.args += ["--config", os.path.join(self.site, "hotpub.ini"),
                             "--health-allow", "127.0.0.1/32",
                             "--drain-delay", str(DRAIN_DELAY)]
        if db_url:
            self.server.args += ["--db", db_url]

    @property
    def port(self):
        return self.server.port

    def compiles(self):
        return self.server.status_json()["server"]["compiles"]

    def kill_all(self):
        """SIGKILL the node: its supervisor and every worker."""
        pids = [self.server.pid()]
        for task in os.listdir("/proc/%d/task" % pids[0]):
            try:
                with open("/proc/%d/task/%s/children" % (pids[0], task)) as f:
                    pids += [int(p) for p in f.read().split()]
            except OSError:
                pass
        for p in pids:
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass
        self.server.proc.wait(10)
        self.server.stopped = True


class HAProxy:
    """contrib/haproxy/hotpub.cfg in the foreground (-db) on loopback."""

    def __init__(self, tmp, nodes):
        self.port = harness.free_port()
        self.socket = os.path.join(tmp, "haproxy.sock")
        env = dict(os.environ, HOTPUB_LB_BIND="127.0.0.1:%d" % self.port,
                   HOTPUB_LB_SOCKET=self.socket)
        for i, n in enumerate(nodes):
            env["HOTPUB_NODE%d" % (i + 1)] = "127.0.0.1:%d" % n.port
        self.log = open(os.path.join(tmp, "haproxy.log"), "wb")
        self.proc = subprocess.Popen(["haproxy", "-db", "-f", HAPROXY_CFG],
                                     env=env, stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=self.log)
        if not wait_until(lambda: self.status() == ["UP"] * len(nodes),
                          limit(15), 0.1):
            fail("HAProxy did not see every node up: %r" % self.status())

    def command(self, line):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(5)
        s.connect(self.socket)
        s.sendall(line.encode() + b"\n")
        out = b""
        while True:
            b = s.recv(65536)
            if not b:
                break
            out += b
        s.close()
        return out.decode()

    def status(self):
        """The backend servers' status words, in order."""
        lines = self.command("show stat").splitlines()
        head = lines[0].lstrip("# ").split(",")
        rows = [dict(zip(head, ln.split(","))) for ln in lines[1:] if ln]
        return [r["status"].split()[0] for r in rows
                if r["pxname"] == "hotpub" and r["svname"].startswith("node")]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


class Load:
    """Threads sending GET path through HAProxy on keep-alive connections;
    every answer is recorded as (monotonic end time, status, body) and
    every transport error as (time, None, repr)."""

    def __init__(self, port, path, threads=4):
        self.port, self.path = port, path
        self.results = []
        self.inflight = [0.0] * threads  # start time, 0 when idle
        self.lock = threading.Lock()
        self.stopping = False
        self.threads = [threading.Thread(target=self.run, args=(i,),
                                         daemon=True) for i in range(threads)]
        for t in self.threads:
            t.start()

    def run(self, i):
        conn = None
        while not self.stopping:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", self.port,
                                                  timeout=20)
            self.inflight[i] = time.monotonic()
            try:
                conn.request("GET", self.path)
                r = conn.getresponse()
                rec = (time.monotonic(), r.status,
                       r.read().decode("utf-8", "replace"))
            except (OSError, http.client.HTTPException) as e:
                rec = (time.monotonic(), None, repr(e))
                conn.close()
                conn = None
            self.inflight[i] = 0.0
            with self.lock:
                self.results.append(rec)

    def stop(self):
        self.stopping = True
        for t in self.threads:
            t.join(30)
        return list(self.results)


def failures(results, since=0.0):
    return [r for r in results if r[0] >= since and r[1] != 200]


class Cluster:
    """Three nodes on one PostgreSQL schema behind HAProxy."""

    def __init__(self, n=3):
        if not PG_URL:
            raise Skip("no HOTPUB_PG_URL")
        if not shutil.which("haproxy"):
            raise Skip("no haproxy (apt-get install haproxy)")
        self.tmp = tempfile.mkdtemp(prefix="hotpub-scale-")
        self.schema = "scale_%d_%d" % (os.getpid(), int(time.time() * 1000))
        sep = "&" if "?" in PG_URL else "?"
        url = "%s%soptions=-csearch_path%%3D%s" % (PG_URL, sep, self.schema)
        self.nodes = [Node("node%d" % (i + 1), self.tmp, url)
                      for i in range(n)]
        self.lb = None
        # The schema and the sessions table first, through one node, so
        # the others do not race to create them.
        first = self.nodes[0].server.start()
        db.script(first, "CREATE SCHEMA IF NOT EXISTS %s" % self.schema)
        check_eq(first.get("/s/set?k=x&v=y").status, 200, "first session")
        for nd in self.nodes[1:]:
            nd.server.start()
        self.lb = HAProxy(self.tmp, self.nodes)

    def get(self, path, headers=None):
        return harness.request(self.lb.port, path, headers=headers)

    def releases(self):
        """What each live node serves now."""
        return [nd.server.get("/rel").text.split()[0] for nd in self.nodes
                if nd.server.alive()]

    def close(self, ok):
        if self.lb:
            self.lb.stop()
        alive = [nd for nd in self.nodes if nd.server.alive()]
        if alive and ok:
            db.script(alive[0].server,
                      "DROP SCHEMA IF EXISTS %s CASCADE" % self.schema)
        # All at once: each node's SIGTERM waits out --drain-delay (3 s)
        # before it stops; one after the other that was 9 s a cluster.
        errs = [None] * len(self.nodes)

        def stop(i):
            try:
                self.nodes[i].server.stop(check=ok)
            except BaseException as e:  # noqa: BLE001 - raised below
                errs[i] = e
        ts = [threading.Thread(target=stop, args=(i,))
              for i in range(len(self.nodes))]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        for e in errs:
            if e is not None:
                raise e
        if ok:
            shutil.rmtree(self.tmp, ignore_errors=True)


def with_cluster(fn):
    c = Cluster()
    ok = False
    try:
        fn(c)
        ok = True
    finally:
        c.close(ok)


def cookie_of(r):
    for v in r.all("Set-Cookie"):
        if v.startswith(COOKIE + "="):
            return v.split(";", 1)[0].split("=", 1)[1]
    fail("no session cookie: %s %s" % (r.status, short(r.body)))


# ---- the compile cache, warmed before the switch (no cluster) ---------------

def test_warm_makes_the_switch_compile_nothing():
    """hotpub check --warm (through hotpub-deploy stage) fills the node's
    compile cache for the staged release: after the symlink switch the
    server runs no compiler and serves the new release (its header
    changed, its page did not). Unwarmed, the switch compiles: the
    counter is the one that moves."""
    tmp = tempfile.mkdtemp(prefix="hotpub-scale-")
    nd = Node("node1", tmp, None)
    s = nd.server
    s.args += ["--db", "off"]
    s.start()
    try:
        check_eq(s.get("/rel").text, "r1 node1", "before")
        before = nd.compiles()
        src = os.path.join(tmp, "src-r2")
        write_tree(src, release_files("r2"))
        out = deploy("stage", src, "r2", nd.site)
        check("warmed" in out, "the warm: %s" % out)
        deploy("switch", "r2", nd.site)
        s.wait_for("/rel", lambda r: r.text == "r2 node1",
                   lambda r: r.status == 200, limit(10), "r2 live")
        check_eq(nd.compiles(), before, "compiles after a warmed switch")
        # The same release, not warmed: the switch compiles.
        write_tree(os.path.join(nd.site, "releases", "r3"),
                   release_files("r3"))
        deploy("switch", "r3", nd.site)
        s.wait_for("/rel", lambda r: r.text == "r3 node1",
                   lambda r: r.status == 200, limit(20), "r3 live")
        check(nd.compiles() > before, "an unwarmed switch compiled nothing")
    finally:
        s.stop()
    shutil.rmtree(tmp, ignore_errors=True)


# ---- the cluster ------------------------------------------------------------

def test_sessions_and_csrf_across_nodes():
    """A session made through HAProxy is valid on every node; a CSRF token
    from one node is accepted by the others."""
    def body(c):
        r = c.get("/s/set?" + urllib.parse.urlencode({"k": "user",
                                                      "v": "alice"}))
        check_eq(r.status, 200, "set through HAProxy")
        cid = cookie_of(r)
        hdr = {"Cookie": "%s=%s" % (COOKIE, cid)}
        for nd in c.nodes:
            r = nd.server.get("/s/get?k=user", headers=hdr)
            check_eq((r.status, r.text), (200, "alice " + nd.name),
                     "the session on " + nd.name)
        token = c.nodes[0].server.get("/s/token", headers=hdr).text
        check(len(token) > 16, "csrf token %r" % token)
        for nd in c.nodes[1:]:
            r = nd.server.post("/s/post", "csrf_token=" + token, headers=hdr)
            check_eq((r.status, r.text), (200, "posted on " + nd.name),
                     "a token from node1 on " + nd.name)
            r = nd.server.post("/s/post", "csrf_token=forged", headers=hdr)
            check_eq(r.status, 403, "a forged token on " + nd.name)
    with_cluster(body)


def mixed_window(results, old, new):
    """(seconds between the first answer of release new and the last of
    release old, each node's first new answer spread)."""
    first_new = [t for t, st, b in results if st == 200 and b.startswith(new)]
    last_old = [t for t, st, b in results if st == 200 and b.startswith(old)]
    check(first_new, "no answer from %s under load" % new)
    if not last_old:
        return 0.0
    return max(0.0, max(last_old) - min(first_new))


def node_spread(results, new):
    """Seconds between the first node's first answer of release new and the
    last node's (through HAProxy): how long the nodes disagreed."""
    first = {}
    for t, st, b in results:
        if st == 200 and b.startswith(new + " "):
            node = b.split()[1]
            first[node] = min(first.get(node, t), t)
    check_eq(len(first), 3, "nodes that answered from %s" % new)
    return max(first.values()) - min(first.values())


def test_deploy_under_load():
    """Stage r2 on every node (copied, warmed), then switch them all under
    load through HAProxy: no failed request, the mixed-release window
    printed; then a rolling deploy of r3 (each node drained in HAProxy
    first): no failed request either."""
    def body(c):
        load = Load(c.lb.port, "/rel?ms=5")
        time.sleep(0.5)
        src = os.path.join(c.tmp, "src-r2")
        write_tree(src, release_files("r2"))
        sites = [nd.site for nd in c.nodes]
        compiles = [nd.compiles() for nd in c.nodes]
        deploy("stage", src, "r2", *sites)
        out = deploy("switch", "r2", *sites)
        check(wait_until(lambda: c.releases() == ["r2"] * 3, limit(10)),
              "not every node serves r2: %r" % c.releases())
        time.sleep(0.5)
        res = load.stop()
        bad = failures(res)
        window = mixed_window(res, "r1", "r2")
        print("     coordinated deploy: %d requests, %d failed, mixed-release "
              "window %.1f ms, nodes' first r2 answers %.1f ms apart (%s)"
              % (len(res), len(bad), window * 1000,
                 node_spread(res, "r2") * 1000,
                 out.strip().splitlines()[-1]))
        check_eq(bad, [], "failed requests during the deploy")
        check_eq([nd.compiles() for nd in c.nodes], compiles,
                 "compiles on the nodes (the warm cache)")

        src = os.path.join(c.tmp, "src-r3")
        write_tree(src, release_files("r3"))
        load = Load(c.lb.port, "/rel?ms=5")
        deploy("stage", src, "r3", *sites)
        t0 = time.monotonic()
        out = deploy("rolling", "r3", "--socket", c.lb.socket,
                     *["%s=%s" % (nd.site, nd.name) for nd in c.nodes])
        took = time.monotonic() - t0
        time.sleep(0.3)
        res = load.stop()
        bad = failures(res)
        print("     rolling deploy: %d requests, %d failed, mixed-release "
              "window %.1f ms (the whole roll: %.1f s)"
              % (len(res), len(bad), mixed_window(res, "r2", "r3") * 1000,
                 took))
        check_eq(bad, [], "failed requests during the rolling deploy")
        check_eq(c.releases(), ["r3"] * 3, "releases after the roll")
    with_cluster(body)


def test_sigterm_under_load():
    """SIGTERM of a node under load: its health turns 503, HAProxy stops
    sending to it within the drain delay, it finishes what it has: no
    request fails."""
    def body(c):
        load = Load(c.lb.port, "/rel?ms=20")
        time.sleep(0.5)
        victim = c.nodes[1]
        t0 = time.monotonic()
        victim.server.proc.send_signal(signal.SIGTERM)
        check(wait_until(lambda: not victim.server.alive(),
                         limit(DRAIN_DELAY + 10)), "node2 did not stop")
        stopped = time.monotonic() - t0
        time.sleep(0.5)
        res = load.stop()
        bad = failures(res)
        served = [r for r in res if r[1] == 200 and r[2].endswith("node2")]
        print("     SIGTERM: %d requests, %d failed, node2 stopped after "
              "%.2f s, %d answered by it" % (len(res), len(bad), stopped,
                                             len(served)))
        check_eq(victim.server.terminate(), 0, "node2's exit status")
        check_eq(bad, [], "failed requests")
        check_eq(c.lb.status()[1], "DOWN", "node2 in HAProxy")
    with_cluster(body)


def test_sigkill_under_load():
    """SIGKILL of a node under load: at most its in-flight requests fail
    (HAProxy retries idempotent ones elsewhere), and none after."""
    def body(c):
        threads = 6
        load = Load(c.lb.port, "/rel?ms=50", threads)
        time.sleep(0.7)
        victim = c.nodes[2]
        t_kill = time.monotonic()
        victim.kill_all()
        time.sleep(2.5)
        res = load.stop()
        bad = failures(res)
        later = failures(res, t_kill + 1.0)
        print("     SIGKILL: %d requests, %d failed (%d load threads), "
              "%d failed later than 1 s after the kill"
              % (len(res), len(bad), threads, len(later)))
        # One request per thread at most was in flight on the node.
        check(len(bad) <= threads, "more failures than requests in "
              "flight: %r" % bad[:5])
        check_eq(later, [], "failures after the kill")
        check(wait_until(lambda: c.lb.status()[2] == "DOWN", limit(5)),
              "HAProxy did not mark node3 down: %r" % c.lb.status())
    with_cluster(body)


if __name__ == "__main__":
    sys.exit(harness.run_suite(globals(), sys.argv[1:],
                               suite_budget=SUITE_BUDGET,
                               test_timeout=TEST_TIMEOUT))
