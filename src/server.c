/*
 * server.c - the HTTP side: libmicrohttpd wiring, the publisher's dispatch
 * (resolve -> pin a version -> call the handler), the static-file and
 * error responses, the status endpoint, limits, and graceful shutdown.
 *
 * Owns: the MHD daemon (without a listening socket) and, when the reactor
 * runs it, the queue of connections the accept thread hands it, per-request contexts
 * and their states, where a page runs (inline, offloaded or on the
 * reactor), signals, the liveness check's verdict, the table of requests read and not yet
 * answered that a dying worker answers (hp_server_answer_unstarted), the 503
 * of the requests a stalled reactor holds in a wait (stall_answer). Not
 * its own: the access log (access.c), the request edge (edge.c), the
 * accept thread (listener.c), the census of descriptors (liveness.c),
 * opening and planning static files (static.c), the handler threads and
 * their queue (pool.c).
 * May not touch: compiling, loading or watching; it asks the module cache
 * for a pinned version and releases it when the response is done. It names
 * no host: a supervisor takes part only through the hooks of server.h.
 *
 * Threading: a few event-loop threads (libmicrohttpd's epoll thread pool,
 * one per CPU; or, with one event loop, the reactor's thread, which runs
 * libmicrohttpd in external-poll mode: hosted_turn) read requests and
 * write responses; a page runs either right
 * there (inline) or on the handler threads of pool.c (offloaded, with the
 * connection suspended meanwhile; keyed by the page's module path, so each
 * module queues on its own and holds at most its share of the threads). Inline
 * costs nothing extra but a handler that blocks would stall every connection of
 * its event loop, so a page version starts offloaded and is promoted to inline
 * once its runs prove fast; placement.c decides (a run that blocked demotes it,
 * one that was only preempted does not). Requests that would wait for a compile
 * or a batch are always offloaded. A page whose runs wait on the database
 * and are short between waits runs on the reactor instead (reactor.c, a
 * coroutine per request, many waits on one thread). bench/ measures the
 * modes; docs/design.md says why.
 */
#include "server.h"
#include "access.h"
#include "dashboard.h"
#include "db.h"
#include "devloop.h"
#include "edge.h"
#include "framing.h" /* hp_host_valid */
#include "listener.h"
#include "liveness.h"
#include "ops.h"
#include "placement.h"
#include "pool.h"
#include "coro.h"
#include "reactor.h"
#include "redirect.h"
#include "request.h"
#include "respmemo.h"
#include "session.h"
#include "static.h"
#include "stream.h"
#include "stray.h"
#include "tls.h"
#include "upload.h"
#include "uploadspool.h"
#include "wait.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define HOTPUB_PREFIX "/_hotpub/"
/* A request that finds every handler thread busy waits this long before
 * threads are added: long enough that short requests keeping every thread
 * busy (the CPUs are the limit) start none, short enough to go unnoticed
 * next to a request that blocks (docs/design.md, "Threading model"). */
#define HP_GROW_DELAY_S 0.005

struct server {
    struct hp_config *cfg;
    bool dev;
    char *root;
    struct hp_compiler *cc;
    hp_cache *cache;
    hp_resolver *res;
    hp_watch *watch;
    struct MHD_Daemon *mhd;
    atomic_long inflight;
    atomic_ulong requests;
    double started;
    unsigned io_threads;
    /* libmicrohttpd's one event loop runs on the reactor's thread
     * (hosted_start) */
    bool hosted;
    /* With one event loop: when the inline run on it began (hp_now_ns),
     * 0 when none runs (loop_free). */
    atomic_llong inline_since;
    /* the handler threads */
    atomic_ulong offloaded, inlined;
    atomic_ulong coroutines; /* requests run on the reactor (reactor.c) */
    atomic_int streams;     /* streamed responses whose handler runs */
    const char *upload_dir; /* --upload-dir, else $TMPDIR, else /tmp */
    atomic_bool stopping;   /* shutting down: run inline, close connections */
    struct sockaddr_storage listen_ss; /* --listen's address (the Host rule) */
};

/*
 * A request's life on this side. One event-loop thread drives it, except
 * in OFFLOADED, when one handler thread owns it: that thread's move to
 * ANSWERED (a release store, read with acquire) hands it back.
 *
 *   HEAD --first call--> BODY --dispatch: inline-----------> ANSWERED -->
 * QUEUED |   (or a 413 before the body)        ^
 *                         +--dispatch: offload--> OFFLOADED ----+
 *                                                 (handler thread, then resume)
 *                                OFFLOADED --first hp_flush--> STREAMING -->
 * QUEUED
 *
 * HEAD: the request line is known (the URI callback), the head is not done.
 * BODY: hp_req is set up; the body arrives. QUEUED: handed to libmicrohttpd.
 * Whether a response was made is c->status != 0, set with c->resp.
 * STREAMING: the handler thread made a streamed response (hp_flush) and
 * resumed the connection, whose event loop queues it; the handler goes on
 * writing through the stream (stream.c) and touches nothing else of the
 * context but c->owners, which says who frees it (ctx_release).
 */
enum ctx_state {
    CTX_HEAD,
    CTX_BODY,
    CTX_OFFLOADED,
    CTX_ANSWERED,
    CTX_QUEUED,
    CTX_STREAMING
};

/* Per-request context: created by the URI log callback (the first thing
 * libmicrohttpd tells us about a request), freed on completion. */
struct ctx {
    char *uri;            /* raw request target, for the access log */
    struct hp_edge *edge; /* the connection's (edge.c), or NULL */
    struct MHD_Connection *conn;
    int fd;           /* the connection's socket */
    atomic_int state; /* enum ctx_state */
    struct MHD_Response *resp;
    bool resp_kept;    /* resp is the thread's kept one: never destroy it */
    int status;        /* of the response made; 0 while there is none */
    double t0;         /* hp_now() at the request line (metrics, started) */
    const char *label; /* the metrics' page label when not the target's */
    uint64_t length;
    size_t head_room;       /* bytes for the response's head (head_room()) */
    struct hp_pool_job job; /* on the handler threads' queue (pool.c) */
    /* A run on the reactor (reactor.c): each stretch between two waits
     * goes on the guard's record and is timed on its own. */
    struct hp_reactor_job rjob;
    struct hp_run_probe seg; /* the stretch running now */
    int64_t seg_max_ns;      /* the longest stretch's own time */
    int seg_token;           /* H.run_begin's, for the stretch */
    /* Its line is in the access log already (answered_elsewhere). */
    atomic_bool logged;
    /* The request's Referer and User-Agent (NULL: none or the log is
     * off) for answered_elsewhere's line, found by unstarted_mark. */
    const char *referer, *user_agent;
    bool coro;               /* run by the reactor */
    bool seg_timed_out;      /* the watchdog answered during a stretch */
    /* A streamed response (hp_flush): its handler thread and its
     * connection both hold the request; the last to let go frees it. */
    atomic_int owners;
    char uri_short[128]; /* uri, when it fits (no strdup) */
    hp_req req;          /* last: initialised by hp_req_init, not calloc */
};

static struct server S;

static void resume_conn(struct MHD_Connection *conn);

static enum ctx_state ctx_state(struct ctx *c)
{
    return (enum ctx_state)atomic_load_explicit(&c->state,
                                                memory_order_acquire);
}

/* The only way a request changes state: from the one state allowed. */
static void ctx_move(struct ctx *c, enum ctx_state from, enum ctx_state to)
{
    assert(ctx_state(c) == from);
    assert((from == CTX_HEAD && to == CTX_BODY) ||
           (from == CTX_BODY && (to == CTX_OFFLOADED || to == CTX_ANSWERED)) ||
           (from == CTX_OFFLOADED && to == CTX_ANSWERED) ||
           (from == CTX_OFFLOADED && to == CTX_STREAMING) ||
           (from == CTX_STREAMING && to == CTX_QUEUED) ||
           (from == CTX_ANSWERED && to == CTX_QUEUED));
    (void)from;
    atomic_store_explicit(&c->state, (int)to, memory_order_release);
}

/* What the host provides (server.h); no-op defaults fill what it does not. */
static struct hp_server_hooks H;

static int no_vet(struct hp_pinset *ps, bool dev, bool details, char **html)
{
    return 0;
}
static int no_rescue(struct hp_pinset *ps, const char *path)
{
    return -1;
}
static int no_run_begin(const char *path, const char *handler,
                        const hp_version *v, int fd)
{
    return -1;
}
static void no_run_stack(uintptr_t lo, size_t size, size_t guard)
{
    (void)lo, (void)size, (void)guard;
}

static bool no_run_end(int token)
{
    return true;
}
static long no_stuck(void)
{
    return 0;
}
static void no_op(void)
{
}
static void no_status(struct hp_buf *b)
{
}
static void no_lost(const char *why)
{
}
static bool no_stop_cause(char *out, size_t cap)
{
    return false;
}

static void hooks_fill(const struct hp_server_hooks *hooks)
{
    H = hooks ? *hooks : (struct hp_server_hooks){.listen_fd = -1};
    H.vet = H.vet ? H.vet : no_vet;
    H.rescue = H.rescue ? H.rescue : no_rescue;
    H.run_begin = H.run_begin ? H.run_begin : no_run_begin;
    H.run_end = H.run_end ? H.run_end : no_run_end;
    H.run_alive = H.run_alive ? H.run_alive : no_op;
    H.run_stack = H.run_stack ? H.run_stack : no_run_stack;
    H.stuck = H.stuck ? H.stuck : no_stuck;
    H.ready = H.ready ? H.ready : no_op;
    H.heartbeat = H.heartbeat ? H.heartbeat : no_op;
    H.lost = H.lost ? H.lost : no_lost;
    H.reopen_logs = H.reopen_logs ? H.reopen_logs : no_op;
    H.stop_cause = H.stop_cause ? H.stop_cause : no_stop_cause;
    H.status_json = H.status_json ? H.status_json : no_status;
    H.teardown = H.teardown ? H.teardown : no_op;
}

/* ---- requests a dying process answers ------------------------------------
 *
 * One byte per descriptor: UNSTARTED from the moment a request has been
 * read in full (dispatch) until its response goes to libmicrohttpd
 * (queue), the only window in which nothing of a response can have been
 * sent. A worker's crash handler (the host's, through
 * hp_server_answer_unstarted) answers those requests itself; whoever
 * moves the byte out of UNSTARTED first owns the socket:
 *
 *   NONE --dispatch--> UNSTARTED --queue--> NONE
 *                          | crash handler (CAS)   | the host's watchdog
 *                          v                       v (hp_server_claim)
 *                        DYING (503 sent;        HOST (504 sent;
 *                        queue never returns)    queue goes on)
 */
enum { U_NONE = 0, U_UNSTARTED, U_DYING, U_HOST };

static struct {
    _Atomic(unsigned char) *by_fd;
    /* The request of a marked descriptor (set before its byte), for the
     * access log line of an answer written there by the crash handler or
     * the host's watchdog; valid while the byte is UNSTARTED, DYING, or
     * HOST claimed from UNSTARTED (queue, then ctx_free, come after). */
    _Atomic(struct ctx *) *ctx_by_fd;
    int n;
    atomic_int high; /* highest descriptor marked + 1 */
    bool tls;        /* connections speak TLS: no plaintext answers */
} U;

static void unstarted_init(void)
{
    struct rlimit rl;
    long n = 65536;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        n = (long)rl.rlim_cur;
    if (n > (1L << 20))
        n = 1L << 20;
    U.by_fd = hp_xcalloc((size_t)n, 1);
    U.ctx_by_fd = hp_xcalloc((size_t)n, sizeof *U.ctx_by_fd);
    U.n = (int)n;
}

static void unstarted_mark(struct ctx *c)
{
    int fd = c->fd;
    if (fd < 0 || fd >= U.n)
        return;
    if (hp_access_enabled()) { /* now: the crash handler cannot */
        hp_req_remote(&c->req);
        c->referer = hp_header(&c->req, "Referer");
        c->user_agent = hp_header(&c->req, "User-Agent");
    }
    atomic_store(&U.ctx_by_fd[fd], c);
    atomic_store(&U.by_fd[fd], U_UNSTARTED);
    int high = atomic_load(&U.high);
    while (fd + 1 > high &&
           !atomic_compare_exchange_weak(&U.high, &high, fd + 1))
        ;
}

/* The response is about to be handed over (or the request is gone). */
static void unstarted_clear(int fd)
{
    if (fd < 0 || fd >= U.n)
        return;
    if (atomic_exchange(&U.by_fd[fd], U_NONE) == U_DYING)
        for (;;) /* the crash handler answered: this process is ending */
            pause();
}

void hp_server_dying(void)
{
    hp_listener_abandon();
}

void hp_server_pause_accepting(bool on)
{
    hp_listener_pause(on);
}

void hp_server_pause_accepting_for(long long ns)
{
    hp_listener_pause_for(ns);
}

static const char *metrics_label(struct ctx *c);

/* The descriptor this thread last claimed while its request was
 * UNSTARTED (its ctx_by_fd is that request's), or -1. */
static __thread int tl_claimed = -1;

/*
 * An answer written on c's socket by someone other than queue() (the
 * crash handler, the host's watchdog): its access log line and its count
 * in hotpub_http_requests_total, at once, since c will never reach
 * ctx_free (a dying process) or reaches it only when its stuck handler
 * returns (logged, which ctx_free then is not). Async-signal-safe:
 * hp_access_line_now, and the metrics' lock-free counters.
 */
static void answered_elsewhere(struct ctx *c, int status, uint64_t length)
{
    atomic_store(&c->logged, true);
    hp_access_line_now(c->req.remote, c->req.method, c->uri, c->req.version,
                       status, length, c->referer, c->user_agent);
    if (S.cfg && S.cfg->metrics)
        hp_metrics_request(metrics_label(c), status, hp_now() - c->t0);
}

void hp_server_answered(int fd, int status, uint64_t length)
{
    if (fd < 0 || fd != tl_claimed || fd >= U.n || !U.by_fd ||
        atomic_load(&U.by_fd[fd]) != U_HOST)
        return;
    tl_claimed = -1;
    struct ctx *c = atomic_load(&U.ctx_by_fd[fd]);
    if (c && c->fd == fd && !atomic_load(&c->logged))
        answered_elsewhere(c, status, length);
}

void hp_server_answered_dying(int fd, int status, uint64_t length)
{
    hp_access_dying();
    hp_server_answered(fd, status, length);
}

void hp_server_answer_unstarted(int culprit_fd)
{
    static const char busy[] = "HTTP/1.1 503 Service Unavailable\r\n"
                               "Retry-After: 1\r\nConnection: close\r\n"
                               "Content-Length: 0\r\n\r\n";
    /* The culprit's body is the short one of hp_req_error_body. */
    static const char failed[] =
        "HTTP/1.1 502 Bad Gateway\r\n"
        "Content-Type: text/html; charset=utf-8\r\n"
        "Connection: close\r\nContent-Length: 72\r\n\r\n"
        "<!doctype html>\n<title>502 Bad Gateway</title>\n"
        "<h1>502 Bad Gateway</h1>\n";
    /* The lines of the requests this process completed first. */
    hp_access_dying();
    int high = atomic_load(&U.high);
    for (int fd = 0; U.by_fd && fd < high && fd < U.n; fd++) {
        unsigned char want = U_UNSTARTED;
        if (!atomic_compare_exchange_strong(&U.by_fd[fd], &want, U_DYING))
            continue;
        bool culprit = fd == culprit_fd;
        ssize_t r = 0;
        /* Over TLS a plaintext answer would be garbage inside the
         * session: a closed connection is the clearer failure (logged
         * with its status and 0 bytes, as nginx logs an answer it could
         * not send). */
        if (!U.tls)
            r = send(fd, culprit ? failed : busy,
                     culprit ? sizeof failed - 1 : sizeof busy - 1,
                     MSG_NOSIGNAL | MSG_DONTWAIT);
        shutdown(fd, U.tls ? SHUT_RDWR : SHUT_WR);
        struct ctx *c = atomic_load(&U.ctx_by_fd[fd]);
        if (c && c->fd == fd)
            answered_elsewhere(c, culprit ? 502 : 503,
                               r > 0 && culprit ? 72 : 0);
    }
}

/* The socket of the request whose page this thread is pinning (a build,
 * a load, an application module's init may run meanwhile), or -1; and
 * whether dev mode's details may go to that request's client. */
static __thread int tl_pin_fd = -1;
static __thread bool tl_pin_details;

/* Serialises hp_server_abandon_load (the host's watchdog thread) with
 * the cache's end at teardown. */
static pthread_mutex_t abandon_mu = PTHREAD_MUTEX_INITIALIZER;

void hp_server_abandon_load(const char *path, const char *why)
{
    pthread_mutex_lock(&abandon_mu);
    hp_cache_abandon_load(S.cache, path, why);
    pthread_mutex_unlock(&abandon_mu);
}

int hp_server_pinning_fd(void)
{
    return tl_pin_fd;
}

bool hp_server_pinning_details(void)
{
    return tl_pin_fd >= 0 && tl_pin_details;
}

static bool dev_details(hp_req *req);

/* hp_cache_pin_page for the request of c, on record for
 * hp_server_pinning_fd. */
static void take_signals(void);
static __thread bool tl_signals_taken;

static enum hp_acquire pin_page(struct ctx *c, bool wait)
{
    /* A pin may load the page, running its constructors and init: a stop
     * signal one raises must reach forward_signal now (a crash of that
     * hook), not stay pending on this thread until its first run. */
    if (!tl_signals_taken)
        take_signals();
    tl_pin_fd = c->fd;
    tl_pin_details = dev_details(&c->req);
    enum hp_acquire r =
        hp_cache_pin_page(S.cache, c->req.target.path, &c->req.pins, wait);
    tl_pin_fd = -1;
    return r;
}

bool hp_server_plaintext(void)
{
    return !U.tls;
}

bool hp_server_claim(int fd)
{
    tl_claimed = -1;
    if (fd < 0 || fd >= U.n || !U.by_fd)
        return true;
    unsigned char w = atomic_load(&U.by_fd[fd]);
    while (w != U_DYING)
        if (atomic_compare_exchange_weak(&U.by_fd[fd], &w, U_HOST)) {
            tl_claimed = w == U_UNSTARTED ? fd : -1;
            return true;
        }
    return false;
}

/* The host claimed fd (hp_server_claim) and answered its request. */
static bool host_answered(int fd)
{
    return fd >= 0 && fd < U.n && U.by_fd &&
           atomic_load(&U.by_fd[fd]) == U_HOST;
}

/* ---- access log (access.c) ---------------------------------------------- */

static void access_log(struct ctx *c)
{
    if (!hp_access_enabled())
        return;
    const char *ref = NULL, *ua = NULL;
    if (ctx_state(c) != CTX_HEAD) { /* (a detached request has copies) */
        ref = hp_header(&c->req, "Referer");
        ua = hp_header(&c->req, "User-Agent");
    } else { /* refused or cut short before the head was done */
        c->req.conn = c->conn;
        c->req.remote[0] = '\0';
    }
    bool head = ctx_state(c) != CTX_HEAD;
    /* The body bytes sent, as nginx's $body_bytes_sent: none to a HEAD. */
    uint64_t sent = head && strcmp(c->req.method, "HEAD") == 0 ? 0 : c->length;
    hp_access_line(hp_req_remote(&c->req), head ? c->req.method : "-",
                   c->uri ? c->uri : "-", head ? c->req.version : "-",
                   c->status, sent, ref, ua);
}

/* The request edge refused a connection before any request on it reached
 * libmicrohttpd (edge.c): the access log still shows it, with the request
 * line as received when there was one. */
static void access_log_refused(const char *addr, int status, const char *line)
{
    if (line && *line)
        hp_access_line_raw(addr, line, status, 0, NULL, NULL);
    else
        hp_access_line(addr, "-", "-", "-", status, 0, NULL, NULL);
}

/* A stopping server asks keep-alive clients to reconnect (Connection:
 * close), so they move to the processes that go on serving, or learn at
 * once that this one is going. */
static atomic_bool draining;

/* ---- responses ---------------------------------------------------------- */

/* Whether the response being built is HTML (text/html, or the default). */
static bool is_html(const hp_req *req)
{
    if (!req->has_content_type)
        return true;
    for (size_t i = req->headers.n; i-- > 0;)
        if (strcasecmp(req->headers.v[i].name, "Content-Type") == 0)
            return strncasecmp(req->headers.v[i].value, "text/html", 9) == 0;
    return false;
}

/* Whether req's Host names this server for a browser (admin.c's rule,
 * against DNS rebinding): only then do /_hotpub/ and dev mode's details
 * (diagnostics, paths, live reload) answer it. */
static bool host_ok(hp_req *req)
{
    return hp_host_allowed(hp_header(req, "Host"), S.cfg->allowed_hosts,
                           (const struct sockaddr *)&S.listen_ss);
}

/* Dev mode and a Host of this server: a response may carry details. */
static bool dev_details(hp_req *req)
{
    return S.dev && host_ok(req);
}

/* Dev mode: the live-reload script, told which files made this response. */
static void inject_live_reload(hp_req *req)
{
    const char *deps[HP_MAX_APPS + 2 + 64];
    size_t n = 0;
    struct hp_pinset *ps = &req->pins;

    if (!S.dev || !is_html(req) || strcmp(req->method, "HEAD") == 0 ||
        strncmp(req->path, HOTPUB_PREFIX, strlen(HOTPUB_PREFIX)) == 0 ||
        !host_ok(req))
        return; /* (hotpub's own pages, the dashboard, keep to themselves) */
    if (req->target.path[0])
        deps[n++] = req->target.path;
    if (ps->page)
        deps[n++] = ps->page->path;
    for (size_t i = 0; i < ps->napps; i++)
        deps[n++] = ps->apps[i]->path;
    if (ps->err_path)
        deps[n++] = ps->err_path;
    n += hp_req_tpl_paths(req, deps + n, 64);
    /* A policy that allows scripts by nonce: the script gets the nonce. */
    char nonce[128];
    const char *with = NULL;
    for (size_t i = 0; i < req->headers.n && !with; i++)
        if (strcasecmp(req->headers.v[i].name, "Content-Security-Policy") == 0)
            with = hp_devloop_csp_nonce(req->headers.v[i].value, nonce,
                                        sizeof nonce);
    hp_devloop_inject(&req->out, deps, n, with);
}

/*
 * The response head's room (edge.h, HP_EDGE_HEAD_FIXED): hotpub counts
 * what the request holds of libmicrohttpd's memory (head_room) and what
 * the head will take (response_head, fields_head), and answers a plain
 * 500 instead of a head that would not fit (head_too_big). The edge keeps
 * 4 KiB of the memory free of any request it lets through (framing.h),
 * so a head of about 3.5 KB always fits; after a short request, about
 * --max-header.
 */
/* What libmicrohttpd's memory has left for the response's head: on the
 * connection's event loop, once the head (and any trailer) is read. */
static size_t head_room(struct ctx *c)
{
    size_t pool = hp_edge_mhd_memory(S.cfg);
    size_t held =
        hp_edge_request_held(c->conn, c->uri, c->req.method, c->req.version);
    return held < pool ? pool - held : 0;
}

static enum MHD_Result head_one(void *cls, enum MHD_ValueKind kind,
                                const char *key, const char *value)
{
    size_t *n = cls;
    if (kind == MHD_HEADER_KIND)
        *n += strlen(key) + 2 + (value ? strlen(value) : 0) + 2;
    return MHD_YES;
}

/* The head libmicrohttpd will write for r, at most. */
static size_t response_head(struct MHD_Response *r)
{
    size_t n = HP_EDGE_HEAD_FIXED;
    MHD_get_response_headers(r, head_one, &n);
    return n;
}

/* The same, for the fields a page set (a streamed response's, before it
 * is made), with the Content-Type hotpub adds when it set none. */
static size_t fields_head(const hp_req *req)
{
    size_t n = HP_EDGE_HEAD_FIXED;
    for (size_t i = 0; i < req->headers.n; i++)
        n += strlen(req->headers.v[i].name) + 2 +
             strlen(req->headers.v[i].value) + 2;
    if (!req->has_content_type)
        n += sizeof "Content-Type: text/html; charset=utf-8\r\n" - 1;
    return n;
}

static void head_too_big_log(struct ctx *c, size_t head)
{
    const char *what = c->req.target.path[0] ? c->req.target.path
                       : c->req.path         ? c->req.path
                                             : "-";
    hp_log_error("%s: response head of %zu bytes (estimated) over the %zu "
                 "bytes libmicrohttpd has left for it (--max-header %zu + "
                 "4 KiB, less the request's head); answering 500",
                 what, head, c->head_room, (size_t)S.cfg->max_header);
}

static enum MHD_Result send_buffer(struct ctx *c, int status)
{
    hp_req *req = &c->req;
    inject_live_reload(req);
    /* An inline run is queued right after this, on this thread, so it may
     * use (and replace) the thread's kept response (respmemo.c); one that
     * says "Connection: close" must not be kept. */
    bool kept = ctx_state(c) == CTX_BODY && !atomic_load(&S.stopping) &&
                !atomic_load_explicit(&draining, memory_order_relaxed);
    struct MHD_Response *r = kept ? hp_respmemo_find(req) : NULL;
    if (r) {
        c->length = req->out.len;
        c->status = status;
        c->resp = r;
        c->resp_kept = true;
        return MHD_YES;
    }
    r = MHD_create_response_from_buffer(req->out.len, req->out.p,
                                        MHD_RESPMEM_MUST_FREE);
    if (!r)
        return MHD_NO;
    /* The buffer now belongs to the response. */
    const char *body = req->out.p;
    req->out.p = NULL;
    c->length = req->out.len;
    req->out.len = req->out.cap = 0;
    for (size_t i = 0; i < req->headers.n; i++)
        MHD_add_response_header(r, req->headers.v[i].name,
                                req->headers.v[i].value);
    if (!req->has_content_type)
        MHD_add_response_header(r, "Content-Type", "text/html; charset=utf-8");
    if (atomic_load(&S.stopping))
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
    c->status = status;
    c->resp = r;
    c->resp_kept = kept && hp_respmemo_keep(r, body, (size_t)c->length, req);
    return MHD_YES;
}

static enum MHD_Result send_error(struct ctx *c, int status,
                                  const char *detail_html);

/* GET /_hotpub/events (dev mode): the live-reload stream. */
static enum MHD_Result send_live_reload(struct ctx *c)
{
    struct MHD_Response *r = hp_devloop_events(c->req.conn);
    if (!r)
        return send_error(c, 503, NULL);
    c->status = 200;
    c->resp = r;
    return MHD_YES;
}

static enum MHD_Result send_error(struct ctx *c, int status,
                                  const char *detail_html)
{
    c->req.headers.n = 0;
    c->req.has_content_type = false;
    hp_req_error_body(&c->req, status, detail_html);
    return send_buffer(c, status);
}

/* The standard body for a status a page returned, keeping the headers it
 * set (WWW-Authenticate on a 401, Allow on a 405, Retry-After on a 503)
 * but not a Content-Type meant for a body it did not write. */
static enum MHD_Result send_error_keep_headers(struct ctx *c, int status)
{
    struct hp_kvlist *h = &c->req.headers;
    size_t k = 0;
    for (size_t i = 0; i < h->n; i++)
        if (strcasecmp(h->v[i].name, "Content-Type") != 0)
            h->v[k++] = h->v[i];
    h->n = k;
    c->req.has_content_type = false;
    hp_req_error_body(&c->req, status, NULL);
    return send_buffer(c, status);
}

/*
 * A directory asked without its trailing '/' (resolve.c, HP_T_DIRSLASH):
 * 301 to the path with it and the same query, as nginx and Apache do; 308
 * for methods other than GET and HEAD, which keeps the method and body
 * (RFC 9110 §15.4.9). The Location is a path, a relative reference (RFC
 * 9110 §10.2.2) the resolver never starts with "//".
 */
static enum MHD_Result send_dir_slash(struct ctx *c)
{
    hp_req *req = &c->req;
    struct hp_buf loc = {0};
    int status =
        strcmp(req->method, "GET") == 0 || strcmp(req->method, "HEAD") == 0
            ? 301
            : 308;
    hp_buf_puts(&loc, req->target.path);
    if (req->query && *req->query)
        hp_buf_printf(&loc, "?%s", req->query);
    char *value = loc.p ? hp_strdup(req, loc.p) : NULL; /* the request's */
    hp_buf_free(&loc);
    if (!value)
        return send_error(c, 500, NULL);
    req->headers.n = 0;
    req->has_content_type = false;
    hp_req_error_body(req, status, NULL);
    hp_req_add_header(req, "Location", value);
    return send_buffer(c, status);
}

static const char *static_field(hp_req *req, const char *name)
{
    return hp_req_field_value(req, hp_req_field(req->conn, name));
}

/* A bodiless answer of the plan (304, 412, 416) with its headers. */
static enum MHD_Result send_static_status(struct ctx *c,
                                          const struct hp_static_plan *p,
                                          const char *name)
{
    hp_req *req = &c->req;

    req->headers.n = 0;
    req->has_content_type = false;
    req->out.len = 0;
    if (p->status == 304) {
        /* RFC 9110 §15.4.5: the validators a 200 would have carried. */
        hp_req_add_header(req, "ETag", p->etag);
        hp_req_add_header(req, "Last-Modified", p->last_modified);
        hp_req_add_header(req, "Content-Type", hp_mime_type(name));
        return send_buffer(c, 304);
    }
    hp_req_error_body(req, p->status, NULL);
    if (p->content_range[0])
        hp_req_add_header(req, "Content-Range", p->content_range);
    return send_buffer(c, p->status);
}

static enum MHD_Result send_file_planned(struct ctx *c, int fd,
                                         const struct stat *st,
                                         const char *name);

/* static.c opens the file and decides the answer; this builds it. */
/* Dev mode reads a static HTML file (up to this size) to add the
 * live-reload script; larger ones go out as they are. */
#define HP_DEV_HTML_MAX (4 << 20)

static bool is_html_name(const char *path)
{
    const char *dot = strrchr(path, '.');
    return dot &&
           (strcasecmp(dot, ".html") == 0 || strcasecmp(dot, ".htm") == 0);
}

/* Dev mode: a static HTML file through the buffer, so it gets the
 * live-reload script like a page's HTML; never cached (the next reload
 * must see the edit), no validators. Takes fd. */
static enum MHD_Result send_static_dev_html(struct ctx *c, int fd)
{
    hp_req *req = &c->req;
    char chunk[16384];
    ssize_t n;
    while ((n = read(fd, chunk, sizeof chunk)) > 0)
        hp_buf_append(&req->out, chunk, (size_t)n);
    close(fd);
    if (n < 0)
        return send_error(c, 500, NULL);
    hp_req_add_header(req, "Cache-Control", "no-store");
    return send_buffer(c, 200);
}

static enum MHD_Result send_static(struct ctx *c)
{
    hp_req *req = &c->req;
    struct stat st;
    int fd;

    if (strcmp(req->method, "GET") != 0 && !req->is_head) {
        /* RFC 9110 §15.5.6: a 405 says which methods would do. */
        req->headers.n = 0;
        hp_req_add_header(req, "Allow", "GET, HEAD");
        return send_error_keep_headers(c, 405);
    }
    fd = hp_static_open(S.root, req->target.path, &st);
    if (fd < 0)
        return send_error(c, 404, NULL);
    req->headers.n = 0; /* a static file carries only its own fields */
    req->has_content_type = false;
    if (S.dev && hp_devloop_on() && is_html_name(req->target.path) &&
        st.st_size <= HP_DEV_HTML_MAX && !static_field(req, "Range") &&
        host_ok(req))
        return send_static_dev_html(c, fd);
    return send_file_planned(c, fd, &st, req->target.path);
}

/*
 * The file open on fd (st: its fstat) as static files get it: validators,
 * conditional requests and one byte range (static.c's plan), zero copy.
 * Fields in req->headers (a page's, for hp_send_file) go along; its
 * Content-Type, if it set one, wins over the one from name's extension.
 * Takes fd.
 */
static enum MHD_Result send_file_planned(struct ctx *c, int fd,
                                         const struct stat *st,
                                         const char *name)
{
    hp_req *req = &c->req;
    struct hp_static_plan p;
    bool get = strcmp(req->method, "GET") == 0 || req->is_head;
    struct hp_static_fields f = {
        .if_match = static_field(req, "If-Match"),
        .if_none_match = static_field(req, "If-None-Match"),
        .if_modified_since = static_field(req, "If-Modified-Since"),
        .if_unmodified_since = static_field(req, "If-Unmodified-Since"),
        .range = static_field(req, "Range"),
        .if_range = static_field(req, "If-Range"),
    };
    if (!get) /* conditions and ranges are about GET (RFC 9110 §13.2.1) */
        f = (struct hp_static_fields){0};
    hp_static_plan(st, &f, time(NULL), &p);
    if (p.status != 200 && p.status != 206) {
        close(fd);
        return send_static_status(c, &p, name);
    }
    struct MHD_Response *r =
        MHD_create_response_from_fd_at_offset64(p.length, fd, p.offset);
    if (!r) {
        close(fd);
        return MHD_NO;
    }
    for (size_t i = 0; i < req->headers.n; i++)
        MHD_add_response_header(r, req->headers.v[i].name,
                                req->headers.v[i].value);
    if (!req->has_content_type)
        MHD_add_response_header(r, "Content-Type", hp_mime_type(name));
    MHD_add_response_header(r, "Last-Modified", p.last_modified);
    MHD_add_response_header(r, "ETag", p.etag);
    MHD_add_response_header(r, "Accept-Ranges", "bytes");
    if (p.status == 206)
        MHD_add_response_header(r, "Content-Range", p.content_range);
    c->status = p.status;
    c->length = p.length;
    c->resp = r;
    return MHD_YES;
}

static const struct sockaddr *client_addr(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    return ci ? ci->client_addr : NULL;
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
                  t.kind == HP_T_PAGE       ? "page"
                  : t.kind == HP_T_STATIC   ? "static"
                  : t.kind == HP_T_DIRSLASH ? "redirect"
                                            : "notfound");
    if (t.kind == HP_T_DIRSLASH) {
        hp_buf_puts(b, ",\"location\":");
        hp_buf_json(b, t.path);
    }
    if (t.kind == HP_T_NOTFOUND || t.kind == HP_T_DIRSLASH) {
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
    enum hp_acquire r = hp_cache_pin_page(S.cache, t.path, &probe.pins, true);
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

static int max_streams(void);
/* status.json: a module's requests on the handler threads (pool.c). */
static void status_module_queue(const char *path, struct hp_buf *b)
{
    int running;
    long queued;
    hp_pool_key_stats(path, &running, &queued);
    hp_buf_printf(b, ",\"running\":%d,\"queued\":%ld", running, queued);
}

/* status.json's body; url: the ?url= probe, or NULL. */
static void status_body(struct hp_buf *b, const char *url)
{
    struct hp_pool_stats ps;
    hp_pool_stats(&ps);
    struct hp_reactor_stats rs;
    hp_reactor_stats(&rs);
    hp_buf_printf(
        b,
        "{\"server\":{\"version\":\"%s\",\"pid\":%d,\"dev\":%s,"
        "\"compiles\":%lu,\"requests\":%lu,\"inflight\":%ld,"
        "\"uptime\":%.3f,\"io_threads\":%u,\"loop_on_reactor\":%s,"
        "\"handler_threads\":%d,"
        "\"handler_threads_busy\":%d,\"offloaded\":%lu,\"inlined\":%lu,"
        "\"coroutines\":%lu,\"reactor\":{\"runs\":%lu,\"waits\":%lu,"
        "\"active\":%d,\"queued\":%ld,\"abandoned\":%lu},"
        "\"streams\":%d,\"max_streams\":%d,"
        "\"threads\":{\"live\":%d,\"busy\":%d,\"max\":%d,\"min\":%d,"
        "\"idle\":%d,\"queued\":%ld,\"module_share\":%d,"
        "\"started\":%lu,\"retired\":%lu}},"
        "\n\"modules\":",
        HP_VERSION_STRING, (int)getpid(), S.dev ? "true" : "false",
        hp_compiler_runs(S.cc), atomic_load(&S.requests),
        atomic_load(&S.inflight) - 1, hp_now() - S.started, S.io_threads,
        S.hosted ? "true" : "false", ps.live, ps.busy, atomic_load(&S.offloaded), atomic_load(&S.inlined),
        atomic_load(&S.coroutines), rs.runs, rs.waits, rs.active, rs.queued,
        rs.abandoned, atomic_load(&S.streams), max_streams(), ps.live, ps.busy,
        ps.max, ps.min, ps.idle, ps.queued, ps.share, ps.started, ps.retired);
    hp_cache_status_json(S.cache, b, status_module_queue);
    if (url)
        status_url(b, url);
    hp_db_status_json(b);
    hp_edge_status_json(b);
    H.status_json(b); /* the host's (worker processes) */
    /* The whole node's (metrics.c): this worker's own modules as of now,
     * the others' as of their last second. */
    hp_metrics_modules(S.cache);
    hp_metrics_json(b);
    hp_buf_puts(b, ",\n\"root\":");
    hp_buf_json(b, S.root);
    hp_buf_puts(b, "}\n");
}

/* The dashboard's feed: status.json as it is (dashboard.c). */
static void status_snapshot(struct hp_buf *b)
{
    status_body(b, NULL);
}

static enum MHD_Result send_status(struct ctx *c)
{
    hp_req *req = &c->req;
    /* ?url= loads the page and its chain as a request would: under the
     * same guard (pin_page's record), so that an init that kills the
     * worker answers this request with the page's 503, not an empty one,
     * and its object's init is refused from then on. */
    tl_pin_fd = c->fd;
    tl_pin_details = dev_details(req);
    status_body(&req->out, MHD_lookup_connection_value(
                               req->conn, MHD_GET_ARGUMENT_KIND, "url"));
    tl_pin_fd = -1;
    hp_req_add_header(req, "Content-Type", "application/json");
    hp_req_add_header(req, "Cache-Control", "no-store");
    return send_buffer(c, 200);
}

static enum MHD_Result send_text(struct ctx *c, int status,
                                 const char *content_type, const char *text)
{
    hp_req *req = &c->req;
    if (text)
        hp_buf_puts(&req->out, text);
    hp_req_add_header(req, "Content-Type", content_type);
    hp_req_add_header(req, "Cache-Control", "no-store");
    return send_buffer(c, status);
}

/* /_hotpub/health: 200 while serving, 503 once the node is stopping
 * (through --drain-delay and the drain after it). */
static enum MHD_Result send_health(struct ctx *c)
{
    bool down = hp_metrics_node_draining() || atomic_load(&S.stopping);
    return send_text(c, down ? 503 : 200, "text/plain; charset=utf-8",
                     down ? "draining\n" : "ok\n");
}

static enum MHD_Result send_metrics(struct ctx *c)
{
    hp_metrics_text(&c->req.out, H.metrics_text);
    return send_text(c, 200, "text/plain; version=0.0.4; charset=utf-8", NULL);
}

static enum MHD_Result send_events(struct ctx *c)
{
    struct MHD_Response *r = hp_dashboard_events(c->req.conn, status_snapshot);
    if (!r)
        return send_error(c, 503, NULL);
    c->status = 200;
    c->resp = r;
    return MHD_YES;
}

/* MHD_get_connection_values iterator: counts Authorization fields. */
static enum MHD_Result count_authorization(void *count, enum MHD_ValueKind kind,
                                           const char *key, const char *value)
{
    (void)kind;
    (void)value;
    if (strcasecmp(key, MHD_HTTP_HEADER_AUTHORIZATION) == 0)
        ++*(int *)count;
    return MHD_YES;
}

/*
 * Who may see /_hotpub/NAME: loopback clients; the --health-allow blocks
 * for health; with --admin-token, anyone presenting it (RFC 6750 §2.1).
 * Those let in by their address only when their Host names this server
 * (host_ok): a DNS-rebinding page has a loopback address but its own
 * name, and cannot know the token. 1 allowed, 0 not (then the path is
 * served as any other: a 404 unless the document root has it), -1 a
 * token was wrong or missing (401), -2 the Host is not this server's and
 * no token makes up for it (421).
 */
static int hotpub_allowed(struct ctx *c, const char *name)
{
    const struct sockaddr *sa = client_addr(c->req.conn);
    bool by_addr =
        hp_addr_loopback(sa) ||
        (strcmp(name, "health") == 0 && hp_cidr_match(S.cfg->health_allow, sa));
    if (by_addr && host_ok(&c->req))
        return 1;
    if (!S.cfg->admin_token)
        return by_addr ? -2 : 0;
    /* Authorization is a singleton field (RFC 9110 §11.6.2): with two,
     * which one a proxy in front checked is anyone's guess, so neither
     * counts. */
    int n = 0;
    MHD_get_connection_values(c->req.conn, MHD_HEADER_KIND, count_authorization,
                              &n);
    if (n > 1)
        return -1;
    const char *auth = MHD_lookup_connection_value(
        c->req.conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (hp_bearer_ok(auth, S.cfg->admin_token))
        return 1;
    return by_addr ? -2 : -1;
}

/* name (after /_hotpub/) is one of hotpub's own endpoints here. */
static bool hotpub_endpoint_known(const char *name)
{
    static const char *const always[] = {"",        "status.json",
                                         "metrics", "health",
                                         "status.events"};
    static const char *const dev[] = {"events", "live-reload.js",
                                      "live-reload.css"};
    for (size_t i = 0; i < sizeof always / sizeof *always; i++)
        if (strcmp(name, always[i]) == 0)
            return true;
    for (size_t i = 0; S.dev && i < sizeof dev / sizeof *dev; i++)
        if (strcmp(name, dev[i]) == 0)
            return true;
    return false;
}

/* hotpub's own endpoints under /_hotpub/ (docs/operations.md). false: the
 * path is not one of them for this client. */
static bool hotpub_endpoint(struct ctx *c, enum MHD_Result *r)
{
    const char *name = c->req.path + strlen(HOTPUB_PREFIX);
    int ok = hotpub_allowed(c, name);
    if (ok == 0)
        return false;
    c->label = HP_MET_HOTPUB;
    if (ok == -2) {
        /* RFC 9110 §15.5.20: this server will not answer for that
         * authority. The body is the plain one: nothing of the server. */
        *r = send_error(c, 421, NULL);
    } else if (ok < 0) {
        c->req.headers.n = 0;
        hp_req_add_header(&c->req, "WWW-Authenticate",
                          "Bearer realm=\"hotpub\"");
        *r = send_error_keep_headers(c, 401);
    } else if (!hotpub_endpoint_known(name)) {
        *r = send_error(c, 404, NULL);
    } else if (strcmp(c->req.method, MHD_HTTP_METHOD_GET) != 0 &&
               strcmp(c->req.method, MHD_HTTP_METHOD_HEAD) != 0) {
        /* Every endpoint reads; none takes a body (RFC 9110 §15.5.6). */
        c->req.headers.n = 0;
        hp_req_add_header(&c->req, "Allow", HP_ALLOW_OWN);
        *r = send_error_keep_headers(c, 405);
    } else if (strcmp(name, "status.json") == 0) {
        *r = send_status(c);
    } else if (strcmp(name, "metrics") == 0) {
        *r = send_metrics(c);
    } else if (strcmp(name, "health") == 0) {
        *r = send_health(c);
    } else if (strcmp(name, "events") == 0 && S.dev) {
        *r = send_live_reload(c); /* dev mode's live reload (devloop.c) */
    } else if (strcmp(name, "live-reload.js") == 0 && S.dev) {
        *r = send_text(c, 200, "text/javascript; charset=utf-8",
                       hp_devloop_js());
    } else if (strcmp(name, "live-reload.css") == 0 && S.dev) {
        *r = send_text(c, 200, "text/css; charset=utf-8", hp_devloop_css());
    } else if (strcmp(name, "status.events") == 0) {
        *r = send_events(c);
    } else if (*name == '\0') {
        hp_dashboard_html(&c->req.out);
        *r = send_text(c, 200, "text/html; charset=utf-8", NULL);
    } else {
        *r = send_error(c, 404, NULL);
    }
    return true;
}

/* ---- the publisher --------------------------------------------------------
 */

/* send_error's 503 for a module whose init is refused, with Retry-After
 * (RFC 9110 §10.2.3): the worker that replaces one whose init hung or
 * crashed may already serve a fixed file. */
static enum MHD_Result send_init_503(struct ctx *c, const char *detail_html)
{
    c->req.headers.n = 0;
    c->req.has_content_type = false;
    hp_req_add_header(&c->req, "Retry-After", "1");
    hp_req_error_body(&c->req, 503, detail_html);
    return send_buffer(c, 503);
}

static enum MHD_Result page_error(struct ctx *c, const char *path,
                                  const char *diag)
{
    /* Dev mode: the build this request waited for runs past the handler's
     * bound. Not the page's failure: a 503 that the browser's live reload
     * replaces with the new version once it is published. */
    if (diag &&
        strncmp(diag, HP_DIAG_BUILDING, strlen(HP_DIAG_BUILDING)) == 0) {
        if (!dev_details(&c->req))
            return send_init_503(c, "<p>The page is being rebuilt; try "
                                    "again in a moment.</p>\n");
        struct hp_buf html = {0};
        hp_buf_puts(&html, "<p>Still building ");
        hp_buf_html(&html, diag + strlen(HP_DIAG_BUILDING));
        hp_buf_puts(&html, ".</p>\n<p>This page reloads by itself when the "
                           "new version is live.</p>\n");
        const char *deps[] = {c->req.target.path, path};
        hp_devloop_script(&html, deps, path ? 2 : 1, NULL);
        enum MHD_Result r = send_init_503(c, html.p);
        hp_buf_free(&html);
        return r;
    }
    /* An application module whose init killed a worker: unavailable until
     * its file is fixed (guard.c refuses to run that init again). */
    bool init_crashed = hp_diag_is_refused(diag);
    int status = init_crashed ? 503 : 500;
    /* A load never tried (another page's constructor holds the loader's
     * lock) is no failure of this page. */
    if (init_crashed && !dev_details(&c->req) && hp_diag_is_busy(diag))
        return send_init_503(c, "<p>The page is not available yet; try "
                                "again.</p>\n");
    if (init_crashed && !dev_details(&c->req))
        return send_init_503(c, strstr(diag, "application module")
                                    ? "<p>An application module failed "
                                      "to initialise.</p>\n"
                                    : "<p>A page failed to initialise."
                                      "</p>\n");
    if (!diag || !dev_details(&c->req))
        return send_error(c, status, NULL);
    struct hp_buf html = {0};
    hp_devloop_error_page(&html, path ? path : c->req.target.path, diag);
    const char *deps[] = {c->req.target.path, path};
    hp_devloop_script(&html, deps, path ? 2 : 1, NULL); /* recovers */
    enum MHD_Result r =
        init_crashed ? send_init_503(c, html.p) : send_error(c, status, html.p);
    hp_buf_free(&html);
    return r;
}

/* The connection's socket, for the host's handler-timeout watchdog. */
static int conn_fd(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    return ci ? ci->connect_fd : -1;
}

/* ---- responses that leave before the handler returns -----------------------
 */

/* A page that called hp_flush on an event-loop thread: its next runs go to
 * the handler threads, where flushing streams. */
static void demote_for_stream(hp_version *v)
{
    atomic_store(&v->slow, true);
    atomic_store(&v->coro_never, true);
    if (atomic_exchange(&v->run_coro, false))
        hp_log_info("%s: it flushes its response; it now runs on the handler "
                    "threads",
                    v->path);
    if (atomic_exchange(&v->run_inline, false))
        hp_log_info("%s: it flushes its response; it now runs on the handler "
                    "threads",
                    v->path);
}

static int max_streams(void)
{
    if (S.cfg->max_streams > 0)
        return S.cfg->max_streams;
    int half = S.cfg->max_threads / 2;
    return half > 0 ? half : 1;
}

/* req->stream_begin of an offloaded run (output.c's hp_flush calls it). */
static int stream_begin(hp_req *req)
{
    struct ctx *c = (struct ctx *)((char *)req - offsetof(struct ctx, req));
    assert(ctx_state(c) == CTX_OFFLOADED);
    if (req->stream_refused) /* a page flushing again: still refused */
        return -1;
    if (atomic_fetch_add(&S.streams, 1) >= max_streams()) {
        atomic_fetch_sub(&S.streams, 1);
        static _Atomic long long last;
        long long now = (long long)time(NULL);
        if (atomic_exchange(&last, now) != now)
            hp_log_error("%s: --max-streams (%d) streamed responses are "
                         "open; answering 503",
                         req->target.path, max_streams());
        hp_req_add_header(req, "Retry-After", "1");
        req->forced_status = 503;
        req->stream_refused = true; /* the plain 503, not the page's body */
        return -1;
    }
    /* A head libmicrohttpd has no room for is never sent (see
     * head_room): the plain 500 instead, the page's fields dropped. */
    size_t head = fields_head(req);
    if (head > c->head_room) {
        atomic_fetch_sub(&S.streams, 1);
        head_too_big_log(c, head);
        req->headers.n = 0;
        req->has_content_type = false;
        req->forced_status = 500;
        req->stream_refused = true;
        return -1;
    }
    /* The handler may outlive the connection from here. */
    hp_req_detach(req);
    struct hp_stream *st = hp_stream_new(req->conn, S.cfg->timeout);
    struct MHD_Response *r = st ? hp_stream_response(st) : NULL;
    if (!r) {
        if (st)
            hp_stream_unref(st); /* the writer's; the response's is gone */
        atomic_fetch_sub(&S.streams, 1);
        return -1;
    }
    for (size_t i = 0; i < req->headers.n; i++)
        MHD_add_response_header(r, req->headers.v[i].name,
                                req->headers.v[i].value);
    if (!req->has_content_type)
        MHD_add_response_header(r, "Content-Type", "text/html; charset=utf-8");
    if (atomic_load(&S.stopping))
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
    req->stream = st;
    c->status = req->status;
    c->resp = r;
    atomic_store(&c->owners, 2);
    ctx_move(c, CTX_OFFLOADED, CTX_STREAMING);
    resume_conn(req->conn); /* its event loop queues c->resp */
    return 0;
}

/* The handler of a streamed response returned: the rest of the body after
 * a successful commit, else the stream is aborted (already committed, the
 * status cannot change: the client sees a body without its end). */
static enum MHD_Result stream_finish(struct ctx *c, int rc)
{
    hp_req *req = &c->req;
    bool ok = rc == HP_OK;
    if (ok && req->out.len && !req->is_head)
        ok = hp_stream_write(req->stream, req->out.p, req->out.len) == 0 ||
             hp_stream_is_gone(req->stream);
    req->out.len = 0;
    if (rc != HP_OK)
        hp_log_error("%s [%s]: the request failed (%d) after its response "
                     "was streamed; the stream is aborted",
                     req->target.path, req->target.handler, rc);
    hp_stream_end(req->stream, ok);
    atomic_fetch_sub(&S.streams, 1);
    return MHD_YES;
}

/*
 * The stop signals (SIGTERM, SIGINT) and SIGUSR1 are the main thread's, which
 * takes them with sigtimedwait (wait_for_stop). Blocked on the threads that
 * run pages, one a page raised on its own thread (raise, pthread_kill of
 * itself, tgkill) stayed pending there for good, and the worker served on.
 * So those threads take them with forward_signal instead, which sends them
 * on to the main thread (SI_QUEUE, the original sender in si_value) and,
 * for a stop signal the page raised itself, notes the page for
 * stop_sender's log. Free on the request path: no system call per run
 * (sigpending after each run cost about 200 ns).
 */
static pid_t main_pid, main_tid;
static __thread const hp_req *tl_running; /* the run on this thread */
static __thread bool tl_signals_taken; /* forward_signal's, here */
/* A name is claimed (*_claimed), written, then published (*_noted, a
 * release store): the main thread reads it only after it sees *_noted,
 * so it never reads a name half written. */
static atomic_bool raiser_claimed, raiser_noted;
static char raiser[512]; /* "path (handler 'h')" */
/* The same for a SIGHUP a page raised (hup_ignored), noted again for each. */
static atomic_bool hup_claimed, hup_noted;
static char hup_raiser[512];

static void note_page(const hp_req *req, char *out, size_t cap)
{
    const char *parts[] = {req->target.path, " (handler '", req->target.handler,
                           "')"};
    size_t n = 0;
    for (size_t i = 0; i < 4; i++)
        for (const char *c = parts[i]; *c && n < cap - 1; c++)
            out[n++] = *c;
    out[n] = '\0';
}

static void note_raiser(const hp_req *req)
{
    bool no = false;
    if (!atomic_compare_exchange_strong(&raiser_claimed, &no, true))
        return;
    note_page(req, raiser, sizeof raiser);
    atomic_store_explicit(&raiser_noted, true, memory_order_release);
}

static void forward_signal(int sig, siginfo_t *si, void *uc)
{
    int saved = errno;
    if (getpid() != main_pid) { /* a page's forked child: the default */
        signal(sig, SIG_DFL);
        raise(sig);
        errno = saved;
        return;
    }
    bool own = si->si_pid == main_pid &&
               (si->si_code == SI_TKILL || si->si_code == SI_USER);
    const struct hp_hook_run *h = own ? hp_hook_running() : NULL;
    if (sig != SIGUSR1 && h && H.load_signal &&
        (strcmp(h->hook, "constructor") == 0 || strcmp(h->hook, "init") == 0))
        H.load_signal(sig, si, uc); /* a crash in that hook: no return */
    if (sig == SIGHUP && tl_running && own) {
        if (!atomic_exchange(&hup_claimed, true)) {
            note_page(tl_running, hup_raiser, sizeof hup_raiser);
            atomic_store_explicit(&hup_noted, true, memory_order_release);
        }
    } else if (sig != SIGUSR1 && sig != SIGHUP && tl_running && own)
        note_raiser(tl_running);
    siginfo_t f = {.si_signo = sig, .si_code = SI_QUEUE};
    f.si_pid = main_pid;
    f.si_uid = getuid();
    f.si_value.sival_int = si->si_pid; /* who sent it (stop_sender) */
    syscall(SYS_rt_tgsigqueueinfo, main_pid, main_tid, sig, &f);
    errno = saved;
}

/* Once per thread that runs pages: take the main thread's signals here
 * (forward_signal, installed by hp_serve) rather than leave them pending. */
static void take_signals(void)
{
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGUSR1);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_UNBLOCK, &sigs, NULL);
    tl_signals_taken = true;
}

/* hp_send_file's file, after a successful commit. */
static enum MHD_Result send_page_file(struct ctx *c)
{
    hp_req *req = &c->req;
    int fd = req->send_fd - 1;
    struct stat st;
    req->send_fd = 0;
    if (fstat(fd, &st) < 0) {
        close(fd);
        return send_error(c, 500, NULL);
    }
    return send_file_planned(c, fd, &st, req->send_path);
}

/* A handler thread's bound on the waits the server bounds itself (wait.h):
 * --handler-timeout from now, less the margin; 0 without a limit. */
static void set_wait_bound(void)
{
    double t = S.cfg->handler_timeout;
    hp_wait_set_bound(
        t > 0 ? hp_now_ns() + (int64_t)(t * 1e9) - hp_wait_margin_ns(t) : 0);
}

/* After a flush: --handler-timeout starts again, and so does the bound. */
static void stream_alive(void)
{
    H.run_alive();
    set_wait_bound();
}

static void stretch_begin(struct ctx *c);
static void stretch_end(struct ctx *c);
static bool coro_candidate(const struct hp_pinset *ps);

static enum MHD_Result run_pinned(struct ctx *c, enum hp_acquire r)
{
    hp_req *req = &c->req;
    struct hp_pinset *ps = &req->pins;

    /* The host answered while the pin ran a module's init (504 past
     * --handler-timeout) and shut the socket: log that, run nothing. */
    if (host_answered(c->fd))
        return send_error(c, 504, NULL);
    switch (r) {
    case HP_ACQ_GONE:
        return send_error(c, 404, NULL);
    case HP_ACQ_ERROR:
        /* The host (worker processes): in production, a worker that never
         * built this page runs the last good version another one ran. */
        if (S.dev || !ps->err_path ||
            strcmp(ps->err_path, req->target.path) != 0 ||
            H.rescue(ps, req->target.path) < 0)
            return page_error(c, ps->err_path, ps->err);
        break;
    default:
        break;
    }
    /* In dev mode a broken edit is shown, not hidden behind the last good
     * version; in production the last good version serves. */
    if (ps->err && S.dev)
        return page_error(c, ps->err_path, ps->err);
    /* The host (worker processes): a version that crashed workers twice
     * is quarantined: the last good one runs instead, or a 500 says so. */
    char *quarantine = NULL;
    req->foreign_host = S.dev && !host_ok(req);
    if (H.vet(ps, S.dev, S.dev && !req->foreign_host, &quarantine) < 0) {
        enum MHD_Result qr = send_error(c, 500, quarantine);
        free(quarantine);
        return qr;
    }
    /* Fields are decoded before any page code runs, so the field cap and
     * a malformed multipart body are answered without the handler. */
    int form = hp_req_parse_form(req, S.cfg->max_fields);
    if (form != 0)
        return send_error(c, form, NULL);

    /* Runs on a handler thread are probed (CPU time, voluntary switches,
     * the wait for a CPU): placement.c tells a run that blocked from one
     * that was preempted. Not a version demoted for good: nothing its runs
     * show can move it (two system calls fewer per request). */
    struct hp_run_probe probe;
    if (!c->coro)
        hp_run_probe_start(&probe, ctx_state(c) != CTX_BODY &&
                                       !atomic_load(&ps->page->slow));
    /* The database pools' own time is not the page's (db.h), and the
     * waits a reactor could overlap (wait.h) tell whether it may run
     * there. */
    int64_t pool0 = hp_db_pool_ns(), wait0 = hp_wait_ns();
    /* The host (worker processes): the running handler goes on record for
     * crash reports and the --handler-timeout watchdog (no-op alone). */
    int run = c->coro ? -1
                      : H.run_begin(req->target.path, req->target.handler,
                                    ps->page,
                                    H.run_begin == no_run_begin
                                        ? -1
                                        : conn_fd(req->conn));
    if (!c->coro)
        set_wait_bound();
    if (!tl_signals_taken)
        take_signals();
    if (c->coro)
        stretch_begin(c);
    tl_running = req;
    int rc = hp_publish_run(req);
    tl_running = NULL;
    bool timed_out;
    if (c->coro) {
        stretch_end(c);
        timed_out = c->seg_timed_out || c->rjob.timed_out;
        hp_place_learn_coro(ps->page, c->seg_max_ns);
    } else {
        timed_out = !H.run_end(run);
        hp_wait_set_bound(0);
        struct hp_run measured =
            hp_run_probe_stop(&probe, hp_db_pool_ns() - pool0);
        hp_place_learn(ps->page, &measured, S.cfg->inline_pages);
        int64_t waited = hp_wait_ns() - wait0;
        if (waited > 0 && coro_candidate(ps))
            hp_place_learn_coro_fit(ps->page, &measured, waited);
    }
    if (req->flushed_inline) /* it streams: never on an event loop again */
        demote_for_stream(ps->page);
    if (req->enlisted && !atomic_load(&ps->page->uses_db))
        atomic_store(&ps->page->uses_db, true); /* see dispatch() */
    if (req->stream)
        return stream_finish(c, rc);
    /* Answered 503 while the reactor was held (stall_answer): this one
     * goes nowhere (the socket is shut) but to the access log. */
    if (c->coro && atomic_load(&c->rjob.abandoned))
        return send_error(c, 503, NULL);
    /* The host already sent a 504 and shut the socket; or a run on the
     * reactor waited past --handler-timeout (its query was given up). */
    if (timed_out)
        return send_error(c, 504, NULL);

    if (req->stream_refused)
        req->out.len = 0;
    if (rc == HP_OK && req->send_fd)
        return send_page_file(c);
    if (rc == HP_OK)
        return send_buffer(c, req->status);
    if (req->out.len == 0)
        return send_error_keep_headers(c, rc);
    return send_buffer(c, rc);
}

/* ---- the handler threads ---------------------------------------------------
 */

static void offload(struct ctx *c)
{
    ctx_move(c, CTX_BODY, CTX_OFFLOADED);
    atomic_fetch_add(&S.offloaded, 1);
    /* Suspend before queueing: a quick handler thread must never resume a
     * connection that is not suspended yet. */
    MHD_suspend_connection(c->req.conn);
    /* Keyed by the module's path: its requests queue behind each other,
     * never behind another page's (a new version is the same module). */
    hp_pool_submit(&c->job, c->req.target.path);
}

static void ctx_release(struct ctx *c);

/* On a handler thread (pool.c): pin, waiting for a build or a batch if
 * need be, run, and hand the request back to its event loop. */
static void run_offloaded(struct hp_pool_job *job)
{
    struct ctx *c = (struct ctx *)((char *)job - offsetof(struct ctx, job));
    enum hp_acquire r = HP_ACQ_OK;
    if (!c->req.pins.page) {
        /* A wait for a build ends before --handler-timeout (cache.c's
         * stale_until). */
        set_wait_bound();
        r = pin_page(c, true);
        hp_wait_set_bound(0);
    }
    c->req.stream_begin = atomic_load(&S.stopping) ? NULL : stream_begin;
    c->req.stream_alive = stream_alive;
    if (run_pinned(c, r) != MHD_YES && !c->resp)
        send_error(c, 500, NULL);
    if (c->req.stream) { /* already handed back: let go of it */
        ctx_release(c);
        return;
    }
    ctx_move(c, CTX_OFFLOADED, CTX_ANSWERED); /* hands it back */
    resume_conn(c->req.conn);
}

/* ---- the reactor (reactor.c) ----------------------------------------------
 *
 * A page whose runs wait on the database and are short between waits
 * (placement.c) runs as a coroutine on its worker's reactor: while one
 * run waits for PostgreSQL, the others go on, on one thread. Each stretch
 * between two waits goes on the guard's record (crash reports, the
 * --handler-timeout watchdog) and is timed: one that holds the reactor
 * too long sends the page back to the handler threads. A wait past
 * --handler-timeout (counted from the dispatch) gives up the query and the
 * request gets a 504.
 */

static struct ctx *ctx_of_rjob(struct hp_reactor_job *job)
{
    return (struct ctx *)((char *)job - offsetof(struct ctx, rjob));
}

/* Why v's requests must have a thread to themselves: its thread-local
 * variables, or what it imports that keeps per-thread state (pthread
 * keys, FRESH12-2) or blocks the thread on a lock (FRESH13-1: loader.c);
 * NULL: nothing. */
static const char *thread_state_of(const hp_version *v)
{
    if (v->has_tls)
        return "has thread-local variables (per-thread state)";
    return v->thread_state[0] ? v->thread_state : NULL;
}

/*
 * The module of a request's chain that has thread-local variables or
 * imports a function keeping per-thread state (thread_state_of), or
 * NULL. docs/hooks.md promises that the hooks and the handler of one
 * request run on one thread, one after the other, so a _Thread_local can
 * carry a value from prepare to release; on the reactor the requests
 * waiting on the database share its thread, and such a variable would
 * not belong to one request (a fresh-user test: 19 of 20 concurrent
 * requests saw another's value, FRESH11-4). So such a chain never runs
 * there.
 */
static const hp_version *tls_module(const struct hp_pinset *ps)
{
    if (thread_state_of(ps->page))
        return ps->page;
    for (size_t i = 0; i < ps->napps; i++)
        if (thread_state_of(ps->apps[i]))
            return ps->apps[i];
    return NULL;
}

/* Whether a request that waited may teach its page the way to the
 * reactor; logs once per version why not when a module keeps
 * thread-local variables. */
static bool coro_candidate(const struct hp_pinset *ps)
{
    if (!S.cfg->coroutines || atomic_load(&ps->page->coro_never) ||
        !hp_reactor_running())
        return false;
    const hp_version *t = tls_module(ps);
    if (!t)
        return true;
    /* The page's own variables keep this version off for good; an
     * application module's, only while that module's version is in the
     * chain (a new one without them lets the page learn again,
     * FRESH12-1). Said once per page version. */
    if (t == ps->page)
        atomic_store(&ps->page->coro_never, true);
    if (!atomic_exchange(&ps->page->coro_tls_said, true))
        hp_log_info("%s: %s %s, which the requests sharing the reactor's "
                    "thread cannot have to themselves: its requests stay on "
                    "the handler threads",
                    ps->page->path, t == ps->page ? "it" : t->path,
                    thread_state_of(t));
    return false;
}

/* A request the stalled reactor had not started: to the handler threads
 * (hp_reactor_reclaim). Its page is pinned, its connection suspended. */
static void reclaimed(struct hp_reactor_job *job)
{
    struct ctx *c = ctx_of_rjob(job);
    atomic_fetch_add(&S.offloaded, 1);
    hp_pool_submit(&c->job, c->req.target.path);
}

static void stretch_begin(struct ctx *c)
{
    hp_req *req = &c->req;
    hp_coro *co = hp_coro_current();
    if (co) {
        uintptr_t lo;
        size_t size, guard;
        hp_coro_stack(co, &lo, &size, &guard);
        /* the size people set (the mapping rounds it up to pages) */
        H.run_stack(lo, S.cfg->thread_stack ? S.cfg->thread_stack : size,
                    guard);
    }
    hp_run_probe_start(&c->seg, false);
    c->seg_token =
        H.run_begin(req->target.path, req->target.handler, req->pins.page,
                    H.run_begin == no_run_begin ? -1 : conn_fd(req->conn));
    tl_running = req;
}

static void stretch_end(struct ctx *c)
{
    tl_running = NULL;
    if (!H.run_end(c->seg_token))
        c->seg_timed_out = true;
    H.run_stack(0, 0, 0);
    /* Only a stretch over HP_SLOW_NS moves the page (hp_place_learn_coro):
     * shorter ones need no reading of the wait for a CPU. */
    struct hp_run m = hp_run_probe_stop_over(&c->seg, 0, HP_SLOW_NS);
    if (m.own_ns > c->seg_max_ns)
        c->seg_max_ns = m.own_ns;
}

static void on_reactor_suspend(struct hp_reactor_job *job)
{
    stretch_end(ctx_of_rjob(job));
}

static void on_reactor_resume(struct hp_reactor_job *job)
{
    struct ctx *c = ctx_of_rjob(job);
    /* Answered 503 while the reactor was held (stall_answer): whatever the
     * page goes on to do, nothing of it is committed (publish.c rolls a
     * forced status back) and its response is dropped (run_pinned). */
    if (atomic_load_explicit(&job->abandoned, memory_order_acquire))
        c->req.forced_status = 503;
    stretch_begin(c);
}

/* On the reactor, on the request's coroutine: as run_offloaded, with the
 * page pinned already and no streaming (hp_flush buffers, as inline). */
static void run_coroutine(struct hp_reactor_job *job)
{
    struct ctx *c = ctx_of_rjob(job);
    c->coro = true;
    c->req.stream_begin = NULL;
    if (run_pinned(c, HP_ACQ_OK) != MHD_YES && !c->resp)
        send_error(c, 500, NULL);
}

/* On the reactor, the coroutine gone: hand the request back. */
static void coroutine_done(struct hp_reactor_job *job)
{
    struct ctx *c = ctx_of_rjob(job);
    ctx_move(c, CTX_OFFLOADED, CTX_ANSWERED);
    resume_conn(c->req.conn);
}

static const struct hp_reactor_ops reactor_ops = {
    .run = run_coroutine,
    .suspend = on_reactor_suspend,
    .resume = on_reactor_resume,
    .done = coroutine_done,
};

/*
 * A run that holds the reactor (spins, or blocks without waiting through
 * hp_wait_fd) holds every request suspended there in a wait: their
 * coroutines cannot move to another thread (the page's code and ours may
 * keep addresses of this thread's thread-local variables, errno's
 * included), so they cannot be finished elsewhere. Once the reactor has
 * been held a second (what hp_reactor_running and hp_reactor_reclaim go
 * by), each is answered 503 with Retry-After here, on the thread that
 * found the stall, and given up (hp_reactor_abandon): when the reactor
 * resumes it, its waits fail as past --handler-timeout (the database
 * connection is closed, 57014), its forced 503 rolls its transactions
 * back, and the response it makes goes to a socket already shut.
 *
 * Answered once: the request is suspended in a wait, so its own thread
 * cannot reach queue() before the reactor resumes it, which it cannot do
 * while hp_reactor_abandon holds the list of waiters; the socket is
 * claimed as the watchdog's 504 claims it (hp_server_claim: a dying
 * process's 503, hp_server_answer_unstarted, and this one never both go
 * out, and neither does the drain's after it). The run holding the
 * reactor is not given up: it runs, and the watchdog (with workers) or
 * the drain answers it.
 */
struct stall {
    char holder[PATH_MAX]; /* the page of the run that holds the reactor */
};

/* The page of a request, as people name it: below the document root. */
static const char *page_name(const char *path)
{
    size_t n = strlen(S.root);
    if (strncmp(path, S.root, n) == 0 && path[n] == '/')
        return path + n + 1;
    return path;
}

/* hp_reactor_abandon's fn: answer job's request 503 on its socket. */
static void stall_answer(struct hp_reactor_job *job,
                         const struct hp_reactor_job *holder, void *arg)
{
    struct stall *st = arg;
    struct ctx *c = ctx_of_rjob(job);
    const struct ctx *h =
        ctx_of_rjob((struct hp_reactor_job *)(uintptr_t)holder);
    if (!st->holder[0])
        snprintf(st->holder, sizeof st->holder, "%s", h->req.target.path);
    if (!hp_server_claim(c->fd))
        return; /* this process is dying and answered it already */
    if (!hp_server_plaintext()) {
        shutdown(c->fd, SHUT_RDWR); /* plaintext inside TLS: garbage */
        return;
    }
    /* Dev mode names the page (to this server's own hosts, as its other
     * details); production's body says the status only, like its other
     * error pages: the log names the page. */
    struct hp_buf body = {0}, msg = {0};
    hp_buf_puts(&body, "<!doctype html>\n<title>503 Service Unavailable"
                       "</title>\n<h1>503 Service Unavailable</h1>\n");
    if (S.dev && !c->req.foreign_host) {
        hp_buf_puts(&body, "<p>This request waited on the database on the "
                           "reactor, which a run of the page ");
        hp_buf_html(&body, page_name(st->holder));
        hp_buf_puts(&body, " has held for over a second without waiting; "
                           "it was given up. Try again.</p>\n");
    }
    hp_buf_printf(&msg,
                  "HTTP/1.1 503 Service Unavailable\r\n"
                  "Content-Type: text/html; charset=utf-8\r\n"
                  "Retry-After: 1\r\nContent-Length: %zu\r\n"
                  "Connection: close\r\nCache-Control: no-store\r\n\r\n",
                  body.len);
    hp_buf_append(&msg, body.p, body.len);
    if (msg.p) {
        /* Best effort: the socket is non-blocking, the answer small. */
        ssize_t r = send(c->fd, msg.p, msg.len, MSG_NOSIGNAL | MSG_DONTWAIT);
        (void)r;
    }
    shutdown(c->fd, SHUT_RDWR);
    hp_buf_free(&body);
    hp_buf_free(&msg);
}

/* The reactor held for over a second: the event loop it hosts turns on
 * the rescue thread, what it has not started goes to the handler threads,
 * what waits there is answered 503 (any thread; a no-op otherwise). */
static void reactor_stall(void)
{
    hp_reactor_rescue(); /* the event loop it hosts, if any */
    hp_reactor_reclaim(reclaimed);
    struct stall st = {.holder = ""};
    long n = hp_reactor_abandon(stall_answer, &st);
    if (n > 0)
        hp_log_error("%s: a run has held the reactor for over a second "
                     "without waiting: the %ld request%s waiting there %s "
                     "answered 503 (Retry-After: 1) and given up; %s waits "
                     "fail if it returns",
                     st.holder, n, n == 1 ? "" : "s", n == 1 ? "was" : "were",
                     n == 1 ? "its" : "their");
}

static void to_reactor(struct ctx *c)
{
    ctx_move(c, CTX_BODY, CTX_OFFLOADED);
    atomic_fetch_add(&S.coroutines, 1);
    MHD_suspend_connection(c->req.conn); /* before: as offload() */
    double t = S.cfg->handler_timeout;
    c->rjob.deadline_ns = t > 0 ? hp_now_ns() + (int64_t)(t * 1e9) : 0;
    c->rjob.bound_ns = t > 0 ? c->rjob.deadline_ns - hp_wait_margin_ns(t) : 0;
    hp_reactor_submit(&c->rjob);
}

/* On an event-loop thread: answer at once, or hand the page to a handler
 * thread (then c is the handler thread's until it moves it to ANSWERED;
 * *offloaded says which). */
static enum MHD_Result dispatch(struct ctx *c, bool *offloaded)
{
    hp_req *req = &c->req;

    atomic_fetch_add(&S.requests, 1);
    if (c->req.body_too_large)
        return send_error(c, 413, NULL);
    /* RFC 9110 §9.3.7: OPTIONS * asks about the server itself (framing.c
     * lets no other method through with this target): the methods pages
     * may answer; each page decides which it does. */
    if (strcmp(req->path, "*") == 0) {
        req->headers.n = 0;
        hp_req_add_header(req, "Allow", HP_ALLOW_METHODS);
        req->has_content_type = true; /* no content, no Content-Type */
        return send_buffer(c, 200);
    }
    enum MHD_Result done;
    if (strncmp(req->path, HOTPUB_PREFIX, strlen(HOTPUB_PREFIX)) == 0 &&
        hotpub_endpoint(c, &done))
        return done;
    hp_resolve(S.res, req->path, &req->target);
    if (req->target.kind == HP_T_STATIC)
        return send_static(c);
    if (req->target.kind == HP_T_DIRSLASH)
        return send_dir_slash(c);
    if (req->target.kind != HP_T_PAGE)
        return send_error(c, 404, NULL);

    /* Pin without waiting: a compile or a pending batch goes to a handler
     * thread. */
    enum hp_acquire r = pin_page(c, false);
    bool stopping = atomic_load(&S.stopping);
    if (r == HP_ACQ_WOULDBLOCK) {
        if (!stopping) {
            *offloaded = true;
            offload(c);
            return MHD_YES;
        }
        r = pin_page(c, true);
    }
    /* A page whose runs wait on the database, short between waits. */
    if (r == HP_ACQ_OK && atomic_load(&req->pins.page->run_coro) &&
        !(req->pins.err && S.dev) && !stopping) {
        if (hp_reactor_running() && !tls_module(&req->pins)) {
            *offloaded = true;
            to_reactor(c);
            return MHD_YES;
        }
        reactor_stall(); /* stalled: what it has not begun, what waits */
    }
    /* A promoted page that takes a database connection while the pool
     * has none free would wait for one on this event loop: offload it. */
    if (r == HP_ACQ_OK &&
        (!atomic_load(&req->pins.page->run_inline) ||
         (atomic_load(&req->pins.page->uses_db) && hp_db_server_busy())) &&
        !(req->pins.err && S.dev) && !stopping) {
        *offloaded = true;
        offload(c);
        return MHD_YES;
    }
    atomic_fetch_add(&S.inlined, 1);
    if (S.io_threads != 1)
        return run_pinned(c, r);
    /* The process's one event loop runs it: while it runs long, the
     * listener leaves new connections to other processes (loop_free). */
    atomic_store_explicit(&S.inline_since, hp_now_ns(), memory_order_relaxed);
    enum MHD_Result ran = run_pinned(c, r);
    atomic_store_explicit(&S.inline_since, 0, memory_order_relaxed);
    return ran;
}

/* ---- libmicrohttpd callbacks ------------------------------------------------
 */

static enum MHD_Result queue(struct ctx *c)
{
    if (!c->resp)
        return MHD_NO;
    ctx_move(c, ctx_state(c), CTX_QUEUED);
    unstarted_clear(c->fd);
    /* (A kept response gets the field too: from now on every response
     * closes, and none is taken from the thread's memo again.) */
    if (atomic_load_explicit(&draining, memory_order_relaxed))
        MHD_add_response_header(c->resp, MHD_HTTP_HEADER_CONNECTION, "close");
    /* A streamed response was measured before it began (stream_begin). */
    size_t head;
    if (!c->req.stream && (head = response_head(c->resp)) > c->head_room) {
        head_too_big_log(c, head);
        if (!c->resp_kept)
            MHD_destroy_response(c->resp);
        c->resp = NULL;
        c->resp_kept = false;
        send_error(c, 500, NULL);
        if (!c->resp)
            return MHD_NO;
        if (atomic_load_explicit(&draining, memory_order_relaxed))
            MHD_add_response_header(c->resp, MHD_HTTP_HEADER_CONNECTION,
                                    "close");
    }
    enum MHD_Result r =
        MHD_queue_response(c->req.conn, (unsigned)c->status, c->resp);
    if (!c->resp_kept)
        MHD_destroy_response(c->resp);
    c->resp = NULL;
    return r;
}

/*
 * An absolute-form target (RFC 9112 §3.2.2: `GET http://host/path
 * HTTP/1.1`, which a server must accept): the path is what is published,
 * and the authority stands for the Host field (hp_header). Returns the
 * path (an origin-form url as it is), or NULL for an invalid authority.
 */
static const char *absolute_form(hp_req *req, const char *url)
{
    const char *p = url;
    if (*p == '/') /* origin-form: nearly every request */
        return url;
    if (strncasecmp(p, "http://", 7) == 0)
        p += 7;
    else if (strncasecmp(p, "https://", 8) == 0)
        p += 8;
    else
        return url;
    const char *slash = strchr(p, '/');
    size_t n = slash ? (size_t)(slash - p) : strlen(p);
    if (!hp_host_valid(p, n)) /* RFC 9110 §4.2.1: an empty host is invalid */
        return NULL;
    char *host = hp_alloc(req, n + 1);
    if (host) {
        memcpy(host, p, n);
        host[n] = '\0';
        req->authority = host;
    }
    return slash ? slash : "/";
}

/*
 * The decoded path with its "." and ".." segments merged (RFC 3986 §5.2.4,
 * as nginx does before mapping it), once, for pages, static files and
 * hotpub's own endpoints alike: NULL (a 400) when it climbs above the
 * root. One scan for "/." leaves nearly every path as it is; the resolver
 * still refuses '.' segments itself (defence in depth).
 */
static const char *merge_dots(hp_req *req, const char *path)
{
    if (!path || !strstr(path, "/."))
        return path;
    size_t n = strlen(path);
    char *m = hp_alloc(req, n + 1);
    if (!m)
        return NULL;
    memcpy(m, path, n + 1);
    return hp_path_merge_dots(m) ? m : NULL;
}

/*
 * Each thread keeps the context of its last finished request for its next
 * one: a context is 6 KiB (hp_req's target path and arena), past malloc's
 * per-thread caches, and every keep-alive request would otherwise allocate
 * and free one. The thread's exit frees what it keeps.
 */
static __thread struct ctx *spare_ctx;
static pthread_key_t spare_key;
static pthread_once_t spare_once = PTHREAD_ONCE_INIT;

static void spare_free(void *c)
{
    free(c);
}

static void spare_key_make(void)
{
    if (pthread_key_create(&spare_key, spare_free) != 0)
        abort(); /* at start: only when the process is out of keys */
}

static struct ctx *ctx_new(void)
{
    struct ctx *c = spare_ctx;
    if (c) {
        spare_ctx = NULL;
        pthread_setspecific(spare_key, NULL);
        return c;
    }
    return hp_xmalloc(sizeof *c);
}

/* On an event-loop thread: keep c for this thread's next request. */
static void ctx_keep_or_free(struct ctx *c)
{
    if (spare_ctx || pthread_setspecific(spare_key, c) != 0) {
        free(c);
        return;
    }
    spare_ctx = c;
}

static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
    struct ctx *c = ctx_new();
    memset(c, 0, offsetof(struct ctx, uri_short));
    size_t n = uri ? strlen(uri) : 0;
    if (n < sizeof c->uri_short) {
        memcpy(c->uri_short, uri ? uri : "", n);
        c->uri_short[n] = '\0';
        c->uri = c->uri_short;
    } else {
        c->uri = hp_xstrdup(uri);
    }
    c->edge = hp_edge_of(conn);
    c->conn = conn;
    c->fd = conn_fd(conn);
    c->t0 = hp_now();
    atomic_fetch_add(&S.inflight, 1);
    return c;
}

/* First call: the head only, already checked by the request edge (edge.c):
 * framing, Host, the head's size. */
static enum MHD_Result first_call(struct ctx *c, struct MHD_Connection *conn,
                                  const char *url, const char *method,
                                  const char *version)
{
    hp_req_init(&c->req, conn, method, url, version);
    c->head_room = head_room(c);
    c->req.started = c->t0;
    c->req.path = merge_dots(&c->req, absolute_form(&c->req, url));
    c->req.secure = hp_tls_on(); /* sessions mark their cookie Secure */
    const char *q = strchr(c->uri, '?');
    c->req.query = q ? q + 1 : "";
    ctx_move(c, CTX_HEAD, CTX_BODY);
    const char *cl =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
    int status = !c->req.path                                     ? 400
                 : cl && strtoull(cl, NULL, 10) > S.cfg->max_body ? 413
                                                                  : 0;
    if (!status) {
        const char *ct =
            MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Type");
        if (hp_form_type(ct) == HP_FORM_MULTIPART) /* decoded as it comes */
            hp_upload_start(&c->req, ct, S.upload_dir, S.cfg->max_fields);
        return MHD_YES;
    }
    /* Answering now closes the connection unread; the edge may have
     * answered it already (a 408). */
    if (!hp_edge_answer_early(c->edge))
        return MHD_NO;
    c->req.body_too_large = status == 413;
    if (!c->req.path)
        c->req.path = "/"; /* for the log and what reads it later */
    send_error(c, status, NULL);
    ctx_move(c, CTX_BODY, CTX_ANSWERED);
    return queue(c);
}

/* A piece of the body: buffered up to --max-body, then dropped (413); a
 * multipart/form-data body is decoded as it comes (upload.c) instead. */
static enum MHD_Result take_body(struct ctx *c, const char *upload,
                                 size_t *upload_size)
{
    hp_req *req = &c->req;
    req->body_bytes += *upload_size;
    if (!req->body_too_large) {
        if (req->body_bytes > S.cfg->max_body) {
            req->body_too_large = true;
            hp_buf_free(&req->body);
            hp_upload_abort(req); /* its files go at once */
        } else if (req->upload) {
            hp_upload_feed(req, upload, *upload_size);
        } else if (hp_buf_append(&req->body, upload, *upload_size) < 0) {
            return MHD_NO;
        }
    }
    *upload_size = 0;
    return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn,
                                  const char *url, const char *method,
                                  const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls)
{
    struct ctx *c = *con_cls;
    bool offloaded = false;

    switch (ctx_state(c)) {
    case CTX_HEAD:
        return first_call(c, conn, url, method, version);
    case CTX_BODY:
        if (*upload_size)
            return take_body(c, upload, upload_size);
        unstarted_mark(c);
        c->head_room = head_room(c); /* with any trailer fields now */
        if (dispatch(c, &offloaded) != MHD_YES)
            return MHD_NO;
        if (offloaded)
            return MHD_YES; /* the handler thread owns it from here */
        ctx_move(c, CTX_BODY, CTX_ANSWERED);
        return queue(c);
    case CTX_OFFLOADED:
        /* libmicrohttpd may call again before the suspension takes hold:
         * while a handler thread owns the request, touch nothing of it. */
        return MHD_YES;
    case CTX_ANSWERED:
    case CTX_STREAMING:
        return queue(c);
    default: /* CTX_QUEUED */
        return MHD_YES;
    }
}

/* What the node's counters file a finished request under (metrics.c):
 * the page's module, never its request target. */
static const char *metrics_label(struct ctx *c)
{
    if (c->label)
        return c->label;
    if (ctx_state(c) == CTX_HEAD)
        return HP_MET_NONE;
    switch (c->req.target.kind) {
    case HP_T_PAGE:
        return c->req.target.path;
    case HP_T_STATIC:
        return HP_MET_STATIC;
    default:
        return c->status == 404 ? HP_MET_NOTFOUND : HP_MET_NONE;
    }
}

/* The request is over: log it, give back what it holds. keep: on an
 * event-loop thread, keep the memory for its next request. */
static void ctx_free(struct ctx *c, bool keep)
{
    if (c->resp && !c->resp_kept)
        MHD_destroy_response(c->resp);
    if (ctx_state(c) != CTX_HEAD && c->req.stream) {
        c->length = hp_stream_sent(c->req.stream);
        hp_stream_unref(c->req.stream);
    }
    if (!atomic_load(&c->logged)) {
        access_log(c);
        if (S.cfg->metrics)
            hp_metrics_request(metrics_label(c), c->status, hp_now() - c->t0);
    }
    if (ctx_state(c) != CTX_HEAD) {
        hp_req_release_resources(&c->req);
        hp_pinset_release(&c->req.pins);
        hp_req_cleanup(&c->req);
    }
    if (c->uri != c->uri_short)
        free(c->uri);
    if (keep)
        ctx_keep_or_free(c);
    else
        free(c);
    atomic_fetch_sub(&S.inflight, 1);
}

/* A streamed request's handler thread or connection lets go of it; the
 * last one frees it. */
static void ctx_release(struct ctx *c)
{
    if (atomic_fetch_sub(&c->owners, 1) == 1)
        ctx_free(c, false);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct ctx *c = *con_cls;
    if (!c)
        return;
    if (c->status == 0) {
        int edge = hp_edge_status(c->edge);
        c->status = edge                                            ? edge
                    : toe == MHD_REQUEST_TERMINATED_TIMEOUT_REACHED ? 408
                                                                    : 400;
    }
    hp_edge_request_done(c->edge);
    unstarted_clear(c->fd);
    *con_cls = NULL;
    if (ctx_state(c) != CTX_HEAD && c->req.stream) {
        hp_stream_gone(c->req.stream); /* a waiting hp_flush returns -1 */
        ctx_release(c);
        return;
    }
    ctx_free(c, true);
}

/*
 * libmicrohttpd's messages, each kind at most once a second: a client can
 * provoke some of them at will (a connection over the limit, a request cut
 * short), and a flood of them must not fill the disk or hide the rest.
 * The next line of a kind says how many were left out.
 */
static bool mhd_log_allowed(const char *fmt, unsigned long *skipped)
{
    static struct {
        const char *fmt;
        double last;
        unsigned long skipped;
    } kinds[32];
    static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    double now = hp_now();
    bool ok = true;
    pthread_mutex_lock(&mu);
    size_t i = 0;
    while (i < 32 && kinds[i].fmt && kinds[i].fmt != fmt)
        i++;
    if (i == 32) {
        i = 0; /* more kinds than slots: share the first */
    } else if (!kinds[i].fmt) {
        kinds[i].fmt = fmt;
        kinds[i].last = now - 2;
    }
    if (now - kinds[i].last < 1.0) {
        kinds[i].skipped++;
        ok = false;
    } else {
        kinds[i].last = now;
        *skipped = kinds[i].skipped;
        kinds[i].skipped = 0;
    }
    pthread_mutex_unlock(&mu);
    return ok;
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    unsigned long skipped = 0;
    if (!mhd_log_allowed(fmt, &skipped))
        return;
    struct hp_buf b = {0};
    hp_buf_vprintf(&b, fmt, ap);
    while (b.len && (b.p[b.len - 1] == '\n'))
        b.p[--b.len] = '\0';
    if (skipped)
        hp_log_error("http: %s (%lu more like it in the last second)",
                     b.p ? b.p : "", skipped);
    else
        hp_log_error("http: %s", b.p ? b.p : "");
    hp_buf_free(&b);
}

/* ---- start and stop -------------------------------------------------------
 */

static bool addr_is_loopback(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)ss)->sin_addr.s_addr) >>
                24) == 127;
    if (ss->ss_family == AF_INET6)
        return IN6_IS_ADDR_LOOPBACK(
            &((const struct sockaddr_in6 *)ss)->sin6_addr);
    return false;
}

/*
 * The document root as an absolute path whose parent is canonical and whose
 * last component is kept as given: when it is a symlink (releases/v2 behind
 * "current"), module paths stay the same across a deploy's swap and the
 * swap is seen as every module changing at once (docs/reload.md).
 */
char *hp_server_root_path(const char *docroot)
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
    pthread_once(&spare_once, spare_key_make);
    memset(&S, 0, sizeof S);
    S.cfg = cfg;
    S.started = hp_now();
    S.root = hp_server_root_path(cfg->docroot ? cfg->docroot : ".");
    if (!S.root) {
        hp_log_error("document root %s: %s", cfg->docroot, strerror(errno));
        return -1;
    }
    /* Before any module loads: an application's init may use it. */
    if (hp_db_server_open(cfg, S.root) < 0)
        return -1;
    hp_session_server_start(cfg);
    S.cc = hp_compiler_new(cfg, S.root);
    S.cache = hp_cache_new(cfg, S.cc);
    if (!S.cache)
        return -1;
    S.res = hp_resolver_new(S.root);
    S.upload_dir = hp_upload_dir(cfg);
    if (access(S.upload_dir, W_OK | X_OK) < 0) /* said once, not per upload */
        hp_log_error("upload directory %s: %s; file uploads will get 500",
                     S.upload_dir, strerror(errno));
    return 0;
}

static void teardown(void)
{
    hp_dashboard_stop();
    hp_watch_stop(S.watch);
    hp_tplcache_stop();
    H.teardown(); /* the host's pinned versions, before their cache goes */
    pthread_mutex_lock(&abandon_mu); /* the host's watchdog may be in it */
    hp_cache *cache = S.cache;
    S.cache = NULL;
    pthread_mutex_unlock(&abandon_mu);
    hp_cache_free(cache);
    /* After every module's fini, which may still use it. */
    hp_session_server_stop();
    hp_db_server_close();
    hp_resolver_free(S.res);
    hp_compiler_free(S.cc);
    hp_access_close();
    hp_tls_free();
    free(S.root);
}

/* Connections as the request edge and the listener count them. */
static void on_connection(void *cls, struct MHD_Connection *conn,
                          void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
    hp_edge_notify(cls, conn, socket_context, toe);
    hp_metrics_connection(toe == MHD_CONNECTION_NOTIFY_STARTED ? 1 : -1);
    if (toe == MHD_CONNECTION_NOTIFY_CLOSED)
        hp_listener_closed();
}

/*
 * libmicrohttpd without a listening socket: the listener (listener.c)
 * accepts and adds connections. The listener enforces --connection-limit
 * for the whole process; libmicrohttpd gets room in each of its
 * thread-pool daemons for all of them and a whole backlog taken at stop
 * (listener.c's BACKLOG_MAX), so that it never refuses (and closes) one
 * the listener admitted: it spreads added connections by descriptor
 * number and counts a daemon's share only once that daemon's thread has
 * taken them, so a burst can land on one daemon.
 */
static struct MHD_Daemon *daemon_start(struct hp_config *cfg)
{
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL |
                     MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG |
                     MHD_USE_NO_LISTEN_SOCKET | MHD_USE_ITC;
    /* Hosted by the reactor (below): external-poll mode, and no
     * inter-thread channel, since whoever resumes a connection from
     * another thread pokes the reactor instead (resume_conn). */
    if (S.hosted)
        flags &= ~(unsigned)(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC);
    /* HTTPS (tls.c): libmicrohttpd does the handshake on connections the
     * listener adds just as it reads plain ones. */
    struct MHD_OptionItem tls[4];
    size_t ntls = hp_tls_mhd_options(tls);
    tls[ntls] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
    if (ntls)
        flags |= MHD_USE_TLS;
    /* Its event-loop threads run inline pages: the handler threads' guard
     * (pool.h) for them too, set as the default since libmicrohttpd
     * gives them no attributes of its own. */
    /* One event-loop thread: no pool (libmicrohttpd warns about a pool of
     * one), its own internal thread. */
    struct MHD_OptionItem pool[2] = {
        {MHD_OPTION_THREAD_POOL_SIZE, S.io_threads, NULL},
        {MHD_OPTION_END, 0, NULL}};
    if (S.io_threads < 2 || S.hosted)
        pool[0] = pool[1];
    unsigned each = cfg->conn_limit > UINT_MAX / 2 - 1024
                        ? UINT_MAX / 2
                        : cfg->conn_limit + 1024;
    unsigned room = S.io_threads > 1 && each <= UINT_MAX / S.io_threads
                        ? each * S.io_threads
                        : each;
    return MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, NULL, MHD_OPTION_EXTERNAL_LOGGER,
        on_mhd_log, NULL, MHD_OPTION_URI_LOG_CALLBACK, on_uri, NULL,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, NULL,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)cfg->timeout,
        MHD_OPTION_CONNECTION_LIMIT, room, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        hp_edge_mhd_memory(cfg), MHD_OPTION_ARRAY, pool, MHD_OPTION_ARRAY, tls,
        MHD_OPTION_END);
}

/* ---- one event loop on the reactor's thread -------------------------------
 *
 * A worker with one event-loop thread (the default: one worker per CPU)
 * runs libmicrohttpd in external-poll mode on the reactor's thread
 * (hp_reactor_host): a request a coroutine answers is read, run and
 * written on one thread, with no wake-up of another thread between them
 * (design.md, "One thread per worker"). libmicrohttpd's daemon is then
 * not thread-safe: connections from the accept thread are queued here and
 * added on the reactor's thread, and a connection resumed on another
 * thread pokes the reactor, which turns the loop (there is no inter-thread
 * channel). While a run holds the reactor, the rescue thread turns it.
 */

static struct {
    pthread_mutex_t mu;
    struct handoff {
        int fd;
        socklen_t len;
        struct sockaddr_storage addr;
    } *q;
    size_t n, cap; /* under mu */
    atomic_bool any; /* n > 0: read without mu by the turn */
} HQ = {.mu = PTHREAD_MUTEX_INITIALIZER};

/* The listener's handoff (accept thread). */
static enum MHD_Result hosted_handoff(int c, const struct sockaddr *addr,
                                      socklen_t len)
{
    pthread_mutex_lock(&HQ.mu);
    if (HQ.n == HQ.cap) {
        size_t cap = HQ.cap ? HQ.cap * 2 : 64;
        struct handoff *q = realloc(HQ.q, cap * sizeof *q);
        if (!q) {
            pthread_mutex_unlock(&HQ.mu);
            close(c);
            return MHD_NO;
        }
        HQ.q = q;
        HQ.cap = cap;
    }
    struct handoff *h = &HQ.q[HQ.n++];
    atomic_store(&HQ.any, true);
    h->fd = c;
    h->len = len <= sizeof h->addr ? len : (socklen_t)sizeof h->addr;
    memcpy(&h->addr, addr, h->len);
    pthread_mutex_unlock(&HQ.mu);
    hp_reactor_poke();
    return MHD_YES;
}

/* The hosted loop's turn (the reactor's thread, or the rescue thread). */
static void hosted_turn(void)
{
    if (atomic_load(&HQ.any)) { /* a handoff after this pokes */
        pthread_mutex_lock(&HQ.mu);
        atomic_store(&HQ.any, false);
        size_t n = HQ.n;
        struct handoff *q = HQ.q;
        HQ.q = NULL;
        HQ.n = HQ.cap = 0;
        pthread_mutex_unlock(&HQ.mu);
        for (size_t i = 0; i < n; i++)
            if (MHD_add_connection(S.mhd, q[i].fd,
                                   (struct sockaddr *)&q[i].addr,
                                   q[i].len) != MHD_YES)
                hp_listener_closed(); /* it closed the socket */
        free(q);
    }
    MHD_run(S.mhd);
}

static int64_t hosted_next(void)
{
    MHD_UNSIGNED_LONG_LONG ms;
    if (MHD_get_timeout(S.mhd, &ms) != MHD_YES)
        return 0;
    return hp_now_ns() + (ms > 86400000 ? 86400000 : (int64_t)ms) * 1000000;
}

/* After daemon_start, before the listener hands anything over. */
static void hosted_start(void)
{
    const union MHD_DaemonInfo *di =
        MHD_get_daemon_info(S.mhd, MHD_DAEMON_INFO_EPOLL_FD);
    struct hp_reactor_loop loop = {.fd = di ? di->epoll_fd : -1,
                                   .turn = hosted_turn,
                                   .next_ns = hosted_next};
    hp_listener_set_handoff(hosted_handoff);
    hp_set_resumed_hook(hp_reactor_poke); /* dashboard, devloop, stream */
    hp_reactor_host(&loop);
}

/*
 * The listener's gate (hp_listener_set_gate), with one event loop: false
 * while an inline run has held it over LOOP_HELD_NS (a page that spins or
 * blocks; runs go inline only once they prove fast, under 2 ms), so that
 * new connections wait in the listen backlog for another worker, or for
 * this one's successor once the --handler-timeout watchdog has replaced
 * it, instead of being accepted by a process that cannot read them and
 * reset when it goes (FRESH18-1). A run held on the reactor is the
 * rescue thread's (hp_reactor_rescue).
 */
#define LOOP_HELD_NS 250000000LL

static bool loop_free(void)
{
    long long since =
        atomic_load_explicit(&S.inline_since, memory_order_relaxed);
    return !since || hp_now_ns() - since < LOOP_HELD_NS;
}

/* Before MHD_stop_daemon: no turn runs from here on; connections handed
 * over and never added are closed. */
static void hosted_stop(void)
{
    if (!S.hosted)
        return;
    hp_set_resumed_hook(NULL);
    hp_reactor_host(NULL);
    pthread_mutex_lock(&HQ.mu);
    for (size_t i = 0; i < HQ.n; i++) {
        close(HQ.q[i].fd);
        hp_listener_closed();
    }
    free(HQ.q);
    HQ.q = NULL;
    HQ.n = HQ.cap = 0;
    pthread_mutex_unlock(&HQ.mu);
}

/* Resume a suspended connection from any thread: its event loop sends
 * what is queued. */
static void resume_conn(struct MHD_Connection *conn)
{
    MHD_resume_connection(conn);
    hp_reactor_poke(); /* the hosted loop has no inter-thread channel */
}

/*
 * On the accept thread, about once a second: are the descriptors serving
 * depends on still ours (liveness.c)? A page that closed them leaves a
 * process that can neither accept nor serve, though it looks ready: it
 * says why and ends with status 70 (EX_SOFTWARE), so that the supervisor
 * (or systemd, with --workers 0) starts a working one. Otherwise the host
 * gets its heartbeat.
 */
static _Noreturn void lost_descriptors(const char *why)
{
    hp_liveness_restore_stderr();
    hp_log_error("%s (by a page?): this process can no longer serve; "
                 "exiting with status 70 so that it is replaced",
                 why);
    H.lost(why);
    _exit(70);
}

static void reactor_stall(void);

/* The single process ran out of descriptors (fd_check): the main thread
 * stops it (wait_for_stop), to exit 70. */
static atomic_bool fds_out;

/*
 * On the accept thread, about once a second: has this process nearly run
 * out of descriptors? A page that opens files or sockets and never closes
 * them leaves a process that answers 500 ("Too many open files") to every
 * page that opens one, and cannot accept connections, for good. At 90% of
 * RLIMIT_NOFILE's soft limit (read each time: a page may change it), most
 * of them not client connections (those --connection-limit bounds, and a
 * new process would take the same load), the process is replaced the way
 * --worker-memory-limit replaces one: it stops accepting, the supervisor
 * starts its successor, then drains it. Alone, it stops and exits 70.
 * The count is one stat() on Linux 6.2 and later; before, reading
 * /proc/self/fd, stopped at the mark. Once per process.
 */
static void fd_check(void)
{
    static bool done;
    static double warned;
    static long prev = -1, rose;
    static char rose_pages[400];
    struct rlimit rl;
    if (done || getrlimit(RLIMIT_NOFILE, &rl) != 0 ||
        rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur < 20)
        return;
    long limit = rl.rlim_cur > (1L << 30) ? 1L << 30 : (long)rl.rlim_cur;
    long high = limit - limit / 10;
    long n = hp_liveness_fd_count(high);
    /* A sharp rise (1% of the limit in a second): which pages ran then,
     * for the line below (the pages running at the mark may be others). */
    if (prev >= 0 && n - prev >= (limit / 100 > 16 ? limit / 100 : 16) &&
        H.recent_pages) {
        rose = n - prev;
        H.recent_pages(rose_pages, sizeof rose_pages);
    }
    prev = n;
    if (n < high)
        return;
    long conns = (long)hp_listener_open();
    if (conns * 2 >= n) {
        /* Connections: a new process would not do better. Raise the
         * limit or lower --connection-limit. */
        if (hp_now() - warned >= 60) {
            warned = hp_now();
            hp_log_error("%ld descriptors open, %ld of them client "
                         "connections, of RLIMIT_NOFILE's %ld: raise the "
                         "open-file limit (LimitNOFILE=, ulimit -n) or lower "
                         "--connection-limit",
                         n, conns, limit);
        }
        return;
    }
    done = true;
    char pages[400] = "", sample[200];
    if (H.recent_pages)
        H.recent_pages(pages, sizeof pages);
    hp_liveness_fd_sample(sample, sizeof sample);
    char rise[480] = "";
    if (rose && rose_pages[0])
        snprintf(rise, sizeof rise,
                 "; the last sharp rise (%ld in a second) came while these "
                 "ran: %s",
                 rose, rose_pages);
    hp_log_error("%ld%s descriptors open, %ld of them client connections, of "
                 "RLIMIT_NOFILE's %ld (90%% or more): a page leaks "
                 "descriptors (opens files or sockets and never closes "
                 "them)?%s%s%s%s%s; %s",
                 n, n == high ? " or more" : "", conns, limit,
                 pages[0] ? " Pages running or run last: " : "", pages, rise,
                 sample[0] ? "; " : "", sample,
                 H.retire ? "this worker stops accepting and will be "
                            "replaced gracefully"
                 : S.dev  ? "pages that open one fail until the server is "
                            "restarted (dev mode serves on)"
                          : "stopping: running requests finish (within "
                            "--shutdown-timeout), then the server exits "
                            "with status 70 for the supervisor to restart "
                            "it");
    if (!H.retire && S.dev)
        return;
    hp_listener_hold(); /* the siblings, or the successor, take them */
    if (H.retire)
        H.retire("its descriptors ran out (a page leaks them?)");
    else
        atomic_store(&fds_out, true);
}

static void each_second(void)
{
    char why[160];
    reactor_stall();
    fd_check();
    if (hp_liveness_check(why, sizeof why) == 0) {
        hp_metrics_tick();
        hp_metrics_modules(S.cache);
        H.heartbeat();
        return;
    }
    lost_descriptors(why);
}

/*
 * libmicrohttpd's panic (its own: a message on standard error, then
 * abort()). It panics when a descriptor it owns turns out to be closed:
 * close() of a connection's socket failing with EBADF ("Close socket
 * failed"), epoll_ctl() on a closed epoll descriptor ("Failed to remove FD
 * from epoll set"). A page that closes every descriptor does just that to
 * an event-loop thread busy with another connection at that moment, before
 * the accept thread's next check (up to a second later): the worker died
 * of SIGABRT, logged and counted as a crash, instead of exiting 70 (seen
 * with lifecycle.py's closer page under load). The liveness check tells
 * the two apart: descriptors closed under us get that verdict; anything
 * else stays libmicrohttpd's fatal error, logged, then abort() as before.
 */
static void on_mhd_panic(void *cls, const char *file, unsigned int line,
                         const char *reason)
{
    (void)cls;
    char why[160];
    bool closed = hp_liveness_check(why, sizeof why) != 0;
    if (closed)
        hp_liveness_restore_stderr(); /* for the line below */
    int n = reason ? (int)strcspn(reason, "\n") : 0;
    hp_log_error("libmicrohttpd: fatal error at %s:%u: %.*s",
                 file ? file : "?", line, n, reason ? reason : "");
    if (closed)
        lost_descriptors(why);
    abort();
}

/* The descriptors the liveness check watches, once serving starts. */
static void record_descriptors(void)
{
    int extra[] = {hp_listener_fd(), hp_access_fd()};
    hp_liveness_record(extra, 2);
}

/* --tls-redirect: the host's socket or our own. 0, or -1 after logging
 * why. */
static int redirect_start(struct hp_config *cfg)
{
    if (!cfg->tls_redirect)
        return 0;
    if (!hp_tls_on()) {
        hp_log_error("tls-redirect needs tls-cert and tls-key");
        return -1;
    }
    int fd =
        H.redirect_fd > 0 ? H.redirect_fd : hp_listen_bind(cfg->tls_redirect);
    return fd < 0 ? -1 : hp_redirect_start(fd, cfg);
}

/* Everything up to accepting connections: 0, or 1 with nothing left
 * running. */
static int serve_start(struct hp_config *cfg, struct sockaddr_storage *ss)
{
    if (setup(cfg) < 0 || hp_access_open(cfg->access_log) < 0) {
        teardown();
        return 1;
    }
    if (hp_tls_load(cfg) < 0) {
        teardown();
        return 1;
    }
    hp_edge_set_tls(hp_tls_on());
    U.tls = hp_tls_on();
    hp_metrics_set_root(S.root);
    if (hp_dashboard_start() < 0) {
        teardown();
        return 1;
    }
    S.dev = cfg->dev < 0 ? addr_is_loopback(ss) : cfg->dev;
    hp_db_server_set_dev(S.dev); /* the 503's details */
    S.listen_ss = *ss;
    /* auto: dev mode with the default compiler; one of the user's own
     * (--cc) builds everything unless --fast-tier says otherwise. */
    bool tiered = cfg->fast_tier >= 0 ? cfg->fast_tier
                                      : S.dev && strcmp(cfg->cc, "cc") == 0;
    if (cfg->settle_ms < 0) /* auto: docs/design.md, "The settle window" */
        cfg->settle_ms = tiered ? HP_SETTLE_FAST_MS : HP_SETTLE_MS;
    if (S.dev)
        hp_devloop_start(S.root);
    S.watch = hp_watch_start(cfg, S.root, S.cache, S.res);
    hp_cache_set_batched(S.cache, S.watch != NULL);
    hp_cache_set_tiered(S.cache, tiered);
    hp_tplcache_start(S.root, S.dev, S.watch != NULL);

    S.io_threads = H.io_threads         ? H.io_threads
                   : cfg->io_threads > 0 ? (unsigned)cfg->io_threads
                                         : (unsigned)hp_cpus();
    unstarted_init();
    struct hp_pool_opts po = {
        .min_threads = cfg->threads,
        .max_threads = cfg->max_threads,
        .stack_size = cfg->thread_stack,
        .idle_s = cfg->thread_idle,
        .share_pct = cfg->module_share,
        .grow_delay_s = HP_GROW_DELAY_S,
        .publish = H.thread_counts,
    };
    if (cfg->max_threads < cfg->threads)
        hp_log_info("max-threads %d is below threads %d: %d threads, fixed",
                    cfg->max_threads, cfg->threads, cfg->threads);
    if (hp_pool_start(&po, run_offloaded) < 0) {
        teardown();
        return 1;
    }
    /* Coroutine stacks are handler stacks: --thread-stack-size. Without a
     * reactor every page still runs, on the handler threads. */
    /* The event loops run inline pages, on the reactor's thread too when
     * it hosts the loop: the handler threads' stack guard (pool.h), set
     * as the default since libmicrohttpd gives its threads no attributes
     * of their own. */
    int gerr = hp_pool_default_guard();
    if (gerr)
        hp_log_error("event-loop threads keep a one-page stack guard: %s",
                     strerror(gerr));
    if (cfg->coroutines && hp_reactor_start(cfg->thread_stack, &reactor_ops))
        hp_log_error("cannot start the reactor (%s): pages that wait on the "
                    "database run on the handler threads",
                    strerror(errno));
    /* One event loop: the reactor's thread runs it (hosted_start). */
    S.hosted = S.io_threads == 1 && hp_reactor_running();
    if (hp_edge_start(cfg, access_log_refused) < 0) {
        hp_reactor_stop();
        hp_pool_stop();
        teardown();
        return 1;
    }
    /* The host's socket (a worker's, from its parent), or our own. */
    int fd = H.listen_fd >= 0 ? H.listen_fd : hp_listen_bind(cfg->listen);
    errno = 0; /* libmicrohttpd sets it only for some failures */
    MHD_set_panic_func(on_mhd_panic, NULL); /* process-wide */
    S.mhd = fd >= 0 ? daemon_start(cfg) : NULL;
    if (!S.mhd) {
        if (fd >= 0)
            hp_log_error("cannot start libmicrohttpd%s%s", errno ? ": " : "",
                         errno ? strerror(errno) : " (see above)");
        if (fd >= 0 && fd != H.listen_fd)
            close(fd);
        hp_edge_stop();
        hp_reactor_stop();
        hp_pool_stop();
        teardown();
        return 1;
    }
    if (redirect_start(cfg) < 0) {
        MHD_stop_daemon(S.mhd); /* before hosted_start */
        hp_edge_stop();
        hp_reactor_stop();
        hp_pool_stop();
        teardown();
        return 1;
    }
    if (S.hosted)
        hosted_start();
    if (S.io_threads == 1)
        hp_listener_set_gate(loop_free);
    if (hp_listener_start(fd, S.mhd, cfg->conn_limit, each_second) < 0) {
        hp_redirect_stop();
        hosted_stop();
        MHD_stop_daemon(S.mhd);
        hp_edge_stop();
        hp_reactor_stop();
        hp_pool_stop();
        teardown();
        return 1;
    }
    return 0;
}

/*
 * The node is stopping (this process alone, or the supervisor said so
 * before its SIGTERM; a worker replaced on SIGHUP is no node stopping):
 * /_hotpub/health answers 503 while everything else is still served, for
 * --drain-delay seconds, so that load balancers stop sending before the
 * listener closes.
 */
static bool alone; /* no supervisor: this process is the node */

/* "worker 4114 (generation 2): " before the lines each worker logs, which
 * a SIGHUP's generation repeats (hp_log_who); "" for the single process. */
static const char *who(void)
{
    return hp_log_who();
}

static void drain_delay(int sig)
{
    if (alone)
        hp_metrics_set_node_draining();
    if (!hp_metrics_node_draining() || S.cfg->drain_delay <= 0)
        return;
    hp_log_info("signal %d: health checks answer 503; still serving for "
                "%g s (drain-delay)",
                sig, S.cfg->drain_delay);
    double end = hp_now() + S.cfg->drain_delay;
    while (hp_now() < end) {
        double left = end - hp_now();
        usleep(left > 0.2 ? 200000 : (useconds_t)(left * 1e6) + 1);
        hp_access_flush();
    }
}

/* A stop signal sent by this process itself (a page's kill(getpid(), ...))
 * or, in a worker, by another process than the supervisor: say so, since
 * the worker's supervisor only sees it exit 0 without having asked. */
static bool stopped_unasked; /* stop_sender named another sender */

static void stop_sender(int sig, const siginfo_t *si)
{
    pid_t from = si->si_pid;
    if (si->si_code == SI_QUEUE && from == getpid()) /* forward_signal's */
        from = (pid_t)si->si_value.sival_int;
    else if (si->si_code != SI_USER && si->si_code != SI_TKILL)
        return;
    char why[640];
    if (atomic_load(&raiser_noted)) {
        stopped_unasked = true;
        hp_log_error("signal %d was raised by the page %s on its own "
                     "thread: %s",
                     sig, raiser,
                     alone ? "the server stops, with status 70 so that a "
                             "supervisor restarts it"
                           : "this worker stops (it drains and is replaced)");
        snprintf(why, sizeof why, "the page %s raised signal %d", raiser,
                 sig);
        if (H.stop_noted)
            H.stop_noted(why);
        return;
    }
    stopped_unasked = from == getpid() || (!alone && from != getppid());
    if (from == getpid())
        hp_log_error("signal %d was sent by process %d to itself (a page "
                     "calling kill() on its own process?): stopping%s",
                     sig, (int)from,
                     alone ? ", with status 70 so that a supervisor "
                             "restarts the server"
                           : "");
    else if (!alone && from != getppid())
        hp_log_error("signal %d was sent by process %d, not by the "
                     "supervisor: stopping",
                     sig, (int)from);
    if (!stopped_unasked || !H.stop_noted)
        return;
    if (from == getpid())
        snprintf(why, sizeof why,
                 "signal %d was sent by the worker to itself (a page "
                 "calling kill() on its own process)",
                 sig);
    else
        snprintf(why, sizeof why, "signal %d was sent by process %d", sig,
                 (int)from);
    H.stop_noted(why);
}

/*
 * SIGHUP reaches a process that serves (a page's raise(SIGHUP), kill -HUP
 * of the single process, systemctl reload): the single process cannot
 * reload its settings (master.c's reload starts a new generation of
 * workers), and a worker's reload is its supervisor's. Ignored and said,
 * rather than the default action, which ended the process at once with
 * its in-flight requests unanswered.
 */
static void hup_ignored(const siginfo_t *si)
{
    pid_t from = si->si_pid;
    if (si->si_code == SI_QUEUE && from == getpid()) /* forward_signal's */
        from = (pid_t)si->si_value.sival_int;
    if (atomic_exchange(&hup_noted, false)) {
        hp_log_error("SIGHUP raised by the page %s: ignored (%s)", hup_raiser,
                     alone ? "reload needs --workers 1 or more"
                           : "a reload is the supervisor's");
        atomic_store(&hup_claimed, false); /* the next one is noted anew */
    } else if (alone)
        hp_log_error("SIGHUP: reload needs --workers 1 or more; ignored");
    else if (si->si_code == SI_USER || si->si_code == SI_QUEUE)
        hp_log_error("SIGHUP sent to worker %d by process %d: ignored (to "
                     "reload, send it to the supervisor, pid %d)",
                     (int)getpid(), (int)from, (int)getppid());
}

/* The last line of a drained process: what stopped it, since a bare
 * "stopped" from each worker a SIGHUP retires reads like the server
 * stopping (the supervisor's own line ends the node: "master N stopped"). */
static void log_stopped(void)
{
    char cause[160];
    if (alone)
        hp_log_info("server stopped: drained");
    else if (hp_metrics_node_draining())
        hp_log_info("worker %d stopped with the server: drained",
                    (int)getpid());
    else if (stopped_unasked)
        hp_log_info("worker %d stopped unasked (see above): drained; its "
                    "supervisor replaces it",
                    (int)getpid());
    else if (H.stop_cause(cause, sizeof cause))
        hp_log_info("worker %d %s: drained", (int)getpid(), cause);
    else
        hp_log_info("worker %d stopped by its supervisor: drained",
                    (int)getpid());
}

/* The single process's dlopen_hung_check stopped it: the request whose
 * constructor hangs never finishes, and drain does not wait for it. */
static bool dlopen_hung;

/*
 * The single process, once a second: a constructor that has run inside
 * dlopen past --handler-timeout holds the dynamic loader's lock until it
 * returns (nothing can stop it in this process), so no other page can be
 * loaded meanwhile. Said once, naming the page. In production the process
 * stops as for a page's raise(SIGTERM): it stops accepting, lets the
 * running handlers finish (within --shutdown-timeout), then exits with
 * status 70 so that its supervisor restarts it; true then. In dev mode the
 * loaded pages go on serving and loads answer 503 until it returns.
 */
static bool dlopen_hung_check(void)
{
    static bool said;
    char page[512];
    double limit = S.cfg->handler_timeout > 0 ? S.cfg->handler_timeout : 30;
    double s = hp_loader_dlopen_running(page, sizeof page);
    if (said || s <= limit)
        return false;
    said = true;
    hp_loader_dlopen_hopeless();
    if (S.dev) {
        /* Not an error yet: a slow constructor may still return. */
        hp_log_info("a constructor of the page %s has run for %.0f s, past "
                    "--handler-timeout, inside dlopen, which holds the "
                    "dynamic loader's lock: no other page can be loaded in "
                    "this process until it returns (restart hotpub if it "
                    "never does); the loaded pages go on serving",
                    page, s);
        return false;
    }
    hp_log_error("a constructor of the page %s has run for %.0f s, past "
                 "--handler-timeout, inside dlopen, which holds the dynamic "
                 "loader's lock: no other page can be loaded in this process; "
                 "stopping: running requests finish (within "
                 "--shutdown-timeout), then the server exits with status 70 "
                 "for the supervisor to restart it",
                 page, s);
    stopped_unasked = dlopen_hung = true;
    return true;
}

/*
 * Alone (no worker processes, so no watchdog): a run that has held the
 * reactor past --handler-timeout without waiting holds every request
 * there for as long (those suspended in a wait were answered 503 after a
 * second, reactor_stall). In production the process stops as for a
 * SIGTERM and exits 70, for its supervisor to restart it (the requests
 * not answered yet get 503 at the drain's end); in dev mode it says so
 * once and serves on (new requests run on the handler threads).
 */
static bool reactor_hung;
static bool reactor_hung_check(void)
{
    static bool said;
    double limit = S.cfg->handler_timeout > 0 ? S.cfg->handler_timeout : 30;
    double s = hp_reactor_stalled();
    if (said || s <= limit)
        return false;
    said = true;
    if (S.dev) {
        hp_log_info("a request has held the reactor for %.0f s without "
                    "waiting, past --handler-timeout: the %ld requests "
                    "there cannot go on until it returns (those that waited "
                    "are answered 503 after a second; restart hotpub if it "
                    "never returns); new requests run on the handler threads",
                    s, hp_reactor_held() - 1);
        return false;
    }
    hp_log_error("a request has held the reactor for %.0f s without waiting, "
                 "past --handler-timeout, and with it %ld other requests; "
                 "stopping: running requests finish (within "
                 "--shutdown-timeout), then the server exits with status 70 "
                 "for the supervisor to restart it",
                 s, hp_reactor_held() - 1);
    stopped_unasked = reactor_hung = true;
    return true;
}

/* The main thread until SIGTERM/SIGINT: flush the access log once a
 * second, reopen the logs on SIGUSR1. */
static void wait_for_stop(const sigset_t *sigs)
{
    for (;;) {
        struct timespec one = {1, 0};
        siginfo_t si;
        int sig = sigtimedwait(sigs, &si, &one);
        hp_access_flush();
        hp_stray_signals_report();
        if (alone && (dlopen_hung_check() || reactor_hung_check()))
            break;
        if (alone && atomic_load(&fds_out)) {
            stopped_unasked = true;
            break;
        }
        if (sig == SIGTERM || sig == SIGINT) {
            stop_sender(sig, &si);
            drain_delay(sig);
            hp_log_info("%ssignal %d: finishing in-flight requests", who(),
                        sig);
            break;
        }
        if (sig == SIGHUP)
            hup_ignored(&si);
        if (sig == SIGUSR1) {
            hp_liveness_begin_change();
            int before = hp_access_fd();
            hp_access_reopen();
            H.reopen_logs();
            hp_liveness_end_change(before, hp_access_fd());
        }
    }
}

/* Stop accepting at once, give running requests a bounded time; leave the
 * process (_exit) if some never finish. */
/* The handlers drain does not wait for: those the --handler-timeout
 * watchdog gave up on, and the one hung inside dlopen (dlopen_hung). */
static long drain_stuck(void)
{
    long n = H.stuck() + (dlopen_hung ? 1 : 0);
    /* A run holding the reactor past --handler-timeout holds every
     * request there: none of them can finish (the watchdog counts the run
     * itself among the stuck with workers; alone, nothing does). */
    double limit = S.cfg->handler_timeout > 0 ? S.cfg->handler_timeout : 30;
    if (hp_reactor_stalled() > limit)
        n += hp_reactor_held() - (alone ? 0 : 1);
    return n;
}

/* Alone, a stop a page sent is no clean stop (docs/operations.md). */
static int stop_status(void)
{
    return alone && stopped_unasked ? 70 : 0;
}

static void drain(struct hp_config *cfg)
{
    /* From here no request is offloaded: libmicrohttpd cannot stop with a
     * connection suspended, and a keep-alive connection may still bring a
     * request after the last one we waited for. */
    atomic_store(&S.stopping, true);
    hp_devloop_stop();    /* live-reload streams end; the browsers retry */
    hp_stream_shutdown(); /* long streams end now (hp_flush says -1) */
    atomic_store(&draining, true);
    hp_dashboard_stop(); /* the live feeds end: none stays suspended */
    /* Close our copy of the listening socket (after taking what waits in
     * its backlog, to be answered rather than reset): with worker
     * processes the others, or a new generation, go on accepting; alone,
     * or when every process stops, new connections are refused at once
     * and clients and load balancers try elsewhere. */
    hp_redirect_stop();
    unsigned taken = hp_listener_stop(true);
    if (taken)
        hp_log_info("took %u connections from the listen backlog; no longer "
                    "accepting",
                    taken);
    double deadline = hp_now() + cfg->shutdown_timeout;
    /* (Handlers the --handler-timeout watchdog gave up on never finish:
     * drain_stuck() counts them, with the one hung in dlopen.) */
    while (atomic_load(&S.inflight) > drain_stuck() && hp_now() < deadline)
        usleep(10000);
    /* A connection accepted just before the socket closed must still be
     * answered: wait up to a second for requests on connections with none
     * yet, libmicrohttpd may not even have started on them (idle
     * keep-alive connections are closed when libmicrohttpd stops; RFC 9112
     * §9.3.1 lets their clients retry). */
    double grace = hp_now() + 1.0;
    while (hp_now() < deadline && hp_now() < grace &&
           (atomic_load(&S.inflight) > drain_stuck() ||
            (long)hp_listener_open() > hp_edge_used_connections()))
        usleep(10000);
    while (atomic_load(&S.inflight) > drain_stuck() && hp_now() < deadline)
        usleep(10000);
    if (atomic_load(&S.inflight) > 0 && drain_stuck() > 0) {
        hp_log_error("%ld handlers stuck past --handler-timeout; exiting",
                     drain_stuck());
        hp_access_flush();
        /* The requests that waited on them (for a module whose init never
         * returned, say): a 503 they may retry, not a closed connection. */
        hp_server_answer_unstarted(-1);
        hp_compile_kill_running();
        _exit(stop_status());
    }
    if (atomic_load(&S.inflight) > 0) {
        /* A handler stuck for good: libmicrohttpd cannot stop with a
         * connection suspended, so leave without unwinding. */
        hp_log_error("%ld requests still running after %d s; exiting anyway",
                     atomic_load(&S.inflight), cfg->shutdown_timeout);
        hp_access_flush();
        hp_compile_kill_running(); /* a compile it waits on, say */
        _exit(stop_status());
    }
}

int hp_serve_preflight(const struct hp_config *cfg)
{
    const char *root = cfg->docroot ? cfg->docroot : ".";
    struct stat st;
    int rc = 0;
    if (stat(root, &st) < 0) {
        hp_log_error("document root %s: %s", root, strerror(errno));
        rc = -1;
    } else if (!S_ISDIR(st.st_mode)) {
        hp_log_error("document root %s: not a directory", root);
        rc = -1;
    }
    if (hp_tls_check(cfg) < 0)
        rc = -1;
    /* A compiler named on purpose must be there; the default cc may be
     * missing on a machine that serves only static files and prebuilt
     * .so pages: then it is said, and C pages answer with the reason. */
    bool named = cfg->cc && strcmp(cfg->cc, "cc") != 0;
    if (hp_compiler_check(cfg->cc) < 0) {
        if (named)
            rc = -1;
        else
            hp_log_info("without a compiler, pages written in C cannot be "
                        "built (install gcc, or name one with --cc); "
                        "static files and prebuilt .so pages are served");
    }
    return rc;
}

int hp_serve(struct hp_config *cfg, const struct hp_server_hooks *hooks)
{
    struct sockaddr_storage ss;
    socklen_t sslen;
    sigset_t sigs;

    if (hp_parse_listen(cfg->listen, &ss, &sslen) < 0) {
        hp_log_error("bad listen address %s", cfg->listen);
        return 2;
    }
    hooks_fill(hooks);
    if (H.generation) {
        char w[64];
        snprintf(w, sizeof w, "worker %d (generation %u): ", (int)getpid(),
                 H.generation);
        hp_log_set_who(w);
    }
    /* A worker's slot is in its supervisor's area; alone, the process maps
     * an area of one slot. */
    int mapped = hp_metrics_map(1);
    if (mapped < 0)
        return 1;
    alone = mapped == 0;
    hp_metrics_enter(0);
    signal(SIGPIPE, SIG_IGN);
    /* A stray signal a page raises or causes (alarm(), SIGUSR2, ...) is
     * ignored and said, not the end of this process (stray.c). */
    hp_stray_signals_catch();
    /* Block the stop signals in every thread; the main thread waits. */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGUSR1); /* reopen the logs */
    sigaddset(&sigs, SIGHUP);  /* ignored, and said (hup_ignored) */
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    /* Threads that run pages unblock them for this (take_signals). */
    main_pid = getpid();
    main_tid = gettid();
    struct sigaction fw = {.sa_sigaction = forward_signal,
                           .sa_flags = SA_SIGINFO | SA_RESTART};
    sigfillset(&fw.sa_mask);
    sigaction(SIGTERM, &fw, NULL);
    sigaction(SIGINT, &fw, NULL);
    sigaction(SIGUSR1, &fw, NULL);
    sigaction(SIGHUP, &fw, NULL);
    /* What a page's handler for one of them goes back to when its version
     * is unloaded (stray.c), the fatal signals' (guard.c) with them. */
    hp_stray_signals_note_host();

    if (serve_start(cfg, &ss) != 0)
        return 1;
    hp_log_info("%shotpub %s serving %s on %s://%s (%s mode)", who(),
                HP_VERSION_STRING, S.root, hp_tls_on() ? "https" : "http",
                cfg->listen, S.dev ? "dev" : "production");
    record_descriptors();
    H.ready();
    wait_for_stop(&sigs);
    drain(cfg);
    hp_compile_kill_running(); /* and their children: nothing outlives us */
    hosted_stop();
    MHD_stop_daemon(S.mhd);
    hp_edge_stop();
    hp_reactor_stop();
    hp_pool_stop();
    hp_access_flush();
    teardown();
    log_stopped();
    return stop_status();
}
