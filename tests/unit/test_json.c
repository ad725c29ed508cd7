/*
 * test_json.c - hp_json_encode (json.c): integers as printf writes them,
 * from the edges of the range and every power of ten, inside containers.
 */
#include "hp.h"
#include "t.h"

#include <jansson.h>
#include <stdint.h>

static void test_integers(void)
{
    json_int_t vals[64];
    size_t n = 0;
    vals[n++] = 0;
    vals[n++] = INT64_MAX;
    vals[n++] = INT64_MIN;
    vals[n++] = INT64_MIN + 1;
    for (json_int_t p = 1; n + 4 <= 64 && p <= INT64_MAX / 10; p *= 10) {
        vals[n++] = p;
        vals[n++] = -p;
        vals[n++] = p - 1;
        vals[n++] = -(p + 1);
    }
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_pack("[I,{s:I}]", vals[i], "k", vals[i]);
        struct hp_buf b = {0};
        char want[80];
        snprintf(want, sizeof want,
                 "[%" JSON_INTEGER_FORMAT ",{\"k\":%" JSON_INTEGER_FORMAT "}]",
                 vals[i], vals[i]);
        if (hp_json_encode(&b, v) != 0 || strcmp(b.p, want) != 0) {
            fprintf(stderr, "  %s, not %s\n", b.p ? b.p : "(null)", want);
            bad++;
        }
        hp_buf_free(&b);
        json_decref(v);
    }
    CHECK(bad == 0);
}

int main(int argc, char **argv)
{
    T_INIT(argc, argv);
    T_RUN(test_integers);
    T_DONE();
}
