#!/bin/sh
# tools/config-reference.sh - keep docs/configuration.md's settings tables
# the binary's own (`hotpub config-reference`, built from config.c's table).
#
#   tools/config-reference.sh ./hotpub docs/configuration.md          rewrite
#   tools/config-reference.sh ./hotpub docs/configuration.md --check  test
#
# Owns: the text between the BEGIN/END settings markers, nothing else. With
# --check it changes nothing and exits 1, showing the difference, when the
# manual's defaults, ranges or help differ from the binary's (make test).
set -eu
bin=$1
doc=$2
new=$(mktemp)
gen=$(mktemp)
trap 'rm -f "$new" "$gen"' EXIT
"$bin" config-reference >"$gen"
grep -q '^<!-- BEGIN settings' "$doc" && grep -q '^<!-- END settings' "$doc" ||
    { echo "$doc: no BEGIN/END settings markers" >&2; exit 1; }
awk -v gen="$gen" '
    /^<!-- BEGIN settings/ { print; while ((getline l < gen) > 0) print l; skip = 1; next }
    /^<!-- END settings/ { skip = 0 }
    !skip' "$doc" >"$new"
if [ "${3:-}" = "--check" ]; then
    if ! diff -u "$doc" "$new"; then
        echo "FAIL docs: $doc's settings differ from $bin config-reference;" \
            "run make docs" >&2
        exit 1
    fi
    echo "ok   docs: $doc's settings tables match the binary"
else
    cat "$new" >"$doc"
fi
