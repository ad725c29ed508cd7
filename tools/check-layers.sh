#!/bin/sh
# tools/check-layers.sh - test that the process layers call one way: the
# supervisor (master.c) calls the server (server.c) and its worker-side
# guard (guard.c); the server never names either; session.c's internals are
# reached only by the publisher (the CSRF check), the server (start/stop)
# and main.c (docs/design.md, "The map of dependencies").
#
#   tools/check-layers.sh [SRC-DIR]
#
# Owns: nothing but these greps. Exits 1 and names each file that reaches
# up a layer.
set -eu
src=${1:-$(dirname "$0")/../src}
bad=0
# who may name what: pattern, then the only files allowed to contain it
check() {
    pat=$1
    shift
    for f in $(grep -lE "$pat" "$src"/*.c "$src"/*.h 2>/dev/null || true); do
        base=$(basename "$f")
        ok=0
        for allowed in "$@"; do
            [ "$base" = "$allowed" ] && ok=1
        done
        if [ $ok = 0 ]; then
            echo "check-layers: $base names $pat (only $* may)"
            grep -nE "$pat" "$f" | sed 's/^/  /'
            bad=1
        fi
    done
}
check 'hp_guard_|#include "guard\.h"' guard.c guard.h master.c
check 'hp_master_run|#include "master\.h"' master.c master.h main.c
check 'hp_procs_|procs\.h' # gone: the old two-way hooks
# sessions and CSRF: the publisher checks, the server starts and stops the
# store, main.c initialises libsodium; nothing else reaches in
check '#include "session\.h"|hp_session_server_|hp_session__|hp_csrf_check' \
    session.c session.h csrf.c password.c publish.c server.c main.c
# the SQLite sessions' lock file is session.c's alone
check 'hp_sesslock_|#include "sesslock\.h"' sesslock.c sesslock.h session.c
# jansson's allocator is set once, by main.c, before any thread starts
check 'hp_jsonmem_|#include "jsonmem\.h"' jsonmem.c jsonmem.h main.c
# the template parser is pure: only the template cache drives it
check 'hp_tpl_(parse|render)\(|#include "template\.h"' template.c template.h tplcache.c check.c
# the accept thread and the descriptor census are the server's own
# the upload spool sweep: upload.c's, asked by the supervisor and the server
check 'hp_upload_sweep_|#include "uploadspool\.h"' upload.c uploadspool.h master.c server.c
check 'hp_listener_|#include "listener\.h"' listener.c listener.h server.c
check 'hp_liveness_|#include "liveness\.h"' liveness.c liveness.h server.c
# where a page runs is the server's to ask
check 'hp_place_|hp_run_probe|#include "placement\.h"' placement.c placement.h server.c
check 'hp_respmemo_|#include "respmemo\.h"' respmemo.c respmemo.h server.c
# the reactor runs requests for the server; nothing else hands it jobs
check 'hp_reactor_|#include "reactor\.h"' reactor.c reactor.h server.c test_reactor.c
# stray signals: the server's and the supervisor's processes catch them,
# as does hotpub check's loading child; the loader hands back a page's own
# handlers as it unloads the page's object
check 'hp_stray_|#include "stray\.h"' stray.c stray.h server.c master.c \
    loader.c check.c test_stray.c
# the dashboard's feed and HTTPS credentials are the server's alone
check '#include "dashboard\.h"|hp_dashboard_' dashboard.c dashboard.h server.c
check '#include "tls\.h"|hp_tls_' tls.c tls.h server.c
check '#include "redirect\.h"|hp_redirect_' redirect.c redirect.h server.c
# the dev loop's browser side: the server answers and injects, the cache,
# the template cache and the watcher report changes; the crash page is the
# guard's (it runs in a fatal signal handler)
check 'hp_devloop_|#include "devloop\.h"' devloop.c devloop.h server.c \
    cache.c tplcache.c watch.c
check 'hp_crash_answer|#include "crashpage\.h"' crashpage.c crashpage.h guard.c
# the page compiler is driven by the module cache (the watcher asks the
# cache to prefetch a compile, never the compiler), hotpub check and the
# server that creates it
check 'hp_compile(_tier)?\(|hp_compiler_[a-z_]+\(' compile.c cache.c check.c \
    server.c hp.h
# the lowest layer, below util.c: coroutine stacks and switching name no
# other file of the project (the scheduler above builds on them)
lowest() {
    f=$1
    shift
    [ -f "$src/$f" ] || return 0
    for inc in $(sed -n 's/^#include "\([^"]*\)".*/\1/p' "$src/$f"); do
        ok=0
        for allowed in "$@"; do
            [ "$inc" = "$allowed" ] && ok=1
        done
        if [ $ok = 0 ]; then
            echo "check-layers: $f includes \"$inc\" (the lowest layer: only $*)"
            bad=1
        fi
    done
}
lowest coro.c coro.h
# how a thread waits (wait.c) is below the database layer, which waits
# through it: it names nothing of that layer, requests, pages or the server
for f in "$src"/wait.c "$src"/wait.h; do
    [ -f "$f" ] || continue
    if grep -nE '#include "(db[a-z_]*|request|server|publish|loader|cache|pool)\.h"|hp_db|hp_req' "$f" | sed 's/^/  /' | grep .; then
        echo "check-layers: $(basename "$f") reaches above its layer (it is below the database layer)"
        bad=1
    fi
done
if [ $bad = 0 ]; then
    echo "ok   layers: the server names no supervisor, the guard is master.c's, the listener and the census are server.c's, only tplcache.c and check.c drive template.c, the watcher reaches the compiler only through the cache, coro.c includes only coro.h, wait.c names nothing above it"
fi
exit $bad
