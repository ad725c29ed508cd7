/*
 * test_form.c - form.c's decoders: WHATWG urlencoded parsing (query strings
 * and bodies alike), multipart/form-data (RFC 7578, RFC 2046 5.1.1), Cookie
 * field values (RFC 6265) and the field cap.
 */
#include "form.h"
#include "hp.h"
#include "t.h"

/* A decode with its own block; fields stay valid until the next call. */
static struct hp_fields F;
static char *block;

static void reset(size_t max)
{
    free(F.v);
    free(block);
    memset(&F, 0, sizeof F);
    F.max = max;
    block = NULL;
}

static int url(const char *s, size_t max)
{
    reset(max);
    block = malloc(strlen(s) + 1);
    return hp_form_urlencoded(s, strlen(s), block, &F);
}

static int mp_n(const char *ct, const char *body, size_t len, size_t max)
{
    reset(max);
    block = malloc(len + 1);
    return hp_form_multipart(ct, body, len, block, &F);
}

static int mp(const char *ct, const char *body)
{
    return mp_n(ct, body, strlen(body), 0);
}

static int cookie(const char *s)
{
    reset(0);
    block = malloc(strlen(s) + 1);
    return hp_cookie_parse(s, strlen(s), block, &F);
}

/* "name=value|name=value|..." of what was decoded, for one-line checks. */
static const char *dump(void)
{
    static char buf[4096];
    size_t o = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < F.n && o < sizeof buf; i++)
        o += (size_t)snprintf(buf + o, sizeof buf - o, "%s%s=%s", i ? "|" : "",
                              F.v[i].name, F.v[i].value);
    return buf;
}

static void test_urlencoded_basics(void)
{
    CHECK(url("a=1&b=2", 0) == HP_FORM_OK);
    CHECK_STR(dump(), "a=1|b=2");
    CHECK(url("", 0) == HP_FORM_OK && F.n == 0);
    CHECK(url("name=J%C3%B6rg+Z%26Co", 0) == 0);
    CHECK_STR(dump(), "name=J\xc3\xb6rg Z&Co");
    CHECK(url("a+b%20c=d+e", 0) == 0); /* names decode too */
    CHECK_STR(dump(), "a b c=d e");
    CHECK(url("a=%2B", 0) == 0); /* an escaped '+' stays '+' */
    CHECK_STR(dump(), "a=+");
    CHECK(url("t=1&t=two&t=3", 0) == 0 && F.n == 3);
    CHECK_STR(dump(), "t=1|t=two|t=3");
}

static void test_urlencoded_whatwg_edges(void)
{
    /* Empty name: a field like any other (the POST bug lost everything). */
    CHECK(url("=v&a=1&b=2", 0) == 0);
    CHECK_STR(dump(), "=v|a=1|b=2");
    /* No '=': the name with value "". */
    CHECK(url("k&j=2", 0) == 0);
    CHECK_STR(dump(), "k=|j=2");
    CHECK(F.v[0].value_len == 0);
    /* Empty sequences are skipped. */
    CHECK(url("&&a=1&&&b=&", 0) == 0);
    CHECK_STR(dump(), "a=1|b=");
    CHECK(url("&", 0) == 0 && F.n == 0);
    CHECK(url("=", 0) == 0);
    CHECK_STR(dump(), "=");
    /* Split at the first '=' only. */
    CHECK(url("a==b=c", 0) == 0);
    CHECK_STR(dump(), "a==b=c");
    CHECK_STR(F.v[0].value, "=b=c");
}

static void test_urlencoded_invalid_escapes(void)
{
    /* Kept literally, and the next field is untouched. */
    CHECK(url("a=%zz&b=1", 0) == 0);
    CHECK_STR(dump(), "a=%zz|b=1");
    CHECK(url("a=%4&b=1", 0) == 0);
    CHECK_STR(dump(), "a=%4|b=1");
    CHECK(url("a=%&b=%", 0) == 0);
    CHECK_STR(dump(), "a=%|b=%");
    CHECK(url("a=%%41", 0) == 0); /* the second '%' starts a good escape */
    CHECK_STR(dump(), "a=%A");
    CHECK(url("a=%4g%41", 0) == 0);
    CHECK_STR(dump(), "a=%4gA");
    CHECK(url("%zz=1", 0) == 0);
    CHECK_STR(dump(), "%zz=1");
    CHECK(url("a=%2", 0) == 0); /* truncated at the end */
    CHECK_STR(dump(), "a=%2");
}

static void test_urlencoded_nul(void)
{
    CHECK(url("a=x%00y&b=1", 0) == 0 && F.n == 2);
    CHECK(F.v[0].value_len == 3 && memcmp(F.v[0].value, "x\0y", 3) == 0);
    CHECK_STR(F.v[0].value, "x"); /* as a C string: cut at the NUL */
    CHECK_STR(F.v[1].value, "1");
}

static void test_cap(void)
{
    CHECK(url("a&b&c", 3) == HP_FORM_OK && F.n == 3);
    CHECK(url("a&b&c&d", 3) == HP_FORM_TOO_MANY);
    CHECK(F.n == 3 && F.cap <= 3); /* stopped early, array not grown */
    CHECK(url("a&&&b&&&c&&&", 3) == HP_FORM_OK); /* empties don't count */
    /* Two sources share one cap: the query's fields count. */
    reset(3);
    char *b1 = malloc(8), *b2 = malloc(8);
    CHECK(hp_form_urlencoded("q=1&r=2", 7, b1, &F) == 0);
    CHECK(hp_form_urlencoded("x=1&y=2", 7, b2, &F) == HP_FORM_TOO_MANY);
    CHECK_STR(dump(), "q=1|r=2|x=1");
    free(b1);
    free(b2);
    /* A large a&a&... body: 1000 fields then a stop, a bounded array. */
    size_t n = 2u << 20;
    char *big = malloc(n + 1);
    for (size_t i = 0; i < n; i++)
        big[i] = i % 2 ? '&' : 'a';
    big[n] = '\0';
    CHECK(url(big, 1000) == HP_FORM_TOO_MANY && F.n == 1000);
    CHECK(F.cap == 1000);
    CHECK(url(big, 0) == HP_FORM_OK && F.n == n / 2);
    free(big);
    /* Multipart parts count too; nameless parts do not. */
    const char *ct = "multipart/form-data; boundary=B";
    const char *body = "--B\r\nContent-Disposition: form-data; name=a\r\n\r\n1"
                       "\r\n--B\r\n\r\nnameless"
                       "\r\n--B\r\nContent-Disposition: form-data; name=b\r\n"
                       "\r\n2\r\n--B--\r\n";
    CHECK(mp_n(ct, body, strlen(body), 2) == HP_FORM_OK && F.n == 2);
    CHECK(mp_n(ct, body, strlen(body), 1) == HP_FORM_TOO_MANY);
}

static void test_form_type(void)
{
    CHECK(hp_form_type(NULL) == HP_FORM_NONE);
    CHECK(hp_form_type("application/x-www-form-urlencoded") ==
          HP_FORM_URLENCODED);
    CHECK(hp_form_type("Application/X-WWW-Form-URLEncoded; charset=UTF-8") ==
          HP_FORM_URLENCODED);
    CHECK(hp_form_type(" multipart/form-data; boundary=x") ==
          HP_FORM_MULTIPART);
    CHECK(hp_form_type("MULTIPART/FORM-DATA;boundary=x") == HP_FORM_MULTIPART);
    CHECK(hp_form_type("application/json") == HP_FORM_NONE);
    CHECK(hp_form_type("application/x-www-form-urlencodedx") == HP_FORM_NONE);
    CHECK(hp_form_type("multipart/mixed; boundary=x") == HP_FORM_NONE);
    /* hp_form_body: same text, same fields as the query decoder. */
    reset(0);
    char out[32];
    const char *t = "=v&a=%zz&k";
    CHECK(hp_form_body("application/x-www-form-urlencoded; charset=utf-8", t,
                       strlen(t), out, &F) == 0);
    CHECK_STR(dump(), "=v|a=%zz|k=");
    reset(0);
    CHECK(hp_form_body("text/plain", t, strlen(t), out, &F) == 0 && F.n == 0);
}

#define CT "multipart/form-data; boundary=XyZ"

static void test_multipart_basics(void)
{
    const char *b = "preamble to ignore\r\n"
                    "--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n"
                    "\r\nfirst\r\n"
                    "--XyZ\r\ncontent-disposition: FORM-DATA; name=b\r\n"
                    "Content-Type: text/plain; charset=utf-8\r\n\r\n"
                    "second value\r\nwith two lines\r\n"
                    "--XyZ--\r\nepilogue --XyZ junk";
    CHECK(mp(CT, b) == HP_FORM_OK);
    CHECK_STR(dump(), "a=first|b=second value\r\nwith two lines");
    /* No preamble, first delimiter at byte 0; transport padding. */
    CHECK(mp(CT, "--XyZ \t\r\nContent-Disposition: form-data; name=x\r\n\r\n"
                 "\r\n--XyZ--") == 0);
    CHECK_STR(dump(), "x=");
    /* Boundary text inside content that is not a delimiter line. */
    CHECK(mp(CT, "--XyZ\r\nContent-Disposition: form-data; name=x\r\n\r\n"
                 "a\r\n--XyZZ\r\nb\r\n--XyZ--\r\n") == 0);
    CHECK_STR(dump(), "x=a\r\n--XyZZ\r\nb");
    /* Header lines ended by CRLF, then the delimiter: no content (RFC 2046
     * body-part = headers [CRLF content]). */
    CHECK(mp(CT, "--XyZ\r\nContent-Disposition: form-data; name=h\r\n"
                 "\r\n--XyZ--") == 0);
    CHECK_STR(dump(), "h=");
    CHECK(F.n == 1 && F.v[0].value_len == 0);
    /* Only a close delimiter: no fields. */
    CHECK(mp(CT, "--XyZ--\r\n") == 0 && F.n == 0);
}

static void test_multipart_boundary_param(void)
{
    const char *b = "--a b\"c\r\nContent-Disposition: form-data; name=q\r\n"
                    "\r\nv\r\n--a b\"c--\r\n";
    CHECK(mp("multipart/form-data; boundary=\"a b\\\"c\"", b) == 0);
    CHECK_STR(dump(), "q=v");
    CHECK(mp("multipart/form-data; charset=utf-8; BOUNDARY=XyZ",
             "--XyZ\r\nContent-Disposition: form-data; name=q\r\n\r\nv\r\n"
             "--XyZ--") == 0);
    CHECK_STR(dump(), "q=v");
    /* Missing, empty, too long (71), unterminated quote: 400. */
    const char *ok = "--XyZ--\r\n";
    CHECK(mp("multipart/form-data", ok) == HP_FORM_MALFORMED);
    CHECK(mp("multipart/form-data; boundary=", ok) == HP_FORM_MALFORMED);
    CHECK(mp("multipart/form-data; boundary=\"\"", ok) == HP_FORM_MALFORMED);
    CHECK(mp("multipart/form-data; boundary=\"XyZ", ok) == HP_FORM_MALFORMED);
    char ct[200];
    snprintf(ct, sizeof ct, "multipart/form-data; boundary=%071d", 0);
    CHECK(mp(ct, ok) == HP_FORM_MALFORMED);
    snprintf(ct, sizeof ct, "multipart/form-data; boundary=%070d", 0);
    char body[100];
    snprintf(body, sizeof body, "--%070d--", 0);
    CHECK(mp(ct, body) == HP_FORM_OK);
}

static void test_multipart_nameless_and_files(void)
{
    /* The remote crash: a part without name= is skipped. */
    CHECK(mp(CT, "--XyZ\r\nContent-Type: text/plain\r\n\r\nhello\r\n"
                 "--XyZ--\r\n") == HP_FORM_OK);
    CHECK(F.n == 0);
    /* No header fields at all; disposition without name; not form-data;
     * name* only (RFC 7578 4.2 forbids it). */
    CHECK(mp(CT, "--XyZ\r\n\r\nnone\r\n"
                 "--XyZ\r\nContent-Disposition: form-data\r\n\r\nx\r\n"
                 "--XyZ\r\nContent-Disposition: attachment; name=n\r\n\r\nx"
                 "\r\n--XyZ\r\nContent-Disposition: form-data; name*=utf-8''n"
                 "\r\n\r\nx\r\n--XyZ\r\nContent-Disposition: form-data; "
                 "filename=\"f\"\r\n\r\nx\r\n--XyZ\r\n"
                 "Content-Disposition: form-data; name=ok\r\n\r\nyes\r\n"
                 "--XyZ--") == 0);
    CHECK_STR(dump(), "ok=yes");
    /* An empty part. */
    CHECK(mp(CT, "--XyZ\r\n\r\n--XyZ--") == 0 && F.n == 0);
    /* A file part: the value is the content, NULs and all. */
    static const char file[] =
        "--XyZ\r\nContent-Disposition: form-data; name=\"up\"; "
        "filename=\"a;b \\\"c\\\".bin\"\r\nContent-Type: "
        "application/octet-stream\r\n\r\n\x01\0\x02\r\n--XyZ--\r\n";
    CHECK(mp_n(CT, file, sizeof file - 1, 0) == 0 && F.n == 1);
    CHECK_STR(F.v[0].name, "up");
    CHECK(F.v[0].value_len == 3 && memcmp(F.v[0].value, "\x01\0\x02", 3) == 0);
    /* filename= before name=, and a quoted-pair in the name. */
    CHECK(mp(CT, "--XyZ\r\nContent-Disposition: form-data; filename=x; "
                 "name=\"a\\\"b\"\r\n\r\nv\r\n--XyZ--") == 0);
    CHECK_STR(dump(), "a\"b=v");
}

static void test_multipart_malformed(void)
{
    CHECK(mp(CT, "") == HP_FORM_MALFORMED);
    CHECK(mp(CT, "no delimiter at all") == HP_FORM_MALFORMED);
    /* Missing close delimiter. */
    CHECK(mp(CT, "--XyZ\r\nContent-Disposition: form-data; name=a\r\n\r\n"
                 "1\r\n") == HP_FORM_MALFORMED);
    CHECK(mp(CT, "--XyZ\r\nContent-Disposition: form-data; name=a\r\n\r\n"
                 "1\r\n--XyZ\r\n") == HP_FORM_MALFORMED);
    /* Part header block without the blank line (its last line has no
     * CRLF of its own: the one before the delimiter is the delimiter's). */
    CHECK(mp(CT, "--XyZ\r\nContent-Disposition: form-data; name=a\r\n"
                 "--XyZ--\r\n") == HP_FORM_MALFORMED);
    CHECK(mp(CT,
             "--XyZ\r\nContent-Disposition: form-data; name=a\r\n"
             "Content-Type: text/plain\r\n--XyZ--\r\n") == HP_FORM_MALFORMED);
    /* Bad parameter list in Content-Disposition. */
    CHECK(mp(CT, "--XyZ\r\nContent-Disposition: form-data; name=\"a\r\n\r\n"
                 "1\r\n--XyZ--") == HP_FORM_MALFORMED);
    CHECK(mp(CT, "--XyZ\r\nContent-Disposition: form-data; =a\r\n\r\n"
                 "1\r\n--XyZ--") == HP_FORM_MALFORMED);
    /* Delimiter followed by garbage on its line: not a delimiter. */
    CHECK(mp(CT, "--XyZ junk\r\n") == HP_FORM_MALFORMED);
    /* hp_form_body routes multipart errors. */
    reset(0);
    char out[8];
    CHECK(hp_form_body("multipart/form-data", "x", 1, out, &F) ==
          HP_FORM_MALFORMED);
}

static void test_cookies(void)
{
    CHECK(cookie("a=1; b=two; c=3") == 0);
    CHECK_STR(dump(), "a=1|b=two|c=3");
    CHECK(cookie("a=1;b=2;  c = 3 ;\td=\"quoted v\"") == 0);
    CHECK_STR(dump(), "a=1|b=2|c=3|d=quoted v");
    CHECK(cookie("flag; =nameless; x=; y=\"\"; z=\"") == 0);
    CHECK_STR(dump(), "x=|y=|z=\"");
    CHECK(cookie("k=a=b; k=second") == 0); /* first '=' splits */
    CHECK_STR(dump(), "k=a=b|k=second");
    CHECK_STR(hp_fields_find(&F, "k")->value, "a=b"); /* first one wins */
    CHECK(hp_fields_find(&F, "K") == NULL);
    CHECK(cookie("v=%41") == 0); /* no percent-decoding */
    CHECK_STR(dump(), "v=%41");
    CHECK(cookie("") == 0 && F.n == 0);
    CHECK(cookie(";;; ;") == 0 && F.n == 0);
}

int main(void)
{
    T_RUN(test_urlencoded_basics);
    T_RUN(test_urlencoded_whatwg_edges);
    T_RUN(test_urlencoded_invalid_escapes);
    T_RUN(test_urlencoded_nul);
    T_RUN(test_cap);
    T_RUN(test_form_type);
    T_RUN(test_multipart_basics);
    T_RUN(test_multipart_boundary_param);
    T_RUN(test_multipart_nameless_and_files);
    T_RUN(test_multipart_malformed);
    T_RUN(test_cookies);
    reset(0);
    T_DONE();
}
