/*
 * tls.c - HTTPS: the PEM certificate chain and private key of --tls-cert
 * and --tls-key, read into memory for libmicrohttpd (MHD_USE_TLS, GnuTLS
 * underneath), and the GnuTLS priority string (--tls-priorities, TLS 1.2
 * and 1.3 only by default).
 *
 * Owns: the credentials' bytes. May not touch: connections (libmicrohttpd
 * does the handshakes on its event-loop threads; the listener hands it
 * accepted sockets as for plain HTTP).
 *
 * Renewal: each worker reads the files when it starts serving, so SIGHUP's
 * new worker generation serves the renewed certificate while the old
 * workers finish their requests with the old one; no request fails.
 */
#include "tls.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PEM_MAX (1 << 20) /* far above any certificate chain */

static struct {
    char *cert, *key;
    const char *priorities;
} T;

/* The whole file as a NUL-terminated string (GnuTLS takes PEM as C
 * strings). NULL after logging why. */
static char *read_pem(const char *path, const char *what)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        hp_log_error("%s %s: %s", what, path, strerror(errno));
        return NULL;
    }
    char *buf = hp_xmalloc(PEM_MAX + 1);
    size_t n = fread(buf, 1, PEM_MAX + 1, f);
    bool bad = ferror(f) || n == 0 || n > PEM_MAX;
    fclose(f);
    if (bad) {
        hp_log_error("%s %s: %s", what, path,
                     n > PEM_MAX ? "larger than 1 MiB" : "empty or unreadable");
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    return buf;
}

int hp_tls_load(const struct hp_config *cfg)
{
    hp_tls_free();
    if (!cfg->tls_cert && !cfg->tls_key)
        return 0;
    if (!cfg->tls_cert || !cfg->tls_key) {
        hp_log_error("HTTPS needs both tls-cert and tls-key");
        return -1;
    }
    if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
        hp_log_error("this libmicrohttpd was built without TLS support");
        return -1;
    }
    T.cert = read_pem(cfg->tls_cert, "TLS certificate");
    T.key = T.cert ? read_pem(cfg->tls_key, "TLS key") : NULL;
    if (!T.key) {
        hp_tls_free();
        return -1;
    }
    T.priorities = cfg->tls_priorities;
    return 0;
}

bool hp_tls_on(void)
{
    return T.cert != NULL;
}

size_t hp_tls_mhd_options(struct MHD_OptionItem *opts)
{
    if (!T.cert)
        return 0;
    opts[0] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0, T.cert};
    opts[1] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, T.key};
    if (!T.priorities)
        return 2;
    opts[2] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_PRIORITIES, 0,
                                      (void *)(uintptr_t)T.priorities};
    return 3;
}

void hp_tls_free(void)
{
    if (T.key) /* the private key does not linger in freed memory */
        memset(T.key, 0, strlen(T.key));
    free(T.cert);
    free(T.key);
    T.cert = T.key = NULL;
    T.priorities = NULL;
}
