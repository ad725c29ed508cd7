#!/usr/bin/env bash
# hello page on hotpub vs nginx (see hello.py for the method and options).
# Usage: bench/hello.sh [--runs 3] [--duration 10s] [--conns 50]
exec python3 -B "$(dirname "$0")/hello.py" "$@"
