#!/usr/bin/env python3
"""hotpub end-to-end tests of a SIGHUP whose new settings cannot serve
(docs/operations.md, "Reloading"): the running workers go on answering,
the log says the reload failed and why, and a later SIGHUP with fixed
settings reloads. Also what start-up says about a TLS certificate that
does not fit its key, an unparsable PEM file and a missing compiler.

    HOTPUB_BIN=/abs/path/hotpub python3 tests/e2e/reload.py [NAME-SUBSTRING...]

Each reload test watches the site for 15 s after the bad SIGHUP (the old
supervisor retired the old workers 10 s after it). Uses openssl (tests
helpers of ops.py) and the status page helpers of workers.py.
"""

import os
import shutil
import signal
import ssl
import stat
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import (Server, check, check_eq, check_in, check_not_in,  # noqa: E402
                     fail, limit, request, simple_page, wait_until)
from ops import make_cert, tls_get  # noqa: E402
from workers import procs  # noqa: E402

TEST_TIMEOUT = 90.0
SUITE_BUDGET = 400.0
WATCH_S = 15.0  # how long the site must keep answering after a bad SIGHUP


class ConfigServer(Server):
    """A Server whose document root and cache directory come from a
    --config file only (no command-line DOCROOT or --cache-dir, which
    would win over the file), so that a SIGHUP can change them."""

    def __init__(self, settings, **kw):
        super().__init__(**kw)
        self.ini = os.path.join(self.tmp, "hotpub.ini")
        self.settings = dict(docroot=self.root, **{"cache-dir": self.cache})
        self.settings.update(settings)
        self.write_ini()
        self.args = ["--config", self.ini] + self.args

    def write_ini(self, **changes):
        self.settings.update(changes)
        with open(self.ini, "w") as f:
            f.write("[server]\n")
            for k, v in self.settings.items():
                if v is not None:
                    f.write("%s = %s\n" % (k, v))

    def command(self):
        cmd = super().command()
        cmd.pop()  # the DOCROOT argument
        at = cmd.index("--cache-dir")
        del cmd[at:at + 2]
        return cmd


def keeps_answering(get, seconds):
    """GET every 0.25 s for `seconds`; fail at the first answer not 200."""
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        try:
            status = get()
        except OSError as e:
            status = repr(e)
        if status != 200:
            fail("after %.1f s of the bad SIGHUP: %r instead of 200"
                 % (seconds - (end - time.monotonic()), status))
        n += 1
        time.sleep(0.25)
    return n


def plain_get(s):
    return lambda: request(s.port, "/hello", timeout=3).status


def generation_serving(s, gen, tls=False):
    line = "worker generation %d is serving" % gen
    check(wait_until(lambda: line in s.stderr(), limit(15)),
          "no %r in the log after the fixed SIGHUP:\n%s"
          % (line, s.stderr_tail()))
    if tls:  # workers.py's status helper speaks plain HTTP
        return
    p = procs(s)
    check(p["generation"] == gen, "generation %r, not %d" % (p["generation"],
                                                            gen))


def test_sighup_retired_workers_say_so():
    """At SIGHUP each worker of the old generation drains and exits: its
    last line says it was retired after the reload (and which generation
    serves), and the supervisor's says the same, never a bare "stopped"
    that reads like the server stopping. At SIGTERM the lines say the
    workers stopped with the server."""
    with Server(files={"hello.c": simple_page("hi")},
                args=["--workers", "2"]) as s:
        old = sorted(procs(s)["workers"], key=lambda w: w["pid"])
        old = [w["pid"] for w in old]
        mark = len(s.stderr())
        os.kill(s.proc.pid, signal.SIGHUP)
        generation_serving(s, 2)
        for pid in old:
            line = ("worker %d (generation 1) retired after reload: "
                    "generation 2 serves: drained" % pid)
            check(wait_until(lambda: line in s.stderr(), limit(10)),
                  "no %r in the log:\n%s" % (line, s.stderr_tail()))
            # the parent's line comes when it reaps the worker, which
            # may be a while after the worker's own (ThreadSanitizer's
            # exit alone sleeps 1 s)
            line = ("worker %d (generation 1) retired after reload, "
                    "drained and exited" % pid)
            check(wait_until(lambda: line in s.stderr(), limit(10)),
                  "the parent has no %r:\n%s" % (line, s.stderr_tail()))
        during = s.stderr()[mark:]
        bare = [ln for ln in during.splitlines()
                if ln.rstrip().endswith("] stopped")]
        check_eq(bare, [], "bare 'stopped' lines during the reload")
        check_eq(request(s.port, "/hello", timeout=3).status, 200, "served")
        s.stop()
        check_in("stopped with the server: drained", s.stderr(), "at SIGTERM")
        check_in("stopped with the server, drained and exited", s.stderr(),
                 "the parent at SIGTERM")


def test_sighup_lines_name_worker_and_generation():
    """At SIGHUP the lines every worker repeats say which worker and
    generation they are: the old ones' "signal 15: finishing in-flight
    requests", the new ones' "database: ..." and "hotpub ... serving"; a
    config-file error found by the reload is a log line (time, level), not
    the command line's bare "hotpub: file:line: ..."."""
    with ConfigServer({"workers": 2},
                      files={"hello.c": simple_page("hi")}, workers=None) as s:
        old = [w["pid"] for w in procs(s)["workers"]]
        s.write_ini(**{"max-bodysize": "1"})
        os.kill(s.pid(), signal.SIGHUP)
        check(wait_until(lambda: "reload refused" in s.stderr(), limit(5)),
              "no refusal: %s" % s.stderr_tail())
        bad = [ln for ln in s.stderr().splitlines()
               if 'unknown setting "max-bodysize"' in ln]
        check(len(bad) == 1 and "Z [error] SIGHUP: " in bad[0] and
              not bad[0].startswith("hotpub:"),
              "the config error line: %r" % bad)
        s.write_ini(**{"max-bodysize": None})
        os.kill(s.pid(), signal.SIGHUP)
        generation_serving(s, 2)
        # the old workers may still be listed (draining): the new ones are
        # the pids that were not there before the reload
        def new_pids():
            n = [w["pid"] for w in procs(s)["workers"] if w["pid"] not in old]
            return n if len(n) == 2 else None
        new = wait_until(new_pids, limit(10))
        check(new, "no two new workers: %s" % procs(s)["workers"])
        for pid in old:
            line = ("worker %d (generation 1): signal 15: finishing "
                    "in-flight requests" % pid)
            check(wait_until(lambda: line in s.stderr(), limit(10)),
                  "no %r in the log:\n%s" % (line, s.stderr_tail()))
        for pid in new:
            for what in ("database: ", "hotpub 0.1.0 serving"):
                check_in("worker %d (generation 2): %s" % (pid, what),
                         s.stderr(), "a new worker's start-up line")


def test_sighup_mismatched_certificate_keeps_serving():
    tmp = tempfile.mkdtemp(prefix="hotpub-reload-")
    cert, key = make_cert(tmp, "a")
    cert2, key2 = make_cert(tmp, "b")
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with Server(files={"hello.c": simple_page("hi")}, workers=2,
                args=["--tls-cert", cert, "--tls-key", key]) as s:
        check(tls_get(s.port, "/hello", ctx)[0] == 200, "not serving")
        shutil.copy(cert2, cert)  # the key stays a's
        os.kill(s.pid(), signal.SIGHUP)
        keeps_answering(lambda: tls_get(s.port, "/hello", ctx)[0], WATCH_S)
        err = s.stderr()
        check_in("do not match", err, "log")
        check_in("reload refused", err, "log")
        shutil.copy(key2, key)
        os.kill(s.pid(), signal.SIGHUP)
        generation_serving(s, 2, tls=True)
        check(tls_get(s.port, "/hello", ctx)[0] == 200, "not serving")
    shutil.rmtree(tmp, ignore_errors=True)


def test_sighup_missing_docroot_keeps_serving():
    with ConfigServer({"workers": 2},
                      files={"hello.c": simple_page("hi")}, workers=None) as s:
        check(plain_get(s)() == 200, "not serving")
        good = s.settings["docroot"]
        s.write_ini(docroot=os.path.join(s.tmp, "missing"))
        os.kill(s.pid(), signal.SIGHUP)
        keeps_answering(plain_get(s), WATCH_S)
        err = s.stderr()
        check_in("missing: No such file or directory", err, "log")
        check_in("reload refused", err, "log")
        s.write_ini(docroot=good)
        os.kill(s.pid(), signal.SIGHUP)
        generation_serving(s, 2)


def test_sighup_generation_that_cannot_start_is_abandoned():
    """A failure only a worker sees (its cache directory cannot be made):
    the reload is given up, the old generation is current again and a
    fixed SIGHUP reloads."""
    with ConfigServer({"workers": 2},
                      files={"hello.c": simple_page("hi")}, workers=None) as s:
        check(plain_get(s)() == 200, "not serving")
        good = s.settings["cache-dir"]
        afile = os.path.join(s.tmp, "afile")
        open(afile, "w").close()
        s.write_ini(**{"cache-dir": os.path.join(afile, "sub")})
        os.kill(s.pid(), signal.SIGHUP)
        keeps_answering(plain_get(s), WATCH_S)
        err = s.stderr()
        check_in("SIGHUP: reload failed: worker", err, "log")
        check_in("generation 1 goes on serving", err, "log")
        check(err.count("reload failed") == 1,
              "the failing generation was retried:\n%s" % s.stderr_tail())
        check(procs(s)["generation"] == 1, "generation is not 1 again")
        s.write_ini(**{"cache-dir": good})
        os.kill(s.pid(), signal.SIGHUP)
        generation_serving(s, 3)
        check(plain_get(s)() == 200, "not serving")


def start_fails(args, want, unwanted=(), status=1, workers=2):
    s = Server(files={"hello.c": simple_page("hi")}, workers=workers,
               args=args, start=False)
    s.port = harness.free_port()
    try:
        r = subprocess.run(s.command(), capture_output=True, timeout=30,
                           cwd=s.tmp, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        fail("the server started: %s" % " ".join(s.command()))
    err = r.stderr.decode("utf-8", "replace")
    check(r.returncode == status, "exit status %s, not %s:\n%s"
          % (r.returncode, status, err))
    for w in want:
        check_in(w, err, "log")
        check(err.count(w) == 1, "%r said more than once:\n%s" % (w, err))
    for u in unwanted:
        check_not_in(u, err, "log")
    shutil.rmtree(s.tmp, ignore_errors=True)


def test_settings_that_cannot_go_together_exit_2():
    """docs/configuration.md "Errors": a certificate without its key (or
    the key alone) and --tls-redirect without a certificate are
    configuration errors, exit status 2 before anything starts (no worker
    forked to fail), for serve and for `hotpub check --config` alike."""
    tmp = tempfile.mkdtemp(prefix="hotpub-combo-")
    cert, key = make_cert(tmp, "a")
    cases = [
        (["--tls-cert", cert], "tls-cert is set but tls-key is not"),
        (["--tls-key", key], "tls-key is set but tls-cert is not"),
        (["--tls-redirect", "127.0.0.1:%d" % harness.free_port()],
         "tls-redirect is set but tls-cert and tls-key are not"),
    ]
    for args, msg in cases:
        for workers in (2, 0):
            start_fails(args, [msg], ["worker", "exited with status"],
                        status=2, workers=workers)
    ini = os.path.join(tmp, "site.ini")
    root = os.path.join(tmp, "root")
    os.makedirs(root)
    with open(os.path.join(root, "hello.c"), "w") as f:
        f.write(simple_page("hi"))
    for body, msg in (("tls-cert = %s\n" % cert, cases[0][1]),
                      ("tls-redirect = :8443\n", cases[2][1])):
        with open(ini, "w") as f:
            f.write("[server]\n" + body)
        r = subprocess.run([harness.hotpub_bin(), "check", "--config", ini,
                            "--cache-dir", os.path.join(tmp, "cache"), root],
                           capture_output=True, timeout=60,
                           stdin=subprocess.DEVNULL)
        err = r.stderr.decode("utf-8", "replace")
        check_eq(r.returncode, 2, "hotpub check's status:\n%s" % err)
        check_in(msg, err, "hotpub check's message")
    shutil.rmtree(tmp, ignore_errors=True)


def test_settings_without_effect_are_said_at_start():
    """A limit nothing applies is said at start-up: worker-memory-limit and
    worker-max-requests with workers = 0, db-pool-size with db = off."""
    with Server(files={"hello.c": simple_page("hi")}, workers=0,
                args=["--worker-memory-limit", "512m",
                      "--worker-max-requests", "100", "--db", "off",
                      "--db-pool-size", "4"]) as s:
        check_eq(s.get("/hello").body, b"hi", "serving")
        err = s.stderr()
        for w in ("worker-memory-limit has no effect with workers = 0",
                  "worker-max-requests has no effect with workers = 0",
                  "db-pool-size has no effect with db = off"):
            check_in(w, err, "start-up log")
    with Server(files={"hello.c": simple_page("hi")}, workers=1,
                args=["--worker-memory-limit", "512m"]) as s:
        check_eq(s.get("/hello").body, b"hi", "serving")
        check_not_in("no effect", s.stderr(), "start-up log with a worker")


def test_start_mismatched_certificate_says_so_once():
    tmp = tempfile.mkdtemp(prefix="hotpub-reload-")
    cert, _ = make_cert(tmp, "a")
    _, key2 = make_cert(tmp, "b")
    start_fails(["--tls-cert", cert, "--tls-key", key2],
                ["the TLS certificate %s and key %s do not match"
                 % (cert, key2)],
                ["File exists", "cannot start libmicrohttpd"])
    shutil.rmtree(tmp, ignore_errors=True)


def test_start_garbage_pem_names_the_file():
    tmp = tempfile.mkdtemp(prefix="hotpub-reload-")
    cert, key = make_cert(tmp, "a")
    with open(cert, "w") as f:
        f.write("-----BEGIN CERTIFICATE-----\nnot base64 at all\n"
                "-----END CERTIFICATE-----\n")
    start_fails(["--tls-cert", cert, "--tls-key", key],
                ["cannot parse the PEM file %s" % cert],
                ["File exists", "cannot start libmicrohttpd"])
    shutil.rmtree(tmp, ignore_errors=True)


def test_start_missing_compiler_names_it():
    start_fails(["--cc", "/nonexistent/cc"],
                ["the compiler /nonexistent/cc (the cc setting, --cc) cannot "
                 "be run: No such file or directory"])
    start_fails(["--cc", "no-such-compiler-hotpub"],
                ["the compiler no-such-compiler-hotpub (the cc setting, "
                 "--cc) cannot be run: No such file or directory "
                 "(looked up in PATH)"])


def test_start_without_the_default_compiler_serves_static_files():
    # No cc in PATH and none named: the server starts (a site of static
    # files and prebuilt .so pages needs none) and says what is missing.
    with Server(files={"hello.c": simple_page("hi"), "a.txt": "plain\n"},
                env={"PATH": "/nonexistent-hotpub"}) as s:
        r = request(s.port, "/a.txt")
        check(r.status == 200, "static file without a compiler: %d"
              % r.status)
        r = request(s.port, "/hello")
        check(r.status >= 500, "a C page without a compiler: %d" % r.status)
        check_in("without a compiler", s.stderr(), "log")


def test_compiler_gone_page_names_it_without_save_advice():
    tmp = tempfile.mkdtemp(prefix="hotpub-reload-")
    cc = os.path.join(tmp, "mycc")
    with open(cc, "w") as f:
        f.write("#!/bin/sh\nexec cc \"$@\"\n")
    os.chmod(cc, os.stat(cc).st_mode | stat.S_IXUSR)
    with Server(files={"hello.c": simple_page("hi")}, dev=True,
                args=["--cc", cc]) as s:
        os.unlink(cc)
        r = request(s.port, "/hello")
        check(r.status == 500, "status %s, not 500" % r.status)
        check_in("cannot run %s: No such file or directory" % cc, r.text)
        check_in("The compiler itself cannot run", r.text)
        check_not_in("Fix it and save", r.text)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(harness.run_suite(globals(), sys.argv[1:],
                               suite_budget=SUITE_BUDGET,
                               test_timeout=TEST_TIMEOUT,
                               verbose_total=False))
