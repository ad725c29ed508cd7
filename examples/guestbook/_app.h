/*
 * guestbook/_app.h - what the guestbook's pages share: who is logged in,
 * the data every template's layout reads, entries as JSON, and the small
 * answers (a redirect with a message, an API error). Everything is static
 * inline: each page compiles its own copy, and saving this header reloads
 * every page that includes it. Names starting with '_' are never served.
 */
#ifndef GUESTBOOK_APP_H
#define GUESTBOOK_APP_H

#include <hotpub.h>

#include <stdlib.h>
#include <string.h>

#define MAX_ENTRY 2000           /* characters in an entry */
#define MAX_PICTURE (512 * 1024) /* bytes in a picture */

/* An entry with its author, for entry_json(); append WHERE/ORDER BY. */
#define ENTRY_SELECT                                                           \
    "SELECT e.id, u.name, e.body, e.created, e.picture IS NOT NULL,"           \
    " e.user_id FROM entries e JOIN users u ON u.id = e.user_id"

/* The logged-in user's id (account.c puts it in the session at login), or
 * 0. Never creates a session. */
static inline long long current_user(hp_req *req)
{
    const char *id = hp_session_get(req, "uid");
    return id ? atoll(id) : 0;
}

/* The data every page template starts from: templates/header.tpl reads
 * title, user.name, csrf_token and flash. The flash (a one-time message
 * left by redirect_with) is removed from the session as it is shown. */
static inline json_t *page_data(hp_req *req, const char *title)
{
    json_t *d = json_pack("{s:s}", "title", title);
    const char *name = hp_session_get(req, "user");
    const char *flash = hp_session_get(req, "flash");

    if (name) {
        /* Only logged-in pages get the token: hp_csrf_token starts a
         * session, and anonymous readers need none. */
        json_object_set_new(d, "user", json_pack("{s:s}", "name", name));
        json_object_set_new(d, "csrf_token", json_string(hp_csrf_token(req)));
    }
    if (flash) {
        json_object_set_new(d, "flash", json_string(flash));
        hp_session_del(req, "flash");
    }
    return d;
}

/* Render a page template (relative to the page's directory) with data, and
 * free data. status HP_OK, or an error status (400, 404, ...) to answer
 * with the rendered page: the request then rolls back but keeps the body. */
static inline int render(hp_req *req, int status, const char *tpl, json_t *data)
{
    int rc = hp_render(req, tpl, data);
    json_decref(data);
    return rc != HP_OK ? rc : status;
}

/* 303 See Other after a POST that worked (so a reload does not post again),
 * leaving a message for the next page. Returns HP_OK: the request commits. */
static inline int redirect_with(hp_req *req, const char *location,
                                const char *flash)
{
    if (flash)
        hp_session_set(req, "flash", flash);
    hp_redirect(req, location);
    return HP_OK;
}

/* Forms change things by POST only (GET is safe, RFC 9110 9.2.1); for
 * another method, sets Allow for the 405 the caller returns. */
static inline bool post_only(hp_req *req)
{
    if (strcmp(hp_method(req), "POST") == 0)
        return true;
    hp_set_header(req, "Allow", "POST");
    return false;
}

/* 1 to max characters of UTF-8 text. Form fields are bytes, and a string
 * that is not UTF-8 could never go into a JSON answer (json_string refuses
 * it): refuse it at the door. */
static inline bool valid_text(const char *s, size_t max)
{
    json_t *j = s ? json_string(s) : NULL;
    size_t chars = 0;

    for (const char *p = s; j && *p; p++)
        chars += ((unsigned char)*p & 0xC0) != 0x80; /* not a continuation */
    json_decref(j);
    return chars >= 1 && chars <= max;
}

/* The id in /page/handler/42 (a path parameter, HP_PATH_PARAMS), or 0 when
 * there is not exactly one positive number. */
static inline long long path_id(hp_req *req)
{
    const char *s = hp_path_param(req, 0);
    char *end = NULL;
    long long id = s ? strtoll(s, &end, 10) : 0;
    return hp_path_param_count(req) == 1 && *end == '\0' && id > 0 ? id : 0;
}

/* One row of ENTRY_SELECT as the JSON object templates and the API use;
 * "mine" when viewer (a user id, or 0) wrote it. */
static inline json_t *entry_json(hp_db_res *r, long long viewer)
{
    return json_pack("{s:I, s:s, s:s, s:s, s:b, s:b}", "id",
                     (json_int_t)hp_db_int(r, 0), "author", hp_db_text(r, 1),
                     "body", hp_db_text(r, 2), "created", hp_db_text(r, 3),
                     "picture", (int)hp_db_int(r, 4), "mine",
                     viewer != 0 && hp_db_int(r, 5) == viewer);
}

/* An API error: {"error": why} with status (the body is kept; the request
 * rolls back). */
static inline int json_error(hp_req *req, int status, const char *why)
{
    json_t *e = json_pack("{s:s}", "error", why);
    hp_write_json(req, e);
    json_decref(e);
    return status;
}

/* 401 for the API (RFC 6750 3): no token where one is needed, or (invalid)
 * a token that is wrong. */
static inline int unauthorized(hp_req *req, bool invalid, const char *why)
{
    hp_set_header(req, "WWW-Authenticate",
                  invalid
                      ? "Bearer realm=\"guestbook\", error=\"invalid_token\""
                      : "Bearer realm=\"guestbook\"");
    return json_error(req, 401, why);
}

#endif
