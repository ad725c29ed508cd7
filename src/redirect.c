/*
 * redirect.c - --tls-redirect: a second, plain-HTTP listener whose every
 * answer is a 308 to the same target over HTTPS, so that http:// links
 * and bookmarks reach the site without a proxy in front. Its connections
 * pass the request edge (edge.c) like the main listener's: what that
 * refuses (two Content-Length fields, a bad request line, ...) gets the
 * same 4xx here, never a 308 that a client or proxy might act on.
 *
 * Owns: its own small libmicrohttpd daemon (one thread, its own listening
 * socket) and the Location it builds. May not touch: pages, the module
 * cache, the main daemon's connections; it serves nothing else.
 */
#include "redirect.h"
#include "edge.h"    /* hp_edge_notify_plain, hp_edge_request_done */
#include "framing.h" /* hp_host_valid */

#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct {
    struct MHD_Daemon *d;
    char port[8]; /* ":8443", or "" for 443 */
    size_t memory; /* libmicrohttpd's per connection (hp_redirect_start) */
} R;

static void *keep_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
    (void)cls;
    (void)conn;
    return strdup(uri ? uri : "/");
}

static void free_uri(void *cls, struct MHD_Connection *conn, void **con_cls,
                     enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)toe;
    hp_edge_request_done(hp_edge_of(conn)); /* the next head's deadline */
    free(*con_cls);
    *con_cls = NULL;
}

static enum MHD_Result answer(struct MHD_Connection *conn, unsigned status,
                              const char *location, const char *body)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(
        strlen(body), (void *)(uintptr_t)body, MHD_RESPMEM_MUST_COPY);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, "Content-Type", "text/plain; charset=utf-8");
    if (location)
        MHD_add_response_header(r, "Location", location);
    enum MHD_Result ok = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ok;
}

/*
 * The 308's head must fit in what the request left of libmicrohttpd's
 * connection memory: 0.9.75 writes it there and, when it does not fit,
 * closes the connection without a word (edge.h says how; the same
 * reckoning as server.c's, hp_edge_request_held). The Location is the
 * target again, so hp_redirect_start gives the connection room for a
 * request as large as the edge lets through and a Location as long as
 * its target; head_fits is the check that the reckoning holds, answering
 * 414 rather than closing when it does not.
 */
static bool head_fits(struct MHD_Connection *conn, const char *target,
                      const char *method, const char *version,
                      const char *location)
{
    size_t held = hp_edge_request_held(conn, target, method, version);
    size_t head = HP_EDGE_HEAD_FIXED + sizeof "Location: \r\n" - 1 +
                  strlen(location) +
                  sizeof "Content-Type: text/plain; charset=utf-8\r\n" - 1;
    return held < R.memory && head <= R.memory - held;
}

/* The host part of a Host field value (a [v6] literal kept whole). */
static size_t host_len(const char *host)
{
    if (host[0] == '[') {
        const char *end = strchr(host, ']');
        return end ? (size_t)(end - host) + 1 : strlen(host);
    }
    return strcspn(host, ":");
}

/* The main listener answers 400 to a path whose dot segments climb above
 * the root (server.c, hp_path_merge_dots); so does this one, rather than
 * send the client to that 400 over https. */
static bool climbs_above_root(const char *path)
{
    char *m = hp_xstrdup(path ? path : "/");
    bool ok = hp_path_merge_dots(m);
    free(m);
    return !ok;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn,
                                  const char *url, const char *method,
                                  const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls)
{
    (void)cls;
    (void)upload;
    if (*upload_size) { /* a body is not needed for the answer: drop it */
        *upload_size = 0;
        return MHD_YES;
    }
    const char *target = *con_cls ? *con_cls : "/";
    const char *host =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Host");
    /* Only origin-form targets: an absolute or '*' target, or a Host that
     * is not one, cannot be turned into an https URL of this site. */
    if (!host || !hp_host_valid(host, strlen(host)) || target[0] != '/' ||
        climbs_above_root(url))
        return answer(conn, 400, NULL, "Bad Request\n");
    char *loc = hp_xasprintf("https://%.*s%s%s", (int)host_len(host), host,
                             R.port, target);
    if (!head_fits(conn, target, method ? method : "", version ? version : "",
                   loc)) {
        /* nginx answers a target longer than it reads with 414 too */
        hp_log_error("tls-redirect: a 308 to a target of %zu bytes would not "
                     "fit libmicrohttpd's %zu bytes for the connection; "
                     "answering 414",
                     strlen(target), R.memory);
        free(loc);
        return answer(conn, 414, NULL, "URI Too Long\n");
    }
    enum MHD_Result ok = answer(conn, 308, loc, "Permanent Redirect\n");
    free(loc);
    return ok;
}

int hp_redirect_start(int fd, const struct hp_config *cfg)
{
    const char *https_listen = cfg->listen;
    const char *colon = strrchr(https_listen, ':');
    int port = colon ? atoi(colon + 1) : 443;
    if (port == 443)
        R.port[0] = '\0';
    else
        snprintf(R.port, sizeof R.port, ":%d", port);
    /* What the main daemon has (the largest request the edge lets
     * through, and 4 KiB), and room for a Location as long as that
     * request's target with https://HOST:PORT before it. */
    R.memory = hp_edge_mhd_memory(cfg) + cfg->max_header + 1024;
    R.d = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ERROR_LOG, 0,
        NULL, NULL, on_request, NULL, MHD_OPTION_LISTEN_SOCKET, fd,
        MHD_OPTION_URI_LOG_CALLBACK, keep_uri, NULL,
        MHD_OPTION_NOTIFY_COMPLETED, free_uri, NULL,
        MHD_OPTION_NOTIFY_CONNECTION, hp_edge_notify_plain, NULL,
        MHD_OPTION_CONNECTION_TIMEOUT, 10u, MHD_OPTION_CONNECTION_LIMIT, 256u,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, R.memory, MHD_OPTION_END);
    if (!R.d) {
        hp_log_error("cannot start the HTTPS redirect listener");
        close(fd);
        return -1;
    }
    return 0;
}

void hp_redirect_stop(void)
{
    if (!R.d)
        return;
    MHD_stop_daemon(R.d); /* closes the listening socket too */
    R.d = NULL;
}
