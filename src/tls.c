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
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
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

/* Which of the two PEM files GnuTLS cannot read, said once: 0 if both
 * parse. */
static int check_parse(const struct hp_config *cfg, gnutls_datum_t *c,
                       gnutls_datum_t *k)
{
    gnutls_x509_crt_t crt;
    gnutls_x509_privkey_t pk;
    int r = gnutls_x509_crt_init(&crt);
    if (r >= 0) {
        r = gnutls_x509_crt_import(crt, c, GNUTLS_X509_FMT_PEM);
        gnutls_x509_crt_deinit(crt);
    }
    if (r < 0) {
        hp_log_error("cannot parse the PEM file %s (tls-cert): %s",
                     cfg->tls_cert, gnutls_strerror(r));
        return -1;
    }
    r = gnutls_x509_privkey_init(&pk);
    if (r >= 0) {
        r = gnutls_x509_privkey_import2(pk, k, GNUTLS_X509_FMT_PEM, NULL, 0);
        gnutls_x509_privkey_deinit(pk);
    }
    if (r < 0) {
        hp_log_error("cannot parse the PEM file %s (tls-key): %s", cfg->tls_key,
                     gnutls_strerror(r));
        return -1;
    }
    return 0;
}

/* The certificate and key as libmicrohttpd will take them
 * (gnutls_certificate_set_x509_key_mem): 0, or -1 after logging what is
 * wrong, naming the file (libmicrohttpd would only fail to start). */
static int check_pair(const struct hp_config *cfg, const char *cert,
                      const char *key)
{
    gnutls_certificate_credentials_t cred;
    gnutls_datum_t c = {(unsigned char *)(uintptr_t)cert,
                        (unsigned)strlen(cert)};
    gnutls_datum_t k = {(unsigned char *)(uintptr_t)key, (unsigned)strlen(key)};
    int r = gnutls_certificate_allocate_credentials(&cred);
    if (r < 0) {
        hp_log_error("GnuTLS: %s", gnutls_strerror(r));
        return -1;
    }
    r = gnutls_certificate_set_x509_key_mem(cred, &c, &k, GNUTLS_X509_FMT_PEM);
    gnutls_certificate_free_credentials(cred);
    if (r >= 0)
        return 0;
    if (r == GNUTLS_E_CERTIFICATE_KEY_MISMATCH)
        hp_log_error("the TLS certificate %s and key %s do not match (the "
                     "certificate is not for this private key)",
                     cfg->tls_cert, cfg->tls_key);
    else if (check_parse(cfg, &c, &k) == 0)
        hp_log_error("TLS certificate %s with key %s: %s", cfg->tls_cert,
                     cfg->tls_key, gnutls_strerror(r));
    return -1;
}

/* Both files read and checked into T: 0, or -1 after logging why. */
static int load(const struct hp_config *cfg)
{
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
    if (!T.key || check_pair(cfg, T.cert, T.key) < 0) {
        hp_tls_free();
        return -1;
    }
    return 0;
}

int hp_tls_check(const struct hp_config *cfg)
{
    if (!cfg->tls_cert && !cfg->tls_key)
        return 0;
    int rc = load(cfg);
    hp_tls_free();
    return rc;
}

int hp_tls_load(const struct hp_config *cfg)
{
    hp_tls_free();
    if (!cfg->tls_cert && !cfg->tls_key)
        return 0;
    if (load(cfg) < 0)
        return -1;
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
