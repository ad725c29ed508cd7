/*
 * config.c - the server's settings: defaults, validation, and the INI file.
 *
 * Owns: struct hp_config's values (hp_config_defaults, hp_config_set,
 * hp_config_load, hp_config_free), the meaning and valid range of every
 * setting, the config-file syntax, and normalizing values (listen addresses
 * are stored as "A.B.C.D:PORT" or "[V6]:PORT", numeric and canonical).
 * May not touch: anything at run time. It never opens sockets, creates
 * directories, or checks that paths exist; it only decides what the settings
 * are. It prints only hp_config_load's error (to stderr) and uses plain libc
 * so the unit test links it alone.
 *
 * Messages: hp_config_set's err never names the key (its caller knows it:
 * "--threads" on the command line, "file:line: threads" in a file), so it
 * reads well after either prefix.
 *
 * inih notes: the parse goes through ini_parse_stream with our own line
 * reader, which counts lines (the handler gets no line number), rejects
 * unknown [sections] even when empty, and rejects lines too long for inih's
 * fixed buffer instead of letting inih split them. inih reads an indented
 * line after a key as a continuation of that key's value; we reject indented
 * lines rather than silently mis-assign them.
 */
#include "hp.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* ---- small helpers (plain libc; util.c is not linked into the test) ----- */

static char *cfg_strdup(const char *s)
{
    char *p = strdup(s);
    if (!p) {
        fputs("hotpub: out of memory\n", stderr);
        abort();
    }
    return p;
}

static void replace_str(char **slot, const char *value)
{
    char *p = value ? cfg_strdup(value) : NULL;
    free(*slot);
    *slot = p;
}

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    if (!err || !errlen)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* ---- the settings ------------------------------------------------------- */

enum key {
    K_DOCROOT,
    K_LISTEN,
    K_THREADS,
    K_DEV,
    K_CACHE_DIR,
    K_CC,
    K_CFLAGS,
    K_INCLUDE_DIR,
    K_REVALIDATE,
    K_SETTLE_MS,
    K_INLINE,
    K_ACCESS_LOG,
    K_MAX_BODY,
    K_MAX_HEADER,
    K_TIMEOUT,
    K_SHUTDOWN_TIMEOUT,
    K_CONN_LIMIT,
    K_DB,
    K_DB_POOL_SIZE,
    K_DB_ACQUIRE_TIMEOUT,
    K_DB_MAX_LIFETIME,
    K_DB_STATEMENT_CACHE,
    K_WORKERS,
    K_HANDLER_TIMEOUT,
    K_USER,
    K_GROUP,
    K_PID_FILE,
    K_ERROR_LOG,
    K_COUNT
};

/* Canonical names: the long flag names, which are also the INI keys. */
static const char *const key_names[K_COUNT] = {
    [K_DOCROOT] = "docroot",
    [K_LISTEN] = "listen",
    [K_THREADS] = "threads",
    [K_DEV] = "dev",
    [K_CACHE_DIR] = "cache-dir",
    [K_CC] = "cc",
    [K_CFLAGS] = "cflags",
    [K_INCLUDE_DIR] = "include-dir",
    [K_REVALIDATE] = "revalidate",
    [K_SETTLE_MS] = "settle-ms",
    [K_INLINE] = "inline",
    [K_ACCESS_LOG] = "access-log",
    [K_MAX_BODY] = "max-body",
    [K_MAX_HEADER] = "max-header",
    [K_TIMEOUT] = "timeout",
    [K_SHUTDOWN_TIMEOUT] = "shutdown-timeout",
    [K_CONN_LIMIT] = "connection-limit",
    [K_DB] = "db",
    [K_DB_POOL_SIZE] = "db-pool-size",
    [K_DB_ACQUIRE_TIMEOUT] = "db-acquire-timeout",
    [K_DB_MAX_LIFETIME] = "db-max-lifetime",
    [K_DB_STATEMENT_CACHE] = "db-statement-cache",
    [K_WORKERS] = "workers",
    [K_HANDLER_TIMEOUT] = "handler-timeout",
    [K_USER] = "user",
    [K_GROUP] = "group",
    [K_PID_FILE] = "pid-file",
    [K_ERROR_LOG] = "error-log",
};

/* Ranges. Kept here, in one place, and quoted by the error messages. */
#define THREADS_MIN 1
#define THREADS_MAX 1024
#define SETTLE_MS_MAX 10000
#define REVALIDATE_MIN 0.01 /* when not 0: a smaller period is a busy loop */
#define REVALIDATE_MAX 86400.0
#define MAX_BODY_MAX (1024ULL << 30) /* 1024G */
#define MAX_HEADER_MIN (1ULL << 10)  /* 1K */
#define MAX_HEADER_MAX (1ULL << 20)  /* 1M */
#define TIMEOUT_MIN 1
#define TIMEOUT_MAX 86400
#define SHUTDOWN_TIMEOUT_MAX 3600
#define CONN_LIMIT_MIN 1
#define CONN_LIMIT_MAX 1048576
#define DB_POOL_MAX 1024
#define DB_ACQUIRE_MAX 600000      /* ms: ten minutes */
#define DB_LIFETIME_MAX 31536000   /* s: a year */
#define DB_STMT_CACHE_MAX 10000
#define WORKERS_MAX 1024
#define HANDLER_TIMEOUT_MIN 0.1 /* when not 0 */
#define HANDLER_TIMEOUT_MAX 86400.0

/* "max_body", "Max-Body" and "max-body" are one key. */
static int key_lookup(const char *key)
{
    char norm[32];
    size_t n = strlen(key);

    if (n >= sizeof norm)
        return -1;
    for (size_t i = 0; i <= n; i++) {
        char ch = key[i];
        norm[i] = ch == '_' ? '-' : (char)tolower((unsigned char)ch);
    }
    for (int k = 0; k < K_COUNT; k++)
        if (strcmp(norm, key_names[k]) == 0)
            return k;
    return -1;
}

static bool is_path_key(int k)
{
    return k == K_DOCROOT || k == K_CACHE_DIR || k == K_INCLUDE_DIR ||
           k == K_ACCESS_LOG || k == K_PID_FILE || k == K_ERROR_LOG;
}

/* ---- value parsers ------------------------------------------------------- */

/* A decimal integer, the whole string, within [min, max]. */
static bool parse_int(const char *s, long min, long max, long *out)
{
    const char *p = s;
    char *end;
    long v;

    if (*p == '+' || *p == '-')
        p++;
    if (!isdigit((unsigned char)*p))
        return false;
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || *end || v < min || v > max)
        return false;
    *out = v;
    return true;
}

/* "123", "64k", "8M", "1g": k/m/g are powers of 1024. */
static bool parse_size(const char *s, unsigned long long min,
                       unsigned long long max, size_t *out)
{
    unsigned long long v;
    char *end;
    int shift = 0;

    if (!isdigit((unsigned char)*s))
        return false;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno)
        return false;
    switch (*end) {
    case '\0':
        break;
    case 'k':
    case 'K':
        shift = 10;
        break;
    case 'm':
    case 'M':
        shift = 20;
        break;
    case 'g':
    case 'G':
        shift = 30;
        break;
    default:
        return false;
    }
    if (*end && end[1])
        return false;
    if (v > (max >> shift))
        return false;
    v <<= shift;
    if (v < min || v > max || v > SIZE_MAX)
        return false;
    *out = (size_t)v;
    return true;
}

/* For messages: 1048576 -> "1M". */
static void fmt_size(char *buf, size_t len, unsigned long long v)
{
    if (v && v % (1ULL << 30) == 0)
        snprintf(buf, len, "%lluG", v >> 30);
    else if (v && v % (1ULL << 20) == 0)
        snprintf(buf, len, "%lluM", v >> 20);
    else if (v && v % (1ULL << 10) == 0)
        snprintf(buf, len, "%lluK", v >> 10);
    else
        snprintf(buf, len, "%llu", v);
}

/* Seconds, a decimal ("0", "2", "0.5"), 0 or from min to max; "off" is 0. */
static bool parse_seconds(const char *s, double min, double max, double *out)
{
    char *end;
    double v;
    bool digit = false;

    if (strcasecmp(s, "off") == 0) {
        *out = 0;
        return true;
    }
    /* Only digits and one '.': no signs, exponents, hex, inf or nan. */
    for (const char *p = s; *p; p++) {
        if (isdigit((unsigned char)*p))
            digit = true;
        else if (*p != '.')
            return false;
    }
    if (!digit)
        return false;
    errno = 0;
    v = strtod(s, &end);
    if (errno || *end || !isfinite(v) || (v != 0 && v < min) || v > max)
        return false;
    *out = v;
    return true;
}

static bool parse_bool_auto(const char *s, int *out)
{
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};

    for (size_t i = 0; i < sizeof yes / sizeof *yes; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = 1;
            return true;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = 0;
            return true;
        }
    }
    if (strcasecmp(s, "auto") == 0) {
        *out = -1;
        return true;
    }
    return false;
}

/* Copy s[0..n) into buf as a string; false if it does not fit. */
static bool copy_part(char *buf, size_t len, const char *s, size_t n)
{
    if (n >= len)
        return false;
    memcpy(buf, s, n);
    buf[n] = '\0';
    return true;
}

/*
 * "ADDR:PORT", "[V6]:PORT", ":PORT" (all IPv4 interfaces), with ADDR an IPv4
 * literal or "localhost". Writes the canonical form into out.
 */
static int parse_listen(const char *s, char *out, size_t outlen, char *err,
                        size_t errlen)
{
    char addr[INET6_ADDRSTRLEN + 8], canon[INET6_ADDRSTRLEN];
    unsigned char bin[sizeof(struct in6_addr)];
    const char *port_s;
    long port;
    int af;

    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close) {
            set_err(err, errlen, "missing ']' in \"%s\"", s);
            return -1;
        }
        if (close[1] != ':') {
            set_err(err, errlen,
                    "expected [IPV6]:PORT, e.g. [::1]:8080, got \"%s\"", s);
            return -1;
        }
        af = AF_INET6;
        if (!copy_part(addr, sizeof addr, s + 1, (size_t)(close - s - 1)) ||
            inet_pton(af, addr, bin) != 1) {
            set_err(err, errlen, "\"%.*s\" is not an IPv6 address",
                    (int)(close - s - 1), s + 1);
            return -1;
        }
        port_s = close + 2;
    } else {
        const char *colon = strrchr(s, ':');
        size_t n;
        if (!colon) {
            set_err(err, errlen,
                    "expected ADDR:PORT, [IPV6]:PORT or :PORT (e.g. "
                    "127.0.0.1:8080 or :8080), got \"%s\"",
                    s);
            return -1;
        }
        if (strchr(s, ':') != colon) {
            set_err(err, errlen,
                    "an IPv6 address needs brackets, e.g. [::1]:8080, got "
                    "\"%s\"",
                    s);
            return -1;
        }
        af = AF_INET;
        n = (size_t)(colon - s);
        if (n == 0)
            strcpy(addr, "0.0.0.0");
        else if (n == 9 && strncasecmp(s, "localhost", 9) == 0)
            strcpy(addr, "127.0.0.1");
        else if (!copy_part(addr, sizeof addr, s, n))
            addr[0] = '\0'; /* fails below */
        if (inet_pton(af, addr, bin) != 1) {
            set_err(err, errlen,
                    "\"%.*s\" is not an IPv4 address (use a numeric address, "
                    "localhost, or [IPV6])",
                    (int)n, s);
            return -1;
        }
        port_s = colon + 1;
    }
    if (strspn(port_s, "0123456789") != strlen(port_s) ||
        !parse_int(port_s, 1, 65535, &port)) {
        set_err(err, errlen,
                "port must be a number from 1 to 65535, got \"%s\"", port_s);
        return -1;
    }
    if (!inet_ntop(af, bin, canon, sizeof canon)) {
        set_err(err, errlen, "cannot format address \"%s\"", s);
        return -1;
    }
    snprintf(out, outlen, af == AF_INET6 ? "[%s]:%ld" : "%s:%ld", canon, port);
    return 0;
}

/* ---- the public functions ------------------------------------------------ */

static int default_threads(void)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    long n = cpus > 0 ? 2 * cpus : 4;
    if (n < 4)
        n = 4;
    if (n > THREADS_MAX)
        n = THREADS_MAX;
    return (int)n;
}

/* Worker processes: one per online CPU (docs/operations.md). */
static int default_workers(void)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    if (cpus < 1)
        cpus = 1;
    if (cpus > WORKERS_MAX)
        cpus = WORKERS_MAX;
    return (int)cpus;
}

static char *default_cache_dir(void)
{
    const char *xdg = getenv("XDG_CACHE_HOME");
    const char *home = getenv("HOME");
    char buf[PATH_MAX + 32];

    /* The XDG spec says a relative $XDG_CACHE_HOME is to be ignored. */
    if (xdg && xdg[0] == '/' && strlen(xdg) < PATH_MAX)
        snprintf(buf, sizeof buf, "%s/hotpub", xdg);
    else if (home && home[0] && strlen(home) < PATH_MAX)
        snprintf(buf, sizeof buf, "%s/.cache/hotpub", home);
    else
        snprintf(buf, sizeof buf, "/tmp/hotpub-%lu", (unsigned long)getuid());
    return cfg_strdup(buf);
}

void hp_config_defaults(struct hp_config *c)
{
    memset(c, 0, sizeof *c);
    c->docroot = NULL;
    c->listen = cfg_strdup("127.0.0.1:8080");
    c->threads = default_threads();
    c->dev = -1;
    c->cache_dir = default_cache_dir();
    c->cc = cfg_strdup("cc");
    c->cflags = cfg_strdup("-O2");
    c->include_dir = NULL;
    c->revalidate = 0;
    c->settle_ms = 60;
    c->inline_pages = 1;
    c->access_log = cfg_strdup("-");
    c->max_body = (size_t)8 << 20;
    c->max_header = (size_t)16 << 10;
    c->timeout = 30;
    c->shutdown_timeout = 10;
    c->conn_limit = 1024;
    c->max_fields = 1000;   /* PHP's max_input_vars, Django's default */
    c->header_timeout = 20; /* Apache mod_reqtimeout: header=20-40    */
    c->body_timeout = 20;   /* ... body=20,MinRate=500                */
    c->body_min_rate = 500;
    c->db = NULL; /* the server picks a SQLite file per document root */
    c->db_pool_size = 0;
    c->db_acquire_timeout = 5000;
    c->db_max_lifetime = 3600;
    c->db_statement_cache = 64;
    /* A supervisor and one worker process per CPU: a page that crashes
     * takes one worker down, not the site (docs/operations.md). 0 runs
     * everything in one process, for debugging (the e2e harness uses it
     * where tests compare pids or per-process counters). */
    c->workers = default_workers();
    c->handler_timeout = 30;
    c->user = c->group = c->pid_file = c->error_log = NULL;
}

void hp_config_free(struct hp_config *c)
{
    free(c->docroot);
    free(c->listen);
    free(c->cache_dir);
    free(c->cc);
    free(c->cflags);
    free(c->include_dir);
    free(c->access_log);
    free(c->db);
    c->db = NULL;
    free(c->user);
    free(c->group);
    free(c->pid_file);
    free(c->error_log);
    c->user = c->group = c->pid_file = c->error_log = NULL;
    c->docroot = c->listen = c->cache_dir = c->cc = c->cflags = NULL;
    c->include_dir = c->access_log = NULL;
}

static int set_nonempty(char **slot, const char *value, const char *what,
                        char *err, size_t errlen)
{
    if (!value[0]) {
        set_err(err, errlen, "%s must not be empty", what);
        return -1;
    }
    replace_str(slot, value);
    return 0;
}

static int set_int(int *slot, const char *value, long min, long max, char *err,
                   size_t errlen)
{
    long v;
    if (!parse_int(value, min, max, &v)) {
        set_err(err, errlen,
                "expected a whole number from %ld to %ld, got \"%s\"", min, max,
                value);
        return -1;
    }
    *slot = (int)v;
    return 0;
}

static int set_size(size_t *slot, const char *value, unsigned long long min,
                    unsigned long long max, char *err, size_t errlen)
{
    char lo[32], hi[32];
    if (!parse_size(value, min, max, slot)) {
        fmt_size(lo, sizeof lo, min);
        fmt_size(hi, sizeof hi, max);
        set_err(err, errlen,
                "expected a size from %s to %s bytes (a whole number, "
                "optionally with a k, m or g suffix), got \"%s\"",
                lo, hi, value);
        return -1;
    }
    return 0;
}

/* "sqlite:PATH", "postgresql://...", "postgres://..." or "off"; the
 * server checks the rest when it opens the pool. */
static int set_db(struct hp_config *c, const char *value, char *err,
                  size_t errlen)
{
    bool ok = strcmp(value, "off") == 0 ||
              (strncmp(value, "sqlite:", 7) == 0 && value[7]) ||
              strncmp(value, "postgresql://", 13) == 0 ||
              strncmp(value, "postgres://", 11) == 0;
    if (!ok) {
        set_err(err, errlen,
                "expected sqlite:PATH, postgresql://... (or postgres://...) "
                "or off, got \"%s\"",
                value);
        return -1;
    }
    replace_str(&c->db, value);
    return 0;
}

static int set_pool_size(struct hp_config *c, const char *value, char *err,
                         size_t errlen)
{
    long v;
    if (strcasecmp(value, "auto") == 0) {
        c->db_pool_size = 0;
        return 0;
    }
    if (!parse_int(value, 1, DB_POOL_MAX, &v)) {
        set_err(err, errlen,
                "expected a whole number from 1 to %d or \"auto\", got "
                "\"%s\"",
                DB_POOL_MAX, value);
        return -1;
    }
    c->db_pool_size = (int)v;
    return 0;
}

int hp_config_set(struct hp_config *c, const char *key, const char *value,
                  char *err, size_t errlen)
{
    int k = key ? key_lookup(key) : -1;
    long v;

    if (k < 0) {
        set_err(err, errlen, "unknown setting \"%s\"", key ? key : "(null)");
        return -1;
    }
    if (!value) {
        set_err(err, errlen, "a value is required");
        return -1;
    }

    switch ((enum key)k) {
    case K_DOCROOT:
        return set_nonempty(&c->docroot, value, "the document root", err,
                            errlen);
    case K_LISTEN: {
        char canon[INET6_ADDRSTRLEN + 16];
        if (parse_listen(value, canon, sizeof canon, err, errlen) < 0)
            return -1;
        replace_str(&c->listen, canon);
        return 0;
    }
    case K_THREADS:
        if (strcasecmp(value, "auto") == 0) {
            c->threads = default_threads();
            return 0;
        }
        if (!parse_int(value, THREADS_MIN, THREADS_MAX, &v)) {
            set_err(err, errlen,
                    "expected a whole number from %d to %d or \"auto\", got "
                    "\"%s\"",
                    THREADS_MIN, THREADS_MAX, value);
            return -1;
        }
        c->threads = (int)v;
        return 0;
    case K_DEV:
        if (!parse_bool_auto(value, &c->dev)) {
            set_err(err, errlen, "expected true, false or auto, got \"%s\"",
                    value);
            return -1;
        }
        return 0;
    case K_CACHE_DIR:
        return set_nonempty(&c->cache_dir, value, "the cache directory", err,
                            errlen);
    case K_CC:
        if (value[strcspn(value, " \t\n")]) {
            set_err(err, errlen,
                    "expected one program name or path, got \"%s\" (put "
                    "compiler flags in cflags)",
                    value);
            return -1;
        }
        return set_nonempty(&c->cc, value, "the compiler", err, errlen);
    case K_CFLAGS:
        replace_str(&c->cflags, value); /* empty: no extra flags */
        return 0;
    case K_INCLUDE_DIR:
        replace_str(&c->include_dir,
                    value[0] ? value : NULL); /* "": built-in */
        return 0;
    case K_REVALIDATE:
        if (!parse_seconds(value, REVALIDATE_MIN, REVALIDATE_MAX,
                           &c->revalidate)) {
            set_err(err, errlen,
                    "expected 0 (off) or seconds from %g to %g, e.g. 2 or "
                    "0.5, got \"%s\"",
                    REVALIDATE_MIN, REVALIDATE_MAX, value);
            return -1;
        }
        return 0;
    case K_SETTLE_MS:
        return set_int(&c->settle_ms, value, 0, SETTLE_MS_MAX, err, errlen);
    case K_INLINE: {
        int on;
        if (!parse_bool_auto(value, &on) || on < 0) {
            set_err(err, errlen, "expected true or false, got \"%s\"", value);
            return -1;
        }
        c->inline_pages = on;
        return 0;
    }
    case K_ACCESS_LOG:
        return set_nonempty(&c->access_log, value,
                            "the access log (use \"off\" to disable it)", err,
                            errlen);
    case K_MAX_BODY:
        return set_size(&c->max_body, value, 0, MAX_BODY_MAX, err, errlen);
    case K_MAX_HEADER:
        return set_size(&c->max_header, value, MAX_HEADER_MIN, MAX_HEADER_MAX,
                        err, errlen);
    case K_TIMEOUT:
        return set_int(&c->timeout, value, TIMEOUT_MIN, TIMEOUT_MAX, err,
                       errlen);
    case K_SHUTDOWN_TIMEOUT:
        return set_int(&c->shutdown_timeout, value, 0, SHUTDOWN_TIMEOUT_MAX,
                       err, errlen);
    case K_CONN_LIMIT:
        if (!parse_int(value, CONN_LIMIT_MIN, CONN_LIMIT_MAX, &v)) {
            set_err(err, errlen,
                    "expected a whole number from %d to %d, got \"%s\"",
                    CONN_LIMIT_MIN, CONN_LIMIT_MAX, value);
            return -1;
        }
        c->conn_limit = (unsigned)v;
        return 0;
    case K_DB:
        return set_db(c, value, err, errlen);
    case K_DB_POOL_SIZE:
        return set_pool_size(c, value, err, errlen);
    case K_DB_ACQUIRE_TIMEOUT:
        return set_int(&c->db_acquire_timeout, value, 0, DB_ACQUIRE_MAX, err,
                       errlen);
    case K_DB_MAX_LIFETIME:
        return set_int(&c->db_max_lifetime, value, 0, DB_LIFETIME_MAX, err,
                       errlen);
    case K_DB_STATEMENT_CACHE:
        return set_int(&c->db_statement_cache, value, 0, DB_STMT_CACHE_MAX,
                       err, errlen);
    case K_WORKERS:
        if (strcasecmp(value, "auto") == 0) {
            c->workers = default_workers();
            return 0;
        }
        if (!parse_int(value, 0, WORKERS_MAX, &v)) {
            set_err(err, errlen,
                    "expected a whole number from 0 (one process) to %d or "
                    "\"auto\", got \"%s\"",
                    WORKERS_MAX, value);
            return -1;
        }
        c->workers = (int)v;
        return 0;
    case K_HANDLER_TIMEOUT:
        if (!parse_seconds(value, HANDLER_TIMEOUT_MIN, HANDLER_TIMEOUT_MAX,
                           &c->handler_timeout)) {
            set_err(err, errlen,
                    "expected 0 (off) or seconds from %g to %g, e.g. 30 or "
                    "2.5, got \"%s\"",
                    HANDLER_TIMEOUT_MIN, HANDLER_TIMEOUT_MAX, value);
            return -1;
        }
        return 0;
    case K_USER:
        return set_nonempty(&c->user, value, "the user", err, errlen);
    case K_GROUP:
        return set_nonempty(&c->group, value, "the group", err, errlen);
    case K_PID_FILE:
        return set_nonempty(&c->pid_file, value, "the pid file", err, errlen);
    case K_ERROR_LOG:
        return set_nonempty(&c->error_log, value, "the error log", err,
                            errlen);
    case K_COUNT:
        break;
    }
    set_err(err, errlen, "unknown setting \"%s\"", key);
    return -1;
}

/* ---- the INI file -------------------------------------------------------- */

struct load_ctx {
    struct hp_config *cfg;
    const char *path;
    char *dir; /* the file's directory, NULL when it is "." */
    FILE *f;
    char *line; /* the raw current line, from getline */
    size_t linecap;
    int lineno;
    bool indented; /* the current line starts with white space */
    int err_line;  /* first error we found (0: none) */
    char err[768];
};

static void load_fail(struct load_ctx *x, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void load_fail(struct load_ctx *x, const char *fmt, ...)
{
    va_list ap;
    if (x->err_line)
        return;
    x->err_line = x->lineno > 0 ? x->lineno : 1;
    va_start(ap, fmt);
    vsnprintf(x->err, sizeof x->err, fmt, ap);
    va_end(ap);
}

/* A section header must be [server]; checked here so "[typo]" with nothing
 * under it is an error too. */
static void check_section(struct load_ctx *x, const char *p)
{
    const char *close = strchr(p, ']');
    const char *b, *e;

    if (!close) {
        load_fail(x, "missing ']' in section header");
        return;
    }
    b = p + 1;
    e = close;
    while (b < e && isspace((unsigned char)*b))
        b++;
    while (e > b && isspace((unsigned char)e[-1]))
        e--;
    if ((size_t)(e - b) != 6 || strncasecmp(b, "server", 6) != 0)
        load_fail(x, "unknown section [%.*s] (hotpub reads only [server])",
                  (int)(close - p - 1), p + 1);
}

/* inih's fgets-style reader: one line per call, counted. Returning NULL
 * ends the parse, which is how we stop at the first error. */
static char *load_reader(char *str, int num, void *stream)
{
    struct load_ctx *x = stream;
    ssize_t n;
    size_t len;
    const char *p;

    if (x->err_line)
        return NULL;
    errno = 0;
    n = getline(&x->line, &x->linecap, x->f);
    if (n < 0) {
        if (ferror(x->f)) {
            int e = errno;
            x->lineno++;
            load_fail(x, "read error: %s", strerror(e));
        }
        return NULL;
    }
    x->lineno++;
    if (memchr(x->line, '\0', (size_t)n)) {
        load_fail(x, "NUL byte in line (is this a text file?)");
        return NULL;
    }
    len = (size_t)n;
    if (len && x->line[len - 1] == '\n')
        len--;
    if (len && x->line[len - 1] == '\r')
        len--;
    /* The line, "\n" and the NUL must fit inih's buffer. */
    if (num < 3 || len > (size_t)num - 2) {
        load_fail(x, "line too long (%zu characters; at most %d)", len,
                  num - 2);
        return NULL;
    }

    p = x->line;
    if (x->lineno == 1 && strncmp(p, "\xEF\xBB\xBF", 3) == 0)
        p += 3; /* UTF-8 BOM: inih skips it too */
    x->indented = *p == ' ' || *p == '\t';
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p == '[')
        check_section(x, p);

    memcpy(str, x->line, len);
    str[len] = '\n';
    str[len + 1] = '\0';
    return str;
}

/* "sqlite:data/app.db" names a file relative to something; ":memory:",
 * "file:" URIs and absolute paths do not. */
static bool sqlite_relative(const char *v)
{
    if (strncmp(v, "sqlite:", 7) != 0)
        return false;
    v += 7;
    return v[0] && v[0] != '/' && strcmp(v, ":memory:") != 0 &&
           strncmp(v, "file:", 5) != 0;
}

static int load_handler(void *user, const char *section, const char *name,
                        const char *value)
{
    struct load_ctx *x = user;
    char msg[512], *val, *joined = NULL;
    size_t n;
    int k;

    if (x->err_line)
        return 0;
    if (x->indented) {
        load_fail(x, "indented line: remove the leading white space (values "
                     "cannot continue onto the next line)");
        return 0;
    }
    /* check_section already rejected anything but [server]. */
    (void)section;

    k = key_lookup(name);
    if (k < 0) {
        load_fail(x, "unknown setting \"%s\"", name);
        return 0;
    }
    if (!value) {
        load_fail(x, "%s: a value is required", key_names[k]);
        return 0;
    }

    /* inih ends a value only at " ;": "listen = :80  # public" would keep
     * the "# public", which no setting means. */
    if (strstr(value, " #") || strstr(value, "\t#")) {
        load_fail(x,
                  "%s: '#' starts a comment only at the start of a line; "
                  "use ';' for a comment after a value",
                  key_names[k]);
        return 0;
    }

    /* A value wholly in double quotes loses them: cflags = "-O2 -g". */
    n = strlen(value);
    if (n >= 2 && value[0] == '"' && value[n - 1] == '"' &&
        !memchr(value + 1, '"', n - 2)) {
        val = strndup(value + 1, n - 2);
    } else {
        val = strdup(value);
    }
    if (!val) {
        load_fail(x, "out of memory");
        return 0;
    }

    /* Paths in a file are relative to the file's directory. */
    if (k == K_DB && x->dir && sqlite_relative(val)) {
        joined = malloc(strlen(x->dir) + strlen(val) + 2);
        if (!joined) {
            free(val);
            load_fail(x, "out of memory");
            return 0;
        }
        sprintf(joined, "sqlite:%s%s%s", x->dir,
                x->dir[strlen(x->dir) - 1] == '/' ? "" : "/", val + 7);
    } else if (is_path_key(k) && x->dir && val[0] && val[0] != '/' &&
        !(k == K_ACCESS_LOG &&
          (strcmp(val, "-") == 0 || strcasecmp(val, "off") == 0))) {
        size_t dl = strlen(x->dir);
        joined = malloc(dl + strlen(val) + 2);
        if (!joined) {
            free(val);
            load_fail(x, "out of memory");
            return 0;
        }
        sprintf(joined, "%s%s%s", x->dir, x->dir[dl - 1] == '/' ? "" : "/",
                val);
    }

    if (hp_config_set(x->cfg, key_names[k], joined ? joined : val, msg,
                      sizeof msg) < 0)
        load_fail(x, "%s: %s", key_names[k], msg);
    free(joined);
    free(val);
    return !x->err_line;
}

int hp_config_load(struct hp_config *c, const char *path)
{
    struct load_ctx x = {.cfg = c, .path = path};
    struct stat st;
    const char *slash;
    int rc;

    x.f = fopen(path, "r");
    if (!x.f) {
        fprintf(stderr, "hotpub: cannot open config file %s: %s\n", path,
                strerror(errno));
        return -1;
    }
    if (fstat(fileno(x.f), &st) == 0 && S_ISDIR(st.st_mode)) {
        fprintf(stderr, "hotpub: config file %s is a directory\n", path);
        fclose(x.f);
        return -1;
    }

    slash = strrchr(path, '/');
    if (slash)
        x.dir = slash == path ? cfg_strdup("/")
                              : strndup(path, (size_t)(slash - path));
    if (slash && !x.dir) {
        fputs("hotpub: out of memory\n", stderr);
        fclose(x.f);
        return -1;
    }

    rc = ini_parse_stream(load_reader, &x, load_handler, &x);

    if (rc > 0 && (!x.err_line || rc < x.err_line))
        fprintf(stderr,
                "hotpub: %s:%d: expected \"key = value\", \"[server]\" or a "
                "comment\n",
                path, rc);
    else if (x.err_line)
        fprintf(stderr, "hotpub: %s:%d: %s\n", path, x.err_line, x.err);
    else if (rc < 0)
        fprintf(stderr, "hotpub: %s: cannot parse (out of memory)\n", path);

    free(x.line);
    free(x.dir);
    fclose(x.f);
    return rc || x.err_line ? -1 : 0;
}
