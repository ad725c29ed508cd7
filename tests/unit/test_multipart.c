/*
 * test_multipart.c - multipart.c, the incremental multipart/form-data
 * decoder behind uploads: parts and their fields across any cut of the
 * body, its own bounds (header block, transport padding), a sink that
 * stops it, a missing boundary or close delimiter.
 */
#include "t.h"
#include "hp.h"
#include "multipart.h"

/* "[name|filename|type]content;" per part, into a buffer. */
struct rec {
    struct hp_buf b;
    int stop_at; /* the sink answers 413 at this part (1-based), 0: never */
    int parts;
};

static int r_begin(void *arg, const struct hp_form_part *p)
{
    struct rec *r = arg;
    if (++r->parts == r->stop_at)
        return 413;
    hp_buf_printf(&r->b, "[%s|%s|%s]", p->name, p->filename ? p->filename : "-",
                  p->content_type ? p->content_type : "-");
    return 0;
}

static int r_data(void *arg, const char *p, size_t n)
{
    struct rec *r = arg;
    return hp_buf_append(&r->b, p, n) < 0 ? 500 : 0;
}

static int r_end(void *arg)
{
    struct rec *r = arg;
    return hp_buf_puts(&r->b, ";") < 0 ? 500 : 0;
}

static struct hp_mp M;

/* Decode body in pieces of step bytes; the record into r. */
static int decode(const char *ct, const char *body, size_t len, size_t step,
                  struct rec *r)
{
    struct hp_mp_sink sink = {r_begin, r_data, r_end, r};
    r->b.len = 0;
    r->parts = 0;
    if (hp_mp_init(&M, ct, &sink) != 0)
        return hp_mp_finish(&M);
    for (size_t i = 0; i < len; i += step)
        hp_mp_feed(&M, body + i, len - i < step ? len - i : step);
    int st = hp_mp_finish(&M);
    hp_buf_puts(&r->b, ""); /* NUL-terminated, also when empty */
    return st;
}

static const char CT[] = "multipart/form-data; boundary=AaB";
static const char BODY[] =
    "preamble\r\n--AaB\r\n"
    "Content-Disposition: form-data; name=\"up\"; filename=\"a b<.bin\"\r\n"
    "Content-Type: image/png\r\n\r\n"
    "\r\n--AaBx not one\r\n--AaB-\r\n" /* content that looks close */
    "\r\n--AaB \t \r\n"                /* padding after the boundary */
    "Content-Disposition: form-data; name=t\r\n\r\nv\r\n"
    "--AaB\r\nContent-Disposition: form-data\r\n\r\nnameless\r\n"
    "--AaB\r\n\r\nno headers\r\n"
    "--AaB\r\nContent-Disposition: form-data; name=h\r\n\r\n"
    "--AaB--\r\nepilogue --AaB\r\n";
static const char WANT[] = "[up|a b<.bin|image/png]\r\n--AaBx not one\r\n"
                           "--AaB-\r\n;[t|-|-]v;[h|-|-];";

static void test_parts_across_cuts(void)
{
    struct rec r = {0};
    for (size_t step = 1; step <= sizeof BODY; step++) {
        int st = decode(CT, BODY, sizeof BODY - 1, step, &r);
        CHECK(st == 0);
        if (st != 0 || strcmp(r.b.p, WANT) != 0) {
            fprintf(stderr, "  step %zu: %s\n", step, r.b.p);
            CHECK_STR(r.b.p, WANT);
            break;
        }
    }
    hp_buf_free(&r.b);
}

static void test_bounds(void)
{
    struct rec r = {0};
    struct hp_buf b = {0};
    /* A header block over HP_MP_HEAD_MAX: malformed. */
    hp_buf_puts(&b, "--AaB\r\nContent-Disposition: form-data; name=x\r\n");
    while (b.len < HP_MP_HEAD_MAX + 100)
        hp_buf_puts(&b, "X-Long: 0123456789012345678901234567890123456789\r\n");
    hp_buf_puts(&b, "\r\nv\r\n--AaB--\r\n");
    CHECK(decode(CT, b.p, b.len, 4096, &r) == HP_FORM_MALFORMED);
    /* Padding over HP_MP_PAD_MAX: the line is content, so no close
     * delimiter comes. */
    b.len = 0;
    hp_buf_puts(&b, "--AaB\r\nContent-Disposition: form-data; name=x\r\n\r\n"
                    "v\r\n--AaB");
    for (int i = 0; i < HP_MP_PAD_MAX + 1; i++)
        hp_buf_puts(&b, " ");
    hp_buf_puts(&b, "\r\n--AaB--");
    CHECK(decode(CT, b.p, b.len, 100, &r) == 0);
    CHECK(strncmp(r.b.p, "[x|-|-]v\r\n--AaB ", 16) == 0);
    hp_buf_free(&b);
    hp_buf_free(&r.b);
}

static void test_errors(void)
{
    struct rec r = {0};
    CHECK(decode("multipart/form-data", BODY, sizeof BODY - 1, 7, &r) ==
          HP_FORM_MALFORMED);
    CHECK(decode(CT, BODY, 40, 7, &r) == HP_FORM_MALFORMED); /* cut short */
    CHECK(decode(CT, "no delimiter at all", 19, 3, &r) == HP_FORM_MALFORMED);
    /* The sink stops it at the second part; nothing after is reported. */
    r.stop_at = 2;
    CHECK(decode(CT, BODY, sizeof BODY - 1, 5, &r) == 413);
    CHECK_STR(r.b.p,
              "[up|a b<.bin|image/png]\r\n--AaBx not one\r\n--AaB-\r\n;");
    CHECK(hp_mp_feed(&M, "--AaB--", 7) == 413); /* sticky */
    hp_buf_free(&r.b);
}

int main(int argc, char **argv)
{
    T_INIT(argc, argv);
    T_RUN(test_parts_across_cuts);
    T_RUN(test_bounds);
    T_RUN(test_errors);
    T_DONE();
}
