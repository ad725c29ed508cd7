/*
 * fuzz_static.c - libFuzzer target for static.c's parsers: HTTP dates
 * (hp_http_date_parse), byte ranges (hp_range_parse), entity-tag lists
 * (hp_etag_match) and the conditional-request plan (hp_static_plan), all
 * fed the same input as a field value.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude -Isrc \
 *         tests/fuzz/fuzz_static.c src/static.c -o fuzz_static
 *   ./fuzz_static -max_total_time=60 tests/fuzz/corpus/static
 *
 * Invariants (a violation aborts): a parsed date formats and parses back to
 * itself; a satisfiable range has first <= last < size; an empty file has
 * no satisfiable range; the plan's bytes lie inside the file, a 200 sends
 * all of it, 206 at least one byte, and 206/416 carry a Content-Range.
 */
#include "static.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NOW ((time_t)1790000000) /* 2026 */

static void check(int cond, const char *what)
{
    if (!cond) {
        fprintf(stderr, "invariant violated: %s\n", what);
        abort();
    }
}

static void fuzz_date(const char *s)
{
    char buf[HP_HTTP_DATE_LEN];
    time_t t, u;

    if (hp_http_date_parse(s, NOW, &t) != 0)
        return;
    /* Years 0000-9999 only: four digits, or two read near NOW. */
    check(t >= -62167219200 && t <= 253402300800, "date in range");
    if (t > 253402300799)
        return; /* 9999-12-31 23:59:60 has no IMF-fixdate of its own */
    hp_http_date_format(t, buf);
    check(hp_http_date_parse(buf, NOW, &u) == 0 && u == t, "round trip");
}

static void fuzz_range(const char *s, uint64_t size)
{
    uint64_t first = 0, last = 0;
    enum hp_range r = hp_range_parse(s, size, &first, &last);

    if (r == HP_RANGE_OK) {
        check(first <= last && last < size, "first <= last < size");
        check(size > 0, "no range of an empty file");
    }
}

static void fuzz_plan(const char *s, uint64_t size)
{
    struct stat st = {0};
    struct hp_static_plan p;
    struct hp_static_fields f = {.range = s};

    st.st_size = (off_t)(size & 0x7fffffffffffffffull);
    st.st_ino = 1;
    st.st_mtim.tv_sec = 1000000000;
    /* The same text in each field, then only as Range with If-Range. */
    f.if_none_match = f.if_modified_since = f.if_match = s;
    f.if_unmodified_since = f.if_range = s;
    hp_static_plan(&st, &f, NOW, &p);
    f.if_none_match = f.if_modified_since = f.if_match = NULL;
    f.if_unmodified_since = NULL;
    hp_static_plan(&st, &f, NOW, &p);
    size = (uint64_t)st.st_size;
    check(p.status == 200 || p.status == 206 || p.status == 416,
          "status of a plain range request");
    check(p.offset <= size && p.length <= size - p.offset, "bytes in file");
    check(p.status != 200 || (p.offset == 0 && p.length == size), "200");
    check(p.status != 206 || p.length > 0, "206 sends a byte");
    check((p.status == 200) == (p.content_range[0] == '\0'),
          "Content-Range exactly on 206/416");
    check(strlen(p.etag) > 2 && p.etag[0] == '"', "etag quoted");
    (void)hp_etag_match(s, p.etag, true);
    (void)hp_etag_match(s, p.etag, false);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint64_t sizes[] = {0,         1, 10, 1000, UINT64_MAX / 2,
                                     UINT64_MAX};
    char *s = malloc(size + 1);

    if (s == NULL)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0'; /* field values are C strings: stop at a NUL */
    fuzz_date(s);
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        fuzz_range(s, sizes[i]);
    fuzz_plan(s, 20);
    fuzz_plan(s, 0);
    fuzz_plan(s, UINT64_MAX);
    free(s);
    return 0;
}
