#!/usr/bin/env bash
# stat/open syscalls per request in the steady state, hotpub vs nginx
# (see syscalls.py). Usage: bench/syscalls.sh [--requests 10000] [--no-nginx]
exec python3 -B "$(dirname "$0")/syscalls.py" "$@"
