/*
 * reactor.h - the coroutine scheduler of a worker process (reactor.c): one
 * thread that runs jobs as coroutines and, while a job waits for a
 * descriptor through hp_wait_fd (wait.h: the database's sockets) or is
 * parked (hp_wait_park: the pool's wait for a free connection), runs the
 * others. server.c hands it
 * the requests of pages whose runs are short between their waits
 * (placement.c), so that many of their queries are in flight without a
 * thread each and without a thread hand-off per wait.
 */
#ifndef HP_REACTOR_H
#define HP_REACTOR_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A job is embedded in the caller's own struct (no allocation here). The
 * caller sets deadline_ns; the reactor owns the rest while the job is
 * queued or running. */
struct hp_reactor_job {
    struct hp_reactor_job *next;
    /* CLOCK_MONOTONIC ns after which every wait of this job times out
     * (hp_wait_fd answers 0); 0: none. */
    int64_t deadline_ns;
    /* Set with deadline_ns: when the waits the server bounds itself (a
     * pool's acquire, a session's lock) end, ahead of deadline_ns so that
     * they answer 503, not a timeout (wait.h's hp_wait_bound); 0: none. */
    int64_t bound_ns;
    /* A wait of this job ended at deadline_ns (read after run returns). */
    bool timed_out;
    /* Given up while it waited on a stalled reactor (hp_reactor_abandon):
     * its client has its answer; every wait of it fails from now on, as
     * one past deadline_ns does (timed_out is set too). */
    atomic_bool abandoned;
    /* the reactor's own */
    struct hp_coro *co;
    struct hp_reactor_job *wnext, *wprev; /* waiting with a deadline */
    int64_t wait_until;                   /* this wait's deadline, or 0 */
    int wait_fd;                          /* -1: a sleep or a park */
    int wait_result;                      /* 1 ready, 0 timed out, -1 error */
    struct hp_wait_ticket *ticket;        /* parked (hp_wait_park): its own */
    struct hp_reactor_job *rnext;         /* unparked, to be resumed       */
};

struct hp_reactor_ops {
    /* Run the job, on its coroutine (on the reactor's thread). */
    void (*run)(struct hp_reactor_job *job);
    /* The job is about to wait (suspend) and has just been resumed
     * (resume), on its coroutine: whatever is on record about what runs
     * on this thread goes off record and back on. */
    void (*suspend)(struct hp_reactor_job *job);
    void (*resume)(struct hp_reactor_job *job);
    /* run has returned and its coroutine is gone: hand the job back (on
     * the reactor's thread, off the coroutine). Not before: while the job
     * holds the reactor, hp_reactor_abandon may name it to fn. NULL:
     * run hands it back itself (then fn must not read the holder). */
    void (*done)(struct hp_reactor_job *job);
};

/* Start the reactor's thread; each job's coroutine gets a stack of
 * stack_size bytes (0: 8 MiB). Returns 0, or -1 with errno set. */
int hp_reactor_start(size_t stack_size, const struct hp_reactor_ops *ops);
/* Whether the reactor runs and takes jobs. */
bool hp_reactor_running(void);
/* Queue a job (any thread). Only while hp_reactor_running(). */
void hp_reactor_submit(struct hp_reactor_job *job);
/* Stop taking jobs, let every job submitted finish, end the thread. */
void hp_reactor_stop(void);
/*
 * An event loop the reactor's thread drives between its jobs: the worker's
 * libmicrohttpd daemon when the worker has one event-loop thread (server.c,
 * docs/design.md "One thread per worker"), so that a request handed to a
 * job and answered by it never crosses threads. fd is readable when the
 * loop has work (its epoll set); turn runs it without blocking; next_ns
 * returns its next deadline (CLOCK_MONOTONIC ns) or 0. Set once after
 * hp_reactor_start; NULL detaches it, returning once no turn runs (on
 * any thread but the reactor's). A turn runs under a lock of its own, on
 * the reactor's thread, or on the rescue thread while a job holds the
 * reactor (hp_reactor_rescue).
 */
struct hp_reactor_loop {
    int fd;
    void (*turn)(void);
    int64_t (*next_ns)(void);
};
void hp_reactor_host(const struct hp_reactor_loop *loop);
/* The hosted loop has work it does not see on its descriptor (a
 * connection resumed): turn it soon. Any thread, the reactor's too; a
 * no-op when no loop is hosted. */
void hp_reactor_poke(void);
/* When a job has held the reactor for over a second (hp_reactor_reclaim's
 * threshold): turn the hosted loop on a thread of its own until the
 * reactor is back, so that requests that need no reactor (static files,
 * pages on the handler threads, those reclaimed) are still answered. A
 * no-op otherwise, or while that thread runs. Any thread. */
void hp_reactor_rescue(void);

/* Whether this thread is the reactor's. */
bool hp_reactor_on_thread(void);

/* How long the job running on the reactor has run since it last waited,
 * seconds; 0 when none runs. */
double hp_reactor_stalled(void);
/* Jobs the reactor holds: started and not finished, or queued. While it
 * is stalled, none of them can go on. */
long hp_reactor_held(void);
/* When the reactor has been stalled for over a second: take the queued
 * jobs it has not started back and hand each to fn (any thread; a job
 * that waits for a stack stays). How many. */
long hp_reactor_reclaim(void (*fn)(struct hp_reactor_job *job));
/* When the reactor has been stalled for over a second: give up every job
 * suspended in a wait there (or woken and not resumed), each once: mark
 * it abandoned and hand it to fn(job, holder, arg), holder being the job
 * that holds the reactor (any thread; fn runs under the reactor's lock of
 * its waiters, so neither job can end meanwhile: fn must not block). When
 * the reactor resumes such a job, its wait fails (0, timed_out). How
 * many. */
long hp_reactor_abandon(void (*fn)(struct hp_reactor_job *job,
                                   const struct hp_reactor_job *holder,
                                   void *arg),
                        void *arg);

struct hp_reactor_stats {
    unsigned long runs;      /* jobs finished                             */
    unsigned long waits;     /* waits that suspended a job                */
    int active;              /* jobs started and not finished (suspended) */
    long queued;             /* jobs submitted and not started            */
    unsigned long abandoned; /* jobs given up by hp_reactor_abandon       */
};
void hp_reactor_stats(struct hp_reactor_stats *out);

#endif
