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

#define HP_PROMOTE_RUNS 32     /* fast runs before a version runs inline */
#define HP_SLOW_NS 2000000     /* 2 ms: too long to hold an event loop   */
#define HP_SLOW_STRIKES 3      /* ... that many times before demotion    */
#define HP_BLOCKED_NS 50000000 /* 50 ms: blocked, demote at once (probed;
                                  inline: a strike and a suspect)      */
#define HP_STALL_NS 1000000000 /* 1 s inline: demote at once            */
#define HP_STRIKE_EXPIRY 1024  /* fast runs after which strikes expire   */
#define HP_WAIT_NS 100000      /* 100 µs: the longest run that waited
                                  (a query, a lock) an event loop takes */

/* One run as measured. wall_ns: CLOCK_MONOTONIC nanoseconds from start to
 * end. probed: blocked, preempted and own_ns are known (the run was on a
 * handler thread, where two getrusage calls are cheap next to the
 * offload). blocked: the thread made a voluntary context switch
 * (ru_nvcsw: it slept, waited for I/O or a lock); preempted: an
 * involuntary one (ru_nivcsw). own_ns: the run's own time, less the time
 * excused (hp_run_probe_stop): for a probed run that never blocked its CPU
 * time; for one that blocked its wall time less the time it was runnable
 * but waiting for a CPU (queued_ns, the scheduler's run delay); for an
 * unprobed run its wall time. Waiting for a CPU stalls nothing the page
 * owns. */
struct hp_run {
    int64_t wall_ns;
    bool probed;
    bool blocked;
    bool preempted;
    int64_t own_ns;
    int64_t queued_ns; /* probed: runnable, waiting for a CPU; -1 unknown */
};

/* A run being measured. */
struct hp_run_probe {
    struct timespec t0;
    struct rusage ru0;     /* when probed */
    struct timespec cpu0;  /* when probed: CLOCK_THREAD_CPUTIME_ID */
    int64_t delay0;        /* when probed: the thread's run delay, or -1 */
    bool probed;
};

/* Start measuring a run on this thread; probed: also take its CPU time and
 * context switches (two getrusage(RUSAGE_THREAD) calls, about 0.4 µs each
 * on a virtual machine: for handler threads, not event loops). */
void hp_run_probe_start(struct hp_run_probe *p, bool probed);
/* The run measured since hp_run_probe_start, on the same thread.
 * excused_ns: time within the run that was not the page's own (the
 * database pools', hp_db_pool_ns: taking a connection, and a new
 * connection's first statements); it is left out of own_ns, which never
 * goes below 0. */
struct hp_run hp_run_probe_stop(const struct hp_run_probe *p,
                                int64_t excused_ns);

/* What hp_place_learn did with a version. */
enum hp_place {
    HP_PLACE_KEPT,     /* no change                                      */
    HP_PLACE_PROMOTED, /* now runs inline                                */
    HP_PLACE_SUSPECT,  /* an inline run was slow: back on the handler
                          threads until HP_PROMOTE_RUNS probed runs there
                          show whether it blocks                         */
    HP_PLACE_DEMOTED   /* on the handler threads for good                */
};

/*
 * Learn from one run of v (any thread). An unprobed run (inline) only
 * knows its wall time, which cannot tell a handler that blocks from a
 * thread that was preempted: over HP_SLOW_NS it makes the version a
 * suspect; over HP_BLOCKED_NS also a strike (HP_SLOW_STRIKES demote);
 * over HP_STALL_NS it demotes at once. A probed run is judged by its own time: over HP_BLOCKED_NS
 * demotes at once, over HP_SLOW_NS is a strike
 * (HP_SLOW_STRIKES of them demote; they expire after HP_STRIKE_EXPIRY fast
 * runs); one that blocked (waited) over HP_WAIT_NS is kept where it is and
 * marks the version as one that waits, whose inline runs over HP_WAIT_NS
 * by the wall clock make it a suspect; otherwise a run counts towards
 * promotion (HP_PROMOTE_RUNS, when inline_pages). A demoted version is never promoted again. Logs a
 * suspicion of an inline run once per version and a demotion of a version
 * that ran inline.
 */
enum hp_place hp_place_learn(hp_version *v, const struct hp_run *r,
                             bool inline_pages);

#endif
