/*
 * test_framing.c - the strict HTTP/1.1 framing parser (src/framing.c):
 * every refusal the request edge makes, the lenient cases it keeps, and
 * that the answer does not depend on how the bytes are split.
 */
#include "framing.h"
#include "t.h"

/* Status after feeding s whole (0 = accepted), and heads completed. */
static int run(const char *s, unsigned *heads, size_t *consumed)
{
    struct hp_frame f;
    hp_frame_init(&f, 16 * 1024, 1000);
    size_t n = strlen(s);
    size_t c = hp_frame_feed(&f, s, n);
    if (heads)
        *heads = f.heads;
    if (consumed)
        *consumed = c;
    return f.bad_status;
}

/* The same, one byte per call: a result must not depend on the split. */
static int run_bytewise(const char *s, unsigned *heads)
{
    struct hp_frame f;
    hp_frame_init(&f, 16 * 1024, 1000);
    for (size_t i = 0; s[i]; i++)
        hp_frame_feed(&f, s + i, 1);
    if (heads)
        *heads = f.heads;
    return f.bad_status;
}

#define EXPECT(raw, status)                                                    \
    do {                                                                       \
        int t_s = run(raw, NULL, NULL);                                        \
        int t_b = run_bytewise(raw, NULL);                                     \
        if (t_s != (status) || t_b != (status))                                \
            fprintf(stderr, "  got %d (bytewise %d) for %s\n", t_s, t_b,       \
                    #raw);                                                     \
        CHECK(t_s == (status));                                                \
        CHECK(t_b == (status));                                                \
    } while (0)

#define H "GET / HTTP/1.1\r\nHost: a\r\n"

static void test_good_requests(void)
{
    EXPECT(H "\r\n", 0);
    EXPECT("GET /a?b=%00 HTTP/1.1\r\nHost: a\r\n\r\n", 0);  /* query: forms */
    EXPECT("GET / HTTP/1.0\r\n\r\n", 0);                    /* no Host in 1.0 */
    EXPECT("GET / HTTP/1.1\nHost: a\n\n", 0);               /* bare LF */
    EXPECT("\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 0); /* §2.2 */
    EXPECT("GET http://example.test/hello HTTP/1.1\r\nHost: x\r\n\r\n", 0);
    EXPECT("GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", 0);
    EXPECT("GET / HTTP/1.1\r\nHost: a.b-c_d~:80\r\n\r\n", 0);
    EXPECT("GET / HTTP/1.1\r\nHost:a\r\nX:  v v\t\r\n\r\n", 0);
    EXPECT("GET / HTTP/1.1\r\nHost: a\r\nX: caf\xc3\xa9\r\n\r\n", 0);
    EXPECT("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", 0);
}

static void test_pipelined_and_bodies(void)
{
    unsigned heads;
    const char *two = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n"
                      "hello" H "\r\n";
    CHECK(run(two, &heads, NULL) == 0 && heads == 2);
    CHECK(run_bytewise(two, &heads) == 0 && heads == 2);
    const char *chunked =
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n"
        "5;name=\"v\"\r\nhello\r\n0\r\nX-Trailer: 1\r\n\r\n" H "\r\n";
    CHECK(run(chunked, &heads, NULL) == 0 && heads == 2);
    CHECK(run_bytewise(chunked, &heads) == 0 && heads == 2);
    /* A body that looks like a bad head is a body. */
    const char *body = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9\r\n\r\n"
                       "X : \x01\r\n\r\n";
    CHECK(run(body, &heads, NULL) == 0 && heads == 1);
}

static void test_content_length_and_te(void)
{
    EXPECT(H "Content-Length: 3\r\nContent-Length: 5\r\n\r\n", 400);
    EXPECT(H "Content-Length: 3\r\nContent-Length: 3\r\n\r\n", 400);
    EXPECT(H "Content-Length: 3, 5\r\n\r\n", 400);
    EXPECT(H "Content-Length: -1\r\n\r\n", 400);
    EXPECT(H "Content-Length: 99999999999999999999999\r\n\r\n", 400);
    EXPECT(H "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400);
    EXPECT("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400);
    EXPECT(H "Transfer-Encoding: gzip\r\n\r\n", 501);
    EXPECT(H "Transfer-Encoding: gzip, chunked\r\n\r\n", 501);
    /* libmicrohttpd reads only the first field, and only "chunked" */
    EXPECT(H "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
           400);
    EXPECT(H "Transfer-Encoding: \r\nTransfer-Encoding: chunked\r\n\r\n", 400);
    EXPECT(H "Transfer-Encoding: chunked \r\n\r\n", 400);
    EXPECT(H "Transfer-Encoding: chunked\t\r\n\r\n", 400);
    EXPECT(H "Transfer-Encoding: ,chunked\r\n\r\n", 400);
    EXPECT(H "Transfer-Encoding: chunked,\r\n\r\n", 400);
    EXPECT(H "Transfer-Encoding: chunked;x=1\r\n\r\n", 400);
    EXPECT(H "Transfer-Encoding: xchunked\r\n\r\n", 501);
    EXPECT(H "Transfer-Encoding:   CHUNKED\r\n\r\n0\r\n\r\n", 0);
    EXPECT(H "Content-Length: 3 \r\n\r\nabc", 400);
    EXPECT(H "Content-Length: 3\t\r\n\r\nabc", 400);
    EXPECT(H "Content-Length:  3\r\n\r\nabc", 0);
    EXPECT(H "Transfer-Encoding: chunked, gzip\r\n\r\n", 400);
    EXPECT(H "Transfer-Encoding: identity\r\n\r\n", 501);
    EXPECT(H "Transfer-Encoding: chunked, chunked\r\n\r\n", 400);
    EXPECT(H "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
           400);
    EXPECT(H "Transfer-Encoding: ,\r\n\r\n", 400);
}

static void test_field_syntax(void)
{
    EXPECT("GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400);
    EXPECT(H "X-Foo\t: 1\r\n\r\n", 400);
    EXPECT(H "X-Foo: a\r\n b\r\n\r\n", 400); /* obs-fold */
    EXPECT(H "X-Foo: a\r\n\tb\r\n\r\n", 400);
    EXPECT(H "X-Foo: a\rb\r\n\r\n", 400); /* bare CR */
    EXPECT(H "X-Foo: a\r\r\n\r\n", 400);
    EXPECT(H "X-Foo: a\x01 b\r\n\r\n", 400);
    EXPECT(H "X-Foo: a\x7f\r\n\r\n", 400);
    EXPECT(H "X(Foo): a\r\n\r\n", 400);
    EXPECT(H ": a\r\n\r\n", 400);
    EXPECT(H "X-Foo\r\n\r\n", 400);
    /* NUL: the test string cannot hold it, so feed it by length. */
    struct hp_frame f;
    static const char nul[] = H "X-Foo: a\0b\r\n\r\n";
    hp_frame_init(&f, 16 * 1024, 1000);
    hp_frame_feed(&f, nul, sizeof nul - 1);
    CHECK(f.bad_status == 400);
}

static void test_host(void)
{
    EXPECT("GET / HTTP/1.1\r\n\r\n", 400);
    EXPECT(H "Host: b\r\n\r\n", 400);
    EXPECT("GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400);
    EXPECT("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400);
    EXPECT("GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", 400);
    EXPECT("GET / HTTP/1.1\r\nHost: a:port\r\n\r\n", 400);
    EXPECT("GET / HTTP/1.1\r\nHost: a:123456\r\n\r\n", 400);
    EXPECT("GET / HTTP/1.1\r\nHost:\r\n\r\n", 400);
    EXPECT("GET / HTTP/1.1\r\nHost: a@b\r\n\r\n", 400);
}

static void test_request_line(void)
{
    EXPECT("GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    EXPECT("GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    EXPECT("GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505);
    EXPECT("GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 400);
    EXPECT("GET / http/1.1\r\nHost: a\r\n\r\n", 400);
    EXPECT("G\"T / HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    EXPECT("GET foo HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    EXPECT("GET x:80 HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    EXPECT("GET http:/x HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    EXPECT("GET ftp://x/ HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    EXPECT("GET HTTPS://x/a HTTP/1.1\r\nHost: a\r\n\r\n", 0);
    EXPECT("GET /a#frag HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    EXPECT("GET /a?b=1#frag HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    EXPECT("OPTIONS *x HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    /* RFC 9112 §3.2.4: the asterisk-form only with OPTIONS (case-sensitive,
     * the whole method), also on a second request of the connection. */
    EXPECT("GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    EXPECT("HEAD * HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    EXPECT("options * HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    EXPECT("OPTION * HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    EXPECT("OPTIONSX * HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    EXPECT("XOPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    EXPECT("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"
           "GET * HTTP/1.1\r\nHost: a\r\n\r\n",
           400);
    EXPECT("OPTIONS / HTTP/1.1\r\nHost: a\r\n\r\n"
           "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
           0);
    EXPECT("GET %2F HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    EXPECT("GET /a\tb HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    EXPECT("\rGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400);
}

/* The method token by nginx's rule: A-Z, '_' and '-' only (anything else
 * is 400, at the request line); TRACE and CONNECT are 405 once the head is
 * otherwise good (a bad head stays 400); every other method passes. */
static void test_methods(void)
{
    static const char *const bad[] = {
        "get",   "Get",   "gET",     "G3T",       "GE.T",
        "GE!T",  "GET~",  "G\"T",    "GE$T",      "1GET",
        "trace", "Trace", "connect", "PROPFIND1", "GE\xc3\x89T",
    };
    char req[128];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(req, sizeof req, "%s / HTTP/1.1\r\nHost: a\r\n\r\n", bad[i]);
        int t_s = run(req, NULL, NULL), t_b = run_bytewise(req, NULL);
        if (t_s != 400 || t_b != 400)
            fprintf(stderr, "  method %s: %d (bytewise %d)\n", bad[i], t_s,
                    t_b);
        CHECK(t_s == 400 && t_b == 400);
    }
    static const char *const good[] = {
        "GET",
        "HEAD",
        "POST",
        "PUT",
        "DELETE",
        "PATCH",
        "OPTIONS",
        "FOO",
        "PROPFIND",
        "MKCOL",
        "VERSION-CONTROL",
        "BASELINE_X",
        "-",
        "_",
        "TRACEX",
        "XTRACE",
        "CONNECTX",
        "TRAC",
        "CONNEC",
        "OPTIONSX",
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        snprintf(req, sizeof req, "%s / HTTP/1.1\r\nHost: a\r\n\r\n", good[i]);
        int t_s = run(req, NULL, NULL), t_b = run_bytewise(req, NULL);
        if (t_s != 0 || t_b != 0)
            fprintf(stderr, "  method %s: %d (bytewise %d)\n", good[i], t_s,
                    t_b);
        CHECK(t_s == 0 && t_b == 0);
    }
    /* 32 bytes is the longest method taken. */
    EXPECT("ABCDEFGHIJKLMNOPQRSTUVWXYZ_-ABCD / HTTP/1.1\r\nHost: a\r\n\r\n", 0);
    EXPECT("ABCDEFGHIJKLMNOPQRSTUVWXYZ_-ABCDE / HTTP/1.1\r\nHost: a\r\n\r\n",
           400);

    EXPECT("TRACE / HTTP/1.1\r\nHost: a\r\n\r\n", 405);
    EXPECT("TRACE / HTTP/1.0\r\n\r\n", 405);
    EXPECT("TRACE http://a/x HTTP/1.1\r\nHost: a\r\n\r\n", 405);
    EXPECT("CONNECT / HTTP/1.1\r\nHost: a\r\n\r\n", 405);
    EXPECT("CONNECT http://a:443/ HTTP/1.1\r\nHost: a\r\n\r\n", 405);
    EXPECT("TRACE / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
           405);
    /* Authority-form (RFC 9112 §3.2.3) is no target hotpub takes: 400 at
     * the request line, as nginx. So is TRACE with the asterisk-form. */
    EXPECT("CONNECT example.test:443 HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    EXPECT("CONNECT example.test HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    EXPECT("TRACE * HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    /* Framing first, as nginx: a bad head is a 400 (or 501) whatever the
     * method. */
    EXPECT("TRACE / HTTP/1.1\r\n\r\n", 400);
    EXPECT("TRACE / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400);
    EXPECT("CONNECT / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
           501);

    /* The request before is served, nothing after (a smuggled GET) is. */
    size_t consumed;
    unsigned heads;
    const char *s = H "\r\n"
                      "TRACE / HTTP/1.1\r\nHost: a\r\n\r\n" H "\r\n";
    CHECK(run(s, &heads, &consumed) == 405);
    CHECK(consumed == strlen(H "\r\n"));
    /* Each message is judged on its own method. */
    EXPECT("TRACE / HTTP/1.1\r\nHost: a\r\n\r\n" H "\r\n", 405);
    EXPECT("GET / HTTP/1.1\r\nHost: a\r\n\r\n"
           "get / HTTP/1.1\r\nHost: a\r\n\r\n",
           400);
    EXPECT("OPTIONS / HTTP/1.1\r\nHost: a\r\n\r\n"
           "CONNECT / HTTP/1.1\r\nHost: a\r\n\r\n",
           405);
    EXPECT("TRACEX / HTTP/1.1\r\nHost: a\r\n\r\n"
           "FOO / HTTP/1.1\r\nHost: a\r\n\r\n",
           0);
}

static void test_encoded_controls_in_path(void)
{
    EXPECT("GET /hello%00.c HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    EXPECT("GET /echo%00/x HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    EXPECT("GET /a%0d%0aSet-Cookie:x HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    EXPECT("GET /a%1F HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    EXPECT("GET /a%7f HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    EXPECT("GET /a%%00 HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    EXPECT("GET /a%20b%2e%7E%c3%a9 HTTP/1.1\r\nHost: a\r\n\r\n", 0);
}

/* RFC 3986 §2.1: pct-encoded = "%" HEXDIG HEXDIG; a malformed one in the
 * path is 400 (nginx's answer), in the query the page's decoder's. */
static void test_malformed_percent_in_path(void)
{
    EXPECT("GET /%zz HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    EXPECT("GET /a%4 HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    EXPECT("GET /a% HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    EXPECT("GET /a%4g/b HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    EXPECT("GET /a%2?x=1 HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    EXPECT("GET /a%?x=1 HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    EXPECT("GET /a%20b%2e%zz%4 HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    EXPECT("GET http://a/%zz HTTP/1.1\r\nHost: a\r\n\r\n", 400);
    EXPECT("GET /a?x=%zz&y=%4&z=% HTTP/1.1\r\nHost: a\r\n\r\n", 0);
    EXPECT("GET /a%41?%%% HTTP/1.1\r\nHost: a\r\n\r\n", 0);
    EXPECT("GET /a?x=%00 HTTP/1.1\r\nHost: a\r\n\r\n", 0);
}

static void test_chunks(void)
{
#define C "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    EXPECT(C "fffffffffffffffffffff1\r\nabc\r\n0\r\n\r\n", 400);
    EXPECT(C "zz\r\nabc\r\n0\r\n\r\n", 400);
    EXPECT(C "\r\nabc\r\n0\r\n\r\n", 400);
    EXPECT(C "3 \r\nabc\r\n0\r\n\r\n", 400);
    EXPECT(C "3 ;x\r\nabc\r\n0\r\n\r\n", 0);
    EXPECT(C "3\r\nabcd\r\n0\r\n\r\n", 400);
    EXPECT(C "3\r\nabc\r\n0\r\nX : y\r\n\r\n", 400);
    EXPECT(C "3\rabc\r\n0\r\n\r\n", 400);
    EXPECT(C "3\r\nabc\r\n0\r\n\r\n", 0);
    EXPECT(C "3\nabc\r\n0\r\n\r\n", 400); /* bare LF in chunk framing */
    EXPECT(C "3;foo\nabc\r\n0\r\n\r\n", 400);
    EXPECT(C "3\r\nabc\n0\r\n\r\n", 400);
#undef C
}

static void test_limits(void)
{
    struct hp_frame f;
    char big[20100];
    memcpy(big, "GET /", 5);
    memset(big + 5, 'a', 20000);
    strcpy(big + 20005, " HTTP/1.1\r\nHost: a\r\n\r\n");
    hp_frame_init(&f, 16 * 1024, 1000);
    hp_frame_feed(&f, big, strlen(big));
    CHECK(f.bad_status == 414);

    memcpy(big, H "X: ", sizeof H + 2);
    size_t n = strlen(H "X: ");
    memset(big + n, 'v', 17000);
    strcpy(big + n + 17000, "\r\n\r\n");
    hp_frame_init(&f, 16 * 1024, 1000);
    hp_frame_feed(&f, big, strlen(big));
    CHECK(f.bad_status == 431);
}

/* The bytes of good messages before a bad one are passed on; nothing of
 * the bad one is. */
static void test_consumed_stops_at_bad_message(void)
{
    size_t consumed;
    unsigned heads;
    const char *s = H "\r\n"
                      "GET / HTTP/1.1\r\nHost : a\r\n\r\n";
    CHECK(run(s, &heads, &consumed) == 400);
    CHECK(consumed == strlen(H "\r\n"));
    CHECK(heads == 1);
    s = H "Content-Length: 1\r\nContent-Length: 2\r\n\r\nxGET / HTTP/1.1\r\n";
    CHECK(run(s, &heads, &consumed) == 400 && consumed == 0);
    s = H "\r\n";
    CHECK(run(s, &heads, &consumed) == 0 && consumed == strlen(s));
}

static void test_query_fields(void)
{
    struct hp_frame f;
    hp_frame_init(&f, 16 * 1024, 3);
    const char *ok = "GET /a?x=1&y=2&z HTTP/1.1\r\nHost: a\r\n\r\n";
    hp_frame_feed(&f, ok, strlen(ok));
    CHECK(f.bad_status == 0);
    hp_frame_init(&f, 16 * 1024, 3);
    const char *bad = "GET /a?x=1&y=2&z&w HTTP/1.1\r\nHost: a\r\n\r\n";
    hp_frame_feed(&f, bad, strlen(bad));
    CHECK(f.bad_status == 413);
    hp_frame_init(&f, 16 * 1024, 0); /* no limit */
    hp_frame_feed(&f, bad, strlen(bad));
    CHECK(f.bad_status == 0);
}

/* n small field lines fed to a frame with libmicrohttpd's room for a 16
 * KiB head, whole or one byte at a time: the status, and the bytes the
 * edge would pass on. */
static int many_fields(unsigned n, bool bytewise, size_t *consumed)
{
    struct hp_buf b = {0};
    hp_buf_puts(&b, H);
    for (unsigned i = 0; i < n; i++)
        hp_buf_printf(&b, "X%u: a\r\n", i);
    hp_buf_puts(&b, "\r\n");
    struct hp_frame f;
    hp_frame_init(&f, 16 * 1024, 1000);
    hp_frame_set_query_room(&f, 16 * 1024 + 4096);
    size_t c = 0;
    if (bytewise)
        for (size_t i = 0; i < b.len; i++)
            c += hp_frame_feed(&f, b.p + i, 1);
    else
        c = hp_frame_feed(&f, b.p, b.len);
    *consumed = c;
    hp_buf_free(&b);
    return f.bad_status;
}

/* Small fields fill libmicrohttpd's memory (64 bytes each besides their
 * text) long before the head reaches max_head: the edge answers 431 first,
 * and passes none of that message on. */
static void test_many_small_fields_431(void)
{
    size_t c;
    CHECK(many_fields(100, false, &c) == 0);
    CHECK(many_fields(100, true, &c) == 0);
    CHECK(many_fields(5000, false, &c) == 431 && c == 0);
    CHECK(many_fields(5000, true, &c) == 431);
    CHECK(many_fields(260, false, &c) == 431 && c == 0); /* 2.6 KB head */
    struct hp_frame f; /* without the room set: only max_head counts */
    hp_frame_init(&f, 16 * 1024, 1000);
    const char *s = H "A: 1\r\nB: 2\r\nC: 3\r\n\r\n";
    hp_frame_feed(&f, s, strlen(s));
    CHECK(f.bad_status == 0 && f.heads == 1);
}

/* A chunked body's trailer fields: libmicrohttpd keeps them beside the
 * head's, so they count with the head (64 bytes a field besides the text of
 * both), and a trailer section that would overflow its memory is the
 * edge's 431 (FRESH16-1's class), not libmicrohttpd's. */
static int trailers(size_t pad, unsigned n, size_t big, bool bytewise)
{
    struct hp_buf b = {0};
    hp_buf_puts(&b, "POST / HTTP/1.1\r\nHost: a\r\n"
                    "Transfer-Encoding: chunked\r\n");
    if (pad) {
        hp_buf_puts(&b, "X-Pad: ");
        for (size_t i = 0; i < pad; i++)
            hp_buf_puts(&b, "p");
        hp_buf_puts(&b, "\r\n");
    }
    hp_buf_puts(&b, "\r\n1\r\nx\r\n0\r\n");
    for (unsigned i = 0; i < n; i++)
        hp_buf_printf(&b, "T%u: a\r\n", i);
    if (big) {
        hp_buf_puts(&b, "T: ");
        for (size_t i = 0; i < big; i++)
            hp_buf_puts(&b, "t");
        hp_buf_puts(&b, "\r\n");
    }
    hp_buf_puts(&b, "\r\n");
    struct hp_frame f;
    hp_frame_init(&f, 16 * 1024, 1000);
    hp_frame_set_query_room(&f, 16 * 1024 + 4096);
    if (bytewise)
        for (size_t i = 0; i < b.len; i++)
            hp_frame_feed(&f, b.p + i, 1);
    else
        hp_frame_feed(&f, b.p, b.len);
    hp_buf_free(&b);
    return f.bad_status ? f.bad_status : f.heads == 1 ? 0 : -1;
}

static void test_trailer_fields_count_with_the_head(void)
{
    for (int bw = 0; bw < 2; bw++) {
        CHECK(trailers(0, 10, 0, bw) == 0);
        CHECK(trailers(0, 0, 15000, bw) == 0);
        CHECK(trailers(0, 300, 0, bw) == 431);
        CHECK(trailers(10000, 0, 12000, bw) == 431);
        CHECK(trailers(15000, 0, 6000, bw) == 431);
        CHECK(trailers(8000, 0, 7000, bw) == 0);
    }
}

static void test_in_head(void)
{
    struct hp_frame f;
    hp_frame_init(&f, 1024, 1000);
    CHECK(!hp_frame_in_head(&f));
    hp_frame_feed(&f, "GET / HT", 8);
    CHECK(hp_frame_in_head(&f));
    hp_frame_feed(&f, "TP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n", 38);
    CHECK(!hp_frame_in_head(&f) && f.in_body);
    hp_frame_feed(&f, "ab", 2);
    CHECK(!hp_frame_in_head(&f) && !f.in_body && f.heads == 1);
}

/* A TRACE or CONNECT (405) to hotpub's own endpoints: hp_frame_own_target
 * says so (the 405's Allow is theirs, "GET, HEAD"), whether the prefix is
 * sent as is, percent-encoded or in an absolute-form target, and whether
 * the bytes come at once or one by one. */
static int own_target(const char *s, bool bytewise)
{
    struct hp_frame f;
    hp_frame_init(&f, 16 * 1024, 1000);
    if (bytewise)
        for (size_t i = 0; s[i]; i++)
            hp_frame_feed(&f, s + i, 1);
    else
        hp_frame_feed(&f, s, strlen(s));
    return f.bad_status == 405 ? hp_frame_own_target(&f) : -1;
}

static void test_own_target_405(void)
{
    static const struct {
        const char *req;
        int own;
    } cases[] = {
        {"TRACE /_hotpub/status.json HTTP/1.1\r\nHost: a\r\n\r\n", 1},
        {"TRACE /_hotpub/ HTTP/1.1\r\nHost: a\r\n\r\n", 1},
        {"TRACE /%5Fhotpub/metrics HTTP/1.1\r\nHost: a\r\n\r\n", 1},
        {"TRACE /_hot%70ub%2fhealth HTTP/1.1\r\nHost: a\r\n\r\n", 1},
        {"CONNECT /_hotpub/x HTTP/1.1\r\nHost: a\r\n\r\n", 1},
        {"TRACE http://a:8/_hotpub/x?y HTTP/1.1\r\nHost: a\r\n\r\n", 1},
        {"TRACE HTTPS://a/_hotpub/ HTTP/1.1\r\nHost: a\r\n\r\n", 1},
        {"TRACE /_hotpub HTTP/1.1\r\nHost: a\r\n\r\n", 0},
        {"TRACE /_hotpubx/ HTTP/1.1\r\nHost: a\r\n\r\n", 0},
        {"TRACE /x/_hotpub/ HTTP/1.1\r\nHost: a\r\n\r\n", 0},
        {"TRACE /?/_hotpub/ HTTP/1.1\r\nHost: a\r\n\r\n", 0},
        {"TRACE http://_hotpub/x HTTP/1.1\r\nHost: a\r\n\r\n", 0},
        {"TRACE / HTTP/1.1\r\nHost: a\r\n\r\n", 0},
        {"TRACE /hello HTTP/1.1\r\nHost: a\r\n\r\n", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int a = own_target(cases[i].req, false);
        int b = own_target(cases[i].req, true);
        if (a != cases[i].own || b != cases[i].own)
            fprintf(stderr, "  own target %d (bytewise %d) for %s\n", a, b,
                    cases[i].req);
        CHECK(a == cases[i].own && b == cases[i].own);
    }
    /* The next message on the connection starts afresh. */
    struct hp_frame f;
    hp_frame_init(&f, 16 * 1024, 1000);
    const char *two = "GET /_hotpub/x HTTP/1.1\r\nHost: a\r\n\r\n"
                      "TRACE /a HTTP/1.1\r\nHost: a\r\n\r\n";
    hp_frame_feed(&f, two, strlen(two));
    CHECK(f.bad_status == 405 && !hp_frame_own_target(&f));
}

/* in with every read split (step bytes a read, or cut once at `cut`)
 * through hp_frame_feed_edit: the bytes as libmicrohttpd gets them. */
static void edited(const char *in, size_t step, size_t cut, char *out)
{
    struct hp_frame f;
    hp_frame_init(&f, 16 * 1024, 1000);
    size_t n = strlen(in);
    memcpy(out, in, n + 1);
    if (cut) {
        hp_frame_feed_edit(&f, out, cut);
        hp_frame_feed_edit(&f, out + cut, n - cut);
        return;
    }
    for (size_t i = 0; i < n; i += step)
        hp_frame_feed_edit(&f, out + i, n - i < step ? n - i : step);
}

/* FRESH16-1: Cookie fields reach libmicrohttpd renamed, however the head
 * is split into reads; nothing else is changed, and a name with the mark
 * is no client's (400). */
static void test_cookie_renamed(void)
{
    static const struct {
        const char *in, *want;
    } cases[] = {
        {"GET / HTTP/1.1\r\nHost: a\r\nCookie: a=b\r\n\r\n",
         "GET / HTTP/1.1\r\nHost: a\r\nCooki{: a=b\r\n\r\n"},
        {"GET / HTTP/1.1\r\nCOOKIE: a=b\r\ncookie2: x\r\n"
         "Cookie: c\r\nHost: a\r\n\r\n",
         "GET / HTTP/1.1\r\nCOOKI{: a=b\r\ncooki{2: x\r\n"
         "Cooki{: c\r\nHost: a\r\n\r\n"},
        /* not a name, or not a head's: unchanged */
        {"GET /Cookie:?Cookie: HTTP/1.1\r\nHost: a\r\nX: Cookie: c\r\n"
         "Cooki: c\r\n\r\n",
         NULL},
        {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
         "\r\n1\r\nx\r\n0\r\nCookie: t\r\n\r\n"
         "GET / HTTP/1.1\r\nHost: a\r\nCookie: n\r\n\r\n",
         "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
         "\r\n1\r\nx\r\n0\r\nCookie: t\r\n\r\n"
         "GET / HTTP/1.1\r\nHost: a\r\nCooki{: n\r\n\r\n"},
    };
    char out[512];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *want = cases[i].want ? cases[i].want : cases[i].in;
        size_t n = strlen(cases[i].in);
        for (size_t k = 0; k <= n + 7; k++) {
            if (k <= 7)
                edited(cases[i].in, k ? k : n, 0, out);
            else
                edited(cases[i].in, 0, k - 7, out);
            if (strcmp(out, want) != 0)
                fprintf(stderr, "  case %zu split %zu: %s\n", i, k, out);
            CHECK(strcmp(out, want) == 0);
        }
    }
    EXPECT("GET / HTTP/1.1\r\nHost: a\r\nCooki{: a=b\r\n\r\n", 400);
    char buf[64];
    CHECK_STR(hp_frame_wire_name("Cookie", buf, sizeof buf), "Cooki{");
    CHECK_STR(hp_frame_wire_name("cookie-x", buf, sizeof buf), "cooki{-x");
    CHECK_STR(hp_frame_wire_name("Cooki", buf, sizeof buf), "Cooki");
    CHECK_STR(hp_frame_wire_name("Host", buf, sizeof buf), "Host");
    CHECK(hp_frame_renamed("COOKI{") && !hp_frame_renamed("Cookie"));
    char a[] = "Cooki{", b[] = "COOKI{2", c[] = "Cookie";
    hp_frame_client_name(a);
    hp_frame_client_name(b);
    hp_frame_client_name(c);
    CHECK_STR(a, "Cookie");
    CHECK_STR(b, "COOKIE2");
    CHECK_STR(c, "Cookie");
}

/* RFC 9110 §5.3: a singleton field hotpub reads, sent twice, is refused
 * (libmicrohttpd would give the first, another reader the last); list
 * fields and Cookie may repeat. */
static void test_singleton_fields(void)
{
    static const char *const once[] = {
        "Content-Type: application/json",
        "Authorization: Basic YTpi",
        "Range: bytes=0-1",
        "If-Range: \"x\"",
        "If-Modified-Since: Tue, 01 Dec 2026 08:00:00 GMT",
        "If-Unmodified-Since: Tue, 01 Dec 2026 08:00:00 GMT",
        "Origin: http://a",
        "Referer: http://a/",
        "Sec-Fetch-Site: same-origin",
        "X-CSRF-Token: t",
    };
    char raw[512];
    for (size_t i = 0; i < sizeof once / sizeof *once; i++) {
        snprintf(raw, sizeof raw, H "%s\r\n\r\n", once[i]);
        EXPECT(raw, 0);
        /* twice, apart, the second in upper case, the same value or not */
        snprintf(raw, sizeof raw, H "%s\r\nX: y\r\n%s\r\n\r\n", once[i],
                 once[i]);
        EXPECT(raw, 400);
        for (char *p = strstr(raw, "X: y\r\n") + 6; *p != ':'; p++)
            if (*p >= 'a' && *p <= 'z')
                *p = (char)(*p - 32);
        EXPECT(raw, 400);
        /* a message before it is served, not the one with the repeat */
        unsigned heads = 9;
        size_t consumed = 0;
        snprintf(raw, sizeof raw, H "%s\r\n\r\n" H "%s\r\n%s\r\n\r\n", once[i],
                 once[i], once[i]);
        CHECK(run(raw, &heads, &consumed) == 400);
        CHECK(heads == 1);
        CHECK(consumed == strlen(H) + strlen(once[i]) + 4);
    }
    struct hp_frame f;
    hp_frame_init(&f, 16 * 1024, 0);
    const char *two = "POST / HTTP/1.1\r\nHost: a\r\nContent-Type: "
                      "text/plain\r\ncontent-type: application/json\r\n"
                      "Content-Length: 2\r\n\r\n{}";
    hp_frame_feed(&f, two, strlen(two));
    CHECK(f.bad_status == 400);
    CHECK_STR(f.why, "more than one Content-Type field");
    /* list fields, Cookie, and names that only begin like a singleton */
    EXPECT(H "If-None-Match: \"a\"\r\nIf-None-Match: \"b\"\r\n"
             "If-Match: \"a\"\r\nIf-Match: \"b\"\r\n"
             "Accept: text/html\r\nAccept: */*\r\n"
             "Connection: keep-alive\r\nConnection: x\r\n"
             "Upgrade: a\r\nUpgrade: b\r\n"
             "Cookie: a=1\r\nCookie: b=2\r\nCookie: c=3\r\n"
             "Content-Types: a\r\nContent-Types: b\r\n"
             "Content-Typ: a\r\nContent-Typ: b\r\n"
             "X-Referer: a\r\nX-Referer: b\r\n\r\n",
           0);
    /* a trailer field is not the head's: hotpub reads none */
    EXPECT("POST / HTTP/1.1\r\nHost: a\r\nContent-Type: text/plain\r\n"
           "Transfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n"
           "Content-Type: a\r\nContent-Type: b\r\n\r\n",
           0);
    /* each message counts its own */
    EXPECT(H "Content-Type: a\r\n\r\n" H "Content-Type: b\r\n\r\n", 0);
}

int main(void)
{
    T_RUN(test_good_requests);
    T_RUN(test_pipelined_and_bodies);
    T_RUN(test_content_length_and_te);
    T_RUN(test_field_syntax);
    T_RUN(test_host);
    T_RUN(test_singleton_fields);
    T_RUN(test_request_line);
    T_RUN(test_methods);
    T_RUN(test_own_target_405);
    T_RUN(test_encoded_controls_in_path);
    T_RUN(test_malformed_percent_in_path);
    T_RUN(test_chunks);
    T_RUN(test_limits);
    T_RUN(test_consumed_stops_at_bad_message);
    T_RUN(test_query_fields);
    T_RUN(test_many_small_fields_431);
    T_RUN(test_in_head);
    T_RUN(test_cookie_renamed);
    T_RUN(test_trailer_fields_count_with_the_head);
    T_DONE();
}
