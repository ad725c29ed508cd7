#!/bin/sh
# tools/api-symbols.sh - the functions the page API declares, one a line.
#
#   tools/api-symbols.sh [CC] [HEADER_DIR]
#
# Owns: deciding which hp_* symbols are public. They are exactly the hp_*
# functions declared in include/hotpub.h after preprocessing (so macros such
# as hp_db_exec contribute the functions they expand to, hp_db__exec_text,
# and a function added to the header is picked up with no list to edit).
# Used by the Makefile to write the executable's dynamic export list and by
# tools/check-exports.sh to test the built binary against it.
set -eu
cc=${1:-cc}
dir=${2:-include}
echo '#include <hotpub.h>' | $cc -E -P -I"$dir" -xc - |
    grep -oE '\bhp_[A-Za-z0-9_]+[[:space:]]*\(' | tr -d '( \t' | LC_ALL=C sort -u
