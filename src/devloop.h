/*
 * devloop.h - the browser side of the edit-refresh loop in dev mode: the
 * live-reload event stream (GET /_hotpub/events), the script injected into
 * HTML responses, and the styled compile-error page (devloop.c).
 */
#ifndef HP_DEVLOOP_H
#define HP_DEVLOOP_H

#include "hp.h"

#include <microhttpd.h>

#define HP_EVENTS_URL "/_hotpub/events"
/* The injected script's source and the overlay's stylesheet (served by
 * server.c under /_hotpub/, by the same rules as the rest of it). */
#define HP_LIVE_RELOAD_JS_URL "/_hotpub/live-reload.js"
#define HP_LIVE_RELOAD_CSS_URL "/_hotpub/live-reload.css"

/* Turn live reload on (dev mode); root is the canonical document root the
 * event paths are made relative to. Off by default: then every call below
 * but hp_devloop_on is a no-op. */
void hp_devloop_start(const char *root);
/* End every event stream (before libmicrohttpd stops: a suspended
 * connection must be resumed first) and refuse new ones. */
void hp_devloop_stop(void);
bool hp_devloop_on(void);

/*
 * A file under the root went live (error NULL: a module or template was
 * published, a static file was written) or failed to (error: its
 * diagnostic). Every open event stream gets one Server-Sent Event
 * (WHATWG HTML, "Server-sent events") named "reload": data:
 * {"path":"/rel","error":...,"html":...} where html is the styled overlay
 * for an error. Any thread.
 */
void hp_devloop_changed(const char *abs_path, const char *error);

/* The response of GET /_hotpub/events: text/event-stream, fed by
 * hp_devloop_changed; the connection is suspended while there is nothing
 * to send, so it holds no thread. NULL when off or out of memory. */
struct MHD_Response *hp_devloop_events(struct MHD_Connection *conn);

/*
 * Insert the live-reload script before the last </body> of an HTML body
 * (none: nothing inserted). deps are the absolute paths of the files the
 * response was made from (page, its application modules, templates): a
 * change of one of them, or of a static file, reloads the page; a change
 * of a .css file swaps it in place.
 */
void hp_devloop_inject(struct hp_buf *body, const char *const *deps,
                       size_t ndeps, const char *nonce);

/* The script element itself, appended to out (a page hotpub writes
 * itself): <script src="/_hotpub/live-reload.js" data-hotpub-live-reload
 * data-deps="[JSON list of root-relative paths, HTML-escaped]">, external
 * so that a Content-Security-Policy allowing 'self' scripts runs it; with
 * nonce="..." when nonce is not NULL (a policy that allows scripts by
 * nonce only, 'strict-dynamic' among them; the overlay's stylesheet link
 * then carries it too). */
void hp_devloop_script(struct hp_buf *out, const char *const *deps,
                       size_t ndeps, const char *nonce);

/*
 * The nonce a Content-Security-Policy field value allows script elements
 * by (CSP Level 3 §6.7.3: the 'nonce-...' source of script-src-elem, else
 * script-src, else default-src), copied into out (len bytes); NULL when
 * there is none or it is not base64 (RFC 4648 §4 or §5) or too long.
 */
const char *hp_devloop_csp_nonce(const char *csp, char *out, size_t len);

/* The body of GET /_hotpub/live-reload.js (JavaScript) and of
 * /_hotpub/live-reload.css (the diagnostic's stylesheet, which the
 * overlay links). Static strings. */
const char *hp_devloop_js(void);
const char *hp_devloop_css(void);

/* The compile diagnostic as HTML, without style (classes hp-err, src,
 * hit, ln of hp_devloop_css): every file:line of diag as a link with the
 * source lines around it, then the diagnostic. Appends to out. The
 * overlay's content (no <style>: a page's CSP would refuse it). A path
 * ending in .tpl is a template's ("... could not be rendered"). */
void hp_devloop_error_html(struct hp_buf *out, const char *path,
                           const char *diag);
/* The dev compile-error page's body: the stylesheet in a <style>, then
 * hp_devloop_error_html. Appends to out. */
void hp_devloop_error_page(struct hp_buf *out, const char *path,
                           const char *diag);
/* The same page for a failed hp_render (tplcache.c): path is the template
 * the diagnostic names, else the module that rendered ("PATH: a template
 * could not be rendered"). */
void hp_devloop_render_error_page(struct hp_buf *out, const char *path,
                                  const char *diag);

#endif
