#!/usr/bin/env python3
"""bench/tfb/verify.py - check a running server against TechEmpower's rules.

    bench/tfb/verify.py --url http://127.0.0.1:8080 --db URL [--only T,...]
                        [--prefix ''] [--suffix '']

Written from TFB's requirements and its verifier
(toolset/test_types/verifications.py and each test type's file), checking
the same things and a few more, more strictly:

  every response   status 200; Server, Date and Content-Type fields;
                   Content-Length or Transfer-Encoding; Date in the
                   RFC 9110 5.6.7 IMF-fixdate form, near the clock, and
                   changing over time (a second request 1.1 s later);
  json             application/json, exactly {"message": "Hello, World!"};
  plaintext        text/plain, exactly "Hello, World!";
  db               application/json, one object with exactly the keys id
                   and randomNumber, integers in 1..10000, the pair as the
                   World table holds it (read back with psql);
  queries          the same for a list, for queries = 2, 0, foo, 501, "",
                   absent, -3, 20 (lengths 2, 1, 1, 500, 1, 1, 1, 20),
                   every pair as the table holds it, and 500 rows that are
                   not all the same row;
  updates          the same cases; after each, every returned pair is what
                   the table holds now (the update was committed; a row
                   drawn twice: its last pair), no other row changed, and
                   at least 90% of the rows answered changed value;
  fortunes         text/html; charset=utf-8, valid UTF-8; the parsed page is
                   a doctype, a title "Fortunes", one table whose rows are
                   the header (id, message) and the 12 Fortune rows plus
                   id 0 "Additional fortune added at request time.", sorted
                   by message; character references are decoded before
                   comparing (any escaping style passes), and the script
                   row must come out as text (escaped), not as an element.

--db is the libpq URL of the database the server uses (psql reads the
tables with it); --prefix/--suffix map the test names to URLs
("/json" by default; the PHP peer of bench/tfb.sh uses --suffix .php).
Prints "ok NAME" or "FAIL NAME: why" per check and a summary; exits 1 if
anything failed, 2 on a usage error. Python 3 standard library + psql.
"""

import argparse
import email.utils
import html.parser
import http.client
import json
import os
import re
import subprocess
import sys
import time
import urllib.parse

TESTS = ("json", "plaintext", "db", "queries", "updates", "fortunes")

# TFB's toolset/databases/postgres/create-postgres.sql, row by row.
FORTUNES = {
    1: "fortune: No such file or directory",
    2: "A computer scientist is someone who fixes things that aren't broken.",
    3: "After enough decimal places, nobody gives a damn.",
    4: "A bad random number generator: 1, 1, 1, 1, 1, 4.33e+67, 1, 1, 1",
    5: "A computer program does what you tell it to do, not what you want "
       "it to do.",
    6: "Emacs is a nice operating system, but I prefer UNIX. \u2014 Tom "
       "Christaensen",
    7: "Any program that runs right is obsolete.",
    8: "A list is only as strong as its weakest link. \u2014 Donald Knuth",
    9: "Feature: A bug with seniority.",
    10: "Computers make very fast, very accurate mistakes.",
    11: "<script>alert(\"This should not be displayed in a browser alert "
        "box.\");</script>",
    12: "\u30d5\u30ec\u30fc\u30e0\u30ef\u30fc\u30af\u306e\u30d9\u30f3\u30c1"
        "\u30de\u30fc\u30af",
}
EXTRA = (0, "Additional fortune added at request time.")

# (value of queries, expected length); None = no queries field at all.
QUERY_CASES = [("2", 2), ("0", 1), ("foo", 1), ("501", 500), ("", 1),
               (None, 1), ("-3", 1), ("20", 20)]

CONTENT_TYPES = {
    "json": r"^application/json(; ?charset=(UTF|utf)-8)?$",
    "html": r"^text/html; ?charset=(UTF|utf)-8$",
    "plaintext": r"^text/plain(; ?charset=(UTF|utf)-8)?$",
}


class Failed(Exception):
    pass


def need(cond, msg):
    if not cond:
        raise Failed(msg)


# ---- HTTP and the database ----------------------------------------------------

class Response:
    def __init__(self, status, fields, body):
        self.status, self.fields, self.body = status, fields, body

    def field(self, name):
        return self.fields.get(name.lower())


class Client:
    def __init__(self, base, prefix, suffix, timeout=30):
        u = urllib.parse.urlsplit(base)
        need(u.scheme == "http" and u.hostname, "--url must be http://HOST:PORT")
        self.host, self.port = u.hostname, u.port or 80
        self.prefix, self.suffix, self.timeout = prefix, suffix, timeout

    def url(self, test, query=None):
        path = "%s/%s%s" % (self.prefix, test, self.suffix)
        if query is not None:
            path += "?queries=" + urllib.parse.quote(query)
        return path

    def get(self, path):
        c = http.client.HTTPConnection(self.host, self.port,
                                       timeout=self.timeout)
        try:
            c.request("GET", path, headers={"Accept": "*/*"})
            r = c.getresponse()
            body = r.read()
            fields = {}
            for k, v in r.getheaders():
                fields.setdefault(k.lower(), v)
            return Response(r.status, fields, body)
        finally:
            c.close()


class Database:
    def __init__(self, url):
        self.url = url

    def rows(self, sql):
        p = subprocess.run(["psql", "-X", "-q", "-A", "-t", "-F", "\t",
                            "-v", "ON_ERROR_STOP=1", "-d", self.url,
                            "-c", sql], capture_output=True, timeout=60,
                           env=dict(os.environ, PGCLIENTENCODING="UTF8"))
        if p.returncode != 0:
            raise Failed("psql: %s" % p.stderr.decode("utf-8", "replace")
                         .strip())
        out = p.stdout.decode("utf-8")
        return [line.split("\t") for line in out.split("\n") if line]

    def world(self, ids=None):
        sql = "SELECT id, randomnumber FROM world"
        if ids is not None:
            sql += " WHERE id IN (%s)" % ",".join(str(int(i)) for i in ids)
        return {int(a): int(b) for a, b in self.rows(sql)}


# ---- the checks ---------------------------------------------------------------

def check_fields(r, kind):
    """What every response must carry; returns the Date value."""
    need(r.status == 200, "status %d: %r" % (r.status, r.body[:200]))
    for name in ("Server", "Date", "Content-Type"):
        need(r.field(name), "no %s field" % name)
    need(r.field("Content-Length") or r.field("Transfer-Encoding"),
         "neither Content-Length nor Transfer-Encoding")
    if r.field("Content-Length"):
        need(int(r.field("Content-Length")) == len(r.body),
             "Content-Length %s for %d bytes" % (r.field("Content-Length"),
                                                 len(r.body)))
    date = r.field("Date")
    need(re.match(r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d "
                  r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
                  r"\d{4} \d\d:\d\d:\d\d GMT$", date),
         "Date %r is not an IMF-fixdate" % date)
    skew = abs(email.utils.parsedate_to_datetime(date).timestamp()
               - time.time())
    need(skew < 5, "Date %r is %.0f s off the clock" % (date, skew))
    ctype = r.field("Content-Type")
    need(re.match(CONTENT_TYPES[kind], ctype),
         "Content-Type %r does not match %s" % (ctype, CONTENT_TYPES[kind]))
    return date


def parse_json(r):
    try:
        return json.loads(r.body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise Failed("invalid JSON (%s): %r" % (e, r.body[:200]))


def check_world(obj, table=None, what="object"):
    """One {"id": N, "randomNumber": N}; returns (id, randomNumber)."""
    need(isinstance(obj, dict), "%s is not a JSON object: %r" % (what, obj))
    need(set(obj) == {"id", "randomNumber"},
         "%s has keys %s, not exactly id and randomNumber"
         % (what, sorted(obj)))
    i, n = obj["id"], obj["randomNumber"]
    for k, v in (("id", i), ("randomNumber", n)):
        need(type(v) is int, "%s: %s is %r, not an integer" % (what, k, v))
        need(1 <= v <= 10000, "%s: %s %d is outside 1..10000" % (what, k, v))
    if table is not None:
        need(table.get(i) == n, "%s: id %d has randomNumber %d, the table %r"
             % (what, i, n, table.get(i)))
    return i, n


def check_list(r, length, table=None):
    body = parse_json(r)
    need(isinstance(body, list), "not a JSON array: %r" % r.body[:200])
    need(len(body) == length, "%d objects, expected %d" % (len(body), length))
    return [check_world(o, table, "item %d" % k) for k, o in enumerate(body)]


def test_json(c, db):
    r = c.get(c.url("json"))
    check_fields(r, "json")
    need(parse_json(r) == {"message": "Hello, World!"},
         "body %r" % r.body[:200])
    return r


def test_plaintext(c, db):
    r = c.get(c.url("plaintext"))
    check_fields(r, "plaintext")
    need(r.body == b"Hello, World!", "body %r" % r.body[:200])
    return r


def test_db(c, db):
    table = db.world()
    need(len(table) == 10000 and set(table) == set(range(1, 10001)),
         "World has %d rows, not ids 1..10000" % len(table))
    seen = set()
    for _ in range(20):
        r = c.get(c.url("db"))
        check_fields(r, "json")
        seen.add(check_world(parse_json(r), table)[0])
    need(len(seen) > 1, "20 requests all read id %s" % seen)
    return r


def test_queries(c, db):
    table = db.world()
    for q, length in QUERY_CASES:
        r = c.get(c.url("queries", q))
        try:
            check_fields(r, "json")
            pairs = check_list(r, length, table)
        except Failed as e:
            raise Failed("queries=%r: %s" % (q, e))
        if length == 500:
            ids = {i for i, _ in pairs}
            need(len(ids) > 400, "500 rows read only %d distinct ids: not "
                 "random" % len(ids))
    return r


def test_updates(c, db):
    rows = changed = 0
    for q, length in QUERY_CASES:
        before = db.world()
        r = c.get(c.url("updates", q))
        try:
            check_fields(r, "json")
            pairs = check_list(r, length)
            after = db.world()
            final = {}
            for i, n in pairs:
                final[i] = n  # a row drawn twice: its last update stays
            for i, n in final.items():
                need(after[i] == n, "id %d: answered %d, the table holds "
                     "%d (not committed?)" % (i, n, after[i]))
            rows += len(final)
            changed += sum(1 for i in final if after[i] != before[i])
            others = sum(1 for i in after if i not in final
                         and after[i] != before[i])
            need(others == 0, "%d rows not in the answer changed" % others)
        except Failed as e:
            raise Failed("queries=%r: %s" % (q, e))
    # A new random value equals the old one with p = 1/10000: counted over
    # all the cases (~530 rows), 90% cannot fail by chance.
    need(changed >= 0.9 * rows, "only %d of the %d rows updated changed "
         "value" % (changed, rows))
    return r


class PageParser(html.parser.HTMLParser):
    """The page as a list of events: ("decl", text), ("start", tag),
    ("end", tag), ("text", data); whitespace-only text dropped, character
    references decoded (so &lt; and &#60; read alike)."""

    SKIP = {"meta", "link", "thead", "tbody"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.events = []

    def handle_decl(self, decl):
        self.events.append(("decl", decl.lower()))

    def handle_starttag(self, tag, attrs):
        if tag not in self.SKIP:
            self.events.append(("start", tag))

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag):
        if tag not in self.SKIP:
            self.events.append(("end", tag))

    def handle_data(self, data):
        if data.strip():
            if self.events and self.events[-1][0] == "text":
                data = self.events.pop()[1] + data
            self.events.append(("text", data))


def expected_page():
    rows = sorted(list(FORTUNES.items()) + [EXTRA], key=lambda r: r[1])
    ev = [("decl", "doctype html"), ("start", "html"), ("start", "head"),
          ("start", "title"), ("text", "Fortunes"), ("end", "title"),
          ("end", "head"), ("start", "body"), ("start", "table"),
          ("start", "tr"), ("start", "th"), ("text", "id"), ("end", "th"),
          ("start", "th"), ("text", "message"), ("end", "th"), ("end", "tr")]
    for i, msg in rows:
        ev += [("start", "tr"), ("start", "td"), ("text", str(i)),
               ("end", "td"), ("start", "td"), ("text", msg), ("end", "td"),
               ("end", "tr")]
    return ev + [("end", "table"), ("end", "body"), ("end", "html")]


def test_fortunes(c, db):
    got = {int(i): m for i, m in db.rows("SELECT id, message FROM fortune")}
    need(got == FORTUNES, "the Fortune table differs from TFB's: %r" % got)
    r = c.get(c.url("fortunes"))
    check_fields(r, "html")
    try:
        text = r.body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise Failed("the page is not UTF-8: %s" % e)
    need("<script" not in text.lower(),
         "a <script> element in the page: the messages are not escaped")
    p = PageParser()
    p.feed(text)
    p.close()
    want = expected_page()
    if p.events != want:
        k = next((k for k, (a, b) in enumerate(zip(p.events, want))
                  if a != b), min(len(p.events), len(want)))
        raise Failed("the page differs from the expected one at event %d: "
                     "got %r, expected %r" % (
                         k, p.events[k] if k < len(p.events) else "the end",
                         want[k] if k < len(want) else "the end"))
    return r


def check_date_changes(c, first):
    """Date must not be cached: every test's second response, 1.1 s after
    its first, carries another Date."""
    time.sleep(1.1)
    for name, date in first.items():
        r = c.get(c.url(name, "1") if name in ("queries", "updates")
                  else c.url(name))
        need(r.field("Date") != date, "/%s: Date %r did not change after "
             "1.1 s" % (name, date))


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--url", required=True, help="http://HOST:PORT")
    ap.add_argument("--db", required=True, help="libpq URL for psql")
    ap.add_argument("--only", default=",".join(TESTS),
                    help="comma-separated tests (default: all six)")
    ap.add_argument("--prefix", default="", help="URL path before /TEST")
    ap.add_argument("--suffix", default="", help="after TEST, e.g. .php")
    a = ap.parse_args(argv)
    only = [t for t in a.only.split(",") if t]
    bad = [t for t in only if t not in TESTS]
    if bad:
        ap.error("unknown test(s) %s; known: %s" % (bad, ", ".join(TESTS)))
    c = Client(a.url, a.prefix, a.suffix)
    db = Database(a.db)
    failed, first = [], {}
    for name in [t for t in TESTS if t in only]:
        try:
            r = globals()["test_" + name](c, db)
            first[name] = r.field("Date")
            print("ok   %s" % name, flush=True)
        except (Failed, OSError, http.client.HTTPException) as e:
            failed.append(name)
            print("FAIL %s: %s" % (name, e), flush=True)
    if first:
        try:
            check_date_changes(c, first)
            print("ok   date-changes", flush=True)
        except (Failed, OSError, http.client.HTTPException) as e:
            failed.append("date-changes")
            print("FAIL date-changes: %s" % e, flush=True)
    print("%d checks, %d failed%s" % (len(first) + len(failed), len(failed),
                                      (": " + ", ".join(failed))
                                      if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
