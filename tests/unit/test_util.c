/*
 * test_util.c - util.c's growable buffer: hp_buf_printf appends exactly
 * what snprintf prints, however long, and always leaves a string.
 */
#include "../../src/hp.h"
#include "t.h"

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

/* hp_buf_printf's output for fmt and the same arguments, against
 * snprintf's; both are called by the macro so the arguments match. */
#define SAME(fmt, ...)                                                         \
    do {                                                                       \
        char want_[2048];                                                      \
        snprintf(want_, sizeof want_, fmt, __VA_ARGS__);                       \
        struct hp_buf b_ = {0};                                                \
        CHECK(hp_buf_printf(&b_, fmt, __VA_ARGS__) == 0);                      \
        CHECK_STR(b_.p, want_);                                                \
        CHECK(b_.len == strlen(want_));                                        \
        free(b_.p);                                                            \
    } while (0)

static void fast_path_matches_vsnprintf(void)
{
    SAME("Hello, %s!", "world");
    SAME("%s", "");
    SAME("%s%s%s", "a", "", "ccc");
    SAME("<td>%s</td><td>%d</td>", "x", -7);
    SAME("%d %i %u", INT_MIN, INT_MAX, UINT_MAX);
    SAME("%ld %li %lu", LONG_MIN, LONG_MAX, ULONG_MAX);
    SAME("%lld|%lli|%llu", LLONG_MIN, LLONG_MAX, ULLONG_MAX);
    SAME("%zu %zd %zi", SIZE_MAX, (ssize_t)-1, (ssize_t)SSIZE_MAX);
    SAME("%d%%", 100);
    SAME("%%%s%%", "x");
    SAME("[%c%c]", 'a', 'Z');
    SAME("%u", 0u);
    SAME("%d", 0);
    SAME("no conversion at all%s", "");
    SAME("trailing %s", "é, UTF-8 bytes");
    const char *volatile none = NULL; /* hidden from gcc's format check */
    SAME("%s", none);                 /* glibc prints "(null)" */
}

static void other_formats_still_format(void)
{
    SAME("%5s|%-5s|", "ab", "cd");
    SAME("%.2s", "abcdef");
    SAME("%x %X %o", 255u, 255u, 8u);
    SAME("%05d %+d % d", 42, 42, 42);
    SAME("%f %.3f", 1.5, 2.0 / 3);
    SAME("%p", (void *)0x1234);
    SAME("%s and %x", "mixed", 16u);
    SAME("%hd %hhu", (short)-3, (unsigned char)200);
    SAME("%jd", (intmax_t)-5);
}

static void output_appends_and_grows(void)
{
    struct hp_buf b = {0};
    char big[1000];
    memset(big, 'q', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    CHECK(hp_buf_printf(&b, "%s", "head:") == 0);
    for (int i = 0; i < 20; i++)
        CHECK(hp_buf_printf(&b, "%s%d", big, i) == 0);
    CHECK(b.len == 5 + 20 * 999 + 10 + 10 * 2);
    CHECK(strncmp(b.p, "head:qqq", 8) == 0);
    CHECK(strcmp(b.p + b.len - 3, "q19") == 0);
    CHECK(b.p[b.len] == '\0');
    free(b.p);

    struct hp_buf e = {0}; /* an empty format still leaves a string */
    CHECK(hp_buf_printf(&e, "%s", "") == 0);
    CHECK(e.p != NULL && e.p[0] == '\0' && e.len == 0);
    free(e.p);
}

/* Random formats of the fast path's conversions and literal text, with
 * random values, against snprintf. */
static void random_formats_match(void)
{
    unsigned long long x = 0x9E3779B97F4A7C15ull;
    for (int round = 0; round < 20000; round++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        long long v = (long long)x;
        const char *words[] = {"", "a", "<b>", "%", "longer text here"};
        const char *w = words[x % 5];
        char want[256];
        struct hp_buf b = {0};
        switch ((x >> 8) % 6) {
        case 0:
            snprintf(want, sizeof want, "x%dy%sz", (int)v, w);
            CHECK(hp_buf_printf(&b, "x%dy%sz", (int)v, w) == 0);
            break;
        case 1:
            snprintf(want, sizeof want, "%lu,%ld", (unsigned long)v, (long)v);
            CHECK(hp_buf_printf(&b, "%lu,%ld", (unsigned long)v, (long)v) == 0);
            break;
        case 2:
            snprintf(want, sizeof want, "%lld%%%llu", v, (unsigned long long)v);
            CHECK(hp_buf_printf(&b, "%lld%%%llu", v, (unsigned long long)v) ==
                  0);
            break;
        case 3:
            snprintf(want, sizeof want, "%zu %zd", (size_t)v, (ssize_t)v);
            CHECK(hp_buf_printf(&b, "%zu %zd", (size_t)v, (ssize_t)v) == 0);
            break;
        case 4:
            snprintf(want, sizeof want, "%u%c%i", (unsigned)v,
                     (char)('a' + v % 26 + (v < 0 ? 26 : 0)), (int)(v >> 32));
            CHECK(hp_buf_printf(&b, "%u%c%i", (unsigned)v,
                                (char)('a' + v % 26 + (v < 0 ? 26 : 0)),
                                (int)(v >> 32)) == 0);
            break;
        default:
            snprintf(want, sizeof want, "%s%s", w, w);
            CHECK(hp_buf_printf(&b, "%s%s", w, w) == 0);
        }
        if (strcmp(b.p, want) != 0) {
            CHECK_STR(b.p, want);
            free(b.p);
            return;
        }
        free(b.p);
    }
}

int main(int argc, char **argv)
{
    T_INIT(argc, argv);
    T_RUN(fast_path_matches_vsnprintf);
    T_RUN(other_formats_still_format);
    T_RUN(output_appends_and_grows);
    T_RUN(random_formats_match);
    T_DONE();
}
