#!/usr/bin/env python3
"""reload_memory: what N reloads of one page leave behind.

One page is rewritten (write temp + rename, a new value each time) COUNT
times (default 10000); after each rewrite the script polls the page on a
keep-alive connection until it returns the new value (a request that finds
the page stale reloads it). After a warm-up of 50 reloads it records VmRSS,
open fds and threads; every COUNT/10 reloads and at the end it prints:
  * VmRSS growth since the warm-up,
  * distinct objects of the page mapped in /proc/PID/maps (must be 1:
    every old version unmapped), counting "(deleted)" ones,
  * retired versions in /_hotpub/status.json (must be 0 once idle),
  * the size of the compile cache dir (obj/ + run-PID/).

Compiles use --cflags -O0 (default). --cc tcc: plain tcc is tried first
(hotpub passes -fPIC -shared -fvisibility=hidden -I.. -iquote DIR -MD -MF
.. -o ..); if it fails, the reason is printed and a wrapper that rewrites
-iquote to -I is used instead.

Targets (PASS/MISS): mapped objects == 1, retired == 0, RSS growth after
warm-up < --rss-limit MiB (default 2), no failed request.
"""
import argparse
import os
import stat as stmod
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import (Bench, Hotpub, KAClient, describe_env, die,  # noqa: E402
                      dir_size, have, hotpub_binary, log, main_wrapper,
                      median, note, passmiss, proc_status, vmrss_kib)

PAGE = r"""#include <hotpub.h>

/* rewritten by bench/reload_memory.py: version %(n)d */
static char big[4096] = "v%(n)d";   /* some data so each version has pages */

HP_HANDLER(http_handler)
{
    hp_printf(req, "count=%%d %%c", %(n)d, big[0]);
    return HP_OK;
}
"""

TCC_WRAPPER = r"""#!/bin/sh
# hotpub passes -iquote DIR, which tcc 0.9.27 rejects: rewrite it to -I DIR.
for a in "$@"; do
    shift
    if [ "$a" = "-iquote" ]; then set -- "$@" "-I"; else set -- "$@" "$a"; fi
done
exec tcc "$@"
"""


def body_of(n):
    return "count=%d v" % n


def write_page(path, n):
    tmp = os.path.join(os.path.dirname(path), ".%s.tmp" % os.path.basename(path))
    with open(tmp, "w") as f:
        f.write(PAGE % {"n": n})
    os.rename(tmp, path)


def page_objects(pid, cache_dir):
    """Distinct files under cache_dir mapped by pid, and mapping lines."""
    objs, lines = set(), 0
    with open("/proc/%d/maps" % pid) as f:
        for line in f:
            p = line.split(None, 5)
            if len(p) == 6 and p[5].startswith(cache_dir):
                objs.add(p[5].strip())
                lines += 1
    return objs, lines


def nfds(pid):
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return -1


class Reloader:
    def __init__(self, hp, page, fails):
        self.hp = hp
        self.page = page
        self.c = KAClient(hp.port, timeout=60)
        self.fails = fails
        self.times = []

    def reload(self, n, timeout=60.0):
        write_page(self.page, n)
        t0 = time.perf_counter()
        want, old = body_of(n), body_of(n - 1)
        while time.perf_counter() - t0 < timeout:
            st, body = self.c.get("/counter")
            if st == 200 and body == want:
                self.times.append(time.perf_counter() - t0)
                return True
            if st != 200 or body != old:
                self.fails.append("reload %d: %s %r" % (n, st, body[:200]))
                if len(self.fails) > 50:
                    die("too many failures; last: %s\n%s" %
                        (self.fails[-1], self.hp.log_tail()))
            time.sleep(0.0005)
        self.fails.append("reload %d: new value not seen in %.0f s" % (n, timeout))
        return False


def snapshot(hp, cache_dir, label, base=None):
    pid = hp.pid
    rss = vmrss_kib(pid)
    objs, nmaps = page_objects(pid, cache_dir)
    st = hp.status()
    mods = [m for m in st["modules"] if m["path"].endswith("/counter.c")]
    retired = len(mods[0]["retired"]) if mods else -1
    size, files = dir_size(cache_dir)
    snap = {"rss": rss, "objs": len(objs), "deleted": sum(1 for o in objs if o.endswith("(deleted)")),
            "maps": nmaps, "retired": retired, "cache_bytes": size,
            "cache_files": files, "fds": nfds(pid),
            "threads": int(proc_status(pid, "Threads") or -1),
            "compiles": st["server"]["compiles"]}
    if len(objs) > 1:
        cur = mods[0]["current"]["object"] if mods and mods[0]["current"] else None
        time.sleep(0.1)
        again, _ = page_objects(pid, cache_dir)
        log("# %s: %d objects mapped: %s; current is %s; 100 ms later: %d"
            % (label, len(objs), " ".join(sorted(os.path.basename(o) for o in objs)),
               cur and os.path.basename(cur), len(again)))
    log("%-10s rss %7d KiB%s  page objects mapped %d (%d deleted, %d maps)  "
        "retired %d  cache %.1f MiB/%d files  fds %d  threads %d" %
        (label, rss, "" if base is None else " (%+d)" % (rss - base["rss"]),
         snap["objs"], snap["deleted"], nmaps, retired, size / 2**20, files,
         snap["fds"], snap["threads"]))
    return snap


def probe_tcc(b, binary):
    """Start hotpub with --cc tcc and report what happens to one page."""
    root = b.path("probe-root")
    os.makedirs(root)
    write_page(os.path.join(root, "counter.c"), 0)
    hp = Hotpub(b, binary, root, b.path("probe-cache"), name="probe",
                extra=["--cc", "tcc", "--cflags", "-O0"])
    c = KAClient(hp.port, timeout=60)
    st, body = c.get("/counter")
    c.close()
    err = None
    if st != 200:
        mods = hp.status()["modules"]
        err = (mods[0]["error"] if mods else None) or hp.log_tail(5)
    hp.stop()
    return st == 200 and body == body_of(0), err


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("count", nargs="?", type=int, default=10000)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--cc", default=None, help="page compiler (e.g. tcc)")
    ap.add_argument("--cflags", default="-O0")
    ap.add_argument("--rss-limit", type=float, default=2.0, help="MiB")
    ap.add_argument("--max-seconds", type=float, default=3000,
                    help="stop early (and say so) after this long")
    args = ap.parse_args()

    b = Bench("reload-memory")
    binary, src, digest = hotpub_binary(b)
    log("== reload_memory: %d reloads of one page after %d warm-up reloads, "
        "cc=%s cflags=%r" % (args.count, args.warmup, args.cc or "cc (default)",
                             args.cflags))
    describe_env(b, src, digest)

    cc = args.cc
    if cc == "tcc":
        if not have("tcc"):
            die("tcc is not installed (apt-get install -y tcc)")
        ok, err = probe_tcc(b, binary)
        if ok:
            note("plain `--cc tcc` works")
        else:
            first = (err or "").strip().splitlines()
            note("plain `--cc tcc` does NOT work: %s" %
                 (first[0] if first else "?"))
            cc = b.path("bin", "tcc-iquote")
            with open(cc, "w") as f:
                f.write(TCC_WRAPPER)
            os.chmod(cc, os.stat(cc).st_mode | stmod.S_IXUSR)
            note("using wrapper %s (-iquote DIR -> -I DIR)" % cc)

    docroot = b.path("root")
    os.makedirs(docroot)
    page = os.path.join(docroot, "counter.c")
    write_page(page, 0)
    cache_dir = b.path("cache")
    # One process: RSS and mappings are read from the process that loads
    # the page (with worker processes that would be a child).
    extra = ["--workers", "0", "--cflags", args.cflags]
    if cc:
        extra += ["--cc", cc]
    hp = Hotpub(b, binary, docroot, cache_dir, extra=extra)
    fails = []
    r = Reloader(hp, page, fails)
    st, body = r.c.get("/counter")
    if st != 200 or body != body_of(0):
        die("/counter answered %s %r\n%s" % (st, body[:400], hp.log_tail()))

    t_start = time.time()
    n = 0
    for _ in range(args.warmup):
        n += 1
        r.reload(n)
    time.sleep(0.2)
    base = snapshot(hp, cache_dir, "warm-up")
    r.times.clear()
    step = max(1, args.count // 10)
    done = 0
    partial = False
    t0 = time.time()
    while done < args.count:
        if time.time() - t_start > args.max_seconds:
            partial = True
            break
        n += 1
        done += 1
        r.reload(n)
        if hp.proc.poll() is not None:
            die("hotpub died after %d reloads:\n%s" % (done, hp.log_tail()))
        if done % step == 0 and done < args.count:
            snapshot(hp, cache_dir, "%d" % done, base)
    elapsed = time.time() - t0
    time.sleep(1.0)  # let the watcher's settle window pass; idle
    end = snapshot(hp, cache_dir, "end %d" % done, base)

    growth_kib = end["rss"] - base["rss"]
    per_reload = growth_kib * 1024.0 / max(1, done)
    cache_per = (end["cache_bytes"] - base["cache_bytes"]) / max(1, done)
    log("reloads: %d in %.1f s (%.1f ms each, median %.1f ms), compiles %d%s" %
        (done, elapsed, elapsed * 1e3 / max(1, done), median(r.times) * 1e3,
         end["compiles"] - base["compiles"],
         "  PARTIAL: stopped by --max-seconds" if partial else ""))
    log("RSS growth after warm-up: %+d KiB (%+.0f bytes/reload)   target < %.0f MiB %s"
        % (growth_kib, per_reload, args.rss_limit,
           passmiss(growth_kib < args.rss_limit * 1024)))
    log("objects of the page mapped: %d (%d deleted)   target 1 %s" %
        (end["objs"], end["deleted"], passmiss(end["objs"] == 1)))
    log("retired versions: %d   target 0 %s" %
        (end["retired"], passmiss(end["retired"] == 0)))
    log("compile cache dir: %.1f MiB in %d files (%+.0f bytes/reload; "
        "grows without bound if > 0)" % (end["cache_bytes"] / 2**20,
                                         end["cache_files"], cache_per))
    log("fds %d -> %d, threads %d -> %d" % (base["fds"], end["fds"],
                                             base["threads"], end["threads"]))
    log("failed requests/reloads: %d %s" % (len(fails), passmiss(not fails)))
    for f in fails[:10]:
        note(f)
    log("RESULT reload_memory reloads=%d rss_growth_kib=%d rss=%s "
        "mapped_objects=%d mapped=%s retired=%d retired_ok=%s cache_mib=%.1f "
        "cache_bytes_per_reload=%.0f fails=%d%s" %
        (done, growth_kib, passmiss(growth_kib < args.rss_limit * 1024),
         end["objs"], passmiss(end["objs"] == 1), end["retired"],
         passmiss(end["retired"] == 0), end["cache_bytes"] / 2**20, cache_per,
         len(fails), " partial=1" if partial else ""))
    r.c.close()
    hp.stop()
    if done == 0:
        die("no reload was measured")
    return 0


if __name__ == "__main__":
    main_wrapper(main)
