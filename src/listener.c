/*
 * listener.c - the accept thread: hotpub owns the listening socket and
 * hands each accepted connection to libmicrohttpd (MHD_add_connection,
 * which spreads them over its thread-pool daemons; or server.c's handoff,
 * which queues it for the reactor's thread that runs the worker's one
 * event loop), so stopping to accept
 * is closing a descriptor of our own.
 *
 * Owns: this process's copy of the listening socket (from the supervisor,
 * or bound by server.c), the accept thread and its wake-up eventfd, the
 * count of open connections against --connection-limit, taking the listen
 * backlog and closing the socket on stop, and the listening socket in the
 * children a page forks (closed there, so a page's child never keeps the
 * port open), and holding it for good (hp_listener_hold: a process whose
 * descriptors ran out). The thread also runs a once-a-second callback
 * (server.c's descriptor count, liveness check and heartbeat).
 * May not touch: requests, the request edge's table (edge.c), processes.
 *
 * Why not libmicrohttpd's own listening socket: with
 * MHD_OPTION_LISTEN_SOCKET every epoll thread of the pool watches the
 * socket, and the only way to stop accepting, MHD_quiesce_daemon(), races
 * those threads over removing it from their epoll sets (libmicrohttpd
 * 0.9.75 through 1.0.1: both call EPOLL_CTL_DEL, the loser aborts the
 * process). Here nothing but this thread ever touches the socket.
 *
 *   RUNNING --hp_listener_stop--> TAKING (accept the backlog, once)
 *           --> CLOSED (socket closed, thread joined)
 */
#include "listener.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#define BACKLOG_MAX 1024 /* connections taken from the backlog on stop */
#define BURST 64         /* accepts per wake-up before polling again  */
#define GATE_NS 20000000 /* how often a closed gate is looked at again */

static struct {
    /* the listening socket; -1 once closed. Whoever exchanges it for -1
     * closes it, once: the accept thread at its end, or a dying worker's
     * hp_listener_abandon (a signal handler, an exit hook), whichever is
     * first, so a descriptor number reused meanwhile is never closed. */
    atomic_int fd;
    int wake; /* eventfd: stop, or room below the limit again */
    struct MHD_Daemon *d;
    enum MHD_Result (*handoff)(int, const struct sockaddr *, socklen_t);
    bool (*gate)(void); /* hp_listener_set_gate: false, leave the backlog */
    unsigned limit;
    atomic_uint open; /* connections handed over and not yet closed */
    atomic_bool stop;
    atomic_bool abandoned; /* hp_listener_abandon: nobody will join us */
    atomic_bool held;      /* hp_listener_hold: no more accepting */
    /* hp_listener_pause: leave the backlog alone until then (ns, hp_now_ns;
     * 0: not paused, LLONG_MAX: until resumed) */
    atomic_llong paused_until;
    bool take_backlog, running;
    unsigned taken;
    pthread_t thread;
    void (*each_second)(void);
    atomic_llong logged_ns; /* the last error line (once a second) */
} L = {.fd = -1, .wake = -1};

/* An accept error: at most one line a second (a client can cause some). */
static void log_accept_error(const char *what, int err)
{
    long long now = hp_now_ns(), last = atomic_load(&L.logged_ns);
    if (now - last < 1000000000LL ||
        !atomic_compare_exchange_strong(&L.logged_ns, &last, now))
        return;
    hp_log_error("listener: %s: %s", what, strerror(err));
}

static void wake(void)
{
    uint64_t one = 1;
    (void)!write(L.wake, &one, sizeof one);
}

/*
 * Out of descriptors or memory: the connection stays in the backlog (for
 * a sibling worker, or for later); wait instead of spinning on the
 * readable socket, 10 ms at first, doubling while it lasts (an accept
 * that succeeds ends it) up to 250 ms. Said at most once a minute, with
 * the count meanwhile: a line a second for as long as it lasted was
 * noise, and closing connections make room for a moment, so it comes and
 * goes. A worker that ran out for good is replaced (server.c's fd_check).
 */
static struct {
    unsigned long unsaid; /* failures since the last line */
    long long delay_ns, said_ns;
} B;

static void back_off(int err)
{
    long long now = hp_now_ns();
    if (B.said_ns == 0 || now - B.said_ns >= 60000000000LL) {
        if (B.unsaid)
            hp_log_error("listener: accept: %s: new connections wait in "
                         "the backlog (%lu more failed accepts since the "
                         "last line)",
                         strerror(err), B.unsaid);
        else
            hp_log_error("listener: accept: %s: new connections wait in "
                         "the backlog",
                         strerror(err));
        B.said_ns = now;
        B.unsaid = 0;
    } else {
        B.unsaid++;
    }
    B.delay_ns = B.delay_ns ? B.delay_ns * 2 : 10000000;
    if (B.delay_ns > 250000000)
        B.delay_ns = 250000000;
    nanosleep(&(struct timespec){0, B.delay_ns}, NULL);
}

static unsigned accept_some(unsigned max, bool over_limit)
{
    unsigned n = 0;
    while (n < max && (over_limit || (atomic_load(&L.open) < L.limit &&
                                      !atomic_load(&L.held) &&
                                      (!L.gate || L.gate())))) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof ss;
        int c = accept4(atomic_load(&L.fd), (struct sockaddr *)&ss, &len,
                        SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (c < 0) {
            int err = errno;
            if (err == EINTR || err == ECONNABORTED || err == EPROTO)
                continue; /* the client gave up before we took it */
            if (err == EMFILE || err == ENFILE || err == ENOBUFS ||
                err == ENOMEM)
                back_off(err);
            else if (err != EAGAIN && err != EWOULDBLOCK)
                log_accept_error("accept", err);
            break;
        }
        B.delay_ns = 0; /* the back-off is over */
        atomic_fetch_add(&L.open, 1);
        /* libmicrohttpd (or the handoff) owns c from here, and closes it
         * on failure. */
        if ((L.handoff ? L.handoff(c, (struct sockaddr *)&ss, len)
                       : MHD_add_connection(L.d, c, (struct sockaddr *)&ss,
                                            len)) != MHD_YES) {
            atomic_fetch_sub(&L.open, 1);
            log_accept_error("MHD_add_connection", errno);
            continue;
        }
        n++;
    }
    return n;
}

static void *accept_main(void *arg)
{
    long long next_tick = hp_now_ns() + 1000000000LL;
    while (!atomic_load(&L.stop)) {
        long long until = atomic_load(&L.paused_until), t = hp_now_ns();
        bool timed = until > t, paused = timed || atomic_load(&L.held);
        /* The event loop is held: look again in GATE_NS. */
        bool gated = !paused && L.gate && !L.gate();
        if (gated) {
            timed = true;
            until = t + GATE_NS;
            paused = true;
        }
        bool room = atomic_load(&L.open) < L.limit && !paused;
        struct pollfd p[2] = {
            {.fd = L.wake, .events = POLLIN},
            {.fd = atomic_load(&L.fd), .events = room ? POLLIN : 0}};
        /* A bounded pause ends on its own: wake up for its end. */
        long long left = (timed && until < next_tick ? until : next_tick) - t;
        int ms = left > 0 ? (int)(left / 1000000) + 1 : 0;
        int r = poll(p, 2, ms);
        if (r > 0 && p[0].revents) {
            uint64_t v;
            (void)!read(L.wake, &v, sizeof v);
        }
        if (r > 0 && (p[1].revents & POLLIN))
            accept_some(BURST, false);
        else if (r > 0 && (p[1].revents & (POLLNVAL | POLLERR)))
            /* The socket was closed under us (a page closing descriptors):
             * the liveness check says so and ends the process. */
            nanosleep(&(struct timespec){0, 100000000}, NULL);
        long long now = hp_now_ns();
        if (now >= next_tick) {
            next_tick = now + 1000000000LL;
            if (L.each_second && !atomic_load(&L.stop))
                L.each_second();
        }
    }
    if (L.take_backlog && !atomic_load(&L.held))
        L.taken = accept_some(BACKLOG_MAX, true);
    int fd = atomic_exchange(&L.fd, -1);
    if (fd >= 0)
        close(fd);
    /* A dying worker (a crash, a page's exit) abandoned us and will never
     * join: detach, so that an exit does not leave a thread unjoined (a
     * joiner already waiting makes this a no-op in glibc). */
    if (atomic_load(&L.abandoned))
        pthread_detach(pthread_self());
    return NULL;
}

/* A page's fork(): the child must not hold the port open (it would take
 * connections into a backlog nobody accepts from after we stop). */
static void close_in_child(void)
{
    int fd = atomic_load(&L.fd);
    if (fd >= 0)
        close(fd);
}

void hp_listener_set_gate(bool (*gate)(void))
{
    L.gate = gate;
}

void hp_listener_set_handoff(enum MHD_Result (*handoff)(
    int c, const struct sockaddr *addr, socklen_t len))
{
    L.handoff = handoff;
}

int hp_listener_start(int fd, struct MHD_Daemon *d, unsigned limit,
                      void (*each_second)(void))
{
    static bool atfork_done;
    atomic_store(&L.fd, fd);
    L.d = d;
    L.limit = limit ? limit : 1;
    L.each_second = each_second;
    atomic_store(&L.open, 0);
    atomic_store(&L.stop, false);
    atomic_store(&L.abandoned, false);
    atomic_store(&L.held, false);
    L.take_backlog = false;
    L.taken = 0;
    if (L.wake >= 0)
        close(L.wake); /* a previous run's (unit tests) */
    L.wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (L.wake < 0) {
        hp_log_error("listener: eventfd: %s", strerror(errno));
        close(fd);
        atomic_store(&L.fd, -1);
        return -1;
    }
    if (!atfork_done && pthread_atfork(NULL, NULL, close_in_child) == 0)
        atfork_done = true;
    int err = pthread_create(&L.thread, NULL, accept_main, NULL);
    if (err) {
        hp_log_error("listener: cannot start the accept thread: %s",
                     strerror(err));
        close(L.wake);
        close(fd);
        atomic_store(&L.fd, -1);
        L.wake = -1;
        return -1;
    }
    L.running = true;
    return 0;
}

void hp_listener_abandon(void)
{
    atomic_store(&L.abandoned, true);
    atomic_store(&L.stop, true);
    int fd = atomic_exchange(&L.fd, -1);
    if (fd >= 0)
        close(fd); /* async-signal-safe; the thread gets EBADF/POLLNVAL */
}

void hp_listener_pause(bool on)
{
    hp_listener_pause_for(on ? LLONG_MAX : 0);
}

void hp_listener_pause_for(long long ns)
{
    long long now = hp_now_ns();
    atomic_store(&L.paused_until, ns <= 0                 ? 0
                                  : ns >= LLONG_MAX - now ? LLONG_MAX
                                                          : now + ns);
    if (L.wake >= 0)
        wake();
}

void hp_listener_hold(void)
{
    atomic_store(&L.held, true);
    if (L.wake >= 0)
        wake();
}

void hp_listener_closed(void)
{
    /* Wake the thread when this makes room under the limit. */
    if (atomic_fetch_sub(&L.open, 1) == L.limit)
        wake();
}

unsigned hp_listener_stop(bool take_backlog)
{
    if (!L.running)
        return 0;
    if (atomic_load(&L.abandoned)) { /* the thread detaches itself */
        L.running = false;
        return 0;
    }
    L.take_backlog = take_backlog;
    atomic_store(&L.stop, true);
    wake();
    pthread_join(L.thread, NULL);
    L.running = false;
    /* L.wake stays open: a connection closing now may still write to it
     * (closed and reused, the number could name another file). */
    return L.taken;
}

int hp_listener_fd(void)
{
    return L.fd;
}

unsigned hp_listener_open(void)
{
    return atomic_load(&L.open);
}
