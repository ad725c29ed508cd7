/*
 * test_net.c - listen addresses (net.c): what hp_parse_listen accepts and
 * refuses, and the socket hp_listen_bind hands the supervisor.
 */
#define _GNU_SOURCE 1
#include "t.h"
#include "hp.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

/* The port and printed address of a parsed listen address ("" if bad). */
static int parse(const char *spec, char *addr, size_t n)
{
    struct sockaddr_storage ss;
    socklen_t len = 0;
    addr[0] = '\0';
    if (hp_parse_listen(spec, &ss, &len) < 0)
        return -1;
    if (ss.ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)&ss;
        CHECK(len == sizeof *a);
        inet_ntop(AF_INET, &a->sin_addr, addr, (socklen_t)n);
        return ntohs(a->sin_port);
    }
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&ss;
    CHECK(ss.ss_family == AF_INET6 && len == sizeof *a);
    inet_ntop(AF_INET6, &a->sin6_addr, addr, (socklen_t)n);
    return ntohs(a->sin6_port);
}

static void test_parse_forms(void)
{
    char a[64];
    CHECK(parse("127.0.0.1:8080", a, sizeof a) == 8080);
    CHECK_STR(a, "127.0.0.1");
    CHECK(parse(":9000", a, sizeof a) == 9000); /* every IPv4 address */
    CHECK_STR(a, "0.0.0.0");
    CHECK(parse("[::1]:443", a, sizeof a) == 443);
    CHECK_STR(a, "::1");
    CHECK(parse("[::]:80", a, sizeof a) == 80);
    CHECK_STR(a, "::");
}

static void test_parse_refusals(void)
{
    char a[64];
    CHECK(parse("127.0.0.1", a, sizeof a) == -1);      /* no port */
    CHECK(parse("127.0.0.1:http", a, sizeof a) == -1); /* numeric only */
    CHECK(parse("localhost:80", a, sizeof a) == -1);   /* no name lookup */
    CHECK(parse("300.1.1.1:80", a, sizeof a) == -1);
    CHECK(parse("", a, sizeof a) == -1);
}

static void test_bind(void)
{
    int fd = hp_listen_bind("127.0.0.1:0");
    CHECK(fd >= 0);
    if (fd < 0)
        return;
    CHECK(fcntl(fd, F_GETFL) & O_NONBLOCK);
    CHECK(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    int listening = 0;
    socklen_t n = sizeof listening;
    CHECK(getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &n) == 0 &&
          listening);
    struct sockaddr_in sa;
    socklen_t len = sizeof sa;
    CHECK(getsockname(fd, (struct sockaddr *)&sa, &len) == 0 &&
          ntohs(sa.sin_port) != 0);
    /* The same port again is taken: -1, not a second socket. */
    char again[32];
    snprintf(again, sizeof again, "127.0.0.1:%d", ntohs(sa.sin_port));
    int fd2 = hp_listen_bind(again);
    CHECK(fd2 < 0);
    if (fd2 >= 0)
        close(fd2);
    close(fd);
    CHECK(hp_listen_bind("nonsense") < 0);
}

int main(int argc, char **argv)
{
    T_INIT(argc, argv); /* an argument: only the tests named like it */
    T_RUN(test_parse_forms);
    T_RUN(test_parse_refusals);
    T_RUN(test_bind);
    T_DONE();
}
