/*
 * respmemo.h - reusing a thread's last buffered response (respmemo.c):
 * a page that answers the same bytes again (the same fields, the same
 * body) is answered with the libmicrohttpd response made the first time,
 * instead of making, filling and freeing another one.
 */
#ifndef HP_RESPMEMO_H
#define HP_RESPMEMO_H

#include "request.h"

#include <microhttpd.h>

/* Larger bodies are not kept: a thread holds at most this much besides its
 * fields (a page's large answers rarely repeat byte for byte). */
#define HP_RESPMEMO_MAX_BODY 16384

/* This thread's kept response if it carries exactly req's response fields
 * (req->headers, in order, and whether the page set a Content-Type) and
 * body (req->out), else NULL. The kept response stays this thread's: the
 * caller queues it (MHD_queue_response takes the connection's reference)
 * and never destroys it, before this thread makes another. */
struct MHD_Response *hp_respmemo_find(const hp_req *req);

/*
 * Keep r, just made from req's fields and from the len bytes at body (r's
 * own: a MHD_RESPMEM_MUST_FREE buffer), as this thread's response: the
 * caller's reference becomes the thread's
 * (the caller queues r but does not destroy it). The response kept before
 * is let go (freed once no connection sends it). Returns false, keeping
 * nothing and leaving the reference with the caller, for a body over
 * HP_RESPMEMO_MAX_BODY, fields over 1 KiB, or when out of memory.
 */
bool hp_respmemo_keep(struct MHD_Response *r, const char *body, size_t len,
                      const hp_req *req);

#endif
