/*
 * db_lex.c - the SQL lexer of the database layer: where comments, string
 * constants and quoted identifiers begin and end, by PostgreSQL's rules or
 * SQLite's, so that the text tests above it (db.c's screen of transaction
 * control, db_stmt.c's test of statements that change the session) read
 * the words the engine reads, not words hidden in a string or a comment.
 *
 * Owns: nothing but these pure functions (no state; no allocation but
 * hp_db__lex_mb_plain's copy of a long text in a client-only encoding).
 * May not touch: any engine, connection or pool; it calls nothing of the
 * layer.
 */
#include "db_lex.h"
#include "hp.h"

#include <ctype.h>
#include <stddef.h>
#include <string.h>
#include <strings.h>

bool hp_db__lex_word_char(unsigned char c)
{
    return isalnum(c) || c == '_' || c == '$' || c >= 0x80;
}

enum hp_db_lex_mb hp_db__lex_mb_named(const char *e)
{
    static const struct {
        const char *name;
        enum hp_db_lex_mb mb;
    } names[] = {{"SJIS", HP_MB_SJIS},      {"SHIFT_JIS_2004", HP_MB_SJIS},
                 {"BIG5", HP_MB_2},         {"GBK", HP_MB_2},
                 {"UHC", HP_MB_2},          {"JOHAB", HP_MB_JOHAB},
                 {"GB18030", HP_MB_GB18030}};
    for (size_t i = 0; e && i < sizeof names / sizeof *names; i++)
        if (strcasecmp(e, names[i].name) == 0)
            return names[i].mb;
    return HP_MB_NONE;
}

/* The bytes of the character at p (p < end), as pg_encoding_mblen. */
static size_t mb_len(const unsigned char *p, const unsigned char *end,
                     enum hp_db_lex_mb mb)
{
    size_t n = 1;
    if (*p >= 0x80)
        switch (mb) {
        case HP_MB_NONE:
            break;
        case HP_MB_SJIS:
            n = *p >= 0xa1 && *p <= 0xdf ? 1 : 2;
            break;
        case HP_MB_2:
            n = 2;
            break;
        case HP_MB_JOHAB:
            n = *p == 0x8f ? 3 : 2;
            break;
        case HP_MB_GB18030:
            n = p + 1 < end && p[1] >= 0x30 && p[1] <= 0x39 ? 4 : 2;
            break;
        }
    return n < (size_t)(end - p) ? n : (size_t)(end - p);
}

char *hp_db__lex_mb_plain(const char *sql, enum hp_db_lex_mb mb, char *buf,
                          size_t size)
{
    if (mb == HP_MB_NONE)
        return NULL;
    const unsigned char *s = (const unsigned char *)sql, *p = s;
    const unsigned char *end = s + strlen(sql);
    char *out = NULL;
    while (p < end) {
        size_t n = mb_len(p, end, mb);
        for (size_t i = 1; i < n; i++) {
            if (p[i] >= 0x80)
                continue;
            if (!out) {
                size_t len = (size_t)(end - s) + 1;
                out = len <= size ? buf : hp_xmalloc(len);
                memcpy(out, sql, len);
            }
            out[p - s + i] = (char)0x80;
        }
        p += n;
    }
    return out;
}

/* How a quoted token ends (quoted_end). */
enum {
    Q_BACKSLASH = 1, /* a backslash escapes the next byte (E'')          */
    Q_DOUBLED = 2,   /* the quote doubled stands for itself ('it''s')     */
    Q_CONTINUED = 4, /* PostgreSQL's '...' continued by another '...'      */
};

/* After a PostgreSQL string's closing quote at p: the opening quote of
 * its continuation, or NULL. scan.l's quotecontinue: blanks and --
 * comments holding at least one newline, then a quote. */
static const char *continuation(const char *p, const char *end)
{
    bool newline = false;
    while (p < end) {
        if (*p == '\n' || *p == '\r') {
            newline = true;
            p++;
        } else if (*p == ' ' || *p == '\t' || *p == '\f' || *p == '\v') {
            p++;
        } else if (*p == '-' && p + 1 < end && p[1] == '-') {
            while (p < end && *p != '\n' && *p != '\r')
                p++;
        } else {
            break;
        }
    }
    return newline && p < end && *p == '\'' ? p : NULL;
}

/* Past a quoted token whose quote is q (p: after the opening quote), by
 * how (Q_*). */
static const char *quoted_end(const char *p, const char *end, char q, int how,
                              struct hp_db_lex *t)
{
    t->body = p;
    for (; p < end; p++) {
        if ((how & Q_BACKSLASH) && *p == '\\' && p + 1 < end) {
            p++; /* \x53, \123, \u0053 may spell any letter */
            if (strchr("xXuU01234567", *p))
                t->escapes = true;
        } else if (*p == q) {
            if ((how & Q_DOUBLED) && p + 1 < end && p[1] == q) {
                p++;
                continue;
            }
            const char *more =
                how & Q_CONTINUED ? continuation(p + 1, end) : NULL;
            if (more) { /* the same string, read by the same rules */
                p = more;
                continue;
            }
            t->body_end = p;
            return p + 1;
        }
    }
    t->body_end = end;
    return end;
}

/* A block comment at p ("/" "*"): PostgreSQL's nest, SQLite's end at the
 * first close. */
static const char *block_comment_end(const char *p, const char *end, bool pg)
{
    int depth = 0;
    while (p + 1 < end) {
        if (p[0] == '/' && p[1] == '*' && (pg || depth == 0)) {
            depth++;
            p += 2;
        } else if (p[0] == '*' && p[1] == '/') {
            p += 2;
            if (--depth == 0)
                return p;
        } else {
            p++;
        }
    }
    return end;
}

/* A PostgreSQL dollar quote at p ("$tag$" ... "$tag$", the tag a letter or
 * '_' then letters, digits, '_'; or empty); p when p is not one ($1 is a
 * parameter). */
static const char *dollar_end(const char *p, const char *end,
                              struct hp_db_lex *t)
{
    const char *q = p + 1;
    if (q < end && *q != '$' &&
        !(isalpha((unsigned char)*q) || *q == '_' || (unsigned char)*q >= 0x80))
        return p;
    while (q < end && *q != '$' && hp_db__lex_word_char((unsigned char)*q))
        q++;
    if (q >= end || *q != '$')
        return p;
    size_t n = (size_t)(q - p) + 1; /* the delimiter, both '$' */
    t->kind = HP_LEX_STRING;
    t->body = q + 1;
    for (const char *s = q + 1; s + n <= end; s++)
        if (*s == '$' && memcmp(s, p, n) == 0) {
            t->body_end = s;
            return s + n;
        }
    t->body_end = end;
    return end;
}

/* PostgreSQL's prefixed quotes and dollar quotes ('...' and "..." are
 * read by hp_db__lex_skip). */
static const char *pg_skip(const char *p, const char *end, struct hp_db_lex *t)
{
    char c = *p;
    if ((c == 'E' || c == 'e') && p + 1 < end && p[1] == '\'') {
        t->kind = HP_LEX_STRING;
        return quoted_end(p + 2, end, '\'',
                          Q_BACKSLASH | Q_DOUBLED | Q_CONTINUED, t);
    }
    /* B'0101', X'1F': no escape, no doubled quote ('' ends it and opens
     * another string), whatever standard_conforming_strings says. */
    if ((c == 'B' || c == 'b' || c == 'X' || c == 'x') && p + 1 < end &&
        p[1] == '\'') {
        t->kind = HP_LEX_STRING;
        return quoted_end(p + 2, end, '\'', Q_CONTINUED, t);
    }
    /* A U&'' with standard_conforming_strings off is an error for the
     * whole text (nothing of it runs): read as with it on. */
    if ((c == 'U' || c == 'u') && p + 2 < end && p[1] == '&' &&
        (p[2] == '\'' || p[2] == '"')) {
        t->kind = p[2] == '"' ? HP_LEX_IDENT : HP_LEX_STRING;
        t->escapes = true;
        return quoted_end(p + 3, end, p[2],
                          Q_DOUBLED | (p[2] == '\'' ? Q_CONTINUED : 0), t);
    }
    if (c == '$')
        return dollar_end(p, end, t);
    return p;
}

static const char *sqlite_skip(const char *p, const char *end,
                               struct hp_db_lex *t)
{
    if (*p == '`') {
        t->kind = HP_LEX_IDENT;
        return quoted_end(p + 1, end, '`', Q_DOUBLED, t);
    }
    if (*p == '[') {
        const char *e = memchr(p + 1, ']', (size_t)(end - p - 1));
        t->kind = HP_LEX_IDENT;
        t->body = p + 1;
        t->body_end = e ? e : end;
        return e ? e + 1 : end;
    }
    return p;
}

const char *hp_db__lex_skip(const char *p, const char *end,
                            enum hp_db_lex_rules pg, struct hp_db_lex *t)
{
    *t = (struct hp_db_lex){.kind = HP_LEX_NONE};
    if (p >= end)
        return p;
    if (p[0] == '-' && p + 1 < end && p[1] == '-') {
        t->kind = HP_LEX_COMMENT;
        while (p < end && *p != '\n' && !(pg && *p == '\r'))
            p++;
        return p;
    }
    if (p[0] == '/' && p + 1 < end && p[1] == '*') {
        t->kind = HP_LEX_COMMENT;
        return block_comment_end(p, end, pg);
    }
    if (*p == '"') {
        t->kind = HP_LEX_IDENT;
        return quoted_end(p + 1, end, '"', Q_DOUBLED, t);
    }
    if (*p == '\'') { /* PostgreSQL: as the connection's server reads it */
        t->kind = HP_LEX_STRING;
        return quoted_end(p + 1, end, '\'',
                          Q_DOUBLED | (pg ? Q_CONTINUED : 0) |
                              (pg == HP_LEX_PG_BACKSLASH ? Q_BACKSLASH : 0),
                          t);
    }
    return pg ? pg_skip(p, end, t) : sqlite_skip(p, end, t);
}

const char *hp_db__lex_next_word(const char *p, const char *end,
                                 enum hp_db_lex_rules pg, size_t *n)
{
    struct hp_db_lex t;
    while (p < end) {
        const char *q = hp_db__lex_skip(p, end, pg, &t);
        if (t.kind == HP_LEX_STRING || t.kind == HP_LEX_IDENT)
            return NULL;
        if (q != p) {
            p = q;
        } else if (isalpha((unsigned char)*p) || *p == '_' ||
                   (unsigned char)*p >= 0x80) {
            const char *w = p;
            while (p < end && hp_db__lex_word_char((unsigned char)*p))
                p++;
            *n = (size_t)(p - w);
            return w;
        } else if (isspace((unsigned char)*p)) {
            p++;
        } else {
            return NULL;
        }
    }
    return NULL;
}
