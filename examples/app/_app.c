/*
 * app/_app.c - the example application's application module. It is never
 * reachable by URL (its name starts with '_'); every page in app/ and below
 * runs with it:
 *
 *   - HP_INIT keeps the application's state (app_state in _app.h): counters
 *     and the start time, adopted by each new version of this file, so
 *     editing it does not reset them.
 *   - prepare / commit / rollback / release run around every request of
 *     app/ and below: they count requests and outcomes and log how long
 *     each request took.
 *   - http_handler and json are acquired by the pages of app/ that do not
 *     define them: app/stats.c has no handler at all, so GET /app/stats is
 *     served from here; GET /app/stats/json too.
 *
 * The state lives in one worker process's memory: with several worker
 * processes (the default: one per CPU) each has its own counters, which is
 * why the pages show the pid. A count all workers share would live in the
 * database instead (examples/notes/, docs/database.md).
 *
 * Try: edit this file while requesting /app/ - the counters keep counting.
 */
#include "_app.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

HP_INIT
{
    struct app_state *prev = previous, *s;

    /* Same layout: adopt the previous version's state whole. The old
     * version may still be serving a request that increments a counter
     * right now; the counters are atomics, so that is fine. Its fini is
     * then called with handed_over = true and frees nothing. */
    if (prev && prev->layout == APP_STATE_LAYOUT)
        return prev;

    /* First load, or a new layout: a fresh state. From an older layout
     * only the fields that never move are read. */
    s = calloc(1, sizeof *s);
    if (!s) {
        hp_module_error(m, "out of memory");
        return NULL;
    }
    s->layout = APP_STATE_LAYOUT;
    s->started = prev ? prev->started : time(NULL);
    return s;
}

HP_FINI
{
    /* handed_over: the next version adopted the state; it is not ours. */
    if (!handed_over)
        free(state);
}

/* ---- request hooks ------------------------------------------------------ */

/* The hooks of one request run one after the other on one thread, so a
 * thread-local carries what prepare measured to release. */
static _Thread_local struct {
    struct timespec t0;
    const char *outcome;
} this_request;

static double ms_since(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) * 1e3 +
           (double)(t.tv_nsec - t0->tv_nsec) / 1e6;
}

HP_HOOK(prepare)
{
    struct app_state *s = hp_module_state(req);
    clock_gettime(CLOCK_MONOTONIC, &this_request.t0);
    this_request.outcome = "not run";
    atomic_fetch_add(&s->requests, 1);
    return HP_OK;
}

HP_HOOK(commit)
{
    struct app_state *s = hp_module_state(req);
    atomic_fetch_add(&s->committed, 1);
    this_request.outcome = "committed";
    return HP_OK;
}

HP_HOOK(rollback)
{
    struct app_state *s = hp_module_state(req);
    atomic_fetch_add(&s->rolled_back, 1);
    this_request.outcome = "rolled back";
    return HP_OK;
}

HP_HOOK(release)
{
    hp_log(req, "%s %s: %.2f ms, %s", hp_method(req), hp_path(req),
           ms_since(&this_request.t0), this_request.outcome);
    return HP_OK;
}

/* ---- handlers the pages of app/ acquire ---------------------------------- */

HP_HANDLER(http_handler)
{
    struct app_state *s = hp_module_state(req);
    char started[64];
    struct tm tm;

    gmtime_r(&s->started, &tm);
    strftime(started, sizeof started, "%Y-%m-%d %H:%M:%S UTC", &tm);
    app_header(req, "Statistics");
    hp_printf(req,
              "<p>This page has no handler of its own: <code>%s</code> is "
              "served by <code>http_handler</code> in the application "
              "module <code>_app.c</code>. The counters are those of "
              "worker process %d (each worker keeps its own).</p>\n"
              "<table>\n"
              "<tr><td>running since</td><td>%s</td></tr>\n"
              "<tr><td>requests</td><td>%lu</td></tr>\n"
              "<tr><td>home page visits</td><td>%lu</td></tr>\n"
              "<tr><td>committed</td><td>%lu</td></tr>\n"
              "<tr><td>rolled back</td><td>%lu</td></tr>\n</table>\n"
              "<p>As JSON: <a href=\"%s/json\">%s/json</a></p>\n",
              hp_path(req), (int)getpid(), started, atomic_load(&s->requests),
              atomic_load(&s->visits), atomic_load(&s->committed),
              atomic_load(&s->rolled_back), hp_path(req), hp_path(req));
    app_footer(req);
    return HP_OK;
}

HP_HANDLER(json)
{
    struct app_state *s = hp_module_state(req);
    hp_set_header(req, "Content-Type", "application/json");
    hp_printf(req,
              "{\"pid\":%d,\"started\":%lld,\"uptime\":%lld,"
              "\"requests\":%lu,\"visits\":%lu,\"committed\":%lu,"
              "\"rolled_back\":%lu}\n",
              (int)getpid(), (long long)s->started,
              (long long)(time(NULL) - s->started), atomic_load(&s->requests),
              atomic_load(&s->visits), atomic_load(&s->committed),
              atomic_load(&s->rolled_back));
    return HP_OK;
}
