#!/bin/sh
# bench/tfb/setup.sh - create TechEmpower's benchmark database on PostgreSQL:
# the World table (ids 1..10000, randomNumber 1..10000) and the Fortune
# table (the 12 rows of TFB's toolset/databases/postgres/create-postgres.sql),
# in lower case, as unquoted SQL names read.
#
#   bench/tfb/setup.sh [URL]
#
# URL: a libpq URL (default $TFB_DB_URL, else postgresql:///hello_world).
# The database is created first when it does not exist (through the
# "postgres" database of the same server; UTF8, from template0, like TFB's
# create-postgres-database.sql). A URL with options=-csearch_path%3DS fills
# schema S, which must exist.
#
# Idempotent: tables are created if missing; missing World rows are added
# (rows already there keep their randomNumber, which /updates changes); the
# Fortune rows are put back exactly as TFB has them. Needs psql.
set -eu

URL="${1:-${TFB_DB_URL:-postgresql:///hello_world}}"
export PGCLIENTENCODING=UTF8
PSQL="psql -X -q -v ON_ERROR_STOP=1"

say() { printf 'tfb setup: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

command -v psql >/dev/null 2>&1 || die "psql not found (apt-get install postgresql-client)"

# The database named by the URL's path, and the same URL on "postgres".
dbname="$(printf '%s' "$URL" | sed -n 's#^postgres\(ql\)\{0,1\}://[^/]*/\([^?]*\).*#\2#p')"
admin="$(printf '%s' "$URL" | sed 's#^\(postgres\(ql\)\{0,1\}://[^/]*/\)[^?]*#\1postgres#')"

if ! err="$($PSQL -d "$URL" -c 'SELECT 1' 2>&1 >/dev/null)"; then
    case "$err" in
    *"does not exist"*) ;;
    *) die "cannot connect to $URL: $err" ;;
    esac
    [ -n "$dbname" ] && [ "$dbname" != postgres ] ||
        die "cannot connect to $URL: $err"
    case "$dbname" in
    *[!A-Za-z0-9_]*) die "database name '$dbname': letters, digits, _ only" ;;
    esac
    say "creating database $dbname"
    $PSQL -d "$admin" -c "CREATE DATABASE $dbname WITH TEMPLATE = template0 ENCODING 'UTF8'"
fi

enc="$($PSQL -A -t -d "$URL" -c 'SHOW server_encoding')"
[ "$enc" = UTF8 ] || die "the database's encoding is $enc, not UTF8 (Fortune holds Japanese text)"

$PSQL -d "$URL" <<'SQL'
SET client_min_messages = warning;
BEGIN;

CREATE TABLE IF NOT EXISTS world (
  id integer NOT NULL,
  randomnumber integer NOT NULL DEFAULT 0,
  PRIMARY KEY (id)
);
INSERT INTO world (id, randomnumber)
SELECT x.id, least(floor(random() * 10000 + 1), 10000)
FROM generate_series(1, 10000) AS x(id)
ON CONFLICT (id) DO NOTHING;
DELETE FROM world WHERE id NOT BETWEEN 1 AND 10000;

CREATE TABLE IF NOT EXISTS fortune (
  id integer NOT NULL,
  message varchar(2048) NOT NULL,
  PRIMARY KEY (id)
);
INSERT INTO fortune (id, message) VALUES
  (1, 'fortune: No such file or directory'),
  (2, 'A computer scientist is someone who fixes things that aren''t broken.'),
  (3, 'After enough decimal places, nobody gives a damn.'),
  (4, 'A bad random number generator: 1, 1, 1, 1, 1, 4.33e+67, 1, 1, 1'),
  (5, 'A computer program does what you tell it to do, not what you want it to do.'),
  (6, 'Emacs is a nice operating system, but I prefer UNIX. — Tom Christaensen'),
  (7, 'Any program that runs right is obsolete.'),
  (8, 'A list is only as strong as its weakest link. — Donald Knuth'),
  (9, 'Feature: A bug with seniority.'),
  (10, 'Computers make very fast, very accurate mistakes.'),
  (11, '<script>alert("This should not be displayed in a browser alert box.");</script>'),
  (12, 'フレームワークのベンチマーク')
ON CONFLICT (id) DO UPDATE SET message = EXCLUDED.message;
DELETE FROM fortune WHERE id NOT BETWEEN 1 AND 12;

COMMIT;
ANALYZE world;
ANALYZE fortune;
SQL

counts="$($PSQL -A -t -F ' ' -d "$URL" \
    -c 'SELECT (SELECT count(*) FROM world), (SELECT count(*) FROM fortune)')"
[ "$counts" = "10000 12" ] || die "after setup: world, fortune rows = $counts, not 10000 12"
say "world 10000 rows, fortune 12 rows in ${dbname:-the database}"
