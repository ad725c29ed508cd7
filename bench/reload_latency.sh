#!/usr/bin/env bash
# edit-to-visible latency under load and failed requests (see reload_latency.py).
# Usage: bench/reload_latency.sh [--edits 20] [--load same|other] [--no-pin]
#        bench/reload_latency.sh --tiers [--edits 20] [--browser]: the
#        edit-refresh loop with no load, both compile tiers, a 20-line and a
#        1,000-line page, beside mod_python and PHP-FPM (edit_refresh.py);
#        --settle-ms 5,10,20 runs the fast tier once per window,
#        --gcc-fallback adds it without tcc, --no-opt --no-peers skip the rest
if [ "${1:-}" = "--tiers" ]; then
    exec python3 -B "$(dirname "$0")/edit_refresh.py" "$@"
fi
exec python3 -B "$(dirname "$0")/reload_latency.py" "$@"
