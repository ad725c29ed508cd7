/*
 * test_template.c - template.c against the Mustache spec's required modules.
 *
 * tests/unit/data/mustache-spec.json holds every case of the spec's
 * interpolation, sections, inverted, comments, partials and delimiters
 * modules (github.com/mustache/spec, converted once from its specs/NAME.json to
 * name, template, data, partials, expected; nothing is fetched at test
 * time). Each case must render exactly its expected text. Then hotpub's own
 * rules: syntax errors with file:line, the partial depth limit, values.
 */
#include "hp.h"
#include "t.h"
#include "template.h"

#ifndef SPEC_FILE
#define SPEC_FILE "tests/unit/data/mustache-spec.json"
#endif

/* Partials of a case: parsed on demand from its "partials" object. */
struct partials {
    const json_t *src;
    struct hp_tpl *parsed[32];
    const char *names[32];
    size_t n;
};

static const struct hp_tpl *get_partial(void *ctx, const struct hp_tpl *from,
                                        const char *name, char **err)
{
    struct partials *p = ctx;
    (void)from;
    for (size_t i = 0; i < p->n; i++)
        if (strcmp(p->names[i], name) == 0)
            return p->parsed[i];
    const json_t *s = p->src ? json_object_get(p->src, name) : NULL;
    if (!s || p->n == 32)
        return NULL;
    struct hp_tpl *t =
        hp_tpl_parse(json_string_value(s), json_string_length(s), name, err);
    if (!t)
        return NULL;
    p->names[p->n] = name;
    p->parsed[p->n++] = t;
    return t;
}

static char *render(const char *tpl, const json_t *data, const json_t *partials,
                    char **err)
{
    struct partials p = {.src = partials};
    struct hp_buf out = {0};
    char *res = NULL;
    struct hp_tpl *t = hp_tpl_parse(tpl, strlen(tpl), "case.tpl", err);
    if (t && hp_tpl_render(t, data, get_partial, &p, &out, err) == 0)
        res = hp_xstrdup(out.p ? out.p : "");
    hp_buf_free(&out);
    hp_tpl_free(t);
    for (size_t i = 0; i < p.n; i++)
        hp_tpl_free(p.parsed[i]);
    return res;
}

static void test_spec_cases(void)
{
    json_error_t je;
    json_t *spec = json_load_file(SPEC_FILE, 0, &je);
    CHECK(spec != NULL);
    if (!spec) {
        fprintf(stderr, "  %s: %s\n", SPEC_FILE, je.text);
        return;
    }
    const json_t *cases = json_object_get(spec, "cases");
    size_t i, passed = 0, total = json_array_size(cases);
    const json_t *c;
    const char *modules[] = {"interpolation", "sections", "inverted",
                             "comments",      "partials", "delimiters"};
    size_t per[6] = {0};
    json_array_foreach(cases, i, c)
    {
        const char *mod = json_string_value(json_object_get(c, "module"));
        const char *name = json_string_value(json_object_get(c, "name"));
        const char *expected =
            json_string_value(json_object_get(c, "expected"));
        char *err = NULL;
        char *got = render(json_string_value(json_object_get(c, "template")),
                           json_object_get(c, "data"),
                           json_object_get(c, "partials"), &err);
        if (got && strcmp(got, expected) == 0) {
            passed++;
            for (size_t m = 0; m < 6; m++)
                per[m] += strcmp(mod, modules[m]) == 0;
        } else {
            fprintf(stderr,
                    "  FAIL spec %s / %s: got \"%s\" (%s), expected "
                    "\"%s\"\n",
                    mod, name, got ? got : "(null)", err ? err : "", expected);
            t_failed_checks++;
        }
        free(got);
        free(err);
    }
    /* Every required module is there, and every case of it passed. */
    for (size_t m = 0; m < 6; m++)
        CHECK(per[m] >= 10);
    CHECK(total >= 130);
    printf("  %zu of %zu Mustache spec cases pass\n", passed, total);
    json_decref(spec);
}

static void check_error(const char *tpl, const char *want)
{
    char *err = NULL;
    struct hp_tpl *t = hp_tpl_parse(tpl, strlen(tpl), "dir/x.tpl", &err);
    CHECK(t == NULL);
    CHECK(err && strstr(err, want));
    if (!err || !strstr(err, want))
        fprintf(stderr, "  for %s: got \"%s\", want \"%s\"\n", tpl,
                err ? err : "(null)", want);
    free(err);
    hp_tpl_free(t);
}

static void test_syntax_errors(void)
{
    check_error("a\nb {{x", "dir/x.tpl:2: unclosed tag");
    check_error("{{#a}}\n\n{{/b}}", "dir/x.tpl:3: {{/b}} closes {{#a}}");
    check_error("line1\n{{#a}}\nx", "dir/x.tpl:2: section {{#a}} is never "
                                    "closed");
    check_error("{{/a}}", "dir/x.tpl:1: closing tag without an open section");
    check_error("\n\n\n{{= a =}}", "dir/x.tpl:4: bad delimiter tag");
    check_error("{{=<% %>=}}\n<% x }}", "dir/x.tpl:2: unclosed tag");
    check_error("{{}}", "empty tag name");
    check_error("{{{x}}", "unclosed tag");
}

static void test_values(void)
{
    char *err = NULL;
    json_t *d = json_pack("{s:I, s:f, s:b, s:[i,i], s:{s:s}, s:s}", "big",
                          (json_int_t)9223372036854775807LL, "r", 0.1, "t", 1,
                          "l", 1, 2, "o", "k", "v", "u", "h\xc3\xa9 <b>");
    char *got = render("{{big}} {{r}} {{t}} {{{l}}} {{{o}}} {{u}} {{&u}}", d,
                       NULL, &err);
    CHECK_STR(got, "9223372036854775807 0.1 true [1,2] {\"k\":\"v\"} "
                   "h\xc3\xa9 &lt;b&gt; h\xc3\xa9 <b>");
    free(got);
    /* "" and 0 are true; a single quote is escaped too (attribute values). */
    json_t *e = json_pack("{s:s, s:i, s:s}", "s", "", "z", 0, "q", "it's");
    got =
        render("{{#s}}S{{/s}}{{#z}}Z{{/z}}{{^s}}!{{/s}} {{q}}", e, NULL, &err);
    CHECK_STR(got, "SZ it&#39;s");
    free(got);
    /* NULL data is an empty context. */
    got = render("[{{x}}]", NULL, NULL, &err);
    CHECK_STR(got, "[]");
    free(got);
    json_decref(d);
    json_decref(e);
}

static void test_partial_depth(void)
{
    char *err = NULL;
    json_t *p = json_pack("{s:s}", "loop", "x{{>loop}}");
    char *got = render("{{>loop}}", NULL, p, &err);
    CHECK(got == NULL);
    CHECK(err && strstr(err, "nested more than 64"));
    free(got);
    free(err);
    json_decref(p);
}

/* A partial that fails to parse fails the render with its own file:line. */
static void test_partial_error(void)
{
    char *err = NULL;
    json_t *p = json_pack("{s:s}", "bad", "ok\n{{#x}}");
    char *got = render("a {{>bad}} b", NULL, p, &err);
    CHECK(got == NULL);
    CHECK(err && strstr(err, "bad:2: section {{#x}} is never closed"));
    free(got);
    free(err);
    json_decref(p);
}

/* Escaping copies runs of plain bytes and looks 16 bytes at a time: every
 * special byte at every offset of values around those sizes, plain bytes
 * of every value (UTF-8 and control bytes pass as they are), and a NUL
 * inside a value, against a byte-at-a-time escaper. */
static void test_escape_positions(void)
{
    static const char specials[] = "&<>\"'";
    static const char *const as[] = {"&amp;", "&lt;", "&gt;", "&quot;",
                                     "&#39;"};
    char *err = NULL;
    int bad = 0;
    for (size_t len = 0; len <= 40; len++) {
        for (size_t at = 0; at <= len; at++) {
            for (size_t k = 0; k < 5; k++) {
                char v[64];
                for (size_t i = 0; i < len; i++)
                    v[i] = (char)('a' + i % 26);
                if (at < len)
                    v[at] = specials[k];
                struct hp_buf want = {0};
                hp_buf_append(&want, "[", 1);
                for (size_t i = 0; i < len; i++)
                    if (i == at)
                        hp_buf_puts(&want, as[k]);
                    else
                        hp_buf_append(&want, &v[i], 1);
                hp_buf_append(&want, "]", 1);
                json_t *d = json_pack("{s:s#}", "v", v, (int)len);
                char *got = render("[{{v}}]", d, NULL, &err);
                bad += !got || strcmp(got, want.p) != 0;
                free(got);
                json_decref(d);
                hp_buf_free(&want);
            }
        }
    }
    CHECK(bad == 0);
    /* every byte value but NUL, in one 255-byte value */
    char all[256];
    struct hp_buf want = {0};
    for (int c = 1; c < 256; c++) {
        all[c - 1] = (char)c;
        const char *sp = strchr(specials, c);
        if (sp)
            hp_buf_puts(&want, as[sp - specials]);
        else
            hp_buf_append(&want, &all[c - 1], 1);
    }
    json_t *d = json_object();
    json_object_set_new(d, "v", json_stringn_nocheck(all, 255));
    json_object_set_new(d, "n", json_stringn("a\0<b", 4));
    char *got = render("{{v}}", d, NULL, &err);
    CHECK(got && strcmp(got, want.p) == 0);
    free(got);
    struct hp_tpl *t = hp_tpl_parse("{{n}}|{{{n}}}", 13, "n.tpl", &err);
    struct hp_buf out = {0};
    CHECK(t && hp_tpl_render(t, d, NULL, NULL, &out, &err) == 0);
    CHECK(out.len == 12 && memcmp(out.p, "a\0&lt;b|a\0<b", 12) == 0);
    hp_buf_free(&out);
    hp_tpl_free(t);
    hp_buf_free(&want);
    json_decref(d);
}

/* Names resolve the same in small objects (searched in order) and large
 * ones (hashed), with a key that is a prefix of another, and through more
 * nested sections than a render holds without allocating. */
static void test_lookup_and_depth(void)
{
    char *err = NULL;
    json_t *small =
        json_pack("{s:s, s:s, s:s}", "na", "1", "nam", "2", "name", "3");
    json_t *big = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "a", "A", "b",
                            "B", "na", "4", "nam", "5", "name", "6", "x", "X");
    json_t *d = json_pack("{s:O, s:O}", "s", small, "b", big);
    char *got = render("{{s.name}}{{s.nam}}{{s.na}}{{s.n}}|{{b.name}}{{b.nam}}"
                       "{{b.na}}{{b.n}}|{{#s}}{{name}}{{x}}{{/s}}",
                       d, NULL, &err);
    CHECK_STR(got, "321|654|3");
    free(got);
    /* 40 nested sections, each a context of its own, and an outer name
     * looked up from the innermost one */
    json_t *root = json_pack("{s:s}", "top", "T");
    json_t *cur = root;
    struct hp_buf tpl = {0};
    for (int i = 0; i < 40; i++) {
        json_t *in = json_pack("{s:i}", "d", i);
        json_object_set_new(cur, "c", in);
        cur = in;
        hp_buf_puts(&tpl, "{{#c}}");
    }
    hp_buf_puts(&tpl, "{{d}}{{top}}");
    for (int i = 0; i < 40; i++)
        hp_buf_puts(&tpl, "{{/c}}");
    got = render(tpl.p, root, NULL, &err);
    CHECK_STR(got, "39T");
    free(got);
    hp_buf_free(&tpl);
    json_decref(root);
    json_decref(d);
    json_decref(small);
    json_decref(big);
}

int main(int argc, char **argv)
{
    T_INIT(argc, argv);
    T_RUN(test_spec_cases);
    T_RUN(test_syntax_errors);
    T_RUN(test_values);
    T_RUN(test_partial_depth);
    T_RUN(test_partial_error);
    T_RUN(test_escape_positions);
    T_RUN(test_lookup_and_depth);
    T_DONE();
}
