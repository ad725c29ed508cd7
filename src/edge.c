/*
 * edge.c - the request edge: every byte a client sends passes framing.c's
 * strict parser before libmicrohttpd acts on it, and every request head
 * and body has a deadline.
 *
 * Owns: the table of watched connections (one slot per file descriptor),
 * the recv() wrapper that feeds the parser, the answers the edge sends by
 * itself (400, 405, 408, 413, 414, 431, 501, 505, always with the
 * connection closed; over HTTPS also a plain-text 400 to a client that
 * speaks plain HTTP to it)
 * and the deadline thread.
 * May not touch: requests, pages, the module cache; the response to any
 * request libmicrohttpd hands to server.c is server.c's.
 *
 * How the bytes are seen. libmicrohttpd 0.9.75 reads a plain connection
 * with recv(2) and offers no hook of its own, so hotpub defines recv() in
 * the executable (exported, see Makefile): the dynamic linker binds
 * libmicrohttpd's calls to it, and it passes every other caller (libpq,
 * pages) straight to the C library's. For a watched connection it parses
 * what was read and returns only the bytes before the first message that
 * breaks the rules. libmicrohttpd serves the messages before it; the next
 * time it reads, the edge writes the refusal and reports end of stream, so
 * libmicrohttpd closes the connection without ever seeing the bad message.
 * libmicrohttpd reads only when it has no response in flight on the
 * connection (its state machine is strictly request, then response), so
 * the edge's answer never interleaves with one of its responses.
 *
 * Deadlines (as nginx's client_header_timeout, Apache's mod_reqtimeout):
 * a head must be complete within header_timeout seconds of its first
 * byte; a body within body_timeout seconds plus one second for every
 * body_min_rate bytes received. The deadline thread answers 408 and shuts
 * the socket; it may act only while the connection waits for the client
 * (no response in flight), which it proves with one compare-and-swap on
 * the slot's state word against the reading thread's, and it holds the
 * slot's lock so the file descriptor cannot be closed and reused meanwhile.
 *
 *   slot state:  gen | OPEN | phase (IDLE, HEAD, BODY) | ANSWERED |
 * DONE_BY_EDGE IDLE -> HEAD (first byte of a head) -> IDLE or BODY (head
 * complete) BODY -> IDLE (body complete); any -> DONE_BY_EDGE (refused or 408)
 */
#include "edge.h"
#include "framing.h"

#include <dlfcn.h>
#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum {
    PH_IDLE = 0,
    PH_HEAD = 1,
    PH_BODY = 2,
    PH_MASK = 3,
    ST_OPEN = 4,
    ST_ANSWERED = 8,  /* server.c answered before the body was read   */
    ST_REFUSED = 16,  /* the edge answered: nothing more is read      */
    ST_GEN_SHIFT = 8, /* the rest counts the slot's connections        */
};

/* A log line at most once a second; the lines left out are counted. */
struct once_a_second {
    atomic_llong last_ns;
    atomic_ulong skipped;
};

struct hp_edge {
    pthread_mutex_t mu; /* held to write from another thread, and to close */
    _Atomic uint64_t state;
    atomic_llong clock_ns; /* when the current head or body began        */
    atomic_llong ready_ns; /* when the previous request was done         */
    atomic_ullong body_bytes;
    atomic_uint heads, done;
    atomic_int status; /* what the edge answered, 0 if nothing       */
    int fd;
    /* refused after good messages, or timed out over TLS: the reading
     * thread answers on its next read (the deadline thread sets it) */
    atomic_bool answer_pending;
    atomic_bool rl_passed; /* libmicrohttpd has this message's request line */
    atomic_bool tls_hello; /* TLS: the first bytes are still to be looked at */
    bool plain; /* --tls-redirect's plain-HTTP connection, even in TLS mode */
    struct hp_frame f; /* the reading thread's only                  */
    /* The reading thread's only: the current head's first bytes, so a
     * refused request's line can be logged (log_refusal). */
    char line[1024];
    size_t line_len;
    bool line_done; /* line holds the whole request line (or 1023 bytes) */
};

static struct {
    _Atomic(struct hp_edge *) *slots;
    int nslots;
    atomic_int high; /* highest slot in use + 1 */
    const struct hp_config *cfg;
    pthread_t reaper;
    pthread_mutex_t stop_mu;
    pthread_cond_t stop_cv;
    bool stop, running;
    atomic_ulong refused, timed_out;
    atomic_int open; /* connections open now */
    hp_edge_refused_fn *on_refused;
    struct once_a_second refusal_log, full_log;
} E;

/* The C library's recv(), found once before main() runs (no thread can
 * race for it then). */
typedef ssize_t recv_fn(int, void *, size_t, int);
static recv_fn *real_recv;

__attribute__((constructor)) static void find_real_recv(void)
{
    real_recv = (recv_fn *)dlsym(RTLD_NEXT, "recv");
    if (!real_recv)
        abort(); /* no C library: nothing else can work either */
}

/*
 * Over HTTPS libmicrohttpd reads plaintext with gnutls_record_recv(), and
 * GnuTLS reads the ciphertext with recv(): in TLS mode the recv() wrapper
 * passes everything through but the first bytes (tls_first_recv: plain
 * HTTP gets its 400) and the edge parses what
 * gnutls_record_recv() returns instead (the executable exports both).
 * GnuTLS's types are opaque pointers: its header is not needed.
 */
typedef ssize_t tls_recv_fn(void *session, void *buf, size_t len);
typedef ssize_t tls_send_fn(void *session, const void *buf, size_t len);
typedef int tls_fd_fn(void *session);
static tls_recv_fn *real_tls_recv;
static tls_send_fn *tls_send;
static tls_fd_fn *tls_fd;
static atomic_bool tls_mode;

static void find_real_tls(void)
{
    tls_fd = (tls_fd_fn *)dlsym(RTLD_NEXT, "gnutls_transport_get_int");
    tls_send = (tls_send_fn *)dlsym(RTLD_NEXT, "gnutls_record_send");
    real_tls_recv = (tls_recv_fn *)dlsym(RTLD_NEXT, "gnutls_record_recv");
}

void hp_edge_set_tls(bool on)
{
    if (on && !real_tls_recv)
        find_real_tls();
    atomic_store(&tls_mode, on && real_tls_recv && tls_fd);
}

/* The coarse clock (a tick, 1 to 10 ms): the deadlines are seconds, looked
 * at four times a second, and a request reads it twice (a quarter of the
 * precise clock's cost). */
static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* ---- the answers the edge sends ------------------------------------------ */

static const char *reason(int status)
{
    switch (status) {
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 431:
        return "Request Header Fields Too Large";
    case 501:
        return "Not Implemented";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Bad Request";
    }
}

/* May this line be logged now? *skipped: how many were not since. */
static bool log_now(struct once_a_second *r, unsigned long *skipped)
{
    long long now = now_ns(), last = atomic_load(&r->last_ns);
    if (now - last < 1000000000LL ||
        !atomic_compare_exchange_strong(&r->last_ns, &last, now)) {
        atomic_fetch_add(&r->skipped, 1);
        return false;
    }
    *skipped = atomic_exchange(&r->skipped, 0);
    return true;
}

static void peer_addr(int fd, char *host, size_t n)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    host[0] = '\0';
    if (getpeername(fd, (struct sockaddr *)&ss, &len) == 0 &&
        getnameinfo((struct sockaddr *)&ss, len, host, (socklen_t)n, NULL, 0,
                    NI_NUMERICHOST) != 0)
        host[0] = '\0';
}

/*
 * Every refusal goes to the access log (through server.c) when no request
 * of the connection reached libmicrohttpd; the error log gets at most one
 * line a second, saying how many were left out.
 */
static void log_refusal(struct hp_edge *e, int status, const char *why,
                        const char *line)
{
    char host[64];
    peer_addr(e->fd, host, sizeof host);
    /* Once libmicrohttpd has the request line, server.c logs the request
     * (with hp_edge_status); before, nobody else knows of it. line: the
     * refused request's line as received (NULL: none). */
    if (E.on_refused && !atomic_load(&e->rl_passed))
        E.on_refused(host, status, line);
    unsigned long skipped;
    if (!log_now(&E.refusal_log, &skipped))
        return;
    hp_log_error("%s: %d %s (%s); connection closed%s", *host ? host : "-",
                 status, reason(status), why,
                 skipped ? " (after others not logged)" : "");
}

/*
 * Write the answer and stop reading. The socket is non-blocking and the
 * answer small, so one send() does it; what the client sent after is
 * drained a little so the close is less likely to reset the connection
 * before the client has read the answer.
 */
static void send_answer_text(int fd, int status, void *session, bool plain,
                             const char *detail, const char *allow_methods)
{
    char body[256], msg[640];
    int blen = snprintf(body, sizeof body,
                        "<!doctype html>\n<title>%d %s</title>\n"
                        "<h1>%d %s</h1>\n%s%s%s",
                        status, reason(status), status, reason(status),
                        detail ? "<p>" : "", detail ? detail : "",
                        detail ? "</p>\n" : "");
    char date[64];
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    int n =
        snprintf(msg, sizeof msg,
                 "HTTP/1.1 %d %s\r\nDate: %s\r\nConnection: close\r\n"
                 "%s%s%sContent-Type: text/html; charset=utf-8\r\n"
                 "Content-Length: %d\r\n\r\n%s",
                 status, reason(status), date, allow_methods ? "Allow: " : "",
                 allow_methods ? allow_methods : "",
                 allow_methods ? "\r\n" : "", blen, body);
    /* Over TLS the answer goes through the session, from the thread that
     * reads it (libmicrohttpd's, in gnutls_record_recv below); the
     * deadline thread has no session to write with (session NULL), and
     * plaintext inside the record layer would be garbage: it only closes. */
    if (plain || !atomic_load(&tls_mode))
        (void)!send(fd, msg, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
    else if (session && tls_send)
        (void)!tls_send(session, msg, (size_t)n);
    shutdown(fd, SHUT_WR);
    char sink[4096];
    for (int i = 0; i < 16; i++)
        if (real_recv(fd, sink, sizeof sink, MSG_DONTWAIT) <= 0)
            break;
}

/* From the thread reading e (e->f is its own), or the deadline thread
 * with a 408. RFC 9110 §15.5.6: a 405 (a TRACE or CONNECT, framing.c) says
 * which methods the target resource has: GET and HEAD for hotpub's own
 * endpoints (server.c), else the ones OPTIONS * names. */
static void send_answer(struct hp_edge *e, int status, void *session)
{
    const char *allow = NULL;
    if (status == 405)
        allow = hp_frame_own_target(&e->f) ? HP_ALLOW_OWN : HP_ALLOW_METHODS;
    send_answer_text(e->fd, status, session, e->plain, NULL, allow);
}

/* Mark the slot refused (once); true if this caller must answer. */
static bool mark_refused(struct hp_edge *e, int status)
{
    uint64_t s = atomic_load(&e->state);
    do {
        if (s & ST_REFUSED)
            return false;
    } while (!atomic_compare_exchange_weak(&e->state, &s, s | ST_REFUSED));
    atomic_store(&e->status, status);
    return true;
}

/* ---- the refused request's line, for the access log ------------------ */

/* Append to e->line up to the end of the request line (CR, LF or NUL). */
static void line_append(struct hp_edge *e, const char *p, size_t n)
{
    for (size_t i = 0; i < n && !e->line_done; i++) {
        if (p[i] == '\r' || p[i] == '\n' || p[i] == '\0' ||
            e->line_len + 1 >= sizeof e->line)
            e->line_done = true;
        else
            e->line[e->line_len++] = p[i];
    }
    e->line[e->line_len] = '\0';
}

/* A read of n bytes left the connection inside a head: keep its first
 * bytes (the head's last f.head_len bytes lie in buf, or it began in an
 * earlier read whose first bytes e->line holds). */
static void keep_head_start(struct hp_edge *e, const char *buf, size_t n)
{
    size_t in_buf = e->f.head_len < n ? e->f.head_len : n;
    if (e->f.head_len <= n) {
        e->line_len = 0;
        e->line_done = false;
    }
    line_append(e, buf + n - in_buf, in_buf);
}

/* The refused message starts at p (n bytes), or continues the head an
 * earlier read began (cont). */
static void refused_line(struct hp_edge *e, const char *p, size_t n, bool cont)
{
    if (!cont) {
        e->line_len = 0;
        e->line_done = false;
    }
    line_append(e, p, n);
}

/* ---- the recv() wrapper ------------------------------------------------- */

static struct hp_edge *slot(int fd)
{
    if (fd < 0 || fd >= E.nslots || !E.slots)
        return NULL;
    struct hp_edge *e =
        atomic_load_explicit(&E.slots[fd], memory_order_acquire);
    if (!e ||
        !(atomic_load_explicit(&e->state, memory_order_relaxed) & ST_OPEN))
        return NULL;
    return e;
}

/* Move the slot's phase after parsing; false if the deadline thread won. */
static bool set_phase(struct hp_edge *e, unsigned phase)
{
    uint64_t s = atomic_load(&e->state);
    for (;;) {
        if (s & ST_REFUSED)
            return false;
        if ((s & PH_MASK) == phase)
            return true;
        uint64_t want = (s & ~(uint64_t)PH_MASK) | phase;
        if (atomic_compare_exchange_weak(&e->state, &s, want))
            break;
    }
    if (phase != PH_IDLE) {
        atomic_store(&e->clock_ns, now_ns());
        atomic_store(&e->body_bytes, 0);
    }
    return true;
}

/*
 * A client that went away with its request incomplete. libmicrohttpd
 * takes a short read of a plain socket for an empty one and waits for the
 * next edge-triggered epoll event (recv_param_adapter clears READ_READY);
 * a FIN that arrived with the last data makes no new event, so the
 * connection, and an upload spooled so far, stayed until --timeout. So
 * after a short read of an incomplete head or body, look (MSG_PEEK) for
 * the end of the stream: there, shutting the reading side wakes
 * libmicrohttpd, whose next recv() returns 0 and which then closes the
 * connection (MHD_REQUEST_TERMINATED_CLIENT_ABORT: server.c logs a 400
 * and the request's files go). A half-close is the same abort, as in
 * nginx: the body can never complete. An RST needs nothing (epoll reports
 * it as an error), nor TLS (libmicrohttpd reads it until EAGAIN).
 */
static void notice_end_of_stream(int fd)
{
    char c;
    if (real_recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) == 0)
        shutdown(fd, SHUT_RD);
}

static ssize_t edge_recv(struct hp_edge *e, int fd, void *buf, size_t len,
                         int flags, void *session)
{
    if (atomic_load(&e->state) & ST_REFUSED) {
        if (atomic_exchange(&e->answer_pending, false))
            send_answer(e, atomic_load(&e->status), session);
        return 0;
    }
    ssize_t n = session ? real_tls_recv(session, buf, len)
                        : real_recv(fd, buf, len, flags);
    if (n <= 0)
        return n;
    /* Renames Cookie fields in buf for libmicrohttpd (framing.h). */
    bool was_in_head = hp_frame_in_head(&e->f);
    size_t ok = hp_frame_feed_edit(&e->f, buf, (size_t)n);
    if (e->f.bad_status) {
        atomic_fetch_add(&E.refused, 1);
        refused_line(e, (const char *)buf + ok, (size_t)n - ok,
                     ok == 0 && was_in_head);
        log_refusal(e, e->f.bad_status, e->f.why, e->line_len ? e->line : NULL);
        if (!mark_refused(e, e->f.bad_status))
            return 0; /* timed out meanwhile: answered already */
        if (ok > 0) {
            /* Serve the good messages first. libmicrohttpd saw a short
             * read and waits for the socket to be readable again, which
             * shutting down our side of reading makes it at once; then
             * the branch above answers. */
            atomic_store(&e->answer_pending, true);
            shutdown(fd, SHUT_RD);
            return (ssize_t)ok;
        }
        send_answer(e, e->f.bad_status, session);
        return 0;
    }
    atomic_store(&e->heads, e->f.heads);
    atomic_store(&e->rl_passed, e->f.rl_passed);
    unsigned phase = e->f.in_body              ? PH_BODY
                     : hp_frame_in_head(&e->f) ? PH_HEAD
                                               : PH_IDLE;
    if (!set_phase(e, phase))
        return 0; /* the deadline thread answered 408 */
    if (phase == PH_HEAD)
        keep_head_start(e, buf, (size_t)n);
    if (phase == PH_BODY)
        atomic_fetch_add(&e->body_bytes, (unsigned long long)n);
    if (phase != PH_IDLE && !session && (size_t)n < len)
        notice_end_of_stream(fd);
    return n;
}

/*
 * The C library's recv(), for libmicrohttpd and everyone else in the
 * process (the executable's definition comes first in symbol lookup).
 * RTLD_NEXT finds the next definition after the executable: the C
 * library's, or a sanitizer's interceptor that calls it.
 */
/*
 * The first bytes of a connection to the HTTPS port. A TLS client starts
 * with a handshake record (content type 22); a request line starts with a
 * method's letters. To that, as nginx does, a plain-text 400 saying what
 * went wrong instead of a silent close (GnuTLS would fail the handshake):
 * someone typed http:// for an https:// address. Anything else is GnuTLS's
 * to judge. Called by GnuTLS's reads during the handshake, on the thread
 * that reads the connection.
 */
static ssize_t tls_first_recv(struct hp_edge *e, int fd, void *buf, size_t len,
                              int flags)
{
    ssize_t n = real_recv(fd, buf, len, flags);
    if (n <= 0 || (flags & MSG_PEEK))
        return n;
    atomic_store(&e->tls_hello, false);
    unsigned char c = *(unsigned char *)buf;
    if (c == 22 || c < 'A' || c > 'Z')
        return n;
    atomic_fetch_add(&E.refused, 1);
    log_refusal(e, 400, "plain HTTP sent to the HTTPS port", NULL);
    if (mark_refused(e, 400))
        send_answer_text(fd, 400, NULL, true,
                         "The plain HTTP request was sent to the HTTPS "
                         "port.",
                         NULL);
    return 0; /* end of stream: the handshake fails, the connection closes */
}

ssize_t recv(int fd, void *buf, size_t len, int flags)
{
    if (!real_recv) /* called by another constructor, before ours */
        find_real_recv();
    struct hp_edge *e = slot(fd);
    if (!e)
        return real_recv(fd, buf, len, flags);
    if (atomic_load(&tls_mode) && !e->plain) {
        if (atomic_load(&e->tls_hello))
            return tls_first_recv(e, fd, buf, len, flags);
        return real_recv(fd, buf, len, flags);
    }
    return edge_recv(e, fd, buf, len, flags, NULL);
}

/* libmicrohttpd's reads over HTTPS (see tls_mode above). */
ssize_t gnutls_record_recv(void *session, void *buf, size_t len);
ssize_t gnutls_record_recv(void *session, void *buf, size_t len)
{
    if (!real_tls_recv)
        find_real_tls();
    if (!real_tls_recv)
        return -1; /* GNUTLS_E_UNEXPECTED_PACKET_LENGTH: no GnuTLS at all */
    struct hp_edge *e = atomic_load(&tls_mode) ? slot(tls_fd(session)) : NULL;
    if (!e)
        return real_tls_recv(session, buf, len);
    return edge_recv(e, e->fd, buf, len, 0, session);
}

/* ---- connections ------------------------------------------------------------
 */

/*
 * At --connection-limit the accept thread (listener.c) stops accepting,
 * and further clients wait in the listen backlog: the edge says so, at
 * most once a second.
 */
static void count_open(void)
{
    int n = atomic_fetch_add(&E.open, 1) + 1;
    if (n < (int)E.cfg->conn_limit)
        return;
    unsigned long skipped;
    if (!log_now(&E.full_log, &skipped))
        return;
    hp_log_error("connection limit reached (%d open, --connection-limit "
                 "%u): new connections wait in the listen backlog "
                 "(%lu more times since the last line)",
                 n, E.cfg->conn_limit, skipped);
}

static void conn_open(struct MHD_Connection *conn, void **socket_context,
                      bool plain)
{
    count_open();
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    int fd = ci ? ci->connect_fd : -1;
    if (fd < 0 || fd >= E.nslots) {
        static atomic_bool told;
        if (!atomic_exchange(&told, true))
            hp_log_error("descriptor %d is beyond the request edge's table "
                         "(RLIMIT_NOFILE %d): such connections are served "
                         "unchecked",
                         fd, E.nslots);
        return;
    }
    struct hp_edge *e = atomic_load(&E.slots[fd]);
    if (!e) {
        e = hp_xcalloc(1, sizeof *e);
        pthread_mutex_init(&e->mu, NULL);
        atomic_store_explicit(&E.slots[fd], e, memory_order_release);
    }
    pthread_mutex_lock(&e->mu);
    uint64_t gen = (atomic_load(&e->state) >> ST_GEN_SHIFT) + 1;
    hp_frame_init(&e->f, E.cfg->max_header, (unsigned)E.cfg->max_fields);
    hp_frame_set_query_room(&e->f, hp_edge_mhd_memory(E.cfg));
    e->fd = fd;
    atomic_store(&e->heads, 0);
    atomic_store(&e->done, 0);
    atomic_store(&e->status, 0);
    atomic_store(&e->answer_pending, false);
    atomic_store(&e->rl_passed, false);
    e->line_len = 0;
    e->line_done = false;
    e->plain = plain; /* before the state's store publishes the slot */
    atomic_store(&e->tls_hello, !plain && atomic_load(&tls_mode));
    atomic_store(&e->ready_ns, now_ns());
    atomic_store(&e->state, (gen << ST_GEN_SHIFT) | ST_OPEN | PH_IDLE);
    pthread_mutex_unlock(&e->mu);
    int high = atomic_load(&E.high);
    while (fd + 1 > high &&
           !atomic_compare_exchange_weak(&E.high, &high, fd + 1))
        ;
    *socket_context = e;
}

static void conn_close(void **socket_context)
{
    struct hp_edge *e = *socket_context;
    if (!e)
        return;
    /* Before libmicrohttpd closes the descriptor: once the lock is ours,
     * the deadline thread cannot be writing to it, and it will not. */
    pthread_mutex_lock(&e->mu);
    atomic_fetch_and(&e->state, ~(uint64_t)(ST_OPEN | PH_MASK));
    pthread_mutex_unlock(&e->mu);
    *socket_context = NULL;
}

static void notify(struct MHD_Connection *conn, void **socket_context,
                   enum MHD_ConnectionNotificationCode toe, bool plain)
{
    if (!E.slots)
        return;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        conn_open(conn, socket_context, plain);
    } else if (toe == MHD_CONNECTION_NOTIFY_CLOSED) {
        atomic_fetch_sub(&E.open, 1);
        conn_close(socket_context);
    }
}

void hp_edge_notify(void *cls, struct MHD_Connection *conn,
                    void **socket_context,
                    enum MHD_ConnectionNotificationCode toe)
{
    (void)cls;
    notify(conn, socket_context, toe, false);
}

void hp_edge_notify_plain(void *cls, struct MHD_Connection *conn,
                          void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
    (void)cls;
    notify(conn, socket_context, toe, true);
}

struct hp_edge *hp_edge_of(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

bool hp_edge_answer_early(struct hp_edge *e)
{
    if (!e)
        return true;
    uint64_t s = atomic_load(&e->state);
    do {
        if (s & ST_REFUSED)
            return false;
    } while (!atomic_compare_exchange_weak(&e->state, &s, s | ST_ANSWERED));
    return true;
}

void hp_edge_request_done(struct hp_edge *e)
{
    if (!e)
        return;
    atomic_fetch_and(&e->state, ~(uint64_t)ST_ANSWERED);
    atomic_store(&e->ready_ns, now_ns());
    atomic_fetch_add(&e->done, 1);
}

int hp_edge_status(struct hp_edge *e)
{
    return e ? atomic_load(&e->status) : 0;
}

long hp_edge_used_connections(void)
{
    long n = 0;
    int high = atomic_load(&E.high);
    for (int fd = 0; E.slots && fd < high; fd++) {
        struct hp_edge *e = atomic_load(&E.slots[fd]);
        if (!e)
            continue;
        uint64_t s = atomic_load(&e->state);
        n += (s & ST_OPEN) && ((s & ST_REFUSED) || atomic_load(&e->done) > 0);
    }
    return n;
}

void hp_edge_status_json(struct hp_buf *b)
{
    hp_buf_printf(b,
                  ",\n\"edge\":{\"connections\":%d,\"refused\":%lu,"
                  "\"timed_out\":%lu}",
                  atomic_load(&E.open), atomic_load(&E.refused),
                  atomic_load(&E.timed_out));
}

/* ---- deadlines
 * ---------------------------------------------------------------- */

/* Is the client late? Only while the server waits for it. */
static bool overdue(struct hp_edge *e, uint64_t s, long long now)
{
    long long start = atomic_load(&e->clock_ns);
    long long ready = atomic_load(&e->ready_ns);
    unsigned heads = atomic_load(&e->heads), done = atomic_load(&e->done);
    if (ready > start)
        start = ready; /* the clock runs from when the server could read */
    const struct hp_config *c = E.cfg;
    if ((s & PH_MASK) == PH_HEAD)
        return done == heads &&
               now - start > (long long)c->header_timeout * 1000000000LL;
    if ((s & PH_MASK) != PH_BODY || (s & ST_ANSWERED) || done + 1 != heads)
        return false;
    long long allowed = (long long)c->body_timeout * 1000000000LL;
    if (c->body_min_rate > 0)
        allowed += (long long)(atomic_load(&e->body_bytes) /
                               (unsigned long long)c->body_min_rate) *
                   1000000000LL;
    return now - start > allowed;
}

static void reap(struct hp_edge *e, long long now)
{
    pthread_mutex_lock(&e->mu);
    uint64_t s = atomic_load(&e->state);
    if ((s & ST_OPEN) && !(s & ST_REFUSED) && overdue(e, s, now) &&
        atomic_compare_exchange_strong(&e->state, &s, s | ST_REFUSED)) {
        atomic_store(&e->status, 408);
        atomic_fetch_add(&E.timed_out, 1);
        log_refusal(e, 408,
                    (s & PH_MASK) == PH_HEAD
                        ? "request head not complete in time"
                        : "request body too slow",
                    NULL); /* e->line is the reading thread's */
        if (atomic_load(&tls_mode) && !e->plain) {
            /* Only the thread reading the session can write to it: end
             * the reading side, which wakes libmicrohttpd's read, whose
             * gnutls_record_recv() (ours) answers and reports the end. */
            atomic_store(&e->answer_pending, true);
            shutdown(e->fd, SHUT_RD);
        } else {
            send_answer(e, 408, NULL);
            shutdown(e->fd, SHUT_RDWR); /* wakes libmicrohttpd: it closes */
        }
    }
    pthread_mutex_unlock(&e->mu);
}

static void *reaper_main(void *arg)
{
    pthread_mutex_lock(&E.stop_mu);
    while (!E.stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 250000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&E.stop_cv, &E.stop_mu, &ts);
        if (E.stop)
            break;
        pthread_mutex_unlock(&E.stop_mu);
        long long now = now_ns();
        int high = atomic_load(&E.high);
        for (int fd = 0; fd < high; fd++) {
            struct hp_edge *e = atomic_load(&E.slots[fd]);
            if (e && (atomic_load(&e->state) & ST_OPEN))
                reap(e, now);
        }
        pthread_mutex_lock(&E.stop_mu);
    }
    pthread_mutex_unlock(&E.stop_mu);
    return NULL;
}

size_t hp_edge_mhd_memory(const struct hp_config *cfg)
{
    return cfg->max_header + 4096;
}

#define HELD_SLACK 256 /* whitespace around values, alignment, rounding */
#define HELD_RECORD 64 /* libmicrohttpd's record of a field (framing.h) */

/* A field's line and record; a query argument's record (its text is the
 * request target's, decoded in place). */
static enum MHD_Result held_one(void *cls, enum MHD_ValueKind kind,
                                const char *key, const char *value)
{
    size_t *n = cls;
    *n += HELD_RECORD;
    if (kind != MHD_GET_ARGUMENT_KIND)
        *n += strlen(key) + (value ? strlen(value) : 0) + 4;
    return MHD_YES;
}

size_t hp_edge_request_held(struct MHD_Connection *conn, const char *target,
                            const char *method, const char *version)
{
    size_t held = HELD_SLACK + strlen(target ? target : "") +
                  strlen(method ? method : "") +
                  strlen(version ? version : "") + 4;
    MHD_get_connection_values(
        conn,
        (enum MHD_ValueKind)(MHD_HEADER_KIND | MHD_GET_ARGUMENT_KIND |
                             MHD_COOKIE_KIND | MHD_FOOTER_KIND),
        held_one, &held);
    return held;
}

int hp_edge_start(const struct hp_config *cfg, hp_edge_refused_fn *refused)
{
    struct rlimit rl;
    long n = 65536;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        n = (long)rl.rlim_cur;
    if (n > (1L << 20))
        n = 1L << 20;
    E.cfg = cfg;
    E.on_refused = refused;
    E.nslots = (int)n;
    E.slots = hp_xcalloc((size_t)n, sizeof *E.slots);
    pthread_mutex_init(&E.stop_mu, NULL);
    pthread_cond_init(&E.stop_cv, NULL);
    E.stop = false;
    int err = pthread_create(&E.reaper, NULL, reaper_main, NULL);
    if (err) {
        hp_log_error("cannot start the deadline thread: %s", strerror(err));
        free(E.slots);
        E.slots = NULL;
        return -1;
    }
    E.running = true;
    return 0;
}

void hp_edge_stop(void)
{
    if (E.running) {
        pthread_mutex_lock(&E.stop_mu);
        E.stop = true;
        pthread_cond_signal(&E.stop_cv);
        pthread_mutex_unlock(&E.stop_mu);
        pthread_join(E.reaper, NULL);
        E.running = false;
    }
    if (!E.slots)
        return;
    for (int fd = 0; fd < E.nslots; fd++) {
        struct hp_edge *e = atomic_load(&E.slots[fd]);
        if (e) {
            pthread_mutex_destroy(&e->mu);
            free(e);
        }
    }
    free(E.slots);
    E.slots = NULL;
    E.nslots = 0;
}
