/*
 * tplcache.c - template files: the cache of parsed templates, reloading,
 * per-request pinning, and hp_render.
 *
 * Owns: where a template name points (relative to the calling module or
 * the including template, never outside the document root, never a file
 * that is not a template: template.c's hp_tpl_resolve and
 * hp_tpl_is_file_name, applied to the name and to a symlink's target), the
 * table of
 * parsed templates (path -> current and previous version), when a version
 * is stale (the watcher's completed writes, grouped by its settle window;
 * file identity when there is no watcher), the set of versions a request
 * has pinned, and how a template failure reaches the response (500, shown
 * in development mode, logged once per version).
 * May not touch: parsing or rendering (template.c), the module cache,
 * inotify (watch.c calls hp_tplcache_touch / _publish), sending.
 *
 * Consistency: a request pins each template at its first use, so it sees
 * one version of it for its whole life. Files the watcher saw change in
 * one settle window become stale together, at one generation G; a request
 * whose first render came before G keeps getting the versions from before
 * G (the previous version is kept for it), so a request never mixes a new
 * layout with an old partial saved with it. Only completed writes count
 * (the watcher does not listen to IN_MODIFY), so a half-written file is
 * never parsed, except by the very first load of a template.
 */
#include "devloop.h"
#include "request.h"
#include "template.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BUCKETS 1024            /* power of two */
#define MAX_TPL_BYTES (8 << 20) /* a larger template file is an error */

struct tver {
    atomic_long refs;
    struct hp_tpl *tpl; /* NULL when missing or broken            */
    char *error;        /* the diagnostic when broken or missing  */
    struct hp_fid fid;  /* of the file as read                    */
    bool absent;        /* no such file: a partial renders nothing */
    uint64_t from_gen;  /* valid for requests that began since    */
    atomic_bool logged;
    atomic_size_t out_len; /* bytes its last render wrote: reserved up
                              front, so the output grows at most once */
};

struct tentry {
    struct tentry *next;
    char *path;
    uint64_t hash;
    struct tver *cur, *prev;
    uint64_t stale_gen; /* 0, or the generation that made it stale */
    bool pending;       /* the watcher saw a change; not yet published */
};

struct hp_tpl_pins {
    uint64_t gen0; /* the generation at the request's first render */
    size_t n, cap;
    struct tver *broken; /* a broken partial this render reached, or NULL */
    struct pin {
        const struct hp_tpl *from; /* partial memo: (from, name pointer) */
        const char *name;
        struct tentry *e;
        struct tver *v;
    } * a;
};

static struct {
    pthread_mutex_t mu;
    bool started, dev, watched;
    char *root; /* as configured, no trailing '/' */
    uint64_t gen;
    struct tentry *tab[BUCKETS];
} T = {.mu = PTHREAD_MUTEX_INITIALIZER};

void hp_tplcache_start(const char *root, bool dev, bool watched)
{
    pthread_mutex_lock(&T.mu);
    free(T.root);
    T.root = hp_xstrdup(root);
    size_t n = strlen(T.root);
    while (n > 1 && T.root[n - 1] == '/')
        T.root[--n] = '\0';
    T.dev = dev;
    T.watched = watched;
    T.started = true;
    T.gen = 1;
    pthread_mutex_unlock(&T.mu);
}

static void ver_unref(struct tver *v)
{
    if (v && atomic_fetch_sub(&v->refs, 1) == 1) {
        hp_tpl_free(v->tpl);
        free(v->error);
        free(v);
    }
}

/* Requests still running keep their pinned versions alive (refs). */
void hp_tplcache_stop(void)
{
    pthread_mutex_lock(&T.mu);
    for (size_t i = 0; i < BUCKETS; i++) {
        while (T.tab[i]) {
            struct tentry *e = T.tab[i];
            T.tab[i] = e->next;
            ver_unref(e->cur);
            ver_unref(e->prev);
            free(e->path);
            free(e);
        }
    }
    free(T.root);
    T.root = NULL;
    T.started = false;
    pthread_mutex_unlock(&T.mu);
}

static uint64_t hash_str(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
    return h;
}

static struct tentry *find(const char *path, uint64_t h)
{
    for (struct tentry *e = T.tab[h & (BUCKETS - 1)]; e; e = e->next)
        if (e->hash == h && strcmp(e->path, path) == 0)
            return e;
    return NULL;
}

/* ---- what the watcher says ---------------------------------------------- */

/* A file changed (a completed write, a rename, a delete): 1 if it is a
 * template we hold. It goes stale at the next hp_tplcache_publish. */
int hp_tplcache_touch(const char *path)
{
    pthread_mutex_lock(&T.mu);
    struct tentry *e = T.started ? find(path, hash_str(path)) : NULL;
    if (e)
        e->pending = true;
    pthread_mutex_unlock(&T.mu);
    return e != NULL;
}

void hp_tplcache_touch_all(void)
{
    pthread_mutex_lock(&T.mu);
    for (size_t i = 0; i < BUCKETS; i++)
        for (struct tentry *e = T.tab[i]; e; e = e->next)
            e->pending = true;
    pthread_mutex_unlock(&T.mu);
}

static struct tver *acquire(const char *path, uint64_t gen0,
                            struct tentry **ep);

/* The settle window is over: everything touched in it goes stale at one
 * new generation, and is parsed again here, on the watcher's thread, so
 * requests find it ready (no parsing on the request path). */
void hp_tplcache_publish(void)
{
    char **paths = NULL;
    size_t n = 0;
    uint64_t gen;

    pthread_mutex_lock(&T.mu);
    for (size_t i = 0; i < BUCKETS; i++) {
        for (struct tentry *e = T.tab[i]; e; e = e->next) {
            if (!e->pending)
                continue;
            if (n == 0)
                T.gen++;
            e->pending = false;
            e->stale_gen = T.gen;
            paths = hp_xrealloc(paths, (n + 1) * sizeof *paths);
            paths[n++] = hp_xstrdup(e->path);
        }
    }
    gen = T.gen;
    pthread_mutex_unlock(&T.mu);
    for (size_t i = 0; i < n; i++) {
        struct tver *v = acquire(paths[i], gen, NULL);
        /* Dev mode: the browsers that rendered it reload, or show why not. */
        hp_devloop_changed(paths[i], v && !v->tpl ? v->error : NULL);
        ver_unref(v);
        free(paths[i]);
    }
    free(paths);
}

/* --revalidate and the no-inotify fallback: compare file identities. */
int hp_tplcache_revalidate(void)
{
    int changed = 0;
    pthread_mutex_lock(&T.mu);
    for (size_t i = 0; i < BUCKETS; i++) {
        for (struct tentry *e = T.tab[i]; e; e = e->next) {
            struct hp_fid f;
            bool ok = hp_fid_stat(e->path, &f) == 0;
            bool was = e->cur && e->cur->fid.ino != 0;
            if (ok != was || (ok && !hp_fid_eq(&f, &e->cur->fid))) {
                e->pending = true;
                changed++;
            }
        }
    }
    pthread_mutex_unlock(&T.mu);
    if (changed)
        hp_tplcache_publish();
    return changed;
}

/* ---- loading ------------------------------------------------------------- */

static void fid_of(const struct stat *st, struct hp_fid *f)
{
    f->dev = st->st_dev;
    f->ino = st->st_ino;
    f->size = st->st_size;
    f->mtime_ns =
        (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
    f->ctime_ns =
        (int64_t)st->st_ctim.tv_sec * 1000000000 + st->st_ctim.tv_nsec;
}

/* The whole file, read while its identity held still (a rename over it
 * during the read is retried). NULL with *why set. */
static char *read_file(const char *path, size_t *len, struct hp_fid *fid,
                       char **why)
{
    for (int attempt = 0; attempt < 3; attempt++) {
        struct stat st, st2;
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
            st.st_size > MAX_TPL_BYTES) {
            *why = hp_xasprintf("%s: %s", path,
                                fd < 0                ? strerror(errno)
                                : S_ISREG(st.st_mode) ? "larger than 8 MiB"
                                                      : "not a regular file");
            if (fd >= 0)
                close(fd);
            return NULL;
        }
        char *buf = hp_xmalloc((size_t)st.st_size + 1);
        size_t n = 0;
        ssize_t r = 1;
        while (n < (size_t)st.st_size &&
               (r = read(fd, buf + n, (size_t)st.st_size - n)) > 0)
            n += (size_t)r;
        bool stable = r >= 0 && fstat(fd, &st2) == 0 &&
                      st2.st_size == st.st_size &&
                      st2.st_mtim.tv_nsec == st.st_mtim.tv_nsec &&
                      st2.st_mtim.tv_sec == st.st_mtim.tv_sec;
        close(fd);
        struct stat now;
        if (stable && stat(path, &now) == 0 && now.st_ino == st.st_ino) {
            fid_of(&st, fid);
            *len = n;
            return buf;
        }
        free(buf);
    }
    *why = hp_xasprintf("%s: kept changing while being read", path);
    return NULL;
}

/* A new version of path: parsed, missing, or broken (error set). */
static struct tver *load(const char *path, uint64_t from_gen)
{
    struct tver *v = hp_xcalloc(1, sizeof *v);
    char canon[PATH_MAX], croot[PATH_MAX];
    atomic_init(&v->refs, 1);
    v->from_gen = from_gen;
    if (realpath(path, canon) == NULL) {
        v->absent = errno == ENOENT;
        v->error = errno == ENOENT
                       ? hp_xasprintf("%s: no such template", path)
                       : hp_xasprintf("%s: %s", path, strerror(errno));
        return v;
    }
    /* A symlink may rename, never escape (as for pages, resolve.c). */
    size_t rl = realpath(T.root, croot) ? strlen(croot) : 0;
    if (!rl || strncmp(canon, croot, rl) != 0 || (canon[rl] != '/' && rl > 1)) {
        v->error = hp_xasprintf("%s: outside the document root", path);
        return v;
    }
    /* Nor may it rename a page's source (x.tpl -> items.c) into one. */
    if (!hp_tpl_is_file_name(canon)) {
        v->error = hp_xasprintf("%s: leads to %s, which is not a template "
                                "(only " HP_TPL_EXT " files are)",
                                path, canon);
        return v;
    }
    size_t len = 0;
    char *src = read_file(path, &len, &v->fid, &v->error);
    if (src)
        v->tpl = hp_tpl_parse(src, len, path, &v->error);
    free(src);
    return v;
}

/* Only a file that does not exist is missing (rendered as nothing); one
 * refused (a symlink out of the root) or unreadable is an error. */
static bool missing(const struct tver *v)
{
    return !v->tpl && v->absent;
}

/* Which version a request that began rendering at gen0 uses, or NULL:
 * load a new one. Under T.mu. */
static struct tver *pick(struct tentry *e, uint64_t gen0,
                         const struct hp_fid *now)
{
    if (!e->cur)
        return NULL;
    if (!T.watched) /* no watcher (hotpub check, tests): file identity */
        return (now ? hp_fid_eq(now, &e->cur->fid) : missing(e->cur)) ? e->cur
                                                                      : NULL;
    if (e->stale_gen)
        return gen0 >= e->stale_gen ? NULL : e->cur;
    return e->cur->from_gen <= gen0 || !e->prev ? e->cur : e->prev;
}

/* A referenced version of path for a request that began at gen0; *ep (if
 * ep) its entry, which lives as long as the cache. */
static struct tver *acquire(const char *path, uint64_t gen0, struct tentry **ep)
{
    struct hp_fid now;
    bool have = !T.watched && hp_fid_stat(path, &now) == 0;
    uint64_t h = hash_str(path);

    pthread_mutex_lock(&T.mu);
    struct tentry *e = find(path, h);
    if (!e) {
        e = hp_xcalloc(1, sizeof *e);
        e->path = hp_xstrdup(path);
        e->hash = h;
        e->next = T.tab[h & (BUCKETS - 1)];
        T.tab[h & (BUCKETS - 1)] = e;
    }
    struct tver *v = pick(e, gen0, have ? &now : NULL);
    while (!v) {
        /* Read and parse outside the lock; a racing loader may win. */
        struct tver *seen = e->cur;
        uint64_t stale = e->stale_gen;
        pthread_mutex_unlock(&T.mu);
        struct tver *nv = load(path, seen ? stale : 0);
        pthread_mutex_lock(&T.mu);
        if (e->cur == seen) {
            ver_unref(e->prev);
            e->prev = e->cur;
            e->cur = nv;
            if (e->stale_gen == stale)
                e->stale_gen = 0;
            v = nv;
        } else {
            ver_unref(nv);
            v = e->cur;
        }
    }
    atomic_fetch_add(&v->refs, 1);
    pthread_mutex_unlock(&T.mu);
    if (ep)
        *ep = e;
    return v;
}

/* ---- names ----------------------------------------------------------------
 */

/* Where a name points: template.c's hp_tpl_resolve under our root. */
static char *resolve(const char *base, const char *name, const char *suffix)
{
    return hp_tpl_resolve(T.root, base, name, suffix);
}

/* ---- requests -------------------------------------------------------------
 */

/* The directory names are resolved against: the calling module's, else the
 * page's (hp_render's templates, hp_send_file's relative paths). */
static const char *req_base(const hp_req *req)
{
    return req->current_module ? req->current_module->path : req->target.path;
}

char *hp_req_page_relative(const hp_req *req, const char *name)
{
    char canon[PATH_MAX], croot[PATH_MAX];
    if (!T.started) {
        errno = ENOSYS;
        return NULL;
    }
    char *path = resolve(req_base(req), name, "");
    if (!path) {
        errno = EACCES;
        return NULL;
    }
    if (realpath(path, canon) == NULL) {
        free(path);
        return NULL; /* errno from realpath: ENOENT, EACCES, ... */
    }
    /* A symlink may rename, never escape (as for templates, in load()). */
    size_t rl = realpath(T.root, croot) ? strlen(croot) : 0;
    if (!rl || strncmp(canon, croot, rl) != 0 || (canon[rl] != '/' && rl > 1)) {
        free(path);
        errno = EACCES;
        return NULL;
    }
    return path;
}

/*
 * The version of path this request uses: the one it pinned before, else
 * the cache's for its generation. A pin entry is added for a new path, and
 * for a new partial tag (from, name) so that partial() finds it without
 * resolving its name again; calling hp_render in a loop adds nothing.
 */
static struct tver *pin(hp_req *req, const char *path,
                        const struct hp_tpl *from, const char *name)
{
    struct hp_tpl_pins *p = req->tpl;
    struct tentry *e = NULL;
    struct tver *v = NULL;

    if (!p) {
        p = req->tpl = hp_xcalloc(1, sizeof *p);
        pthread_mutex_lock(&T.mu);
        p->gen0 = T.gen;
        pthread_mutex_unlock(&T.mu);
    }
    for (size_t i = 0; i < p->n && !v; i++)
        if (strcmp(p->a[i].e->path, path) == 0)
            e = p->a[i].e, v = p->a[i].v;
    if (v && !from)
        return v;
    if (v) {
        atomic_fetch_add(&v->refs, 1);
    } else {
        v = acquire(path, p->gen0, &e);
    }
    if (p->n == p->cap) {
        p->cap = p->cap ? p->cap * 2 : 4;
        p->a = hp_xrealloc(p->a, p->cap * sizeof *p->a);
    }
    p->a[p->n++] = (struct pin){.from = from, .name = name, .e = e, .v = v};
    return v;
}

size_t hp_req_tpl_paths(const hp_req *req, const char **paths, size_t max)
{
    const struct hp_tpl_pins *p = req->tpl;
    size_t n = 0;
    for (size_t i = 0; p && i < p->n && n < max; i++) {
        bool dup = !p->a[i].e;
        for (size_t j = 0; !dup && j < n; j++)
            dup |= strcmp(paths[j], p->a[i].e->path) == 0;
        if (!dup)
            paths[n++] = p->a[i].e->path;
    }
    return n;
}

void hp_req_tpl_release(hp_req *req)
{
    struct hp_tpl_pins *p = req->tpl;
    if (!p)
        return;
    for (size_t i = 0; i < p->n; i++)
        ver_unref(p->a[i].v);
    free(p->a);
    free(p);
    req->tpl = NULL;
}

static const struct hp_tpl *partial(void *ctx, const struct hp_tpl *from,
                                    const char *name, char **err)
{
    hp_req *req = ctx;
    struct hp_tpl_pins *p = req->tpl;
    struct tver *v = NULL;
    /* The same tag of the same template again (a partial in a loop). */
    for (size_t i = 0; i < p->n && !v; i++)
        if (p->a[i].from == from && p->a[i].name == name)
            v = p->a[i].v;
    if (!v) {
        char *path = resolve(hp_tpl_name(from), name, ".tpl");
        if (!path) {
            *err = hp_xasprintf("%s: partial \"%s\" is outside the document "
                                "root",
                                hp_tpl_name(from), name);
            return NULL;
        }
        v = pin(req, path, from, name);
        free(path);
    }
    if (!v->tpl && !missing(v)) {
        *err = hp_xstrdup(v->error);
        p->broken = v; /* tpl_fail logs it once, for its version */
    }
    return v->tpl;
}

/* 500 for the response, whatever the handler returns next; the message in
 * development mode (not for a foreign Host: server.c's Host rule). v: the
 * broken (unparsable or missing) template version the render reached,
 * logged at error level once per version, as a developer must see it in
 * production; other failures (msg alone) at info, each time. msg is the
 * text to show (v's error if NULL); freed. Neither: a NULL tpl, which
 * the caller logged (hp_req_misuse). */
static int tpl_fail(hp_req *req, struct tver *v, char *msg)
{
    const char *text = msg  ? msg
                       : v ? v->error
                           : "hp_render: tpl is NULL (refused: a page's mistake)";
    if (!v) {
        if (msg)
            hp_log(req, "template: %s", text);
    } else if (!atomic_exchange(&v->logged, true))
        hp_log_error("%s [%s]: template: %s",
                     req->current_module ? req->current_module->path
                                         : req->target.path,
                     req->target.handler, v->error);
    req->forced_status = 500;
    if (T.dev && !req->foreign_host) {
        /* The compile error's page (devloop.c): each file:line with the
         * source around it, and the live-reload script, so that saving
         * the fix reloads the page (docs/pages.md, "Errors over the
         * page"). The template is the diagnostic's file when it names
         * one ("/root/t.tpl:3: ..."); else the calling module's. */
        char tpath[PATH_MAX];
        const char *colon = text[0] == '/' ? strchr(text, ':') : NULL;
        const char *file = req_base(req);
        if (colon && (size_t)(colon - text) < sizeof tpath &&
            colon[1] >= '1' && colon[1] <= '9') {
            snprintf(tpath, sizeof tpath, "%.*s", (int)(colon - text), text);
            file = tpath;
        }
        struct hp_buf html = {0};
        hp_devloop_render_error_page(&html, file, text);
        const char *deps[] = {req->target.path, file};
        hp_devloop_script(&html, deps, 2, NULL);
        hp_req_error_body(req, 500, html.p);
        hp_set_header(req, "Content-Type", "text/html; charset=utf-8");
        hp_buf_free(&html);
    } else {
        req->out.len = 0;
    }
    free(msg);
    return 500;
}

int hp_render(hp_req *req, const char *tpl, const json_t *data)
{
    HP_REFUSE_NULL_REQ(req, 500);
    if (!T.started)
        return tpl_fail(req, NULL,
                        hp_xstrdup("templates are not available "
                                   "outside the server"));
    if (!tpl) {
        hp_req_misuse(req, __func__, "tpl");
        return tpl_fail(req, NULL, NULL);
    }
    /* Only template files: a name from the request must never read a
     * page's source, _app.c or anything else under the root. */
    if (!hp_tpl_is_file_name(tpl))
        return tpl_fail(req, NULL,
                        hp_xasprintf("hp_render: \"%s\" is not a template "
                                     "name (only " HP_TPL_EXT " files are "
                                     "rendered)",
                                     tpl));
    char *path = resolve(req_base(req), tpl, "");
    if (!path)
        return tpl_fail(req, NULL,
                        hp_xasprintf("template \"%s\" is outside the "
                                     "document root",
                                     tpl));
    struct tver *v = pin(req, path, NULL, NULL);
    free(path);
    if (!v->tpl)
        return tpl_fail(req, v, NULL);
    char *err = NULL;
    req->tpl->broken = NULL;
    size_t before = req->out.len,
           hint = atomic_load_explicit(&v->out_len, memory_order_relaxed);
    if (hint) /* a hint: the render fails by itself if memory is short */
        (void)hp_buf_reserve(&req->out, hint);
    if (hp_tpl_render(v->tpl, data, partial, req, &req->out, &err) < 0)
        return tpl_fail(req, req->tpl->broken, err);
    if (req->out.len - before != hint)
        atomic_store_explicit(&v->out_len, req->out.len - before,
                              memory_order_relaxed);
    return HP_OK;
}
