/*
 * static.c - serving a static file, everything but the HTTP library: the
 * race-free open under the document root, HTTP-date parsing and formatting,
 * the validators (strong ETag, Last-Modified), conditional requests
 * (RFC 9110 §13) and single byte ranges (RFC 9110 §14).
 *
 * Owns: what answer a GET/HEAD of a static file gets (hp_static_plan) and
 * which file descriptor it reads (hp_static_open).
 * May not touch: libmicrohttpd (server.c builds the response from the plan),
 * URL resolution (resolve.c decides which file a URL names; this file only
 * refuses to open anything else under that name), the module cache.
 *
 * The parsers are pure functions so that they can be unit-tested and fuzzed
 * (tests/unit/test_static.c, tests/fuzz/fuzz_static.c).
 */
#include "static.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/syscall.h>
#include <unistd.h>

/* ---- dates ------------------------------------------------------------- */

static const char *const day_short[7] = {"Sun", "Mon", "Tue", "Wed",
                                         "Thu", "Fri", "Sat"};
static const char *const day_long[7] = {"Sunday",    "Monday",   "Tuesday",
                                        "Wednesday", "Thursday", "Friday",
                                        "Saturday"};
static const char *const month_name[12] = {"Jan", "Feb", "Mar", "Apr",
                                           "May", "Jun", "Jul", "Aug",
                                           "Sep", "Oct", "Nov", "Dec"};

struct date {
    int year, month, day, hour, min, sec; /* month 1..12 */
};

/* Exactly n ASCII digits (a leading space allowed when sp_ok, for
 * asctime's day). */
static bool digits(const char *s, int n, bool sp_ok, int *v)
{
    *v = 0;
    for (int i = 0; i < n; i++) {
        if (sp_ok && i == 0 && s[i] == ' ' && n > 1)
            continue;
        if (s[i] < '0' || s[i] > '9')
            return false;
        *v = *v * 10 + (s[i] - '0');
    }
    return true;
}

static int find_name(const char *s, size_t n, const char *const *names,
                     int count)
{
    for (int i = 0; i < count; i++)
        if (strlen(names[i]) == n && memcmp(s, names[i], n) == 0)
            return i;
    return -1;
}

/* "HH:MM:SS" */
static bool parse_time(const char *s, struct date *d)
{
    return digits(s, 2, false, &d->hour) && s[2] == ':' &&
           digits(s + 3, 2, false, &d->min) && s[5] == ':' &&
           digits(s + 6, 2, false, &d->sec);
}

static bool parse_month(const char *s, struct date *d)
{
    int m = find_name(s, 3, month_name, 12);

    d->month = m + 1;
    return m >= 0;
}

/* "Sun, 06 Nov 1994 08:49:37 GMT" */
static bool parse_imf(const char *s, size_t n, struct date *d)
{
    return n == 29 && find_name(s, 3, day_short, 7) >= 0 && s[3] == ',' &&
           s[4] == ' ' && digits(s + 5, 2, false, &d->day) && s[7] == ' ' &&
           parse_month(s + 8, d) && s[11] == ' ' &&
           digits(s + 12, 4, false, &d->year) && s[16] == ' ' &&
           parse_time(s + 17, d) && memcmp(s + 25, " GMT", 4) == 0;
}

/* "Sunday, 06-Nov-94 08:49:37 GMT"; the year gets its century later. */
static bool parse_rfc850(const char *s, size_t n, struct date *d)
{
    const char *c = memchr(s, ',', n);

    if (!c || find_name(s, (size_t)(c - s), day_long, 7) < 0)
        return false;
    n -= (size_t)(c - s);
    return n == 24 && c[1] == ' ' && digits(c + 2, 2, false, &d->day) &&
           c[4] == '-' && parse_month(c + 5, d) && c[8] == '-' &&
           digits(c + 9, 2, false, &d->year) && c[11] == ' ' &&
           parse_time(c + 12, d) && memcmp(c + 20, " GMT", 4) == 0;
}

/* "Sun Nov  6 08:49:37 1994" */
static bool parse_asctime(const char *s, size_t n, struct date *d)
{
    return n == 24 && find_name(s, 3, day_short, 7) >= 0 && s[3] == ' ' &&
           parse_month(s + 4, d) && s[7] == ' ' &&
           digits(s + 8, 2, true, &d->day) && s[10] == ' ' &&
           parse_time(s + 11, d) && s[19] == ' ' &&
           digits(s + 20, 4, false, &d->year);
}

static bool leap(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static bool date_valid(const struct date *d)
{
    static const int mdays[12] = {31, 28, 31, 30, 31, 30,
                                  31, 31, 30, 31, 30, 31};
    int last = mdays[d->month - 1] + (d->month == 2 && leap(d->year));

    /* sec 60: a leap second, which the RFC's grammar allows. */
    return d->day >= 1 && d->day <= last && d->hour < 24 && d->min < 60 &&
           d->sec <= 60;
}

/* Days from 1970-01-01 to y-m-d, proleptic Gregorian (H. Hinnant's
 * days_from_civil): no timegm, so no time zone or locale is consulted. */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;

    return era * 146097 + doe - 719468;
}

/* RFC 9110 §5.6.7: a two-digit year more than 50 years in the future is
 * the most recent past year with the same last two digits. */
static int full_year(int yy, time_t now)
{
    struct tm tm;
    int y, cand;

    gmtime_r(&now, &tm);
    y = tm.tm_year + 1900;
    cand = y - y % 100 + yy;
    if (cand > y + 50)
        cand -= 100;
    else if (cand + 100 <= y + 50)
        cand += 100;
    return cand;
}

int hp_http_date_parse(const char *s, time_t now, time_t *out)
{
    struct date d = {0};
    size_t n;

    if (s == NULL)
        return -1;
    n = strlen(s);
    if (parse_imf(s, n, &d) || parse_asctime(s, n, &d)) {
        /* parsed */
    } else if (parse_rfc850(s, n, &d)) {
        d.year = full_year(d.year, now);
    } else {
        return -1;
    }
    if (!date_valid(&d))
        return -1;
    *out = (time_t)(days_from_civil(d.year, d.month, d.day) * 86400 +
                    d.hour * 3600 + d.min * 60 + d.sec);
    return 0;
}

void hp_http_date_format(time_t t, char out[HP_HTTP_DATE_LEN])
{
    struct tm tm;

    gmtime_r(&t, &tm);
    /* Not strftime: its %a and %b follow the locale. */
    snprintf(out, HP_HTTP_DATE_LEN, "%s, %02d %s %04d %02d:%02d:%02d GMT",
             day_short[tm.tm_wday % 7], tm.tm_mday % 100,
             month_name[tm.tm_mon % 12], (tm.tm_year + 1900) % 10000,
             tm.tm_hour % 100, tm.tm_min % 100, tm.tm_sec % 100);
}

/* ---- ranges ------------------------------------------------------------ */

static const char *skip_ows(const char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

/* 1*DIGIT, saturating at UINT64_MAX (a number that large is past the end
 * of any file, which is what it means). NULL if there is no digit. */
static const char *parse_u64(const char *p, uint64_t *v)
{
    const char *start = p;

    *v = 0;
    for (; *p >= '0' && *p <= '9'; p++) {
        unsigned d = (unsigned)(*p - '0');

        *v = *v > (UINT64_MAX - d) / 10 ? UINT64_MAX : *v * 10 + d;
    }
    return p == start ? NULL : p;
}

/* One range-spec: int-range ("a-b", "a-") or suffix-range ("-n").
 * last == UINT64_MAX with !suffix means "to the end". */
struct spec {
    bool suffix;
    uint64_t first, last;
};

static const char *parse_spec(const char *p, struct spec *s)
{
    s->suffix = *p == '-';
    if (s->suffix)
        return parse_u64(p + 1, &s->last);
    p = parse_u64(p, &s->first);
    if (p == NULL || *p != '-')
        return NULL;
    p++;
    s->last = UINT64_MAX;
    if (*p >= '0' && *p <= '9')
        p = parse_u64(p, &s->last);
    /* RFC 9110 §14.1.1: last-pos below first-pos makes the set invalid. */
    return s->last < s->first ? NULL : p;
}

/* Parse the range-set after "bytes=": 1#range-spec, empty list elements
 * allowed (RFC 9110 §5.6.1.2). Returns how many specs (the first in *s),
 * or -1 when any is invalid. */
static int parse_set(const char *p, struct spec *s)
{
    int n = 0;

    for (;;) {
        struct spec one;

        p = skip_ows(p);
        if (*p == ',') {
            p++;
            continue;
        }
        if (*p == '\0')
            return n > 0 ? n : -1;
        p = parse_spec(p, &one);
        if (p == NULL)
            return -1;
        if (n++ == 0)
            *s = one;
        p = skip_ows(p);
        if (*p != ',' && *p != '\0')
            return -1;
    }
}

enum hp_range hp_range_parse(const char *value, uint64_t size, uint64_t *first,
                             uint64_t *last)
{
    struct spec s = {0};

    if (value == NULL || strncasecmp(value, "bytes=", 6) != 0)
        return HP_RANGE_NONE;
    if (parse_set(value + 6, &s) != 1)
        return HP_RANGE_NONE; /* invalid, or several ranges: send all */
    if (s.suffix) {
        /* An empty file has no last byte to count back from. */
        if (size == 0)
            return HP_RANGE_NONE;
        if (s.last == 0)
            return HP_RANGE_UNSATISFIABLE;
        *first = s.last >= size ? 0 : size - s.last;
        *last = size - 1;
        return HP_RANGE_OK;
    }
    if (s.first >= size)
        return HP_RANGE_UNSATISFIABLE;
    *first = s.first;
    *last = s.last >= size ? size - 1 : s.last;
    return HP_RANGE_OK;
}

/* ---- validators ---------------------------------------------------------- */

void hp_static_etag(const struct stat *st, char out[HP_ETAG_LEN])
{
    int64_t ns = (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;

    snprintf(out, HP_ETAG_LEN, "\"%llx-%llx-%llx\"",
             (unsigned long long)st->st_ino, (unsigned long long)st->st_size,
             (unsigned long long)ns);
}

/* One entity-tag at p: [W/] DQUOTE *etagc DQUOTE. Returns the end, with
 * the opaque tag (quotes included) in [*tag, end), or NULL if malformed. */
static const char *parse_etag(const char *p, const char **tag, bool *weak)
{
    *weak = p[0] == 'W' && p[1] == '/';
    if (*weak)
        p += 2;
    if (*p != '"')
        return NULL;
    *tag = p++;
    for (; *p != '"'; p++) {
        unsigned char c = (unsigned char)*p;

        /* etagc = %x21 / %x23-7E / obs-text */
        if (c < 0x21 || c == 0x7f)
            return NULL;
    }
    return p + 1;
}

bool hp_etag_match(const char *field_value, const char *etag, bool weak)
{
    const char *p = skip_ows(field_value), *tag;
    size_t n = strlen(etag);
    bool w;

    if (p[0] == '*' && *skip_ows(p + 1) == '\0')
        return true; /* the file exists: it has a current representation */
    for (;;) {
        const char *end;

        p = skip_ows(p);
        if (*p == ',') {
            p++;
            continue;
        }
        if (*p == '\0' || (end = parse_etag(p, &tag, &w)) == NULL)
            return false;
        if ((weak || !w) && (size_t)(end - tag) == n &&
            memcmp(tag, etag, n) == 0)
            return true;
        p = skip_ows(end);
        if (*p != ',' && *p != '\0')
            return false;
    }
}

/* ---- the plan ---------------------------------------------------------------
 */

/* RFC 9110 §13.1.5: If-Range holds an entity tag (strong comparison) or a
 * date, which must be exactly the Last-Modified. */
static bool if_range_holds(const char *v, const struct hp_static_plan *p,
                           time_t mtime, time_t now)
{
    time_t t;

    if (v[0] == '"' || (v[0] == 'W' && v[1] == '/'))
        return strcmp(v, p->etag) == 0;
    return hp_http_date_parse(v, now, &t) == 0 && t == mtime;
}

/* Step 1-2 of RFC 9110 §13.2.2: false when a precondition failed (412). */
static bool preconditions_hold(const struct hp_static_fields *f,
                               const struct hp_static_plan *p, time_t mtime,
                               time_t now)
{
    time_t t;

    if (f->if_match)
        return hp_etag_match(f->if_match, p->etag, false);
    if (f->if_unmodified_since &&
        hp_http_date_parse(f->if_unmodified_since, now, &t) == 0)
        return mtime <= t;
    return true;
}

/* Step 3-4: true when the client's copy is current (304). Dates compare
 * at the 1 s granularity of HTTP-date; a date later than the server's
 * clock is ignored (§13.1.3), as is an invalid one. */
static bool not_modified(const struct hp_static_fields *f,
                         const struct hp_static_plan *p, time_t mtime,
                         time_t now)
{
    time_t t;

    if (f->if_none_match)
        return hp_etag_match(f->if_none_match, p->etag, true);
    return f->if_modified_since &&
           hp_http_date_parse(f->if_modified_since, now, &t) == 0 && t <= now &&
           mtime <= t;
}

void hp_static_plan(const struct stat *st, const struct hp_static_fields *f,
                    time_t now, struct hp_static_plan *p)
{
    uint64_t size = st->st_size > 0 ? (uint64_t)st->st_size : 0, a, b;
    time_t mtime = st->st_mtim.tv_sec;

    memset(p, 0, sizeof *p);
    hp_static_etag(st, p->etag);
    hp_http_date_format(mtime, p->last_modified);
    p->status = 200;
    p->length = size;
    if (!preconditions_hold(f, p, mtime, now)) {
        p->status = 412;
        p->length = 0;
        return;
    }
    if (not_modified(f, p, mtime, now)) {
        p->status = 304;
        p->length = 0;
        return;
    }
    if (!f->range ||
        (f->if_range && !if_range_holds(f->if_range, p, mtime, now)))
        return;
    switch (hp_range_parse(f->range, size, &a, &b)) {
    case HP_RANGE_OK:
        p->status = 206;
        p->offset = a;
        p->length = b - a + 1;
        snprintf(p->content_range, sizeof p->content_range,
                 "bytes %llu-%llu/%llu", (unsigned long long)a,
                 (unsigned long long)b, (unsigned long long)size);
        break;
    case HP_RANGE_UNSATISFIABLE:
        p->status = 416;
        p->length = 0;
        snprintf(p->content_range, sizeof p->content_range, "bytes */%llu",
                 (unsigned long long)size);
        break;
    case HP_RANGE_NONE:
        break;
    }
}

/* ---- opening the file ------------------------------------------------------
 */

static atomic_bool force_walk;
static atomic_bool no_openat2; /* the kernel said ENOSYS once */

void hp_static_force_walk(bool on)
{
    atomic_store(&force_walk, on);
}

/*
 * The resolver's name rules, checked again on the exact string opened:
 * every segment non-empty and not starting with '_' or '.', and the file's
 * name not private (hp_rel_public, hp_name_private: code, an object,
 * settings, a template, or an editor's copy of one).
 */
static bool rel_public(const char *rel)
{
    return hp_rel_public(rel);
}

/* O_NONBLOCK: a FIFO renamed in must not block an event loop in open(). */
#define FILE_FLAGS (O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK | O_NOFOLLOW)

/* openat2 beneath dfd, no symlink at all. Returns the fd, or -1 with
 * errno (ENOSYS: no openat2 here). */
static int open_openat2(int dfd, const char *rel)
{
    struct open_how how = {
        .flags = FILE_FLAGS,
        .resolve =
            RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
    };
    int fd;

    /* EAGAIN: a concurrent rename kept the kernel from proving the walk
     * stayed beneath; try again a few times, then give up (404). */
    for (int i = 0; i < 4; i++) {
        fd = (int)syscall(SYS_openat2, dfd, rel, &how, sizeof how);
        if (fd >= 0 || errno != EAGAIN)
            break;
    }
    return fd;
}

/* One directory segment under cur, without following a symlink. The fstat
 * makes sure what was opened is a directory (O_PATH|O_NOFOLLOW would hand
 * back the symlink itself). */
static int open_dir_segment(int cur, const char *seg)
{
    struct stat st;
    int fd = openat(cur, seg, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

    if (fd >= 0 && (fstat(fd, &st) < 0 || !S_ISDIR(st.st_mode))) {
        close(fd);
        errno = ELOOP;
        return -1;
    }
    return fd;
}

/* The fallback: segment by segment, refusing every symlink. */
static int open_walk(int dfd, const char *rel)
{
    char buf[PATH_MAX], *seg = buf, *slash;
    int cur = dfd, fd;

    if (strlen(rel) >= sizeof buf) {
        errno = ENAMETOOLONG;
        return -1;
    }
    strcpy(buf, rel);
    while ((slash = strchr(seg, '/')) != NULL) {
        *slash = '\0';
        fd = open_dir_segment(cur, seg);
        if (cur != dfd)
            close(cur);
        if (fd < 0)
            return -1;
        cur = fd;
        seg = slash + 1;
    }
    fd = openat(cur, seg, FILE_FLAGS);
    if (cur != dfd) {
        int e = errno;
        close(cur);
        errno = e;
    }
    return fd;
}

static int open_beneath(int dfd, const char *rel)
{
    if (!atomic_load(&force_walk) && !atomic_load(&no_openat2)) {
        int fd = open_openat2(dfd, rel);

        if (fd >= 0 || errno != ENOSYS)
            return fd;
        atomic_store(&no_openat2, true);
    }
    return open_walk(dfd, rel);
}

int hp_static_open(const char *root, const char *path, struct stat *st)
{
    size_t n = strlen(root);
    int dfd, fd, e;

    while (n > 0 && root[n - 1] == '/')
        n--;
    if (strncmp(path, root, n) != 0 || path[n] != '/' ||
        !rel_public(path + n + 1)) {
        errno = ENOENT;
        return -1;
    }
    /* Per call, not once: a deploy may swap the root's symlink, and a
     * handle held across the swap would serve the old release. */
    if (n == 0)
        dfd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
    else {
        char rootbuf[PATH_MAX];

        if (n >= sizeof rootbuf) {
            errno = ENAMETOOLONG;
            return -1;
        }
        memcpy(rootbuf, root, n);
        rootbuf[n] = '\0';
        dfd = open(rootbuf, O_PATH | O_DIRECTORY | O_CLOEXEC);
    }
    if (dfd < 0)
        return -1;
    fd = open_beneath(dfd, path + n + 1);
    e = errno;
    close(dfd);
    if (fd >= 0 && (fstat(fd, st) < 0 || !S_ISREG(st->st_mode))) {
        close(fd);
        fd = -1;
        e = ENOENT;
    }
    errno = e;
    return fd;
}
