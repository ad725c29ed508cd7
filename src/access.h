/*
 * access.h - the access log (access.c), as server.c uses it.
 */
#ifndef HP_ACCESS_H
#define HP_ACCESS_H

#include "hp.h"

/* Open the log: a path (appended to), "-" for standard output, "off" or
 * NULL for none. Returns 0, or -1 after logging why. */
int hp_access_open(const char *spec);
/* True when lines are being logged (callers may skip gathering fields). */
bool hp_access_enabled(void);
/*
 * One line in the Combined Log Format: addr (numeric, "" for unknown),
 * the request line's three parts, the status, the body bytes sent,
 * Referer and User-Agent (NULL for "-"). Buffered; thread-safe.
 */
void hp_access_line(const char *addr, const char *method, const char *uri,
                    const char *version, int status, uint64_t length,
                    const char *referer, const char *user_agent);
/* The same with the request line whole, as received (a request refused
 * before it was parsed: "get / HTTP/1.1"), escaped as the parts are. */
void hp_access_line_raw(const char *addr, const char *request_line, int status,
                        uint64_t length, const char *referer,
                        const char *user_agent);
/*
 * Append s to b as one access-log field: bytes outside printable ASCII, '"'
 * and '\\' become \xHH (upper-case hex), as nginx writes them, so a client
 * cannot end a quoted field and forge the ones after it. Every field a
 * client supplies (request line parts, Referer, User-Agent) goes through it.
 */
void hp_access_escape(struct hp_buf *b, const char *s);
/*
 * The process is dying (a crash, a page's exit): write what is buffered
 * now and every later line at once. Async-signal-safe (access.c says
 * what it cannot save). False if the buffer could not be written.
 */
bool hp_access_dying(void);
/*
 * One line written at once with write(2), not buffered (Referer and
 * User-Agent NULL: "-"; each cut to 512 bytes): for the answers a dying
 * process or the handler-timeout watchdog writes on a socket.
 * Async-signal-safe.
 */
void hp_access_line_now(const char *addr, const char *method, const char *uri,
                        const char *version, int status, uint64_t length,
                        const char *referer, const char *user_agent);
/* Write what is buffered (the server calls it once a second). */
void hp_access_flush(void);
/* SIGUSR1: reopen the file after logrotate moved it. */
void hp_access_reopen(void);
/* The log's descriptor, or -1 when there is none. */
int hp_access_fd(void);
/* Flush and close. */
void hp_access_close(void);

#endif
