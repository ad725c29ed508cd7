/* Unit tests for reactor.c: jobs run as coroutines on one thread; a job
 * that waits through hp_wait_fd lets the others run; waits end at their
 * descriptor's event or at the job's deadline; stop lets every job
 * finish. */
#define _GNU_SOURCE
#include "t.h"

#include "hp.h"
#include "reactor.h"
#include "wait.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct job {
    struct hp_reactor_job rj; /* first: the reactor hands this back */
    int fd;                   /* wait for it (-1: sleep to the deadline) */
    int waits;                /* how many times to wait on fd */
    int64_t deadline;         /* of each wait (0: none) */
    int64_t spin_ns;          /* first hold the reactor this long */
    int result;               /* hp_wait_fd's last answer */
    bool on_reactor;          /* ran on the reactor's thread */
    int64_t took_ns;
    int64_t end_ns;           /* when it finished */
    int order;                /* when it finished, among all */
    atomic_bool done;
    /* parking: park instead of waiting on fd, after unparking *unpark
     * (a job of the same reactor) if set; hold: spin until released */
    bool park;
    struct hp_wait_ticket ticket;
    struct hp_wait_ticket *_Atomic unpark;
    atomic_bool ticketed, hold;
};

static atomic_int suspends, resumes, finished;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;

static void run(struct hp_reactor_job *rj)
{
    struct job *j = (struct job *)rj;
    int64_t t0 = hp_now_ns();
    j->on_reactor = hp_reactor_on_thread();
    while (hp_now_ns() - t0 < j->spin_ns)
        ;
    struct hp_wait_ticket *u = atomic_load(&j->unpark);
    if (u)
        hp_wait_unpark(u); /* on the reactor's own thread */
    if (j->park) {
        bool ok = hp_wait_ticket(&j->ticket);
        atomic_store(&j->ticketed, ok);
        while (atomic_load(&j->hold))
            usleep(100);
        j->result = ok ? hp_wait_park(&j->ticket, j->deadline) : -3;
    }
    for (int i = 0; i < j->waits; i++) {
        j->result = hp_wait_fd(j->fd, POLLIN, j->deadline);
        if (j->result == 1 && j->fd >= 0) {
            char c;
            if (read(j->fd, &c, 1) != 1)
                j->result = -2;
        }
    }
    j->end_ns = hp_now_ns();
    j->took_ns = j->end_ns - t0;
    pthread_mutex_lock(&mu);
    j->order = atomic_fetch_add(&finished, 1);
    atomic_store(&j->done, true);
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
}

static void on_suspend(struct hp_reactor_job *rj)
{
    (void)rj;
    atomic_fetch_add(&suspends, 1);
}

static void on_resume(struct hp_reactor_job *rj)
{
    (void)rj;
    atomic_fetch_add(&resumes, 1);
}

static const struct hp_reactor_ops ops = {run, on_suspend, on_resume, NULL};

static bool wait_done(struct job *j, double s)
{
    int64_t until = hp_now_ns() + (int64_t)(s * 1e9);
    pthread_mutex_lock(&mu);
    while (!atomic_load(&j->done) && hp_now_ns() < until) {
        pthread_mutex_unlock(&mu);
        usleep(1000);
        pthread_mutex_lock(&mu);
    }
    pthread_mutex_unlock(&mu);
    return atomic_load(&j->done);
}

static void start(void)
{
    atomic_store(&suspends, 0);
    atomic_store(&resumes, 0);
    atomic_store(&finished, 0);
    CHECK(hp_reactor_start(256 << 10, &ops) == 0);
    CHECK(hp_reactor_running());
}

/* 50 jobs each wait on a pipe of their own: all 50 are suspended at once
 * on the one thread, and each finishes when its pipe is written, in the
 * order of the writes, not of the submissions. */
static void test_waits_overlap_on_one_thread(void)
{
    enum { N = 50 };
    static struct job jobs[N];
    int wr[N];
    start();
    for (int i = 0; i < N; i++) {
        int p[2];
        CHECK(pipe2(p, O_CLOEXEC) == 0);
        memset(&jobs[i], 0, sizeof jobs[i]);
        jobs[i].fd = p[0];
        jobs[i].waits = 1;
        wr[i] = p[1];
        hp_reactor_submit(&jobs[i].rj);
    }
    struct hp_reactor_stats st;
    for (int t = 0; t < 2000; t++) {
        hp_reactor_stats(&st);
        if (st.active == N)
            break;
        usleep(1000);
    }
    CHECK(st.active == N);
    CHECK(atomic_load(&suspends) == N);
    for (int i = N - 1; i >= 0; i--) {
        CHECK(write(wr[i], "x", 1) == 1);
        CHECK(wait_done(&jobs[i], 5));
    }
    for (int i = 0; i < N; i++) {
        CHECK(jobs[i].result == 1);
        CHECK(jobs[i].on_reactor);
        CHECK(jobs[i].order == N - 1 - i);
        close(jobs[i].fd);
        close(wr[i]);
    }
    CHECK(atomic_load(&resumes) == N);
    hp_reactor_stats(&st);
    CHECK(st.runs >= N && st.active == 0);
    hp_reactor_stop();
    CHECK(!hp_reactor_running());
}

/* A wait past the job's deadline answers 0 and marks the job timed out;
 * the other jobs go on meanwhile. A sleep (fd -1) ends at its own
 * deadline without marking the job. */
static void test_deadlines(void)
{
    static struct job stuck, nap, quick;
    int p[2], q[2];
    CHECK(pipe2(p, O_CLOEXEC) == 0 && pipe2(q, O_CLOEXEC) == 0);
    start();
    memset(&stuck, 0, sizeof stuck);
    stuck.fd = p[0];
    stuck.waits = 1;
    stuck.rj.deadline_ns = hp_now_ns() + 150000000;
    hp_reactor_submit(&stuck.rj);
    memset(&nap, 0, sizeof nap);
    nap.fd = -1;
    nap.waits = 1;
    nap.deadline = hp_now_ns() + 50000000;
    hp_reactor_submit(&nap.rj);
    memset(&quick, 0, sizeof quick);
    quick.fd = q[0];
    quick.waits = 3;
    hp_reactor_submit(&quick.rj);
    CHECK(write(q[1], "abc", 3) == 3);
    CHECK(wait_done(&quick, 2));
    CHECK(quick.result == 1 && !atomic_load(&stuck.done));
    CHECK(wait_done(&nap, 2));
    CHECK(nap.result == 0 && !nap.rj.timed_out);
    CHECK(nap.end_ns >= nap.deadline);
    CHECK(wait_done(&stuck, 2));
    CHECK(stuck.result == 0 && stuck.rj.timed_out);
    CHECK(stuck.end_ns >= stuck.rj.deadline_ns);
    CHECK(stuck.took_ns < 1000000000);
    /* the stuck pipe was let go: writing it now wakes nobody */
    CHECK(write(p[1], "x", 1) == 1);
    hp_reactor_stop();
    close(p[0]);
    close(p[1]);
    close(q[0]);
    close(q[1]);
}

/* The same descriptor number waited on again and again (re-armed), then
 * closed and a new pipe given the same number (armed afresh). */
static void test_descriptor_reuse(void)
{
    static struct job a, b;
    int p[2];
    CHECK(pipe2(p, O_CLOEXEC) == 0);
    start();
    memset(&a, 0, sizeof a);
    a.fd = p[0];
    a.waits = 20;
    hp_reactor_submit(&a.rj);
    for (int i = 0; i < 20; i++) {
        CHECK(write(p[1], "y", 1) == 1);
        usleep(500);
    }
    CHECK(wait_done(&a, 5));
    CHECK(a.result == 1);
    int num = p[0];
    close(p[0]);
    close(p[1]);
    CHECK(pipe2(p, O_CLOEXEC) == 0);
    if (p[0] != num) { /* make the read end take the old number */
        CHECK(dup2(p[0], num) == num);
        close(p[0]);
        p[0] = num;
    }
    memset(&b, 0, sizeof b);
    b.fd = p[0];
    b.waits = 1;
    hp_reactor_submit(&b.rj);
    CHECK(write(p[1], "z", 1) == 1);
    CHECK(wait_done(&b, 5));
    CHECK(b.result == 1);
    hp_reactor_stop();
    close(p[0]);
    close(p[1]);
}

static struct hp_reactor_job *abandoned_job;
static const struct hp_reactor_job *abandoned_holder;

static void on_abandon(struct hp_reactor_job *rj,
                       const struct hp_reactor_job *holder, void *arg)
{
    (*(int *)arg)++;
    abandoned_job = rj;
    abandoned_holder = holder;
}

/* A job that holds the reactor (spins 1.5 s): the job suspended in a wait
 * meanwhile is given up once, after the reactor has been held a second,
 * with the holder named; when the holder returns, the waiter's wait fails
 * (0, timed out) although its descriptor was ready. */
static void test_a_stalled_reactor_gives_its_waiters_up(void)
{
    static struct job waiter, spinner;
    int p[2];
    CHECK(pipe2(p, O_CLOEXEC) == 0);
    start();
    memset(&waiter, 0, sizeof waiter);
    waiter.fd = p[0];
    waiter.waits = 2;
    hp_reactor_submit(&waiter.rj);
    memset(&spinner, 0, sizeof spinner);
    spinner.spin_ns = 1500000000;
    hp_reactor_submit(&spinner.rj);
    int n = 0;
    CHECK(hp_reactor_abandon(on_abandon, &n) == 0); /* not stalled yet */
    while (hp_reactor_stalled() < 1.05)
        usleep(1000);
    CHECK(write(p[1], "x", 1) == 1); /* ready, but held */
    CHECK(hp_reactor_abandon(on_abandon, &n) == 1);
    CHECK(n == 1 && abandoned_job == &waiter.rj &&
          abandoned_holder == &spinner.rj);
    CHECK(hp_reactor_abandon(on_abandon, &n) == 0); /* once */
    CHECK(wait_done(&spinner, 3));
    CHECK(wait_done(&waiter, 3));
    CHECK(waiter.result == 0 && waiter.rj.timed_out);
    struct hp_reactor_stats st;
    hp_reactor_stats(&st);
    CHECK(st.abandoned >= 1 && st.active == 0);
    hp_reactor_stop();
    close(p[0]);
    close(p[1]);
}

/* Parked jobs are given up too: one the stall finds parked, and one
 * unparked while the reactor is held (a pool's hand-over coming too
 * late): both parks fail (0, timed out) once the spinner lets go. */
static void test_a_stalled_reactor_gives_its_parked_up(void)
{
    static struct job a, b, spinner;
    start();
    memset(&a, 0, sizeof a);
    a.park = true;
    hp_reactor_submit(&a.rj);
    memset(&b, 0, sizeof b);
    b.park = true;
    hp_reactor_submit(&b.rj);
    for (int t = 0; t < 2000 && atomic_load(&suspends) < 2; t++)
        usleep(1000);
    CHECK(atomic_load(&suspends) == 2);
    memset(&spinner, 0, sizeof spinner);
    spinner.spin_ns = 1300000000;
    hp_reactor_submit(&spinner.rj);
    while (hp_reactor_stalled() < 1.05)
        usleep(1000);
    int n = 0;
    CHECK(hp_reactor_abandon(on_abandon, &n) == 2 && n == 2);
    hp_wait_unpark(&b.ticket);
    CHECK(wait_done(&spinner, 3) && wait_done(&a, 3) && wait_done(&b, 3));
    CHECK(a.result == 0 && a.rj.timed_out);
    CHECK(b.result == 0 && b.rj.timed_out);
    struct hp_reactor_stats st;
    hp_reactor_stats(&st);
    CHECK(st.active == 0);
    hp_reactor_stop();
}

/* Stopping lets the jobs already submitted finish first. */
static void test_stop_lets_jobs_finish(void)
{
    static struct job j;
    start();
    memset(&j, 0, sizeof j);
    j.fd = -1;
    j.waits = 1;
    j.deadline = hp_now_ns() + 100000000;
    hp_reactor_submit(&j.rj);
    hp_reactor_stop();
    CHECK(atomic_load(&j.done));
    CHECK(j.result == 0);
}

/* Off the reactor, hp_wait_fd still waits (poll): the hook is the
 * reactor thread's alone. */
static void test_other_threads_poll(void)
{
    start();
    int p[2];
    CHECK(pipe2(p, O_CLOEXEC) == 0);
    CHECK(!hp_wait_hooked());
    int64_t t0 = hp_now_ns();
    CHECK(hp_wait_fd(p[0], POLLIN, t0 + 20000000) == 0);
    CHECK(hp_now_ns() - t0 >= 20000000);
    CHECK(write(p[1], "x", 1) == 1);
    CHECK(hp_wait_fd(p[0], POLLIN, 0) == 1);
    hp_reactor_stop();
    close(p[0]);
    close(p[1]);
}

/* 20 jobs park at once on the one thread; another thread unparks them in
 * reverse order, and each resumes (1) in that order. */
static void test_park_unparked_by_another_thread(void)
{
    enum { N = 20 };
    static struct job jobs[N];
    start();
    for (int i = 0; i < N; i++) {
        memset(&jobs[i], 0, sizeof jobs[i]);
        jobs[i].park = true;
        hp_reactor_submit(&jobs[i].rj);
    }
    struct hp_reactor_stats st;
    for (int t = 0; t < 2000; t++) {
        hp_reactor_stats(&st);
        if (st.active == N && atomic_load(&suspends) == N)
            break;
        usleep(1000);
    }
    CHECK(atomic_load(&suspends) == N);
    for (int i = 0; i < N; i++)
        CHECK(atomic_load(&jobs[i].ticketed));
    for (int i = N - 1; i >= 0; i--) {
        hp_wait_unpark(&jobs[i].ticket);
        CHECK(wait_done(&jobs[i], 5));
    }
    for (int i = 0; i < N; i++) {
        CHECK(jobs[i].result == 1 && jobs[i].on_reactor);
        CHECK(jobs[i].order == N - 1 - i);
    }
    hp_reactor_stop();
}

/* An unpark before the park is not lost: the park returns 1 at once,
 * without suspending the job. */
static void test_unpark_before_park(void)
{
    static struct job j;
    start();
    memset(&j, 0, sizeof j);
    j.park = true;
    atomic_store(&j.hold, true);
    hp_reactor_submit(&j.rj);
    for (int t = 0; t < 2000 && !atomic_load(&j.ticketed); t++)
        usleep(1000);
    CHECK(atomic_load(&j.ticketed));
    hp_wait_unpark(&j.ticket);
    atomic_store(&j.hold, false);
    CHECK(wait_done(&j, 5));
    CHECK(j.result == 1);
    CHECK(atomic_load(&suspends) == 0);
    hp_reactor_stop();
}

/* A park ends at its deadline (0) and an unpark after that is harmless;
 * at the job's own deadline, the job is marked timed out. Off a
 * coroutine (a plain thread) there is no ticket to take. */
static void test_park_deadlines(void)
{
    static struct job a, b;
    start();
    memset(&a, 0, sizeof a);
    a.park = true;
    a.deadline = hp_now_ns() + 50000000;
    hp_reactor_submit(&a.rj);
    memset(&b, 0, sizeof b);
    b.park = true;
    b.rj.deadline_ns = hp_now_ns() + 80000000;
    hp_reactor_submit(&b.rj);
    CHECK(wait_done(&a, 2) && wait_done(&b, 2));
    CHECK(a.result == 0 && !a.rj.timed_out && a.end_ns >= a.deadline);
    CHECK(b.result == 0 && b.rj.timed_out && b.end_ns >= b.rj.deadline_ns);
    hp_wait_unpark(&a.ticket);
    hp_wait_unpark(&b.ticket);
    struct hp_wait_ticket t;
    CHECK(!hp_wait_ticket(&t));
    CHECK(hp_wait_park(&t, hp_now_ns() + 1000000) == -1 && errno == EINVAL);
    hp_reactor_stop();
}

/* A job of the reactor unparks another (the pool's hand-over on one
 * reactor): the parked one resumes with 1, after the unparker yields. */
static void test_unpark_on_the_reactor(void)
{
    static struct job a, b;
    start();
    memset(&a, 0, sizeof a);
    a.park = true;
    hp_reactor_submit(&a.rj);
    for (int t = 0; t < 2000 && atomic_load(&suspends) < 1; t++)
        usleep(1000);
    CHECK(atomic_load(&suspends) == 1);
    memset(&b, 0, sizeof b);
    atomic_store(&b.unpark, &a.ticket);
    b.fd = -1;
    b.waits = 1;
    b.deadline = hp_now_ns() + 20000000;
    hp_reactor_submit(&b.rj);
    CHECK(wait_done(&a, 5) && wait_done(&b, 5));
    CHECK(a.result == 1 && a.on_reactor && b.on_reactor);
    CHECK(a.order == 0); /* resumed while b slept */
    hp_reactor_stop();
}

int main(int argc, char **argv)
{
    T_INIT(argc, argv);
    T_RUN(test_waits_overlap_on_one_thread);
    T_RUN(test_deadlines);
    T_RUN(test_descriptor_reuse);
    T_RUN(test_a_stalled_reactor_gives_its_waiters_up);
    T_RUN(test_a_stalled_reactor_gives_its_parked_up);
    T_RUN(test_stop_lets_jobs_finish);
    T_RUN(test_other_threads_poll);
    T_RUN(test_park_unparked_by_another_thread);
    T_RUN(test_unpark_before_park);
    T_RUN(test_park_deadlines);
    T_RUN(test_unpark_on_the_reactor);
    T_DONE();
}
