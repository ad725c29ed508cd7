/*
 * test_tplcache.c - tplcache.c: hp_render on a request built here, against
 * a temporary document root. What a request sees when templates change
 * (pinned at first use; a batch published after its first render is not
 * mixed in), reloading by file identity without a watcher, names that
 * would leave the root, and failures (500, the response replaced).
 */
#include "request.h"
#include "t.h"
#include "template.h"

#include <unistd.h>

static char root[PATH_MAX];

static void put(const char *rel, const char *text)
{
    char p[PATH_MAX + 64];
    snprintf(p, sizeof p, "%s/%s", root, rel);
    FILE *f = fopen(p, "w");
    if (!f) {
        perror(p);
        exit(2);
    }
    fputs(text, f);
    fclose(f);
}

static void req_new(hp_req *req)
{
    memset(req, 0, sizeof *req);
    size_t n = strlen(root);
    memcpy(req->target.path, root, n);
    memcpy(req->target.path + n, "/page.c", 8);
    req->status = 200;
}

/* Render tpl with {"x": "<x>"}; the body, or "500" on failure. */
static const char *render(hp_req *req, const char *tpl)
{
    static char out[4096];
    json_t *d = json_pack("{s:s}", "x", "<x>");
    req->out.len = 0;
    int rc = hp_render(req, tpl, d);
    json_decref(d);
    snprintf(out, sizeof out, "%.*s", (int)req->out.len,
             req->out.p ? req->out.p : "");
    return rc == HP_OK ? out : "500";
}

static void req_end(hp_req *req)
{
    hp_req_cleanup(req);
}

/* A request keeps what it first saw; a batch published meanwhile is used
 * by the next request only, and the previous version serves the old one
 * a template it had not used yet. */
static void test_pinning_and_batches(void)
{
    hp_req a, b;
    put("lay.tpl", "L1 {{> part}}");
    put("part.tpl", "P1 {{x}}");
    put("other.tpl", "O1");
    hp_tplcache_start(root, false, true);
    req_new(&a);
    CHECK_STR(render(&a, "lay.tpl"), "L1 P1 &lt;x&gt;");
    req_new(&b);
    CHECK_STR(render(&b, "other.tpl"), "O1"); /* b began before the batch */
    /* the watcher: both files written in one settle window */
    put("lay.tpl", "L2 {{> part}}");
    put("part.tpl", "P2 {{x}}");
    put("other.tpl", "O2");
    char p[PATH_MAX + 16];
    snprintf(p, sizeof p, "%s/lay.tpl", root);
    CHECK(hp_tplcache_touch(p) == 1);
    snprintf(p, sizeof p, "%s/part.tpl", root);
    CHECK(hp_tplcache_touch(p) == 1);
    snprintf(p, sizeof p, "%s/other.tpl", root);
    CHECK(hp_tplcache_touch(p) == 1);
    snprintf(p, sizeof p, "%s/never-used.tpl", root);
    CHECK(hp_tplcache_touch(p) == 0);
    /* not yet published: everyone still sees the old set */
    hp_req c;
    req_new(&c);
    CHECK_STR(render(&c, "lay.tpl"), "L1 P1 &lt;x&gt;");
    req_end(&c);
    hp_tplcache_publish();
    CHECK_STR(render(&a, "lay.tpl"), "L1 P1 &lt;x&gt;"); /* pinned */
    /* b's first use of lay.tpl comes after the batch, but b began before */
    CHECK_STR(render(&b, "lay.tpl"), "L1 P1 &lt;x&gt;");
    CHECK_STR(render(&b, "other.tpl"), "O1");
    req_new(&c);
    CHECK_STR(render(&c, "lay.tpl"), "L2 P2 &lt;x&gt;");
    CHECK_STR(render(&c, "other.tpl"), "O2");
    req_end(&a);
    req_end(&b);
    req_end(&c);
    hp_tplcache_stop();
}

/* Without a watcher, each use compares the file's identity. */
static void test_identity_without_watcher(void)
{
    hp_req a;
    put("id.tpl", "one");
    hp_tplcache_start(root, false, false);
    req_new(&a);
    CHECK_STR(render(&a, "id.tpl"), "one");
    req_end(&a);
    usleep(20000); /* a different mtime even on coarse clocks */
    put("id.tpl", "two, longer");
    req_new(&a);
    CHECK_STR(render(&a, "id.tpl"), "two, longer");
    req_end(&a);
    hp_tplcache_stop();
}

static void test_names_stay_in_root(void)
{
    hp_req a;
    char sub[PATH_MAX + 8];
    snprintf(sub, sizeof sub, "%s/d", root);
    mkdir(sub, 0755);
    put("d/in.tpl", "[{{> ../top}}|{{> /top}}|{{> ./top2}}]");
    put("top.tpl", "T");
    put("d/top2.tpl", "T2");
    put("d/esc.tpl", "{{> ../../x}}");
    hp_tplcache_start(root, true, true);
    req_new(&a);
    CHECK_STR(render(&a, "d/in.tpl"), "[T|T|T2]");
    CHECK_STR(render(&a, "/d/../top.tpl"), "T");
    CHECK_STR(render(&a, "../x.tpl"), "500");
    CHECK(a.forced_status == 500);
    CHECK(strstr(a.out.p, "outside the document root") != NULL); /* dev */
    CHECK_STR(render(&a, "/../x.tpl"), "500");
    CHECK_STR(render(&a, "d/esc.tpl"), "500");
    CHECK_STR(render(&a, ""), "500");
    req_end(&a);
    hp_tplcache_stop();
}

/* hp_render loads template files only: a page's source, _app.c or any
 * other file under the root is refused by name, and a .tpl symlink to
 * one by its target; partials always add .tpl. */
static void test_only_template_files(void)
{
    hp_req a;
    char lnk[PATH_MAX + 16];
    put("items.c", "int secret_source;");
    put("_app.c", "int app_source;");
    put("notes.txt", "plain");
    put("uses.tpl", "[{{> items.c}}]"); /* items.c.tpl: missing */
    snprintf(lnk, sizeof lnk, "%s/alias.tpl", root);
    CHECK(symlink("items.c", lnk) == 0);
    put("viaalias.tpl", "[{{> alias}}]");
    hp_tplcache_start(root, true, true);
    req_new(&a);
    const char *refused[] = {"items.c",     "_app.c",       "notes.txt",
                             "/items.c",    "d/../items.c", ".tpl",
                             "items.c/.tpl"};
    for (size_t i = 0; i < sizeof refused / sizeof *refused; i++) {
        CHECK_STR(render(&a, refused[i]), "500");
        CHECK(a.forced_status == 500);
        CHECK(a.out.p && !strstr(a.out.p, "_source"));
        CHECK(a.out.p && strstr(a.out.p, "is not a template name"));
    }
    CHECK_STR(render(&a, "alias.tpl"), "500");
    CHECK(a.out.p && !strstr(a.out.p, "secret_source"));
    CHECK(a.out.p && strstr(a.out.p, "which is not a template"));
    CHECK_STR(render(&a, "viaalias.tpl"), "500");
    CHECK(a.out.p && !strstr(a.out.p, "secret_source"));
    req_end(&a);
    req_new(&a);
    CHECK_STR(render(&a, "uses.tpl"), "[]");
    req_end(&a);
    hp_tplcache_stop();
    unlink(lnk);
}

/* The shared name rules (template.c), as hotpub check uses them. */
static void test_name_rules(void)
{
    CHECK(hp_tpl_is_file_name("a.tpl") && hp_tpl_is_file_name("/r/d/a.tpl"));
    CHECK(!hp_tpl_is_file_name("a.c") && !hp_tpl_is_file_name(".tpl") &&
          !hp_tpl_is_file_name("/r/.tpl") && !hp_tpl_is_file_name("a.tpl.c") &&
          !hp_tpl_is_file_name("a.TPL") && !hp_tpl_is_file_name(""));
    char *p = hp_tpl_resolve("/r", "/r/d/x.tpl", "../y", ".tpl");
    CHECK_STR(p, "/r/y.tpl");
    free(p);
    p = hp_tpl_resolve("/r", "/r/d/x.tpl", "/e/./f", ".tpl");
    CHECK_STR(p, "/r/e/f.tpl");
    free(p);
    CHECK(hp_tpl_resolve("/r", "/r/d/x.tpl", "../../etc/hostname", ".tpl") ==
          NULL);
    CHECK(hp_tpl_resolve("/r", "/r/x.tpl", "/..", "") == NULL);
    CHECK(hp_tpl_resolve("/r", "/r/x.tpl", "", ".tpl") == NULL);
}

/* A failure replaces what the page wrote; production shows no detail. */
static void test_failures(void)
{
    hp_req a;
    put("bad.tpl", "ok\n{{#x}}");
    hp_tplcache_start(root, false, true);
    req_new(&a);
    hp_puts(&a, "written before");
    int rc = hp_render(&a, "bad.tpl", NULL);
    CHECK(rc == 500 && a.forced_status == 500);
    CHECK(a.out.len == 0);
    CHECK_STR(render(&a, "missing.tpl"), "500");
    req_end(&a);
    hp_tplcache_stop();
    hp_tplcache_start(root, true, true);
    req_new(&a);
    CHECK_STR(render(&a, "bad.tpl"), "500");
    CHECK(a.out.p && strstr(a.out.p, "/bad.tpl:2: section {{#x}} is never "
                                     "closed"));
    req_end(&a);
    hp_tplcache_stop();
}

int main(int argc, char **argv)
{
    T_INIT(argc, argv);
    t_make_temp(root, "/tmp/hotpub-tplcache-XXXXXX");
    T_RUN(test_pinning_and_batches);
    T_RUN(test_identity_without_watcher);
    T_RUN(test_names_stay_in_root);
    T_RUN(test_failures);
    T_RUN(test_only_template_files);
    T_RUN(test_name_rules);
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", root);
    T_DONE();
}
