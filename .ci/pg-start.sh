#!/usr/bin/env bash
# .ci/pg-start.sh - start a throwaway PostgreSQL cluster for the database
# tests and print its URL (the only thing on standard output):
#
#   export HOTPUB_PG_URL="$(sudo bash .ci/pg-start.sh)"
#   make unit e2e          # the [pg] tests now run instead of being skipped
#
# The cluster lives in a new temporary directory, listens only on a Unix
# socket in that directory (port number HOTPUB_PG_PORT, default 55432, which
# only names the socket), trusts local connections, and runs as the
# "postgres" user when started as root (as the current user otherwise).
# Everything else goes to standard error, including how to stop it:
#
#   pg_ctl -D DIR/data stop -m fast      # as the same user
#
# Needs Debian's postgresql package (server binaries in
# /usr/lib/postgresql/VERSION/bin) or pg_config/initdb on PATH.
set -euo pipefail

PORT="${HOTPUB_PG_PORT:-55432}"

say() { printf 'pg-start: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

# The newest server installed: Debian keeps them out of PATH.
find_bindir() {
    local d
    d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
    if [ -n "$d" ] && [ -x "$d/initdb" ]; then
        echo "$d"
    elif command -v initdb >/dev/null 2>&1; then
        dirname "$(command -v initdb)"
    else
        return 1
    fi
}

BIN="$(find_bindir)" || die "no PostgreSQL server binaries (apt-get install postgresql)"
DIR="$(mktemp -d /tmp/hotpub-pg.XXXXXX)"
chmod 755 "$DIR" # clients of any user may reach the socket

# Run a server binary as the cluster's owner.
if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 || die "no postgres user to run the server as"
    chown postgres: "$DIR"
    as_owner() { runuser -u postgres -- "$@"; }
else
    as_owner() { "$@"; }
fi

as_owner "$BIN/initdb" -D "$DIR/data" -A trust -U postgres -E UTF8 \
    --locale=C >"$DIR/initdb.log" 2>&1 ||
    { cat "$DIR/initdb.log" >&2; die "initdb failed"; }

# -w waits until the server accepts connections (or gives up after 60 s).
if ! as_owner "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 60 \
    -o "-k $DIR -p $PORT -c listen_addresses=''" start >/dev/null; then
    tail -n 20 "$DIR/server.log" >&2 || true
    die "the server did not start (is port $PORT's socket taken? set HOTPUB_PG_PORT)"
fi

# Belt and braces: pg_isready, where installed, must agree.
if [ -x "$BIN/pg_isready" ]; then
    for _ in $(seq 1 50); do
        "$BIN/pg_isready" -q -h "$DIR" -p "$PORT" && break
        sleep 0.1
    done
    "$BIN/pg_isready" -q -h "$DIR" -p "$PORT" || die "server not ready"
fi

say "cluster in $DIR/data, log $DIR/server.log"
say "stop it with: $( [ "$(id -u)" -eq 0 ] && echo 'runuser -u postgres -- ')$BIN/pg_ctl -D $DIR/data stop -m fast"
echo "postgresql:///postgres?host=$DIR&port=$PORT&user=postgres"
