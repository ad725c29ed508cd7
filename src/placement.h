/*
 * placement.h - where a page version runs, learnt from its runs
 * (placement.c): on the event-loop threads (inline) or on the handler
 * threads (offloaded). server.c times each run with a probe and hands the
 * result to hp_place_learn, which promotes, suspects or demotes the
 * version through its counters in hp_version (hp.h).
 */
#ifndef HP_PLACEMENT_H
#define HP_PLACEMENT_H

#include "hp.h"

#include <sys/resource.h>
#include <time.h>

#define HP_PROMOTE_RUNS 32 /* fast runs before a version runs inline */
#define HP_SLOW_NS 2000000 /* 2 ms: too long to hold an event loop   */
#define HP_SLOW_STRIKES 3  /* ... that many times before demotion    */
#define HP_BLOCKED_NS                                                          \
    50000000                   /* 50 ms: blocked, demote at once (probed,      \
                                  and inline when the wait for a CPU is        \
                                  known; else a strike and a suspect)  */
#define HP_STALL_NS 1000000000 /* 1 s inline: demote at once            */
#define HP_STRIKE_EXPIRY                                                       \
    1024 /* fast runs in a row after which strikes                             \
            expire                                */
#define HP_WAIT_NS                                                             \
    100000 /* 100 µs: the longest run that waited                             \
              (a query, a lock) an event loop takes */
#define HP_BACKOFF_MAX                                                         \
    10 /* re-promotion needs at most                                           \
          HP_PROMOTE_RUNS << 10 fast runs       */
#define HP_DELAY_REFRESH_NS                                                    \
    10000000 /* 10 ms: how stale an event loop's                               \
                reading of its run delay may be */

/* One run as measured. wall_ns: CLOCK_MONOTONIC nanoseconds from start to
 * end. probed: blocked, preempted and own_ns are known (the run was on a
 * handler thread, where two getrusage calls are cheap next to the
 * offload). blocked: the thread made a voluntary context switch
 * (ru_nvcsw: it slept, waited for I/O or a lock); preempted: an
 * involuntary one (ru_nivcsw). own_ns: the run's own time, less the time
 * excused (hp_run_probe_stop): for a probed run that never blocked its CPU
 * time; for one that blocked its wall time less the time it was runnable
 * but waiting for a CPU (queued_ns, the scheduler's run delay); for an
 * unprobed run its wall time less queued_ns when that is known. Waiting
 * for a CPU stalls nothing the page owns. */
struct hp_run {
    int64_t wall_ns;
    bool probed;
    bool blocked;
    bool preempted;
    int64_t own_ns;
    /* Runnable, waiting for a CPU, nanoseconds; -1 unknown. Probed: within
     * the run. Unprobed: at most this (the run delay over a span that
     * starts up to HP_DELAY_REFRESH_NS before the run), known only for
     * runs over HP_WAIT_NS, so own_ns is at least the run's own time. */
    int64_t queued_ns;
};

/* A run being measured. */
struct hp_run_probe {
    struct timespec t0;
    struct rusage ru0;    /* when probed */
    struct timespec cpu0; /* when probed: CLOCK_THREAD_CPUTIME_ID */
    int64_t delay0;       /* the thread's run delay, or -1 (unprobed:
                             read up to HP_DELAY_REFRESH_NS earlier) */
    bool probed;
};

/* Start measuring a run on this thread; probed: also take its CPU time and
 * context switches (two getrusage(RUSAGE_THREAD) calls, about 0.4 µs each
 * on a virtual machine: for handler threads, not event loops). Unprobed:
 * the thread's run delay is read at most once per HP_DELAY_REFRESH_NS
 * (about 0.7 µs), so that a slow run can tell its wait for a CPU. */
void hp_run_probe_start(struct hp_run_probe *p, bool probed);
/* The run measured since hp_run_probe_start, on the same thread.
 * excused_ns: time within the run that was not the page's own (the
 * database pools', hp_db_pool_ns: taking a connection, and a new
 * connection's first statements); it is left out of own_ns, which never
 * goes below 0. */
struct hp_run hp_run_probe_stop(const struct hp_run_probe *p,
                                int64_t excused_ns);
/* As hp_run_probe_stop, for an unprobed run whose wall time only matters
 * over over_ns (a reactor's stretch, judged over HP_SLOW_NS): at or under
 * it the wait for a CPU is not read (one pread(2) less), own_ns is the wall
 * time. hp_run_probe_stop is over_ns = HP_WAIT_NS. */
struct hp_run hp_run_probe_stop_over(const struct hp_run_probe *p,
                                     int64_t excused_ns, int64_t over_ns);

/* What hp_place_learn did with a version. */
enum hp_place {
    HP_PLACE_KEPT,     /* no change                                      */
    HP_PLACE_PROMOTED, /* now runs inline                                */
    HP_PLACE_SUSPECT,  /* an inline run was slow: back on the handler
                          threads until hp_place_promote_runs fast
                          probed runs there show it does not block     */
    HP_PLACE_DEMOTED   /* on the handler threads for good                */
};

/*
 * Learn from one run of v (any thread); docs/design.md, "Where a page
 * runs", states the same rules.
 *
 * An unprobed run (inline) knows its wall time and, when over HP_WAIT_NS,
 * at most how long it waited for a CPU (queued_ns; -1 unknown). Over
 * HP_STALL_NS by the wall clock, or over HP_BLOCKED_NS of its own time
 * with queued_ns known, it demotes at once (no wait for a CPU explains
 * it: the page blocked or spun that long). Over HP_BLOCKED_NS by the wall
 * clock with queued_ns unknown it is a strike. Over HP_SLOW_NS by the
 * wall clock (HP_WAIT_NS for a version that waits) it makes the version a
 * suspect, back on the handler threads until enough probed runs there
 * were fast: hp_place_promote_runs. A suspicion whose own time is over
 * HP_SLOW_NS (not explained by a wait for a CPU, or unknown) doubles
 * that count, up to HP_PROMOTE_RUNS << HP_BACKOFF_MAX.
 *
 * A probed run is judged by its own time: over HP_BLOCKED_NS it demotes at
 * once; over HP_SLOW_NS it is a strike (HP_SLOW_STRIKES of them demote;
 * they expire after HP_STRIKE_EXPIRY fast runs in a row, doubled as often
 * as hp_place_promote_runs is) and promotion
 * counts its fast runs afresh; one that blocked (waited) over HP_WAIT_NS
 * is kept where it is and marks the version as one that waits; otherwise
 * a run counts towards promotion (when inline_pages). A demoted version is
 * never promoted again. Logs a suspicion of an inline run once per
 * version and a demotion of a version that ran inline.
 */
enum hp_place hp_place_learn(hp_version *v, const struct hp_run *r,
                             bool inline_pages);

/* The longest a run on the reactor may hold it between two waits and
 * still be sent there (reactor.c). */
#define HP_CORO_NS 1000000 /* 1 ms */

/*
 * A run off the reactor (hp_run of any thread; waited_ns: the time it
 * spent in hp_wait_fd, wait.h): waits left out, held its thread under
 * HP_CORO_NS after waiting at least once. hp_place_promote_runs such runs
 * in a row set v->run_coro: its requests then run as coroutines on the
 * reactor. Not a version with coro_never.
 */
void hp_place_learn_coro_fit(hp_version *v, const struct hp_run *r,
                             int64_t waited_ns);
/*
 * A run on the reactor; held_ns: the longest stretch between two of its
 * waits, its own time (wall less the wait for a CPU when known). Over
 * HP_SLOW_NS: off the reactor until hp_place_learn_coro_fit sees enough
 * runs again, each time needing twice as many (suspicions); over
 * HP_BLOCKED_NS: never again (coro_never). Logs either.
 */
void hp_place_learn_coro(hp_version *v, int64_t held_ns);

/* How many fast runs in a row v needs to be promoted (again):
 * HP_PROMOTE_RUNS << its suspicions, at most HP_BACKOFF_MAX of them. */
unsigned hp_place_promote_runs(const hp_version *v);

#endif
