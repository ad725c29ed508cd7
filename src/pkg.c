/*
 * pkg.c - finding a page's HP_PKG("name") declarations in its source.
 *
 * Owns: the scanner that reads the HP_PKG declarations out of the bytes
 * compile.c hashed (so the packages compiled with are those of the bytes
 * compiled), and the rule for what a package name may be.
 * May not touch: processes, files, the compile cache: compile.c runs
 * pkg-config with the names and decides what the flags mean. A pure
 * function of the bytes, unit-tested (tests/unit/test_pkg.c).
 *
 * Why a scanner and not the preprocessor: running cpp before every compile
 * would double the cost of a cache miss and need the flags it is about to
 * find. The scanner skips comments, string and character literals, so a
 * declaration quoted or commented out does not count; it does not evaluate
 * #if, so a declaration inside #if 0 still counts (docs/pages.md says so).
 */
#include "hp.h"

#include <stdio.h>
#include <string.h>

static bool ident_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
           (ch >= '0' && ch <= '9') || ch == '_';
}

bool hp_pkg_name_ok(const char *name, size_t len)
{
    if (len == 0 || len >= HP_PKG_NAME_MAX || name[0] == '-')
        return false; /* a leading '-' would be an option to pkg-config */
    for (size_t i = 0; i < len; i++) {
        char ch = name[i];
        if (!ident_char(ch) && ch != '.' && ch != '+' && ch != '-')
            return false;
    }
    return true;
}

/* Past the comment, literal or line continuation at p (or p + 1 if none);
 * counts the newlines it crosses into *line. */
static size_t skip_one(const char *t, size_t len, size_t p, int *line)
{
    if (t[p] == '/' && p + 1 < len && t[p + 1] == '/') {
        while (p < len && t[p] != '\n') /* the newline is counted later */
            p++;
        return p;
    }
    if (t[p] == '/' && p + 1 < len && t[p + 1] == '*') {
        for (p += 2;
             p < len && !(t[p] == '*' && p + 1 < len && t[p + 1] == '/'); p++)
            *line += t[p] == '\n';
        return p + 2 < len ? p + 2 : len;
    }
    if (t[p] == '"' || t[p] == '\'') {
        char q = t[p];
        for (p++; p < len && t[p] != q && t[p] != '\n'; p++)
            if (t[p] == '\\' && p + 1 < len)
                *line += t[++p] == '\n';
        return p < len && t[p] == q ? p + 1 : p;
    }
    *line += t[p] == '\n';
    return p + 1;
}

static size_t skip_space(const char *t, size_t len, size_t p, int *line)
{
    while (p < len) {
        if (t[p] == ' ' || t[p] == '\t' || t[p] == '\n' || t[p] == '\r') {
            *line += t[p] == '\n';
            p++;
        } else if (t[p] == '/' && p + 1 < len &&
                   (t[p + 1] == '*' || t[p + 1] == '/')) {
            p = skip_one(t, len, p, line);
        } else if (t[p] == '\\' && p + 1 < len && t[p + 1] == '\n') {
            (*line)++;
            p += 2;
        } else {
            break;
        }
    }
    return p;
}

static int scan_error(char *err, size_t errlen, int line, const char *msg,
                      const char *name, size_t nlen)
{
    snprintf(err, errlen, "%d: error: %s%s%.*s%s", line, msg, nlen ? " \"" : "",
             (int)(nlen > 200 ? 200 : nlen), name, nlen ? "\"" : "");
    return -1;
}

/* The declaration whose HP_PKG token ends at p: add its name to out. */
static int one_decl(const char *t, size_t len, size_t *pp, int *line,
                    struct hp_pkgs *out, char *err, size_t errlen)
{
    size_t p = skip_space(t, len, *pp, line);
    if (p >= len || t[p] != '(') {
        *pp = p; /* a mention (#ifdef HP_PKG), not a declaration */
        return 0;
    }
    p = skip_space(t, len, p + 1, line);
    int at = *line;
    if (p >= len || t[p] != '"')
        return scan_error(err, errlen, at,
                          "HP_PKG takes a package name in double quotes", "",
                          0);
    size_t start = ++p;
    while (p < len && t[p] != '"' && t[p] != '\n')
        p++;
    size_t nlen = p - start;
    if (p >= len || t[p] != '"')
        return scan_error(err, errlen, at, "HP_PKG: unterminated string", "",
                          0);
    if (!hp_pkg_name_ok(t + start, nlen))
        return scan_error(err, errlen, at,
                          "HP_PKG: not a pkg-config package name (letters, "
                          "digits and _ . + -, not starting with -):",
                          t + start, nlen);
    p = skip_space(t, len, p + 1, line);
    if (p >= len || t[p] != ')')
        return scan_error(err, errlen, at,
                          "HP_PKG takes one package name; write one HP_PKG "
                          "per package",
                          "", 0);
    *pp = p + 1;
    for (size_t i = 0; i < out->n; i++)
        if (strlen(out->name[i]) == nlen &&
            memcmp(out->name[i], t + start, nlen) == 0)
            return 0; /* declared twice: once is enough */
    if (out->n == HP_PKG_MAX)
        return scan_error(err, errlen, at,
                          "HP_PKG: more packages than a page "
                          "may declare (16)",
                          "", 0);
    memcpy(out->name[out->n], t + start, nlen);
    out->name[out->n][nlen] = '\0';
    out->line[out->n++] = at;
    return 0;
}

int hp_pkg_scan(const char *text, size_t len, struct hp_pkgs *out, char *err,
                size_t errlen)
{
    static const char tok[] = "HP_PKG";
    const size_t tlen = sizeof tok - 1;
    int line = 1;
    size_t p = 0;

    out->n = 0;
    while (p < len) {
        char ch = text[p];
        if (ch == '/' || ch == '"' || ch == '\'' || ch == '\n') {
            p = skip_one(text, len, p, &line);
        } else if (ident_char(ch)) {
            size_t start = p;
            while (p < len && ident_char(text[p]))
                p++;
            if (p - start == tlen && memcmp(text + start, tok, tlen) == 0 &&
                one_decl(text, len, &p, &line, out, err, errlen) < 0)
                return -1;
        } else {
            p++;
        }
    }
    return 0;
}
