/*
 * fuzz_template.c - template.c under any template file (templates come
 * from the site, not from a trusted build). The input is parsed as a
 * template; when it parses, it is rendered against fixed data in which
 * every partial name resolves to the input itself (so recursion meets the
 * depth limit). abort() when a syntax error lacks its "NAME:LINE: " prefix,
 * or a render fails for anything but the partial depth limit.
 */
#include "hp.h"
#include "template.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const struct hp_tpl *self(void *ctx, const struct hp_tpl *from,
                                 const char *name, char **err)
{
    (void)from;
    (void)err;
    return name[0] == 'x' ? NULL : ctx; /* "x...": a missing partial */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static json_t *d;
    char *err = NULL;
    if (!d)
        d = json_loads(
            "{\"a\":{\"b\":[1,2.5,\"<&>\"],\"c\":true},\"l\":[{\"a\":"
            "null},[],{}],\"s\":\"x\\ny\",\"n\":0,\"f\":false}",
            0, NULL);
    struct hp_tpl *t = hp_tpl_parse((const char *)data, size, "f.tpl", &err);
    if (!t) {
        if (!err || strncmp(err, "f.tpl:", 6) != 0)
            abort();
        free(err);
        return 0;
    }
    struct hp_buf out = {0};
    if (hp_tpl_render(t, d, self, t, &out, &err) < 0 &&
        (!err || !strstr(err, "nested more than")))
        abort();
    free(err);
    hp_buf_free(&out);
    hp_tpl_free(t);
    return 0;
}
