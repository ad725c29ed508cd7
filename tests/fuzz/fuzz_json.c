/*
 * fuzz_json.c - json.c under any request body: the strict decoder
 * hp_json_body uses (hp_json_parse) and the encoder behind hp_write_json
 * (hp_json_encode). abort() when a value the decoder accepted does not
 * encode, or its encoding does not decode back to an equal value (strings,
 * the shortest reals, big integers, nesting survive the round trip).
 */
#include "hp.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_error_t e;
    json_t *v = hp_json_parse((const char *)data, size, &e);
    if (!v)
        return 0;
    struct hp_buf b = {0};
    if (hp_json_encode(&b, v) < 0)
        abort();
    json_t *back = hp_json_parse(b.p, b.len, &e);
    if (!back || !json_equal(v, back))
        abort();
    json_decref(back);
    json_decref(v);
    hp_buf_free(&b);
    return 0;
}
