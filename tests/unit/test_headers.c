/*
 * test_headers.c - the response fields a page sets (request.c):
 * hp_set_header refuses the fields that are the server's (framing, and
 * Date, RFC 9110 §6.6.1), and hp_redirect refuses control bytes and
 * percent-encodes the bytes a URI reference may not hold as they are
 * (RFC 3986 §2.1-2.3), on a request built here.
 */
#include "request.h"
#include "t.h"

static void req_new(hp_req *req, const char *method)
{
    memset(req, 0, sizeof *req);
    req->method = method;
    req->status = 200;
}

/* The value of the field the page set, or NULL. */
static const char *field(const hp_req *req, const char *name)
{
    for (size_t i = 0; i < req->headers.n; i++)
        if (strcasecmp(req->headers.v[i].name, name) == 0)
            return req->headers.v[i].value;
    return NULL;
}

static void test_date_is_the_servers(void)
{
    hp_req r;
    req_new(&r, "GET");
    CHECK(hp_set_header(&r, "Date", "1") == -1);
    CHECK(hp_set_header(&r, "date", "Thu, 01 Jan 1970 00:00:00 GMT") == -1);
    CHECK(hp_set_header(&r, "DATE", NULL) == -1);
    CHECK(field(&r, "Date") == NULL);
    /* Server is the page's to set; so is a field merely like Date */
    CHECK(hp_set_header(&r, "Server", "mine") == HP_OK);
    CHECK_STR(field(&r, "Server"), "mine");
    CHECK(hp_set_header(&r, "Dates", "x") == HP_OK);
    CHECK(hp_set_header(&r, "Last-Modified", "Thu, 01 Jan 1970 00:00:00 GMT") ==
          HP_OK);
    hp_req_cleanup(&r);
}

/* hp_redirect's Location for in, or NULL when it refused it. */
static const char *redirect(const char *method, const char *in, int *status)
{
    static char out[1024];
    hp_req r;
    req_new(&r, method);
    int rc = hp_redirect(&r, in);
    const char *loc = field(&r, "Location");
    *status = r.status;
    snprintf(out, sizeof out, "%s", loc ? loc : "");
    hp_req_cleanup(&r);
    return rc == HP_OK ? out : NULL;
}

static void test_redirect_encodes_and_refuses(void)
{
    int st;
    CHECK_STR(redirect("GET", "/a b", &st), "/a%20b");
    CHECK(st == 302);
    CHECK_STR(redirect("POST", "/x", &st), "/x");
    CHECK(st == 303);
    /* UTF-8 bytes, and every byte RFC 3986 allows in no component */
    CHECK_STR(redirect("GET", "/caf\xc3\xa9", &st), "/caf%C3%A9");
    CHECK_STR(redirect("GET", "/\"<>\\^`{|}", &st),
              "/%22%3C%3E%5C%5E%60%7B%7C%7D");
    /* reserved and unreserved characters, and '%', stay as they are */
    const char *kept = "https://u:p@[::1]:8080/a-b._~!$&'()*+,;=/p?q=%2F#f";
    CHECK_STR(redirect("GET", kept, &st), kept);
    /* control bytes (tab too), and nothing, are refused: no Location */
    const char *bad[] = {"/a\r\nSet-Cookie: x=1",
                         "/a\nb",
                         "/a\tb",
                         "java\tscript:alert(1)",
                         "/a\x01",
                         "/a\x7f",
                         ""};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        CHECK(redirect("GET", bad[i], &st) == NULL);
        CHECK(st == 200);
    }
    CHECK(redirect("GET", NULL, &st) == NULL);
}

int main(int argc, char **argv)
{
    T_INIT(argc, argv);
    T_RUN(test_date_is_the_servers);
    T_RUN(test_redirect_encodes_and_refuses);
    T_DONE();
}
