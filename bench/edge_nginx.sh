#!/usr/bin/env bash
# Request-edge conformance cases, hotpub vs nginx 1.22 (see edge_nginx.py).
# Usage: bench/edge_nginx.sh [SUBSTRING...]   (HOTPUB=/path/to/binary)
exec python3 -B "$(dirname "$0")/edge_nginx.py" "$@"
