/*
 * session.h - sessions, CSRF and libsodium as the rest of the server sees
 * them: the server starts and stops the session store (server.c), the
 * publisher checks CSRF before a handler (publish.c). Pages see only
 * hotpub.h (hp_session_*, hp_csrf_token, hp_password_*).
 */
#ifndef HP_SESSION_H
#define HP_SESSION_H

#include "hp.h"

/* sodium_init, once per process (main.c calls it at start; every user
 * calls it too, so unit tests need nothing). 0, or -1 after logging. */
int hp_crypto_init(void);

/* ---- session.c ------------------------------------------------------------
 */

/* Take the session settings from cfg and start this process's purge
 * thread (when session-purge-interval is not 0 and a database is
 * configured). Call after the default pool is open. */
void hp_session_server_start(const struct hp_config *cfg);
/* Stop the purge thread; before the default pool closes. */
void hp_session_server_stop(void);

/* The CSRF token of the request's live session, or NULL when it has none;
 * with create, a session is created for it first (NULL only on failure).
 * Request memory. *failed (may be NULL) is set when the session could not
 * be read (the database failed), as opposed to there being none (also
 * when no database is configured: then there are no sessions). */
const char *hp_session__csrf(hp_req *req, bool create, bool *failed);

/* The request brings a well-formed session cookie (cheap: no database). */
bool hp_session__cookie_present(hp_req *req);

/* Seconds a session holding npairs key/value pairs lives unused: lifetime
 * (session-lifetime), or anon_lifetime (session-anonymous-lifetime) for a
 * session that holds nothing but its CSRF token; never more than lifetime.
 * docs/pages.md, "Expiry". */
long long hp_session__lifetime(size_t npairs, long long lifetime,
                               long long anon_lifetime);
/* A session read at now (Unix seconds) whose row expires at expires and
 * whose lifetime is life is due a renewal: its expiry is older than one
 * step (1% of life, at least 60 s), or later than life allows (the data
 * was emptied, or the setting lowered). */
bool hp_session__renew_due(long long expires, long long now, long long life);

/* Cookie ids: 32 random bytes as 43 base64url characters (no padding). */
#define HP_SESSION_ID_LEN 43
/* s is shaped like an id (length and alphabet); says nothing of whether
 * a session has it. */
bool hp_session__id_ok(const char *s);
/* What the table stores for an id: SHA-256 of its text, 64 hex digits. */
void hp_session__id_hash(const char *id, char out[65]);

/* The session's key/value pairs as one text column: "k=v&k=v" with every
 * byte outside [A-Za-z0-9-._~] percent-encoded (so '&', '=', '%' and
 * non-ASCII survive). encode: malloc'd. decode: -1 on malformed text,
 * else the number of pairs, written to *keys / *vals (malloc'd arrays
 * whose strings live in the one malloc'd block *block). */
char *hp_session__encode(size_t n, const char *const *keys,
                         const char *const *vals);
int hp_session__decode(const char *text, char ***keys, char ***vals,
                       char **block);

/* ---- csrf.c ---------------------------------------------------------------
 */

/* Before the handler (publish.c): HP_OK, or 403 with the body written, for
 * an unsafe method on a request with a live session and no valid token,
 * unless the handler is exempt; 503 when the session cannot be read. */
int hp_csrf_check(hp_req *req, hp_version *served_by);
/* The method changes state (anything but GET, HEAD, OPTIONS, TRACE:
 * RFC 9110 9.2.1's safe methods). */
bool hp_csrf_unsafe_method(const char *method);
/* The browser says another site sent req (Sec-Fetch-Site cross-site or
 * same-site; else an Origin whose authority is not the Host field's). */
bool hp_csrf_cross_origin(hp_req *req);
/* Constant-time equality of two tokens of any lengths. */
bool hp_csrf_token_eq(const char *a, const char *b);

#endif
