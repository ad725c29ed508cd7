/*
 * form.c - decoding client-sent fields: query strings and urlencoded bodies
 * (WHATWG URL), multipart/form-data bodies (RFC 7578, RFC 2046 5.1.1) and
 * Cookie field values (RFC 6265).
 *
 * Owns: the decoding rules and the field cap's enforcement while decoding.
 * May not touch: libmicrohttpd, the request object, global state, the heap
 * beyond the field array: decoded bytes go to one caller-supplied block per
 * source, so a body of a million tiny fields costs one allocation, not a
 * million (and the cap stops the decoding early anyway).
 *
 * Space: every decoder writes at most len + 1 bytes to its block. Each
 * field's name and value take their decoded bytes plus one NUL each, and
 * each field consumes at least one separator byte ('=', '&', ';', or a
 * multipart delimiter) that is not copied; a field without a value reuses
 * its name's NUL as "".
 */
#include "form.h"
#include "hp.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define BOUNDARY_MAX 70 /* RFC 2046 5.1.1: 1 to 70 characters */

struct span {
    const char *p;
    size_t n;
};

int hp_fields_add(struct hp_fields *f, const char *name, const char *value,
                  size_t value_len)
{
    if (f->max && f->n >= f->max)
        return HP_FORM_TOO_MANY;
    if (f->n == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 16;
        if (f->max && cap > f->max)
            cap = f->max;
        struct hp_field *v = realloc(f->v, cap * sizeof *v);
        if (!v)
            return HP_FORM_NOMEM;
        f->v = v;
        f->cap = cap;
    }
    f->v[f->n].name = name;
    f->v[f->n].value = value;
    f->v[f->n].value_len = value_len;
    f->n++;
    return HP_FORM_OK;
}

const struct hp_field *hp_fields_find(const struct hp_fields *f,
                                      const char *name)
{
    for (size_t i = 0; i < f->n; i++)
        if (strcmp(f->v[i].name, name) == 0)
            return &f->v[i];
    return NULL;
}

/* ---- application/x-www-form-urlencoded ---------------------------------- */

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* '+' to space, then WHATWG percent-decode: "%" and two hex digits is a
 * byte; any other '%' is kept as it is, and decoding resumes right after
 * it, so a bad escape never swallows the bytes that follow. */
static size_t form_decode(const char *s, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '+') {
            c = ' ';
        } else if (c == '%' && i + 2 < n) {
            int hi = hexval((unsigned char)s[i + 1]);
            int lo = hexval((unsigned char)s[i + 2]);
            if (hi >= 0 && lo >= 0) {
                c = (unsigned char)(hi << 4 | lo);
                i += 2;
            }
        }
        out[o++] = (char)c;
    }
    return o;
}

/* One non-empty sequence seq[0..n) (WHATWG urlencoded parsing, step 3). */
static int urlencoded_one(const char *seq, size_t n, char **outp,
                          struct hp_fields *f)
{
    const char *eq = memchr(seq, '=', n);
    size_t name_n = eq ? (size_t)(eq - seq) : n;
    char *out = *outp;
    char *name = out;
    out += form_decode(seq, name_n, out);
    *out++ = '\0';
    char *value = out - 1; /* no '=': the value is "" */
    size_t value_len = 0;
    if (eq) {
        value = out;
        value_len = form_decode(eq + 1, n - name_n - 1, out);
        out += value_len;
        *out++ = '\0';
    }
    *outp = out;
    return hp_fields_add(f, name, value, value_len);
}

int hp_form_urlencoded(const char *src, size_t len, char *out,
                       struct hp_fields *f)
{
    const char *p = src, *end = src + len;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *seq_end = amp ? amp : end;
        if (seq_end > p) {
            int r = urlencoded_one(p, (size_t)(seq_end - p), &out, f);
            if (r != HP_FORM_OK)
                return r;
        }
        if (!amp)
            break;
        p = amp + 1;
    }
    return HP_FORM_OK;
}

static struct span trim(const char *p, const char *e);

/* ---- field value parameters (RFC 9110 5.6.6) ----------------------------- */

static const char *skip_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    return p;
}

static bool is_tchar(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
           (c >= 'A' && c <= 'Z') || (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* The leading token of a field value (a media type, a disposition type):
 * everything up to ';' or whitespace, as clients write it. */
static struct span leading_token(const char **pp, const char *end)
{
    const char *p = skip_ws(*pp, end);
    struct span t = {p, 0};
    while (p < end && *p != ';' && *p != ' ' && *p != '\t')
        p++;
    t.n = (size_t)(p - t.p);
    *pp = p;
    return t;
}

/*
 * The next `; name=value` parameter. value is raw: a quoted-string's
 * content with its quoted-pairs still escaped (*quoted set), or the bytes
 * of an unquoted value up to ';' or whitespace (leniently wider than a
 * token: real clients send unquoted boundaries with '=' or '/').
 * Returns 1, 0 at the end, -1 when the list is malformed.
 */
static int next_param(const char **pp, const char *end, struct span *name,
                      struct span *value, bool *quoted)
{
    const char *p = skip_ws(*pp, end);
    while (p < end && *p == ';') /* empty parameters: ";;" */
        p = skip_ws(p + 1, end);
    if (p == end)
        return 0;
    name->p = p;
    while (p < end && is_tchar((unsigned char)*p))
        p++;
    name->n = (size_t)(p - name->p);
    p = skip_ws(p, end);
    if (name->n == 0 || p == end || *p != '=')
        return -1;
    p = skip_ws(p + 1, end);
    *quoted = p < end && *p == '"';
    if (*quoted) {
        value->p = ++p;
        while (p < end && *p != '"')
            p += (*p == '\\' && p + 1 < end) ? 2 : 1;
        if (p >= end)
            return -1; /* unterminated quoted-string */
        value->n = (size_t)(p - value->p);
        p++;
    } else {
        value->p = p;
        while (p < end && *p != ';' && *p != ' ' && *p != '\t' && *p != '"')
            p++;
        value->n = (size_t)(p - value->p);
    }
    p = skip_ws(p, end);
    if (p < end && *p != ';')
        return -1;
    *pp = p;
    return 1;
}

/* Copy a parameter value, resolving quoted-pairs; returns bytes written
 * (never more than v.n). */
static size_t param_copy(struct span v, bool quoted, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < v.n; i++) {
        if (quoted && v.p[i] == '\\' && i + 1 < v.n)
            i++;
        out[o++] = v.p[i];
    }
    return o;
}

static bool span_is(struct span s, const char *lit)
{
    return s.n == strlen(lit) && strncasecmp(s.p, lit, s.n) == 0;
}

enum hp_form_type hp_form_type(const char *content_type)
{
    if (!content_type)
        return HP_FORM_NONE;
    const char *p = content_type, *end = p + strlen(p);
    struct span t = leading_token(&p, end);
    if (span_is(t, "application/x-www-form-urlencoded"))
        return HP_FORM_URLENCODED;
    if (span_is(t, "multipart/form-data"))
        return HP_FORM_MULTIPART;
    return HP_FORM_NONE;
}

size_t hp_form_boundary(const char *ct, char *b)
{
    const char *p = ct, *end = ct + strlen(ct);
    struct span name, value;
    bool quoted;
    leading_token(&p, end);
    for (int r; (r = next_param(&p, end, &name, &value, &quoted)) != 0;) {
        if (r < 0)
            return 0;
        if (!span_is(name, "boundary"))
            continue;
        if (value.n > 2 * BOUNDARY_MAX + 2)
            return 0;
        char tmp[2 * BOUNDARY_MAX + 2];
        size_t n = param_copy(value, quoted, tmp);
        if (n > BOUNDARY_MAX)
            return 0;
        memcpy(b, tmp, n);
        b[n] = '\0';
        return n;
    }
    return 0;
}

/* ---- multipart/form-data ------------------------------------------------- */

struct mp {
    const char *body, *end;
    char delim[4 + BOUNDARY_MAX + 1]; /* "\r\n--" boundary */
    size_t dlen;
};

/*
 * The delimiter line at c (which points at its CRLF, or at "--" for the
 * body's very first line): "--" boundary, then "--" (the close delimiter;
 * the epilogue after it is ignored) or transport padding and CRLF.
 * Returns where the next part starts (NULL: not a delimiter line here).
 */
static const char *delim_line(const struct mp *m, const char *c, bool first,
                              bool *close)
{
    const char *q = c + (first ? m->dlen - 2 : m->dlen);
    if (m->end - q >= 2 && q[0] == '-' && q[1] == '-') {
        *close = true;
        return m->end;
    }
    q = skip_ws(q, m->end);
    if (m->end - q >= 2 && q[0] == '\r' && q[1] == '\n') {
        *close = false;
        return q + 2;
    }
    return NULL;
}

/* The next delimiter at or after from: sets *at (where the part before it
 * ends) and returns where the following part starts; NULL if none. */
static const char *next_delim(const struct mp *m, const char *from,
                              const char **at, bool *close)
{
    if (from == m->body && (size_t)(m->end - from) >= m->dlen - 2 &&
        memcmp(from, m->delim + 2, m->dlen - 2) == 0) {
        const char *next = delim_line(m, from, true, close);
        if (next) {
            *at = from;
            return next;
        }
    }
    while ((size_t)(m->end - from) >= m->dlen) {
        const char *c =
            memmem(from, (size_t)(m->end - from), m->delim, m->dlen);
        if (!c)
            return NULL;
        const char *next = delim_line(m, c, false, close);
        if (next) {
            *at = c;
            return next;
        }
        from = c + 1; /* the boundary's text inside content: not a line */
    }
    return NULL;
}

/* The name parameter of a Content-Disposition: form-data value
 * v[0..n), or {NULL, 0} when there is none. -1 if the list is malformed. */
static int disposition_name(const char *v, const char *end, struct span *out,
                            bool *out_quoted)
{
    struct span name, value;
    bool quoted;
    out->p = NULL;
    if (!span_is(leading_token(&v, end), "form-data"))
        return 0; /* not a form field: skipped like a nameless part */
    for (int r; (r = next_param(&v, end, &name, &value, &quoted)) != 0;) {
        if (r < 0)
            return -1;
        if (span_is(name, "name") && !out->p) {
            *out = value;
            *out_quoted = quoted;
        }
    }
    return 0;
}

/* Find the part's name in its header block [h, end). Returns 0 (out->p is
 * NULL for a nameless part) or -1 if malformed. */
static int part_name(const char *h, const char *end, struct span *out,
                     bool *quoted)
{
    static const char cd[] = "Content-Disposition";
    out->p = NULL;
    while (h < end) {
        const char *eol = memmem(h, (size_t)(end - h), "\r\n", 2);
        if (!eol)
            eol = end;
        const char *colon = memchr(h, ':', (size_t)(eol - h));
        if (colon && (size_t)(colon - h) == sizeof cd - 1 &&
            strncasecmp(h, cd, sizeof cd - 1) == 0 && !out->p) {
            /* Content-Type and other part fields: not exposed to pages. */
            if (disposition_name(colon + 1, eol, out, quoted) < 0)
                return -1;
        }
        h = eol + 2;
    }
    return 0;
}

/* A Content-Disposition value's name and filename parameters (not
 * form-data: neither). -1 if the list is malformed. */
static int disposition_params(const char *v, const char *end, struct span *nm,
                              bool *nq, struct span *fn, bool *fq)
{
    struct span name, value;
    bool quoted;
    nm->p = fn->p = NULL;
    if (!span_is(leading_token(&v, end), "form-data"))
        return 0;
    for (int r; (r = next_param(&v, end, &name, &value, &quoted)) != 0;) {
        if (r < 0)
            return -1;
        if (span_is(name, "name") && !nm->p) {
            *nm = value;
            *nq = quoted;
        } else if (span_is(name, "filename") && !fn->p) {
            *fn = value;
            *fq = quoted;
        }
    }
    return 0;
}

static char *span_out(struct span v, bool quoted, char **outp)
{
    char *s = *outp;
    size_t n = param_copy(v, quoted, s);
    s[n] = '\0';
    *outp = s + n + 1;
    return s;
}

int hp_form_part_head(const char *h, size_t n, char *out,
                      struct hp_form_part *part)
{
    static const char cd[] = "Content-Disposition", ct[] = "Content-Type";
    const char *end = h + n;
    struct span nm = {NULL, 0}, fn = {NULL, 0}, type = {NULL, 0};
    bool nq = false, fq = false;
    while (h < end) {
        const char *eol = memmem(h, (size_t)(end - h), "\r\n", 2);
        if (!eol)
            eol = end;
        const char *colon = memchr(h, ':', (size_t)(eol - h));
        size_t fl = colon ? (size_t)(colon - h) : 0;
        if (fl == sizeof cd - 1 && strncasecmp(h, cd, fl) == 0 && !nm.p) {
            /* As part_name: the first Content-Disposition with a name. */
            if (disposition_params(colon + 1, eol, &nm, &nq, &fn, &fq) < 0)
                return HP_FORM_MALFORMED;
        } else if (fl == sizeof ct - 1 && strncasecmp(h, ct, fl) == 0 &&
                   !type.p) {
            type = trim(colon + 1, eol);
        }
        h = eol + 2;
    }
    part->name = nm.p ? span_out(nm, nq, &out) : NULL;
    part->filename = nm.p && fn.p ? span_out(fn, fq, &out) : NULL;
    part->content_type = nm.p && type.p ? span_out(type, false, &out) : NULL;
    return HP_FORM_OK;
}

/* One part [p, e): headers, blank line, content. */
static int multipart_part(const char *p, const char *e, char **outp,
                          struct hp_fields *f)
{
    if (p == e)
        return HP_FORM_OK; /* empty: no headers, so no name */
    const char *content;
    struct span name = {NULL, 0};
    bool quoted = false;
    if (e - p >= 2 && p[0] == '\r' && p[1] == '\n') {
        content = p + 2; /* no header fields at all */
    } else {
        const char *blank = memmem(p, (size_t)(e - p), "\r\n\r\n", 4);
        const char *hend = blank;
        content = blank ? blank + 4 : e;
        /* RFC 2046's body-part is headers [CRLF content]: header lines that
         * end right at the delimiter are a part without content. */
        if (!blank && e - p >= 2 && e[-2] == '\r' && e[-1] == '\n')
            hend = e;
        if (!hend)
            return HP_FORM_MALFORMED;
        if (part_name(p, hend, &name, &quoted) < 0)
            return HP_FORM_MALFORMED;
    }
    if (!name.p)
        return HP_FORM_OK; /* nameless: skipped, as PHP does */
    char *out = *outp;
    char *n = out;
    out += param_copy(name, quoted, out);
    *out++ = '\0';
    char *v = out;
    size_t vlen = (size_t)(e - content);
    memcpy(v, content, vlen);
    out += vlen;
    *out++ = '\0';
    *outp = out;
    return hp_fields_add(f, n, v, vlen);
}

int hp_form_multipart(const char *content_type, const char *body, size_t len,
                      char *out, struct hp_fields *f)
{
    struct mp m = {.body = body, .end = body + len};
    char b[BOUNDARY_MAX + 1];
    size_t blen = content_type ? hp_form_boundary(content_type, b) : 0;
    if (blen == 0)
        return HP_FORM_MALFORMED;
    memcpy(m.delim, "\r\n--", 4);
    memcpy(m.delim + 4, b, blen);
    m.dlen = 4 + blen;

    const char *at;
    bool close;
    const char *part = next_delim(&m, body, &at, &close); /* after preamble */
    if (!part)
        return HP_FORM_MALFORMED;
    while (!close) {
        const char *next = next_delim(&m, part, &at, &close);
        if (!next)
            return HP_FORM_MALFORMED; /* no closing delimiter */
        int r = multipart_part(part, at, &out, f);
        if (r != HP_FORM_OK)
            return r;
        part = next;
    }
    return HP_FORM_OK;
}

int hp_form_body(const char *content_type, const char *body, size_t len,
                 char *out, struct hp_fields *f)
{
    switch (hp_form_type(content_type)) {
    case HP_FORM_URLENCODED:
        return hp_form_urlencoded(body, len, out, f);
    case HP_FORM_MULTIPART:
        return hp_form_multipart(content_type, body, len, out, f);
    default:
        return HP_FORM_OK;
    }
}

/* ---- Cookie ------------------------------------------------------------ */

static struct span trim(const char *p, const char *e)
{
    p = skip_ws(p, e);
    while (e > p && (e[-1] == ' ' || e[-1] == '\t'))
        e--;
    return (struct span){p, (size_t)(e - p)};
}

int hp_cookie_parse(const char *src, size_t len, char *out, struct hp_fields *f)
{
    const char *p = src, *end = src + len;
    while (p < end) {
        const char *semi = memchr(p, ';', (size_t)(end - p));
        const char *pe = semi ? semi : end;
        const char *eq = memchr(p, '=', (size_t)(pe - p));
        if (eq) {
            struct span n = trim(p, eq), v = trim(eq + 1, pe);
            if (v.n >= 2 && v.p[0] == '"' && v.p[v.n - 1] == '"') {
                v.p++;
                v.n -= 2;
            }
            if (n.n) {
                char *name = out, *value = out + n.n + 1;
                memcpy(name, n.p, n.n);
                name[n.n] = '\0';
                memcpy(value, v.p, v.n);
                value[v.n] = '\0';
                out = value + v.n + 1;
                int r = hp_fields_add(f, name, value, v.n);
                if (r != HP_FORM_OK)
                    return r;
            }
        }
        if (!semi)
            break;
        p = semi + 1;
    }
    return HP_FORM_OK;
}
