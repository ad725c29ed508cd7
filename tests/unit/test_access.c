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

/* The dying paths: the buffered lines are written by hp_access_dying, the
 * answer's line by hp_access_line_now, formatted without stdio or
 * localtime as hp_access_line formats it (the same time field). */
static void test_dying_writes_buffer_and_unbuffered_line(void)
{
    char dir[PATH_MAX], path[PATH_MAX + 16], a[1024] = "", b[1024] = "";
    t_make_temp(dir, "/tmp/hp-access-XXXXXX");
    snprintf(path, sizeof path, "%s/access.log", dir);
    CHECK(hp_access_open(path) == 0);
    hp_access_line("10.0.0.1", "GET", "/a", "HTTP/1.1", 200, 2, NULL, NULL);
    FILE *f = fopen(path, "r");
    CHECK(f && !fgets(a, sizeof a, f)); /* buffered */
    CHECK(hp_access_dying());
    if (f)
        clearerr(f); /* the EOF above */
    hp_access_line_now("", "GET", "/b?x=\"1\"", "HTTP/1.1", 502, 72, NULL,
                       NULL);
    CHECK(f && fgets(a, sizeof a, f) && fgets(b, sizeof b, f));
    if (f)
        fclose(f);
    hp_access_close();
    CHECK(strstr(a, "10.0.0.1 - - [") == a);
    CHECK(strstr(a, "] \"GET /a HTTP/1.1\" 200 2 \"-\" \"-\"\n") != NULL);
    CHECK(strstr(b, "- - - [") == b);
    CHECK(strstr(b, "] \"GET /b?x=\\x221\\x22 HTTP/1.1\" 502 72 \"-\" "
                    "\"-\"\n") != NULL);
    /* "[01/Dec/2026:05:42:44 +0000]": the same day, hour and offset as
     * strftime's (a test run at midnight may see two days) */
    const char *ta = strchr(a, '['), *tb = strchr(b, '[');
    CHECK(ta && tb && strchr(ta, ']') - ta == 27 && strchr(tb, ']') - tb == 27);
    if (ta && tb) {
        CHECK(strncmp(ta, tb, 15) == 0);
        CHECK(strncmp(ta + 21, tb + 21, 6) == 0);
    }
    unlink(path);
    rmdir(dir);
}

/* hp_access_line_now fills Referer and User-Agent when given (escaped as
 * hp_access_line's, each cut to 512 bytes), the line still whole. */
static void test_line_now_referer_and_agent(void)
{
    char dir[PATH_MAX], path[PATH_MAX + 16], a[8192] = "", b[8192] = "";
    char big[3000];
    t_make_temp(dir, "/tmp/hp-access-XXXXXX");
    snprintf(path, sizeof path, "%s/access.log", dir);
    CHECK(hp_access_open(path) == 0);
    CHECK(hp_access_dying());
    hp_access_line_now("10.0.0.2", "GET", "/c", "HTTP/1.1", 502, 9,
                       "http://x/\"r\"", "curl/8.0");
    memset(big, 'u', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    hp_access_line_now("10.0.0.2", "GET", big, "HTTP/1.1", 503, 0, big, big);
    FILE *f = fopen(path, "r");
    CHECK(f && fgets(a, sizeof a, f) && fgets(b, sizeof b, f));
    if (f)
        fclose(f);
    hp_access_close();
    CHECK(strstr(a, "] \"GET /c HTTP/1.1\" 502 9 \"http://x/\\x22r\\x22\" "
                    "\"curl/8.0\"\n") != NULL);
    CHECK(strstr(b, " HTTP/1.1\" 503 0 \"uuu") != NULL);
    size_t n = strlen(b);
    CHECK(n > 3 && b[n - 1] == '\n' && b[n - 2] == '"');
    const char *ua = n > 3 ? strrchr(b, ' ') : NULL; /* before the UA */
    CHECK(ua && strlen(ua) == 1 + 1 + 512 + 1 + 1);
    unlink(path);
    rmdir(dir);
}

int main(int argc, char **argv)
{
    T_INIT(argc, argv);
    T_RUN(test_escape_fields);
    T_RUN(test_line_cannot_be_forged);
    T_RUN(test_dying_writes_buffer_and_unbuffered_line);
    T_RUN(test_line_now_referer_and_agent); /* after: the process is dying */
    T_DONE();
}
