/*
 * listener.h - the accept thread (listener.c): hotpub, not libmicrohttpd,
 * owns the listening socket. server.c is its only user.
 */
#ifndef HP_LISTENER_H
#define HP_LISTENER_H

#include "hp.h"

#include <microhttpd.h>

/*
 * Start accepting on the listening socket fd (bound and listening; this
 * process's copy becomes the listener's, closed by hp_listener_stop) and
 * hand each connection to d with MHD_add_connection. d must have been
 * started with MHD_USE_NO_LISTEN_SOCKET. At most `limit` connections are
 * open at once (hp_listener_closed counts them down); past it, clients
 * wait in the listen backlog. each_second runs on the accept thread about
 * once a second (the liveness check; NULL for none). Returns 0, or -1
 * after logging why (fd is closed then).
 */
int hp_listener_start(int fd, struct MHD_Daemon *d, unsigned limit,
                      void (*each_second)(void));
/* Before hp_listener_start: while gate() says false (the process's one
 * event loop is held by a run), accept nothing, so that new connections
 * wait in the listen backlog, where another worker process, or this one's
 * successor, takes them, rather than with a process that cannot read
 * them. Looked at before each accept burst and every 20 ms meanwhile. */
void hp_listener_set_gate(bool (*gate)(void));
/* Before hp_listener_start: hand each connection to handoff instead of
 * MHD_add_connection (a daemon in external-poll mode is not thread-safe:
 * handoff queues the connection for the thread that runs it). handoff
 * owns c from the call on, and says MHD_NO after closing it. */
void hp_listener_set_handoff(enum MHD_Result (*handoff)(
    int c, const struct sockaddr *addr, socklen_t len));
/* A connection the listener handed over was closed (libmicrohttpd's
 * MHD_CONNECTION_NOTIFY_CLOSED). */
void hp_listener_closed(void);
/*
 * Stop accepting: with take_backlog, first accept the connections already
 * waiting in the listen backlog (at most 1024) so they are answered rather
 * than reset; then close this process's copy of the listening socket and
 * join the thread. Idempotent. Returns the connections taken from the
 * backlog.
 */
unsigned hp_listener_stop(bool take_backlog);
/*
 * Async-signal-safe, for a process about to die (a fatal signal, an exit
 * nobody asked for): stop taking connections from the listen backlog the
 * workers share, at once, so the other workers take them instead of this
 * process losing them. Closes this process's copy of the socket; the
 * accept thread sees the flag (or EBADF) and ends.
 */
void hp_listener_abandon(void);
/*
 * Pause (on) or resume taking connections from the listen backlog, which
 * the sibling worker processes then take; the socket stays open.
 */
void hp_listener_pause(bool on);
/* The same for at most ns nanoseconds (resumed by then even if no one says
 * so); ns <= 0 resumes now. */
void hp_listener_pause_for(long long ns);
/* Take no more connections, for good (a resume does not undo it), nor the
 * backlog on stop: this process can no longer serve them (its descriptors
 * ran out); its siblings, or its successor, take them. */
void hp_listener_hold(void);
/* This process's copy of the listening socket, or -1 once stopped. */
int hp_listener_fd(void);
/* Connections handed to libmicrohttpd and not closed yet. */
unsigned hp_listener_open(void);

#endif
