/*
 * net.c - listen addresses: parsing "ADDR:PORT" and binding the listening
 * socket. Below both the HTTP server (server.c) and the supervisor
 * (master.c), which use the same parser so they agree on what an address
 * means.
 *
 * Owns: nothing but these two pure-ish functions (no state).
 * May not touch: HTTP, processes, configuration.
 */
#include "hp.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int hp_parse_listen(const char *listen, struct sockaddr_storage *ss,
                    socklen_t *len)
{
    char host[256];
    const char *colon = strrchr(listen, ':');
    if (!colon || colon - listen >= (long)sizeof host)
        return -1;
    memcpy(host, listen, (size_t)(colon - listen));
    host[colon - listen] = '\0';
    char *h = host;
    if (*h == '[') {
        h++;
        h[strlen(h) - 1] = '\0';
    }
    if (!*h)
        h = "0.0.0.0";
    struct addrinfo hints = {.ai_flags =
                                 AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE,
                             .ai_socktype = SOCK_STREAM},
                    *ai;
    if (getaddrinfo(h, colon + 1, &hints, &ai) != 0)
        return -1;
    memcpy(ss, ai->ai_addr, ai->ai_addrlen);
    *len = ai->ai_addrlen;
    freeaddrinfo(ai);
    return 0;
}

int hp_listen_bind(const char *addr)
{
    struct sockaddr_storage ss;
    socklen_t len;
    if (hp_parse_listen(addr, &ss, &len) < 0) {
        hp_log_error("bad listen address %s", addr);
        return -1;
    }
    int fd =
        socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    int one = 1;
    if (fd >= 0) {
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (ss.ss_family == AF_INET6)
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    }
    if (fd < 0 || bind(fd, (struct sockaddr *)&ss, len) < 0 ||
        listen(fd, 1024) < 0) {
        hp_log_error("cannot listen on %s: %s", addr, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}
