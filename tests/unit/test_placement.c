/*
 * test_placement.c - placement.c: where a page version runs. A run that
 * was only preempted (slow by the wall clock, little CPU, no voluntary
 * context switch) must never demote a version; a run that blocked must;
 * the run probe must see a sleep as blocked and a spin as not.
 */
#define _GNU_SOURCE /* pthread_attr_setaffinity_np, CPU_SET */
#include "t.h"
#include "../../src/placement.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

static hp_version *version(void)
{
    hp_version *v = calloc(1, sizeof *v);
    v->path = "/t/page.c";
    return v;
}

/* An inline run whose wait for a CPU is unknown (no schedstat, or a run
 * under HP_WAIT_NS). */
static struct hp_run inline_run(int64_t wall_ns)
{
    return (struct hp_run){
        .wall_ns = wall_ns, .own_ns = wall_ns, .queued_ns = -1};
}

/* An inline run that waited at most queued_ns for a CPU. */
static struct hp_run inline_run_q(int64_t wall_ns, int64_t queued_ns)
{
    return (struct hp_run){.wall_ns = wall_ns,
                           .own_ns = wall_ns - queued_ns,
                           .queued_ns = queued_ns};
}

static struct hp_run probed_run(int64_t wall_ns, int64_t own_ns, bool blocked)
{
    return (struct hp_run){.wall_ns = wall_ns,
                           .probed = true,
                           .blocked = blocked,
                           .own_ns = own_ns};
}

/* Fast probed runs until v is promoted: how many it took (at most 8 times
 * the promotion count; 0: not promoted by then). */
static int runs_to_promote(hp_version *v)
{
    struct hp_run fast = probed_run(20000, 15000, false);
    for (int i = 1; i <= 8 * HP_PROMOTE_RUNS; i++)
        if (hp_place_learn(v, &fast, true) == HP_PLACE_PROMOTED)
            return atomic_load(&v->run_inline) ? i : -i;
    return 0;
}

static void promote(hp_version *v)
{
    CHECK(runs_to_promote(v) == HP_PROMOTE_RUNS);
}

static void test_promoted_after_fast_runs(void)
{
    hp_version *v = version();
    promote(v);
    free(v);
}

/* Runs that waited (a query's round trip) longer than HP_WAIT_NS (a
 * PostgreSQL across a network: 600 µs) are no proof of a page an event loop
 * could run: such a version is never promoted, and not struck either.
 * Short waits (the same machine: 60 µs) promote it; once promoted, an
 * inline run over HP_WAIT_NS by the wall clock makes it a suspect, where a
 * version that never waited may take up to HP_SLOW_NS inline. */
static void test_runs_that_waited_long_do_not_promote(void)
{
    hp_version *v = version();
    struct hp_run far = probed_run(600000, 600000, true);
    for (int i = 0; i < 4 * HP_PROMOTE_RUNS; i++)
        CHECK(hp_place_learn(v, &far, true) == HP_PLACE_KEPT);
    CHECK(!atomic_load(&v->run_inline) && !atomic_load(&v->slow));
    CHECK(atomic_load(&v->waits));

    struct hp_run near = probed_run(60000, 60000, true);
    int i = 1;
    while (i < 2 * HP_PROMOTE_RUNS &&
           hp_place_learn(v, &near, true) != HP_PLACE_PROMOTED)
        i++;
    CHECK(i == HP_PROMOTE_RUNS && atomic_load(&v->run_inline));
    struct hp_run inl = inline_run(HP_WAIT_NS - 1000);
    CHECK(hp_place_learn(v, &inl, true) == HP_PLACE_KEPT);
    inl = inline_run(HP_WAIT_NS + 1000);
    CHECK(hp_place_learn(v, &inl, true) == HP_PLACE_SUSPECT);
    CHECK(!atomic_load(&v->run_inline) && !atomic_load(&v->slow));
    free(v);

    hp_version *w = version(); /* never waited: 1 ms inline is fine */
    promote(w);
    inl = inline_run(1000000);
    CHECK(hp_place_learn(w, &inl, true) == HP_PLACE_KEPT);
    CHECK(atomic_load(&w->run_inline) && !atomic_load(&w->waits));
    free(w);
}

static void test_no_promotion_without_inline(void)
{
    hp_version *v = version();
    struct hp_run fast = probed_run(20000, 15000, false);
    for (int i = 0; i < 2 * HP_PROMOTE_RUNS; i++)
        CHECK(hp_place_learn(v, &fast, false) == HP_PLACE_KEPT);
    CHECK(!atomic_load(&v->run_inline));
    free(v);
}

/* Inline runs preempted for 8 ms (the probe sees the thread wait for a
 * CPU), again and again: each sends the version back to the handler
 * threads for a while, none demotes it or makes its re-promotion slower,
 * and fast probed runs promote it again. (Judged by wall time, the third
 * one demoted it for good.) So do preemptions of 146 ms, over the blocked
 * mark by the wall clock (an overloaded machine: a fresh-user test saw a
 * page of 50 µs take 147 ms inline): neither strikes nor demotes. */
static void test_preempted_inline_runs_never_demote(void)
{
    hp_version *v = version();
    promote(v);
    for (int round = 0; round < 10; round++) {
        struct hp_run slow = inline_run_q(8000000, 7950000);
        if (round % 2)
            slow = inline_run_q(146000000, 145960000);
        CHECK(hp_place_learn(v, &slow, true) == HP_PLACE_SUSPECT);
        CHECK(!atomic_load(&v->run_inline));
        CHECK(!atomic_load(&v->slow));
        /* on the handler threads: preempted there too, but its own time
         * (CPU, no voluntary switch) is short */
        struct hp_run preempted = probed_run(9000000, 30000, false);
        CHECK(hp_place_learn(v, &preempted, true) == HP_PLACE_KEPT);
        CHECK(runs_to_promote(v) == HP_PROMOTE_RUNS - 1);
    }
    CHECK(!atomic_load(&v->slow) && atomic_load(&v->slow_runs) == 0);
    free(v);
}

/* An inline run of 146 ms whose wait for a CPU is unknown might have been
 * preempted: a strike and a suspect whose re-promotion needs twice the
 * fast runs each time; the third demotes. One of 2 s (no preemption lasts
 * that long) demotes at once, for good. */
static void test_long_inline_runs_demote(void)
{
    hp_version *v = version();
    promote(v);
    struct hp_run stall = inline_run(146000000);
    CHECK(hp_place_learn(v, &stall, true) == HP_PLACE_SUSPECT);
    CHECK(!atomic_load(&v->slow) && !atomic_load(&v->run_inline));
    CHECK(runs_to_promote(v) == 2 * HP_PROMOTE_RUNS);
    CHECK(hp_place_learn(v, &stall, true) == HP_PLACE_SUSPECT);
    CHECK(runs_to_promote(v) == 4 * HP_PROMOTE_RUNS);
    CHECK(hp_place_learn(v, &stall, true) == HP_PLACE_DEMOTED);
    CHECK(atomic_load(&v->slow) && !atomic_load(&v->run_inline));
    free(v);
    /* 2 s inline: no preemption lasts that long; demoted at once */
    v = version();
    promote(v);
    stall = inline_run(2000000000);
    CHECK(hp_place_learn(v, &stall, true) == HP_PLACE_DEMOTED);
    CHECK(atomic_load(&v->slow) && !atomic_load(&v->run_inline));
    /* never promoted again, however fast it runs */
    struct hp_run fast = probed_run(20000, 15000, false);
    for (int i = 0; i < 4 * HP_PROMOTE_RUNS; i++)
        hp_place_learn(v, &fast, true);
    CHECK(!atomic_load(&v->run_inline));
    free(v);
}

/* An inline run of 60 ms of which at most 0.1 ms was a wait for a CPU:
 * the page blocked (or spun) that long on its event loop; demoted at
 * once, for good, as docs/design.md says (it was only a suspect, promoted
 * again after 32 fast runs). */
static void test_inline_run_that_blocked_demotes(void)
{
    hp_version *v = version();
    promote(v);
    struct hp_run blocked = inline_run_q(60000000, 100000);
    CHECK(hp_place_learn(v, &blocked, true) == HP_PLACE_DEMOTED);
    CHECK(atomic_load(&v->slow) && !atomic_load(&v->run_inline));
    CHECK(runs_to_promote(v) == 0);
    free(v);
    /* 60 ms by the wall clock, 55 ms of it waiting for a CPU: a suspect */
    v = version();
    promote(v);
    blocked = inline_run_q(60000000, 55000000);
    CHECK(hp_place_learn(v, &blocked, true) == HP_PLACE_SUSPECT);
    CHECK(!atomic_load(&v->slow));
    free(v);
}

/* Inline runs of 10 ms that no wait for a CPU explains (or whose wait is
 * unknown): each suspicion doubles the fast runs re-promotion needs, up to
 * HP_PROMOTE_RUNS << HP_BACKOFF_MAX; never a demotion by itself. */
static void test_held_inline_runs_back_off(void)
{
    hp_version *v = version();
    promote(v);
    struct hp_run fast = probed_run(20000, 15000, false);
    for (int k = 1; k <= HP_BACKOFF_MAX + 2; k++) {
        struct hp_run held =
            k % 2 ? inline_run_q(10000000, 200000) : inline_run(10000000);
        CHECK(hp_place_learn(v, &held, true) == HP_PLACE_SUSPECT);
        int need = HP_PROMOTE_RUNS << (k < HP_BACKOFF_MAX ? k : HP_BACKOFF_MAX);
        int i = 1;
        while (hp_place_learn(v, &fast, true) != HP_PLACE_PROMOTED && i <= need)
            i++;
        CHECK(i == need);
        CHECK(atomic_load(&v->run_inline) && !atomic_load(&v->slow));
    }
    free(v);
}

/* A probed strike (a run over the slow mark) starts the count towards
 * promotion afresh: HP_PROMOTE_RUNS fast runs in a row. */
static void test_probed_strike_restarts_promotion(void)
{
    hp_version *v = version();
    struct hp_run fast = probed_run(20000, 15000, false);
    struct hp_run slowish = probed_run(5000000, 5000000, true);
    for (int i = 0; i < HP_PROMOTE_RUNS - 1; i++)
        CHECK(hp_place_learn(v, &fast, true) == HP_PLACE_KEPT);
    CHECK(hp_place_learn(v, &slowish, true) == HP_PLACE_KEPT);
    CHECK(runs_to_promote(v) == HP_PROMOTE_RUNS);
    free(v);
}

/* A page that blocks block_ns once in every `every` runs, run `runs` times
 * where hp_place_learn puts it; known: a slow inline run's wait for a CPU
 * is known (30 µs) rather than unknown. How many of its blocking runs
 * were inline (each stalls every connection of its event loop). */
static int inline_blocks(hp_version *v, int every, int64_t block_ns, int runs,
                         bool known)
{
    int stalls = 0;
    for (int i = 0; i < runs; i++) {
        bool blocks = i % every == every - 1;
        struct hp_run r;
        if (atomic_load(&v->run_inline)) {
            int64_t wall = blocks ? block_ns : 20000;
            r = blocks && known ? inline_run_q(wall, 30000) : inline_run(wall);
            stalls += blocks;
        } else {
            r = blocks ? probed_run(block_ns, block_ns, true)
                       : probed_run(20000, 15000, false);
        }
        hp_place_learn(v, &r, true);
    }
    return stalls;
}

/* tests/e2e/sched.py's pages that block now and then (FRESH8-4): one that
 * sleeps 200 ms once in 1100 runs stalled its event loop at each sleep
 * (strikes expired in between), one that sleeps 45 ms once in 40 runs at
 * each sleep (no strike, promoted again after 32 fast runs). Now: once,
 * then demoted for good; when the wait for a CPU is unknown, at most
 * HP_SLOW_STRIKES times. */
static void test_page_that_blocks_now_and_then_stalls_once(void)
{
    static const struct {
        int every;
        int64_t block_ns;
        int runs;
        bool known;
        int most;
    } c[] = {
        {1100, 200000000, 11000, true, 1},
        {40, 45000000, 4000, true, 1},
        {1100, 200000000, 11000, false, HP_SLOW_STRIKES},
        {40, 45000000, 4000, false, 1},
        {40, 3000000, 4000, true, 1},
    };
    for (size_t k = 0; k < sizeof c / sizeof c[0]; k++) {
        hp_version *v = version();
        int stalls =
            inline_blocks(v, c[k].every, c[k].block_ns, c[k].runs, c[k].known);
        if (stalls > c[k].most)
            printf("  case %zu: %d stalls\n", k, stalls);
        CHECK(stalls >= 1 && stalls <= c[k].most);
        CHECK(atomic_load(&v->slow) && !atomic_load(&v->run_inline));
        free(v);
    }
}

/* An inline run of 8 ms makes the version a suspect; on the handler
 * threads its next run blocks for 60 ms and demotes it for good. */
static void test_suspect_that_blocks_is_demoted(void)
{
    hp_version *v = version();
    promote(v);
    struct hp_run slow = inline_run(8000000);
    CHECK(hp_place_learn(v, &slow, true) == HP_PLACE_SUSPECT);
    CHECK(atomic_load(&v->suspect));
    struct hp_run blocked = probed_run(60000000, 60000000, true);
    CHECK(hp_place_learn(v, &blocked, true) == HP_PLACE_DEMOTED);
    CHECK(atomic_load(&v->slow) && !atomic_load(&v->run_inline));
    CHECK(runs_to_promote(v) == 0);
    free(v);
}

/* Runs that block for a few milliseconds (over the slow mark, under the
 * blocked mark) demote after HP_SLOW_STRIKES of them; a run that spends
 * that long on the CPU counts as well (it holds an event loop as long). */
static void test_slowish_probed_runs_strike(void)
{
    hp_version *v = version();
    struct hp_run slowish = probed_run(5000000, 5000000, true);
    for (int i = 0; i < HP_SLOW_STRIKES - 1; i++)
        CHECK(hp_place_learn(v, &slowish, true) == HP_PLACE_KEPT);
    CHECK(hp_place_learn(v, &slowish, true) == HP_PLACE_DEMOTED);
    free(v);

    v = version();
    struct hp_run busy = probed_run(5000000, 4800000, false);
    for (int i = 0; i < HP_SLOW_STRIKES - 1; i++)
        CHECK(hp_place_learn(v, &busy, true) == HP_PLACE_KEPT);
    CHECK(hp_place_learn(v, &busy, true) == HP_PLACE_DEMOTED);
    free(v);
}

/* Strikes expire after HP_STRIKE_EXPIRY fast runs. */
static void test_strikes_expire(void)
{
    hp_version *v = version();
    struct hp_run slowish = probed_run(5000000, 5000000, true);
    struct hp_run fast = probed_run(20000, 15000, false);
    for (int round = 0; round < 5; round++) {
        for (int i = 0; i < HP_SLOW_STRIKES - 1; i++)
            CHECK(hp_place_learn(v, &slowish, true) == HP_PLACE_KEPT);
        for (int i = 0; i < HP_STRIKE_EXPIRY; i++)
            hp_place_learn(v, &fast, true);
    }
    CHECK(!atomic_load(&v->slow));
    free(v);
}

/* The probe's time runnable but waiting for a CPU, 0 when unknown. */
static int64_t queued(const struct hp_run *r)
{
    return r->queued_ns > 0 ? r->queued_ns : 0;
}

/* A real-time thread holds the CPU this thread sleeps on. */
struct hog {
    int cpu;
    atomic_bool started;
    atomic_bool go; /* the creator's probe has started */
};

static void *hog_run(void *arg)
{
    struct hog *h = arg;
    atomic_store(&h->started, true);
    /* Let the creator start its probe and its sleep first (a real-time
     * thread runs at once, before pthread_create even returns; under
     * ThreadSanitizer pthread_create returns well after the thread began,
     * so a fixed nap alone could end before the probe started). Polled
     * with naps: a spin here would keep the creator, on the same CPU,
     * from ever running. */
    struct timespec poll = {0, 100000}, nap = {0, 500000};
    while (!atomic_load(&h->go))
        nanosleep(&poll, NULL);
    nanosleep(&nap, NULL);
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do
        clock_gettime(CLOCK_MONOTONIC, &t);
    while ((t.tv_sec - t0.tv_sec) * 1000000000L + (t.tv_nsec - t0.tv_nsec) <
           8000000);
    return NULL;
}

/* This thread may run on every CPU again. */
static void unpin(void)
{
    cpu_set_t all;
    CPU_ZERO(&all);
    for (int c = 0; c < CPU_SETSIZE; c++)
        CPU_SET(c, &all);
    (void)sched_setaffinity(0, sizeof all, &all);
}

/* A run that blocks 1 ms and then, woken, waits 7.5 ms more for a CPU
 * that a real-time thread holds (a busy machine) is judged by its own
 * time, 1 ms and a little, not by its wall time: no strike, where wall time
 * alone made three such runs demote /db for good under bench/tfb.sh. Needs root
 * (SCHED_FIFO) and /proc/thread-self/schedstat; skipped without them. */
static void test_probe_leaves_out_the_wait_for_a_cpu(void)
{
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(0, &one);
    pthread_attr_t a;
    pthread_attr_init(&a);
    struct sched_param prio = {.sched_priority = 1};
    if (pthread_attr_setaffinity_np(&a, sizeof one, &one) != 0 ||
        pthread_attr_setinheritsched(&a, PTHREAD_EXPLICIT_SCHED) != 0 ||
        pthread_attr_setschedpolicy(&a, SCHED_FIFO) != 0 ||
        pthread_attr_setschedparam(&a, &prio) != 0 ||
        sched_setaffinity(0, sizeof one, &one) != 0) {
        pthread_attr_destroy(&a);
        printf("  (skipped: cannot pin threads to CPU 0)\n");
        return;
    }
    struct hog h = {0};
    pthread_t t;
    int created = pthread_create(&t, &a, hog_run, &h);
    pthread_attr_destroy(&a);
    if (created != 0) {
        unpin();
        printf("  (skipped: no SCHED_FIFO thread: not root?)\n");
        return;
    }
    struct hp_run_probe p;
    hp_run_probe_start(&p, true);
    atomic_store(&h.go, true);
    if (p.delay0 < 0) {
        pthread_join(t, NULL);
        unpin();
        printf("  (skipped: no /proc/thread-self/schedstat)\n");
        return;
    }
    /* The hog wakes at about 0.6 ms and holds the CPU for 8 ms: this
     * sleep ends at 1 ms, and its thread waits 7.5 ms more for the CPU. */
    usleep(1000);
    struct hp_run r = hp_run_probe_stop(&p, 0);
    pthread_join(t, NULL);
    CHECK(atomic_load(&h.started));
    CHECK(r.probed && r.blocked);
    CHECK(r.wall_ns >= 7000000);
    CHECK(r.queued_ns >= 5000000);
    CHECK(r.own_ns < HP_SLOW_NS);
    hp_version *v = version();
    for (int i = 0; i < HP_SLOW_STRIKES; i++)
        CHECK(hp_place_learn(v, &r, true) == HP_PLACE_KEPT);
    CHECK(!atomic_load(&v->slow));
    free(v);
    unpin();
}

/* The probe: a sleep is a voluntary switch (blocked, own time = wall), a
 * spin on the CPU is not (own time = CPU time). */
static void test_probe_tells_sleep_from_spin(void)
{
    struct hp_run_probe p;
    hp_run_probe_start(&p, true);
    usleep(5000);
    struct hp_run r = hp_run_probe_stop(&p, 0);
    CHECK(r.probed && r.blocked);
    CHECK(r.wall_ns >= 5000000 && r.own_ns == r.wall_ns - queued(&r));

    hp_run_probe_start(&p, true);
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do
        clock_gettime(CLOCK_MONOTONIC, &t);
    while ((t.tv_sec - t0.tv_sec) * 1000000000L + (t.tv_nsec - t0.tv_nsec) <
           3000000);
    r = hp_run_probe_stop(&p, 0);
    CHECK(r.probed && !r.blocked);
    CHECK(r.wall_ns >= 3000000 && r.own_ns >= 0 && r.own_ns <= r.wall_ns);
    /* its CPU time, exactly: a spin of 3 ms is 3 ms and a little less */
    CHECK(r.preempted || r.own_ns >= r.wall_ns * 9 / 10);
    CHECK(r.own_ns >= 2500000 || r.preempted);

    hp_run_probe_start(&p, false);
    r = hp_run_probe_stop(&p, 0);
    CHECK(!r.probed && r.own_ns == r.wall_ns);
}

/* Time excused (taking a pooled connection) is not the run's own: a run
 * that slept 5 ms, 4 ms of it excused, is a fast run; excusing more than
 * the run took leaves 0, never a negative time. */
static void test_probe_excuses_pool_time(void)
{
    struct hp_run_probe p;
    hp_run_probe_start(&p, true);
    usleep(5000);
    struct hp_run r = hp_run_probe_stop(&p, 4000000);
    CHECK(r.probed && r.blocked && r.wall_ns >= 5000000);
    CHECK(r.own_ns == r.wall_ns - queued(&r) - 4000000);

    hp_run_probe_start(&p, false);
    usleep(1000);
    r = hp_run_probe_stop(&p, INT64_C(1000000000));
    CHECK(!r.probed && r.wall_ns >= 1000000 && r.own_ns == 0);

    /* Runs of 3 ms that were all taking a connection are no strikes. */
    hp_version *v = calloc(1, sizeof *v);
    v->path = "/p.c";
    for (int i = 0; i < HP_SLOW_STRIKES + 1; i++) {
        hp_run_probe_start(&p, true);
        usleep(3000);
        r = hp_run_probe_stop(&p, 10000000);
        hp_place_learn(v, &r, true);
    }
    CHECK(!atomic_load(&v->slow));
    free(v);
}

/* Runs that waited through hp_wait_fd and held their thread under
 * HP_CORO_NS, the waits left out, send the version to the reactor after
 * hp_place_promote_runs of them in a row; one that held it longer, or did
 * not wait, starts the count afresh. */
static int coro_runs_to_promote(hp_version *v)
{
    /* a /db-like run: 300 µs of wall time, 240 µs of it waiting */
    struct hp_run r = probed_run(300000, 300000, true);
    for (int i = 1; i <= 8 * HP_PROMOTE_RUNS; i++) {
        hp_place_learn_coro_fit(v, &r, 240000);
        if (atomic_load(&v->run_coro))
            return i;
    }
    return 0;
}

static void test_runs_that_wait_briefly_go_to_the_reactor(void)
{
    hp_version *v = version();
    CHECK(coro_runs_to_promote(v) == HP_PROMOTE_RUNS);
    free(v);

    /* a run that held its thread 1.5 ms besides its waits starts over */
    v = version();
    struct hp_run r = probed_run(300000, 300000, true);
    for (int i = 0; i < HP_PROMOTE_RUNS - 1; i++)
        hp_place_learn_coro_fit(v, &r, 240000);
    struct hp_run held = probed_run(2000000, 2000000, true);
    hp_place_learn_coro_fit(v, &held, 500000);
    CHECK(!atomic_load(&v->run_coro));
    CHECK(coro_runs_to_promote(v) == HP_PROMOTE_RUNS);
    free(v);

    /* runs that never waited through hp_wait_fd never go there */
    v = version();
    struct hp_run cpu = probed_run(20000, 15000, false);
    for (int i = 0; i < 4 * HP_PROMOTE_RUNS; i++)
        hp_place_learn_coro_fit(v, &cpu, 0);
    CHECK(!atomic_load(&v->run_coro));
    free(v);
}

/* On the reactor: a stretch over HP_SLOW_NS sends the version back to
 * the handler threads, and it needs twice the runs to return; over
 * HP_BLOCKED_NS it never returns. Stretches under HP_SLOW_NS change
 * nothing. */
static void test_a_stretch_that_holds_the_reactor_sends_it_back(void)
{
    hp_version *v = version();
    CHECK(coro_runs_to_promote(v) == HP_PROMOTE_RUNS);
    hp_place_learn_coro(v, 1500000);
    CHECK(atomic_load(&v->run_coro));
    hp_place_learn_coro(v, 3000000);
    CHECK(!atomic_load(&v->run_coro) && !atomic_load(&v->coro_never));
    CHECK(coro_runs_to_promote(v) == 2 * HP_PROMOTE_RUNS);
    hp_place_learn_coro(v, 60000000);
    CHECK(!atomic_load(&v->run_coro) && atomic_load(&v->coro_never));
    CHECK(coro_runs_to_promote(v) == 0);
    free(v);
}

int main(int argc, char **argv)
{
    T_INIT(argc, argv);
    T_RUN(test_promoted_after_fast_runs);
    T_RUN(test_runs_that_waited_long_do_not_promote);
    T_RUN(test_no_promotion_without_inline);
    T_RUN(test_preempted_inline_runs_never_demote);
    T_RUN(test_long_inline_runs_demote);
    T_RUN(test_inline_run_that_blocked_demotes);
    T_RUN(test_held_inline_runs_back_off);
    T_RUN(test_probed_strike_restarts_promotion);
    T_RUN(test_page_that_blocks_now_and_then_stalls_once);
    T_RUN(test_suspect_that_blocks_is_demoted);
    T_RUN(test_slowish_probed_runs_strike);
    T_RUN(test_strikes_expire);
    T_RUN(test_probe_tells_sleep_from_spin);
    T_RUN(test_probe_excuses_pool_time);
    T_RUN(test_probe_leaves_out_the_wait_for_a_cpu);
    T_RUN(test_runs_that_wait_briefly_go_to_the_reactor);
    T_RUN(test_a_stretch_that_holds_the_reactor_sends_it_back);
    T_DONE();
}
