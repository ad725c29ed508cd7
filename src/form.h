/*
 * form.h - hotpub's decoders for what clients send as fields: query strings
 * and urlencoded bodies (WHATWG URL, application/x-www-form-urlencoded
 * parsing), multipart/form-data bodies (RFC 7578, RFC 2046 5.1.1) and the
 * Cookie header (RFC 6265 4.2.1, 5.4). Internal to the server: request.c
 * calls them; pages see only hp_arg/hp_cookie.
 *
 * Every function is pure: it reads the input bytes, writes decoded bytes to
 * a caller-supplied block and field entries to a struct hp_fields, and
 * touches nothing else (no libmicrohttpd, no global state), so it can be
 * unit-tested and fuzzed on its own.
 */
#ifndef HP_FORM_H
#define HP_FORM_H

#include <stddef.h>

/* One decoded field. name and value are NUL-terminated and point into the
 * caller's block; value_len counts the value's bytes, which may include
 * NULs (a C-string reader sees the value cut at its first NUL). */
struct hp_field {
    const char *name, *value;
    size_t value_len;
};

/* A growable array of fields, capped: adding field number max + 1 fails
 * with HP_FORM_TOO_MANY. Zero-initialise, set max (0 = no cap), and free v
 * with free() when done. */
struct hp_fields {
    struct hp_field *v;
    size_t n, cap;
    size_t max;
};

/* Results: 0, or the HTTP status the server answers with. */
enum {
    HP_FORM_OK = 0,
    HP_FORM_MALFORMED = 400, /* a multipart body that breaks RFC 2046     */
    HP_FORM_TOO_MANY = 413,  /* more than fields->max fields              */
    HP_FORM_NOMEM = 500,     /* the field array could not grow            */
};

/*
 * Decode application/x-www-form-urlencoded text src[0..len) (a query string
 * without '?', or a body) exactly as WHATWG URL's "urlencoded parsing":
 * split on '&', skip empty sequences, split each at its first '=' (none:
 * the whole sequence is the name and the value is ""), '+' becomes a space,
 * then percent-decode, keeping an invalid escape ("%zz", a trailing "%4")
 * as its literal bytes. Fields are appended to f in order.
 * out: a block of at least len + 1 bytes that receives the decoded names and
 * values (it must outlive f's entries).
 * Returns HP_FORM_OK, HP_FORM_TOO_MANY (stops at once) or HP_FORM_NOMEM.
 */
int hp_form_urlencoded(const char *src, size_t len, char *out,
                       struct hp_fields *f);

/*
 * Decode a multipart/form-data body (RFC 7578) with the boundary taken from
 * content_type's "boundary" parameter (token or quoted-string, 1-70 chars,
 * RFC 2046 5.1.1). The preamble and epilogue are ignored; each part's
 * header block is read for Content-Disposition: form-data; name="..."
 * (filename= allowed: the value is the file's content). A part without a
 * name parameter (or without form-data disposition) is skipped, as PHP does.
 * out: at least len + 1 bytes for the decoded names and values.
 * Returns HP_FORM_OK, HP_FORM_MALFORMED (no or bad boundary, no first
 * delimiter, no closing delimiter, a part's header lines followed neither
 * by a blank line nor (each CRLF-ended: a part without content) by the next
 * delimiter, a bad parameter list), HP_FORM_TOO_MANY or HP_FORM_NOMEM.
 */
int hp_form_multipart(const char *content_type, const char *body, size_t len,
                      char *out, struct hp_fields *f);

/* The boundary parameter of a Content-Type field value, into b[71]
 * (NUL-terminated). Returns its length, or 0 if absent, empty, longer than
 * 70 (RFC 2046 5.1.1) or unparseable. */
size_t hp_form_boundary(const char *content_type, char *b);

/*
 * A multipart part's header block h[0..n) (the lines before the blank
 * line, CRLF-separated), read as hp_form_multipart reads it: the first
 * Content-Disposition field's form-data name and filename parameters, the
 * first Content-Type field's value (trimmed; only when there is a name).
 * out: at least n + 3 bytes for the three NUL-terminated strings. Each of
 * part's members is NULL when absent (name NULL: a part to skip).
 * Returns HP_FORM_OK or HP_FORM_MALFORMED (a bad parameter list).
 */
struct hp_form_part {
    const char *name, *filename, *content_type;
};
int hp_form_part_head(const char *h, size_t n, char *out,
                      struct hp_form_part *part);

/* What a body of this Content-Type field value holds, by its media type
 * (case-insensitive; parameters such as charset are ignored). NULL: none. */
enum hp_form_type {
    HP_FORM_NONE = 0,
    HP_FORM_URLENCODED, /* application/x-www-form-urlencoded */
    HP_FORM_MULTIPART,  /* multipart/form-data               */
};
enum hp_form_type hp_form_type(const char *content_type);

/*
 * The decoder hp_form_type picks for content_type: urlencoded, multipart,
 * or none (HP_FORM_OK, no fields). Same arguments and results as above.
 */
int hp_form_body(const char *content_type, const char *body, size_t len,
                 char *out, struct hp_fields *f);

/*
 * Parse one Cookie field value src[0..len) (RFC 6265 4.2.1, read leniently
 * as 5.4 writes it): pairs separated by ';' with optional spaces or tabs,
 * each name=value split at the first '='; a value wrapped in DQUOTEs loses
 * them; pairs without '=' or with an empty name are skipped. Values are not
 * percent-decoded (cookies have no such encoding).
 * out: at least len + 1 bytes. Returns HP_FORM_OK, HP_FORM_TOO_MANY or
 * HP_FORM_NOMEM.
 */
int hp_cookie_parse(const char *src, size_t len, char *out,
                    struct hp_fields *f);

/* Append a field (the strings are the caller's and must outlive f's
 * entries). Returns HP_FORM_OK, HP_FORM_TOO_MANY or HP_FORM_NOMEM. */
int hp_fields_add(struct hp_fields *f, const char *name, const char *value,
                  size_t value_len);

/* The first field named name (exact bytes), else NULL. */
const struct hp_field *hp_fields_find(const struct hp_fields *f,
                                      const char *name);

#endif
