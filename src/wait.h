/*
 * wait.h - how a thread waits for a descriptor or a deadline (wait.c).
 *
 * Owns: the per-thread wait hook and the poll(2) fallback.
 * May not touch: the database, requests, pages.
 */
#ifndef HP_WAIT_H
#define HP_WAIT_H
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

/* Nanoseconds (CLOCK_MONOTONIC) this thread has spent in hp_wait_fd so
 * far, hook or poll: for placement's accounting of time off the CPU. */
int64_t hp_wait_ns(void);

#endif
