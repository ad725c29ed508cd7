/*
 * multipart.c - multipart/form-data decoded as the body arrives (RFC 7578,
 * RFC 2046 5.1.1), for uploads that must not sit whole in memory.
 *
 * Owns: the decoder's states, finding delimiter lines across pieces, a
 * part's header block. May not touch: files, requests, allocation (the
 * sink, upload.c, decides what a part becomes); the header block's fields
 * are read by form.c (hp_form_part_head), so both decoders agree.
 *
 * How: the body is read as if it began with CRLF, so the first delimiter
 * ("--boundary" at the very start) is found like every other one
 * ("CRLF--boundary"). Bytes that could still be the start of a delimiter
 * line stay in a small window until the next piece tells; everything
 * before them is classified and passed on at once.
 */
#define _GNU_SOURCE /* memmem */
#include "multipart.h"

#include <string.h>

int hp_mp_init(struct hp_mp *m, const char *content_type,
               const struct hp_mp_sink *sink)
{
    char b[HP_MP_BOUNDARY_MAX + 1];
    size_t blen = content_type ? hp_form_boundary(content_type, b) : 0;
    m->sink = *sink;
    m->state = HP_MP_PREAMBLE;
    m->hlen = 0;
    memcpy(m->win, "\r\n", 2); /* the body as if it began with CRLF */
    m->wlen = 2;
    memcpy(m->delim, "\r\n--", 4);
    memcpy(m->delim + 4, b, blen);
    m->dlen = 4 + blen;
    m->status = blen ? 0 : HP_FORM_MALFORMED;
    return m->status;
}

/* The header block h[0..n) is complete: begin the part, or skip it. */
static int head_done(struct hp_mp *m, size_t n)
{
    struct hp_form_part part;
    if (hp_form_part_head(m->head, n, m->head_out, &part) != HP_FORM_OK)
        return HP_FORM_MALFORMED;
    if (!part.name) {
        m->state = HP_MP_SKIP; /* nameless: skipped, as PHP does */
        return 0;
    }
    m->state = HP_MP_CONTENT;
    return m->sink.begin(m->sink.arg, &part);
}

/* Bytes of a part while its header block is incomplete. */
static int head_bytes(struct hp_mp *m, const char *p, size_t n)
{
    size_t old = m->hlen, room = sizeof m->head - m->hlen;
    size_t take = n < room ? n : room;
    memcpy(m->head + m->hlen, p, take);
    m->hlen += take;
    if (m->hlen >= 2 && m->head[0] == '\r' && m->head[1] == '\n') {
        m->state = HP_MP_SKIP; /* no header fields, so no name */
        return 0;
    }
    size_t from = old >= 3 ? old - 3 : 0;
    const char *blank = memmem(m->head + from, m->hlen - from, "\r\n\r\n", 4);
    if (!blank) /* a header block past HP_MP_HEAD_MAX: malformed */
        return m->hlen > HP_MP_HEAD_MAX || take < n ? HP_FORM_MALFORMED : 0;
    size_t hend = (size_t)(blank - m->head), rest = m->hlen - hend - 4;
    int r = head_done(m, hend);
    if (r == 0 && rest && m->state == HP_MP_CONTENT)
        r = m->sink.data(m->sink.arg, blank + 4, rest);
    if (r == 0 && take < n && m->state == HP_MP_CONTENT)
        r = m->sink.data(m->sink.arg, p + take, n - take);
    return r;
}

/* Bytes classified as content (not a delimiter), for the current state. */
static int emit(struct hp_mp *m, const char *p, size_t n)
{
    if (!n)
        return 0;
    switch (m->state) {
    case HP_MP_HEAD:
        return head_bytes(m, p, n);
    case HP_MP_CONTENT:
        return m->sink.data(m->sink.arg, p, n);
    default: /* preamble, a skipped part, the epilogue */
        return 0;
    }
}

/* A delimiter line ended the current part (close: it was the last). */
static int part_over(struct hp_mp *m, bool close)
{
    int r = 0;
    if (m->state == HP_MP_HEAD && m->hlen) {
        /* RFC 2046's body-part is headers [CRLF content]: header lines
         * that end right at the delimiter are a part without content. */
        if (m->hlen < 2 || m->head[m->hlen - 2] != '\r' ||
            m->head[m->hlen - 1] != '\n')
            return HP_FORM_MALFORMED;
        r = head_done(m, m->hlen);
    }
    if (r == 0 && m->state == HP_MP_CONTENT)
        r = m->sink.end(m->sink.arg);
    m->state = close ? HP_MP_EPILOGUE : HP_MP_HEAD;
    m->hlen = 0;
    return r;
}

/*
 * What follows a delimiter match whose boundary ends at win[at]: 2 the
 * close delimiter, 1 a delimiter line (*next: after its CRLF), 0 not a
 * delimiter line, -1 cannot tell yet.
 */
static int classify(const struct hp_mp *m, size_t at, size_t *next)
{
    const char *w = m->win;
    if (m->wlen - at < 2)
        return -1;
    if (w[at] == '-' && w[at + 1] == '-')
        return 2;
    size_t q = at;
    while (q < m->wlen && (w[q] == ' ' || w[q] == '\t'))
        if (++q - at > HP_MP_PAD_MAX)
            return 0;
    if (m->wlen - q < 2)
        return -1;
    if (w[q] != '\r' || w[q + 1] != '\n')
        return 0;
    *next = q + 2;
    return 1;
}

/* Classify what the window holds; final: no more bytes will come. */
static int scan(struct hp_mp *m, bool final)
{
    size_t i = 0, keep = m->dlen - 1;
    int r = 0;
    while (r == 0 && m->state != HP_MP_EPILOGUE) {
        const char *c = memmem(m->win + i, m->wlen - i, m->delim, m->dlen);
        if (!c) {
            size_t upto = m->wlen - i > keep && !final ? m->wlen - keep
                          : final                      ? m->wlen
                                                       : i;
            r = emit(m, m->win + i, upto - i);
            i = upto;
            break;
        }
        size_t at = (size_t)(c - m->win), next = 0;
        int k = classify(m, at + m->dlen, &next);
        if (k < 0 && !final) {
            r = emit(m, m->win + i, at - i);
            i = at;
            break;
        }
        if (k <= 0) { /* the boundary's text inside content */
            r = emit(m, m->win + i, at + 1 - i);
            i = at + 1;
            continue;
        }
        r = emit(m, m->win + i, at - i);
        if (r == 0)
            r = part_over(m, k == 2);
        i = k == 2 ? m->wlen : next;
    }
    if (m->state == HP_MP_EPILOGUE)
        i = m->wlen; /* ignored */
    memmove(m->win, m->win + i, m->wlen - i);
    m->wlen -= i;
    return r;
}

int hp_mp_feed(struct hp_mp *m, const char *p, size_t n)
{
    while (n && m->status == 0) {
        if (m->state == HP_MP_EPILOGUE)
            return 0;
        size_t room = HP_MP_WINDOW - m->wlen;
        size_t k = n < room ? n : room;
        memcpy(m->win + m->wlen, p, k);
        m->wlen += k;
        p += k;
        n -= k;
        m->status = scan(m, false);
    }
    return m->status;
}

int hp_mp_finish(struct hp_mp *m)
{
    if (m->status == 0 && m->state != HP_MP_EPILOGUE)
        m->status = scan(m, true);
    if (m->status == 0 && m->state != HP_MP_EPILOGUE)
        m->status = HP_FORM_MALFORMED; /* no (closing) delimiter */
    return m->status;
}
