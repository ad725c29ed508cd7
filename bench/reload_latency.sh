#!/usr/bin/env bash
# edit-to-visible latency under load and failed requests (see reload_latency.py).
# Usage: bench/reload_latency.sh [--edits 20] [--load same|other] [--no-pin]
exec python3 -B "$(dirname "$0")/reload_latency.py" "$@"
