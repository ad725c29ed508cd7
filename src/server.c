/*
 * server.c - the HTTP side: libmicrohttpd wiring, the publisher's dispatch
 * (resolve -> pin a version -> call the handler), static files, the status
 * endpoint, the access log, limits, and graceful shutdown.
 *
 * Owns: the MHD daemon, per-request contexts, the access log, signals.
 * May not touch: compiling, loading or watching; it asks the module cache
 * for a pinned version and releases it when the response is done.
 *
 * Threading: libmicrohttpd runs one thread per connection. A handler that
 * blocks (a slow query, sleep) then holds only its own connection; every
 * other connection keeps being served. bench/ measures what it costs
 * against the event-loop alternatives (docs/design.md).
 */
#include "request.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define STATUS_URL "/_hotpub/status.json"

struct server {
    struct hp_config *cfg;
    bool dev;
    char *root;
    struct hp_compiler *cc;
    hp_cache *cache;
    hp_resolver *res;
    hp_watch *watch;
    struct MHD_Daemon *mhd;
    FILE *access;
    pthread_mutex_t access_mu;
    atomic_long inflight;
    atomic_ulong requests;
    double started;
};

/* Per-request context: created by the URI log callback (the first thing
 * libmicrohttpd tells us about a request), freed on completion. */
struct ctx {
    hp_req req;
    char *uri;        /* raw request target, for the access log */
    bool started;     /* hp_req_init done */
    bool responded;
    int status;
    uint64_t length;
};

static struct server S;

/* ---- access log ---------------------------------------------------------- */

static void access_log(struct ctx *c)
{
    char ts[64], addr[64];
    time_t now = time(NULL);
    struct tm tm;

    if (!S.access)
        return;
    localtime_r(&now, &tm);
    strftime(ts, sizeof ts, "%d/%b/%Y:%H:%M:%S %z", &tm);
    const char *ref = NULL, *ua = NULL;
    if (c->started) {
        ref = MHD_lookup_connection_value(c->req.conn, MHD_HEADER_KIND,
                                          "Referer");
        ua = MHD_lookup_connection_value(c->req.conn, MHD_HEADER_KIND,
                                         "User-Agent");
    }
    snprintf(addr, sizeof addr, "%s", c->req.remote[0] ? c->req.remote : "-");
    pthread_mutex_lock(&S.access_mu);
    fprintf(S.access, "%s - - [%s] \"%s %s %s\" %d %llu \"%s\" \"%s\"\n",
            addr, ts, c->started ? c->req.method : "-",
            c->uri ? c->uri : "-", c->started ? c->req.version : "-",
            c->status, (unsigned long long)c->length, ref ? ref : "-",
            ua ? ua : "-");
    pthread_mutex_unlock(&S.access_mu);
}

static void access_flush(void)
{
    if (!S.access)
        return;
    pthread_mutex_lock(&S.access_mu);
    fflush(S.access);
    pthread_mutex_unlock(&S.access_mu);
}

/* ---- responses ---------------------------------------------------------- */

static enum MHD_Result send_buffer(struct ctx *c, int status)
{
    hp_req *req = &c->req;
    struct MHD_Response *r = MHD_create_response_from_buffer(
        req->out.len, req->out.p, MHD_RESPMEM_MUST_FREE);
    if (!r)
        return MHD_NO;
    /* The buffer now belongs to the response. */
    req->out.p = NULL;
    c->length = req->out.len;
    req->out.len = req->out.cap = 0;
    for (size_t i = 0; i < req->headers.n; i++)
        MHD_add_response_header(r, req->headers.v[i].name,
                                req->headers.v[i].value);
    if (!req->has_content_type)
        MHD_add_response_header(r, "Content-Type", "text/html; charset=utf-8");
    c->status = status;
    c->responded = true;
    enum MHD_Result ret = MHD_queue_response(req->conn, (unsigned)status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result send_error(struct ctx *c, int status,
                                  const char *detail_html)
{
    c->req.headers.n = 0;
    c->req.has_content_type = false;
    hp_req_error_body(&c->req, status, detail_html);
    return send_buffer(c, status);
}

static void http_date(time_t t, char *out, size_t n)
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, n, "%a, %d %b %Y %H:%M:%S GMT", &tm);
}

static enum MHD_Result send_static(struct ctx *c)
{
    hp_req *req = &c->req;
    struct stat st;
    char lm[64];
    int fd;

    if (strcmp(req->method, "GET") != 0 && !req->is_head)
        return send_error(c, 405, NULL);
    fd = open(req->target.path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        if (fd >= 0)
            close(fd);
        return send_error(c, 404, NULL);
    }
    http_date(st.st_mtime, lm, sizeof lm);
    const char *ims = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND,
                                                  "If-Modified-Since");
    if (ims) {
        struct tm tm = {0};
        const char *end = strptime(ims, "%a, %d %b %Y %H:%M:%S GMT", &tm);
        if (end && timegm(&tm) >= st.st_mtime) {
            close(fd);
            req->out.len = 0;
            hp_req_add_header(req, "Last-Modified", lm);
            hp_req_add_header(req, "Content-Type", hp_mime_type(req->target.path));
            return send_buffer(c, 304);
        }
    }
    struct MHD_Response *r =
        MHD_create_response_from_fd64((uint64_t)st.st_size, fd);
    if (!r) {
        close(fd);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", hp_mime_type(req->target.path));
    MHD_add_response_header(r, "Last-Modified", lm);
    c->status = 200;
    c->length = (uint64_t)st.st_size;
    c->responded = true;
    enum MHD_Result ret = MHD_queue_response(req->conn, 200, r);
    MHD_destroy_response(r);
    return ret;
}

static bool is_loopback(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (!ci || !ci->client_addr)
        return false;
    const struct sockaddr *sa = ci->client_addr;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const void *)sa;
        return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const void *)sa;
        return IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr) ||
               (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr) &&
                in6->sin6_addr.s6_addr[12] == 127);
    }
    return false;
}

static void remote_addr(struct MHD_Connection *conn, char *out, size_t n)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    out[0] = '\0';
    if (!ci || !ci->client_addr)
        return;
    const struct sockaddr *sa = ci->client_addr;
    socklen_t len = sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                              : sizeof(struct sockaddr_in);
    if (getnameinfo(sa, len, out, (socklen_t)n, NULL, 0, NI_NUMERICHOST) != 0)
        out[0] = '\0';
}

/*
 * status.json?url=/a/b/name: what that URL maps to and which module's
 * handler would serve it (acquisition), without running anything.
 */
static void status_url(struct hp_buf *b, const char *url)
{
    struct hp_target t;
    hp_req probe;

    hp_buf_puts(b, ",\n\"url\":{\"url\":");
    hp_buf_json(b, url);
    hp_resolve(S.res, url, &t);
    hp_buf_printf(b, ",\"kind\":\"%s\"",
                  t.kind == HP_T_PAGE     ? "page"
                  : t.kind == HP_T_STATIC ? "static"
                                          : "notfound");
    if (t.kind == HP_T_NOTFOUND) {
        hp_buf_puts(b, "}");
        return;
    }
    hp_buf_puts(b, ",\"file\":");
    hp_buf_json(b, t.path);
    if (t.kind != HP_T_PAGE) {
        hp_buf_puts(b, "}");
        return;
    }
    hp_buf_puts(b, ",\"handler\":");
    hp_buf_json(b, t.handler);
    memset(&probe, 0, sizeof probe);
    probe.target = t;
    hp_version *from = NULL;
    enum hp_acquire r = hp_cache_pin_page(S.cache, t.path, &probe.pins);
    if (r == HP_ACQ_OK)
        hp_publish_find(&probe, &from);
    hp_buf_puts(b, ",\"chain\":[");
    for (size_t i = 0; i < probe.pins.napps; i++) {
        if (i)
            hp_buf_puts(b, ",");
        hp_buf_json(b, probe.pins.apps[i]->path);
    }
    hp_buf_puts(b, "],\"served_by\":");
    hp_buf_json(b, from ? from->path : NULL);
    if (from)
        hp_buf_printf(b, ",\"version\":%llu", (unsigned long long)from->id);
    hp_buf_puts(b, ",\"error\":");
    hp_buf_json(b, probe.pins.err);
    hp_buf_puts(b, "}");
    hp_pinset_release(&probe.pins);
}

static enum MHD_Result send_status(struct ctx *c)
{
    hp_req *req = &c->req;
    struct hp_buf *b = &req->out;
    hp_buf_printf(b,
                  "{\"server\":{\"version\":\"%s\",\"pid\":%d,\"dev\":%s,"
                  "\"compiles\":%lu,\"requests\":%lu,\"inflight\":%ld,"
                  "\"uptime\":%.3f},\n\"modules\":",
                  HP_VERSION_STRING, (int)getpid(), S.dev ? "true" : "false",
                  hp_compiler_runs(S.cc), atomic_load(&S.requests),
                  atomic_load(&S.inflight) - 1, hp_now() - S.started);
    hp_cache_status_json(S.cache, b);
    const char *url = MHD_lookup_connection_value(req->conn,
                                                  MHD_GET_ARGUMENT_KIND, "url");
    if (url)
        status_url(b, url);
    hp_buf_puts(b, "}\n");
    hp_req_add_header(req, "Content-Type", "application/json");
    hp_req_add_header(req, "Cache-Control", "no-store");
    return send_buffer(c, 200);
}

/* ---- the publisher -------------------------------------------------------- */

static enum MHD_Result page_error(struct ctx *c, const char *path,
                                  const char *diag)
{
    if (!S.dev || !diag)
        return send_error(c, 500, NULL);
    struct hp_buf html = {0};
    hp_buf_puts(&html, "<p>The module <code>");
    hp_buf_html(&html, path ? path : c->req.target.path);
    hp_buf_puts(&html, "</code> could not be built. Fix it and reload; "
                       "the server picks up the change by itself.</p>\n"
                       "<pre style=\"white-space:pre-wrap\">");
    hp_buf_html(&html, diag);
    hp_buf_puts(&html, "</pre>\n");
    enum MHD_Result r = send_error(c, 500, html.p);
    hp_buf_free(&html);
    return r;
}

static enum MHD_Result run_page(struct ctx *c)
{
    hp_req *req = &c->req;
    struct hp_pinset *ps = &req->pins;

    /* The request owns its pins until the response is done. */
    switch (hp_cache_pin_page(S.cache, req->target.path, ps)) {
    case HP_ACQ_GONE:
        return send_error(c, 404, NULL);
    case HP_ACQ_ERROR:
        return page_error(c, ps->err_path, ps->err);
    case HP_ACQ_OK:
        break;
    }
    /* In dev mode a broken edit is shown, not hidden behind the last good
     * version; in production the last good version serves. */
    if (ps->err && S.dev)
        return page_error(c, ps->err_path, ps->err);
    hp_req_parse_form(req);
    int rc = hp_publish_run(req);
    if (rc == HP_OK)
        return send_buffer(c, req->status);
    if (req->out.len == 0)
        return send_error(c, rc, NULL);
    return send_buffer(c, rc);
}

static enum MHD_Result dispatch(struct ctx *c)
{
    hp_req *req = &c->req;

    atomic_fetch_add(&S.requests, 1);
    if (c->req.body_too_large)
        return send_error(c, 413, NULL);
    if (strcmp(req->path, STATUS_URL) == 0 && is_loopback(req->conn))
        return send_status(c);
    hp_resolve(S.res, req->path, &req->target);
    switch (req->target.kind) {
    case HP_T_PAGE:
        return run_page(c);
    case HP_T_STATIC:
        return send_static(c);
    default:
        return send_error(c, 404, NULL);
    }
}

/* ---- libmicrohttpd callbacks ------------------------------------------------ */

static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
    struct ctx *c = hp_xcalloc(1, sizeof *c);
    c->uri = hp_xstrdup(uri ? uri : "");
    atomic_fetch_add(&S.inflight, 1);
    return c;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn,
                                  const char *url, const char *method,
                                  const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls)
{
    struct ctx *c = *con_cls;

    if (!c->started) {
        /* First call: headers only. Answering now would close the
         * connection, so only refuse bodies that are already too big. */
        hp_req_init(&c->req, conn, method, url, version);
        const char *q = strchr(c->uri, '?');
        c->req.query = q ? q + 1 : "";
        remote_addr(conn, c->req.remote, sizeof c->req.remote);
        c->started = true;
        /* RFC 9112 3.2: a 1.1 request without Host is malformed. */
        if (strcmp(version, MHD_HTTP_VERSION_1_1) == 0 &&
            !MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Host"))
            return send_error(c, 400, NULL);
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                                     "Content-Length");
        if (cl && strtoull(cl, NULL, 10) > S.cfg->max_body) {
            c->req.body_too_large = true;
            return send_error(c, 413, NULL);
        }
        return MHD_YES;
    }
    if (*upload_size) {
        if (!c->req.body_too_large) {
            if (c->req.body.len + *upload_size > S.cfg->max_body) {
                c->req.body_too_large = true;
                hp_buf_free(&c->req.body);
            } else if (hp_buf_append(&c->req.body, upload, *upload_size) < 0) {
                return MHD_NO;
            }
        }
        *upload_size = 0;
        return MHD_YES;
    }
    if (c->responded)
        return MHD_YES;
    return dispatch(c);
}

static void on_completed(void *cls, struct MHD_Connection *conn,
                         void **con_cls, enum MHD_RequestTerminationCode toe)
{
    struct ctx *c = *con_cls;
    if (!c)
        return;
    if (!c->responded)
        c->status = toe == MHD_REQUEST_TERMINATED_TIMEOUT_REACHED ? 408 : 400;
    access_log(c);
    if (c->started) {
        hp_req_release_resources(&c->req);
        hp_pinset_release(&c->req.pins);
        hp_req_cleanup(&c->req);
    }
    free(c->uri);
    free(c);
    *con_cls = NULL;
    atomic_fetch_sub(&S.inflight, 1);
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    struct hp_buf b = {0};
    hp_buf_vprintf(&b, fmt, ap);
    while (b.len && (b.p[b.len - 1] == '\n'))
        b.p[--b.len] = '\0';
    hp_log_error("http: %s", b.p ? b.p : "");
    hp_buf_free(&b);
}

/* ---- start and stop ------------------------------------------------------- */

static int parse_listen(const char *listen, struct sockaddr_storage *ss,
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
    struct addrinfo hints = {.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV |
                                         AI_PASSIVE,
                             .ai_socktype = SOCK_STREAM},
                    *ai;
    if (getaddrinfo(h, colon + 1, &hints, &ai) != 0)
        return -1;
    memcpy(ss, ai->ai_addr, ai->ai_addrlen);
    *len = ai->ai_addrlen;
    freeaddrinfo(ai);
    return 0;
}

static bool addr_is_loopback(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)ss)->sin_addr.s_addr) >>
                24) == 127;
    if (ss->ss_family == AF_INET6)
        return IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)ss)->sin6_addr);
    return false;
}

static int open_access_log(const char *spec)
{
    if (!spec || strcmp(spec, "off") == 0)
        return 0;
    if (strcmp(spec, "-") == 0) {
        S.access = stdout;
    } else {
        S.access = fopen(spec, "ae");
        if (!S.access) {
            hp_log_error("cannot open access log %s: %s", spec,
                         strerror(errno));
            return -1;
        }
    }
    /* Flushed once a second, not once a request. */
    setvbuf(S.access, NULL, _IOFBF, 64 * 1024);
    return 0;
}

/*
 * The document root as an absolute path whose parent is canonical and whose
 * last component is kept as given: when it is a symlink (releases/v2 behind
 * "current"), module paths stay the same across a deploy's swap and the
 * swap is seen as every module changing at once (docs/reload.md).
 */
static char *root_path(const char *docroot)
{
    char *copy = hp_xstrdup(docroot), *base, *dir, *parent, *path = NULL;
    size_t n = strlen(copy);
    struct stat st;

    while (n > 1 && copy[n - 1] == '/')
        copy[--n] = '\0';
    base = strrchr(copy, '/');
    if (base) {
        *base++ = '\0';
        dir = *copy ? copy : "/";
    } else {
        base = copy;
        dir = ".";
    }
    if (!*base || strcmp(base, ".") == 0 || strcmp(base, "..") == 0) {
        free(copy);
        return realpath(docroot, NULL);
    }
    parent = realpath(dir, NULL);
    if (parent) {
        path = hp_xasprintf("%s/%s", strcmp(parent, "/") ? parent : "", base);
        int rc = stat(path, &st);
        if (rc < 0 || !S_ISDIR(st.st_mode)) {
            if (rc == 0)
                errno = ENOTDIR;
            free(path);
            path = NULL;
        }
    }
    free(parent);
    free(copy);
    return path;
}

static int setup(struct hp_config *cfg)
{
    memset(&S, 0, sizeof S);
    S.cfg = cfg;
    S.started = hp_now();
    pthread_mutex_init(&S.access_mu, NULL);
    S.root = root_path(cfg->docroot ? cfg->docroot : ".");
    if (!S.root) {
        hp_log_error("document root %s: %s", cfg->docroot, strerror(errno));
        return -1;
    }
    S.cc = hp_compiler_new(cfg, S.root);
    S.cache = hp_cache_new(cfg, S.cc);
    if (!S.cache)
        return -1;
    S.res = hp_resolver_new(S.root);
    return 0;
}

static void teardown(void)
{
    hp_watch_stop(S.watch);
    hp_cache_free(S.cache);
    hp_resolver_free(S.res);
    hp_compiler_free(S.cc);
    if (S.access && S.access != stdout)
        fclose(S.access);
    else if (S.access)
        fflush(S.access);
    free(S.root);
}

int hp_serve(struct hp_config *cfg)
{
    struct sockaddr_storage ss;
    socklen_t sslen;
    sigset_t sigs;

    if (parse_listen(cfg->listen, &ss, &sslen) < 0) {
        hp_log_error("bad listen address %s", cfg->listen);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    /* Block the stop signals in every thread; the main thread waits. */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);

    if (setup(cfg) < 0 || open_access_log(cfg->access_log) < 0) {
        teardown();
        return 1;
    }
    S.dev = cfg->dev < 0 ? addr_is_loopback(&ss) : cfg->dev;
    S.watch = hp_watch_start(cfg, S.root, S.cache, S.res);
    hp_cache_set_batched(S.cache, S.watch != NULL);

    unsigned flags = MHD_USE_THREAD_PER_CONNECTION |
                     MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG |
                     MHD_USE_POLL;
    if (ss.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    S.mhd = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, NULL, MHD_OPTION_EXTERNAL_LOGGER,
        on_mhd_log, NULL, MHD_OPTION_SOCK_ADDR,
        (struct sockaddr *)&ss, MHD_OPTION_URI_LOG_CALLBACK, on_uri, NULL,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)cfg->timeout,
        MHD_OPTION_CONNECTION_LIMIT, cfg->conn_limit,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)cfg->max_header + 4096,
        MHD_OPTION_THREAD_STACK_SIZE, (size_t)512 * 1024,
        MHD_OPTION_LISTENING_ADDRESS_REUSE, 1, MHD_OPTION_END);
    if (!S.mhd) {
        hp_log_error("cannot listen on %s: %s", cfg->listen, strerror(errno));
        teardown();
        return 1;
    }
    hp_log_info("hotpub %s serving %s on http://%s (%s mode)",
                HP_VERSION_STRING, S.root, cfg->listen,
                S.dev ? "dev" : "production");

    for (;;) {
        struct timespec one = {1, 0};
        int sig = sigtimedwait(&sigs, NULL, &one);
        access_flush();
        if (sig == SIGTERM || sig == SIGINT) {
            hp_log_info("signal %d: finishing in-flight requests", sig);
            break;
        }
    }
    /* Stop accepting, give running requests a bounded time, then stop. */
    MHD_quiesce_daemon(S.mhd);
    double deadline = hp_now() + cfg->shutdown_timeout;
    while (atomic_load(&S.inflight) > 0 && hp_now() < deadline)
        usleep(10000);
    if (atomic_load(&S.inflight) > 0)
        hp_log_error("%ld requests still running after %d s; stopping anyway",
                     atomic_load(&S.inflight), cfg->shutdown_timeout);
    MHD_stop_daemon(S.mhd);
    access_flush();
    teardown();
    hp_log_info("stopped");
    return 0;
}
