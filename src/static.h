/*
 * static.h - serving a static file, without libmicrohttpd (static.c): the
 * race-free open under the document root, HTTP dates, validators (ETag,
 * Last-Modified) and conditional requests, and byte ranges. server.c turns
 * the plan into a response.
 */
#ifndef HP_STATIC_H
#define HP_STATIC_H

#include "hp.h"

#include <time.h>

/* ---- dates (RFC 9110 §5.6.7) ------------------------------------------- */

/* "Sun, 06 Nov 1994 08:49:37 GMT" plus the terminating NUL. */
#define HP_HTTP_DATE_LEN 30

/*
 * Parse an HTTP-date in any of its three forms: IMF-fixdate, the obsolete
 * RFC 850 form (two-digit year, read as the latest year with those digits
 * that is not more than 50 years after `now`) and asctime. The whole
 * string must be the date: leading or trailing bytes make it invalid. Names
 * are case-sensitive, as the RFC says. Returns 0 and sets *out (seconds
 * since the epoch, UTC), or -1 (invalid; *out untouched).
 */
int hp_http_date_parse(const char *s, time_t now, time_t *out);
/* Format t as IMF-fixdate into out. */
void hp_http_date_format(time_t t, char out[HP_HTTP_DATE_LEN]);

/* ---- ranges (RFC 9110 §14) -------------------------------------------- */

enum hp_range {
    HP_RANGE_NONE,          /* absent, invalid, several ranges: send all */
    HP_RANGE_OK,            /* one satisfiable range: 206                */
    HP_RANGE_UNSATISFIABLE, /* one range, none of it in the file: 416    */
};

/*
 * Parse a Range field value against a representation of `size` bytes.
 * Accepts one byte range: "bytes=a-b", "bytes=a-", "bytes=-n" (the unit is
 * case-insensitive, OWS allowed around the range). On HP_RANGE_OK,
 * *first <= *last < size (inclusive byte offsets). Numbers too large for 64
 * bits saturate: a huge last-pos or suffix means "to the end", a huge
 * first-pos is unsatisfiable. Several ranges give HP_RANGE_NONE (the whole
 * file is sent; multipart/byteranges is not implemented), and so does a
 * suffix range of an empty file.
 */
enum hp_range hp_range_parse(const char *value, uint64_t size, uint64_t *first,
                             uint64_t *last);

/* ---- validators (RFC 9110 §8.8, §13.1) --------------------------------- */

#define HP_ETAG_LEN 64

/* A strong entity tag, quoted, from the file's identity: device, inode,
 * size and mtime in nanoseconds (a changed file gets a new tag). */
void hp_static_etag(const struct stat *st, char out[HP_ETAG_LEN]);

/*
 * Does the field value of If-Match / If-None-Match (a list of entity tags,
 * or "*") match `etag`? weak: weak comparison (If-None-Match), else strong
 * (If-Match, If-Range: a W/ tag never matches). A malformed list matches
 * nothing after the malformed member.
 */
bool hp_etag_match(const char *field_value, const char *etag, bool weak);

/* ---- what to send ------------------------------------------------------- */

/* The request's fields that matter (NULL when absent). */
struct hp_static_fields {
    const char *if_match, *if_none_match;
    const char *if_modified_since, *if_unmodified_since;
    const char *range, *if_range;
};

struct hp_static_plan {
    int status;              /* 200, 206, 304, 412 or 416             */
    uint64_t offset, length; /* the bytes of the file to send (200/206) */
    char etag[HP_ETAG_LEN];
    char last_modified[HP_HTTP_DATE_LEN];
    char content_range[96]; /* "" unless 206 or 416                     */
};

/*
 * Decide the answer to a GET or HEAD of the file st describes, following
 * RFC 9110 §13.2.2's order: If-Match, else If-Unmodified-Since (412); then
 * If-None-Match, else If-Modified-Since (304); then Range with If-Range
 * (206 / 416). now: the server's clock (dates after it are ignored).
 */
void hp_static_plan(const struct stat *st, const struct hp_static_fields *f,
                    time_t now, struct hp_static_plan *p);

/* ---- the file ------------------------------------------------------------ */

/*
 * Open the static file `path` (as hp_resolve gave it: root + "/" + a
 * canonical relative path) for reading, without following any symlink
 * below `root`: the root is opened per call (it may be a deploy's symlink
 * that is swapped), then the relative path beneath it with openat2
 * RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS, or, where
 * the kernel has no openat2, segment by segment with O_NOFOLLOW. A symlink
 * met on the way (swapped in since the resolver checked the name) is
 * refused, as is a private name ('_' or '.' segment, .c .h .so .o .d .ini).
 * Returns a read-only fd on a regular file with *st filled (fstat of that
 * fd), or -1 with errno set (ENOENT, ELOOP, EACCES, ...).
 */
int hp_static_open(const char *root, const char *path, struct stat *st);

/* For tests: make hp_static_open use the O_NOFOLLOW walk even where the
 * kernel has openat2. */
void hp_static_force_walk(bool on);

#endif
