#!/usr/bin/env bash
# Where a request's CPU goes, hotpub against nginx, user and kernel
# (see cpusplit.py). Usage: bench/cpusplit.sh [--path /json] [--rounds 8]
exec python3 -B "$(dirname "$0")/cpusplit.py" "$@"
