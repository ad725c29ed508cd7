/*
 * fuzz_resolve.c - resolve.c's contract under any URL path. A small fixed
 * document root is made once under /tmp (pages, static files, private
 * names, objects, symlinks in and out of the root), then each input, cut at
 * its first NUL as the server's decoded path would be, is resolved twice:
 * fresh, then from the resolution cache. abort() if an answer is outside the
 * root (as given or once symlinks are resolved), has a segment after the
 * root starting with '_' or '.', is a static file whose name (as asked or
 * once symlinks are resolved) hp_name_private refuses (the rule that ships:
 * any case, templates, copies and leftovers),
 * is a page that is not a .c/.so file, or if the cached answer differs.
 * The same input goes through hp_path_merge_dots first, as server.c does
 * (RFC 3986 §5.2.4): abort() if an accepted path does not start with '/',
 * has a "." or ".." segment, grew, or changes when merged again; the
 * merged path is then resolved under the same checks.
 */
#include "hp.h"

#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char fixture[PATH_MAX]; /* root and outside live here */
static char root[PATH_MAX];
static size_t rootlen;
static hp_resolver *res;

static void put(const char *base, const char *rel, const char *text)
{
    char p[2 * PATH_MAX];
    snprintf(p, sizeof p, "%s/%s", base, rel);
    char *slash = strrchr(p, '/');
    for (char *s = p + strlen(base) + 1; s < slash; s++) {
        if (*s == '/') {
            *s = '\0';
            mkdir(p, 0755);
            *s = '/';
        }
    }
    *slash = '\0';
    mkdir(p, 0755);
    *slash = '/';
    FILE *f = fopen(p, "w");
    if (!f)
        abort();
    fputs(text, f);
    fclose(f);
}

static void link_at(const char *target, const char *rel)
{
    char p[2 * PATH_MAX];
    snprintf(p, sizeof p, "%s/%s", root, rel);
    if (symlink(target, p) != 0)
        abort();
}

static int rm_one(const char *path, const struct stat *st, int flag,
                  struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    return flag == FTW_DP ? rmdir(path) : unlink(path);
}

/* The fixture goes when the process exits normally (a crash keeps it for
 * inspection). */
static void cleanup(void)
{
    nftw(fixture, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void setup(void)
{
    char tmpl[] = "/tmp/hotpub-fuzz-resolve-XXXXXX";
    char outside[2 * PATH_MAX];
    if (!mkdtemp(tmpl) || !realpath(tmpl, fixture))
        abort();
    if (snprintf(root, sizeof root, "%s/root", fixture) >= (int)sizeof root)
        abort();
    snprintf(outside, sizeof outside, "%s/outside", fixture);
    static const char *const files[] = {"index.c",
                                        "hello.c",
                                        "hello.so",
                                        "app/index.c",
                                        "app/page.so",
                                        "app/sub/deep.c",
                                        "static.txt",
                                        "style.css",
                                        "site.ini",
                                        "dep.d",
                                        "obj.o",
                                        "lib.h",
                                        "docs/index.html",
                                        "docs/a.txt",
                                        "sp ace.txt",
                                        "pct%41.txt",
                                        "_private/secret.txt",
                                        "_private/p.c",
                                        "app/_lib.c",
                                        ".hidden/x.txt",
                                        ".env",
                                        "a/b/c.c",
                                        "a/b/index.so",
                                        "a/b.txt",
                                        "dir.c/x.txt",
                                        "x.c.txt",
                                        "up/..x.txt",
                                        "Upper.C",
                                        "app/LIB.SO",
                                        "page.tpl",
                                        "mail.TPL",
                                        "index.c.bak",
                                        "lib.so.1",
                                        "x.orig",
                                        "notes.txt~",
                                        "#index.c#",
                                        "site.ini.dpkg-old",
                                        "index.d.ts",
                                        "v.h264"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++)
        put(root, files[i], "x\n");
    put(outside, "secret.txt", "outside\n");
    put(outside, "page.c", "outside\n");
    link_at("../outside", "out_dir");
    link_at("../outside/secret.txt", "out_file.txt");
    link_at("../outside/page.c", "out_page.c");
    link_at("static.txt", "in_link.txt");
    link_at("_private/secret.txt", "to_private.txt");
    link_at("hello.c", "src_link.txt");
    link_at("_private", "priv_dir");
    link_at("page.tpl", "tpl_link.txt");
    link_at("Upper.C", "upper_link.txt");
    link_at("/etc", "etc");
    atexit(cleanup);
    rootlen = strlen(root);
    res = hp_resolver_new(root);
    if (!res)
        abort();
}

/* The shipped rule (resolve.c's hp_name_private: any case, templates,
 * copies and leftovers), on the last segment, so the oracle checks what
 * static.c and resolve.c refuse rather than an older list of its own. */
static bool private_ext(const char *p)
{
    const char *slash = strrchr(p, '/');
    return hp_name_private(slash ? slash + 1 : p);
}

/* path under the root, with no '_' or '.' segment after it. */
static bool public_under_root(const char *path)
{
    if (strncmp(path, root, rootlen) != 0 || path[rootlen] != '/')
        return false;
    for (const char *s = path + rootlen; s; s = strchr(s + 1, '/'))
        if (s[1] == '_' || s[1] == '.' || s[1] == '\0' || s[1] == '/')
            return false;
    return true;
}

/* A redirect to a directory's '/': a path of this site, never one a
 * browser reads as another host ("//host", "/\\host"), ending in '/', of
 * printable ASCII only (percent-encoded). */
static void check_redirect(const struct hp_target *t)
{
    const char *p = t->path;
    size_t n = strlen(p);
    if (n < 2 || p[0] != '/' || p[1] == '/' || p[1] == '\\' ||
        p[n - 1] != '/')
        abort();
    for (size_t i = 0; i < n; i++)
        if (p[i] <= ' ' || p[i] >= 0x7f || p[i] == '\\')
            abort();
}

static void check(const struct hp_target *t)
{
    if (t->kind == HP_T_NOTFOUND)
        return;
    if (t->kind == HP_T_DIRSLASH) {
        check_redirect(t);
        return;
    }
    if (t->kind != HP_T_PAGE && t->kind != HP_T_STATIC)
        abort();
    char canon[PATH_MAX];
    if (!public_under_root(t->path) || !realpath(t->path, canon) ||
        !public_under_root(canon))
        abort();
    if (t->kind == HP_T_STATIC && (private_ext(t->path) || private_ext(canon)))
        abort();
    if (t->kind == HP_T_PAGE) {
        size_t n = strlen(t->path);
        bool c = n > 2 && strcmp(t->path + n - 2, ".c") == 0;
        bool so = n > 3 && strcmp(t->path + n - 3, ".so") == 0;
        if ((!c && !so) || !t->handler[0])
            abort();
    }
}

static bool has_dot_segment(const char *p)
{
    for (const char *s = strchr(p, '/'); s; s = strchr(s + 1, '/')) {
        size_t n = strcspn(s + 1, "/");
        if ((n == 1 && s[1] == '.') || (n == 2 && s[1] == '.' && s[2] == '.'))
            return true;
    }
    return false;
}

/* The server's merge, then the resolver on what it keeps. */
static void check_merged(const char *url)
{
    size_t n = strlen(url);
    char *m = malloc(n + 1), *again = malloc(n + 1);
    memcpy(m, url, n + 1);
    if (hp_path_merge_dots(m)) {
        if (m[0] != '/' || strlen(m) > n || has_dot_segment(m))
            abort();
        memcpy(again, m, strlen(m) + 1);
        if (!hp_path_merge_dots(again) || strcmp(again, m) != 0)
            abort();
        static struct hp_target t;
        hp_resolve(res, m, &t);
        check(&t);
    }
    free(again);
    free(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!res)
        setup();
    char *url = malloc(size + 1);
    memcpy(url, data, size);
    url[size] = '\0';
    static struct hp_target fresh, cached;
    hp_resolver_invalidate(res);
    hp_resolve(res, url, &fresh);
    check(&fresh);
    hp_resolve(res, url, &cached);
    if (cached.kind != fresh.kind ||
        (fresh.kind != HP_T_NOTFOUND &&
         (strcmp(cached.path, fresh.path) != 0 ||
          strcmp(cached.handler, fresh.handler) != 0)))
        abort();
    check_merged(url);
    free(url);
    return 0;
}
