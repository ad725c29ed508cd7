#!/bin/sh
# tools/deps.sh - install what building hotpub needs, on Debian 12 / Ubuntu.
#
#   sh tools/deps.sh          the build: compiler, make, pkg-config, libraries,
#                             tcc (dev mode's fast compile tier)
#   sh tools/deps.sh --test   also what the tests use (PostgreSQL, clang and
#                             libFuzzer for `make fuzz-run`, wrk, curl, zlib
#                             for the HP_PKG tests; openssl, the Prometheus
#                             parser and promtool, headless Chromium and
#                             python3-websocket for tests/e2e/ops.py and the
#                             live-reload test in tests/e2e/devloop.py;
#                             HAProxy for tests/e2e/scale.py; gnutls-cli,
#                             to try a TLS 1.2 renegotiation in ops.py)
#   sh tools/deps.sh --bench  also the peers the benchmarks run (nginx, and
#                             PHP-FPM with PDO pgsql and SQLite, Apache with
#                             mod_python)
#
# Owns: the package lists and how to get root. As root (containers, CI) it
# runs apt-get itself: sudo is often not installed there. As anyone else it
# uses sudo, and says so plainly when there is none.
set -eu

BUILD="build-essential pkg-config libmicrohttpd-dev libinih-dev \
libsqlite3-dev libpq-dev libsodium-dev libjansson-dev libgnutls28-dev tcc"
TEST="python3 curl wrk postgresql clang libclang-rt-14-dev zlib1g-dev \
openssl python3-prometheus-client prometheus chromium python3-websocket \
haproxy gnutls-bin"
BENCH="nginx-light php8.2-fpm php8.2-pgsql php8.2-sqlite3 apache2 \
libapache2-mod-python"

pkgs=$BUILD
[ "${1:-}" = "--test" ] && pkgs="$BUILD $TEST"
[ "${1:-}" = "--bench" ] && pkgs="$BUILD $TEST $BENCH"

# Everything there already: nothing to do, and no root needed.
missing=""
for p in $pkgs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' ||
        missing="$missing $p"
done
if [ -z "$missing" ]; then
    echo "tools/deps.sh: all packages installed"
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    sudo=""
elif command -v sudo >/dev/null 2>&1; then
    sudo="sudo"
else
    echo "tools/deps.sh: not root and no sudo: as root, install:$missing" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update
# shellcheck disable=SC2086 # a list of words
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y \
    --no-install-recommends $pkgs
