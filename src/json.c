/*
 * json.c - JSON in and out of a request (jansson): hp_json_body,
 * hp_json_error, hp_write_json.
 *
 * Owns: which request bodies are JSON (the media type), what counts as
 * malformed (the decoder flags below, documented in hotpub.h), the
 * request's parsed body and its lifetime, and the JSON text hp_write_json
 * produces (its own encoder: jansson writes 0.1 as 0.10000000000000001).
 * May not touch: the module cache, the resolver, sending: like request.c it
 * only reads the request and appends to its response.
 */
#include "request.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define JSON_OUT_MAX_DEPTH 2048 /* as jansson's decoder */

/* application/json, or application/<anything>+json (RFC 6839 3.1), with
 * any parameters. One media type (RFC 9110 8.3.1: after the subtype only
 * OWS, then ';' and parameters): "application/json, text/plain" is no
 * Content-Type a client may send, and not JSON. */
static bool is_json_type(const char *ct)
{
    if (!ct)
        return false;
    while (*ct == ' ' || *ct == '\t')
        ct++;
    size_t n = strcspn(ct, "; \t"), k = n;
    while (ct[k] == ' ' || ct[k] == '\t')
        k++;
    if (ct[k] != '\0' && ct[k] != ';')
        return false;
    /* Parameters are tokens and quoted strings: a ',' outside quotes
     * makes a list ("application/json;charset=utf-8, text/plain"). */
    for (bool quoted = false; ct[k]; k++) {
        if (quoted && ct[k] == '\\' && ct[k + 1])
            k++;
        else if (ct[k] == '"')
            quoted = !quoted;
        else if (!quoted && ct[k] == ',')
            return false;
    }
    if (n == 16 && strncasecmp(ct, "application/json", 16) == 0)
        return true;
    return n > 17 && strncasecmp(ct, "application/", 12) == 0 &&
           strncasecmp(ct + n - 5, "+json", 5) == 0;
}

/*
 * Client bodies may nest at most this deep. jansson's decoder recurses once
 * per level, up to its own limit of 2048; a handler thread's stack is
 * --thread-stack-size (512 KiB by default), and 2048 levels of jansson's
 * frames come too close to that (they overflowed it in a ThreadSanitizer
 * build: a worker crash from a 6 KiB body). No real document nests this
 * deep.
 */
#define JSON_IN_MAX_DEPTH 512

/* The first [ or { past JSON_IN_MAX_DEPTH levels (strings skipped), or
 * NULL. A pre-pass, so jansson never recurses that deep. */
static const char *too_deep(const char *p, size_t len)
{
    int depth = 0;
    bool in_string = false;
    for (const char *end = p + len; p < end; p++) {
        if (in_string) {
            if (*p == '\\')
                p++;
            else if (*p == '"')
                in_string = false;
        } else if (*p == '"') {
            in_string = true;
        } else if (*p == '[' || *p == '{') {
            if (++depth > JSON_IN_MAX_DEPTH)
                return p;
        } else if (*p == ']' || *p == '}') {
            depth--;
        }
    }
    return NULL;
}

/* Strict: one value of any type, nothing after it, UTF-8 checked, no
 * \u0000 (JSON_ALLOW_NUL is not given), no duplicate keys, integers that
 * fit json_int_t (jansson: "too big integer"), depth <= JSON_IN_MAX_DEPTH. */
json_t *hp_json_parse(const char *text, size_t len, json_error_t *e)
{
    const char *deep = too_deep(text, len);
    if (deep) {
        memset(e, 0, sizeof *e);
        e->line = 1;
        for (const char *p = text; p < deep; p++)
            if (*p == '\n') {
                e->line++;
                e->column = 0;
            } else {
                e->column++;
            }
        e->column++;
        e->position = (int)(deep - text);
        snprintf(e->text, sizeof e->text, "nested deeper than %d levels",
                 JSON_IN_MAX_DEPTH);
        return NULL;
    }
    return json_loadb(text, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, e);
}

static void parse_body(hp_req *req)
{
    json_error_t e;
    size_t len = 0;
    const char *body = hp_body(req, &len);

    req->json_parsed = true;
    if (len == 0 || !is_json_type(hp_header(req, "Content-Type")))
        return;
    req->json = hp_json_parse(body, len, &e);
    if (!req->json)
        req->json_err =
            hp_sprintf(req, "line %d, column %d: %s", e.line, e.column, e.text);
}

json_t *hp_json_body(hp_req *req)
{
    HP_REFUSE_NULL_REQ(req, NULL);
    if (!req->json_parsed)
        parse_body(req);
    return req->json;
}

const char *hp_json_error(hp_req *req)
{
    HP_REFUSE_NULL_REQ(req, NULL);
    if (!req->json_parsed)
        parse_body(req);
    return req->json_err;
}

void hp_req_json_free(hp_req *req)
{
    json_decref(req->json);
    req->json = NULL;
}

/* ---- writing ------------------------------------------------------------- */

/* One byte more in b. */
static int put_char(struct hp_buf *b, char c)
{
    if (hp_buf_reserve(b, 1) < 0)
        return -1;
    b->p[b->len++] = c;
    b->p[b->len] = '\0';
    return 0;
}

static int put_string(struct hp_buf *b, const char *s, size_t n)
{
    /* Most strings need no escape: then one copy between the quotes. */
    size_t k = 0;
    while (k < n && (unsigned char)s[k] >= 0x20 && s[k] != '"' && s[k] != '\\')
        k++;
    if (k == n) {
        if (n > SIZE_MAX - 2 || hp_buf_reserve(b, n + 2) < 0)
            return -1;
        char *p = b->p + b->len;
        p[0] = '"';
        memcpy(p + 1, s, n);
        p[n + 1] = '"';
        b->len += n + 2;
        b->p[b->len] = '\0';
        return 0;
    }
    size_t run = 0;
    if (hp_buf_append(b, "\"", 1) < 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[8];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        if (c == '"' || c == '\\')
            snprintf(esc, sizeof esc, "\\%c", c);
        else if (c == '\n')
            memcpy(esc, "\\n", 3);
        else
            snprintf(esc, sizeof esc, "\\u%04x", c);
        if (hp_buf_append(b, s + run, i - run) < 0 || hp_buf_puts(b, esc) < 0)
            return -1;
        run = i + 1;
    }
    if (hp_buf_append(b, s + run, n - run) < 0)
        return -1;
    return hp_buf_append(b, "\"", 1);
}

/* The shortest text that reads back as the same double; always with a '.'
 * or an exponent, so it reads back as a real, not an integer. */
static int put_real(struct hp_buf *b, double d)
{
    char num[40];
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(num, sizeof num, "%.*g", prec, d);
        if (strtod(num, NULL) == d)
            break;
    }
    if (!strpbrk(num, ".eEn")) /* "n": inf, nan cannot be in a json_t */
        strcat(num, ".0");
    return hp_buf_puts(b, num);
}

/* An integer's decimal text, without a printf (two per /db response). */
static int put_int(struct hp_buf *b, json_int_t v)
{
    char num[24], *end = num + sizeof num, *p = end;
    unsigned long long u =
        v < 0 ? 0ull - (unsigned long long)v : (unsigned long long)v;
    do
        *--p = (char)('0' + u % 10);
    while (u /= 10);
    if (v < 0)
        *--p = '-';
    return hp_buf_append(b, p, (size_t)(end - p));
}

static int put_value(struct hp_buf *b, const json_t *v, int depth);

static int put_container(struct hp_buf *b, const json_t *v, int depth)
{
    bool first = true;
    if (json_is_array(v)) {
        size_t i;
        const json_t *x;
        if (put_char(b, '[') < 0)
            return -1;
        json_array_foreach(v, i, x)
        {
            if ((!first && put_char(b, ',') < 0) ||
                put_value(b, x, depth + 1) < 0)
                return -1;
            first = false;
        }
        return put_char(b, ']');
    }
    const char *k;
    const json_t *x;
    if (put_char(b, '{') < 0)
        return -1;
    /* jansson keeps insertion order; json_object_foreach has no const
     * variant, the iteration does not modify the object. */
    json_t *o = (json_t *)(uintptr_t)v;
    void *it = json_object_iter(o);
    for (; it; it = json_object_iter_next(o, it)) {
        k = json_object_iter_key(it);
        x = json_object_iter_value(it);
        if ((!first && put_char(b, ',') < 0) ||
            put_string(b, k, json_object_iter_key_len(it)) < 0 ||
            put_char(b, ':') < 0 || put_value(b, x, depth + 1) < 0)
            return -1;
        first = false;
    }
    return put_char(b, '}');
}

static int put_value(struct hp_buf *b, const json_t *v, int depth)
{
    if (!v || depth > JSON_OUT_MAX_DEPTH)
        return -1;
    switch (json_typeof(v)) {
    case JSON_OBJECT:
    case JSON_ARRAY:
        return put_container(b, v, depth);
    case JSON_STRING:
        return put_string(b, json_string_value(v), json_string_length(v));
    case JSON_INTEGER:
        return put_int(b, json_integer_value(v));
    case JSON_REAL:
        return put_real(b, json_real_value(v));
    case JSON_TRUE:
        return hp_buf_puts(b, "true");
    case JSON_FALSE:
        return hp_buf_puts(b, "false");
    case JSON_NULL:
        return hp_buf_puts(b, "null");
    }
    return -1;
}

int hp_json_encode(struct hp_buf *b, const json_t *value)
{
    return put_value(b, value, 0);
}

int hp_write_json(hp_req *req, const json_t *value)
{
    /* Straight into the body; a value that cannot be written (too deep,
     * out of memory) is cut off again, leaving the response as it was. */
    HP_REFUSE_NULL(req, value, "value", -1);
    size_t was = req->out.len;
    if (put_value(&req->out, value, 0) < 0) {
        req->out.len = was;
        if (req->out.p)
            req->out.p[was] = '\0';
        return -1;
    }
    if (!req->has_content_type)
        hp_set_header(req, "Content-Type", "application/json");
    return HP_OK;
}
