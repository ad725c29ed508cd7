/*
 * t.h - the unit tests' tiny harness. Each test file defines test functions,
 * lists them in main() with T_RUN, and ends with T_DONE, which prints the
 * plain "N passed, N failed" line and exits non-zero on any failure.
 * T_INIT(argc, argv) first makes an argument a name filter: `test_cache
 * batch` runs only the tests whose names contain "batch". t_make_temp makes
 * a temporary directory and gives its canonical path.
 */
#ifndef HP_T_H
#define HP_T_H
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int t_failed_checks;
static int t_passed, t_failed;
static const char *t_only; /* run only tests whose names contain it */

#define T_INIT(argc, argv) (t_only = (argc) > 1 ? (argv)[1] : NULL)

/* mkdtemp(tmpl) into out (PATH_MAX bytes) as a canonical path (symlinks
 * resolved, e.g. a /tmp that is a link); exits 2 if it cannot. */
__attribute__((unused)) static void t_make_temp(char *out, const char *tmpl)
{
    char buf[PATH_MAX];

    snprintf(buf, sizeof(buf), "%s", tmpl);
    if (mkdtemp(buf) == NULL || realpath(buf, out) == NULL) {
        perror("mkdtemp");
        exit(2);
    }
}

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "  FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);  \
            t_failed_checks++;                                                 \
        }                                                                      \
    } while (0)

#define CHECK_STR(a, b)                                                        \
    do {                                                                       \
        const char *t_a = (a), *t_b = (b);                                     \
        if (!t_a || !t_b || strcmp(t_a, t_b) != 0) {                           \
            fprintf(stderr, "  FAIL %s:%d: %s == \"%s\", expected \"%s\"\n",   \
                    __FILE__, __LINE__, #a, t_a ? t_a : "(null)",              \
                    t_b ? t_b : "(null)");                                     \
            t_failed_checks++;                                                 \
        }                                                                      \
    } while (0)

#define T_RUN(fn)                                                              \
    do {                                                                       \
        int t_before = t_failed_checks;                                        \
        if (t_only && !strstr(#fn, t_only))                                    \
            break;                                                             \
        fn();                                                                  \
        if (t_failed_checks == t_before) {                                     \
            t_passed++;                                                        \
            printf("ok   %s\n", #fn);                                          \
        } else {                                                               \
            t_failed++;                                                        \
            printf("FAIL %s\n", #fn);                                          \
        }                                                                      \
        fflush(stdout);                                                        \
    } while (0)

#define T_DONE()                                                               \
    do {                                                                       \
        printf("%d passed, %d failed\n", t_passed, t_failed);                  \
        return t_failed ? 1 : 0;                                               \
    } while (0)
#endif
