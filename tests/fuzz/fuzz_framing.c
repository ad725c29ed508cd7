/*
 * fuzz_framing.c - the strict HTTP/1.1 framing parser (src/framing.c).
 *
 * Properties checked on every input: the parser never reads outside what
 * it is given; it reports no more bytes passable than it was fed; and its
 * verdict (status, heads completed) does not depend on how the bytes are
 * split into reads, which is what makes it safe to run over whatever
 * recv() returns. The first input byte chooses the split points and the
 * head size limit. The split run goes through hp_frame_feed_edit, as the
 * edge does: same verdict, and in the bytes passed on the same edits as a
 * whole run's, each a Cookie name's 'e' turned into the mark (framing.h).
 */
#include "framing.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t step = (size_t)(data[0] % 7) + 1;
    size_t max_head = (size_t)(data[0] >> 3) * 16 + 64;
    const char *p = (const char *)data + 1;
    size_t n = size - 1;

    struct hp_frame whole, split;
    hp_frame_init(&whole, max_head, 8);
    hp_frame_init(&split, max_head, 8);
    /* libmicrohttpd's room as edge.c sets it, for fields_fit's verdict */
    hp_frame_set_query_room(&whole, max_head + 4096);
    hp_frame_set_query_room(&split, max_head + 4096);
    size_t got = hp_frame_feed(&whole, p, n);
    if (got > n)
        abort();
    if (!whole.bad_status && got != n)
        abort();
    char *w = malloc(n ? n : 1), *ws = malloc(n ? n : 1);
    if (!w || !ws)
        abort();
    memcpy(w, p, n);
    memcpy(ws, p, n);
    struct hp_frame edit;
    hp_frame_init(&edit, max_head, 8);
    hp_frame_set_query_room(&edit, max_head + 4096);
    if (hp_frame_feed_edit(&edit, w, n) != got ||
        edit.bad_status != whole.bad_status || edit.heads != whole.heads)
        abort();
    for (size_t i = 0; i < n; i += step) {
        size_t len = n - i < step ? n - i : step;
        size_t g = hp_frame_feed_edit(&split, ws + i, len);
        if (g > len)
            abort();
    }
    if (whole.bad_status != split.bad_status || whole.heads != split.heads)
        abort();
    for (size_t i = 0; i < got; i++)
        if (w[i] != ws[i] || (w[i] != p[i] && !(w[i] == HP_FRAME_COOKIE_MARK &&
                                                (p[i] == 'e' || p[i] == 'E'))))
            abort();
    free(w);
    free(ws);
    return 0;
}
