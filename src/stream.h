/*
 * stream.h - a streamed response body (stream.c): the bounded buffer
 * between a handler thread that writes (hp_flush) and the event-loop thread
 * that sends (libmicrohttpd's content reader), and the libmicrohttpd
 * response that reads it. server.c creates and queues the response;
 * nothing here knows a request.
 */
#ifndef HP_STREAM_H
#define HP_STREAM_H

#include "hp.h"

#include <microhttpd.h>

/* The bytes a stream holds at most before its writer waits: what a slow
 * client costs in memory. */
#define HP_STREAM_BUFFER (256 * 1024)

struct hp_stream;

/*
 * A stream for the connection conn whose writer waits at most timeout_s
 * seconds for room (a client that reads nothing for that long is gone).
 * Returns the stream with two references (the writer's and the
 * response's), or NULL when out of memory.
 */
struct hp_stream *hp_stream_new(struct MHD_Connection *conn, int timeout_s);

/* The response of unknown size that sends what the stream is given:
 * libmicrohttpd frames it (chunked on HTTP/1.1, close-delimited on 1.0).
 * It holds the response's reference from here; NULL when out of memory
 * (the reference is dropped then too). */
struct MHD_Response *hp_stream_response(struct hp_stream *s);

/*
 * Append data (len bytes) to the stream, waiting while it is full. Returns
 * 0, or -1 when the client is gone, the response was aborted, or no room
 * came within the timeout (then the stream is aborted: the client sees an
 * incomplete response).
 */
int hp_stream_write(struct hp_stream *s, const void *data, size_t len);

/* The writer is done: ok ends the body properly once the buffered bytes
 * are sent; !ok aborts it (libmicrohttpd closes the connection without
 * the last chunk). */
void hp_stream_end(struct hp_stream *s, bool ok);
/* Drop the writer's reference (the request is freed). */
void hp_stream_unref(struct hp_stream *s);

/* The request is over on the connection's side (its completion callback):
 * a waiting or later write fails. Does not drop a reference. */
void hp_stream_gone(struct hp_stream *s);

/* The server is shutting down: from now on hp_stream_stopping() is true
 * and pages' flushes return -1 so long streams end. */
void hp_stream_shutdown(void);
bool hp_stream_stopping(void);

/* Whether the client is known gone, and the bytes handed to the
 * connection so far. */
bool hp_stream_is_gone(struct hp_stream *s);
uint64_t hp_stream_sent(struct hp_stream *s);

#endif
