#!/usr/bin/env bash
# HTTPS hotpub vs nginx (keep-alive, handshake per request) and the cost of
# the metrics (see ops.py for the method and options).
# Usage: bench/ops.sh [--runs 3] [--duration 10s] [--conns 50]
exec python3 -B "$(dirname "$0")/ops.py" "$@"
