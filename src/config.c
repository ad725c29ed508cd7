/*
 * config.c - the server's settings: defaults, validation, and the INI file.
 *
 * Owns: the table of settings (hp_settings: key, type, range, default
 * description, help, section; main.c builds the flags, --help and the docs'
 * reference from it), struct hp_config's values (hp_config_defaults,
 * hp_config_set, hp_config_load, hp_config_free), the config-file syntax,
 * and normalizing values (listen addresses are stored as "A.B.C.D:PORT" or
 * "[V6]:PORT", numeric and canonical).
 * May not touch: anything at run time. It never opens sockets, creates
 * directories, or checks that paths exist; it only decides what the settings
 * are. It prints only hp_config_load's error (to stderr, or to the sink
 * main.c names for a reload: hp_config_set_error_sink) and calls nothing
 * else of the server's (its own small helpers, not util.c's), so it stays
 * independent of the rest; the unit tests link every object but main.o.
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
#include "ops.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* ---- small helpers ------------------------------------------------------ */

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

/* ---- ranges ---------------------------------------------------------------
 */

/* Ranges, quoted by the error messages, --help and docs/configuration.md
 * through the table below. */
#define THREADS_MAX 1024
#define WORKERS_MAX 1024
#define SIZE_K (1ULL << 10)
#define SIZE_M (1ULL << 20)
#define SIZE_G (1ULL << 30)

/* "max_body", "Max-Body" and "max-body" are one key: into norm, or false
 * when it is too long to be any key. */
static bool norm_key(const char *key, char *norm, size_t len)
{
    size_t n = strlen(key);

    if (n >= len)
        return false;
    for (size_t i = 0; i <= n; i++) {
        char ch = key[i];
        norm[i] = ch == '_' ? '-' : (char)tolower((unsigned char)ch);
    }
    return true;
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
    long n = 2L * hp_cpus();
    if (n < 4)
        n = 4;
    if (n > THREADS_MAX)
        n = THREADS_MAX;
    return (int)n;
}

/* Worker processes: one per CPU the process may run on (docs/operations.md):
 * under `taskset -c 1` or a one-CPU cpuset, one worker, not one per CPU of
 * the machine competing for that CPU. */
static int default_workers(void)
{
    long cpus = hp_cpus();
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
    /* Apache's mpm_event runs 2 x 64 threads in Debian's sizing of it; a
     * worker process grows to this many when its requests block. */
    c->max_threads = 256;
    c->thread_stack = (size_t)512 << 10;
    c->thread_idle = 10;
    c->module_share = 50;
    c->dev = -1;
    c->cache_dir = default_cache_dir();
    c->cc = cfg_strdup("cc");
    c->cflags = cfg_strdup("-O2");
    c->fast_cc = cfg_strdup("tcc");
    c->fast_tier = -1;
    c->include_dir = NULL;
    /* Far above any real page (a big one takes a few seconds and a few
     * hundred MB), far below what a runaway compile would take from the
     * server's machine: `#include "/dev/zero"` took 4 GB in 3.5 s. */
    c->compile_timeout = 60;
    c->compile_memory_limit = (size_t)2 << 30;
    c->compile_cpu_limit = 60;
    c->compile_file_limit = (size_t)256 << 20;
    c->revalidate = 0;
    c->settle_ms = -1; /* auto: serve_start picks by tier */
    c->stale_wait_ms = 1000;
    c->inline_pages = 1;
    c->coroutines = 1;
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
    c->db_acquire_timeout = -1; /* auto: hp_config_db_acquire_ms */
    c->db_max_lifetime = 3600;
    c->db_statement_cache = 64;
    c->session_cookie = cfg_strdup("hotpub_session");
    c->session_lifetime = 1209600; /* two weeks, Django's default */
    /* 24 minutes, PHP's session.gc_maxlifetime: a visitor shown a form */
    c->session_anonymous_lifetime = 1440;
    c->session_secure_cookie = 0;  /* Secure over HTTPS only */
    c->session_purge_interval = 300;
    /* auto: hp_config_session_lock_ms (10 s, a third of handler-timeout's
     * default: a 503 before the 504) */
    c->session_lock_timeout = -1;
    /* A supervisor and one worker process per CPU: a page that crashes
     * takes one worker down, not the site (docs/operations.md). 0 runs
     * everything in one process, for debugging (the e2e harness uses it
     * where tests compare pids or per-process counters). */
    c->workers = default_workers();
    c->handler_timeout = 30;
    c->worker_max_requests = 0; /* off, as PHP-FPM's pm.max_requests */
    c->worker_memory_limit = 0;
    c->worker_heartbeat_timeout = 5;
    c->user = c->group = c->pid_file = c->error_log = NULL;
    c->tls_cert = c->tls_key = c->admin_token = c->health_allow = NULL;
    c->tls_redirect = NULL;
    c->allowed_hosts = NULL;
    /* Mozilla's "intermediate": TLS 1.2 and 1.3, AEAD ciphers with
     * forward secrecy only. */
    c->tls_priorities = cfg_strdup(HP_TLS_PRIORITIES);
    c->drain_delay = 0;
    c->metrics = 1;
}

void hp_config_free(struct hp_config *c)
{
    free(c->docroot);
    free(c->listen);
    free(c->cache_dir);
    free(c->cc);
    free(c->cflags);
    free(c->fast_cc);
    c->fast_cc = NULL;
    free(c->include_dir);
    free(c->access_log);
    free(c->db);
    c->db = NULL;
    free(c->user);
    free(c->group);
    free(c->pid_file);
    free(c->error_log);
    free(c->session_cookie);
    c->session_cookie = NULL;
    free(c->tls_cert);
    free(c->tls_key);
    free(c->tls_priorities);
    free(c->tls_redirect);
    c->tls_redirect = NULL;
    free(c->admin_token);
    free(c->health_allow);
    c->tls_cert = c->tls_key = c->tls_priorities = NULL;
    c->admin_token = c->health_allow = NULL;
    free(c->allowed_hosts);
    c->allowed_hosts = NULL;
    free(c->upload_dir);
    c->upload_dir = NULL;
    free(c->warm);
    c->warm = NULL;
    c->user = c->group = c->pid_file = c->error_log = NULL;
    c->docroot = c->listen = c->cache_dir = c->cc = c->cflags = NULL;
    c->include_dir = c->access_log = NULL;
}

/* ---- the table ------------------------------------------------------------
 */

static int check_cc(const char *value, char *err, size_t errlen)
{
    if (value[strcspn(value, " \t\n")]) {
        set_err(err, errlen,
                "expected one program name or path, got \"%s\" (put "
                "compiler flags in cflags)",
                value);
        return -1;
    }
    return 0;
}

/* A cookie name is an RFC 9110 token (RFC 6265 4.1.1). */
static int check_cookie_name(const char *value, char *err, size_t errlen)
{
    for (const char *p = value; *p; p++) {
        if ((unsigned char)*p <= 32 || (unsigned char)*p >= 127 ||
            strchr("()<>@,;:\\\"/[]?={}", *p)) {
            set_err(err, errlen,
                    "\"%s\" is not a cookie name (letters, digits and "
                    "!#$%%&'*+-.^_`|~ only)",
                    value);
            return -1;
        }
    }
    return 0;
}

/* An optional second listen address: ADDR:PORT as --listen takes it. */
static int check_listen_opt(const char *value, char *err, size_t errlen)
{
    char canon[INET6_ADDRSTRLEN + 16];
    return *value ? parse_listen(value, canon, sizeof canon, err, errlen) : 0;
}

static int auto_pool_size(void)
{
    return 0; /* the pool picks by engine (db.c) */
}

static int auto_io_threads(void)
{
    return 0; /* the CPUs divided among the workers (master.c, server.c) */
}

static int auto_settle(void)
{
    return -1; /* server.c picks by tier (hp_settle_ms_auto) */
}

/* The bounded waits' "auto": picked from handler-timeout where they are
 * used (hp_config_db_acquire_ms, hp_config_session_lock_ms). */
static int auto_wait(void)
{
    return -1;
}

/* A wait's auto bound: cap, or half of handler-timeout when that is
 * shorter, so that a default never reaches the handler's deadline (and
 * never draws master.c's warning that it is not below handler-timeout). */
static int wait_auto_ms(const struct hp_config *c, int cap)
{
    double half = c->handler_timeout * 500.0;
    if (c->handler_timeout <= 0 || half >= cap)
        return cap;
    return half < 1 ? 1 : (int)half;
}

int hp_config_db_acquire_ms(const struct hp_config *c)
{
    return c->db_acquire_timeout >= 0 ? c->db_acquire_timeout
                                      : wait_auto_ms(c, 5000);
}

int hp_config_session_lock_ms(const struct hp_config *c)
{
    return c->session_lock_timeout > 0 ? c->session_lock_timeout
                                       : wait_auto_ms(c, 10000);
}

#define OFF(field) offsetof(struct hp_config, field)
#define S_SERVER "Server"
#define S_COMPILE "Compile limits"
#define S_LIMITS "Request limits"
#define S_PROCS "Processes"
#define S_DB "Database"
#define S_SESS "Sessions"
#define S_OPS "Operations"

/* In --help and docs order. Every default that depends on the machine (or
 * is NULL meaning "decide later") has .def; the rest are printed from
 * hp_config_defaults, so the docs cannot drift from the binary. */
const struct hp_setting hp_settings[] = {
    {.key = "docroot",
     .arg = "DIR",
     .section = S_SERVER,
     .help = "directory of pages and static files (the DOCROOT argument)",
     .type = HP_SET_STRING,
     .flag = HP_FLAG_NONE,
     .off = OFF(docroot),
     .noun = "the document root",
     .path = true,
     .def = "the current directory (serve)"},
    {.key = "listen",
     .arg = "ADDR:PORT",
     .section = S_SERVER,
     .help = "address and port to listen on; :PORT = all IPv4, [::1]:PORT "
             "for IPv6",
     .type = HP_SET_LISTEN,
     .off = OFF(listen)},
    {.key = "dev",
     .section = S_SERVER,
     .help = "development mode: compile errors shown in the browser; auto = "
             "on when listening on loopback",
     .type = HP_SET_TRISTATE,
     .flag = HP_FLAG_SWITCH,
     .off = OFF(dev)},
    {.key = "threads",
     .arg = "N|auto",
     .section = S_SERVER,
     .help = "request handler threads (per worker process)",
     .type = HP_SET_INT,
     .off = OFF(threads),
     .min = 1,
     .max = THREADS_MAX,
     .auto_value = default_threads,
     .def = "2 × the CPUs it may use, at least 4",
     .def_here = true},
    {.key = "max-threads",
     .arg = "N",
     .section = S_SERVER,
     .help = "handler threads a worker process grows to when every thread is "
             "busy and requests wait (threads is the floor)",
     .type = HP_SET_INT,
     .off = OFF(max_threads),
     .min = 1,
     .max = THREADS_MAX},
    {.key = "thread-stack-size",
     .arg = "BYTES",
     .section = S_SERVER,
     .help = "stack of each handler thread, k/m/g suffixes allowed; a page's "
             "locals and calls must fit in it (a page run inline on an "
             "event-loop thread has the process's stack limit, ulimit -s, "
             "instead)",
     .type = HP_SET_SIZE,
     .off = OFF(thread_stack),
     .min = (double)(64 * SIZE_K),
     .max = (double)SIZE_G},
    {.key = "thread-idle-timeout",
     .arg = "SECONDS",
     .section = S_SERVER,
     .help = "a handler thread above the floor that stays idle this long "
             "exits",
     .type = HP_SET_SECONDS,
     .off = OFF(thread_idle),
     .min = 0.01,
     .max = 86400,
     .unit = "s",
     .zero = "never"},
    {.key = "module-thread-share",
     .arg = "PERCENT",
     .section = S_SERVER,
     .help = "share of max-threads one module's requests may run on; the "
             "rest wait in its own queue, so other pages always find threads",
     .type = HP_SET_INT,
     .off = OFF(module_share),
     .min = 1,
     .max = 100,
     .unit = "%"},
    {.key = "cc",
     .arg = "CC",
     .section = S_SERVER,
     .help = "the page compiler: one program name or path",
     .type = HP_SET_STRING,
     .off = OFF(cc),
     .noun = "the compiler",
     .check = check_cc},
    {.key = "cflags",
     .arg = "FLAGS",
     .section = S_SERVER,
     .help = "flags for every page compile",
     .type = HP_SET_STRING,
     .off = OFF(cflags),
     .empty_ok = true},
    {.key = "fast-tier",
     .section = S_SERVER,
     .help = "compile a changed page with the fast tier first (published at "
             "once), then with cc and cflags behind it; auto = on in dev "
             "mode unless cc is set",
     .type = HP_SET_TRISTATE,
     .flag = HP_FLAG_SWITCH,
     .off = OFF(fast_tier)},
    {.key = "fast-cc",
     .arg = "CC|off",
     .section = S_SERVER,
     .help = "the fast tier's compiler (its objects linked with ld -z "
             "noexecstack); off, or not found: cc at -O0",
     .type = HP_SET_STRING,
     .off = OFF(fast_cc)},
    {.key = "cache-dir",
     .arg = "DIR",
     .section = S_SERVER,
     .help = "the compile cache",
     .type = HP_SET_STRING,
     .off = OFF(cache_dir),
     .noun = "the cache directory",
     .path = true,
     .def = "$XDG_CACHE_HOME/hotpub, else $HOME/.cache/hotpub, else "
            "/tmp/hotpub-UID",
     .def_here = true},
    {.key = "include-dir",
     .arg = "DIR",
     .section = S_SERVER,
     .help = "directory that holds hotpub.h",
     .type = HP_SET_STRING,
     .off = OFF(include_dir),
     .empty_ok = true,
     .empty_null = true,
     .path = true,
     .def = "next to the binary, else built in"},
    {.key = "settle-ms",
     .arg = "MS|auto",
     .section = S_SERVER,
     .help = "quiet time after a change before publishing it (a changed "
             "page's compile starts at once); auto = 20 ms with the fast "
             "tier (dev mode), else 60 ms",
     .type = HP_SET_INT,
     .off = OFF(settle_ms),
     .min = 0,
     .max = 10000,
     .auto_value = auto_settle,
     .unit = "ms"},
    {.key = "stale-wait-ms",
     .arg = "MS",
     .section = S_SERVER,
     .help = "production mode: a request for a changed page that has a "
             "last good version waits this long for its build, then that "
             "version answers (the wait ends before --handler-timeout if "
             "that comes first); dev mode waits for the build",
     .type = HP_SET_INT,
     .off = OFF(stale_wait_ms),
     .min = 0,
     .max = 600000,
     .unit = "ms",
     .zero = "do not wait"},
    {.key = "inline",
     .arg = "true|false",
     .section = S_SERVER,
     .help = "run pages proven fast on the event-loop threads; false keeps "
             "every page on the handler threads",
     .type = HP_SET_BOOL,
     .off = OFF(inline_pages)},
    {.key = "coroutines",
     .arg = "true|false",
     .section = S_SERVER,
     .help = "run pages whose runs wait on the database, and are short "
             "between waits, as coroutines on each worker's reactor thread, "
             "many queries in flight on one thread; false keeps them on the "
             "handler threads",
     .type = HP_SET_BOOL,
     .off = OFF(coroutines)},
    {.key = "revalidate",
     .arg = "SECONDS",
     .section = S_SERVER,
     .help = "also re-check every page this often",
     .type = HP_SET_SECONDS,
     .off = OFF(revalidate),
     .min = 0.01,
     .max = 86400,
     .unit = "s"},
    {.key = "access-log",
     .arg = "PATH|-|off",
     .section = S_SERVER,
     .help = "the access log; - = standard output",
     .type = HP_SET_STRING,
     .off = OFF(access_log),
     .noun = "the access log (use \"off\" to disable it)",
     .path = true},

    {.key = "warm",
     .arg = "ROOT",
     .section = S_COMPILE,
     .help = "hotpub check: compile DOCROOT as ROOT (the symlink a deploy "
             "swaps to it) will serve it, into --cache-dir, so the swap "
             "runs no compiler (docs/scaling.md)",
     .type = HP_SET_STRING,
     .off = OFF(warm),
     .noun = "the warm root",
     .empty_ok = true,
     .empty_null = true,
     .def = "none (check only)"},
    {.key = "compile-timeout",
     .arg = "SECONDS",
     .section = S_COMPILE,
     .help = "a page compile running longer is stopped and reported as an "
             "error",
     .type = HP_SET_INT,
     .off = OFF(compile_timeout),
     .min = 1,
     .max = 3600,
     .unit = "s"},
    {.key = "compile-memory-limit",
     .arg = "BYTES",
     .section = S_COMPILE,
     .help = "address space of each compiler process (RLIMIT_AS), k/m/g "
             "suffixes allowed",
     .type = HP_SET_SIZE,
     .off = OFF(compile_memory_limit),
     .min = 0,
     .max = (double)(1024 * SIZE_G),
     .zero = "off"},
    {.key = "compile-cpu-limit",
     .arg = "SECONDS",
     .section = S_COMPILE,
     .help = "CPU time of each compiler process (RLIMIT_CPU)",
     .type = HP_SET_INT,
     .off = OFF(compile_cpu_limit),
     .min = 0,
     .max = 86400,
     .unit = "s",
     .zero = "off"},
    {.key = "compile-file-limit",
     .arg = "BYTES",
     .section = S_COMPILE,
     .help = "largest file a compiler process may write (RLIMIT_FSIZE), "
             "k/m/g suffixes allowed",
     .type = HP_SET_SIZE,
     .off = OFF(compile_file_limit),
     .min = 0,
     .max = (double)(1024 * SIZE_G),
     .zero = "off"},

    {.key = "max-body",
     .arg = "BYTES",
     .section = S_LIMITS,
     .help = "largest request body, k/m/g suffixes allowed; larger gets 413",
     .type = HP_SET_SIZE,
     .off = OFF(max_body),
     .min = 0,
     .max = (double)(1024 * SIZE_G)},
    {.key = "max-header",
     .arg = "BYTES",
     .section = S_LIMITS,
     .help = "largest request head; a longer request line gets 414, a larger "
             "head 431",
     .type = HP_SET_SIZE,
     .off = OFF(max_header),
     .min = (double)SIZE_K,
     .max = (double)SIZE_M},
    {.key = "max-fields",
     .arg = "N",
     .section = S_LIMITS,
     .help = "query and form fields per request; more get 413",
     .type = HP_SET_INT,
     .off = OFF(max_fields),
     .min = 1,
     .max = 1000000},
    {.key = "timeout",
     .arg = "SECONDS",
     .section = S_LIMITS,
     .help = "idle connection timeout",
     .type = HP_SET_INT,
     .off = OFF(timeout),
     .min = 1,
     .max = 86400,
     .unit = "s"},
    {.key = "header-timeout",
     .arg = "SECONDS",
     .section = S_LIMITS,
     .help = "time allowed for a whole request head; then 408",
     .type = HP_SET_INT,
     .off = OFF(header_timeout),
     .min = 1,
     .max = 3600,
     .unit = "s"},
    {.key = "body-timeout",
     .arg = "SECONDS",
     .section = S_LIMITS,
     .help = "time allowed for a request body, extended by 1 s for every "
             "body-min-rate bytes received; then 408",
     .type = HP_SET_INT,
     .off = OFF(body_timeout),
     .min = 1,
     .max = 3600,
     .unit = "s"},
    {.key = "body-min-rate",
     .arg = "BYTES",
     .section = S_LIMITS,
     .help = "bytes per second a request body must keep up",
     .type = HP_SET_INT,
     .off = OFF(body_min_rate),
     .min = 0,
     .max = 1e9,
     .zero = "off"},
    {.key = "max-streams",
     .arg = "N",
     .section = S_LIMITS,
     .help = "streamed responses (hp_flush, hp_sse) open at once, each on a "
             "handler thread; one more gets 503",
     .type = HP_SET_INT,
     .off = OFF(max_streams),
     .min = 0,
     .max = 100000,
     .zero = "half of --max-threads"},
    {.key = "upload-dir",
     .arg = "DIR",
     .section = S_LIMITS,
     .help = "where uploaded files are spooled while their request runs "
             "(hotpub-upload-PID-XXXXXX; those of a process that died "
             "are removed when it is reaped or at the next start)",
     .type = HP_SET_STRING,
     .off = OFF(upload_dir),
     .noun = "the upload directory",
     .path = true,
     .def = "$TMPDIR, else /tmp"},
    {.key = "connection-limit",
     .arg = "N",
     .section = S_LIMITS,
     .help = "simultaneous connections at most",
     .type = HP_SET_UINT,
     .off = OFF(conn_limit),
     .min = 1,
     .max = 1048576},
    {.key = "shutdown-timeout",
     .arg = "SECONDS",
     .section = S_LIMITS,
     .help = "wait for in-flight requests at shutdown",
     .type = HP_SET_INT,
     .off = OFF(shutdown_timeout),
     .min = 0,
     .max = 3600,
     .unit = "s"},

    {.key = "workers",
     .arg = "N|auto",
     .section = S_PROCS,
     .help = "worker processes under a supervising parent; auto = the "
             "CPUs it may use (affinity)",
     .type = HP_SET_INT,
     .off = OFF(workers),
     .min = 0,
     .max = WORKERS_MAX,
     .zero = "one process",
     .auto_value = default_workers,
     .def = "auto (one per CPU it may use)",
     .def_here = true},
    {.key = "io-threads",
     .arg = "N|auto",
     .section = S_PROCS,
     .help = "event-loop threads in each process; auto = its share of the "
             "CPUs; with 1, the reactor's thread runs the loop",
     .type = HP_SET_INT,
     .off = OFF(io_threads),
     .min = 0,
     .max = 64,
     .zero = "auto",
     .auto_value = auto_io_threads,
     .def = "auto (the CPUs divided among the workers, at least 1)",
     .def_here = true},
    {.key = "handler-timeout",
     .arg = "SECONDS",
     .section = S_PROCS,
     .help = "a handler running longer gets 504 and its worker is replaced; "
             "with worker processes only",
     .type = HP_SET_SECONDS,
     .off = OFF(handler_timeout),
     .min = 0.1,
     .max = 86400,
     .unit = "s"},
    {.key = "worker-max-requests",
     .arg = "N",
     .section = S_PROCS,
     .help = "replace a worker gracefully after this many page requests "
             "(as PHP-FPM's pm.max_requests); with worker processes only",
     .type = HP_SET_INT,
     .off = OFF(worker_max_requests),
     .min = 0,
     .max = 1e9,
     .zero = "off"},
    {.key = "worker-memory-limit",
     .arg = "BYTES",
     .section = S_PROCS,
     .help = "replace a worker gracefully once its resident memory passes "
             "this (checked after every page request); with worker "
             "processes only",
     .type = HP_SET_SIZE,
     .off = OFF(worker_memory_limit),
     .min = 0,
     .max = (double)(1024 * SIZE_G),
     .zero = "off"},
    {.key = "worker-heartbeat-timeout",
     .arg = "SECONDS",
     .section = S_PROCS,
     .help = "kill and replace a worker whose accept thread has not "
             "beaten for this long (it beats once a second while the "
             "worker's own descriptors are intact); with worker processes "
             "only",
     .type = HP_SET_SECONDS,
     .off = OFF(worker_heartbeat_timeout),
     .min = 2,
     .max = 86400,
     .unit = "s"},
    {.key = "user",
     .arg = "USER",
     .section = S_PROCS,
     .help = "drop privileges to USER after binding",
     .type = HP_SET_STRING,
     .off = OFF(user),
     .noun = "the user",
     .def = "none"},
    {.key = "group",
     .arg = "GROUP",
     .section = S_PROCS,
     .help = "and to GROUP",
     .type = HP_SET_STRING,
     .off = OFF(group),
     .noun = "the group",
     .def = "USER's group"},
    {.key = "pid-file",
     .arg = "PATH",
     .section = S_PROCS,
     .help = "write the server's (the parent's) pid here",
     .type = HP_SET_STRING,
     .off = OFF(pid_file),
     .noun = "the pid file",
     .path = true,
     .def = "none"},
    {.key = "error-log",
     .arg = "PATH",
     .section = S_PROCS,
     .help = "server messages to PATH, not standard error; reopened on "
             "SIGUSR1",
     .type = HP_SET_STRING,
     .off = OFF(error_log),
     .noun = "the error log",
     .path = true,
     .def = "- (standard error)"},

    {.key = "db",
     .arg = "URL|off",
     .section = S_DB,
     .help = "the default pool's database: sqlite:PATH, postgresql://... or "
             "off",
     .type = HP_SET_DB,
     .off = OFF(db),
     .def = "a SQLite file per document root in $XDG_DATA_HOME/hotpub"},
    {.key = "db-pool-size",
     .arg = "N|auto",
     .section = S_DB,
     .help = "database connections at most; auto = 8 for PostgreSQL, 4 for "
             "SQLite",
     .type = HP_SET_INT,
     .off = OFF(db_pool_size),
     .min = 1,
     .max = 1024,
     .auto_value = auto_pool_size},
    {.key = "db-acquire-timeout",
     .arg = "MS|auto",
     .section = S_DB,
     .help = "wait this long for a free connection, then answer 503 "
             "(the wait ends before --handler-timeout if that comes first); "
             "auto = 5000, or half of --handler-timeout if that is less",
     .type = HP_SET_INT,
     .off = OFF(db_acquire_timeout),
     .min = 0,
     .max = 600000,
     .auto_value = auto_wait,
     .unit = "ms",
     .zero = "do not wait"},
    {.key = "db-max-lifetime",
     .arg = "SECONDS",
     .section = S_DB,
     .help = "replace a connection this old",
     .type = HP_SET_INT,
     .off = OFF(db_max_lifetime),
     .min = 0,
     .max = 31536000,
     .unit = "s",
     .zero = "never"},
    {.key = "db-statement-cache",
     .arg = "N",
     .section = S_DB,
     .help = "prepared statements kept per connection",
     .type = HP_SET_INT,
     .off = OFF(db_statement_cache),
     .min = 0,
     .max = 10000,
     .zero = "off"},

    {.key = "session-cookie",
     .arg = "NAME",
     .section = S_SESS,
     .help = "the name of the session cookie (hp_session_*, hp_csrf_token)",
     .type = HP_SET_STRING,
     .off = OFF(session_cookie),
     .noun = "the session cookie name",
     .check = check_cookie_name},
    {.key = "session-lifetime",
     .arg = "SECONDS",
     .section = S_SESS,
     .help = "a session unused this long expires (the cookie's Max-Age)",
     .type = HP_SET_INT,
     .off = OFF(session_lifetime),
     .min = 60,
     .max = 31536000,
     .unit = "s"},
    {.key = "session-anonymous-lifetime",
     .arg = "SECONDS",
     .section = S_SESS,
     .help = "a session that holds nothing but its CSRF token (no data set) "
             "expires after this long unused (at most session-lifetime)",
     .type = HP_SET_INT,
     .off = OFF(session_anonymous_lifetime),
     .min = 60,
     .max = 31536000,
     .unit = "s"},
    {.key = "session-secure-cookie",
     .section = S_SESS,
     .help = "mark the session cookie Secure on every response (behind a "
             "proxy that terminates TLS); over HTTPS it always is",
     .type = HP_SET_BOOL,
     .flag = HP_FLAG_SWITCH,
     .off = OFF(session_secure_cookie)},
    {.key = "session-purge-interval",
     .arg = "SECONDS",
     .section = S_SESS,
     .help = "how often each worker process deletes expired sessions",
     .type = HP_SET_INT,
     .off = OFF(session_purge_interval),
     .min = 0,
     .max = 86400,
     .unit = "s",
     .zero = "never"},
    {.key = "session-lock-timeout",
     .arg = "MS|auto",
     .section = S_SESS,
     .help = "a request waits this long for its session while another "
             "request of the session uses it, then answers 503 (the wait "
             "ends before --handler-timeout if that comes first); auto = "
             "10000, or half of --handler-timeout if that is less",
     .type = HP_SET_INT,
     .off = OFF(session_lock_timeout),
     .min = 1,
     .max = 600000,
     .auto_value = auto_wait,
     .unit = "ms"},
    {.key = "tls-cert",
     .arg = "FILE",
     .section = S_OPS,
     .help = "serve HTTPS with this PEM certificate (chain); needs tls-key; "
             "re-read when the workers restart on SIGHUP",
     .type = HP_SET_STRING,
     .off = OFF(tls_cert),
     .noun = "the TLS certificate",
     .empty_ok = true,
     .empty_null = true,
     .path = true,
     .def = "none (plain HTTP)"},
    {.key = "tls-key",
     .arg = "FILE",
     .section = S_OPS,
     .help = "the PEM private key of tls-cert",
     .type = HP_SET_STRING,
     .off = OFF(tls_key),
     .noun = "the TLS key",
     .empty_ok = true,
     .empty_null = true,
     .path = true,
     .def = "none"},
    {.key = "tls-priorities",
     .arg = "STRING",
     .section = S_OPS,
     .help = "GnuTLS priority string: protocol versions and ciphers offered",
     .type = HP_SET_STRING,
     .off = OFF(tls_priorities),
     .noun = "the TLS priority string"},
    {.key = "tls-redirect",
     .arg = "ADDR:PORT",
     .section = S_OPS,
     .help = "also listen for plain HTTP here and answer every request with "
             "a 308 to the same URL over HTTPS (needs tls-cert)",
     .type = HP_SET_STRING,
     .off = OFF(tls_redirect),
     .noun = "the redirect listen address",
     .empty_ok = true,
     .empty_null = true,
     .check = check_listen_opt,
     .def = "none"},
    {.key = "admin-token",
     .arg = "TOKEN",
     .section = S_OPS,
     .help = "let clients off loopback reach /_hotpub/ with `Authorization: "
             "Bearer TOKEN`",
     .type = HP_SET_STRING,
     .off = OFF(admin_token),
     .noun = "the admin token",
     .empty_ok = true,
     .empty_null = true,
     .def = "none (loopback only)"},
    {.key = "health-allow",
     .arg = "CIDR,...",
     .section = S_OPS,
     .help = "addresses (the load balancer's) allowed /_hotpub/health "
             "besides loopback, e.g. 10.0.0.0/8,2001:db8::/32",
     .type = HP_SET_STRING,
     .off = OFF(health_allow),
     .noun = "the health-allow list",
     .empty_ok = true,
     .empty_null = true,
     .check = hp_cidr_check,
     .def = "none (loopback only)"},
    {.key = "allowed-hosts",
     .arg = "NAME,...",
     .section = S_OPS,
     .help = "Host names, besides localhost, *.localhost and IP addresses "
             "of this server, under which /_hotpub/ and dev mode's "
             "diagnostics answer (DNS rebinding); .NAME matches its "
             "subdomains too, * any",
     .type = HP_SET_STRING,
     .off = OFF(allowed_hosts),
     .noun = "the allowed-hosts list",
     .empty_ok = true,
     .empty_null = true,
     .check = hp_host_list_check,
     .def = "none (loopback names and addresses only)"},
    {.key = "metrics",
     .section = S_OPS,
     .help = "count requests by page, status class and duration for "
             "/_hotpub/metrics and the dashboard",
     .type = HP_SET_BOOL,
     .flag = HP_FLAG_SWITCH,
     .off = OFF(metrics)},
    {.key = "drain-delay",
     .arg = "SECONDS",
     .section = S_OPS,
     .help = "on SIGTERM, answer /_hotpub/health 503 for this long while "
             "still serving, then stop accepting",
     .type = HP_SET_SECONDS,
     .off = OFF(drain_delay),
     .min = 0,
     .max = 3600,
     .unit = "s"},
};
const size_t hp_settings_count = sizeof hp_settings / sizeof *hp_settings;

const struct hp_setting *hp_setting_find(const char *key)
{
    char norm[32];

    if (!key || !norm_key(key, norm, sizeof norm))
        return NULL;
    for (size_t i = 0; i < hp_settings_count; i++)
        if (strcmp(norm, hp_settings[i].key) == 0)
            return &hp_settings[i];
    return NULL;
}

/* ---- text for --help and the docs -----------------------------------------
 */

/* min-max in the setting's own notation: "1K-1M", "0.01-86400". */
static void fmt_span(const struct hp_setting *s, const char *dash, char *buf,
                     size_t len)
{
    char lo[32], hi[32];

    if (s->type == HP_SET_SIZE) {
        fmt_size(lo, sizeof lo, (unsigned long long)s->min);
        fmt_size(hi, sizeof hi, (unsigned long long)s->max);
    } else {
        snprintf(lo, sizeof lo, "%.10g", s->min);
        snprintf(hi, sizeof hi, "%.10g", s->max);
    }
    snprintf(buf, len, "%s%s%s", lo, dash, hi);
}

void hp_setting_range_text(const struct hp_setting *s, const char *dash,
                           char *buf, size_t len)
{
    char span[80], zero[48] = "";

    switch (s->type) {
    case HP_SET_INT:
    case HP_SET_UINT:
    case HP_SET_SIZE:
        fmt_span(s, dash, span, sizeof span);
        if (s->zero && s->min == 0)
            snprintf(zero, sizeof zero, " (0 = %s)", s->zero);
        snprintf(buf, len, "%s%s%s%s%s", span, s->unit ? " " : "",
                 s->unit ? s->unit : "", s->auto_value ? " or auto" : "", zero);
        return;
    case HP_SET_SECONDS:
        fmt_span(s, dash, span, sizeof span);
        snprintf(buf, len, "0 (off) or %s %s", span, s->unit ? s->unit : "s");
        return;
    case HP_SET_BOOL:
        snprintf(buf, len, "true or false");
        return;
    case HP_SET_TRISTATE:
        snprintf(buf, len, "true, false or auto");
        return;
    default:
        if (len)
            buf[0] = '\0';
    }
}

void hp_setting_value_text(const struct hp_setting *s,
                           const struct hp_config *c, char *buf, size_t len)
{
    const char *field = (const char *)c + s->off;
    int i;

    switch (s->type) {
    case HP_SET_INT:
        memcpy(&i, field, sizeof i);
        if (((s->auto_value == auto_pool_size ||
              s->auto_value == auto_io_threads) &&
             i == 0) ||
            ((s->auto_value == auto_settle || s->auto_value == auto_wait) &&
             i < 0))
            snprintf(buf, len, "auto");
        else
            snprintf(buf, len, "%d", i);
        return;
    case HP_SET_UINT: {
        unsigned u;
        memcpy(&u, field, sizeof u);
        snprintf(buf, len, "%u", u);
        return;
    }
    case HP_SET_SIZE: {
        size_t z;
        memcpy(&z, field, sizeof z);
        fmt_size(buf, len, z);
        return;
    }
    case HP_SET_SECONDS: {
        double d;
        memcpy(&d, field, sizeof d);
        snprintf(buf, len, "%g", d);
        return;
    }
    case HP_SET_BOOL:
    case HP_SET_TRISTATE:
        memcpy(&i, field, sizeof i);
        snprintf(buf, len, "%s", i < 0 ? "auto" : i ? "true" : "false");
        return;
    default: {
        const char *str;
        memcpy(&str, field, sizeof str);
        snprintf(buf, len, "%s", str ? str : "none");
    }
    }
}

/* ---- setting values ---------------------------------------------------------
 */

static int set_string(struct hp_config *c, const struct hp_setting *s,
                      const char *value, char *err, size_t errlen)
{
    char **slot = (char **)((char *)c + s->off);

    if (s->check && s->check(value, err, errlen) < 0)
        return -1;
    if (!value[0] && !s->empty_ok) {
        set_err(err, errlen, "%s must not be empty", s->noun);
        return -1;
    }
    replace_str(slot, value[0] || !s->empty_null ? value : NULL);
    return 0;
}

static int set_number(struct hp_config *c, const struct hp_setting *s,
                      const char *value, char *err, size_t errlen)
{
    void *slot = (char *)c + s->off;
    char zero[48] = "";
    long v;

    if (s->auto_value && strcasecmp(value, "auto") == 0) {
        *(int *)slot = s->auto_value();
        return 0;
    }
    if (!parse_int(value, (long)s->min, (long)s->max, &v)) {
        if (s->zero && s->min == 0)
            snprintf(zero, sizeof zero, " (%s)", s->zero);
        set_err(err, errlen,
                "expected a whole number from %ld%s to %ld%s, got \"%s\"",
                (long)s->min, zero, (long)s->max,
                s->auto_value ? " or \"auto\"" : "", value);
        return -1;
    }
    if (s->type == HP_SET_UINT)
        *(unsigned *)slot = (unsigned)v;
    else
        *(int *)slot = (int)v;
    return 0;
}

static int set_size(struct hp_config *c, const struct hp_setting *s,
                    const char *value, char *err, size_t errlen)
{
    size_t *slot = (size_t *)(void *)((char *)c + s->off);
    unsigned long long min = (unsigned long long)s->min;
    unsigned long long max = (unsigned long long)s->max;
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

static int set_seconds(struct hp_config *c, const struct hp_setting *s,
                       const char *value, char *err, size_t errlen)
{
    double *slot = (double *)(void *)((char *)c + s->off);

    if (!parse_seconds(value, s->min, s->max, slot)) {
        set_err(err, errlen,
                "expected 0 (off) or seconds from %g to %g, e.g. 30 or "
                "0.5, got \"%s\"",
                s->min, s->max, value);
        return -1;
    }
    return 0;
}

static int set_bool(struct hp_config *c, const struct hp_setting *s,
                    const char *value, char *err, size_t errlen)
{
    int *slot = (int *)(void *)((char *)c + s->off), on;

    if (!parse_bool_auto(value, &on) ||
        (on < 0 && s->type != HP_SET_TRISTATE)) {
        set_err(err, errlen,
                s->type == HP_SET_TRISTATE
                    ? "expected true, false or auto, got \"%s\""
                    : "expected true or false, got \"%s\"",
                value);
        return -1;
    }
    *slot = on;
    return 0;
}

static int set_listen(struct hp_config *c, const char *value, char *err,
                      size_t errlen)
{
    char canon[INET6_ADDRSTRLEN + 16];

    if (parse_listen(value, canon, sizeof canon, err, errlen) < 0)
        return -1;
    replace_str(&c->listen, canon);
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

int hp_config_set(struct hp_config *c, const char *key, const char *value,
                  char *err, size_t errlen)
{
    const struct hp_setting *s = hp_setting_find(key);

    if (!s) {
        set_err(err, errlen, "unknown setting \"%s\"", key ? key : "(null)");
        return -1;
    }
    if (!value) {
        set_err(err, errlen, "a value is required");
        return -1;
    }
    switch (s->type) {
    case HP_SET_STRING:
        return set_string(c, s, value, err, errlen);
    case HP_SET_BOOL:
    case HP_SET_TRISTATE:
        return set_bool(c, s, value, err, errlen);
    case HP_SET_INT:
    case HP_SET_UINT:
        return set_number(c, s, value, err, errlen);
    case HP_SET_SIZE:
        return set_size(c, s, value, err, errlen);
    case HP_SET_SECONDS:
        return set_seconds(c, s, value, err, errlen);
    case HP_SET_LISTEN:
        return set_listen(c, value, err, errlen);
    case HP_SET_DB:
        return set_db(c, value, err, errlen);
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
    const struct hp_setting *k;
    size_t n;

    if (x->err_line)
        return 0;
    if (x->indented) {
        load_fail(x, "indented line: remove the leading white space (values "
                     "cannot continue onto the next line)");
        return 0;
    }
    /* check_section already rejected anything but [server]. */
    (void)section;

    k = hp_setting_find(name);
    if (!k) {
        load_fail(x, "unknown setting \"%s\"", name);
        return 0;
    }
    if (!value) {
        load_fail(x, "%s: a value is required", k->key);
        return 0;
    }

    /* inih ends a value only at " ;": "listen = :80  # public" would keep
     * the "# public", which no setting means. */
    if (strstr(value, " #") || strstr(value, "\t#")) {
        load_fail(x,
                  "%s: '#' starts a comment only at the start of a line; "
                  "use ';' for a comment after a value",
                  k->key);
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
    if (k->type == HP_SET_DB && x->dir && sqlite_relative(val)) {
        joined = malloc(strlen(x->dir) + strlen(val) + 2);
        if (!joined) {
            free(val);
            load_fail(x, "out of memory");
            return 0;
        }
        sprintf(joined, "sqlite:%s%s%s", x->dir,
                x->dir[strlen(x->dir) - 1] == '/' ? "" : "/", val + 7);
    } else if (k->path && x->dir && val[0] && val[0] != '/' &&
               !(strcmp(k->key, "access-log") == 0 &&
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

    if (hp_config_set(x->cfg, k->key, joined ? joined : val, msg, sizeof msg) <
        0)
        load_fail(x, "%s: %s", k->key, msg);
    free(joined);
    free(val);
    return !x->err_line;
}

int hp_config_check(const struct hp_config *c, char *err, size_t errlen)
{
    if (!c->tls_cert != !c->tls_key) {
        set_err(err, errlen,
                "%s is set but %s is not: HTTPS needs both the certificate "
                "and its private key",
                c->tls_cert ? "tls-cert" : "tls-key",
                c->tls_cert ? "tls-key" : "tls-cert");
        return -1;
    }
    if (c->tls_redirect && !c->tls_cert) {
        set_err(err, errlen,
                "tls-redirect is set but tls-cert and tls-key are not: it "
                "redirects plain HTTP to HTTPS, which needs them");
        return -1;
    }
    return 0;
}

static void (*error_sink)(const char *msg);

void hp_config_set_error_sink(void (*sink)(const char *msg))
{
    error_sink = sink;
}

static void load_error(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

static void load_error(const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (error_sink)
        error_sink(msg);
    else
        fprintf(stderr, "hotpub: %s\n", msg);
}

int hp_config_load(struct hp_config *c, const char *path)
{
    struct load_ctx x = {.cfg = c, .path = path};
    struct stat st;
    const char *slash;
    int rc;

    x.f = fopen(path, "r");
    if (!x.f) {
        load_error("cannot open config file %s: %s", path, strerror(errno));
        return -1;
    }
    if (fstat(fileno(x.f), &st) == 0 && S_ISDIR(st.st_mode)) {
        load_error("config file %s is a directory", path);
        fclose(x.f);
        return -1;
    }

    slash = strrchr(path, '/');
    if (slash)
        x.dir = slash == path ? cfg_strdup("/")
                              : strndup(path, (size_t)(slash - path));
    if (slash && !x.dir) {
        load_error("out of memory");
        fclose(x.f);
        return -1;
    }

    rc = ini_parse_stream(load_reader, &x, load_handler, &x);

    if (rc > 0 && (!x.err_line || rc < x.err_line))
        load_error("%s:%d: expected \"key = value\", \"[server]\" or a "
                   "comment",
                   path, rc);
    else if (x.err_line)
        load_error("%s:%d: %s", path, x.err_line, x.err);
    else if (rc < 0)
        load_error("%s: cannot parse (out of memory)", path);

    free(x.line);
    free(x.dir);
    fclose(x.f);
    return rc || x.err_line ? -1 : 0;
}
