/*
 * redirect.h - the plain-HTTP listener that sends clients to HTTPS
 * (redirect.c), as server.c, its only user, sees it.
 */
#ifndef HP_REDIRECT_H
#define HP_REDIRECT_H

#include "hp.h"

/*
 * Answer every request on the listening socket fd (bound, listening; it
 * becomes the redirector's) with 308 Permanent Redirect to
 * https://HOST[:PORT]/TARGET (RFC 9110 §15.4.9: the method and body are
 * kept), HOST from the request's Host field, PORT the HTTPS port of
 * cfg->listen ("ADDR:PORT"; left out when 443). Any target the request
 * edge lets through (up to cfg->max_header) is redirected; one whose 308
 * would not fit libmicrohttpd's memory after all gets 414, logged. One
 * libmicrohttpd thread. 0, or -1 after logging why (fd is closed then).
 * cfg must outlive the redirector.
 */
int hp_redirect_start(int fd, const struct hp_config *cfg);
/* Stop, closing the socket. Idempotent. */
void hp_redirect_stop(void);

#endif
