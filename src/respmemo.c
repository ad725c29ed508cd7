/*
 * respmemo.c - each thread's last buffered response, kept for reuse.
 *
 * Owns: one libmicrohttpd response per thread (a reference to it), a copy
 * of the fields it was made from, and the test for "the same response".
 * May not touch: connections, requests (it only reads their fields and
 * body), the decision to use it (server.c: inline runs only, never while
 * the server closes connections).
 *
 * Why: making a response is a malloc for the response and three for each
 * field (libmicrohttpd copies name and value), then as many frees; for a
 * page whose answer does not change (TechEmpower's /plaintext and /json,
 * a health check, an API's constant) that was about a fifth of hotpub's
 * own instructions per request. Comparing a short body and a few fields
 * costs far less; a page whose answers differ pays one failed compare and
 * a copy of its fields. libmicrohttpd counts the references to a response
 * and never changes a buffer response once made, so one response may be
 * queued on many connections (its examples queue one static response for
 * every request).
 */
#include "respmemo.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* Room for the kept response's fields, in the memo itself: a page whose
 * answers differ each time replaces the memo on every request, and that
 * must not cost a malloc and a free each. More fields are not kept. */
#define FIELDS_ROOM 1024

struct memo {
    struct MHD_Response *r;
    const char *body; /* r's bytes */
    size_t len;
    size_t nfields;
    bool has_content_type;
    char fields[FIELDS_ROOM]; /* "name\0value\0" for each field, in order */
};

static __thread struct memo *mine;
static pthread_key_t key;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void memo_free(void *p)
{
    struct memo *m = p;
    if (m->r)
        MHD_destroy_response(m->r);
    free(m);
}

static void key_make(void)
{
    if (pthread_key_create(&key, memo_free) != 0)
        abort(); /* only when the process is out of keys */
}

static bool same_fields(const struct memo *m, const hp_req *req)
{
    if (m->nfields != req->headers.n ||
        m->has_content_type != req->has_content_type)
        return false;
    const char *f = m->fields;
    for (size_t i = 0; i < req->headers.n; i++) {
        const struct hp_kv *kv = &req->headers.v[i];
        if (strcmp(f, kv->name) != 0)
            return false;
        f += strlen(f) + 1;
        if (strcmp(f, kv->value) != 0)
            return false;
        f += strlen(f) + 1;
    }
    return true;
}

struct MHD_Response *hp_respmemo_find(const hp_req *req)
{
    const struct memo *m = mine;
    if (!m || !m->r || m->len != req->out.len ||
        (m->len && memcmp(m->body, req->out.p, m->len) != 0) ||
        !same_fields(m, req))
        return NULL;
    return m->r;
}

bool hp_respmemo_keep(struct MHD_Response *r, const char *body, size_t len,
                      const hp_req *req)
{
    if (len > HP_RESPMEMO_MAX_BODY)
        return false;
    size_t size = 0;
    for (size_t i = 0; i < req->headers.n; i++)
        size += strlen(req->headers.v[i].name) +
                strlen(req->headers.v[i].value) + 2;
    if (size > FIELDS_ROOM)
        return false;
    struct memo *m = mine;
    if (!m) {
        pthread_once(&once, key_make);
        m = calloc(1, sizeof *m);
        if (!m || pthread_setspecific(key, m) != 0) {
            free(m);
            return false;
        }
        mine = m;
    }
    if (m->r)
        MHD_destroy_response(m->r); /* freed when no connection sends it */
    char *f = m->fields;
    for (size_t i = 0; i < req->headers.n; i++) {
        size_t n = strlen(req->headers.v[i].name) + 1;
        memcpy(f, req->headers.v[i].name, n);
        f += n;
        n = strlen(req->headers.v[i].value) + 1;
        memcpy(f, req->headers.v[i].value, n);
        f += n;
    }
    m->r = r;
    m->body = body;
    m->len = len;
    m->nfields = req->headers.n;
    m->has_content_type = req->has_content_type;
    return true;
}
