#!/usr/bin/env bash
# One row by primary key from a 10,000-row SQLite table: hotpub vs PHP-FPM
# (PDO SQLite behind nginx) vs the mod_python publisher (see db.py for the
# method and options). Needs root and Debian's packages:
#   apt-get install php8.2-fpm php8.2-sqlite3 nginx-light apache2 libapache2-mod-python wrk
# Usage: bench/db.sh [--runs 3] [--duration 10s] [--conns 50] [--fpm-children 4]
#                    [--persistent] [--no-auto]
exec python3 -B "$(dirname "$0")/db.py" "$@"
