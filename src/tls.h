/*
 * tls.h - HTTPS credentials (tls.c) as server.c, their only user, sees
 * them: the certificate and key of --tls-cert/--tls-key read into memory
 * and handed to libmicrohttpd, which speaks TLS through GnuTLS.
 */
#ifndef HP_TLS_H
#define HP_TLS_H

#include "hp.h"

#include <microhttpd.h>

/*
 * Read cfg->tls_cert and cfg->tls_key (PEM) at serving start; both unset
 * means plain HTTP. 0, or -1 after logging why (one without the other, an
 * unreadable or empty file, a build of libmicrohttpd without TLS). A
 * renewed certificate is read by the next worker generation (SIGHUP).
 */
int hp_tls_load(const struct hp_config *cfg);
/*
 * hp_tls_load's checks without keeping anything, for the supervisor before
 * it forks workers (start, SIGHUP): the files readable, each PEM file
 * parsed by GnuTLS, the certificate for the key. 0 (or plain HTTP), or -1
 * after logging what failed, naming the file.
 */
int hp_tls_check(const struct hp_config *cfg);
/* Whether this process serves HTTPS. */
bool hp_tls_on(void);
/* libmicrohttpd's options for HTTPS (certificate, key, priorities) into
 * opts (room for 3), ending before an MHD_OPTION_END the caller adds;
 * returns how many (0 when plain HTTP). They point into memory kept until
 * hp_tls_free. */
size_t hp_tls_mhd_options(struct MHD_OptionItem *opts);
void hp_tls_free(void);

#endif
