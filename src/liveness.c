/*
 * liveness.c - the census of this process's own descriptors: the
 * identities (device and inode) of the descriptors serving depends on,
 * recorded when serving starts and checked once a second by the accept
 * thread (server.c), so that a page that closed them (a daemonising
 * library's "close every descriptor", a `for (fd = 0; fd < 100; fd++)
 * close(fd)`) leaves a process that says so and ends, instead of one that
 * looks ready and never serves again.
 *
 * Owns: the table of recorded descriptors and its lock, the duplicate of
 * standard error kept for last words.
 * May not touch: the descriptors themselves (it only fstat()s them, and
 * dup2()s standard error back on request), processes, HTTP.
 *
 * Which descriptors: standard error, those the caller names (the
 * listening socket, the access log) and every anonymous-inode descriptor
 * (epoll, eventfd, inotify, timerfd, signalfd) open when serving starts,
 * before any page runs: libmicrohttpd's event loops, the listener's and
 * the watcher's. Those live as long as the server. Sockets and files that
 * come and go (database connections, pages' files) are not recorded.
 */
#include "liveness.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_FDS 256

struct rec {
    int fd;
    dev_t dev;
    ino_t ino;
    char what[40]; /* readlink's text, for the log */
};

static struct {
    pthread_mutex_t mu;
    struct rec r[MAX_FDS];
    int n;
    int saved_err; /* duplicate of standard error, or -1 */
    dev_t err_dev;
    ino_t err_ino;
} V = {.mu = PTHREAD_MUTEX_INITIALIZER, .saved_err = -1};

/* Called with V.mu held: (re)record fd; false if it is not open. */
static bool put(int fd)
{
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0)
        return false;
    struct rec *r = NULL;
    for (int i = 0; i < V.n && !r; i++)
        if (V.r[i].fd == fd)
            r = &V.r[i];
    if (!r && V.n == MAX_FDS)
        return false;
    if (!r)
        r = &V.r[V.n++];
    r->fd = fd;
    r->dev = st.st_dev;
    r->ino = st.st_ino;
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t k = readlink(link, r->what, sizeof r->what - 1);
    r->what[k > 0 ? k : 0] = '\0';
    return true;
}

/* Called with V.mu held: every anonymous-inode descriptor open now. */
static void put_anon_inodes(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d))) {
        char link[64], target[64];
        int fd = atoi(de->d_name);
        if (de->d_name[0] < '0' || de->d_name[0] > '9' || fd == dirfd(d))
            continue;
        snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
        ssize_t k = readlink(link, target, sizeof target - 1);
        if (k <= 0)
            continue;
        target[k] = '\0';
        if (strncmp(target, "anon_inode:", 11) == 0 &&
            strcmp(target, "anon_inode:[pidfd]") != 0)
            put(fd);
    }
    closedir(d);
}

/* Called with V.mu held: a duplicate of standard error far above the
 * descriptors a page is likely to close. */
static void save_stderr(void)
{
    struct stat st;
    if (fstat(STDERR_FILENO, &st) < 0)
        return;
    if (V.saved_err >= 0 && V.err_dev == st.st_dev && V.err_ino == st.st_ino)
        return;
    struct rlimit rl;
    int low = 1000;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        rl.rlim_cur <= 1000)
        low = (int)rl.rlim_cur / 2;
    int fd = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, low);
    if (fd < 0)
        return;
    if (V.saved_err >= 0)
        close(V.saved_err);
    V.saved_err = fd;
    V.err_dev = st.st_dev;
    V.err_ino = st.st_ino;
}

int hp_liveness_record(const int *extra, size_t n)
{
    pthread_mutex_lock(&V.mu);
    V.n = 0;
    put(STDERR_FILENO);
    for (size_t i = 0; i < n; i++)
        put(extra[i]);
    put_anon_inodes();
    save_stderr();
    int recorded = V.n;
    pthread_mutex_unlock(&V.mu);
    return recorded;
}

void hp_liveness_begin_change(void)
{
    pthread_mutex_lock(&V.mu);
}

void hp_liveness_end_change(int before, int after)
{
    for (int i = 0; i < V.n && before >= 0; i++)
        if (V.r[i].fd == before && before != STDERR_FILENO)
            V.r[i--] = V.r[--V.n];
    put(STDERR_FILENO);
    put(after);
    save_stderr();
    pthread_mutex_unlock(&V.mu);
}

int hp_liveness_check(char *why, size_t n)
{
    int rc = 0;
    pthread_mutex_lock(&V.mu);
    for (int i = 0; i < V.n && rc == 0; i++) {
        struct rec *r = &V.r[i];
        struct stat st;
        if (fstat(r->fd, &st) < 0) {
            snprintf(why, n, "descriptor %d (%s) was closed", r->fd, r->what);
            rc = -1;
        } else if (st.st_dev != r->dev || st.st_ino != r->ino) {
            snprintf(why, n,
                     "descriptor %d (%s) was closed and now names another "
                     "file",
                     r->fd, r->what);
            rc = -1;
        }
    }
    pthread_mutex_unlock(&V.mu);
    return rc;
}

void hp_liveness_restore_stderr(void)
{
    struct stat st, saved;
    if (V.saved_err < 0 || fstat(V.saved_err, &saved) < 0 ||
        saved.st_dev != V.err_dev || saved.st_ino != V.err_ino)
        return; /* the duplicate is gone too */
    if (fstat(STDERR_FILENO, &st) == 0 && st.st_dev == V.err_dev &&
        st.st_ino == V.err_ino)
        return;
    dup2(V.saved_err, STDERR_FILENO);
}

/*
 * The count of open descriptors. Linux 6.2 and later give it as the size
 * of /proc/self/fd (a bitmap's weight: one stat(), no descriptor needed);
 * before, the directory is read, which takes a descriptor (none left:
 * the table is full) and costs a little per entry, so the count stops at
 * `stop`.
 */
long hp_liveness_fd_count(long stop)
{
    struct stat st;
    if (stat("/proc/self/fd", &st) == 0 && st.st_size > 0)
        return (long)st.st_size;
    return hp_liveness_fd_count_dir(stop);
}

long hp_liveness_fd_count_dir(long stop)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return errno == EMFILE ? stop : -1;
    long n = 0;
    struct dirent *de;
    while (n < stop && (de = readdir(d))) /* not the directory's own */
        n += de->d_name[0] >= '0' && de->d_name[0] <= '9' &&
             atoi(de->d_name) != dirfd(d);
    closedir(d);
    return n;
}

void hp_liveness_fd_sample(char *out, size_t n)
{
    enum { SAMPLE = 64 };
    int top = -1;
    out[0] = '\0';
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d)))
        if (de->d_name[0] >= '0' && de->d_name[0] <= '9' &&
            atoi(de->d_name) != dirfd(d) && atoi(de->d_name) > top &&
            atoi(de->d_name) != V.saved_err) /* ours, high on purpose */
            top = atoi(de->d_name);
    closedir(d);
    static char names[SAMPLE][96]; /* the accept thread's, once */
    char link[64];
    int seen = 0;
    for (int fd = top; fd >= 0 && seen < SAMPLE; fd--) {
        if (fd == V.saved_err)
            continue;
        snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
        ssize_t k = readlink(link, names[seen], sizeof names[seen] - 1);
        if (k > 0)
            names[seen++][k] = '\0';
    }
    int best = -1, most = 0;
    for (int i = 0; i < seen; i++) {
        int same = 0;
        for (int j = 0; j < seen; j++)
            same += strcmp(names[i], names[j]) == 0;
        if (same > most)
            best = i, most = same;
    }
    if (best >= 0)
        snprintf(out, n, "%d of the %d highest descriptors (up to %d) name %s",
                 most, seen, top, names[best]);
}
