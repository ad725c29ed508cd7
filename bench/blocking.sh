#!/usr/bin/env bash
# A fast page's req/s and p99 while N requests block 2 s: hotpub vs the
# mod_python publisher (Apache mpm_event 2 x 64 threads) vs PHP-FPM behind
# nginx (pm static 4, pm dynamic 50); see blocking.py for the method.
# Needs root and `tools/deps.sh --bench`.
# Usage: bench/blocking.sh [--runs 3] [--duration 10s] [--blocking 40,200]
#                          [--conns 10] [--servers hotpub,mod_python,...]
exec python3 -B "$(dirname "$0")/blocking.py" "$@"
