#!/usr/bin/env python3
"""The bundled guestbook (examples/guestbook/) end-to-end, driven as a
browser and a script would drive it.

    HOTPUB_BIN=/abs/path/hotpub [HOTPUB_PG_URL=postgresql://...] \\
        python3 tests/e2e/example.py [NAME-SUBSTRING...]
    python3 tests/e2e/example.py --list

Each test copies examples/ as it is into a fresh document root and serves it
with two worker processes, as `./hotpub serve examples` does: on SQLite in
the default database (no --db, as the README runs it) and, when
HOTPUB_PG_URL names a PostgreSQL server, again on it (a schema of its own
per test; otherwise the [pg] runs print "skip").

What a browser does: sign up and log in (the session cookie and its flags,
a new id at login), forms with and without the CSRF token (403 without),
what a visitor writes shown escaped, a picture upload (kept byte for byte,
refused when it is not an image or too big), the error statuses, logging out
(the session is gone). What a script does: the JSON API with a bearer token
(in and out, 401/400/404/405, exempt from CSRF), and the streamed CSV
export.
"""

import csv
import io
import os
import re
import shutil
import struct
import sys
import urllib.parse
import uuid
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import (Server, check, check_eq, check_in,  # noqa: E402
                     check_not_in, fail, short)
import db  # noqa: E402  (its Engine, ADMIN page and PostgreSQL set-up)

TEST_TIMEOUT = 120.0
SUITE_BUDGET = 500.0
COOKIE = "hotpub_session"
EXAMPLES = os.path.join(db.ROOT, "examples")
JSON = "application/json"


def guestbook(eng):
    """A started server on a copy of examples/ (plus the tests' admin.c)."""
    s = Server(start=False, workers=2)
    shutil.rmtree(s.root)
    shutil.copytree(EXAMPLES, s.root, symlinks=True)
    s.write("admin.c", db.ADMIN)
    if eng.pg:
        s.args += ["--db", eng.url(s)]
    s.start()
    if eng.pg:
        db.script(s, "CREATE SCHEMA IF NOT EXISTS %s" % eng.schema)
    return s


def png_1x1():
    """A real PNG: one red pixel."""
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data +
                struct.pack(">I", zlib.crc32(kind + data)))
    return (b"\x89PNG\r\n\x1a\n" +
            chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00")) +
            chunk(b"IEND", b""))


def multipart(fields, files):
    """(body, content type) of a multipart/form-data form (RFC 7578)."""
    bnd = "----e2e" + uuid.uuid4().hex
    out = b""
    for k, v in fields.items():
        out += ("--%s\r\nContent-Disposition: form-data; name=\"%s\"\r\n\r\n"
                % (bnd, k)).encode() + str(v).encode() + b"\r\n"
    for k, (name, ctype, data) in files.items():
        out += ("--%s\r\nContent-Disposition: form-data; name=\"%s\"; "
                "filename=\"%s\"\r\nContent-Type: %s\r\n\r\n"
                % (bnd, k, name, ctype)).encode() + data + b"\r\n"
    out += ("--%s--\r\n" % bnd).encode()
    return out, "multipart/form-data; boundary=" + bnd


class Browser:
    """One browser: a cookie jar holding the session cookie, and the CSRF
    token of the last page it read (as the page's forms would send it)."""

    def __init__(self, s, cookie=None):
        self.s = s
        self.cookie = cookie
        self.token = None
        self.set_cookie = None  # the last session Set-Cookie received

    def request(self, path, method="GET", body=None, headers=None):
        h = dict(headers or {})
        if self.cookie:
            h["Cookie"] = "%s=%s" % (COOKIE, self.cookie)
        r = self.s.request(path, method, body, h)
        for v in r.all("Set-Cookie"):
            if v.startswith(COOKIE + "="):
                self.set_cookie = v
                value = v.split(";", 1)[0].split("=", 1)[1]
                gone = "max-age=0" in v.lower().replace(" ", "")
                self.cookie = None if gone or not value else value
        m = re.search(r'name="csrf_token" value="([^"]*)"', r.text)
        if m:
            self.token = m.group(1)
        return r

    def get(self, path):
        return self.request(path)

    def post(self, path, fields=None, files=None, token=True):
        """A form POST: urlencoded, or multipart with files. token: True
        sends the page's token, False none, a string that string."""
        fields = dict(fields or {})
        if token is True:
            check(self.token, "no CSRF token on the last page read")
            fields["csrf_token"] = self.token
        elif token:
            fields["csrf_token"] = token
        if files is not None:
            body, ctype = multipart(fields, files)
        else:
            body = urllib.parse.urlencode(fields)
            ctype = "application/x-www-form-urlencoded"
        return self.request(path, "POST", body, {"Content-Type": ctype})

    def sign_up(self, name, password):
        self.get("/guestbook/account")
        r = self.post("/guestbook/account/signup",
                      {"name": name, "password": password})
        check_eq((r.status, r.header("Location")), (303, "/guestbook/"),
                 "sign-up of %s (%s)" % (name, short(r.body)))
        return r


def logged_in_as(r):
    m = re.search(r'<a href="/guestbook/account">([^<]*)</a>\s*<form',
                  r.text)
    return m.group(1) if m else None


# ---- the browser ------------------------------------------------------------

def test_accounts_and_sessions(eng):
    with guestbook(eng) as s:
        b = Browser(s)
        r = b.get("/guestbook/")
        check_eq(r.status, 200, "status of /guestbook/ (%s)" % short(r.body))
        check_in("No entries yet", r.text, "an empty guestbook")
        check(b.cookie is None, "an anonymous reader got a session: %s"
              % b.set_cookie)
        check_in("default-src 'self'",
                 r.header("Content-Security-Policy") or "",
                 "the prepare hook's Content-Security-Policy")
        # the forms start a session, for their CSRF token
        r = b.get("/guestbook/account")
        check_in('action="/guestbook/account/signup"', r.text, "sign-up form")
        c = b.set_cookie or ""
        attrs = [a.strip().lower() for a in c.split(";")[1:]]
        for a in ("httponly", "samesite=lax", "path=/"):
            check(a in attrs, "%s missing in the session cookie %r" % (a, c))
        # it holds only the token: 24 minutes, not two weeks (a crawler of
        # the form pages must not fill the database with two-week rows)
        check("max-age=1440" in attrs, "an anonymous session's cookie %r" % c)
        check("secure" not in attrs, "Secure over plain HTTP: %r" % c)
        check(re.fullmatch(r"[A-Za-z0-9_-]{43}", b.cookie or ""),
              "session id %r" % b.cookie)
        before = b.cookie
        # bad sign-ups: the form again, with the reason and status
        r = b.post("/guestbook/account/signup",
                   {"name": "a b", "password": "long enough"})
        check_eq(r.status, 400, "a name with a space")
        check_in("A name is 1 to 32", r.text, "the error")
        r = b.post("/guestbook/account/signup",
                   {"name": "alice", "password": "short"})
        check_eq(r.status, 400, "a short password")
        b.sign_up("alice", "correct horse")
        check(b.cookie and b.cookie != before,
              "the session id must change at sign-up (fixation)")
        r = b.get("/guestbook/")
        check_eq(logged_in_as(r), "alice", "who the header says is in")
        check_in("Welcome! Your account is ready.", r.text, "the flash")
        check_not_in("Welcome!", b.get("/guestbook/").text,
                     "the flash shown a second time")
        # the id from before sign-up is no session any more
        old = Browser(s, before)
        check_eq(logged_in_as(old.get("/guestbook/")), None,
                 "the pre-login id after sign-up")
        # the same name again
        other = Browser(s)
        other.get("/guestbook/account")
        r = other.post("/guestbook/account/signup",
                       {"name": "alice", "password": "another one"})
        check_eq(r.status, 409, "a taken name")
        check_in("That name is taken", r.text, "the error")
        # a form POST without the token, or with a wrong one: 403
        for tok in (False, "x" * 43):
            r = b.post("/guestbook/post", {"body": "sneaky"}, token=tok)
            check_eq(r.status, 403, "POST with token %r" % tok)
            check_in("CSRF", r.text, "the server's CSRF refusal")
        # log out: the cookie is dropped and the session is gone
        kept = b.cookie
        r = b.post("/guestbook/account/logout")
        check_eq((r.status, r.header("Location")), (303, "/guestbook/"),
                 "log out")
        check(b.cookie is None, "the cookie after logout: %s" % b.set_cookie)
        replay = Browser(s, kept)
        r = replay.get("/guestbook/")
        check_eq(logged_in_as(r), None, "the old cookie after logout")
        check_in("Log in or sign up</a> to sign", r.text, "anonymous page")
        r = replay.post("/guestbook/post", {"body": "ghost"},
                        token=b.token)
        check_eq(r.status, 403, "posting with the old cookie")
        check_not_in("ghost", s.get("/guestbook/").text, "a ghost entry")
        # a log-in from another site's form carries no session (the cookie
        # is SameSite=Lax): sent back to our form, not logged in (login CSRF)
        for u in ("/guestbook/account/login", "/guestbook/account/signup"):
            x = Browser(s)
            r = x.post(u, {"name": "alice", "password": "correct horse"},
                       token=False)
            check_eq((r.status, r.header("Location")),
                     (303, "/guestbook/account"), "%s without a session" % u)
            check(x.cookie is None, "a session from a cross-site %s: %s"
                  % (u, x.set_cookie))
        # log in: a wrong password, an unknown name, then right
        b.get("/guestbook/account")
        for name, pw in (("alice", "wrong horse"), ("nobody", "x" * 10)):
            r = b.post("/guestbook/account/login",
                       {"name": name, "password": pw})
            check_eq(r.status, 403, "log in as %s/%s" % (name, pw))
            check_in("Wrong name or password", r.text, "the error")
        r = b.post("/guestbook/account/login",
                   {"name": "alice", "password": "correct horse"})
        check_eq((r.status, r.header("Location")), (303, "/guestbook/"),
                 "log in")
        check_eq(logged_in_as(b.get("/guestbook/")), "alice",
                 "logged in again")
        check_eq(s.get("/guestbook/account/login").status, 405,
                 "GET of a form's target")
        db.cleanup(s, eng)


def test_entries_escaping_and_upload(eng):
    with guestbook(eng) as s:
        b = Browser(s)
        b.sign_up("alice", "correct horse")
        b.get("/guestbook/")
        evil = "<script>alert(\"pwned\")</script> & 'quotes'"
        r = b.post("/guestbook/post", {"body": evil}, files={})
        check_eq((r.status, r.header("Location")), (303, "/guestbook/"),
                 "post an entry (%s)" % short(r.body))
        page = b.get("/guestbook/").text
        check_in("Thank you for signing!", page, "the flash")
        check_in("&lt;script&gt;alert(&quot;pwned&quot;)&lt;/script&gt; "
                 "&amp; &#39;quotes&#39;", page, "the entry, escaped")
        check_not_in("<script>", page, "the page")
        # a picture, kept byte for byte and served as what it is
        png = png_1x1()
        r = b.post("/guestbook/post", {"body": "with a picture"},
                   files={"picture": ("../../dot.png", "text/html", png)})
        check_eq(r.status, 303, "post with a picture (%s)" % short(r.body))
        page = b.get("/guestbook/").text
        m = re.search(r'<img src="/guestbook/entry/picture/(\d+)"', page)
        check(m, "no picture on the page: %s" % short(page, 1500))
        pid = int(m.group(1))
        r = s.get("/guestbook/entry/picture/%d" % pid)
        check_eq((r.status, r.header("Content-Type"), r.body),
                 (200, "image/png", png), "the picture")
        check_eq(r.header("X-Content-Type-Options"), "nosniff", "nosniff")
        # refused uploads keep what was typed
        html = b"<html><script>alert(1)</script></html>"
        for data, status, why in ((html, 400, "Not a PNG, JPEG, GIF or WebP"),
                                  (png + b"\0" * (512 * 1024), 413,
                                   "at most 512 KiB")):
            r = b.post("/guestbook/post", {"body": "keep this text"},
                       files={"picture": ("x.png", "image/png", data)})
            check_eq(r.status, status, "upload %s (%s)" % (why,
                                                          short(r.body)))
            check_in(why, r.text, "the error")
            check_in(">keep this text</textarea>", r.text, "the draft")
        for body in ("", "x" * 2001):
            r = b.post("/guestbook/post", {"body": body})
            check_eq(r.status, 400, "an entry of %d characters" % len(body))
        check_eq(b.post("/guestbook/post", {"body": "\u00e9" * 2000}).status,
                 303, "2000 two-byte characters")
        # an entry's page, by path parameter
        r = s.get("/guestbook/entry/%d" % pid)
        check_eq(r.status, 200, "the entry's page")
        check_in("with a picture", r.text, "the entry's page")
        for u in ("/guestbook/entry/999999", "/guestbook/entry/x",
                  "/guestbook/entry/%d/more" % pid, "/guestbook/entry"):
            check_eq(s.get(u).status, 404, u)
        check_in("There is no such entry",
                 s.get("/guestbook/entry/999999").text, "the 404 page")
        # only the author deletes; an anonymous POST is refused
        check_eq(s.post("/guestbook/delete", "id=%d" % pid).status, 403,
                 "anonymous delete")
        bob = Browser(s)
        bob.sign_up("bob", "bob's password")
        page = bob.get("/guestbook/").text
        check_not_in('name="id" value="%d"' % pid, page,
                     "a delete button on another's entry")
        check_eq(bob.post("/guestbook/delete", {"id": pid}).status, 404,
                 "bob deleting alice's entry")
        b.get("/guestbook/")
        r = b.post("/guestbook/delete", {"id": pid})
        check_eq((r.status, r.header("Location")), (303, "/guestbook/"),
                 "alice deleting hers")
        check_eq(s.get("/guestbook/entry/picture/%d" % pid).status, 404,
                 "the picture after the delete")
        db.cleanup(s, eng)


# ---- the JSON API and the export --------------------------------------------

def api(s, method, path, obj=None, token=None, raw=None, ctype=JSON,
        cookie=None):
    h = {}
    if token:
        h["Authorization"] = "Bearer " + token
    if cookie:
        h["Cookie"] = "%s=%s" % (COOKIE, cookie)
    body = raw if raw is not None else (None if obj is None
                                        else harness.json.dumps(obj))
    if body is not None:
        h["Content-Type"] = ctype
    return s.request("/guestbook/api/entries" + path, method, body, h)


def jbody(r):
    try:
        return harness.json.loads(r.text)
    except ValueError:
        fail("not JSON (status %s): %s" % (r.status, short(r.body)))


def api_token(b):
    b.get("/guestbook/account")
    r = b.post("/guestbook/account/token")
    check_eq((r.status, r.header("Location")), (303, "/guestbook/account"),
             "new API token")
    page = b.get("/guestbook/account").text
    m = re.search(r"<code>([0-9a-f]{64})</code>", page)
    check(m, "no token on the account page: %s" % short(page, 1500))
    check_not_in(m.group(1), b.get("/guestbook/account").text,
                 "the token shown a second time")
    return m.group(1)


def test_json_api(eng):
    with guestbook(eng) as s:
        b = Browser(s)
        b.sign_up("carol", "carol's password")
        tok = api_token(b)
        text = "Gr\u00fc\u00dfe \u2603 <b>bold</b> \U0001F600"
        r = api(s, "POST", "", {"body": text}, tok)
        check_eq(r.status, 201, "POST (%s)" % short(r.body))
        check_in(JSON, r.header("Content-Type") or "", "Content-Type")
        e = jbody(r)
        check_eq((e["author"], e["body"], e["mine"], e["picture"]),
                 ("carol", text, True, False), "the new entry")
        check_eq(r.header("Location"), "/guestbook/api/entries/%d" % e["id"],
                 "Location")
        check_eq(jbody(api(s, "GET", "/%d" % e["id"]))["body"], text,
                 "GET it back")
        lst = jbody(api(s, "GET", ""))["entries"]
        check_eq([(x["id"], x["mine"]) for x in lst], [(e["id"], False)],
                 "the list, anonymous")
        check_eq(jbody(api(s, "GET", "", token=tok))["entries"][0]["mine"],
                 True, "mine, with the token")
        check_in("Gr\u00fc\u00dfe \u2603 &lt;b&gt;bold&lt;/b&gt;",
                 s.get("/guestbook/").text, "the API's entry on the page")
        # authentication
        r = api(s, "POST", "", {"body": "x"})
        check_eq(r.status, 401, "no token")
        check_eq(r.header("WWW-Authenticate"), 'Bearer realm="guestbook"',
                 "WWW-Authenticate without a token")
        for bad in ("Bearer " + "0" * 64, "Basic Y2Fyb2w6eA==", "Bearer"):
            r = s.request("/guestbook/api/entries", "GET", None,
                          {"Authorization": bad})
            check_eq(r.status, 401, "Authorization: %s" % bad)
            check_in('error="invalid_token"',
                     r.header("WWW-Authenticate") or "", "WWW-Authenticate")
            check_in("error", jbody(r), "the JSON error")
        # CSRF does not apply: the session cookie alone is no authority,
        # and with the token a missing CSRF token does not matter
        r = api(s, "POST", "", {"body": "x"}, cookie=b.cookie)
        check_eq(r.status, 401, "the session cookie without a token")
        r = api(s, "POST", "", {"body": "cookie and token"}, tok,
                cookie=b.cookie)
        check_eq(r.status, 201, "cookie and token, no CSRF token")
        # malformed input
        for raw, ctype, why in (('{"body":', JSON, "line 1"),
                                ('{"body": 5}', JSON, "body"),
                                ('{"body": ""}', JSON, "body"),
                                ('{"body": "a", "body": "b"}', JSON, "dup"),
                                ("body=x", "application/x-www-form-urlencoded",
                                 "application/json")):
            r = api(s, "POST", "", token=tok, raw=raw, ctype=ctype)
            check_eq(r.status, 400, "POST %r" % raw)
            if why != "dup":
                check_in(why, jbody(r)["error"], "error for %r" % raw)
        # a token made anew replaces the old one
        tok2 = api_token(b)
        check_eq(api(s, "GET", "", token=tok).status, 401, "the old token")
        # delete: not another's, then one's own
        dave = Browser(s)
        dave.sign_up("dave", "dave's password")
        r = api(s, "DELETE", "/%d" % e["id"], token=api_token(dave))
        check_eq(r.status, 404, "dave deleting carol's entry")
        r = api(s, "DELETE", "/%d" % e["id"], token=tok2)
        check_eq((r.status, r.body), (204, b""), "carol deleting hers")
        r = api(s, "GET", "/%d" % e["id"])
        check_eq((r.status, jbody(r)), (404, {"error": "no such entry"}),
                 "GET after DELETE")
        r = api(s, "PUT", "/1", {"body": "x"}, tok2)
        check_eq((r.status, r.header("Allow")), (405, "GET, HEAD, DELETE"),
                 "PUT")
        check_eq(api(s, "GET", "/x").status, 404, "a non-numeric id")
        db.cleanup(s, eng)


def test_csv_export(eng):
    with guestbook(eng) as s:
        b = Browser(s)
        b.sign_up("erin", "erin's password")
        tok = api_token(b)
        odd = ['say "hi", then\r\nleave', "=HYPERLINK(\"x\")", "plain"]
        for t in odd:
            check_eq(api(s, "POST", "", {"body": t}, tok).status, 201, t)
        # more than one batch of 500 rows
        if eng.pg:
            db.script(s, "INSERT INTO entries (user_id, body) SELECT 1, "
                         "'row ' || i FROM generate_series(1, 1200) i")
        else:
            db.script(s, "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL "
                         "SELECT i + 1 FROM n WHERE i < 1200) INSERT INTO "
                         "entries (user_id, body) SELECT 1, 'row ' || i "
                         "FROM n")
        r = s.get("/guestbook/export")
        check_eq(r.status, 200, "status of the export")
        check_eq(r.header("Content-Type"), "text/csv; charset=utf-8",
                 "Content-Type")
        check_eq(r.header("Transfer-Encoding"), "chunked", "streamed")
        rows = list(csv.reader(io.StringIO(r.text, newline="")))
        check_eq(rows[0], ["id", "author", "created", "body"], "header row")
        check_eq(len(rows), 1 + 3 + 1200, "rows")
        check_eq([row[3] for row in rows[1:4]],
                 [odd[0], "'" + odd[1], "plain"], "quoted bodies")
        check_eq(rows[-1][1:2] + rows[-1][3:], ["erin", "row 1200"],
                 "the last row")
        ids = [int(row[0]) for row in rows[1:]]
        check_eq(ids, sorted(set(ids)), "ids in order, each once")
        db.cleanup(s, eng)


ENGINES = db.ENGINES

if __name__ == "__main__":
    sys.exit(harness.run_suite(globals(), sys.argv[1:],
                               suite_budget=SUITE_BUDGET,
                               test_timeout=TEST_TIMEOUT, params=ENGINES,
                               list_full_names=False, verbose_total=False))
