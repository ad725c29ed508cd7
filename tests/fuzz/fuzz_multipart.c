/*
 * fuzz_multipart.c - multipart.c's incremental decoder. Input: one byte
 * that picks how the body is cut into pieces, then a Content-Type value up
 * to the first '\n', then the body. Beyond the sanitizers, abort() checks
 * the contract: the decoder's verdict and everything it reports (parts'
 * names, file names, types, content) do not depend on how the body is cut
 * (whole, every byte alone, pieces of 1 to 64 bytes), and, for bodies too
 * short to reach its own bounds (header block, padding), agree with
 * form.c's whole-body hp_form_multipart: the same status and, when
 * well-formed, the same fields in the same order.
 */
#include "form.h"
#include "hp.h"
#include "multipart.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* What the decoder reported, as one byte string. */
struct transcript {
    struct hp_buf b;
    struct hp_fields f; /* name -> content, for the comparison */
    size_t value_at;    /* where the current part's content starts in b */
    char *name;         /* the current part's, until its end */
};

static int t_begin(void *arg, const struct hp_form_part *p)
{
    struct transcript *t = arg;
    hp_buf_printf(&t->b, "\1%s\2%s\2%s\2", p->name,
                  p->filename ? p->filename : "~",
                  p->content_type ? p->content_type : "~");
    free(t->name); /* a part that never ended */
    t->name = strdup(p->name);
    t->value_at = t->b.len;
    return 0;
}

static int t_data(void *arg, const char *p, size_t n)
{
    struct transcript *t = arg;
    if (n == 0)
        abort(); /* the sink is never called for nothing */
    hp_buf_append(&t->b, p, n);
    return 0;
}

static int t_end(void *arg)
{
    struct transcript *t = arg;
    size_t n = t->b.len - t->value_at;
    char *v = malloc(n + 1);
    memcpy(v, t->b.p + t->value_at, n);
    v[n] = '\0';
    hp_fields_add(&t->f, t->name, v, n);
    t->name = NULL; /* the field's now */
    hp_buf_puts(&t->b, "\3");
    return 0;
}

static void t_free(struct transcript *t)
{
    for (size_t i = 0; i < t->f.n; i++) {
        free((char *)(uintptr_t)t->f.v[i].name);
        free((char *)(uintptr_t)t->f.v[i].value);
    }
    free(t->f.v);
    free(t->name);
    hp_buf_free(&t->b);
}

/* Decode body in pieces of step bytes (0: whole; < 0: sizes 1..64 from
 * the body's own bytes). Returns the status. */
static int decode(const char *ct, const char *body, size_t len, int step,
                  struct transcript *t)
{
    static struct hp_mp m; /* ~37 KiB */
    struct hp_mp_sink sink = {t_begin, t_data, t_end, t};
    memset(t, 0, sizeof *t);
    if (hp_mp_init(&m, ct, &sink) != 0)
        return hp_mp_finish(&m);
    size_t i = 0;
    while (i < len) {
        size_t n = step == 0  ? len - i
                   : step > 0 ? (size_t)step
                              : (size_t)(1 + (unsigned char)body[i] % 64);
        if (n > len - i)
            n = len - i;
        if (hp_mp_feed(&m, body + i, n) != 0)
            break;
        i += n;
    }
    return hp_mp_finish(&m);
}

static void same(const struct transcript *a, int ra, const struct transcript *b,
                 int rb)
{
    if (ra != rb)
        abort();
    if (ra == 0 && (a->b.len != b->b.len ||
                    (a->b.len && memcmp(a->b.p, b->b.p, a->b.len) != 0)))
        abort();
}

static void against_whole(const char *ct, const char *body, size_t len,
                          const struct transcript *t, int r)
{
    struct hp_fields f = {0};
    char *out = malloc(len + 1);
    int w = hp_form_multipart(ct, body, len, out, &f);
    if (w != r)
        abort();
    if (w == 0) {
        if (f.n != t->f.n)
            abort();
        for (size_t i = 0; i < f.n; i++)
            if (strcmp(f.v[i].name, t->f.v[i].name) != 0 ||
                f.v[i].value_len != t->f.v[i].value_len ||
                memcmp(f.v[i].value, t->f.v[i].value, f.v[i].value_len) != 0)
                abort();
    }
    free(f.v);
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int step = data[0] < 128 ? 1 + data[0] % 64 : -1;
    const char *rest = (const char *)data + 1;
    size_t n = size - 1;
    const char *nl = memchr(rest, '\n', n);
    size_t ctlen = nl ? (size_t)(nl - rest) : 0;
    char *ct = malloc(ctlen + 1);
    memcpy(ct, rest, ctlen);
    ct[ctlen] = '\0';
    const char *body = nl ? nl + 1 : rest;
    size_t len = n - (size_t)(body - rest);

    struct transcript whole, one, cut;
    int rw = decode(ct, body, len, 0, &whole);
    int r1 = decode(ct, body, len, 1, &one);
    int rc = decode(ct, body, len, step, &cut);
    same(&whole, rw, &one, r1);
    same(&whole, rw, &cut, rc);
    if (len < HP_MP_PAD_MAX)
        against_whole(ct, body, len, &whole, rw);
    t_free(&whole);
    t_free(&one);
    t_free(&cut);
    free(ct);
    return 0;
}
