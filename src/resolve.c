/*
 * resolve.c - mapping decoded URL paths to files under the document root.
 *
 * Owns: the URL -> file rules (page source, page handler, static file), the
 * security rules that keep every answer inside the root and away from
 * private names ('_' or '.' segments, sources, headers, objects, config),
 * and the resolution cache that makes a repeated URL cost no syscalls.
 *
 * May not touch: the module cache (loading, compiling, pinning pages), HTTP
 * (status codes, headers, reading files for the response), or the watcher;
 * the watcher tells us about changes through hp_resolver_invalidate().
 *
 * Rules, for P = root/seg1/.../segN:
 *   1. P is a directory: P/index.c, else P/index.so (handler http_handler),
 *      else P/index.html (static), else not found.
 *   2. P is a regular file: static, unless its name says source, binary,
 *      settings, template, or a copy of one (hp_name_private).
 *   3. P.c, else P.so: handler http_handler.
 *   4. The last segment names a handler of Q = P minus its last segment:
 *      Q.c, else Q.so, else Q/index.c, else Q/index.so.
 *   5. Path parameters: the longest proper prefix Q of P that names a page
 *      (Q.c, Q.so, Q/index.c, Q/index.so; the root's index too). The
 *      segments after Q are routed by publish.c, which answers 404 unless
 *      the handler they reach declared HP_PATH_PARAMS.
 * t->page_segs counts the segments that named the page (rules 4 and 5
 * leave the rest to publish.c).
 * A '/' after the URL's last segment makes rules 2 and 3 answer not
 * found (a file is no directory); rules 4 and 5 ignore it. Rule 1 wants
 * it: a directory with an index asked without it is HP_T_DIRSLASH, a
 * redirect to the path with it (nginx; Apache's DirectorySlash), so that
 * relative links in the index resolve inside the directory.
 * Whatever is chosen must still be inside the root, and public, once every
 * symlink is resolved; otherwise the answer is "not found", never a
 * fallback to a later rule (a refused symlink must not unmask another file).
 */
#include "hp.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define RC_BUCKETS 8192         /* power of two */
#define RC_MAX_ENTRIES 8192     /* random URLs cannot grow memory ... */
#define RC_MAX_BYTES (8u << 20) /* ... by count, nor by long keys */
#define HANDLER_MAX 100
#define URL_MAX (PATH_MAX - 64)

struct rc_entry {
    struct rc_entry *next;
    uint64_t hash;
    size_t keylen;
    enum hp_target_kind kind;
    unsigned short page_segs;
    const char *path; /* point into buf */
    const char *handler;
    char buf[]; /* key \0 path \0 handler \0 */
};

struct hp_resolver {
    char *root; /* canonical, no trailing '/'; "" for "/" */
    size_t rootlen;
    atomic_uint_fast64_t gen; /* bumped by invalidate */
    pthread_rwlock_t lock;    /* guards everything below */
    uint64_t tab_gen;         /* generation the table's entries belong to */
    size_t count, bytes;
    struct rc_entry *tab[RC_BUCKETS];
};

/* A path being built; every append checks for room so no rule can be
 * tricked into a truncated (and so different) path. */
struct rpath {
    char s[PATH_MAX];
    size_t len;
};

static void *xmalloc(size_t n)
{
    void *p = malloc(n);

    if (p == NULL)
        abort();
    return p;
}

/* ---- paths ---------------------------------------------------------- */

static int rp_add(struct rpath *p, const char *s, size_t n)
{
    if (n >= sizeof(p->s) - p->len)
        return -1;
    memcpy(p->s + p->len, s, n);
    p->len += n;
    p->s[p->len] = '\0';
    return 0;
}

static int rp_adds(struct rpath *p, const char *s)
{
    return rp_add(p, s, strlen(s));
}

/* root + "/" + rel[0..n) ; n == 0 gives the root itself. */
static int rp_under_root(struct rpath *p, const hp_resolver *r, const char *rel,
                         size_t n)
{
    p->len = 0;
    p->s[0] = '\0';
    if (rp_add(p, r->root, r->rootlen) < 0)
        return -1;
    if (n == 0)
        return r->rootlen ? 0 : rp_adds(p, "/");
    if (rp_adds(p, "/") < 0)
        return -1;
    return rp_add(p, rel, n);
}

static int rp_with(struct rpath *out, const struct rpath *base,
                   const char *suffix)
{
    *out = *base;
    return rp_adds(out, suffix);
}

static bool is_reg(const char *path)
{
    struct stat st;

    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static bool is_dir(const char *path)
{
    struct stat st;

    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);

    return n >= m && memcmp(s + n - m, suffix, m) == 0;
}

/* Does the dot-separated part at p (up to the next '.' or the end) start
 * with kind, case-insensitively, followed by no letter or digit? */
static bool part_is(const char *p, const char *kind)
{
    size_t m = strlen(kind);

    if (strncasecmp(p, kind, m) != 0)
        return false; /* p[m] only now: a shorter part ends before it */
    unsigned char c = (unsigned char)p[m];
    return !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
             (c >= '0' && c <= '9'));
}

/* s ends with suffix, case-insensitively. */
static bool ends_with_ci(const char *s, size_t n, const char *suffix)
{
    size_t m = strlen(suffix);

    return n >= m && strcasecmp(s + n - m, suffix) == 0;
}

/*
 * The never-served-as-static rule for a file's name (one segment): it is,
 * or may be a copy of, a page source, header, object, settings file or
 * template, which served as text would leak code or server configuration.
 * Editing in the document root is the workflow, and editors and tools
 * leave copies beside the file they save. Case-insensitive throughout.
 *
 *  - One of the private kinds c h so o ini tpl as any dot-separated part
 *    but the first, judged by the part's leading letters and digits: the
 *    extension ("index.c", "hello.C", "x.TPL") and a copy's inner one
 *    ("index.c.bak", "index.c.1", "lib.so.1", "page.tpl.orig", "a.c.gz",
 *    "index.c.save" (nano), "x.ini.dpkg-old", "index.c,v" (RCS),
 *    "index.c___jb_tmp___" (JetBrains), "x.c.css" too: a static file is
 *    unlikely to be named so, and a source's copy may well be). "x.css",
 *    "v.h264", "jquery.cookie.js", "pkg.orig.tar.gz" are served.
 *  - d (make's dependency files) only as the whole extension: TypeScript's
 *    "index.d.ts" is served.
 *  - A name ending in '~' (Emacs, vim 'backup', nano, gedit, kate,
 *    cp --backup, numbered "x.~1~") or starting with '#' (Emacs
 *    auto-save, "#index.c#").
 *  - Leftovers whose name need not say what they copy, as the extension
 *    whatever comes before it ("index.bak", "notes.txt.orig"): bak orig
 *    rej (patch) old save tmp swp swo swn swx (vim swap files and its
 *    swap probe, when not in their usual hidden ".name.swp") rpmnew
 *    rpmsave rpmorig dpkg-* ucf-*, and a name ending in "___jb_tmp___" or
 *    "___jb_old___" (JetBrains safe write).
 *
 * Not refused here: names starting with '.' or '_', refused as segments
 * anyway (vim's ".index.c.swp", Emacs's ".#index.c" lock, rsync's and
 * gedit's temporaries); vim's write probe "4913", empty and removed at
 * once (the watcher ignores it). hp_rel_public is this rule and the
 * segments': static.c checks it on the path it opens, the watcher on the
 * static files whose change reloads the browser in dev mode.
 */
bool hp_name_private(const char *name)
{
    static const char *const kinds[] = {"c", "h", "so", "o", "ini", "tpl"};
    /* only as the whole extension: make's "d", then the leftovers */
    static const char *const last[] = {
        "d",   "bak", "orig", "rej", "old",    "save",    "tmp",
        "swp", "swo", "swn",  "swx", "rpmnew", "rpmsave", "rpmorig",
    };
    size_t n = strlen(name);
    const char *ext = strrchr(name, '.');

    if (n == 0)
        return false;
    if (name[0] == '#' || name[n - 1] == '~' ||
        ends_with_ci(name, n, "___jb_tmp___") ||
        ends_with_ci(name, n, "___jb_old___"))
        return true;
    for (const char *p = strchr(name, '.'); p; p = strchr(p + 1, '.'))
        for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
            if (part_is(p + 1, kinds[i]))
                return true;
    if (!ext)
        return false;
    ext++;
    for (size_t i = 0; i < sizeof last / sizeof last[0]; i++)
        if (strcasecmp(ext, last[i]) == 0)
            return true;
    return strncasecmp(ext, "dpkg-", 5) == 0 ||
           strncasecmp(ext, "ucf-", 4) == 0;
}

bool hp_rel_public(const char *rel)
{
    size_t n = 0;

    for (const char *s = rel;; s += n + 1) {
        n = strcspn(s, "/");
        if (n == 0 || s[0] == '_' || s[0] == '.')
            return false;
        if (s[n] == '\0')
            return !hp_name_private(s);
    }
}

static const char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');

    return slash ? slash + 1 : path;
}

/* ---- the URL -------------------------------------------------------- */

/* Segments are refused rather than normalised: "..", "_x", ".x" and a
 * backslash (a separator to some tools) never reach the file system. */
static bool seg_ok(const char *s, size_t n)
{
    if (s[0] == '_' || s[0] == '.')
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c < 0x20 || c == '\\')
            return false;
    }
    return true;
}

/*
 * Turn "/a//b/c/" into "a/b/c" in rel. *last is the offset of the last
 * segment, *nseg the count. Returns -1 if any segment is refused.
 */
static int url_to_rel(const char *url, char *rel, size_t *rellen, size_t *last,
                      size_t *nseg)
{
    size_t len = 0;

    *last = 0;
    *nseg = 0;
    while (*url) {
        size_t n = strcspn(url, "/");

        if (n > 0) {
            if (!seg_ok(url, n))
                return -1;
            if (len > 0)
                rel[len++] = '/';
            *last = len;
            memcpy(rel + len, url, n);
            len += n;
            (*nseg)++;
        }
        url += n;
        if (*url == '/')
            url++;
    }
    rel[len] = '\0';
    *rellen = len;
    return 0;
}

/* A handler is looked up as the symbol hp__handler_<name>: keep it a plain
 * C identifier, and never one of the reserved '_' names. */
static bool handler_ok(const char *s)
{
    size_t n = 0;

    if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z')))
        return false;
    for (; s[n]; n++) {
        char c = s[n];

        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
              (c >= '0' && c <= '9') || c == '_'))
            return false;
    }
    return n <= HANDLER_MAX;
}

/* ---- choosing a file -------------------------------------------------- */

static void set_notfound(struct hp_target *t)
{
    t->kind = HP_T_NOTFOUND;
    t->path[0] = '\0';
    t->handler[0] = '\0';
    t->page_segs = 0;
}

/* The canonical path must lie strictly under the root and every segment
 * below the root must be public: a symlink may rename, never escape. */
static bool canon_ok(const char *root, size_t rootlen, const char *canon)
{
    const char *rel = canon + rootlen;

    if (strncmp(canon, root, rootlen) != 0 || rel[0] != '/' || rel[1] == '\0')
        return false;
    for (const char *s = rel; s; s = strchr(s + 1, '/'))
        if (s[1] == '_' || s[1] == '.' || s[1] == '/' || s[1] == '\0')
            return false;
    return true;
}

/*
 * Commit to file: fill t, or NOTFOUND if it escapes or is private once
 * symlinks are resolved. A page must keep its kind (.c or .so) after
 * resolution, since the compiler goes by the name it is given.
 */
static void choose(const hp_resolver *r, enum hp_target_kind kind,
                   const char *file, const char *handler, struct hp_target *t)
{
    char canon[PATH_MAX], croot[PATH_MAX];
    struct stat st;

    set_notfound(t);
    /* The root itself may be a symlink that a deploy swaps: check against
     * where it points now, answer in terms of the root as configured. */
    if (realpath(r->root[0] ? r->root : "/", croot) == NULL)
        return;
    size_t crootlen = strcmp(croot, "/") == 0 ? 0 : strlen(croot);
    if (realpath(file, canon) == NULL || !canon_ok(croot, crootlen, canon))
        return;
    /* The file was picked by name; what counts is what it is now. */
    if (stat(canon, &st) != 0 || !S_ISREG(st.st_mode))
        return;
    if (kind == HP_T_STATIC && hp_name_private(base_name(canon)))
        return;
    if (kind == HP_T_PAGE &&
        !ends_with(canon, ends_with(file, ".c") ? ".c" : ".so"))
        return;
    if ((size_t)snprintf(t->path, sizeof t->path, "%s%s", r->root,
                         canon + crootlen) >= sizeof t->path) {
        set_notfound(t);
        return;
    }
    t->kind = kind;
    snprintf(t->handler, sizeof(t->handler), "%s", handler ? handler : "");
}

/* base + each suffix in turn; the first regular file is chosen. Returns
 * true when one was chosen (even if choose() then refused it). */
static bool try_page(const hp_resolver *r, const struct rpath *base,
                     const char *const *suffixes, const char *handler,
                     struct hp_target *t)
{
    struct rpath p;

    for (; *suffixes; suffixes++) {
        if (rp_with(&p, base, *suffixes) == 0 && is_reg(p.s)) {
            choose(r, HP_T_PAGE, p.s, handler, t);
            return true;
        }
    }
    return false;
}

static const char *const page_ext[] = {".c", ".so", NULL};
static const char *const index_page[] = {"/index.c", "/index.so", NULL};

static void resolve_dir(const hp_resolver *r, const struct rpath *dir,
                        struct hp_target *t)
{
    struct rpath p;

    if (try_page(r, dir, index_page, "http_handler", t))
        return;
    if (rp_with(&p, dir, "/index.html") == 0 && is_reg(p.s))
        choose(r, HP_T_STATIC, p.s, NULL, t);
    else
        set_notfound(t);
}

/* Rule 4: the last segment names a handler of the page one level up. */
static void resolve_handler(const hp_resolver *r, const char *rel, size_t last,
                            size_t nseg, struct hp_target *t)
{
    const char *name = rel + last;
    size_t qlen = last ? last - 1 : 0; /* drop the '/' before name */
    struct rpath q;

    set_notfound(t);
    if (!handler_ok(name) || rp_under_root(&q, r, rel, qlen) < 0)
        return;
    /* For nseg == 1, Q is the root itself: "root.c" is outside the root. */
    if (nseg >= 2 && try_page(r, &q, page_ext, name, t))
        goto found;
    if (is_dir(q.s) && try_page(r, &q, index_page, name, t))
        goto found;
    return;
found:
    t->page_segs = (unsigned short)(nseg - 1);
}

/* Rule 5: the longest proper prefix of rel that names a page; the
 * segments after it are path parameters (or a handler and parameters). */
static void resolve_params(const hp_resolver *r, const char *rel, size_t nseg,
                           struct hp_target *t)
{
    size_t ends[HP_MAX_SEGS + 1], k = 0;
    struct rpath q;

    set_notfound(t);
    if (nseg < 1 || nseg > HP_MAX_SEGS)
        return;
    for (const char *s = rel; *s; s++) /* where each prefix ends */
        if (*s == '/')
            ends[k++] = (size_t)(s - rel);
    for (size_t n = nseg - 1; n-- > 0;) {
        /* n + 1 segments: rel[0 .. ends[n]); n = 0 is the first one. */
        if (rp_under_root(&q, r, rel, ends[n]) < 0)
            return;
        if (try_page(r, &q, page_ext, "http_handler", t) ||
            (is_dir(q.s) && try_page(r, &q, index_page, "http_handler", t))) {
            t->page_segs = (unsigned short)(n + 1);
            return;
        }
    }
    if (rp_under_root(&q, r, rel, 0) == 0 &&
        try_page(r, &q, index_page, "http_handler", t))
        t->page_segs = 0;
}

/* Bytes a path segment keeps as they are (RFC 3986 §3.3 pchar less
 * pct-encoded); others are percent-encoded. */
static bool pchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') ||
           (c != 0 && strchr("-._~!$&'()*+,;=:@/", c));
}

/*
 * Rule 1 without the trailing '/': t becomes HP_T_DIRSLASH with path
 * "/" rel "/", rel's bytes percent-encoded. rel has no empty segment
 * (url_to_rel), so the path never starts with "//", which a browser would
 * read as another host: "//evil.com" can only redirect to "/evil.com/".
 */
static void set_dir_slash(const char *rel, struct hp_target *t)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = 0, cap = sizeof t->path;

    set_notfound(t);
    t->path[n++] = '/';
    for (const unsigned char *s = (const unsigned char *)rel; *s; s++) {
        if (n + 5 >= cap) {
            set_notfound(t);
            return;
        }
        if (pchar(*s)) {
            t->path[n++] = (char)*s;
            continue;
        }
        t->path[n++] = '%';
        t->path[n++] = hex[*s >> 4];
        t->path[n++] = hex[*s & 15];
    }
    t->path[n++] = '/';
    t->path[n] = '\0';
    t->kind = HP_T_DIRSLASH;
}

/*
 * Resolve against the file system. Returns false when the URL was refused
 * by its text alone: that answer costs no syscalls, so caching it would
 * only let junk URLs evict useful entries.
 */
static bool resolve_fs(const hp_resolver *r, const char *url,
                       struct hp_target *t)
{
    char rel[PATH_MAX];
    size_t rellen, last, nseg;
    struct rpath p;
    struct stat st;

    set_notfound(t);
    if (url[0] != '/' || strlen(url) > URL_MAX)
        return false;
    if (url_to_rel(url, rel, &rellen, &last, &nseg) < 0 ||
        rp_under_root(&p, r, rel, rellen) < 0)
        return false;
    /* A '/' after a file's name asks for a directory that is not there:
     * 404, as nginx answers (rules 2 and 3; a handler name or path
     * parameters after a page are not files, and keep ignoring it). */
    bool dir_asked = url[strlen(url) - 1] == '/';
    if (stat(p.s, &st) == 0) {
        if (S_ISDIR(st.st_mode)) {
            resolve_dir(r, &p, t);
            t->page_segs = (unsigned short)nseg;
            if (t->kind != HP_T_NOTFOUND && nseg > 0 && !dir_asked)
                set_dir_slash(rel, t);
            return true;
        }
        if (S_ISREG(st.st_mode) && nseg > 0) {
            if (!hp_name_private(rel + last) && !dir_asked)
                choose(r, HP_T_STATIC, p.s, NULL, t);
            return true;
        }
    }
    if (nseg > 0 && try_page(r, &p, page_ext, "http_handler", t)) {
        if (dir_asked)
            set_notfound(t);
        else
            t->page_segs = (unsigned short)nseg;
        return true;
    }
    if (nseg > 0)
        resolve_handler(r, rel, last, nseg, t);
    if (nseg > 0 && t->kind == HP_T_NOTFOUND)
        resolve_params(r, rel, nseg, t);
    return true;
}

/* ---- the cache ------------------------------------------------------- */

_Static_assert(HANDLER_MAX < sizeof(((struct hp_target *)0)->handler),
               "handler names must fit struct hp_target");

static uint64_t hash_key(const char *s, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */

    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static struct rc_entry *rc_find(const hp_resolver *r, const char *key, size_t n,
                                uint64_t h)
{
    struct rc_entry *e = r->tab[h & (RC_BUCKETS - 1)];

    for (; e; e = e->next)
        if (e->hash == h && e->keylen == n && memcmp(e->buf, key, n) == 0)
            return e;
    return NULL;
}

/* The hit path: a read lock and a copy, no syscalls. Entries of an older
 * generation are ignored here and dropped by the next insert. */
static bool rc_lookup(hp_resolver *r, const char *key, size_t n, uint64_t h,
                      struct hp_target *t)
{
    struct rc_entry *e = NULL;

    pthread_rwlock_rdlock(&r->lock);
    if (r->tab_gen == atomic_load(&r->gen))
        e = rc_find(r, key, n, h);
    if (e) {
        t->kind = e->kind;
        t->page_segs = e->page_segs;
        strcpy(t->path, e->path);
        strcpy(t->handler, e->handler);
    }
    pthread_rwlock_unlock(&r->lock);
    return e != NULL;
}

static void rc_clear(hp_resolver *r)
{
    for (size_t i = 0; i < RC_BUCKETS; i++) {
        while (r->tab[i]) {
            struct rc_entry *e = r->tab[i];

            r->tab[i] = e->next;
            free(e);
        }
    }
    r->count = 0;
    r->bytes = 0;
}

static struct rc_entry *rc_entry_new(const char *key, size_t n, uint64_t h,
                                     const struct hp_target *t, size_t *size)
{
    size_t plen = strlen(t->path), hlen = strlen(t->handler);
    struct rc_entry *e;
    char *p;

    *size = sizeof(*e) + n + plen + hlen + 3;
    e = xmalloc(*size);
    e->next = NULL;
    e->hash = h;
    e->keylen = n;
    e->kind = t->kind;
    e->page_segs = t->page_segs;
    p = e->buf;
    memcpy(p, key, n + 1);
    e->path = p += n + 1;
    memcpy(p, t->path, plen + 1);
    e->handler = p += plen + 1;
    memcpy(p, t->handler, hlen + 1);
    return e;
}

/*
 * Remember a result computed at generation gen. If an invalidate happened
 * since, the file system may have changed under the computation, so the
 * result is dropped rather than cached under the new generation.
 */
static void rc_insert(hp_resolver *r, const char *key, size_t n, uint64_t h,
                      uint64_t gen, const struct hp_target *t)
{
    size_t size;
    struct rc_entry *e = rc_entry_new(key, n, h, t, &size);

    pthread_rwlock_wrlock(&r->lock);
    if (gen != atomic_load(&r->gen) ||
        (r->tab_gen == gen && rc_find(r, key, n, h))) {
        pthread_rwlock_unlock(&r->lock);
        free(e);
        return;
    }
    if (r->tab_gen != gen) {
        rc_clear(r);
        r->tab_gen = gen;
    }
    if (r->count >= RC_MAX_ENTRIES || r->bytes + size > RC_MAX_BYTES)
        rc_clear(r);
    e->next = r->tab[h & (RC_BUCKETS - 1)];
    r->tab[h & (RC_BUCKETS - 1)] = e;
    r->count++;
    r->bytes += size;
    pthread_rwlock_unlock(&r->lock);
}

/* ---- the API ---------------------------------------------------------- */

static void rc_lock_init(pthread_rwlock_t *lock)
{
    pthread_rwlockattr_t attr;

    pthread_rwlockattr_init(&attr);
#ifdef PTHREAD_RWLOCK_WRITER_NONRECURSIVE_INITIALIZER_NP
    /* glibc prefers readers by default; a steady stream of hits could then
     * starve the thread that wants to insert a miss. */
    pthread_rwlockattr_setkind_np(&attr,
                                  PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
#endif
    if (pthread_rwlock_init(lock, &attr) != 0)
        abort();
    pthread_rwlockattr_destroy(&attr);
}

hp_resolver *hp_resolver_new(const char *root_canon)
/* root_canon: absolute; its last component may be a symlink (a deploy's
 * "current" link), everything above it canonical. */
{
    hp_resolver *r;
    size_t n;

    if (root_canon == NULL || root_canon[0] != '/')
        return NULL;
    n = strlen(root_canon);
    while (n > 0 && root_canon[n - 1] == '/')
        n--; /* "/" becomes "", so root + "/x" works */
    if (n >= PATH_MAX)
        return NULL;
    r = calloc(1, sizeof(*r));
    if (r == NULL)
        abort();
    r->root = xmalloc(n + 1);
    memcpy(r->root, root_canon, n);
    r->root[n] = '\0';
    r->rootlen = n;
    atomic_init(&r->gen, 0);
    rc_lock_init(&r->lock);
    return r;
}

void hp_resolver_free(hp_resolver *r)
{
    if (r == NULL)
        return;
    rc_clear(r);
    pthread_rwlock_destroy(&r->lock);
    free(r->root);
    free(r);
}

void hp_resolve(hp_resolver *r, const char *url_path, struct hp_target *t)
{
    uint64_t h, gen;
    size_t n;

    if (url_path == NULL || (n = strlen(url_path)) > URL_MAX) {
        set_notfound(t);
        return;
    }
    h = hash_key(url_path, n);
    if (rc_lookup(r, url_path, n, h, t))
        return;
    /* Read before touching the file system: see rc_insert(). */
    gen = atomic_load(&r->gen);
    if (resolve_fs(r, url_path, t))
        rc_insert(r, url_path, n, h, gen, t);
}

void hp_resolver_invalidate(hp_resolver *r)
{
    atomic_fetch_add(&r->gen, 1);
}

bool hp_path_merge_dots(char *path)
{
    char *w = path;
    const char *r = path;
    if (*r != '/')
        return false; /* not origin-form: nothing to merge against */
    while (*r == '/') {
        const char *seg = r + 1, *end = strchrnul(seg, '/');
        size_t n = (size_t)(end - seg);
        bool dot = n == 1 && seg[0] == '.';
        bool dotdot = n == 2 && seg[0] == '.' && seg[1] == '.';
        if (dotdot) {
            if (w == path)
                return false; /* above the root */
            do /* drop the output's last segment; path[0] is '/' */
                w--;
            while (*w != '/');
        }
        if (dot || dotdot) {
            if (!*end) /* a final "." or "..": the path ends in a '/' */
                *w++ = '/';
        } else {
            memmove(w, r, 1 + n);
            w += 1 + n;
        }
        r = end;
    }
    if (w == path)
        *w++ = '/';
    *w = '\0';
    return true;
}
