/* test_static.c - static.c: HTTP dates, byte ranges, entity tags, the
 * conditional-request plan and the race-free open beneath the root. */
#include "static.h"

#include "t.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#define T1994 ((time_t)784111777) /* Sun, 06 Nov 1994 08:49:37 GMT */
#define NOW2026 ((time_t)1790000000)

static time_t date(const char *s, int *rc)
{
    time_t t = -12345;

    *rc = hp_http_date_parse(s, NOW2026, &t);
    return t;
}

static void test_date_three_forms(void)
{
    int rc;

    CHECK(date("Sun, 06 Nov 1994 08:49:37 GMT", &rc) == T1994 && rc == 0);
    CHECK(date("Sunday, 06-Nov-94 08:49:37 GMT", &rc) == T1994 && rc == 0);
    CHECK(date("Sun Nov  6 08:49:37 1994", &rc) == T1994 && rc == 0);
    CHECK(date("Thu, 01 Jan 1970 00:00:00 GMT", &rc) == 0 && rc == 0);
    CHECK(date("Thu, 29 Feb 2024 12:00:00 GMT", &rc) == 1709208000 && rc == 0);
    CHECK(date("Fri, 31 Dec 9999 23:59:59 GMT", &rc) == 253402300799 &&
          rc == 0);
    /* RFC 850 two-digit years: within 50 years ahead, else the past. */
    CHECK(date("Monday, 01-Jan-30 00:00:00 GMT", &rc) == 1893456000 && rc == 0);
    CHECK(date("Monday, 01-Jan-80 00:00:00 GMT", &rc) == 315532800 && rc == 0);
}

static void test_date_invalid(void)
{
    static const char *const bad[] = {
        "",
        "2099",
        "Sun, 06 Nov 1994 08:49:37 GMT ",
        " Sun, 06 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 08:49:37 GMTx",
        "Sun, 06 Nov 1994 08:49:37 GMT; length=12",
        "Sun, 06 Nov 1994 08:49:37 UTC",
        "sun, 06 Nov 1994 08:49:37 GMT",
        "Sun, 06 nov 1994 08:49:37 GMT",
        "Sun, 6 Nov 1994 08:49:37 GMT",
        "Sun, 31 Feb 1994 08:49:37 GMT",
        "Sun, 29 Feb 2100 08:49:37 GMT",
        "Sun, 00 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 24:00:00 GMT",
        "Sun, 06 Nov 1994 08:60:00 GMT",
        "Sun, 06 Nov 1994 08:49:61 GMT",
        "Sun, 06 Nov 1994 08:49 GMT",
        "Sun, 06 Nov 94 08:49:37 GMT",
        "Sunday, 06-Nov-1994 08:49:37 GMT",
        "Sun, 06-Nov-94 08:49:37 GMT",
        "Sunday, 06-Nov-94 08:49:37 GMT extra",
        "Sun Nov  6 08:49:37 1994 GMT",
        "Sun Nov 6 08:49:37 1994",
        "Sun Nov  6 08:49:37 94",
        "Funday, 06-Nov-94 08:49:37 GMT",
        "Sun, +6 Nov 1994 08:49:37 GMT",
    };
    int rc;

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        time_t t = date(bad[i], &rc);

        if (rc != -1 || t != -12345)
            fprintf(stderr, "  accepted: \"%s\"\n", bad[i]);
        CHECK(rc == -1 && t == -12345);
    }
    CHECK(hp_http_date_parse(NULL, NOW2026, &(time_t){0}) == -1);
}

static void test_date_format(void)
{
    char buf[HP_HTTP_DATE_LEN];
    int rc;

    hp_http_date_format(T1994, buf);
    CHECK_STR(buf, "Sun, 06 Nov 1994 08:49:37 GMT");
    hp_http_date_format(NOW2026, buf);
    CHECK(date(buf, &rc) == NOW2026 && rc == 0);
}

static enum hp_range range(const char *v, uint64_t size, uint64_t *a,
                           uint64_t *b)
{
    *a = *b = 777;
    return hp_range_parse(v, size, a, b);
}

static void test_range_single(void)
{
    uint64_t a, b;

    CHECK(range("bytes=0-499", 10000, &a, &b) == HP_RANGE_OK && a == 0 &&
          b == 499);
    CHECK(range("bytes=500-", 10000, &a, &b) == HP_RANGE_OK && a == 500 &&
          b == 9999);
    CHECK(range("bytes=-500", 10000, &a, &b) == HP_RANGE_OK && a == 9500 &&
          b == 9999);
    CHECK(range("bytes=-20000", 10000, &a, &b) == HP_RANGE_OK && a == 0 &&
          b == 9999);
    CHECK(range("bytes=9000-20000", 10000, &a, &b) == HP_RANGE_OK &&
          a == 9000 && b == 9999);
    CHECK(range("bytes=9999-9999", 10000, &a, &b) == HP_RANGE_OK && a == 9999 &&
          b == 9999);
    CHECK(range("BYTES=1-2", 10, &a, &b) == HP_RANGE_OK && a == 1 && b == 2);
    CHECK(range("bytes= 1-2 ", 10, &a, &b) == HP_RANGE_OK && a == 1 && b == 2);
    CHECK(range("bytes=1-2,", 10, &a, &b) == HP_RANGE_OK && a == 1 && b == 2);
    /* 64-bit overflow saturates: a huge end is "to the end". */
    CHECK(range("bytes=0-99999999999999999999999", 10, &a, &b) == HP_RANGE_OK &&
          a == 0 && b == 9);
    CHECK(range("bytes=-99999999999999999999999", 10, &a, &b) == HP_RANGE_OK &&
          a == 0 && b == 9);
    CHECK(range("bytes=18446744073709551615-18446744073709551615", 10, &a,
                &b) == HP_RANGE_UNSATISFIABLE);
}

static void test_range_unsatisfiable_and_ignored(void)
{
    uint64_t a, b;

    CHECK(range("bytes=10000-", 10000, &a, &b) == HP_RANGE_UNSATISFIABLE);
    CHECK(range("bytes=20000-30000", 10000, &a, &b) == HP_RANGE_UNSATISFIABLE);
    CHECK(range("bytes=99999999999999999999999-", 10, &a, &b) ==
          HP_RANGE_UNSATISFIABLE);
    CHECK(range("bytes=-0", 10, &a, &b) == HP_RANGE_UNSATISFIABLE);
    CHECK(range("bytes=0-", 0, &a, &b) == HP_RANGE_UNSATISFIABLE);
    CHECK(range("bytes=-5", 0, &a, &b) == HP_RANGE_NONE);
    /* Several ranges: the whole file. */
    CHECK(range("bytes=0-1,3-4", 10, &a, &b) == HP_RANGE_NONE);
    CHECK(range("bytes=0-1, -2", 10, &a, &b) == HP_RANGE_NONE);
    CHECK(range("bytes=20-30,40-50", 10, &a, &b) == HP_RANGE_NONE);
    /* Invalid syntax: ignored. */
    static const char *const bad[] = {
        "",
        "bytes",
        "bytes=",
        "bytes=,",
        "bytes=5-4",
        "bytes=-",
        "bytes=a-",
        "bytes=1-2x",
        "bytes=1--2",
        "bytes=--1",
        "items=0-1",
        "bytes 0-1",
        "bytes=1-2;3",
        "bytes=0-1,x",
        "bytes=+1-2",
        "bytes=0x1-2",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (range(bad[i], 10, &a, &b) != HP_RANGE_NONE)
            fprintf(stderr, "  not ignored: \"%s\"\n", bad[i]);
        CHECK(range(bad[i], 10, &a, &b) == HP_RANGE_NONE);
    }
    CHECK(range(NULL, 10, &a, &b) == HP_RANGE_NONE);
}

static void test_etag(void)
{
    struct stat st = {0};
    char e1[HP_ETAG_LEN], e2[HP_ETAG_LEN];

    st.st_ino = 42;
    st.st_size = 10;
    st.st_mtim.tv_sec = 1000;
    st.st_mtim.tv_nsec = 1;
    hp_static_etag(&st, e1);
    CHECK(e1[0] == '"' && e1[strlen(e1) - 1] == '"');
    st.st_mtim.tv_nsec = 2; /* same second, other content */
    hp_static_etag(&st, e2);
    CHECK(strcmp(e1, e2) != 0);

    CHECK(hp_etag_match("\"a\"", "\"a\"", false));
    CHECK(!hp_etag_match("\"a\"", "\"b\"", true));
    CHECK(hp_etag_match("\"x\", \"a\"", "\"a\"", false));
    CHECK(hp_etag_match("\"x\",,  \"a\" ", "\"a\"", false));
    CHECK(hp_etag_match("W/\"a\"", "\"a\"", true));
    CHECK(!hp_etag_match("W/\"a\"", "\"a\"", false));
    CHECK(hp_etag_match("*", "\"a\"", false));
    CHECK(hp_etag_match(" * ", "\"a\"", true));
    CHECK(!hp_etag_match("*, \"b\"", "\"a\"", true));
    CHECK(!hp_etag_match("a", "\"a\"", true));
    CHECK(!hp_etag_match("\"a", "\"a\"", true));
    CHECK(!hp_etag_match("\"a b\"", "\"a b\"", true));
    CHECK(!hp_etag_match("", "\"a\"", true));
    CHECK(!hp_etag_match("\"x\" \"a\"", "\"a\"", true));
}

static struct stat file_st(void)
{
    struct stat st = {0};

    st.st_ino = 7;
    st.st_size = 10;
    st.st_mtim.tv_sec = 1000000000; /* Sun, 09 Sep 2001 01:46:40 GMT */
    st.st_mtim.tv_nsec = 500000000;
    return st;
}

static int plan(const struct hp_static_fields *f, struct hp_static_plan *p)
{
    struct stat st = file_st();

    hp_static_plan(&st, f, NOW2026, p);
    return p->status;
}

static void test_plan_conditional(void)
{
    struct hp_static_plan p;
    struct hp_static_fields f = {0};
    char etag[HP_ETAG_LEN], list[200];
    struct stat st = file_st();

    hp_static_etag(&st, etag);
    CHECK(plan(&f, &p) == 200 && p.offset == 0 && p.length == 10);
    CHECK_STR(p.last_modified, "Sun, 09 Sep 2001 01:46:40 GMT");
    CHECK_STR(p.etag, etag);
    /* If-Modified-Since: same second (mtime has .5 s), later, earlier. */
    f.if_modified_since = "Sun, 09 Sep 2001 01:46:40 GMT";
    CHECK(plan(&f, &p) == 304 && p.length == 0);
    f.if_modified_since = "Sunday, 09-Sep-01 01:46:40 GMT";
    CHECK(plan(&f, &p) == 304);
    f.if_modified_since = "Sun Sep  9 01:46:40 2001";
    CHECK(plan(&f, &p) == 304);
    f.if_modified_since = "Mon, 01 Jan 2024 00:00:00 GMT";
    CHECK(plan(&f, &p) == 304);
    f.if_modified_since = "Sun, 09 Sep 2001 01:46:39 GMT";
    CHECK(plan(&f, &p) == 200);
    /* In the future (after NOW2026): ignored. */
    f.if_modified_since = "Thu, 01 Jan 2099 00:00:00 GMT";
    CHECK(plan(&f, &p) == 200);
    f.if_modified_since = "Sun, 09 Sep 2001 01:46:40 GMT junk";
    CHECK(plan(&f, &p) == 200);
    /* If-None-Match wins over If-Modified-Since, either way. */
    f.if_modified_since = "Mon, 01 Jan 2024 00:00:00 GMT";
    f.if_none_match = "\"other\"";
    CHECK(plan(&f, &p) == 200);
    f.if_modified_since = "Sat, 01 Jan 2000 00:00:00 GMT";
    snprintf(list, sizeof list, "\"other\", W/%s", etag);
    f.if_none_match = list;
    CHECK(plan(&f, &p) == 304);
    CHECK_STR(p.etag, etag);
    f.if_none_match = "*";
    CHECK(plan(&f, &p) == 304);
}

static void test_plan_preconditions(void)
{
    struct hp_static_plan p;
    struct hp_static_fields f = {0};
    char etag[HP_ETAG_LEN], weak[HP_ETAG_LEN + 2];
    struct stat st = file_st();

    hp_static_etag(&st, etag);
    snprintf(weak, sizeof weak, "W/%s", etag);
    f.if_match = etag;
    CHECK(plan(&f, &p) == 200);
    f.if_match = weak; /* strong comparison */
    CHECK(plan(&f, &p) == 412);
    f.if_match = "\"nope\"";
    f.if_none_match = "\"nope\""; /* If-Match comes first */
    CHECK(plan(&f, &p) == 412);
    f.if_match = NULL;
    f.if_none_match = NULL;
    f.if_unmodified_since = "Sat, 01 Jan 2000 00:00:00 GMT";
    CHECK(plan(&f, &p) == 412);
    f.if_unmodified_since = "Sun, 09 Sep 2001 01:46:40 GMT";
    CHECK(plan(&f, &p) == 200);
    f.if_unmodified_since = "garbage";
    CHECK(plan(&f, &p) == 200);
}

static void test_plan_range(void)
{
    struct hp_static_plan p;
    struct hp_static_fields f = {0};
    char etag[HP_ETAG_LEN], weak[HP_ETAG_LEN + 2];
    struct stat st = file_st();

    hp_static_etag(&st, etag);
    snprintf(weak, sizeof weak, "W/%s", etag);
    f.range = "bytes=2-4";
    CHECK(plan(&f, &p) == 206 && p.offset == 2 && p.length == 3);
    CHECK_STR(p.content_range, "bytes 2-4/10");
    f.range = "bytes=-1";
    CHECK(plan(&f, &p) == 206 && p.offset == 9 && p.length == 1);
    CHECK_STR(p.content_range, "bytes 9-9/10");
    f.range = "bytes=10-";
    CHECK(plan(&f, &p) == 416 && p.length == 0);
    CHECK_STR(p.content_range, "bytes */10");
    f.range = "bytes=0-1,5-6";
    CHECK(plan(&f, &p) == 200 && p.length == 10 && !p.content_range[0]);
    /* If-Range: an equal strong tag or the exact date keeps the range. */
    f.range = "bytes=2-4";
    f.if_range = etag;
    CHECK(plan(&f, &p) == 206);
    f.if_range = weak;
    CHECK(plan(&f, &p) == 200 && p.length == 10);
    f.if_range = "\"other\"";
    CHECK(plan(&f, &p) == 200);
    f.if_range = "Sun, 09 Sep 2001 01:46:40 GMT";
    CHECK(plan(&f, &p) == 206);
    f.if_range = "Sun, 09 Sep 2001 01:46:41 GMT";
    CHECK(plan(&f, &p) == 200);
    f.if_range = "nonsense";
    CHECK(plan(&f, &p) == 200);
    /* A 304 wins over a range. */
    f.if_range = NULL;
    f.if_none_match = etag;
    CHECK(plan(&f, &p) == 304);
}

/* ---- the open ----------------------------------------------------------- */

static char tmp[64];

static void put(const char *rel, const char *text)
{
    char p[PATH_MAX];
    FILE *f;

    snprintf(p, sizeof p, "%s/%s", tmp, rel);
    f = fopen(p, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static void in_tmp(char *out, const char *rel)
{
    snprintf(out, PATH_MAX, "%s/%s", tmp, rel);
}

/* Open root/rel; returns what was read ("" on failure, errno kept). */
static const char *open_read(const char *root, const char *rel, int *err)
{
    static char buf[64];
    char path[PATH_MAX];
    struct stat st;
    int fd;

    snprintf(path, sizeof path, "%s/%s", root, rel);
    buf[0] = '\0';
    fd = hp_static_open(root, path, &st);
    *err = fd < 0 ? errno : 0;
    if (fd >= 0) {
        ssize_t n = read(fd, buf, sizeof buf - 1);

        buf[n > 0 ? n : 0] = '\0';
        close(fd);
    }
    return buf;
}

static void setup_tree(void)
{
    char a[PATH_MAX], b[PATH_MAX];

    snprintf(tmp, sizeof tmp, "/tmp/hp-test-static-XXXXXX");
    CHECK(mkdtemp(tmp) != NULL);
    in_tmp(a, "root");
    mkdir(a, 0700);
    in_tmp(a, "root/sub");
    mkdir(a, 0700);
    in_tmp(a, "root/_priv");
    mkdir(a, 0700);
    in_tmp(a, "root2");
    mkdir(a, 0700);
    put("root/a.txt", "A");
    put("root/sub/b.txt", "B");
    put("root/_priv/x.txt", "PRIVATE");
    put("root/page.c", "SOURCE");
    put("root/layout.tpl", "TEMPLATE");
    put("root/page.c~", "SOURCE");
    put("root/#page.c#", "SOURCE");
    put("root/Page.C", "SOURCE");
    put("root/sub/page.c.bak", "SOURCE");
    put("root/jquery.cookie.js", "JS");
    put("root2/a.txt", "A2");
    put("outside.txt", "OUTSIDE");
    in_tmp(a, "outside.txt");
    in_tmp(b, "root/out.txt");
    CHECK(symlink(a, b) == 0);
    in_tmp(b, "root/in.txt");
    CHECK(symlink("a.txt", b) == 0);
    in_tmp(b, "root/sublink");
    CHECK(symlink("sub", b) == 0);
    in_tmp(b, "root/fifo");
    CHECK(mkfifo(b, 0600) == 0);
    in_tmp(a, "root");
    in_tmp(b, "current");
    CHECK(symlink(a, b) == 0);
}

static void check_open_rules(void)
{
    char root[PATH_MAX], cur[PATH_MAX], path[PATH_MAX], r2[PATH_MAX];
    struct stat st;
    int err;

    in_tmp(root, "root");
    CHECK_STR(open_read(root, "a.txt", &err), "A");
    CHECK_STR(open_read(root, "sub/b.txt", &err), "B");
    /* Every symlink below the root is refused (swapped in since checked). */
    CHECK_STR(open_read(root, "out.txt", &err), "");
    CHECK(err == ELOOP);
    CHECK_STR(open_read(root, "in.txt", &err), "");
    CHECK_STR(open_read(root, "sublink/b.txt", &err), "");
    /* Private names, non-files, paths not under the root. */
    CHECK_STR(open_read(root, "_priv/x.txt", &err), "");
    CHECK_STR(open_read(root, "page.c", &err), "");
    CHECK_STR(open_read(root, "layout.tpl", &err), "");
    /* and copies of them, and other cases (hp_name_private) */
    CHECK_STR(open_read(root, "page.c~", &err), "");
    CHECK_STR(open_read(root, "#page.c#", &err), "");
    CHECK_STR(open_read(root, "Page.C", &err), "");
    CHECK_STR(open_read(root, "sub/page.c.bak", &err), "");
    CHECK_STR(open_read(root, "jquery.cookie.js", &err), "JS");
    CHECK_STR(open_read(root, "sub", &err), "");
    CHECK_STR(open_read(root, "fifo", &err), ""); /* and does not block */
    CHECK_STR(open_read(root, "sub/../a.txt", &err), "");
    CHECK_STR(open_read(root, "nosuch.txt", &err), "");
    in_tmp(path, "outside.txt");
    CHECK(hp_static_open(root, path, &st) == -1);
    in_tmp(path, "root2/a.txt");
    CHECK(hp_static_open(root, path, &st) == -1);
    /* The root may be a symlink, followed anew on every open. */
    in_tmp(cur, "current");
    CHECK_STR(open_read(cur, "a.txt", &err), "A");
    in_tmp(r2, "root2");
    CHECK(unlink(cur) == 0 && symlink(r2, cur) == 0);
    CHECK_STR(open_read(cur, "a.txt", &err), "A2");
    CHECK(unlink(cur) == 0 && symlink(root, cur) == 0);
}

static void test_open_openat2(void)
{
    hp_static_force_walk(false);
    check_open_rules();
}

static void test_open_walk(void)
{
    hp_static_force_walk(true);
    check_open_rules();
    hp_static_force_walk(false);
}

/* A thread renames a regular file, a symlink inside and a symlink outside
 * the root, in turn, over root/swap.txt; opens must never read OUTSIDE. */
static atomic_bool swap_stop;

static void *swapper(void *arg)
{
    char tmpname[PATH_MAX], name[PATH_MAX], out[PATH_MAX];

    (void)arg;
    in_tmp(tmpname, "root/.swap-tmp");
    in_tmp(name, "root/swap.txt");
    in_tmp(out, "outside.txt");
    for (unsigned i = 0; !atomic_load(&swap_stop); i++) {
        if (i % 3 == 0)
            put("root/.swap-tmp", "REGULAR");
        else if (symlink(i % 3 == 1 ? "a.txt" : out, tmpname) != 0)
            continue;
        rename(tmpname, name);
    }
    return NULL;
}

static void race(bool walk, int *outside, int *served)
{
    char root[PATH_MAX];
    pthread_t t;
    int err;

    hp_static_force_walk(walk);
    in_tmp(root, "root");
    put("root/swap.txt", "REGULAR");
    atomic_store(&swap_stop, false);
    *outside = *served = 0;
    CHECK(pthread_create(&t, NULL, swapper, NULL) == 0);
    for (int i = 0; i < 20000; i++) {
        const char *got = open_read(root, "swap.txt", &err);

        *outside += strcmp(got, "OUTSIDE") == 0;
        *served += got[0] != '\0';
    }
    atomic_store(&swap_stop, true);
    pthread_join(t, NULL);
    hp_static_force_walk(false);
}

static void test_open_swap_race(void)
{
    int outside, served;

    race(false, &outside, &served);
    printf("     openat2: 20000 opens, %d served, %d outside\n", served,
           outside);
    CHECK(outside == 0 && served > 100);
    race(true, &outside, &served);
    printf("     walk:    20000 opens, %d served, %d outside\n", served,
           outside);
    CHECK(outside == 0 && served > 100);
}

int main(void)
{
    T_RUN(test_date_three_forms);
    T_RUN(test_date_invalid);
    T_RUN(test_date_format);
    T_RUN(test_range_single);
    T_RUN(test_range_unsatisfiable_and_ignored);
    T_RUN(test_etag);
    T_RUN(test_plan_conditional);
    T_RUN(test_plan_preconditions);
    T_RUN(test_plan_range);
    setup_tree();
    T_RUN(test_open_openat2);
    T_RUN(test_open_walk);
    T_RUN(test_open_swap_race);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmp);
    T_DONE();
}
