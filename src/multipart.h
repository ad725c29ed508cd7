/*
 * multipart.h - an incremental multipart/form-data decoder (multipart.c):
 * the body is handed over in pieces as it arrives, and each named part's
 * content is passed on in pieces, so a large upload costs a fixed amount
 * of memory. It reads exactly what form.c's hp_form_multipart reads (RFC
 * 7578, RFC 2046 5.1.1), with two bounds of its own: a part's header block
 * of at most HP_MP_HEAD_MAX bytes (more: malformed), and at most
 * HP_MP_PAD_MAX bytes of transport padding after a boundary (more: the
 * line is content, not a delimiter).
 *
 * Pure: no I/O, no global state, no allocation; what to do with a part is
 * the sink's (upload.c spools files and keeps fields).
 */
#ifndef HP_MULTIPART_H
#define HP_MULTIPART_H

#include "form.h"

#include <stdbool.h>
#include <stddef.h>

#define HP_MP_HEAD_MAX (16 * 1024)
#define HP_MP_PAD_MAX 1024
#define HP_MP_BOUNDARY_MAX 70
#define HP_MP_WINDOW 4096 /* >= 4 + boundary + 2 + padding + 2 */

/* What the decoder found. Each returns 0, or an HTTP status that stops
 * the decoding (hp_mp_feed returns it from then on). A part without a
 * name is skipped: no call. */
struct hp_mp_sink {
    /* A named part's header block was read; part's strings are valid
     * until end. */
    int (*begin)(void *arg, const struct hp_form_part *part);
    /* The next n bytes of its content (n > 0). */
    int (*data)(void *arg, const char *p, size_t n);
    /* Its content is complete. */
    int (*end)(void *arg);
    void *arg;
};

enum hp_mp_state {
    HP_MP_PREAMBLE,
    HP_MP_HEAD,
    HP_MP_CONTENT,
    HP_MP_SKIP,
    HP_MP_EPILOGUE
};

/* The decoder's state: zero-initialise nothing, call hp_mp_init. About
 * 37 KiB: allocate it. */
struct hp_mp {
    struct hp_mp_sink sink;
    int status; /* 0, or the status that stopped it (sticky) */
    enum hp_mp_state state;
    char delim[4 + HP_MP_BOUNDARY_MAX + 1]; /* "\r\n--" boundary */
    size_t dlen;
    size_t wlen; /* bytes not yet classified as delimiter or not */
    char win[HP_MP_WINDOW];
    size_t hlen; /* the current part's header block so far */
    char head[HP_MP_HEAD_MAX + 4];
    char head_out[HP_MP_HEAD_MAX + 8];
};

/* Start decoding a body of Content-Type content_type. Returns HP_FORM_OK,
 * or HP_FORM_MALFORMED when it has no usable boundary parameter. */
int hp_mp_init(struct hp_mp *m, const char *content_type,
               const struct hp_mp_sink *sink);
/* The next n bytes of the body. Returns 0 or the stopping status. */
int hp_mp_feed(struct hp_mp *m, const char *p, size_t n);
/* The body is complete: 0 if it was well-formed up to its close
 * delimiter, else the status (HP_FORM_MALFORMED when the close delimiter
 * never came). */
int hp_mp_finish(struct hp_mp *m);

#endif
