/*
 * test_ops.c - the operators' side: CIDR lists, the bearer token and
 * the Host rule (admin.c), the node-stats area's counters, page labels and
 * exposition (metrics.c) read back as a scraper would.
 */
#include "hp.h"
#include "ops.h"
#include "t.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

static struct sockaddr_storage v4(const char *a)
{
    struct sockaddr_storage ss = {0};
    struct sockaddr_in *in = (struct sockaddr_in *)&ss;
    in->sin_family = AF_INET;
    inet_pton(AF_INET, a, &in->sin_addr);
    return ss;
}

static struct sockaddr_storage v6(const char *a)
{
    struct sockaddr_storage ss = {0};
    struct sockaddr_in6 *in = (struct sockaddr_in6 *)&ss;
    in->sin6_family = AF_INET6;
    inet_pton(AF_INET6, a, &in->sin6_addr);
    return ss;
}

#define SA(ss) ((const struct sockaddr *)&(ss))

static void test_cidr_lists(void)
{
    char err[200];
    CHECK(hp_cidr_check("10.0.0.0/8, 192.0.2.7,2001:db8::/32", err,
                        sizeof err) == 0);
    CHECK(hp_cidr_check("10.0.0.0/33", err, sizeof err) < 0);
    CHECK(hp_cidr_check("example.com", err, sizeof err) < 0);
    CHECK(hp_cidr_check("::/129", err, sizeof err) < 0);
    struct sockaddr_storage a = v4("10.1.2.3"), b = v4("11.0.0.1"),
                            c = v6("2001:db8::5"), d = v6("2001:db9::5"),
                            e = v6("::ffff:10.9.9.9"), f = v4("192.0.2.7"),
                            g = v4("192.0.2.8");
    const char *list = "10.0.0.0/8,192.0.2.7,2001:db8::/32";
    CHECK(hp_cidr_match(list, SA(a)));
    CHECK(!hp_cidr_match(list, SA(b)));
    CHECK(hp_cidr_match(list, SA(c)));
    CHECK(!hp_cidr_match(list, SA(d)));
    CHECK(hp_cidr_match(list, SA(e))); /* a v4-mapped peer on a v6 socket */
    CHECK(hp_cidr_match(list, SA(f)));
    CHECK(!hp_cidr_match(list, SA(g)));
    CHECK(!hp_cidr_match(NULL, SA(a)));
    CHECK(hp_cidr_match("10.1.2.0/23", SA(a)));
    CHECK(!hp_cidr_match("10.1.4.0/23", SA(a)));
}

static void test_loopback(void)
{
    struct sockaddr_storage a = v4("127.3.4.5"), b = v6("::1"),
                            c = v6("::ffff:127.0.0.1"), d = v4("10.0.0.1"),
                            e = v6("::2");
    CHECK(hp_addr_loopback(SA(a)));
    CHECK(hp_addr_loopback(SA(b)));
    CHECK(hp_addr_loopback(SA(c)));
    CHECK(!hp_addr_loopback(SA(d)));
    CHECK(!hp_addr_loopback(SA(e)));
    CHECK(!hp_addr_loopback(NULL));
}

static void test_bearer(void)
{
    CHECK(hp_bearer_ok("Bearer s3cret", "s3cret"));
    CHECK(hp_bearer_ok("bearer s3cret", "s3cret"));
    CHECK(!hp_bearer_ok("Bearer s3cre", "s3cret"));
    CHECK(!hp_bearer_ok("Bearer s3crett", "s3cret"));
    CHECK(!hp_bearer_ok("Bearer ", "s3cret"));
    CHECK(!hp_bearer_ok("Basic s3cret", "s3cret"));
    CHECK(!hp_bearer_ok(NULL, "s3cret"));
    CHECK(!hp_bearer_ok("Bearer ", ""));
}

/* The Host rule against DNS rebinding (admin.c): loopback names and
 * addresses, the listen address, --allowed-hosts; nothing else. */
static void test_host_rule(void)
{
    struct sockaddr_storage lo = v4("127.0.0.1"), any4 = v4("0.0.0.0"),
                            any6 = v6("::"), one = v4("192.0.2.7"),
                            six = v6("2001:db8::1");
    const char *ok[] = {"localhost",
                        "LOCALHOST:8080",
                        "localhost.",
                        "app.localhost:1",
                        "127.0.0.1",
                        "127.9.8.7:80",
                        "[::1]",
                        "[::1]:8080",
                        "[::ffff:127.0.0.1]",
                        NULL};
    for (size_t i = 0; ok[i]; i++)
        CHECK(hp_host_allowed(ok[i], NULL, SA(lo)));
    /* a rebinding page's own name, whatever it looks like */
    const char *no[] = {"evil.example",
                        "evil.example:8080",
                        "localhost.evil.example",
                        "evillocalhost",
                        "127.0.0.1.evil.example",
                        "192.0.2.7",
                        "[::2]:80",
                        "localhost:80x",
                        "[::1",
                        "",
                        "127.0.0.1:80:80",
                        "0x7f.1",
                        NULL};
    for (size_t i = 0; no[i]; i++)
        CHECK(!hp_host_allowed(no[i], NULL, SA(lo)));
    CHECK(hp_host_allowed(NULL, NULL, SA(lo))); /* HTTP/1.0, no Host */
    /* the exact listen address; any address when listening on all */
    CHECK(hp_host_allowed("192.0.2.7:8080", NULL, SA(one)));
    CHECK(!hp_host_allowed("192.0.2.8:8080", NULL, SA(one)));
    CHECK(hp_host_allowed("[2001:db8::1]:8080", NULL, SA(six)));
    CHECK(hp_host_allowed("198.51.100.1", NULL, SA(any4)));
    CHECK(hp_host_allowed("[2001:db8::9]", NULL, SA(any6)));
    CHECK(!hp_host_allowed("evil.example", NULL, SA(any4)));
    /* --allowed-hosts: exact names, .suffix, * */
    const char *list = "dev.example.test, .apps.test";
    CHECK(hp_host_allowed("dev.example.test:8080", list, SA(lo)));
    CHECK(hp_host_allowed("DEV.example.test", list, SA(lo)));
    CHECK(!hp_host_allowed("x.dev.example.test", list, SA(lo)));
    CHECK(hp_host_allowed("apps.test", list, SA(lo)));
    CHECK(hp_host_allowed("a.b.apps.test:1", list, SA(lo)));
    CHECK(!hp_host_allowed("xapps.test", list, SA(lo)));
    CHECK(hp_host_allowed("anything.example", "*", SA(lo)));
    char err[200];
    CHECK(hp_host_list_check("dev.example.test,.apps.test, *", err,
                             sizeof err) == 0);
    CHECK(hp_host_list_check("dev.example.test:8080", err, sizeof err) < 0);
    CHECK(hp_host_list_check("http://x", err, sizeof err) < 0);
    /* no label: they would match nothing, silently */
    CHECK(hp_host_list_check(".", err, sizeof err) < 0);
    CHECK(hp_host_list_check("..", err, sizeof err) < 0);
    CHECK(hp_host_list_check("a..b", err, sizeof err) < 0);
    CHECK(hp_host_list_check("ok.test, .", err, sizeof err) < 0);
    CHECK(hp_host_list_check("localhost., .ok.test", err, sizeof err) == 0);
}

/* The value of the sample line that starts with `prefix` (its labels
 * included), or -1. */
static double value_of(const char *text, const char *prefix)
{
    size_t n = strlen(prefix);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : p)
        if (strncmp(p, prefix, n) == 0 && p[n] == ' ')
            return atof(p + n + 1);
    return -1;
}

static void test_metrics_counts_and_labels(void)
{
    CHECK(hp_metrics_map(2) == 0);
    CHECK(hp_metrics_map(2) == 1);
    hp_metrics_set_root("/srv/site");
    hp_metrics_enter(0);
    hp_metrics_request("/srv/site/a.c", 200, 0.0004);
    hp_metrics_request("/srv/site/a.c", 200, 0.003);
    hp_metrics_request("/srv/site/a.c", 503, 20);
    hp_metrics_request(HP_MET_STATIC, 304, 0.0001);
    hp_metrics_request("/srv/site/q\"uote.c", 200, 0.0001);
    hp_metrics_build("/srv/site/a.c", 0.2, true, NULL);
    hp_metrics_build("/srv/site/a.c", 0.05, false, "a.c:1: error: x\nmore");
    struct hp_buf b = {0};
    hp_metrics_text(&b, NULL);
    const char *t = b.p;
    CHECK(value_of(
              t, "hotpub_http_requests_total{page=\"a.c\",code=\"2xx\"}") == 2);
    CHECK(value_of(
              t, "hotpub_http_requests_total{page=\"a.c\",code=\"5xx\"}") == 1);
    CHECK(value_of(t, "hotpub_http_requests_total{page=\"_static\","
                      "code=\"3xx\"}") == 1);
    CHECK(value_of(t, "hotpub_http_requests_total{page=\"q\\\"uote.c\","
                      "code=\"2xx\"}") == 1);
    /* Cumulative buckets; 20 s is past the last finite bound. */
    CHECK(value_of(t,
                   "hotpub_http_request_duration_seconds_bucket{page=\"a.c\","
                   "le=\"0.0005\"}") == 1);
    CHECK(value_of(t,
                   "hotpub_http_request_duration_seconds_bucket{page=\"a.c\","
                   "le=\"0.005\"}") == 2);
    CHECK(value_of(t,
                   "hotpub_http_request_duration_seconds_bucket{page=\"a.c\","
                   "le=\"10\"}") == 2);
    CHECK(value_of(t,
                   "hotpub_http_request_duration_seconds_bucket{page=\"a.c\","
                   "le=\"+Inf\"}") == 3);
    CHECK(value_of(t, "hotpub_reloads_total{result=\"ok\"}") == 1);
    CHECK(value_of(t, "hotpub_reloads_total{result=\"failed\"}") == 1);
    hp_buf_free(&b);

    hp_metrics_json(&b);
    CHECK(strstr(b.p, "\"result\":\"failed\"") != NULL);
    CHECK(strstr(b.p, "\"error\":\"a.c:1: error: x\"") != NULL); /* 1 line */
    hp_buf_free(&b);
}

static void test_metrics_label_table_is_bounded(void)
{
    /* Slot 0 of the map above is still this process's. */
    char path[64];
    for (int i = 0; i < 300; i++) {
        snprintf(path, sizeof path, "/srv/site/p%d.c", i);
        hp_metrics_request(path, 200, 0.001);
    }
    struct hp_buf b = {0};
    hp_metrics_text(&b, NULL);
    int series = 0;
    for (const char *p = b.p; (p = strstr(p, "hotpub_http_requests_total{"));
         p++)
        series++;
    CHECK(series <= 128 + 1 + 4);
    CHECK(value_of(b.p, "hotpub_http_requests_total{page=\"_other\","
                        "code=\"2xx\"}") > 0);
    hp_buf_free(&b);
}

/* Last: the slot of this process is folded (as when its worker was
 * reaped) and its counts stay in the node's. */
static void test_metrics_fold_keeps_counts(void)
{
    struct hp_buf b = {0};
    hp_metrics_fold(0);
    hp_metrics_text(&b, NULL);
    CHECK(value_of(b.p, "hotpub_http_requests_total{page=\"a.c\","
                        "code=\"2xx\"}") == 2);
    CHECK(value_of(b.p, "hotpub_worker_processes") == 0);
    hp_buf_free(&b);
}

int main(int argc, char **argv)
{
    T_INIT(argc, argv);
    T_RUN(test_cidr_lists);
    T_RUN(test_loopback);
    T_RUN(test_bearer);
    T_RUN(test_host_rule);
    T_RUN(test_metrics_counts_and_labels);
    T_RUN(test_metrics_label_table_is_bounded);
    T_RUN(test_metrics_fold_keeps_counts);
    T_DONE();
}
