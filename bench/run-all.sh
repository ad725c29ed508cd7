#!/usr/bin/env bash
# Run every hotpub benchmark and print a summary table.
#
#   bench/run-all.sh            full method (hello 3x10s, 10k syscalls,
#                               20 edits, 10k reloads)
#   bench/run-all.sh --quick    a smoke run (hello 1x3s, 2k requests,
#                               5 edits, 200 reloads)
#
# Environment: HOTPUB=path (skip `make`, measure that binary),
# RELOADS=N (reload_memory count), RELOAD_CC=cc|tcc (default: tcc when
# installed, since 10k gcc compiles take ~25 min on 2 cores).
# Exit status: 0 if every benchmark measured (targets may be MISSed),
# 1 if any could not measure.
set -u
BENCH=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$BENCH")
QUICK=0
[ "${1:-}" = "--quick" ] && QUICK=1

TMP=$(mktemp -d -t hotpub-run-all-XXXXXX)
CHILD=
cleanup() {
    # only the benchmark we started (it cleans up its own processes)
    if [ -n "$CHILD" ] && kill -0 "$CHILD" 2>/dev/null; then
        kill -TERM "$CHILD" 2>/dev/null
        wait "$CHILD" 2>/dev/null
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -z "${HOTPUB:-}" ]; then
    echo "== make -C $REPO"
    if ! make -s -C "$REPO" >"$TMP/make.log" 2>&1; then
        tail -20 "$TMP/make.log"
        if [ -x "$REPO/hotpub" ]; then
            echo "# make failed (tree being edited?); measuring the existing $REPO/hotpub"
        else
            echo "ERROR: make failed and there is no hotpub binary"
            exit 1
        fi
    fi
fi

# One binary for every benchmark, even if someone rebuilds meanwhile.
SRC_BIN=${HOTPUB:-$REPO/hotpub}
cp "$SRC_BIN" "$TMP/hotpub" || { echo "ERROR: no binary at $SRC_BIN"; exit 1; }
export HOTPUB=$TMP/hotpub
echo "# measuring a copy of $SRC_BIN (sha1 $(sha1sum "$HOTPUB" | cut -c1-12))"

if [ -z "${RELOAD_CC:-}" ]; then
    if command -v tcc >/dev/null 2>&1; then RELOAD_CC=tcc; else RELOAD_CC=cc; fi
fi
if [ "$QUICK" = 1 ]; then
    HELLO_ARGS=(--runs 1 --duration 3s --warmup 1s)
    SYS_ARGS=(--requests 2000)
    LAT_ARGS=(--edits 5)
    MEM_ARGS=("${RELOADS:-200}")
    DB_ARGS=(--runs 1 --duration 3s --warmup 1s)
    RENDER_ARGS=(--runs 1 --duration 3s --warmup 1s)
    STREAM_ARGS=(--size-mb 10 --runs 1)
else
    HELLO_ARGS=()
    SYS_ARGS=()
    LAT_ARGS=()
    MEM_ARGS=("${RELOADS:-10000}")
    DB_ARGS=()
    RENDER_ARGS=()
    STREAM_ARGS=()
fi
[ "$RELOAD_CC" != cc ] && MEM_ARGS+=(--cc "$RELOAD_CC")

FAILED=0
run() { # name timeout-seconds script args...
    local name=$1 limit=$2 script=$3
    shift 3
    echo
    echo "== $name: $script $*   ($(date +%T), loadavg $(cut -d' ' -f1-3 /proc/loadavg))"
    timeout -s TERM -k 30 "$limit" "$BENCH/$script" "$@" > >(tee "$TMP/$name.out") 2>&1 &
    CHILD=$!
    wait "$CHILD"
    local rc=$?
    CHILD=
    sleep 0.2 # let tee finish
    if [ $rc -ne 0 ]; then
        echo "!! $name exited $rc"
        echo "RESULT $name status=FAILED rc=$rc" >>"$TMP/$name.out"
        FAILED=1
    fi
}

run hello 600 hello.sh "${HELLO_ARGS[@]}"
run syscalls 600 syscalls.sh "${SYS_ARGS[@]}"
run reload_latency 1200 reload_latency.sh "${LAT_ARGS[@]}"
run reload_memory 5400 reload_memory.sh "${MEM_ARGS[@]}"
run db 600 db.sh "${DB_ARGS[@]}"
run render 600 render.sh "${RENDER_ARGS[@]}"
run stream 900 stream.sh "${STREAM_ARGS[@]}"

echo
echo "== summary ($(date +%T), loadavg $(cut -d' ' -f1-3 /proc/loadavg); other"
echo "   processes share these 2 cpus, so throughput figures carry noise)"
cat "$TMP"/*.out | grep '^RESULT ' | python3 -c '
import sys
rows = {}
for line in sys.stdin:
    p = line.split()
    rows[p[1]] = dict(kv.split("=", 1) for kv in p[2:] if "=" in kv)
def g(r, k, d="?"):
    return r.get(k, d)
out = []
r = rows.get("hello", {})
if g(r, "status", "") == "FAILED": out.append(("hello", "could not measure", "", "FAILED"))
elif r:
    out.append(("hello req/s hotpub/nginx", "%sx (%s vs %s req/s)" % (g(r,"ratio"), g(r,"hotpub_rps"), g(r,"nginx_rps")), ">= 0.8x (goal 0.9x)", "%s (goal %s)" % (g(r,"target"), g(r,"goal"))))
    out.append(("hello cpu/req hotpub/nginx", "%sx (%s vs %s us)" % (g(r,"cpu_ratio"), g(r,"hotpub_us_req"), g(r,"nginx_us_req")), "-", "-"))
    out.append(("hello failed requests", g(r,"hotpub_errors"), "0", "PASS" if g(r,"hotpub_errors")=="0" else "MISS"))
    out.append(("hello noisy measurements", g(r,"noisy"), "0", "ok" if g(r,"noisy")=="0" else "NOISY: rerun when idle"))
r = rows.get("syscalls", {})
if g(r, "status", "") == "FAILED": out.append(("syscalls", "could not measure", "", "FAILED"))
elif r:
    out.append(("stat-family / request", g(r,"stat_per_req"), "0", g(r,"stat")))
    out.append(("open-family / request", g(r,"open_per_req"), "0", g(r,"open")))
    out.append(("all syscalls / request", "%s (nginx %s)" % (g(r,"hotpub_all_per_req"), g(r,"nginx_all_per_req","-")), "-", "-"))
r = rows.get("stream", {})
if g(r, "status", "") == "FAILED": out.append(("stream", "could not measure", "", "FAILED"))
elif r:
    out.append(("stream %s MiB MB/s hotpub/nginx/php" % g(r,"size_mb"), "%s / %s / %s" % (g(r,"hotpub_down_mbps"), g(r,"nginx_down_mbps"), g(r,"php_down_mbps")), "-", "-"))
    out.append(("  peak RSS growth kB hotpub/nginx/php", "%s / %s / %s" % (g(r,"hotpub_down_rss_grow_kb"), g(r,"nginx_down_rss_grow_kb"), g(r,"php_down_rss_grow_kb")), "-", "-"))
    out.append(("upload s hotpub/php", "%s / %s" % (g(r,"hotpub_up_s"), g(r,"php_up_s")), "-", "-"))
    out.append(("  peak RSS growth kB hotpub/php", "%s / %s" % (g(r,"hotpub_up_rss_grow_kb"), g(r,"php_up_rss_grow_kb")), "-", "-"))
r = rows.get("reload_latency", {})
if g(r, "status", "") == "FAILED": out.append(("reload_latency", "could not measure", "", "FAILED"))
elif r:
    out.append(("reload latency median/p99", "%s / %s ms (%s seen)" % (g(r,"median_ms"), g(r,"p99_ms"), g(r,"seen")), "-", "-"))
    out.append(("  peer: bare cc -O2 compile", "%s ms" % g(r,"bare_compile_ms"), "-", "-"))
    out.append(("failed requests during edits", "wrk %s + poller %s" % (g(r,"wrk_errors"), g(r,"poller_errors")), "0", g(r,"failed")))
r = rows.get("reload_memory", {})
if g(r, "status", "") == "FAILED": out.append(("reload_memory", "could not measure", "", "FAILED"))
elif r:
    n = g(r,"reloads") + (" PARTIAL" if "partial" in r else "")
    out.append(("RSS growth, %s reloads" % n, "%s KiB" % g(r,"rss_growth_kib"), "< 2 MiB", g(r,"rss")))
    out.append(("page objects mapped", g(r,"mapped_objects"), "1", g(r,"mapped")))
    out.append(("retired versions", g(r,"retired"), "0", g(r,"retired_ok")))
    out.append(("compile cache dir", "%s MiB (%s B/reload)" % (g(r,"cache_mib"), g(r,"cache_bytes_per_reload")), "-", "-"))
    out.append(("failed reloads", g(r,"fails"), "0", "PASS" if g(r,"fails")=="0" else "MISS"))
r = rows.get("db", {})
if g(r, "status", "") == "FAILED": out.append(("db", "could not measure", "", "FAILED"))
elif r:
    out.append(("db req/s hotpub/PHP-FPM", "%sx (%s vs %s req/s)" % (g(r,"ratio_php"), g(r,"hotpub_rps"), g(r,"php_rps")), ">= 5x", g(r,"target")))
    out.append(("db req/s hotpub/mod_python", "%sx (%s req/s)" % (g(r,"ratio_modpython"), g(r,"modpython_rps")), "-", "-"))
    out.append(("db us cpu/req hotpub/php/py", "%s / %s / %s" % (g(r,"hotpub_us_req"), g(r,"php_us_req"), g(r,"modpython_us_req")), "-", "-"))
    out.append(("db failed requests, noisy", "%s, %s" % (g(r,"errors"), g(r,"noisy")), "0", "PASS" if g(r,"errors")=="0" else "MISS"))
r = rows.get("render", {})
if g(r, "status", "") == "FAILED": out.append(("render", "could not measure", "", "FAILED"))
elif r:
    out.append(("render 20 rows req/s hp_render/hp_printf/PHP-FPM", "%s / %s / %s" % (g(r,"hp_render_rps"), g(r,"hp_printf_rps"), g(r,"php_fpm_rps")), "-", "-"))
    out.append(("render us cpu/req hp_render/hp_printf/PHP-FPM", "%s / %s / %s" % (g(r,"hp_render_us_req"), g(r,"hp_printf_us_req"), g(r,"php_fpm_us_req")), "-", "-"))
    out.append(("render failed requests, noisy", "%s, %s" % (g(r,"errors"), g(r,"noisy")), "0", "PASS" if g(r,"errors")=="0" else "MISS"))
w = [max(len(x[i]) for x in out + [("benchmark","figure","target","status")]) for i in range(4)]
fmt = "%%-%ds  %%-%ds  %%-%ds  %%s" % (w[0], w[1], w[2])
print(fmt % ("benchmark", "figure", "target", "status"))
print(fmt % (tuple("-" * x for x in w[:3]) + ("-" * 6,)))
for row in out:
    print(fmt % row)
' || FAILED=1
exit $FAILED
