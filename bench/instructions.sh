#!/usr/bin/env bash
# instructions.sh - instructions per request of the hello page, counted by
# valgrind's callgrind: repeatable to the instruction for the same binary
# and input, whatever else the machine is doing (wall-clock throughput on a
# shared 2-core machine varies by 20% from run to run).
#
#   bench/instructions.sh [N]                 ./hotpub (or $HOTPUB), N requests
#   BASELINE=/path/to/old/hotpub bench/instructions.sh [N]
#
# Per request = (Ir after N keep-alive requests - Ir after 0) / N, with
# --workers 0 --no-dev --access-log off. With BASELINE, both are measured in
# the same run and the ratio printed. Needs valgrind, curl, python3.
# Note: callgrind counts every iteration of a `rep stos` as an instruction,
# so libmicrohttpd zeroing its per-connection memory (--max-header + 4 KiB)
# on every request weighs more here than it costs in time.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
n=${1:-3000}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
port=$((20000 + RANDOM % 20000))

cat >"$work/client.py" <<'PY'
import socket, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
s = socket.create_connection(("127.0.0.1", port)); s.settimeout(60)
req = (b"GET /hello HTTP/1.1\r\nHost: localhost\r\nUser-Agent: bench\r\n"
       b"Accept: */*\r\n\r\n")
buf = b""
for _ in range(n):
    s.sendall(req)
    while True:
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            head = buf[:end].decode("latin-1").lower().split("\r\n")
            cl = int([h.split(":")[1] for h in head
                      if h.startswith("content-length")][0])
            if len(buf) >= end + 4 + cl:
                buf = buf[end + 4 + cl:]
                break
        d = s.recv(65536)
        if not d:
            sys.exit("connection closed")
        buf += d
PY

# total_ir BINARY REQUESTS: Ir of one server run that served REQUESTS.
total_ir() {
    local bin=$1 reqs=$2 root="$work/root" out="$work/cg.$RANDOM"
    mkdir -p "$root" && cp "$repo/examples/hello.c" "$root/"
    valgrind --tool=callgrind --callgrind-out-file="$out" "$bin" serve \
        --listen 127.0.0.1:$port --workers 0 --no-dev --access-log off \
        --cache-dir "$work/cache" --include-dir "$repo/include" "$root" \
        >/dev/null 2>"$work/err" &
    local vp=$!
    local ok=0
    for _ in $(seq 1 300); do
        if curl -s -o /dev/null "http://127.0.0.1:$port/hello"; then ok=1; break; fi
        sleep 0.2
    done
    [ $ok = 1 ] || { echo "server did not answer" >&2; exit 1; }
    python3 "$work/client.py" $port "$reqs"
    kill -TERM $vp; wait $vp 2>/dev/null || true
    sed -n 's/^totals: *\([0-9]*\).*/\1/p;s/^summary: *\([0-9]*\).*/\1/p' "$out" | head -n 1
}

per_request() {
    local bin=$1 a b
    total_ir "$bin" 0 >/dev/null   # compile the page into the cache first
    a=$(total_ir "$bin" 0)
    b=$(total_ir "$bin" "$n")
    echo $(( (b - a) / n ))
}

bin=${HOTPUB:-$repo/hotpub}
echo "== instructions per request, hello page, $n keep-alive requests (callgrind)"
cur=$(per_request "$bin")
echo "hotpub   $bin: $cur"
if [ -n "${BASELINE:-}" ]; then
    base=$(per_request "$BASELINE")
    echo "baseline $BASELINE: $base"
    python3 -c "print('ratio hotpub/baseline: %.3fx' % ($cur / $base))"
    echo "RESULT instructions per_request=$cur baseline=$base"
else
    echo "RESULT instructions per_request=$cur"
fi
