/*
 * guestbook/account.c - accounts: signing up, logging in and out, and the
 * token for the JSON API.
 *
 *   GET  /guestbook/account          the log-in and sign-up forms, or your
 *                                    account page once logged in
 *   POST /guestbook/account/signup   name=...&password=...
 *   POST /guestbook/account/login    name=...&password=...
 *   POST /guestbook/account/logout
 *   POST /guestbook/account/token    a new API token (the old one stops)
 *
 * Passwords are kept only as argon2id hashes (hp_password_hash). A logged-in
 * session holds "uid" and "user" (the name); the session lives in the
 * database, so every worker process sees it and it survives restarts.
 */
#include "_app.h"
#include "_token.h"

HP_PKG("libsodium"); /* for _token.h: linked into this page only */

/* The account page, or the forms with an error (status 400, 403, 409). */
static int account_page(hp_req *req, int status, const char *error)
{
    long long me = current_user(req);
    json_t *d = page_data(req, me ? "Your account" : "Log in or sign up");
    const char *token = hp_session_get(req, "new_token");

    /* The forms need a token before login: this starts a session that holds
     * nothing else, so it lives 24 minutes unused (session-anonymous-
     * lifetime): a crawler does not fill the database with two-week rows. */
    if (!me)
        json_object_set_new(d, "csrf_token", json_string(hp_csrf_token(req)));
    if (error)
        json_object_set_new(d, "error", json_string(error));
    if (token) { /* shown once: the database keeps only its digest */
        json_object_set_new(d, "new_token", json_string(token));
        hp_session_del(req, "new_token");
    }
    json_object_set_new(d, "host", json_string(hp_header(req, "Host")));
    return render(req, status, "templates/account.tpl", d);
}

HP_HANDLER(http_handler)
{
    return account_page(req, HP_OK, NULL);
}

/* A sign-up or log-in must come from our form, in the session it started.
 * The server checks CSRF tokens only on requests that carry a session, and
 * a POST from another site carries none (the cookie is SameSite=Lax):
 * without this, another site could log its visitors in to an account of
 * its own (login CSRF) and read what they post. A request with a session
 * and an unsafe method has passed the server's token check, so that
 * session is the one our form's page started. */
static bool from_our_form(hp_req *req)
{
    return hp_session_exists(req);
}

static int log_in(hp_req *req, long long id, const char *name,
                  const char *flash)
{
    /* A new session id at login: an id someone planted in this browser
     * before (session fixation) must not become a logged-in one. */
    if (hp_session_regenerate(req) != HP_OK ||
        hp_session_set(req, "uid", hp_sprintf(req, "%lld", id)) != HP_OK ||
        hp_session_set(req, "user", name) != HP_OK)
        return 500;
    return redirect_with(req, "/guestbook/", flash);
}

static bool valid_name(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    return n >= 1 && n <= 32 &&
           strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                     "0123456789._-") == n;
}

HP_HANDLER(signup)
{
    const char *name = hp_arg(req, "name"), *pw = hp_arg(req, "password");

    if (!post_only(req))
        return 405;
    if (!from_our_form(req)) /* back to the form, which starts one */
        return redirect_with(req, "/guestbook/account", NULL);
    if (!valid_name(name))
        return account_page(req, 400,
                            "A name is 1 to 32 letters, digits, "
                            "dots, dashes or underscores.");
    if (!pw || strlen(pw) < 8 || strlen(pw) > 200)
        return account_page(req, 400, "A password is 8 to 200 bytes long.");
    const char *hash = hp_password_hash(req, pw);
    if (!hash)
        return 500;
    /* A taken name inserts nothing (where a failed INSERT would fail the
     * whole transaction); RETURNING gives the new id on both engines. */
    hp_db_res *r = hp_db_query(hp_db(req),
                               "INSERT INTO users (name, pwhash)"
                               " VALUES ($1, $2) ON CONFLICT (name) DO NOTHING"
                               " RETURNING id",
                               name, hash);
    if (!r)
        return 500;
    if (!hp_db_next(r))
        return account_page(req, 409, "That name is taken.");
    return log_in(req, hp_db_int(r, 0), name,
                  "Welcome! Your account is ready.");
}

/* Checked when the name is unknown, so that the answer takes as long as
 * for a wrong password: timing tells nobody which names exist. */
static const char dummy_hash[] =
    "$argon2id$v=19$m=65536,t=2,p=1$ZgNzsHUs7OpcE/qJgkEUZw$"
    "vfXbMqmM4IY4YiBoDSOKwDtg39MqYYcP9SPKdYrT0ic";

HP_HANDLER(login)
{
    const char *name = hp_arg(req, "name"), *pw = hp_arg(req, "password");

    if (!post_only(req))
        return 405;
    if (!from_our_form(req)) /* back to the form, which starts one */
        return redirect_with(req, "/guestbook/account", NULL);
    hp_db_res *r = hp_db_query(
        hp_db(req), "SELECT id, pwhash FROM users WHERE name = $1", name);
    if (!r)
        return 500;
    bool found = hp_db_next(r);
    if (!hp_password_verify(found ? hp_db_text(r, 1) : dummy_hash,
                            pw ? pw : "") ||
        !found)
        return account_page(req, 403, "Wrong name or password.");
    return log_in(req, hp_db_int(r, 0), name, "Welcome back!");
}

HP_HANDLER(logout)
{
    if (!post_only(req))
        return 405;
    hp_session_destroy(req); /* the row goes; the browser drops the cookie */
    hp_redirect(req, "/guestbook/");
    return HP_OK;
}

HP_HANDLER(token)
{
    long long me = current_user(req);
    char token[TOKEN_HEX], digest[TOKEN_HEX];

    if (!post_only(req))
        return 405;
    if (!me)
        return 403;
    token_new(token);
    token_digest(token, digest);
    if (hp_db_execv(hp_db(req), "UPDATE users SET token = $1 WHERE id = $2",
                    HP_TEXT(digest), HP_INT(me)) != HP_OK)
        return 500;
    /* Kept in the session only until the account page shows it. */
    hp_session_set(req, "new_token", token);
    return redirect_with(req, "/guestbook/account", NULL);
}
