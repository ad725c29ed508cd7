/*
 * fuzz_cookie.c - form.c's Cookie field value parser (RFC 6265). Input: the
 * field value. Beyond the sanitizers, abort() checks the contract: every
 * name holds no ';' (a pair never swallows the next), and
 * names and values are NUL-terminated inside the len + 1 byte block.
 */
#include "form.h"
#include "hp.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct hp_fields f = {0};
    char *out = malloc(size + 1);
    const char *end = out + size + 1;
    if (hp_cookie_parse((const char *)data, size, out, &f) != HP_FORM_OK)
        abort();
    for (size_t i = 0; i < f.n; i++) {
        const struct hp_field *x = &f.v[i];
        size_t nl = strnlen(x->name, (size_t)(end - x->name));
        if (x->name < out || x->name + nl >= end || memchr(x->name, ';', nl))
            abort();
        if (x->value < out || x->value + x->value_len >= end ||
            x->value[x->value_len] != '\0' ||
            memchr(x->value, ';', x->value_len))
            abort();
        if (hp_fields_find(&f, x->name) == NULL)
            abort();
    }
    free(f.v);
    free(out);
    return 0;
}
