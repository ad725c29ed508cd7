/*
 * metrics.c - the node's counters: a shared-memory area the supervisor maps
 * before forking, one fixed-size slot per worker process, a bounded table
 * of page labels shared by all, the reload history; and their readings:
 * the Prometheus text exposition (/_hotpub/metrics) and status.json's
 * "node" member.
 *
 * Owns: the node-stats area and its layout. May not touch: requests,
 * connections, the module cache (callers hand it labels and numbers).
 *
 * Writers never lock: a worker adds to its own slot with relaxed atomics;
 * a page label is claimed once by compare-and-swap and then never changes;
 * the reload history is a ring whose entries carry a sequence word that a
 * reader checks before and after copying. Readers sum every slot plus the
 * "departed" totals of reaped workers, so node counters never go down
 * while the supervisor lives.
 */
#include "db.h"
#include "ops.h"
#include "pool.h"

#include <errno.h>
#include <sched.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define PAGES 128   /* page labels node-wide; more go to "_other" */
#define LABEL 96    /* bytes of a label, NUL included */
#define NB 14       /* request-duration buckets, +Inf apart */
#define NCB 8       /* compile-duration buckets */
#define HISTORY 32  /* reload history entries */
#define POOLS 8     /* database pools shown per worker */
#define ERR_LEN 160 /* a failed build's first diagnostic line */
#define MODS 64     /* modules a worker shows; more are counted only */

static const double req_le[NB] = {0.0005, 0.001, 0.0025, 0.005, 0.01,
                                  0.025,  0.05,  0.1,    0.25,  0.5,
                                  1,      2.5,   5,      10};
static const double cc_le[NCB] = {0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
static const char *const cls_name[5] = {"1xx", "2xx", "3xx", "4xx", "5xx"};

/* Only atomic_ulong members: counters are summed and folded as arrays. */
struct page_counts {
    atomic_ulong cls[5];     /* by status class */
    atomic_ulong bucket[NB]; /* not cumulative here: one per bucket */
    atomic_ulong sum_us;     /* total duration, microseconds */
};
struct counts {
    atomic_ulong builds[2];       /* [0] failed, [1] ok */
    atomic_ulong cbucket[2][NCB]; /* by result, not cumulative */
    atomic_ulong csum_us[2];
    atomic_ulong retired, unloaded;
    atomic_ulong db_acquires, db_timeouts; /* summed over pools */
    atomic_ulong stale_served; /* answered by the version being replaced */
    struct page_counts page[PAGES + 1];    /* [PAGES]: "_other" */
};
#define COUNTS_N (sizeof(struct counts) / sizeof(atomic_ulong))

struct pool_gauge {
    char name[32];
    atomic_uint in_use, idle, max, waiters;
    atomic_ulong acquires, timeouts;
};

/* A module as one worker has it; rewritten once a second. */
struct mod_gauge {
    char path[LABEL];
    char error[ERR_LEN];
    unsigned long long version;
    long inflight, retired_inflight;
    int retired;
    unsigned long builds;
};

struct mslot {
    atomic_int used;
    atomic_uint mods_seq; /* odd while the worker rewrites mods[] */
    int nmods, mods_total;
    struct mod_gauge mods[MODS];
    pid_t pid;
    atomic_long conns;        /* open connections */
    atomic_int threads, busy; /* handler threads */
    atomic_int npools;
    struct pool_gauge pools[POOLS];
    struct counts c;
};

struct hist {
    atomic_ulong seq; /* 0 while written, else the entry's number + 1 */
    double when;      /* wall clock */
    pid_t pid;
    int ok;
    double seconds;
    char page[LABEL];
    char error[ERR_LEN];
};
#define HIST_BODY offsetof(struct hist, when) /* what the seq guards */

struct label {
    atomic_int state; /* 0 free, 1 being written, 2 set */
    char name[LABEL];
};

struct pool_total {
    char name[32];
    atomic_ulong acquires, timeouts;
};

struct area {
    int nslots;
    atomic_bool draining;
    atomic_ulong hist_next;
    struct hist hist[HISTORY];
    struct label labels[PAGES];
    struct counts departed;
    struct pool_total departed_pools[POOLS]; /* written by the parent */
    /* struct mslot slots[nslots] follows */
};

static struct area *A;
static struct mslot *ME;
static char *ROOT; /* this process's document root: labels are under it */
static size_t ROOT_LEN;

static double wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static struct mslot *slot_at(int i)
{
    return (struct mslot *)(A + 1) + i;
}

int hp_metrics_map(int nslots)
{
    if (A)
        return 1;
    size_t size = sizeof *A + (size_t)nslots * sizeof(struct mslot);
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        hp_log_error("cannot map the node-stats area (%zu bytes): %s", size,
                     strerror(errno));
        return -1;
    }
    A = p;
    A->nslots = nslots;
    return 0;
}

void hp_metrics_enter(int slot)
{
    if (!A || ME || slot < 0 || slot >= A->nslots)
        return;
    ME = slot_at(slot);
    memset((void *)ME, 0, sizeof *ME);
    ME->pid = getpid();
    atomic_store(&ME->used, 1);
}

/* A reaped worker's pool counters, kept by pool name. */
static void fold_pools(struct mslot *s)
{
    int n = atomic_load(&s->npools);
    for (int i = 0; i < n && i < POOLS; i++) {
        struct pool_gauge *g = &s->pools[i];
        for (int k = 0; k < POOLS; k++) {
            struct pool_total *t = &A->departed_pools[k];
            if (!t->name[0])
                snprintf(t->name, sizeof t->name, "%s", g->name);
            if (strcmp(t->name, g->name) != 0)
                continue;
            atomic_fetch_add(&t->acquires, atomic_load(&g->acquires));
            atomic_fetch_add(&t->timeouts, atomic_load(&g->timeouts));
            break;
        }
    }
}

void hp_metrics_fold(int slot)
{
    if (!A || slot < 0 || slot >= A->nslots)
        return;
    struct mslot *s = slot_at(slot);
    atomic_ulong *from = (atomic_ulong *)&s->c;
    atomic_ulong *to = (atomic_ulong *)&A->departed;
    /* The departed totals first, then the slot zeroed: a reader between
     * the two counts the worker twice for an instant, never zero times. */
    for (size_t i = 0; i < COUNTS_N; i++)
        atomic_fetch_add_explicit(&to[i], atomic_load(&from[i]),
                                  memory_order_relaxed);
    fold_pools(s);
    atomic_store(&s->used, 0);
    for (size_t i = 0; i < COUNTS_N; i++)
        atomic_store_explicit(&from[i], 0, memory_order_relaxed);
    atomic_store(&s->conns, 0);
    atomic_store(&s->npools, 0);
}

void hp_metrics_set_root(const char *root)
{
    free(ROOT);
    ROOT = root ? hp_xstrdup(root) : NULL;
    ROOT_LEN = ROOT ? strlen(ROOT) : 0;
}

/* A module's label: its path under the document root (bounded by what
 * the root holds), never a request target. */
static const char *page_label(const char *path)
{
    if (ROOT && strncmp(path, ROOT, ROOT_LEN) == 0 && path[ROOT_LEN] == '/')
        return path + ROOT_LEN + 1;
    return path;
}

void hp_metrics_set_node_draining(void)
{
    if (A)
        atomic_store(&A->draining, true);
}

bool hp_metrics_node_draining(void)
{
    return A && atomic_load(&A->draining);
}

/* ---- the page labels ----------------------------------------------------- */

static uint64_t label_hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    while (*s)
        h = (h ^ (unsigned char)*s++) * 1099511628211ULL;
    return h;
}

/*
 * The index of label `name`, claiming a free entry if it has none; PAGES
 * ("_other") when the table is full or the name too long. Every process
 * probes the same sequence from the hash, and an entry being written is
 * waited for, so a name never gets two entries.
 */
static int label_index(const char *name)
{
    size_t n = strlen(name);
    if (n >= LABEL)
        return PAGES;
    uint64_t h = label_hash(name);
    for (int k = 0; k < PAGES; k++) {
        struct label *l = &A->labels[(h + (uint64_t)k) % PAGES];
        int st = atomic_load_explicit(&l->state, memory_order_acquire);
        if (st == 0) {
            int zero = 0;
            if (atomic_compare_exchange_strong(&l->state, &zero, 1)) {
                memcpy(l->name, name, n + 1);
                atomic_store_explicit(&l->state, 2, memory_order_release);
                return (int)((h + (uint64_t)k) % PAGES);
            }
            st = zero;
        }
        while (st == 1) { /* another writer's few bytes */
            sched_yield();
            st = atomic_load_explicit(&l->state, memory_order_acquire);
        }
        if (strcmp(l->name, name) == 0)
            return (int)((h + (uint64_t)k) % PAGES);
    }
    return PAGES;
}

static const char *label_name(int i)
{
    if (i == PAGES)
        return "_other";
    return atomic_load_explicit(&A->labels[i].state, memory_order_acquire) == 2
               ? A->labels[i].name
               : NULL;
}

/* ---- writers ---------------------------------------------------------------
 */

static void add(atomic_ulong *c, unsigned long n)
{
    atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

void hp_metrics_request(const char *page, int status, double seconds)
{
    if (!ME)
        return;
    struct page_counts *p = &ME->c.page[label_index(page_label(page))];
    int cls = status / 100 - 1;
    add(&p->cls[cls >= 0 && cls < 5 ? cls : 4], 1);
    int b = 0;
    while (b < NB && seconds > req_le[b])
        b++;
    if (b < NB)
        add(&p->bucket[b], 1);
    add(&p->sum_us, (unsigned long)(seconds * 1e6));
}

/*
 * The sequence-locked records (reload history, module tables) are read
 * while another thread or process may rewrite them; the sequence word says
 * afterwards whether the copy is usable. Both sides copy with relaxed
 * atomic loads and stores, word by word, so the race the sequence word
 * resolves is not undefined behaviour in C11 (and ThreadSanitizer agrees).
 */
static void shm_store(void *dst, const void *src, size_t n)
{
    unsigned char *d = dst;
    const unsigned char *p = src;
    size_t i = 0;
    if (((uintptr_t)d % sizeof(unsigned long)) == 0)
        for (; i + sizeof(unsigned long) <= n; i += sizeof(unsigned long)) {
            unsigned long w;
            memcpy(&w, p + i, sizeof w);
            __atomic_store_n((unsigned long *)(void *)(d + i), w,
                             __ATOMIC_RELAXED);
        }
    for (; i < n; i++)
        __atomic_store_n(d + i, p[i], __ATOMIC_RELAXED);
}

static void shm_load(void *dst, const void *src, size_t n)
{
    unsigned char *d = dst;
    const unsigned char *p = src;
    size_t i = 0;
    if (((uintptr_t)p % sizeof(unsigned long)) == 0)
        for (; i + sizeof(unsigned long) <= n; i += sizeof(unsigned long)) {
            unsigned long w = __atomic_load_n(
                (const unsigned long *)(const void *)(p + i), __ATOMIC_RELAXED);
            memcpy(d + i, &w, sizeof w);
        }
    for (; i < n; i++)
        d[i] = __atomic_load_n(p + i, __ATOMIC_RELAXED);
    atomic_thread_fence(memory_order_acquire); /* before the seq re-check */
}

static void history_add(const char *page, double seconds, bool ok,
                        const char *error)
{
    unsigned long n = atomic_fetch_add(&A->hist_next, 1);
    struct hist *h = &A->hist[n % HISTORY], rec;
    memset(&rec, 0, sizeof rec);
    rec.when = wall_now();
    rec.pid = getpid();
    rec.ok = ok;
    rec.seconds = seconds;
    snprintf(rec.page, sizeof rec.page, "%s", page);
    size_t e = error ? strcspn(error, "\n") : 0;
    snprintf(rec.error, sizeof rec.error, "%.*s", (int)e, error ? error : "");
    atomic_store(&h->seq, 0);
    atomic_thread_fence(memory_order_release);
    shm_store((char *)h + HIST_BODY, (char *)&rec + HIST_BODY,
              sizeof rec - HIST_BODY);
    atomic_store_explicit(&h->seq, n + 1, memory_order_release);
}

void hp_metrics_build(const char *page, double seconds, bool ok,
                      const char *error)
{
    if (!ME)
        return;
    int r = ok ? 1 : 0, b = 0;
    add(&ME->c.builds[r], 1);
    while (b < NCB && seconds > cc_le[b])
        b++;
    if (b < NCB)
        add(&ME->c.cbucket[r][b], 1);
    add(&ME->c.csum_us[r], (unsigned long)(seconds * 1e6));
    history_add(page_label(page), seconds, ok, error);
}

void hp_metrics_retired(void)
{
    if (ME)
        add(&ME->c.retired, 1);
}

void hp_metrics_unloaded(void)
{
    if (ME)
        add(&ME->c.unloaded, 1);
}

void hp_metrics_stale_served(void)
{
    if (ME)
        add(&ME->c.stale_served, 1);
}

void hp_metrics_connection(int delta)
{
    if (ME)
        atomic_fetch_add_explicit(&ME->conns, delta, memory_order_relaxed);
}

static void pool_gauge(const char *name, const struct hp_db_pool_stats *s,
                       void *arg)
{
    int *n = arg;
    if (*n >= POOLS)
        return;
    struct pool_gauge *g = &ME->pools[*n];
    char label[sizeof g->name] = {0};
    snprintf(label, sizeof label, "%s", name);
    shm_store(g->name, label, sizeof label); /* readers copy it the same way */
    atomic_store(&g->in_use, s->in_use);
    atomic_store(&g->idle, s->idle);
    atomic_store(&g->max, s->max);
    atomic_store(&g->waiters, s->waiters);
    atomic_store(&g->acquires, s->acquires);
    atomic_store(&g->timeouts, s->timeouts);
    ++*n;
}

static void mod_gauge(const struct hp_module_info *m, void *arg)
{
    int *n = arg;
    __atomic_fetch_add(&ME->mods_total, 1, __ATOMIC_RELAXED);
    if (*n >= MODS)
        return;
    struct mod_gauge g;
    memset(&g, 0, sizeof g);
    snprintf(g.path, sizeof g.path, "%s", page_label(m->path));
    size_t e = m->error ? strcspn(m->error, "\n") : 0;
    snprintf(g.error, sizeof g.error, "%.*s", (int)e, m->error ? m->error : "");
    g.version = m->version;
    g.inflight = m->inflight;
    g.retired = m->retired;
    g.retired_inflight = m->retired_inflight;
    g.builds = m->builds;
    shm_store(&ME->mods[(*n)++], &g, sizeof g);
}

void hp_metrics_modules(hp_cache *c)
{
    /* One writer at a time (the accept thread's second, a status request
     * on an event-loop thread): the sequence word assumes it. */
    static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    if (!ME || !c)
        return;
    int n = 0;
    pthread_mutex_lock(&mu);
    atomic_fetch_add(&ME->mods_seq, 1); /* odd: being rewritten */
    __atomic_store_n(&ME->mods_total, 0, __ATOMIC_RELAXED);
    hp_cache_each(c, mod_gauge, &n);
    __atomic_store_n(&ME->nmods, n, __ATOMIC_RELAXED);
    atomic_fetch_add(&ME->mods_seq, 1);
    pthread_mutex_unlock(&mu);
}

void hp_metrics_tick(void)
{
    if (!ME)
        return;
    struct hp_pool_stats ps;
    hp_pool_stats(&ps);
    atomic_store(&ME->threads, ps.live);
    atomic_store(&ME->busy, ps.busy);
    int n = 0;
    hp_db_pools_each(pool_gauge, &n);
    atomic_store(&ME->npools, n);
}

static void modules_json(struct hp_buf *b);

/* ---- readers
 * ----------------------------------------------------------------- */

/* The node's counters: the departed totals plus every worker's slot. */
static unsigned long *node_counts(void)
{
    unsigned long *sum = hp_xcalloc(COUNTS_N, sizeof *sum);
    const atomic_ulong *d = (const atomic_ulong *)&A->departed;
    for (size_t i = 0; i < COUNTS_N; i++)
        sum[i] = atomic_load_explicit(&d[i], memory_order_relaxed);
    for (int k = 0; k < A->nslots; k++) {
        struct mslot *s = slot_at(k);
        if (!atomic_load(&s->used))
            continue;
        const atomic_ulong *c = (const atomic_ulong *)&s->c;
        for (size_t i = 0; i < COUNTS_N; i++)
            sum[i] += atomic_load_explicit(&c[i], memory_order_relaxed);
    }
    return sum;
}

/* The same layout read as plain numbers (the struct's members are all
 * atomic_ulong, which has unsigned long's size and representation). */
struct plain_page {
    unsigned long cls[5], bucket[NB], sum_us;
};
struct plain {
    unsigned long builds[2], cbucket[2][NCB], csum_us[2];
    unsigned long retired, unloaded, db_acquires, db_timeouts;
    unsigned long stale_served;
    struct plain_page page[PAGES + 1];
};
_Static_assert(sizeof(struct plain) == sizeof(struct counts),
               "struct plain mirrors struct counts");

static unsigned long page_total(const struct plain_page *p)
{
    unsigned long n = 0;
    for (int i = 0; i < 5; i++)
        n += p->cls[i];
    return n;
}

/* A label value (exposition format: backslash, quote, newline escaped). */
static void label_value(struct hp_buf *b, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            hp_buf_printf(b, "\\%c", *v);
        else if (*v == '\n')
            hp_buf_puts(b, "\\n");
        else
            hp_buf_append(b, v, 1);
    }
}

static void family(struct hp_buf *b, const char *name, const char *type,
                   const char *help)
{
    hp_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void requests_text(struct hp_buf *b, const struct plain *c)
{
    family(b, "hotpub_http_requests_total", "counter",
           "Requests answered, by page (module path under the document root "
           "or _static, _notfound, _hotpub, _none, _other) and status class.");
    for (int i = 0; i <= PAGES; i++) {
        const char *name = label_name(i);
        for (int k = 0; name && k < 5; k++) {
            if (!c->page[i].cls[k])
                continue;
            hp_buf_puts(b, "hotpub_http_requests_total{page=\"");
            label_value(b, name);
            hp_buf_printf(b, "\",code=\"%s\"} %lu\n", cls_name[k],
                          c->page[i].cls[k]);
        }
    }
    family(b, "hotpub_http_request_duration_seconds", "histogram",
           "Time from the request head to the end of the response, by page.");
    for (int i = 0; i <= PAGES; i++) {
        const char *name = label_name(i);
        unsigned long total = page_total(&c->page[i]), cum = 0;
        if (!name || !total)
            continue;
        for (int k = 0; k <= NB; k++) {
            cum += k < NB ? c->page[i].bucket[k] : 0;
            hp_buf_puts(b,
                        "hotpub_http_request_duration_seconds_bucket{page=\"");
            label_value(b, name);
            if (k < NB)
                hp_buf_printf(b, "\",le=\"%g\"} %lu\n", req_le[k],
                              cum < total ? cum : total);
            else
                hp_buf_printf(b, "\",le=\"+Inf\"} %lu\n", total);
        }
        hp_buf_puts(b, "hotpub_http_request_duration_seconds_sum{page=\"");
        label_value(b, name);
        hp_buf_printf(b, "\"} %.6f\n", (double)c->page[i].sum_us / 1e6);
        hp_buf_puts(b, "hotpub_http_request_duration_seconds_count{page=\"");
        label_value(b, name);
        hp_buf_printf(b, "\"} %lu\n", total);
    }
}

static void builds_text(struct hp_buf *b, const struct plain *c)
{
    static const char *const res[2] = {"failed", "ok"};
    family(b, "hotpub_reloads_total", "counter",
           "Module builds (first loads and reloads after a change), by "
           "result.");
    for (int r = 1; r >= 0; r--)
        hp_buf_printf(b, "hotpub_reloads_total{result=\"%s\"} %lu\n", res[r],
                      c->builds[r]);
    family(b, "hotpub_compile_duration_seconds", "histogram",
           "Time to compile a module, by result.");
    for (int r = 1; r >= 0; r--) {
        unsigned long cum = 0;
        for (int k = 0; k < NCB; k++) {
            cum += c->cbucket[r][k];
            hp_buf_printf(
                b,
                "hotpub_compile_duration_seconds_bucket{result=\"%s\","
                "le=\"%g\"} %lu\n",
                res[r], cc_le[k], cum < c->builds[r] ? cum : c->builds[r]);
        }
        hp_buf_printf(
            b,
            "hotpub_compile_duration_seconds_bucket{result=\"%s\",le=\"+Inf\"}"
            " %lu\nhotpub_compile_duration_seconds_sum{result=\"%s\"} %.6f\n"
            "hotpub_compile_duration_seconds_count{result=\"%s\"} %lu\n",
            res[r], c->builds[r], res[r], (double)c->csum_us[r] / 1e6, res[r],
            c->builds[r]);
    }
    family(b, "hotpub_versions_retired_total", "counter",
           "Module versions replaced by a newer version.");
    hp_buf_printf(b, "hotpub_versions_retired_total %lu\n", c->retired);
    family(b, "hotpub_versions_unloaded_total", "counter",
           "Retired module versions unloaded after their last request.");
    hp_buf_printf(b, "hotpub_versions_unloaded_total %lu\n", c->unloaded);
    family(b, "hotpub_stale_served_total", "counter",
           "Requests for a module being rebuilt answered by its current "
           "version after --stale-wait-ms (production mode).");
    hp_buf_printf(b, "hotpub_stale_served_total %lu\n", c->stale_served);
}

/* A pool's numbers summed over the live workers and departed ones. */
struct pool_sum {
    char name[32];
    unsigned long in_use, idle, max, waiters, acquires, timeouts;
};

static struct pool_sum *pool_find(struct pool_sum *ps, int *n, const char *name)
{
    for (int i = 0; i < *n; i++)
        if (strcmp(ps[i].name, name) == 0)
            return &ps[i];
    if (*n == POOLS)
        return NULL;
    struct pool_sum *p = &ps[(*n)++];
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", name);
    return p;
}

static int pools_sum(struct pool_sum *ps)
{
    int n = 0;
    for (int k = 0; k < POOLS && A->departed_pools[k].name[0]; k++) {
        struct pool_sum *p = pool_find(ps, &n, A->departed_pools[k].name);
        if (p) {
            p->acquires += atomic_load(&A->departed_pools[k].acquires);
            p->timeouts += atomic_load(&A->departed_pools[k].timeouts);
        }
    }
    for (int s = 0; s < A->nslots; s++) {
        struct mslot *m = slot_at(s);
        int np = atomic_load(&m->used) ? atomic_load(&m->npools) : 0;
        for (int i = 0; i < np && i < POOLS; i++) {
            struct pool_gauge *g = &m->pools[i];
            char name[sizeof g->name];
            shm_load(name, g->name, sizeof name); /* rewritten each second */
            name[sizeof name - 1] = '\0';
            struct pool_sum *p = pool_find(ps, &n, name);
            if (!p)
                continue;
            p->in_use += atomic_load(&g->in_use);
            p->idle += atomic_load(&g->idle);
            p->max += atomic_load(&g->max);
            p->waiters += atomic_load(&g->waiters);
            p->acquires += atomic_load(&g->acquires);
            p->timeouts += atomic_load(&g->timeouts);
        }
    }
    return n;
}

static void pools_text(struct hp_buf *b)
{
    struct pool_sum ps[POOLS];
    int n = pools_sum(ps);
    struct {
        const char *name, *type, *help;
        size_t off;
    } fam[] = {
        {"hotpub_db_pool_connections_in_use", "gauge",
         "Database connections checked out by requests.",
         offsetof(struct pool_sum, in_use)},
        {"hotpub_db_pool_connections_idle", "gauge",
         "Open database connections waiting in the pool.",
         offsetof(struct pool_sum, idle)},
        {"hotpub_db_pool_connections_max", "gauge",
         "Database connections the pools may open (all workers).",
         offsetof(struct pool_sum, max)},
        {"hotpub_db_pool_waiting", "gauge",
         "Requests waiting for a database connection now.",
         offsetof(struct pool_sum, waiters)},
        {"hotpub_db_pool_acquires_total", "counter",
         "Database connections checked out.",
         offsetof(struct pool_sum, acquires)},
        {"hotpub_db_pool_timeouts_total", "counter",
         "Waits for a database connection that ran out (503).",
         offsetof(struct pool_sum, timeouts)},
    };
    for (size_t f = 0; f < sizeof fam / sizeof *fam; f++) {
        family(b, fam[f].name, fam[f].type, fam[f].help);
        for (int i = 0; i < n; i++) {
            hp_buf_printf(b, "%s{pool=\"", fam[f].name);
            label_value(b, ps[i].name);
            hp_buf_printf(
                b, "\"} %lu\n",
                *(const unsigned long *)((const char *)&ps[i] + fam[f].off));
        }
    }
}

static void gauges_text(struct hp_buf *b)
{
    long conns = 0, threads = 0, busy = 0, workers = 0;
    for (int s = 0; s < A->nslots; s++) {
        struct mslot *m = slot_at(s);
        if (!atomic_load(&m->used))
            continue;
        workers++;
        conns += atomic_load(&m->conns);
        threads += atomic_load(&m->threads);
        busy += atomic_load(&m->busy);
    }
    family(b, "hotpub_open_connections", "gauge",
           "Client connections open on the node.");
    hp_buf_printf(b, "hotpub_open_connections %ld\n", conns < 0 ? 0 : conns);
    family(b, "hotpub_worker_processes", "gauge",
           "Worker processes serving (or finishing) requests.");
    hp_buf_printf(b, "hotpub_worker_processes %ld\n", workers);
    family(b, "hotpub_handler_threads", "gauge",
           "Request handler threads of all workers, by state.");
    hp_buf_printf(b,
                  "hotpub_handler_threads{state=\"busy\"} %ld\n"
                  "hotpub_handler_threads{state=\"idle\"} %ld\n",
                  busy, threads > busy ? threads - busy : 0);
}

void hp_metrics_text(struct hp_buf *b, void (*host_metrics)(struct hp_buf *))
{
    if (!A)
        return;
    struct plain *c = (struct plain *)node_counts();
    requests_text(b, c);
    builds_text(b, c);
    pools_text(b);
    gauges_text(b);
    if (host_metrics)
        host_metrics(b);
    free(c);
}

static void history_json(struct hp_buf *b)
{
    unsigned long next = atomic_load(&A->hist_next);
    bool first = true;
    hp_buf_puts(b, ",\"reloads\":[");
    for (unsigned long k = 0; k < HISTORY && k < next; k++) {
        unsigned long n = next - 1 - k;
        struct hist *h = &A->hist[n % HISTORY], copy;
        if (atomic_load(&h->seq) != n + 1)
            continue; /* being rewritten */
        shm_load((char *)&copy + HIST_BODY, (char *)h + HIST_BODY,
                 sizeof copy - HIST_BODY);
        copy.page[LABEL - 1] = copy.error[ERR_LEN - 1] = '\0';
        if (atomic_load(&h->seq) != n + 1)
            continue;
        hp_buf_printf(b, "%s{\"n\":%lu,\"when\":%.3f,\"pid\":%d,\"page\":",
                      first ? "" : ",", n + 1, copy.when, (int)copy.pid);
        hp_buf_json(b, copy.page);
        hp_buf_printf(b, ",\"compile_seconds\":%.3f,\"result\":\"%s\"",
                      copy.seconds, copy.ok ? "ok" : "failed");
        hp_buf_puts(b, ",\"error\":");
        hp_buf_json(b, copy.ok ? NULL : copy.error);
        hp_buf_puts(b, "}");
        first = false;
    }
    hp_buf_puts(b, "]");
}

static void workers_json(struct hp_buf *b)
{
    bool first = true;
    hp_buf_puts(b, "\"workers\":[");
    for (int s = 0; s < A->nslots; s++) {
        struct mslot *m = slot_at(s);
        if (!atomic_load(&m->used))
            continue;
        unsigned long req = 0;
        for (int i = 0; i <= PAGES; i++)
            for (int k = 0; k < 5; k++)
                req += atomic_load_explicit(&m->c.page[i].cls[k],
                                            memory_order_relaxed);
        hp_buf_printf(b,
                      "%s{\"slot\":%d,\"pid\":%d,\"requests\":%lu,"
                      "\"connections\":%ld,\"threads\":%d,\"busy\":%d}",
                      first ? "" : ",", s, (int)m->pid, req,
                      atomic_load(&m->conns), atomic_load(&m->threads),
                      atomic_load(&m->busy));
        first = false;
    }
    hp_buf_puts(b, "]");
}

static void pages_json(struct hp_buf *b, const struct plain *c)
{
    bool first = true;
    hp_buf_puts(b, ",\"pages\":[");
    for (int i = 0; i <= PAGES; i++) {
        const char *name = label_name(i);
        unsigned long total = page_total(&c->page[i]);
        if (!name || !total)
            continue;
        hp_buf_puts(b, first ? "{\"page\":" : ",{\"page\":");
        hp_buf_json(b, name);
        hp_buf_printf(b, ",\"requests\":%lu,\"seconds\":%.6f", total,
                      (double)c->page[i].sum_us / 1e6);
        for (int k = 0; k < 5; k++)
            hp_buf_printf(b, ",\"%s\":%lu", cls_name[k], c->page[i].cls[k]);
        hp_buf_puts(b, "}");
        first = false;
    }
    hp_buf_puts(b, "]");
}

static void pools_json(struct hp_buf *b)
{
    struct pool_sum ps[POOLS];
    int n = pools_sum(ps);
    hp_buf_puts(b, ",\"pools\":[");
    for (int i = 0; i < n; i++) {
        hp_buf_puts(b, i ? ",{\"name\":" : "{\"name\":");
        hp_buf_json(b, ps[i].name);
        hp_buf_printf(b,
                      ",\"in_use\":%lu,\"idle\":%lu,\"max\":%lu,"
                      "\"waiting\":%lu,\"acquires\":%lu,\"timeouts\":%lu}",
                      ps[i].in_use, ps[i].idle, ps[i].max, ps[i].waiters,
                      ps[i].acquires, ps[i].timeouts);
    }
    hp_buf_puts(b, "]");
}

void hp_metrics_json(struct hp_buf *b)
{
    if (!A)
        return;
    struct plain *c = (struct plain *)node_counts();
    hp_buf_printf(b, ",\n\"node\":{\"time\":%.3f,\"draining\":%s,", wall_now(),
                  atomic_load(&A->draining) ? "true" : "false");
    workers_json(b);
    hp_buf_printf(b,
                  ",\"builds\":{\"ok\":%lu,\"failed\":%lu},\"retired\":%lu,"
                  "\"unloaded\":%lu,\"stale_served\":%lu",
                  c->builds[1], c->builds[0], c->retired, c->unloaded,
                  c->stale_served);
    pages_json(b, c);
    pools_json(b);
    modules_json(b);
    history_json(b);
    hp_buf_puts(b, "}");
    free(c);
}

/* A consistent copy of a worker's module table; false if it kept
 * changing (the next reading gets it). */
static bool mods_copy(struct mslot *m, struct mod_gauge *out, int *n)
{
    for (int tries = 0; tries < 4; tries++) {
        unsigned seq = atomic_load(&m->mods_seq);
        if (seq & 1) {
            sched_yield();
            continue;
        }
        int k = __atomic_load_n(&m->nmods, __ATOMIC_RELAXED);
        k = k < 0 ? 0 : k > MODS ? MODS : k;
        shm_load(out, m->mods, (size_t)k * sizeof *out);
        if (atomic_load(&m->mods_seq) == seq) {
            *n = k;
            return true;
        }
    }
    return false;
}

static void module_json(struct hp_buf *b, const struct mod_gauge *g, int pid,
                        int slot)
{
    hp_buf_printf(b,
                  "{\"pid\":%d,\"slot\":%d,\"version\":%llu,"
                  "\"inflight\":%ld,\"retired\":%d,"
                  "\"retired_inflight\":%ld,\"builds\":%lu,\"error\":",
                  pid, slot, g->version, g->inflight, g->retired,
                  g->retired_inflight, g->builds);
    hp_buf_json(b, g->error[0] ? g->error : NULL);
    hp_buf_puts(b, "}");
}

/* "modules": each module once, with how every worker has it. */
static void modules_json(struct hp_buf *b)
{
    int nslots = A->nslots, total = 0;
    struct mod_gauge *all = hp_xcalloc((size_t)nslots * MODS, sizeof *all);
    int *n = hp_xcalloc((size_t)nslots, sizeof *n);
    for (int s = 0; s < nslots; s++)
        if (atomic_load(&slot_at(s)->used))
            mods_copy(slot_at(s), all + (size_t)s * MODS, &n[s]);
    hp_buf_puts(b, ",\"modules\":[");
    for (int s = 0; s < nslots; s++) {
        for (int i = 0; i < n[s]; i++) {
            struct mod_gauge *g = &all[(size_t)s * MODS + i];
            if (!g->path[0])
                continue; /* listed already under an earlier worker */
            hp_buf_puts(b, total++ ? ",{\"path\":" : "{\"path\":");
            hp_buf_json(b, g->path);
            hp_buf_puts(b, ",\"workers\":[");
            module_json(b, g, (int)slot_at(s)->pid, s);
            for (int t = s + 1; t < nslots; t++) {
                for (int k = 0; k < n[t]; k++) {
                    struct mod_gauge *h = &all[(size_t)t * MODS + k];
                    if (strcmp(h->path, g->path) != 0)
                        continue;
                    hp_buf_puts(b, ",");
                    module_json(b, h, (int)slot_at(t)->pid, t);
                    h->path[0] = '\0';
                }
            }
            g->path[0] = '\0';
            hp_buf_puts(b, "]}");
        }
    }
    hp_buf_puts(b, "]");
    free(all);
    free(n);
}
