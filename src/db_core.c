/*
 * db_core.c - the database layer's shared core (db_core.h): recording a
 * call's error on a connection, and results: building them (for the
 * drivers), keeping the connection's list of open results, freeing them.
 *
 * Owns: struct hp_db_res's memory (its rows, its 4 KiB chunks, the engine
 * object it keeps), the error fields of struct hp_db.
 * May not touch: any engine API, pools, the statement cache, transactions:
 * it depends on nothing of the database layer, so both drivers and db.c
 * can depend on it without a cycle.
 */
#include "db_core.h"

#include <assert.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- errors -------------------------------------------------------------- */

void hp_db__clear_error(hp_db *db)
{
    free(db->errmsg);
    db->errmsg = NULL;
    db->sqlstate[0] = '\0';
    db->errcode = 0;
    db->wait_cut = false;
}

void hp_db__fail(hp_db *db, const char *msg, const char *sqlstate, int code)
{
    size_t n = strlen(msg ? msg : "");
    free(db->errmsg);
    /* Engines end messages with newlines; a log line should not. */
    while (n && isspace((unsigned char)msg[n - 1]))
        n--;
    db->errmsg = hp_xmalloc(n + 1);
    memcpy(db->errmsg, msg ? msg : "", n);
    db->errmsg[n] = '\0';
    snprintf(db->sqlstate, sizeof db->sqlstate, "%s",
             sqlstate && *sqlstate ? sqlstate : "HY000");
    db->errcode = code;
}

/* ---- results: the connection's list -------------------------------------- */

struct hp_db_chunk {
    struct hp_db_chunk *next;
    size_t used, cap;
    char data[];
};

hp_db_res *hp_db__res_new(hp_db *db)
{
    hp_db_res *r = hp_xcalloc(1, sizeof *r);
    r->db = db;
    r->cur = -1;
    return r;
}

void hp_db__res_link(hp_db_res *r)
{
    hp_db *db = r->db;
    assert(r->prev == NULL && r->next == NULL && db->results != r);
    r->next = db->results;
    if (db->results)
        db->results->prev = r;
    db->results = r;
}

static void res_unlink(hp_db_res *r)
{
    if (r->prev)
        r->prev->next = r->next;
    else if (r->db->results == r)
        r->db->results = r->next;
    if (r->next)
        r->next->prev = r->prev;
    r->prev = r->next = NULL;
}

void hp_db__res_free(hp_db_res *r)
{
    if (!r)
        return;
    res_unlink(r);
    for (struct hp_db_chunk *c = r->chunks, *n; c; c = n) {
        n = c->next;
        free(c);
    }
    if (r->keep && r->keep_free)
        r->keep_free(r->keep);
    if (r->names)
        for (int i = 0; i < r->ncols; i++)
            free(r->names[i]);
    free(r->names);
    free(r->cells);
    free(r);
}

void hp_db__res_free_all(hp_db *db)
{
    while (db->results)
        hp_db__res_free(db->results);
}

/* ---- results: building --------------------------------------------------- */

void hp_db__res_set_cols(hp_db_res *r, int ncols)
{
    assert(ncols >= 0 && r->names == NULL && r->nrows == 0);
    r->ncols = ncols;
    r->names = hp_xcalloc((size_t)(ncols > 0 ? ncols : 1), sizeof *r->names);
}

void hp_db__res_set_name(hp_db_res *r, int col, const char *name)
{
    assert(col >= 0 && col < r->ncols && r->names[col] == NULL);
    r->names[col] = hp_xstrdup(name ? name : "");
}

struct hp_db_cell *hp_db__res_add_row(hp_db_res *r)
{
    size_t w = (size_t)r->ncols;
    assert(r->names != NULL); /* the columns come first */
    if (r->nrows == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 8;
        r->cells =
            hp_xrealloc(r->cells, r->cap * (w ? w : 1) * sizeof *r->cells);
    }
    struct hp_db_cell *row = r->cells + r->nrows * w;
    memset(row, 0, w * sizeof *row);
    r->nrows++;
    return row;
}

/* Bump allocation in 4 KiB chunks; a big value gets a chunk of its own. */
char *hp_db__res_copy(hp_db_res *r, const void *p, size_t len)
{
    struct hp_db_chunk *c = r->chunks;
    if (!c || c->cap - c->used < len + 1) {
        size_t cap = len + 1 > 4000 ? len + 1 : 4000;
        c = hp_xmalloc(sizeof *c + cap);
        c->used = 0;
        c->cap = cap;
        c->next = r->chunks;
        r->chunks = c;
    }
    char *d = c->data + c->used;
    if (len)
        memcpy(d, p, len);
    d[len] = '\0';
    c->used += len + 1;
    return d;
}

void hp_db__fail_tx_control(hp_db *db, const char *word, size_t n,
                            bool autocommit)
{
    char *msg = hp_xasprintf(
        autocommit
            ? "%.*s is not allowed on a request's handle without its "
              "transaction (in autocommit, or after it rolled back): each "
              "statement commits on its own; for a transaction of your own "
              "take a pool handle (hp_db_pool_acquire)"
            : "%.*s is not allowed in a request's transaction: the request "
              "commits it when it ends, or rolls it back when it fails (use "
              "SAVEPOINT, ROLLBACK TO and RELEASE inside it)",
        (int)(n > 20 ? 20 : n), word);
    hp_db__fail(db, msg, "25001", 0);
    free(msg);
}
