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
 * full stdio buffer would interleave with another process's.
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
} A = {.mu = PTHREAD_MUTEX_INITIALIZER};

/* Called with A.mu held. */
static void emit_locked(void)
{
    const char *p = A.buf.p;
    size_t left = A.buf.len;
    int fd = fileno(A.f);
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
    if (strcmp(spec, "-") == 0) {
        A.f = stdout;
        return 0;
    }
    A.f = fopen(spec, "ae");
    if (!A.f) {
        hp_log_error("cannot open access log %s: %s", spec, strerror(errno));
        return -1;
    }
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
    if (A.buf.len >= FLUSH_AT)
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
    if (f && f != stdout)
        fclose(f);
    A.f = NULL;
    hp_buf_free(&A.buf);
    free(A.spec);
    A.spec = NULL;
}
