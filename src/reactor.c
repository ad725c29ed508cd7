/*
 * reactor.c - the coroutine scheduler of a worker process: one thread that
 * runs jobs (requests, from server.c) as coroutines, and while one waits
 * for a descriptor through hp_wait_fd (wait.h) runs the others.
 *
 * Owns: the reactor's thread, its queue of jobs, its epoll set and the
 * coroutines of the jobs it runs; the wait hook of its thread (a wait
 * registers the descriptor, one-shot, and yields; an event or the wait's
 * deadline resumes the job) and its parking (hp_wait_park: the job yields
 * until an unpark, from a job of this thread without a system call, or
 * from another thread through the unparked list and the wake-up). May not touch: requests, pages, the database
 * or HTTP: what a job is, and what goes on record while it runs or waits,
 * is the caller's (struct hp_reactor_ops).
 *
 * Why a thread of its own and not the event loops: libmicrohttpd runs its
 * event loops itself and takes no descriptor of ours, so a query's socket
 * cannot wake one. The hand-off to this thread remains, but it is not paid
 * per wait, and under load not per request either: the thread sleeps only
 * when none of its jobs can go on, so one wake-up serves every job queued
 * meanwhile (docs/design.md, "Where a page runs"). Where the worker has a
 * single event loop, this thread drives it too (hp_reactor_host: its
 * descriptor is one more in the epoll set, its turn one more step of the
 * loop below), and there is no hand-off at all; while a job holds the
 * thread, the rescue thread turns that loop instead.
 *
 * A job's life:
 *
 *   submit --> QUEUED --start--> RUNNING --hp_wait_fd--> WAITING
 *                                   ^   \   \--hp_wait_park--> PARKED
 *                                   |    \                |      |
 *                                   |     run returns:    | event, or the
 *                                   |     done            | deadline
 *                                   +---------------------+------+ unpark,
 *                                                                 deadline
 *
 * Only this thread touches a job between start and done; after done the
 * job is the caller's again (ops->done handed it back) and is not touched.
 * One exception, the stalled reactor (a run that never waits holds the
 * thread): hp_reactor_abandon, on another thread, gives up the jobs
 * suspended in a wait, under R.wmu, which this thread takes to change the
 * list of waiting jobs and to end the job that holds the reactor; a job
 * given up finds its waits failing once this thread resumes it.
 */
#include "reactor.h"
#include "coro.h"
#include "hp.h"
#include "wait.h"

#include <assert.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_STACK ((size_t)8 << 20)
#define EVENTS 64
/* A job that has run this long without waiting holds the reactor: new
 * jobs go elsewhere (hp_reactor_running) until it lets go. */
#define STALL_NS 1000000000

static struct {
    /* shared with submitters */
    pthread_mutex_t mu;
    struct hp_reactor_job *head, *tail; /* the queue, under mu */
    atomic_long queued;
    atomic_bool running, stopping;
    atomic_bool asleep; /* in (or about to enter) epoll_wait: wake it */
    int ep, efd;
    pthread_t thread;
    size_t stack;
    const struct hp_reactor_ops *ops;
    atomic_ulong runs, waits;
    atomic_int active;
    atomic_long deferred;    /* jobs on the later list */
    atomic_llong busy_since; /* when the running stretch began; 0: none */
    atomic_ulong abandoned;  /* jobs hp_reactor_abandon gave up */
    struct hp_reactor_job *woken; /* unparked by other threads, under mu */
    atomic_long nwoken;
    /* The job whose stretch runs (or ran last); set to NULL under wmu
     * before a finished job is handed back (hp_reactor_abandon names it). */
    _Atomic(struct hp_reactor_job *) current;
    /* Written by the reactor thread alone, read by it freely; read by
     * another thread only under wmu (hp_reactor_abandon). */
    pthread_mutex_t wmu;
    struct hp_reactor_job *waiting; /* jobs suspended in hp_wait_fd/park */
    /* the reactor thread's alone */
    struct hp_reactor_job *later; /* no stack for them yet: start() */
    struct hp_reactor_job *ready, *ready_tail; /* unparked here: resume */
    unsigned char *armed;         /* fds in ep, by number */
    size_t narmed;
} R = {.mu = PTHREAD_MUTEX_INITIALIZER,
       .wmu = PTHREAD_MUTEX_INITIALIZER,
       .ep = -1,
       .efd = -1};

static __thread bool tl_reactor;

/* The hosted loop (hp_reactor_host). turn_mu is held while a turn runs,
 * on whichever thread: the reactor's, or the rescue thread's. */
static struct {
    pthread_mutex_t turn_mu;
    struct hp_reactor_loop loop; /* under turn_mu; .turn NULL: none */
    atomic_bool on;              /* a loop is hosted                 */
    atomic_bool poked;           /* turn it before sleeping          */
    atomic_bool rescuing;        /* the rescue thread runs           */
    bool added;                  /* loop.fd is in R.ep (reactor's)   */
} HL = {.turn_mu = PTHREAD_MUTEX_INITIALIZER};

bool hp_reactor_on_thread(void)
{
    return tl_reactor;
}

bool hp_reactor_running(void)
{
    if (!atomic_load(&R.running) || atomic_load(&R.stopping))
        return false;
    long long since = atomic_load_explicit(&R.busy_since,
                                           memory_order_relaxed);
    return !since || hp_now_ns() - since < STALL_NS;
}

static void wake(void)
{
    uint64_t one = 1;
    if (atomic_exchange(&R.asleep, false))
        while (write(R.efd, &one, sizeof one) < 0 && errno == EINTR)
            ;
}

void hp_reactor_submit(struct hp_reactor_job *job)
{
    job->next = NULL;
    job->timed_out = false;
    atomic_store_explicit(&job->abandoned, false, memory_order_relaxed);
    job->co = NULL;
    job->ticket = NULL;
    pthread_mutex_lock(&R.mu);
    if (R.tail)
        R.tail->next = job;
    else
        R.head = job;
    R.tail = job;
    atomic_fetch_add(&R.queued, 1);
    pthread_mutex_unlock(&R.mu);
    wake();
}

/* ---- the descriptors jobs wait for ---------------------------------------
 */

/* Arm fd for one event for j: EPOLLONESHOT, so a descriptor that fired
 * is disabled until the next wait re-arms it (one epoll_ctl per wait).
 * -1: fd cannot be waited for here (not pollable, no memory). */
static int arm(int fd, short events, struct hp_reactor_job *j)
{
    if ((size_t)fd >= R.narmed) {
        size_t n = R.narmed ? R.narmed : 256;
        while (n <= (size_t)fd)
            n *= 2;
        unsigned char *a = realloc(R.armed, n);
        if (!a)
            return -1;
        memset(a + R.narmed, 0, n - R.narmed);
        R.armed = a;
        R.narmed = n;
    }
    struct epoll_event ev = {.data.ptr = j, .events = EPOLLONESHOT};
    if (events & POLLIN)
        ev.events |= EPOLLIN | EPOLLRDHUP;
    if (events & POLLOUT)
        ev.events |= EPOLLOUT;
    /* The number may name another file than when it was armed (epoll
     * forgets a closed file by itself): MOD fails, ADD then works. */
    int op = R.armed[fd] ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    if (epoll_ctl(R.ep, op, fd, &ev) < 0) {
        op = op == EPOLL_CTL_MOD ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;
        if ((errno != ENOENT && errno != EEXIST) ||
            epoll_ctl(R.ep, op, fd, &ev) < 0) {
            R.armed[fd] = 0;
            return -1;
        }
    }
    R.armed[fd] = 1;
    return 0;
}

/* A wait that ended without its event: forget fd, so that no event of it
 * can name a job that has moved on (EPOLLERR and EPOLLHUP are reported
 * even for a registration without events). */
static void disarm(int fd)
{
    if (fd >= 0 && (size_t)fd < R.narmed && R.armed[fd]) {
        epoll_ctl(R.ep, EPOLL_CTL_DEL, fd, NULL);
        R.armed[fd] = 0;
    }
}

static void waiting_add(struct hp_reactor_job *j)
{
    pthread_mutex_lock(&R.wmu);
    j->wprev = NULL;
    j->wnext = R.waiting;
    if (R.waiting)
        R.waiting->wprev = j;
    R.waiting = j;
    pthread_mutex_unlock(&R.wmu);
}

static void waiting_del(struct hp_reactor_job *j)
{
    pthread_mutex_lock(&R.wmu);
    if (j->wprev)
        j->wprev->wnext = j->wnext;
    else
        R.waiting = j->wnext;
    if (j->wnext)
        j->wnext->wprev = j->wprev;
    j->wnext = j->wprev = NULL;
    pthread_mutex_unlock(&R.wmu);
}

/* A job given up on a stalled reactor (hp_reactor_abandon): its client
 * has been answered, so its waits fail at once, as one past the job's
 * deadline does (the database gives the query up: 57014). */
static bool given_up(struct hp_reactor_job *j)
{
    if (!atomic_load_explicit(&j->abandoned, memory_order_acquire))
        return false;
    j->timed_out = true;
    return true;
}

/* The reactor thread's hp_wait_bound: the running job's. */
static int64_t co_bound(void)
{
    hp_coro *co = hp_coro_current();
    return co ? ((struct hp_reactor_job *)hp_coro_data(co))->bound_ns : 0;
}

/* The reactor thread's wait hook (hp_wait_set_hook): on a job's coroutine,
 * suspend the job until fd is ready or the earlier of deadline and the
 * job's own deadline; elsewhere, poll. */
static int co_wait(int fd, short events, int64_t deadline, void *cls)
{
    (void)cls;
    hp_coro *co = hp_coro_current();
    if (!co)
        return hp_wait_poll(fd, events, deadline);
    struct hp_reactor_job *j = hp_coro_data(co);
    if (given_up(j))
        return 0;
    if (fd < 0 && !deadline && !j->deadline_ns) {
        errno = EINVAL; /* a sleep without end: as hp_wait_fd says */
        return -1;
    }
    bool own = false;
    if (j->deadline_ns && (!deadline || j->deadline_ns <= deadline)) {
        deadline = j->deadline_ns;
        own = true;
    }
    if (deadline && hp_now_ns() >= deadline) {
        j->timed_out |= own;
        return 0;
    }
    if (fd >= 0 && arm(fd, events, j) < 0)
        return hp_wait_poll(fd, events, deadline);
    j->wait_fd = fd;
    j->wait_until = deadline;
    j->wait_result = -1;
    waiting_add(j);
    atomic_fetch_add_explicit(&R.waits, 1, memory_order_relaxed);
    R.ops->suspend(j);
    hp_coro_yield();
    R.ops->resume(j);
    if (given_up(j))
        return 0;
    if (j->wait_result == 0)
        j->timed_out |= own;
    return j->wait_result;
}

/* ---- parking (wait.h) ----------------------------------------------------
 *
 * A parked job is on the waiting list with no descriptor (for its
 * deadline) and its ticket; an unpark puts it on the ready list (on this
 * thread) or the unparked list (another thread's, under R.mu, then the
 * wake-up if the reactor sleeps), and run_ready resumes it with 1.
 */

static void co_unpark(struct hp_wait_ticket *t)
{
    struct hp_reactor_job *j = t->owner;
    j->rnext = NULL;
    if (tl_reactor) {
        if (R.ready_tail)
            R.ready_tail->rnext = j;
        else
            R.ready = j;
        R.ready_tail = j;
        return;
    }
    pthread_mutex_lock(&R.mu);
    j->rnext = R.woken;
    R.woken = j;
    atomic_fetch_add(&R.nwoken, 1);
    pthread_mutex_unlock(&R.mu);
    wake();
}

static bool co_ticket(struct hp_wait_ticket *t)
{
    hp_coro *co = hp_coro_current();
    if (!co)
        return false; /* the reactor's own stack: park cannot yield */
    t->owner = hp_coro_data(co);
    t->wake = co_unpark;
    return true;
}

static int co_park(struct hp_wait_ticket *t, int64_t deadline)
{
    struct hp_reactor_job *j = t->owner;
    assert(hp_coro_current() && hp_coro_data(hp_coro_current()) == j);
    if (given_up(j))
        return 0;
    bool own = false;
    if (j->deadline_ns && (!deadline || j->deadline_ns <= deadline)) {
        deadline = j->deadline_ns;
        own = true;
    }
    int set = HP_TICKET_SET;
    if (deadline && hp_now_ns() >= deadline) {
        if (!atomic_compare_exchange_strong(&t->state, &set, HP_TICKET_DONE))
            return 1; /* unparked already */
        j->timed_out |= own;
        return 0;
    }
    j->wait_fd = -1;
    j->wait_until = deadline;
    j->wait_result = -1;
    j->ticket = t;
    waiting_add(j);
    if (!atomic_compare_exchange_strong(&t->state, &set, HP_TICKET_PARKED)) {
        waiting_del(j); /* unparked before it parked */
        j->ticket = NULL;
        return 1;
    }
    atomic_fetch_add_explicit(&R.waits, 1, memory_order_relaxed);
    R.ops->suspend(j);
    hp_coro_yield();
    R.ops->resume(j);
    j->ticket = NULL;
    if (given_up(j))
        return 0;
    if (j->wait_result == 0)
        j->timed_out |= own;
    return j->wait_result;
}

static const struct hp_wait_parking parking = {co_ticket, co_park};

/* ---- running jobs ----------------------------------------------------------
 */

static void trampoline(void *arg)
{
    struct hp_reactor_job *j = arg;
    R.ops->run(j);
}

/* j's run returned: off the record of hp_reactor_abandon (which may be
 * reading it as the holder), counted, handed back. */
static void finish(struct hp_reactor_job *j)
{
    pthread_mutex_lock(&R.wmu);
    atomic_store_explicit(&R.current, NULL, memory_order_relaxed);
    pthread_mutex_unlock(&R.wmu);
    atomic_fetch_sub(&R.active, 1);
    atomic_fetch_add_explicit(&R.runs, 1, memory_order_relaxed);
    if (R.ops->done)
        R.ops->done(j);
}

/* Resume j's coroutine until it waits again or is done; done, the job is
 * the caller's: not touched again. */
static void step(struct hp_reactor_job *j)
{
    hp_coro *co = j->co;
    atomic_store_explicit(&R.current, j, memory_order_release);
    atomic_store_explicit(&R.busy_since, hp_now_ns(), memory_order_relaxed);
    bool alive = hp_coro_resume(co);
    atomic_store_explicit(&R.busy_since, 0, memory_order_relaxed);
    if (!alive) {
        hp_coro_free(co);
        finish(j);
    }
}

/* Start j on a coroutine of its own. With no stack to be had (mmap
 * fails: the address-space limit, vm.max_map_count) while other jobs run,
 * false: j waits until one of them ends and gives its stack back. Run on
 * the reactor's own stack instead, its waits would block the reactor, and
 * a wait for a pool connection that a suspended job holds would never end
 * (FRESH11-5). With none running it runs there after all: no job of the
 * reactor's can hold what it waits for. */
static bool start(struct hp_reactor_job *j)
{
    j->co = hp_coro_new(R.stack, trampoline, j);
    if (!j->co) {
        if (atomic_load(&R.active) > 0) {
            if (atomic_load(&R.deferred) == 0) /* once a shortage */
                hp_log_error("reactor: no coroutine stack (%s); requests "
                             "wait for a running one's",
                             strerror(errno));
            return false;
        }
        hp_log_error("reactor: no coroutine stack (%s); a request runs "
                     "without one",
                     strerror(errno));
        atomic_fetch_add(&R.active, 1);
        atomic_store_explicit(&R.current, j, memory_order_release);
        atomic_store_explicit(&R.busy_since, hp_now_ns(), memory_order_relaxed);
        trampoline(j);
        atomic_store_explicit(&R.busy_since, 0, memory_order_relaxed);
        finish(j);
        return true;
    }
    atomic_fetch_add(&R.active, 1);
    hp_coro_set_data(j->co, j);
    step(j);
    return true;
}

/* The queue's first job, or NULL. */
static struct hp_reactor_job *queue_pop(void)
{
    if (atomic_load(&R.queued) == 0)
        return NULL;
    pthread_mutex_lock(&R.mu);
    struct hp_reactor_job *j = R.head;
    if (j) {
        R.head = j->next;
        if (!R.head)
            R.tail = NULL;
        atomic_fetch_sub(&R.queued, 1);
    }
    pthread_mutex_unlock(&R.mu);
    return j;
}

/* Start the jobs that wait for a stack, then the queue's, in order; those
 * start() cannot start yet stay on R.later, first in line next time. The
 * queue's are taken one at a time: a job that spins once started must not
 * hold the others in a list of this thread's, where hp_reactor_reclaim
 * cannot reach them (FRESH12-3). */
static void start_queued(void)
{
    struct hp_reactor_job *j = R.later;
    R.later = NULL;
    long later = 0;
    while (j) {
        struct hp_reactor_job *next = j->next; /* j may be gone after */
        if (!start(j)) {
            R.later = j; /* not started: j->next is still next */
            for (; j; j = j->next)
                later++;
            atomic_store(&R.deferred, later);
            return;
        }
        j = next;
    }
    while ((j = queue_pop())) {
        j->next = NULL;
        if (!start(j)) {
            R.later = j;
            later = 1;
            break;
        }
    }
    atomic_store(&R.deferred, later);
}

/* Resume the unparked jobs, this thread's first, until none is left (a
 * job resumed may unpark another). */
static void run_ready(void)
{
    for (;;) {
        struct hp_reactor_job *j = R.ready;
        if (!j) {
            if (atomic_load(&R.nwoken) == 0)
                return;
            pthread_mutex_lock(&R.mu);
            j = R.woken;
            R.woken = NULL;
            atomic_store(&R.nwoken, 0);
            pthread_mutex_unlock(&R.mu);
            /* the list is newest first: resume in the order of unparking */
            struct hp_reactor_job *rev = NULL;
            while (j) {
                struct hp_reactor_job *next = j->rnext;
                j->rnext = rev;
                rev = j;
                j = next;
            }
            R.ready = rev;
            for (j = rev; j && j->rnext; j = j->rnext)
                ;
            R.ready_tail = j;
            continue;
        }
        R.ready = j->rnext;
        if (!R.ready)
            R.ready_tail = NULL;
        waiting_del(j);
        j->wait_result = 1;
        step(j);
    }
}

/* Resume every job whose wait is past its deadline, or that was given up
 * (hp_reactor_abandon: its wait fails now, not when its event comes); the
 * earliest deadline still ahead, or 0. A parked job whose ticket was
 * unparked meanwhile is left to run_ready. */
/* j's wait ends here (its deadline, or given up), unless j is parked and
 * an unpark got there first: then run_ready resumes it (and a given-up
 * job's wait fails after all, in co_park). */
static bool ends_here(struct hp_reactor_job *j)
{
    int parked = HP_TICKET_PARKED;
    if (!j->ticket || atomic_compare_exchange_strong(&j->ticket->state,
                                                     &parked, HP_TICKET_DONE))
        return true;
    j->wait_until = 0;
    return false;
}

static int64_t expire(void)
{
    for (;;) {
        int64_t now = hp_now_ns(), next = 0;
        struct hp_reactor_job *due = NULL;
        for (struct hp_reactor_job *j = R.waiting; j; j = j->wnext) {
            if (atomic_load_explicit(&j->abandoned, memory_order_relaxed) &&
                ends_here(j)) {
                due = j;
                break;
            }
            if (!j->wait_until)
                continue;
            if (j->wait_until <= now && ends_here(j)) {
                due = j;
                break;
            }
            if (!j->wait_until)
                continue;
            if (!next || j->wait_until < next)
                next = j->wait_until;
        }
        if (!due)
            return next;
        waiting_del(due);
        disarm(due->wait_fd);
        due->wait_result = 0;
        step(due);
    }
}

static int timeout_ms(int64_t next)
{
    if (!next)
        return -1;
    int64_t left = next - hp_now_ns();
    return left <= 0 ? 0 : (int)((left + 999999) / 1000000);
}

static bool idle_and_stopping(void)
{
    return atomic_load(&R.stopping) && atomic_load(&R.active) == 0 &&
           atomic_load(&R.queued) == 0 && !R.later;
}

/* ---- the hosted event loop --------------------------------------------
 */

void hp_reactor_host(const struct hp_reactor_loop *loop)
{
    assert(!tl_reactor);
    pthread_mutex_lock(&HL.turn_mu);
    if (loop)
        HL.loop = *loop;
    else
        HL.loop.turn = NULL;
    atomic_store(&HL.on, loop != NULL);
    pthread_mutex_unlock(&HL.turn_mu);
    hp_reactor_poke();
}

void hp_reactor_poke(void)
{
    if (!atomic_load_explicit(&HL.on, memory_order_relaxed))
        return;
    /* Set before the wake-up's check of asleep: a reactor about to sleep
     * sees either the flag or the eventfd. On its own thread the flag is
     * enough: the loop turns again before it sleeps. */
    atomic_store(&HL.poked, true);
    if (!tl_reactor)
        wake();
}

/* Run the hosted loop once, if any: on the reactor's thread (and the
 * rescue thread, which holds turn_mu already). Its next deadline, or 0. */
static int64_t loop_turn(void)
{
    int64_t next = 0;
    pthread_mutex_lock(&HL.turn_mu);
    if (HL.loop.turn) {
        if (!HL.added) {
            struct epoll_event ev = {.events = EPOLLIN,
                                     .data.ptr = &HL.loop};
            if (epoll_ctl(R.ep, EPOLL_CTL_ADD, HL.loop.fd, &ev) == 0)
                HL.added = true;
        }
        HL.loop.turn();
        next = HL.loop.next_ns();
    }
    pthread_mutex_unlock(&HL.turn_mu);
    return next;
}

static void *rescue_main(void *arg)
{
    (void)arg;
    /* Until the job lets go of the reactor (or the loop is detached):
     * poll the loop's descriptor with a short timeout, since pokes go to
     * the reactor's eventfd, which this thread leaves alone. */
    while (atomic_load(&HL.on) && hp_reactor_stalled() > 0) {
        int fd = -1;
        if (pthread_mutex_trylock(&HL.turn_mu) == 0) {
            if (HL.loop.turn) {
                HL.loop.turn();
                fd = HL.loop.fd;
            }
            pthread_mutex_unlock(&HL.turn_mu);
        }
        if (fd >= 0)
            poll(&(struct pollfd){.fd = fd, .events = POLLIN}, 1, 10);
        else
            usleep(10000); /* a turn runs (an inline page holds it) */
    }
    atomic_store(&HL.rescuing, false);
    return NULL;
}

void hp_reactor_rescue(void)
{
    if (!atomic_load(&HL.on) || hp_reactor_stalled() * 1e9 < STALL_NS ||
        atomic_exchange(&HL.rescuing, true))
        return;
    pthread_attr_t a;
    pthread_t t;
    int e = pthread_attr_init(&a);
    if (!e) {
        pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
        e = pthread_create(&t, &a, rescue_main, NULL);
        pthread_attr_destroy(&a);
    }
    if (e)
        atomic_store(&HL.rescuing, false); /* tried again in a second */
}

static void *reactor_main(void *arg)
{
    (void)arg;
    tl_reactor = true;
    hp_wait_set_hook(co_wait, NULL);
    hp_wait_set_parking(&parking);
    hp_wait_set_bound_fn(co_bound);
    struct epoll_event ev[EVENTS];
    for (;;) {
        int64_t ln = 0;
        if (atomic_load_explicit(&HL.on, memory_order_relaxed)) {
            /* Before the check of poked below: a poke from here on is
             * seen there or wakes the epoll_wait. What the turn hands over
             * (requests) or lets go (a connection released, unparking a
             * job) runs next, before any sleep. */
            atomic_store(&HL.poked, false);
            ln = loop_turn();
        }
        start_queued();
        run_ready();
        int64_t next = expire();
        if (ln && (!next || ln < next))
            next = ln;
        if (idle_and_stopping())
            break;
        atomic_store(&R.asleep, true);
        int ms = atomic_load(&R.queued) || atomic_load(&R.nwoken) ||
                         R.ready || atomic_load(&HL.poked)
                     ? 0
                     : timeout_ms(next);
        int n = epoll_wait(R.ep, ev, EVENTS, ms);
        atomic_store(&R.asleep, false);
        if (n < 0 && errno != EINTR) {
            /* A page closed our epoll descriptor: the liveness check
             * (liveness.c) ends this process; do not spin meanwhile. */
            usleep(10000);
            continue;
        }
        for (int i = 0; i < n; i++) {
            if (ev[i].data.ptr == &HL.loop)
                continue; /* turned at the top of the loop */
            if (ev[i].data.ptr == &R.efd) {
                uint64_t v;
                while (read(R.efd, &v, sizeof v) < 0 && errno == EINTR)
                    ;
                continue;
            }
            struct hp_reactor_job *j = ev[i].data.ptr;
            waiting_del(j);
            j->wait_result = 1;
            step(j);
        }
    }
    hp_wait_set_hook(NULL, NULL);
    return NULL;
}

int hp_reactor_start(size_t stack_size, const struct hp_reactor_ops *ops)
{
    assert(!atomic_load(&R.running));
    R.ops = ops;
    R.stack = stack_size ? stack_size : DEFAULT_STACK;
    R.ep = epoll_create1(EPOLL_CLOEXEC);
    R.efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &R.efd};
    if (R.ep < 0 || R.efd < 0 || epoll_ctl(R.ep, EPOLL_CTL_ADD, R.efd, &ev))
        goto fail;
    atomic_store(&R.stopping, false);
    int e = pthread_create(&R.thread, NULL, reactor_main, NULL);
    if (e) {
        errno = e;
        goto fail;
    }
    atomic_store(&R.running, true);
    return 0;
fail:;
    int saved = errno;
    if (R.ep >= 0)
        close(R.ep);
    if (R.efd >= 0)
        close(R.efd);
    R.ep = R.efd = -1;
    errno = saved;
    return -1;
}

void hp_reactor_stop(void)
{
    if (!atomic_load(&R.running))
        return;
    atomic_store(&R.stopping, true);
    atomic_store(&R.asleep, true);
    wake();
    pthread_join(R.thread, NULL);
    atomic_store(&R.running, false);
    close(R.ep);
    close(R.efd);
    R.ep = R.efd = -1;
    free(R.armed);
    R.armed = NULL;
    R.narmed = 0;
    HL.added = false;
}

double hp_reactor_stalled(void)
{
    long long since =
        atomic_load_explicit(&R.busy_since, memory_order_relaxed);
    return since ? (double)(hp_now_ns() - since) / 1e9 : 0;
}

long hp_reactor_held(void)
{
    return atomic_load(&R.active) + atomic_load(&R.queued) +
           atomic_load(&R.deferred);
}

long hp_reactor_reclaim(void (*fn)(struct hp_reactor_job *job))
{
    if (hp_reactor_stalled() * 1e9 < STALL_NS)
        return 0;
    pthread_mutex_lock(&R.mu);
    struct hp_reactor_job *j = R.head;
    R.head = R.tail = NULL;
    atomic_store(&R.queued, 0);
    pthread_mutex_unlock(&R.mu);
    long n = 0;
    while (j) {
        struct hp_reactor_job *next = j->next;
        fn(j);
        j = next;
        n++;
    }
    return n;
}

long hp_reactor_abandon(void (*fn)(struct hp_reactor_job *job,
                                   const struct hp_reactor_job *holder,
                                   void *arg),
                        void *arg)
{
    if (hp_reactor_stalled() * 1e9 < STALL_NS)
        return 0;
    long n = 0;
    pthread_mutex_lock(&R.wmu);
    /* Under wmu the holder cannot be handed back (finish), nor a waiter
     * resumed (waiting_del): both stay what they are while fn runs. */
    struct hp_reactor_job *holder =
        atomic_load_explicit(&R.current, memory_order_acquire);
    if (holder && hp_reactor_stalled() * 1e9 >= STALL_NS)
        for (struct hp_reactor_job *j = R.waiting; j; j = j->wnext) {
            if (atomic_load_explicit(&j->abandoned, memory_order_relaxed))
                continue;
            atomic_store_explicit(&j->abandoned, true, memory_order_release);
            atomic_fetch_add_explicit(&R.abandoned, 1, memory_order_relaxed);
            fn(j, holder, arg);
            n++;
        }
    pthread_mutex_unlock(&R.wmu);
    return n;
}

void hp_reactor_stats(struct hp_reactor_stats *out)
{
    out->runs = atomic_load_explicit(&R.runs, memory_order_relaxed);
    out->waits = atomic_load_explicit(&R.waits, memory_order_relaxed);
    out->active = atomic_load(&R.active);
    out->queued = atomic_load(&R.queued) + atomic_load(&R.deferred);
    out->abandoned = atomic_load_explicit(&R.abandoned, memory_order_relaxed);
}
