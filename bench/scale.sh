#!/usr/bin/env bash
# Scale-out through HAProxy (1, 2, 3 nodes) and the mixed-release window of a
# 3-node deploy, hotpub vs PHP-FPM (see scale.py for the method and options).
# Usage: bench/scale.sh [--duration 10s] [--conns 50] [--window-max 10]
exec python3 -B "$(dirname "$0")/scale.py" "$@"
