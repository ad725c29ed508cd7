#!/usr/bin/env bash
# Streaming a large response and a large upload: hotpub vs nginx (static
# file) vs PHP-FPM flush() and $_FILES, in the same run (see stream.py).
# Usage: bench/stream.sh [--size-mb 100] [--runs 3]
exec python3 -B "$(dirname "$0")/stream.py" "$@"
