#!/bin/sh
# tools/check-exports.sh - test that an executable exports exactly the page
# API: its dynamic hp_* symbols are the functions include/hotpub.h declares,
# and it keeps libjansson loaded for the pages.
#
#   tools/check-exports.sh ./hotpub [CC]
#
# Owns: nothing but the comparison. Exits 1 and lists the difference when an
# internal function leaks into the dynamic symbol table (pages could link to
# it) or a public one is missing (pages that call it would fail to load).
set -eu
bin=${1:-./hotpub}
cc=${2:-cc}
here=$(dirname "$0")
want=$(mktemp)
have=$(mktemp)
trap 'rm -f "$want" "$have"' EXIT
sh "$here/api-symbols.sh" "$cc" "$here/../include" >"$want"
nm -D --defined-only "$bin" | awk '{ print $NF }' | grep '^hp_' |
    LC_ALL=C sort -u >"$have"
if ! cmp -s "$want" "$have"; then
    echo "check-exports: $bin's hp_* exports differ from include/hotpub.h:"
    LC_ALL=C comm -13 "$want" "$have" | sed 's/^/  exported, not public: /'
    LC_ALL=C comm -23 "$want" "$have" | sed 's/^/  public, not exported: /'
    exit 1
fi
# Pages call jansson with no flags (hotpub.h includes <jansson.h>): they
# resolve json_* against the executable's libraries, so libjansson must be
# NEEDED by it (a linker defaulting to --as-needed could drop it).
if ! readelf -d "$bin" | grep -q 'NEEDED.*libjansson'; then
    echo "check-exports: $bin does not need libjansson: pages calling json_*"
    echo "  would fail to load"
    exit 1
fi
echo "ok   exports: $(wc -l <"$want") public functions, nothing else; libjansson NEEDED"
