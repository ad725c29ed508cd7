/*
 * request.h - the request object shared by request.c (the page API) and
 * server.c (which fills it from libmicrohttpd and turns it into a response).
 * Pages never see this layout; they get an opaque hp_req.
 */
#ifndef HP_REQUEST_H
#define HP_REQUEST_H

#include "hp.h"
#include "form.h"

#include <microhttpd.h>

struct hp_kv {
    const char *name, *value;
};

struct hp_kvlist {
    struct hp_kv *v;
    size_t n, cap;
};

struct hp_alloc_block;

#define HP_REQ_ARENA 1024 /* bytes of request memory inside hp_req */

/*
 * A transactional resource a request has taken (a pooled database
 * connection): it takes part in the request's outcome as the outermost
 * participant: committed before any module's commit hook, rolled back
 * first when anything fails, released after every module's release.
 */
struct hp_resource {
    int (*commit)(void *arg);   /* HP_OK, or fail the request (500)     */
    void (*rollback)(void *arg);
    void (*release)(void *arg); /* always called, exactly once          */
    void *arg;
    struct hp_resource *next;
};

struct hp_req {
    struct MHD_Connection *conn;
    const char *method;  /* owned by libmicrohttpd, valid for the request */
    const char *path;
    const char *version;
    char remote[64];            /* filled on first use (hp_req_remote) */
    double started;

    const char *query;          /* raw, without '?'; "" when absent   */
    const char *authority;      /* host[:port] of an absolute-form
                                   target (RFC 9112 §3.2.2), else NULL */
    bool secure;                /* arrived over TLS (HTTPS): the TLS
                                   layer sets it; session cookies then
                                   carry Secure                        */
    struct hp_sess *session;    /* session.c's, from first use        */
    struct hp_pinset pins;      /* page + application chain, pinned   */
    hp_version *served_by;      /* module whose handler ran           */
    hp_version *current_module; /* module whose code is running now   */

    /* request body, buffered up to max_body */
    struct hp_buf body;
    uint64_t body_bytes;        /* received so far, also when not kept */
    bool body_too_large;
    bool is_head;

    /* query fields, then form fields (hp_req_parse_form, form.c) */
    bool args_parsed;
    int args_status;            /* hp_req_parse_form's result          */
    struct hp_fields args;
    size_t args_from_query;     /* args.v[0..this) came from the query */
    bool cookies_parsed;        /* on first hp_cookie                  */
    struct hp_fields cookies;

    /* response */
    int status;
    struct hp_buf out;
    struct hp_kvlist headers;   /* strings from hp_alloc */
    bool has_content_type;

    struct hp_alloc_block *blocks;
    size_t arena_used;             /* bytes of arena[] hp_alloc handed out */
    struct hp_kvlist values;       /* hp_req_set: key -> (void *)       */
    struct hp_resource *resources; /* newest first                      */
    int forced_status;             /* e.g. 503 when a pool was exhausted */
    /* Dev mode, but the Host is not this server's (a DNS-rebinding page,
     * docs/security.md): no diagnostics in the response (server.c sets it
     * before each run; tplcache.c reads it). */
    bool foreign_host;
    bool enlisted; /* a resource was ever enlisted (the page uses a pool) */

    /* the application toolkit (json.c, tplcache.c, publish.c) */
    bool json_parsed;        /* hp_json_body ran                      */
    json_t *json;            /* its value (a reference we own)        */
    const char *json_err;    /* why it is NULL (hp_alloc'd), or NULL  */
    struct hp_tpl_pins *tpl; /* templates this request has used       */
    const char **params;     /* path parameters (hp_alloc'd)          */
    unsigned nparams;
    /* Responses that leave before the handler returns (output.c). */
    /* server.c's, set on a handler thread (NULL: hp_flush buffers): commit
     * the response so far as a stream on the request's connection. 0 with
     * req->stream set, or -1 (out of memory; or --max-streams streams are
     * open: then the request is failed with 503). */
    int (*stream_begin)(hp_req *req);
    void (*stream_alive)(void); /* after each flush: the run is not stuck */
    bool flushed_inline;      /* hp_flush on an event-loop run: buffered    */
    struct hp_stream *stream; /* committed and streaming (server.c's)       */
    bool detached;            /* fields copied: the connection may go      */
    bool stream_refused;      /* over --max-streams: answered 503          */
    struct hp_kvlist fields;  /* the request's header fields, if detached  */
    int send_fd;              /* hp_send_file's file + 1; 0: none           */
    const char *send_path;    /* its name, for the Content-Type             */

    /* Uploads (upload.c): spooled file parts, removed at cleanup. */
    struct hp_upload *upload;

    /* Last and large (PATH_MAX): hp_req_init leaves it to the resolver
     * rather than clearing 4 KiB per request. */
    struct hp_target target;
    /* The first HP_REQ_ARENA bytes hp_alloc hands out (and the first
     * vectors of the header lists): a request of a fast page then makes
     * no malloc of its own for its path segments and response fields. Not
     * cleared: hp_alloc's memory never was. */
    max_align_t arena[HP_REQ_ARENA / sizeof(max_align_t)];
};

/* Enlist a resource in the request's outcome (see struct hp_resource). */
void hp_req_enlist(hp_req *req, struct hp_resource *r);
/* Enlist r as the oldest resource: its release runs after every other
 * resource's, the database's real COMMIT included (a session's lock must
 * outlive the commit of what was written under it: session.c). */
void hp_req_enlist_last(hp_req *req, struct hp_resource *r);
/* Release every enlisted resource (idempotent). */
void hp_req_release_resources(hp_req *req);

/* Clears req but its target and arena (leaves `started` to the caller, who
 * has the time of the request's head). */
void hp_req_init(hp_req *req, struct MHD_Connection *conn, const char *method,
                 const char *path, const char *version);
void hp_req_cleanup(hp_req *req);
/*
 * Copy what the page API reads from libmicrohttpd (header fields, cookies,
 * the client's address, method, path, version) into the request, which
 * then no longer reads its connection: a streamed response's handler may
 * run on after libmicrohttpd has freed the connection (client gone). Call
 * while the connection is suspended. Idempotent.
 */
void hp_req_detach(hp_req *req);
/* A field value as libmicrohttpd keeps it, without the whitespace after
 * it (RFC 9110 §5.5; a copy in the request's memory when there is any):
 * what hp_header returns. NULL stays NULL. */
const char *hp_req_field_value(hp_req *req, const char *v);
/* The client's address as text ("" if unknown). */
const char *hp_req_remote(hp_req *req);
/* A request header field by name, as libmicrohttpd holds it for conn (a
 * Cookie field under the edge's name for it, framing.h). */
const char *hp_req_field(struct MHD_Connection *conn, const char *name);
/*
 * Decode the query string, then the buffered body if it is a form
 * (urlencoded or multipart/form-data), into the request's arguments; at
 * most max_fields of them in all (0: no cap). Idempotent. Returns 0, 400
 * for a malformed multipart body, 413 past max_fields, 500 out of memory:
 * the status to answer with instead of running the handler.
 */
int hp_req_parse_form(hp_req *req, int max_fields);
/* Add a response header without validation (server-generated values). */
void hp_req_add_header(hp_req *req, const char *name, const char *value);
/*
 * A page's mistake the API can see cheaply (a NULL where hotpub.h wants a
 * pointer, req itself NULL): one error line naming the function and the
 * page, "PAGE [HANDLER]: FN: WHAT is NULL (refused)"; the caller then
 * returns its documented failure value. Never a crash. req may be NULL.
 * HP_REFUSE_NULL is the check: one branch when all is well.
 */
void hp_req_misuse(const hp_req *req, const char *fn, const char *what)
    __attribute__((cold));
#define HP_REFUSE_NULL(req, p, what, ret)                                      \
    do {                                                                       \
        if (__builtin_expect(!(req) || !(p), 0)) {                             \
            hp_req_misuse((req), __func__, (req) ? (what) : "req");            \
            return ret;                                                        \
        }                                                                      \
    } while (0)
#define HP_REFUSE_NULL_REQ(req, ret) HP_REFUSE_NULL(req, req, "req", ret)
/* Write the short standard body for an error status. */
void hp_req_error_body(hp_req *req, int status, const char *detail_html);
const char *hp_status_text(int status);

/* json.c: drop the parsed body (hp_req_cleanup). */
void hp_req_json_free(hp_req *req);
/* tplcache.c: unpin the templates the request used (hp_req_cleanup). */
void hp_req_tpl_release(hp_req *req);
/* tplcache.c: the paths of up to max templates the request rendered, into
 * paths (valid while the request holds them); returns how many. */
size_t hp_req_tpl_paths(const hp_req *req, const char **paths, size_t max);
/*
 * tplcache.c: hp_send_file's relative path name, resolved as hp_render
 * resolves a template name: against the directory of the calling page (or
 * module), "." and ".." merged. A malloc'd path, or NULL with errno set:
 * EACCES when it would leave the document root, by name or once its
 * symlinks are resolved (as for templates and pages); ENOENT when it does
 * not exist; ENOSYS outside the server (no document root).
 */
char *hp_req_page_relative(const hp_req *req, const char *name);

/* publish.c: run hooks and handler; returns HP_OK or an error status. */
int hp_publish_run(hp_req *req);
/* 0 if the request's handler exists somewhere on its chain. */
int hp_publish_find(hp_req *req, hp_version **from);

#endif
