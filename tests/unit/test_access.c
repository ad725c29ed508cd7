/*
 * test_access.c - the access log (access.c): field escaping, and whole
 * lines a client cannot forge fields into.
 */
#include "../../src/access.h"
#include "t.h"

#include <unistd.h>

static char *esc(const char *s)
{
    static char out[256];
    struct hp_buf b = {0};
    hp_access_escape(&b, s);
    snprintf(out, sizeof out, "%.*s", (int)b.len, b.p ? b.p : "");
    hp_buf_free(&b);
    return out;
}

static void test_escape_fields(void)
{
    CHECK_STR(esc("Mozilla/5.0 (X11)"), "Mozilla/5.0 (X11)");
    CHECK_STR(esc(""), "");
    CHECK_STR(esc("a\"b"), "a\\x22b");
    CHECK_STR(esc("a\\b"), "a\\x5Cb");
    CHECK_STR(esc("\t\x1f\x7f\xff"), "\\x09\\x1F\\x7F\\xFF");
    CHECK_STR(esc("\"\""), "\\x22\\x22");
}

/* The repro from the fresh-user test: the line keeps exactly its fields. */
static void test_line_cannot_be_forged(void)
{
    char dir[PATH_MAX], path[PATH_MAX + 16], line[1024] = "";
    t_make_temp(dir, "/tmp/hp-access-XXXXXX");
    snprintf(path, sizeof path, "%s/access.log", dir);
    CHECK(hp_access_open(path) == 0);
    hp_access_line("127.0.0.1", "GET", "/a\"b", "HTTP/1.1", 200, 3, "r\" \"z",
                   "x\" 404 0 \"http://forged/\" \"Mozilla");
    hp_access_close();
    FILE *f = fopen(path, "r");
    CHECK(f && fgets(line, sizeof line, f));
    if (f)
        fclose(f);
    CHECK(strstr(line, "\"GET /a\\x22b HTTP/1.1\" 200 3 \"r\\x22 \\x22z\" "
                       "\"x\\x22 404 0 \\x22http://forged/\\x22 "
                       "\\x22Mozilla\"\n") != NULL);
    int quotes = 0;
    for (const char *p = line; *p; p++)
        quotes += *p == '"';
    CHECK(quotes == 6);
    unlink(path);
    rmdir(dir);
}

int main(int argc, char **argv)
{
    T_INIT(argc, argv);
    T_RUN(test_escape_fields);
    T_RUN(test_line_cannot_be_forged);
    T_DONE();
}
