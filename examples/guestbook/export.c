/*
 * guestbook/export.c - GET /guestbook/export: every entry as CSV (RFC 4180),
 * streamed. Rows are read 500 at a time and each batch is sent (hp_flush)
 * before the next is read, so neither the server nor the database holds a
 * whole export in memory, however long the guestbook grows.
 */
#include "_app.h"

/* One field, always quoted, inner quotes doubled (RFC 4180 2.6, 2.7). A
 * leading = + - @ would be a formula to a spreadsheet (CSV injection): a '
 * in front keeps it text. */
static void csv_field(hp_req *req, const char *s)
{
    hp_puts(req, *s && strchr("=+-@", *s) ? "\"'" : "\"");
    for (const char *q; (q = strchr(s, '"')); s = q + 1) {
        hp_write(req, s, (size_t)(q - s));
        hp_puts(req, "\"\"");
    }
    hp_puts(req, s);
    hp_puts(req, "\"");
}

HP_HANDLER(http_handler)
{
    long long last = 0;

    hp_set_header(req, "Content-Type", "text/csv; charset=utf-8");
    hp_set_header(req, "Content-Disposition",
                  "attachment; filename=\"guestbook.csv\"");
    hp_puts(req, "id,author,created,body\r\n");
    for (;;) {
        /* Each batch starts after the last id sent (keyset pagination:
         * no OFFSET that rereads what was already sent). */
        hp_db_res *r = hp_db_queryv(hp_db(req),
                                    ENTRY_SELECT " WHERE e.id > $1"
                                                 " ORDER BY e.id LIMIT 500",
                                    HP_INT(last));
        if (!r)
            return 500; /* after a flush: the stream is cut short */
        if (hp_db_nrows(r) == 0)
            return HP_OK;
        while (hp_db_next(r)) {
            last = hp_db_int(r, 0);
            hp_printf(req, "%lld,", last);
            csv_field(req, hp_db_text(r, 1));
            hp_puts(req, ",");
            csv_field(req, hp_db_text(r, 3));
            hp_puts(req, ",");
            csv_field(req, hp_db_text(r, 2));
            hp_puts(req, "\r\n");
        }
        hp_db_res_free(r);
        if (hp_flush(req) < 0)
            return HP_OK; /* the client went away */
    }
}
