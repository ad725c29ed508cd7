#!/bin/bash
# bench/tfb_placement.sh - where a TFB page runs, and what that does to its
# rate: one hotpub serving bench/tfb/ (production mode, pinned to CPU 1),
# three wrk runs of 4 s in a row on CPU 0, and between them status.json's
# server.inlined and server.offloaded (requests run on an event loop, and
# on the handler threads; of the worker that answered status.json).
#
#   TFB_DB_URL=postgresql:///hello_world?host=... bench/tfb_placement.sh \
#       [BINARY] [PAGE] [CONNECTIONS]
#
# BINARY: default ./hotpub; PAGE: default fortunes; CONNECTIONS: 32. The
# database must hold TFB's tables (bench/tfb/setup.sh URL). Used for
# bench/results-2026-11-30.md, "Where a page that waits runs".
set -eu
B=$(realpath "${1:-./hotpub}"); PAGE=${2:-fortunes}; C=${3:-32}
U=${TFB_DB_URL:?set TFB_DB_URL to a database filled by bench/tfb/setup.sh}
HERE=$(dirname "$(realpath "$0")")
P=$((20000 + RANDOM % 20000))
D=$(mktemp -d); cp -r "$HERE/tfb" "$D/root"
taskset -c 1 "$B" serve --listen 127.0.0.1:$P --cache-dir "$D/cache" \
    --access-log off --no-dev --include-dir "$HERE/../include" --db "$U" \
    "$D/root" 2>"$D/err" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$D"' EXIT
for _ in $(seq 50); do curl -sf -o /dev/null "http://127.0.0.1:$P/$PAGE" && break; sleep 0.1; done
counts() {
    curl -s "http://127.0.0.1:$P/_hotpub/status.json" | python3 -c \
        'import json,sys; s=json.load(sys.stdin)["server"]; print(s["inlined"], s["offloaded"])'
}
for i in 1 2 3; do
    a=$(counts)
    r=$(taskset -c 0 wrk -t1 -c"$C" -d4s "http://127.0.0.1:$P/$PAGE" | awk '/Requests\/sec/ {print $2}')
    b=$(counts)
    echo "run $i: $r req/s; inlined/offloaded before: $a, after: $b"
done
