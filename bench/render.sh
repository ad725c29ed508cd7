#!/usr/bin/env bash
# A page rendering a 20-row table: hp_render vs hp_printf vs PHP-FPM behind
# nginx, in one run (see render.py for the method and options). Needs root
# and `sh tools/deps.sh --bench` (nginx-light, php8.2-fpm, wrk).
# Usage: bench/render.sh [--runs 3] [--duration 10s] [--conns 50] [--fpm-children 4]
exec python3 -B "$(dirname "$0")/render.py" "$@"
