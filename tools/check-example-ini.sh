#!/bin/sh
# tools/check-example-ini.sh - keep examples/hotpub.ini's settings the
# binary's own (`hotpub config-reference`, built from config.c's table).
#
#   tools/check-example-ini.sh ./hotpub examples/hotpub.ini   (make check-docs)
#
# Owns: the rules the example file must follow, nothing else; it changes no
# file. It fails (exit 1, one line per fault) when
#   - a key of config-reference has no ";key = value" line in the file
#     (unless it is in NOT_IN_FILE below), or one there is not a key;
#   - the first ";key = value" line of a key whose default is one fixed value
#     (config-reference prints it in backticks) does not show that default;
#   - a key whose default is not one fixed value is missing from
#     NOT_FIXED below, or is listed there but now has a fixed default;
#   - a setting line is not commented out (the file changes nothing).
# Sizes compare without regard to the suffix's case (8m = 8M).
set -eu
bin=$1
ini=$2

# Keys whose default is not one fixed value, so the file shows "auto" or an
# example and its comment says what the default is. Why each is not fixed:
#   docroot       the current directory, or the DOCROOT argument
#   threads       2 x the CPUs the server may use (auto)
#   cache-dir     from $XDG_CACHE_HOME or $HOME (or /tmp/hotpub-UID)
#   include-dir   next to the binary, else the source tree it was built from
#   upload-dir    from $TMPDIR
#   workers       one per CPU the server may use (auto)
#   io-threads    the CPUs divided among the workers (auto)
#   user, group   none (stay as started); group: the user's own
#   pid-file      none
#   error-log     standard error; the file shows "-"
#   db            a SQLite file per document root under $XDG_DATA_HOME
#   tls-cert, tls-key, tls-redirect, admin-token, health-allow,
#   allowed-hosts none: the feature is off until set
NOT_FIXED="docroot threads cache-dir include-dir upload-dir workers io-threads
user group
pid-file error-log db tls-cert tls-key tls-redirect admin-token health-allow
allowed-hosts"

# Keys deliberately absent from the file (it must not show them):
#   warm          an action of `hotpub check --warm ROOT` for one deploy
#                 (docs/scaling.md); `hotpub serve` ignores it, and in a file
#                 shared with the server it would make every `hotpub check
#                 --config` a warm. The file's header says so.
NOT_IN_FILE="warm"

ref=$(mktemp)
trap 'rm -f "$ref"' EXIT
"$bin" config-reference >"$ref"

# config-reference rows: | flag | `key` | default | values | meaning |, the
# default in backticks when it is one fixed value. "\|" is a literal "|".
awk -v bin="$bin" -v ini="$ini" -v not_fixed="$NOT_FIXED" -v not_in_file="$NOT_IN_FILE" '
function listed(list, k,   a, n, i) {
    n = split(list, a, /[ \n]+/)
    for (i = 1; i <= n; i++)
        if (a[i] == k)
            return 1
    return 0
}
function fail(msg) { print "FAIL ini:  " ini ": " msg > "/dev/stderr"; bad = 1 }
function norm(v) { return v ~ /^[0-9]+[KkMmGg]$/ ? toupper(v) : v }
BEGIN {
    while ((getline line < ini) > 0) {
        lineno++
        if (line ~ /^[A-Za-z][A-Za-z0-9_-]* *=/)
            fail("line " lineno ": a setting that is not commented out: " line)
        if (line !~ /^;[a-z][a-z0-9-]* = /)
            continue
        k = substr(line, 2, index(line, " = ") - 2)
        v = substr(line, index(line, " = ") + 3)
        sub(/ ;.*/, "", v)
        if (!(k in shown)) {
            shown[k] = v
            where[k] = lineno
        }
    }
    close(ini)
    if (!lineno)
        fail("cannot read it, or it is empty")
}
/^\| / && $0 !~ /^\| Flag / {
    n = split($0, c, / \| /)
    key = c[2]
    gsub(/`/, "", key)
    def = c[3]
    gsub(/\\\|/, "|", def)
    known[key] = 1
    fixed = def ~ /^`.*`$/
    if (fixed)
        def = substr(def, 2, length(def) - 2)
    if (listed(not_in_file, key)) {
        if (key in shown)
            fail("line " where[key] ": shows " key ", which the file leaves out on purpose (see NOT_IN_FILE in " \
                 "tools/check-example-ini.sh)")
        next
    }
    if (!(key in shown)) {
        fail("no \";" key " = ...\" line (config-reference default: " def ")")
        next
    }
    if (fixed && listed(not_fixed, key))
        fail(key " has the fixed default " def " now: remove it from NOT_FIXED in tools/check-example-ini.sh")
    else if (!fixed && !listed(not_fixed, key))
        fail(key "'\''s default is not one fixed value (" def "): add it to NOT_FIXED in " \
             "tools/check-example-ini.sh and say why")
    else if (fixed && norm(shown[key]) != norm(def))
        fail("line " where[key] ": " key " shows " shown[key] ", config-reference'\''s default is " def)
}
END {
    for (k in shown)
        if (!(k in known))
            fail("line " where[k] ": " k " is not a setting of config-reference")
    if (bad) {
        print "FAIL ini:  " ini " differs from " bin " config-reference" > "/dev/stderr"
        exit 1
    }
    print "ok   ini:  " ini " shows every setting with its default"
}' "$ref"
