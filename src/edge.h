/*
 * edge.h - the request edge (edge.c): hotpub's own check of what a client
 * sends, before libmicrohttpd acts on it. server.c is its user, and
 * redirect.c for the plain-HTTP listener beside HTTPS.
 */
#ifndef HP_EDGE_H
#define HP_EDGE_H

#include "hp.h"

#include <microhttpd.h>

struct hp_edge;

/* RFC 9110 §10.2.1 Allow: the methods pages may answer (each page decides
 * which it does). The answer to OPTIONS * (server.c) and the field of the
 * edge's 405 to TRACE and CONNECT (framing.c refuses them). */
#define HP_ALLOW_METHODS "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
/* ... and hotpub's own endpoints under /_hotpub/ (server.c): they only
 * read. Their 405, server.c's or the edge's to TRACE and CONNECT. */
#define HP_ALLOW_OWN "GET, HEAD"

/* Told of each connection the edge answered before libmicrohttpd saw a
 * request on it: the client's numeric address ("" if unknown), the status,
 * the refused request's line as received (up to 1023 bytes; NULL if none
 * was received, or for a 408 of the deadline thread). */
typedef void hp_edge_refused_fn(const char *addr, int status, const char *line);

/*
 * Start watching connections: the table of connections and the deadline
 * thread (cfg->header_timeout, body_timeout, body_min_rate; the head size
 * limit is cfg->max_header). Returns 0, or -1 after logging why.
 */
int hp_edge_start(const struct hp_config *cfg, hp_edge_refused_fn *refused);
/*
 * libmicrohttpd's memory per connection (MHD_OPTION_CONNECTION_MEMORY_LIMIT):
 * the head, and 4 KiB for its own records. It zeroes all of it for every
 * request, so it is kept small; the edge refuses a query with more pieces
 * than fit (libmicrohttpd 0.9.75 hangs the connection when they overflow).
 */
size_t hp_edge_mhd_memory(const struct hp_config *cfg);
/*
 * The response head's room. libmicrohttpd 0.9.75 writes a response's head
 * (build_header_response) into what is left of the connection's memory
 * once the request is read: the request line and head stay there, with a
 * record of about 64 bytes for each field, query argument and trailer
 * field. A head that does not fit is not sent at all: libmicrohttpd
 * closes the connection, and the client sees nothing. It cannot be asked
 * how much is left, so its users count what the request holds
 * (hp_edge_request_held) and what the head will take (at most
 * HP_EDGE_HEAD_FIXED and each field's "name: value\r\n"), and answer an
 * error of their own instead of a head that would not fit.
 */
#define HP_EDGE_HEAD_FIXED                                                     \
    160 /* status line <= 48 (the longest reason phrase), Date 38,             \
           Connection <= 31, Content-Length <= 38 (Transfer-Encoding 28),      \
           the empty line 2 */
/* Bytes of the connection's memory a read request holds (target, method
 * and version as libmicrohttpd gave them; NULL counts as ""): its line,
 * its fields, query arguments and trailer fields with their records, and
 * slack for alignment and rounding. On the connection's event loop. */
size_t hp_edge_request_held(struct MHD_Connection *conn, const char *target,
                            const char *method, const char *version);

/* After libmicrohttpd has stopped: no connection is open any more. */
void hp_edge_stop(void);

/* libmicrohttpd's MHD_OPTION_NOTIFY_CONNECTION callback, as is. */
void hp_edge_notify(void *cls, struct MHD_Connection *conn,
                    void **socket_context,
                    enum MHD_ConnectionNotificationCode toe);

/* The same for a plain-HTTP listener beside an HTTPS one (--tls-redirect,
 * redirect.c): its connections pass the same checks as the main
 * listener's, read and answered in plain text even in TLS mode. */
void hp_edge_notify_plain(void *cls, struct MHD_Connection *conn,
                          void **socket_context,
                          enum MHD_ConnectionNotificationCode toe);

/* The connection's edge state (NULL if it is not watched). */
struct hp_edge *hp_edge_of(struct MHD_Connection *conn);
/*
 * Before answering a request whose body has not been read (a 413 on the
 * first call): false if the edge has answered already (a 408), and then
 * the caller must not queue a response but close the connection.
 */
bool hp_edge_answer_early(struct hp_edge *e);
/* A request on the connection is complete (its response was sent). */
void hp_edge_request_done(struct hp_edge *e);
/* The status the edge answered the connection with, or 0. */
int hp_edge_status(struct hp_edge *e);

/* Open connections on which a request has completed, or that the edge
 * refused: the rest (fresh connections, counted by whoever accepted them)
 * are ones a stopping server must still answer. */
long hp_edge_used_connections(void);

/* Counters for the status endpoint (responses the edge sent itself). */
void hp_edge_status_json(struct hp_buf *b);

/* HTTPS: parse the plaintext libmicrohttpd reads through GnuTLS rather
 * than the bytes on the socket; the edge's own answers (400, 408, ...)
 * close the connection without writing, as they would be plaintext. */
void hp_edge_set_tls(bool on);

#endif
