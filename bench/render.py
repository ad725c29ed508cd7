#!/usr/bin/env python3
"""render: a page rendering a 20-row HTML table, three ways, in one run:

  hotpub hp_render   render.c builds the rows as jansson values and renders
                     table.tpl ({{#rows}} ... {{> row}} ... {{/rows}}, every
                     value HTML-escaped) with hp_render: the template's cost;
  hotpub hp_printf   printf.c writes the same HTML with hp_printf and
                     hp_write_html from the same C array: no template;
  PHP-FPM            table.php (the same array, foreach + htmlspecialchars)
                     on Debian's php-fpm (pm static, --fpm-children 4, the
                     fpm SAPI's php.ini as packaged: opcache on) behind nginx
                     (1 worker, fastcgi over a unix socket, as bench/db.py).

All three answer byte-identical bodies (checked before measuring). Method
as bench/hello.py: every server process pinned to CPU 1, wrk -t1 -c50
(keep-alive) pinned to CPU 0, one untimed warm-up each, --runs runs with the
order rotating, medians. Server CPU per request = delta utime+stime of all
the server's processes (hotpub: the one process, --workers 0; PHP-FPM:
nginx master + worker + php-fpm master + children) / CLK_TCK / requests.
inline% is the share of a hotpub page's runs on the event-loop threads:
a page starts on the handler threads and is promoted once proven fast, and
a busy machine can demote it for good (server.c's rule), which costs 2-3x;
compare hp_render with hp_printf only when both show 100.
Needs root (php-fpm runs as www-data) and:
  sh tools/deps.sh --bench     (nginx-light, php8.2-fpm, wrk)
"""
import argparse
import os
import pwd
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import (FPM_STATIC, WEB_USER, Bench, FpmNginx,  # noqa: E402
                      Hotpub, add_run_args, describe_env, die, fmt_err,
                      fpm_conf, fpm_server, free_port, hotpub_binary, http_get,
                      log, main_wrapper, measure_cpu, median, nginx_conf, note,
                      run_wrk, ticks_of, write_files)

ROWS = 20
NOISY = 25.0

# The data: the same 20 rows in C, PHP and the expected HTML.
def rows():
    return [(i, "Item <%d> & \"co\"" % i, "%d.99" % (i * 3)) for i in
            range(1, ROWS + 1)]


def esc(s):
    return (s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;").replace("'", "&#39;"))


def expected_html():
    out = ["<!doctype html>\n<title>Items</title>\n<table>\n"]
    for i, name, price in rows():
        out.append("<tr><td>%d</td><td>%s</td><td>%s</td></tr>\n"
                   % (i, esc(name), price))
    out.append("</table>\n")
    return "".join(out)


def c_rows():
    return ",\n".join('    {%d, "%s", "%s"}' % (i, name.replace('"', '\\"'),
                                               price)
                      for i, name, price in rows())


C_DATA = """#include <hotpub.h>
static const struct { int id; const char *name, *price; } rows[] = {
%s
};
#define NROWS (sizeof rows / sizeof rows[0])
"""

RENDER_BODY = r"""
HP_HANDLER(http_handler)
{
    json_t *list = json_array();
    for (size_t i = 0; i < NROWS; i++)
        json_array_append_new(list, json_pack("{s:i, s:s, s:s}", "id",
                              rows[i].id, "name", rows[i].name, "price",
                              rows[i].price));
    json_t *data = json_pack("{s:s, s:o}", "title", "Items", "rows", list);
    int rc = hp_render(req, "table.tpl", data);
    json_decref(data);
    return rc;
}
"""

PRINTF_BODY = r"""
HP_HANDLER(http_handler)
{
    hp_puts(req, "<!doctype html>\n<title>Items</title>\n<table>\n");
    for (size_t i = 0; i < NROWS; i++) {
        hp_printf(req, "<tr><td>%d</td><td>", rows[i].id);
        hp_write_html(req, rows[i].name);
        hp_puts(req, "</td><td>");
        hp_write_html(req, rows[i].price);
        hp_puts(req, "</td></tr>\n");
    }
    hp_puts(req, "</table>\n");
    return HP_OK;
}
"""

TABLE_TPL = ("<!doctype html>\n<title>{{title}}</title>\n<table>\n"
             "{{#rows}}\n{{> row}}\n{{/rows}}\n</table>\n")
ROW_TPL = "<tr><td>{{id}}</td><td>{{name}}</td><td>{{price}}</td></tr>\n"

PHP = r"""<?php
$rows = [
%s
];
echo "<!doctype html>\n<title>Items</title>\n<table>\n";
foreach ($rows as $r) {
    echo '<tr><td>', $r[0], '</td><td>',
        htmlspecialchars($r[1]),
        '</td><td>', htmlspecialchars($r[2]), "</td></tr>\n";
}
echo "</table>\n";
"""


def php_rows():
    return ",\n".join("    [%d, '%s', '%s']" % (i, name, price)
                      for i, name, price in rows())


class PhpFpm(FpmNginx):
    """php-fpm (pm static) + nginx (1 worker), serving table.php."""

    def __init__(self, b, cpu, children):
        try:
            user = pwd.getpwnam(WEB_USER)
        except KeyError:
            die("no user %s" % WEB_USER)
        os.chmod(b.tmp, 0o711)  # www-data must reach its socket and files
        d = b.path("php")
        os.makedirs(os.path.join(d, "www"))
        write_files(os.path.join(d, "www"), (("table.php", PHP % php_rows()),))
        port = free_port()
        super().__init__(b, d, port, cpu, user,
                         nginx_conf(d, port, fpm_server(d), user=user.pw_name),
                         fpm_conf(d, user.pw_name, FPM_STATIC % children),
                         "/table.php", hint="sh tools/deps.sh --bench")
        self.path = "/table.php"


class HotpubPage:
    def __init__(self, hp, path):
        self.hp, self.port, self.path, self.pids = hp, hp.port, path, [hp.pid]

    def alive(self):
        return self.hp.proc.poll() is None


def placement(srv):
    """hotpub: (offloaded, inlined) page runs so far; else None."""
    if not isinstance(srv, HotpubPage):
        return None
    st = srv.hp.status()["server"]
    return st["offloaded"], st["inlined"]


def measure(b, name, srv, args):
    p0 = placement(srv)
    w = measure_cpu(name, lambda: ticks_of(srv.pids, reaped=True), srv.alive,
                    args.server_cpu,
                    lambda: run_wrk(b, "http://127.0.0.1:%d%s" % (srv.port,
                                                                  srv.path),
                                    cpu=args.client_cpu, conns=args.conns,
                                    duration=args.duration))
    p1 = placement(srv)
    # where hotpub ran the page: the event loops (proven fast) or the
    # handler threads (2-3x the cost: a noisy machine can demote a page)
    w["inline_pct"] = (100.0 * (p1[1] - p0[1]) /
                       max(1, (p1[0] - p0[0]) + (p1[1] - p0[1]))) if p0 else None
    return w


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_args(ap)
    ap.add_argument("--fpm-children", type=int, default=4)
    args = ap.parse_args()

    b = Bench("render")
    binary, src, digest = hotpub_binary(b)
    log("== render: a %d-row table, hp_render vs hp_printf vs PHP-FPM; %d runs "
        "of wrk -t1 -c%d -d%s; servers on cpu %d, wrk on cpu %d"
        % (ROWS, args.runs, args.conns, args.duration, args.server_cpu,
           args.client_cpu))
    describe_env(b, src, digest)
    root = b.path("docroot")
    os.makedirs(root)
    write_files(root, (("render.c", C_DATA % c_rows() + RENDER_BODY),
                       ("printf.c", C_DATA % c_rows() + PRINTF_BODY),
                       ("table.tpl", TABLE_TPL), ("row.tpl", ROW_TPL)))
    hp = Hotpub(b, binary, root, b.path("cache"), extra=["--workers", "0"],
                cpu=args.server_cpu)
    php = PhpFpm(b, args.server_cpu, args.fpm_children)
    servers = {"hp_render": HotpubPage(hp, "/render"),
               "hp_printf": HotpubPage(hp, "/printf"), "php-fpm": php}
    want = expected_html()
    for name, srv in servers.items():
        st, body = http_get(srv.port, srv.path, timeout=60)
        if st != 200 or body != want:
            die("%s %s answered %s:\n%s\nexpected:\n%s"
                % (name, srv.path, st, body[:600], want[:600]))
    note("all three answer the same %d bytes" % len(want.encode()))
    for name, srv in servers.items():
        run_wrk(b, "http://127.0.0.1:%d%s" % (srv.port, srv.path),
                cpu=args.client_cpu, conns=args.conns, duration=args.warmup)

    names = list(servers)
    res = {n: [] for n in names}
    log("%-3s %-10s %9s %11s %7s %8s %9s  %s" % ("run", "server", "req/s",
                                                 "us cpu/req", "other%",
                                                 "inline%", "p99", "errors"))
    for i in range(args.runs):
        order = names[i % 3:] + names[:i % 3]
        for name in order:
            w = measure(b, name, servers[name], args)
            res[name].append(w)
            log("%-3d %-10s %9.0f %11.2f %7.1f %8s %7.2fms  %s%s"
                % (i + 1, name, w["rps"], w["cpu_us"], w["other_pct"],
                   "-" if w["inline_pct"] is None else
                   "%.0f" % w["inline_pct"], w["lat_p99"] * 1e3, fmt_err(w),
                   "  NOISY" if w["other_pct"] > NOISY else ""))
    med = {n: {"rps": median([w["rps"] for w in res[n]]),
               "cpu_us": median([w["cpu_us"] for w in res[n]])} for n in names}
    for n in names:
        log("median %-10s %9.0f req/s %8.2f us cpu/req" %
            (n, med[n]["rps"], med[n]["cpu_us"]))
    tpl_over = med["hp_render"]["cpu_us"] - med["hp_printf"]["cpu_us"]
    log("template overhead: %+.2f us cpu/req (hp_render/hp_printf req/s %.2fx); "
        "hp_render/PHP-FPM req/s %.2fx, cpu/req %.2fx"
        % (tpl_over, med["hp_render"]["rps"] / med["hp_printf"]["rps"],
           med["hp_render"]["rps"] / med["php-fpm"]["rps"],
           med["hp_render"]["cpu_us"] / med["php-fpm"]["cpu_us"]))
    errors = {n: sum(w["errors"] for w in res[n]) for n in names}
    noisy = sum(1 for n in names for w in res[n] if w["other_pct"] > NOISY)
    log("RESULT render hp_render_rps=%.0f hp_printf_rps=%.0f php_fpm_rps=%.0f "
        "hp_render_us_req=%.2f hp_printf_us_req=%.2f php_fpm_us_req=%.2f "
        "errors=%d noisy=%d" %
        (med["hp_render"]["rps"], med["hp_printf"]["rps"],
         med["php-fpm"]["rps"], med["hp_render"]["cpu_us"],
         med["hp_printf"]["cpu_us"], med["php-fpm"]["cpu_us"],
         sum(errors.values()), noisy))
    hp.stop()
    php.stop()
    return 0


if __name__ == "__main__":
    main_wrapper(main)
