/*
 * cache.c - the module cache: one entry per canonical page path, each entry
 * a chain of immutable, reference-counted versions.
 *
 * Owns: entries, versions, their reference counts, the two levels of
 * locking, publishing a new version and retiring the old one.
 * May not touch: HTTP, URL mapping, inotify. It learns of changes only
 * through hp_cache_touch(), and runs the compiler and loader through
 * compile.c and loader.c.
 *
 * Locking, from the outside in:
 *   cache->mu   held only to find or insert an entry (a hash lookup), so no
 *               path ever gets two entries; never held across a syscall.
 *   e->load_mu  held while (re)loading one module: stat, compile, dlopen.
 *               One module loads once at a time; other modules load
 *               concurrently. Requests wait on it only when the entry is
 *               known to be out of date.
 *   e->mu       brief: reading or swapping e->current, e->error, the
 *               retired list. Pinning a version is a lock and an increment.
 *
 * Staleness is two counters: the watcher bumps e->want when it sees a
 * change; a reload stores the value of want it started from in e->done. A
 * request takes the slow path only when they differ, so the steady state
 * makes no syscall, and an event that arrives during a compile is never
 * lost (want moves on, done does not catch up).
 */
#include "hp.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define HP_RELOAD_TRIES 5

struct hp_entry {
    char *path;
    hp_cache *cache;
    pthread_mutex_t mu;
    pthread_mutex_t load_mu;
    atomic_uint want, done;
    /* guarded by mu */
    hp_version *current;
    hp_version *retired;
    char *error;
    bool gone;
    /* guarded by load_mu */
    struct hp_fid err_fid;
    atomic_bool err_fid_valid; /* cleared by the watcher without load_mu */
    unsigned long loads;
    hp_entry *hnext; /* guarded by cache->mu */
};

struct hp_cache {
    pthread_mutex_t mu;
    hp_entry **buckets;
    size_t nbuckets, count;
    const struct hp_config *cfg;
    struct hp_compiler *cc;
    char *rundir;
    atomic_uint_fast64_t next_id;
};

static size_t hash_path(const char *s)
{
    size_t h = 5381;
    while (*s)
        h = h * 33 ^ (unsigned char)*s++;
    return h;
}

hp_cache *hp_cache_new(const struct hp_config *cfg, struct hp_compiler *cc)
{
    hp_cache *c = hp_xcalloc(1, sizeof *c);
    pthread_mutex_init(&c->mu, NULL);
    c->nbuckets = 256;
    c->buckets = hp_xcalloc(c->nbuckets, sizeof *c->buckets);
    c->cfg = cfg;
    c->cc = cc;
    c->rundir = hp_rundir_create(cfg->cache_dir);
    if (!c->rundir) {
        free(c->buckets);
        free(c);
        return NULL;
    }
    atomic_init(&c->next_id, 1);
    return c;
}

static void version_unload(hp_version *v)
{
    hp_unload(v->dl, v->so_path);
    free(v->so_path);
    for (size_t i = 0; i < v->ndeps; i++)
        free(v->deps[i].path);
    free(v->deps);
    free(v);
}

void hp_cache_free(hp_cache *c)
{
    if (!c)
        return;
    for (size_t b = 0; b < c->nbuckets; b++) {
        hp_entry *e = c->buckets[b];
        while (e) {
            hp_entry *next = e->hnext;
            /* Shutdown: requests are over; whatever is left is unloaded. */
            if (e->current)
                version_unload(e->current);
            for (hp_version *v = e->retired, *n; v; v = n) {
                n = v->next_retired;
                version_unload(v);
            }
            pthread_mutex_destroy(&e->mu);
            pthread_mutex_destroy(&e->load_mu);
            free(e->error);
            free(e->path);
            free(e);
            e = next;
        }
    }
    hp_rundir_remove(c->rundir);
    free(c->rundir);
    free(c->buckets);
    pthread_mutex_destroy(&c->mu);
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
    pthread_mutex_init(&e->mu, NULL);
    pthread_mutex_init(&e->load_mu, NULL);
    atomic_init(&e->want, 1); /* differs from done: load on first use */
    atomic_init(&e->done, 0);
    if (c->count + 1 > c->nbuckets * 2)
        grow(c);
    e->hnext = c->buckets[h % c->nbuckets];
    c->buckets[h % c->nbuckets] = e;
    c->count++;
out:
    pthread_mutex_unlock(&c->mu);
    return e;
}

/* Collect every entry under the cache lock (for walks that then lock each
 * entry without holding the cache lock). */
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

void hp_version_release(hp_version *v)
{
    if (!v || atomic_fetch_sub_explicit(&v->refs, 1, memory_order_acq_rel) != 1)
        return;
    /* Last user of a retired version: take it off the list and unload.
     * (A current version always holds a reference of its own.) */
    hp_entry *e = v->entry;
    pthread_mutex_lock(&e->mu);
    for (hp_version **p = &e->retired; *p; p = &(*p)->next_retired) {
        if (*p == v) {
            *p = v->next_retired;
            break;
        }
    }
    pthread_mutex_unlock(&e->mu);
    version_unload(v);
}

void *hp_version_sym(hp_version *v, const char *name)
{
    return dlsym(v->dl, name);
}

/* Swap in a new current version (or none), retiring the old one. */
static void publish(hp_entry *e, hp_version *v, bool gone)
{
    pthread_mutex_lock(&e->mu);
    hp_version *old = e->current;
    e->current = v;
    e->gone = gone;
    free(e->error);
    e->error = NULL;
    if (old) {
        old->next_retired = e->retired;
        e->retired = old;
    }
    pthread_mutex_unlock(&e->mu);
    if (old)
        hp_version_release(old); /* drop the "current" reference */
}

static void set_error(hp_entry *e, char *diag)
{
    pthread_mutex_lock(&e->mu);
    free(e->error);
    e->error = diag;
    e->gone = false;
    pthread_mutex_unlock(&e->mu);
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

static hp_version *current_of(hp_entry *e)
{
    pthread_mutex_lock(&e->mu);
    hp_version *v = e->current;
    pthread_mutex_unlock(&e->mu);
    return v; /* only compared or read under load_mu, which owns swaps */
}

/*
 * Build a new version from the file as it is now. Returns 1 when a new
 * version was published, 0 when nothing changed or an error was stored,
 * and -1 when the file changed under the compiler (the caller retries).
 */
static int reload_once(hp_entry *e)
{
    hp_cache *c = e->cache;
    struct hp_fid before, after;
    struct hp_artifact art;
    char *diag = NULL;
    hp_version *cur = current_of(e);

    if (hp_fid_stat(e->path, &before) < 0) {
        if (errno == ENOENT || errno == ENOTDIR) {
            if (cur || !e->gone)
                publish(e, NULL, true);
            return 0;
        }
        set_error(e, hp_xasprintf("%s: %s", e->path, strerror(errno)));
        return 0;
    }
    if (cur && hp_fid_eq(&before, &cur->src_fid) && deps_unchanged(cur))
        return 0;
    if (e->err_fid_valid && hp_fid_eq(&before, &e->err_fid))
        return 0; /* the same broken file: keep the error, do not rebuild */

    e->loads++;
    int rc = hp_compile(c->cc, e->path, &art, &diag);
    if (hp_fid_stat(e->path, &after) < 0 || !hp_fid_eq(&before, &after)) {
        /* Written while we compiled: what we built may be half a file. */
        free(diag);
        if (rc == 0)
            hp_artifact_free(&art);
        return -1;
    }
    if (rc < 0) {
        hp_log_error("%s: compile failed:\n%s", e->path, diag);
        e->err_fid = before;
        e->err_fid_valid = true;
        set_error(e, diag);
        return 0;
    }

    hp_version *v = hp_xcalloc(1, sizeof *v);
    v->id = atomic_fetch_add(&c->next_id, 1);
    v->entry = e;
    v->src_fid = before;
    if (hp_load(art.so_path, c->rundir, v->id, &v->dl, &v->so_path, &diag) <
        0) {
        hp_log_error("%s: %s", e->path, diag);
        e->err_fid = before;
        e->err_fid_valid = true;
        set_error(e, diag);
        hp_artifact_free(&art);
        free(v);
        return 0;
    }
    v->deps = art.deps;
    v->ndeps = art.ndeps;
    art.deps = NULL;
    art.ndeps = 0;
    for (size_t i = 0; i < v->ndeps; i++)
        hp_fid_stat(v->deps[i].path, &v->deps[i].fid);
    hp_artifact_free(&art);
    v->loaded_at = hp_now();
    atomic_init(&v->refs, 1);
    e->err_fid_valid = false;
    if (cur) /* log before publishing: cur may be unloaded right after */
        hp_log_info("%s: version %llu replaces %llu", e->path,
                    (unsigned long long)v->id, (unsigned long long)cur->id);
    /* Fully loaded before anyone can see it. */
    publish(e, v, false);
    return 1;
}

/* Called with e->load_mu held. */
static void refresh(hp_entry *e)
{
    unsigned snap = atomic_load(&e->want);
    for (int i = 0; i < HP_RELOAD_TRIES; i++) {
        if (reload_once(e) >= 0)
            break;
        usleep(20000 * (i + 1)); /* let the writer finish */
    }
    atomic_store(&e->done, snap);
}

static bool out_of_date(hp_entry *e)
{
    return atomic_load_explicit(&e->want, memory_order_acquire) !=
           atomic_load_explicit(&e->done, memory_order_acquire);
}

enum hp_acquire hp_cache_acquire(hp_cache *c, const char *path,
                                 hp_version **vp, char **err)
{
    hp_entry *e = entry_get(c, path);
    enum hp_acquire r;

    if (out_of_date(e)) {
        pthread_mutex_lock(&e->load_mu);
        if (out_of_date(e))
            refresh(e);
        pthread_mutex_unlock(&e->load_mu);
    }
    pthread_mutex_lock(&e->mu);
    hp_version *v = e->current;
    if (v)
        atomic_fetch_add_explicit(&v->refs, 1, memory_order_relaxed);
    *err = e->error ? hp_xstrdup(e->error) : NULL;
    r = v ? HP_ACQ_OK : e->gone ? HP_ACQ_GONE : HP_ACQ_ERROR;
    pthread_mutex_unlock(&e->mu);
    if (r == HP_ACQ_ERROR && !*err)
        *err = hp_xstrdup("the page could not be loaded");
    *vp = v;
    return r;
}

static bool depends_on(hp_entry *e, const char *path)
{
    bool hit = false;
    pthread_mutex_lock(&e->mu);
    if (e->current)
        for (size_t i = 0; i < e->current->ndeps && !hit; i++)
            hit = strcmp(e->current->deps[i].path, path) == 0;
    /* A broken page may be broken by the header that just changed. */
    if (!hit && e->error) {
        size_t n = strlen(path);
        hit = n > 2 && strcmp(path + n - 2, ".h") == 0;
    }
    pthread_mutex_unlock(&e->mu);
    return hit;
}

int hp_cache_touch(hp_cache *c, const char *path)
{
    size_t n;
    int hits = 0;
    hp_entry **all = entries_snapshot(c, &n);
    for (size_t i = 0; i < n; i++) {
        hp_entry *e = all[i];
        bool dep = strcmp(e->path, path) != 0 && depends_on(e, path);
        if (strcmp(e->path, path) == 0 || dep) {
            if (dep) {
                /* The source did not change, so the stored error's file
                 * identity would wrongly match: force a rebuild. */
                atomic_store(&e->err_fid_valid, false);
            }
            atomic_fetch_add_explicit(&e->want, 1, memory_order_release);
            hits++;
        }
    }
    free(all);
    return hits;
}

void hp_cache_touch_all(hp_cache *c)
{
    size_t n;
    hp_entry **all = entries_snapshot(c, &n);
    for (size_t i = 0; i < n; i++)
        atomic_fetch_add_explicit(&all[i]->want, 1, memory_order_release);
    free(all);
}

void hp_cache_refresh_stale(hp_cache *c)
{
    size_t n;
    hp_entry **all = entries_snapshot(c, &n);
    for (size_t i = 0; i < n; i++) {
        hp_entry *e = all[i];
        if (!out_of_date(e))
            continue;
        pthread_mutex_lock(&e->load_mu);
        if (out_of_date(e))
            refresh(e);
        pthread_mutex_unlock(&e->load_mu);
    }
    free(all);
}

static void version_json(struct hp_buf *b, hp_version *v, long inflight)
{
    hp_buf_printf(b, "{\"id\":%llu,\"inflight\":%ld,\"object\":",
                  (unsigned long long)v->id, inflight);
    hp_buf_json(b, v->so_path);
    hp_buf_printf(b, ",\"loaded_at\":%.3f}", v->loaded_at);
}

void hp_cache_status_json(hp_cache *c, struct hp_buf *b)
{
    size_t n;
    hp_entry **all = entries_snapshot(c, &n);

    hp_buf_puts(b, "[");
    for (size_t i = 0; i < n; i++) {
        hp_entry *e = all[i];
        hp_buf_puts(b, i ? ",\n{\"path\":" : "\n{\"path\":");
        hp_buf_json(b, e->path);
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
        hp_buf_printf(b, ",\"gone\":%s", e->gone ? "true" : "false");
        pthread_mutex_unlock(&e->mu);
        hp_buf_printf(b, ",\"stale\":%s}", out_of_date(e) ? "true" : "false");
    }
    hp_buf_puts(b, "]");
    free(all);
}
