/*
 * dashboard.h - the /_hotpub/ dashboard (dashboard.c): its HTML page and
 * its Server-Sent Events feed, as server.c, its only user, sees them.
 */
#ifndef HP_DASHBOARD_H
#define HP_DASHBOARD_H

#include "hp.h"

#include <microhttpd.h>

/* The dashboard page: one HTML document, its style and script inline (no
 * external assets), which renders the feed's events. */
void hp_dashboard_html(struct hp_buf *b);

/*
 * A text/event-stream response (WHATWG HTML §9.2) for conn: one `status`
 * event at once and then one a second, each snapshot(b) (status.json's
 * body) on one data line. The stream runs on libmicrohttpd's event-loop
 * thread that owns the connection, never on a handler thread: between
 * events the connection is suspended (MHD_suspend_connection) and the
 * feed's ticker thread resumes it a second later. NULL if out of memory.
 */
struct MHD_Response *hp_dashboard_events(struct MHD_Connection *conn,
                                         void (*snapshot)(struct hp_buf *b));

/* Start the ticker thread. 0, or -1 after logging why. */
int hp_dashboard_start(void);
/* Shutdown: every stream ends after its current event (so libmicrohttpd
 * can stop: no connection stays suspended) and no new one starts; the
 * ticker thread is joined. Idempotent. */
void hp_dashboard_stop(void);

#endif
