/*
 * guestbook/index.c - the front page, and the forms that change it:
 *
 *   GET  /guestbook/         the latest entries; the form to sign, logged in
 *   POST /guestbook/post     body=..., picture=<file> (multipart/form-data)
 *   POST /guestbook/delete   id=...: one of your own entries
 *
 * The POSTs need the session's CSRF token: the forms carry it, and without
 * it the server answers 403 before this code runs. Values reach SQL only
 * as $n parameters; templates escape what they print.
 */
#include "_app.h"

#include <stdio.h>

/* The page, with an error and the text being written when a post was
 * refused (status 400 or 413), so nothing typed is lost. */
static int front_page(hp_req *req, int status, const char *error,
                      const char *draft)
{
    long long me = current_user(req);
    hp_db_res *r =
        hp_db_query(hp_db(req), ENTRY_SELECT " ORDER BY e.id DESC LIMIT 50");
    if (!r)
        return 500; /* the log has the database's message */
    json_t *entries = json_array();
    while (hp_db_next(r))
        json_array_append_new(entries, entry_json(r, me));

    json_t *d = page_data(req, "Recent entries");
    json_object_set_new(d, "entries", entries);
    if (error)
        json_object_set_new(d, "error", json_string(error));
    if (draft) /* NULL from json_string when not UTF-8: then not kept */
        json_object_set_new(d, "draft", json_string(draft));
    return render(req, status, "templates/index.tpl", d);
}

HP_HANDLER(http_handler)
{
    return front_page(req, HP_OK, NULL, NULL);
}

/* The media type of a picture, from its first bytes, or NULL. The client's
 * Content-Type and file name are only its word: a "picture" that is really
 * HTML, served back as text/html, would run script on our origin. */
static const char *image_type(const unsigned char *p, size_t n)
{
    if (n >= 8 && memcmp(p, "\x89PNG\r\n\x1a\n", 8) == 0)
        return "image/png";
    if (n >= 3 && memcmp(p, "\xff\xd8\xff", 3) == 0)
        return "image/jpeg";
    if (n >= 6 && (memcmp(p, "GIF87a", 6) == 0 || memcmp(p, "GIF89a", 6) == 0))
        return "image/gif";
    if (n >= 12 && memcmp(p, "RIFF", 4) == 0 && memcmp(p + 8, "WEBP", 4) == 0)
        return "image/webp";
    return NULL;
}

/* An upload's bytes, in request memory. The server has written the file to
 * a temporary path while the body arrived, and removes it after the
 * request; a bigger application would rename() it somewhere instead. */
static unsigned char *read_upload(hp_req *req, const struct hp_file *f)
{
    unsigned char *buf = hp_alloc(req, f->size);
    FILE *in = fopen(f->path, "rb");
    size_t got = buf && in ? fread(buf, 1, f->size, in) : 0;
    if (in)
        fclose(in);
    return got == f->size ? buf : NULL;
}

HP_HANDLER(post)
{
    long long me = current_user(req);
    const char *body = hp_arg(req, "body");
    const struct hp_file *pic = hp_file(req, "picture");
    const unsigned char *bytes = NULL;
    const char *type = NULL;

    if (!post_only(req))
        return 405;
    if (!me)
        return 403;
    if (!valid_text(body, MAX_ENTRY))
        return front_page(req, 400, "An entry is 1 to 2000 characters.", body);
    if (pic && pic->size > 0) { /* size 0: no file was chosen */
        if (pic->size > MAX_PICTURE)
            return front_page(req, 413, "A picture is at most 512 KiB.", body);
        bytes = read_upload(req, pic);
        type = bytes ? image_type(bytes, pic->size) : NULL;
        if (!type)
            return front_page(req, 400, "Not a PNG, JPEG, GIF or WebP.", body);
    }
    if (hp_db_execv(hp_db(req),
                    "INSERT INTO entries (user_id, body, picture, picture_type)"
                    " VALUES ($1, $2, $3, $4)",
                    HP_INT(me), HP_TEXT(body),
                    bytes ? HP_BLOB(bytes, pic->size) : HP_NULL,
                    HP_TEXT(type)) != HP_OK)
        return 500;
    return redirect_with(req, "/guestbook/", "Thank you for signing!");
}

HP_HANDLER(delete)
{
    long long me = current_user(req);
    const char *id = hp_arg(req, "id");

    if (!post_only(req))
        return 405;
    if (!me)
        return 403;
    hp_db *db = hp_db(req);
    /* The owner is part of the statement: sending another's id deletes
     * nothing. */
    if (hp_db_execv(db, "DELETE FROM entries WHERE id = $1 AND user_id = $2",
                    HP_INT(id ? atoll(id) : 0), HP_INT(me)) != HP_OK)
        return 500;
    if (hp_db_changes(db) == 0)
        return 404;
    return redirect_with(req, "/guestbook/", "Entry deleted.");
}
