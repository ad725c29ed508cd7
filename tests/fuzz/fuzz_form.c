/*
 * fuzz_form.c - form.c's urlencoded and multipart decoders and the field
 * cap. Input: one byte whose low 3 bits are the cap (0: none), then a
 * Content-Type value up to the first '\n', then the body. The body is
 * decoded as a query string, as a body of that type, and as multipart
 * whatever the type says. Beyond the sanitizers, abort() checks the
 * contract: every field lies in its block and is NUL-terminated there, the
 * cap holds, and urlencoded gives one field per non-empty '&' sequence.
 */
#include "form.h"
#include "hp.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool inside(const char *p, size_t n, const char *block, size_t cap)
{
    return p >= block && p + n < block + cap && p[n] == '\0';
}

static void check_fields(const struct hp_fields *f, const char *block,
                         size_t cap, int r)
{
    if (f->max && f->n > f->max)
        abort();
    if (r == HP_FORM_TOO_MANY && f->n != f->max)
        abort();
    for (size_t i = 0; i < f->n; i++) {
        const struct hp_field *x = &f->v[i];
        if (!x->name || !x->value)
            abort();
        if (!inside(x->name, strnlen(x->name, cap), block, cap) ||
            !inside(x->value, x->value_len, block, cap))
            abort();
    }
}

static size_t sequences(const char *s, size_t n)
{
    size_t count = 0, run = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '&') {
            count += run > 0;
            run = 0;
        } else {
            run++;
        }
    }
    return count + (run > 0);
}

typedef int (*decoder)(const char *ct, const char *body, size_t len, char *out,
                       struct hp_fields *f);

static int as_query(const char *ct, const char *body, size_t len, char *out,
                    struct hp_fields *f)
{
    (void)ct;
    int r = hp_form_urlencoded(body, len, out, f);
    size_t want = sequences(body, len);
    if (r == HP_FORM_OK && f->n != want)
        abort();
    if (r == HP_FORM_TOO_MANY && !(f->max && want > f->max))
        abort();
    if (r != HP_FORM_OK && r != HP_FORM_TOO_MANY)
        abort();
    return r;
}

static void run(decoder d, const char *ct, const char *body, size_t len,
                size_t max)
{
    struct hp_fields f = {.max = max};
    char *out = malloc(len + 1); /* exactly the documented size */
    int r = d(ct, body, len, out, &f);
    if (r != HP_FORM_OK && r != HP_FORM_MALFORMED && r != HP_FORM_TOO_MANY)
        abort();
    check_fields(&f, out, len + 1, r);
    free(f.v);
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t max = data[0] & 7;
    const char *rest = (const char *)data + 1;
    size_t n = size - 1;
    const char *nl = memchr(rest, '\n', n);
    size_t ctlen = nl ? (size_t)(nl - rest) : 0;
    char *ct = malloc(ctlen + 1);
    memcpy(ct, rest, ctlen);
    ct[ctlen] = '\0';
    const char *body = nl ? nl + 1 : rest;
    size_t len = n - (size_t)(body - rest);

    run(as_query, ct, body, len, max);
    run(hp_form_body, ct, body, len, max);
    run(hp_form_multipart, ct, body, len, max);
    free(ct);
    return 0;
}
