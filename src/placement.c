/*
 * placement.c - where a page version runs: inline on the event-loop threads
 * or offloaded to the handler threads, learnt from how its runs went.
 *
 * Owns: the rule (hp_place_learn) and the run probe (wall time and the
 * thread's wait for a CPU, and on handler threads its CPU time and
 * voluntary context switches). It reads and writes only hp_version's
 * placement counters (fast_runs, slow_runs, slow, suspect, suspicions,
 * waits, run_inline). May not touch: requests,
 * connections or the module cache; server.c decides where each request
 * runs from run_inline and calls in here after each run.
 *
 * Why not wall time alone: on a busy CPU (an event loop sharing it with
 * other threads, other processes, a benchmark client) a run can be
 * preempted for several milliseconds without blocking anything. Judged by
 * wall time, a page of a few microseconds collected three 2 ms "strikes"
 * within seconds under bench/tfb.sh (server pinned to one CPU) and was
 * demoted for good, at 2-3 times the CPU per request. A probed run tells
 * the two apart (docs/design.md, "Threading model"); an inline run knows
 * at most how long it waited for a CPU, and one that held its loop over
 * HP_BLOCKED_NS besides still demotes at once (a page that blocked that
 * long would stall its event loop again before it could be probed: one
 * that slept 200 ms once in 1100 runs did, at each sleep). Shorter holds
 * make the version a suspect, and each doubles the fast runs it needs to
 * run inline again: one that slept 45 ms once in 40 runs was promoted
 * again after 32 and stalled its loop at every sleep.
 */
#include "placement.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

/*
 * How long this thread has waited for a CPU while runnable, in all: the
 * second field of /proc/thread-self/schedstat (the scheduler's run_delay,
 * nanoseconds). A run that blocked is judged by its wall time, which on a
 * busy CPU includes the wait for a CPU after each wake-up: under
 * bench/tfb.sh a query of 60 µs made runs of 2-4 ms that way, three of
 * which demoted /db for good. The file stays open while the thread lives
 * (one pread per reading, about 0.7 µs; the key's destructor closes it
 * when a handler thread retires). -1: not known (no such file).
 */
static pthread_key_t schedstat_key;
static pthread_once_t schedstat_once = PTHREAD_ONCE_INIT;
static __thread int tl_schedstat = -1; /* -1 not opened, -2 unavailable */

static void schedstat_close(void *v)
{
    close((int)(intptr_t)v - 1);
}

static void schedstat_key_make(void)
{
    (void)pthread_key_create(&schedstat_key, schedstat_close);
}

static int64_t run_delay_ns(void)
{
    if (tl_schedstat == -1) {
        pthread_once(&schedstat_once, schedstat_key_make);
        int fd = open("/proc/thread-self/schedstat", O_RDONLY | O_CLOEXEC);
        tl_schedstat = fd < 0 ? -2 : fd;
        if (fd >= 0 &&
            pthread_setspecific(schedstat_key, (void *)(intptr_t)(fd + 1)))
            tl_schedstat = (close(fd), -2);
    }
    if (tl_schedstat < 0)
        return -1;
    char b[96];
    ssize_t n = pread(tl_schedstat, b, sizeof b - 1, 0);
    if (n <= 0)
        return -1;
    b[n] = '\0';
    char *end;
    (void)strtoull(b, &end, 10); /* time on a CPU (stale by up to a tick) */
    if (end == b || *end != ' ')
        return -1;
    char *p = end;
    unsigned long long delay = strtoull(p, &end, 10);
    return end == p ? -1 : (int64_t)delay;
}

static int64_t ts_ns(const struct timespec *t)
{
    return (int64_t)t->tv_sec * 1000000000 + t->tv_nsec;
}

/* The last reading of this thread's run delay, and when (CLOCK_MONOTONIC
 * ns): an event loop reads it at most once per HP_DELAY_REFRESH_NS, so
 * that a run that turns out slow knows at most how long it waited for a
 * CPU without a system call on every fast run. */
static __thread int64_t tl_delay_ns = -1;
static __thread int64_t tl_delay_at;

void hp_run_probe_start(struct hp_run_probe *p, bool probed)
{
    p->probed = probed && getrusage(RUSAGE_THREAD, &p->ru0) == 0 &&
                clock_gettime(CLOCK_THREAD_CPUTIME_ID, &p->cpu0) == 0;
    p->delay0 = p->probed ? run_delay_ns() : -1;
    clock_gettime(CLOCK_MONOTONIC, &p->t0);
    if (p->probed)
        return;
    int64_t now = ts_ns(&p->t0);
    if (tl_delay_ns < 0 || now - tl_delay_at > HP_DELAY_REFRESH_NS) {
        /* read before the run starts: the span then holds the run whole */
        tl_delay_ns = run_delay_ns();
        tl_delay_at = now;
        clock_gettime(CLOCK_MONOTONIC, &p->t0);
    }
    p->delay0 = tl_delay_ns;
}

static int64_t excuse(int64_t own_ns, int64_t excused_ns)
{
    if (excused_ns <= 0)
        return own_ns;
    return own_ns > excused_ns ? own_ns - excused_ns : 0;
}

/*
 * A probed run's own time. One that never blocked held the request only
 * while on a CPU: its CPU time (CLOCK_THREAD_CPUTIME_ID, exact; not
 * getrusage's, which is only brought up to date at a tick or a switch and
 * read 3 ms for a run of 1 ms), which leaves out both the wait for a CPU
 * and the time the hypervisor ran something else. One that blocked also
 * held it while it waited: its wall time less its wait for a CPU (the run
 * delay), or its wall time when that is unknown.
 */
static int64_t probed_own(const struct hp_run_probe *p, struct hp_run *r,
                          const struct timespec *cpu1)
{
    if (!r->blocked) {
        int64_t cpu = ts_ns(cpu1) - ts_ns(&p->cpu0);
        return cpu < 0 ? 0 : cpu < r->wall_ns ? cpu : r->wall_ns;
    }
    int64_t delay1 = p->delay0 >= 0 ? run_delay_ns() : -1;
    if (p->delay0 < 0 || delay1 < p->delay0)
        return r->wall_ns;
    r->queued_ns = delay1 - p->delay0;
    return r->wall_ns > r->queued_ns ? r->wall_ns - r->queued_ns : 0;
}

/* An unprobed run over over_ns: at most how long it waited for a CPU,
 * the run delay since the reading hp_run_probe_start used (up to
 * HP_DELAY_REFRESH_NS before the run), and the wall time less that. */
static void unprobed_own(const struct hp_run_probe *p, struct hp_run *r,
                         int64_t now, int64_t over_ns)
{
    if (p->delay0 < 0 || r->wall_ns <= over_ns)
        return;
    int64_t delay1 = run_delay_ns();
    if (delay1 < p->delay0)
        return;
    tl_delay_ns = delay1;
    tl_delay_at = now;
    r->queued_ns = delay1 - p->delay0;
    r->own_ns = r->wall_ns > r->queued_ns ? r->wall_ns - r->queued_ns : 0;
}

struct hp_run hp_run_probe_stop(const struct hp_run_probe *p,
                                int64_t excused_ns)
{
    return hp_run_probe_stop_over(p, excused_ns, HP_WAIT_NS);
}

struct hp_run hp_run_probe_stop_over(const struct hp_run_probe *p,
                                     int64_t excused_ns, int64_t over_ns)
{
    struct timespec t1, cpu1;
    struct rusage ru1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    struct hp_run r = {
        .wall_ns = ts_ns(&t1) - ts_ns(&p->t0),
        .queued_ns = -1,
    };
    r.own_ns = r.wall_ns;
    if (!p->probed || getrusage(RUSAGE_THREAD, &ru1) != 0 ||
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cpu1) != 0) {
        if (!p->probed)
            unprobed_own(p, &r, ts_ns(&t1), over_ns);
        r.own_ns = excuse(r.own_ns, excused_ns);
        return r;
    }
    r.probed = true;
    r.blocked = ru1.ru_nvcsw != p->ru0.ru_nvcsw;
    r.preempted = ru1.ru_nivcsw != p->ru0.ru_nivcsw;
    r.own_ns = excuse(probed_own(p, &r, &cpu1), excused_ns);
    return r;
}

/* How many times the evidence a version needs has doubled. */
static unsigned backoff(const hp_version *v)
{
    unsigned n = atomic_load(&v->suspicions);
    return n < HP_BACKOFF_MAX ? n : HP_BACKOFF_MAX;
}

unsigned hp_place_promote_runs(const hp_version *v)
{
    return (unsigned)HP_PROMOTE_RUNS << backoff(v);
}

/* An inline run took too long by the wall clock: run the version on the
 * handler threads again, where its next runs are probed, and promote it
 * afresh once hp_place_promote_runs of them were fast. held: the run's
 * own time was over HP_SLOW_NS (no wait for a CPU explains it, or that
 * wait is unknown): such a page blocked or spun on an event loop, and
 * each time it does, re-promotion needs twice the fast runs, so a page
 * that blocks now and then (one run in 40, or in 1100) runs inline ever
 * less often instead of stalling its loop at every such run. */
static enum hp_place suspect(hp_version *v, const struct hp_run *r, bool held)
{
    atomic_store(&v->fast_runs, 0);
    if (!atomic_exchange(&v->run_inline, false))
        return HP_PLACE_KEPT; /* another run got there first */
    if (held && atomic_load(&v->suspicions) < HP_BACKOFF_MAX)
        atomic_fetch_add(&v->suspicions, 1);
    if (!atomic_exchange(&v->suspect, true))
        hp_log_info("%s: a request took %.1f ms on an event-loop thread; "
                    "this version now runs on the handler threads until %u "
                    "runs there show it does not block",
                    v->path, (double)r->wall_ns / 1e6,
                    hp_place_promote_runs(v));
    return HP_PLACE_SUSPECT;
}

static enum hp_place demote(hp_version *v, const struct hp_run *r)
{
    bool was_inline = atomic_exchange(&v->run_inline, false);
    if (atomic_exchange(&v->slow, true))
        return HP_PLACE_KEPT;
    if (!was_inline && !atomic_load(&v->suspect))
        return HP_PLACE_DEMOTED;
    /* An error when an event loop was held that long; a page that waited
     * (a query, a lock) and now stays off the loops is only news. */
    void (*say)(const char *, ...) = r->probed ? hp_log_info : hp_log_error;
    say("%s: a request took %.1f ms%s; this version now runs on the handler "
        "threads for good",
        v->path, (double)r->own_ns / 1e6,
        !r->probed   ? " on an event-loop thread"
        : r->blocked ? " (it waited)"
                     : " of CPU time");
    return HP_PLACE_DEMOTED;
}

/* A run that did not hold its thread too long: it counts towards
 * promotion, and enough of them in a row let old strikes expire (as many
 * more as re-promotion needs: else a page that blocks 200 ms inline once
 * in 1100 runs, its wait for a CPU unknown, would strike out never). */
static enum hp_place fast_run(hp_version *v, bool inline_pages)
{
    unsigned fast = atomic_fetch_add(&v->fast_runs, 1) + 1;
    if (fast % ((unsigned)HP_STRIKE_EXPIRY << backoff(v)) == 0)
        atomic_store(&v->slow_runs, 0); /* old strikes expire */
    if (inline_pages && fast >= hp_place_promote_runs(v) &&
        !atomic_load(&v->run_inline) && !atomic_exchange(&v->run_inline, true))
        return HP_PLACE_PROMOTED;
    return HP_PLACE_KEPT;
}

/*
 * An unprobed run knows its wall time, which on an overloaded machine
 * includes preemptions of 100 ms and more (a fresh-user test saw a page of
 * 50 µs take 147 ms inline), and, when over HP_WAIT_NS, at most how long
 * it waited for a CPU. Its own time over HP_BLOCKED_NS, or a wall time
 * over HP_STALL_NS, which no preemption lasts, demote at once: a page that
 * blocked that long would do it again. When the wait is unknown, a wall
 * time over HP_BLOCKED_NS is only a strike.
 */
static enum hp_place learn_unprobed(hp_version *v, const struct hp_run *r,
                                    bool inline_pages)
{
    bool known = r->queued_ns >= 0;
    if (r->wall_ns > HP_STALL_NS || (known && r->own_ns > HP_BLOCKED_NS))
        return demote(v, r);
    if (!known && r->wall_ns > HP_BLOCKED_NS &&
        atomic_fetch_add(&v->slow_runs, 1) + 1 >= HP_SLOW_STRIKES)
        return demote(v, r);
    if (r->wall_ns > HP_SLOW_NS ||
        (r->wall_ns > HP_WAIT_NS && atomic_load(&v->waits)))
        return suspect(v, r, r->own_ns > HP_SLOW_NS);
    return fast_run(v, inline_pages);
}

enum hp_place hp_place_learn(hp_version *v, const struct hp_run *r,
                             bool inline_pages)
{
    if (atomic_load(&v->slow))
        return HP_PLACE_KEPT; /* demoted for good: nothing moves it */
    if (!r->probed)
        return learn_unprobed(v, r, inline_pages);
    if (r->own_ns > HP_BLOCKED_NS)
        return demote(v, r);
    if (r->own_ns > HP_SLOW_NS) {
        /* Promotion needs fast runs in a row: a suspect that blocks one
         * run in 40 is not promoted again between two of them. */
        atomic_store(&v->fast_runs, 0);
        if (atomic_fetch_add(&v->slow_runs, 1) + 1 >= HP_SLOW_STRIKES)
            return demote(v, r);
        return HP_PLACE_KEPT;
    }
    /* A run that waited (a database's reply, a lock, I/O) holds an event
     * loop for the whole wait, and a loop that waits on another server
     * answers one request per round trip: only a version whose waits are
     * short (PostgreSQL on the same machine, not one across a network) is
     * promoted, and its inline runs are held to the same limit. A longer
     * wait is no strike: the version is kept where it is, on the handler
     * threads, where many waits overlap. */
    if (r->blocked) {
        if (!atomic_load(&v->waits))
            atomic_store(&v->waits, true);
        if (r->own_ns > HP_WAIT_NS)
            return HP_PLACE_KEPT;
    }
    return fast_run(v, inline_pages);
}

/* ---- the reactor (reactor.c) ----------------------------------------------
 *
 * A run on the reactor is a coroutine: while it waits on the database the
 * reactor runs others, and while it runs, none. So a version goes there
 * when its runs waited through hp_wait_fd and held their thread, the
 * waits left out, under HP_CORO_NS, hp_place_promote_runs times in a row;
 * and leaves when a stretch between two waits held the reactor over
 * HP_SLOW_NS (a suspicion: back on the handler threads, with the same
 * doubling of the runs it needs to come back), or over HP_BLOCKED_NS (for
 * good).
 */

void hp_place_learn_coro_fit(hp_version *v, const struct hp_run *r,
                             int64_t waited_ns)
{
    if (atomic_load(&v->coro_never) || atomic_load(&v->run_coro))
        return;
    int64_t held = r->own_ns > waited_ns ? r->own_ns - waited_ns : 0;
    if (waited_ns <= 0 || held > HP_CORO_NS) {
        atomic_store(&v->coro_runs, 0);
        return;
    }
    unsigned n = atomic_fetch_add(&v->coro_runs, 1) + 1;
    if (n >= hp_place_promote_runs(v) && !atomic_exchange(&v->run_coro, true))
        hp_log_info("%s: its requests wait on the database and run %.0f µs "
                    "between waits; they now run as coroutines on the "
                    "reactor",
                    v->path, (double)held / 1e3);
}

void hp_place_learn_coro(hp_version *v, int64_t held_ns)
{
    if (held_ns <= HP_SLOW_NS)
        return;
    atomic_store(&v->coro_runs, 0);
    bool was = atomic_exchange(&v->run_coro, false);
    if (held_ns > HP_BLOCKED_NS) {
        if (!atomic_exchange(&v->coro_never, true))
            hp_log_error("%s: a request held the reactor %.1f ms without "
                         "waiting on the database; this version now runs "
                         "on the handler threads for good",
                         v->path, (double)held_ns / 1e6);
        return;
    }
    if (!was)
        return; /* another run got there first */
    if (atomic_load(&v->suspicions) < HP_BACKOFF_MAX)
        atomic_fetch_add(&v->suspicions, 1);
    hp_log_info("%s: a request held the reactor %.1f ms without waiting on "
                "the database; this version runs on the handler threads "
                "until %u runs there show it does not",
                v->path, (double)held_ns / 1e6, hp_place_promote_runs(v));
}
