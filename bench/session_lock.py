#!/usr/bin/env python3
"""session_lock: what one request of a session at a time costs
(docs/pages.md, "One request of a session at a time").

    python3 bench/session_lock.py [--conns N] [--duration 10s] BIN [BIN...]

For each hotpub binary (e.g. one built before the session lock and one
after), one server (--workers 0, SQLite in its temporary directory, or
--db URL), and wrk -t1 -cN (keep-alive) on three pages of one session
cookie: /s/plain (never touches the session: must not change), /s/get
(reads it: serialised per session now) and /s/incr (read, +1, write).
Prints req/s, the median latency and non-2xx counts per page. With
--conns 1 nobody waits: the difference is the lock's own cost; with more,
the same session's requests take turns (the point of the lock). Needs wrk.
Uses tests/e2e/harness.py to start the servers.
"""
import argparse
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "e2e"))
import harness  # noqa: E402

PAGE = harness.page(r'''
#include <stdio.h>
#include <stdlib.h>

HP_HANDLER(set)
{
    return hp_session_set(req, "n", "1") == HP_OK ? HP_OK : 500;
}

HP_HANDLER(get)
{
    const char *v = hp_session_get(req, "n");
    hp_puts(req, v ? v : "-");
    return HP_OK;
}

HP_HANDLER(incr)
{
    const char *v = hp_session_get(req, "n");
    char buf[32];
    snprintf(buf, sizeof buf, "%ld", (v ? atol(v) : 0) + 1);
    return hp_session_set(req, "n", buf) == HP_OK ? HP_OK : 500;
}

HP_HANDLER(plain)
{
    hp_puts(req, "plain");
    return HP_OK;
}
''')


def wrk(port, path, cookie, conns, duration):
    cmd = ["wrk", "-t1", "-c%d" % conns, "-d" + duration, "--latency",
           "-H", "Cookie: hotpub_session=" + cookie,
           "http://127.0.0.1:%d%s" % (port, path)]
    out = subprocess.run(cmd, capture_output=True, text=True,
                         check=True).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)
    p50 = re.search(r"\n\s+50%\s+(\S+)", out).group(1)
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return rps, p50, bad.group(1) if bad else "0"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--conns", type=int, default=4)
    ap.add_argument("--duration", default="10s")
    ap.add_argument("--db", help="a database URL (default: SQLite)")
    ap.add_argument("bins", nargs="+")
    a = ap.parse_args()
    for b in a.bins:
        os.environ["HOTPUB_BIN"] = os.path.abspath(b)
        s = harness.Server(files={"s.c": PAGE}, start=False, workers=0)
        s.args += ["--db", a.db or "sqlite:%s/app.db" % s.tmp,
                   "--access-log", "off"]
        s.start()
        try:
            r = s.get("/s/set")
            cookie = [v for v in r.all("Set-Cookie")
                      if v.startswith("hotpub_session=")][0]
            cookie = cookie.split(";", 1)[0].split("=", 1)[1]
            for path in ("/s/plain", "/s/get", "/s/incr"):
                wrk(s.port, path, cookie, a.conns, "1s")  # warm-up
                rps, p50, bad = wrk(s.port, path, cookie, a.conns, a.duration)
                print("%-40s %-8s c=%d %10s req/s  p50 %-9s non-2xx %s"
                      % (b, path, a.conns, rps, p50, bad), flush=True)
        finally:
            s.stop()


if __name__ == "__main__":
    main()
