#!/usr/bin/env python3
"""hotpub sessions, CSRF and passwords end-to-end (docs/pages.md#sessions).

    HOTPUB_BIN=/abs/path/hotpub [HOTPUB_PG_URL=postgresql://...] \\
        python3 tests/e2e/sessions.py [NAME-SUBSTRING...]
    python3 tests/e2e/sessions.py --list

As tests/e2e/db.py: every test runs on SQLite and, when HOTPUB_PG_URL names
a PostgreSQL server, again on it (a schema of its own per test); without it
the [pg] runs print "skip".
"""

import hashlib
import os
import re
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import (Server, check, check_eq, check_in,  # noqa: E402
                     check_not_in, fail, page, short)
import db  # noqa: E402  (its Engine, ADMIN page and PostgreSQL set-up)

TEST_TIMEOUT = 90.0
SUITE_BUDGET = 400.0
COOKIE = "hotpub_session"

SESS = page(r'''
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static const char *arg(hp_req *req, const char *n)
{
    const char *v = hp_arg(req, n);
    return v ? v : "";
}

HP_HANDLER(get)
{
    const char *v = hp_session_get(req, arg(req, "k"));
    hp_printf(req, "%s", v ? v : "(none)");
    return HP_OK;
}

HP_HANDLER(set)
{
    if (hp_session_set(req, arg(req, "k"), arg(req, "v")) != HP_OK)
        return 500;
    hp_puts(req, "ok");
    return HP_OK;
}

HP_HANDLER(del)
{
    return hp_session_del(req, arg(req, "k")) == HP_OK ? HP_OK : 500;
}

HP_HANDLER(destroy)
{
    hp_session_destroy(req);
    const char *v = hp_session_get(req, "a");
    hp_printf(req, "after:%s", v ? v : "(none)");
    return HP_OK;
}

HP_HANDLER(regen)
{
    return hp_session_regenerate(req) == HP_OK ? HP_OK : 500;
}

HP_HANDLER(setfail)  /* sets, then fails: nothing may stick */
{
    hp_session_set(req, arg(req, "k"), arg(req, "v"));
    return 409;
}

HP_HANDLER(pid)
{
    const char *v = hp_session_get(req, arg(req, "k"));
    hp_printf(req, "%ld %s", (long)getpid(), v ? v : "(none)");
    return HP_OK;
}

/* The fresh-user report: a page that lists rows, then shows a form. */
HP_HANDLER(listform)
{
    hp_db_res *r =
        hp_db_query(hp_db(req), "SELECT count(*) FROM hotpub_sessions");
    if (!r || !hp_db_next(r))
        return 500;
    const char *t = hp_csrf_token(req); /* a new session: INSERT at commit */
    hp_puts(req, t ? "form" : "(null)");
    return HP_OK;
}

/* The fresh-deployment report: read first (the request's read transaction
 * takes its snapshot), then store something in the session. */
HP_HANDLER(readset)
{
    hp_db *db = hp_db(req);
    hp_db_res *r = hp_db_query(db, hp_db_engine(db) == HP_DB_SQLITE
                                       ? "SELECT count(*) FROM sqlite_master"
                                       : "SELECT count(*) FROM pg_class");
    if (!r || !hp_db_next(r))
        return 500;
    if (hp_session_set(req, "k", "v") != HP_OK)
        return 500;
    hp_puts(req, "ok");
    return HP_OK;
}

/* PHP's $_SESSION['n']++: read, wait a little (so that requests overlap),
 * write. Without a lock per session, concurrent increments are lost. */
HP_HANDLER(incr)
{
    const char *v = hp_session_get(req, "n");
    long n = v ? atol(v) : 0;
    usleep(1000);
    char buf[32];
    snprintf(buf, sizeof buf, "%ld", n + 1);
    if (hp_session_set(req, "n", buf) != HP_OK)
        return 500;
    hp_puts(req, buf);
    return HP_OK;
}

/* Touches the session, then keeps it for ms milliseconds. */
HP_HANDLER(hold)
{
    const char *v = hp_session_get(req, "n");
    usleep((useconds_t)atoi(arg(req, "ms")) * 1000);
    hp_printf(req, "held %s", v ? v : "(none)");
    return HP_OK;
}

/* Reads without the lock (PHP's read_and_close); a change is refused. */
HP_HANDLER(peek)
{
    if (hp_session_read_only(req) != HP_OK)
        return 500;
    const char *v = hp_session_get(req, "n");
    int set = hp_session_set(req, "n", "999");
    hp_printf(req, "%s %d %d", v ? v : "(none)", set,
              hp_session_read_only(req));
    return HP_OK;
}

/* Never touches the session (it has a cookie all the same). */
HP_HANDLER(plain)
{
    hp_puts(req, "plain");
    return HP_OK;
}

HP_HANDLER(token)
{
    const char *t = hp_csrf_token(req);
    hp_puts(req, t ? t : "(null)");
    return HP_OK;
}

HP_HANDLER(post)
{
    hp_printf(req, "posted %s", hp_method(req));
    return HP_OK;
}

HP_HANDLER(api)
{
    hp_puts(req, "api ok");
    return HP_OK;
}
HP_CSRF_EXEMPT_HANDLER(api);

HP_HANDLER(hash)
{
    const char *h = hp_password_hash(req, arg(req, "p"));
    hp_puts(req, h ? h : "(null)");
    return HP_OK;
}

HP_HANDLER(verify)
{
    const char *h = hp_arg(req, "h");
    hp_puts(req, hp_password_verify(h, arg(req, "p")) ? "yes" : "no");
    return HP_OK;
}
''')

# A directory opted out as a whole, through its application module.
API_APP = page("HP_CSRF_EXEMPT;\n")
API_PAGE = page(r'''
HP_HANDLER(http_handler)
{
    hp_puts(req, "dir api ok");
    return HP_OK;
}
''')
# A page opted out as a whole.
HOOK_PAGE = page(r'''
HP_CSRF_EXEMPT;

HP_HANDLER(http_handler)
{
    hp_puts(req, "hook ok");
    return HP_OK;
}
''')

# An exemption covers code at or below where it is declared (FRESH16-4):
# w/_app.c's handlers, acquired under w/hook.c (a page declaring
# HP_CSRF_EXEMPT) or under w/api/ (an _app.c declaring it), stay checked
# unless w/_app.c exempts them itself; w/api/_app.c's own handler is
# exempt.
W_APP = page(r'''
HP_HANDLER(setuser)
{
    hp_session_set(req, "user", hp_arg(req, "u"));
    hp_puts(req, "setuser ok");
    return HP_OK;
}

HP_HANDLER(open)
{
    hp_puts(req, "open ok");
    return HP_OK;
}
HP_CSRF_EXEMPT_HANDLER(open);
''')
W_API_APP = page(r'''
HP_CSRF_EXEMPT;

HP_HANDLER(own)
{
    hp_puts(req, "own ok");
    return HP_OK;
}
''')

FILES = {"s.c": SESS, "api/_app.c": API_APP, "api/x.c": API_PAGE,
         "hook.c": HOOK_PAGE, "w/_app.c": W_APP, "w/hook.c": HOOK_PAGE,
         "w/api/_app.c": W_API_APP, "w/api/x.c": API_PAGE}


def server(eng, args=None, workers=0, tmp=None):
    files = dict(FILES)
    files.setdefault("admin.c", db.ADMIN)
    s = Server(files=files, start=False, workers=workers, tmp=tmp)
    s.args += ["--db", eng.url(s)] + list(args or [])
    s.start()
    if eng.pg:
        db.script(s, "CREATE SCHEMA IF NOT EXISTS %s" % eng.schema)
    return s


def q(**kw):
    return "?" + urllib.parse.urlencode(kw)


def session_cookie(r, name=COOKIE):
    """The Set-Cookie field for the session cookie (or None)."""
    mine = [v for v in r.all("Set-Cookie") if v.startswith(name + "=")]
    if len(mine) > 1:
        fail("more than one session Set-Cookie: %r" % mine)
    return mine[0] if mine else None


def cookie_id(r, name=COOKIE):
    c = session_cookie(r, name)
    if not c:
        fail("no session cookie in %r (status %s, body %s)"
             % (r.raw_headers, r.status, short(r.body)))
    return c.split(";", 1)[0].split("=", 1)[1]


def hdr(cid, name=COOKIE, **extra):
    h = {"Cookie": "%s=%s" % (name, cid)}
    h.update(extra)
    return h


def new_session(s, k="a", v="1"):
    r = s.get("/s/set" + q(k=k, v=v))
    check_eq(r.status, 200, "set: %s" % short(r.body))
    return cookie_id(r)


def get(s, cid, k="a"):
    r = s.get("/s/get" + q(k=k), headers=hdr(cid))
    check_eq(r.status, 200, "get %s" % short(r.body))
    return r.text


# ---- sessions ---------------------------------------------------------------

def test_session_set_then_read_two_workers(eng):
    """Set on one request, read on the next, with two worker processes:
    every request, whichever process answers, sees the value."""
    s = server(eng, workers=2)
    try:
        cid = new_session(s, "user", "alice w/ space & =")
        check(re.fullmatch(r"[A-Za-z0-9_-]{43}", cid), "id shape %r" % cid)
        pids = set()
        for i in range(40):
            r = s.get("/s/pid" + q(k="user"), headers=hdr(cid))
            pid, _, v = r.text.partition(" ")
            check_eq(v, "alice w/ space & =", "request %d (pid %s)" % (i, pid))
            pids.add(pid)
        check(len(pids) == 2, "both workers answered: %r" % pids)
        # a second value, the first kept; a change; a delete
        s.get("/s/set" + q(k="n", v="ünï\"cödé"), headers=hdr(cid))
        check_eq(get(s, cid, "n"), "ünï\"cödé", "UTF-8 value")
        check_eq(get(s, cid, "user"), "alice w/ space & =", "first value")
        s.get("/s/set" + q(k="n", v="2"), headers=hdr(cid))
        check_eq(get(s, cid, "n"), "2", "replaced value")
        check_eq(s.get("/s/del" + q(k="n"), headers=hdr(cid)).status, 200,
                 "del")
        check_eq(get(s, cid, "n"), "(none)", "deleted value")
        check_eq(get(s, cid, "user"), "alice w/ space & =", "other value kept")
        db.cleanup(s, eng)
    finally:
        s.stop()


def test_read_then_new_session_under_concurrency(eng):
    """40 first visits at once to a GET that reads the database, then asks
    for a CSRF token (so its session is inserted in the commit phase): all
    200 (on SQLite about half were 500, "database is locked")."""
    with server(eng) as s:
        s.get_ok("/s/token")  # the sessions table exists
        reqs = [harness.BackgroundRequest(s.port, "/s/listform", timeout=30)
                for _ in range(40)]
        for r in reqs:
            r.start()
        res = [r.join_result(40) for r in reqs]
        bad = [(r.status, r.text[:60]) for r in res if r.status != 200]
        check(not bad, "not 200: %s" % bad[:5])
        check(all(r.text == "form" and session_cookie(r) for r in res),
              "every visit got a form and a session cookie")


def fresh_server(eng, workers=0, args=None):
    """A server whose first start finds a database hotpub has never seen
    (PostgreSQL: the test's schema made first, through a server that is
    stopped again, so that the one returned starts on an empty schema)."""
    if not eng.pg:
        return server(eng, workers=workers, args=args)
    s = server(eng)
    s.stop()
    return server(eng, workers=workers, args=args, tmp=s.tmp)


def test_first_session_on_a_fresh_database(eng):
    """The first visitor of a new deployment: a GET that reads, then stores
    in the session, answered 200, not 500 ("no such table: hotpub_sessions":
    the table was created on another connection after the request's read
    transaction began)."""
    with fresh_server(eng) as s:
        for i in range(3):
            r = s.get("/s/readset")
            check_eq((r.status, r.text), (200, "ok"),
                     "visit %d: %s" % (i + 1, short(r.body)))
            cookie_id(r)
        check_eq(db.value(s, "SELECT count(*) FROM hotpub_sessions").strip(),
                 "3", "rows")
        db.cleanup(s, eng)


def test_first_sessions_on_a_fresh_database_many_workers(eng):
    """Four worker processes start together on a fresh database (racing to
    create the table): the table is there before any request; then 16
    first visits at once: all 200."""
    s = fresh_server(eng, workers=4)
    try:
        check_eq(db.value(s, "SELECT count(*) FROM hotpub_sessions").strip(),
                 "0", "the table exists, empty, before any session")
        reqs = [harness.BackgroundRequest(s.port, "/s/readset", timeout=30)
                for _ in range(16)]
        for r in reqs:
            r.start()
        res = [r.join_result(40) for r in reqs]
        bad = [(r.status, r.text[:80]) for r in res if r.status != 200]
        check(not bad, "not 200: %s" % bad[:5])
        check_eq(db.value(s, "SELECT count(*) FROM hotpub_sessions").strip(),
                 "16", "rows")
        check_not_in("creating the table", s.stderr(), "log")
        db.cleanup(s, eng)
    finally:
        s.stop()


def test_first_sessions_on_the_default_database(eng):
    """No --db: the default SQLite database, made on first use (so the
    table cannot be made at start). Two worker processes, 12 first visits
    at once that read, then store a session: all 200, and the table is
    there before any of them began its transaction."""
    if eng.pg:
        raise harness.Skip("the default database is SQLite")
    s = Server(files=dict(FILES, **{"admin.c": db.ADMIN}), start=False,
               workers=2)
    data = os.path.join(s.tmp, "data")
    s.extra_env = {"XDG_DATA_HOME": data, "HOME": s.tmp}
    with s:
        s.start()
        check(not os.path.exists(os.path.join(data, "hotpub")),
              "the default database is made on first use only")
        # a first request with a cookie: its session's lock file goes
        # beside the database, whose directory did not exist yet
        check_eq(get(s, "Q" * 43), "(none)", "an unknown id")
        locks = [f for f in os.listdir(os.path.join(data, "hotpub"))
                 if f.endswith(".db-session-locks")]
        check(len(locks) == 1, "the lock file: %r" % locks)
        check_not_in("the lock file", s.stderr(), "log")
        reqs = [harness.BackgroundRequest(s.port, "/s/readset", timeout=30)
                for _ in range(12)]
        for r in reqs:
            r.start()
        res = [r.join_result(40) for r in reqs]
        bad = [(r.status, r.text[:80]) for r in res if r.status != 200]
        check(not bad, "not 200: %s" % bad[:5])
        for i in range(3):
            check_eq(s.get("/s/readset").status, 200, "visit %d" % i)
        check_eq(db.value(s, "SELECT count(*) FROM hotpub_sessions").strip(),
                 "15", "rows")
        check_not_in("no such table", s.stderr(), "log")


def row_ttls(s, eng):
    """Seconds each session row has left, as the database sees now."""
    now = ("CAST(strftime('%s', 'now') AS INTEGER)" if not eng.pg
           else "CAST(extract(epoch FROM now()) AS BIGINT)")
    return [int(v) for v in db.value(
        s, "SELECT expires - %s FROM hotpub_sessions" % now).split()]


def max_age(r):
    c = session_cookie(r)
    m = re.search(r"Max-Age=(\d+)", c or "")
    check(m, "a session cookie with Max-Age: %r" % c)
    return int(m.group(1))


def test_anonymous_sessions_are_short_lived(eng):
    """A session that holds nothing but its CSRF token (a crawler's visits
    to a page with a form) lives --session-anonymous-lifetime (24 minutes),
    not two weeks; the first value stored gives it the full lifetime, and
    emptying it takes that back."""
    s = server(eng)
    try:
        reqs = [harness.BackgroundRequest(s.port, "/s/token", timeout=30)
                for _ in range(40)]
        for r in reqs:
            r.start()
        res = [r.join_result(40) for r in reqs]
        check(all(r.status == 200 for r in res), "all 200")
        check_eq(sorted(set(max_age(r) for r in res)), [1440], "Max-Age")
        ttls = row_ttls(s, eng)
        check_eq(len(ttls), 40, "one row per visitor")
        check(all(1440 - 10 <= t <= 1440 for t in ttls),
              "every row expires within 24 minutes: %r" % sorted(set(ttls)))
        # the visitor logs in (a value): the full lifetime, same token
        cid, tok = cookie_id(res[0]), res[0].text
        r = s.get("/s/set" + q(k="user", v="u"), headers=hdr(cid))
        check_eq(max_age(r), 1209600, "Max-Age once the session holds data")
        check_eq(s.get("/s/token", headers=hdr(cid)).text, tok, "same token")
        long_lived = [t for t in row_ttls(s, eng) if t > 1440]
        check_eq(len(long_lived), 1, "long-lived rows")
        check(long_lived[0] >= 1209600 - 10, "full lifetime %r" % long_lived)
        # the value goes: back to the short lifetime
        r = s.get("/s/del" + q(k="user"), headers=hdr(cid))
        check_eq(max_age(r), 1440, "Max-Age of an emptied session")
        check(all(t <= 1440 for t in row_ttls(s, eng)), "no long-lived row left")
        db.cleanup(s, eng)
    finally:
        s.stop()


def test_anonymous_lifetime_setting(eng):
    """--session-anonymous-lifetime sets it; a row written before with the
    full lifetime is cut down when next read."""
    if eng.pg:
        raise harness.Skip("engine-independent")
    s = server(eng, args=["--session-anonymous-lifetime", "600"])
    try:
        r = s.get("/s/token")
        check_eq(max_age(r), 600, "Max-Age")
        cid = cookie_id(r)
        db.script(s, "UPDATE hotpub_sessions SET expires = expires + 1000000")
        r = s.get("/s/token", headers=hdr(cid))
        check_eq(max_age(r), 600, "renewed to the anonymous lifetime")
        check(all(t <= 600 for t in row_ttls(s, eng)), "cut down")
    finally:
        s.stop()


def test_session_survives_restart(eng):
    s = server(eng)
    try:
        cid = new_session(s, "a", "kept")
    finally:
        s.stop()
    s2 = server(eng, tmp=s.tmp)
    try:
        check_eq(get(s2, cid), "kept", "after a restart")
        db.cleanup(s2, eng)
    finally:
        s2.stop()


def test_session_regenerate(eng):
    """A new id with the same data; the old id is dead."""
    s = server(eng)
    try:
        old = new_session(s, "a", "data")
        t_old = s.get("/s/token", headers=hdr(old)).text
        r = s.get("/s/regen", headers=hdr(old))
        check_eq(r.status, 200, "regen")
        new = cookie_id(r)
        check(new != old, "a new id")
        check_eq(get(s, new), "data", "data under the new id")
        check_eq(get(s, old), "(none)", "the old id")
        t_new = s.get("/s/token", headers=hdr(new)).text
        check(t_new != t_old and len(t_new) == 43, "a new CSRF token")
        db.cleanup(s, eng)
    finally:
        s.stop()


def test_session_destroy(eng):
    s = server(eng)
    try:
        cid = new_session(s, "a", "bye")
        r = s.get("/s/destroy", headers=hdr(cid))
        check_eq(r.text, "after:(none)", "in the destroying request")
        c = session_cookie(r)
        check(c and c.startswith(COOKIE + "=;") and "Max-Age=0" in c,
              "the cookie is cleared: %r" % c)
        check_eq(get(s, cid), "(none)", "after destroy")
        db.cleanup(s, eng)
    finally:
        s.stop()


def test_session_tampered_cookie(eng):
    """A forged, tampered or malformed cookie is no session, silently."""
    s = server(eng)
    try:
        cid = new_session(s, "a", "secret")
        flip = "A" if cid[5] != "A" else "B"
        for bad in (cid[:5] + flip + cid[6:], cid[:-1], cid + "A",
                    "x" * 43, cid.replace(cid[0], "!", 1), "",
                    "%s" % cid.upper() if cid.upper() != cid else "Z" * 43):
            r = s.get("/s/get" + q(k="a"), headers=hdr(bad))
            check_eq((r.status, r.text), (200, "(none)"), "cookie %r" % bad)
            check_eq(session_cookie(r), None, "a read sets no cookie")
        check_eq(get(s, cid), "secret", "the real one still works")
        # The table keeps the SHA-256 of the id, never the id.
        rows = db.value(s, "SELECT id FROM hotpub_sessions").split()
        check_eq(rows, [hashlib.sha256(cid.encode()).hexdigest()],
                 "stored ids")
        db.cleanup(s, eng)
    finally:
        s.stop()


def test_session_cookie_flags(eng):
    s = server(eng)
    try:
        r = s.get("/s/set" + q(k="a", v="1"))
        c = session_cookie(r)
        attrs = [a.strip() for a in c.split(";")[1:]]
        check_eq(sorted(attrs), sorted(["Path=/", "Max-Age=1209600",
                                        "HttpOnly", "SameSite=Lax"]),
                 "attributes over plain HTTP")
        check_eq(r.header("Cache-Control"), "private", "Cache-Control")
        db.cleanup(s, eng)
    finally:
        s.stop()
    s = server(eng, args=["--session-secure-cookie", "--session-cookie",
                          "sid", "--session-lifetime", "3600"])
    try:
        r = s.get("/s/set" + q(k="a", v="1"))
        c = session_cookie(r, "sid")
        check(c is not None, "cookie named sid: %r" % r.all("Set-Cookie"))
        attrs = [a.strip() for a in c.split(";")[1:]]
        check_eq(sorted(attrs), sorted(["Path=/", "Max-Age=3600", "HttpOnly",
                                        "SameSite=Lax", "Secure"]),
                 "attributes with --session-secure-cookie")
        cid = cookie_id(r, "sid")
        r = s.get("/s/get" + q(k="a"), headers=hdr(cid, "sid"))
        check_eq(r.text, "1", "read back under the configured name")
        db.cleanup(s, eng)
    finally:
        s.stop()


def test_session_follows_rollback(eng):
    """A handler that fails leaves neither a new session nor a change."""
    s = server(eng)
    try:
        r = s.get("/s/setfail" + q(k="a", v="x"))
        check_eq(r.status, 409, "status")
        check_eq(session_cookie(r), None, "no cookie for a failed request")
        cid = new_session(s, "a", "before")
        r = s.get("/s/setfail" + q(k="a", v="after"), headers=hdr(cid))
        check_eq(r.status, 409, "status")
        check_eq(get(s, cid), "before", "the change was rolled back")
        check_eq(db.value(s, "SELECT count(*) FROM hotpub_sessions").strip(),
                 "1", "rows")
        db.cleanup(s, eng)
    finally:
        s.stop()


def test_session_sliding_expiry(eng):
    """Use renews the expiry (and the cookie), at most every 1% of the
    lifetime: a read right after a renewal writes nothing."""
    s = server(eng)
    try:
        cid = new_session(s, "a", "v")
        r = s.get("/s/get" + q(k="a"), headers=hdr(cid))
        check_eq(session_cookie(r), None, "a fresh session is not renewed")
        db.script(s, "UPDATE hotpub_sessions SET expires = expires - 100000")
        before = int(db.value(s, "SELECT expires FROM hotpub_sessions"))
        r = s.get("/s/get" + q(k="a"), headers=hdr(cid))
        check_eq(r.text, "v", "still there")
        c = session_cookie(r)
        check(c and c.startswith("%s=%s;" % (COOKIE, cid))
              and "Max-Age=1209600" in c, "the cookie renewed: %r" % c)
        after = int(db.value(s, "SELECT expires FROM hotpub_sessions"))
        check(after >= before + 100000 - 5, "expiry %d -> %d" % (before, after))
        r = s.get("/s/get" + q(k="a"), headers=hdr(cid))
        check_eq(session_cookie(r), None, "no second renewal")
        db.cleanup(s, eng)
    finally:
        s.stop()


def test_session_purge(eng):
    """Expired rows are read as no session and deleted by the purge."""
    s = server(eng, args=["--session-purge-interval", "1"])
    try:
        cid = new_session(s, "a", "old")
        db.script(s, "UPDATE hotpub_sessions SET expires = 1")
        check_eq(get(s, cid), "(none)", "an expired session")
        harness.wait_until(
            lambda: db.value(s, "SELECT count(*) FROM hotpub_sessions")
            .strip() == "0", 5 * harness.SLACK)
        check_eq(db.value(s, "SELECT count(*) FROM hotpub_sessions").strip(),
                 "0", "rows after the purge")
        db.cleanup(s, eng)
    finally:
        s.stop()


def test_session_no_database(eng):
    """--db off: the functions fail, the log says why."""
    if eng.pg:
        raise harness.Skip("engine-independent")
    with Server(files=FILES, args=["--db", "off"]) as s:
        check_eq(s.get("/s/set" + q(k="a", v="1")).status, 500, "set")
        check_eq(s.get("/s/token").text, "(null)", "token")
        check_eq(s.get("/s/get" + q(k="a")).text, "(none)", "get")
        check_eq(s.post("/s/post", "x=1").status, 200, "POST without sessions")
        check_in("no database is configured", s.stderr(), "log")


# ---- CSRF ---------------------------------------------------------------------

def test_csrf(eng):
    s = server(eng)
    try:
        form = "application/x-www-form-urlencoded"
        # no session: nothing to protect
        check_eq(s.post("/s/post", "x=1").status, 200, "POST without session")
        r = s.get("/s/token")
        cid, tok = cookie_id(r), r.text
        check(re.fullmatch(r"[A-Za-z0-9_-]{43}", tok), "token %r" % tok)
        check_eq(s.get("/s/token", headers=hdr(cid)).text, tok, "stable")
        h = hdr(cid)
        r = s.post("/s/post", "x=1", headers=h)
        check_eq(r.status, 403, "POST with session, no token")
        check_in("CSRF", r.text, "403 body")
        check_eq(s.post("/s/post", "x=1", headers=hdr(
            cid, **{"X-CSRF-Token": tok})).text, "posted POST", "header")
        check_eq(s.post("/s/post", "x=1&csrf_token=" + tok, form,
                        headers=h).text, "posted POST", "form field")
        mp = ("--b\r\nContent-Disposition: form-data; name=\"csrf_token\""
              "\r\n\r\n%s\r\n--b--\r\n" % tok)
        check_eq(s.post("/s/post", mp, "multipart/form-data; boundary=b",
                        headers=h).status, 200, "multipart form field")
        wrong = tok[:-1] + ("A" if tok[-1] != "A" else "B")
        check_eq(s.post("/s/post", "csrf_token=" + wrong, headers=h).status,
                 403, "a wrong token")
        check_eq(s.post("/s/post" + q(csrf_token=tok), "x=1",
                        headers=h).status, 403, "a token in the query")
        for m in ("PUT", "PATCH", "DELETE"):
            check_eq(s.request("/s/post", m, headers=h).status, 403, m)
            r = s.request("/s/post", m, headers=hdr(
                cid, **{"X-CSRF-Token": tok}))
            check_eq(r.text, "posted " + m, m + " with the token")
        check_eq(s.get("/s/post", headers=h).status, 200, "GET")
        # opted out: a handler, a directory (_app.c), a page
        check_eq(s.post("/s/api", "x=1", headers=h).text, "api ok",
                 "HP_CSRF_EXEMPT_HANDLER")
        check_eq(s.post("/api/x", "x=1", headers=h).text, "dir api ok",
                 "HP_CSRF_EXEMPT in _app.c")
        check_eq(s.post("/hook", "x=1", headers=h).text, "hook ok",
                 "HP_CSRF_EXEMPT in the page")
        # a forged cookie is no session, so no check either
        check_eq(s.post("/s/post", "x=1", headers=hdr("Z" * 43)).status, 200,
                 "forged cookie")
        db.cleanup(s, eng)
    finally:
        s.stop()


def test_csrf_exemption_covers_only_code_below_it(eng):
    """FRESH16-4: HP_CSRF_EXEMPT in a page (a webhook) also exempted every
    handler the page acquires from an _app.c above it, so /w/hook/setuser
    changed a logged-in user's session from another site with no token;
    so did HP_CSRF_EXEMPT in an _app.c for the handlers acquired from an
    _app.c above it. Now an exemption covers code at or below where it is
    declared."""
    if eng.pg:
        raise harness.Skip("engine-independent")
    s = server(eng)
    try:
        r = s.get("/s/token")
        cid, tok = cookie_id(r), r.text
        cross = {"Sec-Fetch-Site": "cross-site",
                 "Origin": "https://evil.example"}
        refused = []
        for path in ("/w/hook/setuser", "/w/api/x/setuser"):
            r = s.post(path, "u=eve", headers=hdr(cid, **cross))
            if r.status != 403:
                refused.append("%s with a session, no token: %s %s"
                               % (path, r.status, short(r.text)))
            r = s.post(path, "u=eve", headers=cross)
            if r.status != 403:
                refused.append("%s cross-site without a session: %s %s"
                               % (path, r.status, short(r.text)))
        check_eq(refused, [], "acquired handlers not declared exempt")
        # still exempt: the page's own handler, the exempt directory's
        # pages and its _app.c's own handler, a handler its file exempts
        for path, want in (("/w/hook", "hook ok"), ("/w/api/x", "dir api ok"),
                           ("/w/api/x/own", "own ok"),
                           ("/w/hook/open", "open ok"),
                           ("/w/api/x/open", "open ok")):
            r = s.post(path, "x=1", headers=hdr(cid, **cross))
            check_eq((r.status, r.text.strip()), (200, want), path)
        # and the checked handler works with the token
        r = s.post("/w/hook/setuser", "u=erin",
                   headers=hdr(cid, **{"X-CSRF-Token": tok}))
        check_eq((r.status, r.text.strip()), (200, "setuser ok"),
                 "with the token")
        # the field's value excludes the whitespace after it (RFC 9110
        # 5.5; FRESH16-6c: a token sent so was refused)
        r = s.post("/w/hook/setuser", "u=erin",
                   headers=hdr(cid, **{"X-CSRF-Token": tok + "  "}))
        check_eq(r.status, 200, "the token with whitespace after it")
        db.cleanup(s, eng)
    finally:
        s.stop()


def test_csrf_cross_site_without_session(eng):
    """Login CSRF: a POST with no session is still refused when the browser
    says another site sent it (Sec-Fetch-Site, else Origin vs Host); a
    same-origin one, or one that carries neither field (curl), passes."""
    if eng.pg:
        raise harness.Skip("engine-independent")
    s = server(eng)
    try:
        def post(**h):
            return s.post("/s/post", "x=1", headers=h).status
        host = "127.0.0.1:%d" % s.port
        check_eq(post(), 200, "no Origin, no Sec-Fetch-Site")
        check_eq(post(**{"Sec-Fetch-Site": "cross-site"}), 403, "cross-site")
        check_eq(post(**{"Sec-Fetch-Site": "same-site"}), 403, "same-site")
        check_eq(post(**{"Sec-Fetch-Site": "same-origin"}), 200, "same-origin")
        check_eq(post(**{"Sec-Fetch-Site": "none"}), 200, "typed by the user")
        check_eq(post(Origin="https://evil.example"), 403, "foreign Origin")
        check_eq(post(Origin="null"), 403, "opaque Origin")
        check_eq(post(Origin="http://" + host), 200, "own Origin")
        check_eq(post(Origin="HTTP://" + host.upper()), 200, "case")
        # Sec-Fetch-Site wins over Origin when both are sent
        check_eq(post(Origin="http://" + host,
                      **{"Sec-Fetch-Site": "cross-site"}), 403, "both")
        # an exempt handler is not checked at all
        check_eq(s.post("/s/api", "x=1", headers={
            "Sec-Fetch-Site": "cross-site"}).text, "api ok", "exempt")
        # a GET is never checked
        check_eq(s.get("/s/post", headers={"Origin": "https://evil.example"})
                 .status, 200, "GET")
        check_in("cross-site request without a session", s.stderr(), "log")
    finally:
        s.stop()


def test_csrf_costs_no_database_without_a_cookie(eng):
    """A POST without a session cookie never touches the database: it
    works with the database down, and creates no table; with a cookie and
    the database down the check cannot be made: 503, not a pass."""
    if eng.pg:
        raise harness.Skip("engine-independent")
    with Server(files=FILES,
                args=["--db", "postgresql://127.0.0.1:1/none?connect_timeout=1",
                      "--db-acquire-timeout", "1000"]) as s:
        check_eq(s.post("/s/post", "x=1").text, "posted POST", "no cookie")
        r = s.post("/s/post", "x=1", headers=hdr("Z" * 43))
        check_eq(r.status, 503, "a cookie, database down: %s" % short(r.body))
        check_eq(s.get("/s/get" + q(k="a")).text, "(none)", "GET, no cookie")
        r = s.get("/s/get" + q(k="a"), headers=hdr("Z" * 43))
        check_eq(r.status, 503, "GET with a cookie, database down")
    s = server(eng)
    try:
        check_eq(s.post("/s/post", "x=1").status, 200, "POST")
        check_eq(s.post("/s/post", "x=1", headers=hdr("!")).status, 200,
                 "POST with a malformed cookie")
        check_eq(db.value(s, "SELECT count(*) FROM hotpub_sessions").strip(),
                 "0", "no session for a POST without one")
        check_eq(s.post("/s/post", "x=1", headers=hdr("Z" * 43)).status, 200,
                 "POST with an unknown id")
    finally:
        s.stop()


# ---- one request of a session at a time (docs/pages.md#sessions) ------------

def concurrently(s, path, n, headers, timeout=60):
    reqs = [harness.BackgroundRequest(s.port, path, headers=headers,
                                      timeout=timeout) for _ in range(n)]
    for r in reqs:
        r.start()
    return [r.join_result(timeout + 10) for r in reqs]


def test_session_concurrent_increments_count(eng):
    """200 requests at once, all with one session cookie, each reading a
    session value, adding 1 and writing it, on two worker processes: the
    value ends at exactly 200 (it ended lower when the later commit won,
    as in the fresh-user report: 287 of 301)."""
    n = 200
    s = server(eng, workers=2)
    try:
        cid = new_session(s, "n", "0")
        res = concurrently(s, "/s/incr", n, hdr(cid))
        bad = [(r.status, short(r.body)) for r in res if r.status != 200]
        check(not bad, "not 200: %d, e.g. %s" % (len(bad), bad[:3]))
        seen = sorted(int(r.text) for r in res)
        check_eq(get(s, cid, "n"), str(n), "the session's value after %d "
                 "concurrent increments" % n)
        check_eq(seen, list(range(1, n + 1)),
                 "each request saw the one before it")
        db.cleanup(s, eng)
    finally:
        s.stop()


def test_session_lock_wait_has_a_bound(eng):
    """A request whose session another request holds past
    --session-lock-timeout answers 503 with Retry-After (logged), in about
    that time; once the holder ends, the session is free again; a request
    with the same cookie that never touches the session does not wait."""
    s = server(eng, workers=2, args=["--session-lock-timeout", "400"])
    try:
        cid = new_session(s, "n", "5")
        hold = harness.BackgroundRequest(s.port, "/s/hold" + q(ms=2500),
                                         headers=hdr(cid), timeout=30)
        hold.start()
        time.sleep(0.5 * harness.SLACK)  # the holder has the lock
        t0 = time.monotonic()
        r = s.get("/s/plain", headers=hdr(cid))
        check_eq((r.status, r.text), (200, "plain"), "a page that does not "
                 "touch the session")
        check(time.monotonic() - t0 < 0.3 * harness.SLACK,
              "it did not wait for the session's lock")
        t0 = time.monotonic()
        r = s.get("/s/peek", headers=hdr(cid))
        check_eq((r.status, r.text), (200, "5 -1 0"), "hp_session_read_only: "
                 "the value, a refused change")
        check(time.monotonic() - t0 < 0.3 * harness.SLACK,
              "a read-only use did not wait for the session's lock")
        check_in("after hp_session_read_only: refused", s.stderr(), "log")
        t0 = time.monotonic()
        r = s.get("/s/incr", headers=hdr(cid))
        took = time.monotonic() - t0
        check_eq(r.status, 503, "a request that waited past the limit: %s"
                 % short(r.body))
        check_eq(r.header("Retry-After"), "1", "Retry-After")
        check_in("session", r.text, "the body says why")
        check(0.35 < took < 0.4 + 1.0 * harness.SLACK,
              "it waited about session-lock-timeout (400 ms): %.2f s" % took)
        h = hold.join_result(40)
        check_eq((h.status, h.text), (200, "held 5"), "the holder")
        check_eq(s.get("/s/incr", headers=hdr(cid)).text, "6",
                 "the refused increment left nothing; the next one counts")
        check_in("session-lock-timeout", s.stderr(), "log")
        db.cleanup(s, eng)
    finally:
        s.stop()


def test_session_lock_wait_ends_before_the_handler_timeout(eng):
    """FRESH17-2: --session-lock-timeout 10000 not below --handler-timeout
    (2 s): a request waiting for its session, held by a stuck request
    (its 504 is the watchdog's), answers 503 with Retry-After before its
    own handler timeout, not a 504; the log says the handler timeout cut
    the wait, and the start-up warning names both values."""
    # (set: its default, auto, would be half of the handler timeout)
    s = server(eng, workers=1, args=["--no-dev", "--handler-timeout", "2",
                                     "--session-lock-timeout", "10000"])
    try:
        cid = new_session(s, "n", "5")
        hold = harness.BackgroundRequest(s.port, "/s/hold" + q(ms=4000),
                                         headers=hdr(cid), timeout=30)
        hold.start()
        time.sleep(0.5)  # the holder has the lock
        t0 = time.monotonic()
        r = s.get("/s/incr", headers=hdr(cid))
        took = time.monotonic() - t0
        check_eq(r.status, 503, "the waiter (after %.2f s): %s"
                 % (took, short(r.body)))
        check_eq(r.header("Retry-After"), "1", "Retry-After")
        check(1.2 < took < 2.0, "the 503 after %.2f s, want before the "
              "2 s handler timeout" % took)
        check_eq(hold.join_result(40).status, 504, "the stuck holder")
        log = s.stderr()
        check_in("cut short by --handler-timeout", log, "log")
        check_in("--session-lock-timeout (10000 ms) is not below "
                 "--handler-timeout (2 s)", log, "start-up warning")
        db.cleanup(s, eng)
    finally:
        s.stop()


def test_different_sessions_do_not_wait(eng):
    """One session held for 2.5 s does not hold up another session's
    requests (reads and writes), nor requests without a session."""
    s = server(eng, workers=2)
    try:
        a = new_session(s, "n", "1")
        b = new_session(s, "n", "1")
        hold = harness.BackgroundRequest(s.port, "/s/hold" + q(ms=2500),
                                         headers=hdr(a), timeout=30)
        hold.start()
        time.sleep(0.5 * harness.SLACK)
        t0 = time.monotonic()
        for i in range(5):
            check_eq(s.get("/s/incr", headers=hdr(b)).text, str(i + 2),
                     "the other session's increment %d" % i)
        s.get_ok("/s/token")  # a new session
        took = time.monotonic() - t0
        check(hold.is_alive(), "the first session was still held")
        check(took < 1.0 * harness.SLACK,
              "the other session did not wait: %.2f s" % took)
        check_eq(hold.join_result(40).status, 200, "the holder")
        db.cleanup(s, eng)
    finally:
        s.stop()


def test_one_session_does_not_take_the_pool(eng):
    """Requests of one session waiting for it hold none of the database
    pool's connections: with a pool of 2, six requests queued behind a
    session's holder leave the pool to another session's requests (on
    PostgreSQL each waited at the row lock with a connection, and the
    other session got 503 "database busy")."""
    s = server(eng, args=["--db-pool-size", "2", "--db-acquire-timeout",
                          "1000"])
    try:
        a = new_session(s, "n", "1")
        b = new_session(s, "n", "1")
        hold = harness.BackgroundRequest(s.port, "/s/hold" + q(ms=2500),
                                         headers=hdr(a), timeout=30)
        hold.start()
        time.sleep(0.4 * harness.SLACK)
        queued = [harness.BackgroundRequest(s.port, "/s/incr", headers=hdr(a),
                                            timeout=30) for _ in range(6)]
        for r in queued:
            r.start()
        time.sleep(0.4 * harness.SLACK)
        t0 = time.monotonic()
        r = s.get("/s/incr", headers=hdr(b))
        check_eq((r.status, r.text), (200, "2"), "the other session: %s"
                 % short(r.body))
        check(time.monotonic() - t0 < 0.5 * harness.SLACK,
              "it did not wait for a connection")
        check(hold.is_alive(), "the first session was still held")
        check_eq(hold.join_result(40).status, 200, "the holder")
        res = [r.join_result(40) for r in queued]
        check_eq(sorted(r.text for r in res), [str(i) for i in range(2, 8)],
                 "the queued increments, one after the other")
        db.cleanup(s, eng)
    finally:
        s.stop()

# ---- passwords ----------------------------------------------------------------

def test_password(eng):
    if eng.pg:
        raise harness.Skip("engine-independent")
    with Server(files=FILES) as s:
        h = s.get("/s/hash" + q(p="correct horse")).text
        check(h.startswith("$argon2id$"), "hash %r" % h)
        h2 = s.get("/s/hash" + q(p="correct horse")).text
        check(h2 != h, "a salt of its own")
        check_eq(s.get("/s/verify" + q(h=h, p="correct horse")).text, "yes",
                 "right password")
        check_eq(s.get("/s/verify" + q(h=h, p="correct horsE")).text, "no",
                 "wrong password")
        check_eq(s.get("/s/verify" + q(h="$argon2id$junk", p="x")).text, "no",
                 "malformed hash")
        check_eq(s.get("/s/verify" + q(p="x")).text, "no", "no hash")


ENGINES = db.ENGINES

if __name__ == "__main__":
    sys.exit(harness.run_suite(globals(), sys.argv[1:],
                               suite_budget=SUITE_BUDGET,
                               test_timeout=TEST_TIMEOUT, params=ENGINES,
                               list_full_names=False, verbose_total=False))
