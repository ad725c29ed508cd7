/*
 * compile.c - turning a page source into a loadable shared object.
 *
 * Owns: the compile cache directory (<cache-dir>/obj: objects, their
 * dependency lists, failed compiles' diagnostics, and the fast tier's
 * precompiled hotpub.h in pch-<flags key>/), running the page
 * compiler as a child process under its limits (compile-timeout and the
 * RLIMIT_AS/CPU/FSIZE settings), reading its dependency list, and the
 * diagnostics a failed compile produces, naming a limit that stopped it.
 * May not touch: the module cache, dlopen, or anything a request sees; it
 * returns paths and text, and the caller decides what to do with them.
 *
 * Why a copy of the source is compiled rather than the file itself: the
 * object must be built from exactly the bytes that were hashed into its
 * cache key, even if an editor is rewriting the page at this moment. A
 * `#line` directive keeps diagnostics and __FILE__ pointing at the real
 * file, and `-iquote <dir>` keeps `#include "x.h"` finding its neighbours.
 * That copy is also what lets a staged release be compiled under the live
 * root's names before a deploy switches to it (hp_compiler_stage).
 *
 * A page's HP_PKG("name") declarations (found by pkg.c in those same bytes)
 * add pkg-config's --cflags and --libs of each package to its compile, and
 * only to its own.
 */
#include "hp.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define HP_DIAG_MAX (64 * 1024)

struct hp_compiler {
    char *root;        /* canonical document root, for dependency filtering */
    char *stage;       /* hp_compiler_stage's canonical tree, or NULL        */
    char *objdir;      /* <cache-dir>/obj                                    */
    char *objdir_real; /* its canonical path (NULL: unknown)              */
    char *cc;
    char **flags; /* cflags split on white space, NULL-terminated       */
    char *include_dir;
    char flags_key[33]; /* hash of everything but the source that shapes it */
    atomic_ulong runs;
    atomic_ulong seq;
    bool is_tcc;
    char *tcc;     /* the fast tier's compiler (a path), NULL: gcc -O0   */
    char *ld;      /* the linker the fast tier's objects go through      */
    char *tcc_inc; /* -I of include/hotpub-tcc (sys/cdefs.h), or NULL */
    /* the fast tier's gcc fallback, set up once on its first use
     * (fallback_prepare): the precompiled hotpub.h's directory as an -I
     * flag, and the files a direct ld link needs (NULL: link with cc) */
    pthread_mutex_t fb_mu;
    bool fb_ready;
    bool link_ready; /* link_files and libtcc1 looked for (link_prepare) */
    char *libtcc1;   /* tcc's runtime (va_arg, conversions), or NULL */
    atomic_bool ld_failed; /* a direct link failed: said once, in the log */
    char *pch_inc;
    char **link_files;
    /* limits (docs/configuration.md, "Compile limits"); 0 = off */
    int timeout_s;     /* wall clock for one compile, never 0 */
    size_t mem_limit;  /* RLIMIT_AS bytes, per compiler process */
    int cpu_limit;     /* RLIMIT_CPU seconds, per compiler process */
    size_t file_limit; /* RLIMIT_FSIZE bytes, per file written */
    pthread_mutex_t gc_mu;
    /* The last compiles a limit or the timeout stopped (not cached on
     * disk: the machine may have been busy), so that a compile of the same
     * key that waited for one of them on the key's lock gets its verdict
     * instead of waiting out the same limit again (a watcher's batch and a
     * request's first load of a page that includes a FIFO). */
    pthread_mutex_t lim_mu;
    struct {
        char key[33];
        double at; /* hp_now() when it failed */
        char *diag;
    } limited[8];
    unsigned nlimited;
};

/* The compile cache keeps the newest objects up to this size: every edit
 * adds one, and nothing else would ever remove them. */
#define HP_CACHE_MAX_BYTES (256ull << 20)
#define HP_GC_EVERY 64 /* compiles */

struct gc_item {
    char name[64]; /* <key>.so or <key>.err */
    int64_t mtime_ns;
    uint64_t bytes;
};

static int by_mtime_desc(const void *a, const void *b)
{
    const struct gc_item *x = a, *y = b;
    return x->mtime_ns < y->mtime_ns ? 1 : x->mtime_ns > y->mtime_ns ? -1 : 0;
}

/* An object (<32 hex>.so, with its .deps) or a failed compile's record
 * (<32 hex>.err); temp and lock files are not ours to judge. */
static bool gc_candidate(const char *name)
{
    size_t len = strlen(name);
    return (len == 35 && strcmp(name + 32, ".so") == 0) ||
           (len == 36 && strcmp(name + 32, ".err") == 0);
}

/* Remove one item: for an object, the meta first (without it nothing is a
 * hit). */
static void gc_remove(const struct hp_compiler *c, const struct gc_item *it)
{
    char *path = hp_xasprintf("%s/%s", c->objdir, it->name);
    if (strcmp(it->name + 32, ".so") == 0) {
        char *meta = hp_xasprintf("%s/%.32s.deps", c->objdir, it->name);
        unlink(meta);
        free(meta);
    }
    unlink(path);
    free(path);
}

/* Another flags key's precompiled header (pch-<key>/: a hotpub.h or
 * --cflags since changed), unused for HP_PCH_KEEP_S: removed. Its user
 * refreshes the .gch's mtime when it starts using it (fallback_prepare). */
#define HP_PCH_KEEP_S (7 * 86400)
static void pch_gc(const struct hp_compiler *c, const char *name)
{
    struct stat st;
    if (strncmp(name, "pch-", 4) != 0 || strlen(name) != 36 ||
        strcmp(name + 4, c->flags_key) == 0)
        return;
    char *gch = hp_xasprintf("%s/%s/hotpub.h.gch", c->objdir, name);
    char *hdr = hp_xasprintf("%s/%s/hotpub.h", c->objdir, name);
    char *dir = hp_xasprintf("%s/%s", c->objdir, name);
    if (stat(gch, &st) == 0 && st.st_mtime < time(NULL) - HP_PCH_KEEP_S) {
        unlink(gch);
        unlink(hdr);
        rmdir(dir); /* not empty (a build under way): kept */
    }
    free(gch);
    free(hdr);
    free(dir);
}

/* Drop the least recently used objects and failure records (a hit
 * refreshes the mtime) until the cache fits. */
static void gc(struct hp_compiler *c)
{
    DIR *d;
    struct dirent *de;
    struct gc_item *items = NULL;
    size_t n = 0, cap = 0;
    uint64_t total = 0;

    pthread_mutex_lock(&c->gc_mu);
    d = opendir(c->objdir);
    while (d && (de = readdir(d))) {
        struct stat st, st2;
        pch_gc(c, de->d_name);
        if (!gc_candidate(de->d_name))
            continue;
        char *path = hp_xasprintf("%s/%s", c->objdir, de->d_name);
        char *meta = hp_xasprintf("%s/%.32s.deps", c->objdir, de->d_name);
        bool so = de->d_name[33] == 's';
        if (stat(path, &st) == 0) {
            if (n == cap)
                items = hp_xrealloc(items, (cap = cap ? cap * 2 : 256) *
                                               sizeof *items);
            snprintf(items[n].name, sizeof items[n].name, "%.40s", de->d_name);
            items[n].mtime_ns =
                (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
            items[n].bytes =
                (uint64_t)st.st_size +
                (so && stat(meta, &st2) == 0 ? (uint64_t)st2.st_size : 0);
            total += items[n].bytes;
            n++;
        }
        free(path);
        free(meta);
    }
    if (d)
        closedir(d);
    if (total > HP_CACHE_MAX_BYTES) {
        qsort(items, n, sizeof *items, by_mtime_desc);
        uint64_t kept = 0;
        for (size_t i = 0; i < n; i++) {
            kept += items[i].bytes;
            if (kept > HP_CACHE_MAX_BYTES && i > 0)
                gc_remove(c, &items[i]);
        }
    }
    free(items);
    pthread_mutex_unlock(&c->gc_mu);
}

static char **split_words(const char *s)
{
    size_t n = 0, cap = 8;
    char **v = hp_xmalloc(cap * sizeof *v);
    char *copy = hp_xstrdup(s ? s : "");
    char *save = NULL;

    for (char *w = strtok_r(copy, " \t\n", &save); w;
         w = strtok_r(NULL, " \t\n", &save)) {
        if (n + 2 > cap)
            v = hp_xrealloc(v, (cap *= 2) * sizeof *v);
        v[n++] = hp_xstrdup(w);
    }
    v[n] = NULL;
    free(copy);
    return v;
}

static char *find_include_dir(const struct hp_config *cfg)
{
    char exe[PATH_MAX], cand[PATH_MAX + 32];
    ssize_t n;

    if (cfg->include_dir)
        return hp_xstrdup(cfg->include_dir);
    /* An installed binary finds PREFIX/include next to PREFIX/bin. */
    n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            snprintf(cand, sizeof cand, "%s/../include/hotpub.h", exe);
            if (access(cand, R_OK) == 0) {
                snprintf(cand, sizeof cand, "%s/../include", exe);
                char *real = realpath(cand, NULL);
                if (real)
                    return real;
            }
        }
    }
    return hp_xstrdup(HP_INCLUDE_DIR);
}

static int find_program(const char *name, char *buf, size_t len);
static size_t cc_flags(const struct hp_compiler *c, bool fast, char **argv);

/* The fast tier's tools: tcc (fast-cc, "off" for none) and ld, which
 * links tcc's objects and the gcc fallback's. No ld means no tcc: the fast
 * tier then compiles and links with the page compiler at -O0. */
static void fast_tier_tools(struct hp_compiler *c, const struct hp_config *cfg)
{
    char path[PATH_MAX];
    const char *want = cfg->fast_cc ? cfg->fast_cc : "tcc";

    if (find_program("ld", path, sizeof path) == 0)
        c->ld = hp_xstrdup(path);
    if (c->ld && strcmp(want, "off") != 0 &&
        find_program(want, path, sizeof path) == 0)
        c->tcc = hp_xstrdup(path);
}

/* The fast tier's include directory ahead of the system's: its
 * sys/cdefs.h keeps glibc from defining __attribute__ away for tcc, which
 * defines no __GNUC__ (include/hotpub-tcc/sys/cdefs.h says why). Without
 * it tcc would drop every attribute a page writes (constructor, packed,
 * ...), so tcc is not used at all: the fast tier compiles with gcc -O0. */
static void tcc_shim(struct hp_compiler *c)
{
    char *shim = hp_xasprintf("%s/hotpub-tcc/sys/cdefs.h", c->include_dir);

    if (c->tcc && access(shim, R_OK) == 0) {
        c->tcc_inc = hp_xasprintf("-I%s/hotpub-tcc", c->include_dir);
    } else if (c->tcc) {
        hp_log_info("no %s: tcc would drop the pages' __attribute__s "
                    "(constructor, packed, ...); the fast tier compiles "
                    "with the page compiler at -O0",
                    shim);
        free(c->tcc);
        c->tcc = NULL;
    }
    free(shim);
}

struct hp_compiler *hp_compiler_new(const struct hp_config *cfg,
                                    const char *root_canon)
{
    struct hp_compiler *c = hp_xcalloc(1, sizeof *c);
    struct hp_hash h;
    char header[PATH_MAX + 16];

    c->root = hp_xstrdup(root_canon);
    c->objdir = hp_xasprintf("%s/obj", cfg->cache_dir);
    c->cc = hp_xstrdup(cfg->cc ? cfg->cc : "cc");
    c->flags = split_words(cfg->cflags);
    c->include_dir = find_include_dir(cfg);
    const char *ccbase = strrchr(c->cc, '/');
    c->is_tcc = strcmp(ccbase ? ccbase + 1 : c->cc, "tcc") == 0;
    fast_tier_tools(c, cfg);
    tcc_shim(c);
    c->timeout_s = cfg->compile_timeout > 0 ? cfg->compile_timeout : 60;
    c->mem_limit = cfg->compile_memory_limit;
    c->cpu_limit = cfg->compile_cpu_limit;
    c->file_limit = cfg->compile_file_limit;
    pthread_mutex_init(&c->gc_mu, NULL);
    pthread_mutex_init(&c->lim_mu, NULL);
    pthread_mutex_init(&c->fb_mu, NULL);
    if (hp_mkdirs(c->objdir, 0700) < 0)
        hp_log_error("cannot create compile cache %s: %s", c->objdir,
                     strerror(errno));
    c->objdir_real = realpath(c->objdir, NULL);

    /* The compiler, its flags, the ABI and the public header shape every
     * object: a change of any of them must miss the cache. */
    hp_hash_init(&h);
    hp_hash_update(&h, HP_VERSION_STRING, sizeof HP_VERSION_STRING);
    size_t nf = 0;
    for (char **f = c->flags; *f; f++)
        nf++;
    char **argv = hp_xcalloc(nf + 16, sizeof *argv);
    size_t na = cc_flags(c, false, argv); /* the fixed flags too */
    for (size_t i = 0; i < na; i++)
        hp_hash_update(&h, argv[i], strlen(argv[i]) + 1);
    free(argv);
    hp_hash_update(&h, c->include_dir, strlen(c->include_dir) + 1);
    hp_hash_update(&h, c->tcc ? c->tcc : "", c->tcc ? strlen(c->tcc) + 1 : 1);
    if (c->tcc_inc) /* fast objects built without it lack attributes */
        hp_hash_update(&h, c->tcc_inc, strlen(c->tcc_inc) + 1);
    snprintf(header, sizeof header, "%s/hotpub.h", c->include_dir);
    if (hp_hash_file(&h, header) < 0)
        hp_log_error("cannot read %s: %s (pages will not compile)", header,
                     strerror(errno));
    hp_hash_hex(&h, c->flags_key);
    gc(c);
    return c;
}

void hp_compiler_free(struct hp_compiler *c)
{
    if (!c)
        return;
    for (char **f = c->flags; *f; f++)
        free(*f);
    free(c->flags);
    free(c->root);
    free(c->stage);
    free(c->objdir);
    free(c->objdir_real);
    free(c->cc);
    free(c->include_dir);
    free(c->tcc);
    free(c->tcc_inc);
    free(c->ld);
    free(c->pch_inc);
    free(c->libtcc1);
    for (char **f = c->link_files; f && *f; f++)
        free(*f);
    free(c->link_files);
    pthread_mutex_destroy(&c->fb_mu);
    pthread_mutex_destroy(&c->gc_mu);
    for (size_t i = 0; i < sizeof c->limited / sizeof *c->limited; i++)
        free(c->limited[i].diag);
    pthread_mutex_destroy(&c->lim_mu);
    free(c);
}

const char *hp_compiler_root(struct hp_compiler *c)
{
    return c->root;
}

bool hp_compiler_has_tcc(const struct hp_compiler *c)
{
    return c->tcc != NULL;
}

unsigned long hp_compiler_runs(struct hp_compiler *c)
{
    return atomic_load(&c->runs);
}

void hp_artifact_free(struct hp_artifact *a)
{
    free(a->so_path);
    for (size_t i = 0; i < a->ndeps; i++)
        free(a->deps[i].path);
    free(a->deps);
    memset(a, 0, sizeof *a);
}

static int read_file(const char *path, struct hp_buf *b)
{
    char chunk[16384];
    ssize_t n;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    while ((n = read(fd, chunk, sizeof chunk)) > 0) {
        if (hp_buf_append(b, chunk, (size_t)n) < 0) {
            close(fd);
            errno = ENOMEM;
            return -1;
        }
    }
    close(fd);
    return n < 0 ? -1 : 0;
}

static int write_file(const char *path, const void *data, size_t len)
{
    const char *p = data;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            close(fd);
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return close(fd);
}

int hp_compiler_stage(struct hp_compiler *c, const char *tree)
{
    char *real = realpath(tree, NULL);
    if (!real)
        return -1;
    free(c->stage);
    c->stage = real;
    return 0;
}

/* Where the bytes of path (a path under the root as configured) are read
 * from: the same path, or its twin in the staged tree (hp_compiler_stage),
 * which the root will point to after the swap. The caller frees it. */
static char *staged(const struct hp_compiler *c, const char *path)
{
    size_t n = strlen(c->root);
    if (c->stage && strncmp(path, c->root, n) == 0 && path[n] == '/')
        return hp_xasprintf("%s%s", c->stage, path + n);
    return hp_xstrdup(path);
}

/* A canonical path under the root's current target, as a path under the
 * root as configured (which may be a symlink a deploy swaps); NULL if it
 * lies elsewhere. While warming, the staged tree stands for the target. */
/* Is path (canonical) dir itself or below it? */
static bool in_dir(const char *path, const char *dir)
{
    size_t n = dir ? strlen(dir) : 0;
    return n && strncmp(path, dir, n) == 0 && (path[n] == '/' || !path[n]);
}

static char *under_root(const struct hp_compiler *c, const char *real)
{
    char croot[PATH_MAX];
    if (c->stage)
        snprintf(croot, sizeof croot, "%s", c->stage);
    else if (!realpath(c->root, croot))
        return NULL;
    size_t n = strlen(croot);
    if (strncmp(real, croot, n) != 0 || real[n] != '/')
        return NULL;
    return hp_xasprintf("%s%s", c->root, real + n);
}

static void add_dep(struct hp_artifact *a, const char *path)
{
    for (size_t i = 0; i < a->ndeps; i++)
        if (strcmp(a->deps[i].path, path) == 0)
            return;
    a->deps = hp_xrealloc(a->deps, (a->ndeps + 1) * sizeof *a->deps);
    a->deps[a->ndeps].path = hp_xstrdup(path);
    memset(&a->deps[a->ndeps].fid, 0, sizeof a->deps[a->ndeps].fid);
    a->ndeps++;
}

/*
 * Parse a make-style depfile written by -MD: "target: dep dep \<nl> dep".
 * Keeps only files inside the document root (system headers do not change
 * under us; the public header is part of the flags key).
 */
static void parse_depfile(const struct hp_compiler *c, const char *text,
                          const char *skip, struct hp_artifact *a)
{
    const char *p = strchr(text, ':');
    char word[PATH_MAX];
    size_t wl = 0;

    if (!p)
        return;
    for (p++;; p++) {
        bool end = (*p == '\0' || *p == ' ' || *p == '\n' || *p == '\t' ||
                    (*p == '\\' && p[1] == '\n'));
        if (*p == '\\' && p[1] == ' ') {
            if (wl < sizeof word - 1)
                word[wl++] = ' ';
            p++;
            continue;
        }
        if (!end) {
            if (wl < sizeof word - 1)
                word[wl++] = *p;
            continue;
        }
        if (wl > 0) {
            word[wl] = '\0';
            char *real = realpath(word, NULL);
            char *dep = real ? under_root(c, real) : NULL;
            /* The copy being compiled lives in the compile cache, which
             * may itself lie under the root (--cache-dir .cache): it is
             * no dependency, and it was written just before the compile,
             * so it would always look changed under it. */
            if (dep && strcmp(dep, skip) != 0 && !in_dir(real, c->objdir_real))
                add_dep(a, dep);
            free(dep);
            free(real);
            wl = 0;
        }
        if (*p == '\0')
            break;
        if (*p == '\\')
            p++;
    }
}

static int64_t realtime_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/*
 * Record each header's identity and content hash, refusing the build if a
 * header was written since the compiler started (it may have read either
 * version): returns 1 then, so the caller builds again.
 * Meta file format: one line per dependency, "<content-hash> <path>".
 */
static int seal_deps(const struct hp_compiler *c, struct hp_artifact *a,
                     int64_t started_ns, struct hp_buf *meta)
{
    for (size_t i = 0; i < a->ndeps; i++) {
        struct hp_dep *d = &a->deps[i];
        struct hp_fid again;
        struct hp_hash h;
        char hex[33];
        char *from = staged(c, d->path); /* recorded as d->path */
        hp_hash_init(&h);
        int bad = hp_fid_stat(from, &d->fid) < 0 ||
                  hp_hash_file(&h, from) < 0 || hp_fid_stat(from, &again) < 0;
        free(from);
        if (bad)
            return 1;
        /* ctime, not mtime: the kernel sets it, so a header with a
         * future-dated mtime (tar, rsync -t) cannot make every build look
         * like a race. A ctime far ahead of our clock (an NFS server's
         * skewed clock) says nothing about this build either. */
        int64_t ct = d->fid.ctime_ns;
        if (!hp_fid_eq(&d->fid, &again) ||
            (ct >= started_ns && ct <= realtime_ns() + 1000000000))
            return 1;
        hp_hash_hex(&h, hex);
        hp_buf_printf(meta, "%s %s\n", hex, d->path);
    }
    return 0;
}

/* A cache hit needs the object and every recorded header unchanged. */
static bool meta_valid(const struct hp_compiler *c, const char *meta_path,
                       struct hp_artifact *a)
{
    struct hp_buf b = {0};
    char *save = NULL;
    bool ok = true;

    if (read_file(meta_path, &b) < 0) {
        hp_buf_free(&b);
        return false;
    }
    for (char *line = strtok_r(b.p ? b.p : (char *)"", "\n", &save); line && ok;
         line = strtok_r(NULL, "\n", &save)) {
        char hex[33];
        struct hp_hash h;
        if (strlen(line) < 34 || line[32] != ' ') {
            ok = false;
            break;
        }
        struct hp_fid before, after;
        char *from = staged(c, line + 33); /* warming: the staged twin */
        hp_hash_init(&h);
        /* stat, hash, stat: the identity recorded must be that of the
         * content that matched, not of a save that landed in between. */
        ok = hp_fid_stat(from, &before) == 0 && hp_hash_file(&h, from) == 0 &&
             hp_fid_stat(from, &after) == 0 && hp_fid_eq(&before, &after);
        free(from);
        if (!ok)
            break;
        hp_hash_hex(&h, hex);
        ok = memcmp(hex, line, 32) == 0;
        if (ok) {
            add_dep(a, line + 33);
            a->deps[a->ndeps - 1].fid = before;
        }
    }
    hp_buf_free(&b);
    return ok;
}

int hp_compiler_check(const char *cc)
{
    char path[PATH_MAX];
    struct stat st;
    if (!cc)
        cc = "cc";
    if (find_program(cc, path, sizeof path) == 0) {
        if (stat(path, &st) == 0 && !S_ISDIR(st.st_mode))
            return 0;
        errno = EISDIR;
    }
    hp_log_error("the compiler %s (the cc setting, --cc) cannot be run: "
                 "%s%s",
                 cc, strerror(errno),
                 strchr(cc, '/') ? "" : " (looked up in PATH)");
    return -1;
}

/* How a compiler run ended: run_capture's answer. */
enum run_end { RUN_EXITED, RUN_SIGNALED, RUN_TIMED_OUT, RUN_NOT_RUN };
struct run_result {
    enum run_end end;
    int code; /* the exit status (RUN_EXITED) or the signal (RUN_SIGNALED) */
};

/* argv[0] as execve wants it: a name without '/' is looked up in PATH, as
 * posix_spawnp did, but here in the parent, because the forked child of a
 * threaded process may only make async-signal-safe calls. */
static int find_program(const char *name, char *buf, size_t len)
{
    if (strchr(name, '/')) {
        snprintf(buf, len, "%s", name);
        return access(buf, X_OK); /* errno says why not */
    }
    const char *path = getenv("PATH");
    if (!path || !*path)
        path = "/usr/local/bin:/usr/bin:/bin";
    while (*path) {
        size_t n = strcspn(path, ":");
        snprintf(buf, len, "%.*s%s%s", (int)n, n ? path : ".", "/", name);
        if (access(buf, X_OK) == 0)
            return 0;
        path += n + (path[n] == ':');
    }
    errno = ENOENT;
    return -1;
}

/* Lower one resource limit of the calling process to want (0 = leave it),
 * with the hard limit grace above it: RLIMIT_CPU's soft limit sends
 * SIGXCPU, which the report can name, before the hard limit's SIGKILL.
 * Never above the hard limit we were given. Async-signal-safe. */
static void lower_limit(int resource, rlim_t want, rlim_t grace)
{
    struct rlimit rl;
    if (want == 0 || getrlimit(resource, &rl) < 0)
        return;
    rlim_t hard = want + grace;
    if (rl.rlim_max != RLIM_INFINITY && hard > rl.rlim_max)
        hard = rl.rlim_max;
    rl.rlim_cur = want < hard ? want : hard;
    rl.rlim_max = hard;
    setrlimit(resource, &rl);
}

/* The forked child: its own process group (so a timeout kills the
 * compiler's own children, cc1 and as, too), the signals a server blocks
 * or ignores back to their defaults (so the limits' signals land), output
 * into the pipe, the limits, then the compiler. Only async-signal-safe
 * calls: the parent has other threads. */
static _Noreturn void child_exec(const struct hp_compiler *c, const char *path,
                                 char *const argv[], int outfd)
{
    static const char msg[] = "cannot execute ";
    sigset_t none;

    setpgid(0, 0);
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_DFL);
    signal(SIGXCPU, SIG_DFL);
    signal(SIGXFSZ, SIG_DFL);
    dup2(outfd, 1);
    dup2(outfd, 2);
    int fd = open("/dev/null", O_RDONLY);
    if (fd > 0) {
        dup2(fd, 0);
        close(fd);
    }
    lower_limit(RLIMIT_AS, (rlim_t)c->mem_limit, 0);
    lower_limit(RLIMIT_CPU, (rlim_t)c->cpu_limit, 1);
    lower_limit(RLIMIT_FSIZE, (rlim_t)c->file_limit, 0);
    execve(path, argv, environ);
    /* "cannot execute PATH: WHY": strerrordesc_np reads a constant table
     * (no locale, no allocation), unlike strerror. */
    const char *why = strerrordesc_np(errno);
    struct iovec iov[] = {
        {(void *)(uintptr_t)msg, sizeof msg - 1},
        {(void *)(uintptr_t)path, strlen(path)},
        {(void *)(uintptr_t) ": ", 2},
        {(void *)(uintptr_t)(why ? why : "?"), strlen(why ? why : "?")},
        {(void *)(uintptr_t) "\n", 1}};
    if (writev(2, iov, 5) < 0)
        _exit(127);
    _exit(127);
}

/* Read fd into out (capped) until end of file; false if the deadline came
 * first. */
static bool drain(int fd, double deadline, struct hp_buf *out)
{
    for (;;) {
        char chunk[4096];
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int left = (int)((deadline - hp_now()) * 1000);
        if (left <= 0)
            return false;
        int pr = poll(&pfd, 1, left);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr == 0)
            return false;
        ssize_t n = read(fd, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return true;
        if (out->len < HP_DIAG_MAX)
            hp_buf_append(out, chunk, (size_t)n);
    }
}

/* Wait for pid until the deadline; false if it is still running then (a
 * compiler that closed its output but does not exit). */
static bool reap(pid_t pid, double deadline, int *ws)
{
    for (;;) {
        pid_t r = waitpid(pid, ws, WNOHANG);
        if (r == pid || (r < 0 && errno != EINTR))
            return true;
        if (hp_now() >= deadline)
            return false;
        usleep(2000);
    }
}

/* The compilers running now (their process groups), so a stopping server
 * kills them with their children (hp_compile_kill_running) as a timeout
 * does: a --cc wrapper's own children outlived the server otherwise. */
#define RUNNING_MAX 256
static atomic_int running_own[RUNNING_MAX];
/* A worker's list is in its guard slot (hp_compile_share_running), where
 * the supervisor finds the groups to kill when the worker dies. */
static atomic_int *running = running_own;
static int running_n = RUNNING_MAX;
static atomic_bool killing;

static void kill_group(pid_t pid)
{
    kill(-pid, SIGKILL);
    kill(pid, SIGKILL);
}

void hp_compile_share_running(_Atomic int *pgids, int n)
{
    running = pgids;
    running_n = n;
}

static int running_add(pid_t pid)
{
    for (int i = 0; i < running_n; i++) {
        int none = 0;
        if (atomic_compare_exchange_strong(&running[i], &none, (int)pid)) {
            if (atomic_load(&killing)) /* the server stops: no new compile */
                kill_group(pid);
            return i;
        }
    }
    return -1; /* not on the list: only its own timeout stops it */
}

static void running_remove(int slot)
{
    if (slot >= 0)
        atomic_store(&running[slot], 0);
}

void hp_compile_kill_running(void)
{
    atomic_store(&killing, true);
    for (int i = 0; i < running_n; i++) {
        int pid = atomic_load(&running[i]);
        if (pid > 0)
            kill_group(pid);
    }
}

/*
 * Run the compiler argv under c's limits, collecting stdout+stderr into out
 * (capped at HP_DIAG_MAX), for at most c->timeout_s seconds of wall clock:
 * then its whole process group is killed. How it ended goes to rr.
 */
static void run_capture(const struct hp_compiler *c, char *const argv[],
                        struct hp_buf *out, struct run_result *rr)
{
    char path[PATH_MAX];
    int pipefd[2], ws = 0;
    double deadline = hp_now() + c->timeout_s;

    rr->end = RUN_NOT_RUN;
    rr->code = 0;
    if (find_program(argv[0], path, sizeof path) < 0 ||
        pipe2(pipefd, O_CLOEXEC) < 0) {
        hp_buf_printf(out, "cannot run %s: %s\n", argv[0], strerror(errno));
        return;
    }
    pid_t pid = fork();
    if (pid == 0)
        child_exec(c, path, argv, pipefd[1]);
    int fork_errno = errno;
    close(pipefd[1]);
    if (pid < 0) {
        close(pipefd[0]);
        hp_buf_printf(out, "cannot run %s: %s\n", argv[0],
                      strerror(fork_errno));
        return;
    }
    setpgid(pid, pid); /* also here: the child may not have run yet */
    int slot = running_add(pid);
    bool in_time = drain(pipefd[0], deadline, out) && reap(pid, deadline, &ws);
    close(pipefd[0]);
    if (!in_time) {
        kill_group(pid);
        while (waitpid(pid, &ws, 0) < 0 && errno == EINTR)
            ;
        running_remove(slot);
        rr->end = RUN_TIMED_OUT;
        return;
    }
    /* (The group may outlive its reaped leader: the window in which the
     * pid could be reused is this line's.) */
    running_remove(slot);
    if (WIFSIGNALED(ws)) {
        rr->end = RUN_SIGNALED;
        rr->code = WTERMSIG(ws);
    } else {
        rr->end = RUN_EXITED;
        rr->code = WIFEXITED(ws) ? WEXITSTATUS(ws) : -1;
    }
}

/* "2G", "256M", "1500K" or bytes: the way the setting is written. */
static void size_text(size_t v, char *buf, size_t len)
{
    static const char units[] = "GMK";
    for (int i = 0; i < 3; i++) {
        size_t u = (size_t)1 << (30 - 10 * i);
        if (v >= u && v % u == 0) {
            snprintf(buf, len, "%zu%c", v / u, units[i]);
            return;
        }
    }
    snprintf(buf, len, "%zu", v);
}

/* Which limit, if any, stopped the compiler: from the signal that killed it,
 * or from what gcc's driver says when one of its programs (cc1, as, ld) died
 * or ran out of memory. NULL for an ordinary failure (the page's error). */
static const char *limit_hit(const struct hp_compiler *c,
                             const struct run_result *rr, const char *text)
{
    int sig = rr->end == RUN_SIGNALED ? rr->code : 0;
    if (c->cpu_limit && (sig == SIGXCPU || strstr(text, "CPU time limit")))
        return "cpu";
    if (c->file_limit && (sig == SIGXFSZ || strstr(text, "File size limit")))
        return "file";
    if (c->mem_limit &&
        (strstr(text, "out of memory") || strstr(text, "memory exhausted") ||
         strstr(text, "Cannot allocate memory") ||
         strstr(text, "std::bad_alloc")))
        return "memory";
    if ((c->mem_limit || c->cpu_limit) &&
        (sig == SIGKILL || strstr(text, "Killed signal terminated")))
        return "killed";
    return NULL;
}

/*
 * The diagnostic for a failed compile: the compiler's own messages, after a
 * paragraph that names the limit or timeout that stopped it and the setting
 * to raise (docs/configuration.md, "Compile limits"). Caller frees.
 */
static char *explain_failure(const struct hp_compiler *c,
                             const struct run_result *rr,
                             const struct hp_buf *log)
{
    const char *text = log->len ? log->p : "";
    const char *hit = limit_hit(c, rr, text);
    char why[512], sz[32];

    if (rr->end == RUN_TIMED_OUT) {
        snprintf(why, sizeof why,
                 "the compile was stopped after %d s: it exceeded the "
                 "compile timeout (compile-timeout = %d s). If this page "
                 "really needs longer, raise --compile-timeout.",
                 c->timeout_s, c->timeout_s);
    } else if (hit && strcmp(hit, "memory") == 0) {
        size_text(c->mem_limit, sz, sizeof sz);
        snprintf(why, sizeof why,
                 "the compiler ran out of memory: it may use %s of address "
                 "space (compile-memory-limit = %s). Including a device or a "
                 "huge file does this; if the page really needs more, raise "
                 "--compile-memory-limit (0 = no limit).",
                 sz, sz);
    } else if (hit && strcmp(hit, "cpu") == 0) {
        snprintf(why, sizeof why,
                 "the compiler was stopped by the CPU time limit "
                 "(compile-cpu-limit = %d s). If this page really needs "
                 "longer, raise --compile-cpu-limit (0 = no limit).",
                 c->cpu_limit);
    } else if (hit && strcmp(hit, "file") == 0) {
        size_text(c->file_limit, sz, sizeof sz);
        snprintf(why, sizeof why,
                 "the compiler was stopped writing a file larger than the "
                 "file size limit (compile-file-limit = %s). If this page "
                 "really builds an object that large, raise "
                 "--compile-file-limit (0 = no limit).",
                 sz);
    } else if (hit) {
        size_text(c->mem_limit, sz, sizeof sz);
        snprintf(why, sizeof why,
                 "the compiler was killed (SIGKILL): by the CPU time limit's "
                 "hard limit (compile-cpu-limit = %d s), by the memory limit "
                 "(compile-memory-limit = %s) or by the system's "
                 "out-of-memory killer. Raise --compile-cpu-limit or "
                 "--compile-memory-limit if this page really needs more.",
                 c->cpu_limit, c->mem_limit ? sz : "off");
    } else if (rr->end == RUN_NOT_RUN ||
               (rr->end == RUN_EXITED && rr->code == 127 &&
                strncmp(text, "cannot execute ", 15) == 0)) {
        return hp_xasprintf(HP_DIAG_NO_COMPILER "%s (the cc setting, --cc)",
                            text);
    } else if (rr->end == RUN_SIGNALED) {
        return hp_xasprintf("%s%sthe compiler was killed by signal %d (%s)",
                            text, *text ? "\n" : "", rr->code,
                            strsignal(rr->code));
    } else {
        return hp_xstrdup(*text ? text : "the compiler failed silently");
    }
    return hp_xasprintf("%s%s%s", why, *text ? "\n\n" : "", text);
}

/*
 * Failed compiles are cached as <key>.err, so one broken save costs one
 * compiler run for every worker process and every request: the first line
 * is HP_ERR_MAGIC and the time (CLOCK_REALTIME ns) the compiler started,
 * the rest the diagnostic.
 *
 * The key covers the page's bytes, not its headers, and a failed compile
 * gives no dependency list to check them by: gcc writes no -MD file when
 * an #include is missing, the commonest failure, and the fix is then a
 * file that did not exist. So a record holds only while nothing the
 * compile could have read has changed since it started: no file or
 * directory under the document root (the quote includes; a new file
 * changes its directory) and none of the include directories (hotpub's,
 * -I/-isystem/-iquote of --cflags, /usr/include, /usr/local/include: an
 * installed -dev package) has a ctime at or after that start. ctime, as
 * for headers, because the kernel sets it (tar and rsync -t set mtimes).
 * Any write under the root costs at most one more compile; headers in
 * existing subdirectories of the system include directories are not
 * looked at (touch the page, or remove <cache-dir>/obj/<key>.err).
 *
 * Only the compiler's own verdict is cached (it exited with a status below
 * 126); a limit, the timeout, a signal or a compiler that did not run says
 * something about the machine, not the source, and is not.
 */
#define HP_ERR_MAGIC "hotpub-failed-compile 1 "
#define HP_WALK_MAX_DEPTH 64

static bool failure_cacheable(const struct hp_compiler *c,
                              const struct run_result *rr,
                              const struct hp_buf *log)
{
    return rr->end == RUN_EXITED && rr->code != 0 && rr->code < 126 &&
           !limit_hit(c, rr, log->len ? log->p : "");
}

static bool changed_since(const struct stat *st, int64_t t0)
{
    return (int64_t)st->st_ctim.tv_sec * 1000000000 + st->st_ctim.tv_nsec >= t0;
}

/* Whether anything below the directory dfd (which this closes) changed at
 * or after t0, skipping names starting with '.' as the watcher does. */
static bool tree_changed_since(int dfd, int64_t t0, int depth)
{
    DIR *d = fdopendir(dfd);
    struct dirent *de;
    bool changed = false;

    if (!d) {
        close(dfd);
        return true; /* cannot tell: compile again */
    }
    while (!changed && (de = readdir(d))) {
        struct stat st;
        if (de->d_name[0] == '.')
            continue;
        if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
            continue; /* gone meanwhile: its directory's ctime says so */
        changed = changed_since(&st, t0);
        if (!changed && S_ISDIR(st.st_mode) && depth < HP_WALK_MAX_DEPTH) {
            int sub = openat(dirfd(d), de->d_name,
                             O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub >= 0)
                changed = tree_changed_since(sub, t0, depth + 1);
        }
    }
    closedir(d);
    return changed;
}

static bool dir_changed_since(const char *dir, int64_t t0)
{
    struct stat st;
    return stat(dir, &st) == 0 && changed_since(&st, t0);
}

/* The include directories a failure could be fixed in, outside the root. */
static bool include_dirs_changed_since(const struct hp_compiler *c, int64_t t0)
{
    if (dir_changed_since(c->include_dir, t0) ||
        dir_changed_since("/usr/include", t0) ||
        dir_changed_since("/usr/local/include", t0))
        return true;
    for (char **f = c->flags; *f; f++) {
        static const char *const opts[] = {"-I", "-isystem", "-iquote"};
        for (size_t i = 0; i < sizeof opts / sizeof *opts; i++) {
            size_t n = strlen(opts[i]);
            if (strncmp(*f, opts[i], n) != 0)
                continue;
            const char *dir = (*f)[n] ? *f + n : f[1];
            if (dir && dir_changed_since(dir, t0))
                return true;
        }
    }
    return false;
}

static bool failure_still_holds(const struct hp_compiler *c, int64_t t0)
{
    char croot[PATH_MAX];
    if (include_dirs_changed_since(c, t0) || !realpath(c->root, croot))
        return false;
    struct stat st;
    if (stat(croot, &st) < 0 || changed_since(&st, t0))
        return false;
    int dfd = open(croot, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    return dfd >= 0 && !tree_changed_since(dfd, t0, 0);
}

/* The cached diagnostic of key's failed compile if it still holds (the
 * caller frees it), else NULL. */
static char *failure_lookup(const struct hp_compiler *c, const char *key)
{
    char *path = hp_xasprintf("%s/%s.err", c->objdir, key);
    struct hp_buf b = {0};
    char *diag = NULL;
    size_t m = sizeof HP_ERR_MAGIC - 1;

    if (read_file(path, &b) == 0 && b.len > m &&
        memcmp(b.p, HP_ERR_MAGIC, m) == 0) {
        hp_buf_append(&b, "", 1);
        char *end;
        long long t0 = strtoll(b.p + m, &end, 10);
        if (*end == '\n' && failure_still_holds(c, t0)) {
            diag = hp_xstrdup(end + 1);
            utimensat(AT_FDCWD, path, NULL, 0); /* recently used */
        }
    }
    hp_buf_free(&b);
    free(path);
    return diag;
}

/* Record key's failed compile, started at t0 (written whole, then renamed
 * in, so a reader never sees half of one). */
static void failure_store(struct hp_compiler *c, const char *key, int64_t t0,
                          const char *diag)
{
    unsigned long n = atomic_fetch_add(&c->seq, 1);
    char *tmp = hp_xasprintf("%s/tmp-%d-%lu.err", c->objdir, getpid(), n);
    char *path = hp_xasprintf("%s/%s.err", c->objdir, key);
    struct hp_buf b = {0};

    hp_buf_printf(&b, "%s%lld\n%s", HP_ERR_MAGIC, (long long)t0, diag);
    if (write_file(tmp, b.p, b.len) < 0 || rename(tmp, path) < 0)
        unlink(tmp);
    hp_buf_free(&b);
    free(tmp);
    free(path);
}

static char *dirname_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash || slash == path)
        return hp_xstrdup("/");
    return strndup(path, (size_t)(slash - path));
}

/*
 * The compile and link flags of a page's HP_PKG packages, from pkg-config
 * (run as a child like the compiler: no shell, the same limits). Words
 * are split on white space, as make would. Only on a compile-cache miss.
 */
struct pkg_flags {
    char **cflags, **libs; /* NULL-terminated; NULL when there are none */
    size_t ncflags, nlibs;
};

static void words_append(char ***v, size_t *n, const char *text)
{
    char **w = split_words(text);
    size_t k = 0;
    while (w[k])
        k++;
    *v = hp_xrealloc(*v, (*n + k + 1) * sizeof **v);
    memcpy(*v + *n, w, k * sizeof *w);
    *n += k;
    (*v)[*n] = NULL;
    free(w); /* the words now belong to *v */
}

static void pkg_flags_free(struct pkg_flags *pf)
{
    for (size_t i = 0; i < pf->ncflags; i++)
        free(pf->cflags[i]);
    for (size_t i = 0; i < pf->nlibs; i++)
        free(pf->libs[i]);
    free(pf->cflags);
    free(pf->libs);
    memset(pf, 0, sizeof *pf);
}

/* pkg-config <what> <name>: 0 with its output in out, -1 with its
 * complaint in out, -2 when pkg-config itself did not run. */
static int pkg_query(const struct hp_compiler *c, const char *what,
                     const char *name, struct hp_buf *out)
{
    char prog[] = "pkg-config", opt[16], arg[HP_PKG_NAME_MAX];
    char *argv[] = {prog, opt, arg, NULL};
    struct run_result rr;

    snprintf(opt, sizeof opt, "%s", what);
    snprintf(arg, sizeof arg, "%s", name);
    out->len = 0;
    run_capture(c, argv, out, &rr);
    hp_buf_append(out, "", 1);
    out->len--;
    if (rr.end == RUN_NOT_RUN || (rr.end == RUN_EXITED && rr.code == 127))
        return -2;
    return rr.end == RUN_EXITED && rr.code == 0 ? 0 : -1;
}

static int pkg_resolve(const struct hp_compiler *c, const char *src,
                       const struct hp_pkgs *pk, struct pkg_flags *pf,
                       char **diag)
{
    static const char *const what[] = {"--cflags", "--libs"};
    struct hp_buf out = {0};
    int rc = 0;

    for (size_t i = 0; i < pk->n && rc == 0; i++) {
        for (int k = 0; k < 2 && rc == 0; k++) {
            rc = pkg_query(c, what[k], pk->name[i], &out);
            if (rc == -2)
                *diag = hp_xasprintf(
                    "%s:%d: error: HP_PKG(\"%s\"): cannot run pkg-config "
                    "(install it: apt-get install pkg-config)\n%s",
                    src, pk->line[i], pk->name[i], out.p ? out.p : "");
            else if (rc < 0)
                *diag = hp_xasprintf("%s:%d: error: HP_PKG(\"%s\"): "
                                     "pkg-config knows no package \"%s\" "
                                     "(install its -dev package, or set "
                                     "PKG_CONFIG_PATH for the server)\n%s",
                                     src, pk->line[i], pk->name[i], pk->name[i],
                                     out.p ? out.p : "");
            else if (k == 0)
                words_append(&pf->cflags, &pf->ncflags, out.p);
            else
                words_append(&pf->libs, &pf->nlibs, out.p);
        }
    }
    hp_buf_free(&out);
    if (rc < 0)
        pkg_flags_free(pf);
    return rc < 0 ? -1 : 0;
}

/* The compiler's command line, into argv (room for it all, from
 * argv_room). The packages' compile flags go before the source, their
 * libraries after it, behind --no-as-needed: a page's object must record
 * them as needed (DT_NEEDED) even when the linker defaults to --as-needed,
 * or dlopen cannot resolve their symbols. */
struct cc_args {
    char *inc, *srcdir, *tmp_d, *tmp_so, *tmp_c, *tmp_o;
    bool pkgs; /* the page declares HP_PKG packages */
};

static size_t argv_room(const struct hp_compiler *c, const struct pkg_flags *pf)
{
    size_t nf = 0;
    for (char **f = c->flags; *f; f++)
        nf++;
    return nf + pf->ncflags + pf->nlibs + 32;
}

/* What both compilers are given after their own flags: hotpub.h's
 * directory, the page's own (quote_flag: -iquote, or -I for tcc), the
 * packages' cflags, the dependency file, the output and the source.
 * Returns the next free index of argv. */
static size_t source_args(const struct pkg_flags *pf, const struct cc_args *ca,
                          char *quote_flag, char *out, char **argv, size_t a)
{
    argv[a++] = ca->inc;
    argv[a++] = quote_flag;
    argv[a++] = ca->srcdir;
    for (size_t i = 0; i < pf->ncflags; i++)
        argv[a++] = pf->cflags[i];
    argv[a++] = "-MD";
    argv[a++] = "-MF";
    argv[a++] = ca->tmp_d;
    argv[a++] = "-o";
    argv[a++] = out;
    argv[a++] = ca->tmp_c;
    return a;
}

/* The flags every page compile starts with, the precompiled header's
 * too (a .gch is used only by a compile with the same flags): gcc (or
 * --cc) with --cflags; the fast tier's fallback appends -O0 (the last -O
 * wins). Returns the next free index of argv. */
static size_t cc_flags(const struct hp_compiler *c, bool fast, char **argv)
{
    size_t a = 0;
    argv[a++] = c->cc;
    for (char **f = c->flags; *f; f++)
        argv[a++] = *f;
    if (fast)
        argv[a++] = "-O0";
    argv[a++] = "-g"; /* a crash page names the source line (crashpage.c) */
    /* DWARF 5 puts the compiled copy (tmp-*.c) at file index 0 and the
     * #line'd page at 1, and addr2line 2.40 (Debian 12) answers with the
     * copy's name; DWARF 4's table holds the page's name where it looks. */
    if (!c->is_tcc)
        argv[a++] = "-gdwarf-4";
    argv[a++] = "-fPIC";
    argv[a++] = "-fvisibility=hidden";
    /* A frame larger than a page (a big local array, a VLA, alloca) is
     * probed a page at a time, so it meets the handler stack's guard page
     * and faults there instead of jumping it into another mapping (a 4 MiB
     * array on a 512 KiB handler stack). tcc has no such option: handler
     * and event-loop threads get a larger guard for its pages (pool.c,
     * server.c; docs/security.md). */
    if (!c->is_tcc)
        argv[a++] = "-fstack-clash-protection";
    /* `return strlen(p);` compiled as a jump leaves no frame of the page
     * (or module hook) on the stack, and a fault inside libc could then
     * not be traced back to the page's line (guard.c's page_call,
     * hook_call): every call keeps its frame. */
    if (!c->is_tcc)
        argv[a++] = "-fno-optimize-sibling-calls";
    /* A call to an undeclared function is an error at its file:line, not
     * an "undefined symbol" when the object is loaded. */
    argv[a++] = c->is_tcc ? "-Wimplicit-function-declaration"
                          : "-Werror=implicit-function-declaration";
    return a;
}

/* The page compiler's command line: a shared object in one run, or
 * (object) only the compile, into ca->tmp_o, for ld to link. The fast
 * tier finds the precompiled hotpub.h first, when there is one. */
static void build_argv(const struct hp_compiler *c, const struct pkg_flags *pf,
                       const struct cc_args *ca, bool fast, bool object,
                       char **argv)
{
    size_t a = cc_flags(c, fast, argv);
    argv[a++] = object ? "-c" : "-shared";
    if (fast && c->pch_inc)
        argv[a++] = c->pch_inc;
    /* tcc has no -iquote */
    a = source_args(pf, ca, c->is_tcc ? "-I" : "-iquote",
                    object ? ca->tmp_o : ca->tmp_so, argv, a);
    if (!object && pf->nlibs)
        argv[a++] = "-Wl,--no-as-needed";
    for (size_t i = 0; !object && i < pf->nlibs; i++)
        argv[a++] = pf->libs[i];
    argv[a] = NULL;
}

/* tcc -c: an object with debug info; -Werror makes its implicit
 * declaration warning an error (tcc has no per-warning -Werror=). */
static void tcc_argv(const struct hp_compiler *c, const struct pkg_flags *pf,
                     const struct cc_args *ca, char **argv)
{
    size_t a = 0;
    argv[a++] = c->tcc;
    argv[a++] = "-c";
    argv[a++] = "-fPIC";
    argv[a++] = "-g";
    argv[a++] = "-Wimplicit-function-declaration";
    argv[a++] = "-Werror";
    argv[a++] = c->tcc_inc; /* first: its sys/cdefs.h before libc's */
    a = source_args(pf, ca, "-I", ca->tmp_o, argv, a);
    argv[a] = NULL;
}

/* ld -shared -z noexecstack: tcc 0.9.27 writes no PT_GNU_STACK header,
 * and loading such an object makes every thread stack executable. */
static void ld_argv(const struct hp_compiler *c, const struct pkg_flags *pf,
                    const struct cc_args *ca, char **argv)
{
    size_t a = 0;
    char **lf = c->link_files;
    argv[a++] = c->ld;
    argv[a++] = "-shared";
    argv[a++] = "-z";
    argv[a++] = "noexecstack";
    argv[a++] = "-o";
    argv[a++] = ca->tmp_so;
    if (lf) {
        argv[a++] = lf[0]; /* crti.o */
        argv[a++] = lf[1]; /* crtbeginS.o: __dso_handle, for atexit */
    }
    argv[a++] = ca->tmp_o;
    if (c->libtcc1) /* what tcc's code calls: __va_arg, conversions */
        argv[a++] = c->libtcc1;
    if (pf->nlibs)
        argv[a++] = "--no-as-needed";
    for (size_t i = 0; i < pf->nlibs; i++)
        if (strncmp(pf->libs[i], "-l", 2) == 0 ||
            strncmp(pf->libs[i], "-L", 2) == 0)
            argv[a++] = pf->libs[i];
    for (size_t i = 2; lf && i < 6; i++) /* libgcc.a ... crtn.o */
        argv[a++] = lf[i];
    argv[a] = NULL;
}

static void link_prepare(struct hp_compiler *c);

/* The fast tier with tcc: compile, then link. true when that settled the
 * compile: both runs succeeded, or one was stopped by the timeout or a
 * limit (rr and log then hold that verdict: a page that includes a FIFO or
 * a device would only stop gcc the same way, doubling the wait). false when
 * tcc refused the page (it lacks some GNU extensions): the caller falls
 * back to the page compiler, whose verdict is the one reported. */
static bool run_tcc(struct hp_compiler *c, const struct pkg_flags *pf,
                    const struct cc_args *ca, char **argv, struct hp_buf *log,
                    struct run_result *rr)
{
    link_prepare(c);
    tcc_argv(c, pf, ca, argv);
    atomic_fetch_add(&c->runs, 1);
    run_capture(c, argv, log, rr);
    bool ok = rr->end == RUN_EXITED && rr->code == 0;
    if (ok) {
        log->len = 0;
        ld_argv(c, pf, ca, argv);
        run_capture(c, argv, log, rr);
        ok = rr->end == RUN_EXITED && rr->code == 0;
    }
    if (ok || rr->end == RUN_TIMED_OUT ||
        limit_hit(c, rr, log->len ? log->p : "")) {
        if (ok)
            log->len = 0;
        return true;
    }
    log->len = 0; /* the fallback's messages replace tcc's */
    return false;
}

/* What a generated symbol in a diagnostic stands for in the page's own
 * words: "prepare hook", not hp__hook_prepare. In place; caller frees. */
static char *user_words(char *text)
{
    static const struct {
        const char *gen, *user, *suffix;
    } map[] = {{"hp__hook_", "", " hook"},
               {"hp__handler_", "", " handler"},
               {"hp__init", "init", " (HP_INIT)"},
               {"hp__fini", "fini", " (HP_FINI)"}};
    struct hp_buf out = {0};
    const char *p = text;

    while (*p) {
        size_t i, n = sizeof map / sizeof *map;
        for (i = 0; i < n; i++)
            if (strncmp(p, map[i].gen, strlen(map[i].gen)) == 0)
                break;
        if (i == n) {
            hp_buf_append(&out, p++, 1);
            continue;
        }
        size_t id = strspn(p + strlen(map[i].gen),
                           "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRS"
                           "TUVWXYZ0123456789_");
        if (id == 0 && !*map[i].user) { /* hp__hook_##name: a macro's */
            hp_buf_append(&out, p++, 1);
            continue;
        }
        p += strlen(map[i].gen);
        hp_buf_puts(&out, map[i].user);
        hp_buf_append(&out, p, id);
        hp_buf_puts(&out, map[i].suffix);
        p += id;
    }
    hp_buf_append(&out, "", 1);
    free(text);
    return out.p;
}

/* ---- the fast tier's gcc fallback --------------------------------------
 *
 * When tcc is missing or refuses a page, the fast tier compiles with the
 * page compiler at -O0, in two steps where that is faster than one (see
 * docs/design.md, "Tiered compile", for the figures): `cc -c` against a
 * precompiled hotpub.h, then ld itself with exactly the start files and
 * archives `cc -shared` would give it (crtbeginS.o's __dso_handle for
 * atexit, which libc_nonshared.a provides; libgcc.a for __divti3 and
 * friends), but without the driver and collect2, and without linking
 * libc.so (as for tcc's objects, the server's own libc resolves the rest
 * when the object is loaded).
 */

/* What the page compiler prints for opt (-print-file-name=crti.o,
 * -print-libgcc-file-name): an absolute path, or NULL (it prints the bare
 * name when it has no such file). */
static char *cc_print(struct hp_compiler *c, const char *opt)
{
    size_t nf = 0;
    for (char **f = c->flags; *f; f++)
        nf++;
    char **argv = hp_xcalloc(nf + 3, sizeof *argv);
    struct hp_buf out = {0};
    struct run_result rr;
    char arg[64];

    snprintf(arg, sizeof arg, "%s", opt);
    argv[0] = c->cc;
    memcpy(argv + 1, c->flags, nf * sizeof *argv);
    argv[nf + 1] = arg;
    run_capture(c, argv, &out, &rr);
    free(argv);
    hp_buf_append(&out, "", 1);
    out.p[strcspn(out.p, "\n")] = '\0';
    bool ok = rr.end == RUN_EXITED && rr.code == 0 && out.p[0] == '/' &&
              access(out.p, R_OK) == 0;
    if (!ok)
        hp_buf_free(&out);
    return ok ? out.p : NULL;
}

/* The files around the object on a direct ld command line, in the order
 * gcc -shared gives them; NULL if the compiler does not know one. */
static char **find_link_files(struct hp_compiler *c)
{
    static const char *const opt[] = {
        "-print-file-name=crti.o",    "-print-file-name=crtbeginS.o",
        "-print-libgcc-file-name",    "-print-file-name=libc_nonshared.a",
        "-print-file-name=crtendS.o", "-print-file-name=crtn.o"};
    size_t n = sizeof opt / sizeof *opt;
    char **files = hp_xcalloc(n + 1, sizeof *files);

    for (size_t i = 0; i < n; i++) {
        if (!(files[i] = cc_print(c, opt[i]))) {
            for (size_t k = 0; k < i; k++)
                free(files[k]);
            free(files);
            return NULL;
        }
    }
    return files;
}

/* tcc's runtime archive, from `tcc -print-search-dirs` ("install: DIR"),
 * or NULL: code tcc generates calls into it (va_arg's __va_arg, float to
 * integer conversions), and ld does not add it by itself. */
static char *find_libtcc1(struct hp_compiler *c)
{
    char *argv[] = {c->tcc, "-print-search-dirs", NULL};
    struct hp_buf out = {0};
    struct run_result rr;
    char *found = NULL;

    run_capture(c, argv, &out, &rr);
    hp_buf_append(&out, "", 1);
    const char *p = strstr(out.p, "install: ");
    if (rr.end == RUN_EXITED && rr.code == 0 && p) {
        p += strlen("install: ");
        found = hp_xasprintf("%.*s/libtcc1.a", (int)strcspn(p, "\n"), p);
        if (access(found, R_OK) != 0) {
            free(found);
            found = NULL;
        }
    }
    hp_buf_free(&out);
    return found;
}

/* The files both direct links need (the page compiler's start files and
 * archives; tcc's runtime), looked for once, by the first fast compile. */
static void link_prepare(struct hp_compiler *c)
{
    pthread_mutex_lock(&c->fb_mu);
    if (!c->link_ready && c->ld) {
        if (!c->is_tcc)
            c->link_files = find_link_files(c);
        if (c->tcc && !(c->libtcc1 = find_libtcc1(c)))
            hp_log_info("no libtcc1.a beside %s: pages that use va_arg "
                        "build with the optimized tier only",
                        c->tcc);
    }
    c->link_ready = true;
    pthread_mutex_unlock(&c->fb_mu);
}

/* Build <objdir>/pch-<flags key>/hotpub.h.gch (with hotpub.h beside it, a
 * symlink: gcc looks for name.gch where it would find name, and reads the
 * header itself when it finds the .gch unusable), with the flags of the
 * fast compile. Written to a temporary name and renamed: several worker
 * processes may build it at once. Returns that directory, or NULL. */
static char *build_pch(struct hp_compiler *c)
{
    char *dir = hp_xasprintf("%s/pch-%s", c->objdir, c->flags_key);
    char *gch = hp_xasprintf("%s/hotpub.h.gch", dir);
    char *hdr = hp_xasprintf("%s/hotpub.h", dir);
    char *orig = hp_xasprintf("%s/hotpub.h", c->include_dir);
    unsigned long n = atomic_fetch_add(&c->seq, 1);
    char *tmp = hp_xasprintf("%s/tmp-%d-%lu", dir, getpid(), n);
    struct hp_buf log = {0};
    struct run_result rr = {RUN_EXITED, 0};
    /* found: in use again, for pch_gc */
    bool ok = access(hdr, R_OK) == 0 && utimensat(AT_FDCWD, gch, NULL, 0) == 0;

    if (!ok && hp_mkdirs(dir, 0700) == 0 &&
        (access(hdr, R_OK) == 0 ||
         (symlink(orig, tmp) == 0 && rename(tmp, hdr) == 0))) {
        size_t nf = 0;
        for (char **f = c->flags; *f; f++)
            nf++;
        char **argv = hp_xcalloc(nf + 16, sizeof *argv);
        size_t a = cc_flags(c, true, argv);
        argv[a++] = "-x";
        argv[a++] = "c-header";
        argv[a++] = "-o";
        argv[a++] = tmp;
        argv[a++] = orig;
        run_capture(c, argv, &log, &rr);
        free(argv);
        ok = rr.end == RUN_EXITED && rr.code == 0 && rename(tmp, gch) == 0;
    }
    if (!ok) {
        hp_log_error("no precompiled hotpub.h for the fast tier's gcc "
                     "fallback (pages compile without it): %s%s",
                     log.len ? "" : strerror(errno), log.len ? log.p : "");
        unlink(tmp);
        free(dir);
        dir = NULL;
    }
    hp_buf_free(&log);
    free(tmp);
    free(orig);
    free(hdr);
    free(gch);
    return dir;
}

/* The fallback's precompiled header and link files: looked for (and the
 * header built) once, by the first fast compile that needs them. Neither
 * is tried with tcc or clang as the page compiler (clang reads no .gch
 * by itself). */
static void fallback_prepare(struct hp_compiler *c)
{
    link_prepare(c);
    pthread_mutex_lock(&c->fb_mu);
    if (!c->fb_ready && !c->is_tcc && !strstr(c->cc, "clang")) {
        char *dir = build_pch(c);
        if (dir)
            c->pch_inc = hp_xasprintf("-I%s", dir);
        free(dir);
    }
    c->fb_ready = true;
    pthread_mutex_unlock(&c->fb_mu);
}

/* ld -shared of the fallback's object with link_files around it. */
static void direct_ld_argv(const struct hp_compiler *c,
                           const struct cc_args *ca, char **argv)
{
    char **lf = c->link_files;
    size_t a = 0;
    argv[a++] = c->ld;
    argv[a++] = "-shared";
    argv[a++] = "--eh-frame-hdr"; /* unwinding, as gcc -shared links */
    argv[a++] = "-z";
    argv[a++] = "noexecstack";
    argv[a++] = "-o";
    argv[a++] = ca->tmp_so;
    argv[a++] = lf[0]; /* crti.o */
    argv[a++] = lf[1]; /* crtbeginS.o */
    argv[a++] = ca->tmp_o;
    for (size_t i = 2; i < 6; i++) /* libgcc.a ... crtn.o */
        argv[a++] = lf[i];
    argv[a] = NULL;
}

/* The fallback in two runs, cc -c then ld. false if that cannot be done
 * (a page with HP_PKG packages keeps cc -shared: their libraries need the
 * driver's view of the search path) or ld failed: the caller then runs cc
 * -shared, whose verdict is the one reported. A failed cc -c is the
 * verdict itself, in log and rr. */
static bool run_gcc_ld(struct hp_compiler *c, const struct pkg_flags *pf,
                       const struct cc_args *ca, char **argv,
                       struct hp_buf *log, struct run_result *rr)
{
    if (ca->pkgs || !c->link_files)
        return false;
    build_argv(c, pf, ca, true, true, argv);
    atomic_fetch_add(&c->runs, 1);
    run_capture(c, argv, log, rr);
    if (rr->end != RUN_EXITED || rr->code != 0)
        return true;
    struct hp_buf ld_log = {0};
    struct run_result ld_rr;
    direct_ld_argv(c, ca, argv);
    run_capture(c, argv, &ld_log, &ld_rr);
    bool ok = ld_rr.end == RUN_EXITED && ld_rr.code == 0;
    if (!ok && !atomic_exchange(&c->ld_failed, true))
        hp_log_info("the fast tier's direct link failed, linking with %s "
                    "instead (said once): %s",
                    c->cc, ld_log.len ? ld_log.p : "");
    hp_buf_free(&ld_log);
    if (!ok)
        log->len = 0;
    return ok;
}

/* Run the compile proper into ca->tmp_so: tcc + ld for the fast tier when
 * it works, else the page compiler (at -O0 for the fast tier, with -c and
 * ld where it can). */
static void run_compile(struct hp_compiler *c, const struct pkg_flags *pf,
                        const struct cc_args *ca, bool fast, struct hp_buf *log,
                        struct run_result *rr)
{
    char **argv = hp_xcalloc(argv_room(c, pf), sizeof *argv);

    if (fast && c->tcc && run_tcc(c, pf, ca, argv, log, rr)) {
        free(argv);
        return;
    }
    if (fast)
        fallback_prepare(c);
    if (!fast || !run_gcc_ld(c, pf, ca, argv, log, rr)) {
        build_argv(c, pf, ca, fast, false, argv);
        atomic_fetch_add(&c->runs, 1);
        run_capture(c, argv, log, rr);
    }
    free(argv);
}

static void limited_store(struct hp_compiler *c, const char *key,
                          const char *diag)
{
    pthread_mutex_lock(&c->lim_mu);
    size_t n = sizeof c->limited / sizeof *c->limited;
    size_t i = c->nlimited++ % n;
    free(c->limited[i].diag);
    snprintf(c->limited[i].key, sizeof c->limited[i].key, "%s", key);
    c->limited[i].at = hp_now();
    c->limited[i].diag = hp_xstrdup(diag);
    pthread_mutex_unlock(&c->lim_mu);
}

/* The verdict of a compile of key that a limit stopped after since (the
 * one this caller waited for), or NULL. Caller frees. */
static char *limited_since(struct hp_compiler *c, const char *key, double since)
{
    char *d = NULL;
    pthread_mutex_lock(&c->lim_mu);
    for (size_t i = 0; i < sizeof c->limited / sizeof *c->limited; i++)
        if (c->limited[i].diag && c->limited[i].at >= since &&
            strcmp(c->limited[i].key, key) == 0)
            d = hp_xstrdup(c->limited[i].diag);
    pthread_mutex_unlock(&c->lim_mu);
    return d;
}

static int compile_source(struct hp_compiler *c, const char *src,
                          const struct hp_buf *text, const char *key,
                          const struct hp_pkgs *pkgs, bool fast,
                          struct hp_artifact *out, char **diag)
{
    unsigned long n = atomic_fetch_add(&c->seq, 1);
    char *tmp_c = hp_xasprintf("%s/tmp-%d-%lu.c", c->objdir, getpid(), n);
    char *tmp_so = hp_xasprintf("%s/tmp-%d-%lu.so", c->objdir, getpid(), n);
    char *tmp_o = hp_xasprintf("%s/tmp-%d-%lu.o", c->objdir, getpid(), n);
    char *tmp_d = hp_xasprintf("%s/tmp-%d-%lu.d", c->objdir, getpid(), n);
    char *final_so = hp_xasprintf("%s/%s.so", c->objdir, key);
    char *final_meta = hp_xasprintf("%s/%s.deps", c->objdir, key);
    char *from = staged(c, src);
    char *srcdir = dirname_of(from); /* quoted includes: the staged tree */
    char *inc = hp_xasprintf("-I%s", c->include_dir);
    struct hp_buf body = {0}, log = {0};
    int rc = -1;

    /* #line makes diagnostics and __FILE__ name the real page. */
    hp_buf_puts(&body, "#line 1 \"");
    for (const char *p = src; *p; p++) {
        if (*p == '"' || *p == '\\')
            hp_buf_append(&body, "\\", 1);
        hp_buf_append(&body, p, 1);
    }
    hp_buf_puts(&body, "\"\n");
    hp_buf_append(&body, text->p, text->len);

    int wrote = write_file(tmp_c, body.p, body.len);
    if (wrote < 0 && errno == ENOENT && hp_cache_subdir_restore(c->objdir) == 0)
        wrote = write_file(tmp_c, body.p, body.len); /* the cache dir went */
    if (wrote < 0) {
        *diag = hp_xasprintf("cannot write %s: %s", tmp_c, strerror(errno));
        goto out;
    }

    struct pkg_flags pf = {0};
    if (pkgs->n && pkg_resolve(c, src, pkgs, &pf, diag) < 0)
        goto out; /* not cached: installing the package is the fix */
    const struct cc_args ca = {inc,   srcdir, tmp_d,      tmp_so,
                               tmp_c, tmp_o,  pkgs->n > 0};

    /* Filesystem timestamps are coarser than the clock: step back a tick
     * so a header written just before the start still counts as racing. */
    int64_t started = realtime_ns() - 20000000;
    struct run_result rr;
    run_compile(c, &pf, &ca, fast, &log, &rr);
    pkg_flags_free(&pf);
    if (rr.end != RUN_EXITED || rr.code != 0) {
        *diag = user_words(explain_failure(c, &rr, &log));
        if (!c->stage && failure_cacheable(c, &rr, &log))
            failure_store(c, key, started, *diag);
        else if (rr.end != RUN_EXITED || limit_hit(c, &rr, log.p ? log.p : ""))
            limited_store(c, key, *diag);
        goto out;
    }

    struct hp_buf deps = {0}, meta = {0};
    if (read_file(tmp_d, &deps) == 0 && deps.p)
        parse_depfile(c, deps.p, src, out);
    hp_buf_free(&deps);
    hp_buf_puts(&meta, "");
    if (seal_deps(c, out, started, &meta) != 0) {
        hp_buf_free(&meta);
        rc = HP_COMPILE_RACED;
        goto out;
    }

    /* Object first, then the meta that makes it a hit: a crash between the
     * two leaves only an unused object behind. */
    int wr = rename(tmp_so, final_so) < 0 ||
             write_file(tmp_d, meta.p, meta.len) < 0 ||
             rename(tmp_d, final_meta) < 0;
    hp_buf_free(&meta);
    if (wr) {
        *diag = hp_xasprintf("cannot store %s: %s", final_so, strerror(errno));
        goto out;
    }
    out->so_path = final_so;
    final_so = NULL;
    rc = 0;
    char *stale_err = hp_xasprintf("%s/%s.err", c->objdir, key);
    unlink(stale_err); /* a failure recorded before a header was fixed */
    free(stale_err);
    if (n % HP_GC_EVERY == HP_GC_EVERY - 1)
        gc(c);
out:
    unlink(tmp_c);
    unlink(tmp_so);
    unlink(tmp_d);
    unlink(tmp_o);
    free(tmp_o);
    free(tmp_c);
    free(tmp_so);
    free(tmp_d);
    free(final_so);
    free(final_meta);
    free(srcdir);
    free(from);
    free(inc);
    hp_buf_free(&body);
    hp_buf_free(&log);
    return rc;
}

/*
 * Read a source whose identity did not change while we read it, so the
 * bytes are one state of the file (an editor may be rewriting it). The
 * watcher only reports completed writes, so a retry or two is plenty.
 */
static int read_stable(const char *path, struct hp_buf *b, struct hp_fid *fid)
{
    for (int tries = 0;; tries++) {
        struct hp_fid after;
        b->len = 0;
        if (hp_fid_stat(path, fid) < 0 || read_file(path, b) < 0 ||
            hp_fid_stat(path, &after) < 0)
            return -1;
        if (hp_fid_eq(fid, &after) && (off_t)b->len == after.size)
            return 0;
        if (tries == 20)
            return 0; /* still moving: compile it; the next event rebuilds */
        usleep(5000);
    }
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* A page's packages are part of its key: the names (also in its bytes,
 * but explicitly so), and where pkg-config looks for them. */
static void key_packages(struct hp_hash *h, const struct hp_pkgs *pk)
{
    static const char *const env[] = {"PKG_CONFIG_PATH", "PKG_CONFIG_LIBDIR",
                                      "PKG_CONFIG_SYSROOT_DIR"};
    if (pk->n == 0)
        return; /* the keys of pages without packages stay as they were */
    for (size_t i = 0; i < pk->n; i++)
        hp_hash_update(h, pk->name[i], strlen(pk->name[i]) + 1);
    for (size_t i = 0; i < sizeof env / sizeof *env; i++) {
        const char *v = getenv(env[i]);
        hp_hash_update(h, v ? v : "", v ? strlen(v) + 1 : 1);
    }
}

/* A prebuilt object: the loader copies it to a private path. */
static int use_prebuilt(const char *src, struct hp_artifact *out, char **diag)
{
    if (access(src, R_OK) < 0 || hp_fid_stat(src, &out->src_fid) < 0) {
        *diag = hp_xasprintf("%s: %s", src, strerror(errno));
        return -1;
    }
    out->so_path = hp_xstrdup(src);
    out->cache_hit = true;
    return 0;
}

/* The compile cache key of src's bytes (text) into key, and its packages
 * into pkgs; -1 with *diag for a malformed HP_PKG. */
static int page_key(const struct hp_compiler *c, const char *src,
                    const struct hp_buf *text, bool fast, struct hp_pkgs *pkgs,
                    char key[33], char **diag)
{
    struct hp_hash h;
    char perr[512];
    const char *bytes = text->p ? text->p : "";

    if (hp_pkg_scan(bytes, text->len, pkgs, perr, sizeof perr) < 0) {
        *diag = hp_xasprintf("%s:%s", src, perr);
        return -1;
    }
    hp_hash_init(&h);
    hp_hash_update(&h, c->flags_key, sizeof c->flags_key);
    hp_hash_update(&h, src, strlen(src) + 1);
    hp_hash_update(&h, bytes, text->len);
    key_packages(&h, pkgs);
    if (fast) /* the optimized tier's keys stay as they were */
        hp_hash_update(&h, "fast tier", sizeof "fast tier");
    hp_hash_hex(&h, key);
    return 0;
}

/* key in the cache: 1 an object (out filled), -1 a failed compile whose
 * record still holds (*diag), 0 neither (out reset but for src_fid). */
static int cache_lookup(const struct hp_compiler *c, const char *key,
                        struct hp_artifact *out, char **diag)
{
    char *so = hp_xasprintf("%s/%s.so", c->objdir, key);
    char *meta = hp_xasprintf("%s/%s.deps", c->objdir, key);
    struct hp_fid src_fid = out->src_fid; /* survives the reset below */
    int r = 0;

    /* A hit refreshes the object's mtime: the garbage collector keeps the
     * most recently used. */
    if (utimensat(AT_FDCWD, so, NULL, 0) == 0 && meta_valid(c, meta, out)) {
        out->so_path = so;
        out->cache_hit = true;
        so = NULL;
        r = 1;
    } else {
        hp_artifact_free(out);
        out->src_fid = src_fid;
        if ((*diag = failure_lookup(c, key)))
            r = -1; /* one broken save, one compile */
    }
    free(so);
    free(meta);
    return r;
}

int hp_compile(struct hp_compiler *c, const char *src, struct hp_artifact *out,
               char **diag)
{
    return hp_compile_tier(c, src, HP_TIER_OPTIMIZED, out, diag);
}

static int compile_any(struct hp_compiler *c, const char *src, bool fast,
                       struct hp_artifact *out, char **diag);

int hp_compile_tier(struct hp_compiler *c, const char *src, enum hp_tier tier,
                    struct hp_artifact *out, char **diag)
{
    int rc = compile_any(c, src, tier == HP_TIER_FAST, out, diag);
    if (rc == 0)
        out->tier = tier;
    return rc;
}

static int compile_any(struct hp_compiler *c, const char *src, bool fast,
                       struct hp_artifact *out, char **diag)
{
    struct hp_buf text = {0};
    struct hp_pkgs pkgs;
    char key[33];
    int rc;

    memset(out, 0, sizeof *out);
    *diag = NULL;
    if (ends_with(src, ".so"))
        return use_prebuilt(src, out, diag);
    char *from = staged(c, src);
    int rd = read_stable(from, &text, &out->src_fid);
    free(from);
    if (rd < 0) {
        *diag = hp_xasprintf("%s: %s", src, strerror(errno));
        hp_buf_free(&text);
        return -1;
    }
    if (page_key(c, src, &text, fast, &pkgs, key, diag) < 0 ||
        (rc = cache_lookup(c, key, out, diag)) != 0) {
        hp_buf_free(&text);
        return *diag ? -1 : 0;
    }
    /*
     * Worker processes (master.c) share this cache: one compiles a key while
     * the others wait on its lock file, then find its object (or its
     * failure) and take it. The lock file goes once the object is in place,
     * so a newcomer that creates a fresh one finds the object too; no lock
     * file (no permission) only costs a duplicate compile.
     */
    char *lock = hp_xasprintf("%s/%s.lock", c->objdir, key);
    int lfd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (lfd < 0 && errno == ENOENT && hp_cache_subdir_restore(c->objdir) == 0)
        lfd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600); /* removed */
    double waited_from = hp_now();
    rc = 0;
    if (lfd >= 0) {
        while (flock(lfd, LOCK_EX) < 0 && errno == EINTR)
            ;
        rc = cache_lookup(c, key, out, diag);
        if (rc == 0 && (*diag = limited_since(c, key, waited_from)))
            rc = -1; /* the compile waited for was stopped by a limit */
    }
    if (rc == 0) {
        if (!text.p)
            hp_buf_puts(&text, "");
        rc = compile_source(c, src, &text, key, &pkgs, fast, out, diag);
        if (rc < 0) {
            /* which save failed: the optimized tier tells its own
             * source's failure from a newer save's (cache.c) */
            struct hp_fid read = out->src_fid;
            hp_artifact_free(out);
            out->src_fid = read;
        }
    } else {
        rc = rc > 0 ? 0 : -1;
    }
    if (lfd >= 0) {
        unlink(lock);
        close(lfd); /* unlocks */
    }
    free(lock);
    hp_buf_free(&text);
    return rc;
}

/* Whether text[i..i+n) is NAME as a whole C identifier. */
static bool ident_at(const char *text, size_t len, size_t i, const char *name,
                     size_t n)
{
    const char *id = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                     "0123456789_";
    return i + n <= len && memcmp(text + i, name, n) == 0 &&
           (i == 0 || !strchr(id, text[i - 1])) &&
           (i + n == len || !text[i + n] || !strchr(id, text[i + n]));
}

char *hp_compile_explain_load(const char *src, const char *diag)
{
    const char *u = diag ? strstr(diag, "undefined symbol: ") : NULL;
    struct hp_buf text = {0}, out = {0};
    char name[256];
    int line = 1, found = 0;

    if (!u || sscanf(u + 18, "%255[A-Za-z0-9_]", name) != 1 ||
        read_file(src, &text) < 0)
        return NULL;
    size_t n = strlen(name);
    for (size_t i = 0; i < text.len && found < 3; i++) {
        if (text.p[i] == '\n')
            line++;
        else if (ident_at(text.p, text.len, i, name, n))
            hp_buf_printf(&out, "%s:%d: %s: '%s'%s\n", src, line,
                          found ? "note" : "error", name,
                          found ? " used here"
                                : " is declared but defined nowhere: not "
                                  "in this page, hotpub's exports, libc "
                                  "or the page's HP_PKG packages");
        found += ident_at(text.p, text.len, i, name, n);
    }
    hp_buf_free(&text);
    if (!found)
        hp_buf_printf(&out,
                      "%s: error: '%s' is defined nowhere (from a "
                      "header the page includes)\n",
                      src, name);
    hp_buf_puts(&out, diag);
    return out.p;
}
