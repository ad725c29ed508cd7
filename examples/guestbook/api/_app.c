/*
 * guestbook/api/_app.c - the JSON API's application module (every page
 * under api/; guestbook/_app.c above runs first).
 *
 * The API authenticates each request by the token it carries
 * (Authorization: Bearer TOKEN, RFC 6750), not by the session cookie. A
 * page on another site can make a browser send our cookie, never our
 * token, so CSRF cannot reach the API: HP_CSRF_EXEMPT turns the server's
 * check off for it. For the same reason no page under api/ takes the
 * session's word for who is asking.
 *
 * prepare: a request with a valid token gets its user's id for the page
 * (hp_req_get(req, "api_user")); a wrong token gets 401 before the page
 * runs; no token goes on anonymous (reading is public).
 */
#include "../_app.h"
#include "../_token.h"

#include <strings.h>

HP_PKG("libsodium");
HP_CSRF_EXEMPT;

HP_HOOK(prepare)
{
    const char *auth = hp_header(req, "Authorization");
    char digest[TOKEN_HEX];

    if (!auth)
        return HP_OK;
    if (strncasecmp(auth, "Bearer ", 7) != 0) /* the scheme is caseless */
        return unauthorized(req, true, "send Authorization: Bearer TOKEN");
    token_digest(auth + 7, digest);
    hp_db_res *r = hp_db_query(hp_db(req),
                               "SELECT id FROM users WHERE token = $1", digest);
    if (!r)
        return 500;
    if (!hp_db_next(r))
        return unauthorized(req, true, "invalid token");
    long long *id = hp_alloc(req, sizeof *id);
    if (!id)
        return 500;
    *id = hp_db_int(r, 0);
    return hp_req_set(req, "api_user", id) == HP_OK ? HP_OK : 500;
}
