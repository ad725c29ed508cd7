/*
 * test_coro.c - unit tests for coro.c, the coroutine core: values passed in
 * order across yields, many interleaved coroutines whose locals survive,
 * floating point and callee-saved registers across switches, the current
 * coroutine and its data pointer, the ABI's stack alignment at entry,
 * stacks reused from the thread's cache, an overflow faulting on the guard,
 * coroutines never run or returning at once, two threads each switching
 * its own (and their caches unmapped at exit), the asserts on misuse; and a
 * printed (never asserted) cost of a switch pair. Also run under ASan and
 * TSan (see the Makefile's asan/tsan targets).
 *
 * Owns: its coroutines, threads and child processes. May not touch:
 * anything else.
 */
#include "coro.h"
#include "t.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define STACK (256 * 1024)

/* ---- ping-pong: a shared struct, 1000 values in order ---- */

struct pingpong {
    int to_coro, from_coro;
    int bad; /* values the coroutine saw out of order */
};

static void pingpong_fn(void *arg)
{
    struct pingpong *pp = arg;
    for (int i = 0; i < 1000; i++) {
        if (pp->to_coro != i)
            pp->bad++;
        pp->from_coro = i * 3 + 1;
        hp_coro_yield();
    }
    pp->from_coro = -1;
}

static void ping_pong(void)
{
    struct pingpong pp = {0, 0, 0};
    hp_coro *co = hp_coro_new(STACK, pingpong_fn, &pp);
    CHECK(co != NULL);
    int out_of_order = 0;
    for (int i = 0; i < 1000; i++) {
        pp.to_coro = i;
        if (!hp_coro_resume(co) || pp.from_coro != i * 3 + 1)
            out_of_order++;
    }
    CHECK(out_of_order == 0);
    CHECK(pp.bad == 0);
    CHECK(!hp_coro_resume(co)); /* fn returns: finished */
    CHECK(pp.from_coro == -1);
    hp_coro_free(co);
}

/* ---- many interleaved coroutines with locals that must survive ---- */

#define MANY 200
#define ROUNDS 20

struct many {
    int id;
    int rounds_done;
    uint64_t sum; /* the checksum over the local array at the end */
};

static uint64_t mix(uint64_t x)
{
    x ^= x >> 31;
    x *= 0x9e3779b97f4a7c15ULL;
    return x ^ (x >> 29);
}

static void many_fn(void *arg)
{
    struct many *m = arg;
    volatile uint64_t local[64]; /* on this coroutine's stack */
    for (int i = 0; i < 64; i++)
        local[i] = mix((uint64_t)m->id * 64 + (uint64_t)i);
    for (int r = 0; r < ROUNDS; r++) {
        for (int i = 0; i < 64; i++)
            local[i] = mix(local[i] + (uint64_t)r);
        m->rounds_done++;
        hp_coro_yield();
    }
    uint64_t sum = 0;
    for (int i = 0; i < 64; i++)
        sum += local[i];
    m->sum = sum;
}

/* What many_fn computes, on the thread's own stack. */
static uint64_t many_expected(int id)
{
    uint64_t local[64], sum = 0;
    for (int i = 0; i < 64; i++)
        local[i] = mix((uint64_t)id * 64 + (uint64_t)i);
    for (int r = 0; r < ROUNDS; r++)
        for (int i = 0; i < 64; i++)
            local[i] = mix(local[i] + (uint64_t)r);
    for (int i = 0; i < 64; i++)
        sum += local[i];
    return sum;
}

static void many_interleaved(void)
{
    static struct many m[MANY];
    static hp_coro *co[MANY];
    for (int i = 0; i < MANY; i++) {
        m[i] = (struct many){.id = i};
        co[i] = hp_coro_new(STACK, many_fn, &m[i]);
        CHECK(co[i] != NULL);
    }
    int live = MANY, yields = 0, bad_rounds = 0;
    for (int r = 0; live > 0; r++) {
        for (int i = 0; i < MANY; i++) {
            if (co[i] == NULL)
                continue;
            if (hp_coro_resume(co[i])) {
                yields++;
                if (m[i].rounds_done != r + 1)
                    bad_rounds++;
            } else {
                hp_coro_free(co[i]);
                co[i] = NULL;
                live--;
            }
        }
    }
    CHECK(yields == MANY * ROUNDS);
    CHECK(bad_rounds == 0);
    int bad_sums = 0;
    for (int i = 0; i < MANY; i++)
        if (m[i].sum != many_expected(i))
            bad_sums++;
    CHECK(bad_sums == 0);
}

/* ---- floating point and callee-saved registers across switches ---- */

struct fp {
    double result;
    unsigned long iresult;
};

/* Many live values across each yield: the compiler keeps some in
 * callee-saved registers (rbx, rbp, r12-r15) and spills the rest. The
 * other coroutine (fp_clobber_fn) churns the same registers meanwhile. */
static void fp_fn(void *arg)
{
    struct fp *f = arg;
    double a = 1.5, b = 2.25, c = -3.125, d = 0.1;
    unsigned long i0 = 3, i1 = 5, i2 = 7, i3 = 11, i4 = 13, i5 = 17, i6 = 19;
    for (int k = 0; k < 100; k++) {
        a = a * 1.000001 + b;
        b = b * 0.999 - c / 7.0;
        c = c + d * (double)k;
        d = d * 1.01;
        i0 = i0 * 3 + i6;
        i1 ^= i0 << 3;
        i2 += i1 >> 2;
        i3 = i3 * 7 + i2;
        i4 -= i3 ^ i5;
        i5 += i4 * 5;
        i6 ^= i5 + (unsigned long)k;
        hp_coro_yield();
    }
    f->result = a + b * 3 + c * 5 + d * 7;
    f->iresult = i0 + i1 + i2 + i3 + i4 + i5 + i6;
}

static void fp_clobber_fn(void *arg)
{
    volatile double sink = 0;
    unsigned long x = 1, y = 2, z = 3, w = 4, v = 5, u = 6;
    for (int k = 0; k < 100; k++) {
        sink = sink * 1.5 + 1e300 / (k + 1.0);
        x = x * 31 + y;
        y ^= z << 1;
        z += w * v;
        w -= u;
        v ^= x;
        u += y;
        hp_coro_yield();
    }
    *(unsigned long *)arg = x + y + z + w + v + u + (sink > 0);
}

static void fp_registers(void)
{
    struct fp got = {0, 0}, want = {0, 0};
    unsigned long junk = 0;
    /* the same computation without switches: run to completion in one
     * coroutine while nothing else runs in between */
    hp_coro *solo = hp_coro_new(STACK, fp_fn, &want);
    while (hp_coro_resume(solo))
        ;
    hp_coro_free(solo);
    hp_coro *a = hp_coro_new(STACK, fp_fn, &got);
    hp_coro *b = hp_coro_new(STACK, fp_clobber_fn, &junk);
    CHECK(a != NULL && b != NULL);
    bool ra = true, rb = true;
    double outside = 0.5; /* the thread's own live double across resumes */
    int iters = 0;
    while (ra || rb) {
        iters++;
        if (ra)
            ra = hp_coro_resume(a);
        outside = outside * 2.0 + 1.0;
        if (rb)
            rb = hp_coro_resume(b);
        outside /= 2.0;
    }
    CHECK(got.result == want.result);
    CHECK(got.iresult == want.iresult);
    CHECK(got.result != 0 && got.iresult != 0); /* it computed something */
    CHECK(iters == 101 && outside == 0.5 + 0.5 * iters); /* exact */
    hp_coro_free(a);
    hp_coro_free(b);
}

/* The MXCSR rounding mode is per-context: a coroutine that changes it does
 * not change its resumer's, and gets its own back after a yield. */
#if defined(__x86_64__)
static unsigned get_mxcsr(void)
{
    unsigned m;
    __asm__ volatile("stmxcsr %0" : "=m"(m));
    return m;
}

static void set_mxcsr(unsigned m)
{
    __asm__ volatile("ldmxcsr %0" : : "m"(m));
}

static void mxcsr_fn(void *arg)
{
    unsigned *seen = arg;
    set_mxcsr((get_mxcsr() & ~0x6000u) | 0x6000u); /* round toward zero */
    hp_coro_yield();
    *seen = get_mxcsr() & 0x6000u;
}

static void fp_modes(void)
{
    unsigned seen = 0, before = get_mxcsr();
    hp_coro *co = hp_coro_new(STACK, mxcsr_fn, &seen);
    CHECK(hp_coro_resume(co));
    CHECK(get_mxcsr() == before); /* the resumer's mode is untouched */
    CHECK(!hp_coro_resume(co));
    CHECK(seen == 0x6000u); /* the coroutine's came back */
    CHECK(get_mxcsr() == before);
    hp_coro_free(co);
}
#endif

/* ---- hp_coro_current and the data pointer ---- */

struct who {
    hp_coro *seen;
    void *data;
    hp_coro *seen_after_yield;
};

static void who_fn(void *arg)
{
    struct who *w = arg;
    w->seen = hp_coro_current();
    w->data = hp_coro_data(w->seen);
    hp_coro_yield();
    w->seen_after_yield = hp_coro_current();
}

static void current_and_data(void)
{
    struct who w1 = {0}, w2 = {0};
    int tag1, tag2;
    CHECK(hp_coro_current() == NULL);
    hp_coro *c1 = hp_coro_new(STACK, who_fn, &w1);
    hp_coro *c2 = hp_coro_new(STACK, who_fn, &w2);
    CHECK(hp_coro_data(c1) == NULL);
    hp_coro_set_data(c1, &tag1);
    hp_coro_set_data(c2, &tag2);
    CHECK(hp_coro_resume(c1));
    CHECK(hp_coro_current() == NULL);
    CHECK(hp_coro_resume(c2));
    CHECK(!hp_coro_resume(c1));
    CHECK(!hp_coro_resume(c2));
    CHECK(hp_coro_current() == NULL);
    CHECK(w1.seen == c1 && w1.seen_after_yield == c1 && w1.data == &tag1);
    CHECK(w2.seen == c2 && w2.seen_after_yield == c2 && w2.data == &tag2);
    CHECK(hp_coro_data(c1) == &tag1);
    hp_coro_free(c1);
    hp_coro_free(c2);
}

/* ---- the ABI's stack alignment at fn's entry ---- */

static void align_fn(void *arg)
{
    _Alignas(16) volatile char x[16];
    x[0] = 1;
    *(uintptr_t *)arg = (uintptr_t)x;
}

static void stack_aligned(void)
{
    uintptr_t at = 1;
    hp_coro *co = hp_coro_new(STACK, align_fn, &at);
    CHECK(!hp_coro_resume(co));
    CHECK(at % 16 == 0); /* fn was called with rsp + 8 a multiple of 16 */
    uintptr_t lo;
    size_t size, guard;
    hp_coro_stack(co, &lo, &size, &guard);
    CHECK(at > lo && at < lo + size); /* and on the coroutine's stack */
    hp_coro_free(co);
}

/* ---- stacks come back from the cache ---- */

static void sum_fn(void *arg)
{
    volatile char buf[4096];
    int *n = arg;
    for (int i = 0; i < (int)sizeof(buf); i++)
        buf[i] = (char)i;
    hp_coro_yield();
    int s = 0;
    for (int i = 0; i < (int)sizeof(buf); i++)
        s += buf[i];
    *n = s;
}

static int sum_expected(void)
{
    int s = 0;
    for (int i = 0; i < 4096; i++)
        s += (char)i;
    return s;
}

static void stack_reuse(void)
{
    int n = 0;
    hp_coro *a = hp_coro_new(STACK, sum_fn, &n);
    uintptr_t lo_a, lo_b;
    size_t size_a, size_b, guard;
    hp_coro_stack(a, &lo_a, &size_a, &guard);
    CHECK(size_a >= STACK);
    while (hp_coro_resume(a))
        ;
    hp_coro_free(a);
    unsigned long maps = hp_coro__maps();
    hp_coro *b = hp_coro_new(STACK, sum_fn, &n);
    CHECK(hp_coro__maps() == maps); /* no new mapping */
    hp_coro_stack(b, &lo_b, &size_b, &guard);
    CHECK(lo_b == lo_a && size_b == size_a);
    n = 0;
    CHECK(hp_coro_resume(b));
    CHECK(!hp_coro_resume(b));
    CHECK(n == sum_expected());
    /* another size is not served from the cache */
    hp_coro *c = hp_coro_new(STACK * 2, sum_fn, &n);
    CHECK(hp_coro__maps() == maps + 1);
    hp_coro_free(c); /* never run */
    hp_coro_free(b);
    /* and a cache full of one size still maps past its bound */
    hp_coro *co[HP_CORO_CACHE + 4];
    for (int i = 0; i < HP_CORO_CACHE + 4; i++)
        co[i] = hp_coro_new(STACK, sum_fn, &n);
    for (int i = 0; i < HP_CORO_CACHE + 4; i++)
        hp_coro_free(co[i]);
    maps = hp_coro__maps();
    for (int i = 0; i < HP_CORO_CACHE + 4; i++)
        co[i] = hp_coro_new(STACK, sum_fn, &n);
    /* the cache held at most HP_CORO_CACHE (the c above is one of them) */
    CHECK(hp_coro__maps() - maps >= 4);
    for (int i = 0; i < HP_CORO_CACHE + 4; i++)
        hp_coro_free(co[i]);
}

static void bad_arguments(void)
{
    errno = 0;
    CHECK(hp_coro_new(0, sum_fn, NULL) == NULL && errno == EINVAL);
    errno = 0;
    CHECK(hp_coro_new(STACK, NULL, NULL) == NULL && errno == EINVAL);
    errno = 0;
    CHECK(hp_coro_new(SIZE_MAX - 4096, sum_fn, NULL) == NULL &&
          errno == ENOMEM);
    hp_coro_free(NULL);
}

/* ---- overflow faults on the guard ---- */

static uintptr_t guard_lo, guard_hi;

static void on_segv(int sig, siginfo_t *si, void *uc)
{
    uintptr_t a = (uintptr_t)si->si_addr;
    if (a < guard_lo || a >= guard_hi)
        _exit(43); /* a fault, but not on the guard */
    /* die of it: the fault happens again on return, unhandled */
    signal(SIGSEGV, SIG_DFL);
}

static volatile int recurse_limit = 1 << 30; /* never reached */

static int recurse(volatile char *prev, int depth)
{
    volatile char frame[512];
    if (depth > recurse_limit)
        return 0;
    frame[0] = (char)depth;
    frame[511] = prev ? prev[0] : 0;
    return recurse(frame, depth + 1) + frame[511]; /* not a tail call */
}

static void recurse_fn(void *arg)
{
    recurse(NULL, 0);
}

static void overflow_faults_on_guard(void)
{
    hp_coro *co = hp_coro_new(STACK, recurse_fn, NULL);
    uintptr_t lo;
    size_t size, guard;
    hp_coro_stack(co, &lo, &size, &guard);
    CHECK(guard >= 4096 && lo % 4096 == 0);
    hp_coro_free(co); /* never started */
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        /* the coroutine is the child's own (TSan's fibers do not cross a
         * fork); the handler runs on an alternate stack, the coroutine's
         * being full, and checks that the fault is on the guard */
        static char alt[64 * 1024];
        stack_t ss = {.ss_sp = alt, .ss_size = sizeof(alt)};
        struct sigaction sa = {.sa_sigaction = on_segv,
                               .sa_flags = SA_SIGINFO | SA_ONSTACK};
        co = hp_coro_new(STACK, recurse_fn, NULL);
        hp_coro_stack(co, &lo, &size, &guard);
        guard_lo = lo - guard;
        guard_hi = lo;
        sigaltstack(&ss, NULL);
        sigaction(SIGSEGV, &sa, NULL);
        hp_coro_resume(co);
        _exit(0); /* the recursion returned: no guard */
    }
    int status = 0;
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV);
    if (!WIFSIGNALED(status)) /* 43: a fault off the guard */
        fprintf(stderr, "  child exited %d\n", WEXITSTATUS(status));
}

/* ---- coroutines never run, or returning at once ---- */

static void nothing_fn(void *arg)
{
    ++*(int *)arg;
}

static void never_run_and_immediate(void)
{
    int ran = 0;
    hp_coro *co = hp_coro_new(STACK, nothing_fn, &ran);
    CHECK(co != NULL);
    hp_coro_free(co);
    CHECK(ran == 0);
    co = hp_coro_new(STACK, nothing_fn, &ran);
    CHECK(!hp_coro_resume(co));
    CHECK(ran == 1);
    CHECK(hp_coro_current() == NULL);
    hp_coro_free(co);
}

/* ---- two threads, each with its own coroutines, at once ---- */

struct thread_run {
    int bad;
    int yields;
    uintptr_t cached_lo; /* a stack left in the thread's cache at exit */
};

static void thread_co_fn(void *arg)
{
    struct thread_run *tr = arg;
    hp_coro *me = hp_coro_current();
    for (int i = 0; i < 2000; i++) {
        if (hp_coro_current() != me || hp_coro_data(me) != tr)
            tr->bad++;
        tr->yields++;
        hp_coro_yield();
    }
}

static void *thread_main(void *arg)
{
    struct thread_run *tr = arg;
    for (int round = 0; round < 10; round++) {
        hp_coro *co[4];
        for (int i = 0; i < 4; i++) {
            co[i] = hp_coro_new(STACK, thread_co_fn, tr);
            hp_coro_set_data(co[i], tr);
        }
        bool live = true;
        while (live) {
            live = false;
            for (int i = 0; i < 4; i++)
                if (co[i] != NULL && hp_coro_resume(co[i]))
                    live = true;
            if (hp_coro_current() != NULL)
                tr->bad++;
        }
        size_t size, guard;
        hp_coro_stack(co[0], &tr->cached_lo, &size, &guard);
        for (int i = 0; i < 4; i++)
            hp_coro_free(co[i]);
    }
    return NULL;
}

static void two_threads(void)
{
    struct thread_run tr[2] = {{0, 0, 0}, {0, 0, 0}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        CHECK(pthread_create(&th[i], NULL, thread_main, &tr[i]) == 0);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < 2; i++) {
        CHECK(tr[i].bad == 0);
        CHECK(tr[i].yields == 10 * 4 * 2000);
        /* the thread's exit gave its cached stacks back to the kernel */
        unsigned char vec;
        errno = 0;
        CHECK(mincore((void *)tr[i].cached_lo, 4096, &vec) == -1 &&
              errno == ENOMEM);
    }
}

/* ---- misuse dies on an assert ---- */

#ifndef NDEBUG
static void resume_inside_fn(void *arg)
{
    hp_coro_resume(arg);
}

static int child_status(void (*fn)(void))
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        freopen("/dev/null", "w", stderr); /* the expected assert message */
        fn();
        _exit(0);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    return status;
}

static void resume_from_inside(void)
{
    hp_coro *other = hp_coro_new(STACK, nothing_fn, NULL);
    hp_coro *co = hp_coro_new(STACK, resume_inside_fn, other);
    hp_coro_resume(co);
}

static void free_suspended(void)
{
    hp_coro *co = hp_coro_new(STACK, thread_co_fn, &(struct thread_run){0});
    hp_coro_resume(co);
    hp_coro_free(co);
}

#endif

static void misuse_asserts(void)
{
#ifdef NDEBUG
    printf("  (NDEBUG: the asserts are compiled out)\n");
#else
    int st = child_status(resume_from_inside);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
    st = child_status(free_suspended);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
#endif
}

/* ---- the cost of a switch pair: printed, never asserted ---- */

static void bench_fn(void *arg)
{
    for (long i = *(long *)arg; i > 0; i--)
        hp_coro_yield();
}

static void switch_cost(void)
{
    const char *env = getenv("HP_CORO_BENCH_N");
    long n = env ? atol(env) : 200000;
    hp_coro *co = hp_coro_new(STACK, bench_fn, &n);
    long pairs = 0;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (hp_coro_resume(co))
        pairs++;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    CHECK(pairs == n);
    hp_coro_free(co);
    double ns = (double)(t1.tv_sec - t0.tv_sec) * 1e9 +
                (double)(t1.tv_nsec - t0.tv_nsec);
    printf("  switch pair (resume + yield): %.1f ns (%ld pairs)\n", ns / n, n);
}

int main(int argc, char **argv)
{
    T_INIT(argc, argv);
    T_RUN(ping_pong);
    T_RUN(many_interleaved);
    T_RUN(fp_registers);
#if defined(__x86_64__)
    T_RUN(fp_modes);
#endif
    T_RUN(current_and_data);
    T_RUN(stack_aligned);
    T_RUN(stack_reuse);
    T_RUN(bad_arguments);
    T_RUN(overflow_faults_on_guard);
    T_RUN(never_run_and_immediate);
    T_RUN(two_threads);
    T_RUN(misuse_asserts);
    T_RUN(switch_cost);
    T_DONE();
}
