/*
 * guestbook/entry.c - one entry, addressed by its id in the path:
 *
 *   GET /guestbook/entry/42           its page (404 when there is none)
 *   GET /guestbook/entry/picture/42   its picture
 *
 * HP_PATH_PARAMS lets a handler take the segments after it; without it,
 * /guestbook/entry/42 would be a 404 like any unknown handler.
 */
#include "_app.h"

HP_HANDLER(http_handler)
{
    long long id = path_id(req);
    hp_db_res *r =
        hp_db_queryv(hp_db(req), ENTRY_SELECT " WHERE e.id = $1", HP_INT(id));
    if (!r)
        return 500;
    bool found = hp_db_next(r);
    json_t *d = page_data(req, hp_sprintf(req, "Entry #%lld", id));
    if (found)
        json_object_set_new(d, "entry", entry_json(r, current_user(req)));
    return render(req, found ? HP_OK : 404, "templates/show.tpl", d);
}
HP_PATH_PARAMS(http_handler);

HP_HANDLER(picture)
{
    hp_db_res *r = hp_db_queryv(hp_db(req),
                                "SELECT picture, picture_type FROM entries"
                                " WHERE id = $1 AND picture IS NOT NULL",
                                HP_INT(path_id(req)));
    size_t len = 0;
    if (!r)
        return 500;
    if (!hp_db_next(r))
        return 404;
    const void *bytes = hp_db_blob(r, 0, &len);
    /* The type was read from the bytes at upload (index.c); _app.c's
     * nosniff keeps browsers from guessing another. */
    hp_set_header(req, "Content-Type", hp_db_text(r, 1));
    hp_set_header(req, "Cache-Control", "private, max-age=3600");
    return hp_write(req, bytes, len) == HP_OK ? HP_OK : 500;
}
HP_PATH_PARAMS(picture);
