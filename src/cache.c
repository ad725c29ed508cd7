/*
 * cache.c - the module cache: one entry per canonical module path (pages
 * and _app.c application modules), each entry a chain of immutable,
 * reference-counted versions.
 *
 * Owns: entries, versions' reference counts, the locking below, building a
 * new version (through compile.c and loader.c), batches (their members, the
 * threads they run on) and publishing each as one step, retiring and
 * unloading old ones, each page's chain of application modules, the
 * optimized tier's thread and the prefetch thread (a changed page compiled
 * into the compile cache during the settle window).
 * May not touch: HTTP, URL mapping, inotify. It learns of changes only
 * through hp_cache_touch() and friends.
 *
 * Locking, from the outside in:
 *   cache->mu      held only to find or insert an entry (a hash lookup), so
 *                  no path ever gets two entries; never across a syscall.
 *   e->load_mu     held while building one module: stat, compile, dlopen,
 *                  init. One module builds once at a time; others build
 *                  concurrently. A batch holds the load_mu of each of its
 *                  entries, taken in path order. Never waited on without
 *                  bound: a waiter leaves (lock_load) once the host
 *                  abandons the load or the load its holder runs is past
 *                  --handler-timeout + 2 s (stuck_why), since a constructor
 *                  or init that never returns never unlocks it, and a
 *                  request also when its own bound (stale_until) passes.
 *   cache->pub_mu  serialises publishers; with pub_seq (odd while a batch
 *                  is being swapped in) it lets a request pin a page and
 *                  its application chain as one consistent set.
 *   e->mu          brief: e->current, e->error, the retired list, the
 *                  chain. Pinning a version is a lock and an increment.
 *   cache->batch_mu brief, taken alone: which running batches will build
 *                  an entry (claims), and how many batch threads run.
 *
 * Batches run on threads of their own (hp_cache_start_batch): a batch's
 * members are what was stale when it was chosen, less what a running batch
 * already builds in the same state, so a slow compile delays only the
 * files changed with it.
 *
 * Staleness is two counters: the watcher bumps e->want when it sees a
 * change; a build stores the value of want it started from in e->done. A
 * request notes want when it arrives and needs done to reach it, so the
 * steady state costs two atomic loads and no syscall, an event that lands
 * during a compile is never lost, and under a storm of edits a request
 * waits for at most the build that starts after it arrived. How long it
 * waits is bounded (stale_until): in production a module with a current
 * version answers with it after --stale-wait-ms (and at once for the rest
 * of that build, serve_stale); in dev mode the wait ends before
 * --handler-timeout with a 503; only a first load waits for its build.
 */
#include "hp.h"
#include "ops.h"

#include "devloop.h"
#include "wait.h"

#include <assert.h>
#include <dlfcn.h>
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define HP_BUILD_TRIES 5
#define HP_BATCH_WAIT_S 10.0 /* then a request builds the module itself */
#define HP_LOAD_POLL_MS 50   /* a load_mu waiter looks for abandonment */
#define HP_PREFETCH_MAX 32   /* queued prefetches; more are left to batches */
#define HP_WINDOW_MAX 4096   /* paths noted for one batch; more: all of them */

/* The paths a failed batch covered: every path changed in its window
 * (hp_cache_touch) and its members, or all of them (a touch_all). A module
 * built alone (a first load) is held back only if it or a header it
 * includes is one of them: only then was it saved together with the
 * failure. Kept until a batch chosen after the failure ended publishes
 * (the held members go live with it, as before). */
struct held_rec {
    char **paths;
    size_t n;
    bool all;
    bool held_any; /* some member built and is held back by the failure */
    unsigned seq_end; /* cache->batch_seq when the failed batch ended */
    struct held_rec *next;
};

struct hp_entry {
    char *path;
    hp_cache *cache;
    bool is_app;
    pthread_mutex_t mu;
    pthread_mutex_t load_mu;
    atomic_uint want, done;
    atomic_bool tried;         /* a build has completed at least once     */
    atomic_bool held;          /* built in a failed batch: rebuild next   */
    atomic_bool err_fid_valid; /* cleared by the watcher without load_mu  */
    /* Its last load was not tried: another page's constructor held the
     * dynamic loader's lock (hp_diag_is_busy): the next request tries. */
    atomic_bool retry;
    atomic_uint dep_touches; /* changes to a header: err_fid is no proof */
    /* The host gave up on the init this entry's build is running (it ran
     * past --handler-timeout): waiters leave with abandon_why (under mu),
     * and the build refuses the object if the init ever returns. */
    atomic_bool abandoned;
    char *abandon_why;
    /* The load (hp_version_open) the holder of load_mu is running, for
     * this entry or, in a batch, for a neighbour (load_of): when it began
     * (hp_now_ns, 0 when none), so that a waiter tells a load that is stuck
     * (a constructor or init that never returns) from a slow one and
     * leaves (stuck_why) instead of waiting on load_mu for ever. */
    _Atomic int64_t load_since;
    _Atomic(hp_entry *) load_of;
    atomic_bool stuck_told; /* the stuck load logged (on load_of's entry) */
    /* guarded by mu */
    /* Production: a request waited the build of want stale_want out
     * (--stale-wait-ms) and got the current version; later requests for
     * the same build get it at once, and the log has said so once. */
    bool stale_on;
    unsigned stale_want;
    int64_t stale_since; /* hp_now_ns of the first such answer */
    hp_version *current;
    hp_version *retired;
    char *error;
    bool gone;
    /* the prefetch's compile of the source as pre_fid was: its duration,
     * which the batch's build (a compile-cache hit then) reports */
    struct hp_fid pre_fid;
    double pre_seconds;
    /* bumped by every build result of a newer source installed (a version,
     * an error, held back, gone): what the optimized tier checks before it
     * publishes over the fast version (basis_verdict) */
    unsigned src_gen;
    hp_entry *apps[HP_MAX_APPS]; /* this page's chain, outermost first */
    size_t napps;
    unsigned apps_gen;
    /* guarded by cache->batch_mu: the batches that will build this entry
     * (claims), and the want the newest of them noted (claim_snap) */
    int claims;
    unsigned claim_snap;
    /* guarded by load_mu */
    struct hp_fid err_fid;
    atomic_ulong builds;
    hp_entry *hnext; /* guarded by cache->mu */
};

struct hp_cache {
    pthread_mutex_t mu;
    hp_entry **buckets;
    size_t nbuckets, count;
    const struct hp_config *cfg;
    struct hp_compiler *cc;
    const char *root;
    char *rundir;
    atomic_uint_fast64_t next_id;
    atomic_uint apps_gen; /* bumped when an _app file comes or goes */
    atomic_bool batched;
    pthread_mutex_t pub_mu;
    atomic_uint pub_seq;
    pthread_mutex_t done_mu; /* with done_cv: requests waiting on a batch */
    pthread_cond_t done_cv;
    /* choosing batch members (entries' claims), and the batch threads
     * running (nbatches, batch_cv: hp_cache_free waits for them) */
    pthread_mutex_t batch_mu;
    pthread_cond_t batch_cv;
    int nbatches;
    /* also under batch_mu: paths changed since the last batch was chosen
     * (win_all: everything), batches chosen so far, failed batches' paths */
    char **win;
    size_t nwin, win_cap;
    bool win_all;
    unsigned batch_seq;
    struct held_rec *recs;
    /* the optimized tier behind the fast one (tier_main): entries whose
     * current version is fast, in the order published */
    atomic_bool tiered;
    pthread_mutex_t tier_mu;
    pthread_cond_t tier_cv;
    hp_entry **tier_q;
    size_t tier_n, tier_cap;
    unsigned tier_gen; /* bumped by every enqueue: the quiet spell restarts */
    bool tier_running, tier_quit;
    pthread_t tier_thread;
    /* prefetch (hp_cache_prefetch): page sources the watcher saw written,
     * compiled ahead of their batch by one thread, in the order saved */
    pthread_mutex_t pre_mu;
    pthread_cond_t pre_cv;
    char *pre_q[HP_PREFETCH_MAX];
    size_t pre_n;
    bool pre_running, pre_quit;
    pthread_t pre_thread;
};

/* (int) of the difference: counters wrap, comparisons must too. */
static bool reached(unsigned done, unsigned want)
{
    return (int)(done - want) >= 0;
}

static size_t hash_path(const char *s)
{
    size_t h = 5381;
    while (*s)
        h = h * 33 ^ (unsigned char)*s++;
    return h;
}

static bool is_app_path(const char *path)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    return strcmp(base, "_app.c") == 0 || strcmp(base, "_app.so") == 0;
}

hp_cache *hp_cache_new(const struct hp_config *cfg, struct hp_compiler *cc)
{
    hp_cache *c = hp_xcalloc(1, sizeof *c);
    pthread_condattr_t ca;

    c->rundir = hp_rundir_create(cfg->cache_dir);
    if (!c->rundir) {
        free(c);
        return NULL;
    }
    pthread_mutex_init(&c->mu, NULL);
    pthread_mutex_init(&c->pub_mu, NULL);
    pthread_mutex_init(&c->done_mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&c->done_cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&c->batch_mu, NULL);
    pthread_cond_init(&c->batch_cv, NULL);
    pthread_mutex_init(&c->tier_mu, NULL);
    pthread_cond_init(&c->tier_cv, NULL);
    pthread_mutex_init(&c->pre_mu, NULL);
    pthread_cond_init(&c->pre_cv, NULL);
    c->nbuckets = 256;
    c->buckets = hp_xcalloc(c->nbuckets, sizeof *c->buckets);
    c->cfg = cfg;
    c->cc = cc;
    c->root = hp_compiler_root(cc);
    atomic_init(&c->next_id, 1);
    return c;
}

void hp_cache_set_batched(hp_cache *c, bool on)
{
    atomic_store(&c->batched, on);
}

static void tier_stop(hp_cache *c);
static void prefetch_stop(hp_cache *c);

static void entry_free(hp_entry *e)
{
    /* Shutdown: requests are over; whatever is left is unloaded, the
     * current version last so a retired one's fini never sees its
     * successor gone first. */
    for (hp_version *v = e->retired, *n; v; v = n) {
        n = v->next_retired;
        hp_version_close(v);
    }
    if (e->current)
        hp_version_close(e->current);
    pthread_mutex_destroy(&e->mu);
    pthread_mutex_destroy(&e->load_mu);
    free(e->abandon_why);
    free(e->error);
    free(e->path);
    free(e);
}

static void paths_free(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static int by_depth_desc(const void *a, const void *b)
{
    const hp_entry *x = *(hp_entry *const *)a, *y = *(hp_entry *const *)b;
    /* Pages before application modules, inner before outer: a page's
     * fini may still use its application's state. */
    if (x->is_app != y->is_app)
        return x->is_app ? 1 : -1;
    size_t dx = 0, dy = 0;
    for (const char *p = x->path; *p; p++)
        dx += *p == '/';
    for (const char *p = y->path; *p; p++)
        dy += *p == '/';
    return dx < dy ? 1 : dx > dy ? -1 : 0;
}

void hp_cache_free(hp_cache *c)
{
    if (!c)
        return;
    /* Batch threads use the entries: let them finish (a compile ends by
     * compile-timeout at the latest). */
    pthread_mutex_lock(&c->batch_mu);
    while (c->nbatches > 0)
        pthread_cond_wait(&c->batch_cv, &c->batch_mu);
    pthread_mutex_unlock(&c->batch_mu);
    prefetch_stop(c);
    tier_stop(c);
    hp_entry **all = hp_xmalloc((c->count + 1) * sizeof *all);
    size_t n = 0;
    for (size_t b = 0; b < c->nbuckets; b++)
        for (hp_entry *e = c->buckets[b]; e; e = e->hnext)
            all[n++] = e;
    qsort(all, n, sizeof *all, by_depth_desc);
    for (size_t i = 0; i < n; i++)
        entry_free(all[i]);
    free(all);
    paths_free(c->win, c->nwin);
    while (c->recs) {
        struct held_rec *r = c->recs;
        c->recs = r->next;
        paths_free(r->paths, r->n);
        free(r);
    }
    hp_rundir_remove(c->rundir);
    free(c->rundir);
    free(c->buckets);
    pthread_mutex_destroy(&c->mu);
    pthread_mutex_destroy(&c->pub_mu);
    pthread_mutex_destroy(&c->done_mu);
    pthread_cond_destroy(&c->done_cv);
    pthread_mutex_destroy(&c->batch_mu);
    pthread_cond_destroy(&c->batch_cv);
    pthread_mutex_destroy(&c->tier_mu);
    pthread_cond_destroy(&c->tier_cv);
    pthread_mutex_destroy(&c->pre_mu);
    pthread_cond_destroy(&c->pre_cv);
    free(c->tier_q);
    free(c);
}

static void grow(hp_cache *c)
{
    size_t n = c->nbuckets * 2;
    hp_entry **nb = hp_xcalloc(n, sizeof *nb);
    for (size_t b = 0; b < c->nbuckets; b++) {
        for (hp_entry *e = c->buckets[b], *next; e; e = next) {
            next = e->hnext;
            size_t i = hash_path(e->path) % n;
            e->hnext = nb[i];
            nb[i] = e;
        }
    }
    free(c->buckets);
    c->buckets = nb;
    c->nbuckets = n;
}

/* The first level: find or insert, nothing else, under the cache lock. */
static hp_entry *entry_get(hp_cache *c, const char *path)
{
    hp_entry *e;
    size_t h = hash_path(path);

    pthread_mutex_lock(&c->mu);
    for (e = c->buckets[h % c->nbuckets]; e; e = e->hnext)
        if (strcmp(e->path, path) == 0)
            goto out;
    e = hp_xcalloc(1, sizeof *e);
    e->path = hp_xstrdup(path);
    e->cache = c;
    e->is_app = is_app_path(path);
    pthread_mutex_init(&e->mu, NULL);
    pthread_mutex_init(&e->load_mu, NULL);
    atomic_init(&e->want, 1); /* ahead of done: build on first use */
    atomic_init(&e->done, 0);
    e->apps_gen = atomic_load(&c->apps_gen) - 1; /* chain not computed */
    if (c->count + 1 > c->nbuckets * 2)
        grow(c);
    e->hnext = c->buckets[h % c->nbuckets];
    c->buckets[h % c->nbuckets] = e;
    c->count++;
out:
    pthread_mutex_unlock(&c->mu);
    return e;
}

/* Every entry, collected under the cache lock, for walks that then lock
 * entries one by one without it. Entries are never freed while the cache
 * lives, so the pointers stay good. */
static hp_entry **entries_snapshot(hp_cache *c, size_t *n)
{
    pthread_mutex_lock(&c->mu);
    hp_entry **v = hp_xmalloc((c->count + 1) * sizeof *v);
    size_t k = 0;
    for (size_t b = 0; b < c->nbuckets; b++)
        for (hp_entry *e = c->buckets[b]; e; e = e->hnext)
            v[k++] = e;
    pthread_mutex_unlock(&c->mu);
    *n = k;
    return v;
}

/* ---- versions ---------------------------------------------------------- */

void hp_version_release(hp_version *v)
{
    if (!v)
        return;
    unsigned before =
        atomic_fetch_sub_explicit(&v->refs, 1, memory_order_acq_rel);
    assert(before > 0 && "a version released more often than pinned");
    if (before != 1)
        return;
    /* Last user of a retired version (a current version always holds a
     * reference of its own): take it off the list and unload it. */
    hp_entry *e = v->entry;
    pthread_mutex_lock(&e->mu);
    for (hp_version **p = &e->retired; *p; p = &(*p)->next_retired) {
        if (*p == v) {
            *p = v->next_retired;
            break;
        }
    }
    pthread_mutex_unlock(&e->mu);
    hp_version_close(v);
    hp_metrics_unloaded();
}

void *hp_version_sym(hp_version *v, const char *name)
{
    return dlsym(v->dl, name);
}

hp_handler_fn hp_version_handler(hp_version *v, const char *name)
{
    size_t nslots = sizeof v->handlers / sizeof *v->handlers;
    for (size_t i = 0; i < nslots; i++) {
        struct hp_handler_slot *s = &v->handlers[i];
        if (atomic_load_explicit(&s->state, memory_order_acquire) == 2 &&
            strcmp(s->name, name) == 0)
            return s->fn;
    }
    char sym[160];
    snprintf(sym, sizeof sym, "hp__handler_%s", name);
    hp_handler_fn *slot = dlsym(v->dl, sym);
    hp_handler_fn fn = slot ? *slot : NULL;
    if (strlen(name) >= sizeof v->handlers[0].name)
        return fn;
    /* Remember it in a free slot, if one is left; a full memo only costs
     * the dlsym. Misses are remembered too (fn NULL). */
    for (size_t i = 0; i < nslots; i++) {
        struct hp_handler_slot *s = &v->handlers[i];
        int expect = 0;
        if (atomic_compare_exchange_strong(&s->state, &expect, 1)) {
            snprintf(s->name, sizeof s->name, "%s", name);
            s->fn = fn;
            atomic_store_explicit(&s->state, 2, memory_order_release);
            break;
        }
    }
    return fn;
}

/* ---- building ------------------------------------------------------------ */

static bool out_of_date(hp_entry *e);

/* B_STALE: an optimized build refused at publish (the entry moved on). */
enum build { B_SAME, B_NEW, B_ERROR, B_GONE, B_RETRY, B_STALE };

/* What an optimized build was started against (tier_pin): the fast
 * version it would succeed, and the entry's src_gen then. */
struct tier_basis {
    hp_version *fast; /* pinned */
    unsigned gen;
};

struct build_result {
    enum build kind;
    unsigned dep_touches; /* e->dep_touches when the build began */
    hp_version *v;        /* B_NEW */
    char *diag;           /* B_ERROR */
    struct hp_fid fid;
    bool same_source; /* B_NEW of the optimized tier: browsers need not know */
    double ahead_s;   /* B_NEW from the prefetch's object: its compile time */
    struct tier_basis basis; /* same_source: published only if it holds */
};

static hp_version *current_of(hp_entry *e)
{
    pthread_mutex_lock(&e->mu);
    hp_version *v = e->current;
    pthread_mutex_unlock(&e->mu);
    /* Safe to use without a pin while holding load_mu: only a publish,
     * which needs load_mu, can retire the current version. */
    return v;
}

static bool deps_unchanged(const hp_version *v)
{
    for (size_t i = 0; i < v->ndeps; i++) {
        struct hp_fid f;
        if (hp_fid_stat(v->deps[i].path, &f) < 0 ||
            !hp_fid_eq(&f, &v->deps[i].fid))
            return false;
    }
    return true;
}

/*
 * After a version's open: if the host gave up on its init meanwhile
 * (hp_cache_abandon_load), the object is refused even though the init
 * returned: close it without its fini (the init is held as never having
 * finished, as if it had crashed) and return NULL with the host's reason
 * in *diag. Clears the mark: it was this open's.
 */
static hp_version *refuse_abandoned(hp_entry *e, hp_version *v, char **diag)
{
    if (!atomic_load(&e->abandoned))
        return v;
    pthread_mutex_lock(&e->mu);
    char *why = e->abandon_why ? hp_xstrdup(e->abandon_why) : NULL;
    pthread_mutex_unlock(&e->mu);
    if (v) {
        v->initialised = false; /* no fini: see above */
        hp_version_close(v);
    }
    free(*diag);
    *diag = why ? why : hp_xstrdup(HP_DIAG_INIT_HUNG);
    atomic_store(&e->abandoned, false);
    return NULL;
}

/* The entries whose load_mu this thread holds (a request's one, or a
 * batch's members): each load it runs is marked on all of them, since
 * their waiters wait for it alike. */
static __thread hp_entry *const *tl_held;
static __thread size_t tl_nheld;

static void held_set(hp_entry *const *es, size_t n, hp_entry *const **old,
                     size_t *nold)
{
    *old = tl_held;
    *nold = tl_nheld;
    tl_held = es;
    tl_nheld = n;
}

/* The load of e begins (since > 0) or ends (0) on this thread. */
static void mark_load(hp_entry *e, int64_t since)
{
    hp_entry *const *es = tl_nheld ? tl_held : &e;
    size_t n = tl_nheld ? tl_nheld : 1;
    if (since)
        atomic_store(&e->stuck_told, false);
    for (size_t i = 0; i < n; i++) {
        atomic_store(&es[i]->load_of, since ? e : NULL);
        atomic_store(&es[i]->load_since, since);
    }
}

/* hp_version_open, marked on the entries this thread holds (mark_load). */
static hp_version *open_marked(hp_entry *e, const char *so, uint64_t id,
                               void *previous, char **diag)
{
    mark_load(e, hp_now_ns());
    hp_version *v =
        hp_version_open(so, e->cache->rundir, id, e->path, previous, diag);
    mark_load(e, 0);
    return v;
}

/* Build a new version of e from the file as it is now, without publishing
 * it. Called with e->load_mu held. */
static void build(hp_entry *e, struct build_result *r)
{
    hp_cache *c = e->cache;
    struct hp_fid now;
    struct hp_artifact art;
    hp_version *cur = current_of(e);

    memset(r, 0, sizeof *r);
    r->dep_touches = atomic_load(&e->dep_touches);
    if (hp_fid_stat(e->path, &now) < 0) {
        if (errno == ENOENT || errno == ENOTDIR) {
            r->kind = B_GONE;
            return;
        }
        r->kind = B_ERROR;
        r->diag = hp_xasprintf("%s: %s", e->path, strerror(errno));
        return;
    }
    if (cur && hp_fid_eq(&now, &cur->src_fid) && deps_unchanged(cur) &&
        !atomic_load(&e->held)) {
        r->kind = B_SAME;
        return;
    }
    if (atomic_load(&e->err_fid_valid) && hp_fid_eq(&now, &e->err_fid)) {
        r->kind = B_SAME; /* the same broken file: keep the error */
        return;
    }

    atomic_fetch_add(&e->builds, 1);
    enum hp_tier tier =
        atomic_load(&c->tiered) ? HP_TIER_FAST : HP_TIER_OPTIMIZED;
    hp_version *v;
again:;
    int rc = hp_compile_tier(c->cc, e->path, tier, &art, &r->diag);
    if (rc == HP_COMPILE_RACED) {
        r->kind = B_RETRY;
        return;
    }
    if (rc < 0) {
        struct hp_fid later;
        /* A failure on a file that moved meanwhile may be a half-written
         * file, not the author's mistake: look again. */
        if (hp_fid_stat(e->path, &later) == 0 && !hp_fid_eq(&now, &later)) {
            free(r->diag);
            r->diag = NULL;
            r->kind = B_RETRY;
            return;
        }
        r->kind = B_ERROR;
        r->fid = now;
        return;
    }
    r->fid = art.src_fid;
    if (art.cache_hit) {
        pthread_mutex_lock(&e->mu);
        if (hp_fid_eq(&e->pre_fid, &art.src_fid))
            r->ahead_s = e->pre_seconds;
        pthread_mutex_unlock(&e->mu);
    }
    uint64_t id = atomic_fetch_add(&c->next_id, 1);
    v = open_marked(e, art.so_path, id, cur ? cur->state : NULL, &r->diag);
    v = refuse_abandoned(e, v, &r->diag);
    if (!v && tier == HP_TIER_FAST && !hp_diag_is_init(r->diag)) {
        /* tcc's object is linked without the page compiler's runtime, and
         * a page may need something only that has: the optimized tier is
         * a full build, so the page is served from it instead of an error
         * (the next edit tries the fast tier again). An init that refused
         * or crashed would do the same in any build: it is the error. */
        hp_log_info("%s: the fast tier's object did not load (%s); building "
                    "the optimized tier now",
                    e->path, r->diag ? r->diag : "?");
        free(r->diag);
        r->diag = NULL;
        hp_artifact_free(&art);
        tier = HP_TIER_OPTIMIZED;
        goto again;
    }
    if (!v) {
        char *why = hp_compile_explain_load(e->path, r->diag);
        if (why) {
            free(r->diag);
            r->diag = why;
        }
        hp_artifact_free(&art);
        r->kind = B_ERROR;
        return;
    }
    v->entry = e;
    v->tier = art.tier;
    v->src_fid = art.src_fid;
    v->deps = art.deps;
    v->ndeps = art.ndeps;
    art.deps = NULL;
    art.ndeps = 0;
    hp_artifact_free(&art);
    atomic_init(&v->refs, 1);
    r->kind = B_NEW;
    r->v = v;
}

/* The node's counters and reload history (metrics.c) see each build that
 * made a version or an error; an unchanged or deleted file is none. */
static void count_build(hp_entry *e, struct build_result *r, double t0)
{
    /* A build from the prefetch's object took what that compile took (or
     * this wait for it, if longer), not the load alone. */
    double took = hp_now() - t0;
    if (r->kind == B_NEW && r->ahead_s > took)
        took = r->ahead_s;
    if (r->kind == B_NEW || r->kind == B_ERROR)
        hp_metrics_build(e->path, took, r->kind == B_NEW, r->diag);
}

static void build_retrying(hp_entry *e, struct build_result *r)
{
    double t0 = hp_now();
    for (int i = 0;; i++) {
        build(e, r);
        if (r->kind != B_RETRY) {
            count_build(e, r, t0);
            return;
        }
        if (i == HP_BUILD_TRIES) {
            /* Still being written: an error (so a batch waits for it rather
             * than go live without it); the next event rebuilds. */
            r->kind = B_ERROR;
            r->diag = hp_xstrdup("the file, or a header it includes, kept "
                                 "changing while it was compiled; waiting "
                                 "for the writes to settle");
            memset(&r->fid, 0, sizeof r->fid);
            count_build(e, r, t0);
            return;
        }
        usleep(20000 * (i + 1));
    }
}

/* A built version that will not go live: undo its init without touching
 * the state it may have adopted from the version that stays. */
static void discard(hp_entry *e, hp_version *v)
{
    hp_version *cur = current_of(e);
    v->handed_over = cur && v->state == cur->state;
    hp_version_close(v);
}

static void store_error(hp_entry *e, struct build_result *r)
{
    /* A refused init or constructor (guard.c) is logged once on the node
     * by whoever refused it, not again by each worker it is refused in. */
    if (!hp_diag_is_refused(r->diag))
        hp_log_error("%s: %s", e->path, r->diag);
    hp_devloop_changed(e->path, r->diag); /* dev mode: the overlay */
    e->err_fid = r->fid;
    /* A header that changed while this build ran may be the fix: then the
     * unchanged source must not count as the same broken file. */
    atomic_store(&e->err_fid_valid,
                 atomic_load(&e->dep_touches) == r->dep_touches &&
                     !hp_diag_is_busy(r->diag)); /* busy: try again */
    atomic_store(&e->retry, hp_diag_is_busy(r->diag));
    pthread_mutex_lock(&e->mu);
    free(e->error);
    e->error = r->diag;
    e->gone = false;
    e->src_gen++; /* a newer source, broken: no older build may hide it */
    pthread_mutex_unlock(&e->mu);
    r->diag = NULL;
}

/*
 * Whether an optimized build started against b may still replace the
 * fast version: NULL if so, else why not (for the log). Called with e->mu
 * held. The entry must hold the same source as then: the fast version
 * still current, no build result installed since (src_gen: no newer
 * version, error or held-back build), no change seen and not yet built (a
 * save still being built counts), and nothing to hide (an error, a
 * deleted file). A change seen and built as the same source (B_SAME: a
 * touch_all) installs nothing, so it does not stop the publish. A touch
 * landing after this check is built by the batch it starts, which needs
 * the load_mu the publisher holds, so that batch's result comes after.
 */
static const char *basis_verdict(hp_entry *e, const struct tier_basis *b)
{
    if (e->current != b->fast)
        return "a newer version is current";
    if (e->error)
        return "a newer save failed to build, and its error stays";
    if (e->gone)
        return "the file is gone";
    if (e->src_gen != b->gen)
        return "a newer save was built";
    if (out_of_date(e))
        return "a newer change was seen and is being built";
    return NULL;
}

/* Swap one result in under e->mu; returns the version retired. An
 * optimized build whose basis no longer holds becomes B_STALE instead:
 * the check and the swap are one step under e->mu. */
static hp_version *swap_in(hp_entry *e, struct build_result *r)
{
    hp_version *old = NULL;
    pthread_mutex_lock(&e->mu);
    if (r->same_source && basis_verdict(e, &r->basis))
        r->kind = B_STALE;
    else if (r->kind == B_NEW || r->kind == B_GONE)
        e->src_gen += !r->same_source;
    if (r->kind == B_NEW || r->kind == B_GONE) {
        old = e->current;
        e->current = r->kind == B_NEW ? r->v : NULL;
        e->gone = r->kind == B_GONE;
        free(e->error);
        e->error = NULL;
        if (old) {
            old->handed_over =
                r->kind == B_NEW && old->state && r->v->state == old->state;
            old->next_retired = e->retired;
            e->retired = old;
            hp_metrics_retired();
        }
    }
    pthread_mutex_unlock(&e->mu);
    if (r->kind == B_NEW)
        atomic_store(&e->err_fid_valid, false);
    return old;
}

static void tier_enqueue(hp_cache *c, hp_entry *e);
static void *tier_main_fwd(void *arg);

/* Publish results of n entries as one step that no request straddles. */
static void publish(hp_cache *c, hp_entry **es, struct build_result *rs,
                    size_t n)
{
    hp_version *olds[n ? n : 1];

    pthread_mutex_lock(&c->pub_mu);
    /* Even between publishes, odd during one: pub_mu makes us the only
     * writer, so the parity is ours to keep. */
    unsigned seq =
        atomic_fetch_add_explicit(&c->pub_seq, 1, memory_order_acq_rel);
    assert((seq & 1) == 0);
    for (size_t i = 0; i < n; i++)
        olds[i] = swap_in(es[i], &rs[i]);
    seq = atomic_fetch_add_explicit(&c->pub_seq, 1, memory_order_acq_rel);
    assert((seq & 1) == 1);
    (void)seq;
    pthread_mutex_unlock(&c->pub_mu);
    for (size_t i = 0; i < n; i++) {
        if (olds[i] && rs[i].kind == B_NEW)
            hp_log_info("%s: version %llu replaces %llu", es[i]->path,
                        (unsigned long long)rs[i].v->id,
                        (unsigned long long)olds[i]->id);
        hp_version_release(olds[i]); /* drop the "current" reference */
        if (rs[i].kind == B_NEW && rs[i].v->tier == HP_TIER_FAST)
            tier_enqueue(c, es[i]);
        if ((rs[i].kind == B_NEW || rs[i].kind == B_GONE) && !rs[i].same_source)
            hp_devloop_changed(es[i]->path, NULL); /* dev mode: reload */
    }
}

static void mark_done(hp_cache *c, hp_entry *e, unsigned snap)
{
    atomic_store(&e->tried, true);
    pthread_mutex_lock(&c->done_mu);
    /* Forward only: a batch notes want when it chooses its members, and a
     * request may have built the entry with a newer want before the batch
     * got its load_mu. */
    if (!reached(atomic_load(&e->done), snap))
        atomic_store_explicit(&e->done, snap, memory_order_release);
    pthread_cond_broadcast(&c->done_cv);
    pthread_mutex_unlock(&c->done_mu);
}

static void set_held(hp_entry *e, bool on)
{
    if (on) { /* a newer source was built and not published */
        pthread_mutex_lock(&e->mu);
        e->src_gen++;
        pthread_mutex_unlock(&e->mu);
    }
    atomic_store(&e->held, on);
}

/* Why a held module is not live (its error while held). */
static const char held_msg[] =
    "held back: files changed together with this one failed to build; it "
    "goes live with them once they are fixed (see the other errors)";

static bool saved_with_failure(hp_entry *e, const struct build_result *r);

/* Build and publish one entry on its own (a first load, or no watcher).
 * Called with e->load_mu held. */
static void refresh_one(hp_entry *e)
{
    hp_cache *c = e->cache;
    struct build_result r;
    unsigned snap = atomic_load(&e->want);

    /* A load kept from being tried (hp_diag_is_busy) is no failure of the
     * batch it was saved in: tried again, it goes live on its own. */
    bool was_busy = atomic_exchange(&e->retry, false);
    build_retrying(e, &r);
    if (r.kind == B_ERROR) {
        store_error(e, &r);
        set_held(e, false);
    } else if ((r.kind == B_NEW || r.kind == B_GONE) && !was_busy &&
               atomic_load(&c->batched) && saved_with_failure(e, &r)) {
        /* Its file or a header it includes changed in a batch that failed:
         * it waits with that batch rather than go live against the old
         * versions of its neighbours. */
        if (r.kind == B_NEW)
            discard(e, r.v);
        set_held(e, true);
        pthread_mutex_lock(&e->mu);
        free(e->error);
        e->error = hp_xstrdup(held_msg);
        pthread_mutex_unlock(&e->mu);
    } else {
        if (r.kind == B_NEW || r.kind == B_GONE)
            publish(c, &e, &r, 1);
        set_held(e, false);
    }
    mark_done(c, e, snap);
}

static int by_path(const void *a, const void *b)
{
    return strcmp((*(hp_entry *const *)a)->path, (*(hp_entry *const *)b)->path);
}

static bool out_of_date(hp_entry *e)
{
    return atomic_load(&e->held) ||
           !reached(atomic_load_explicit(&e->done, memory_order_acquire),
                    atomic_load_explicit(&e->want, memory_order_acquire));
}

/* One batch: its members in path order (the lock order), with the want
 * each had when the batch chose it. */
struct batch {
    hp_cache *c;
    hp_entry **es;
    unsigned *snaps;
    size_t n;
    char **changed; /* the window's paths (held_rec), taken when chosen */
    size_t nchanged;
    bool all;
    unsigned seq; /* cache->batch_seq that chose it */
};

/*
 * Choose the members of a new batch: every entry out of date (or held)
 * that no running batch will build. An entry a running batch claimed joins
 * only if it changed again since that batch noted its want: then its new
 * state belongs with the files changed with it now, and this batch waits
 * for the running one's load_mu; otherwise it is left to the running
 * batch, and this one does not wait for it. NULL when there is nothing.
 */
struct member {
    hp_entry *e;
    unsigned snap;
};

static int member_by_path(const void *a, const void *b)
{
    return strcmp(((const struct member *)a)->e->path,
                  ((const struct member *)b)->e->path);
}

static struct batch *batch_choose(hp_cache *c)
{
    size_t n, k = 0;
    hp_entry **all = entries_snapshot(c, &n);
    struct member *m = hp_xcalloc(n + 1, sizeof *m);

    pthread_mutex_lock(&c->batch_mu);
    for (size_t i = 0; i < n; i++) {
        hp_entry *e = all[i];
        unsigned want = atomic_load_explicit(&e->want, memory_order_acquire);
        if (!out_of_date(e) || (e->claims > 0 && e->claim_snap == want))
            continue;
        e->claims++;
        e->claim_snap = want;
        m[k++] = (struct member){e, want};
    }
    /* The window closes here: what changed since belongs to the next. */
    char **changed = c->win;
    size_t nchanged = c->nwin;
    bool whole = c->win_all;
    c->win = NULL;
    c->nwin = c->win_cap = 0;
    c->win_all = false;
    unsigned seq = ++c->batch_seq;
    pthread_mutex_unlock(&c->batch_mu);
    free(all);
    if (k == 0) {
        paths_free(changed, nchanged);
        free(m);
        return NULL;
    }
    /* One lock order for every multi-entry lock holder. */
    qsort(m, k, sizeof *m, member_by_path);
    struct batch *b = hp_xcalloc(1, sizeof *b);
    b->c = c;
    b->changed = changed;
    b->nchanged = nchanged;
    b->all = whole;
    b->seq = seq;
    b->es = hp_xcalloc(k, sizeof *b->es);
    b->snaps = hp_xcalloc(k, sizeof *b->snaps);
    for (size_t i = 0; i < k; i++) {
        b->es[i] = m[i].e;
        b->snaps[i] = m[i].snap;
    }
    b->n = k;
    free(m);
    return b;
}

/*
 * Whether a failed member failed before this batch and again the same way
 * from the same inputs: its source is the one its stored error came from
 * (err_fid), the headers its current version recorded are unchanged (a
 * failed compile records none: gcc writes no -MD file then), and the
 * diagnostic is the stored one, byte for byte. Such a member is in the
 * batch only as a retry (a stored error is retried on any header change,
 * having no dependency list), so nothing of it changed with the others:
 * holding them back would protect nothing, and would hold them only in the
 * workers that happened to have loaded the broken page. Not a member whose
 * failure is still holding back files saved with it (failing_with_held):
 * those go live with its fix, not with the next unrelated change. Called
 * with e->load_mu held (err_fid) and before store_error (e->error is the
 * old one).
 */
static bool failing_with_held(hp_entry *e);

static bool same_failure(hp_entry *e, const struct build_result *r)
{
    static const struct hp_fid none;
    if (r->kind != B_ERROR || !r->diag || hp_fid_eq(&r->fid, &none) ||
        !hp_fid_eq(&r->fid, &e->err_fid) || failing_with_held(e))
        return false;
    hp_version *cur = current_of(e); /* stable: we hold load_mu */
    if (cur && !deps_unchanged(cur))
        return false;
    pthread_mutex_lock(&e->mu);
    bool same = e->error && strcmp(e->error, r->diag) == 0;
    pthread_mutex_unlock(&e->mu);
    return same;
}

/* Store the failures; members that built are published (none failed) or
 * held back (some did). */
static void store_failures(struct batch *b, struct build_result *rs)
{
    for (size_t i = 0; i < b->n; i++) {
        if (rs[i].kind == B_ERROR) {
            store_error(b->es[i], &rs[i]);
            set_held(b->es[i], false);
        }
    }
}

/* Remember what a failed batch covered (its window's paths and its
 * members), so that a module first built alone while it is pending is held
 * back only if it was saved with it. Takes b->changed. */
static void held_rec_add(struct batch *b, bool held_any)
{
    hp_cache *c = b->c;
    struct held_rec *r = hp_xcalloc(1, sizeof *r);
    r->held_any = held_any;
    r->paths =
        hp_xrealloc(b->changed, (b->nchanged + b->n + 1) * sizeof *r->paths);
    r->n = b->nchanged;
    for (size_t i = 0; i < b->n; i++)
        r->paths[r->n++] = hp_xstrdup(b->es[i]->path);
    r->all = b->all;
    b->changed = NULL;
    b->nchanged = 0;
    pthread_mutex_lock(&c->batch_mu);
    r->seq_end = c->batch_seq;
    r->next = c->recs;
    c->recs = r;
    pthread_mutex_unlock(&c->batch_mu);
}

/* Batch b published: the failures pending before it was chosen no longer
 * hold anything (their held members were in b and went live). */
static void held_recs_drop(struct batch *b)
{
    hp_cache *c = b->c;
    struct held_rec *gone = NULL;
    pthread_mutex_lock(&c->batch_mu);
    for (struct held_rec **p = &c->recs; *p;) {
        struct held_rec *r = *p;
        if ((int)(b->seq - r->seq_end) > 0) {
            *p = r->next;
            r->next = gone;
            gone = r;
        } else {
            p = &r->next;
        }
    }
    pthread_mutex_unlock(&c->batch_mu);
    while (gone) {
        struct held_rec *r = gone;
        gone = r->next;
        paths_free(r->paths, r->n);
        free(r);
    }
}

static bool rec_has(const struct held_rec *r, const char *path)
{
    for (size_t i = 0; i < r->n; i++)
        if (strcmp(r->paths[i], path) == 0)
            return true;
    return false;
}

/* e failed in a batch that still holds back members that built: its next
 * failure, however alike, keeps them held (all or nothing). */
static bool failing_with_held(hp_entry *e)
{
    hp_cache *c = e->cache;
    bool hit = false;
    pthread_mutex_lock(&c->batch_mu);
    for (struct held_rec *h = c->recs; h && !hit; h = h->next)
        hit = h->held_any && rec_has(h, e->path);
    pthread_mutex_unlock(&c->batch_mu);
    return hit;
}

/* Whether e, built alone into r (a first load, or a request that did not
 * wait for a batch), was changed together with a failure still pending:
 * its own file, or a header its new version includes, is among a failed
 * batch's paths. An older failure of other files holds nothing. */
static bool saved_with_failure(hp_entry *e, const struct build_result *r)
{
    hp_cache *c = e->cache;
    bool hit = false;
    pthread_mutex_lock(&c->batch_mu);
    for (struct held_rec *h = c->recs; h && !hit; h = h->next) {
        hit = h->all || rec_has(h, e->path);
        for (size_t i = 0; r->kind == B_NEW && !hit && i < r->v->ndeps; i++)
            hit = rec_has(h, r->v->deps[i].path);
    }
    pthread_mutex_unlock(&c->batch_mu);
    return hit;
}

/* Some member failed: store the failures, hold the rest back. */
/* A member that built is held back: its new version is dropped, it keeps
 * serving the old one. */
static void hold_member(hp_entry *e, struct build_result *r)
{
    if (r->kind != B_NEW && r->kind != B_GONE)
        return;
    if (r->kind == B_NEW)
        discard(e, r->v);
    set_held(e, true);
    /* An error of its own from an earlier build (a header broken then,
     * fixed now) is no longer why it does not go live. */
    pthread_mutex_lock(&e->mu);
    if (e->error) {
        free(e->error);
        e->error = hp_xstrdup(held_msg);
    }
    pthread_mutex_unlock(&e->mu);
    hp_log_error("%s: held back: another file changed with it failed to "
                 "build",
                 e->path);
}

static void batch_hold(struct batch *b, struct build_result *rs)
{
    bool held_any = false;
    for (size_t i = 0; i < b->n; i++)
        held_any |= rs[i].kind == B_NEW || rs[i].kind == B_GONE;
    held_rec_add(b, held_any);
    store_failures(b, rs);
    for (size_t i = 0; i < b->n; i++)
        hold_member(b->es[i], &rs[i]);
}

/*
 * Run a batch: rebuild its members, then publish all of it in one step, or,
 * if any failed, none of it (the failures are stored and the rest is held
 * back, to be rebuilt with the next batch). Frees b.
 */
static hp_entry *entry_find(hp_cache *c, const char *path);

/* Whether path's module has a build error of its own (not the held-back
 * message). */
static bool has_own_error(hp_cache *c, const char *path)
{
    hp_entry *e = entry_find(c, path);
    if (!e)
        return false;
    pthread_mutex_lock(&e->mu);
    bool bad = e->error && strcmp(e->error, held_msg) != 0;
    pthread_mutex_unlock(&e->mu);
    return bad;
}

/*
 * A member held back by a failed batch joins every later batch (it is out
 * of date), but goes live only with that batch's failures fixed: while a
 * failed file of its batch is not in this one and still has its error, it
 * stays held (all or nothing: an unrelated save must not put it live beside
 * the old version of what it was saved with). Marks such members in keep
 * (b->n flags); false when there are none.
 */
static bool held_still_failing(struct batch *b, bool *keep)
{
    hp_cache *c = b->c;
    bool any = false;
    for (size_t i = 0; i < b->n; i++) {
        if (!atomic_load(&b->es[i]->held))
            continue;
        char **paths = NULL;
        size_t n = 0;
        pthread_mutex_lock(&c->batch_mu);
        for (struct held_rec *h = c->recs; h; h = h->next) {
            if (!h->held_any || !rec_has(h, b->es[i]->path))
                continue;
            paths = hp_xrealloc(paths, (n + h->n) * sizeof *paths);
            for (size_t k = 0; k < h->n; k++)
                paths[n++] = hp_xstrdup(h->paths[k]);
        }
        pthread_mutex_unlock(&c->batch_mu);
        for (size_t k = 0; k < n && !keep[i]; k++) {
            bool member = false;
            for (size_t j = 0; j < b->n && !member; j++)
                member = strcmp(b->es[j]->path, paths[k]) == 0;
            keep[i] = !member && has_own_error(c, paths[k]);
        }
        paths_free(paths, n);
        any |= keep[i];
    }
    return any;
}

/* No member failed, but some wait for an older failure (keep): the others
 * go live together; the held records stay (that failure still holds). */
static void batch_publish_but(struct batch *b, struct build_result *rs,
                              const bool *keep)
{
    hp_entry **es = hp_xcalloc(b->n, sizeof *es);
    struct build_result *go = hp_xcalloc(b->n, sizeof *go);
    size_t n = 0;
    store_failures(b, rs); /* retries that failed as before */
    for (size_t i = 0; i < b->n; i++) {
        if (keep[i]) {
            hold_member(b->es[i], &rs[i]);
            continue;
        }
        es[n] = b->es[i];
        go[n++] = rs[i];
    }
    publish(b->c, es, go, n);
    for (size_t i = 0; i < n; i++)
        set_held(es[i], false);
    free(go);
    free(es);
}

static char *lock_load(hp_entry *e, int64_t until, bool *late);

/* Take the members' load_mu in path order (the lock order). A member
 * whose load is stuck (a request's or an older batch's: a constructor or
 * init that never returns) or abandoned is left out of the batch, which
 * would otherwise wait for it for ever, holding its other members from
 * their requests: it stays out of date, and its requests get the stuck
 * load's refusal. */
static void batch_lock(struct batch *b)
{
    size_t n = 0;
    for (size_t i = 0; i < b->n; i++) {
        hp_entry *e = b->es[i];
        assert(i == 0 || strcmp(b->es[i - 1]->path, e->path) < 0);
        bool late;
        char *why = lock_load(e, 0, &late);
        if (why) {
            hp_log_info("%s: left out of the batch of changes: %s", e->path,
                        why);
            free(why);
            pthread_mutex_lock(&b->c->batch_mu);
            e->claims--;
            pthread_mutex_unlock(&b->c->batch_mu);
            continue;
        }
        b->es[n] = e;
        b->snaps[n++] = b->snaps[i];
    }
    b->n = n;
}

static void batch_run(struct batch *b)
{
    hp_cache *c = b->c;
    struct build_result *rs = hp_xcalloc(b->n, sizeof *rs);
    size_t failed = 0;

    batch_lock(b);
    hp_entry *const *old;
    size_t nold;
    held_set(b->es, b->n, &old, &nold);
    for (size_t i = 0; i < b->n; i++) {
        build_retrying(b->es[i], &rs[i]);
        failed += rs[i].kind == B_ERROR && !same_failure(b->es[i], &rs[i]);
    }
    bool *keep = hp_xcalloc(b->n ? b->n : 1, sizeof *keep);
    if (failed) {
        batch_hold(b, rs);
    } else if (held_still_failing(b, keep)) {
        batch_publish_but(b, rs, keep);
    } else {
        store_failures(b, rs); /* retries that failed as before */
        publish(c, b->es, rs, b->n);
        for (size_t i = 0; i < b->n; i++)
            set_held(b->es[i], false);
        held_recs_drop(b);
    }
    for (size_t i = 0; i < b->n; i++) {
        /* done first: a batch chosen after the claim is dropped must find
         * the entry up to date, or take it for a change of its own. */
        mark_done(c, b->es[i], b->snaps[i]);
        pthread_mutex_lock(&c->batch_mu);
        b->es[i]->claims--;
        pthread_mutex_unlock(&c->batch_mu);
        pthread_mutex_unlock(&b->es[i]->load_mu);
    }
    held_set(old, nold, &old, &nold);
    free(keep);
    free(rs);
    paths_free(b->changed, b->nchanged);
    free(b->snaps);
    free(b->es);
    free(b);
}

void hp_cache_refresh_stale(hp_cache *c)
{
    struct batch *b = batch_choose(c);
    if (b)
        batch_run(b);
}

static void *batch_main(void *arg)
{
    struct batch *b = arg;
    hp_cache *c = b->c;
    batch_run(b);
    pthread_mutex_lock(&c->batch_mu);
    if (--c->nbatches == 0)
        pthread_cond_broadcast(&c->batch_cv);
    pthread_mutex_unlock(&c->batch_mu);
    return NULL;
}

/*
 * The watcher's batch: members chosen now, on the caller's thread (so a
 * batch is exactly what was stale when its settle window closed), built
 * and published on a thread of its own, so a slow compile never holds up
 * the watcher, nor the next window's batch of unrelated files.
 */
void hp_cache_start_batch(hp_cache *c)
{
    struct batch *b = batch_choose(c);
    pthread_t t;
    pthread_attr_t attr;

    if (!b)
        return;
    pthread_mutex_lock(&c->batch_mu);
    c->nbatches++;
    pthread_mutex_unlock(&c->batch_mu);
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int rc = pthread_create(&t, &attr, batch_main, b);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        hp_log_error("cannot start a batch thread (%s): building on the "
                     "watcher",
                     strerror(rc));
        batch_main(b);
    }
}

/* ---- the optimized tier ---------------------------------------------------
 *
 * In dev mode a change is built with the fast tier (tcc) and published at
 * once; this thread then builds the same source with the page compiler and
 * --cflags and publishes that object as a new version of the same source,
 * alone (it is the same code: no batch to keep together). Pinning is
 * unchanged: requests in flight finish on the fast version. The compile
 * runs without the entry's load_mu, at a lower priority (nice is per
 * thread on Linux, and the compiler inherits it), so the next edit's fast
 * build neither waits for it nor competes with it for a core.
 *
 * A result whose entry moved on meanwhile is dropped (basis_verdict): the
 * build notes the fast version and the entry's src_gen when it starts
 * (tier_pin), compiles only the bytes that version was built from
 * (the same src_fid), and publishes only if, under load_mu and then again
 * under e->mu in the swap itself, the fast version is still current and no
 * newer save was seen, built, held back or refused by the compiler since.
 * So it never goes live over a newer save's error (in dev mode that error
 * is the page), nor clears it.
 */

#define HP_TIER_QUIET_S 0.15 /* no edit for this long before optimizing */

void hp_cache_set_tiered(hp_cache *c, bool on)
{
    atomic_store(&c->tiered, on);
}

static void tier_enqueue(hp_cache *c, hp_entry *e)
{
    pthread_mutex_lock(&c->tier_mu);
    c->tier_gen++;
    for (size_t i = 0; i < c->tier_n; i++)
        if (c->tier_q[i] == e)
            goto out;
    if (c->tier_n == c->tier_cap) {
        c->tier_cap = c->tier_cap ? c->tier_cap * 2 : 16;
        c->tier_q = hp_xrealloc(c->tier_q, c->tier_cap * sizeof *c->tier_q);
    }
    c->tier_q[c->tier_n++] = e;
    if (!c->tier_running && !c->tier_quit) {
        if (pthread_create(&c->tier_thread, NULL, tier_main_fwd, c) == 0)
            c->tier_running = true;
        else
            hp_log_error("cannot start the optimized tier's thread");
    }
out:
    pthread_cond_signal(&c->tier_cv);
    pthread_mutex_unlock(&c->tier_mu);
}

/* Pin e's current version as the basis of an optimized build, if it is
 * of the fast tier with no error or deletion over it: the build starts
 * from the identity it will be checked against. A change seen and not
 * built yet does not stop it here: a touch_all that changes nothing
 * leaves the source as it is, and is known only once built (B_SAME);
 * a real change makes the compile read other bytes (dropped then). */
static bool tier_pin(hp_entry *e, struct tier_basis *b)
{
    pthread_mutex_lock(&e->mu);
    b->fast = e->current;
    b->gen = e->src_gen;
    bool ok = b->fast && b->fast->tier == HP_TIER_FAST && !e->error && !e->gone;
    if (ok)
        atomic_fetch_add(&b->fast->refs, 1);
    pthread_mutex_unlock(&e->mu);
    return ok;
}

static void tier_dropped(hp_entry *e, const struct tier_basis *b,
                         const char *why)
{
    hp_log_info("%s: the optimized build of version %llu's source is not "
                "published: %s",
                e->path, (unsigned long long)b->fast->id, why);
}

/* Whether the basis holds now (under e->mu): NULL, or why not. */
static const char *basis_now(hp_entry *e, const struct tier_basis *b)
{
    pthread_mutex_lock(&e->mu);
    const char *why = basis_verdict(e, b);
    pthread_mutex_unlock(&e->mu);
    return why;
}

/* A version of art as the optimized successor of b->fast, with what the
 * server learnt of how the fast one runs (the same code: server.c's
 * promotion to the event loops, or a demotion for blocking, holds); NULL
 * (logged) if it does not load. Takes art's dependencies. */
static hp_version *tier_open(hp_entry *e, const struct tier_basis *b,
                             struct hp_artifact *art)
{
    hp_cache *c = e->cache;
    hp_version *fast = b->fast;
    char *diag = NULL;
    uint64_t id = atomic_fetch_add(&c->next_id, 1);
    hp_version *v = hp_version_open(art->so_path, c->rundir, id, e->path,
                                    fast->state, &diag);
    v = refuse_abandoned(e, v, &diag);
    if (!v) {
        hp_log_error("%s: the optimized tier's build of version %llu's "
                     "source did not load; that fast-tier version stays: %s",
                     e->path, (unsigned long long)fast->id, diag);
        free(diag);
        return NULL;
    }
    v->entry = e;
    v->tier = HP_TIER_OPTIMIZED;
    atomic_store(&v->fast_runs, atomic_load(&fast->fast_runs));
    atomic_store(&v->slow_runs, atomic_load(&fast->slow_runs));
    atomic_store(&v->slow, atomic_load(&fast->slow));
    atomic_store(&v->waits, atomic_load(&fast->waits));
    atomic_store(&v->run_inline, atomic_load(&fast->run_inline));
    atomic_store(&v->run_coro, atomic_load(&fast->run_coro));
    atomic_store(&v->coro_never, atomic_load(&fast->coro_never));
    v->src_fid = art->src_fid;
    v->deps = art->deps;
    v->ndeps = art->ndeps;
    art->deps = NULL;
    art->ndeps = 0;
    atomic_init(&v->refs, 1);
    return v;
}

/* Load art (built from b->fast's source) and publish it, if the entry
 * still holds that source (basis_verdict, checked again by swap_in under
 * e->mu, in the same step as the swap). Takes load_mu, which every other
 * installer of a build result holds too. */
static void tier_publish(hp_entry *e, const struct tier_basis *b,
                         struct hp_artifact *art)
{
    struct build_result r = {.kind = B_NEW, .same_source = true, .basis = *b};

    pthread_mutex_lock(&e->load_mu);
    const char *why = basis_now(e, b);
    if (!why && !deps_unchanged(b->fast))
        why = "a header it includes changed";
    if (why) {
        tier_dropped(e, b, why); /* a newer change is built in its turn */
    } else if ((r.v = tier_open(e, b, art))) {
        publish(e->cache, &e, &r, 1);
        if (r.kind == B_STALE) {
            tier_dropped(e, b, "the module moved on while it loaded");
            discard(e, r.v);
        }
    }
    pthread_mutex_unlock(&e->load_mu);
}

/* An optimized build that failed: the fast version's own source (a
 * failure of this tier alone), or a newer save read meanwhile, which its
 * own build reports (art->src_fid: what was read). */
static void tier_failed(hp_entry *e, const struct tier_basis *b,
                        const struct hp_artifact *art, const char *diag)
{
    if (!hp_fid_eq(&art->src_fid, &b->fast->src_fid)) {
        tier_dropped(e, b,
                     "the file changed before it was read, and the "
                     "newer save did not compile; its own build "
                     "reports why");
        return;
    }
    hp_log_error("%s: the optimized tier failed on the source of version "
                 "%llu, which the fast tier built (that version stays, "
                 "until the next change): %s",
                 e->path, (unsigned long long)b->fast->id, diag);
}

static void tier_one(hp_entry *e)
{
    hp_cache *c = e->cache;
    struct hp_artifact art;
    struct tier_basis b;
    char *diag = NULL;

    if (!tier_pin(e, &b))
        return;
    int rc = hp_compile_tier(c->cc, e->path, HP_TIER_OPTIMIZED, &art, &diag);
    if (rc == 0 && !hp_fid_eq(&art.src_fid, &b.fast->src_fid))
        tier_dropped(e, &b, "the file changed before it was read");
    else if (rc == 0)
        tier_publish(e, &b, &art);
    else if (diag) /* else a header raced the compile: it is rebuilt */
        tier_failed(e, &b, &art, diag);
    hp_artifact_free(&art);
    free(diag);
    hp_version_release(b.fast);
}

static void *tier_main(hp_cache *c)
{
    setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 10);
    pthread_mutex_lock(&c->tier_mu);
    while (!c->tier_quit) {
        if (c->tier_n == 0) {
            pthread_cond_wait(&c->tier_cv, &c->tier_mu);
            continue;
        }
        /* Under a run of edits each fast version lives briefly: wait for
         * a quiet spell (any new publish re-queues and restarts it). */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += (long)(HP_TIER_QUIET_S * 1e9);
        ts.tv_sec += ts.tv_nsec / 1000000000;
        ts.tv_nsec %= 1000000000;
        unsigned before = c->tier_gen;
        pthread_cond_timedwait(&c->tier_cv, &c->tier_mu, &ts);
        if (c->tier_quit || c->tier_gen != before)
            continue;
        hp_entry *e = c->tier_q[0];
        memmove(c->tier_q, c->tier_q + 1, --c->tier_n * sizeof *c->tier_q);
        pthread_mutex_unlock(&c->tier_mu);
        tier_one(e);
        pthread_mutex_lock(&c->tier_mu);
    }
    pthread_mutex_unlock(&c->tier_mu);
    return NULL;
}

static void *tier_main_fwd(void *arg)
{
    return tier_main(arg);
}

static void tier_stop(hp_cache *c)
{
    pthread_mutex_lock(&c->tier_mu);
    c->tier_quit = true;
    bool running = c->tier_running;
    pthread_cond_signal(&c->tier_cv);
    pthread_mutex_unlock(&c->tier_mu);
    if (running)
        pthread_join(c->tier_thread, NULL);
}

/* ---- prefetch --------------------------------------------------------------
 *
 * The watcher publishes a change once the burst has been quiet for the
 * settle window, but a page source it saw written completely (closed, or
 * renamed into place) is worth compiling at once: this thread compiles it
 * with the tier its batch will use, and only warms the compile cache. The
 * cache is keyed by the bytes compiled, so the batch that runs after the
 * window finds the object if the file did not change again (a newer save
 * is a new key, compiled by the batch as before; the prefetch's object is
 * unused), and a batch that asks while the prefetch still compiles waits
 * for it on the key's lock (compile.c) instead of running the compiler a
 * second time. A failed prefetch caches its diagnostic under the same
 * rules as any compile. Nothing is published or loaded here, so batches
 * keep their meaning: what goes live together is still what changed in
 * one window. One thread, so a checkout of many pages keeps at most one
 * compile ahead of the batch's own.
 */

static hp_entry *entry_find(hp_cache *c, const char *path)
{
    hp_entry *e;
    pthread_mutex_lock(&c->mu);
    for (e = c->buckets[hash_path(path) % c->nbuckets]; e; e = e->hnext)
        if (strcmp(e->path, path) == 0)
            break;
    pthread_mutex_unlock(&c->mu);
    return e;
}

static void *prefetch_main(void *arg)
{
    hp_cache *c = arg;
    pthread_mutex_lock(&c->pre_mu);
    while (!c->pre_quit) {
        if (c->pre_n == 0) {
            pthread_cond_wait(&c->pre_cv, &c->pre_mu);
            continue;
        }
        char *path = c->pre_q[0];
        memmove(c->pre_q, c->pre_q + 1, --c->pre_n * sizeof *c->pre_q);
        pthread_mutex_unlock(&c->pre_mu);
        struct hp_artifact art;
        char *diag = NULL;
        enum hp_tier tier =
            atomic_load(&c->tiered) ? HP_TIER_FAST : HP_TIER_OPTIMIZED;
        double t0 = hp_now();
        if (hp_compile_tier(c->cc, path, tier, &art, &diag) == 0) {
            hp_entry *e = art.cache_hit ? NULL : entry_find(c, path);
            if (e) {
                pthread_mutex_lock(&e->mu);
                e->pre_fid = art.src_fid;
                e->pre_seconds = hp_now() - t0;
                pthread_mutex_unlock(&e->mu);
            }
            hp_artifact_free(&art);
        }
        free(diag);
        free(path);
        pthread_mutex_lock(&c->pre_mu);
    }
    pthread_mutex_unlock(&c->pre_mu);
    return NULL;
}

void hp_cache_prefetch(hp_cache *c, const char *path)
{
    size_t len = strlen(path);
    if (len < 3 || strcmp(path + len - 2, ".c") != 0 || !entry_find(c, path))
        return; /* only modules a batch will build */
    pthread_mutex_lock(&c->pre_mu);
    bool queued = false;
    for (size_t i = 0; i < c->pre_n && !queued; i++)
        queued = strcmp(c->pre_q[i], path) == 0;
    if (!queued && !c->pre_quit && c->pre_n < HP_PREFETCH_MAX) {
        c->pre_q[c->pre_n++] = hp_xstrdup(path);
        if (!c->pre_running) {
            if (pthread_create(&c->pre_thread, NULL, prefetch_main, c) == 0)
                c->pre_running = true;
            else
                free(c->pre_q[--c->pre_n]); /* the batch compiles it */
        }
        pthread_cond_signal(&c->pre_cv);
    }
    pthread_mutex_unlock(&c->pre_mu);
}

/* Let the compile in hand finish (compile-timeout at the latest), drop
 * the rest. */
static void prefetch_stop(hp_cache *c)
{
    pthread_mutex_lock(&c->pre_mu);
    c->pre_quit = true;
    bool running = c->pre_running;
    pthread_cond_signal(&c->pre_cv);
    pthread_mutex_unlock(&c->pre_mu);
    if (running)
        pthread_join(c->pre_thread, NULL);
    for (size_t i = 0; i < c->pre_n; i++)
        free(c->pre_q[i]);
    c->pre_n = 0;
}

/* ---- acquiring ------------------------------------------------------------
 */

/* Wait for a batch to build e as new as want, at most HP_BATCH_WAIT_S
 * (then the request builds it itself) or until `until` (hp_now_ns; 0:
 * none): false if `until` came first. */
static bool wait_for_batch(hp_cache *c, hp_entry *e, unsigned want,
                           int64_t until)
{
    int64_t end = hp_now_ns() + (int64_t)(HP_BATCH_WAIT_S * 1e9);
    bool cut = until && until < end;
    if (cut)
        end = until;
    struct timespec ts = {.tv_sec = (time_t)(end / 1000000000),
                          .tv_nsec = (long)(end % 1000000000)};
    pthread_mutex_lock(&c->done_mu);
    while (!reached(atomic_load(&e->done), want) && !atomic_load(&e->abandoned))
        if (pthread_cond_timedwait(&c->done_cv, &c->done_mu, &ts) != 0)
            break;
    bool late = cut && !reached(atomic_load(&e->done), want) &&
                !atomic_load(&e->abandoned);
    pthread_mutex_unlock(&c->done_mu);
    return !late;
}

/* A request builds e itself (a first load, mostly): claimed like a batch
 * member, so a batch chosen meanwhile leaves e to it (unless it changes
 * again) instead of waiting for its load_mu: a slow first compile must not
 * delay the batch of an unrelated change. */
static void claim_for_request(hp_cache *c, hp_entry *e, int delta)
{
    pthread_mutex_lock(&c->batch_mu);
    e->claims += delta;
    if (delta > 0)
        e->claim_snap = atomic_load(&e->want);
    pthread_mutex_unlock(&c->batch_mu);
}

/* The host's reason for giving up on e's build (malloc'd), or NULL. */
static char *abandoned_why(hp_entry *e)
{
    if (!atomic_load(&e->abandoned))
        return NULL;
    pthread_mutex_lock(&e->mu);
    char *why = hp_xstrdup(e->abandon_why ? e->abandon_why : HP_DIAG_INIT_HUNG);
    pthread_mutex_unlock(&e->mu);
    return why;
}

#if defined(__SANITIZE_THREAD__)
#define LOCK_CLOCK CLOCK_REALTIME
#define LOCK_UNTIL pthread_mutex_timedlock
#else
#define LOCK_CLOCK CLOCK_MONOTONIC
#define LOCK_UNTIL(mu, ts) pthread_mutex_clocklock(mu, CLOCK_MONOTONIC, ts)
#endif

/* Lock mu, waiting at most ms milliseconds: true if it is now held.
 * ThreadSanitizer (GCC 12's libtsan) does not intercept
 * pthread_mutex_clocklock: it never sees such a lock taken, so it reports
 * the unlock as one of an unlocked mutex and loses the ordering the lock
 * gives (false races on all load_mu guards). Under it the same wait goes
 * through pthread_mutex_timedlock, which it does intercept (a step of the
 * wall clock can only lengthen one poll there). */
static bool lock_for_ms(pthread_mutex_t *mu, long ms)
{
    struct timespec ts;
    clock_gettime(LOCK_CLOCK, &ts);
    ts.tv_nsec += ms * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return LOCK_UNTIL(mu, &ts) == 0;
}

/* How long (s) a load may run before its waiters leave: the time a
 * worker's watchdog gives it (--handler-timeout, 30 s if 0) and 2 s more,
 * as guard.c's load_gate gives another worker's first load. */
static double stuck_limit(const hp_cache *c)
{
    double t = c->cfg->handler_timeout > 0 ? c->cfg->handler_timeout : 30;
    return t + 2;
}

/* The refusal of a waiter for e whose load_mu holder runs a load that is
 * stuck (past stuck_limit), or NULL. It begins with HP_DIAG_CTOR_REFUSED
 * or HP_DIAG_INIT_REFUSED (a 503 with Retry-After), names the page whose
 * constructor or init never returned, and says what to do. Said once per
 * stuck load in the log. No worker watchdog may be there to end it (the
 * single process has none): nothing else would ever answer the waiter. */
static char *stuck_why(hp_entry *e)
{
    int64_t since = atomic_load(&e->load_since);
    hp_entry *of = atomic_load(&e->load_of);
    double s = since ? (hp_now_ns() - since) / 1e9 : 0;
    if (!of || s <= stuck_limit(e->cache))
        return NULL;
    char page[512];
    bool ctor = hp_loader_dlopen_running(page, sizeof page) > 0 &&
                strcmp(page, of->path) == 0;
    const struct hp_config *cfg = e->cache->cfg;
    const char *todo =
        cfg->workers > 0 ? "the watchdog replaces this worker process"
        : ctor && !cfg->dev
            ? "the server stops (status 70) for its supervisor to restart it"
            : "restart hotpub if it never does";
    char *what =
        ctor ? hp_xstrdup("no page can") : hp_xasprintf("%s cannot", e->path);
    char *why = hp_xasprintf(
        "%s%s has been running for %.0f s in this process, past "
        "--handler-timeout%s: %s be loaded in this process until it "
        "returns; %s",
        ctor ? HP_DIAG_CTOR_REFUSED "page " : HP_DIAG_INIT_REFUSED "of ",
        of->path, s,
        ctor ? ", inside dlopen, which holds the dynamic loader's lock" : "",
        what, todo);
    free(what);
    if (!atomic_exchange(&of->stuck_told, true)) {
        /* dev mode: [info], as dlopen_hung_check's (it may still return) */
        if (cfg->dev)
            hp_log_info("%s: %s", e->path, why);
        else
            hp_log_error("%s: %s", e->path, why);
    }
    return why;
}

/*
 * Take e->load_mu, unless the host gives up on the build that holds it
 * (an init past --handler-timeout that may never return): then NULL is
 * not returned but the reason, and the lock is not held. Polls every
 * HP_LOAD_POLL_MS: waiting on the mutex alone would keep the request
 * until the worker exits. Past `until` (hp_now_ns; 0: none) it gives up
 * too: NULL, *late set, the lock not held.
 */
static char *lock_load(hp_entry *e, int64_t until, bool *late)
{
    *late = false;
    for (;;) {
        char *why = abandoned_why(e);
        if (why)
            return why;
        long ms = HP_LOAD_POLL_MS;
        if (until) {
            int64_t left = until - hp_now_ns();
            if (left <= 0) {
                if (pthread_mutex_trylock(&e->load_mu) == 0)
                    return NULL;
                *late = true;
                return NULL;
            }
            if (left < ms * 1000000L)
                ms = (long)(left / 1000000) + 1;
        }
        if (lock_for_ms(&e->load_mu, ms))
            return NULL;
        if ((why = stuck_why(e)))
            return why;
    }
}

/* The refusal of a dev-mode request for e whose build did not end by the
 * handler's bound (malloc'd): HP_DIAG_BUILDING, a 503 with Retry-After. */
static char *still_building(hp_entry *e, int64_t t0)
{
    return hp_xasprintf(HP_DIAG_BUILDING
                        "%s: its new version was not built after %.1f s "
                        "of waiting, the most --handler-timeout leaves; "
                        "it goes live when its build ends",
                        e->path, (hp_now_ns() - t0) / 1e9);
}

/*
 * How long a request for e, stale, waits for the build that covers its
 * change (docs/reload.md, "When the compile happens"): until the
 * returned time (hp_now_ns), or 0 for no bound. A module without a
 * current version (a first use) waits for its build. In production,
 * *stale says that at the bound the current version answers: the bound
 * is --stale-wait-ms, cut to the handler's (hp_wait_bounded). In dev
 * mode the edit/refresh loop promises the new version: the request waits
 * until the handler's bound (none without --handler-timeout or outside a
 * handler thread) and is then refused (still_building).
 */
static int64_t stale_until(hp_cache *c, hp_entry *e, bool *stale)
{
    pthread_mutex_lock(&e->mu);
    bool has = e->current != NULL;
    pthread_mutex_unlock(&e->mu);
    *stale = false;
    if (!has)
        return 0;
    if (c->cfg->dev)
        return hp_wait_bound();
    *stale = true;
    return hp_wait_bounded(c->cfg->stale_wait_ms, NULL);
}

/* A production request for e, noted at want, gets the current version
 * while the build runs: counted, and said once per module and build. The
 * build waited out covers e's want as it is now (an editor's save can be
 * two events, the second after this request noted want). */
static void serve_stale(hp_entry *e, unsigned want, int64_t t0)
{
    hp_metrics_stale_served();
    unsigned now = atomic_load_explicit(&e->want, memory_order_acquire);
    pthread_mutex_lock(&e->mu);
    bool tell = !(e->stale_on && reached(e->stale_want, want));
    if (tell) {
        e->stale_on = true;
        e->stale_want = reached(now, want) ? now : want;
        e->stale_since = hp_now_ns();
    }
    unsigned long long id = e->current ? e->current->id : 0;
    pthread_mutex_unlock(&e->mu);
    if (tell)
        hp_log_info("%s: serving version %llu while a new version builds "
                    "(a request waited %.2f s for it; --stale-wait-ms %d)",
                    e->path, id, (hp_now_ns() - t0) / 1e9,
                    e->cache->cfg->stale_wait_ms);
}

/* A request noted at want that finds its build waited out by an earlier
 * one (serve_stale) takes the current version at once. */
static bool waited_out(hp_entry *e, unsigned want)
{
    pthread_mutex_lock(&e->mu);
    bool out = e->stale_on && reached(e->stale_want, want) && e->current;
    pthread_mutex_unlock(&e->mu);
    return out;
}

/* The net HP_BATCH_WAIT_S gives a request that waits (a batch that never
 * came), for the requests that no longer wait: e's build of want was
 * waited out that long ago and no batch has e: a request builds it. */
static bool batch_overdue(hp_cache *c, hp_entry *e, unsigned want)
{
    pthread_mutex_lock(&e->mu);
    bool over = e->stale_on && reached(e->stale_want, want) &&
                hp_now_ns() - e->stale_since > (int64_t)(HP_BATCH_WAIT_S * 1e9);
    pthread_mutex_unlock(&e->mu);
    if (!over)
        return false;
    pthread_mutex_lock(&c->batch_mu);
    over = e->claims == 0;
    pthread_mutex_unlock(&c->batch_mu);
    return over;
}

/* Build e here, load_mu held (released on return), unless a build that
 * covers want ended meanwhile. */
static void build_here(hp_cache *c, hp_entry *e, unsigned want)
{
    if (!reached(atomic_load(&e->done), want) || atomic_load(&e->retry)) {
        hp_entry *const *old;
        size_t nold;
        held_set(&e, 1, &old, &nold);
        claim_for_request(c, e, 1);
        refresh_one(e);
        claim_for_request(c, e, -1);
        held_set(old, nold, &old, &nold);
    }
    pthread_mutex_unlock(&e->load_mu);
}

/* Make e at least as new as the file was when this request arrived.
 * NULL, or why the request cannot have it (malloc'd): the host gave up
 * on the init of the build it waited for. */
static char *ensure_fresh(hp_cache *c, hp_entry *e)
{
    unsigned want = atomic_load_explicit(&e->want, memory_order_acquire);
    bool retry = atomic_load(&e->retry);
    if (!retry &&
        reached(atomic_load_explicit(&e->done, memory_order_acquire), want))
        return NULL;
    /* How long this request may wait, and for what at the end of it. */
    int64_t t0 = hp_now_ns(), until = 0;
    bool stale = false, late = false;
    if (!retry) {
        until = stale_until(c, e, &stale);
        if (stale && waited_out(e, want)) {
            if (batch_overdue(c, e, want) &&
                pthread_mutex_trylock(&e->load_mu) == 0) {
                build_here(c, e, want);
                return NULL;
            }
            serve_stale(e, want, t0);
            return NULL;
        }
    }
    if (!retry && atomic_load(&c->batched) && atomic_load(&e->tried))
        late = !wait_for_batch(c, e, want, until);
    if (!retry && reached(atomic_load(&e->done), want))
        return NULL;
    /* First use, no watcher, a batch that never came, or a load another
     * page's constructor kept from being tried: build it here (unless
     * this request's bound came first, or comes while another build of
     * e holds its load_mu). */
    char *why = late ? NULL : lock_load(e, until, &late);
    if (why)
        return why;
    if (late && reached(atomic_load(&e->done), want))
        return NULL;
    if (late && stale) {
        serve_stale(e, want, t0);
        return NULL;
    }
    if (late)
        return still_building(e, t0);
    build_here(c, e, want);
    return NULL;
}

void hp_cache_abandon_load(hp_cache *c, const char *path, const char *why)
{
    hp_entry *e = c && path ? entry_find(c, path) : NULL;
    if (!e)
        return;
    pthread_mutex_lock(&e->mu);
    free(e->abandon_why);
    e->abandon_why = hp_xstrdup(why ? why : HP_DIAG_INIT_HUNG);
    pthread_mutex_unlock(&e->mu);
    atomic_store(&e->abandoned, true);
    pthread_mutex_lock(&c->done_mu); /* wake wait_for_batch */
    pthread_cond_broadcast(&c->done_cv);
    pthread_mutex_unlock(&c->done_mu);
}

/* Pin e's current version under e->mu; record the entry's state. */
static enum hp_acquire pin(hp_entry *e, hp_version **vp, char **err)
{
    pthread_mutex_lock(&e->mu);
    hp_version *v = e->current;
    /* The current version holds a reference of its own. */
    assert(!v || atomic_load_explicit(&v->refs, memory_order_relaxed) > 0);
    if (v)
        atomic_fetch_add_explicit(&v->refs, 1, memory_order_relaxed);
    if (err && e->error && !*err)
        *err = hp_xstrdup(e->error);
    enum hp_acquire r = v ? HP_ACQ_OK : e->gone ? HP_ACQ_GONE : HP_ACQ_ERROR;
    pthread_mutex_unlock(&e->mu);
    *vp = v;
    return r;
}

/* pin(), or, when the build e's request waited for was abandoned (why),
 * that error without a version. */
static enum hp_acquire pin_unless(hp_entry *e, const char *why, hp_version **vp,
                                  char **err)
{
    if (!why)
        return pin(e, vp, err);
    *vp = NULL;
    if (!*err)
        *err = hp_xstrdup(why);
    return HP_ACQ_ERROR;
}

enum hp_acquire hp_cache_acquire(hp_cache *c, const char *path, hp_version **vp,
                                 char **err)
{
    hp_entry *e = entry_get(c, path);
    *err = ensure_fresh(c, e);
    if (*err) {
        *vp = NULL;
        return HP_ACQ_ERROR;
    }
    enum hp_acquire r = pin(e, vp, err);
    if (r == HP_ACQ_ERROR && !*err)
        *err = hp_xstrdup("the module could not be loaded");
    return r;
}

/* The application modules above a page: <dir>/_app.c (else _app.so) for
 * every directory from the root down to the page's own. */
static void compute_chain(hp_cache *c, hp_entry *e, hp_entry **apps,
                          size_t *napps)
{
    size_t rootlen = strlen(c->root);
    char dir[PATH_MAX];
    const char *slash = strrchr(e->path, '/');
    size_t dlen = slash ? (size_t)(slash - e->path) : 0;

    *napps = 0;
    if (e->is_app || dlen < rootlen || dlen >= sizeof dir)
        return;
    for (size_t end = rootlen; end <= dlen && *napps < HP_MAX_APPS;) {
        static const char *const names[] = {"/_app.c", "/_app.so"};
        for (int i = 0; i < 2; i++) {
            struct stat st;
            memcpy(dir, e->path, end);
            snprintf(dir + end, sizeof dir - end, "%s", names[i]);
            if (stat(dir, &st) == 0 && S_ISREG(st.st_mode)) {
                apps[(*napps)++] = entry_get(c, dir);
                break;
            }
        }
        if (end == dlen)
            break;
        const char *next = strchr(e->path + end + 1, '/');
        end = next && (size_t)(next - e->path) <= dlen
                  ? (size_t)(next - e->path)
                  : dlen;
    }
}

static void chain_of(hp_cache *c, hp_entry *e, hp_entry **apps, size_t *napps)
{
    unsigned gen = atomic_load(&c->apps_gen);
    pthread_mutex_lock(&e->mu);
    bool fresh = e->apps_gen == gen;
    if (fresh) {
        memcpy(apps, e->apps, e->napps * sizeof *apps);
        *napps = e->napps;
    }
    pthread_mutex_unlock(&e->mu);
    if (fresh)
        return;
    compute_chain(c, e, apps, napps); /* stats: only after a change */
    pthread_mutex_lock(&e->mu);
    memcpy(e->apps, apps, *napps * sizeof *apps);
    e->napps = *napps;
    e->apps_gen = gen;
    pthread_mutex_unlock(&e->mu);
}

void hp_pinset_release(struct hp_pinset *ps)
{
    hp_version_release(ps->page);
    for (size_t i = 0; i < ps->napps; i++)
        hp_version_release(ps->apps[i]);
    free(ps->err);
    memset(ps, 0, sizeof *ps);
}

static bool is_fresh(hp_entry *e)
{
    return reached(atomic_load_explicit(&e->done, memory_order_acquire),
                   atomic_load_explicit(&e->want, memory_order_acquire)) &&
           !atomic_load_explicit(&e->retry, memory_order_relaxed);
}

enum hp_acquire hp_cache_pin_page(hp_cache *c, const char *path,
                                  struct hp_pinset *ps, bool may_block)
{
    hp_entry *e = entry_get(c, path), *apps[HP_MAX_APPS];
    size_t napps;
    enum hp_acquire r;

    memset(ps, 0, sizeof *ps);
    chain_of(c, e, apps, &napps);
    if (!may_block) {
        for (size_t i = 0; i < napps; i++)
            if (!is_fresh(apps[i]))
                return HP_ACQ_WOULDBLOCK;
        if (!is_fresh(e))
            return HP_ACQ_WOULDBLOCK;
    }
    for (size_t i = 0; i < napps; i++) {
        if ((ps->err = ensure_fresh(c, apps[i]))) {
            ps->err_path = apps[i]->path;
            return HP_ACQ_ERROR; /* nothing pinned: a broken chain */
        }
    }
    /* The page's own init abandoned: its chain is still pinned, so that
     * the host's rescue (a last good version) runs with it. */
    char *page_why = ensure_fresh(c, e);

    /* Pin the whole set between two publishes (a seqlock read). */
    for (;;) {
        unsigned seq = atomic_load_explicit(&c->pub_seq, memory_order_acquire);
        if (seq & 1) {
            sched_yield();
            continue;
        }
        ps->napps = 0;
        r = HP_ACQ_OK;
        for (size_t i = 0; i < napps; i++) {
            hp_version *v;
            char *err = NULL;
            enum hp_acquire ar = pin(apps[i], &v, &err);
            if (err && !ps->err) {
                ps->err = err;
                ps->err_path = apps[i]->path;
            } else {
                free(err);
            }
            if (ar == HP_ACQ_OK)
                ps->apps[ps->napps++] = v;
            else if (ar == HP_ACQ_ERROR)
                r = HP_ACQ_ERROR; /* a broken application breaks its pages */
        }
        char *perr = NULL;
        enum hp_acquire pr = pin_unless(e, page_why, &ps->page, &perr);
        if (perr && !ps->err) {
            ps->err = perr;
            ps->err_path = e->path;
        } else {
            free(perr);
        }
        if (r == HP_ACQ_OK)
            r = pr;
        if (atomic_load_explicit(&c->pub_seq, memory_order_acquire) == seq)
            break;
        hp_pinset_release(ps);
    }
    free(page_why);
    if (r == HP_ACQ_ERROR && !ps->err) {
        ps->err = hp_xstrdup("the module could not be loaded");
        ps->err_path = e->path;
    }
    return r;
}

/* ---- change notices ------------------------------------------------------ */

static bool depends_on(hp_entry *e, const char *path)
{
    bool hit = false;
    pthread_mutex_lock(&e->mu);
    if (e->current)
        for (size_t i = 0; i < e->current->ndeps && !hit; i++)
            hit = strcmp(e->current->deps[i].path, path) == 0;
    /* A broken module may be broken by the header that just changed. */
    if (!hit && e->error) {
        size_t n = strlen(path);
        hit = n > 2 && strcmp(path + n - 2, ".h") == 0;
    }
    pthread_mutex_unlock(&e->mu);
    return hit;
}

static void touch(hp_entry *e, bool dep)
{
    if (dep) { /* the source did not change, so its stored error would match */
        atomic_fetch_add(&e->dep_touches, 1);
        atomic_store(&e->err_fid_valid, false);
    }
    atomic_fetch_add_explicit(&e->want, 1, memory_order_acq_rel);
}

/* Note path as changed in the window the next batch closes. */
static void window_add(hp_cache *c, const char *path)
{
    pthread_mutex_lock(&c->batch_mu);
    bool dup = false;
    for (size_t i = c->nwin; i-- > 0 && !dup && c->nwin - i <= 64;)
        dup = strcmp(c->win[i], path) == 0; /* an editor's burst of events */
    if (!dup && c->nwin == HP_WINDOW_MAX) {
        /* Static files edited for hours without a batch, or a huge
         * checkout: "everything" is the safe side of the record. */
        paths_free(c->win, c->nwin);
        c->win = NULL;
        c->nwin = c->win_cap = 0;
        c->win_all = true;
    } else if (!dup) {
        if (c->nwin == c->win_cap) {
            c->win_cap = c->win_cap ? c->win_cap * 2 : 16;
            c->win = hp_xrealloc(c->win, c->win_cap * sizeof *c->win);
        }
        c->win[c->nwin++] = hp_xstrdup(path);
    }
    pthread_mutex_unlock(&c->batch_mu);
}

int hp_cache_touch(hp_cache *c, const char *path)
{
    size_t n;
    int hits = 0;
    /* Also a file no module uses yet: a new page saved with a broken one
     * must wait with it when it is first requested (saved_with_failure). */
    window_add(c, path);
    hp_entry **all = entries_snapshot(c, &n);
    for (size_t i = 0; i < n; i++) {
        bool self = strcmp(all[i]->path, path) == 0;
        bool dep = !self && depends_on(all[i], path);
        if (self || dep) {
            touch(all[i], dep);
            hits++;
        }
    }
    free(all);
    return hits;
}

void hp_cache_apps_changed(hp_cache *c)
{
    atomic_fetch_add(&c->apps_gen, 1);
}

void hp_cache_touch_all(hp_cache *c)
{
    size_t n;
    hp_entry **all = entries_snapshot(c, &n);
    pthread_mutex_lock(&c->batch_mu);
    c->win_all = true; /* anything may have changed */
    pthread_mutex_unlock(&c->batch_mu);
    for (size_t i = 0; i < n; i++)
        touch(all[i], true);
    free(all);
}

int hp_cache_revalidate(hp_cache *c)
{
    size_t n;
    int changed = 0;
    hp_entry **all = entries_snapshot(c, &n);
    for (size_t i = 0; i < n; i++) {
        hp_entry *e = all[i];
        struct hp_fid f;
        bool moved;
        /* Being built: skip it this time. The build reads the file as it
         * is now, and the next pass compares with what it published; the
         * watcher's thread must not wait for a compile. */
        if (pthread_mutex_trylock(&e->load_mu) != 0)
            continue;
        hp_version *v = current_of(e);
        int st = hp_fid_stat(e->path, &f);
        if (v)
            moved = st < 0 || !hp_fid_eq(&f, &v->src_fid) || !deps_unchanged(v);
        else if (atomic_load(&e->err_fid_valid))
            moved = st < 0 || !hp_fid_eq(&f, &e->err_fid);
        else
            moved = st == 0 || !e->gone;
        pthread_mutex_unlock(&e->load_mu);
        if (moved) {
            window_add(c, e->path);
            touch(e, true);
            changed++;
        }
    }
    free(all);
    if (changed)
        hp_cache_apps_changed(c);
    return changed;
}

/* ---- status ----------------------------------------------------------------
 */

static void version_json(struct hp_buf *b, hp_version *v, long inflight)
{
    hp_buf_printf(b, "{\"id\":%llu,\"inflight\":%ld,\"object\":",
                  (unsigned long long)v->id, inflight);
    hp_buf_json(b, v->so_path);
    hp_buf_printf(b, ",\"loaded_at\":%.3f,\"state\":%s,\"tier\":\"%s\"}",
                  v->loaded_at, v->state ? "true" : "false",
                  v->tier == HP_TIER_FAST ? "fast" : "optimized");
}

void hp_cache_status_json(hp_cache *c, struct hp_buf *b,
                          void (*member)(const char *path, struct hp_buf *b))
{
    size_t n;
    hp_entry **all = entries_snapshot(c, &n);

    qsort(all, n, sizeof *all, by_path);
    hp_buf_puts(b, "[");
    for (size_t i = 0; i < n; i++) {
        hp_entry *e = all[i];
        hp_buf_puts(b, i ? ",\n{\"path\":" : "\n{\"path\":");
        hp_buf_json(b, e->path);
        hp_buf_printf(b, ",\"kind\":\"%s\"", e->is_app ? "app" : "page");
        pthread_mutex_lock(&e->mu);
        hp_buf_puts(b, ",\"current\":");
        if (e->current)
            version_json(b, e->current, atomic_load(&e->current->refs) - 1);
        else
            hp_buf_puts(b, "null");
        hp_buf_puts(b, ",\"retired\":[");
        for (hp_version *v = e->retired; v; v = v->next_retired) {
            version_json(b, v, atomic_load(&v->refs));
            if (v->next_retired)
                hp_buf_puts(b, ",");
        }
        hp_buf_puts(b, "],\"error\":");
        hp_buf_json(b, e->error);
        hp_buf_printf(b, ",\"gone\":%s,\"builds\":%lu",
                      e->gone ? "true" : "false", atomic_load(&e->builds));
        pthread_mutex_unlock(&e->mu);
        pthread_mutex_lock(&c->batch_mu);
        bool building = e->claims > 0;
        pthread_mutex_unlock(&c->batch_mu);
        hp_buf_printf(b, ",\"stale\":%s,\"held\":%s,\"building\":%s",
                      out_of_date(e) ? "true" : "false",
                      atomic_load(&e->held) ? "true" : "false",
                      building ? "true" : "false");
        if (member)
            member(e->path, b);
        hp_buf_puts(b, "}");
    }
    hp_buf_puts(b, "]");
    free(all);
}

void hp_cache_each(hp_cache *c,
                   void (*fn)(const struct hp_module_info *m, void *arg),
                   void *arg)
{
    size_t n;
    hp_entry **all = entries_snapshot(c, &n);
    qsort(all, n, sizeof *all, by_path);
    for (size_t i = 0; i < n; i++) {
        hp_entry *e = all[i];
        struct hp_module_info m = {.path = e->path,
                                   .builds = atomic_load(&e->builds)};
        pthread_mutex_lock(&e->mu);
        m.error = e->error;
        if (e->current) {
            m.version = (unsigned long long)e->current->id;
            m.inflight = (long)atomic_load(&e->current->refs) - 1;
        }
        for (hp_version *v = e->retired; v; v = v->next_retired) {
            m.retired++;
            m.retired_inflight += (long)atomic_load(&v->refs);
        }
        fn(&m, arg);
        pthread_mutex_unlock(&e->mu);
    }
    free(all);
}
