#!/usr/bin/env bash
# what the other clients of a crashing worker get (see crash_loss.py).
# Usage: bench/crash_loss.sh [--crashes 20] [--clients 16] [--ms 50] [--interval 2.5] [--workers 1]
exec python3 -B "$(dirname "$0")/crash_loss.py" "$@"
