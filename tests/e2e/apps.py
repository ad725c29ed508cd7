#!/usr/bin/env python3
"""hotpub end-to-end tests for application modules (issue 3).

    HOTPUB_BIN=/abs/path/hotpub python3 tests/e2e/apps.py [NAME-SUBSTRING...]
    python3 tests/e2e/apps.py --list

Application modules (_app.c), the request lifecycle hooks and their order,
handler acquisition, module state carried across reloads (HP_INIT/HP_FINI),
batched multi-file changes and symlink-swap deploys, and the example
application in examples/app/.

Same conventions as run.py: each test_* function gets its own temp document
root, cache dir and server process on a free loopback port (harness.py).
Output: one line per test ("ok   name" or "FAIL name: reason", then the
server's stderr tail), then "N passed, N failed"; exit status 1 if any test
failed.

Modules under test record what ran by appending lines to a log file whose
absolute path is compiled into them (open O_APPEND + one write(2) per line),
in the test's temp dir beside the document root.
"""

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import (SLACK, BackgroundRequest, Server, TestFailure,  # noqa: E402
                     c_escape, check, check_eq, check_in, check_not_in, fail,
                     limit, short, wait_until)

TEST_TIMEOUT = 100.0  # hard bound for one test (the watchdog kills servers)
SUITE_BUDGET = 200.0  # past this, the remaining tests fail without running

REPO = os.path.dirname(os.path.dirname(harness.HERE))


_one_process = []


def one_process():
    """Server arguments for a single process. A server with worker
    processes (--workers) has one module cache per worker: HP_INIT state,
    version ids, fini calls and status.json are per process, and the tests
    that count them need one. Older binaries have no --workers."""
    if not _one_process:
        p = harness.run_hotpub(["--help"], timeout=30)
        _one_process.append(["--workers", "0"]
                            if "--workers" in p.stdout + p.stderr else [])
    return list(_one_process[0])


# ---- C building blocks ----------------------------------------------------

# applog(fmt, ...): append one line to LOGF (defined before this is pasted).
LOGC = r'''
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

__attribute__((format(printf, 1, 2), unused))
static void applog(const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if (n > (int)sizeof line - 2)
        n = (int)sizeof line - 2;
    line[n++] = '\n';
    int fd = open(LOGF, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return;
    if (write(fd, line, (size_t)n) < 0) {
    }
    close(fd);
}
'''


def logged(logpath, body):
    """C source of a module that can applog() to logpath."""
    return ('#include <hotpub.h>\n#define LOGF "%s"\n%s\n%s\n'
            % (c_escape(logpath), LOGC, body))


def read_log(path):
    try:
        with open(path) as f:
            return [l for l in f.read().split("\n") if l]
    except FileNotFoundError:
        return []


def log_path(s, name):
    return os.path.join(s.tmp, "logs", name)


def rename_together(pairs):
    """Rename (tmp, dst) pairs one right after the other, in a process of
    its own: threads of this process (load generators) must not be able to
    spread the renames over more than the server's settle window."""
    code = ("import os, sys\na = sys.argv[1:]\n"
            "for i in range(0, len(a), 2):\n    os.rename(a[i], a[i + 1])\n")
    args = [x for p in pairs for x in p]
    p = subprocess.run([sys.executable, "-c", code] + args, timeout=30,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if p.returncode != 0:
        fail("renaming %s failed: %s" % (args, short(p.stdout)))


def write_batch(s, files):
    """Write {rel: content} as one batch: every file goes to a hidden temp
    name in its directory first (the server ignores those), then all are
    renamed into place together."""
    pairs = []
    for rel, content in files.items():
        dst = s.path(rel)
        d = os.path.dirname(dst)
        os.makedirs(d, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".batch-", suffix=".tmp", dir=d)
        with os.fdopen(fd, "w") as f:
            f.write(content)
        pairs.append((tmp, dst))
    rename_together(pairs)


# ---- status.json helpers -------------------------------------------------

def module_at(st, path):
    for m in st.get("modules", []):
        if m.get("path") == path:
            return m
    return None


def current_id(s, path):
    m = module_at(s.status_json(), path)
    return m["current"]["id"] if m and m.get("current") else None


def wait_new_version(s, path, old_id, timeout, what=None):
    """Poll status.json until the module at path has a current version other
    than old_id (and is neither stale nor in error); returns the new id."""
    box = {}

    def changed():
        m = module_at(s.status_json(), path)
        box["m"] = m
        if m and m.get("error"):
            fail("%s: error while waiting for a new version: %s"
                 % (what or path, short(m["error"])))
        if m and m.get("current") and m["current"]["id"] != old_id and \
                not m.get("stale") and not m.get("held"):
            return m["current"]["id"]
        return None
    new = wait_until(changed, timeout, 0.01)
    if new is None:
        if isinstance(wait_until.last_error, TestFailure):
            raise wait_until.last_error
        fail("%s: no new version after %.1f s (status entry %s)"
             % (what or path, timeout, short(json.dumps(box.get("m")), 400)))
    return new


def url_status(s, url):
    r = s.get("/_hotpub/status.json?url=" + urllib.parse.quote(url, safe="/"))
    check_eq(r.status, 200, "status of status.json?url=%s" % url)
    try:
        return json.loads(r.text).get("url") or {}
    except ValueError as e:
        fail("status.json?url=%s is not JSON (%s): %s" % (url, e,
                                                        short(r.body)))


class Load:
    """n threads GETting urls round-robin until stop(); every answer is
    given to judge(url, response, state) -> None (fine) or a complaint
    string; state is a dict private to the thread.
    Each thread keeps one keep-alive connection."""

    def __init__(self, s, urls, judge, n=4, pause=0.002):
        self.s, self.urls, self.judge = s, list(urls), judge
        self.pause = pause  # leaves CPU to the compiler on small machines
        self.stop_ev = threading.Event()
        self.lock = threading.Lock()
        self.ok = 0
        self.bad = 0
        self.errors = []
        self.threads = [threading.Thread(target=self._run, args=(i,),
                                         daemon=True) for i in range(n)]

    def _complain(self, msg):
        with self.lock:
            self.bad += 1
            if len(self.errors) < 5:
                self.errors.append(msg)

    def _run(self, idx):
        conn = self.s.connection(timeout=20)
        k = idx
        state = {}
        try:
            while not self.stop_ev.is_set():
                url = self.urls[k % len(self.urls)]
                k += 1
                try:
                    r = harness.request(self.s.port, url, conn=conn)
                except Exception as e:  # noqa: BLE001
                    self._complain("GET %s: exception %r" % (url, e))
                    conn.close()
                    conn = self.s.connection(timeout=20)
                    continue
                why = self.judge(url, r, state)
                if why:
                    self._complain("GET %s: %s" % (url, why))
                else:
                    with self.lock:
                        self.ok += 1
                if self.pause:
                    self.stop_ev.wait(self.pause)
        finally:
            conn.close()

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def stop(self):
        self.stop_ev.set()
        for t in self.threads:
            t.join(25)
        check(not any(t.is_alive() for t in self.threads),
              "load threads did not stop")

    def __exit__(self, et, ev, tb):
        self.stop()
        return False

    def summary(self):
        return "%d answers fine, %d bad, e.g. %s" % (self.ok, self.bad,
                                                     self.errors)

    def check_clean(self, at_least=20):
        harness.note(self.summary())
        check(self.bad == 0, "failed requests under load: %s"
              % self.summary())
        check(self.ok >= at_least, "too few requests under load: %s"
              % self.summary())


# ---- hooks: order and the commit/rollback/release rules ---------------------

HOOKS = r'''
#define MOD "%s"

/* Log "<id> MOD.<what>"; fail with ?code= (default 500) when one of the
 * ?fail= arguments names MOD.<what>. */
static int step(hp_req *req, const char *what)
{
    const char *id = hp_arg(req, "id");
    char me[64];
    applog("%%s %%s.%%s", id ? id : "-", MOD, what);
    snprintf(me, sizeof me, "%%s.%%s", MOD, what);
    for (unsigned i = 0; i < hp_arg_count(req, "fail"); i++) {
        if (strcmp(hp_arg_n(req, "fail", i), me) != 0)
            continue;
        const char *c = hp_arg(req, "code"), *b = hp_arg(req, "body");
        if (hp_arg(req, "auth"))
            hp_set_header(req, "WWW-Authenticate", "Basic realm=\"t\"");
        if (hp_arg(req, "loc"))
            hp_redirect(req, hp_arg(req, "loc"));
        if (b)
            hp_puts(req, b);
        return c ? atoi(c) : 500;
    }
    return HP_OK;
}

HP_HOOK(prepare) { return step(req, "prepare"); }
HP_HOOK(commit) { return step(req, "commit"); }
HP_HOOK(rollback) { return step(req, "rollback"); }
HP_HOOK(release) { return step(req, "release"); }
'''

HOOK_PAGE = r'''
HP_HANDLER(http_handler)
{
    hp_set_header(req, "X-Handler", "ran");
    hp_puts(req, "handler body;");
    int rc = step(req, "handler");
    if (hp_arg(req, "sleep"))
        usleep(1000 * (unsigned)atoi(hp_arg(req, "sleep")));
    return rc;
}
'''


def hook_files(logp):
    return {
        "_app.c": logged(logp, HOOKS % "A"),
        "sub/_app.c": logged(logp, HOOKS % "B"),
        "sub/page.c": logged(logp, HOOKS % "P" + HOOK_PAGE),
        # a page without hooks, and a directory without an application
        "top.c": logged(logp, HOOKS.split("HP_HOOK")[0] % "T" + HOOK_PAGE),
        "sub/plain/_app.c": "#include <hotpub.h>\n/* no hooks at all */\n",
        "sub/plain/q.c": logged(logp, HOOKS % "Q" + HOOK_PAGE),
    }


@contextlib.contextmanager
def hook_server(**kw):
    """A started production-mode server whose modules log every hook
    (hook_files); yields the server and the log's path."""
    s = Server(start=False, dev=False, **kw)
    logp = log_path(s, "hooks.log")
    for rel, src in hook_files(logp).items():
        s.write(rel, src)
    with s:
        s.start()
        yield s, logp


def hook_seq(logp, rid):
    pre = "%s " % rid
    return [l[len(pre):] for l in read_log(logp) if l.startswith(pre)]


def seq(text):
    return text.split()


SUCCESS = seq("A.prepare B.prepare P.prepare P.handler A.commit B.commit "
              "P.commit P.release B.release A.release")


def _hook_case(s, logp, rid, query, want_status, want_seq):
    r = s.get("/sub/page?id=%s%s" % (rid, query))
    got = hook_seq(logp, rid)
    check_eq(got, seq(want_seq) if isinstance(want_seq, str) else want_seq,
             "hooks run for ?%s (status %s)" % (query.lstrip("&"), r.status))
    check_eq(r.status, want_status, "status for ?%s (body %s)"
             % (query.lstrip("&"), short(r.body)))
    return r


def test_hook_order_success():
    with hook_server() as (s, logp):
        r = _hook_case(s, logp, 1, "", 200, SUCCESS)
        check_eq(r.text, "handler body;", "body")
        check_eq(r.header("X-Handler"), "ran", "X-Handler header")
        # again: same order on a warm cache, and for a second request
        _hook_case(s, logp, 2, "", 200, SUCCESS)
        # a page in the root: only the root application's chain
        r = s.get("/top?id=3")
        check_eq(r.status, 200, "status of /top")
        check_eq(hook_seq(logp, 3),
                 seq("A.prepare T.handler A.commit A.release"),
                 "hooks for a hook-less page under one application")
        # an application module with no hooks is simply skipped
        r = s.get("/sub/plain/q?id=4")
        check_eq(r.status, 200, "status of /sub/plain/q")
        check_eq(hook_seq(logp, 4),
                 seq("A.prepare B.prepare Q.prepare Q.handler A.commit "
                     "B.commit Q.commit Q.release B.release A.release"),
                 "hooks with a hook-less application module in the chain")
        # release's and rollback's results are ignored
        r = _hook_case(s, logp, 5, "&fail=P.release&code=503", 200, SUCCESS)
        check_eq(r.text, "handler body;", "body when release returns 503")


def test_hook_failing_prepare_in_page():
    with hook_server() as (s, logp):
        r = _hook_case(s, logp, 1, "&fail=P.prepare&code=403&body=nope", 403,
                       "A.prepare B.prepare P.prepare A.rollback B.rollback "
                       "P.rollback P.release B.release A.release")
        check_eq(r.text, "nope", "body written by the failing prepare")
        check_eq(r.header("X-Handler"), None,
                 "X-Handler (the handler must not run)")
        # a failing rollback changes nothing
        _hook_case(s, logp, 2, "&fail=P.prepare&fail=A.rollback&code=403",
                   403, "A.prepare B.prepare P.prepare A.rollback B.rollback "
                   "P.rollback P.release B.release A.release")


def test_hook_failing_handler():
    with hook_server() as (s, logp):
        r = _hook_case(s, logp, 1, "&fail=P.handler&code=409&body=clash", 409,
                       "A.prepare B.prepare P.prepare P.handler A.rollback "
                       "B.rollback P.rollback P.release B.release A.release")
        check_in("clash", r.text, "409 body the handler wrote")
        _hook_case(s, logp, 2, "&fail=P.handler&code=500", 500,
                   "A.prepare B.prepare P.prepare P.handler A.rollback "
                   "B.rollback P.rollback P.release B.release A.release")


def test_hook_failing_commit():
    with hook_server() as (s, logp):
        # the page's commit fails: earlier commits stand, the page rolls
        # back, the client gets a plain 500 and never the handler's body
        r = _hook_case(s, logp, 1, "&fail=P.commit", 500,
                       "A.prepare B.prepare P.prepare P.handler A.commit "
                       "B.commit P.commit P.rollback P.release B.release "
                       "A.release")
        check_not_in("handler body", r.text, "500 body after a failed commit")
        check_eq(r.header("X-Handler"), None,
                 "X-Handler header after a failed commit")
        # an application's commit fails: it and every module after it roll
        # back, whatever status the commit hook returned
        r = _hook_case(s, logp, 2, "&fail=B.commit&code=409&body=x", 500,
                       "A.prepare B.prepare P.prepare P.handler A.commit "
                       "B.commit B.rollback P.rollback P.release B.release "
                       "A.release")
        check_not_in("handler body", r.text, "500 body after a failed commit")
        r = _hook_case(s, logp, 3, "&fail=A.commit", 500,
                       "A.prepare B.prepare P.prepare P.handler A.commit "
                       "A.rollback B.rollback P.rollback P.release B.release "
                       "A.release")
        check_not_in("handler body", r.text, "500 body after a failed commit")
        # and the next request is fine again
        _hook_case(s, logp, 4, "", 200, SUCCESS)


def test_hook_401_from_application_prepare():
    with hook_server() as (s, logp):
        r = _hook_case(s, logp, 1, "&fail=B.prepare&code=401&body=login",
                       401, "A.prepare B.prepare A.rollback B.rollback "
                       "B.release A.release")
        check_eq(r.text, "login", "body of the 401")
        check_eq(r.header("X-Handler"), None, "X-Handler (handler ran)")
        r = _hook_case(s, logp, 2, "&fail=A.prepare&code=401&auth=1&body=x",
                       401, "A.prepare A.rollback A.release")
        check_eq(r.header("WWW-Authenticate"), 'Basic realm="t"',
                 "WWW-Authenticate set by the prepare that refused")
        # the protection covers every page of the directory and below
        r = s.get("/sub/plain/q?id=3&fail=B.prepare&code=401")
        check_eq(r.status, 401, "status of a page below the protected dir")
        check_eq(hook_seq(logp, 3),
                 seq("A.prepare B.prepare A.rollback B.rollback B.release "
                     "A.release"), "hooks below the protected dir")


def test_hook_redirect_from_prepare():
    """A prepare hook (or a handler) may answer a redirect: it calls
    hp_redirect and returns 301/302/303/307/308. Like an error status it
    stops the chain and everything rolls back (docs/hooks.md)."""
    with hook_server() as (s, logp):
        r = _hook_case(s, logp, 1, "&fail=B.prepare&code=302&loc=/login",
                       302, "A.prepare B.prepare A.rollback B.rollback "
                       "B.release A.release")
        check_eq(r.header("Location"), "/login", "Location of the redirect")
        check_eq(r.header("X-Handler"), None, "X-Handler (handler ran)")
        r = _hook_case(s, logp, 2, "&fail=P.prepare&code=307&loc=/x&body=go",
                       307, "A.prepare B.prepare P.prepare A.rollback "
                       "B.rollback P.rollback P.release B.release A.release")
        check_eq((r.header("Location"), r.text), ("/x", "go"),
                 "Location and body of a 307 from the page's prepare")
        # the handler returning a redirect: rolled back too
        r = _hook_case(s, logp, 3, "&fail=P.handler&code=308&loc=/y",
                       308, "A.prepare B.prepare P.prepare P.handler "
                       "A.rollback B.rollback P.rollback P.release "
                       "B.release A.release")
        check_eq(r.header("Location"), "/y", "Location of the handler's 308")
        # a 3xx without a Location, and a 1xx, are 500
        for rid, code in ((4, 302), (5, 103)):
            r = _hook_case(s, logp, rid, "&fail=B.prepare&code=%d" % code,
                           500, "A.prepare B.prepare A.rollback B.rollback "
                           "B.release A.release")


def test_hooks_pinned_for_the_whole_request():
    """A request keeps the versions it started with, hooks included: the
    application module is replaced while the handler runs, and the
    request's commit and release are still the old version's."""
    with hook_server(args=one_process()) as (s, logp):
        _hook_case(s, logp, 1, "", 200, SUCCESS)
        bg = BackgroundRequest(s.port, "/sub/page?id=2&sleep=1500")
        bg.start()
        check(wait_until(lambda: "P.handler" in hook_seq(logp, 2), 5.0),
              "the slow request did not reach its handler")
        app = s.canon("sub/_app.c")
        vid = current_id(s, app)
        s.write("sub/_app.c", logged(logp, HOOKS % "B2"), how="rename")
        wait_new_version(s, app, vid, limit(5.0), "sub/_app.c")
        _hook_case(s, logp, 3, "", 200, [x.replace("B.", "B2.")
                                         for x in SUCCESS])
        in_flight = bg.is_alive()
        r = bg.join_result()
        check_eq(r.status, 200, "status of the slow request")
        check(in_flight or SLACK > 1, "the new version went live only "
              "after the slow request ended")
        check_eq(hook_seq(logp, 2), SUCCESS, "hooks of the request that "
                 "was running while sub/_app.c was replaced")


# ---- acquisition ------------------------------------------------------------

ACQ_ROOT_APP = r'''
#include <hotpub.h>
HP_INIT { return "root-state"; }
HP_HANDLER(outer)
{
    hp_printf(req, "outer from root app; state=%s",
              (const char *)hp_module_state(req));
    return HP_OK;
}
HP_HANDLER(shared) { hp_puts(req, "shared from root app"); return HP_OK; }
HP_HANDLER(_secret) { hp_puts(req, "root secret"); return HP_OK; }
'''

ACQ_BLOG_APP = r'''
#include <hotpub.h>
HP_INIT { return "blog-state"; }
HP_HANDLER(http_handler)
{
    hp_printf(req, "blog app default for %s; state=%s", hp_path(req),
              (const char *)hp_module_state(req));
    return HP_OK;
}
HP_HANDLER(shared) { hp_puts(req, "shared from blog app"); return HP_OK; }
HP_HANDLER(edit) { hp_puts(req, "edit from blog app"); return HP_OK; }
HP_HANDLER(_hidden) { hp_puts(req, "blog hidden"); return HP_OK; }
'''

ACQ_POST = r'''
#include <hotpub.h>
HP_INIT { return "post-state"; }
HP_HANDLER(edit)
{
    const char *a0 = hp_app(req), *a1 = hp_app_at(req, 1);
    hp_printf(req, "edit from post; state=%s app=%s app1=%s app2=%s",
              (const char *)hp_module_state(req), a0 ? a0 : "-",
              a1 ? a1 : "-", hp_app_at(req, 2) ? "set" : "-");
    return HP_OK;
}
HP_HANDLER(_private) { hp_puts(req, "post private"); return HP_OK; }
'''


def test_acquisition():
    files = {
        "_app.c": ACQ_ROOT_APP,
        "blog/_app.c": ACQ_BLOG_APP,
        "blog/post.c": ACQ_POST,
        # a page with no handler at all
        "blog/other.c": "#include <hotpub.h>\n/* handlers: acquired */\n",
        "top.c": "#include <hotpub.h>\n",
    }
    with Server(files=files, dev=False) as s:
        cases = [
            # in the page itself
            ("/blog/post/edit", 200,
             "edit from post; state=post-state app=blog-state "
             "app1=root-state app2=-"),
            # http_handler from the application module of the page's dir
            ("/blog/post", 200, "blog app default for /blog/post; "
             "state=blog-state"),
            ("/blog/other", 200, "blog app default for /blog/other; "
             "state=blog-state"),
            ("/blog/other/edit", 200, "edit from blog app"),
            # the innermost application module wins
            ("/blog/post/shared", 200, "shared from blog app"),
            # an outer application module
            ("/blog/post/outer", 200, "outer from root app; state=root-state"),
            ("/top/outer", 200, "outer from root app; state=root-state"),
            ("/top/shared", 200, "shared from root app"),
        ]
        for url, st, body in cases:
            r = s.get(url)
            check_eq((r.status, r.text), (st, body), "GET %s" % url)
        # not found anywhere on the chain; not on a chain the page is not in
        for url in ("/blog/post/nosuch", "/top", "/top/edit", "/blog/post/x"):
            check_eq(s.get(url).status, 404, "status of %s" % url)
        # '_' names: never acquired, never reachable; _app never a URL
        for url in ("/blog/post/_secret", "/blog/post/_hidden",
                    "/blog/post/_private", "/blog/other/_hidden",
                    "/top/_secret", "/_app", "/_app/outer", "/blog/_app",
                    "/blog/_app/edit", "/blog/_app/http_handler",
                    "/_app.c", "/blog/_app.c"):
            r = s.get(url)
            check_eq(r.status, 404, "status of %s (body %s)"
                     % (url, short(r.body, 80)))
            for leak in ("secret", "hidden", "private", "from blog app",
                         "from root app"):
                check_not_in(leak, r.text, "body of %s" % url)
        # the status page names the serving module
        root_app, blog_app = s.canon("_app.c"), s.canon("blog/_app.c")
        for url, by in (("/blog/post/edit", "blog/post.c"),
                        ("/blog/post", "blog/_app.c"),
                        ("/blog/other", "blog/_app.c"),
                        ("/blog/post/outer", "_app.c"),
                        ("/top/shared", "_app.c")):
            u = url_status(s, url)
            check_eq(u.get("served_by"), s.canon(by),
                     "status.json?url=%s served_by (%s)" % (url, short(u)))
            want_chain = [root_app] if url.startswith("/top") else \
                [root_app, blog_app]
            check_eq(u.get("chain"), want_chain,
                     "status.json?url=%s chain" % url)
        u = url_status(s, "/blog/post/nosuch")
        check_eq(u.get("served_by"), None, "served_by of a missing handler")
        # status.json lists application modules as such
        st = s.status_json()
        for p, kind in ((root_app, "app"), (blog_app, "app"),
                        (s.canon("blog/post.c"), "page")):
            m = module_at(st, p)
            check(m is not None, "%s not in status.json" % p)
            check_eq(m.get("kind"), kind, "kind of %s" % p)


def test_acquisition_follows_changes():
    """Application modules coming, changing and going: a page without
    handlers follows."""
    with Server(files={"top.c": "#include <hotpub.h>\n",
                       "d/p.c": "#include <hotpub.h>\n"}, dev=False) as s:
        check_eq(s.get("/top").status, 404, "/top without any _app.c")
        s.write("_app.c", '#include <hotpub.h>\nHP_HANDLER(http_handler) '
                '{ hp_puts(req, "root app one"); return HP_OK; }\n',
                how="rename")
        s.wait_body("/top", "root app one", limit(5.0), allowed_status=(404,))
        s.wait_body("/d/p", "root app one", limit(5.0), allowed_status=(404,))
        # a new application module in a subdirectory: innermost wins
        s.write("d/_app.c", '#include <hotpub.h>\nHP_HANDLER(http_handler) '
                '{ hp_puts(req, "d app"); return HP_OK; }\n', how="rename")
        s.wait_body("/d/p", "d app", limit(5.0),
                    allowed_bodies=("root app one",))
        check_eq(s.get_ok("/top").text, "root app one", "/top")
        check_eq(url_status(s, "/d/p").get("chain"),
                 [s.canon("_app.c"), s.canon("d/_app.c")], "chain of /d/p")
        # the handler moves to another name: acquisition follows
        s.write("_app.c", '#include <hotpub.h>\nHP_HANDLER(other) '
                '{ hp_puts(req, "root other"); return HP_OK; }\n',
                how="rename")
        s.wait_for("/top", lambda r: r.status == 404,
                   lambda r: r.status == 200, limit(5.0),
                   "/top to lose its acquired handler")
        check_eq(s.get_ok("/top/other").text, "root other", "/top/other")
        check_eq(s.get_ok("/d/p/other").text, "root other", "/d/p/other")
        # the page gets its own handler: it wins over the application's
        s.write("d/p.c", '#include <hotpub.h>\nHP_HANDLER(http_handler) '
                '{ hp_puts(req, "own"); return HP_OK; }\n', how="rename")
        s.wait_body("/d/p", "own", limit(5.0), allowed_bodies=("d app",))
        # an application module deleted: the chain shrinks
        os.unlink(s.path("d/_app.c"))
        s.wait_for("/d/p/other", lambda r: r.status == 200,
                   lambda r: r.status in (200, 404), limit(5.0),
                   "/d/p/other")
        check_eq(url_status(s, "/d/p").get("chain"), [s.canon("_app.c")],
                 "chain of /d/p after deleting d/_app.c")
        os.unlink(s.path("_app.c"))
        s.wait_for("/d/p/other", lambda r: r.status == 404,
                   lambda r: r.status == 200, limit(5.0),
                   "/d/p/other after deleting _app.c")
        check_eq(url_status(s, "/d/p").get("chain"), [],
                 "chain of /d/p after deleting both")
        check_eq(s.get_ok("/d/p").text, "own", "/d/p at the end")


# ---- state carried across reloads -------------------------------------------

STATE_APP = r'''
#include <stdatomic.h>
#define GEN %(gen)d
#define ADOPT_WHOLE %(whole)d
#define FAIL_INIT %(fail)d
#define LAYOUT 1

/* The counter is shared by reference between a version and the versions
 * that adopted it partially: the old one may still be serving. */
struct counter { atomic_ulong n; atomic_int refs; };
struct st { int layout; int gen; struct counter *c; };

HP_INIT
{
    struct st *prev = previous;
    unsigned long long id = hp_module_version(m);
    if (FAIL_INIT) {
        applog("init v%%llu gen=%%d FAILED prev=%%p", id, GEN, previous);
        hp_module_error(m, "refusing generation %%d on purpose", GEN);
        return NULL;
    }
    if (prev && prev->layout != LAYOUT) {
        hp_module_error(m, "state layout %%d, want %%d", prev->layout,
                        LAYOUT);
        return NULL;
    }
    if (prev && ADOPT_WHOLE) {
        applog("init v%%llu gen=%%d whole prev=%%p state=%%p", id, GEN,
               previous, previous);
        return prev;
    }
    struct st *s = calloc(1, sizeof *s);
    s->layout = LAYOUT;
    s->gen = GEN;
    if (prev) {
        s->c = prev->c;
        atomic_fetch_add(&s->c->refs, 1);
    } else {
        s->c = calloc(1, sizeof *s->c);
        atomic_init(&s->c->refs, 1);
    }
    applog("init v%%llu gen=%%d partial prev=%%p state=%%p", id, GEN,
           previous, (void *)s);
    return s;
}

HP_FINI
{
    struct st *s = state;
    applog("fini v%%llu gen=%%d handed_over=%%d state=%%p",
           hp_module_version(m), GEN, handed_over ? 1 : 0, state);
    if (handed_over || !s)
        return;
    if (atomic_fetch_sub(&s->c->refs, 1) == 1)
        free(s->c);
    free(s);
}

HP_HANDLER(hit)
{
    struct st *s = hp_module_state(req);
    if (!s || s != hp_app(req)) {
        hp_puts(req, "NO STATE");
        return 500;
    }
    unsigned long n = atomic_fetch_add(&s->c->n, 1) + 1;
    hp_printf(req, "n=%%lu gen=%%d", n, GEN);
    return HP_OK;
}
'''

HIT_RE = re.compile(r"^n=(\d+) gen=(\d+)$")


def state_app(logp, gen, whole, failing=False):
    return logged(logp, STATE_APP % {"gen": gen, "whole": 1 if whole else 0,
                                     "fail": 1 if failing else 0})


def parse_state_log(lines):
    """-> (inits [(id, gen, mode, prev, state)], fails {id}, finis {id:
    [handed_over, ...]})"""
    inits, fails, finis = [], set(), {}
    for l in lines:
        mt = re.match(r"^init v(\d+) gen=(\d+) (whole|partial) prev=(\S+) "
                      r"state=(\S+)$", l)
        if mt:
            inits.append((int(mt.group(1)), int(mt.group(2)), mt.group(3),
                          mt.group(4), mt.group(5)))
            continue
        mt = re.match(r"^init v(\d+) gen=(\d+) FAILED", l)
        if mt:
            fails.add(int(mt.group(1)))
            continue
        mt = re.match(r"^fini v(\d+) gen=\d+ handed_over=(\d) state=", l)
        if mt:
            finis.setdefault(int(mt.group(1)), []).append(int(mt.group(2)))
            continue
        fail("unexpected log line %r" % l)
    return inits, fails, finis


def hit_judge(url, r, state):
    mt = HIT_RE.match(r.text) if r.status == 200 else None
    if not mt:
        return "status %s body %s" % (r.status, short(r.body, 200))
    n = int(mt.group(1))
    if n <= state.get("last", 0):
        return "counter went from %d to %d" % (state["last"], n)
    state["last"] = n
    return None


def test_state_counter_survives_100_reloads():
    """A counter in an application module's state keeps counting across
    100 reloads of that module (alternately adopting the previous state
    whole and partially) while 4 clients hit it; fini runs exactly once per
    retired version with handed_over right, and for the last one at
    SIGTERM."""
    reloads = 100
    s = Server(start=False, args=one_process(), dev=False)
    logp = log_path(s, "state.log")
    s.write("_app.c", state_app(logp, 0, False))
    s.write("p.c", "#include <hotpub.h>\n")
    with s:
        s.start()
        check_eq(s.get_ok("/p/hit").text, "n=1 gen=0", "first hit")
        app = s.canon("_app.c")
        vid = current_id(s, app)
        ids = [vid]
        t0 = time.monotonic()
        with Load(s, ["/p/hit"], hit_judge, n=4) as load:
            for g in range(1, reloads + 1):
                s.write("_app.c", state_app(logp, g, g % 2 == 1), how="rename")
                vid = wait_new_version(s, app, vid, limit(10.0),
                                       "reload %d of _app.c" % g)
                ids.append(vid)
                r = s.get_ok("/p/hit")
                mt = HIT_RE.match(r.text)
                check(mt and int(mt.group(2)) == g,
                      "after reload %d /p/hit says %r" % (g, r.text))
        took = time.monotonic() - t0
        harness.note("%d reloads in %.1f s; %s" % (reloads, took,
                                                  load.summary()))
        load.check_clean()
        # no increment lost: the counter equals the number of hits
        total = load.ok + 1 + reloads
        r = s.get_ok("/p/hit")
        check_eq(r.text, "n=%d gen=%d" % (total + 1, reloads),
                 "counter after %d hits" % total)
        # every retired version unloaded: its fini ran
        check(wait_until(lambda: not module_at(s.status_json(), app)
                         .get("retired"), limit(5.0), 0.05),
              "retired versions of _app.c still loaded: %s"
              % short(module_at(s.status_json(), app).get("retired")))
        inits, fails, finis = parse_state_log(read_log(logp))
        check_eq(fails, set(), "failed inits")
        check_eq([i[0] for i in inits], ids, "versions initialised (in "
                 "order) vs versions seen current")
        for (vid_, gen, mode, prev, st), nxt in zip(inits, inits[1:] + [None]):
            if nxt is None:
                check(vid_ not in finis, "fini ran for the current version "
                      "v%d before shutdown" % vid_)
                continue
            want = 1 if nxt[2] == "whole" else 0
            check_eq(finis.get(vid_), [want],
                     "fini calls (handed_over) of v%d (gen %d), replaced by "
                     "v%d adopting %s" % (vid_, gen, nxt[0], nxt[2]))
            check_eq(nxt[3], st, "previous given to v%d's init (state of "
                     "v%d)" % (nxt[0], vid_))
        check_eq(sorted(finis), sorted(ids[:-1]), "versions whose fini ran")
        s.stop()
        inits, fails, finis = parse_state_log(read_log(logp))
        check_eq(finis.get(ids[-1]), [0],
                 "fini of the last version at SIGTERM (handed_over)")
        check_eq(sorted(finis), sorted(ids), "versions whose fini ran "
                 "after SIGTERM")
        check(all(len(v) == 1 for v in finis.values()),
              "a fini ran more than once: %s" % finis)


def _failing_init(dev):
    s = Server(start=False, args=one_process(), dev=dev)
    logp = log_path(s, "state.log")
    s.write("_app.c", state_app(logp, 1, False))
    s.write("p.c", "#include <hotpub.h>\n")
    with s:
        s.start()
        app = s.canon("_app.c")
        for i in range(1, 4):
            check_eq(s.get_ok("/p/hit").text, "n=%d gen=1" % i, "hit %d" % i)
        vid = current_id(s, app)
        s.write("_app.c", state_app(logp, 2, True, failing=True),
                how="rename")

        def errored():
            m = module_at(s.status_json(), app)
            return m if m and m.get("error") and not m.get("stale") else None
        m = wait_until(errored, limit(5.0), 0.02)
        check(m, "no error in status.json after a failing init: %s"
              % short(module_at(s.status_json(), app)))
        check_in("refusing generation 2 on purpose", m["error"],
                 "status.json error of _app.c")
        check_eq(m["current"]["id"], vid, "current version after the failed "
                 "init")
        check_eq(m.get("retired"), [], "retired versions after the failed "
                 "init")
        u = url_status(s, "/p/hit")
        check_in("refusing generation 2 on purpose", u.get("error") or "",
                 "status.json?url=/p/hit error")
        check(wait_until(lambda: "refusing generation 2 on purpose"
                         in s.stderr(), limit(2.0)),
              "the init error is not in the server's log")
        if dev:
            r = s.get("/p/hit")
            check_eq(r.status, 500, "status in dev mode with the init "
                     "error (body %s)" % short(r.body))
            check_in("refusing generation 2 on purpose", r.text,
                     "dev error page")
            nxt = 4
        else:
            for i in range(4, 7):
                check_eq(s.get_ok("/p/hit").text, "n=%d gen=1" % i,
                         "hit %d served by the old version" % i)
            nxt = 7
        # the fix: its init gets the old version's state, untouched
        s.write("_app.c", state_app(logp, 3, True), how="rename")
        new = wait_new_version(s, app, vid, limit(5.0), "the fixed _app.c")
        check_eq(s.get_ok("/p/hit").text, "n=%d gen=3" % nxt,
                 "first hit after the fix")
        inits, fails, finis = parse_state_log(read_log(logp))
        check_eq(len(fails), 1, "failed inits")
        bad = fails.pop()
        check(vid < bad < new, "ids: old %s, failed %s, new %s"
              % (vid, bad, new))
        check_eq([i[0] for i in inits], [vid, new], "initialised versions")
        check_eq(inits[1][3], inits[0][4], "previous of the fixed version "
                 "(the state of the version that stayed)")
        check(bad not in finis, "fini ran for the version whose init failed")
        check(wait_until(lambda: finis_of(logp).get(vid) == [1],
                         limit(3.0), 0.05),
              "fini of the old version: %s" % finis_of(logp))
        m = module_at(s.status_json(), app)
        check_eq(m.get("error"), None, "status.json error after the fix")


def finis_of(logp):
    return parse_state_log(read_log(logp))[2]


def test_state_failing_init_keeps_old_version():
    _failing_init(dev=False)


def test_state_failing_init_dev_shows_error():
    _failing_init(dev=True)


# ---- batched multi-file changes ---------------------------------------------

BATCH_H = r'''
#include <stdatomic.h>
#define LAYOUT %(n)d
/* layout and app_gen first, at the same offsets in every layout */
struct app_state {
    int layout;
    int app_gen;
    long pad[%(n)d];
    atomic_ulong hits;
};
'''

BATCH_APP = r'''
#include "_app.h"
#define APP_GEN %(n)d
%(extra)s
HP_INIT
{
    struct app_state *prev = previous;
    if (REFUSE) {
        applog("init v%%llu FAILED", hp_module_version(m));
        hp_module_error(m, "app generation %%d refuses to start", APP_GEN);
        return NULL;
    }
    applog("init v%%llu ok", hp_module_version(m));
    if (prev && prev->layout == LAYOUT && prev->app_gen == APP_GEN)
        return prev;
    struct app_state *s = calloc(1, sizeof *s);
    s->layout = LAYOUT;
    s->app_gen = APP_GEN;
    return s;
}
HP_FINI
{
    applog("fini v%%llu handed_over=%%d", hp_module_version(m),
           handed_over ? 1 : 0);
    if (!handed_over)
        free(state);
}
'''


def lifecycle(logp):
    """-> ({id: "ok"|"FAILED"}, {id: [handed_over, ...]}) from a log of
    "init v<id> ok|FAILED" and "fini v<id> handed_over=<0|1>" lines."""
    inits, finis = {}, {}
    for l in read_log(logp):
        mt = re.match(r"^init v(\d+) (ok|FAILED)$", l)
        if mt:
            inits[int(mt.group(1))] = mt.group(2)
            continue
        mt = re.match(r"^fini v(\d+) handed_over=(\d)$", l)
        if mt:
            finis.setdefault(int(mt.group(1)), []).append(int(mt.group(2)))
            continue
        fail("unexpected log line %r" % l)
    return inits, finis

BATCH_PAGE = r'''
#include <hotpub.h>
#include "_app.h"
#define PAGE_GEN %(n)d
%(extra)s
HP_HANDLER(http_handler)
{
    struct app_state *a = hp_app(req);
    if (!a || a->layout != LAYOUT || a->app_gen != PAGE_GEN ||
        PAGE_GEN != LAYOUT) {
        hp_printf(req, "MISMATCH page=%%d header=%%d app_layout=%%d "
                  "app_gen=%%d", PAGE_GEN, LAYOUT, a ? a->layout : -1,
                  a ? a->app_gen : -1);
        return 500;
    }
    atomic_fetch_add(&a->hits, 1);
    hp_printf(req, "ok %%d", LAYOUT);
    return HP_OK;
}
'''


def batch_files(logp, n, broken_page=False, refuse=False, page2=True):
    files = {
        "_app.h": BATCH_H % {"n": n},
        "_app.c": logged(logp, BATCH_APP % {
            "n": n, "extra": "#define REFUSE %d" % (1 if refuse else 0)}),
        "page.c": BATCH_PAGE % {"n": n, "extra": "#error broken page"
                                if broken_page else ""},
    }
    if page2:
        files["sub/page2.c"] = (BATCH_PAGE % {"n": n, "extra": ""}).replace(
            '"_app.h"', '"../_app.h"')
    return files


OK_RE = re.compile(r"^ok (\d+)$")


def batch_judge(url, r, state):
    mt = OK_RE.match(r.text) if r.status == 200 else None
    if not mt:
        return "status %s body %s" % (r.status, short(r.body, 200))
    n = int(mt.group(1))
    if n < state.get(url, 0):
        return "went back from layout %d to %d" % (state[url], n)
    state[url] = n
    return None


def test_batch_header_app_page_never_mismatched():
    """_app.h (LAYOUT + struct), _app.c and two pages including it are
    rewritten together 20 times under load: no request sees a page built
    against one layout with an application state of another."""
    rounds = 20
    s = Server(start=False, args=one_process(), dev=False)
    logp = log_path(s, "app.log")
    for rel, src in batch_files(logp, 0, page2=False).items():
        s.write(rel, src)
    with s:
        s.start()
        check_eq(s.get_ok("/page").text, "ok 0", "first version")
        t0 = time.monotonic()
        with Load(s, ["/page"], batch_judge, n=4) as load:
            for n in range(1, rounds + 1):
                write_batch(s, batch_files(logp, n, page2=False))
                s.wait_for("/page", lambda r: r.status == 200 and
                           r.text == "ok %d" % n,
                           lambda r: r.status == 200 and
                           r.text == "ok %d" % (n - 1),
                           limit(5.0), "layout %d" % n)
        harness.note("%d batches in %.1f s; %s"
                     % (rounds, time.monotonic() - t0, load.summary()))
        load.check_clean()
        s.stop()
        inits, finis = lifecycle(logp)
        check_eq(len(inits), rounds + 1, "versions of _app.c initialised")
        check_eq(finis, {v: [0] for v in inits},
                 "fini calls (handed_over) after SIGTERM")


def test_batch_failure_holds_everything_back():
    s = Server(start=False, args=one_process(), dev=False)
    logp = log_path(s, "app.log")
    for rel, src in batch_files(logp, 1).items():
        s.write(rel, src)
    with s:
        s.start()
        for u in ("/page", "/sub/page2"):
            check_eq(s.get_ok(u).text, "ok 1", "first version of %s" % u)
        app, pg, pg2 = s.canon("_app.c"), s.canon("page.c"), \
            s.canon("sub/page2.c")
        st = s.status_json()
        before = {p: module_at(st, p)["current"]["id"] for p in (app, pg, pg2)}

        def settled(bad, others):
            """The batch was tried: bad is in error, the others held."""
            def f():
                st = s.status_json()
                m = module_at(st, bad)
                if m and m.get("error") and all(
                        module_at(st, p).get("held") for p in others):
                    return st
                return None
            return f

        def held_back(step, bad, errtext, others, old_body):
            st = wait_until(settled(bad, others), limit(5.0), 0.02)
            check(st, "%s: %s not in error with the rest held back: %s"
                  % (step, bad, short(s.status_json(), 800)))
            check_in(errtext, module_at(st, bad)["error"],
                     "%s: error of %s" % (step, bad))
            for p in (app, pg, pg2):
                m = module_at(st, p)
                check_eq(m["current"]["id"], before[p],
                         "%s: current version of %s" % (step, p))
            for p in others:
                check_eq(module_at(st, p).get("error"), None,
                         "%s: error of %s (held back, not broken)"
                         % (step, p))
            for _ in range(5):
                for u in ("/page", "/sub/page2"):
                    r = s.get(u)
                    check_eq((r.status, r.text), (200, old_body),
                             "%s: GET %s (old outputs)" % (step, u))

        # one page of the batch does not compile
        write_batch(s, batch_files(logp, 2, broken_page=True))
        held_back("a page that does not compile", pg, "broken page",
                  (app, pg2), "ok 1")
        # the application's new version initialised, never went live, and
        # was finalised right away (it had made a state of its own)
        inits, finis = lifecycle(logp)
        new = [v for v in inits if v != before[app]]
        check_eq(len(new), 1, "versions of _app.c initialised (%s)" % inits)
        check_eq(finis, {new[0]: [0]}, "fini calls after the held batch "
                 "(only the version that never went live, handed_over=0)")
        # fix that one page only: the whole batch goes live
        write_batch(s, {"page.c": batch_files(logp, 2)["page.c"]})
        for u in ("/page", "/sub/page2"):
            s.wait_body(u, "ok 2", limit(5.0), allowed_bodies=("ok 1",))
        st = s.status_json()
        for p in (app, pg, pg2):
            m = module_at(st, p)
            check_eq((m.get("held"), m.get("error")), (False, None),
                     "(held, error) of %s after the fix" % p)
            check(m["current"]["id"] != before[p], "%s did not get a new "
                  "version" % p)
            before[p] = m["current"]["id"]
        # an application whose init fails holds back the batch too
        write_batch(s, batch_files(logp, 3, refuse=True))
        held_back("an application whose init fails", app,
                  "app generation 3 refuses to start", (pg, pg2), "ok 2")
        write_batch(s, {"_app.c": batch_files(logp, 3)["_app.c"]})
        for u in ("/page", "/sub/page2"):
            s.wait_body(u, "ok 3", limit(5.0), allowed_bodies=("ok 2",))
        s.stop()
        # every version whose init succeeded was finalised exactly once;
        # a version whose init failed never
        inits, finis = lifecycle(logp)
        check_eq(sorted(inits.values()), ["FAILED", "ok", "ok", "ok", "ok"],
                 "init outcomes (%s)" % inits)
        check_eq(finis, {v: [0] for v, how in inits.items() if how == "ok"},
                 "fini calls (handed_over) after SIGTERM")


def test_batch_failure_holds_pages_loaded_later():
    """While a failed batch is held back, a page that was not loaded yet
    (one that existed but had not been requested, or one the batch added)
    must not be built alone against the batch's new header and paired with
    the held-back application module."""
    s = Server(start=False, args=one_process(), dev=False)
    logp = log_path(s, "app.log")
    files = batch_files(logp, 1)
    files["late.c"] = files["page.c"]  # exists, never requested before
    for rel, src in files.items():
        s.write(rel, src)
    with s:
        s.start()
        check_eq(s.get_ok("/page").text, "ok 1", "first version of /page")
        pg = s.canon("page.c")
        files = batch_files(logp, 2, broken_page=True)
        good = batch_files(logp, 2)["page.c"]
        files["late.c"] = good
        files["fresh.c"] = good  # a page the batch adds
        write_batch(s, files)
        check(wait_until(lambda: (module_at(s.status_json(), pg) or {})
                         .get("error"), limit(5.0), 0.02),
              "page.c not in error after the failed batch")
        check_eq(s.get("/page").text, "ok 1", "/page while held back")
        for u in ("/late", "/fresh"):
            r = s.get(u)
            check_not_in("MISMATCH", r.text, "GET %s (status %s) while the "
                         "batch is held back" % (u, r.status))
        write_batch(s, {"page.c": good})
        for u in ("/page", "/late", "/fresh"):
            s.wait_for(u, lambda r: r.status == 200 and r.text == "ok 2",
                       lambda r: "MISMATCH" not in r.text, limit(5.0),
                       "%s to serve the fixed batch" % u)


# ---- symlink-swap deploys ---------------------------------------------------

DEPLOY_APP = r'''
#include <hotpub.h>
#include <stdlib.h>
#include <string.h>
#define RELEASE "%s"
struct st { int layout; char release[8]; };
HP_INIT
{
    /* never adopt: the release name is copied, not pointed to (a pointer
     * into the old object's strings would dangle once it is unloaded) */
    struct st *s = calloc(1, sizeof *s);
    s->layout = 1;
    strcpy(s->release, RELEASE);
    return s;
}
HP_FINI { if (!handed_over) free(state); }
'''

DEPLOY_PAGE = r'''
#include <hotpub.h>
#include <stdlib.h>
#include <unistd.h>
#define RELEASE "%s"
struct st { int layout; char release[8]; };
HP_HANDLER(http_handler)
{
    struct st *a = hp_app_at(req, %d);
    if (hp_arg(req, "sleep"))
        usleep(1000 * atoi(hp_arg(req, "sleep")));
    hp_printf(req, "%%s %s app=%%s", RELEASE, a ? a->release : "none");
    return HP_OK;
}
'''


def deploy_release(rel):
    def pg(name, depth):
        return DEPLOY_PAGE % (rel, depth, name)
    return {
        "_app.c": DEPLOY_APP % rel,
        "a.c": pg("a", 0),
        "b.c": pg("b", 0),
        "sub/_app.c": DEPLOY_APP % (rel + "s"),
        "sub/c.c": pg("c", 0),
        "slow.c": pg("slow", 0),
    }


def test_symlink_swap_deploy():
    """DOCROOT is a symlink current -> releases/v1; under load, releases/v2
    is created and swapped in by rename: no failed request, every page
    serves v2 soon after, a request in flight since before the swap answers
    v1, and no answer pairs modules of both releases."""
    s = Server(start=False, dev=False)
    rels = os.path.join(s.tmp, "releases")
    for rel in ("v1", "v2"):
        for p, src in deploy_release(rel).items():
            harness.write_file(os.path.join(rels, rel, p), src)
    os.rmdir(s.root)
    os.symlink(os.path.join("releases", "v1"), s.root)
    # v2 is written in full before the swap, and not compiled yet
    urls = {"/a": "a", "/b": "b", "/sub/c": "c"}

    def body(url, rel):
        app = rel + ("s" if url == "/sub/c" else "")
        return "%s %s app=%s" % (rel, urls[url], app)

    def judge(url, r, state):
        if r.status != 200:
            return "status %s body %s" % (r.status, short(r.body, 200))
        if r.text == body(url, "v1"):
            if state.get(url) == "v2":
                return "back to v1 after v2"
            state[url] = "v1"
            return None
        if r.text == body(url, "v2"):
            state[url] = "v2"
            return None
        return "unexpected body %s" % short(r.body, 200)

    with s:
        s.start()
        for u in urls:
            check_eq(s.get_ok(u).text, body(u, "v1"), "GET %s before the "
                     "swap" % u)
        check_eq(s.get_ok("/slow?sleep=1").text, "v1 slow app=v1", "warm-up")
        with Load(s, list(urls), judge, n=4) as load:
            time.sleep(0.5)
            bg = BackgroundRequest(s.port, "/slow?sleep=3000")
            bg.start()
            time.sleep(0.3)
            tmp_link = os.path.join(s.tmp, ".root-new")
            os.symlink(os.path.join("releases", "v2"), tmp_link)
            os.rename(tmp_link, s.root)
            t_swap = time.monotonic()

            def all_v2():
                return all(s.get(u).text == body(u, "v2") for u in urls)
            took = wait_until(all_v2, limit(5.0), 0.02)
            dt = time.monotonic() - t_swap
            in_flight = bg.is_alive()
            time.sleep(0.5)
        load.check_clean()
        check(took, "not every page serves v2 5 s after the swap: %s"
              % {u: s.get(u).text for u in urls})
        harness.note("v2 everywhere %.2f s after the swap; the slow request "
                     "was %s in flight" % (dt, "still" if in_flight
                                           else "no longer"))
        r = bg.join_result()
        check_eq((r.status, r.text), (200, "v1 slow app=v1"),
                 "the request in flight across the swap")
        check(in_flight or SLACK > 1, "v2 was served only %.2f s after the "
              "swap, after the in-flight request had ended" % dt)
        check_eq(s.get_ok("/slow?sleep=1").text, "v2 slow app=v2",
                 "/slow after the swap")
        # module paths stay those under the configured root
        st = s.status_json()
        paths = sorted(m["path"] for m in st["modules"])
        root = os.path.join(os.path.realpath(s.tmp), "root")
        check(paths and all(p.startswith(root + "/") for p in paths),
              "module paths after the swap: %s" % paths)
        check(all(not m.get("error") and not m.get("held")
                  for m in st["modules"]), "errors after the swap: %s"
              % short(st, 600))


def test_symlink_swap_broken_release_holds_everything():
    """A release with a page that does not compile: nothing of it goes live,
    not even a page only the new release has, until it is fixed."""
    s = Server(start=False, args=one_process(), dev=False)
    rels = os.path.join(s.tmp, "releases")
    for rel in ("v1", "v2"):
        for p, src in deploy_release(rel).items():
            harness.write_file(os.path.join(rels, rel, p), src)
    harness.write_file(os.path.join(rels, "v2", "b.c"), "#error broken b\n")
    harness.write_file(os.path.join(rels, "v2", "new.c"),
                       DEPLOY_PAGE % ("v2", 0, "new"))
    os.rmdir(s.root)
    os.symlink(os.path.join("releases", "v1"), s.root)
    with s:
        s.start()
        for u, name in (("/a", "a"), ("/b", "b")):
            check_eq(s.get_ok(u).text, "v1 %s app=v1" % name, "GET %s" % u)
        b = os.path.join(os.path.realpath(s.tmp), "root", "b.c")
        tmp_link = os.path.join(s.tmp, ".root-new")
        os.symlink(os.path.join("releases", "v2"), tmp_link)
        os.rename(tmp_link, s.root)
        check(wait_until(lambda: (module_at(s.status_json(), b) or {})
                         .get("error"), limit(5.0), 0.02),
              "b.c not in error after the swap to a broken release")
        for u, name in (("/a", "a"), ("/b", "b")):
            r = s.get(u)
            check_eq((r.status, r.text), (200, "v1 %s app=v1" % name),
                     "GET %s while the new release is held back" % u)
        r = s.get("/new")
        check(not (r.status == 200 and r.text.startswith("v2 ") and
                   r.text.endswith("app=v1")),
              "GET /new pairs a page of the new release with the old "
              "release's application module: %s" % short(r.text))
        harness.write_file(os.path.join(rels, "v2", "b.c"),
                           deploy_release("v2")["b.c"])
        for u, name in (("/a", "a"), ("/b", "b"), ("/new", "new")):
            s.wait_body(u, "v2 %s app=v2" % name, limit(5.0),
                        allowed_bodies=("v1 %s app=v1" % name,),
                        allowed_status=(404, 500))


# ---- the example application ------------------------------------------------

def test_example_app():
    """examples/app/: state adopted across reloads, hooks, a page served by
    an acquired handler, a directory protected by a prepare hook."""
    src = os.path.join(REPO, "examples")
    check(os.path.isfile(os.path.join(src, "app", "_app.c")),
          "examples/app/_app.c is missing")
    s = Server(start=False, args=one_process(), dev=False,
               env={"HOTPUB_ADMIN_TOKEN": "s3cret"})
    shutil.rmtree(s.root)
    shutil.copytree(src, s.root, symlinks=True)
    with s:
        p = harness.run_hotpub(["check", "--cache-dir", s.cache, s.root],
                               timeout=120)
        if p.returncode != 0:
            fail("hotpub check examples: exit %s, output %s"
                 % (p.returncode, short(p.stdout + p.stderr, 800)))
        s.start()

        def visit():
            r = s.get_ok("/app/")
            mt = re.search(r"visit #(\d+)", r.text)
            check(mt, "no visit number on /app/: %s" % short(r.text))
            return int(mt.group(1))

        def stats():
            r = s.get_ok("/app/stats/json")
            check_in("application/json", r.header("Content-Type") or "",
                     "Content-Type of /app/stats/json")
            return json.loads(r.text)

        check_eq([visit(), visit()], [1, 2], "visit numbers")
        # a page with no handler of its own
        r = s.get_ok("/app/stats")
        check_in("home page visits</td><td>2<", r.text, "/app/stats")
        check_eq(url_status(s, "/app/stats").get("served_by"),
                 s.canon("app/_app.c"), "module serving /app/stats")
        check_eq(url_status(s, "/app/").get("served_by"),
                 s.canon("app/index.c"), "module serving /app/")
        st = stats()
        check_eq(st["visits"], 2, "visits")
        check_eq(st["requests"], 4, "requests counted by prepare")
        check_eq(st["committed"], 3, "commits counted (this one is not "
                 "done yet)")
        # the admin directory wants the password (from the environment)
        good = {"Authorization": "Basic " + base64("admin:s3cret")}
        for u in ("/app/admin/", "/app/admin/reset"):
            r = s.get(u)
            check_eq(r.status, 401, "status of %s without credentials" % u)
            check_in("Basic", r.header("WWW-Authenticate") or "",
                     "WWW-Authenticate of %s" % u)
            check_not_in("Reset", r.text, "401 body")
        r = s.get("/app/admin/", headers={
            "Authorization": "Basic " + base64("admin:letmein")})
        check_eq(r.status, 401, "status with the default password while "
                 "HOTPUB_ADMIN_TOKEN is set")
        r = s.get("/app/admin/", headers=good)
        check_eq(r.status, 200, "status of /app/admin/ with the password "
                 "(body %s)" % short(r.body))
        check_in("Reset the visit counter", r.text, "/app/admin/")
        st = stats()
        check_eq(st["rolled_back"], 3, "rolled back (the three 401s)")
        # state survives reloads of the application module
        app = s.canon("app/_app.c")
        with open(s.path("app/_app.c")) as f:
            text = f.read()
        for i in range(2):
            vid = current_id(s, app)
            s.write("app/_app.c", text + "\n/* edit %d */\n" % i,
                    how="rename")
            wait_new_version(s, app, vid, limit(5.0), "app/_app.c")
        after = stats()
        check_eq((after["visits"], after["started"]),
                 (st["visits"], st["started"]),
                 "visits and start time after two reloads of _app.c")
        check(after["requests"] > st["requests"], "requests after the "
              "reloads: %s, before %s" % (after, st))
        check_eq(visit(), 3, "visit number after the reloads")
        # reset (POST, admin only) clears the visit counter
        check_eq(s.get("/app/admin/reset", headers=good).status, 405,
                 "GET /app/admin/reset")
        r = s.request("/app/admin/reset", "POST", "", good)
        check_eq((r.status, r.header("Location")), (303, "/app/admin/"),
                 "POST /app/admin/reset")
        check_eq(visit(), 1, "visit number after the reset")
        # release logs how long each request took
        check(wait_until(lambda: re.search(r"GET /app/stats/json: [0-9.]+ "
                                           r"ms, committed", s.stderr()),
                         limit(2.0)),
              "no timing line from the release hook in the server's log")


def base64(text):
    import base64 as b64
    return b64.b64encode(text.encode()).decode()


if __name__ == "__main__":
    sys.exit(harness.run_suite(globals(), sys.argv[1:],
                               suite_budget=SUITE_BUDGET,
                               test_timeout=TEST_TIMEOUT))
