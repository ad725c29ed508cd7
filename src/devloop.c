/*
 * devloop.c - the browser side of the edit-refresh loop in dev mode.
 *
 * Owns: the open live-reload event streams (GET /_hotpub/events) and what
 * they are sent, the script injected into HTML responses, and the styled
 * compile-error page and overlay (source excerpts around each file:line).
 * May not touch: modules, versions, the watcher; they call
 * hp_devloop_changed, and server.c decides which responses get the script.
 *
 * Why a suspended connection: an event stream lives as long as the tab.
 * libmicrohttpd calls a content reader again at once while it returns 0,
 * so with nothing to send the reader suspends its connection (the reader
 * is a documented place for that) and the next event resumes it: an idle
 * stream costs a socket and a few bytes, never a handler thread.
 */
#include "devloop.h"

#include <stdio.h>
#include <stdlib.h>
#include <ctype.h>
#include <string.h>
#include <strings.h>

#define HP_EVENTS_MAX 256          /* open streams; more get 503 */
#define HP_EVENT_BACKLOG (1 << 20) /* bytes queued for a slow stream */
#define HP_EXCERPT_LINES 3         /* source lines each side of a line */
#define HP_EXCERPTS_MAX 8          /* file:line excerpts per page */

struct sub {
    struct sub *next;
    struct MHD_Connection *conn;
    struct hp_buf q; /* bytes not yet read by libmicrohttpd */
    size_t off;      /* of q already sent */
    bool parked;     /* the reader suspended the connection */
    bool ended;
};

static struct {
    pthread_mutex_t mu;
    bool on, stopping;
    char *root;
    size_t nsubs;
    struct sub *subs;
} D = {.mu = PTHREAD_MUTEX_INITIALIZER};

void hp_devloop_start(const char *root)
{
    pthread_mutex_lock(&D.mu);
    free(D.root);
    D.root = hp_xstrdup(root);
    D.on = true;
    D.stopping = false;
    pthread_mutex_unlock(&D.mu);
}

bool hp_devloop_on(void)
{
    pthread_mutex_lock(&D.mu);
    bool on = D.on && !D.stopping;
    pthread_mutex_unlock(&D.mu);
    return on;
}

/* Under D.mu: let the reader run (bytes or the end are waiting). */
static void unpark(struct sub *s)
{
    if (s->parked) {
        s->parked = false;
        MHD_resume_connection(s->conn);
        hp_resumed(); /* a loop without an inter-thread channel */
    }
}

void hp_devloop_stop(void)
{
    pthread_mutex_lock(&D.mu);
    D.stopping = true;
    for (struct sub *s = D.subs; s; s = s->next) {
        s->ended = true;
        unpark(s);
    }
    pthread_mutex_unlock(&D.mu);
}

/* The path as the browser knows it: relative to the root, from '/'. */
static const char *rel_path(const char *abs)
{
    size_t n = D.root ? strlen(D.root) : 0;
    if (n && strncmp(abs, D.root, n) == 0 && abs[n] == '/')
        return abs + n;
    return abs;
}

void hp_devloop_changed(const char *abs_path, const char *error)
{
    struct hp_buf ev = {0}, html = {0};

    pthread_mutex_lock(&D.mu);
    bool listening = D.on && !D.stopping && D.subs;
    pthread_mutex_unlock(&D.mu);
    if (!listening)
        return;
    /* A named event: the stream may also carry other feeds' unnamed
     * messages (the dashboard's), which the script ignores. */
    hp_buf_puts(&ev, "event: reload\ndata: {\"path\":");
    hp_buf_json(&ev, rel_path(abs_path));
    hp_buf_puts(&ev, ",\"error\":");
    if (error) {
        hp_buf_json(&ev, error);
        hp_devloop_error_html(&html, abs_path, error);
        hp_buf_puts(&ev, ",\"html\":");
        hp_buf_json(&ev, html.p ? html.p : "");
    } else {
        hp_buf_puts(&ev, "null");
    }
    hp_buf_puts(&ev, "}\n\n");
    pthread_mutex_lock(&D.mu);
    for (struct sub *s = D.subs; s; s = s->next) {
        if (s->ended || s->q.len - s->off + ev.len > HP_EVENT_BACKLOG)
            continue; /* a stream that does not read misses events */
        hp_buf_append(&s->q, ev.p, ev.len);
        unpark(s);
    }
    pthread_mutex_unlock(&D.mu);
    hp_buf_free(&ev);
    hp_buf_free(&html);
}

/* libmicrohttpd's content reader, on the connection's event-loop thread. */
static ssize_t reader(void *cls, uint64_t pos, char *out, size_t max)
{
    struct sub *s = cls;
    ssize_t r;
    (void)pos;
    pthread_mutex_lock(&D.mu);
    if (s->q.len > s->off) {
        size_t n = s->q.len - s->off < max ? s->q.len - s->off : max;
        memcpy(out, s->q.p + s->off, n);
        s->off += n;
        if (s->off == s->q.len)
            s->off = s->q.len = 0;
        r = (ssize_t)n;
    } else if (s->ended) {
        r = MHD_CONTENT_READER_END_OF_STREAM;
    } else {
        s->parked = true;
        MHD_suspend_connection(s->conn);
        r = 0;
    }
    pthread_mutex_unlock(&D.mu);
    return r;
}

static void reader_free(void *cls)
{
    struct sub *s = cls;
    pthread_mutex_lock(&D.mu);
    for (struct sub **p = &D.subs; *p; p = &(*p)->next) {
        if (*p == s) {
            *p = s->next;
            D.nsubs--;
            break;
        }
    }
    pthread_mutex_unlock(&D.mu);
    hp_buf_free(&s->q);
    free(s);
}

struct MHD_Response *hp_devloop_events(struct MHD_Connection *conn)
{
    struct sub *s = hp_xcalloc(1, sizeof *s);
    s->conn = conn;
    /* The first bytes go out at once: the browser's EventSource reports
     * open, and a retry of 500 ms makes a restarted server found soon. */
    hp_buf_puts(&s->q, "retry: 500\n: hotpub live reload\n\n");
    pthread_mutex_lock(&D.mu);
    if (!D.on || D.stopping || D.nsubs >= HP_EVENTS_MAX) {
        pthread_mutex_unlock(&D.mu);
        hp_buf_free(&s->q);
        free(s);
        return NULL;
    }
    s->next = D.subs;
    D.subs = s;
    D.nsubs++;
    pthread_mutex_unlock(&D.mu);
    struct MHD_Response *r = MHD_create_response_from_callback(
        MHD_SIZE_UNKNOWN, 4096, reader, s, reader_free);
    if (!r) {
        reader_free(s);
        return NULL;
    }
    MHD_add_response_header(r, "Content-Type", "text/event-stream");
    MHD_add_response_header(r, "Cache-Control", "no-store");
    return r;
}

/* ---- the injected script -------------------------------------------------
 *
 * Kept small and self-contained: an EventSource; on an event for one of
 * this response's files (or any non-CSS static file) it reloads; a .css
 * file is swapped in place by re-requesting its <link> with a new query;
 * an error puts the styled diagnostic over the page, and the reload that
 * follows the fix takes it away.
 *
 * Why an external script: a page's Content-Security-Policy (the
 * guestbook's default-src 'self') blocks inline script without a nonce
 * or hash, so the page gets <script src="/_hotpub/live-reload.js"> with
 * its files in a data- attribute, which any policy allowing 'self'
 * scripts runs. Likewise the overlay is styled from its own stylesheet
 * (a <link>) and CSSOM, never a style attribute or a <style> element. A
 * policy that allows scripts by nonce only ('strict-dynamic', or no
 * 'self') gets the script with the response's nonce, which the script
 * gives the stylesheet's <link> too (style-src by nonce).
 */
static const char live_reload_js[] =
    "(function(){var me=document.currentScript;"
    "var deps=JSON.parse(me&&me.getAttribute('data-deps')||'[]');"
    "var es=new EventSource('/_hotpub/events');"
    "function mine(p){return deps.indexOf(p)>=0}"
    "function isCode(p){return /\\.(c|h|so|tpl)$/.test(p)}"
    "function overlay(h){var o=document.getElementById('hotpub-overlay');"
    "if(!o){if(!document.getElementById('hotpub-style')){"
    "var l=document.createElement('link');l.id='hotpub-style';"
    "l.rel='stylesheet';l.href='" HP_LIVE_RELOAD_CSS_URL "';"
    "if(me&&me.nonce)l.nonce=me.nonce;"
    "document.head.appendChild(l)}"
    "o=document.createElement('div');o.id='hotpub-overlay';"
    "o.style.cssText='position:fixed;inset:0;z-index:2147483647;"
    "overflow:auto;background:rgba(20,20,24,.92);color:#eee;"
    "font:14px/1.45 ui-monospace,monospace;padding:24px';"
    "document.body.appendChild(o)}o.innerHTML=h}"
    "es.addEventListener('reload',function(m){var e=JSON.parse(m.data);"
    "if(e.error){if(mine(e.path)||!isCode(e.path))overlay(e.html);return}"
    "if(/\\.css$/.test(e.path)){var l=document.querySelectorAll("
    "'link[rel=stylesheet]');for(var i=0;i<l.length;i++){var u=new URL("
    "l[i].href);if(u.pathname===e.path){u.searchParams.set('hotpub',"
    "Date.now());l[i].href=u.href}}return}"
    "if(mine(e.path)||!isCode(e.path))location.reload()});"
    "window.__hotpubLiveReload=es})();\n";

/* The diagnostic's look: the 500 page has it in a <style> of its own (a
 * page hotpub writes, under no policy of the application's); the overlay
 * links it as /_hotpub/live-reload.css. */
static const char error_css[] =
    ".hp-err{font:14px/1.45 ui-monospace,SFMono-Regular,Menlo,"
    "monospace;color:#eee;background:#1e1e24;padding:20px;border-radius:8px}"
    ".hp-err h1{font:600 18px system-ui,sans-serif;color:#ff6b6b;margin:0 0 "
    "12px}.hp-err a{color:#8ab4ff}.hp-err pre{white-space:pre-wrap;margin:"
    "6px 0 14px}.hp-err .src{background:#111;padding:8px;border-radius:4px}"
    ".hp-err .hit{background:#5a1e1e;color:#fff;display:block}"
    ".hp-err .ln{color:#777;user-select:none}\n";

const char *hp_devloop_js(void)
{
    return live_reload_js;
}

const char *hp_devloop_css(void)
{
    return error_css;
}

/* The last "</body>" of b, case-insensitively; NULL if none. */
static char *last_body_close(const struct hp_buf *b)
{
    if (!b->p || b->len < 7)
        return NULL;
    for (size_t i = b->len - 7 + 1; i-- > 0;)
        if (strncasecmp(b->p + i, "</body>", 7) == 0)
            return b->p + i;
    return NULL;
}

/* The directive named name (case-insensitive) of a policy, as [*at, end);
 * false when the policy has none. */
static bool csp_directive(const char *csp, const char *name, const char **at,
                          const char **end)
{
    size_t n = strlen(name);
    for (const char *d = csp; d && *d; d = strchr(d, ';'), d = d ? d + 1 : d) {
        while (*d == ' ' || *d == '\t')
            d++;
        const char *e = strchr(d, ';');
        if (!e)
            e = d + strlen(d);
        if ((size_t)(e - d) >= n && strncasecmp(d, name, n) == 0 &&
            (d[n] == ' ' || d[n] == '\t' || d + n == e)) {
            *at = d + n;
            *end = e;
            return true;
        }
    }
    return false;
}

const char *hp_devloop_csp_nonce(const char *csp, char *out, size_t len)
{
    static const char *const order[] = {"script-src-elem", "script-src",
                                        "default-src"};
    const char *at = NULL, *end = NULL;
    if (!csp)
        return NULL;
    for (size_t i = 0; i < 3 && !at; i++)
        csp_directive(csp, order[i], &at, &end);
    for (const char *p = at; p && p < end;) {
        while (p < end && (*p == ' ' || *p == '\t'))
            p++;
        const char *q = p;
        while (q < end && *q != ' ' && *q != '\t')
            q++;
        if (q - p > 8 && strncasecmp(p, "'nonce-", 7) == 0 && q[-1] == '\'') {
            size_t k = (size_t)(q - p) - 8;
            if (k + 1 > len)
                return NULL;
            for (size_t j = 0; j < k; j++) {
                char c = p[7 + j];
                if (!isalnum((unsigned char)c) && !strchr("+/=-_", c))
                    return NULL;
                out[j] = c;
            }
            out[k] = '\0';
            return out;
        }
        p = q;
    }
    return NULL;
}

void hp_devloop_script(struct hp_buf *out, const char *const *deps,
                       size_t ndeps, const char *nonce)
{
    struct hp_buf s = {0}, list = {0};

    if (!hp_devloop_on())
        return;
    hp_buf_puts(&list, "[");
    for (size_t i = 0, k = 0; i < ndeps; i++) {
        bool dup = false;
        for (size_t j = 0; j < i; j++)
            dup |= deps[j] && strcmp(deps[j], deps[i] ? deps[i] : "") == 0;
        if (!deps[i] || dup)
            continue;
        hp_buf_puts(&list, k++ ? "," : "");
        hp_buf_json(&list, rel_path(deps[i]));
    }
    hp_buf_puts(&list, "]");
    /* An attribute value, HTML-escaped: any file name fits in it. */
    hp_buf_puts(&s, "<script src=\"" HP_LIVE_RELOAD_JS_URL "\"");
    if (nonce) {
        hp_buf_puts(&s, " nonce=\"");
        hp_buf_html(&s, nonce);
        hp_buf_puts(&s, "\"");
    }
    hp_buf_puts(&s, " data-hotpub-live-reload data-deps=\"");
    hp_buf_html(&s, list.p);
    hp_buf_puts(&s, "\"></script>");
    hp_buf_append(out, s.p, s.len);
    hp_buf_free(&s);
    hp_buf_free(&list);
}

void hp_devloop_inject(struct hp_buf *body, const char *const *deps,
                       size_t ndeps, const char *nonce)
{
    struct hp_buf s = {0};
    char *at = hp_devloop_on() ? last_body_close(body) : NULL;

    if (!at)
        return;
    size_t off = (size_t)(at - body->p);
    hp_devloop_script(&s, deps, ndeps, nonce);
    if (s.len && hp_buf_reserve(body, s.len) == 0) {
        memmove(body->p + off + s.len, body->p + off, body->len - off);
        memcpy(body->p + off, s.p, s.len);
        body->len += s.len;
    }
    hp_buf_free(&s);
}

/* ---- the error page -------------------------------------------------------
 */

/* Lines [line-N, line+N] of path as an excerpt, the line itself marked. */
static void excerpt(struct hp_buf *out, const char *path, long line)
{
    FILE *f = fopen(path, "r");
    char buf[512];
    long n = 0;

    if (!f)
        return;
    hp_buf_puts(out, "<pre class=\"src\">");
    while (fgets(buf, sizeof buf, f)) {
        size_t len = strlen(buf);
        bool whole = len && buf[len - 1] == '\n';
        if (whole || feof(f))
            n++;
        if (n < line - HP_EXCERPT_LINES)
            continue;
        if (n > line + HP_EXCERPT_LINES)
            break;
        if (whole)
            buf[len - 1] = '\0';
        hp_buf_printf(out,
                      "<span class=\"%s\"><span class=\"ln\">%5ld  </span>",
                      n == line ? "hit" : "", n);
        hp_buf_html(out, buf);
        hp_buf_puts(out, "</span>\n");
    }
    fclose(f);
    hp_buf_puts(out, "</pre>");
}

/* Whether the n bytes at path name a template file (template.h's
 * HP_TPL_EXT, ".tpl"). */
static bool is_template(const char *path, size_t n)
{
    return n > 4 && memcmp(path + n - 4, ".tpl", 4) == 0;
}

/* The file:line of each error in a diagnostic ("PATH:LINE:...error" at a
 * line start, PATH absolute; gcc's and tcc's form), each distinct one at
 * most once and at most max: a link and the source around it. */
static size_t each_location(const char *diag, struct hp_buf *out, size_t max)
{
    char seen[HP_EXCERPTS_MAX][PATH_MAX + 24];
    size_t n = 0;

    for (const char *l = diag; l && *l && n < max;) {
        const char *eol = strchr(l, '\n');
        size_t len = eol ? (size_t)(eol - l) : strlen(l);
        const char *colon = l[0] == '/' ? memchr(l, ':', len) : NULL;
        char *end = NULL;
        long line = colon ? strtol(colon + 1, &end, 10) : 0;
        /* A template's diagnostic names no severity: each is an error. */
        bool tpl = colon && is_template(l, (size_t)(colon - l));
        if (colon && line > 0 && end && *end == ':' &&
            (size_t)(colon - l) < PATH_MAX &&
            (tpl || memmem(end, len - (size_t)(end - l), "error", 5))) {
            char key[PATH_MAX + 24];
            snprintf(key, sizeof key, "%.*s:%ld", (int)(colon - l), l, line);
            bool dup = false;
            for (size_t i = 0; i < n; i++)
                dup |= strcmp(seen[i], key) == 0;
            if (!dup) {
                snprintf(seen[n++], sizeof seen[0], "%s", key);
                char path[PATH_MAX];
                snprintf(path, sizeof path, "%.*s", (int)(colon - l), l);
                hp_buf_puts(out, "<p><a href=\"file://");
                hp_buf_html(out, path);
                hp_buf_printf(out, "#L%ld\">", line);
                hp_buf_html(out, rel_path(key));
                hp_buf_puts(out, "</a></p>");
                excerpt(out, path, line);
            }
        }
        l = eol ? eol + 1 : NULL;
    }
    return n;
}

/* The heading's tail for a load not tried (hp_diag_is_busy), naming the
 * page whose constructor runs: loader.c's dl_refusal says "... the page X
 * has been running ...". */
static void busy_heading(struct hp_buf *out, const char *diag)
{
    const char *p = strstr(diag, HP_DIAG_CTOR_REFUSED "page ");
    const char *e = p ? strstr(p, " has been running") : NULL;
    hp_buf_puts(out, " could not be loaded yet: ");
    if (e) {
        p += strlen(HP_DIAG_CTOR_REFUSED "page ");
        char *page = hp_xasprintf("%.*s", (int)(e - p), p);
        hp_buf_puts(out, "the constructor of ");
        hp_buf_html(out, rel_path(page));
        free(page);
    } else {
        hp_buf_puts(out, "another page's constructor");
    }
    hp_buf_puts(out, " is still running</h1>");
}

/* render: a template's failure (tplcache.c); path is the template, or
 * the module that rendered when the diagnostic names no template. */
static void error_html(struct hp_buf *out, const char *path, const char *diag,
                       bool render)
{
    hp_buf_puts(out, "<div class=\"hp-err\"><h1>");
    bool tpl = render || (path && is_template(path, strlen(path)));
    hp_buf_html(out, path ? rel_path(path) : "a module");
    if (tpl && path && !is_template(path, strlen(path)))
        hp_buf_puts(out, ": a template");
    /* not tried: another page's constructor holds the loader (loader.c) */
    bool busy = hp_diag_is_busy(diag);
    /* built, but its init hook failed (loader.c) or crashed (guard.c) */
    bool init = hp_diag_is_init(diag);
    if (busy)
        busy_heading(out, diag);
    else
        hp_buf_puts(out, tpl    ? " could not be rendered</h1>"
                         : init ? " failed to initialise</h1>"
                                : " could not be built</h1>");
    each_location(diag ? diag : "", out, HP_EXCERPTS_MAX);
    hp_buf_puts(out, "<pre>");
    hp_buf_html(out, diag ? diag : "");
    if (busy)
        hp_buf_puts(out, "</pre><p>Nothing is wrong with this page: it loads "
                         "once that constructor returns, and this page "
                         "reloads by itself then. If it never returns, fix "
                         "it and restart hotpub.</p></div>");
    else if (diag && strncmp(diag, HP_DIAG_NO_COMPILER,
                             strlen(HP_DIAG_NO_COMPILER)) == 0)
        hp_buf_puts(out, "</pre><p>The compiler itself cannot run: install "
                         "it or fix the cc setting (--cc), then reload the "
                         "server (SIGHUP) or restart it.</p></div>");
    else
        hp_buf_puts(out, "</pre><p>Fix it and save: this page recovers by "
                         "itself.</p></div>");
}

void hp_devloop_error_html(struct hp_buf *out, const char *path,
                           const char *diag)
{
    error_html(out, path, diag, false);
}

static void error_page(struct hp_buf *out, const char *path,
                       const char *diag, bool render)
{
    hp_buf_puts(out, "<style>");
    hp_buf_puts(out, error_css);
    hp_buf_puts(out, "</style>");
    error_html(out, path, diag, render);
}

void hp_devloop_error_page(struct hp_buf *out, const char *path,
                           const char *diag)
{
    error_page(out, path, diag, false);
}

void hp_devloop_render_error_page(struct hp_buf *out, const char *path,
                                  const char *diag)
{
    error_page(out, path, diag, true);
}
