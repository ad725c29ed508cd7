/*
 * test_listener.c - the accept thread (listener.c) in front of a real
 * libmicrohttpd daemon without a listening socket: connections are served,
 * the limit holds clients in the backlog, a stop takes the backlog and
 * then refuses, a forked child does not keep the socket, and the
 * once-a-second callback runs.
 */
#define _GNU_SOURCE 1
#include "hp.h"
#include "listener.h"
#include "t.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static atomic_int ticks;

static void tick(void)
{
    atomic_fetch_add(&ticks, 1);
}

static enum MHD_Result answer(void *cls, struct MHD_Connection *c,
                              const char *url, const char *method,
                              const char *version, const char *upload,
                              size_t *upload_size, void **con_cls)
{
    static const char ok[] = "ok";
    static int marker;
    if (!*con_cls) { /* the head only: answering now would close */
        *con_cls = &marker;
        return MHD_YES;
    }
    struct MHD_Response *r = MHD_create_response_from_buffer(
        2, (void *)(uintptr_t)ok, MHD_RESPMEM_PERSISTENT);
    enum MHD_Result rc = MHD_queue_response(c, 200, r);
    MHD_destroy_response(r);
    return rc;
}

static void notify(void *cls, struct MHD_Connection *c, void **ctx,
                   enum MHD_ConnectionNotificationCode toe)
{
    if (toe == MHD_CONNECTION_NOTIFY_CLOSED)
        hp_listener_closed();
}

static struct MHD_Daemon *daemon_new(void)
{
    return MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL |
                                MHD_USE_NO_LISTEN_SOCKET | MHD_USE_ITC,
                            0, NULL, NULL, answer, NULL,
                            MHD_OPTION_NOTIFY_CONNECTION, notify, NULL,
                            MHD_OPTION_THREAD_POOL_SIZE, 2u, MHD_OPTION_END);
}

static int port_of(int fd)
{
    struct sockaddr_in a;
    socklen_t n = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &n);
    return ntohs(a.sin_port);
}

static int dial(int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (connect(s, (struct sockaddr *)&a, sizeof a) < 0) {
        close(s);
        return -errno;
    }
    return s;
}

/* Send a request on s; true if "200" and "ok" come back within ms. */
static bool served(int s, int ms)
{
    const char req[] = "GET / HTTP/1.1\r\nHost: t\r\n\r\n";
    if (write(s, req, sizeof req - 1) < 0)
        return false;
    char buf[512];
    size_t got = 0;
    struct pollfd p = {.fd = s, .events = POLLIN};
    while (got < sizeof buf - 1 && poll(&p, 1, ms) == 1) {
        ssize_t n = read(s, buf + got, sizeof buf - 1 - got);
        if (n <= 0)
            break;
        got += (size_t)n;
        buf[got] = '\0';
        if (strstr(buf, "\r\n\r\nok"))
            return strncmp(buf, "HTTP/1.1 200", 12) == 0;
    }
    return false;
}

static void test_serves_limits_and_stops(void)
{
    int fd = hp_listen_bind("127.0.0.1:0");
    CHECK(fd >= 0);
    int port = port_of(fd);
    struct MHD_Daemon *d = daemon_new();
    CHECK(d != NULL);
    CHECK(hp_listener_start(fd, d, 1, tick) == 0);
    CHECK(hp_listener_fd() == fd);

    int a = dial(port);
    CHECK(a >= 0 && served(a, 5000));
    CHECK(hp_listener_open() == 1);
    /* At the limit: the next client waits in the backlog... */
    int b = dial(port);
    CHECK(b >= 0 && !served(b, 300));
    /* ... until the first connection closes. */
    close(a);
    char buf[256];
    struct pollfd p = {.fd = b, .events = POLLIN};
    CHECK(poll(&p, 1, 5000) == 1 && read(b, buf, sizeof buf) > 0);
    close(b);

    for (int i = 0; i < 300 && atomic_load(&ticks) < 1; i++)
        usleep(10000);
    CHECK(atomic_load(&ticks) >= 1); /* the once-a-second callback ran */

    /* Stop with a client waiting: it is taken, then new ones refused. */
    int c = dial(port), e = dial(port);
    usleep(100000);
    unsigned taken = hp_listener_stop(true);
    CHECK(taken >= 1);
    CHECK(hp_listener_fd() == -1);
    CHECK(dial(port) == -ECONNREFUSED);
    CHECK(hp_listener_stop(true) == 0); /* idempotent */
    close(c);
    close(e);
    MHD_stop_daemon(d);
}

static void test_forked_child_closes_the_socket(void)
{
    int fd = hp_listen_bind("127.0.0.1:0");
    struct MHD_Daemon *d = daemon_new();
    CHECK(fd >= 0 && d && hp_listener_start(fd, d, 8, NULL) == 0);
    pid_t pid = fork();
    if (pid == 0) /* the socket must be closed here */
        _exit(fcntl(fd, F_GETFD) < 0 && errno == EBADF ? 0 : 1);
    int st = -1;
    waitpid(pid, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CHECK(fcntl(fd, F_GETFD) >= 0); /* still open in the parent */
    hp_listener_stop(false);
    MHD_stop_daemon(d);
}

/* hp_listener_hold: no more accepting, whatever a resume says, and the
 * backlog is left on stop (for the siblings or the successor). */
static void test_hold_is_for_good(void)
{
    int fd = hp_listen_bind("127.0.0.1:0");
    struct MHD_Daemon *d = daemon_new();
    CHECK(fd >= 0 && d && hp_listener_start(fd, d, 8, NULL) == 0);
    int port = port_of(fd);
    int a = dial(port);
    CHECK(a >= 0 && served(a, 5000));
    hp_listener_hold();
    hp_listener_pause(false); /* a resume does not undo it */
    int b = dial(port);
    CHECK(b >= 0 && !served(b, 300));
    CHECK(hp_listener_stop(true) == 0); /* b is not taken */
    close(a);
    close(b);
    MHD_stop_daemon(d);
}

int main(int argc, char **argv)
{
    T_INIT(argc, argv);
    T_RUN(test_serves_limits_and_stops);
    T_RUN(test_forked_child_closes_the_socket);
    T_RUN(test_hold_is_for_good);
    T_DONE();
}
