/*
 * dashboard.c - the /_hotpub/ dashboard: one self-contained HTML page (no
 * external assets, no framework) and the Server-Sent Events feed that
 * keeps it live.
 *
 * Owns: the page's markup and script, the feed's streams and their ticker
 * thread. May not touch: what a snapshot says (server.c builds
 * status.json's body and hands the feed a function that writes it).
 *
 * Why a stream pins no thread: libmicrohttpd asks the stream's content
 * reader for bytes on the event-loop thread that owns the connection.
 * Between events the reader suspends the connection and returns 0 (the
 * pairing microhttpd.h prescribes for "no data yet"); the ticker thread
 * resumes every suspended stream once a second. A hundred open dashboards
 * cost a hundred idle sockets and one snapshot each a second, and no
 * handler thread the pages need.
 */
#include "dashboard.h"

#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>

#define PERIOD_S 1.0

struct stream {
    struct MHD_Connection *conn;
    void (*snapshot)(struct hp_buf *b);
    struct hp_buf buf; /* the event being sent */
    size_t off;        /* ... bytes of it sent */
    double next;       /* when the next event is due (hp_now) */
    bool suspended;    /* under F.mu */
    struct stream *prev, *next_s;
};

static struct {
    pthread_mutex_t mu; /* the list and each stream's suspended flag */
    pthread_cond_t cv;
    struct stream *list;
    atomic_bool stopping;
    bool running;
    pthread_t ticker;
} F = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

/* Under F.mu: resume every suspended stream. */
static void resume_all(void)
{
    for (struct stream *s = F.list; s; s = s->next_s) {
        if (s->suspended) {
            s->suspended = false;
            MHD_resume_connection(s->conn);
            hp_resumed(); /* a loop without an inter-thread channel */
        }
    }
}

static void *ticker_main(void *arg)
{
    pthread_mutex_lock(&F.mu);
    while (!atomic_load(&F.stopping)) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 1;
        pthread_cond_timedwait(&F.cv, &F.mu, &ts);
        resume_all();
    }
    resume_all();
    pthread_mutex_unlock(&F.mu);
    return arg;
}

int hp_dashboard_start(void)
{
    atomic_store(&F.stopping, false);
    if (pthread_create(&F.ticker, NULL, ticker_main, NULL) != 0) {
        hp_log_error("cannot start the dashboard's ticker thread");
        return -1;
    }
    F.running = true;
    return 0;
}

void hp_dashboard_stop(void)
{
    if (!F.running)
        return;
    pthread_mutex_lock(&F.mu);
    atomic_store(&F.stopping, true);
    pthread_cond_signal(&F.cv);
    pthread_mutex_unlock(&F.mu);
    pthread_join(F.ticker, NULL);
    F.running = false;
}

/* The next event: status.json's body on one data line (its newlines are
 * whitespace between members; the strings in it escape theirs). */
static void next_event(struct stream *s)
{
    s->buf.len = 0;
    s->off = 0;
    hp_buf_puts(&s->buf, "event: status\ndata: ");
    size_t from = s->buf.len;
    s->snapshot(&s->buf);
    for (size_t i = from; i < s->buf.len; i++)
        if (s->buf.p[i] == '\n' || s->buf.p[i] == '\r')
            s->buf.p[i] = ' ';
    hp_buf_puts(&s->buf, "\n\n");
}

static ssize_t stream_read(void *cls, uint64_t pos, char *out, size_t max)
{
    struct stream *s = cls;
    (void)pos;
    if (s->off == s->buf.len) {
        if (atomic_load(&F.stopping))
            return MHD_CONTENT_READER_END_OF_STREAM;
        double now = hp_now();
        if (now < s->next) {
            /* Nothing due: park the connection until the ticker. */
            pthread_mutex_lock(&F.mu);
            s->suspended = true;
            MHD_suspend_connection(s->conn);
            pthread_mutex_unlock(&F.mu);
            return 0;
        }
        next_event(s);
        s->next = now + PERIOD_S;
        if (!s->buf.p)
            return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    size_t n = s->buf.len - s->off;
    if (n > max)
        n = max;
    memcpy(out, s->buf.p + s->off, n);
    s->off += n;
    return (ssize_t)n;
}

static void stream_free(void *cls)
{
    struct stream *s = cls;
    pthread_mutex_lock(&F.mu);
    if (s->prev)
        s->prev->next_s = s->next_s;
    else
        F.list = s->next_s;
    if (s->next_s)
        s->next_s->prev = s->prev;
    pthread_mutex_unlock(&F.mu);
    hp_buf_free(&s->buf);
    free(s);
}

struct MHD_Response *hp_dashboard_events(struct MHD_Connection *conn,
                                         void (*snapshot)(struct hp_buf *b))
{
    struct stream *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->conn = conn;
    s->snapshot = snapshot;
    /* The browser reconnects 2 s after losing the stream (a restarted
     * worker, a proxy's timeout). */
    hp_buf_puts(&s->buf, "retry: 2000\n\n");
    struct MHD_Response *r = MHD_create_response_from_callback(
        MHD_SIZE_UNKNOWN, 16 * 1024, stream_read, s, stream_free);
    if (!r) {
        hp_buf_free(&s->buf);
        free(s);
        return NULL;
    }
    pthread_mutex_lock(&F.mu);
    s->next_s = F.list;
    if (F.list)
        F.list->prev = s;
    F.list = s;
    pthread_mutex_unlock(&F.mu);
    MHD_add_response_header(r, "Content-Type", "text/event-stream");
    MHD_add_response_header(r, "Cache-Control", "no-store");
    /* nginx buffers proxied responses unless told not to. */
    MHD_add_response_header(r, "X-Accel-Buffering", "no");
    return r;
}

/* The page. The script builds every table from the feed's events with
 * textContent (never markup), so module paths and error text cannot
 * inject HTML. Rates and recent latency are differences between two
 * successive events. */
static const char page_html[] =
    "<!doctype html>\n"
    "<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
    "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\n"
    "<title>hotpub</title>\n"
    "<style>\n"
    "body{font:14px/1.4 system-ui,sans-serif;margin:1em 2em;color:#222}\n"
    "h1{font-size:1.3em}h2{font-size:1.1em;margin-top:1.5em}\n"
    "table{border-collapse:collapse;margin:.3em 0}\n"
    "th,td{padding:.15em .6em;border-bottom:1px solid #ddd;text-align:left}\n"
    "td.n{text-align:right;font-variant-numeric:tabular-nums}\n"
    ".bad{color:#b00}.ok{color:#070}.muted{color:#888}\n"
    "#state{font-weight:bold}\n"
    "</style></head><body>\n"
    "<h1>hotpub <span id=\"version\"></span> <span id=\"state\" "
    "class=\"muted\">connecting</span></h1>\n"
    "<p class=\"muted\">Updated <span id=\"updated\">never</span>. Live from "
    "<code>/_hotpub/status.events</code>; the same data as "
    "<code>/_hotpub/status.json</code>.</p>\n"
    "<h2>Workers</h2>\n"
    "<table "
    "id=\"workers\"><thead><tr><th>slot</th><th>pid</th><th>state</"
    "th><th>requests</th><th>connections</th><th>threads "
    "busy/live</th><th>heartbeat</th></tr></thead><tbody></tbody></table>\n"
    "<p id=\"restarts\" class=\"muted\"></p>\n"
    "<h2>Modules</h2>\n"
    "<table id=\"modules\"><thead><tr><th>module</th><th>kind</th><th>version "
    "(each worker)</th><th>in flight</th><th>running/queued (this "
    "worker)</th><th>retired, awaiting unload</th><th>builds</th><th>last "
    "error</th></tr></thead><tbody></tbody></table>\n"
    "<h2>Quarantined versions</h2>\n"
    "<table "
    "id=\"quarantine\"><thead><tr><th>module</th><th>handler</th><th>crashes</"
    "th><th>signal</th><th>since</th></tr></thead><tbody></tbody></table>\n"
    "<h2>Reload history</h2>\n"
    "<table "
    "id=\"reloads\"><thead><tr><th>when</th><th>module</th><th>compile</"
    "th><th>result</th><th>pid</th><th>error</th></tr></thead><tbody></tbody></"
    "table>\n"
    "<h2>Pages</h2>\n"
    "<table id=\"pages\"><thead><tr><th>page</th><th>req/s</th><th>latency "
    "(avg, last s)</th><th>requests</th><th>latency "
    "(avg)</th><th>4xx</th><th>5xx</th></tr></thead><tbody></tbody></table>\n"
    "<h2>Database pools</h2>\n"
    "<table id=\"pools\"><thead><tr><th>pool</th><th>in "
    "use</th><th>idle</th><th>max</th><th>waiting</th><th>acquires</"
    "th><th>timeouts</th></tr></thead><tbody></tbody></table>\n"
    "<script>\n"
    "\"use strict\";\n"
    "var last = {};\n"
    "function el(t, text, cls) {\n"
    "  var e = document.createElement(t);\n"
    "  if (text !== undefined && text !== null) e.textContent = String(text);\n"
    "  if (cls) e.className = cls;\n"
    "  return e;\n"
    "}\n"
    "function rows(id, list, cells) {\n"
    "  var tb = document.querySelector(\"#\" + id + \" tbody\");\n"
    "  var frag = document.createDocumentFragment();\n"
    "  (list || []).forEach(function (x) {\n"
    "    var tr = el(\"tr\");\n"
    "    cells(x).forEach(function (c) {\n"
    "      var td = typeof c === \"object\" && c !== null ? el(\"td\", c.t, "
    "c.c) : el(\"td\", c);\n"
    "      tr.appendChild(td);\n"
    "    });\n"
    "    frag.appendChild(tr);\n"
    "  });\n"
    "  tb.replaceChildren(frag);\n"
    "}\n"
    "function num(v) { return {t: v, c: \"n\"}; }\n"
    "function ms(s) { return (s * 1000).toFixed(1) + \" ms\"; }\n"
    "function when(t) { return new Date(t * 1000).toLocaleTimeString(); }\n"
    "function short(p, root) { return root && p.indexOf(root + \"/\") === 0 ? "
    "p.slice(root.length + 1) : p; }\n"
    "function render(d) {\n"
    "  var n = d.node || {}, pr = d.processes || {}, root = d.root;\n"
    "  document.getElementById(\"version\").textContent = d.server.version;\n"
    "  var st = document.getElementById(\"state\");\n"
    "  st.textContent = n.draining ? \"draining\" : \"serving\";\n"
    "  st.className = n.draining ? \"bad\" : \"ok\";\n"
    "  document.getElementById(\"updated\").textContent = new "
    "Date().toLocaleTimeString();\n"
    "  var slots = {};\n"
    "  (pr.workers || []).forEach(function (w) { slots[w.slot] = w; });\n"
    "  rows(\"workers\", n.workers, function (w) {\n"
    "    var g = slots[w.slot] || {};\n"
    "    return [w.slot, w.pid, g.state || \"single\", num(w.requests), "
    "num(w.connections),\n"
    "            num(w.busy + \"/\" + w.threads), g.heartbeat_age !== "
    "undefined ? g.heartbeat_age + \" s\" : \"\"];\n"
    "  });\n"
    "  var rc = pr.restart_causes || {};\n"
    "  document.getElementById(\"restarts\").textContent = \"Worker restarts: "
    "\" +\n"
    "    (Object.keys(rc).map(function (k) { return k + \" \" + rc[k]; "
    "}).join(\", \") || \"none\") +\n"
    "    (pr.crashes !== undefined ? \"; crashes \" + pr.crashes + \", handler "
    "timeouts \" + pr.timeouts : \"\");\n"
    "  var local = {};\n"
    "  (d.modules || []).forEach(function (m) { local[short(m.path, root)] = "
    "m; });\n"
    "  var mods = (n.modules || []).slice().sort(function (a, b) { return "
    "a.path < b.path ? -1 : 1; });\n"
    "  rows(\"modules\", mods, function (m) {\n"
    "    var ws = m.workers, l = local[m.path] || {}, sum = function (k) {\n"
    "      return ws.reduce(function (a, w) { return a + w[k]; }, 0);\n"
    "    };\n"
    "    var err = ws.map(function (w) { return w.error; }).filter(Boolean)[0] "
    "|| \"\";\n"
    "    var vers = ws.map(function (w) { return w.version || \"-\"; });\n"
    "    return [m.path, l.kind || \"\", vers.join(\", \"), "
    "num(sum(\"inflight\")),\n"
    "            num(l.running !== undefined ? l.running + \"/\" + l.queued : "
    "\"\"),\n"
    "            num(sum(\"retired\") + \" (\" + sum(\"retired_inflight\") + "
    "\" in flight)\"),\n"
    "            num(sum(\"builds\")), {t: err, c: \"bad\"}];\n"
    "  });\n"
    "  rows(\"quarantine\", pr.quarantine, function (q) {\n"
    "    return [short(q.path, root), q.handler, num(q.crashes), q.signal || "
    "\"exit\", when(q.since)];\n"
    "  });\n"
    "  rows(\"reloads\", n.reloads, function (r) {\n"
    "    return [when(r.when), r.page, ms(r.compile_seconds),\n"
    "            {t: r.result, c: r.result === \"ok\" ? \"ok\" : \"bad\"}, "
    "r.pid, {t: r.error || \"\", c: \"bad\"}];\n"
    "  });\n"
    "  var prev = last.pages || {}, dt = last.time ? n.time - last.time : 0, "
    "now = {};\n"
    "  rows(\"pages\", n.pages, function (p) {\n"
    "    now[p.page] = p;\n"
    "    var o = prev[p.page], dn = o ? p.requests - o.requests : 0;\n"
    "    var rate = dt > 0 ? (dn / dt).toFixed(1) : \"\";\n"
    "    var lat = dn > 0 ? ms((p.seconds - o.seconds) / dn) : \"\";\n"
    "    return [p.page, num(rate), num(lat), num(p.requests), "
    "num(ms(p.seconds / p.requests)),\n"
    "            num(p[\"4xx\"]), num(p[\"5xx\"])];\n"
    "  });\n"
    "  last = {time: n.time, pages: now};\n"
    "  rows(\"pools\", n.pools, function (p) {\n"
    "    return [p.name, num(p.in_use), num(p.idle), num(p.max), "
    "num(p.waiting), num(p.acquires), num(p.timeouts)];\n"
    "  });\n"
    "}\n"
    "var es = new EventSource(\"status.events\");\n"
    "es.addEventListener(\"status\", function (e) { "
    "render(JSON.parse(e.data)); });\n"
    "es.onerror = function () {\n"
    "  var st = document.getElementById(\"state\");\n"
    "  st.textContent = \"reconnecting\"; st.className = \"muted\";\n"
    "};\n"
    "</script>\n"
    "</body></html>\n";

void hp_dashboard_html(struct hp_buf *b)
{
    hp_buf_append(b, page_html, sizeof page_html - 1);
}
