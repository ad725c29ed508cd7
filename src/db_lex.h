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
    bool escapes; /* PostgreSQL's U&'..', U&"..", or an E'..' (a '..'
                     with standard_conforming_strings off) with a
                     numeric escape (\x53): its text may spell any word
                     (U&"set\005fconfig" is set_config)                  */
};

/* Whose rules the lexer reads by. HP_LEX_SQLITE and HP_LEX_PG are false
 * and true: a bool pg passes for them. */
enum hp_db_lex_rules {
    HP_LEX_SQLITE = 0,
    HP_LEX_PG = 1,           /* standard_conforming_strings on: '\' plain */
    HP_LEX_PG_BACKSLASH = 2, /* off: a backslash escapes in '...' too    */
};

/* A PostgreSQL client-only encoding, whose multibyte characters may hold
 * ASCII bytes after their first (SJIS's 0x95 0x5C is one character, no
 * backslash): the server converts the text to its own encoding before it
 * reads it, so such a byte means nothing to it. NONE: every other one
 * (UTF8, EUC_*, LATIN*, WIN*: a character's bytes after the first are
 * all >= 0x80). As PostgreSQL's pg_encoding_mblen counts them. */
enum hp_db_lex_mb {
    HP_MB_NONE,
    HP_MB_SJIS,    /* SJIS, SHIFT_JIS_2004: 0xA1-0xDF one byte, else 2  */
    HP_MB_2,       /* BIG5, GBK, UHC: a byte >= 0x80 and one more       */
    HP_MB_JOHAB,   /* 0x8F and two more, else >= 0x80 and one more      */
    HP_MB_GB18030, /* >= 0x80 then 0x30-0x39: 4 bytes, else 2           */
};

/* The encoding PostgreSQL names so (as the server reports
 * client_encoding). */
enum hp_db_lex_mb hp_db__lex_mb_named(const char *encoding);

/* sql as the lexer reads it in encoding mb: NULL when it is sql itself
 * (no multibyte character holds an ASCII byte), else a copy where each
 * such byte is 0x80 (a letter to the lexer, as the converted character
 * is to the server), in buf when it fits (size bytes), else malloc'd. */
char *hp_db__lex_mb_plain(const char *sql, enum hp_db_lex_mb mb, char *buf,
                          size_t size);

/* Whether c may be part of an unquoted identifier or keyword: ASCII
 * letters, digits, '_', '$' (PostgreSQL) and any byte of a UTF-8
 * sequence (both engines take non-ASCII letters). */
bool hp_db__lex_word_char(unsigned char c);

/*
 * The end of the comment, string constant or quoted identifier that starts
 * at p (p < end), or p itself when none starts there (t->kind NONE). p
 * must be where a token can start (the caller steps over whole words
 * with hp_db__lex_word_char): E'...', U&'...', B'...' and X'...' are
 * known by their prefix. An unterminated one runs to end. pg:
 * PostgreSQL's rules (SQL Syntax, "Lexical Structure", 4.1, and its
 * scan.l: '' doubled in strings, E'' with backslash escapes, U&'' and
 * U&"", B'' and X'' (no escape, no doubled quote), "" doubled in
 * identifiers, $tag$ quotes, -- comments, nested block comments, and a
 * string continued by another '...' after blanks holding a newline,
 * read by the first one's rules: E'a'<newline>'\'' is one string);
 * else SQLite's ('' and "" doubled, `..` and [..] identifiers, --
 * comments, block comments that do not nest). HP_LEX_PG reads a plain
 * '...' as the server does with standard_conforming_strings on (the
 * default since 9.1: a backslash is a plain character); with it off
 * (HP_LEX_PG_BACKSLASH) the server reads a plain '...' (and N'...') as
 * E'...': the caller passes the connection's setting as its server last
 * reported it (db_pool.h's hp_db__lex_rules). backslash_quote and
 * escape_string_warning move no string's end (a \' they refuse is an
 * error for the whole text, nothing of it runs; the other warns).
 */
const char *hp_db__lex_skip(const char *p, const char *end,
                            enum hp_db_lex_rules pg, struct hp_db_lex *t);

/* The next word at or after p (blanks and comments skipped), its length
 * in *n; NULL at end or at anything else (punctuation, a string). */
const char *hp_db__lex_next_word(const char *p, const char *end,
                                 enum hp_db_lex_rules pg, size_t *n);

#endif
