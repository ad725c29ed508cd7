/*
 * request.c - the page-facing API: everything declared in hotpub.h that a
 * handler calls on its hp_req.
 *
 * Owns: arguments and cookies (decoded by form.c), request-scoped memory, the
 * response body buffer and response headers as a page sets them.
 * May not touch: the module cache, the resolver, or sending anything: the
 * response is only assembled here; server.c sends it.
 */
#include "request.h"
#include "framing.h"
#include "upload.h"

#include <ctype.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct hp_alloc_block {
    struct hp_alloc_block *next;
    max_align_t data[];
};

/* From the request's own arena, or NULL when it has no room for size. */
static void *arena_alloc(hp_req *req, size_t size)
{
    size_t align = sizeof(max_align_t);
    if (size > sizeof req->arena)
        return NULL;
    size_t need = (size + align - 1) / align * align;
    if (need > sizeof req->arena - req->arena_used)
        return NULL;
    void *p = (char *)req->arena + req->arena_used;
    req->arena_used += need;
    return p;
}

static bool in_arena(const hp_req *req, const void *p)
{
    const char *a = (const char *)req->arena;
    return (const char *)p >= a && (const char *)p < a + sizeof req->arena;
}

static void kv_free(hp_req *req, struct hp_kvlist *l)
{
    if (!in_arena(req, l->v))
        free(l->v);
    l->v = NULL;
    l->n = l->cap = 0;
}

void hp_req_init(hp_req *req, struct MHD_Connection *conn, const char *method,
                 const char *path, const char *version)
{
    memset(req, 0, offsetof(hp_req, target));
    req->target.kind = HP_T_NOTFOUND;
    req->target.path[0] = req->target.handler[0] = '\0';
    req->conn = conn;
    req->method = method;
    req->path = path;
    req->version = version;
    req->status = 200;
    req->is_head = strcmp(method, "HEAD") == 0;
}

void hp_req_cleanup(hp_req *req)
{
    hp_req_json_free(req);
    hp_req_tpl_release(req);
    if (req->send_fd) /* a file the request failed before sending */
        close(req->send_fd - 1);
    req->send_fd = 0;
    hp_upload_cleanup(req);
    for (struct hp_alloc_block *b = req->blocks, *n; b; b = n) {
        n = b->next;
        free(b);
    }
    req->blocks = NULL;
    free(req->args.v);
    free(req->cookies.v);
    kv_free(req, &req->headers);
    kv_free(req, &req->values);
    kv_free(req, &req->fields);
    hp_buf_free(&req->body);
    hp_buf_free(&req->out);
}

/* ---- a page's mistakes ------------------------------------------------- */

void hp_req_misuse(const hp_req *req, const char *fn, const char *what)
{
    long skipped = 0;
    const char *page = !req                 ? NULL
                       : req->current_module ? req->current_module->path
                                             : req->target.path;
    if (!hp_log_misuse_allowed(page, fn, req ? what : "req", &skipped))
        return;
    char more[64] = "";
    if (skipped)
        snprintf(more, sizeof more, " (%ld more like it in the last minute)",
                 skipped);
    if (!req) {
        hp_log_error("%s: req is NULL (refused: a page's mistake)%s", fn, more);
        return;
    }
    hp_log_error("%s [%s]: %s: %s is NULL (refused: a page's mistake)%s",
                 page, req->target.handler, fn, what, more);
}

/* ---- request-scoped memory --------------------------------------------- */

void *hp_alloc(hp_req *req, size_t size)
{
    HP_REFUSE_NULL_REQ(req, NULL);
    void *p = arena_alloc(req, size);
    if (p)
        return p;
    if (size > SIZE_MAX - sizeof(struct hp_alloc_block))
        return NULL;
    struct hp_alloc_block *b = malloc(sizeof *b + size);
    if (!b)
        return NULL;
    b->next = req->blocks;
    req->blocks = b;
    return b->data;
}

char *hp_strdup(hp_req *req, const char *s)
{
    HP_REFUSE_NULL(req, s, "s", NULL);
    size_t n = strlen(s) + 1;
    char *p = hp_alloc(req, n);
    if (p)
        memcpy(p, s, n);
    return p;
}

char *hp_sprintf(hp_req *req, const char *fmt, ...)
{
    va_list ap, ap2;
    HP_REFUSE_NULL(req, fmt, "fmt", NULL);
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *p = n < 0 ? NULL : hp_alloc(req, (size_t)n + 1);
    if (p)
        vsnprintf(p, (size_t)n + 1, fmt, ap2);
    va_end(ap2);
    return p;
}

/* ---- per-request values -------------------------------------------------- */

static void kv_add(hp_req *req, struct hp_kvlist *l, const char *name,
                   const char *value);

int hp_req_set(hp_req *req, const char *key, void *value)
{
    HP_REFUSE_NULL(req, key, "key", -1);
    for (size_t i = 0; i < req->values.n; i++) {
        if (strcmp(req->values.v[i].name, key) == 0) {
            req->values.v[i].value = value;
            return HP_OK;
        }
    }
    char *k = hp_strdup(req, key);
    if (!k)
        return -1;
    kv_add(req, &req->values, k, (const char *)value);
    return HP_OK;
}

void *hp_req_get(hp_req *req, const char *key)
{
    HP_REFUSE_NULL(req, key, "key", NULL);
    for (size_t i = 0; i < req->values.n; i++)
        if (strcmp(req->values.v[i].name, key) == 0)
            return (void *)(uintptr_t)req->values.v[i].value; /* ours */
    return NULL;
}

/* ---- request data ------------------------------------------------------- */

const char *hp_method(hp_req *req)
{
    HP_REFUSE_NULL_REQ(req, NULL);
    return req->method;
}

const char *hp_path(hp_req *req)
{
    HP_REFUSE_NULL_REQ(req, NULL);
    return req->path;
}

const char *hp_query(hp_req *req)
{
    HP_REFUSE_NULL_REQ(req, NULL);
    return req->query ? req->query : "";
}

const char *hp_filename(hp_req *req)
{
    HP_REFUSE_NULL_REQ(req, NULL);
    return req->target.path;
}

const char *hp_handler_name(hp_req *req)
{
    HP_REFUSE_NULL_REQ(req, NULL);
    return req->target.handler;
}

/* Filled by publish.c's routing before the handler runs. */
const char *hp_path_param(hp_req *req, unsigned i)
{
    HP_REFUSE_NULL_REQ(req, NULL);
    return i < req->nparams ? req->params[i] : NULL;
}

unsigned hp_path_param_count(hp_req *req)
{
    HP_REFUSE_NULL_REQ(req, 0);
    return req->nparams;
}

const char *hp_req_remote(hp_req *req)
{
    if (req->remote[0])
        return req->remote;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (!ci || !ci->client_addr)
        return req->remote;
    const struct sockaddr *sa = ci->client_addr;
    socklen_t len = sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                              : sizeof(struct sockaddr_in);
    if (getnameinfo(sa, len, req->remote, sizeof req->remote, NULL, 0,
                    NI_NUMERICHOST) != 0)
        req->remote[0] = '\0';
    return req->remote;
}

const char *hp_remote_addr(hp_req *req)
{
    HP_REFUSE_NULL_REQ(req, NULL);
    return hp_req_remote(req);
}

/* RFC 9110 §5.5: a field value excludes the whitespace around it.
 * libmicrohttpd 0.9.75 skips the leading whitespace and keeps the
 * trailing: a value that ends in SP or HTAB is copied without it (rare:
 * clients do not send it), every other one is returned as it is. */
const char *hp_req_field_value(hp_req *req, const char *v)
{
    size_t n = v ? strlen(v) : 0;
    if (!n || (v[n - 1] != ' ' && v[n - 1] != '\t'))
        return v;
    while (n && (v[n - 1] == ' ' || v[n - 1] == '\t'))
        n--;
    char *c = hp_alloc(req, n + 1);
    if (!c)
        return v;
    memcpy(c, v, n);
    c[n] = '\0';
    return c;
}

const char *hp_header(hp_req *req, const char *name)
{
    HP_REFUSE_NULL(req, name, "name", NULL);
    /* RFC 9112 §3.2.2: for an absolute-form target the target's authority
     * is the host, whatever the Host field says. */
    if (req->authority && strcasecmp(name, "Host") == 0)
        return req->authority;
    if (req->detached) {
        for (size_t i = 0; name && i < req->fields.n; i++)
            if (strcasecmp(req->fields.v[i].name, name) == 0)
                return req->fields.v[i].value;
        return NULL;
    }
    return hp_req_field_value(req, hp_req_field(req->conn, name));
}

const char *hp_req_field(struct MHD_Connection *conn, const char *name)
{
    /* The edge renamed Cookie fields on their way to libmicrohttpd
     * (framing.h); a connection it does not watch has them as sent. */
    char buf[256];
    const char *wire = hp_frame_wire_name(name, buf, sizeof buf);
    const char *v = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, wire);
    if (!v && wire != name)
        v = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, name);
    return v;
}

static enum MHD_Result collect_cookies(void *cls, enum MHD_ValueKind kind,
                                       const char *key, const char *value)
{
    hp_req *req = cls;
    if (!key || !value ||
        (strcasecmp(key, "Cookie") != 0 &&
         !(hp_frame_renamed(key) && key[6] == '\0')))
        return MHD_YES;
    size_t n = strlen(value);
    char *out = hp_alloc(req, n + 1);
    if (out)
        hp_cookie_parse(value, n, out, &req->cookies);
    return MHD_YES;
}

/* Every Cookie field, parsed on first use. Names match exactly first (RFC
 * 6265 names are case-sensitive), then case-insensitively, as the
 * libmicrohttpd lookup hotpub used before did. */
const char *hp_cookie(hp_req *req, const char *name)
{
    HP_REFUSE_NULL(req, name, "name", NULL);
    if (!req->cookies_parsed) {
        req->cookies_parsed = true;
        MHD_get_connection_values(req->conn, MHD_HEADER_KIND, collect_cookies,
                                  req);
    }
    const struct hp_field *f = hp_fields_find(&req->cookies, name);
    if (f)
        return f->value;
    for (size_t i = 0; i < req->cookies.n; i++)
        if (strcasecmp(req->cookies.v[i].name, name) == 0)
            return req->cookies.v[i].value;
    return NULL;
}

const char *hp_body(hp_req *req, size_t *len)
{
    if (__builtin_expect(!req, 0)) {
        if (len)
            *len = 0;
        hp_req_misuse(req, __func__, "req");
        return NULL;
    }
    if (len)
        *len = req->body.len;
    return req->body.p ? req->body.p : "";
}

static enum MHD_Result copy_field(void *cls, enum MHD_ValueKind kind,
                                  const char *key, const char *value)
{
    hp_req *req = cls;
    char *k = key ? hp_strdup(req, key) : NULL;
    if (k)
        hp_frame_client_name(k); /* "Cookie", as sent (framing.h) */
    const char *t = hp_req_field_value(req, value ? value : "");
    char *v = k ? hp_strdup(req, t ? t : "") : NULL;
    if (v)
        kv_add(req, &req->fields, k, v);
    return MHD_YES;
}

static const char *keep(hp_req *req, const char *s)
{
    const char *c = s ? hp_strdup(req, s) : NULL;
    return c ? c : s;
}

void hp_req_detach(hp_req *req)
{
    if (req->detached)
        return;
    hp_req_remote(req);
    hp_cookie(req, ""); /* parsed now, from the connection's fields */
    MHD_get_connection_values(req->conn, MHD_HEADER_KIND, copy_field, req);
    req->method = keep(req, req->method);
    req->path = keep(req, req->path);
    req->version = keep(req, req->version);
    req->detached = true;
}

/* The first vector of a list comes from the request's arena when it has
 * room; a list that outgrows it moves to the heap. */
static void kv_add(hp_req *req, struct hp_kvlist *l, const char *name,
                   const char *value)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 8;
        struct hp_kv *v = l->v ? NULL : arena_alloc(req, cap * sizeof *v);
        if (!v && in_arena(req, l->v)) {
            v = hp_xmalloc(cap * sizeof *v);
            memcpy(v, l->v, l->n * sizeof *v);
        } else if (!v) {
            v = hp_xrealloc(l->v, cap * sizeof *v);
        }
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n].name = name;
    l->v[l->n].value = value;
    l->n++;
}

/* Handlers run after hp_req_parse_form (server.c); this covers any other
 * caller, without a cap. */
static void parse_args(hp_req *req)
{
    if (!req->args_parsed)
        hp_req_parse_form(req, 0);
}

const char *hp_arg_n(hp_req *req, const char *name, unsigned i)
{
    HP_REFUSE_NULL(req, name, "name", NULL);
    parse_args(req);
    for (size_t k = 0; k < req->args.n; k++)
        if (strcmp(req->args.v[k].name, name) == 0 && i-- == 0)
            return req->args.v[k].value;
    return NULL;
}

const char *hp_arg(hp_req *req, const char *name)
{
    HP_REFUSE_NULL(req, name, "name", NULL);
    return hp_arg_n(req, name, 0);
}

unsigned hp_arg_count(hp_req *req, const char *name)
{
    unsigned n = 0;
    HP_REFUSE_NULL(req, name, "name", 0);
    parse_args(req);
    for (size_t k = 0; k < req->args.n; k++)
        n += strcmp(req->args.v[k].name, name) == 0;
    return n;
}

/* ---- form bodies -------------------------------------------------------- */

/* Query fields first, so a form field never shadows the URL's. Each source
 * decodes into one block of its own size (form.c says why that suffices);
 * a body that is not a form costs nothing. */
static int parse_fields(hp_req *req)
{
    const char *q = req->query ? req->query : "";
    size_t qlen = strlen(q);
    if (qlen) {
        char *out = hp_alloc(req, qlen + 1);
        if (!out)
            return HP_FORM_NOMEM;
        int r = hp_form_urlencoded(q, qlen, out, &req->args);
        req->args_from_query = req->args.n;
        if (r != HP_FORM_OK)
            return r;
    }
    if (req->upload) /* decoded as it arrived (upload.c) */
        return hp_upload_fields(req, &req->args);
    if (!req->body.len)
        return HP_FORM_OK;
    const char *ct = hp_header(req, "Content-Type");
    if (hp_form_type(ct) == HP_FORM_NONE)
        return HP_FORM_OK;
    char *out = hp_alloc(req, req->body.len + 1);
    if (!out)
        return HP_FORM_NOMEM;
    return hp_form_body(ct, req->body.p, req->body.len, out, &req->args);
}

int hp_req_parse_form(hp_req *req, int max_fields)
{
    if (req->args_parsed)
        return req->args_status;
    req->args_parsed = true;
    req->args.max = max_fields > 0 ? (size_t)max_fields : 0;
    req->args_status = parse_fields(req);
    return req->args_status;
}

/* ---- the response ------------------------------------------------------- */

int hp_write(hp_req *req, const void *data, size_t len)
{
    HP_REFUSE_NULL(req, data || !len, "data", -1);
    return hp_buf_append(&req->out, data, len) < 0 ? -1 : HP_OK;
}

int hp_puts(hp_req *req, const char *s)
{
    HP_REFUSE_NULL(req, s, "s", -1);
    return hp_write(req, s, strlen(s));
}

int hp_vprintf(hp_req *req, const char *fmt, va_list ap)
{
    HP_REFUSE_NULL(req, fmt, "fmt", -1);
    return hp_buf_vprintf(&req->out, fmt, ap) < 0 ? -1 : HP_OK;
}

int hp_printf(hp_req *req, const char *fmt, ...)
{
    va_list ap;
    HP_REFUSE_NULL(req, fmt, "fmt", -1);
    va_start(ap, fmt);
    int r = hp_vprintf(req, fmt, ap);
    va_end(ap);
    return r;
}

int hp_write_html(hp_req *req, const char *s)
{
    HP_REFUSE_NULL_REQ(req, -1);
    return hp_buf_html(&req->out, s ? s : "") < 0 ? -1 : HP_OK;
}

/*
 * A 1xx is never a final status (RFC 9110 15.2): sent as one, the client
 * would wait for the real answer. Logged at most once a minute per
 * process, since a page that does it does it on every request.
 */
static void interim_refused(hp_req *req, int code)
{
    static _Atomic long long last;
    long long now = (long long)time(NULL), prev = atomic_load(&last);
    if (prev && now - prev < 60)
        return;
    if (!atomic_compare_exchange_strong(&last, &prev, now))
        return;
    hp_log_error("%s [%s]: hp_status(%d) ignored: a 1xx status is never the "
                 "final status of a response (RFC 9110 15.2)",
                 req->current_module ? req->current_module->path
                                     : req->target.path,
                 req->target.handler, code);
}

void hp_status(hp_req *req, int code)
{
    HP_REFUSE_NULL_REQ(req, );
    if (code >= 100 && code <= 199)
        interim_refused(req, code);
    else if (code >= 200 && code <= 599)
        req->status = code;
}

/* A field value a page may send: no control character but HTAB (CR and LF
 * would inject fields; the others RFC 9110 §5.5 forbids too). *len: its
 * length. */
static bool header_safe(const char *s, size_t *len)
{
    static const uint8_t ok[256] = {
        ['\t'] = 1, [0x20 ... 0x7e] = 1, [0x80 ... 0xff] = 1};
    const unsigned char *p = (const unsigned char *)s;
    while (ok[*p])
        p++;
    *len = (size_t)(p - (const unsigned char *)s);
    return *p == '\0';
}

/* Fields that frame the message are the server's: a page setting them
 * would contradict what libmicrohttpd sends (Content-Length with
 * Transfer-Encoding: chunked, a Connection the server does not keep).
 * Date is the server's too: RFC 9110 §6.6.1 makes it the origin server's
 * clock at the time the message is generated, which caches and clients
 * compute ages from (a page wanting another time has Last-Modified and
 * Expires). */
static bool framing_field(const char *name, size_t n)
{
    static const struct {
        const char *name;
        size_t len;
    } own[] = {{"Content-Length", 14}, {"Transfer-Encoding", 17},
               {"Connection", 10},     {"Keep-Alive", 10},
               {"Upgrade", 7},         {"TE", 2},
               {"Trailer", 7},         {"Date", 4}};
    /* lengths first: Content-Type costs no compare */
    for (size_t i = 0; i < sizeof own / sizeof *own; i++)
        if (n == own[i].len && strcasecmp(name, own[i].name) == 0)
            return true;
    return false;
}

/* tchar, RFC 9110 5.6.2: what a cookie-name (a token) is made of. */
static bool is_tchar(unsigned char c)
{
    return isalnum(c) || (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* cookie-octet, RFC 6265 4.1.1: US-ASCII but CTLs, whitespace, DQUOTE,
 * comma, semicolon and backslash. */
static bool is_cookie_octet(unsigned char c)
{
    return c == 0x21 || (c >= 0x23 && c <= 0x2B) || (c >= 0x2D && c <= 0x3A) ||
           (c >= 0x3C && c <= 0x5B) || (c >= 0x5D && c <= 0x7E);
}

static bool cookie_name_ok(const char *s, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!is_tchar((unsigned char)s[i]))
            return false;
    return true;
}

/* cookie-value = *cookie-octet / ( DQUOTE *cookie-octet DQUOTE ) */
static bool cookie_value_ok(const char *s, size_t n)
{
    if (n >= 2 && s[0] == '"' && s[n - 1] == '"') {
        s++;
        n -= 2;
    }
    for (size_t i = 0; i < n; i++)
        if (!is_cookie_octet((unsigned char)s[i]))
            return false;
    return true;
}

/* The cookie-pair of a Set-Cookie field value (RFC 6265 4.1.1): the text
 * up to the first ';' must be name=value; the attributes after it are
 * the page's business (only CR/LF are refused there). */
static bool set_cookie_pair_ok(const char *v)
{
    size_t end = strcspn(v, ";");
    const char *eq = memchr(v, '=', end);
    return eq && cookie_name_ok(v, (size_t)(eq - v)) &&
           cookie_value_ok(eq + 1, end - (size_t)(eq + 1 - v));
}

void hp_req_add_header(hp_req *req, const char *name, const char *value)
{
    kv_add(req, &req->headers, name, value);
    if ((name[0] | 0x20) == 'c' && strcasecmp(name, "Content-Type") == 0)
        req->has_content_type = true;
}

/* hp_set_header(req, name, NULL): every field of that name the page set
 * goes (all Set-Cookie lines for "Set-Cookie"); Content-Type goes back to
 * its default. */
static void remove_header(hp_req *req, const char *name)
{
    size_t k = 0;
    for (size_t i = 0; i < req->headers.n; i++)
        if (strcasecmp(req->headers.v[i].name, name) != 0)
            req->headers.v[k++] = req->headers.v[i];
    req->headers.n = k;
    if (strcasecmp(name, "Content-Type") == 0)
        req->has_content_type = false;
}

/* A copy of the n bytes at s and a NUL, in request memory. */
static char *dup_n(hp_req *req, const char *s, size_t n)
{
    char *p = hp_alloc(req, n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

int hp_set_header(hp_req *req, const char *name, const char *value)
{
    HP_REFUSE_NULL(req, name, "name", -1);
    if (!*name)
        return -1;
    /* A token's characters are printable US-ASCII but ':' (which rules
     * out what header_safe refuses, too) */
    const unsigned char *p = (const unsigned char *)name;
    for (; *p; p++)
        if ((unsigned)(*p - 0x21) > 0x7e - 0x21 || *p == ':')
            return -1;
    size_t nlen = (size_t)(p - (const unsigned char *)name);
    if (!value) {
        if (framing_field(name, nlen))
            return -1;
        remove_header(req, name);
        return HP_OK;
    }
    size_t vlen;
    if (!header_safe(value, &vlen) || framing_field(name, nlen))
        return -1;
    bool multi = nlen == 10 && strcasecmp(name, "Set-Cookie") == 0;
    if (multi && !set_cookie_pair_ok(value))
        return -1;
    char *n = dup_n(req, name, nlen), *v = dup_n(req, value, vlen);
    if (!n || !v)
        return -1;
    if (!multi) {
        for (size_t i = 0; i < req->headers.n; i++) {
            const char *had = req->headers.v[i].name;
            if ((had[0] | 0x20) == (name[0] | 0x20) &&
                strcasecmp(had, name) == 0) {
                req->headers.v[i].value = v;
                return HP_OK;
            }
        }
    }
    hp_req_add_header(req, n, v);
    return HP_OK;
}

int hp_set_cookie(hp_req *req, const char *name, const char *value,
                  const char *attrs)
{
    HP_REFUSE_NULL(req, name, "name", -1);
    HP_REFUSE_NULL(req, value, "value", -1);
    if (!cookie_name_ok(name, strlen(name)) ||
        !cookie_value_ok(value, strlen(value)))
        return -1;
    char *line = attrs && *attrs
                     ? hp_sprintf(req, "%s=%s; %s", name, value, attrs)
                     : hp_sprintf(req, "%s=%s", name, value);
    return line ? hp_set_header(req, "Set-Cookie", line) : -1;
}

/*
 * location as a URI reference (RFC 3986 §4.1) for Location (RFC 9110
 * §10.2.2), in request memory: the bytes no URI may hold as they are are
 * percent-encoded (§2.1): space, non-ASCII (a UTF-8 path's bytes), and
 * " < > \ ^ ` { | } (none is reserved or unreserved, §2.2-2.3); '%' is
 * kept, so an encoded location stays as it was. NULL, refusing it, when
 * it is empty or holds a control byte (C0, DEL): CR and LF would inject
 * fields, and browsers drop tab and newlines from URLs (WHATWG URL), which
 * turns "java\tscript:" into a scheme a filter did not see.
 */
static char *location_encode(hp_req *req, const char *location)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = 0;
    const unsigned char *p = (const unsigned char *)location;
    if (!p || !*p)
        return NULL;
    for (; *p; p++) {
        if (*p < 0x20 || *p == 0x7f)
            return NULL;
        n += *p == ' ' || *p >= 0x80 || strchr("\"<>\\^`{|}", *p) ? 3 : 1;
    }
    char *out = hp_alloc(req, n + 1), *o = out;
    if (!out)
        return NULL;
    for (p = (const unsigned char *)location; *p; p++) {
        if (*p == ' ' || *p >= 0x80 || strchr("\"<>\\^`{|}", *p)) {
            *o++ = '%';
            *o++ = hex[*p >> 4];
            *o++ = hex[*p & 15];
        } else {
            *o++ = (char)*p;
        }
    }
    *o = '\0';
    return out;
}

int hp_redirect(hp_req *req, const char *location)
{
    HP_REFUSE_NULL(req, location, "location", -1);
    const char *loc = location_encode(req, location);
    if (!loc || hp_set_header(req, "Location", loc) < 0)
        return -1;
    bool safe = strcmp(req->method, "GET") == 0 || req->is_head;
    req->status = safe ? 302 : 303;
    return HP_OK;
}

void hp_log(hp_req *req, const char *fmt, ...)
{
    struct hp_buf b = {0};
    va_list ap;
    HP_REFUSE_NULL(req, fmt, "fmt", );
    va_start(ap, fmt);
    hp_buf_vprintf(&b, fmt, ap);
    va_end(ap);
    hp_log_info("%s [%s]: %s",
                req->current_module ? req->current_module->path
                                    : req->target.path,
                req->target.handler, b.p ? b.p : "");
    hp_buf_free(&b);
}

const char *hp_status_text(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 204:
        return "No Content";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 303:
        return "See Other";
    case 304:
        return "Not Modified";
    case 307:
        return "Temporary Redirect";
    case 308:
        return "Permanent Redirect";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 410:
        return "Gone";
    case 411:
        return "Length Required";
    case 412:
        return "Precondition Failed";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 416:
        return "Range Not Satisfiable";
    case 421:
        return "Misdirected Request";
    case 422:
        return "Unprocessable Content";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return status >= 500   ? "Server Error"
               : status >= 400 ? "Client Error"
                               : "OK";
    }
}

void hp_req_error_body(hp_req *req, int status, const char *detail_html)
{
    req->out.len = 0;
    hp_buf_printf(
        &req->out, "<!doctype html>\n<title>%d %s</title>\n<h1>%d %s</h1>\n",
        status, hp_status_text(status), status, hp_status_text(status));
    if (detail_html)
        hp_buf_puts(&req->out, detail_html);
}

/* ---- MIME types for static files ---------------------------------------- */

static const struct {
    const char *ext, *type;
} mime_types[] = {
    {"html", "text/html; charset=utf-8"},
    {"htm", "text/html; charset=utf-8"},
    {"css", "text/css; charset=utf-8"},
    {"js", "text/javascript; charset=utf-8"},
    {"mjs", "text/javascript; charset=utf-8"},
    {"json", "application/json"},
    {"txt", "text/plain; charset=utf-8"},
    {"md", "text/markdown; charset=utf-8"},
    {"xml", "application/xml"},
    {"svg", "image/svg+xml"},
    {"png", "image/png"},
    {"jpg", "image/jpeg"},
    {"jpeg", "image/jpeg"},
    {"gif", "image/gif"},
    {"webp", "image/webp"},
    {"avif", "image/avif"},
    {"ico", "image/x-icon"},
    {"woff", "font/woff"},
    {"woff2", "font/woff2"},
    {"ttf", "font/ttf"},
    {"otf", "font/otf"},
    {"pdf", "application/pdf"},
    {"wasm", "application/wasm"},
    {"mp4", "video/mp4"},
    {"webm", "video/webm"},
    {"mp3", "audio/mpeg"},
    {"ogg", "audio/ogg"},
    {"wav", "audio/wav"},
    {"zip", "application/zip"},
    {"gz", "application/gzip"},
    {"csv", "text/csv; charset=utf-8"},
};

const char *hp_mime_type(const char *path)
{
    const char *dot = strrchr(path, '.');
    const char *slash = strrchr(path, '/');
    if (dot && (!slash || dot > slash)) {
        for (size_t i = 0; i < sizeof mime_types / sizeof *mime_types; i++)
            if (strcasecmp(dot + 1, mime_types[i].ext) == 0)
                return mime_types[i].type;
    }
    return "application/octet-stream";
}
