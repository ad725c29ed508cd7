/*
 * pool.h - the handler threads (pool.c): a fixed set of threads that run
 * jobs from one FIFO queue. server.c hands them the requests it offloads.
 */
#ifndef HP_POOL_H
#define HP_POOL_H

#include "hp.h"

/* A job is embedded in the caller's own struct (no allocation here). */
struct hp_pool_job {
    struct hp_pool_job *next;
};

/* What a handler thread does with a job. */
typedef void hp_pool_fn(struct hp_pool_job *job);

/* Start n threads (1 MiB stacks) running fn. Returns 0, or -1 after
 * logging why (the threads started are stopped again). */
int hp_pool_start(int n, hp_pool_fn *fn);
/* Queue a job; the first free thread takes it (FIFO). */
void hp_pool_submit(struct hp_pool_job *job);
/* Run what is queued, then stop and join every thread. */
void hp_pool_stop(void);
/* The number of threads, and how many are running a job now. */
int hp_pool_size(void);
int hp_pool_busy(void);

#endif
