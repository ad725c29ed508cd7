/*
 * wait.h - how a thread waits for a descriptor or a deadline (wait.c).
 *
 * Owns: the per-thread wait hook and the poll(2) fallback.
 * May not touch: the database, requests, pages.
 */
#ifndef HP_WAIT_H
#define HP_WAIT_H
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

/*
 * Wait until fd is ready for events (POLLIN/POLLOUT), or until deadline_ns
 * (CLOCK_MONOTONIC, absolute ns, as hp_now_ns; 0 = no deadline). fd < 0:
 * just sleep until deadline_ns. Through this thread's hook if one is set
 * (hp_wait_set_hook), else poll(2) (EINTR retried with the remaining time).
 * Returns 1 ready (POLLERR/POLLHUP count as ready: the caller's next read
 * or write says what went wrong), 0 the deadline passed, -1 an error
 * (errno; EINVAL for fd < 0 without a deadline).
 */
int hp_wait_fd(int fd, short events, int64_t deadline_ns);

/* hp_wait_fd's fallback, poll(2) whatever the hook: for a scheduler's hook
 * when the waiter cannot be suspended (not on a coroutine). Does not count
 * in hp_wait_ns (the hp_wait_fd that called the hook does). */
int hp_wait_poll(int fd, short events, int64_t deadline_ns);

/* A scheduler's wait: the same arguments and answers as hp_wait_fd, with
 * the cls given to hp_wait_set_hook. */
typedef int (*hp_wait_hook)(int fd, short events, int64_t deadline_ns,
                            void *cls);

/* This thread's waits go through fn(..., cls) from now on; NULL: back to
 * poll(2). */
void hp_wait_set_hook(hp_wait_hook fn, void *cls);

/* This thread's waits go through a hook (a caller must then not block the
 * thread any other way: a condition variable would stall its coroutines). */
bool hp_wait_hooked(void);

/* Nanoseconds (CLOCK_MONOTONIC) this thread has spent in hp_wait_fd and
 * hp_wait_park so far, hook or poll: for placement's accounting of time
 * off the CPU. */
int64_t hp_wait_ns(void);

/*
 * Parking: a wait that another waiter ends, not a descriptor (a pool's
 * connection given back). On a thread whose scheduler parks (the
 * reactor's), the waiter takes a ticket (hp_wait_ticket) under its own
 * lock, puts it where the waker finds it, lets the lock go and parks; the
 * waker unparks the ticket, from any thread, with any lock held: it never
 * blocks, and a waker on the scheduler's own thread makes no system call
 * (no eventfd to write, arm and read: three a hand-over, per request on a
 * busy pool). An unpark that comes before the park is not lost.
 *
 *   ticket: SET --park--> PARKED --unpark--> UNPARKED (park returns 1)
 *              \                 \--deadline--> DONE (park returns 0)
 *               \--unpark--> UNPARKED (park returns 1 at once)
 *
 * The scheduler's fields: the waker only calls hp_wait_unpark. The
 * scheduler moves PARKED to DONE (compare-and-swap) when the deadline
 * comes; failing that, an unpark is on its way and resumes the waiter.
 */
enum {
    HP_TICKET_SET,
    HP_TICKET_PARKED,
    HP_TICKET_UNPARKED,
    HP_TICKET_DONE
};
struct hp_wait_ticket {
    _Atomic int state; /* HP_TICKET_* */
    void (*wake)(struct hp_wait_ticket *t); /* the scheduler's resume */
    void *owner;                            /* the scheduler's waiter */
};

/* A scheduler that parks: fill *t for the waiter running now (false: it
 * cannot, e.g. not on a coroutine), and park it until unparked or
 * deadline_ns (as hp_wait_fd: 1 unparked, 0 the deadline, -1 an error). */
struct hp_wait_parking {
    bool (*ticket)(struct hp_wait_ticket *t);
    int (*park)(struct hp_wait_ticket *t, int64_t deadline_ns);
};

/* This thread's hook parks as p says from now on (NULL: it cannot; set
 * with, and cleared by, hp_wait_set_hook). */
void hp_wait_set_parking(const struct hp_wait_parking *p);

/* Fill *t for a park of this thread's current waiter; false when its
 * waits cannot park (no hook, or a hook without parking): wait on an
 * eventfd through hp_wait_fd, or a condition variable, instead. */
bool hp_wait_ticket(struct hp_wait_ticket *t);

/* Park until hp_wait_unpark(t) or deadline_ns (absolute, as hp_wait_fd;
 * 0: none). 1 unparked, 0 the deadline passed (an unpark after that is
 * too late, and harmless), -1 an error (errno). Once per ticket. */
int hp_wait_park(struct hp_wait_ticket *t, int64_t deadline_ns);

/* End t's park, or the park about to begin. Any thread, never blocks; at
 * most once per ticket. */
void hp_wait_unpark(struct hp_wait_ticket *t);

/*
 * The handler's bound: the time (CLOCK_MONOTONIC ns, absolute; 0 none) by
 * which a wait the server bounds itself (a pool's acquire, a session's
 * lock, a request's wait for its page's build) must end, so that the page
 * can still answer its 503 before --handler-timeout makes it look stuck
 * (a 504, the worker replaced). The handler's deadline less
 * hp_wait_margin_ns. Set per run, and for the pin before it, on a
 * handler thread (server.c); on a scheduler's thread (hook set), its
 * callback answers for the job running now (the reactor's).
 */
void hp_wait_set_bound(int64_t ns);
void hp_wait_set_bound_fn(int64_t (*fn)(void));
int64_t hp_wait_bound(void);
/* The margin left before a handler timeout of t seconds (t > 0): a
 * quarter of it, at most 250 ms. */
int64_t hp_wait_margin_ns(double t);
/* The deadline of a wait the server bounds itself of ms milliseconds from
 * now (ms <= 0: now), cut to hp_wait_bound; *cut (if not NULL) says the
 * bound, not ms, decided. */
int64_t hp_wait_bounded(int ms, bool *cut);

#endif
