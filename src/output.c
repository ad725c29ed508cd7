/*
 * output.c - the page API for responses that leave before, or instead of,
 * the buffered body: hp_flush, hp_sse, hp_send_file.
 *
 * Owns: when a page's response becomes a stream (the first hp_flush on a
 * handler thread), what happens to a flush on an event-loop thread (the
 * body stays buffered), the Server-Sent Events format, taking a page's
 * file for sending.
 * May not touch: libmicrohttpd and the request's context: server.c makes
 * and queues the stream (through req->stream_begin, which it sets on a
 * handler thread, so nothing here calls up into the server) and sends the
 * file; stream.c moves the bytes.
 */
#include "request.h"
#include "stream.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int hp_flush(hp_req *req)
{
    HP_REFUSE_NULL_REQ(req, -1);
    if (!req->stream) {
        if (req->send_fd)
            return -1; /* a file answers this request, not the body */
        if (!req->stream_begin) {
            /* An event-loop run cannot wait for a client: the body stays
             * buffered and goes out whole; server.c moves the page to the
             * handler threads for its next runs. */
            req->flushed_inline = true;
            return HP_OK;
        }
        if (req->stream_begin(req) < 0)
            return -1;
    }
    if (req->is_head) { /* headers only: the body is nobody's */
        req->out.len = 0;
        return hp_stream_is_gone(req->stream) || hp_stream_stopping() ? -1
                                                                      : HP_OK;
    }
    int r = hp_stream_write(req->stream, req->out.p, req->out.len);
    req->out.len = 0;
    if (r == 0 && req->stream_alive) /* --handler-timeout starts again */
        req->stream_alive();
    /* Shutting down: what was written is sent, and the loop is told to
     * stop, so a long stream does not hold the drain to its timeout. */
    return r < 0 || hp_stream_stopping() ? -1 : HP_OK;
}

/* One "NAME: value" line per line of value: CR LF, CR and LF all end a
 * line (HTML Living Standard, "Parsing an event stream"). */
static int sse_lines(hp_req *req, const char *name, const char *v)
{
    do {
        size_t n = strcspn(v, "\r\n");
        if (hp_printf(req, "%s: %.*s\n", name, (int)n, v) < 0)
            return -1;
        v += n;
        if (v[0] == '\r' && v[1] == '\n')
            v += 2;
        else if (*v)
            v++;
        else
            break;
    } while (1);
    return 0;
}

int hp_sse(hp_req *req, const char *event, const char *data)
{
    HP_REFUSE_NULL_REQ(req, -1);
    if (event && strpbrk(event, "\r\n"))
        return -1; /* one event name is one line */
    if (!req->stream && !req->send_fd) {
        hp_set_header(req, "Content-Type", "text/event-stream");
        hp_set_header(req, "Cache-Control", "no-cache");
        hp_set_header(req, "X-Accel-Buffering", "no"); /* nginx in front */
    }
    if (event && *event && hp_printf(req, "event: %s\n", event) < 0)
        return -1;
    if (sse_lines(req, "data", data ? data : "") < 0 || hp_puts(req, "\n") < 0)
        return -1;
    return hp_flush(req);
}

int hp_send_file(hp_req *req, const char *path)
{
    if (__builtin_expect(!req || !path, 0)) {
        hp_req_misuse(req, __func__, req ? "path" : "req");
        errno = EINVAL;
        return -1;
    }
    if (req->stream)
        return -1;
    /* A relative name is the page's, as for hp_render: not the server's
     * working directory, and never above the document root. */
    char *own = path[0] == '/' ? NULL : hp_req_page_relative(req, path);
    if (path[0] != '/' && !own)
        return -1;
    if (own)
        path = own;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        free(own);
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        free(own);
        errno = EISDIR;
        return -1;
    }
    char *name = hp_strdup(req, path);
    free(own);
    if (!name) {
        close(fd);
        return -1;
    }
    if (req->send_fd)
        close(req->send_fd - 1); /* the last call wins */
    req->send_fd = fd + 1;
    req->send_path = name;
    return HP_OK;
}
