#!/usr/bin/env bash
# TechEmpower's six test types on hotpub vs PHP-FPM and nginx (see tfb.py
# for the method and options). Usage: bench/tfb.sh [--quick] [--duration 10s]
exec python3 -B "$(dirname "$0")/tfb.py" "$@"
