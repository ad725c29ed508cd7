/*
 * test_pool.c - the handler threads (pool.c): growth up to the ceiling
 * when work waits, retirement of idle threads down to the floor,
 * round-robin between keys, the per-key share cap, and stop running what
 * is queued.
 */
#define _GNU_SOURCE 1
#include "hp.h"
#include "pool.h"
#include "t.h"

#include <stddef.h>
#include <time.h>
#include <unistd.h>

struct tjob {
    struct hp_pool_job job;
    const char *key;
    int id;
    bool block; /* wait for the gate to open */
    bool spin;  /* ... on a CPU, without sleeping */
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static bool gate_open;
static int started[64], nstarted, ndone;

static atomic_bool spin_gate;

static void run(struct hp_pool_job *j)
{
    struct tjob *t = (struct tjob *)((char *)j - offsetof(struct tjob, job));
    if (t->spin) {
        pthread_mutex_lock(&mu);
        nstarted++;
        pthread_mutex_unlock(&mu);
        while (!atomic_load(&spin_gate))
            ;
        pthread_mutex_lock(&mu);
        ndone++;
        pthread_cond_broadcast(&cv);
        pthread_mutex_unlock(&mu);
        return;
    }
    pthread_mutex_lock(&mu);
    if (nstarted < 64)
        started[nstarted] = t->id;
    nstarted++;
    pthread_cond_broadcast(&cv);
    while (t->block && !gate_open)
        pthread_cond_wait(&cv, &mu);
    ndone++;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
}

static void reset(void)
{
    pthread_mutex_lock(&mu);
    gate_open = false;
    nstarted = ndone = 0;
    memset(started, 0, sizeof started);
    pthread_mutex_unlock(&mu);
}

static void open_gate(void)
{
    pthread_mutex_lock(&mu);
    gate_open = true;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
}

/* Wait up to 5 s until *counter reaches n; true if it did. */
static bool wait_count(int *counter, int n)
{
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 5;
    pthread_mutex_lock(&mu);
    while (*counter < n && pthread_cond_timedwait(&cv, &mu, &dl) == 0)
        ;
    bool ok = *counter >= n;
    pthread_mutex_unlock(&mu);
    return ok;
}

static struct hp_pool_opts opts(int min, int max, double idle, int share)
{
    return (struct hp_pool_opts){.min_threads = min,
                                 .max_threads = max,
                                 .stack_size = 128 * 1024,
                                 .idle_s = idle,
                                 .share_pct = share};
}

static void submit(struct tjob *t, int id, const char *key, bool block)
{
    *t = (struct tjob){.key = key, .id = id, .block = block};
    hp_pool_submit(&t->job, key);
}

static void test_grows_to_the_ceiling_and_shrinks_to_the_floor(void)
{
    struct tjob j[10];
    struct hp_pool_stats s;
    struct hp_pool_opts o = opts(2, 8, 0.1, 100);
    reset();
    CHECK(hp_pool_start(&o, run) == 0);
    hp_pool_stats(&s);
    CHECK(s.live == 2 && s.busy == 0 && s.min == 2 && s.max == 8);
    for (int i = 0; i < 6; i++)
        submit(&j[i], i, i % 2 ? "a" : "b", true);
    CHECK(wait_count(&nstarted, 6)); /* all run at once: the pool grew */
    hp_pool_stats(&s);
    CHECK(s.live == 6 && s.busy == 6 && s.queued == 0);
    for (int i = 6; i < 10; i++)
        submit(&j[i], i, "c", true);
    CHECK(wait_count(&nstarted, 8));
    usleep(50000);
    hp_pool_stats(&s);
    CHECK(s.live == 8 && s.busy == 8 && s.queued == 2); /* the ceiling */
    CHECK(nstarted == 8);
    open_gate();
    CHECK(wait_count(&ndone, 10));
    /* idle for 0.1 s: back to the floor */
    for (int i = 0; i < 100; i++) {
        hp_pool_stats(&s);
        if (s.live == 2)
            break;
        usleep(20000);
    }
    CHECK(s.live == 2 && s.retired == 6 && s.started == 8);
    hp_pool_stop();
    hp_pool_stats(&s);
    CHECK(s.live == 0);
}

static void test_growth_waits_for_the_delay_then_starts_all_at_once(void)
{
    struct tjob j[6];
    struct hp_pool_stats s;
    struct hp_pool_opts o = opts(1, 8, 0, 100);
    o.grow_delay_s = 0.2;
    reset();
    CHECK(hp_pool_start(&o, run) == 0);
    for (int i = 0; i < 6; i++)
        submit(&j[i], i, "k", true);
    CHECK(wait_count(&nstarted, 1));
    usleep(50000); /* within the delay: the one thread only */
    hp_pool_stats(&s);
    CHECK(s.live == 1 && s.busy == 1 && s.queued == 5 && nstarted == 1);
    CHECK(wait_count(&nstarted, 6)); /* after it: one thread per job */
    hp_pool_stats(&s);
    CHECK(s.live == 6 && s.started == 6 && s.queued == 0);
    open_gate();
    CHECK(wait_count(&ndone, 6));
    hp_pool_stop();
}

/* Jobs that keep their threads on a CPU start no threads: more would only
 * compete for the same CPUs. */
static void test_no_growth_for_jobs_that_run(void)
{
    struct tjob j[4];
    struct hp_pool_stats s;
    struct hp_pool_opts o = opts(1, 8, 0, 100);
    o.grow_delay_s = 0.02;
    reset();
    atomic_store(&spin_gate, false);
    CHECK(hp_pool_start(&o, run) == 0);
    for (int i = 0; i < 4; i++) {
        j[i] = (struct tjob){.key = "cpu", .id = i, .spin = true};
        hp_pool_submit(&j[i].job, "cpu");
    }
    usleep(300000); /* many times the delay */
    hp_pool_stats(&s);
    CHECK(s.live == 1 && s.busy == 1 && s.queued == 3);
    atomic_store(&spin_gate, true);
    CHECK(wait_count(&ndone, 4));
    hp_pool_stop();
}

static void test_keys_are_served_round_robin(void)
{
    struct tjob x, a[5], b;
    struct hp_pool_opts o = opts(1, 1, 0, 100); /* one thread: an order */
    reset();
    CHECK(hp_pool_start(&o, run) == 0);
    submit(&x, 100, "x", true);
    CHECK(wait_count(&nstarted, 1));
    for (int i = 0; i < 5; i++)
        submit(&a[i], 1 + i, "a", false);
    submit(&b, 50, "b", false); /* behind a's backlog in arrival order */
    int ra, rb;
    long qa, qb;
    hp_pool_key_stats("a", &ra, &qa);
    hp_pool_key_stats("b", &rb, &qb);
    CHECK(ra == 0 && qa == 5 && rb == 0 && qb == 1);
    hp_pool_key_stats("x", &ra, &qa);
    CHECK(ra == 1 && qa == 0);
    open_gate();
    CHECK(wait_count(&ndone, 7));
    /* x, then a's first, then b's (not a's five), then a's rest in order */
    int want[] = {100, 1, 50, 2, 3, 4, 5};
    for (int i = 0; i < 7; i++)
        CHECK(started[i] == want[i]);
    for (int i = 0; i < 100; i++) { /* the pool counts after run returns */
        hp_pool_key_stats("a", &ra, &qa);
        if (ra == 0)
            break;
        usleep(10000);
    }
    CHECK(ra == 0 && qa == 0);
    hp_pool_stop();
}

static void test_one_key_holds_at_most_its_share(void)
{
    struct tjob a[5], b;
    struct hp_pool_stats s;
    struct hp_pool_opts o = opts(1, 10, 0, 30); /* 3 threads per key */
    reset();
    CHECK(hp_pool_start(&o, run) == 0);
    for (int i = 0; i < 5; i++)
        submit(&a[i], 1 + i, "slow", true);
    CHECK(wait_count(&nstarted, 3));
    usleep(50000);
    int r;
    long q;
    hp_pool_key_stats("slow", &r, &q);
    hp_pool_stats(&s);
    CHECK(s.share == 3);
    CHECK(r == 3 && q == 2 && nstarted == 3);
    /* no thread is started for work that may not run yet */
    CHECK(s.live == 3 && s.busy == 3);
    /* another key runs at once, beside the capped one */
    submit(&b, 50, "fast", false);
    CHECK(wait_count(&ndone, 1));
    CHECK(started[3] == 50);
    open_gate();
    CHECK(wait_count(&ndone, 6));
    hp_pool_stop();
}

static void test_stop_runs_what_is_queued(void)
{
    struct tjob j[20];
    struct hp_pool_opts o = opts(1, 1, 0, 100);
    reset();
    CHECK(hp_pool_start(&o, run) == 0);
    submit(&j[0], 0, "k", true);
    CHECK(wait_count(&nstarted, 1));
    for (int i = 1; i < 20; i++)
        submit(&j[i], i, i % 3 ? "k" : "m", false);
    open_gate();
    hp_pool_stop();
    CHECK(ndone == 20);
}

/* The guard below this thread's stack, bytes (0 if unknown). */
static size_t own_guard(void)
{
    pthread_attr_t a;
    size_t g = 0;
    if (pthread_getattr_np(pthread_self(), &a) == 0) {
        pthread_attr_getguardsize(&a, &g);
        pthread_attr_destroy(&a);
    }
    return g;
}

static size_t seen_guard;

static void guard_job(struct hp_pool_job *j)
{
    (void)j;
    pthread_mutex_lock(&mu);
    seen_guard = own_guard();
    ndone++;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
}

#ifndef __SANITIZE_THREAD__
static void *guard_thread(void *arg)
{
    *(size_t *)arg = own_guard();
    return NULL;
}
#endif

/* Handler threads, and threads made without attributes after
 * hp_pool_default_guard (libmicrohttpd's), have HP_THREAD_GUARD below
 * their stack: a frame tcc compiled that jumps one page still faults. */
static void test_threads_have_a_large_stack_guard(void)
{
    struct tjob j;
    struct hp_pool_opts o = opts(1, 1, 0, 100);
    o.stack_size = 512 << 10;
    reset();
    CHECK(hp_pool_start(&o, guard_job) == 0);
    submit(&j, 1, "k", false);
    CHECK(wait_count(&ndone, 1));
    hp_pool_stop();
    CHECK(seen_guard >= HP_THREAD_GUARD);
    /* As large as the largest --thread-stack-size (1 GiB): a 16 MiB frame
     * jumped the old 8 MiB guard into the next thread's stack. */
    if (sizeof(void *) == 8)
        CHECK(seen_guard >= (size_t)1 << 30);
    CHECK(hp_pool_default_guard() == 0);
#ifndef __SANITIZE_THREAD__
    /* ThreadSanitizer's pthread_create turns a NULL attr into
     * pthread_attr_init's, so the process defaults do not reach threads
     * made without attributes under it (ours set the guard themselves). */
    pthread_t t;
    size_t g = 0;
    CHECK(pthread_create(&t, NULL, guard_thread, &g) == 0);
    pthread_join(t, NULL);
    CHECK(g >= HP_THREAD_GUARD);
#endif
}

int main(int argc, char **argv)
{
    T_INIT(argc, argv);
    T_RUN(test_grows_to_the_ceiling_and_shrinks_to_the_floor);
    T_RUN(test_growth_waits_for_the_delay_then_starts_all_at_once);
    T_RUN(test_no_growth_for_jobs_that_run);
    T_RUN(test_keys_are_served_round_robin);
    T_RUN(test_one_key_holds_at_most_its_share);
    T_RUN(test_stop_runs_what_is_queued);
    T_RUN(test_threads_have_a_large_stack_guard);
    T_DONE();
}
