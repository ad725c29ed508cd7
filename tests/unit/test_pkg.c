/*
 * test_pkg.c - the HP_PKG scanner (pkg.c): declarations found in a page's
 * bytes with their lines, outside comments and literals; names checked;
 * malformed declarations refused with their line.
 *
 * An argument runs only the tests whose names contain it:
 * build/tests/test_pkg comments
 */
#include "hp.h"
#include "t.h"

#include <string.h>

static int scan(const char *src, struct hp_pkgs *p, char *err, size_t n)
{
    err[0] = '\0';
    return hp_pkg_scan(src, strlen(src), p, err, n);
}

static void test_finds_declarations_with_lines(void)
{
    struct hp_pkgs p;
    char err[256];
    const char *src = "#include <hotpub.h>\n"
                      "HP_PKG(\"zlib\");\n"
                      "HP_PKG ( \"jansson\" ) ;\n"
                      "HP_PKG(\n  \"glib-2.0\");\n"
                      "HP_PKG(\"zlib\");\n"; /* again: once */
    CHECK(scan(src, &p, err, sizeof err) == 0);
    CHECK(p.n == 3);
    CHECK(strcmp(p.name[0], "zlib") == 0 && p.line[0] == 2);
    CHECK(strcmp(p.name[1], "jansson") == 0 && p.line[1] == 3);
    CHECK(strcmp(p.name[2], "glib-2.0") == 0 && p.line[2] == 5);
}

static void test_comments_and_literals_do_not_count(void)
{
    struct hp_pkgs p;
    char err[256];
    const char *src = "// HP_PKG(\"a\");\n"
                      "/* HP_PKG(\"b\");\n HP_PKG(\"c\"); */\n"
                      "const char *s = \"HP_PKG(\\\"d\\\")\";\n"
                      "char q = '\"'; HP_PKG(\"real\");\n"
                      "int MY_HP_PKG = 1, HP_PKGS = 2;\n"
                      "#ifdef HP_PKG\n#endif\n";
    CHECK(scan(src, &p, err, sizeof err) == 0);
    CHECK(p.n == 1);
    CHECK(p.n == 1 && strcmp(p.name[0], "real") == 0 && p.line[0] == 5);
}

static void test_malformed_refused_with_line(void)
{
    struct hp_pkgs p;
    char err[256];
    CHECK(scan("\n\nHP_PKG(zlib);\n", &p, err, sizeof err) < 0);
    CHECK(strncmp(err, "3: error: ", 10) == 0 && strstr(err, "double quotes"));
    CHECK(scan("HP_PKG(\"a b\");\n", &p, err, sizeof err) < 0);
    CHECK(strstr(err, "\"a b\"") != NULL);
    CHECK(scan("HP_PKG(\"--help\");\n", &p, err, sizeof err) < 0);
    CHECK(scan("HP_PKG(\"x;rm\");\n", &p, err, sizeof err) < 0);
    CHECK(scan("HP_PKG(\"\");\n", &p, err, sizeof err) < 0);
    CHECK(scan("HP_PKG(\"a\" \"b\");\n", &p, err, sizeof err) < 0);
    CHECK(scan("HP_PKG(\"unterminated\n", &p, err, sizeof err) < 0);
    CHECK(hp_pkg_name_ok("libpq", 5) && hp_pkg_name_ok("gtk+-3.0", 8));
    CHECK(!hp_pkg_name_ok("a/b", 3) && !hp_pkg_name_ok("-x", 2));
}

static void test_too_many_refused(void)
{
    struct hp_buf b = {0};
    struct hp_pkgs p;
    char err[256];
    for (int i = 0; i <= HP_PKG_MAX; i++)
        hp_buf_printf(&b, "HP_PKG(\"p%d\");\n", i);
    CHECK(hp_pkg_scan(b.p, b.len, &p, err, sizeof err) < 0);
    CHECK(strncmp(err, "17: ", 4) == 0);
    hp_buf_free(&b);
}

int main(int argc, char **argv)
{
    T_INIT(argc, argv);
    T_RUN(test_finds_declarations_with_lines);
    T_RUN(test_comments_and_literals_do_not_count);
    T_RUN(test_malformed_refused_with_line);
    T_RUN(test_too_many_refused);
    T_DONE();
}
