/*
 * wait.c - how a thread waits for a descriptor or a deadline: through a
 * hook a coroutine scheduler installs for its thread (it yields the
 * coroutine and resumes it when the descriptor is ready), else poll(2).
 *
 * Owns: the per-thread hook and the time spent waiting (hp_wait_ns).
 * May not touch: the database, requests, pages: the callers (db_pg.c,
 * db_pool.c) decide what a timeout means for them.
 */
#include "wait.h"

#include "hp.h"

#include <errno.h>
#include <poll.h>

static __thread hp_wait_hook tl_hook;
static __thread void *tl_cls;
static __thread int64_t tl_wait_ns;

static __thread const struct hp_wait_parking *tl_parking;
static __thread int64_t tl_bound;
static __thread int64_t (*tl_bound_fn)(void);

void hp_wait_set_hook(hp_wait_hook fn, void *cls)
{
    tl_hook = fn;
    tl_cls = fn ? cls : NULL;
    tl_parking = NULL;
    tl_bound_fn = NULL;
}

void hp_wait_set_parking(const struct hp_wait_parking *p)
{
    tl_parking = tl_hook ? p : NULL;
}

bool hp_wait_ticket(struct hp_wait_ticket *t)
{
    atomic_init(&t->state, HP_TICKET_SET);
    t->wake = NULL;
    t->owner = NULL;
    return tl_parking && tl_parking->ticket(t);
}

int hp_wait_park(struct hp_wait_ticket *t, int64_t deadline_ns)
{
    if (!tl_parking || !t->wake) {
        errno = EINVAL; /* no ticket of this thread's scheduler */
        return -1;
    }
    int64_t t0 = hp_now_ns();
    int rc = tl_parking->park(t, deadline_ns);
    int saved = errno;
    tl_wait_ns += hp_now_ns() - t0;
    errno = saved;
    return rc;
}

void hp_wait_unpark(struct hp_wait_ticket *t)
{
    /* Only a parked waiter needs its scheduler; one not parked yet sees
     * UNPARKED when it parks, one whose deadline came first is gone. */
    int was = atomic_exchange(&t->state, HP_TICKET_UNPARKED);
    if (was == HP_TICKET_PARKED)
        t->wake(t);
}

bool hp_wait_hooked(void)
{
    return tl_hook != NULL;
}

int64_t hp_wait_ns(void)
{
    return tl_wait_ns;
}

/* poll(2)'s timeout for an absolute deadline: -1 without one, else the ms
 * left rounded up (a wait never ends before its deadline), capped. */
static int poll_ms(int64_t deadline_ns)
{
    if (!deadline_ns)
        return -1;
    int64_t left = deadline_ns - hp_now_ns();
    if (left <= 0)
        return 0;
    int64_t ms = (left + 999999) / 1000000;
    return ms > 1000000000 ? 1000000000 : (int)ms;
}

int hp_wait_poll(int fd, short events, int64_t deadline_ns)
{
    struct pollfd p = {.fd = fd, .events = events};
    for (;;) {
        int ms = poll_ms(deadline_ns);
        int rc = poll(&p, fd < 0 ? 0 : 1, ms);
        if (rc > 0)
            return (p.revents & POLLNVAL) ? (errno = EBADF, -1) : 1;
        if (rc == 0) {
            if (ms != 0 && hp_now_ns() < deadline_ns)
                continue; /* woke a little early (rounding): wait on */
            return 0;
        }
        if (errno != EINTR)
            return -1;
    }
}

int hp_wait_fd(int fd, short events, int64_t deadline_ns)
{
    if (fd < 0 && !deadline_ns) {
        errno = EINVAL; /* would sleep forever */
        return -1;
    }
    int64_t t0 = hp_now_ns();
    int rc = tl_hook ? tl_hook(fd, events, deadline_ns, tl_cls)
                     : hp_wait_poll(fd, events, deadline_ns);
    int saved = errno;
    tl_wait_ns += hp_now_ns() - t0;
    errno = saved;
    return rc;
}

void hp_wait_set_bound(int64_t ns)
{
    tl_bound = ns;
}

void hp_wait_set_bound_fn(int64_t (*fn)(void))
{
    tl_bound_fn = tl_hook ? fn : NULL;
}

int64_t hp_wait_bound(void)
{
    if (tl_hook)
        return tl_bound_fn ? tl_bound_fn() : 0;
    return tl_bound;
}

int64_t hp_wait_margin_ns(double t)
{
    int64_t q = (int64_t)(t * 1e9 / 4);
    return q < 250000000 ? q : 250000000;
}

int64_t hp_wait_bounded(int ms, bool *cut)
{
    int64_t now = hp_now_ns();
    int64_t until = now + (ms > 0 ? (int64_t)ms * 1000000 : 0);
    int64_t b = hp_wait_bound();
    bool c = b && b < until;
    if (c)
        until = b > now ? b : now;
    if (cut)
        *cut = c;
    return until;
}
