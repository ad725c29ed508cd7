/*
 * hotpub.h - the one header a hotpub page includes.
 *
 * A page is a C file under the document root. The server compiles it to a
 * shared object, loads it, and calls the handler the URL names:
 *
 *     #include <hotpub.h>
 *
 *     HP_HANDLER(http_handler)              // GET /hello       (hello.c)
 *     {
 *         const char *name = hp_arg(req, "name");
 *         hp_printf(req, "Hello, %s!", name ? name : "world");
 *         return HP_OK;
 *     }
 *
 *     HP_HANDLER(json)                      // GET /hello/json
 *     {
 *         hp_set_header(req, "Content-Type", "application/json");
 *         hp_write(req, "{\"ok\":true}", 11);
 *         return HP_OK;
 *     }
 *
 * Only functions declared with HP_HANDLER are reachable by URL: pages are
 * compiled with -fvisibility=hidden and a handler is found through an
 * exported pointer named hp__handler_<name>, never by the function's own
 * symbol. A handler returns HP_OK or an HTTP status >= 400.
 *
 * Everything a handler gets from hp_* (strings, arg values) lives until the
 * request ends; copy it if you keep it longer. Nothing here may be called
 * from a thread the page started itself unless it says so.
 *
 * The full manual is docs/pages.md.
 */
#ifndef HOTPUB_H
#define HOTPUB_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped whenever a change here breaks already-compiled pages; the loader
 * refuses objects built against another value. */
#define HP_ABI_VERSION 1

#define HP_OK 0

#define HP_EXPORT __attribute__((visibility("default")))

typedef struct hp_req hp_req;
typedef int (*hp_handler_fn)(hp_req *req);

/*
 * HP_HANDLER(name) declares a handler. The function keeps its C name (a page
 * may call it directly) but has internal linkage; the only exported symbol is
 * a const pointer to it, which is what the publisher looks up.
 */
#define HP_HANDLER(name)                                                       \
    static int name(hp_req *req);                                              \
    HP_EXPORT int (*const hp__handler_##name)(hp_req *) = name;                \
    static int name(hp_req *req)

/* ---- module lifecycle (pages and _app.c application modules) ---------- */

typedef struct hp_module hp_module;

/*
 * HP_INIT { ... } runs once per loaded version, before it is published:
 *     void *init(hp_module *m, void *previous)
 * `previous` is the state of the version being replaced (NULL on the first
 * load). Return the new version's state: `previous` itself to adopt it
 * whole, or a new object (moving what you keep out of `previous`). To
 * refuse to go live, call hp_module_error(m, ...) and return NULL: the old
 * version keeps serving with its state untouched.
 */
#define HP_INIT                                                                \
    HP_EXPORT void *hp__init(hp_module *m, void *previous);                    \
    void *hp__init(hp_module *m, void *previous)

/*
 * HP_FINI { ... } runs when a version has been replaced (or the server
 * stops) and its last request has ended:
 *     void fini(hp_module *m, void *state, bool handed_over)
 * handed_over is true when the next version's init returned `state` itself:
 * then it belongs to the new version and must not be freed.
 */
#define HP_FINI                                                                \
    HP_EXPORT void hp__fini(hp_module *m, void *state, bool handed_over);      \
    void hp__fini(hp_module *m, void *state, bool handed_over)

/*
 * HP_HOOK(prepare|commit|rollback|release) { ... } defines a request
 * lifecycle hook; the body sees `req` and returns HP_OK or an HTTP status
 * (release's result is ignored). Any other name does not compile.
 * Order: prepare for each application module from the outermost in, then
 * the page; the handler; commit (all went well) or rollback (anything
 * failed), application modules first; release, page first. docs/hooks.md.
 */
#define HP__HOOK_prepare 1
#define HP__HOOK_commit 1
#define HP__HOOK_rollback 1
#define HP__HOOK_release 1
#define HP_HOOK(name)                                                          \
    _Static_assert(HP__HOOK_##name, "unknown hook " #name);                    \
    HP_EXPORT int hp__hook_##name(hp_req *req);                                \
    int hp__hook_##name(hp_req *req)

/* Fail the init in progress; the message is shown like a compile error. */
void hp_module_error(hp_module *m, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
const char *hp_module_path(hp_module *m);          /* absolute source path */
unsigned long long hp_module_version(hp_module *m); /* version id          */

/* The state returned by init of the module whose code is running: the
 * page's for its own handlers and hooks, an application module's for the
 * hooks and acquired handlers it defines. */
void *hp_module_state(hp_req *req);
/* The state of the innermost application module (_app.c) above the page,
 * or NULL; hp_app_at(req, 1) is the next one out, and so on. */
void *hp_app(hp_req *req);
void *hp_app_at(hp_req *req, unsigned depth);

/* Every page carries the ABI it was built against (weak: a prebuilt object
 * made of several files still links). */
#ifndef HP_SERVER_BUILD
HP_EXPORT __attribute__((weak, used)) const int hp__abi_version = HP_ABI_VERSION;
#endif

/* ---- the request -------------------------------------------------------- */

const char *hp_method(hp_req *req);  /* "GET", "POST", ...                  */
const char *hp_path(hp_req *req);    /* decoded URL path, "/a/b/name"       */
const char *hp_query(hp_req *req);   /* raw query string without '?', or "" */
const char *hp_filename(hp_req *req); /* absolute path of the page file     */
const char *hp_handler_name(hp_req *req); /* "http_handler", "json", ...    */
const char *hp_remote_addr(hp_req *req);  /* "127.0.0.1"                    */

/* A request header, case-insensitive; NULL if absent. */
const char *hp_header(hp_req *req, const char *name);

/* A cookie sent by the client; NULL if absent. */
const char *hp_cookie(hp_req *req, const char *name);

/*
 * Arguments: query-string fields and, for POST/PUT bodies of type
 * application/x-www-form-urlencoded or multipart/form-data, form fields.
 * hp_arg returns the first value (query first, then body) or NULL.
 * hp_arg_n returns the i-th value of a repeated field (0-based) or NULL.
 * hp_arg_count counts the values of a field.
 */
const char *hp_arg(hp_req *req, const char *name);
const char *hp_arg_n(hp_req *req, const char *name, unsigned i);
unsigned hp_arg_count(hp_req *req, const char *name);

/* The raw request body (NUL-terminated for convenience; len excludes it). */
const char *hp_body(hp_req *req, size_t *len);

/* ---- the response ------------------------------------------------------- */

/* Append to the body. Return HP_OK, or -1 on allocation failure. */
int hp_write(hp_req *req, const void *data, size_t len);
int hp_puts(hp_req *req, const char *s);
int hp_printf(hp_req *req, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
int hp_vprintf(hp_req *req, const char *fmt, va_list ap);

/* Append s with & < > " ' escaped for HTML text and attribute values. */
int hp_write_html(hp_req *req, const char *s);

/* Set the status of a successful response (default 200). */
void hp_status(hp_req *req, int code);

/* Set (replace) a response header. Content-Type defaults to
 * "text/html; charset=utf-8". Names/values with CR or LF are refused (-1). */
int hp_set_header(hp_req *req, const char *name, const char *value);

/* Add a Set-Cookie header; attrs is appended verbatim, e.g.
 * "Path=/; HttpOnly; SameSite=Lax", or NULL. */
int hp_set_cookie(hp_req *req, const char *name, const char *value,
                  const char *attrs);

/* Redirect: 303 See Other after a POST, 302 Found otherwise. */
int hp_redirect(hp_req *req, const char *location);

/* ---- memory and logging ------------------------------------------------- */

/* Request-scoped memory: freed when the request ends. NULL on failure. */
void *hp_alloc(hp_req *req, size_t size);
char *hp_strdup(hp_req *req, const char *s);
char *hp_sprintf(hp_req *req, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Log a line to the server's error log, prefixed with the page. */
void hp_log(hp_req *req, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#ifdef __cplusplus
}
#endif
#endif /* HOTPUB_H */
