/*
 * util.c - logging, allocation, growable buffers, hashing, file identity.
 *
 * Owns: the error log format (timestamped lines on stderr), the 128-bit
 * content hash used to key the compile cache, struct hp_fid, and whether
 * a process has exited (hp_pid_dead, from /proc).
 * May not touch: anything with state beyond a log lock; no subsystem logic.
 */
#include "hp.h"

#include <errno.h>
#include <signal.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

void hp_vlog(const char *level, const char *fmt, va_list ap)
{
    char ts[32];
    struct timespec now;
    struct tm tm;

    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
    /* One lock so lines from concurrent requests never interleave. */
    pthread_mutex_lock(&log_lock);
    fprintf(stderr, "%s.%03ldZ [%s] ", ts, now.tv_nsec / 1000000, level);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    fflush(stderr);
    pthread_mutex_unlock(&log_lock);
}

static char log_who[64];

void hp_log_set_who(const char *who)
{
    snprintf(log_who, sizeof log_who, "%s", who);
}

const char *hp_log_who(void)
{
    return log_who;
}

void hp_log_error_forked(const char *fmt, ...)
{
    char line[1024];
    struct timespec now;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    size_t n = strftime(line, sizeof line, "%Y-%m-%dT%H:%M:%S", &tm);
    n += (size_t)snprintf(line + n, sizeof line - n, ".%03ldZ [error] ",
                          now.tv_nsec / 1000000);
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(line + n, sizeof line - n - 1, fmt, ap);
    va_end(ap);
    n = k < 0                             ? n
        : n + (size_t)k < sizeof line - 1 ? n + (size_t)k
                                          : sizeof line - 2;
    line[n++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, n);
    (void)w; /* nowhere left to report it */
}

void hp_log_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    hp_vlog("error", fmt, ap);
    va_end(ap);
}

static void (*_Atomic resumed_hook)(void);

void hp_set_resumed_hook(void (*fn)(void))
{
    resumed_hook = fn;
}

void hp_resumed(void)
{
    void (*fn)(void) = resumed_hook;
    if (fn)
        fn();
}

void hp_log_info(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    hp_vlog("info", fmt, ap);
    va_end(ap);
}

static void oom(void)
{
    /* Nothing sensible survives a failed small allocation in a server
     * thread; fail loudly rather than limp on with NULLs. */
    fputs("hotpub: out of memory\n", stderr);
    abort();
}

void *hp_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        oom();
    return p;
}

void *hp_xcalloc(size_t n, size_t m)
{
    void *p = calloc(n ? n : 1, m ? m : 1);
    if (!p)
        oom();
    return p;
}

void *hp_xrealloc(void *p, size_t n)
{
    p = realloc(p, n ? n : 1);
    if (!p)
        oom();
    return p;
}

char *hp_xstrdup(const char *s)
{
    char *p = strdup(s);
    if (!p)
        oom();
    return p;
}

char *hp_xasprintf(const char *fmt, ...)
{
    va_list ap;
    char *s;
    va_start(ap, fmt);
    if (vasprintf(&s, fmt, ap) < 0)
        oom();
    va_end(ap);
    return s;
}

int hp_buf_reserve(struct hp_buf *b, size_t extra)
{
    size_t want, cap;
    char *p;

    if (extra > SIZE_MAX - b->len - 1)
        return -1;
    want = b->len + extra + 1;
    if (want <= b->cap)
        return 0;
    cap = b->cap ? b->cap : 256;
    while (cap < want)
        cap = cap > SIZE_MAX / 2 ? want : cap * 2;
    p = realloc(b->p, cap);
    if (!p)
        return -1;
    b->p = p;
    b->cap = cap;
    return 0;
}

int hp_buf_append(struct hp_buf *b, const void *data, size_t len)
{
    if (hp_buf_reserve(b, len) < 0)
        return -1;
    if (len)
        memcpy(b->p + b->len, data, len);
    b->len += len;
    b->p[b->len] = '\0';
    return 0;
}

int hp_buf_puts(struct hp_buf *b, const char *s)
{
    return hp_buf_append(b, s, strlen(s));
}

int hp_buf_vprintf(struct hp_buf *b, const char *fmt, va_list ap)
{
    va_list ap2;
    int n;

    if (hp_buf_reserve(b, 128) < 0)
        return -1;
    va_copy(ap2, ap);
    n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        return -1;
    if ((size_t)n >= b->cap - b->len) {
        if (hp_buf_reserve(b, (size_t)n) < 0)
            return -1;
        vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
    }
    b->len += (size_t)n;
    return 0;
}

int hp_buf_printf(struct hp_buf *b, const char *fmt, ...)
{
    va_list ap;
    int r;
    va_start(ap, fmt);
    r = hp_buf_vprintf(b, fmt, ap);
    va_end(ap);
    return r;
}

int hp_buf_html(struct hp_buf *b, const char *s)
{
    const char *run = s;

    for (; *s; s++) {
        const char *rep;
        switch (*s) {
        case '&': rep = "&amp;"; break;
        case '<': rep = "&lt;"; break;
        case '>': rep = "&gt;"; break;
        case '"': rep = "&quot;"; break;
        case '\'': rep = "&#39;"; break;
        default: continue;
        }
        if (hp_buf_append(b, run, (size_t)(s - run)) < 0 ||
            hp_buf_puts(b, rep) < 0)
            return -1;
        run = s + 1;
    }
    return hp_buf_append(b, run, (size_t)(s - run));
}

int hp_buf_json(struct hp_buf *b, const char *s)
{
    if (!s)
        return hp_buf_puts(b, "null");
    if (hp_buf_append(b, "\"", 1) < 0)
        return -1;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        int r;
        if (c == '"' || c == '\\')
            r = hp_buf_printf(b, "\\%c", c);
        else if (c == '\n')
            r = hp_buf_puts(b, "\\n");
        else if (c < 0x20)
            r = hp_buf_printf(b, "\\u%04x", c);
        else
            r = hp_buf_append(b, s, 1);
        if (r < 0)
            return -1;
    }
    return hp_buf_append(b, "\"", 1);
}

void hp_buf_free(struct hp_buf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

/*
 * Two FNV-1a style lanes with different primes and offsets give 128 bits:
 * enough that two different sources never share a compile-cache slot by
 * accident. It is not a defence against someone who can already write
 * pages (they can run code anyway).
 */
void hp_hash_init(struct hp_hash *h)
{
    h->a = 0xcbf29ce484222325ULL;
    h->b = 0x84222325cbf29ce4ULL;
}

void hp_hash_update(struct hp_hash *h, const void *data, size_t len)
{
    const unsigned char *p = data;
    uint64_t a = h->a, b = h->b;
    for (size_t i = 0; i < len; i++) {
        a = (a ^ p[i]) * 0x100000001b3ULL;
        b = (b ^ p[i]) * 0x10000000233ULL;
        b ^= b >> 29;
    }
    h->a = a;
    h->b = b;
}

void hp_hash_hex(const struct hp_hash *h, char out[33])
{
    snprintf(out, 33, "%016llx%016llx", (unsigned long long)h->a,
             (unsigned long long)h->b);
}

int hp_hash_file(struct hp_hash *h, const char *path)
{
    char chunk[16384];
    ssize_t n;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    while ((n = read(fd, chunk, sizeof chunk)) > 0)
        hp_hash_update(h, chunk, (size_t)n);
    int saved = errno;
    close(fd);
    errno = saved;
    return n < 0 ? -1 : 0;
}

double hp_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int64_t hp_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int hp_cpus(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0)
        return CPU_COUNT(&set);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

int hp_fid_stat(const char *path, struct hp_fid *f)
{
    struct stat st;
    if (stat(path, &st) < 0)
        return -1;
    f->dev = st.st_dev;
    f->ino = st.st_ino;
    f->size = st.st_size;
    f->mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
    f->ctime_ns = (int64_t)st.st_ctim.tv_sec * 1000000000 + st.st_ctim.tv_nsec;
    return 0;
}

bool hp_fid_eq(const struct hp_fid *a, const struct hp_fid *b)
{
    return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
           a->mtime_ns == b->mtime_ns && a->ctime_ns == b->ctime_ns;
}

int hp_mkdirs(const char *path, mode_t mode)
{
    char tmp[PATH_MAX];
    size_t len = strlen(path);

    if (len == 0 || len >= sizeof tmp) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(tmp, path, len + 1);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, mode) < 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    if (mkdir(tmp, mode) < 0 && errno != EEXIST)
        return -1;
    return 0;
}

int hp_cache_subdir_restore(const char *dir)
{
    char cache[PATH_MAX];
    const char *slash = strrchr(dir, '/');
    size_t n = slash ? (size_t)(slash - dir) : 0;

    if (n == 0 || n >= sizeof cache) {
        errno = ENOENT;
        return -1;
    }
    memcpy(cache, dir, n);
    cache[n] = '\0';
    /* mkdir's own answer, not a look first: of several threads or
     * workers that find it gone, only the one that creates it logs. */
    int made = mkdir(cache, 0700);
    if (made < 0 && errno == ENOENT) /* its parents went too */
        made = hp_mkdirs(cache, 0700);
    if (made < 0 && errno != EEXIST) {
        int e = errno;
        hp_log_error("the cache directory %s was removed and cannot be "
                     "created again: %s",
                     cache, strerror(e));
        errno = e;
        return -1;
    }
    if (made == 0)
        hp_log_error("the cache directory %s was removed; created it again",
                     cache);
    if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
        int e = errno;
        hp_log_error("cannot create %s again: %s", dir, strerror(e));
        errno = e;
        return -1;
    }
    return 0;
}

/* Dead for certain: ESRCH, or a zombie (it exited and waits for its
 * parent, or init, to reap it: a worker killed with its supervisor lingers
 * so for a second or two). EPERM is a live process of another user. */
bool hp_pid_dead(pid_t pid)
{
    if (kill(pid, 0) < 0)
        return errno == ESRCH;
    char path[32], buf[256];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return false;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* "pid (comm) S ...": the state follows the last ')' */
    const char *close = strrchr(buf, ')');
    return close && close[1] == ' ' && close[2] == 'Z';
}

/* ---- a page's mistakes, said at most once a minute (hp.h) ------------- */

bool hp_log_misuse_allowed(const char *page, const char *fn,
                           const char *what, long *skipped)
{
    static struct {
        const char *fn, *what;
        uint64_t page; /* FNV-1a of the page's path, 0 for none */
        time_t last;
        long skipped;
    } kinds[64];
    static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    uint64_t h = 0;
    if (page) {
        h = 1469598103934665603ULL;
        for (const char *p = page; *p; p++)
            h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    }
    time_t now = time(NULL);
    bool say = true;
    pthread_mutex_lock(&mu);
    size_t i = 0;
    while (i < 63 && kinds[i].fn &&
           (kinds[i].fn != fn || kinds[i].what != what || kinds[i].page != h))
        i++;
    if (!kinds[i].fn) {
        kinds[i].fn = fn;
        kinds[i].what = what;
        kinds[i].page = h;
    }
    if (kinds[i].last && now - kinds[i].last < 60) {
        kinds[i].skipped++;
        say = false;
    } else {
        kinds[i].last = now;
        *skipped = kinds[i].skipped;
        kinds[i].skipped = 0;
    }
    pthread_mutex_unlock(&mu);
    return say;
}
