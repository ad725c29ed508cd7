/*
 * test_respmemo.c - respmemo.c: a thread's kept response is found again
 * only for exactly the same fields and body, is the thread's own, and a
 * large body is never kept.
 */
#include "../../src/respmemo.h"
#include "t.h"

#include <pthread.h>

static hp_req *request(const char *body, const char *type)
{
    hp_req *req = calloc(1, sizeof *req);
    hp_req_add_header(req, "Server", "hotpub");
    if (type)
        hp_req_add_header(req, "Content-Type", type);
    hp_buf_append(&req->out, body, strlen(body));
    return req;
}

static void request_free(hp_req *req)
{
    hp_req_cleanup(req);
    free(req);
}

/* A response made from req as server.c makes it (the body is the
 * response's), kept as this thread's. */
static struct MHD_Response *keep(hp_req *req)
{
    char *body = strdup(req->out.p);
    size_t len = strlen(body);
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    CHECK(r != NULL);
    CHECK(hp_respmemo_keep(r, body, len, req));
    return r;
}

static void *find_elsewhere(void *req)
{
    return hp_respmemo_find(req);
}

static void test_same_response_found_again(void)
{
    hp_req *a = request("{\"message\":\"Hello, World!\"}", "application/json");
    struct MHD_Response *r = keep(a);
    hp_req *b = request("{\"message\":\"Hello, World!\"}", "application/json");
    CHECK(hp_respmemo_find(b) == r);
    CHECK(hp_respmemo_find(a) == r);
    /* another thread keeps its own (none) */
    pthread_t t;
    void *other = (void *)1;
    CHECK(pthread_create(&t, NULL, find_elsewhere, b) == 0);
    pthread_join(t, &other);
    CHECK(other == NULL);
    request_free(a);
    request_free(b);
}

static void test_any_difference_misses(void)
{
    hp_req *a = request("Hello, World!", "text/plain");
    keep(a);
    hp_req *body = request("Hello, World?", "text/plain");
    CHECK(hp_respmemo_find(body) == NULL);
    hp_req *longer = request("Hello, World!!", "text/plain");
    CHECK(hp_respmemo_find(longer) == NULL);
    hp_req *type = request("Hello, World!", "text/html");
    CHECK(hp_respmemo_find(type) == NULL);
    hp_req *no_type = request("Hello, World!", NULL); /* the default type */
    CHECK(hp_respmemo_find(no_type) == NULL);
    hp_req *more = request("Hello, World!", "text/plain");
    hp_req_add_header(more, "X-More", "1");
    CHECK(hp_respmemo_find(more) == NULL);
    hp_req *same = request("Hello, World!", "text/plain");
    CHECK(hp_respmemo_find(same) != NULL);
    request_free(a);
    request_free(body);
    request_free(longer);
    request_free(type);
    request_free(no_type);
    request_free(more);
    request_free(same);
}

static void test_next_response_replaces(void)
{
    hp_req *a = request("one", "text/plain");
    keep(a);
    hp_req *b = request("two", "text/plain");
    struct MHD_Response *r2 = keep(b);
    CHECK(hp_respmemo_find(a) == NULL);
    CHECK(hp_respmemo_find(b) == r2);
    request_free(a);
    request_free(b);
}

static void test_large_body_not_kept(void)
{
    size_t n = HP_RESPMEMO_MAX_BODY + 1;
    char *big = malloc(n + 1);
    memset(big, 'x', n);
    big[n] = '\0';
    hp_req *a = request(big, "text/plain");
    struct MHD_Response *r =
        MHD_create_response_from_buffer(n, big, MHD_RESPMEM_MUST_FREE);
    CHECK(!hp_respmemo_keep(r, big, n, a));
    CHECK(hp_respmemo_find(a) == NULL);
    MHD_destroy_response(r); /* still the caller's */
    request_free(a);
}

int main(int argc, char **argv)
{
    T_INIT(argc, argv);
    T_RUN(test_same_response_found_again);
    T_RUN(test_any_difference_misses);
    T_RUN(test_next_response_replaces);
    T_RUN(test_large_body_not_kept);
    T_DONE();
}
