/*
 * sesslock.c - the lock of one session stored in an SQLite database: one
 * byte of a lock file beside the database file, locked with an open file
 * description lock (fcntl F_OFD_SETLK), from a request's first use of its
 * session to the end of the request (session.c decides when).
 *
 * Owns: the lock file's name and mode, which byte a session's lock is
 * (hp_sesslock__offset), and the bounded wait. May not touch: the database
 * (session.c reads and writes the session), requests and their resources.
 *
 * Why a lock file and not SQLite's own locking: SQLite has one write lock
 * for the whole database, so holding it for a request's rest would make
 * every session (and every writer) wait for every other; a byte per
 * session lets two sessions run side by side. Why OFD locks: they belong
 * to the open file description, so two handler threads of one process
 * exclude each other (classic POSIX record locks are per process and
 * would not), and the kernel drops them when the description is closed,
 * which it does for a worker that crashes or is killed: no lock outlives
 * its process. Why not the database file itself: closing any descriptor of
 * a file drops the process's POSIX locks on it, SQLite's own included.
 *
 * The wait polls (F_OFD_SETLKW has no time limit): from 0.2 ms up to 4 ms
 * between tries, so a session freed by another process is taken within a
 * few milliseconds; a release in this process wakes this process's
 * waiters at once (one condition variable: waiters are few, handler
 * threads, and a release with none costs two atomic operations). Waiters
 * are not queued in order; a wait ends at its deadline.
 */
#include "sesslock.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* This process's releases, for its waiters. */
static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    atomic_uint released; /* count of releases: a waiter's "since"  */
    atomic_uint waiters;
} W = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

/* Sleep up to us microseconds, or until a release in this process after
 * the one numbered since. */
static void nap_until_release(unsigned since, long us)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_nsec += us * 1000;
    if (until.tv_nsec >= 1000000000L)
        until.tv_sec++, until.tv_nsec -= 1000000000L;
    pthread_mutex_lock(&W.mu);
    atomic_fetch_add(&W.waiters, 1);
    while (atomic_load(&W.released) == since &&
           pthread_cond_timedwait(&W.cv, &W.mu, &until) == 0)
        ;
    atomic_fetch_sub(&W.waiters, 1);
    pthread_mutex_unlock(&W.mu);
}

uint64_t hp_sesslock__offset(const char *hash_hex)
{
    /* 60 bits of the session's SHA-256: two sessions share a byte with a
     * chance of 2^-60, and the offset stays far below OFF_MAX. */
    uint64_t off = 0;
    for (int i = 0; i < 15 && hash_hex[i]; i++) {
        char c = hash_hex[i];
        int v = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : 0;
        off = off << 4 | (uint64_t)v;
    }
    return off;
}

char *hp_sesslock_path(const char *db_file)
{
    return hp_xasprintf("%s-session-locks", db_file);
}

static int try_lock(int fd, uint64_t off)
{
    struct flock fl = {.l_type = F_WRLCK,
                       .l_whence = SEEK_SET,
                       .l_start = (off_t)off,
                       .l_len = 1};
    if (fcntl(fd, F_OFD_SETLK, &fl) == 0)
        return 0;
    return errno == EAGAIN || errno == EACCES || errno == EINTR ? 1 : -1;
}

int hp_sesslock_acquire(const char *lock_path, const char *hash_hex,
                        int timeout_ms, int *fd_out)
{
    int fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    uint64_t off = hp_sesslock__offset(hash_hex);
    double until = hp_now() + timeout_ms / 1000.0;
    long nap = 200;
    for (;;) {
        unsigned since = atomic_load(&W.released);
        int rc = try_lock(fd, off);
        if (rc == 0) {
            *fd_out = fd;
            return 0;
        }
        if (rc < 0 || hp_now() >= until) {
            int saved = errno;
            close(fd);
            errno = saved;
            return rc < 0 ? -1 : 1;
        }
        nap_until_release(since, nap);
        nap = nap < 4000 ? nap * 2 : 4000;
    }
}

void hp_sesslock_release(int fd)
{
    if (fd < 0)
        return;
    close(fd); /* the last descriptor of the description: unlocked */
    atomic_fetch_add(&W.released, 1);
    if (atomic_load(&W.waiters) == 0)
        return;
    pthread_mutex_lock(&W.mu);
    pthread_cond_broadcast(&W.cv);
    pthread_mutex_unlock(&W.mu);
}
