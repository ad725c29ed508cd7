/*
 * template.c - Mustache templates: the parser (text to nodes) and the
 * renderer (nodes and JSON data to text).
 *
 * Owns: the template syntax (tags, set delimiters, standalone lines), name
 * resolution on the context stack (dotted names, the implicit iterator),
 * HTML escaping of interpolations, the indentation of standalone
 * partials, and the rules for template file names (".tpl" only; where a
 * name points under a root, by name alone). The rules are the Mustache spec's
 * required modules (github.com/mustache/spec, specs/NAME.yml);
 * tests/unit/test_template.c runs every one of their cases. May not touch:
 * files, the template cache, requests, locks. It is a pure function of its
 * inputs; partials come through a callback (tests/fuzz/fuzz_template.c fuzzes
 * the parser and the renderer).
 *
 * A parsed template is a flat array of nodes; a section's children are the
 * nodes between it and its `end`. Standalone lines (a section, inverted,
 * close, comment, partial or delimiter tag alone on its line) are removed
 * at parse time, so rendering never looks at whitespace again. A standalone
 * partial's indentation is applied when it is rendered: every line of the
 * partial's own text gets it, interpolated values do not (spec: partials,
 * "Standalone Indentation"), which is the same as indenting the partial's
 * source, without parsing the partial once per indentation.
 */
#include "template.h"

#include <assert.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#define MAX_NEST 256 /* sections open at once, per template */
#define MAX_DELIM 32 /* bytes of a set delimiter            */

enum node_type {
    N_TEXT,     /* literal text                                   */
    N_VAR,      /* {{name}}: HTML-escaped                         */
    N_RAW,      /* {{{name}}}, {{& name}}: as is                  */
    N_SECTION,  /* {{#name}} ... {{/name}}                        */
    N_INVERTED, /* {{^name}} ... {{/name}}                        */
    N_PARTIAL,  /* {{> name}}                                     */
    N_NOP,      /* a comment or delimiter tag sharing its line    */
};

struct node {
    enum node_type type;
    bool standalone;  /* its line was removed at parse time           */
    const char *text; /* N_TEXT: into the template's copy of the source */
    size_t len;
    char *name;      /* trimmed tag content                          */
    char *parts;     /* name split at '.', NUL-separated             */
    unsigned nparts; /* 0 for the implicit iterator "."              */
    size_t part0_len; /* strlen(parts): the first part's length      */
    size_t end;      /* sections: index past the last child          */
    char *indent;    /* standalone partial: its line's indentation   */
    size_t indent_len;
};

struct hp_tpl {
    char *name;
    char *src;
    struct node *n;
    size_t count, cap;
};

/* ---- parsing ------------------------------------------------------------- */

struct parser {
    struct hp_tpl *t;
    const char *s;
    size_t len, pos;
    char otag[MAX_DELIM + 1], ctag[MAX_DELIM + 2]; /* ctag: room for '}' */
    size_t olen, clen;
    bool any_tag;
    size_t last_tag_end;
    size_t open[MAX_NEST];
    size_t depth;
    char **err;
};

static bool is_blank(char c)
{
    return c == ' ' || c == '\t';
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' ||
           c == '\f';
}

static const char *find(const char *hay, size_t n, const char *needle, size_t m)
{
    return memmem(hay, n, needle, m);
}

static unsigned line_of(const struct parser *p, size_t at)
{
    unsigned line = 1;
    for (size_t i = 0; i < at && i < p->len; i++)
        line += p->s[i] == '\n';
    return line;
}

static int fail(struct parser *p, size_t at, const char *what)
{
    *p->err = hp_xasprintf("%s:%u: %s", p->t->name, line_of(p, at), what);
    return -1;
}

static struct node *add_node(struct parser *p, enum node_type type)
{
    struct hp_tpl *t = p->t;
    if (t->count == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 16;
        t->n = hp_xrealloc(t->n, t->cap * sizeof *t->n);
    }
    struct node *nd = &t->n[t->count++];
    memset(nd, 0, sizeof *nd);
    nd->type = type;
    return nd;
}

static void add_text(struct parser *p, size_t from, size_t to)
{
    if (to > from) {
        struct node *nd = add_node(p, N_TEXT);
        nd->text = p->s + from;
        nd->len = to - from;
    }
}

/* The name as given, and split at '.' for lookups ("." alone: none). */
static void set_name(struct node *nd, const char *s, size_t n)
{
    nd->name = strndup(s, n);
    nd->parts = strndup(s, n);
    if (!nd->name || !nd->parts)
        abort();
    if (n == 1 && s[0] == '.')
        return;
    nd->nparts = 1;
    for (char *c = nd->parts; *c; c++) {
        if (*c == '.') {
            *c = '\0';
            nd->nparts++;
        }
    }
    nd->part0_len = strlen(nd->parts);
}

/* {{=<% %>=}}: two delimiters, no whitespace or '=' inside them. */
static int set_delims(struct parser *p, size_t at, const char *s, size_t n)
{
    size_t a = 0;
    while (a < n && !is_space(s[a]) && s[a] != '=')
        a++;
    size_t b = a;
    while (b < n && is_space(s[b]))
        b++;
    size_t c = n - b;
    if (a == 0 || b == a || c == 0 || a > MAX_DELIM || c > MAX_DELIM ||
        memchr(s + b, '=', c))
        return fail(p, at, "bad delimiter tag (expected {{=OPEN CLOSE=}})");
    for (size_t i = b; i < n; i++)
        if (is_space(s[i]))
            return fail(p, at, "bad delimiter tag (expected {{=OPEN CLOSE=}})");
    memcpy(p->otag, s, a);
    p->otag[a] = '\0';
    p->olen = a;
    memcpy(p->ctag, s + b, c);
    p->ctag[c] = '\0';
    p->clen = c;
    return 0;
}

/*
 * A tag of type #^/!>= is standalone when nothing but blanks precede it on
 * its line (no other tag either) and nothing but blanks and the line's end
 * follow it. Returns the position after its line (after "\n", "\r\n" or
 * at the end) or 0 when it is not standalone; *ls is where its line starts.
 */
static size_t standalone_end(const struct parser *p, size_t t, size_t tag_end,
                             size_t *ls)
{
    size_t l = t;
    while (l > 0 && p->s[l - 1] != '\n')
        l--;
    *ls = l;
    if (p->any_tag && p->last_tag_end > l)
        return 0;
    for (size_t i = l; i < t; i++)
        if (!is_blank(p->s[i]))
            return 0;
    size_t j = tag_end;
    while (j < p->len && is_blank(p->s[j]))
        j++;
    if (j == p->len)
        return j; /* > 0: the tag itself is before it */
    if (p->s[j] == '\n')
        return j + 1;
    if (p->s[j] == '\r' && j + 1 < p->len && p->s[j + 1] == '\n')
        return j + 2;
    return 0;
}

static int close_section(struct parser *p, size_t t, const char *name, size_t n)
{
    if (p->depth == 0)
        return fail(p, t, "closing tag without an open section");
    struct node *open = &p->t->n[p->open[--p->depth]];
    if (strlen(open->name) != n || memcmp(open->name, name, n) != 0) {
        char *what = hp_xasprintf("{{/%.*s}} closes {{#%s}} (opened on line "
                                  "%u)",
                                  (int)n, name, open->name,
                                  line_of(p, (size_t)(open->text - p->s)));
        int rc = fail(p, t, what);
        free(what);
        return rc;
    }
    open->end = p->t->count;
    return 0;
}

/* Add the node for a tag whose trimmed content is s[0..n). */
static int add_tag(struct parser *p, char type, size_t t, const char *s,
                   size_t n, bool sa, size_t ls)
{
    struct node *nd;

    if (type == '!' || type == '=') {
        if (type == '=' && set_delims(p, t, s, n) < 0)
            return -1;
        if (!sa)
            add_node(p, N_NOP);
        return 0;
    }
    if (n == 0)
        return fail(p, t, "empty tag name");
    if (type == '/')
        return close_section(p, t, s, n);
    if (type == '#' || type == '^') {
        if (p->depth == MAX_NEST)
            return fail(p, t, "sections nested too deeply");
        p->open[p->depth++] = p->t->count;
    }
    nd = add_node(p, type == '#'   ? N_SECTION
                     : type == '^' ? N_INVERTED
                     : type == '>' ? N_PARTIAL
                     : type == 0   ? N_VAR
                                   : N_RAW);
    nd->standalone = sa;
    nd->text = p->s + t; /* where it opened, for diagnostics */
    set_name(nd, s, n);
    if (type == '>' && sa) {
        nd->indent_len = t - ls;
        nd->indent = hp_xmalloc(nd->indent_len + 1);
        memcpy(nd->indent, p->s + ls, nd->indent_len);
        nd->indent[nd->indent_len] = '\0';
    }
    return 0;
}

/* The tag whose opening delimiter starts at t. */
static int parse_tag(struct parser *p, size_t t)
{
    size_t i = t + p->olen;
    while (i < p->len && is_blank(p->s[i]))
        i++;
    char type = i < p->len ? p->s[i] : 0;
    if (type && strchr("#^/!>=&{", type))
        i++;
    else
        type = 0;
    char needle[MAX_DELIM + 2];
    size_t nlen = p->clen;
    memcpy(needle, p->ctag, p->clen);
    if (type == '{' || type == '=') { /* {{{x}}}, {{=a b=}} */
        needle[0] = type == '{' ? '}' : '=';
        memcpy(needle + 1, p->ctag, p->clen);
        nlen++;
    }
    const char *c = find(p->s + i, p->len - i, needle, nlen);
    if (!c)
        return fail(p, t, "unclosed tag");
    size_t cpos = (size_t)(c - p->s), tag_end = cpos + nlen;
    const char *s = p->s + i;
    size_t n = cpos - i;
    while (n && is_space(s[0]))
        s++, n--;
    while (n && is_space(s[n - 1]))
        n--;
    size_t ls = t, after = 0;
    bool sa = type && strchr("#^/!>=", type) &&
              (after = standalone_end(p, t, tag_end, &ls)) != 0;
    if (sa) {
        add_text(p, p->pos, ls);
        p->pos = after;
    } else {
        add_text(p, p->pos, t);
        p->pos = tag_end;
    }
    p->any_tag = true;
    p->last_tag_end = tag_end;
    return add_tag(p, type, t, s, n, sa, ls);
}

struct hp_tpl *hp_tpl_parse(const char *src, size_t len, const char *name,
                            char **err)
{
    struct hp_tpl *t = hp_xcalloc(1, sizeof *t);
    t->name = hp_xstrdup(name ? name : "template");
    t->src = hp_xmalloc(len + 1);
    memcpy(t->src, src, len);
    t->src[len] = '\0';
    struct parser p = {.t = t, .s = t->src, .len = len, .err = err};
    memcpy(p.otag, "{{", 3);
    memcpy(p.ctag, "}}", 3);
    p.olen = p.clen = 2;
    *err = NULL;
    while (p.pos < p.len) {
        const char *o = find(p.s + p.pos, p.len - p.pos, p.otag, p.olen);
        if (!o) {
            add_text(&p, p.pos, p.len);
            break;
        }
        if (parse_tag(&p, (size_t)(o - p.s)) < 0)
            goto bad;
    }
    if (p.depth) {
        const struct node *open = &t->n[p.open[p.depth - 1]];
        char *what =
            hp_xasprintf("section {{#%s}} is never closed", open->name);
        fail(&p, (size_t)(open->text - p.s), what);
        free(what);
        goto bad;
    }
    return t;
bad:
    hp_tpl_free(t);
    return NULL;
}

void hp_tpl_free(struct hp_tpl *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->count; i++) {
        free(t->n[i].name);
        free(t->n[i].parts);
        free(t->n[i].indent);
    }
    free(t->n);
    free(t->src);
    free(t->name);
    free(t);
}

const char *hp_tpl_name(const struct hp_tpl *t)
{
    return t->name;
}

void hp_tpl_unconditional_partials(const struct hp_tpl *t,
                                   void (*fn)(void *ctx, const char *name),
                                   void *ctx)
{
    for (size_t i = 0; i < t->count;) {
        const struct node *nd = &t->n[i];
        assert(nd->type != N_SECTION || nd->end > i);
        if (nd->type == N_SECTION || nd->type == N_INVERTED) {
            i = nd->end; /* its children render only if the data says so */
            continue;
        }
        if (nd->type == N_PARTIAL)
            fn(ctx, nd->name);
        i++;
    }
}

void hp_tpl_partials(const struct hp_tpl *t,
                     void (*fn)(void *ctx, const char *name), void *ctx)
{
    for (size_t i = 0; i < t->count; i++)
        if (t->n[i].type == N_PARTIAL)
            fn(ctx, t->n[i].name);
}

/* ---- template file names --------------------------------------------------
 */

bool hp_tpl_is_file_name(const char *path)
{
    size_t n = strlen(path), m = strlen(HP_TPL_EXT);
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    /* ".tpl" alone is a hidden file, not a template named "" */
    return n > m && strlen(base) > m && strcmp(path + n - m, HP_TPL_EXT) == 0;
}

char *hp_tpl_resolve(const char *root, const char *base, const char *name,
                     const char *suffix)
{
    size_t rl = strlen(root);
    if (!*name)
        return NULL;
    struct hp_buf rel = {0};
    if (name[0] != '/' && base && strncmp(base, root, rl) == 0 &&
        base[rl] == '/') {
        const char *slash = strrchr(base, '/');
        hp_buf_append(&rel, base + rl, (size_t)(slash - base) - rl);
    }
    /* (appends, not a printf: hp_render resolves its name on every call) */
    hp_buf_append(&rel, "/", 1);
    hp_buf_puts(&rel, name);
    hp_buf_puts(&rel, suffix);
    char *out = hp_xmalloc(rl + rel.len + 2);
    size_t n = rl;
    memcpy(out, root, rl);
    for (const char *s = rel.p; *s;) {
        size_t k = strcspn(s, "/");
        if (k == 2 && s[0] == '.' && s[1] == '.') {
            while (n > rl && out[n - 1] != '/')
                n--;
            if (n == rl) { /* above the root */
                free(out);
                hp_buf_free(&rel);
                return NULL;
            }
            n--;
        } else if (k > 0 && !(k == 1 && s[0] == '.')) {
            out[n++] = '/';
            memcpy(out + n, s, k);
            n += k;
        }
        s += k + (s[k] == '/');
    }
    out[n] = '\0';
    hp_buf_free(&rel);
    if (n == rl) {
        free(out);
        return NULL;
    }
    return out;
}

/* ---- rendering ----------------------------------------------------------- */

#define LOCAL_STACK 16 /* contexts a render holds without allocating */

struct render {
    struct hp_buf *out;
    const json_t **stack; /* contexts, innermost last: local, or malloc'd */
    size_t depth, cap;
    const json_t *local[LOCAL_STACK];
    hp_tpl_partial_fn partial;
    void *ctx;
    struct hp_buf indent; /* the effective indentation: [ibase, len)    */
    size_t ibase;
    bool pending; /* at the start of a line of indented partial text */
    int pdepth;
    char **err;
};

static int oom(struct render *r)
{
    if (!*r->err)
        *r->err = hp_xstrdup("out of memory while rendering");
    return -1;
}

static int put(struct render *r, const char *s, size_t n)
{
    struct hp_buf *b = r->out;
    if (b->cap - b->len > n) { /* room for it and the NUL: no call */
        memcpy(b->p + b->len, s, n);
        b->len += n;
        b->p[b->len] = '\0';
        return 0;
    }
    return hp_buf_append(b, s, n) < 0 ? oom(r) : 0;
}

static int flush_indent(struct render *r)
{
    if (!r->pending)
        return 0;
    r->pending = false;
    return put(r, r->indent.p + r->ibase, r->indent.len - r->ibase);
}

/* Template text: under a standalone partial, each line gets the indent. */
static int put_text(struct render *r, const char *s, size_t n)
{
    if (r->indent.len == r->ibase)
        return put(r, s, n);
    while (n) {
        if (flush_indent(r) < 0)
            return -1;
        const char *nl = memchr(s, '\n', n);
        size_t k = nl ? (size_t)(nl - s) + 1 : n;
        if (put(r, s, k) < 0)
            return -1;
        s += k;
        n -= k;
        r->pending = nl != NULL;
    }
    return 0;
}

/* What each byte becomes in HTML: 0 for itself, else an index into
 * esc_text. */
static const unsigned char esc_class[256] = {
    ['&'] = 1, ['<'] = 2, ['>'] = 3, ['"'] = 4, ['\''] = 5};
static const struct {
    char s[7];
    unsigned char n;
} esc_text[6] = {{"", 0},     {"&amp;", 5},  {"&lt;", 4},
                 {"&gt;", 4}, {"&quot;", 6}, {"&#39;", 5}};

/* Where the first byte of s[i..n) that HTML escapes is, or n. Escaping is
 * most of a render's work and most text escapes nothing, so this looks at
 * 16 bytes at a time where SSE2 is there (every x86-64). */
static size_t next_special(const char *s, size_t i, size_t n)
{
#ifdef __SSE2__
    const __m128i amp = _mm_set1_epi8('&'), lt = _mm_set1_epi8('<'),
                  gt = _mm_set1_epi8('>'), quot = _mm_set1_epi8('"'),
                  apos = _mm_set1_epi8('\'');
    for (; i + 16 <= n; i += 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(s + i));
        __m128i hit = _mm_or_si128(
            _mm_or_si128(_mm_cmpeq_epi8(v, amp), _mm_cmpeq_epi8(v, lt)),
            _mm_or_si128(
                _mm_or_si128(_mm_cmpeq_epi8(v, gt), _mm_cmpeq_epi8(v, quot)),
                _mm_cmpeq_epi8(v, apos)));
        unsigned m = (unsigned)_mm_movemask_epi8(hit);
        if (m)
            return i + (size_t)__builtin_ctz(m);
    }
#endif
    while (i < n && !esc_class[(unsigned char)s[i]])
        i++;
    return i;
}

/* Runs of bytes that need no escaping are copied whole; room for the
 * worst case (6 bytes for "&quot;") is reserved only for what is left at
 * each escaped byte, so a short value does not grow the buffer by 6x. */
static int put_escaped(struct render *r, const char *s, size_t n)
{
    struct hp_buf *b = r->out;
    for (size_t i = 0;;) {
        size_t j = next_special(s, i, n);
        /* the run, then (if any) the escaped byte: 6 more at most */
        if (n - i > SIZE_MAX - 7 ||
            (b->cap - b->len <= j - i + 6 && hp_buf_reserve(b, j - i + 6) < 0))
            return oom(r);
        memcpy(b->p + b->len, s + i, j - i);
        b->len += j - i;
        if (j == n)
            break;
        unsigned char k = esc_class[(unsigned char)s[j]];
        memcpy(b->p + b->len, esc_text[k].s, esc_text[k].n);
        b->len += esc_text[k].n;
        i = j + 1;
    }
    b->p[b->len] = '\0';
    return 0;
}

/* Decimal text of an integer, into the end of buf; returns its start. */
static char *int_text(json_int_t v, char *end)
{
    unsigned long long u =
        v < 0 ? 0ull - (unsigned long long)v : (unsigned long long)v;
    *--end = '\0';
    do
        *--end = (char)('0' + u % 10);
    while (u /= 10);
    if (v < 0)
        *--end = '-';
    return end;
}

/* The shortest "%g" text that reads back as the same double (1.21, not
 * 1.2099999999999999). */
static void real_text(double d, char *buf, size_t len)
{
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, len, "%.*g", prec, d);
        if (strtod(buf, NULL) == d)
            return;
    }
}

static int put_value(struct render *r, const json_t *v, bool escape)
{
    char num[40];
    const char *s = num;
    size_t n;
    char *dump = NULL;

    switch (json_typeof(v)) {
    case JSON_STRING:
        s = json_string_value(v);
        n = json_string_length(v);
        break;
    case JSON_INTEGER:
        s = int_text(json_integer_value(v), num + sizeof num);
        n = strlen(s);
        break;
    case JSON_REAL:
        real_text(json_real_value(v), num, sizeof num);
        n = strlen(num);
        break;
    case JSON_TRUE:
        s = "true", n = 4;
        break;
    case JSON_FALSE:
        s = "false", n = 5;
        break;
    case JSON_NULL:
        return 0;
    default: /* objects and arrays: their JSON text */
        dump = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        if (!dump)
            return oom(r);
        s = dump;
        n = strlen(dump);
        break;
    }
    int rc = escape ? put_escaped(r, s, n) : put(r, s, n);
    free(dump);
    return rc;
}

/* The member key[0..len) of object o, or NULL. A small object (a row of a
 * list, most often) is searched in order: comparing a few keys costs less
 * than hashing the name, which jansson does on every json_object_get. Keys
 * are unique, so the answer is the same. */
static const json_t *member(const json_t *o, const char *key, size_t len)
{
#if JANSSON_VERSION_HEX >= 0x020e00 /* 2.14: key lengths */
    if (json_object_size(o) <= 4) {
        /* jansson's iterators take a non-const object; nothing is written */
        json_t *mo = (json_t *)(uintptr_t)o;
        for (void *it = json_object_iter(mo); it;
             it = json_object_iter_next(mo, it))
            if (json_object_iter_key_len(it) == len &&
                memcmp(json_object_iter_key(it), key, len) == 0)
                return json_object_iter_value(it);
        return NULL;
    }
    return json_object_getn(o, key, len);
#else
    (void)len;
    return json_object_get(o, key);
#endif
}

/* Spec, interpolation: the first part is looked up from the innermost
 * context out; the other parts only inside what the first one found. */
static const json_t *lookup(const struct render *r, const struct node *nd)
{
    if (nd->nparts == 0)
        return r->stack[r->depth - 1];
    const char *part = nd->parts;
    const json_t *v = NULL;
    for (size_t i = r->depth; i-- > 0 && !v;)
        if (json_is_object(r->stack[i]))
            v = member(r->stack[i], part, nd->part0_len);
    for (unsigned k = 1; v && k < nd->nparts; k++) {
        part += strlen(part) + 1;
        v = json_is_object(v) ? json_object_get(v, part) : NULL;
    }
    return v;
}

/* Falsey: missing, null, false and the empty list; everything else
 * (0 and "" too) is true, as in the spec's reference implementation. */
static bool truthy(const json_t *v)
{
    return v && !json_is_null(v) && !json_is_false(v) &&
           !(json_is_array(v) && json_array_size(v) == 0);
}

static int push(struct render *r, const json_t *v)
{
    if (r->depth == r->cap) {
        r->cap *= 2;
        if (r->stack == r->local) {
            r->stack = hp_xmalloc(r->cap * sizeof *r->stack);
            memcpy(r->stack, r->local, sizeof r->local);
        } else {
            r->stack = hp_xrealloc(r->stack, r->cap * sizeof *r->stack);
        }
    }
    r->stack[r->depth++] = v;
    return 0;
}

static int render_nodes(struct render *r, const struct hp_tpl *t, size_t from,
                        size_t to);

static int render_section(struct render *r, const struct hp_tpl *t, size_t i)
{
    const struct node *nd = &t->n[i];
    const json_t *v = lookup(r, nd);
    int rc = 0;

    if (!nd->standalone && flush_indent(r) < 0)
        return -1;
    if (nd->type == N_INVERTED)
        return truthy(v) ? 0 : render_nodes(r, t, i + 1, nd->end);
    if (!truthy(v))
        return 0;
    if (!json_is_array(v)) {
        push(r, v);
        rc = render_nodes(r, t, i + 1, nd->end);
        r->depth--;
        return rc;
    }
    for (size_t k = 0; k < json_array_size(v) && rc == 0; k++) {
        push(r, json_array_get(v, k));
        rc = render_nodes(r, t, i + 1, nd->end);
        r->depth--;
    }
    return rc;
}

/* A standalone partial adds its line's indentation to the current one; an
 * inline partial's lines are not indented at all. */
static int render_partial(struct render *r, const struct hp_tpl *t,
                          const struct node *nd)
{
    if (r->pdepth >= HP_TPL_MAX_DEPTH) {
        *r->err = hp_xasprintf("%s: partials nested more than %d deep "
                               "(does {{> %s}} include itself?)",
                               t->name, HP_TPL_MAX_DEPTH, nd->name);
        return -1;
    }
    const struct hp_tpl *pt =
        r->partial ? r->partial(r->ctx, t, nd->name, r->err) : NULL;
    if (*r->err)
        return -1;
    if (!nd->standalone && flush_indent(r) < 0)
        return -1;
    if (!pt)
        return 0;
    size_t ilen = r->indent.len, ibase = r->ibase, before = r->out->len;
    bool pending = r->pending;
    if (nd->standalone) {
        if (hp_buf_append(&r->indent, nd->indent, nd->indent_len) < 0)
            return oom(r);
        r->pending = r->indent.len > r->ibase;
    } else {
        r->ibase = r->indent.len;
    }
    r->pdepth++;
    int rc = render_nodes(r, pt, 0, pt->count);
    r->pdepth--;
    r->indent.len = ilen;
    r->ibase = ibase;
    if (!nd->standalone || r->indent.len == r->ibase)
        r->pending = false;
    else if (r->out->len == before)
        r->pending = pending;
    else
        r->pending = r->out->p[r->out->len - 1] == '\n';
    return rc;
}

static int render_nodes(struct render *r, const struct hp_tpl *t, size_t from,
                        size_t to)
{
    for (size_t i = from; i < to; i++) {
        const struct node *nd = &t->n[i];
        const json_t *v;
        int rc = 0;

        switch (nd->type) {
        case N_TEXT:
            rc = put_text(r, nd->text, nd->len);
            break;
        case N_NOP:
            rc = flush_indent(r);
            break;
        case N_VAR:
        case N_RAW:
            rc = flush_indent(r);
            if (rc == 0 && (v = lookup(r, nd)))
                rc = put_value(r, v, nd->type == N_VAR);
            break;
        case N_SECTION:
        case N_INVERTED:
            rc = render_section(r, t, i);
            i = nd->end - 1;
            break;
        case N_PARTIAL:
            rc = render_partial(r, t, nd);
            break;
        }
        if (rc < 0)
            return -1;
    }
    return 0;
}

int hp_tpl_render(const struct hp_tpl *t, const json_t *data,
                  hp_tpl_partial_fn partial, void *ctx, struct hp_buf *out,
                  char **err)
{
    struct render r = {.out = out, .partial = partial, .ctx = ctx, .err = err};
    *err = NULL;
    r.cap = LOCAL_STACK;
    r.stack = r.local;
    r.stack[r.depth++] = data ? data : json_null();
    int rc = render_nodes(&r, t, 0, t->count);
    if (r.stack != r.local)
        free(r.stack);
    hp_buf_free(&r.indent);
    return rc;
}
