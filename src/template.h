/*
 * template.h - Mustache templates: the parser and the renderer (template.c).
 *
 * Pure: no files, no locks, no requests. A parsed template is immutable and
 * may be rendered by any number of threads at once. Partials are looked up
 * through a callback, so the caller (tplcache.c) decides where they come
 * from and keeps them alive for the render.
 *
 * The contract is the required modules of the Mustache spec
 * (github.com/mustache/spec, specs/{interpolation,sections,inverted,
 * comments,partials,delimiters}.yml); lambdas, inheritance and dynamic
 * names (the optional "~" modules) are not supported.
 */
#ifndef HP_TEMPLATE_H
#define HP_TEMPLATE_H

#include "hp.h"

struct hp_tpl;

/*
 * Parse src[0..len) (need not be NUL-terminated). `name` names the
 * template in diagnostics and is kept (tpl->name); the caller's own use of
 * it (e.g. the file path) is up to it. On a syntax error returns NULL and
 * sets *err to a malloc'd "NAME:LINE: message".
 */
struct hp_tpl *hp_tpl_parse(const char *src, size_t len, const char *name,
                            char **err);
void hp_tpl_free(struct hp_tpl *t);
const char *hp_tpl_name(const struct hp_tpl *t);

/*
 * The partial `name` ({{> name}}, trimmed) included from template `from`:
 * the parsed partial, or NULL for "no such partial" (renders as nothing,
 * as the spec asks). Setting *err (malloc'd) instead fails the render (a
 * partial with a syntax error). The partial must stay valid until the
 * render returns.
 */
typedef const struct hp_tpl *(*hp_tpl_partial_fn)(void *ctx,
                                                  const struct hp_tpl *from,
                                                  const char *name, char **err);

/*
 * Call fn(ctx, name) for each partial tag of t outside every section and
 * inverted section: the partials every render of t renders, whatever the
 * data. A cycle of such tags can only fail (hotpub check reports it).
 */
void hp_tpl_unconditional_partials(const struct hp_tpl *t,
                                   void (*fn)(void *ctx, const char *name),
                                   void *ctx);

/* Call fn(ctx, name) for every partial tag of t, in sections or not. */
void hp_tpl_partials(const struct hp_tpl *t,
                     void (*fn)(void *ctx, const char *name), void *ctx);

/*
 * Template file names. The only files hp_render and partials load are
 * ".tpl" files (docs/pages.md#templates): a name, or a symlink's target,
 * ending otherwise (a page's C source, _app.c, settings) is refused.
 */
#define HP_TPL_EXT ".tpl"
bool hp_tpl_is_file_name(const char *path);

/*
 * Where a template name points, by name only (no file is looked at):
 * root + the directory of base (a file under root; NULL or "/name": the
 * root itself) + name + suffix, with "." and ".." resolved. A malloc'd
 * path, or NULL when it would leave root or is root itself. tplcache.c
 * loads it and hotpub check (check.c) follows it, so both agree.
 */
char *hp_tpl_resolve(const char *root, const char *base, const char *name,
                     const char *suffix);

/*
 * Render t with data as the root context, appending to out. Returns 0, or
 * -1 with *err set (malloc'd): a partial's error, partials nested deeper
 * than HP_TPL_MAX_DEPTH (a partial that includes itself unconditionally),
 * or out of memory. On failure out may hold part of the output.
 */
#define HP_TPL_MAX_DEPTH 64
int hp_tpl_render(const struct hp_tpl *t, const json_t *data,
                  hp_tpl_partial_fn partial, void *ctx, struct hp_buf *out,
                  char **err);

#endif
