#!/usr/bin/env python3
"""hotpub end-to-end tests for static files (issue 8, "Static files").

    HOTPUB_BIN=/abs/path/hotpub python3 tests/e2e/static.py [NAME-SUBSTRING...]
    python3 tests/e2e/static.py --list

Byte ranges (RFC 9110 §14), validators and conditional requests (RFC 9110
§8.8, §13), and the symlink-swap race: a symlink to a file outside the
document root renamed over a served name must never serve the outside file.

Same conventions as run.py (harness.py): each test_* function gets its own
temp document root and server on a free loopback port; one line per test,
then "N passed, N failed"; exit status 1 if any test failed.
"""

import os
import shutil
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import (Server, check, check_eq, check_not_in, fail,  # noqa: E402
                     short)

TEST_TIMEOUT = 90.0   # hard bound for one test (the watchdog kills servers)
SUITE_BUDGET = 200.0  # past this, the remaining tests fail without running

BODY = "0123456789abcdefghij"  # 20 bytes


def raw_get(s, path, fields=(), method="GET"):
    """A raw request (fields as sent, no client rewriting); reads the whole
    answer (Connection: close)."""
    head = "%s %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" % (method,
                                                                   path)
    head += "".join("%s: %s\r\n" % kv for kv in fields)
    r = s.raw((head + "\r\n").encode(), read_all=True)
    check(r is not None, "no answer to %s %s %r" % (method, path, fields))
    return r


# ---- ranges (RFC 9110 §14) ------------------------------------------------------

def test_range_single_206():
    with Server(files={"f.txt": BODY}) as s:
        r = s.get("/f.txt")
        check_eq(r.status, 200, "status without Range")
        check_eq(r.header("Accept-Ranges"), "bytes", "Accept-Ranges")
        for rng, first, last in (("bytes=2-4", 2, 4), ("bytes=15-", 15, 19),
                                 ("bytes=-3", 17, 19), ("bytes=-100", 0, 19),
                                 ("bytes=18-1000", 18, 19),
                                 ("bytes=0-0", 0, 0),
                                 ("bytes=0-99999999999999999999999", 0, 19)):
            r = raw_get(s, "/f.txt", [("Range", rng)])
            check_eq(r.status, 206, "status of Range: %s" % rng)
            check_eq(r.header("Content-Range"),
                     "bytes %d-%d/20" % (first, last),
                     "Content-Range of %s" % rng)
            check_eq(r.header("Content-Length"), str(last - first + 1),
                     "Content-Length of %s" % rng)
            check_eq(r.body, BODY[first:last + 1].encode(), "body of %s" % rng)
            check(r.header("ETag"), "no ETag on a 206")


def test_range_unsatisfiable_416():
    with Server(files={"f.txt": BODY, "empty.txt": ""}) as s:
        for path, rng, size in (("/f.txt", "bytes=20-", 20),
                                ("/f.txt", "bytes=100-200", 20),
                                ("/f.txt", "bytes=-0", 20),
                                ("/f.txt", "bytes=99999999999999999999999-", 20),
                                ("/empty.txt", "bytes=0-", 0)):
            r = raw_get(s, path, [("Range", rng)])
            check_eq(r.status, 416, "status of Range: %s on %s" % (rng, path))
            check_eq(r.header("Content-Range"), "bytes */%d" % size,
                     "Content-Range of the 416 for %s" % rng)
            check(BODY.encode() not in r.body, "416 carries the file")


def test_range_several_or_invalid_serve_all():
    with Server(files={"f.txt": BODY}) as s:
        for rng in ("bytes=0-1,5-6", "bytes=0-1, 3-", "bytes=5-4", "bytes=x-",
                    "bytes=1-2;x", "lines=1-2", "bytes", "bytes=--1"):
            r = raw_get(s, "/f.txt", [("Range", rng)])
            check_eq(r.status, 200, "status of Range: %s" % rng)
            check_eq(r.body, BODY.encode(), "body of Range: %s" % rng)
            check_eq(r.header("Content-Range"), None,
                     "Content-Range of Range: %s" % rng)


def test_if_range():
    with Server(files={"f.txt": BODY}) as s:
        r = s.get_ok("/f.txt")
        etag, lm = r.header("ETag"), r.header("Last-Modified")
        rng = ("Range", "bytes=0-3")
        for ir, want in ((etag, 206), ('"other"', 200), ("W/" + etag, 200),
                         (lm, 206), ("Sat, 01 Jan 2000 00:00:00 GMT", 200),
                         ("garbage", 200)):
            r = raw_get(s, "/f.txt", [rng, ("If-Range", ir)])
            check_eq(r.status, want, "status with If-Range: %s" % ir)
            check_eq(r.body, BODY[:4].encode() if want == 206
                     else BODY.encode(), "body with If-Range: %s" % ir)


def test_head_like_get_without_body():
    with Server(files={"f.txt": BODY}) as s:
        for fields, status, length in (([], 200, 20),
                                       ([("Range", "bytes=5-9")], 206, 5)):
            r = raw_get(s, "/f.txt", fields, method="HEAD")
            check_eq(r.status, status, "HEAD status with %r" % fields)
            check_eq(r.header("Content-Length"), str(length),
                     "HEAD Content-Length with %r" % fields)
            check_eq(r.body, b"", "HEAD body")
        r = raw_get(s, "/f.txt", [("Range", "bytes=50-")], method="HEAD")
        check_eq(r.status, 416, "HEAD status of an unsatisfiable range")


# ---- validators (RFC 9110 §8.8, §13) ---------------------------------------------

def test_etag_if_none_match_304():
    with Server(files={"f.txt": BODY, "g.txt": "other"}) as s:
        r = s.get_ok("/f.txt")
        etag, lm = r.header("ETag"), r.header("Last-Modified")
        check(etag and etag.startswith('"') and etag.endswith('"'),
              "ETag %r is not a strong entity tag" % etag)
        check(etag != s.get_ok("/g.txt").header("ETag"),
              "two files with one ETag")
        for inm in (etag, '"x", %s' % etag, "W/" + etag, "*"):
            r = raw_get(s, "/f.txt", [("If-None-Match", inm)])
            check_eq(r.status, 304, "status with If-None-Match: %s" % inm)
            check_eq(r.body, b"", "body of the 304")
            check_eq(r.header("ETag"), etag, "ETag of the 304")
            check_eq(r.header("Last-Modified"), lm, "Last-Modified of the 304")
        r = raw_get(s, "/f.txt", [("If-None-Match", '"nope"')])
        check_eq(r.status, 200, "status with another tag")
        # If-None-Match takes precedence over If-Modified-Since
        r = raw_get(s, "/f.txt", [("If-None-Match", '"nope"'),
                                  ("If-Modified-Since", lm)])
        check_eq(r.status, 200, "non-matching If-None-Match + current IMS")
        r = raw_get(s, "/f.txt", [("If-None-Match", etag), (
            "If-Modified-Since", "Sat, 01 Jan 2000 00:00:00 GMT")])
        check_eq(r.status, 304, "matching If-None-Match + old IMS")
        r = raw_get(s, "/f.txt", [("If-None-Match", etag)], method="HEAD")
        check_eq(r.status, 304, "HEAD with a matching If-None-Match")
        # a changed file gets a new tag
        s.write("f.txt", BODY.upper())
        r = raw_get(s, "/f.txt", [("If-None-Match", etag)])
        check_eq(r.status, 200, "status after the file changed")
        check_eq(r.body, BODY.upper().encode(), "body after the change")
        check(r.header("ETag") != etag, "ETag did not change with the file")


def test_if_modified_since_forms():
    with Server(files={"f.txt": BODY}) as s:
        mtime = 784111777  # Sun, 06 Nov 1994 08:49:37 GMT
        os.utime(s.path("f.txt"), (mtime, mtime + 0.25))
        cases = (("Sun, 06 Nov 1994 08:49:37 GMT", 304),
                 ("Sunday, 06-Nov-94 08:49:37 GMT", 304),
                 ("Sun Nov  6 08:49:37 1994", 304),
                 ("Sun, 06 Nov 1994 08:49:36 GMT", 200),
                 ("Sun, 06 Nov 1994 08:49:37 GMT trailing", 200),
                 ("Sun, 06 Nov 1994 08:49:37", 200),
                 ("sun, 06 nov 1994 08:49:37 gmt", 200),
                 ("Thu, 01 Jan 2099 00:00:00 GMT", 200),  # future: ignored
                 ("2099", 200),
                 ("Mon, 01 Jan 2024 00:00:00 GMT", 304))
        for ims, want in cases:
            r = raw_get(s, "/f.txt", [("If-Modified-Since", ims)])
            check_eq(r.status, want, "status with If-Modified-Since: %s" % ims)
            check_eq(r.body, b"" if want == 304 else BODY.encode(),
                     "body with If-Modified-Since: %s" % ims)


def test_preconditions_412():
    with Server(files={"f.txt": BODY}) as s:
        etag = s.get_ok("/f.txt").header("ETag")
        for fields, want in (([("If-Match", etag)], 200),
                             ([("If-Match", '"nope"')], 412),
                             ([("If-Match", "W/" + etag)], 412),
                             ([("If-Match", "*")], 200),
                             ([("If-Unmodified-Since",
                                "Sat, 01 Jan 2000 00:00:00 GMT")], 412),
                             ([("If-Unmodified-Since",
                                "Thu, 01 Jan 2099 00:00:00 GMT")], 200)):
            r = raw_get(s, "/f.txt", fields)
            check_eq(r.status, want, "status with %r" % fields)
            if want == 412:
                check(BODY.encode() not in r.body, "412 carries the file")



def test_root_symlink_swap_serves_new_release():
    """The document root is a deploy's symlink (root -> v1, then -> v2):
    the root is opened per request, so the new release's file is served
    and no handle on the old one lingers."""
    s = Server(start=False)
    try:
        for rel, text in (("v1", "RELEASE-1"), ("v2", "RELEASE-2")):
            os.makedirs(os.path.join(s.tmp, rel, "css"))
            with open(os.path.join(s.tmp, rel, "css", "site.css"), "w") as f:
                f.write(text)
        os.rmdir(s.root)
        os.symlink(os.path.join(s.tmp, "v1"), s.root)
        s.start()
        check_eq(s.get_ok("/css/site.css").text, "RELEASE-1", "before")
        tmp = os.path.join(s.tmp, "root.new")
        os.symlink(os.path.join(s.tmp, "v2"), tmp)
        os.rename(tmp, s.root)
        took = s.wait_body("/css/site.css", "RELEASE-2", harness.limit(2.0),
                           allowed_bodies=("RELEASE-1",))
        harness.note("new release served after %.3f s" % took)
    finally:
        s.stop()
    shutil.rmtree(s.tmp, ignore_errors=True)

def test_root_symlink_swapped_to_a_missing_target():
    """A deploy swaps the root's symlink to a release that is not there
    (or to a file): the log says so, naming the root and the missing
    target, not "raise fs.inotify.max_user_watches" (the wrong advice it
    gave); requests get 404; the missing release created in place, or the
    link swapped again to a release, it is served."""
    s = Server(start=False)
    try:
        os.makedirs(os.path.join(s.tmp, "v1", "css"))
        with open(os.path.join(s.tmp, "v1", "css", "site.css"), "w") as f:
            f.write("RELEASE-1")
        with open(os.path.join(s.tmp, "plain-file"), "w") as f:
            f.write("x")
        os.rmdir(s.root)
        os.symlink(os.path.join(s.tmp, "v1"), s.root)
        s.start()
        check_eq(s.get_ok("/css/site.css").text, "RELEASE-1", "before")
        for target, words in (("v-missing", "which does not exist"),
                              ("plain-file", "which is not a directory")):
            tmp = os.path.join(s.tmp, "root.new")
            os.symlink(os.path.join(s.tmp, target), tmp)
            os.rename(tmp, s.root)
            want = "now points at %s, %s" % (os.path.join(s.tmp, target),
                                            words)
            check(harness.wait_until(lambda: want in s.stderr(),
                                     harness.limit(3.0)),
                  "the log does not say %r: %s" % (want, s.stderr()[-600:]))
            check_eq(s.get("/css/site.css").status, 404,
                     "a file under a root that leads nowhere")
        check_not_in("max_user_watches", s.stderr(), "the log")
        # the link to the missing release again, then the release made in
        # place: served without another swap
        tmp = os.path.join(s.tmp, "root.new")
        os.symlink(os.path.join(s.tmp, "v-missing"), tmp)
        os.rename(tmp, s.root)
        check(harness.wait_until(lambda: s.get("/css/site.css").status == 404,
                                 harness.limit(3.0)), "404 again")
        os.makedirs(os.path.join(s.tmp, "v-missing", "css"))
        with open(os.path.join(s.tmp, "v-missing", "css", "site.css"),
                  "w") as f:
            f.write("RELEASE-LATE")
        s.wait_body("/css/site.css", "RELEASE-LATE", harness.limit(3.0),
                    allowed_status=(404,))
        check(harness.wait_until(lambda: "leads to a directory again"
                                 in s.stderr(), harness.limit(3.0)),
              "the log does not say the root is back: %s"
              % s.stderr()[-600:])
        tmp = os.path.join(s.tmp, "root.new")
        os.symlink(os.path.join(s.tmp, "v1"), tmp)
        os.rename(tmp, s.root)
        s.wait_body("/css/site.css", "RELEASE-1", harness.limit(3.0),
                    allowed_status=(404,))
    finally:
        s.stop()
    shutil.rmtree(s.tmp, ignore_errors=True)


# ---- the symlink-swap race -----------------------------------------------------------

SECRET = b"OUTSIDE-THE-ROOT-SECRET"


def _swap_race(s, seconds, max_requests):
    """Rename a regular file, a symlink to a file inside the root and a
    symlink to a file outside it, in turn, over /swap.txt, while 4 clients
    request it. Returns (requests, answers by kind, outside hits)."""
    outside = os.path.join(s.tmp, "outside.txt")
    with open(outside, "wb") as f:
        f.write(SECRET)
    stop = threading.Event()
    counts = {"requests": 0, "outside": 0, "inside": 0, "regular": 0,
              "404": 0, "other": 0, "swaps": 0}
    lock = threading.Lock()

    def swapper():
        tmp = s.path(".swap-tmp")
        i = 0
        while not stop.is_set():
            kind = i % 3
            if kind == 0:
                with open(tmp, "wb") as f:
                    f.write(b"REGULAR-FILE")
            elif kind == 1:
                os.symlink("inside.txt", tmp)
            else:
                os.symlink(outside, tmp)
            os.rename(tmp, s.path("swap.txt"))
            i += 1
            with lock:
                counts["swaps"] += 1
            time.sleep(0.0005)

    def client():
        conn = s.connection(timeout=10)
        try:
            while not stop.is_set():
                try:
                    r = harness.request(s.port, "/swap.txt", conn=conn)
                except Exception:  # noqa: BLE001 - reconnect, keep going
                    conn.close()
                    conn = s.connection(timeout=10)
                    continue
                with lock:
                    counts["requests"] += 1
                    if SECRET in r.body:
                        counts["outside"] += 1
                    elif r.status == 200 and r.body == b"INSIDE-FILE":
                        counts["inside"] += 1
                    elif r.status == 200 and r.body == b"REGULAR-FILE":
                        counts["regular"] += 1
                    elif r.status == 404:
                        counts["404"] += 1
                    else:
                        counts["other"] += 1
                    if counts["requests"] >= max_requests:
                        stop.set()
        finally:
            conn.close()

    threads = [threading.Thread(target=client, daemon=True)
               for _ in range(4)]
    sw = threading.Thread(target=swapper, daemon=True)
    sw.start()
    for t in threads:
        t.start()
    stop.wait(seconds)
    stop.set()
    sw.join(5)
    for t in threads:
        t.join(15)
    return counts


def test_symlink_swap_never_serves_outside():
    files = {"inside.txt": "INSIDE-FILE", "swap.txt": "REGULAR-FILE"}
    with Server(files=files) as s:
        seconds = float(os.environ.get("HOTPUB_SWAP_SECONDS", "8"))
        c = _swap_race(s, seconds, max_requests=20000)
        harness.note("swap race: %s" % ", ".join(
            "%s=%d" % kv for kv in sorted(c.items())))
        check_eq(c["outside"], 0, "answers with the outside file (%r)" % c)
        check(c["requests"] >= 300, "too few requests to mean anything: %r"
              % c)
        check(c["inside"] + c["regular"] >= 30,
              "too few answers with a file inside the root: %r" % c)
        check_eq(c["other"], 0, "answers neither a file nor 404: %r" % c)
        check(s.alive(), "server died")



def test_dot_segments_merged_before_mapping():
    """docs/security.md: the decoded path's "." and ".." segments are merged
    (RFC 3986 §5.2.4) before it is mapped, for static files and pages
    alike, percent-encoded dots too ("%2e", decoded first, as nginx); a
    path that climbs above the root is a 400; a merged path that lands on
    a private name is still refused."""
    page = harness.simple_page("page b")
    with Server(files={"static/x.txt": "static x\n", "a/b.c": page,
                       "a/c.c": harness.simple_page("page c"),
                       "_priv/s.txt": "secret\n"}) as s:
        for path, want in (("/static/./x.txt", b"static x\n"),
                           ("/static/../static/x.txt", b"static x\n"),
                           ("/static/%2e/x.txt", b"static x\n"),
                           ("/static/%2E%2E/static/x.txt", b"static x\n"),
                           ("/a/./b", b"page b"),
                           ("/a/b/../c", b"page c"),
                           ("/a/x/%2e%2e/b", b"page b"),
                           ("/x/../a/b?q=/../", b"page b")):
            r = harness.raw_request(
                s.port, b"GET " + path.encode() + b" HTTP/1.1\r\n"
                b"Host: x\r\nConnection: close\r\n\r\n", read_all=True)
            check_eq((r.status, r.body), (200, want), "GET %s" % path)
        for path in ("/..", "/../static/x.txt", "/a/../../a/b", "/%2e%2e/a/b",
                     "/static/..%2f..%2fetc/passwd"):
            r = harness.raw_request(
                s.port, b"GET " + path.encode() + b" HTTP/1.1\r\n"
                b"Host: x\r\nConnection: close\r\n\r\n", read_all=True)
            check_eq(r.status, 400, "GET %s (above the root)" % path)
        for path in ("/static/../_priv/s.txt", "/a/./.hidden",
                     "/static/./%5fpriv/../../_priv/s.txt"):
            r = harness.raw_request(
                s.port, b"GET " + path.encode() + b" HTTP/1.1\r\n"
                b"Host: x\r\nConnection: close\r\n\r\n", read_all=True)
            check_eq(r.status, 404, "GET %s" % path)


def test_file_name_then_slash_404():
    """docs/pages.md "From URL to handler": a '/' after the name of a file
    (a static file, or a page's own name) asks for a directory that is not
    there: 404, as nginx answers; a directory with a '/' still serves its
    index, and a handler name or path parameters after a page still ignore
    a trailing '/'."""
    items = ('#include <hotpub.h>\n'
             'HP_HANDLER(http_handler) { const char *p = hp_path_param(req, 0);'
             ' hp_puts(req, p ? p : "list"); return HP_OK; }\n'
             'HP_PATH_PARAMS(http_handler);\n'
             'HP_HANDLER(edit) { hp_puts(req, "edit"); return HP_OK; }\n')
    with Server(files={"static/x.txt": "static x\n",
                       "static/index.html": "idx\n",
                       "page.c": harness.simple_page("page"),
                       "items.c": items}) as s:
        for path in ("/static/x.txt/", "/static/x.txt//", "/page/",
                     "/page//", "/items/"):
            r = raw_get(s, path)
            check_eq(r.status, 404, "GET %s" % path)
        for path, want in (("/static/x.txt", b"static x\n"),
                           ("/static/", b"idx\n"), ("/page", b"page"),
                           ("/items", b"list"), ("/items/42/", b"42"),
                           ("/items/edit/", b"edit")):
            r = raw_get(s, path)
            check_eq((r.status, r.body), (200, want), "GET %s" % path)
        # a static directory without its '/' redirects, the query kept
        for path, loc in (("/static", "/static/"), ("/static?v=2", "/static/?v=2"),
                          ("//static", "/static/")):
            r = raw_get(s, path)
            check_eq((r.status, r.header("Location")), (301, loc), "GET %s" % path)



# FRESH16-2: the names an editor, patch or a package manager leaves beside
# a page source, and sources in another case (hp_name_private, resolve.c).
BACKUP_NAMES = (
    "index.c~", "#index.c#", "index.c.bak", "hello.c.swp", "hello.C",
    "tpl/page.tpl~", "x.TPL", "inc.H", "lib.so.1", "index.c.1", "a.c.gz",
    "x.c.css", "page.tpl.orig", "index.c.orig", "index.c.rej",
    "index.c.save", "index.c.old", "index.c.tmp", "hotpub.ini.dpkg-old",
    "hotpub.ini.rpmnew", "index.c.~1~", "index.c,v", "index.c___jb_tmp___",
    "index.c___jb_old___", "style.css___jb_old___", "index.bak",
    "notes.txt.orig", "X.BAK", "x.swo", "sub/#hello.c#", "sub/hello.c~")
# Ordinary static names that must still be served.
SERVED_NAMES = ("jquery.cookie.js", "app.min.css", "index.d.ts",
                "pkg_1.0.orig.tar.gz", "style.css.map", "v.h264",
                "x~y.txt", "a#b.txt", "4913", "c", "old.c/index.html")


def url_of(name):
    return "/" + name.replace("%", "%25").replace("#", "%23").replace(
        ",", "%2C")


def check_backup_copies(dev):
    """docs/security.md: a page source in any case, and an editor's or a
    tool's copy of a source, header, object, settings file or template
    (index.c~, #index.c#, index.c.bak, lib.so.1, x.c.css, ...) is never
    served, with the answer /index.c gets (404), whether it was there at
    start or copied in while the server runs, or reached by a symlink;
    ordinary multi-dot names are served."""
    src = harness.simple_page("secret page source")
    files = {"index.c": src, "hello.c": src, "tpl/page.tpl": "{{x}}\n"}
    for i, name in enumerate(BACKUP_NAMES):
        if i % 2 == 0:
            files[name] = "SOURCE " + src
    for name in SERVED_NAMES:
        files[name] = "public " + name + "\n"
    with Server(files=files, dev=dev) as s:
        ref = raw_get(s, "/index.c")
        check_eq(ref.status, 404, "GET /index.c (the existing refusal)")
        # the rest copied in while the server runs (cp index.c index.c~)
        for i, name in enumerate(BACKUP_NAMES):
            if i % 2 == 1:
                s.write(name, "SOURCE " + src)
        os.symlink("index.c~", s.path("innocent.txt"))
        time.sleep(0.5)  # past the watcher's settle window
        for name in BACKUP_NAMES + ("innocent.txt",):
            for method in ("GET", "HEAD"):
                r = raw_get(s, url_of(name), method=method)
                check_eq((r.status, r.body), (ref.status,
                                              ref.body if method == "GET"
                                              else b""),
                         "%s %s" % (method, url_of(name)))
                check(b"SOURCE" not in r.body, "%s leaked" % name)
        for name in SERVED_NAMES:
            r = raw_get(s, url_of(name))
            check_eq((r.status, r.body),
                     (200, ("public " + name + "\n").encode()),
                     "GET %s" % url_of(name))
        r = raw_get(s, "/old.c/")
        check_eq((r.status, r.body), (200, b"public old.c/index.html\n"),
                 "GET /old.c/ (a directory is not judged by the name rule)")
        r = raw_get(s, "/hello")
        check_eq((r.status, r.body), (200, b"secret page source"), "GET /hello")



def test_backup_copies_never_served():
    """check_backup_copies, in dev mode (the editing workflow)."""
    check_backup_copies(True)


def test_backup_copies_never_served_production():
    """check_backup_copies, in production mode."""
    check_backup_copies(False)


if __name__ == "__main__":
    sys.exit(harness.run_suite(globals(), sys.argv[1:],
                               suite_budget=SUITE_BUDGET,
                               test_timeout=TEST_TIMEOUT))
