/*
 * check.c - `hotpub check DOCROOT`: build every page once and parse every
 * template (.tpl), as a deploy step or a CI gate, and say what is broken.
 *
 * Owns: the walk over the document root and the report.
 * May not touch: the running server; it uses the compiler and loader only,
 * with a private run directory, and loads each object to prove it links.
 * With --warm ROOT it compiles DOCROOT (a staged release) as ROOT, the
 * symlink a deploy will swap to it, will serve it: the same cache keys and
 * recorded headers as the server's, so the swap finds every object
 * (compile.c's hp_compiler_stage; docs/scaling.md).
 */
#include "hp.h"
#include "stray.h"
#include "template.h"

#include <errno.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static struct hp_compiler *check_cc;
static char *check_rundir;
static int check_pages, check_templates, check_failed, check_hits;
static uint64_t check_id;
static const char *check_root;
static char *check_live; /* --warm: the root the server is given, or NULL */

static bool is_page(const char *path)
{
    size_t n = strlen(path);
    return (n > 2 && strcmp(path + n - 2, ".c") == 0) ||
           (n > 3 && strcmp(path + n - 3, ".so") == 0);
}

/* Parse the template file at path; NULL with *diag set (malloc'd) when it
 * cannot be read or parsed. */
static struct hp_tpl *parse_file(const char *path, char **diag)
{
    FILE *f = fopen(path, "rb");
    struct hp_buf b = {0};
    char chunk[8192];
    size_t n;
    struct hp_tpl *t = NULL;

    *diag = NULL;
    while (f && (n = fread(chunk, 1, sizeof chunk, f)) > 0)
        hp_buf_append(&b, chunk, n);
    if (!f)
        *diag = hp_xasprintf("%s: %s", path, strerror(errno));
    else
        t = hp_tpl_parse(b.p ? b.p : "", b.len, path, diag);
    if (f)
        fclose(f);
    hp_buf_free(&b);
    return t;
}

/*
 * A partial every render includes, that includes (the same way) the
 * template it came from: the render can only fail, after HP_TPL_MAX_DEPTH
 * levels. A partial inside a section may recurse (a tree's nodes); one
 * outside every section never stops. The walk follows only unconditional
 * partials, resolved as the server does (tplcache.c: `/name` from the
 * root, else from the including template's directory, plus ".tpl").
 */
struct loop_walk {
    const char *start; /* the template checked (canonical) */
    const char *from;  /* the template whose tags are being followed */
    const char *chain[HP_TPL_MAX_DEPTH];
    int depth;
    char *found; /* "a.tpl -> b.tpl -> a.tpl", or NULL */
};

static void follow_template(struct loop_walk *w, const char *path);

/* Is the canonical path real inside the (canonical) root? */
static bool inside_root(const char *real)
{
    size_t rl = strlen(check_root);
    return strncmp(real, check_root, rl) == 0 &&
           (real[rl] == '/' || (rl == 1 && real[0] == '/'));
}

static void follow_partial(void *ctx, const char *name)
{
    struct loop_walk *w = ctx;
    if (w->found || !*name)
        return;
    char *want = hp_tpl_resolve(check_root, w->from, name, HP_TPL_EXT);
    char *real = want ? realpath(want, NULL) : NULL; /* missing: nothing */
    free(want);
    if (real && inside_root(real) && hp_tpl_is_file_name(real))
        follow_template(w, real);
    free(real);
}

static void follow_template(struct loop_walk *w, const char *path)
{
    if (w->depth > 0 && strcmp(path, w->start) == 0) {
        struct hp_buf b = {0};
        for (int i = 0; i < w->depth; i++)
            hp_buf_printf(&b, "%s -> ", w->chain[i] + strlen(check_root) + 1);
        hp_buf_printf(&b, "%s", path + strlen(check_root) + 1);
        w->found = b.p;
        return;
    }
    for (int i = 0; i < w->depth; i++)
        if (strcmp(w->chain[i], path) == 0)
            return; /* a loop not through start: its own check finds it */
    if (w->depth == HP_TPL_MAX_DEPTH)
        return;
    char *diag;
    struct hp_tpl *t = parse_file(path, &diag);
    free(diag); /* a broken partial is reported as itself */
    if (!t)
        return;
    const char *from = w->from;
    w->chain[w->depth++] = path;
    w->from = path;
    hp_tpl_unconditional_partials(t, follow_partial, w);
    w->from = from;
    w->depth--;
    hp_tpl_free(t);
}

static char *include_loop(const char *path)
{
    char *real = realpath(path, NULL);
    if (!real)
        return NULL;
    struct loop_walk w = {.start = real, .from = real};
    follow_template(&w, real);
    free(real);
    return w.found;
}

/*
 * Every partial tag of the template at path (in sections too), resolved as
 * the server resolves it (hp_tpl_resolve from the template's own path):
 * one whose name leaves the root, or that leads (through a symlink) out of
 * it or to a file that is not a template, fails every render that reaches
 * it, so it is reported now rather than at render time. A missing partial
 * renders nothing and passes.
 */
struct partial_scan {
    const char *from;
    struct hp_buf why;
};

static void scan_partial(void *ctx, const char *name)
{
    struct partial_scan *ps = ctx;
    if (!*name)
        return;
    char *want = hp_tpl_resolve(check_root, ps->from, name, HP_TPL_EXT);
    char *real = want ? realpath(want, NULL) : NULL;
    if (!want)
        hp_buf_printf(&ps->why,
                      "%s: partial {{> %s}} leaves the document "
                      "root: every render that reaches it fails\n",
                      ps->from, name);
    else if (real && !inside_root(real))
        hp_buf_printf(&ps->why,
                      "%s: partial {{> %s}} leads out of the "
                      "document root (%s): the server refuses it\n",
                      ps->from, name, real);
    else if (real && !hp_tpl_is_file_name(real))
        hp_buf_printf(&ps->why,
                      "%s: partial {{> %s}} leads to %s, which is "
                      "not a template: the server refuses it\n",
                      ps->from, name, real);
    free(real);
    free(want);
}

/* A .tpl symlink: what the server would refuse to load through it. NULL,
 * or a malloc'd diagnostic. */
static char *symlink_refused(const char *path)
{
    char *real = realpath(path, NULL);
    char *why = NULL;
    if (!real)
        why = hp_xasprintf("%s: a symlink to nothing (%s)", path,
                           strerror(errno));
    else if (!inside_root(real))
        why = hp_xasprintf("%s: a symlink out of the document root (to %s): "
                           "the server refuses it",
                           path, real);
    else if (!hp_tpl_is_file_name(real))
        why = hp_xasprintf("%s: a symlink to %s, which is not a template: "
                           "the server refuses it",
                           path, real);
    free(real);
    return why;
}

/* A page's symlink, as the resolver (resolve.c's choose) judges it: NULL
 * when the server follows it (to a file of the same kind under the root,
 * through public names only: a symlink may rename, never escape or
 * publish a private file), else a malloc'd diagnostic. */
static char *page_link_refused(const char *path)
{
    char *real = realpath(path, NULL);
    char *why = NULL;
    struct stat st;
    size_t n = strlen(check_root);
    const char *ext = strrchr(path, '.');
    if (!real) {
        why = hp_xasprintf("%s: a symlink to nothing (%s)", path,
                           strerror(errno));
    } else if (!inside_root(real)) {
        why = hp_xasprintf("%s: a symlink out of the document root (to %s): "
                           "the server answers 404",
                           path, real);
    } else if (strstr(real + n, "/_") || strstr(real + n, "/.")) {
        why = hp_xasprintf("%s: a symlink to %s, a private name (_ or .): "
                           "the server answers 404",
                           path, real);
    } else if (stat(real, &st) != 0 || !S_ISREG(st.st_mode)) {
        why = hp_xasprintf("%s: a symlink to %s, which is not a file: the "
                           "server answers 404",
                           path, real);
    } else if (!ext || strlen(real) < strlen(ext) ||
               strcmp(real + strlen(real) - strlen(ext), ext) != 0) {
        why = hp_xasprintf("%s: a symlink to %s, which is not a %s file: the "
                           "server answers 404",
                           path, real, ext ? ext : "page");
    }
    free(real);
    return why;
}

/* A template's syntax, as hp_render would report it (file:line), its
 * partials, and a partial that includes itself on every render. */
static void check_template(const char *path, bool link)
{
    char *diag = link ? symlink_refused(path) : NULL, *loop;
    struct hp_tpl *t = NULL;

    check_templates++;
    if (!diag)
        t = parse_file(path, &diag);
    if (t) {
        struct partial_scan ps = {.from = path};
        hp_tpl_partials(t, scan_partial, &ps);
        if (ps.why.len) {
            ps.why.p[--ps.why.len] = '\0'; /* the last newline */
            diag = ps.why.p;
        }
        hp_tpl_free(t);
    }
    if (!diag && (loop = include_loop(path))) {
        diag = hp_xasprintf("%s: includes itself on every render (%s), "
                            "outside any section: every render fails",
                            path, loop);
        free(loop);
    }
    if (diag) {
        check_failed++;
        printf("FAIL %s\n%s\n", path, diag);
    } else {
        printf("ok   %s\n", path);
    }
    free(diag);
}

/*
 * A page foo.c next to a directory foo/: the URL /foo is the directory's
 * (docs/pages.md "From URL to handler", rule 1 before rule 3), so the
 * page's http_handler is unreachable; /foo/NAME still reaches its other
 * handlers (rule 4). A warning: the exit status does not change.
 */
static void warn_shadowed(const char *path, const char *base)
{
    if (strncmp(base, "index.", 6) == 0 || strcmp(base, "_app.c") == 0 ||
        strcmp(base, "_app.so") == 0)
        return;
    size_t stem = strlen(path) - (path[strlen(path) - 1] == 'c' ? 2 : 3);
    char *dir = hp_xasprintf("%.*s", (int)stem, path);
    struct stat st;
    if (stat(dir, &st) == 0 && S_ISDIR(st.st_mode))
        printf("warn %s: the directory %s/ takes the URL %s, so this page's "
               "http_handler is unreachable there; rename one of them\n",
               path, dir + strlen(check_root), dir + strlen(check_root));
    free(dir);
}

/* How long a load may take in load_apart: a constructor that never
 * returns would hold the check (and a deploy) for good. The parent times
 * it, not alarm() in the child: a page may use SIGALRM (stray.c). */
#define LOAD_LIMIT_S 30

/* The child of load_apart: load so (running its constructors), say "L"
 * on fd, unload it (running its destructors); the loader's diagnostic on
 * fd and exit 1 if it does not load. */
static _Noreturn void load_child(const char *so, int fd)
{
    char *diag = NULL, *priv = NULL;
    void *dl = NULL;
    signal(SIGHUP, SIG_IGN);  /* as in the server, where it never stops one */
    hp_stray_signals_catch(); /* as in the server: SIGUSR2, SIGALRM ignored */
    if (hp_load(so, check_rundir, ++check_id, &dl, &priv, &diag) != 0) {
        (void)!write(fd, diag, strlen(diag));
        _exit(1);
    }
    (void)!write(fd, "L", 1);
    hp_unload(dl, priv);
    _exit(0);
}

/* What a child's end says, for a FAIL: NULL if it loaded and unloaded. */
static char *load_verdict(const char *path, int status, const char *said,
                          bool timed_out)
{
    bool loaded = said[0] == 'L';
    const char *hook = loaded ? "a destructor" : "a constructor";
    const char *when = loaded ? "as the object unloaded"
                              : "as the object "
                                "loaded";
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0 && loaded)
        return NULL;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 1 && !loaded && said[0])
        return hp_xstrdup(said); /* the loader's own diagnostic */
    if (timed_out)
        return hp_xasprintf("%s: %s did not return within %d s %s: the "
                            "server answers its requests 504 and refuses it "
                            "until the file changes",
                            path, hook, LOAD_LIMIT_S, when);
    int stop = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
    if (!loaded && (stop == SIGTERM || stop == SIGINT))
        /* The server takes a stop signal raised as a page loads for a
         * crash of that hook (guard.c's load_signal). */
        return hp_xasprintf("%s: a constructor raised SIG%s as the object "
                            "loaded: the server takes it for a crash, "
                            "answers its requests 503 and refuses it until "
                            "the file changes",
                            path, sigabbrev_np(stop));
    if (WIFSIGNALED(status)) {
        const char *sig = sigabbrev_np(WTERMSIG(status));
        return hp_xasprintf("%s: %s crashed (SIG%s) %s: the server answers "
                            "its requests 503 and refuses it until the file "
                            "changes",
                            path, hook, sig ? sig : "?", when);
    }
    return hp_xasprintf("%s: %s called exit(%d) %s: the server answers its "
                        "requests 503 and refuses it until the file changes",
                        path, hook, WEXITSTATUS(status), when);
}

/* Read fd into out until its end (the child exited) or limit_s seconds
 * passed: true if the time ran out first. */
static bool read_until(int fd, struct hp_buf *out, int limit_s)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    double end = (double)now.tv_sec + now.tv_nsec / 1e9 + limit_s;
    char chunk[1024];
    for (;;) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        double left = end - ((double)now.tv_sec + now.tv_nsec / 1e9);
        if (left <= 0)
            return true;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int r = poll(&pfd, 1, (int)(left * 1000) + 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r == 0)
            continue; /* left is recomputed: ends the loop */
        ssize_t n = r < 0 ? -1 : read(fd, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        hp_buf_append(out, chunk, (size_t)n);
    }
}

/*
 * Load the object so (the page at path) in a child process, as the server
 * would, to prove it links: its constructors and destructors run there, so
 * one that crashes, exits or hangs is reported as that page's FAIL rather
 * than killing the check. NULL, or a malloc'd diagnostic.
 */
static char *load_apart(const char *so, const char *path)
{
    int p[2];
    if (pipe(p) != 0)
        return hp_xasprintf("%s: pipe: %s", path, strerror(errno));
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        close(p[0]);
        load_child(so, p[1]);
    }
    close(p[1]);
    if (pid < 0) {
        close(p[0]);
        return hp_xasprintf("%s: fork: %s", path, strerror(errno));
    }
    struct hp_buf said = {0};
    bool timed_out = read_until(p[0], &said, LOAD_LIMIT_S);
    if (timed_out)
        kill(pid, SIGKILL);
    close(p[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    hp_buf_append(&said, "", 1);
    char *why = load_verdict(path, status, said.p, timed_out);
    hp_buf_free(&said);
    return why;
}

static int visit(const char *path, const struct stat *st, int type,
                 struct FTW *ftw)
{
    const char *base = path + ftw->base;
    if (ftw->level > 0 && base[0] == '.')
        return type == FTW_D ? FTW_SKIP_SUBTREE : FTW_CONTINUE;
    /* Templates in private places too; a symlinked one as the server
     * would load it (FTW_PHYS reports the link itself). */
    if ((type == FTW_F || type == FTW_SL) && hp_tpl_is_file_name(path)) {
        check_template(path, type == FTW_SL);
        return FTW_CONTINUE;
    }
    if ((type != FTW_F && type != FTW_SL) || !is_page(path))
        return FTW_CONTINUE;
    /* What the server would load: public pages and application modules,
     * not helper sources kept in private (_) places. */
    bool app = strcmp(base, "_app.c") == 0 || strcmp(base, "_app.so") == 0;
    if (!app && strstr(path + strlen(check_root), "/_"))
        return FTW_CONTINUE;
    /* A page that is a symlink: the server serves what it leads to, as
     * that file's page, which the walk checks where it is; or answers 404
     * (out of the root, to a private name, to nothing). */
    if (type == FTW_SL) {
        char *why = page_link_refused(path);
        if (why) {
            check_pages++;
            check_failed++;
            printf("FAIL %s\n%s\n", path, why);
            free(why);
        } else {
            char *real = realpath(path, NULL);
            check_pages++; /* a page's address, whose build is real's */
            printf("ok   %s (a symlink to %s)\n", path, real ? real : "?");
            free(real);
        }
        warn_shadowed(path, base);
        return FTW_CONTINUE;
    }

    struct hp_artifact art;
    char *diag = NULL;
    /* Warming: the path the server will compile it under. */
    char *src =
        check_live ? hp_xasprintf("%s%s", check_live, path + strlen(check_root))
                   : hp_xstrdup(path);
    check_pages++;
    /* A header written just before the compiler started (a release copied
     * a moment ago) may have been read half-written: build again, as the
     * server does, rather than leave the page out of the cache. */
    int rc, tries = 0;
    while ((rc = hp_compile(check_cc, src, &art, &diag)) == HP_COMPILE_RACED &&
           ++tries < 10)
        usleep(20000);
    if (rc == HP_COMPILE_RACED && !diag)
        diag = hp_xasprintf("%s: its headers kept changing while it was "
                            "compiled",
                            src);
    if (rc == 0) {
        check_hits += art.cache_hit;
        diag = load_apart(art.so_path, path);
        hp_artifact_free(&art);
    }
    free(src);
    if (diag) {
        check_failed++;
        printf("FAIL %s\n%s\n", path, diag);
    } else {
        printf("ok   %s\n", path);
    }
    free(diag);
    warn_shadowed(path, base);
    return FTW_CONTINUE;
}

/* ROOT as the server keeps it (server.c's hp_server_root_path): the parent made
 * canonical, the last component (the swapped symlink) kept as given. */
static char *live_root(const char *warm)
{
    char *copy = hp_xstrdup(warm), *slash, *parent, *path = NULL;
    size_t n = strlen(copy);
    while (n > 1 && copy[n - 1] == '/')
        copy[--n] = '\0';
    slash = strrchr(copy, '/');
    const char *base = slash ? slash + 1 : copy;
    if (slash)
        *slash = '\0';
    parent = realpath(slash ? (*copy ? copy : "/") : ".", NULL);
    if (parent && *base)
        path = hp_xasprintf("%s/%s", strcmp(parent, "/") ? parent : "", base);
    else
        fprintf(stderr, "hotpub check: --warm %s: %s\n", warm,
                parent ? "needs a last component" : strerror(errno));
    free(parent);
    free(copy);
    return path;
}

/* The compiler for root: plain, or (--warm) reading root as check_live. */
static struct hp_compiler *check_compiler(struct hp_config *cfg,
                                          const char *root)
{
    if (!cfg->warm)
        return hp_compiler_new(cfg, root);
    if (!(check_live = live_root(cfg->warm)))
        return NULL;
    struct hp_compiler *c = hp_compiler_new(cfg, check_live);
    if (hp_compiler_stage(c, root) < 0) {
        fprintf(stderr, "hotpub check: %s: %s\n", root, strerror(errno));
        hp_compiler_free(c);
        return NULL;
    }
    return c;
}

int hp_check(struct hp_config *cfg)
{
    char *root = realpath(cfg->docroot ? cfg->docroot : ".", NULL);
    if (!root) {
        fprintf(stderr, "hotpub check: %s: %s\n", cfg->docroot,
                strerror(errno));
        return 2;
    }
    check_root = root;
    check_cc = check_compiler(cfg, root);
    check_rundir = check_cc ? hp_rundir_create(cfg->cache_dir) : NULL;
    if (!check_rundir) {
        free(root);
        free(check_live);
        hp_compiler_free(check_cc);
        return 2;
    }
    nftw(root, visit, 32, FTW_PHYS | FTW_ACTIONRETVAL);
    printf("%d pages, %d templates, %d failed\n", check_pages, check_templates,
           check_failed);
    if (check_live)
        printf("warmed %s as %s in %s: %d compiled, %d already cached\n", root,
               check_live, cfg->cache_dir,
               check_pages - check_failed - check_hits, check_hits);
    free(check_live);
    check_live = NULL;
    hp_rundir_remove(check_rundir);
    free(check_rundir);
    hp_compiler_free(check_cc);
    free(root);
    return check_failed ? 1 : 0;
}
