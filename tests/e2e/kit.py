#!/usr/bin/env python3
"""hotpub end-to-end tests for the application toolkit (issue 13): JSON in
and out, Mustache templates in pages, path parameters.

    HOTPUB_BIN=/abs/path/hotpub python3 tests/e2e/kit.py [NAME-SUBSTRING...]
    python3 tests/e2e/kit.py --list

Same conventions as run.py (harness.py): each test_* function gets its own
temp document root and server on a free loopback port.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import (Server, check, check_eq, check_in, check_not_in,  # noqa: E402
                     fail, limit, page, short, wait_until)

TEST_TIMEOUT = 120.0
SUITE_BUDGET = 400.0

# ---- JSON ----------------------------------------------------------------

ECHO = page(r'''
HP_HANDLER(http_handler)
{
    json_t *in = hp_json_body(req);
    if (!in) {
        const char *why = hp_json_error(req);
        hp_status(req, why ? 400 : 415);
        json_t *e = json_pack("{s:s?}", "error", why);
        hp_write_json(req, e);
        json_decref(e);
        return HP_OK;
    }
    /* the same value twice: parsed once, owned by the request */
    if (hp_json_body(req) != in)
        return 500;
    json_t *out = json_pack("{s:O, s:f, s:s}", "echo", in, "tenth", 0.1,
                            "type", json_is_object(in) ? "object" : "other");
    int rc = hp_write_json(req, out);
    json_decref(out);
    return rc == HP_OK ? HP_OK : 500;
}
''')


def post_json(s, body, ctype="application/json"):
    if isinstance(body, str):
        body = body.encode()
    return s.request("/echo", method="POST", body=body,
                     headers={"Content-Type": ctype})


def test_json_round_trip():
    with Server(files={"echo.c": ECHO}) as s:
        value = {"name": "h\u00e9llo \U0001F600 <&>", "big": 9223372036854775807,
                 "neg": -9223372036854775808, "real": 1.7976931348623157e308,
                 "small": 5e-324, "list": [1, 2.5, None, True, False, ""],
                 "nested": {"a": {"b": [[]]}}, "quote": "\"\\\n\t\u0001"}
        for ctype in ("application/json", "application/json; charset=utf-8",
                      "Application/JSON", "application/merge-patch+json"):
            r = post_json(s, json.dumps(value, ensure_ascii=False), ctype)
            check_eq(r.status, 200, "status for %s: %s" % (ctype, short(r.text)))
            check_eq(r.header("Content-Type"), "application/json",
                     "Content-Type")
            got = json.loads(r.body.decode("utf-8"))
            check_eq(got["echo"], value, "echoed value")
        # shortest reals; raw UTF-8 out, not \u escapes
        check_in(b'"tenth":0.1', r.body, "the real 0.1")
        check_in("h\u00e9llo \U0001F600".encode(), r.body, "raw UTF-8")
        check_in(b'"big":9223372036854775807', r.body, "big integer")
        # any value at the top level
        r = post_json(s, "[1,2]")
        check_eq((r.status, json.loads(r.body)["type"]), (200, "other"), "array")


def test_json_malformed():
    with Server(files={"echo.c": ECHO}) as s:
        bad = {
            "duplicate key": b'{"a":1,"a":2}',
            "invalid UTF-8": b'{"a":"\xff"}',
            "overlong UTF-8": b'"\xc0\xaf"',
            "lone surrogate escape": b'"\\ud800"',
            "NUL escape": b'"a\\u0000b"',
            "trailing data": b'{} {}',
            "truncated": b'{"a":',
            "integer past 2^63-1": b'9223372036854775808',
            "integer past -2^63": b'-9223372036854775809',
            "real overflow": b'1e400',
            "too deep": b'[' * 3000 + b']' * 3000,
            "513 levels": b'[{"a":' * 256 + b'[1]' + b'}]' * 256,
            "single quotes": b"{'a':1}",
            "bare word": b'nope',
        }
        for what, body in bad.items():
            r = post_json(s, body)
            check_eq(r.status, 400, "status for %s: %s" % (what, short(r.text)))
            err = json.loads(r.body)["error"]
            check("line" in err and "column" in err,
                  "%s: error without position: %r" % (what, err))
        # 512 levels are fine (and a bracket inside a string is no level)
        deep = b'[{"a":' * 255 + b'["[[[{"]' + b'}]' * 255
        check_eq(post_json(s, deep).status, 200, "512 levels")
        # not JSON at all: NULL without an error (the page says 415)
        check_eq(post_json(s, b'{"a":1}', "text/plain").status, 415,
                 "text/plain body")
        # one media type, parameters after ';' only (FRESH16-6c)
        for ctype in ("application/json , text/plain",
                      "application/json, text/html", "application/json x",
                      "application/json ,",
                      "application/json;charset=utf-8, text/plain",
                      "application/json; a=\"x\", text/plain"):
            check_eq(post_json(s, b'{"a":1}', ctype).status, 415, ctype)
        check_eq(post_json(s, b'{"a":1}', "application/json ; charset=utf-8")
                 .status, 200, "OWS before the parameters")
        check_eq(post_json(s, b'{"a":1}', 'application/json; a="x, y"')
                 .status, 200, "a comma inside a quoted parameter")
        check_eq(post_json(s, b'{"a":1}', "application/jsonx").status, 415,
                 "application/jsonx body")
        check_eq(post_json(s, b'').status, 415, "empty body")
        check_eq(s.get("/echo").status, 415, "GET without a body")
        check(s.alive(), "server died")


def test_json_page_needs_no_flags_and_check_agrees():
    src = page(r'''
HP_HANDLER(http_handler)
{
    json_t *o = json_object();
    json_object_set_new(o, "n", json_integer(42));
    char *t = json_dumps(o, JSON_COMPACT);
    hp_puts(req, t);
    free(t);
    json_decref(o);
    return HP_OK;
}
''', includes="#include <stdlib.h>")
    with Server(files={"j.c": src}) as s:
        r = s.get("/j")
        check_eq((r.status, r.text), (200, '{"n":42}'), "a page calling jansson")
        p = harness.run_hotpub(["check", "--cache-dir", s.cache, s.root],
                               timeout=120)
        check_eq(p.returncode, 0, "hotpub check: %s" % short(p.stdout + p.stderr))


# ---- templates -----------------------------------------------------------

RENDER = page(r'''
HP_HANDLER(http_handler)
{
    const char *t = hp_arg(req, "t");
    json_t *d = json_pack("{s:s, s:s, s:[{s:i,s:s},{s:i,s:s}], s:{s:s}, s:b}",
                          "title", "<Tom & \"Jerry\">", "raw", "<i>ok</i>",
                          "rows", "id", 1, "name", "a<b", "id", 2, "name", "\u00e9",
                          "user", "name", "Ann", "admin", 0);
    int rc = hp_render(req, t ? t : "list.tpl", d);
    json_decref(d);
    return rc;
}
''')

TEMPLATES = {
    "app/list.c": RENDER,
    "app/list.tpl": "{{> layout}}",
    "app/layout.tpl": "<title>{{title}}</title>\n<body>\n  {{> parts/table}}\n"
                      "</body>\n",
    "app/parts/table.tpl": "<table>\n{{#rows}}\n  {{> row}}\n{{/rows}}\n"
                           "</table>\n{{^admin}}not admin{{/admin}} "
                           "{{user.name}} {{{raw}}} {{&raw}} {{! hidden }}",
    "app/parts/row.tpl": "<tr><td>{{id}}</td><td>{{name}}</td></tr>\n",
    "app/esc.tpl": "{{=<% %>=}}<% title %> {{title}}",
    "app/up.tpl": "{{> ../shared/foot}}",
    "shared/foot.tpl": "foot {{user.name}}",
    "app/escape.tpl": "{{> ../../outside}}",
    "app/abs.tpl": "{{> /shared/foot}}",
}


def test_pkg_config_requires_jansson():
    """make install's hotpub.pc: <hotpub.h> includes <jansson.h>, so
    pkg-config must pull in jansson (Requires), and a file that includes
    <hotpub.h> compiles with `pkg-config --cflags hotpub` alone."""
    if not shutil.which("pkg-config"):
        raise harness.Skip("pkg-config is not installed")
    repo = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
    tmp = tempfile.mkdtemp(prefix="hotpub-pc-")
    try:
        # The product's install, whatever make runs this file: `make tsan`
        # or `make asan` pass BUILD, SUFFIX and SAN to their sub-makes in
        # MAKEFLAGS, which would reach this make too (it built hotpub-tsan
        # and installed a `hotpub` that no step had built: "cannot stat").
        menv = {k: v for k, v in os.environ.items()
                if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL",
                             "MAKEOVERRIDES")}
        r = subprocess.run(["make", "-s", "install", "PREFIX=" + tmp],
                           cwd=repo, capture_output=True, text=True,
                           timeout=300, env=menv)
        check_eq(r.returncode, 0, "make install: " + short(r.stderr, 400))
        env = dict(os.environ, PKG_CONFIG_PATH=os.path.join(tmp, "lib",
                                                            "pkgconfig"))

        def pc(*args):
            return subprocess.run(["pkg-config"] + list(args) + ["hotpub"],
                                  env=env, capture_output=True, text=True)
        r = pc("--print-requires")
        check_eq((r.returncode, r.stdout.split()), (0, ["jansson"]),
                 "Requires of hotpub.pc")
        r = pc("--cflags", "--libs")
        check_eq(r.returncode, 0, "pkg-config: " + r.stderr)
        check_in("-I" + os.path.join(tmp, "include"), r.stdout, "cflags")
        check_in("-ljansson", r.stdout, "libs")
        # ... which its own words must not deny
        with open(os.path.join(tmp, "lib", "pkgconfig", "hotpub.pc")) as f:
            text = f.read()
        check_not_in("link against nothing", text, "hotpub.pc's comment")
        check_in("--libs hotpub` prints\n# jansson's -ljansson", text,
                 "hotpub.pc says what --libs prints")
        src = os.path.join(tmp, "t.c")
        with open(src, "w") as f:
            f.write("#include <hotpub.h>\n"
                    "json_t *f(void) { return json_object(); }\n")
        cc = subprocess.run(["cc", "-c", "-o", os.devnull, src]
                            + pc("--cflags").stdout.split(),
                            capture_output=True, text=True)
        check_eq(cc.returncode, 0, "compile: " + short(cc.stderr, 400))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_template_render():
    # (production: dev mode adds its live-reload script to HTML bodies)
    with Server(files=dict(TEMPLATES), dev=False) as s:
        r = s.get("/app/list")
        check_eq(r.status, 200, "status: %s" % short(r.text))
        want = ("<title>&lt;Tom &amp; &quot;Jerry&quot;&gt;</title>\n<body>\n"
                "  <table>\n"
                "    <tr><td>1</td><td>a&lt;b</td></tr>\n"
                "    <tr><td>2</td><td>\u00e9</td></tr>\n"
                "  </table>\n"
                "  not admin Ann <i>ok</i> <i>ok</i> </body>\n")
        check_eq(r.text, want, "rendered page")
        check(r.header("Content-Type").startswith("text/html"), "Content-Type")
        check_eq(s.get("/app/list?t=esc.tpl").text,
                 "&lt;Tom &amp; &quot;Jerry&quot;&gt; {{title}}", "delimiters")
        check_eq(s.get("/app/list?t=up.tpl").text, "foot Ann", "partial in ../")
        check_eq(s.get("/app/list?t=/shared/foot.tpl").text, "foot Ann",
                 "template from the root")
        check_eq(s.get("/app/list?t=abs.tpl").text, "foot Ann",
                 "partial from the root")
        # .tpl files are never served, wherever they are
        for path in ("/app/list.tpl", "/app/parts/row.tpl", "/shared/foot.tpl"):
            check_eq(s.get(path).status, 404, "GET %s" % path)


def test_template_stays_in_root():
    outside_name = "outside-%d" % os.getpid()
    with Server(files=dict(TEMPLATES)) as s:
        # a file next to the root that a partial tries to reach
        with open(os.path.join(s.tmp, "outside.tpl"), "w") as f:
            f.write("SECRET")
        os.symlink(os.path.join(s.tmp, "outside.tpl"),
                   s.path("app/link.tpl"))
        # the same symlink reached as a partial is an error too, not a
        # missing partial rendered as nothing (pages.md, Templates)
        with open(s.path("app/plink.tpl"), "w") as f:
            f.write("A{{> link}}B")
        for t in ("escape.tpl", "../../outside.tpl", "link.tpl",
                  "/../outside.tpl", "plink.tpl"):
            r = s.get("/app/list?t=" + t)
            check_eq(r.status, 500, "status for %s" % t)
            check_not_in("SECRET", r.text, "body for %s" % t)
            check_in("outside", r.text, "dev-mode message for %s" % t)
        del outside_name


def test_template_render_loads_template_files_only():
    """hp_render(req, hp_arg(req, "t"), d) never returns a page's source,
    _app.c or any non-.tpl file, nor one through a .tpl symlink: a 500 and
    a log line naming the page and the name (production too)."""
    files = dict(TEMPLATES)
    files["app/_app.c"] = page("int app_secret_source;\n")
    files["app/notes.txt"] = "plain secret_text"
    for dev in (True, False):
        with Server(files=files, dev=dev) as s:
            if dev:
                os.symlink("list.c", s.path("app/src.tpl"))
            for t in ("list.c", "_app.c", "/app/list.c", "notes.txt",
                      "../app/_app.c", "src.tpl"):
                if t == "src.tpl" and not dev:
                    continue
                r = s.get("/app/list?t=" + t)
                check_eq(r.status, 500, "status for %s (dev %s)" % (t, dev))
                for secret in ("json_pack", "secret_", "HP_HANDLER"):
                    check_not_in(secret, r.text, "body for %s" % t)
            log = s.stderr()
            check_in("app/list.c [http_handler]: template: hp_render: "
                     "\"_app.c\" is not a template name", log, "the log")
            if dev:
                check_in("src.tpl: leads to %s, which is not a template"
                         % os.path.realpath(s.path("app/list.c")), log,
                         "the log for the symlink")
            check_eq(s.get("/app/list?t=up.tpl").text, "foot Ann",
                     "a template still renders")


def test_check_reports_partials_and_symlinks_that_serving_refuses():
    """hotpub check fails a partial whose name leaves the root, a .tpl
    symlink out of the root or to a non-template, and a partial that
    reaches one, instead of passing what every render refuses."""
    files = {"p.c": RENDER, "ok.tpl": "{{> sub/part}}{{> nosuch}}",
             "sub/part.tpl": "P"}
    with Server(files=files, start=False) as s:
        p = harness.run_hotpub(["check", "--cache-dir", s.cache, s.root],
                               timeout=120)
        check_eq(p.returncode, 0, "good root: %s" % short(p.stdout + p.stderr))
        with open(os.path.join(s.tmp, "outside.tpl"), "w") as f:
            f.write("SECRET")
        os.symlink(os.path.join(s.tmp, "outside.tpl"), s.path("out.tpl"))
        os.symlink("p.c", s.path("src.tpl"))
        s.write("sub/esc.tpl", "{{#x}}{{> ../../../../etc/hostname}}{{/x}}")
        s.write("viasrc.tpl", "{{> src}}")
        p = harness.run_hotpub(["check", "--cache-dir", s.cache, s.root],
                               timeout=120)
        check_eq(p.returncode, 1, "hotpub check: %s" % short(p.stdout))
        out = p.stdout
        check_in("FAIL %s\n%s: a symlink out of the document root"
                 % (s.path("out.tpl"), s.path("out.tpl")), out, "out.tpl")
        check_in("%s: a symlink to %s, which is not a template"
                 % (s.path("src.tpl"), os.path.realpath(s.path("p.c"))),
                 out, "src.tpl")
        check_in("sub/esc.tpl: partial {{> ../../../../etc/hostname}} "
                 "leaves the document root", out, "esc.tpl")
        check_in("viasrc.tpl: partial {{> src}} leads to %s, which is not "
                 "a template" % os.path.realpath(s.path("p.c")), out,
                 "viasrc.tpl")
        check_in("ok   %s" % s.path("ok.tpl"), out, "ok.tpl")
        check_in("4 failed", out, "count")


def broken_templates():
    """TEMPLATES with a syntax error (broken.tpl:2), a template whose
    partial has one (badpart.tpl:3)."""
    files = dict(TEMPLATES)
    files["app/broken.tpl"] = "line 1\nline 2 {{#rows}}\nline 3\n"
    files["app/usesbroken.tpl"] = "a\n{{> badpart}}\n"
    files["app/badpart.tpl"] = "\n\n{{/nope}}"
    return files


def test_template_errors_dev_and_production():
    files = broken_templates()
    with Server(files=files) as s:
        r = s.get("/app/list?t=broken.tpl")
        check_eq(r.status, 500, "syntax error status")
        check_in("app/broken.tpl:2: section {{#rows}} is never closed", r.text,
                 "dev-mode diagnostic")
        r = s.get("/app/list?t=usesbroken.tpl")
        check_eq(r.status, 500, "broken partial status")
        check_in("app/badpart.tpl:3: closing tag without an open section",
                 r.text, "partial's diagnostic")
        r = s.get("/app/list?t=nosuch.tpl")
        check_eq(r.status, 500, "missing template")
        check_in("no such template", r.text, "missing template message")
        check_in("app/broken.tpl:2:", s.stderr(), "the log")
        # fixed: the next request renders it
        s.write("app/broken.tpl", "fixed {{user.name}}")
        s.wait_for("/app/list?t=broken.tpl", lambda r: r.status == 200 and
                   r.text == "fixed Ann", lambda r: r.status in (200, 500),
                   limit(2.0), "the fixed template")
    with Server(files=files, dev=False) as s:
        r = s.get("/app/list?t=broken.tpl")
        check_eq(r.status, 500, "production status")
        check_not_in("never closed", r.text, "production hides the error")
        check_in("app/broken.tpl:2: section {{#rows}} is never closed",
                 s.stderr(), "production logs it")
        # logged once per broken version, not once per request
        for _ in range(5):
            s.get("/app/list?t=broken.tpl")
        check_eq(s.stderr().count("never closed"), 1, "log lines for it")


def test_template_error_page_in_dev_mode_is_the_compile_error_page():
    """FRESH16-6a. docs/pages.md, "Errors over the page": a template that
    does not parse shows each file:line with the source lines around it,
    and saving the fix reloads the page. The dev 500 of a broken template
    was a bare `file:line: message` with no source and no live-reload
    script, so the tab stayed on the error after the fix."""
    files = broken_templates()
    with Server(files=files) as s:
        r = s.get("/app/list?t=broken.tpl")
        check_eq(r.status, 500, "syntax error status")
        check_in("/app/broken.tpl could not be rendered</h1>", r.text,
                 "the heading")
        check_in('<span class="hit"><span class="ln">    2  </span>'
                 'line 2 {{#rows}}</span>', r.text, "the line, marked")
        check_in("line 1", r.text, "a line before it")
        check_in("data-hotpub-live-reload", r.text, "the live-reload script")
        check_in("&quot;/app/broken.tpl&quot;", r.text,
                 "the template among the script's files")
        r = s.get("/app/list?t=usesbroken.tpl")
        check_in("/app/badpart.tpl could not be rendered</h1>", r.text,
                 "a partial's failure names the partial")
        check_in("{{/nope}}</span>", r.text, "the partial's line")
        r = s.get("/app/list?t=nosuch.tpl")
        check_in(": a template could not be rendered</h1>", r.text,
                 "no file:line: the module that rendered")
        check_in("data-hotpub-live-reload", r.text, "its script")


def test_broken_template_logged_at_error_once_per_version():
    """docs/pages.md: a template that fails to parse, used directly or as a
    partial, is logged at error level (production too), once per version
    of the broken file, not once per request; a new broken version is
    logged again."""
    files = broken_templates()
    with Server(files=files, dev=False) as s:
        for _ in range(4):
            check_eq(s.get("/app/list?t=broken.tpl").status, 500, "broken")
            check_eq(s.get("/app/list?t=usesbroken.tpl").status, 500,
                     "broken partial")
        def lines(needle):
            return [l for l in s.stderr().splitlines() if needle in l]
        for needle in ("is never closed", "closing tag without an open"):
            got = lines(needle)
            check_eq(len(got), 1, "log lines for %r: %s" % (needle, got))
            check_in("[error]", got[0], "the level of %r" % needle)
        s.write("app/badpart.tpl", "\n{{/again}}", how="rename")
        s.wait_for("/app/list?t=usesbroken.tpl",
                   lambda r: len(lines("closing tag")) == 2,
                   lambda r: r.status == 500, limit(5.0),
                   "the new broken version logged")
        check_in("[error]", lines("closing tag")[1], "its level")


def test_check_parses_templates():
    files = dict(TEMPLATES)
    del files["app/escape.tpl"]  # its partial leaves the root (below)
    with Server(files=files, start=False) as s:
        p = harness.run_hotpub(["check", "--cache-dir", s.cache, s.root],
                               timeout=120)
        check_eq(p.returncode, 0, "hotpub check, good templates: %s"
                 % short(p.stdout + p.stderr))
        check_in("ok   %s" % os.path.join(s.root, "app/parts/row.tpl"),
                 p.stdout, "check output")
        s.write("_partials/bad.tpl", "one\n{{#x}}{{/y}}")
        p = harness.run_hotpub(["check", "--cache-dir", s.cache, s.root],
                               timeout=120)
        check_eq(p.returncode, 1, "hotpub check, a broken template")
        check_in("_partials/bad.tpl:2: {{/y}} closes {{#x}}", p.stdout,
                 "check's diagnostic")


def test_check_finds_templates_that_include_themselves_on_every_render():
    """A partial outside every section that leads back to its template can
    only fail the render (64 levels deep): hotpub check says so, naming the
    chain. Recursion inside a section (a tree) is fine, and so is a chain
    guarded by an inverted section; a missing partial renders nothing."""
    files = {
        "tree.tpl": "<li>{{name}}{{#kids}}<ul>{{> tree}}</ul>{{/kids}}</li>",
        "guard.tpl": "{{^stop}}{{> guard}}{{/stop}}",
        "lonely.tpl": "{{> nosuch}}",
        "p.c": RENDER,
    }
    with Server(files=files, start=False) as s:
        p = harness.run_hotpub(["check", "--cache-dir", s.cache, s.root],
                               timeout=120)
        check_eq(p.returncode, 0, "guarded recursion passes: %s"
                 % short(p.stdout + p.stderr))
        s.write("self.tpl", "x {{> self}}\n")
        s.write("a/one.tpl", "{{! layout }}{{> ../two}}")
        s.write("two.tpl", "{{#x}}{{/x}}{{> /a/one}}")
        p = harness.run_hotpub(["check", "--cache-dir", s.cache, s.root],
                               timeout=120)
        check_eq(p.returncode, 1, "hotpub check, looping templates")
        check_in("self.tpl: includes itself on every render (self.tpl -> "
                 "self.tpl)", p.stdout, "the direct loop")
        check_in("one.tpl: includes itself on every render (a/one.tpl -> "
                 "two.tpl -> a/one.tpl)", p.stdout, "the loop through two")
        check_in("FAIL %s" % os.path.join(s.root, "two.tpl"), p.stdout,
                 "its other member")
        check_in("3 failed", p.stdout, "count")
        for good in ("tree.tpl", "guard.tpl", "lonely.tpl"):
            check_in("ok   %s" % os.path.join(s.root, good), p.stdout, good)


def test_template_reload_and_cache():
    files = {"p.c": RENDER, "list.tpl": "v1 {{user.name}}"}
    with Server(files=files) as s:
        check_eq(s.get("/p").text, "v1 Ann", "first")
        for how, v in (("inplace", "v2"), ("rename", "v3"), ("copy", "v4")):
            s.write("list.tpl", v + " {{user.name}}", how=how)
            s.wait_for("/p", lambda r, v=v: r.text == v + " Ann",
                       lambda r: r.status == 200, limit(2.0),
                       "template written by %s" % how)
        # a partial that appears later is picked up too (it was missing)
        s.write("list.tpl", "[{{> later}}]")
        s.wait_for("/p", lambda r: r.text == "[]", lambda r: r.status == 200,
                   limit(2.0), "missing partial renders empty")
        s.write("later.tpl", "L{{user.name}}")
        s.wait_for("/p", lambda r: r.text == "[LAnn]",
                   lambda r: r.text in ("[]", "[LAnn]"), limit(2.0),
                   "the new partial")


def test_template_reload_with_workers():
    files = {"p.c": RENDER, "list.tpl": "v1 {{user.name}}"}
    with Server(files=files, workers=2) as s:
        check_eq(s.get_ok("/p").text, "v1 Ann", "first")
        s.write("list.tpl", "v2 {{user.name}}", how="rename")
        s.wait_for("/p", lambda r: r.text == "v2 Ann",
                   lambda r: r.text in ("v1 Ann", "v2 Ann"), limit(2.0),
                   "the edit")
        # every worker (each has its own watcher: let the other one's
        # settle window pass too): 20 answers on fresh connections, all new
        time.sleep(limit(0.3))
        texts = {s.get("/p").text for _ in range(20)}
        check_eq(texts, {"v2 Ann"}, "answers after the edit")


def test_template_saved_with_a_slow_neighbour():
    """A layout is saved whole, then its partial is written in two halves
    with a pause longer than the settle window: the watcher waits for the
    partial's close, so no response renders the half-written partial (and
    the layout never goes live without the partial it came with)."""
    def layout(v):
        return "L%d\n{{> part}}\nend %d\n" % (v, v)

    def part(v):
        return "".join("P%d.%d\n" % (v, i) for i in range(100))

    def expected(v):
        return layout(v).replace("{{> part}}\n", part(v))

    files = {"p.c": RENDER, "list.tpl": layout(0), "part.tpl": part(0)}
    with Server(files=files) as s:
        check_eq(s.get("/p").text, expected(0), "first render")
        stop = threading.Event()
        bad, seen = [], set()

        def client():
            conn = s.connection()
            while not stop.is_set():
                r = harness.request(s.port, "/p", conn=conn)
                v = r.text.rsplit("end ", 1)[-1].strip()
                if r.status != 200 or not v.isdigit() or \
                        r.text != expected(int(v)):
                    bad.append((r.status, short(r.text, 120)))
                else:
                    seen.add(int(v))
            conn.close()

        t = threading.Thread(target=client)
        t.start()
        try:
            for v in (1, 2):
                with open(s.path("list.tpl"), "w") as f:
                    f.write(layout(v))
                data = part(v)
                with open(s.path("part.tpl"), "w") as f:
                    f.write(data[:len(data) // 2])
                    f.flush()
                    time.sleep(0.4)  # the settle window is 60 ms
                    f.write(data[len(data) // 2:])
                ok = wait_until(lambda: v in seen, 5)
                check(ok, "version %d never served" % v)
        finally:
            stop.set()
            t.join(10)
        check_eq(bad[:3], [], "torn or mixed responses (%d)" % len(bad))
        check(2 in seen, "the last version served")


def test_template_edit_under_load():
    """Writers rewrite a layout and its partial in place, slowly (half the
    file, a pause, the rest), while clients render them: every response is
    whole and from one version (layout and partial agree)."""
    n_lines = 200

    def layout(v):
        return "".join("L%d.%d\n" % (v, i) for i in range(n_lines)) + \
            "{{> part}}\nend %d\n" % v

    def part(v):
        return "".join("P%d.%d\n" % (v, i) for i in range(n_lines))

    def expected(v):
        return layout(v).replace("{{> part}}\n", part(v))

    files = {"p.c": RENDER, "list.tpl": layout(0), "part.tpl": part(0)}
    with Server(files=files) as s:
        check_eq(s.get("/p").text, expected(0), "first render")
        stop = threading.Event()
        bad, seen, count = [], set(), [0]

        def slow_write(rel, text):
            data = text.encode()
            with open(s.path(rel), "wb") as f:
                f.write(data[:len(data) // 2])
                f.flush()
                time.sleep(0.02)
                f.write(data[len(data) // 2:])

        def writer():
            v = 0
            while not stop.is_set():
                v += 1
                slow_write("list.tpl", layout(v))
                slow_write("part.tpl", part(v))
                time.sleep(0.25)

        def client():
            conn = s.connection()
            while not stop.is_set():
                r = harness.request(s.port, "/p", conn=conn)
                count[0] += 1
                text = r.text
                v = text.rsplit("end ", 1)[-1].strip() if "end " in text else ""
                if r.status != 200 or not v.isdigit() or \
                        text != expected(int(v)):
                    bad.append((r.status, short(text, 200)))
                else:
                    seen.add(int(v))
            conn.close()

        threads = [threading.Thread(target=client) for _ in range(3)]
        w = threading.Thread(target=writer)
        for t in threads + [w]:
            t.start()
        time.sleep(float(os.environ.get("HOTPUB_TPL_LOAD_SECONDS", "5")))
        stop.set()
        for t in threads + [w]:
            t.join(20)
        harness.note("%d requests, versions seen %d" % (count[0], len(seen)))
        check_eq(bad[:3], [], "torn or mixed responses (%d)" % len(bad))
        check(len(seen) >= 5, "too few versions seen: %s" % sorted(seen))


# ---- path parameters -----------------------------------------------------

ITEMS = page(r'''
static int show(hp_req *req, const char *who)
{
    hp_printf(req, "%s %u", who, hp_path_param_count(req));
    for (unsigned i = 0; i < hp_path_param_count(req); i++)
        hp_printf(req, " [%s]", hp_path_param(req, i));
    if (hp_path_param(req, hp_path_param_count(req)) != NULL)
        return 500;
    return HP_OK;
}
HP_HANDLER(http_handler) { return show(req, "list"); }
HP_PATH_PARAMS(http_handler);
HP_HANDLER(edit) { return show(req, "edit"); }
HP_PATH_PARAMS(edit);
HP_HANDLER(plain) { return show(req, "plain"); }
''')

PLAIN = page(r'''
HP_HANDLER(http_handler) { hp_puts(req, "plain page"); return HP_OK; }
HP_HANDLER(json) { hp_puts(req, "json"); return HP_OK; }
''')


def test_path_params():
    with Server(files={"items.c": ITEMS, "shop/index.c": ITEMS,
                       "hello.c": PLAIN}) as s:
        cases = {
            "/items": "list 0",
            "/items/42": "list 1 [42]",
            "/items/42/": "list 1 [42]",
            "/items/a%20b/%C3%A9": "list 2 [a b] [\u00e9]",
            "/items/edit/7": "edit 1 [7]",
            "/items/edit": "edit 0",
            "/items/plain": "plain 0",
            "/items/plain/3": "list 2 [plain] [3]",   # plain takes none
            "/items/nosuch": "list 1 [nosuch]",
            "/shop/x/y": "list 2 [x] [y]",
            "/shop/edit/5/6": "edit 2 [5] [6]",
        }
        for url, want in cases.items():
            r = s.get(url)
            check_eq((r.status, r.text), (200, want), url)
        many = "/items/" + "/".join(str(i) for i in range(32))
        check_eq(s.get(many).status, 200, "32 parameters")
        check_eq(s.get(many + "/32").status, 404, "33 parameters")
        # pages that did not opt in: unknown handlers stay 404
        for url in ("/hello/nosuch", "/hello/42", "/hello/json/1",
                    "/hello/a/b/c", "/items/_x", "/items/.x/1"):
            check_eq(s.get(url).status, 404, url)
        check_eq(s.get("/hello/json").text, "json", "named handler")


# ---- a page's NULL mistakes -----------------------------------------------

# Every hotpub.h function a page may hand a NULL it should not: each call
# is checked against its documented failure value (a line "ok EXPR" or
# "BAD EXPR"). The NULL comes through a volatile pointer, as one from
# hp_arg would, so the compiler neither warns nor folds it away.
NULLS = page(r"""
#define T(expr) hp_printf(req, "%s %s\n", (expr) ? "ok" : "BAD", #expr)
static const char *volatile nul;

static int vp(hp_req *req, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = hp_vprintf(req, fmt, ap);
    va_end(ap);
    return r;
}

HP_HANDLER(http_handler)
{
    size_t len = 7;
    struct hp_db_pool_stats st;
    T(hp_puts(req, nul) == -1);
    T(hp_write(req, nul, 3) == -1);
    T(hp_write(req, nul, 0) == HP_OK);
    T(hp_printf(req, nul) == -1);
    T(vp(req, nul) == -1);
    T(hp_write_html(req, nul) == HP_OK);
    T(hp_write_json(req, (const json_t *)nul) == -1);
    T(hp_set_header(req, nul, "v") == -1);
    T(hp_set_cookie(req, nul, "v", NULL) == -1);
    T(hp_set_cookie(req, "c", nul, NULL) == -1);
    T(hp_redirect(req, nul) == -1);
    T(hp_send_file(req, nul) == -1);
    T(hp_header(req, nul) == NULL);
    T(hp_cookie(req, nul) == NULL);
    T(hp_arg(req, nul) == NULL);
    T(hp_arg_n(req, nul, 1) == NULL);
    T(hp_arg_count(req, nul) == 0);
    T(hp_file(req, nul) == NULL);
    T(hp_file_n(req, nul, 1) == NULL);
    T(hp_file_count(req, nul) == 0);
    T(hp_req_set(req, nul, req) == -1);
    T(hp_req_get(req, nul) == NULL);
    T(hp_strdup(req, nul) == NULL);
    T(hp_sprintf(req, nul) == NULL);
    hp_log(req, nul);
    T(hp_session_get(req, nul) == NULL);
    T(hp_session_set(req, nul, "v") == -1);
    T(hp_session_set(req, "k", nul) == -1);
    T(hp_session_del(req, nul) == -1);
    T(hp_password_hash(req, nul) == NULL);
    T(hp_module_path((hp_module *)nul) == NULL);
    T(hp_module_version((hp_module *)nul) == 0);
    hp_module_error((hp_module *)nul, "x");
    hp_db_pool_stats(hp_db_default_pool(), (struct hp_db_pool_stats *)nul);
    hp_db_pool_stats(hp_db_default_pool(), &st);
    /* req itself NULL */
    hp_req *no = (hp_req *)nul;
    T(hp_puts(no, "x") == -1);
    T(hp_method(no) == NULL);
    T(hp_arg(no, "x") == NULL);
    T(hp_body(no, &len) == NULL && len == 0);
    T(hp_alloc(no, 8) == NULL);
    hp_status(no, 404);
    T(hp_set_header(no, "X-A", "b") == -1);
    T(hp_flush(no) == -1);
    T(hp_json_body(no) == NULL);
    T(hp_session_exists(no) == false);
    T(hp_csrf_token(no) == NULL);
    T(hp_db(no) == NULL);
    T(hp_app(no) == NULL);
    T(hp_app_at(no, 1) == NULL);
    T(hp_path_param(no, 0) == NULL);
    return HP_OK;
}

HP_HANDLER(render)
{
    return hp_render(req, nul, NULL);
}

HP_HANDLER(db)
{
    hp_db *db = hp_db(req);
    if (!db || hp_db_autocommit(db) != HP_OK)
        return 503;
    hp_db_res *rows[2];
    T(hp_db_exec(db, nul) == -1);
    T(strcmp(hp_db_sqlstate(db), "22004") == 0);
    T(strstr(hp_db_error(db), "hp_db_exec: sql is NULL") != NULL);
    T(hp_db_query(db, nul) == NULL);
    T(hp_db_exec_params(db, nul, 0, NULL) == -1);
    T(hp_db_query_params(db, nul, 0, NULL) == NULL);
    T(hp_db_exec_params(db, "SELECT $1", 1, NULL) == -1);
    T(strcmp(hp_db_sqlstate(db), "22023") == 0);
    T(hp_db_query_many(db, nul, 2, 0, NULL, rows) == -1);
    T(hp_db_query_many(db, "SELECT 1", 2, 0, NULL, NULL) == -1);
    T(hp_db_exec_many(db, nul, 1, 0, NULL) == -1);
    T(hp_db_exec_script(db, nul) == -1);
    hp_db_res *r = hp_db_query(db, "SELECT 41 + 1");
    T(r && hp_db_next(r) && hp_db_int(r, 0) == 42);
    return HP_OK;
}

HP_HANDLER(pid)
{
    hp_printf(req, "%d", (int)getpid());
    return HP_OK;
}
""", includes="#include <string.h>\n#include <unistd.h>")

# What each NULL above logs: "FUNCTION: WHAT is NULL" (with the page and
# handler before it), one line each.
NULL_LOGS = {
    "http_handler": [
        "hp_puts: s", "hp_write: data", "hp_printf: fmt", "hp_vprintf: fmt",
        "hp_write_json: value", "hp_set_header: name", "hp_set_cookie: name",
        "hp_set_cookie: value", "hp_redirect: location",
        "hp_send_file: path", "hp_header: name", "hp_cookie: name",
        "hp_arg: name", "hp_arg_n: name", "hp_arg_count: name",
        "hp_file: field", "hp_file_n: field", "hp_file_count: field",
        "hp_req_set: key", "hp_req_get: key", "hp_strdup: s",
        "hp_sprintf: fmt", "hp_log: fmt", "hp_session_get: key",
        "hp_session_set: key", "hp_session_set: value",
        "hp_session_del: key", "hp_password_hash: password"],
    "render": ["hp_render: tpl"],
}


def test_null_arguments_refused_and_logged_never_a_crash():
    """include/hotpub.h: a NULL a page passes where a function needs a
    pointer (hp_puts(req, NULL), a NULL format, header name, key, SQL,
    req itself) is that function's failure value and one error line naming
    the function and the page; the worker lives on and serves the next
    request. One server, one page for all of them."""
    with Server(files={"nulls.c": NULLS}, workers=1, dev=False) as s:
        pid = s.get_ok("/nulls/pid").text
        r = s.get("/nulls")
        check_eq(r.status, 200, "the page calling with NULLs: %s"
                 % short(r.text))
        lines = r.text.splitlines()
        check_eq([ln for ln in lines if not ln.startswith("ok ")], [],
                 "checks that failed")
        want = NULLS.split("HP_HANDLER(render)")[0].count("    T(")
        check_eq(len(lines), want, "checks run")
        check_eq(r.header("Location"), None, "Location after hp_redirect(NULL)")
        r = s.get("/nulls/render")
        check_eq(r.status, 500, "hp_render(req, NULL, ...)")
        r = s.get("/nulls/db")
        check_eq(r.status, 200, "the database calls: %s" % short(r.text))
        check_eq([ln for ln in r.text.splitlines() if not ln.startswith("ok ")],
                 [], "database checks that failed")
        check_eq(s.get_ok("/nulls/pid").text, pid, "the worker's pid")
        page_path = s.canon("nulls.c")

        def logged():
            err = s.stderr()
            return all("%s [%s]: %s is NULL" % (page_path, h, w) in err
                       for h, ws in NULL_LOGS.items() for w in ws)
        wait_until(logged, 5)
        # The same mistakes again: a page that makes one makes it on every
        # request, and its line is said at most once a minute.
        check_eq(s.get("/nulls").status, 200, "the page, a second time")
        err = s.stderr()
        for h, ws in NULL_LOGS.items():
            for w in ws:
                line = "%s [%s]: %s is NULL" % (page_path, h, w)
                check_eq(err.count(line + " (refused"), 1, "log lines %r" % line)
        for w in ("hp_puts", "hp_method", "hp_arg", "hp_body", "hp_alloc",
                  "hp_status", "hp_set_header", "hp_flush", "hp_json_body",
                  "hp_session_exists", "hp_csrf_token", "hp_db_from",
                  "hp_app", "hp_app_at", "hp_path_param"):
            check_in("%s: req is NULL (refused" % w, err, "log for req NULL")
        for w in ("hp_module_path", "hp_module_version", "hp_module_error"):
            check_in("%s: m is NULL (refused" % w, err, "log for m NULL")
        check_in("hp_db_pool_stats: out is NULL", err, "log")
        for w in ("hp_db_exec: sql", "hp_db_query: sql",
                  "hp_db_exec_params: sql", "hp_db_query_params: sql",
                  "hp_db_exec_params: params", "hp_db_query_many: sql",
                  "hp_db_query_many: results", "hp_db_exec_many: sql",
                  "hp_db_exec_script: sql"):
            check_in("db: %s: %s is NULL (refused" % (page_path, w), err,
                     "the failed statement's log line")
        check_not_in("crash", err.lower(), "the log")


if __name__ == "__main__":
    sys.exit(harness.run_suite(globals(), sys.argv[1:],
                               suite_budget=SUITE_BUDGET,
                               test_timeout=TEST_TIMEOUT))
