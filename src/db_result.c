/*
 * db_result.c - what a page reads after a call: the rows of a result
 * (hp_db_next, hp_db_text, hp_db_int, ...), freeing a result early, and
 * the call's error and count of changed rows.
 *
 * Owns: the page-facing readers of struct hp_db_res and of the last call's
 * fields of struct hp_db; how a text cell reads as a number.
 * May not touch: any engine API, pools, statements: it depends only on
 * the core (db_core.c), whatever engine filled the result.
 */
#include "db_core.h"

#include <stdlib.h>
#include <limits.h>
#include <string.h>
#include <strings.h>

/* ---- errors and changes -------------------------------------------------- */

const char *hp_db_error(hp_db *db)
{
    return db ? db->errmsg : "no database connection";
}

const char *hp_db_sqlstate(hp_db *db)
{
    return db ? db->sqlstate : "08003"; /* connection_does_not_exist */
}

int hp_db_errcode(hp_db *db)
{
    return db ? db->errcode : 0;
}

long long hp_db_changes(hp_db *db)
{
    return db ? db->changes : 0;
}

/* ---- results ------------------------------------------------------------- */

void hp_db_res_free(hp_db_res *r)
{
    hp_db__res_free(r);
}

bool hp_db_next(hp_db_res *r)
{
    if (!r || r->cur >= (long)r->nrows)
        return false;
    r->cur++;
    return r->cur < (long)r->nrows;
}

size_t hp_db_nrows(hp_db_res *r)
{
    return r ? r->nrows : 0;
}

int hp_db_ncols(hp_db_res *r)
{
    return r ? r->ncols : 0;
}

const char *hp_db_colname(hp_db_res *r, int col)
{
    return r && col >= 0 && col < r->ncols ? r->names[col] : NULL;
}

int hp_db_col(hp_db_res *r, const char *name)
{
    for (int i = 0; r && name && i < r->ncols; i++)
        if (strcasecmp(r->names[i], name) == 0)
            return i;
    return -1;
}

static struct hp_db_cell *cell(hp_db_res *r, int col)
{
    if (!r || col < 0 || col >= r->ncols || r->cur < 0 ||
        r->cur >= (long)r->nrows)
        return NULL;
    struct hp_db_cell *c =
        &r->cells[(size_t)r->cur * (size_t)r->ncols + (size_t)col];
    return c->p ? c : NULL;
}

enum hp_db_type hp_db_coltype(hp_db_res *r, int col)
{
    struct hp_db_cell *c = cell(r, col);
    return c ? c->type : HP_DB_NULL;
}

bool hp_db_is_null(hp_db_res *r, int col)
{
    return cell(r, col) == NULL;
}

const char *hp_db_text(hp_db_res *r, int col)
{
    struct hp_db_cell *c = cell(r, col);
    return c ? c->p : NULL;
}

const void *hp_db_blob(hp_db_res *r, int col, size_t *len)
{
    struct hp_db_cell *c = cell(r, col);
    if (len)
        *len = c ? c->len : 0;
    return c ? c->p : NULL;
}

/* PostgreSQL's booleans read as numbers too. */
static bool bool_text(const char *p, long long *v)
{
    if (strcmp(p, "t") == 0 || strcmp(p, "true") == 0)
        *v = 1;
    else if (strcmp(p, "f") == 0 || strcmp(p, "false") == 0)
        *v = 0;
    else
        return false;
    return true;
}

/* A cell that is a plain decimal integer of at most 18 digits (what
 * PostgreSQL sends for int2/int4 and most int8): its value in *v without
 * strtoll's locale and base handling. Anything else is left to the
 * general path below, which gives the same value for these. */
static bool plain_int(const char *p, long long *v)
{
    bool neg = *p == '-';
    const char *d = p + neg;
    unsigned long long u = 0;
    size_t n = 0;
    for (; d[n] >= '0' && d[n] <= '9'; n++)
        u = u * 10 + (unsigned long long)(d[n] - '0');
    if (n == 0 || n > 18 || d[n] != '\0')
        return false;
    *v = neg ? -(long long)u : (long long)u;
    return true;
}

/* d as a long long, saturated as strtoll saturates a decimal text: a
 * value past either end gives LLONG_MAX or LLONG_MIN, NaN 0 (a plain cast
 * is undefined there, and x86 gives LLONG_MIN for 1e30: FRESH13-2). */
static long long from_double(double d)
{
    if (d != d)
        return 0;
    if (d >= 0x1p63)
        return LLONG_MAX;
    if (d < -0x1p63)
        return LLONG_MIN;
    return (long long)d;
}

long long hp_db_int(hp_db_res *r, int col)
{
    struct hp_db_cell *c = cell(r, col);
    long long v = 0;
    char *end;
    if (!c)
        return 0;
    if (c->has_num)
        return c->type == HP_DB_FLOAT ? from_double(c->num.f) : c->num.i;
    if (plain_int(c->p, &v))
        return v;
    if (bool_text(c->p, &v))
        return v;
    v = strtoll(c->p, &end, 10);
    if (*end == '.' || *end == 'e' || *end == 'E')
        return from_double(strtod(c->p, NULL));
    return v;
}

double hp_db_float(hp_db_res *r, int col)
{
    struct hp_db_cell *c = cell(r, col);
    long long b;
    if (!c)
        return 0;
    if (c->has_num)
        return c->type == HP_DB_FLOAT ? c->num.f : (double)c->num.i;
    if (bool_text(c->p, &b))
        return (double)b;
    return strtod(c->p, NULL);
}
