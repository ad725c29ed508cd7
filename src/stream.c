/*
 * stream.c - a streamed response body: a bounded ring buffer that a
 * handler thread fills (hp_flush, hp_sse) and libmicrohttpd's content
 * reader drains on the connection's event-loop thread.
 *
 * Owns: the buffer, its lock and condition, the stream's end (done,
 * aborted, gone), parking the connection while the buffer is empty.
 * May not touch: requests, pages, the response's headers (server.c makes
 * and queues the response; request.c has the page API).
 *
 * Why a suspended connection: libmicrohttpd calls the content reader again
 * and again while it returns 0 (busy waiting), so an empty buffer suspends
 * the connection from inside the reader (the documented place for it) and
 * the next write resumes it. Why bounded: a client that reads slowly must
 * cost HP_STREAM_BUFFER bytes, not the whole body: the writer waits for
 * room, at most the idle timeout.
 */
#include "stream.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct hp_stream {
    pthread_mutex_t mu;
    pthread_cond_t room; /* the reader took bytes, or the stream ended */
    struct MHD_Connection *conn;
    int timeout_s;
    size_t head, len; /* ring: len bytes from buf[head] */
    bool parked;      /* the reader suspended the connection: resume it  */
    bool done;        /* the writer ended: end of body after buffered bytes */
    bool aborted;     /* end with an error (no last chunk)                */
    bool gone;        /* the request ended on the connection's side      */
    uint64_t sent;
    atomic_int refs;
    char buf[HP_STREAM_BUFFER];
};

static atomic_bool shutting;

void hp_stream_shutdown(void)
{
    atomic_store(&shutting, true);
}

bool hp_stream_stopping(void)
{
    return atomic_load(&shutting);
}

struct hp_stream *hp_stream_new(struct MHD_Connection *conn, int timeout_s)
{
    struct hp_stream *s = malloc(sizeof *s);
    if (!s)
        return NULL;
    memset(s, 0, offsetof(struct hp_stream, buf));
    pthread_mutex_init(&s->mu, NULL);
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(&s->room, &a);
    pthread_condattr_destroy(&a);
    s->conn = conn;
    s->timeout_s = timeout_s > 0 ? timeout_s : 1;
    atomic_init(&s->refs, 2);
    return s;
}

static void unref(struct hp_stream *s)
{
    if (atomic_fetch_sub(&s->refs, 1) != 1)
        return;
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->room);
    free(s);
}

void hp_stream_unref(struct hp_stream *s)
{
    unref(s);
}

/* The connection is parked while the buffer is empty; anything that gives
 * the reader something to do (bytes, the end) unparks it. Under s->mu. */
static void unpark(struct hp_stream *s)
{
    if (s->parked && !s->gone) {
        s->parked = false;
        MHD_resume_connection(s->conn);
        hp_resumed(); /* a loop without an inter-thread channel */
    }
}

/* libmicrohttpd's content reader, on the event-loop thread. */
static ssize_t reader(void *cls, uint64_t pos, char *out, size_t max)
{
    struct hp_stream *s = cls;
    ssize_t r;
    (void)pos;
    pthread_mutex_lock(&s->mu);
    if (s->len) {
        size_t n = s->len < max ? s->len : max;
        size_t first = HP_STREAM_BUFFER - s->head;
        if (first > n)
            first = n;
        memcpy(out, s->buf + s->head, first);
        memcpy(out + first, s->buf, n - first);
        s->head = (s->head + n) % HP_STREAM_BUFFER;
        s->len -= n;
        s->sent += n;
        pthread_cond_broadcast(&s->room);
        r = (ssize_t)n;
    } else if (s->aborted) {
        r = MHD_CONTENT_READER_END_WITH_ERROR;
    } else if (s->done) {
        r = MHD_CONTENT_READER_END_OF_STREAM;
    } else {
        /* Nothing yet: park rather than be called again at once. */
        s->parked = true;
        MHD_suspend_connection(s->conn);
        r = 0;
    }
    pthread_mutex_unlock(&s->mu);
    return r;
}

static void reader_free(void *cls)
{
    unref(cls);
}

struct MHD_Response *hp_stream_response(struct hp_stream *s)
{
    struct MHD_Response *r = MHD_create_response_from_callback(
        MHD_SIZE_UNKNOWN, 16 * 1024, reader, s, reader_free);
    if (!r)
        unref(s);
    return r;
}

static void deadline_in(struct timespec *t, int seconds)
{
    clock_gettime(CLOCK_MONOTONIC, t);
    t->tv_sec += seconds;
}

int hp_stream_write(struct hp_stream *s, const void *data, size_t len)
{
    const char *p = data;
    struct timespec until;
    int rc = 0;

    pthread_mutex_lock(&s->mu);
    deadline_in(&until, s->timeout_s);
    while (len && rc == 0) {
        if (s->gone || s->aborted || s->done) {
            rc = -1;
            break;
        }
        size_t room = HP_STREAM_BUFFER - s->len;
        if (room == 0) {
            if (pthread_cond_timedwait(&s->room, &s->mu, &until) == ETIMEDOUT) {
                s->aborted = true; /* the reader ends the body with this */
                unpark(s);
                rc = -1;
            }
            continue;
        }
        size_t n = len < room ? len : room;
        size_t tail = (s->head + s->len) % HP_STREAM_BUFFER;
        size_t first = HP_STREAM_BUFFER - tail;
        if (first > n)
            first = n;
        memcpy(s->buf + tail, p, first);
        memcpy(s->buf, p + first, n - first);
        s->len += n;
        p += n;
        len -= n;
        deadline_in(&until, s->timeout_s); /* progress: a fresh timeout */
        unpark(s);
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

void hp_stream_end(struct hp_stream *s, bool ok)
{
    pthread_mutex_lock(&s->mu);
    if (!ok)
        s->aborted = true;
    s->done = true;
    unpark(s);
    pthread_mutex_unlock(&s->mu);
}

void hp_stream_gone(struct hp_stream *s)
{
    pthread_mutex_lock(&s->mu);
    s->gone = true;
    pthread_cond_broadcast(&s->room);
    pthread_mutex_unlock(&s->mu);
}

bool hp_stream_is_gone(struct hp_stream *s)
{
    pthread_mutex_lock(&s->mu);
    bool g = s->gone || s->aborted;
    pthread_mutex_unlock(&s->mu);
    return g;
}

uint64_t hp_stream_sent(struct hp_stream *s)
{
    pthread_mutex_lock(&s->mu);
    uint64_t n = s->sent;
    pthread_mutex_unlock(&s->mu);
    return n;
}
