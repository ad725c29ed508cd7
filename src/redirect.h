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
 * https_listen ("ADDR:PORT"; left out when 443). One libmicrohttpd thread.
 * 0, or -1 after logging why (fd is closed then).
 */
int hp_redirect_start(int fd, const char *https_listen);
/* Stop, closing the socket. Idempotent. */
void hp_redirect_stop(void);

#endif
