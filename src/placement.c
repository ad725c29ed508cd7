/*
 * placement.c - where a page version runs: inline on the event-loop threads
 * or offloaded to the handler threads, learnt from how its runs went.
 *
 * Owns: the rule (hp_place_learn) and the run probe (wall time, and on
 * handler threads the thread's CPU time and voluntary context switches).
 * It reads and writes only hp_version's placement counters (fast_runs,
 * slow_runs, slow, suspect, waits, run_inline). May not touch: requests,
 * connections or the module cache; server.c decides where each request
 * runs from run_inline and calls in here after each run.
 *
 * Why not wall time alone: on a busy CPU (an event loop sharing it with
 * other threads, other processes, a benchmark client) a run can be
 * preempted for several milliseconds without blocking anything. Judged by
 * wall time, a page of a few microseconds collected three 2 ms "strikes"
 * within seconds under bench/tfb.sh (server pinned to one CPU) and was
 * demoted for good, at 2-3 times the CPU per request. A probed run tells
 * the two apart (docs/design.md, "Threading model"); an inline run over
 * HP_BLOCKED_NS still demotes at once (no preemption lasts that long on a
 * machine that is not overloaded; a page that blocked that long would
 * stall its event loop again before it could be probed).
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

void hp_run_probe_start(struct hp_run_probe *p, bool probed)
{
    p->probed = probed && getrusage(RUSAGE_THREAD, &p->ru0) == 0 &&
                clock_gettime(CLOCK_THREAD_CPUTIME_ID, &p->cpu0) == 0;
    p->delay0 = p->probed ? run_delay_ns() : -1;
    clock_gettime(CLOCK_MONOTONIC, &p->t0);
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

struct hp_run hp_run_probe_stop(const struct hp_run_probe *p,
                                int64_t excused_ns)
{
    struct timespec t1, cpu1;
    struct rusage ru1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    struct hp_run r = {
        .wall_ns = ts_ns(&t1) - ts_ns(&p->t0),
        .queued_ns = -1,
    };
    r.own_ns = excuse(r.wall_ns, excused_ns);
    if (!p->probed || getrusage(RUSAGE_THREAD, &ru1) != 0 ||
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cpu1) != 0)
        return r;
    r.probed = true;
    r.blocked = ru1.ru_nvcsw != p->ru0.ru_nvcsw;
    r.preempted = ru1.ru_nivcsw != p->ru0.ru_nivcsw;
    r.own_ns = excuse(probed_own(p, &r, &cpu1), excused_ns);
    return r;
}

/* An inline run took too long by the wall clock: run the version on the
 * handler threads again, where its next runs are probed, and promote it
 * afresh once HP_PROMOTE_RUNS of them were fast. */
static enum hp_place suspect(hp_version *v, const struct hp_run *r)
{
    atomic_store(&v->fast_runs, 0);
    if (!atomic_exchange(&v->run_inline, false))
        return HP_PLACE_KEPT; /* another run got there first */
    if (!atomic_exchange(&v->suspect, true))
        hp_log_info("%s: a request took %.1f ms on an event-loop thread; "
                    "this version now runs on the handler threads until %d "
                    "runs there show whether it blocks",
                    v->path, (double)r->wall_ns / 1e6, HP_PROMOTE_RUNS);
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

enum hp_place hp_place_learn(hp_version *v, const struct hp_run *r,
                             bool inline_pages)
{
    if (r->probed ? r->own_ns > HP_BLOCKED_NS : r->wall_ns > HP_STALL_NS)
        return demote(v, r);
    /* An inline run knows only its wall time, which on an overloaded
     * machine includes preemptions of 100 ms and more: over HP_BLOCKED_NS
     * a strike and a suspect, whose next runs are probed; HP_SLOW_STRIKES
     * of them demote (a page that blocks that long inline does not get to
     * do it often), and one over HP_STALL_NS, which no preemption lasts,
     * at once. */
    if (!r->probed && r->wall_ns > HP_BLOCKED_NS &&
        atomic_fetch_add(&v->slow_runs, 1) + 1 >= HP_SLOW_STRIKES)
        return demote(v, r);
    if (!r->probed && (r->wall_ns > HP_SLOW_NS ||
                       (r->wall_ns > HP_WAIT_NS && atomic_load(&v->waits))))
        return suspect(v, r);
    if (r->probed && r->own_ns > HP_SLOW_NS) {
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
    if (r->probed && r->blocked) {
        if (!atomic_load(&v->waits))
            atomic_store(&v->waits, true);
        if (r->own_ns > HP_WAIT_NS)
            return HP_PLACE_KEPT;
    }
    unsigned fast = atomic_fetch_add(&v->fast_runs, 1) + 1;
    if (fast % HP_STRIKE_EXPIRY == 0)
        atomic_store(&v->slow_runs, 0); /* old strikes expire */
    if (inline_pages && fast >= HP_PROMOTE_RUNS && !atomic_load(&v->slow) &&
        !atomic_load(&v->run_inline) && !atomic_exchange(&v->run_inline, true))
        return HP_PLACE_PROMOTED;
    return HP_PLACE_KEPT;
}
