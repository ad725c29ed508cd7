/*
 * test_session.c - unit tests for session.c, csrf.c and password.c: the
 * pure pieces (id shape and hash, the data encoding, token comparison,
 * methods), password hashing, and a session's life through the request's
 * commit and rollback on a real SQLite default pool in a temporary
 * directory (the end-to-end runs, on both engines, are
 * tests/e2e/sessions.py).
 *
 * Owns: its temporary directory. May not touch: anything else.
 */
#include "db.h"
#include "request.h"
#include "session.h"
#include "t.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void id_shape(void)
{
    CHECK(hp_session__id_ok("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA_"));
    CHECK(hp_session__id_ok("0123456789-_abcdefghijklmnopqrstuvwxyzABCDE"));
    CHECK(!hp_session__id_ok(NULL));
    CHECK(!hp_session__id_ok(""));
    CHECK(!hp_session__id_ok("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"));
    CHECK(!hp_session__id_ok("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"));
    CHECK(!hp_session__id_ok("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="));
    CHECK(!hp_session__id_ok("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA+"));
    CHECK(!hp_session__id_ok("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA/"));
}

static void id_hash_is_sha256(void)
{
    char h[65];
    hp_session__id_hash("abc", h); /* FIPS 180-2, appendix B.1 */
    CHECK_STR(h, "ba7816bf8f01cfea414140de5dae2223"
                 "b00361a396177a9cb410ff61f20015ad");
}

static void encode_decode(void)
{
    const char *k[] = {"user", "a&b=c", "ünï", "empty", "%"};
    const char *v[] = {"alice", "x=1&y=2", "cödé \"q\"", "", "100%"};
    char *text = hp_session__encode(5, k, v);
    CHECK_STR(text, "user=alice&a%26b%3Dc=x%3D1%26y%3D2&"
                    "%C3%BCn%C3%AF=c%C3%B6d%C3%A9%20%22q%22&empty=&%25=100%25");
    char **dk, **dv, *block;
    int n = hp_session__decode(text, &dk, &dv, &block);
    CHECK(n == 5);
    for (int i = 0; i < n && i < 5; i++) {
        CHECK_STR(dk[i], k[i]);
        CHECK_STR(dv[i], v[i]);
    }
    free(dk), free(dv), free(block), free(text);

    text = hp_session__encode(0, NULL, NULL);
    CHECK_STR(text, "");
    CHECK(hp_session__decode(text, &dk, &dv, &block) == 0);
    free(dk), free(dv), free(block), free(text);

    /* what this file never writes is refused, not guessed at */
    static const char *const bad[] = {"a",     "a=1&", "&a=1",   "a=1&&b=2",
                                      "a=%zz", "a=%4", "a%00=1", "=&",
                                      "a=1&b", "a=%0"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int r = hp_session__decode(bad[i], &dk, &dv, &block);
        if (r != -1)
            fprintf(stderr, "  decoded \"%s\" as %d pairs\n", bad[i], r);
        CHECK(r == -1);
    }
}

static void tokens_and_methods(void)
{
    const char *t = "0123456789-_abcdefghijklmnopqrstuvwxyzABCDE";
    CHECK(hp_csrf_token_eq(t, "0123456789-_abcdefghijklmnopqrstuvwxyzABCDE"));
    CHECK(!hp_csrf_token_eq(t, "0123456789-_abcdefghijklmnopqrstuvwxyzABCDF"));
    CHECK(!hp_csrf_token_eq(t, "0123456789-_abcdefghijklmnopqrstuvwxyzABCD"));
    CHECK(!hp_csrf_token_eq(t, NULL));
    CHECK(!hp_csrf_token_eq(NULL, NULL));
    CHECK(!hp_csrf_token_eq("", ""));
    static const char *const unsafe[] = {"POST",   "PUT",      "PATCH",
                                         "DELETE", "PROPFIND", "get"};
    static const char *const safe[] = {"GET", "HEAD", "OPTIONS", "TRACE"};
    for (size_t i = 0; i < 6; i++)
        CHECK(hp_csrf_unsafe_method(unsafe[i]));
    for (size_t i = 0; i < 4; i++)
        CHECK(!hp_csrf_unsafe_method(safe[i]));
}

/* docs/pages.md, "Expiry": the lifetime a session's data calls for, and
 * when reading it renews the row. */
static void expiry_policy(void)
{
    CHECK(hp_session__lifetime(0, 1209600, 1440) == 1440);
    CHECK(hp_session__lifetime(1, 1209600, 1440) == 1209600);
    CHECK(hp_session__lifetime(3, 1209600, 1440) == 1209600);
    CHECK(hp_session__lifetime(0, 600, 1440) == 600); /* never longer */

    long long now = 1000000000;
    /* two weeks: a step of 1% (12096 s) */
    CHECK(!hp_session__renew_due(now + 1209600, now, 1209600));
    CHECK(!hp_session__renew_due(now + 1209600 - 12096, now, 1209600));
    CHECK(hp_session__renew_due(now + 1209600 - 12097, now, 1209600));
    /* 24 minutes: a step of at least a minute */
    CHECK(!hp_session__renew_due(now + 1440 - 60, now, 1440));
    CHECK(hp_session__renew_due(now + 1440 - 61, now, 1440));
    /* the shortest lifetime (60 s): a step of a quarter, so a session
     * used 40 s after its renewal is renewed, not lost 20 s later */
    CHECK(!hp_session__renew_due(now + 60 - 15, now, 60));
    CHECK(hp_session__renew_due(now + 60 - 16, now, 60));
    CHECK(hp_session__renew_due(now + 20, now, 60));
    /* a row that lives longer than its data calls for (emptied, or the
     * setting lowered) is cut down on its next read */
    CHECK(!hp_session__renew_due(now + 1440 + 60, now, 1440));
    CHECK(hp_session__renew_due(now + 1440 + 61, now, 1440));
    CHECK(hp_session__renew_due(now + 1209600, now, 1440));
}

static void passwords(void)
{
    hp_req req;
    hp_req_init(&req, NULL, "GET", "/t", "HTTP/1.1");
    const char *h = hp_password_hash(&req, "correct horse");
    CHECK(h && strncmp(h, "$argon2id$", 10) == 0);
    const char *h2 = hp_password_hash(&req, "correct horse");
    CHECK(h && h2 && strcmp(h, h2) != 0); /* salted */
    CHECK(hp_password_verify(h, "correct horse"));
    CHECK(!hp_password_verify(h, "correct horsE"));
    CHECK(!hp_password_verify(h, ""));
    CHECK(!hp_password_verify("$argon2id$v=19$junk", "correct horse"));
    CHECK(!hp_password_verify(NULL, "x"));
    CHECK(!hp_password_verify(h, NULL));
    CHECK(hp_password_hash(&req, NULL) == NULL);
    hp_req_cleanup(&req);
}

/* ---- a session through the request lifecycle -------------------------------
 */

static char tmpdir[] = "/tmp/hp-test-session-XXXXXX";

/* A request with the session cookie (or none). */
static void fake_request(hp_req *req, const char *method, const char *cookie)
{
    hp_req_init(req, NULL, method, "/t", "HTTP/1.1");
    snprintf(req->target.path, sizeof req->target.path, "/srv/t.c");
    req->cookies_parsed = true;
    if (cookie) {
        req->cookies.v = calloc(1, sizeof *req->cookies.v);
        req->cookies.v[0] =
            (struct hp_field){"hotpub_session", cookie, strlen(cookie)};
        req->cookies.n = req->cookies.cap = 1;
    }
}

/* publish.c's order: commit every resource (newest first), or roll back
 * all; then release. Returns the Set-Cookie id ("" to clear), or NULL. */
static bool committed; /* the last finish's commit phase succeeded */

static char *finish(hp_req *req, bool ok)
{
    static char id[64];
    struct hp_resource *r;
    for (r = req->resources; ok && r; r = r->next)
        if (r->commit && r->commit(r->arg) != HP_OK)
            ok = false;
    committed = ok;
    if (!ok)
        for (r = req->resources; r; r = r->next)
            if (r->rollback)
                r->rollback(r->arg);
    hp_req_release_resources(req);
    char *found = NULL;
    for (size_t i = 0; i < req->headers.n; i++) {
        const char *v = req->headers.v[i].value;
        if (strcmp(req->headers.v[i].name, "Set-Cookie") == 0 &&
            strncmp(v, "hotpub_session=", 15) == 0) {
            snprintf(id, sizeof id, "%.*s", (int)strcspn(v + 15, ";"), v + 15);
            found = id;
        }
    }
    hp_req_cleanup(req);
    return found;
}

static void lifecycle(void)
{
    hp_req req;
    char cid[64], *c;

    /* a set creates the session; its cookie comes at commit */
    fake_request(&req, "GET", NULL);
    CHECK(hp_session_get(&req, "a") == NULL);
    CHECK(hp_session_set(&req, "a", "1") == HP_OK);
    CHECK_STR(hp_session_get(&req, "a"), "1");
    c = finish(&req, true);
    CHECK(c && hp_session__id_ok(c));
    snprintf(cid, sizeof cid, "%s", c ? c : "");

    /* read back; a read sends no cookie */
    fake_request(&req, "GET", cid);
    CHECK_STR(hp_session_get(&req, "a"), "1");
    CHECK(finish(&req, true) == NULL);

    /* a change that rolls back leaves the session as it was */
    fake_request(&req, "POST", cid);
    CHECK(hp_session_set(&req, "a", "2") == HP_OK);
    CHECK(finish(&req, false) == NULL);
    fake_request(&req, "GET", cid);
    CHECK_STR(hp_session_get(&req, "a"), "1");
    CHECK(finish(&req, true) == NULL);

    /* a new session that rolls back never existed */
    fake_request(&req, "GET", NULL);
    CHECK(hp_csrf_token(&req) != NULL);
    CHECK(finish(&req, false) == NULL);

    /* del, then destroy clears the cookie and kills the id */
    fake_request(&req, "POST", cid);
    CHECK(hp_session_set(&req, "b", "x") == HP_OK);
    CHECK(hp_session_del(&req, "a") == HP_OK);
    CHECK(hp_session_get(&req, "a") == NULL);
    CHECK_STR(hp_session_get(&req, "b"), "x");
    finish(&req, true);
    fake_request(&req, "POST", cid);
    CHECK_STR(hp_session_get(&req, "b"), "x");
    hp_session_destroy(&req);
    CHECK(hp_session_get(&req, "b") == NULL);
    c = finish(&req, true);
    CHECK(c && *c == '\0');
    fake_request(&req, "GET", cid);
    CHECK(hp_session_get(&req, "b") == NULL);
    CHECK(hp_session__csrf(&req, false, NULL) == NULL);
    finish(&req, true);
}

static void pool_exec(const char *sql)
{
    char *err = NULL;
    hp_db *db = hp_db_pool_acquire(hp_db_default_pool(), &err);
    CHECK(db != NULL);
    CHECK(hp_db_exec(db, sql) == HP_OK);
    hp_db_pool_release(db);
    free(err);
}

/* A GET that only renews the expiry, whose read transaction another
 * connection overtook (SQLite cannot upgrade it to write: BUSY_SNAPSHOT),
 * still succeeds: the renewal is optional and undone by its savepoint. */
static void touch_conflict_is_harmless(void)
{
    hp_req req;
    char cid[64], *c;

    fake_request(&req, "GET", NULL);
    CHECK(hp_session_set(&req, "a", "1") == HP_OK);
    c = finish(&req, true);
    snprintf(cid, sizeof cid, "%s", c ? c : "");
    pool_exec("UPDATE hotpub_sessions SET expires = expires - 100000");

    fake_request(&req, "GET", cid);
    CHECK_STR(hp_session_get(&req, "a"), "1"); /* the read tx begins */
    pool_exec("UPDATE hotpub_sessions SET created = created + 1");
    c = finish(&req, true);
    CHECK(committed);
    CHECK(c == NULL); /* not renewed this time */

    fake_request(&req, "GET", cid); /* the next one renews */
    CHECK_STR(hp_session_get(&req, "a"), "1");
    c = finish(&req, true);
    CHECK(committed && c && strcmp(c, cid) == 0);
}

static long long pool_int(const char *sql)
{
    char *err = NULL;
    long long v = -1;
    hp_db *db = hp_db_pool_acquire(hp_db_default_pool(), &err);
    hp_db_res *r = db ? hp_db_query(db, sql) : NULL;
    if (r && hp_db_next(r))
        v = hp_db_int(r, 0);
    hp_db_pool_release(db);
    free(err);
    return v;
}

/* What a fresh process does: hp_session_server_start, with a database
 * named (--db) or the default one (whose file is made on first use). */
static void restart_sessions(bool named_db)
{
    struct hp_config c;
    hp_config_defaults(&c);
    c.session_purge_interval = 0;
    if (named_db)
        c.db = hp_xasprintf("sqlite:%s/s.db", tmpdir);
    hp_session_server_stop();
    hp_session_server_start(&c);
    hp_config_free(&c);
}

static long long table_count(void)
{
    return pool_int("SELECT count(*) FROM sqlite_master WHERE name = "
                    "'hotpub_sessions'");
}

/* A GET that reads, then stores the first session of a fresh database:
 * with a database named, the table is made at start, before any request. */
static void table_exists_before_any_request(void)
{
    pool_exec("DROP TABLE hotpub_sessions");
    restart_sessions(true);
    CHECK(table_count() == 1);

    hp_req req;
    fake_request(&req, "GET", NULL);
    req.started = hp_now();
    hp_db_res *r =
        hp_db_query(hp_db(&req), "SELECT count(*) FROM sqlite_master");
    CHECK(r && hp_db_next(r));
    CHECK(hp_session_set(&req, "k", "v") == HP_OK);
    char *c = finish(&req, true);
    CHECK(committed && c && hp_session__id_ok(c));
}

/* The default database: the table is made at first use. A request whose
 * read transaction began before another request made it still stores its
 * session (it failed "no such table: hotpub_sessions": the read snapshot
 * had no table, and the INSERT was prepared in it), and so does one that
 * brings a cookie and reads its session. */
static void table_made_lazily_is_seen_by_earlier_reads(void)
{
    pool_exec("DROP TABLE hotpub_sessions");
    restart_sessions(false);
    CHECK(table_count() == 0);

    hp_req r1, r2, r3;
    fake_request(&r1, "GET", NULL);
    fake_request(&r3, "GET", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    r1.started = r3.started = hp_now();
    hp_db_res *r =
        hp_db_query(hp_db(&r1), "SELECT count(*) FROM sqlite_master");
    CHECK(r && hp_db_next(r)); /* r1's snapshot: no table */
    r = hp_db_query(hp_db(&r3), "SELECT count(*) FROM sqlite_master");
    CHECK(r && hp_db_next(r)); /* r3's too */

    fake_request(&r2, "GET", NULL);
    r2.started = hp_now();
    CHECK(hp_session_set(&r2, "k", "2") == HP_OK); /* makes the table */
    char *c = finish(&r2, true);
    CHECK(committed && c);
    CHECK(table_count() == 1);

    CHECK(hp_session_get(&r3, "k") == NULL); /* an unknown id: no session */
    CHECK(hp_session_set(&r3, "k", "3") == HP_OK);
    c = finish(&r3, true);
    CHECK(committed && c && hp_session__id_ok(c));

    CHECK(hp_session_set(&r1, "k", "1") == HP_OK);
    c = finish(&r1, true);
    CHECK(committed && c && hp_session__id_ok(c));
    restart_sessions(true);
}

/* A session holding nothing but its CSRF token lives 24 minutes; the first
 * value gives it the full lifetime. */
static void anonymous_lifetime(void)
{
    hp_req req;
    char cid[64], *c;
    pool_exec("DELETE FROM hotpub_sessions");

    fake_request(&req, "GET", NULL);
    CHECK(!hp_session_exists(&req));
    CHECK(hp_csrf_token(&req) != NULL);
    CHECK(hp_session_exists(&req)); /* made in this request */
    c = finish(&req, true);
    CHECK(c && hp_session__id_ok(c));
    snprintf(cid, sizeof cid, "%s", c ? c : "");
    fake_request(&req, "POST", cid); /* holds no data, yet exists */
    CHECK(hp_session_exists(&req) && hp_session_get(&req, "x") == NULL);
    finish(&req, true);
    fake_request(&req, "POST", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    CHECK(!hp_session_exists(&req)); /* an unknown id is no session */
    finish(&req, true);
    long long now = (long long)time(NULL);
    long long left = pool_int("SELECT max(expires) FROM hotpub_sessions") - now;
    CHECK(left > 1440 - 5 && left <= 1440);

    fake_request(&req, "GET", cid);
    CHECK(hp_session_set(&req, "user", "u") == HP_OK);
    finish(&req, true);
    left = pool_int("SELECT max(expires) FROM hotpub_sessions") - now;
    CHECK(left > 1209600 - 5 && left <= 1209600 + 5);
}

static int rm_tree(void)
{
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd);
}

int main(int argc, char **argv)
{
    T_INIT(argc, argv);
    T_RUN(id_shape);
    T_RUN(id_hash_is_sha256);
    T_RUN(encode_decode);
    T_RUN(tokens_and_methods);
    T_RUN(expiry_policy);
    T_RUN(passwords);

    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    struct hp_config cfg;
    hp_config_defaults(&cfg);
    cfg.db = hp_xasprintf("sqlite:%s/s.db", tmpdir);
    cfg.session_purge_interval = 0;
    if (hp_db_server_open(&cfg, tmpdir) == 0) {
        hp_session_server_start(&cfg);
        T_RUN(lifecycle);
        T_RUN(touch_conflict_is_harmless);
        T_RUN(table_exists_before_any_request);
        T_RUN(table_made_lazily_is_seen_by_earlier_reads);
        T_RUN(anonymous_lifetime);
        hp_session_server_stop();
        hp_db_server_close();
    } else {
        CHECK(!"the SQLite default pool opens");
    }
    hp_config_free(&cfg);
    rm_tree();
    T_DONE();
}
