#!/usr/bin/env python3
"""hotpub's TechEmpower pages (bench/tfb/) against TFB's rules, end to end.

    HOTPUB_BIN=/abs/path/hotpub HOTPUB_PG_URL=postgresql://... \\
        python3 tests/e2e/tfb.py [NAME-SUBSTRING...]

Each test fills a fresh PostgreSQL schema with bench/tfb/setup.sh (through
the URL's search_path, as tests/e2e/db.py isolates its tests), serves a
copy of bench/tfb/'s pages with `--db` on it, and runs bench/tfb/verify.py
against the server. Without HOTPUB_PG_URL (or without psql) every test
prints "skip NAME[pg]: ..." and counts neither way; .ci/run sets it.
"""

import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import Server, Skip, check, check_eq, fail  # noqa: E402

TEST_TIMEOUT = 180.0
SUITE_BUDGET = 400.0
PG_URL = os.environ.get("HOTPUB_PG_URL", "").strip()
ROOT = os.path.dirname(os.path.dirname(harness.HERE))
TFB = os.path.join(ROOT, "bench", "tfb")


def pages():
    """bench/tfb/'s pages, templates and _lib/, as Server(files=...)."""
    files = {}
    for dirpath, dirs, names in os.walk(TFB):
        dirs[:] = [d for d in dirs if d not in ("_php", "__pycache__")]
        for n in names:
            if n.endswith((".c", ".h", ".tpl")):
                p = os.path.join(dirpath, n)
                with open(p, encoding="utf-8") as f:
                    files[os.path.relpath(p, TFB)] = f.read()
    return files


class Schema:
    """A fresh schema on HOTPUB_PG_URL; url reaches it by search_path."""

    _n = 0

    def __init__(self):
        if not shutil.which("psql"):
            raise Skip("psql is not installed")
        Schema._n += 1
        self.name = "tfb_%d_%d" % (os.getpid(), Schema._n)
        sep = "&" if "?" in PG_URL else "?"
        self.url = "%s%soptions=-csearch_path%%3D%s" % (PG_URL, sep,
                                                        self.name)
        self.psql(PG_URL, "CREATE SCHEMA %s" % self.name)

    @staticmethod
    def psql(url, sql):
        p = subprocess.run(["psql", "-X", "-q", "-A", "-t", "-v",
                            "ON_ERROR_STOP=1", "-d", url, "-c", sql],
                           capture_output=True, text=True, timeout=60)
        if p.returncode != 0:
            fail("psql %r: %s" % (sql, p.stderr.strip()))
        return p.stdout.strip()

    def query(self, sql):
        return self.psql(self.url, sql)

    def setup(self):
        p = subprocess.run(["sh", os.path.join(TFB, "setup.sh"), self.url],
                           capture_output=True, text=True, timeout=120)
        if p.returncode != 0:
            fail("setup.sh failed: %s" % p.stderr.strip())
        return p

    def drop(self):
        self.psql(PG_URL, "DROP SCHEMA IF EXISTS %s CASCADE" % self.name)


def verify(s, db, only=None):
    argv = [sys.executable, os.path.join(TFB, "verify.py"), "--url",
            "http://127.0.0.1:%d" % s.port, "--db", db.url]
    if only:
        argv += ["--only", only]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=150)
    return p.returncode, p.stdout + p.stderr


def serve(db, files):
    s = Server(files=files, start=False)
    # Production mode, as TFB runs: dev mode adds the live-reload script
    # to HTML, which the fortunes check rightly refuses.
    s.args += ["--db", db.url, "--no-dev"]
    return s.start()


def test_setup_idempotent(db):
    db.setup()
    check_eq(db.query("SELECT count(*), min(id), max(id), "
                      "min(randomnumber) >= 1 AND max(randomnumber) <= 10000"
                      " FROM world"), "10000|1|10000|t", "world")
    # A second run keeps World's numbers (the updates' work), puts Fortune
    # back as TFB has it, and drops rows that are not TFB's.
    db.query("UPDATE world SET randomnumber = 4242 WHERE id = 7")
    db.query("UPDATE fortune SET message = 'changed' WHERE id = 3")
    db.query("INSERT INTO fortune VALUES (13, 'extra')")
    db.setup()
    check_eq(db.query("SELECT randomnumber FROM world WHERE id = 7"), "4242",
             "world row 7 after a second setup")
    check_eq(db.query("SELECT count(*) FROM fortune"), "12", "fortune rows")
    check_eq(db.query("SELECT message FROM fortune WHERE id = 3"),
             "After enough decimal places, nobody gives a damn.", "fortune 3")
    check_eq(db.query("SELECT message FROM fortune WHERE id = 12"),
             "\u30d5\u30ec\u30fc\u30e0\u30ef\u30fc\u30af\u306e\u30d9\u30f3"
             "\u30c1\u30de\u30fc\u30af", "fortune 12 (UTF-8)")
    db.drop()


def test_pages_pass_verify(db):
    db.setup()
    with serve(db, pages()) as s:
        rc, out = verify(s, db)
        check(rc == 0, "verify.py failed: %s" % out.replace("\n", " | "))
        for t in ("json", "plaintext", "db", "queries", "updates",
                  "fortunes", "date-changes"):
            check("ok   %s" % t in out, "no 'ok %s' in %r" % (t, out))
    db.drop()


def test_verify_catches_broken_pages(db):
    """verify.py must be able to fail: pages that break one rule each."""
    db.setup()
    files = pages()

    def edit(name, old, new):
        check(old in files[name], "%s no longer holds %r" % (name, old))
        files[name] = files[name].replace(old, new)

    edit("fortunes.tpl", "{{message}}", "{{{message}}}")  # not escaped
    edit("_lib/tfb.h", "TFB_MAX_QUERIES 500", "TFB_MAX_QUERIES 600")
    edit("plaintext.c", 'tfb_fields(req, "text/plain")',
         'hp_set_header(req, "Content-Type", "text/plain")')  # no Server
    edit("updates.c", "SET randomnumber = l.number",
         "SET randomnumber = world.randomnumber")  # nothing changes
    with serve(db, files) as s:
        rc, out = verify(s, db)
        check_eq(rc, 1, "verify.py's exit status (output %r)" % out)
        for t in ("plaintext", "queries", "updates", "fortunes"):
            check("FAIL %s:" % t in out, "no 'FAIL %s' in %r" % (t, out))
        check("FAIL plaintext: no Server field" in out, out)
        check("FAIL fortunes: a <script> element" in out, out)
        check("'501': 501 objects, expected 500" in out, out)
        for t in ("json", "db"):
            check("ok   %s" % t in out, "no 'ok %s' in %r" % (t, out))
    db.drop()


PARAMS = [harness.Param("pg", Schema,
                        skip=None if PG_URL else "no HOTPUB_PG_URL")]

if __name__ == "__main__":
    sys.exit(harness.run_suite(globals(), sys.argv[1:],
                               suite_budget=SUITE_BUDGET,
                               test_timeout=TEST_TIMEOUT, params=PARAMS,
                               list_full_names=False, verbose_total=False))
