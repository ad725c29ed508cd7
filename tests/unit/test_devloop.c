/*
 * test_devloop.c - dev mode's browser side (devloop.c): where the
 * live-reload script goes, what it lists, and the compile-error page's
 * links and source excerpts.
 */
#include "devloop.h"

#include "t.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void body_set(struct hp_buf *b, const char *s)
{
    b->len = 0;
    hp_buf_puts(b, s);
    hp_buf_append(b, "", 1);
    b->len--;
}

static void test_inject_off_does_nothing(void)
{
    struct hp_buf b = {0};
    const char *deps[] = {"/r/p.c"};
    hp_devloop_stop();
    body_set(&b, "<html><body>x</body></html>");
    hp_devloop_inject(&b, deps, 1, NULL);
    CHECK_STR(b.p, "<html><body>x</body></html>");
    hp_buf_free(&b);
}

static void test_inject_before_last_body_close(void)
{
    struct hp_buf b = {0};
    const char *deps[] = {"/r/p.c", "/r/p.c", "/r/sub/t.tpl", "/r/x<y.c"};
    hp_devloop_start("/r");
    body_set(&b, "<p>a</body> quoted</p><BODY>b</BODY ></html>");
    hp_devloop_inject(&b, deps, 4, NULL);
    hp_buf_append(&b, "", 1);
    /* not before the first "</body>", nor the case-insensitive last one
     * ("</BODY >" is not "</body>"): the last exact match */
    const char *s = strstr(b.p, "<script src=\"/_hotpub/live-reload.js\" "
                                "data-hotpub-live-reload data-deps=\"");
    CHECK(s != NULL);
    CHECK(s && s == b.p + strlen("<p>a"));
    /* the files as an HTML-escaped JSON list, each once; no inline code
     * (a page's Content-Security-Policy would refuse it) */
    CHECK(strstr(b.p, "data-deps=\"[&quot;/p.c&quot;,&quot;/sub/t.tpl&quot;,"
                      "&quot;/x&lt;y.c&quot;]\"></script></body>") != NULL);
    CHECK(strstr(b.p, "x<y") == NULL);
    CHECK(strstr(b.p, "EventSource") == NULL);
    hp_devloop_stop();
    hp_buf_free(&b);
}

/* The nonce a policy allows scripts by (CSP Level 3: script-src-elem,
 * else script-src, else default-src), and the script element with it. */
static void test_csp_nonce(void)
{
    char n[64];
    CHECK_STR(hp_devloop_csp_nonce("script-src 'nonce-r4nD+/0=' "
                                   "'strict-dynamic'; object-src 'none'",
                                   n, sizeof n),
              "r4nD+/0=");
    CHECK_STR(hp_devloop_csp_nonce("default-src 'self'; Script-Src "
                                   "'self' 'NONCE-abc_-1'",
                                   n, sizeof n),
              "abc_-1");
    /* script-src-elem wins; default-src only without script-src */
    CHECK_STR(hp_devloop_csp_nonce("script-src 'nonce-aaa'; "
                                   "script-src-elem 'nonce-bbb'",
                                   n, sizeof n),
              "bbb");
    CHECK_STR(hp_devloop_csp_nonce("default-src 'nonce-ddd'", n, sizeof n),
              "ddd");
    CHECK(hp_devloop_csp_nonce("default-src 'nonce-ddd'; script-src 'self'",
                               n, sizeof n) == NULL);
    /* none, or one that is no base64 (an attribute could be broken out
     * of), or too long for out */
    CHECK(hp_devloop_csp_nonce("default-src 'self'", n, sizeof n) == NULL);
    CHECK(hp_devloop_csp_nonce("style-src 'nonce-abc'", n, sizeof n) == NULL);
    CHECK(hp_devloop_csp_nonce("script-src 'nonce-a\"b'", n, sizeof n) ==
          NULL);
    CHECK(hp_devloop_csp_nonce("script-src 'nonce-'", n, sizeof n) == NULL);
    CHECK(hp_devloop_csp_nonce("script-src 'nonce-abcdef'", n, 4) == NULL);
    CHECK(hp_devloop_csp_nonce(NULL, n, sizeof n) == NULL);
    CHECK(hp_devloop_csp_nonce("", n, sizeof n) == NULL);

    struct hp_buf b = {0};
    const char *deps[] = {"/r/p.c"};
    hp_devloop_start("/r");
    body_set(&b, "<body></body>");
    hp_devloop_inject(&b, deps, 1, "r4nD+/0=");
    hp_buf_append(&b, "", 1);
    CHECK(strstr(b.p, "<script src=\"/_hotpub/live-reload.js\" "
                      "nonce=\"r4nD+/0=\" data-hotpub-live-reload") != NULL);
    hp_devloop_stop();
    hp_buf_free(&b);
}

static void test_inject_without_body_close(void)
{
    struct hp_buf b = {0};
    hp_devloop_start("/r");
    body_set(&b, "{\"json\": \"</bod\"}");
    hp_devloop_inject(&b, NULL, 0, NULL);
    CHECK_STR(b.p, "{\"json\": \"</bod\"}");
    hp_devloop_stop();
    hp_buf_free(&b);
}

static void test_error_html_links_and_excerpt(void)
{
    char dir[PATH_MAX], path[PATH_MAX + 8], diag[4 * PATH_MAX + 8 * 3 + 200];
    struct hp_buf out = {0};
    t_make_temp(dir, "/tmp/hp-devloop-XXXXXX");
    snprintf(path, sizeof path, "%s/p.c", dir);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (!f)
        return;
    for (int i = 1; i <= 20; i++)
        fprintf(f, "line %d <%s>\n", i, i == 10 ? "bad & wrong" : "ok");
    fclose(f);
    snprintf(diag, sizeof diag,
             "%s: In function 'x':\n%s:10:5: error: expected ';'\n"
             "%s:10:5: error: expected ';' again\n",
             path, path, path);
    hp_devloop_start(dir);
    hp_devloop_error_html(&out, path, diag);
    hp_buf_append(&out, "", 1);
    CHECK(strstr(out.p, "/p.c could not be built") != NULL);
    CHECK(strstr(out.p, "#L10\">/p.c:10</a>") != NULL);
    /* one excerpt for the two diagnostics on the same line */
    const char *hit = strstr(out.p, "class=\"hit\"");
    CHECK(hit && !strstr(hit + 1, "class=\"hit\""));
    CHECK(strstr(out.p, "line 10 &lt;bad &amp; wrong&gt;") != NULL);
    CHECK(strstr(out.p, "line 7 ") != NULL && strstr(out.p, "line 13 "));
    CHECK(strstr(out.p, "line 6 ") == NULL && !strstr(out.p, "line 14 "));
    /* the overlay's HTML carries no style a page's CSP would refuse; the
     * 500 page's has it in a <style> of its own */
    CHECK(strstr(out.p, "<style") == NULL && !strstr(out.p, "style="));
    out.len = 0;
    hp_devloop_error_page(&out, path, diag);
    hp_buf_append(&out, "", 1);
    CHECK(strncmp(out.p, "<style>.hp-err{", 15) == 0);
    CHECK(strstr(out.p, "#L10\">/p.c:10</a>") != NULL);
    hp_devloop_stop();
    hp_buf_free(&out);
    unlink(path);
    rmdir(dir);
}

/* A module that built but whose init failed or crashed is not "could not
 * be built": the heading says it failed to initialise. */
static void test_error_html_init_failures(void)
{
    const char *diags[] = {"init failed: cannot open the thing",
                           HP_DIAG_INIT_CRASHED
                           " a worker process (SIGSEGV) in sub/_app.c"};
    for (size_t i = 0; i < 2; i++) {
        struct hp_buf out = {0};
        hp_devloop_error_html(&out, "/r/sub/_app.c", diags[i]);
        hp_buf_append(&out, "", 1);
        CHECK(strstr(out.p, "failed to initialise</h1>") != NULL);
        CHECK(strstr(out.p, "could not be built") == NULL);
        hp_buf_free(&out);
    }
    struct hp_buf out = {0};
    hp_devloop_error_html(&out, "/r/p.c", "p.c:1:1: error: init failed");
    hp_buf_append(&out, "", 1);
    CHECK(strstr(out.p, "could not be built</h1>") != NULL);
    hp_buf_free(&out);
}

/* A compiler that did not run: saving the page cannot help, so the page
 * does not say to. */
static void test_error_html_no_compiler(void)
{
    struct hp_buf out = {0};
    hp_devloop_error_html(&out, "/r/p.c",
                          HP_DIAG_NO_COMPILER "cannot run /x/cc: No such "
                                              "file or directory\n");
    hp_buf_append(&out, "", 1);
    CHECK(strstr(out.p, "cannot run /x/cc: No such file") != NULL);
    CHECK(strstr(out.p, "The compiler itself cannot run") != NULL);
    CHECK(strstr(out.p, "Fix it and save") == NULL);
    hp_buf_free(&out);
}

static void test_served_script_and_stylesheet(void)
{
    const char *js = hp_devloop_js(), *css = hp_devloop_css();
    /* what the injected element's src and the overlay's <link> fetch */
    CHECK(strstr(js, "new EventSource('/_hotpub/events')") != NULL);
    CHECK(strstr(js, "getAttribute('data-deps')") != NULL);
    CHECK(strstr(js, "'/_hotpub/live-reload.css'") != NULL);
    CHECK(strstr(css, ".hp-err .hit{") != NULL);
    CHECK(strchr(css, '<') == NULL);
}

int main(int argc, char **argv)
{
    T_INIT(argc, argv);
    T_RUN(test_inject_off_does_nothing);
    T_RUN(test_inject_before_last_body_close);
    T_RUN(test_inject_without_body_close);
    T_RUN(test_csp_nonce);
    T_RUN(test_error_html_links_and_excerpt);
    T_RUN(test_error_html_init_failures);
    T_RUN(test_error_html_no_compiler);
    T_RUN(test_served_script_and_stylesheet);
    T_DONE();
}
