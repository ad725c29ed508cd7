#!/usr/bin/env bash
# memory, mappings and cache left by N reloads (see reload_memory.py).
# Usage: bench/reload_memory.sh [COUNT=10000] [--cc tcc] [--cflags -O0]
exec python3 -B "$(dirname "$0")/reload_memory.py" "$@"
