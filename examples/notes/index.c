/*
 * notes/index.c - a small notes board on the database (docs/database.md).
 *
 *   GET  /notes          the notes, newest first, and a form to add one
 *   POST /notes/add      body=...   add a note, then back to /notes
 *   POST /notes/delete   id=...     delete a note, then back to /notes
 *   GET  /notes/json     the notes as JSON
 *
 * Each handler calls hp_db(req): a pooled connection with a transaction
 * begun. The server commits it when the handler returns HP_OK and rolls it
 * back when it returns an error status; the connection goes back to the
 * pool either way. Values reach SQL only as $n parameters.
 */
#include "../_lib/layout.h"

#include <stdlib.h>
#include <string.h>

#define MAX_NOTE 1000

static void note_item(hp_req *req, hp_db_res *r)
{
    hp_printf(req, "<li><form method=\"post\" action=\"/notes/delete\">"
                   "<input type=\"hidden\" name=\"id\" value=\"%lld\">"
                   "<button title=\"delete\">&times;</button></form> ",
              hp_db_int(r, 0));
    hp_write_html(req, hp_db_text(r, 1));
    hp_puts(req, " <small>");
    hp_write_html(req, hp_db_text(r, 2));
    hp_puts(req, " UTC</small></li>\n");
}

HP_HANDLER(http_handler)
{
    hp_db_res *r = hp_db_query(hp_db(req), "SELECT id, body, created FROM notes"
                                           " ORDER BY id DESC LIMIT 200");
    if (!r)
        return 500;
    layout_header(req, "Notes");
    hp_puts(req, "<form method=\"post\" action=\"/notes/add\">"
                 "<input name=\"body\" maxlength=\"1000\" required "
                 "autofocus placeholder=\"A new note\"> "
                 "<button>Add</button></form>\n");
    if (hp_db_nrows(r) == 0)
        hp_puts(req, "<p>No notes yet.</p>\n");
    hp_puts(req, "<ul class=\"notes\">\n");
    while (hp_db_next(r))
        note_item(req, r);
    hp_puts(req, "</ul>\n<p><a href=\"/notes/json\">as JSON</a></p>\n");
    layout_footer(req);
    return HP_OK;
}

/* A plain-text answer for a request the page refuses. */
static int refuse(hp_req *req, int status, const char *why)
{
    hp_set_header(req, "Content-Type", "text/plain; charset=utf-8");
    if (status == 405)
        hp_set_header(req, "Allow", "POST"); /* RFC 9110 15.5.6 */
    hp_puts(req, why);
    return status;
}

HP_HANDLER(add)
{
    const char *body = hp_arg(req, "body");
    if (strcmp(hp_method(req), "POST") != 0)
        return refuse(req, 405, "POST a form with a body field\n");
    if (!body || !*body || strlen(body) > MAX_NOTE)
        return refuse(req, 400, "a note is 1 to 1000 characters\n");
    if (hp_db_exec(hp_db(req), "INSERT INTO notes (body) VALUES ($1)",
                   body) != HP_OK)
        return 500; /* the log has the database's message */
    hp_redirect(req, "/notes/");
    return HP_OK;
}

HP_HANDLER(delete)
{
    const char *id = hp_arg(req, "id");
    char *end = NULL;
    long long n = id ? strtoll(id, &end, 10) : 0;
    if (strcmp(hp_method(req), "POST") != 0)
        return refuse(req, 405, "POST a form with an id field\n");
    if (!id || !*id || *end || n <= 0)
        return refuse(req, 400, "id must be a note's number\n");
    hp_db *db = hp_db(req);
    if (hp_db_execv(db, "DELETE FROM notes WHERE id = $1", HP_INT(n)) != HP_OK)
        return 500;
    if (hp_db_changes(db) == 0)
        return refuse(req, 404, "no such note\n");
    hp_redirect(req, "/notes/");
    return HP_OK;
}

/* jansson comes with <hotpub.h>; hp_write_json sets the Content-Type. */
HP_HANDLER(json)
{
    hp_db_res *r = hp_db_query(hp_db(req), "SELECT id, body, created FROM notes"
                                           " ORDER BY id DESC LIMIT 200");
    if (!r)
        return 500;
    json_t *notes = json_array();
    while (hp_db_next(r))
        json_array_append_new(notes, json_pack("{s:I, s:s?, s:s?}", "id",
                                               (json_int_t)hp_db_int(r, 0),
                                               "body", hp_db_text(r, 1),
                                               "created", hp_db_text(r, 2)));
    json_t *doc = json_pack("{s:o}", "notes", notes);
    int rc = hp_write_json(req, doc);
    json_decref(doc);
    return rc == HP_OK ? HP_OK : 500;
}
