/*
 * test_wait.c - how a thread waits (wait.c): the poll(2) fallback on a
 * pipe (times out at its deadline, ready after a write), a sleep without
 * a descriptor, a hook's arguments and answers, the time counted, and the
 * hook being the installing thread's alone.
 */
#define _GNU_SOURCE 1
#include "t.h"
#include "hp.h"
#include "wait.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <unistd.h>

#define MS 1000000LL

static void poll_pipe(void)
{
    int fds[2];
    CHECK(pipe(fds) == 0);
    int64_t t0 = hp_now_ns();
    CHECK(hp_wait_fd(fds[0], POLLIN, t0 + 30 * MS) == 0);
    int64_t took = hp_now_ns() - t0;
    CHECK(took >= 30 * MS);
    CHECK(took < 500 * MS);
    /* the write end is writable at once */
    CHECK(hp_wait_fd(fds[1], POLLOUT, hp_now_ns() + 30 * MS) == 1);
    CHECK(write(fds[1], "x", 1) == 1);
    t0 = hp_now_ns();
    CHECK(hp_wait_fd(fds[0], POLLIN, t0 + 5000 * MS) == 1);
    CHECK(hp_now_ns() - t0 < 500 * MS);
    CHECK(hp_wait_fd(fds[0], POLLIN, 0) == 1); /* no deadline, ready */
    /* a deadline already past: not ready is a timeout at once */
    char c;
    CHECK(read(fds[0], &c, 1) == 1);
    CHECK(hp_wait_fd(fds[0], POLLIN, hp_now_ns() - MS) == 0);
    close(fds[0]);
    close(fds[1]);
    /* a closed descriptor is an error, not a wait */
    errno = 0;
    CHECK(hp_wait_fd(fds[0], POLLIN, hp_now_ns() + 30 * MS) == -1);
    CHECK(errno == EBADF);
}

static void sleep_without_fd(void)
{
    int64_t t0 = hp_now_ns();
    CHECK(hp_wait_fd(-1, 0, t0 + 20 * MS) == 0);
    int64_t took = hp_now_ns() - t0;
    CHECK(took >= 20 * MS && took < 500 * MS);
    errno = 0;
    CHECK(hp_wait_fd(-1, 0, 0) == -1); /* forever: refused */
    CHECK(errno == EINVAL);
}

struct seen {
    int calls, fd;
    short events;
    int64_t deadline;
    int answer;
};

static int record(int fd, short events, int64_t deadline_ns, void *cls)
{
    struct seen *s = cls;
    s->calls++;
    s->fd = fd;
    s->events = events;
    s->deadline = deadline_ns;
    usleep(2000); /* time "off the CPU", for hp_wait_ns */
    return s->answer;
}

static void hook_gets_the_wait(void)
{
    struct seen s = {.answer = 1};
    CHECK(!hp_wait_hooked());
    hp_wait_set_hook(record, &s);
    CHECK(hp_wait_hooked());
    int64_t w0 = hp_wait_ns();
    CHECK(hp_wait_fd(42, POLLOUT, 123456789) == 1);
    CHECK(s.calls == 1 && s.fd == 42 && s.events == POLLOUT &&
          s.deadline == 123456789);
    s.answer = 0;
    CHECK(hp_wait_fd(-1, 0, 987) == 0);
    CHECK(s.calls == 2 && s.fd == -1 && s.deadline == 987);
    s.answer = -1;
    CHECK(hp_wait_fd(7, POLLIN, 0) == -1);
    CHECK(s.calls == 3 && s.events == POLLIN && s.deadline == 0);
    CHECK(hp_wait_ns() - w0 >= 6 * MS);
    hp_wait_set_hook(NULL, NULL);
    CHECK(!hp_wait_hooked());
    /* back to poll(2): the hook sees nothing more */
    CHECK(hp_wait_fd(-1, 0, hp_now_ns() + MS) == 0);
    CHECK(s.calls == 3);
}

static void wait_ns_grows_with_poll(void)
{
    int64_t w0 = hp_wait_ns();
    CHECK(hp_wait_fd(-1, 0, hp_now_ns() + 10 * MS) == 0);
    CHECK(hp_wait_ns() - w0 >= 10 * MS);
}

struct other {
    bool hooked;
    int rc;
    int64_t took, waited;
};

static void *other_thread(void *arg)
{
    struct other *o = arg;
    o->hooked = hp_wait_hooked();
    int64_t t0 = hp_now_ns(), w0 = hp_wait_ns();
    o->rc = hp_wait_fd(-1, 0, t0 + 15 * MS);
    o->took = hp_now_ns() - t0;
    o->waited = hp_wait_ns() - w0;
    return NULL;
}

static void hook_is_per_thread(void)
{
    struct seen s = {.answer = 1};
    hp_wait_set_hook(record, &s);
    struct other o = {.rc = 99};
    pthread_t t;
    CHECK(pthread_create(&t, NULL, other_thread, &o) == 0);
    pthread_join(t, NULL);
    CHECK(!o.hooked);
    CHECK(o.rc == 0); /* it polled: the hook would have said 1 */
    CHECK(o.took >= 15 * MS);
    CHECK(o.waited >= 15 * MS);
    CHECK(s.calls == 0);
    CHECK(hp_wait_fd(-1, 0, 1) == 1 && s.calls == 1);
    hp_wait_set_hook(NULL, NULL);
}

int main(int argc, char **argv)
{
    T_INIT(argc, argv);
    T_RUN(poll_pipe);
    T_RUN(sleep_without_fd);
    T_RUN(hook_gets_the_wait);
    T_RUN(wait_ns_grows_with_poll);
    T_RUN(hook_is_per_thread);
    T_DONE();
}
