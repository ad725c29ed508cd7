#!/usr/bin/env python3
"""Streaming a large response and receiving a large upload: hotpub vs
nginx (static file) vs PHP-FPM (behind nginx), in the same run.

    bench/stream.sh [--size-mb 100] [--runs 3] [--server-cpu 0]
                    [--client-cpu 1]

Download (--size-mb MiB, 64 KiB pieces):
  hotpub     a page writing 64 KiB pieces with hp_write + hp_flush
             (chunked transfer coding; --workers 0)
  nginx      the same bytes as a static file (sendfile on, 1 worker)
  PHP-FPM    echo of 64 KiB pieces + flush() (output buffering ended,
             nginx 1 worker in front with fastcgi_buffering off, so the
             bytes stream through instead of being spooled to disk)
Upload (--size-mb MiB file, curl -F, multipart/form-data):
  hotpub     a page reading hp_file (the file spooled to --upload-dir)
  PHP-FPM    $_FILES (upload_max_filesize and post_max_size raised;
             nginx in front with client_max_body_size raised, which
             buffers the body to a temp file before PHP sees it)

Each figure is the median of --runs, measured with curl (its own
time_total; output to /dev/null), one request at a time. Peak RSS is the
sum of VmHWM (kB) over the server's processes after the runs minus their
VmRSS before the first (the growth a transfer caused), and the absolute
VmHWM sum. Servers are pinned to --server-cpu, curl to --client-cpu.

Needs root (nginx and php-fpm run as www-data), nginx, php-fpm and curl
(tools/deps.sh --bench). Prints a table and one line
"RESULT stream key=value ..." for bench/run-all.sh.
"""

import argparse
import os
import pwd
import signal
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from benchlib import (WEB_USER, Bench, FpmNginx, Hotpub,  # noqa: E402
                      children_of, describe_env, die, fpm_conf, fpm_server,
                      free_port, hotpub_binary, http_get, log, main_wrapper,
                      nginx_conf, note, proc_status, require, write_files)

STREAM_C = r"""#include <hotpub.h>
#include <stdlib.h>
#include <string.h>

/* GET /stream?n=PIECES: n pieces of 64 KiB, each flushed. */
HP_HANDLER(http_handler)
{
    static char piece[65536];
    const char *a = hp_arg(req, "n");
    long n = a ? atol(a) : 1;
    memset(piece, 'x', sizeof piece);
    hp_set_header(req, "Content-Type", "application/octet-stream");
    for (long i = 0; i < n; i++) {
        hp_write(req, piece, sizeof piece);
        if (hp_flush(req) < 0)
            break;
    }
    return HP_OK;
}
"""

UPLOAD_C = r"""#include <hotpub.h>

/* POST /upload (multipart/form-data, field f): the file's size. */
HP_HANDLER(http_handler)
{
    const struct hp_file *f = hp_file(req, "f");
    hp_printf(req, "%llu\n", f ? (unsigned long long)f->size : 0ULL);
    return HP_OK;
}
"""

STREAM_PHP = r"""<?php
header('Content-Type: application/octet-stream');
while (ob_get_level()) ob_end_flush();
$piece = str_repeat('x', 65536);
$n = intval($_GET['n'] ?? 1);
for ($i = 0; $i < $n; $i++) { echo $piece; flush(); }
"""

UPLOAD_PHP = r"""<?php
echo ($_FILES['f']['size'] ?? -1), "\n";
"""

FPM_PM = "pm = static\npm.max_children = 1"

FPM_EXTRA = """php_admin_value[upload_max_filesize] = {body}M
php_admin_value[post_max_size] = {body}M
php_admin_value[memory_limit] = 512M
php_admin_value[max_execution_time] = 600
php_admin_value[upload_tmp_dir] = {d}/php-uploads
"""


class NginxFpm(FpmNginx):
    """nginx (1 worker; static files and FastCGI) + php-fpm (1 child), or
    nginx alone (with_fpm False); stopped by SIGTERM both."""

    def __init__(self, b, cpu, user, body_mb, with_fpm):
        d = b.path("nginx-fpm" if with_fpm else "nginx")
        os.makedirs(os.path.join(d, "www"))
        os.makedirs(os.path.join(d, "php-uploads"))
        write_files(os.path.join(d, "www"), (
            ("stream.php", STREAM_PHP), ("upload.php", UPLOAD_PHP),
            ("probe.txt", "ok")))
        port = free_port()
        body = body_mb + 16
        server = fpm_server(d, ("fastcgi_buffering off",
                                "fastcgi_read_timeout 600s"))
        super().__init__(
            b, d, port, cpu, user,
            nginx_conf(d, port, server, user=user.pw_name, http=(
                "sendfile on", "client_max_body_size %dm" % body)),
            fpm_conf(d, user.pw_name, FPM_PM,
                     extra=FPM_EXTRA.format(d=d, body=body))
            if with_fpm else None,
            "/stream.php?n=1" if with_fpm else "/probe.txt",
            what="nginx", stop_signal=signal.SIGTERM)

    def tree(self):
        """The masters and their children (nginx's worker, php-fpm's)."""
        out = []
        for pid in self.pids:
            out.append(pid)
            out.extend(children_of(pid))
        return out


def mem_kb(pids, key):
    total = 0
    for pid in pids:
        try:
            v = proc_status(pid, key)
        except OSError:
            continue
        total += int(v.split()[0]) if v else 0
    return total


def curl(b, cpu, argv):
    """curl's time_total and size (download or upload) for one request."""
    out = subprocess.run(
        ["taskset", "-c", str(cpu), "curl", "-sS", "-o", "/dev/null",
         "--max-time", "600", "-w",
         "%{http_code} %{time_total} %{size_download} %{size_upload}"] + argv,
        capture_output=True, text=True, timeout=700)
    parts = out.stdout.split()
    if out.returncode != 0 or len(parts) != 4 or parts[0] != "200":
        die("curl %s: rc %d %r %s" % (" ".join(argv), out.returncode,
                                      out.stdout, out.stderr[-500:]))
    return float(parts[1]), float(parts[2]), float(parts[3])


def measure(b, name, pids_fn, cpu, argv, runs, nbytes):
    """Median seconds and MB/s of runs, peak RSS growth and peak (kB)."""
    before = mem_kb(pids_fn(), "VmRSS")
    times = []
    for _ in range(runs):
        t, down, up = curl(b, cpu, argv)
        if max(down, up) < nbytes:
            die("%s: %d bytes moved, want %d" % (name, max(down, up), nbytes))
        times.append(t)
    hwm = mem_kb(pids_fn(), "VmHWM")
    med = statistics.median(times)
    return {"s": med, "mbps": nbytes / med / 1e6, "grow": hwm - before,
            "hwm": hwm}


def row(what, r):
    log("  %-34s %8.3f s %9.1f MB/s  peak RSS +%7d kB (%d kB)"
        % (what, r["s"], r["mbps"], r["grow"], r["hwm"]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size-mb", type=int, default=100)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--server-cpu", type=int, default=0)
    ap.add_argument("--client-cpu", type=int, default=1)
    args = ap.parse_args()
    require(("nginx", "curl", "taskset"))
    if os.geteuid() != 0:
        die("needs root (nginx and php-fpm drop to %s)" % WEB_USER)
    try:
        user = pwd.getpwnam(WEB_USER)
    except KeyError:
        die("no user %s" % WEB_USER)

    b = Bench("stream")
    os.chmod(b.tmp, 0o711)
    binary, src, digest = hotpub_binary(b)
    size = args.size_mb * 1024 * 1024
    pieces = size // 65536
    log("== stream: %d MiB downloaded and uploaded, %d runs each, curl on "
        "cpu %d, servers on cpu %d" % (args.size_mb, args.runs,
                                      args.client_cpu, args.server_cpu))
    describe_env(b, src, digest)

    root = b.path("root")
    os.makedirs(root)
    write_files(root, (("stream.c", STREAM_C), ("upload.c", UPLOAD_C)))
    updir = b.path("uploads")
    os.makedirs(updir)
    upfile = b.path("upload.bin")
    with open(upfile, "wb") as f:
        block = os.urandom(1 << 20)
        for _ in range(args.size_mb):
            f.write(block)

    res = {}
    hp = Hotpub(b, binary, root, b.path("cache"), cpu=args.server_cpu,
                extra=["--workers", "0", "--max-body",
                       "%dm" % (args.size_mb + 16), "--upload-dir", updir])
    http_get(hp.port, "/stream?n=1", timeout=60)  # compile
    http_get(hp.port, "/upload", timeout=60)
    res["hotpub_down"] = measure(
        b, "hotpub", lambda: [hp.pid], args.client_cpu,
        ["http://%s/stream?n=%d" % (hp.base, pieces)], args.runs, size)
    res["hotpub_up"] = measure(
        b, "hotpub upload", lambda: [hp.pid], args.client_cpu,
        ["-F", "f=@%s" % upfile, "http://%s/upload" % hp.base], args.runs,
        size)
    hp.stop()

    ng = NginxFpm(b, args.server_cpu, user, args.size_mb, with_fpm=False)
    with open(ng.www("big.bin"), "wb") as f:
        f.write(b"x" * size)
    os.chown(ng.www("big.bin"), user.pw_uid, user.pw_gid)
    res["nginx_down"] = measure(
        b, "nginx", ng.tree, args.client_cpu,
        ["http://127.0.0.1:%d/big.bin" % ng.port], args.runs, size)
    ng.stop()

    php = NginxFpm(b, args.server_cpu, user, args.size_mb, with_fpm=True)
    res["php_down"] = measure(
        b, "php", php.tree, args.client_cpu,
        ["http://127.0.0.1:%d/stream.php?n=%d" % (php.port, pieces)],
        args.runs, size)
    res["php_up"] = measure(
        b, "php upload", php.tree, args.client_cpu,
        ["-F", "f=@%s" % upfile, "http://127.0.0.1:%d/upload.php" % php.port],
        args.runs, size)
    php.stop()

    log("")
    log("download, %d MiB (median of %d):" % (args.size_mb, args.runs))
    row("hotpub hp_flush, 64 KiB pieces", res["hotpub_down"])
    row("nginx static file (sendfile)", res["nginx_down"])
    row("PHP-FPM flush(), 64 KiB pieces", res["php_down"])
    log("upload, %d MiB multipart (median of %d):" % (args.size_mb, args.runs))
    row("hotpub hp_file (spooled)", res["hotpub_up"])
    row("PHP-FPM $_FILES (nginx buffers)", res["php_up"])
    note("peak RSS: sum over the server's processes (hotpub: one; nginx: "
         "master + worker; PHP-FPM: nginx's + php-fpm master + child)")
    kv = []
    for k, r in sorted(res.items()):
        kv += ["%s_s=%.3f" % (k, r["s"]), "%s_mbps=%.1f" % (k, r["mbps"]),
               "%s_rss_grow_kb=%d" % (k, r["grow"])]
    log("RESULT stream size_mb=%d %s" % (args.size_mb, " ".join(kv)))


if __name__ == "__main__":
    main_wrapper(main)
