/*
 * password.c - libsodium for the server: its one-time initialisation
 * (hp_crypto_init) and password hashing for pages (hp_password_hash,
 * hp_password_verify: argon2id through crypto_pwhash_str).
 *
 * Owns: the choice of password hashing algorithm and its cost parameters.
 * May not touch: requests beyond their memory (hp_alloc), sessions (their
 * random ids are session.c's), HTTP.
 *
 * The cost is libsodium's "interactive" level (argon2id, 2 passes over
 * 64 MiB), above OWASP's minimum for argon2id (19 MiB, 2 passes): about
 * 50-100 ms of one core per hash, which is why a page that hashes stays on
 * the handler threads (it is never promoted to the event loops). The
 * parameters are written into each hash string, so raising them later
 * still verifies every stored hash.
 */
#include "request.h"
#include "session.h"

#include <pthread.h>
#include <sodium.h>
#include <string.h>

static pthread_once_t sodium_once = PTHREAD_ONCE_INIT;
static int sodium_status = -1;

static void sodium_setup(void)
{
    /* 0 first time, 1 already done; -1 only when no entropy source. */
    sodium_status = sodium_init() < 0 ? -1 : 0;
    if (sodium_status < 0)
        hp_log_error("libsodium: sodium_init failed (no usable random "
                     "source?): sessions, CSRF tokens and passwords fail");
}

int hp_crypto_init(void)
{
    pthread_once(&sodium_once, sodium_setup);
    return sodium_status;
}

const char *hp_password_hash(hp_req *req, const char *password)
{
    HP_REFUSE_NULL(req, password, "password", NULL);
    if (hp_crypto_init() < 0)
        return NULL;
    char *out = hp_alloc(req, crypto_pwhash_STRBYTES);
    if (!out)
        return NULL;
    /* Fails only when the memory cannot be had (64 MiB per hash). */
    if (crypto_pwhash_str(out, password, strlen(password),
                          crypto_pwhash_OPSLIMIT_INTERACTIVE,
                          crypto_pwhash_MEMLIMIT_INTERACTIVE) != 0) {
        hp_log_error("%s: hp_password_hash: argon2id failed (out of memory "
                     "for its 64 MiB?)",
                     req->target.path);
        return NULL;
    }
    return out;
}

bool hp_password_verify(const char *hash, const char *password)
{
    if (!hash || !password || hp_crypto_init() < 0)
        return false;
    /* libsodium reads at most crypto_pwhash_STRBYTES of the hash: a
     * longer string is no hash it wrote. */
    if (strnlen(hash, crypto_pwhash_STRBYTES) >= crypto_pwhash_STRBYTES)
        return false;
    return crypto_pwhash_str_verify(hash, password, strlen(password)) == 0;
}
