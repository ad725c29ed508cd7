#!/usr/bin/env python3
"""edit_refresh: the edit-refresh loop of a developer (issue 14), with no
background load: how long from an editor's save (write a temp file, rename
it over the page) to the first response showing the edit, for

  hotpub fast     --dev: the fast tier (tcc + ld), settle-ms auto (5 ms)
  hotpub opt      --dev --no-fast-tier: gcc -O2 only, settle-ms auto (60 ms)
  mod_python      Debian's apache2 + mod_python.publisher (a stat per
                  request reloads a changed module)
  php-fpm         nginx + Debian's php-fpm, opcache.validate_timestamps=1 and
                  opcache.revalidate_freq=0 (a stat per request)

each with a small page (20 lines) and a large one (1,000 lines of code the
page runs). Polled on one keep-alive connection every --interval-ms.
Printed per server and size: median and p99 over --edits edits, then one
RESULT line each. --browser also runs the headless-Chromium test's
edit -> repaint over 20 edits (tests/e2e/devloop.py).

    bench/reload_latency.sh --tiers [--edits 20] [--interval-ms 1]
        [--settle-ms auto|5,10,20] [--gcc-fallback] [--no-opt] [--no-peers]

--settle-ms runs the fast tier once per value (the window's cost in the
loop: the compile starts on the first event, the publish waits for the
window); --gcc-fallback adds the fast tier without tcc (--fast-cc off).

Needs root for the peers (apache2, php-fpm drop to www-data); the peers
are skipped when not installed (tools/deps.sh --bench).
"""
import argparse
import os
import pwd
import shutil
import subprocess
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402
from benchlib import (REPO, Bench, Hotpub, KAClient, describe_env,  # noqa
                      hotpub_binary, log, main_wrapper, median, note,
                      p99)
import db  # noqa: E402 - its peers' configurations and process helpers

WEB_USER = "www-data"


def c_page(n, lines):
    body = "".join("    acc = acc * 31 + %d; /* filler %d */\n" % (i, i)
                   for i in range(max(0, lines - 12)))
    return ("#include <hotpub.h>\n/* bench/edit_refresh.py */\n"
            "HP_HANDLER(http_handler)\n{\n    unsigned acc = 0;\n%s"
            "    hp_printf(req, \"count=%%d %%u\", %d, acc & 1);\n"
            "    return HP_OK;\n}\n" % (body, n))


def py_page(n, lines):
    body = "".join("    acc = (acc * 31 + %d) & 0xffffffff  # filler\n" % i
                   for i in range(max(0, lines - 6)))
    return ("from mod_python import apache\n\n\ndef index(req):\n"
            "    acc = 0\n%s    return 'count=%d %%d' %% (acc & 1)\n"
            % (body, n))


def php_page(n, lines):
    body = "".join("$acc = ($acc * 31 + %d) & 0xffffffff; // filler\n" % i
                   for i in range(max(0, lines - 4)))
    return "<?php\n$acc = 0;\n%secho 'count=%d ' . ($acc & 1);\n" % (body, n)


def save(path, text, owner=None):
    tmp = os.path.join(os.path.dirname(path), "." + os.path.basename(path)
                       + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
    if owner:
        os.chown(tmp, owner.pw_uid, owner.pw_gid)
    os.rename(tmp, path)
    return time.perf_counter()


def measure(name, port, url, path, make, edits, interval, owner=None):
    c = KAClient(port, timeout=30)
    save(path, make(0), owner)
    deadline = time.time() + 30
    while time.time() < deadline:
        st, body = c.get(url)
        if st == 200 and body.startswith("count=0 "):
            break
        time.sleep(0.05)
    else:
        log("%s: the page never answered (%s %r)" % (name, st, body[:200]))
        return None
    lat = []
    for i in range(1, edits + 1):
        time.sleep(0.3)  # an editor's pace; lets a background build finish
        t0 = save(path, make(i), owner)
        want = "count=%d " % i
        while time.perf_counter() - t0 < 10:
            st, body = c.get(url)
            if st == 200 and body.startswith(want):
                lat.append(time.perf_counter() - t0)
                break
            time.sleep(interval)
    c.close()
    if not lat:
        return None
    log("%-22s median %6.1f ms  p99 %6.1f ms  (%d/%d edits)"
        % (name, median(lat) * 1e3, p99(lat) * 1e3, len(lat), edits))
    log("RESULT edit_refresh server=%s median_ms=%.1f p99_ms=%.1f seen=%d/%d"
        % (name.replace(" ", "_"), median(lat) * 1e3, p99(lat) * 1e3,
           len(lat), edits))
    return lat


def run_hotpub(b, binary, args, label, extra):
    for lines in (20, 1000):
        tag = label.replace(" ", "-")
        root = b.path("root-%s-%d" % (tag, lines))
        os.makedirs(root)
        page = os.path.join(root, "p.c")
        with open(page, "w") as f:
            f.write(c_page(0, lines))
        hp = Hotpub(b, binary, root, b.path("cache-%s-%d" % (tag, lines)),
                    extra=extra + ["--dev"], name="hotpub-%s-%d" % (tag, lines))
        measure("hotpub %s %d" % (label, lines), hp.port, "/p", page,
                lambda n, ln=lines: c_page(n, ln), args.edits,
                args.interval_ms / 1000.0)
        hp.stop()


def measure_peer(srv, label, ext, make, args, user):
    """The 20- and 1000-line pages p20.EXT and p1000.EXT in srv's www/."""
    for lines in (20, 1000):
        page = os.path.join(srv.d, "www", "p%d.%s" % (lines, ext))
        measure("%s %d" % (label, lines), srv.port, "/p%d.%s" % (lines, ext),
                page, lambda n, ln=lines: make(n, ln), args.edits,
                args.interval_ms / 1000.0, user)
    srv.stop()


def run_modpython(b, args, user):
    try:
        srv = db.ModPython(b, None, False, user, "delete")
        measure_peer(srv, "mod_python", "py", py_page, args, user)
    except (SystemExit, benchlib.CannotMeasure):
        log("mod_python: not run (apache2 / libapache2-mod-python missing)")


def run_php(b, args, user):
    # the peer's probe page without PDO (db.py's needs php8.2-sqlite3)
    info = ("<?php echo 'opcache ', (int)ini_get('opcache.enable'), "
            "' revalidate_freq ', ini_get('opcache.revalidate_freq');")
    extra = ("php_admin_value[opcache.enable] = 1\n"
             "php_admin_value[opcache.validate_timestamps] = 1\n"
             "php_admin_value[opcache.revalidate_freq] = 0\n")
    try:
        srv = db.PhpFpm(b, None, 2, False, user, "delete", fpm_extra=extra,
                        info_page=info)
        measure_peer(srv, "php-fpm", "php", php_page, args, user)
    except (SystemExit, benchlib.CannotMeasure):
        log("php-fpm: not run (php8.2-fpm / nginx missing)")


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiers", action="store_true", help="(the selector)")
    ap.add_argument("--edits", type=int, default=20)
    ap.add_argument("--interval-ms", type=float, default=1.0)
    ap.add_argument("--no-peers", action="store_true")
    ap.add_argument("--browser", action="store_true")
    ap.add_argument("--settle-ms", default="auto",
                    help="the fast tier's --settle-ms, or several, comma "
                    "separated (5,10,20): a run of each")
    ap.add_argument("--gcc-fallback", action="store_true",
                    help="also the fast tier without tcc (--fast-cc off)")
    ap.add_argument("--no-opt", action="store_true",
                    help="skip the optimized-only server")
    args = ap.parse_args()
    b = Bench("edit-refresh")
    os.chmod(b.tmp, 0o711)
    binary, src, digest = hotpub_binary(b)
    describe_env(b, src, digest)
    log("== edit_refresh: %d edits per server and page size, no load, "
        "poll every %.1f ms" % (args.edits, args.interval_ms))
    if not shutil.which("tcc"):
        log("tcc is not installed: the fast tier runs gcc -O0")
    for ms in args.settle_ms.split(","):
        settle = ["--settle-ms", ms]
        label = "" if ms == "auto" else " settle %s" % ms
        run_hotpub(b, binary, args, "fast" + label, ["--fast-tier"] + settle)
        if args.gcc_fallback:
            run_hotpub(b, binary, args, "gcc -O0" + label,
                       ["--fast-tier", "--fast-cc", "off"] + settle)
    if not args.no_opt:
        run_hotpub(b, binary, args, "opt", ["--no-fast-tier"])
    if not args.no_peers and os.geteuid() == 0:
        user = pwd.getpwnam(WEB_USER)
        # the master database the peers' directories copy (unused here)
        db.make_db(b.path("master.db"))
        run_modpython(b, args, user)
        run_php(b, args, user)
    elif not args.no_peers:
        log("peers skipped: they need root")
    if args.browser:
        env = dict(os.environ, HOTPUB_BIN=binary, HOTPUB_BROWSER_EDITS="20")
        subprocess.run([sys.executable, os.path.join(REPO, "tests", "e2e",
                                                     "devloop.py"), "browser"],
                       env=env, timeout=300)
    note("figures: on a quiet machine, bench/reload_latency.sh --tiers "
         "--browser")
    return 0


if __name__ == "__main__":
    main_wrapper(main)
