/*
 * guestbook/api/entries.c - the guestbook as JSON, for scripts:
 *
 *   GET    /guestbook/api/entries      {"entries": [ENTRY, ...]}, newest 100
 *   GET    /guestbook/api/entries/42   ENTRY, or 404
 *   POST   /guestbook/api/entries      {"body": "..."}, with a token: 201
 *                                      and the new ENTRY, Location its URL
 *   DELETE /guestbook/api/entries/42   one of yours, with a token: 204
 *
 * ENTRY is {"id", "author", "body", "created", "picture" (true when it has
 * one: /guestbook/entry/picture/ID), "mine"}. Errors are {"error": "..."}
 * with 400 (malformed JSON, a bad body), 401 (no or a wrong token), 404 or
 * 405. The token comes from the account page (api/_app.c checks it):
 *
 *   curl -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json'
 * \ -d '{"body": "Hello from curl"}'
 * http://127.0.0.1:8080/guestbook/api/entries
 */
#include "../_app.h"

/* The user api/_app.c found for the request's token, or 0. */
static long long api_user(hp_req *req)
{
    long long *id = hp_req_get(req, "api_user");
    return id ? *id : 0;
}

static int list(hp_req *req)
{
    hp_db_res *r =
        hp_db_query(hp_db(req), ENTRY_SELECT " ORDER BY e.id DESC LIMIT 100");
    if (!r)
        return 500;
    json_t *entries = json_array();
    while (hp_db_next(r))
        json_array_append_new(entries, entry_json(r, api_user(req)));
    json_t *out = json_pack("{s:o}", "entries", entries);
    int rc = hp_write_json(req, out); /* does not take the reference */
    json_decref(out);
    return rc == HP_OK ? HP_OK : 500;
}

static int show(hp_req *req, long long id)
{
    hp_db_res *r =
        hp_db_queryv(hp_db(req), ENTRY_SELECT " WHERE e.id = $1", HP_INT(id));
    if (!r)
        return 500;
    if (!hp_db_next(r))
        return json_error(req, 404, "no such entry");
    json_t *out = entry_json(r, api_user(req));
    int rc = hp_write_json(req, out);
    json_decref(out);
    return rc == HP_OK ? HP_OK : 500;
}

static int create(hp_req *req)
{
    json_t *in = hp_json_body(req); /* owned by the request: no decref */
    const char *body = json_string_value(json_object_get(in, "body"));

    if (!api_user(req))
        return unauthorized(req, false, "posting needs a token");
    if (!in)
        return json_error(req, 400,
                          hp_json_error(req) ? hp_json_error(req)
                                             : "send application/json");
    if (!valid_text(body, MAX_ENTRY))
        return json_error(req, 400, "body: a string of 1 to 2000 characters");
    hp_db_res *r = hp_db_queryv(hp_db(req),
                                "INSERT INTO entries (user_id, body)"
                                " VALUES ($1, $2) RETURNING id",
                                HP_INT(api_user(req)), HP_TEXT(body));
    if (!r || !hp_db_next(r))
        return 500;
    long long id = hp_db_int(r, 0);
    hp_status(req, 201);
    hp_set_header(req, "Location",
                  hp_sprintf(req, "/guestbook/api/entries/%lld", id));
    return show(req, id);
}

static int delete_entry(hp_req *req, long long id)
{
    hp_db *db = hp_db(req);

    if (!api_user(req))
        return unauthorized(req, false, "deleting needs a token");
    if (hp_db_execv(db, "DELETE FROM entries WHERE id = $1 AND user_id = $2",
                    HP_INT(id), HP_INT(api_user(req))) != HP_OK)
        return 500;
    if (hp_db_changes(db) == 0)
        return json_error(req, 404, "no such entry of yours");
    hp_status(req, 204);
    return HP_OK;
}

HP_HANDLER(http_handler)
{
    const char *method = hp_method(req);
    unsigned n = hp_path_param_count(req);
    long long id = path_id(req);

    if (n > 0 && !id)
        return json_error(req, 404, "no such entry");
    if (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0)
        return id ? show(req, id) : list(req);
    if (strcmp(method, "POST") == 0 && !id)
        return create(req);
    if (strcmp(method, "DELETE") == 0 && id)
        return delete_entry(req, id);
    hp_set_header(req, "Allow", id ? "GET, HEAD, DELETE" : "GET, HEAD, POST");
    return json_error(req, 405, "method not allowed");
}
HP_PATH_PARAMS(http_handler); /* /guestbook/api/entries/42 */
