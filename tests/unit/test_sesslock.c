/*
 * test_sesslock.c - unit tests for sesslock.c, the per-session lock of
 * SQLite sessions: which byte a session is, that two threads of one
 * process exclude each other (OFD locks, not per-process POSIX locks), that
 * two sessions do not, that a wait ends at its limit, that a release lets a
 * waiter in at once, and that a child process that dies holding a lock
 * frees it; and the in-process stage: the same, woken by the release.
 * On a thread with a wait hook (the reactor), the in-process stage waits
 * through the hook, never on its condition variable (FRESH11-1).
 * The end-to-end runs are tests/e2e/sessions.py.
 *
 * Owns: its temporary directory. May not touch: anything else.
 */
#include "sesslock.h"
#include "t.h"
#include "wait.h"

#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

static char lock_path[PATH_MAX];

#define HASH_A                                                                 \
    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define HASH_B                                                                 \
    "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"

static void offsets(void)
{
    CHECK(hp_sesslock__offset(HASH_A) == 0x0123456789abcdeULL);
    CHECK(hp_sesslock__offset(HASH_B) == 0xfedcba987654321ULL);
    CHECK(hp_sesslock__offset("ABC") == 0xabcULL);
    CHECK(hp_sesslock__offset("") == 0);
    char *p = hp_sesslock_path("/var/lib/app.db");
    CHECK_STR(p, "/var/lib/app.db-session-locks");
    free(p);
}

static void same_session_excludes_threads(void)
{
    int a = -1, b = -1;
    CHECK(hp_sesslock_acquire(lock_path, HASH_A, 100, &a) == 0);
    double t0 = hp_now();
    /* the same process, another open: an OFD lock is its description's */
    CHECK(hp_sesslock_acquire(lock_path, HASH_A, 150, &b) == 1);
    double took = hp_now() - t0;
    CHECK(took >= 0.14 && took < 2.0);
    CHECK(b == -1);
    /* another session is not held up */
    t0 = hp_now();
    CHECK(hp_sesslock_acquire(lock_path, HASH_B, 150, &b) == 0);
    CHECK(hp_now() - t0 < 0.1);
    hp_sesslock_release(b);
    hp_sesslock_release(a);
    CHECK(hp_sesslock_acquire(lock_path, HASH_A, 10, &a) == 0);
    hp_sesslock_release(a);
}

struct waiter {
    int rc, fd;
    double got_at;
};

static void *wait_for_a(void *arg)
{
    struct waiter *w = arg;
    w->rc = hp_sesslock_acquire(lock_path, HASH_A, 5000, &w->fd);
    w->got_at = hp_now();
    return NULL;
}

static void release_lets_a_waiter_in(void)
{
    int a = -1;
    CHECK(hp_sesslock_acquire(lock_path, HASH_A, 100, &a) == 0);
    struct waiter w = {.rc = -2, .fd = -1};
    pthread_t t;
    CHECK(pthread_create(&t, NULL, wait_for_a, &w) == 0);
    usleep(200000);
    double released = hp_now();
    hp_sesslock_release(a);
    pthread_join(t, NULL);
    CHECK(w.rc == 0);
    CHECK(w.got_at >= released);
    CHECK(w.got_at - released < 0.1); /* polled every 4 ms at most */
    hp_sesslock_release(w.fd);
}

static void *local_wait_for_a(void *arg)
{
    struct waiter *w = arg;
    w->rc = hp_sesslock_local_acquire(HASH_A, hp_now() + 5);
    w->got_at = hp_now();
    return NULL;
}

static void local_stage(void)
{
    CHECK(hp_sesslock_local_acquire(HASH_A, hp_now() + 0.1) == 0);
    double t0 = hp_now();
    CHECK(hp_sesslock_local_acquire(HASH_A, hp_now() + 0.15) == 1);
    double took = hp_now() - t0;
    CHECK(took >= 0.14 && took < 2.0);
    CHECK(hp_sesslock_local_acquire(HASH_B, hp_now() + 0.1) == 0);
    hp_sesslock_local_release(HASH_B);
    /* a waiter is woken by the release, not by a poll */
    struct waiter w = {.rc = -2, .fd = -1};
    pthread_t t;
    CHECK(pthread_create(&t, NULL, local_wait_for_a, &w) == 0);
    usleep(200000);
    double released = hp_now();
    hp_sesslock_local_release(HASH_A);
    pthread_join(t, NULL);
    CHECK(w.rc == 0);
    CHECK(w.got_at >= released && w.got_at - released < 0.05);
    hp_sesslock_local_release(HASH_A);
    hp_sesslock_local_release(HASH_A); /* not held: nothing */
    CHECK(hp_sesslock_local_acquire(HASH_A, hp_now()) == 0);
    hp_sesslock_local_release(HASH_A);
}

/* A wait hook standing in for the reactor: counts the waits, lets go of
 * the session on the third (as its holder would, on another coroutine),
 * and sleeps as poll(2) would. */
static int hook_waits;
static bool release_on_third;

static int fake_reactor_wait(int fd, short events, int64_t deadline_ns,
                             void *cls)
{
    (void)events;
    (void)cls;
    CHECK(fd < 0);
    CHECK(deadline_ns > 0);
    if (++hook_waits == 3 && release_on_third)
        hp_sesslock_local_release(HASH_A);
    int64_t left = deadline_ns - hp_now_ns();
    if (left > 0)
        usleep((useconds_t)(left / 1000) + 1);
    return 0;
}

/* The hook that ends every wait at once (the request's own deadline
 * passed): the acquire gives up rather than spin. */
static int deadline_passed(int fd, short events, int64_t deadline_ns, void *cls)
{
    (void)fd;
    (void)events;
    (void)deadline_ns;
    (void)cls;
    hook_waits++;
    return 0;
}

static void local_stage_waits_through_the_hook(void)
{
    CHECK(hp_sesslock_local_acquire(HASH_A, hp_now() + 1) == 0);
    hp_wait_set_hook(fake_reactor_wait, NULL);
    hook_waits = 0;
    release_on_third = true;
    double t0 = hp_now();
    CHECK(hp_sesslock_local_acquire(HASH_A, hp_now() + 5) == 0);
    CHECK(hook_waits == 3);
    CHECK(hp_now() - t0 < 1.0);
    /* held again, never let go: the wait ends at its limit */
    hook_waits = 0;
    release_on_third = false;
    CHECK(hp_sesslock_local_acquire(HASH_A, hp_now() + 0.05) == 1);
    CHECK(hook_waits >= 1);
    hp_wait_set_hook(deadline_passed, NULL);
    hook_waits = 0;
    CHECK(hp_sesslock_local_acquire(HASH_A, hp_now() + 5) == 1);
    CHECK(hook_waits == 1);
    hp_wait_set_hook(NULL, NULL);
    hp_sesslock_local_release(HASH_A);
}

static void a_dead_holder_frees_it(void)
{
    int ready[2];
    CHECK(pipe(ready) == 0);
    pid_t pid = fork();
    if (pid == 0) {
        int fd = -1;
        char c = hp_sesslock_acquire(lock_path, HASH_A, 100, &fd) == 0;
        if (write(ready[1], &c, 1) != 1)
            _exit(1);
        pause(); /* killed holding it */
        _exit(0);
    }
    char c = 0;
    CHECK(read(ready[0], &c, 1) == 1 && c == 1);
    int fd = -1;
    CHECK(hp_sesslock_acquire(lock_path, HASH_A, 50, &fd) == 1);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    CHECK(hp_sesslock_acquire(lock_path, HASH_A, 1000, &fd) == 0);
    hp_sesslock_release(fd);
    close(ready[0]);
    close(ready[1]);
}

static void unopenable_file_fails(void)
{
    int fd = -1;
    CHECK(hp_sesslock_acquire("/nonexistent-dir/x-session-locks", HASH_A, 10,
                              &fd) == -1);
    CHECK(fd == -1);
}

int main(int argc, char **argv)
{
    char dir[PATH_MAX];
    T_INIT(argc, argv);
    t_make_temp(dir, "/tmp/hp-sesslock-XXXXXX");
    char db[PATH_MAX + 8];
    snprintf(db, sizeof db, "%s/app.db", dir);
    char *p = hp_sesslock_path(db);
    snprintf(lock_path, sizeof lock_path, "%s", p);
    free(p);
    T_RUN(offsets);
    T_RUN(same_session_excludes_threads);
    T_RUN(release_lets_a_waiter_in);
    T_RUN(local_stage);
    T_RUN(local_stage_waits_through_the_hook);
    T_RUN(a_dead_holder_frees_it);
    T_RUN(unopenable_file_fails);
    unlink(lock_path);
    rmdir(dir);
    T_DONE();
}
