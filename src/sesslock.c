/*
 * sesslock.c - the lock of one session stored in an SQLite database: one
 * byte of a lock file beside the database file, locked with an open file
 * description lock (fcntl F_OFD_SETLK), from a request's first use of its
 * session to the end of the request (session.c decides when).
 *
 * Owns: the lock file's name and mode, which byte a session's lock is
 * (hp_sesslock__offset), the bounded wait, and the list of the sessions
 * this process holds (the in-process stage). May not touch: the database
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
 * few milliseconds. Waiters are not queued in order; a wait ends at its
 * deadline.
 *
 * Also here, for both engines: the in-process stage (hp_sesslock_local_*),
 * which a request passes before the store's lock: this process's requests
 * of one session wait on a condition variable (woken at once by the
 * release), so at most one request per session and process waits at the
 * store's lock. That matters on PostgreSQL, where a request waiting for
 * the row holds one of the pool's connections: without it, one client
 * sending many requests of one session at once could hold them all. It is
 * an in-process lock, but it cannot outlive its holder: it is released
 * with the request's resources, and it dies with the process. On a
 * thread that runs coroutines (the reactor) the stage naps through
 * hp_wait_fd instead: the condition variable would stall the request that
 * holds the session, whose wait on the database is on the same thread.
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

#include "wait.h"

/* The sessions this process's requests hold (SHA-256 hex of their ids):
 * few, one per handler thread at most, so a list. */
static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv; /* a session was released */
    char (*held)[65];
    size_t n, cap;
} L = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static long held_at(const char *hash)
{
    for (size_t i = 0; i < L.n; i++)
        if (strcmp(L.held[i], hash) == 0)
            return (long)i;
    return -1;
}

/* CLOCK_REALTIME for pthread_cond_timedwait, from a hp_now() deadline. */
static struct timespec realtime_at(double until)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    double left = until - hp_now();
    if (left < 0)
        left = 0;
    long long ns = (long long)ts.tv_nsec + (long long)(left * 1e9);
    ts.tv_sec += (time_t)(ns / 1000000000LL);
    ts.tv_nsec = (long)(ns % 1000000000LL);
    return ts;
}

/* Take hash_hex's in-process stage if it is free: 0 taken, 1 held. */
static int local_try_locked(const char *hash_hex)
{
    if (held_at(hash_hex) >= 0)
        return 1;
    if (L.n == L.cap) {
        L.cap = L.cap ? 2 * L.cap : 16;
        L.held = hp_xrealloc(L.held, L.cap * sizeof *L.held);
    }
    snprintf(L.held[L.n++], sizeof *L.held, "%s", hash_hex);
    return 0;
}

/* The in-process stage on a thread that runs coroutines (the reactor):
 * the condition variable would block the thread, and with it the request
 * that holds the session (it waits on the database on the same thread),
 * until the timeout. So it naps through hp_wait_fd, 0.2 ms doubling up to
 * 4 ms, and the other coroutines run meanwhile. A nap cut short (the
 * request's own deadline passed) gives up: 1, as a timeout. */
static int local_acquire_hooked(const char *hash_hex, double until)
{
    int64_t until_ns = (int64_t)(until * 1e9), nap = 200000;
    for (;;) {
        pthread_mutex_lock(&L.mu);
        int rc = local_try_locked(hash_hex);
        pthread_mutex_unlock(&L.mu);
        int64_t now = hp_now_ns();
        if (rc == 0 || now >= until_ns)
            return rc;
        int64_t wake = now + nap < until_ns ? now + nap : until_ns;
        if (hp_wait_fd(-1, 0, wake) != 0 || hp_now_ns() < wake)
            return 1;
        nap = nap < 4000000 ? nap * 2 : 4000000;
    }
}

int hp_sesslock_local_acquire(const char *hash_hex, double until)
{
    if (hp_wait_hooked())
        return local_acquire_hooked(hash_hex, until);
    struct timespec ts = realtime_at(until);
    pthread_mutex_lock(&L.mu);
    int rc = 0;
    while (held_at(hash_hex) >= 0 && rc == 0)
        if (pthread_cond_timedwait(&L.cv, &L.mu, &ts) == ETIMEDOUT)
            rc = held_at(hash_hex) >= 0 ? 1 : 0;
    if (rc == 0) {
        if (L.n == L.cap) {
            L.cap = L.cap ? 2 * L.cap : 16;
            L.held = hp_xrealloc(L.held, L.cap * sizeof *L.held);
        }
        snprintf(L.held[L.n++], sizeof *L.held, "%s", hash_hex);
    }
    pthread_mutex_unlock(&L.mu);
    return rc;
}

void hp_sesslock_local_release(const char *hash_hex)
{
    pthread_mutex_lock(&L.mu);
    long i = held_at(hash_hex);
    if (i >= 0) {
        memcpy(L.held[i], L.held[L.n - 1], sizeof *L.held);
        L.n--;
        pthread_cond_broadcast(&L.cv);
    }
    pthread_mutex_unlock(&L.mu);
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
        usleep((useconds_t)nap);
        nap = nap < 4000 ? nap * 2 : 4000;
    }
}

void hp_sesslock_release(int fd)
{
    if (fd < 0)
        return;
    close(fd); /* the last descriptor of the description: unlocked */
}
