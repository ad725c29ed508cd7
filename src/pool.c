/*
 * pool.c - the handler threads: where pages that may block run, so that
 * they hold up no event loop.
 *
 * Owns: the threads (started on demand between a floor and a ceiling,
 * retired after an idle period), the per-key queues of jobs and their
 * round-robin order, the share cap, the lock over all of it, the counts,
 * and the guard size of the process's threads (HP_THREAD_GUARD).
 * May not touch: requests, connections, libmicrohttpd; a job is opaque, and
 * what it means (a suspended request to run and resume) and what its key
 * names (a module's path) are server.c's.
 *
 * Policy (docs/design.md, "Threading model", says why and what it costs):
 * - a job that can run and finds no idle thread waits grow_delay_s (a few
 *   ms) for a busy thread to take it; if none did, the grower thread starts
 *   a thread for every job then waiting, up to max_threads. Work that
 *   blocks (a sleep, a query, a lock, waiting for a build) thus makes other
 *   work wait a few ms at most, while short jobs that merely keep every
 *   thread busy for a moment (the CPUs are the limit, not the threads)
 *   start no threads: each would cost a wake-up per job;
 * - idle threads wait on a LIFO stack, so the most recently used thread
 *   takes the next job and the ones at the bottom stay idle long enough
 *   to be retired after idle_s (down to min_threads);
 * - each key has its own FIFO queue; queues with waiting jobs are served
 *   one job per turn, round-robin, so one key's backlog never delays
 *   another key's first job;
 * - one key runs on at most `share` threads; its other jobs wait in its
 *   own queue, so the threads beyond its share stay there for the others.
 */
#include "pool.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define NBUCKETS 256   /* of the key table (a power of two)             */
#define KEEP_QUEUES 64 /* empty queues kept for reuse before freeing    */

/* One key's queue. Lives while it has jobs (queued or running), or among
 * the few empty ones kept (KEEP_QUEUES). */
struct hp_pool_queue {
    struct hp_pool_queue *hnext; /* in the key table's bucket      */
    struct hp_pool_queue *rnext; /* in the ring of waiting queues   */
    struct hp_pool_job *head, *tail;
    uint64_t hash;
    long queued;
    int running;
    bool in_ring;
    char key[]; /* NUL-terminated */
};

/* A thread waiting for work, on its own stack: submit wakes the newest. */
struct waiter {
    pthread_cond_t cv;
    struct waiter *prev, *next;   /* on the idle stack   */
    struct waiter *bprev, *bnext; /* on the busy list    */
    pid_t tid;
    bool woken;
};

static struct {
    pthread_mutex_t mu;
    pthread_cond_t gone; /* live dropped (stop waits for 0) */
    struct hp_pool_opts o;
    int share;
    hp_pool_fn *fn;
    bool stop;
    int live, busy, idle;
    long queued;
    /* jobs a thread could take now (each queue's waiting jobs up to its
     * free share), and threads woken or started that have not looked for
     * one yet: a submit wakes or starts a thread only while the first
     * exceeds the second, so a burst starts no threads it will not use */
    long runnable;
    int waking;
    /* the grower: since when jobs that can run have found no thread */
    pthread_t grower;
    bool has_grower;
    pthread_cond_t grow_cv;
    double starved_since; /* 0: not starved */
    unsigned long started, retired;
    struct waiter *idle_top;  /* LIFO: most recently idle first */
    struct waiter *busy_list; /* threads running a job */
    struct hp_pool_queue *ring, *ring_tail;
    struct hp_pool_queue *buckets[NBUCKETS];
    int nqueues, nempty;
    double last_spawn_error;
} P = {.mu = PTHREAD_MUTEX_INITIALIZER};

/* Under P.mu, after live or busy changed: the copy the host reads. */
static void publish(void)
{
    struct hp_thread_counts *c = P.o.publish;
    if (!c)
        return;
    atomic_store_explicit(&c->live, P.live, memory_order_relaxed);
    atomic_store_explicit(&c->busy, P.busy, memory_order_relaxed);
    atomic_store_explicit(&c->max, P.o.max_threads, memory_order_relaxed);
}

/* ---- the key table ------------------------------------------------------ */

static uint64_t key_hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

static struct hp_pool_queue *queue_find(const char *key, uint64_t h)
{
    struct hp_pool_queue *q = P.buckets[h & (NBUCKETS - 1)];
    while (q && !(q->hash == h && strcmp(q->key, key) == 0))
        q = q->hnext;
    return q;
}

static struct hp_pool_queue *queue_get(const char *key)
{
    uint64_t h = key_hash(key);
    struct hp_pool_queue *q = queue_find(key, h);
    if (q) {
        if (!q->queued && !q->running)
            P.nempty--;
        return q;
    }
    size_t n = strlen(key) + 1;
    q = hp_xcalloc(1, sizeof *q + n);
    memcpy(q->key, key, n);
    q->hash = h;
    q->hnext = P.buckets[h & (NBUCKETS - 1)];
    P.buckets[h & (NBUCKETS - 1)] = q;
    P.nqueues++;
    return q;
}

/* q has no job left: keep it for the key's next job, or free it when
 * enough empty queues are kept already. */
static void queue_emptied(struct hp_pool_queue *q)
{
    if (P.nempty < KEEP_QUEUES) {
        P.nempty++;
        return;
    }
    struct hp_pool_queue **pp = &P.buckets[q->hash & (NBUCKETS - 1)];
    while (*pp != q)
        pp = &(*pp)->hnext;
    *pp = q->hnext;
    P.nqueues--;
    free(q);
}

/* ---- the ring of queues with waiting jobs ------------------------------- */

static void ring_append(struct hp_pool_queue *q)
{
    q->rnext = NULL;
    if (P.ring_tail)
        P.ring_tail->rnext = q;
    else
        P.ring = q;
    P.ring_tail = q;
    q->in_ring = true;
}

static void ring_remove(struct hp_pool_queue *q, struct hp_pool_queue *prev)
{
    if (prev)
        prev->rnext = q->rnext;
    else
        P.ring = q->rnext;
    if (P.ring_tail == q)
        P.ring_tail = prev;
    q->rnext = NULL;
    q->in_ring = false;
}

/* q's contribution to P.runnable: its waiting jobs, up to its free share. */
static long q_runnable(const struct hp_pool_queue *q)
{
    long room = P.share - q->running;
    return room <= 0 ? 0 : q->queued < room ? q->queued : room;
}

/*
 * The next job to run, under P.mu: the first queue in the ring below its
 * share gives its oldest job and goes to the back of the ring (round-robin,
 * one job per turn). NULL when every waiting queue is at its share.
 */
static struct hp_pool_job *pick(void)
{
    struct hp_pool_queue *prev = NULL;
    for (struct hp_pool_queue *q = P.ring; q; prev = q, q = q->rnext) {
        if (q->running >= P.share)
            continue;
        struct hp_pool_job *j = q->head;
        P.runnable -= q_runnable(q);
        q->head = j->next;
        if (!q->head)
            q->tail = NULL;
        j->next = NULL;
        q->queued--;
        q->running++;
        P.queued--;
        P.runnable += q_runnable(q);
        ring_remove(q, prev);
        if (q->queued)
            ring_append(q);
        if (P.runnable <= P.waking)
            P.starved_since = 0;
        return j;
    }
    return NULL;
}

/* ---- threads --------------------------------------------------------------
 */

static void timespec_after(struct timespec *ts, double s)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    long ns = ts->tv_nsec + (long)((s - (double)(long)s) * 1e9);
    ts->tv_sec += (time_t)s + ns / 1000000000L;
    ts->tv_nsec = ns % 1000000000L;
}

static void idle_push(struct waiter *w)
{
    w->prev = NULL;
    w->next = P.idle_top;
    if (P.idle_top)
        P.idle_top->prev = w;
    P.idle_top = w;
    P.idle++;
}

static void idle_unlink(struct waiter *w)
{
    if (w->prev)
        w->prev->next = w->next;
    else
        P.idle_top = w->next;
    if (w->next)
        w->next->prev = w->prev;
    w->prev = w->next = NULL;
    P.idle--;
}

/*
 * Under P.mu: wait on the idle stack until woken or stopping. Returns
 * false when this thread should exit: it stayed idle for idle_s while
 * more than min_threads lived.
 */
static bool idle_wait(struct waiter *w)
{
    struct timespec deadline;
    bool timed = P.o.idle_s > 0;
    if (timed)
        timespec_after(&deadline, P.o.idle_s);
    w->woken = false;
    idle_push(w);
    while (!w->woken && !P.stop) {
        int rc = timed ? pthread_cond_timedwait(&w->cv, &P.mu, &deadline)
                       : pthread_cond_wait(&w->cv, &P.mu);
        if (rc == ETIMEDOUT && !w->woken && P.live > P.o.min_threads) {
            idle_unlink(w);
            return false;
        }
        if (rc == ETIMEDOUT) /* at the floor: wait another period */
            timespec_after(&deadline, P.o.idle_s);
    }
    if (!w->woken)
        idle_unlink(w);
    return true;
}

static void busy_add(struct waiter *w)
{
    w->bprev = NULL;
    w->bnext = P.busy_list;
    if (P.busy_list)
        P.busy_list->bprev = w;
    P.busy_list = w;
    P.busy++;
    publish();
}

static void busy_remove(struct waiter *w)
{
    if (w->bprev)
        w->bprev->bnext = w->bnext;
    else
        P.busy_list = w->bnext;
    if (w->bnext)
        w->bnext->bprev = w->bprev;
    P.busy--;
    publish();
}

/* Set once by each handler thread as it starts (hp_pool_on_handler_thread). */
static __thread bool tl_handler_thread;

bool hp_pool_on_handler_thread(void)
{
    return tl_handler_thread;
}

static void *thread_main(void *arg)
{
    tl_handler_thread = true;
    struct waiter w = {.woken = false, .tid = gettid()};
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w.cv, &ca);
    pthread_condattr_destroy(&ca);

    pthread_mutex_lock(&P.mu);
    P.waking--; /* started for work: about to look for it */
    for (;;) {
        struct hp_pool_job *j = pick();
        if (j) {
            struct hp_pool_queue *q = j->q; /* j may be gone after fn */
            busy_add(&w);
            pthread_mutex_unlock(&P.mu);
            P.fn(j);
            pthread_mutex_lock(&P.mu);
            busy_remove(&w);
            P.runnable -= q_runnable(q);
            q->running--;
            P.runnable += q_runnable(q); /* this thread takes it next */
            if (!q->running && !q->queued)
                queue_emptied(q);
            continue;
        }
        if (P.stop)
            break;
        if (!idle_wait(&w)) {
            P.retired++;
            break;
        }
        if (w.woken)
            P.waking--;
    }
    P.live--;
    publish();
    pthread_cond_broadcast(&P.gone);
    pthread_mutex_unlock(&P.mu);
    pthread_cond_destroy(&w.cv);
    return NULL;
}

/* Start one more thread (P.live already counts it). */
static int spawn(void)
{
    pthread_attr_t a;
    pthread_t t;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    if (P.o.stack_size)
        pthread_attr_setstacksize(&a, P.o.stack_size);
    pthread_attr_setguardsize(&a, HP_THREAD_GUARD);
    int err = pthread_create(&t, &a, thread_main, NULL);
    pthread_attr_destroy(&a);
    return err;
}

/* A thread could not be started: uncount it; say so at most once a
 * second (the job waits for a running thread instead). */
static void spawn_failed(int err)
{
    pthread_mutex_lock(&P.mu);
    P.live--;
    P.started--;
    P.waking--;
    publish();
    bool say = hp_now() - P.last_spawn_error >= 1.0;
    if (say)
        P.last_spawn_error = hp_now();
    int live = P.live;
    pthread_cond_broadcast(&P.gone);
    pthread_mutex_unlock(&P.mu);
    if (say)
        hp_log_error("cannot start a handler thread (%d running): %s", live,
                     strerror(err));
}

/* Under P.mu: jobs that can run exceed the threads on their way to them,
 * none is idle, and the ceiling allows more. */
static bool starved(void)
{
    return P.runnable > P.waking && !P.idle_top && P.live < P.o.max_threads;
}

/* Whether thread tid sleeps (state S or D in /proc: waiting for a lock,
 * a condition, I/O, a timer), rather than running or waiting for a CPU.
 * Without /proc (or for a thread gone meanwhile) it says yes. */
static bool thread_sleeps(pid_t tid)
{
    char path[64], buf[256];
    snprintf(path, sizeof path, "/proc/self/task/%d/stat", (int)tid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) /* no /proc: grow as if it slept, the safe side */
        return true;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return false;
    buf[n] = '\0';
    const char *p = strrchr(buf, ')'); /* after the name, which may hold ) */
    return p && p[1] == ' ' && (p[2] == 'S' || p[2] == 'D');
}

/*
 * Under P.mu, which it drops meanwhile: how many busy threads sleep in
 * their job (a sleep, a query, a lock, a connection from the database
 * pool, a build), at most `want`. Those are the threads worth replacing:
 * busy threads that run or wait for a CPU would gain nothing from more.
 */
static long count_sleeping(long want)
{
    pid_t tids[128];
    int n = 0;
    for (struct waiter *w = P.busy_list; w && n < 128; w = w->bnext)
        tids[n++] = w->tid;
    pthread_mutex_unlock(&P.mu);
    long sleeping = 0;
    for (int i = 0; i < n && sleeping < want; i++)
        sleeping += thread_sleeps(tids[i]);
    pthread_mutex_lock(&P.mu);
    /* the 128 most recently busy stand for all when every one sleeps */
    if (n == 128 && sleeping == n)
        sleeping = want;
    return sleeping;
}

/* Start n threads (already counted in P.live, P.waking, P.started). */
static void spawn_n(long n)
{
    for (long i = 0; i < n; i++) {
        int err = spawn();
        if (err) {
            spawn_failed(err);
            pthread_mutex_lock(&P.mu);
            P.live -= (int)(n - i - 1);
            P.waking -= (int)(n - i - 1);
            P.started -= (unsigned long)(n - i - 1);
            publish();
            pthread_mutex_unlock(&P.mu);
            return;
        }
    }
}

/*
 * The grower thread: once jobs have found no thread for grow_delay_s, it
 * starts one thread per waiting job, up to the number of busy threads that
 * sleep (and the ceiling), in one go: 200 requests that block get their
 * threads after one delay, not one by one, and work that keeps every
 * thread on a CPU starts none. Then it looks again after the delay (four
 * times the delay when no thread slept).
 */
static void *grower_main(void *arg)
{
    pthread_mutex_lock(&P.mu);
    while (!P.stop) {
        if (!starved()) {
            P.starved_since = 0;
            pthread_cond_wait(&P.grow_cv, &P.mu);
            continue;
        }
        if (!P.starved_since)
            P.starved_since = hp_now();
        double left = P.starved_since + P.o.grow_delay_s - hp_now();
        if (left > 0) {
            struct timespec ts;
            timespec_after(&ts, left);
            pthread_cond_timedwait(&P.grow_cv, &P.mu, &ts);
            continue;
        }
        long n = count_sleeping(P.runnable - P.waking);
        if (P.stop)
            break;
        if (n > P.runnable - P.waking) /* the lock was dropped */
            n = P.runnable - P.waking;
        if (n > P.o.max_threads - P.live)
            n = P.o.max_threads - P.live;
        if (n <= 0) {
            /* busy threads run: more would not help; look again later */
            P.starved_since = hp_now() + 3 * P.o.grow_delay_s;
            continue;
        }
        P.live += (int)n;
        P.waking += (int)n;
        P.started += (unsigned long)n;
        P.starved_since = 0;
        publish();
        pthread_mutex_unlock(&P.mu);
        spawn_n(n);
        pthread_mutex_lock(&P.mu);
    }
    pthread_mutex_unlock(&P.mu);
    return NULL;
}

/* ---- the public functions ------------------------------------------------ */

int hp_pool_default_guard(void)
{
    pthread_attr_t a;
    int err = pthread_getattr_default_np(&a);
    if (err)
        return err;
    err = pthread_attr_setguardsize(&a, HP_THREAD_GUARD);
    if (!err)
        err = pthread_setattr_default_np(&a);
    pthread_attr_destroy(&a);
    return err;
}

int hp_pool_start(const struct hp_pool_opts *opts, hp_pool_fn *fn)
{
    assert(opts->min_threads > 0 && P.live == 0);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&P.gone, &ca);
    pthread_cond_init(&P.grow_cv, &ca);
    pthread_condattr_destroy(&ca);

    pthread_mutex_lock(&P.mu);
    P.o = *opts;
    if (P.o.max_threads < P.o.min_threads)
        P.o.max_threads = P.o.min_threads;
    int pct = P.o.share_pct < 1 ? 1 : P.o.share_pct > 100 ? 100 : P.o.share_pct;
    P.share = (int)((long)P.o.max_threads * pct / 100);
    if (P.share < 1)
        P.share = 1;
    P.fn = fn;
    P.stop = false;
    P.retired = 0;
    P.live = P.o.min_threads;
    P.started = (unsigned long)P.o.min_threads;
    P.waking = P.o.min_threads;
    P.runnable = 0;
    P.starved_since = 0;
    publish();
    pthread_mutex_unlock(&P.mu);

    P.has_grower = P.o.grow_delay_s > 0 && P.o.max_threads > P.o.min_threads;
    if (P.has_grower) {
        int err = pthread_create(&P.grower, NULL, grower_main, NULL);
        if (err) {
            hp_log_error("cannot start the handler threads' grower: %s",
                         strerror(err));
            P.has_grower = false;
            P.o.grow_delay_s = 0; /* grow at once instead */
        }
    }

    for (int i = 0; i < opts->min_threads; i++) {
        int err = spawn();
        if (err) {
            /* uncount this thread and the ones not started */
            pthread_mutex_lock(&P.mu);
            P.live -= opts->min_threads - i;
            P.waking -= opts->min_threads - i;
            P.started -= (unsigned long)(opts->min_threads - i);
            publish();
            pthread_mutex_unlock(&P.mu);
            hp_log_error("cannot start handler threads: %s", strerror(err));
            hp_pool_stop();
            return -1;
        }
    }
    return 0;
}

void hp_pool_submit(struct hp_pool_job *job, const char *key)
{
    bool grow = false;

    job->next = NULL;
    pthread_mutex_lock(&P.mu);
    assert(!P.stop);
    struct hp_pool_queue *q = queue_get(key);
    job->q = q;
    if (q->tail)
        q->tail->next = job;
    else
        q->head = job;
    q->tail = job;
    P.runnable -= q_runnable(q);
    q->queued++;
    P.queued++;
    P.runnable += q_runnable(q);
    if (!q->in_ring)
        ring_append(q);
    /* A key at its share waits for one of its own jobs to finish: the
     * thread finishing it takes the next. */
    if (P.runnable > P.waking) {
        if (P.idle_top) {
            struct waiter *w = P.idle_top;
            idle_unlink(w);
            w->woken = true;
            P.waking++;
            pthread_cond_signal(&w->cv);
        } else if (P.live < P.o.max_threads && !P.has_grower) {
            P.live++;
            P.started++;
            P.waking++;
            publish();
            grow = true;
        } else if (P.live < P.o.max_threads && !P.starved_since) {
            P.starved_since = hp_now(); /* the grower starts the clock */
            pthread_cond_signal(&P.grow_cv);
        }
    }
    pthread_mutex_unlock(&P.mu);
    if (grow) {
        int err = spawn();
        if (err)
            spawn_failed(err);
    }
}

void hp_pool_stop(void)
{
    pthread_mutex_lock(&P.mu);
    P.stop = true;
    for (struct waiter *w = P.idle_top; w; w = w->next)
        pthread_cond_signal(&w->cv);
    pthread_cond_signal(&P.grow_cv);
    while (P.live > 0)
        pthread_cond_wait(&P.gone, &P.mu);
    assert(!P.ring && P.queued == 0);
    for (int i = 0; i < NBUCKETS; i++) {
        while (P.buckets[i]) {
            struct hp_pool_queue *q = P.buckets[i];
            P.buckets[i] = q->hnext;
            free(q);
        }
    }
    P.nqueues = P.nempty = 0;
    pthread_mutex_unlock(&P.mu);
    if (P.has_grower)
        pthread_join(P.grower, NULL);
    P.has_grower = false;
    pthread_cond_destroy(&P.gone);
    pthread_cond_destroy(&P.grow_cv);
}

void hp_pool_stats(struct hp_pool_stats *out)
{
    pthread_mutex_lock(&P.mu);
    *out = (struct hp_pool_stats){
        .live = P.live,
        .busy = P.busy,
        .idle = P.idle,
        .min = P.o.min_threads,
        .max = P.o.max_threads,
        .share = P.share,
        .queued = P.queued,
        .started = P.started,
        .retired = P.retired,
    };
    pthread_mutex_unlock(&P.mu);
}

void hp_pool_key_stats(const char *key, int *running, long *queued)
{
    pthread_mutex_lock(&P.mu);
    struct hp_pool_queue *q = queue_find(key, key_hash(key));
    *running = q ? q->running : 0;
    *queued = q ? q->queued : 0;
    pthread_mutex_unlock(&P.mu);
}

int hp_pool_size(void)
{
    pthread_mutex_lock(&P.mu);
    int n = P.live;
    pthread_mutex_unlock(&P.mu);
    return n;
}

int hp_pool_busy(void)
{
    pthread_mutex_lock(&P.mu);
    int n = P.busy;
    pthread_mutex_unlock(&P.mu);
    return n;
}
