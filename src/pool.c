/*
 * pool.c - the handler threads: where pages that may block run, so that
 * they hold up no event loop.
 *
 * Owns: the threads, their FIFO queue and its lock, the busy count.
 * May not touch: requests, connections, libmicrohttpd; a job is opaque,
 * and what it means (a suspended request to run and resume) is server.c's.
 */
#include "pool.h"

#include <assert.h>

#include <stdlib.h>
#include <string.h>

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct hp_pool_job *head, *tail;
    bool stop;
    pthread_t *threads;
    int n;
    atomic_int busy;
    hp_pool_fn *fn;
} P = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

/* The next job, or NULL once stopping and the queue is empty. */
static struct hp_pool_job *take(void)
{
    pthread_mutex_lock(&P.mu);
    while (!P.head && !P.stop)
        pthread_cond_wait(&P.cv, &P.mu);
    struct hp_pool_job *j = P.head;
    if (j) {
        P.head = j->next;
        if (!P.head)
            P.tail = NULL;
        j->next = NULL;
    }
    pthread_mutex_unlock(&P.mu);
    return j;
}

static void *thread_main(void *arg)
{
    struct hp_pool_job *j;
    while ((j = take()) != NULL) {
        atomic_fetch_add(&P.busy, 1);
        P.fn(j);
        atomic_fetch_sub(&P.busy, 1);
    }
    return NULL;
}

int hp_pool_start(int n, hp_pool_fn *fn)
{
    assert(n > 0 && P.n == 0);
    P.fn = fn;
    P.stop = false;
    P.threads = hp_xcalloc((size_t)n, sizeof *P.threads);
    for (P.n = 0; P.n < n; P.n++) {
        pthread_attr_t a;
        pthread_attr_init(&a);
        pthread_attr_setstacksize(&a, 1024 * 1024);
        int err = pthread_create(&P.threads[P.n], &a, thread_main, NULL);
        pthread_attr_destroy(&a);
        if (err) {
            hp_log_error("cannot start handler threads: %s", strerror(err));
            hp_pool_stop();
            return -1;
        }
    }
    return 0;
}

void hp_pool_submit(struct hp_pool_job *job)
{
    job->next = NULL;
    pthread_mutex_lock(&P.mu);
    assert(!P.stop);
    if (P.tail)
        P.tail->next = job;
    else
        P.head = job;
    P.tail = job;
    pthread_cond_signal(&P.cv);
    pthread_mutex_unlock(&P.mu);
}

void hp_pool_stop(void)
{
    pthread_mutex_lock(&P.mu);
    P.stop = true;
    pthread_cond_broadcast(&P.cv);
    pthread_mutex_unlock(&P.mu);
    for (int i = 0; i < P.n; i++)
        pthread_join(P.threads[i], NULL);
    free(P.threads);
    P.threads = NULL;
    P.n = 0;
}

int hp_pool_size(void)
{
    return P.n;
}

int hp_pool_busy(void)
{
    return atomic_load(&P.busy);
}
