/*
 * db_lex.h - the SQL lexer the database layer reads statements' text with
 * (db_lex.c): where comments, string constants and quoted identifiers
 * start and end, by PostgreSQL's rules or SQLite's.
 */
#ifndef HP_DB_LEX_H
#define HP_DB_LEX_H

#include <stdbool.h>
#include <stddef.h>

/* What hp_db__lex_skip stepped over. */
enum hp_db_lex_kind {
    HP_LEX_NONE,    /* nothing: p is a word, a blank or punctuation */
    HP_LEX_COMMENT, /* -- ... end of line, or a block comment        */
    HP_LEX_STRING,  /* a string constant ('...', E'...', $tag$...$tag$) */
    HP_LEX_IDENT,   /* a quoted identifier ("...", SQLite's `...`, [...]) */
};

struct hp_db_lex {
    enum hp_db_lex_kind kind;
    const char *body, *body_end; /* the quoted text (not for comments)   */
    bool escapes; /* PostgreSQL's U&'..', U&"..", or an E'..' with a
                     numeric escape (\x53): its text may spell any word
                     (U&"set\005fconfig" is set_config)                  */
};

/* Whether c may be part of an unquoted identifier or keyword: ASCII
 * letters, digits, '_', '$' (PostgreSQL) and any byte of a UTF-8
 * sequence (both engines take non-ASCII letters). */
bool hp_db__lex_word_char(unsigned char c);

/*
 * The end of the comment, string constant or quoted identifier that starts
 * at p (p < end), or p itself when none starts there (t->kind NONE). p
 * must be where a token can start (the caller steps over whole words
 * with hp_db__lex_word_char): E'...' and U&'...' are known by their
 * prefix. An unterminated one runs to end. pg: PostgreSQL's rules (SQL
 * Syntax, "Lexical Structure", 4.1: '' doubled in strings, E'' with
 * backslash escapes, U&'' and U&"", "" doubled in identifiers, $tag$
 * quotes, -- comments, nested block comments); else SQLite's ('' and ""
 * doubled, `..` and [..] identifiers, -- comments, block comments that do
 * not nest). standard_conforming_strings is taken as on (the default
 * since PostgreSQL 9.1): then only E'' strings know backslash escapes.
 */
const char *hp_db__lex_skip(const char *p, const char *end, bool pg,
                            struct hp_db_lex *t);

/* The next word at or after p (blanks and comments skipped), its length
 * in *n; NULL at end or at anything else (punctuation, a string). */
const char *hp_db__lex_next_word(const char *p, const char *end, bool pg,
                                 size_t *n);

#endif
