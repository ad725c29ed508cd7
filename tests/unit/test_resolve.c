/*
 * test_resolve.c - URL resolution: the rules, the security refusals, the
 * cache and its invalidation, and concurrent use.
 */
#define _GNU_SOURCE 1 /* nftw, mkdtemp: before any system header */
#include "hp.h"
#include "t.h"

#include <fcntl.h>
#include <ftw.h>
#include <unistd.h>

static char root[PATH_MAX];    /* canonical temp document root     */
static char outside[PATH_MAX]; /* canonical temp dir outside it    */
static hp_resolver *res;

/* ---- fixture ---------------------------------------------------------- */

static void make_file(const char *dir, const char *rel, const char *text)
{
    char path[2 * PATH_MAX];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", dir, rel);
    f = fopen(path, "w");
    if (f == NULL) {
        perror(path);
        exit(2);
    }
    fputs(text, f);
    fclose(f);
}

static void make_dir(const char *rel)
{
    char path[2 * PATH_MAX];

    snprintf(path, sizeof(path), "%s/%s", root, rel);
    if (mkdir(path, 0755) != 0) {
        perror(path);
        exit(2);
    }
}

static void make_link(const char *target, const char *rel)
{
    char path[2 * PATH_MAX];

    snprintf(path, sizeof(path), "%s/%s", root, rel);
    if (symlink(target, path) != 0) {
        perror(path);
        exit(2);
    }
}

static void setup(void)
{
    char target[2 * PATH_MAX];
    static const char *const files[] = {
        "hello.c",
        "a/b.c",
        "dir/index.c",
        "static/index.html",
        "style.css",
        "_secret.c",
        ".hidden.c",
        "_priv/x.c",
        "inc.h",
        "sub/page.so",
        "index.html",
        "x.o",
        "x.d",
        "config.ini",
        "prec/index.c",
        "prec/index.so",
        "prec/index.html",
        "prec2/index.so",
        "prec2/index.html",
        "both.c",
        "both.so",
        "readme.txt",
    };

    t_make_temp(root, "/tmp/hp-resolve-root-XXXXXX");
    t_make_temp(outside, "/tmp/hp-resolve-out-XXXXXX");
    make_file(outside, "secret.txt", "outside\n");
    make_file(outside, "evil.c", "int x;\n");
    make_file(outside, "page.c", "int x;\n");
    make_dir("a");
    make_dir("dir");
    make_dir("static");
    make_dir("_priv");
    make_dir("sub");
    make_dir("prec");
    make_dir("prec2");
    make_dir("empty");
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
        make_file(root, files[i], "x\n");
    snprintf(target, sizeof(target), "%s/secret.txt", outside);
    make_link(target, "link-out");
    snprintf(target, sizeof(target), "%s/evil.c", outside);
    make_link(target, "evil.c");
    make_link(outside, "outdir");
    make_link("style.css", "link-in.css");
    make_link("hello.c", "link-hello.c");
    make_link("_priv/x.c", "pub.c");
    make_link("hello.c", "source.txt");
    make_link("readme.txt", "fake.c");
    make_link("nowhere.c", "dangling.c");
    res = hp_resolver_new(root);
}

static int rm_one(const char *path, const struct stat *st, int flag,
                  struct FTW *ftw)
{
    return remove(path);
}

static void remove_rel(const char *rel)
{
    char path[2 * PATH_MAX];

    snprintf(path, sizeof(path), "%s/%s", root, rel);
    unlink(path);
}

static void rm_tree(const char *path)
{
    nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- helpers -------------------------------------------------------- */

static const char *kind_name(enum hp_target_kind k)
{
    return k == HP_T_PAGE ? "PAGE" : k == HP_T_STATIC ? "STATIC" : "NOTFOUND";
}

/* Resolve url and describe the result as "PAGE rel handler", "STATIC rel"
 * or "NOTFOUND", with rel relative to the root, for one-line checks. */
static const char *show(hp_resolver *r, const char *url)
{
    static char out[PATH_MAX + 256];
    struct hp_target t;
    const char *rel;
    size_t n = strlen(root);

    memset(&t, 0x55, sizeof(t)); /* catch fields left unset */
    hp_resolve(r, url, &t);
    if (t.kind == HP_T_NOTFOUND) {
        if (t.path[0] || t.handler[0])
            return "NOTFOUND-with-junk";
        return "NOTFOUND";
    }
    if (t.kind == HP_T_DIRSLASH) { /* path is the URL path to redirect to */
        snprintf(out, sizeof(out), "SLASH %s", t.path);
        return out;
    }
    if (strncmp(t.path, root, n) != 0 || t.path[n] != '/')
        return "OUTSIDE-ROOT";
    rel = t.path + n + 1;
    if (t.kind == HP_T_STATIC)
        snprintf(out, sizeof(out), "STATIC %s", rel);
    else
        snprintf(out, sizeof(out), "%s %s %s", kind_name(t.kind), rel,
                 t.handler);
    /* Segments left for publish.c's routing beyond a handler name (rule
     * 4): path parameters, 404 unless a handler declared HP_PATH_PARAMS. */
    unsigned nseg = 0;
    for (const char *s = url; *s; s++)
        nseg += s[0] != '/' && (s == url || s[-1] == '/');
    unsigned rest = t.kind == HP_T_PAGE ? nseg - t.page_segs : 0;
    if (rest > 1 || (rest == 1 && strcmp(t.handler, "http_handler") == 0))
        snprintf(out + strlen(out), sizeof(out) - strlen(out), " rest=%u",
                 rest);
    return out;
}

#define EXPECT(url, want) CHECK_STR(show(res, url), want)

/* ---- the rules ------------------------------------------------------ */

static void test_directories(void)
{
    EXPECT("/", "STATIC index.html");
    EXPECT("/dir", "SLASH /dir/"); /* relative links need the '/' */
    EXPECT("/dir/", "PAGE dir/index.c http_handler");
    EXPECT("/dir/name", "PAGE dir/index.c name");
    EXPECT("/static", "SLASH /static/");
    EXPECT("/static/", "STATIC static/index.html");
    EXPECT("/static/index.html", "STATIC static/index.html");
    EXPECT("/prec/", "PAGE prec/index.c http_handler");
    EXPECT("/prec2/", "PAGE prec2/index.so http_handler");
    EXPECT("/prec2", "SLASH /prec2/");
    EXPECT("/prec2/other", "PAGE prec2/index.so other");
    EXPECT("/empty", "NOTFOUND");
    EXPECT("/a", "NOTFOUND"); /* a directory without an index */
    EXPECT("/a/", "NOTFOUND");
    EXPECT("/static/name", "NOTFOUND"); /* no page to own the handler */
}

/* Rule 1 without the '/': the redirect target is a path, percent-encoded,
 * with empty segments collapsed, so "//evil.com" cannot become a
 * protocol-relative Location pointing at another host. */
static void test_dir_slash_redirect(void)
{
    make_dir("evil.com");
    make_file(root, "evil.com/index.html", "x\n");
    make_dir("a b%?#\"");
    make_file(root, "a b%?#\"/index.html", "x\n");
    make_dir("dir/sub");
    make_file(root, "dir/sub/index.c", "x\n");
    hp_resolver_invalidate(res);
    EXPECT("//evil.com", "SLASH /evil.com/");
    EXPECT("///evil.com", "SLASH /evil.com/");
    EXPECT("/evil.com/", "STATIC evil.com/index.html");
    EXPECT("/a b%?#\"", "SLASH /a%20b%25%3F%23%22/");
    EXPECT("/dir//sub", "SLASH /dir/sub/");
    EXPECT("/dir/sub/", "PAGE dir/sub/index.c http_handler");
    EXPECT("/dir/sub/name", "PAGE dir/sub/index.c name");
    EXPECT("/dir/name/", "PAGE dir/index.c name"); /* a handler, no dir */
    EXPECT("/", "STATIC index.html");
}

static void test_pages(void)
{
    EXPECT("/hello", "PAGE hello.c http_handler");
    /* A page file's name followed by '/' names no directory: 404, as
     * nginx answers; a handler or parameters after it still ignore it. */
    EXPECT("/hello/", "NOTFOUND");
    EXPECT("//hello//", "NOTFOUND");
    EXPECT("/sub/page/", "NOTFOUND");
    EXPECT("/hello/json/", "PAGE hello.c json");
    EXPECT("/hello/42/x/", "PAGE hello.c http_handler rest=2");
    EXPECT("/hello/json", "PAGE hello.c json");
    EXPECT("/a/b", "PAGE a/b.c http_handler");
    EXPECT("//a///b", "PAGE a/b.c http_handler");
    EXPECT("/a/b/x", "PAGE a/b.c x");
    EXPECT("/sub/page", "PAGE sub/page.so http_handler");
    EXPECT("/sub/page/go", "PAGE sub/page.so go");
    EXPECT("/both", "PAGE both.c http_handler");
    EXPECT("/both/h", "PAGE both.c h");
    EXPECT("/hello/json/extra", "PAGE hello.c http_handler rest=2");
    EXPECT("/nosuch", "NOTFOUND");
    EXPECT("/nosuch/json", "NOTFOUND");
    EXPECT("/nosuch/json/1", "NOTFOUND");
    EXPECT("/dangling", "NOTFOUND");
}

static void test_static(void)
{
    EXPECT("/style.css", "STATIC style.css");
    EXPECT("/readme.txt", "STATIC readme.txt");
    EXPECT("/index.html", "STATIC index.html");
    EXPECT("/link-in.css", "STATIC style.css");
    EXPECT("/style.css/x", "NOTFOUND");
    EXPECT("/style.css/", "NOTFOUND"); /* a file is no directory */
    EXPECT("/style.css//", "NOTFOUND");
    EXPECT("/static/index.html/", "NOTFOUND");
    EXPECT("/link-in.css/", "NOTFOUND");
}

static void test_never_as_text(void)
{
    EXPECT("/hello.c", "NOTFOUND");
    EXPECT("/inc.h", "NOTFOUND");
    EXPECT("/sub/page.so", "NOTFOUND");
    EXPECT("/x.o", "NOTFOUND");
    EXPECT("/x.d", "NOTFOUND");
    EXPECT("/config.ini", "NOTFOUND");
    EXPECT("/dir/index.c", "NOTFOUND");
    EXPECT("/source.txt", "NOTFOUND"); /* a .txt name for hello.c */
    EXPECT("/fake", "NOTFOUND");       /* fake.c -> readme.txt    */
}

static void test_private_names(void)
{
    EXPECT("/_secret", "NOTFOUND");
    EXPECT("/_secret.c", "NOTFOUND");
    EXPECT("/.hidden", "NOTFOUND");
    EXPECT("/.hidden.c", "NOTFOUND");
    EXPECT("/_priv/x", "NOTFOUND");
    EXPECT("/_priv", "NOTFOUND");
    EXPECT("/hello/_x", "NOTFOUND");
    EXPECT("/dir/_x", "NOTFOUND");
    EXPECT("/pub", "NOTFOUND"); /* pub.c -> _priv/x.c */
}

static void test_traversal(void)
{
    char big[PATH_MAX + 16];

    EXPECT("/../etc/passwd", "NOTFOUND");
    EXPECT("/a/../hello", "NOTFOUND");
    EXPECT("/./hello", "NOTFOUND");
    EXPECT("/hello/.", "NOTFOUND");
    EXPECT("/hello/..", "NOTFOUND");
    EXPECT("/..", "NOTFOUND");
    EXPECT("/a\\..\\hello", "NOTFOUND");
    EXPECT("/hello\\json", "NOTFOUND");
    EXPECT("/hel\001lo", "NOTFOUND");
    EXPECT("/hello/js\non", "NOTFOUND");
    EXPECT("hello", "NOTFOUND");
    EXPECT("", "NOTFOUND");
    memset(big, 'a', sizeof(big) - 1);
    big[0] = '/';
    big[sizeof(big) - 1] = '\0';
    EXPECT(big, "NOTFOUND");
    big[PATH_MAX - 64] = '\0'; /* at the limit: refused by the fs only */
    EXPECT(big, "NOTFOUND");
}

static void test_symlinks_out(void)
{
    EXPECT("/link-out", "NOTFOUND");
    EXPECT("/evil", "NOTFOUND");
    EXPECT("/evil/h", "NOTFOUND");
    EXPECT("/outdir/page", "NOTFOUND");
    EXPECT("/outdir/secret.txt", "NOTFOUND");
    EXPECT("/link-hello", "PAGE hello.c http_handler");
    EXPECT("/link-hello/json", "PAGE hello.c json");
}

static void test_handler_names(void)
{
    char url[256], want[256], name[128];

    EXPECT("/hello/j-son", "PAGE hello.c http_handler rest=1");
    EXPECT("/hello/1json", "PAGE hello.c http_handler rest=1");
    EXPECT("/hello/json.x", "PAGE hello.c http_handler rest=1");
    EXPECT("/hello/j son", "PAGE hello.c http_handler rest=1");
    EXPECT("/hello/j\xc3\xa9", "PAGE hello.c http_handler rest=1");
    EXPECT("/hello/A_9z", "PAGE hello.c A_9z");
    memset(name, 'a', sizeof(name));
    name[0] = 'h';
    name[100] = '\0'; /* the longest name allowed */
    snprintf(url, sizeof(url), "/hello/%s", name);
    snprintf(want, sizeof(want), "PAGE hello.c %s", name);
    EXPECT(url, want);
    name[100] = 'a';
    name[101] = '\0';
    snprintf(url, sizeof(url), "/hello/%s", name);
    EXPECT(url, "PAGE hello.c http_handler rest=1"); /* a parameter */
}

/* Rule 5: the longest page prefix takes the rest of the URL (publish.c
 * routes it: a handler, then path parameters; 404 without HP_PATH_PARAMS). */
static void test_path_params(void)
{
    EXPECT("/hello/42/x", "PAGE hello.c http_handler rest=2");
    EXPECT("/a/b/x/y", "PAGE a/b.c http_handler rest=2");
    EXPECT("/dir/x/y", "PAGE dir/index.c http_handler rest=2");
    EXPECT("/dir/7", "PAGE dir/index.c http_handler rest=1");
    EXPECT("/sub/page/1/2/3", "PAGE sub/page.so http_handler rest=3");
    EXPECT("/hello/_x/1", "NOTFOUND"); /* private names anywhere */
    EXPECT("/hello/1/.x", "NOTFOUND");
    EXPECT("/style.css/x/y", "NOTFOUND");
    EXPECT("/static/x/y", "NOTFOUND");
    EXPECT("/evil/h/1", "NOTFOUND"); /* a refused symlink unmasks nothing */
    EXPECT("/outdir/page/1", "NOTFOUND");
}

/* Templates are never served, whatever their directory. */
static void test_templates_private(void)
{
    make_file(root, "t.tpl", "{{x}}\n");
    make_file(root, "static/row.tpl", "{{x}}\n");
    hp_resolver_invalidate(res);
    EXPECT("/t.tpl", "NOTFOUND");
    EXPECT("/static/row.tpl", "NOTFOUND");
    remove_rel("t.tpl");
    remove_rel("static/row.tpl");
    hp_resolver_invalidate(res);
}

/* FRESH16-2: sources in any case, and editors' and tools' copies of
 * them, are never static; ordinary multi-dot names still are. */
static void test_name_private(void)
{
    static const char *const refused[] = {
        "index.c",
        "hello.C",
        "x.TPL",
        "inc.H",
        "lib.So",
        "hotpub.INI",
        "x.O",
        "x.D",
        "index.c~",
        "#index.c#",
        "index.c.bak",
        "hello.c.swp",
        "page.tpl~",
        "index.c.1",
        "lib.so.1",
        "page.tpl.orig",
        "a.c.gz",
        "x.c.css",
        "index.c.rej",
        "index.c.save",
        "index.c.old",
        "index.c.tmp",
        "x.ini.dpkg-old",
        "x.ini.dpkg-dist",
        "x.ini.ucf-old",
        "x.ini.rpmnew",
        "index.c,v",
        "index.c.~1~",
        "index.c ",
        "index.c.",
        "index.c___jb_tmp___",
        "index.c___jb_old___",
        "style.css___jb_tmp___",
        "index.bak",
        "notes.txt.orig",
        "X.BAK",
        "x.swo",
        "x.swn",
        "x.swx",
        "notes~",
        "#x",
        "a.C.B",
        "x.c++",
        "x.h-1",
        "x.INI.Bak",
    };
    static const char *const served[] = {
        "style.css",
        "jquery.cookie.js",
        "app.min.js",
        "index.html",
        "v.h264",
        "index.d.ts",
        "pkg.orig.tar.gz",
        "font.woff2",
        "app.js.map",
        "style.css.map",
        "c",
        "tpl",
        "so.1",
        "x.cc",
        "a#b.txt",
        "x~y.txt",
        "4913",
        "report.pdf",
        "a.ctl",
        "x.hpp",
        "x.ini2",
        "x.solid.png",
        "x.tplx",
        "d.txt",
    };

    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++)
        if (!hp_name_private(refused[i])) {
            fprintf(stderr, "  served: %s\n", refused[i]);
            CHECK(hp_name_private(refused[i]));
        }
    for (size_t i = 0; i < sizeof served / sizeof served[0]; i++)
        if (hp_name_private(served[i])) {
            fprintf(stderr, "  refused: %s\n", served[i]);
            CHECK(!hp_name_private(served[i]));
        }
}

/* The resolver applies it: to the URL's name and, for a symlink, to the
 * name it leads to; a directory is not judged by it. */
static void test_backup_copies(void)
{
    static const char *const files[] = {
        "index.c~",
        "#index.c#",
        "index.c.bak",
        "hello.c.swp",
        "hello.C",
        "tpl/page.tpl~",
        "x.TPL",
        "lib.so.1",
        "a.c.gz",
        "x.c.css",
        "page.tpl.orig",
        "x.ini.dpkg-old",
        "index.c___jb_old___",
    };
    char url[2 * PATH_MAX];

    make_dir("tpl");
    make_dir("old.c");
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
        make_file(root, files[i], "x\n");
    make_file(root, "jquery.cookie.js", "x\n");
    make_file(root, "old.c/index.html", "x\n");
    make_link("index.c~", "innocent.txt");
    hp_resolver_invalidate(res);
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(url, sizeof url, "/%s", files[i]);
        EXPECT(url, "NOTFOUND");
    }
    EXPECT("/innocent.txt", "NOTFOUND");
    EXPECT("/jquery.cookie.js", "STATIC jquery.cookie.js");
    EXPECT("/old.c/", "STATIC old.c/index.html");
    EXPECT("/hello", "PAGE hello.c http_handler");
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
        remove_rel(files[i]);
    remove_rel("jquery.cookie.js");
    remove_rel("innocent.txt");
    remove_rel("old.c/index.html");
    snprintf(url, sizeof url, "%s/old.c", root);
    rmdir(url);
    snprintf(url, sizeof url, "%s/tpl", root);
    rmdir(url);
    hp_resolver_invalidate(res);
}

/* A root with index.c: "/name" is a handler of it unless name.c exists. */
static void test_root_index(void)
{
    hp_resolver *r;

    make_file(root, "index.c", "x\n");
    r = hp_resolver_new(root);
    CHECK(r != NULL);
    CHECK_STR(show(r, "/"), "PAGE index.c http_handler");
    CHECK_STR(show(r, "/index"), "PAGE index.c http_handler");
    CHECK_STR(show(r, "/name"), "PAGE index.c name");
    CHECK_STR(show(r, "/hello"), "PAGE hello.c http_handler");
    CHECK_STR(show(r, "/_name"), "NOTFOUND");
    CHECK_STR(show(r, "/na-me"), "PAGE index.c http_handler rest=1");
    CHECK_STR(show(r, "/a/x/y"), "PAGE index.c http_handler rest=3");
    CHECK_STR(show(r, "/style.css"), "STATIC style.css");
    CHECK_STR(show(r, "/a"), "NOTFOUND");
    hp_resolver_free(r);
    remove_rel("index.c");
}

/* A root given with a trailing slash is the same root. */
static void test_root_spelling(void)
{
    char spelled[PATH_MAX + 2];
    hp_resolver *r;

    snprintf(spelled, sizeof(spelled), "%s/", root);
    r = hp_resolver_new(spelled);
    CHECK(r != NULL);
    CHECK_STR(show(r, "/hello"), "PAGE hello.c http_handler");
    CHECK_STR(show(r, "/"), "STATIC index.html");
    hp_resolver_free(r);
    CHECK(hp_resolver_new("relative/root") == NULL);
    CHECK(hp_resolver_new(NULL) == NULL);
}

/* ---- the cache ------------------------------------------------------ */

/* Results, found or not, are served from the cache until invalidated:
 * that is what makes the steady state free of syscalls. */
static void test_cache_invalidate(void)
{
    EXPECT("/late", "NOTFOUND");
    EXPECT("/late/json", "NOTFOUND");
    make_file(root, "late.c", "x\n");
    EXPECT("/late", "NOTFOUND");
    EXPECT("/late/json", "NOTFOUND");
    hp_resolver_invalidate(res);
    EXPECT("/late", "PAGE late.c http_handler");
    EXPECT("/late/json", "PAGE late.c json");

    remove_rel("late.c");
    EXPECT("/late", "PAGE late.c http_handler"); /* no stat: still cached */
    hp_resolver_invalidate(res);
    EXPECT("/late", "NOTFOUND");
}

/* Filling the cache past its cap clears it, so it cannot grow without
 * bound; a stale entry forgotten that way is simply recomputed. */
static void test_cache_cap(void)
{
    char url[64];

    EXPECT("/later", "NOTFOUND");
    make_file(root, "later.c", "x\n");
    for (int i = 0; i < 9000; i++) {
        snprintf(url, sizeof(url), "/nosuch%d", i);
        hp_resolve(res, url, &(struct hp_target){0});
    }
    EXPECT("/later", "PAGE later.c http_handler");
    EXPECT("/hello/json", "PAGE hello.c json");
    remove_rel("later.c");
    hp_resolver_invalidate(res);
}

/* ---- threads -------------------------------------------------------- */

static const char *const mt_cases[][2] = {
    {"/hello", "PAGE hello.c http_handler"},
    {"/hello/json", "PAGE hello.c json"},
    {"/dir/name", "PAGE dir/index.c name"},
    {"/style.css", "STATIC style.css"},
    {"/static/", "STATIC static/index.html"},
    {"/sub/page", "PAGE sub/page.so http_handler"},
    {"/_secret", "NOTFOUND"},
    {"/link-out", "NOTFOUND"},
    {"/nosuch", "NOTFOUND"},
    {"/a/../hello", "NOTFOUND"},
};
#define MT_NCASES (sizeof(mt_cases) / sizeof(mt_cases[0]))

static atomic_int mt_running;
static pthread_barrier_t mt_start;

static bool mt_matches(const struct hp_target *t, const char *want)
{
    char got[PATH_MAX + 256];
    size_t n = strlen(root);

    if (t->kind == HP_T_NOTFOUND)
        return strcmp(want, "NOTFOUND") == 0;
    if (strncmp(t->path, root, n) != 0)
        return false;
    if (t->kind == HP_T_STATIC)
        snprintf(got, sizeof(got), "STATIC %s", t->path + n + 1);
    else
        snprintf(got, sizeof(got), "PAGE %s %s", t->path + n + 1, t->handler);
    return strcmp(got, want) == 0;
}

static void *mt_worker(void *arg)
{
    long bad = 0;
    unsigned seed = (unsigned)(uintptr_t)arg;
    struct hp_target t;

    pthread_barrier_wait(&mt_start);
    for (int i = 0; i < 20000; i++) {
        seed = seed * 1103515245u + 12345u;
        size_t k = (seed >> 16) % MT_NCASES;

        hp_resolve(res, mt_cases[k][0], &t);
        if (!mt_matches(&t, mt_cases[k][1]))
            bad++;
    }
    atomic_fetch_sub(&mt_running, 1);
    return (void *)bad;
}

static void *mt_invalidator(void *arg)
{
    long *count = arg;
    struct timespec ts = {0, 20000};

    pthread_barrier_wait(&mt_start);
    do {
        hp_resolver_invalidate(res);
        (*count)++;
        nanosleep(&ts, NULL);
    } while (atomic_load(&mt_running) > 0);
    return NULL;
}

static void test_threads(void)
{
    pthread_t w[4], inv;
    long invalidations = 0, bad = 0;

    atomic_store(&mt_running, 4);
    pthread_barrier_init(&mt_start, NULL, 5);
    for (uintptr_t i = 0; i < 4; i++)
        CHECK(pthread_create(&w[i], NULL, mt_worker, (void *)(i + 1)) == 0);
    CHECK(pthread_create(&inv, NULL, mt_invalidator, &invalidations) == 0);
    for (int i = 0; i < 4; i++) {
        void *ret;

        pthread_join(w[i], &ret);
        bad += (long)ret;
    }
    pthread_join(inv, NULL);
    pthread_barrier_destroy(&mt_start);
    CHECK(bad == 0);
    CHECK(invalidations > 0);
    if (bad)
        fprintf(stderr, "  %ld wrong results\n", bad);
}

/* RFC 3986 §5.2.4 on decoded paths (what server.c does before resolving),
 * with nginx's answer to a path that climbs above the root (false: 400). */
static void test_merge_dots(void)
{
    static const struct {
        const char *in, *out; /* out NULL: refused */
    } cases[] = {
        {"/static/./x", "/static/x"},
        {"/a/./b", "/a/b"},
        {"/a/b/../c", "/a/c"},
        {"/a/b/c/./../../g", "/a/g"},
        {"/a/..", "/"},
        {"/a/../", "/"},
        {"/a/.", "/a/"},
        {"/.", "/"},
        {"/./", "/"},
        {"/", "/"},
        {"/a/b/..", "/a/"},
        {"/a//../b", "/a/b"},
        {"/a/.b/c", "/a/.b/c"},
        {"/a/..b/c", "/a/..b/c"},
        {"/a/.../c", "/a/.../c"},
        {"/.hidden", "/.hidden"},
        {"/a/b.", "/a/b."},
        {"/..", NULL},
        {"/../a", NULL},
        {"/a/../..", NULL},
        {"/a/../../b", NULL},
        {"/./..", NULL},
        {"a/./b", NULL},
        {"", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char buf[64];
        snprintf(buf, sizeof buf, "%s", cases[i].in);
        bool ok = hp_path_merge_dots(buf);
        bool good = cases[i].out ? ok && strcmp(buf, cases[i].out) == 0 : !ok;
        if (!good)
            fprintf(stderr, "  merge %s: %s %s\n", cases[i].in,
                    ok ? "->" : "refused", ok ? buf : "");
        CHECK(good);
    }
    /* The merged path resolves as the plain one does (no '.' reaches
     * the resolver; it would refuse one itself). */
    struct hp_target a, b;
    char p[] = "/sub/./page";
    CHECK(hp_path_merge_dots(p));
    hp_resolve(res, p, &a);
    hp_resolve(res, "/sub/page", &b);
    CHECK(a.kind == b.kind && strcmp(a.path, b.path) == 0);
    hp_resolve(res, "/sub/./page", &a);
    CHECK(a.kind == HP_T_NOTFOUND);
}

/* hp_rel_public: the segment rule and hp_name_private together (static.c
 * opens by it; the watcher reloads the browser by it). */
static void test_rel_public(void)
{
    static const char *const pub[] = {"s.css", "a/b/s.css", "sedAbc123", "4913",
                                      "img/x.png"};
    static const char *const priv[] = {
        "",          "/s.css",    "a//s.css", ".s.css.swp", ".#s.css",
        "_parts/x",  "a/_x.css",  "a/.b/c",   "#s.css#",    "s.css~",
        "s.css.swx", "x/index.c", "a/",       "s.css.bak",  "_app.c",
    };
    for (size_t i = 0; i < sizeof pub / sizeof *pub; i++) {
        if (!hp_rel_public(pub[i]))
            fprintf(stderr, "  not public: %s\n", pub[i]);
        CHECK(hp_rel_public(pub[i]));
    }
    for (size_t i = 0; i < sizeof priv / sizeof *priv; i++) {
        if (hp_rel_public(priv[i]))
            fprintf(stderr, "  public: %s\n", priv[i]);
        CHECK(!hp_rel_public(priv[i]));
    }
}

int main(int argc, char **argv)
{
    T_INIT(argc, argv); /* an argument: only the tests named like it */
    setup();
    if (res == NULL) {
        fprintf(stderr, "hp_resolver_new failed\n");
        return 2;
    }
    T_RUN(test_directories);
    T_RUN(test_dir_slash_redirect);
    T_RUN(test_pages);
    T_RUN(test_static);
    T_RUN(test_never_as_text);
    T_RUN(test_private_names);
    T_RUN(test_traversal);
    T_RUN(test_merge_dots);
    T_RUN(test_symlinks_out);
    T_RUN(test_handler_names);
    T_RUN(test_path_params);
    T_RUN(test_templates_private);
    T_RUN(test_name_private);
    T_RUN(test_rel_public);
    T_RUN(test_backup_copies);
    T_RUN(test_root_index);
    T_RUN(test_root_spelling);
    T_RUN(test_cache_invalidate);
    T_RUN(test_cache_cap);
    T_RUN(test_threads);
    hp_resolver_free(res);
    rm_tree(root);
    rm_tree(outside);
    T_DONE();
}
