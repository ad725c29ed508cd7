/*
 * pool.h - the handler threads (pool.c): an elastic set of threads that run
 * jobs from per-key queues, served round-robin. server.c hands them the
 * requests it offloads, keyed by the page's module path.
 */
#ifndef HP_POOL_H
#define HP_POOL_H

#include "hp.h"

struct hp_pool_queue;

/* A job is embedded in the caller's own struct (no allocation here); the
 * pool fills both members. */
struct hp_pool_job {
    struct hp_pool_job *next;
    struct hp_pool_queue *q; /* the key's queue, while queued or running */
};

/* What a handler thread does with a job. */
typedef void hp_pool_fn(struct hp_pool_job *job);

struct hp_pool_opts {
    int min_threads;     /* started at once and never retired (>= 1)      */
    int max_threads;     /* the ceiling of growth (>= min_threads)        */
    size_t stack_size;   /* bytes per thread; 0 = the C library's default */
    double idle_s;       /* a thread above the floor idle this long exits;
                            0 = never                                      */
    int share_pct;       /* one key may run on at most this % of
                            max_threads (at least one thread), 1-100       */
    double grow_delay_s; /* a job that can run waits this long for a busy
                            thread before new threads are started; 0 =
                            start one at once                            */
    struct hp_thread_counts *publish; /* kept up to date, or NULL     */
};

/*
 * The guard below each handler thread's stack, bytes: address space mapped
 * PROT_NONE (glibc maps stack and guard PROT_NONE and opens the stack
 * alone, so the guard is never committed memory). gcc pages probe frames
 * larger than a page (-fstack-clash-protection, compile.c), so one guard
 * page would do for them; code tcc compiled (the fast tier) cannot, and a
 * frame up to this size that runs off its stack still faults here rather
 * than landing in another mapping. 1 GiB: the largest --thread-stack-size,
 * so a frame that could jump the guard could not fit in any stack hotpub
 * may be given either (8 MiB, twice the old size, let a 16 MiB frame land
 * in the next thread's stack). 64-bit address space only: 256 threads take
 * 256 GiB of the 128 TiB a process has. On a 32-bit system, 8 MiB.
 */
#if UINTPTR_MAX > 0xffffffffu
#define HP_THREAD_GUARD ((size_t)1 << 30)
#else
#define HP_THREAD_GUARD ((size_t)8 << 20)
#endif
/* Make HP_THREAD_GUARD the guard of every thread this process creates from
 * now on without attributes of its own (libmicrohttpd's event-loop
 * threads, which run inline pages). Returns 0, or an errno value. */
int hp_pool_default_guard(void);

/* Start opts->min_threads threads running fn. Returns 0, or -1 after
 * logging why (the threads started are stopped again). */
int hp_pool_start(const struct hp_pool_opts *opts, hp_pool_fn *fn);
/*
 * Queue a job under key (a NUL-terminated string, copied; jobs of one key
 * run in arrival order). An idle thread takes it at once; when none is
 * idle, and the job is still waiting grow_delay_s later, a thread is
 * started for every job then waiting (up to max_threads); a key at its
 * share waits for one of its own jobs to finish.
 */
void hp_pool_submit(struct hp_pool_job *job, const char *key);
/* Run what is queued, then stop every thread and wait for them. */
void hp_pool_stop(void);

struct hp_pool_stats {
    int live; /* threads now                                 */
    int busy; /* ... running a job                           */
    int idle; /* ... waiting for one                         */
    int min, max;
    int share;   /* threads one key may hold (from share_pct)   */
    long queued; /* jobs waiting, all keys                      */
    unsigned long started, retired; /* threads, since start     */
};
void hp_pool_stats(struct hp_pool_stats *out);
/* The running and queued jobs of key (0, 0 for a key never seen). */
void hp_pool_key_stats(const char *key, int *running, long *queued);
/* The number of threads, and how many are running a job now. */
int hp_pool_size(void);
/* The calling thread is one of the handler threads (its stack is
 * hp_pool_opts.stack_size, --thread-stack-size): guard.c's stack-overflow
 * hint names what set the stack that ran out. Async-signal-safe (a
 * thread-local read). */
bool hp_pool_on_handler_thread(void);
int hp_pool_busy(void);

#endif
