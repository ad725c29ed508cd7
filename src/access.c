/*
 * access.c - the access log: one line per request in the Combined Log
 * Format, buffered and written in whole lines.
 *
 * Owns: the log file, its buffer and lock, reopening it on SIGUSR1.
 * May not touch: requests or connections; callers hand it the fields.
 *
 * Lines are gathered in a buffer and written once a second (the server's
 * main loop calls hp_access_flush) or every 32 KiB, with write(2) on an
 * O_APPEND file: worker processes share the log, and a line split by a
 * full stdio buffer would interleave with another process's. A process
 * that dies writes its buffer then (hp_access_dying), and the lines of the
 * answers it writes as it dies at once (hp_access_line_now): both
 * async-signal-safe, for the fatal-signal handler. Per-line write(2) for
 * every request was not chosen: one more system call per request on the
 * hot path, where a crash is rare and can be caught.
 */
#include "access.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define FLUSH_AT (32 * 1024)
#define FIELD_NOW 512 /* hp_access_line_now's room for Referer, User-Agent */

static struct {
    /* Atomic: the handler threads test it without the lock (is the log
     * on? hp_access_enabled, hp_access_line) while SIGUSR1's reopen, on
     * the main thread, swaps it under the lock; a plain pointer was a
     * data race (make tsan, workers.py
     * sigusr1_reopens_logs_and_pid_file). What it points to is used
     * under mu only, and a reopen never makes it NULL. */
    _Atomic(FILE *) f;
    char *spec;
    pthread_mutex_t mu;
    struct hp_buf buf; /* whole lines waiting to be written */
    atomic_int fd;     /* fileno(f), for the dying paths (no stdio) */
    atomic_bool direct; /* the process is dying: write each line at once */
    atomic_long gmtoff; /* the last localtime_r's UTC offset, seconds */
} A = {.mu = PTHREAD_MUTEX_INITIALIZER, .fd = -1};

/* Called with A.mu held. */
static void emit_locked(void)
{
    const char *p = A.buf.p;
    size_t left = A.buf.len;
    int fd = atomic_load(&A.fd);
    while (left > 0) {
        ssize_t n = write(fd, p, left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break; /* a full disk loses log lines, never requests */
        p += n;
        left -= (size_t)n;
    }
    A.buf.len = 0;
}

int hp_access_open(const char *spec)
{
    if (!spec || strcmp(spec, "off") == 0)
        return 0;
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    atomic_store(&A.gmtoff, tm.tm_gmtoff);
    if (strcmp(spec, "-") == 0) {
        atomic_store(&A.fd, STDOUT_FILENO);
        A.f = stdout;
        return 0;
    }
    FILE *f = fopen(spec, "ae");
    if (!f) {
        hp_log_error("cannot open access log %s: %s", spec, strerror(errno));
        return -1;
    }
    atomic_store(&A.fd, fileno(f));
    A.f = f;
    A.spec = hp_xstrdup(spec);
    return 0;
}

bool hp_access_enabled(void)
{
    return A.f != NULL;
}

/* Bytes a log field keeps as they are: printable ASCII but the quote that
 * ends the field and the backslash that starts an escape. */
static bool plain_byte(unsigned char ch)
{
    return ch >= 0x20 && ch < 0x7f && ch != '"' && ch != '\\';
}

void hp_access_escape(struct hp_buf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    const unsigned char *p = (const unsigned char *)s;

    while (*p) {
        const unsigned char *run = p;
        while (*p && plain_byte(*p))
            p++;
        if (p > run) /* the common case: the whole field in one append */
            hp_buf_append(b, run, (size_t)(p - run));
        if (!*p)
            break;
        char esc[4] = {'\\', 'x', hex[*p >> 4], hex[*p & 15]};
        hp_buf_append(b, esc, sizeof esc);
        p++;
    }
}

/* The line, with the request line's parts (one part: the line as
 * received, for a request refused before it was parsed). */
static void put_line(const char *addr, const char *const *part, int nparts,
                     int status, uint64_t length, const char *referer,
                     const char *user_agent)
{
    /* One timestamp a second per thread, not a localtime_r per request. */
    static _Thread_local time_t ts_when = -1;
    static _Thread_local char ts[64];
    time_t now = time(NULL);

    if (!A.f)
        return;
    if (now != ts_when) {
        struct tm tm;
        localtime_r(&now, &tm);
        atomic_store_explicit(&A.gmtoff, tm.tm_gmtoff, memory_order_relaxed);
        strftime(ts, sizeof ts, "%d/%b/%Y:%H:%M:%S %z", &tm);
        ts_when = now;
    }
    pthread_mutex_lock(&A.mu);
    hp_buf_printf(&A.buf, "%s - - [%s] \"", *addr ? addr : "-", ts);
    for (int i = 0; i < nparts; i++) {
        if (i)
            hp_buf_append(&A.buf, " ", 1);
        hp_access_escape(&A.buf, part[i]);
    }
    hp_buf_printf(&A.buf, "\" %d %llu \"", status, (unsigned long long)length);
    hp_access_escape(&A.buf, referer ? referer : "-");
    hp_buf_append(&A.buf, "\" \"", 3);
    hp_access_escape(&A.buf, user_agent ? user_agent : "-");
    hp_buf_append(&A.buf, "\"\n", 2);
    if (A.buf.len >= FLUSH_AT || atomic_load(&A.direct))
        emit_locked();
    pthread_mutex_unlock(&A.mu);
}

void hp_access_line(const char *addr, const char *method, const char *uri,
                    const char *version, int status, uint64_t length,
                    const char *referer, const char *user_agent)
{
    const char *part[3] = {method, uri, version};
    put_line(addr, part, 3, status, length, referer, user_agent);
}

void hp_access_line_raw(const char *addr, const char *request_line, int status,
                        uint64_t length, const char *referer,
                        const char *user_agent)
{
    put_line(addr, &request_line, 1, status, length, referer, user_agent);
}

void hp_access_flush(void)
{
    if (!A.f)
        return;
    pthread_mutex_lock(&A.mu);
    emit_locked();
    pthread_mutex_unlock(&A.mu);
}

/* Standard output is left alone. */
void hp_access_reopen(void)
{
    if (!A.f || !A.spec)
        return;
    FILE *f = fopen(A.spec, "ae");
    if (!f) {
        hp_log_error("cannot reopen access log %s: %s", A.spec,
                     strerror(errno));
        return;
    }
    pthread_mutex_lock(&A.mu);
    emit_locked(); /* what was logged so far goes to the old file */
    FILE *old = A.f;
    atomic_store(&A.fd, fileno(f));
    A.f = f;
    pthread_mutex_unlock(&A.mu);
    fclose(old);
}

int hp_access_fd(void)
{
    FILE *f = A.f;
    return f ? fileno(f) : -1;
}

void hp_access_close(void)
{
    hp_access_flush();
    FILE *f = A.f;
    A.f = NULL;
    atomic_store(&A.fd, -1);
    if (f && f != stdout)
        fclose(f);
    hp_buf_free(&A.buf);
    free(A.spec);
    A.spec = NULL;
}

/* ---- the dying process (async-signal-safe) --------------------------------
 *
 * A worker that crashes (a fatal signal) or whose page calls exit still has
 * the lines of the requests it completed in A.buf. hp_access_dying writes
 * them with write(2) and makes every later line go out at once; the
 * answers the dying process writes itself (server.c's 502 and 503s) are
 * logged by hp_access_line_now, formatted into a stack buffer, with no
 * malloc, stdio, lock or localtime. What cannot be saved: the buffer when
 * the dying thread itself holds the lock (a crash inside this file, or in
 * a signal that interrupted it: the lock is never taken then, the lines
 * are lost), a worker killed by SIGKILL (the heartbeat's, the OOM killer's:
 * up to a second of lines), and a crash inside the signal handler.
 */
bool hp_access_dying(void)
{
    if (atomic_load(&A.fd) < 0)
        return false;
    atomic_store(&A.direct, true);
    /* pthread_mutex_trylock is not on POSIX's list of async-signal-safe
     * functions, but on a default mutex it is one compare-and-swap, and
     * it never waits: the holder (another thread, which runs on while
     * this one dies) releases the lock within one line's formatting or
     * one write. About 200 ms, then the buffer is given up. */
    for (int i = 0; i < 2000; i++) {
        if (pthread_mutex_trylock(&A.mu) == 0) {
            emit_locked();
            pthread_mutex_unlock(&A.mu);
            return true;
        }
        struct timespec t = {0, 100000};
        nanosleep(&t, NULL);
    }
    return false;
}

static size_t put(char *b, size_t at, size_t cap, const char *s)
{
    while (*s && at < cap)
        b[at++] = *s++;
    return at;
}

static size_t put_uint(char *b, size_t at, size_t cap, unsigned long long v,
                       int width)
{
    char d[24];
    int n = 0;
    do
        d[n++] = (char)('0' + v % 10);
    while ((v /= 10) > 0);
    while (n < width)
        d[n++] = '0';
    while (n > 0 && at < cap)
        b[at++] = d[--n];
    return at;
}

static size_t put_escaped(char *b, size_t at, size_t cap, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (plain_byte(*p)) {
            if (at < cap)
                b[at++] = (char)*p;
            continue;
        }
        char esc[5] = {'\\', 'x', hex[*p >> 4], hex[*p & 15], 0};
        at = put(b, at, cap, esc);
    }
    return at;
}

/* "01/Dec/2026:05:42:44 +0000" for t, with the UTC offset localtime_r
 * last gave (a change of daylight saving time since is not seen). */
static size_t put_time(char *b, size_t at, size_t cap, time_t t, long off)
{
    static const char mon[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    long long s = (long long)t + off;
    long long z = (s >= 0 ? s : s - 86399) / 86400;
    long long sec = s - z * 86400;
    /* civil_from_days (H. Hinnant) */
    z += 719468;
    long long era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    unsigned d = doy - (153 * mp + 2) / 5 + 1;
    unsigned m = mp < 10 ? mp + 3 : mp - 9;
    long long y = (long long)yoe + era * 400 + (m <= 2);
    at = put_uint(b, at, cap, d, 2);
    at = put(b, at, cap, "/");
    at = put(b, at, cap, mon[m - 1]);
    at = put(b, at, cap, "/");
    at = put_uint(b, at, cap, (unsigned long long)y, 4);
    at = put(b, at, cap, ":");
    at = put_uint(b, at, cap, (unsigned long long)(sec / 3600), 2);
    at = put(b, at, cap, ":");
    at = put_uint(b, at, cap, (unsigned long long)(sec / 60 % 60), 2);
    at = put(b, at, cap, ":");
    at = put_uint(b, at, cap, (unsigned long long)(sec % 60), 2);
    at = put(b, at, cap, off < 0 ? " -" : " +");
    unsigned long a = (unsigned long)(off < 0 ? -off : off);
    at = put_uint(b, at, cap, a / 3600, 2);
    return put_uint(b, at, cap, a / 60 % 60, 2);
}

void hp_access_line_now(const char *addr, const char *method, const char *uri,
                        const char *version, int status, uint64_t length,
                        const char *referer, const char *user_agent)
{
    char b[4096];
    size_t at = 0, cap = sizeof b - 2; /* room for "\"\n" */
    int fd = atomic_load(&A.fd);
    if (fd < 0)
        return;
    at = put(b, at, cap, addr && *addr ? addr : "-");
    at = put(b, at, cap, " - - [");
    at = put_time(b, at, cap, time(NULL), atomic_load(&A.gmtoff));
    at = put(b, at, cap, "] \"");
    at = put_escaped(b, at, cap, method ? method : "-");
    at = put(b, at, cap, " ");
    /* A target too long for the line is cut (the end of the line stays:
     * status, length, and up to FIELD_NOW bytes each of Referer and
     * User-Agent) */
    size_t tail = 128 + 2 * FIELD_NOW + (version ? strlen(version) : 1);
    at = put_escaped(b, at, cap > tail + at ? cap - tail : at, uri ? uri : "-");
    at = put(b, at, cap, " ");
    at = put_escaped(b, at, cap, version ? version : "-");
    at = put(b, at, cap, "\" ");
    at = put_uint(b, at, cap, (unsigned)status, 1);
    at = put(b, at, cap, " ");
    at = put_uint(b, at, cap, length, 1);
    /* Referer and User-Agent, each cut to FIELD_NOW bytes. */
    at = put(b, at, cap, " \"");
    at = put_escaped(b, at, at + FIELD_NOW < cap ? at + FIELD_NOW : cap,
                     referer ? referer : "-");
    at = put(b, at, cap, "\" \"");
    at = put_escaped(b, at, at + FIELD_NOW < cap ? at + FIELD_NOW : cap,
                     user_agent ? user_agent : "-");
    b[at++] = '"';
    b[at++] = '\n';
    /* One write(2) on an O_APPEND file: whole, among other processes'. */
    ssize_t n = write(fd, b, at);
    (void)n;
}
