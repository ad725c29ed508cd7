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
 *         hp_puts(req, "Hello, ");
 *         hp_write_html(req, name ? name : "world"); // text/html: escape
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
 * symbol. A handler returns HP_OK, an HTTP status >= 400, or a redirect
 * status (301, 302, 303, 307, 308) after setting Location (hp_redirect).
 *
 * Everything a handler gets from hp_* (strings, arg values) lives until the
 * request ends; copy it if you keep it longer. Nothing here may be called
 * from a thread the page started itself unless it says so.
 *
 * A NULL where a function below needs a pointer (req, a string, a name,
 * a format, SQL) is a page's mistake, never a crash: the call returns
 * its failure value (-1, NULL, 0, false; nothing for a void function) and
 * writes one error line naming the function and the page, "PAGE
 * [HANDLER]: hp_puts: s is NULL (refused: a page's mistake)" ("hp_puts:
 * req is NULL ..." without a request), at most once a minute for each
 * page, function and argument in a worker. Each declaration says which NULLs
 * it refuses so, and which mean something (hp_set_header's NULL value
 * removes the field; a NULL hp_db handle fails quietly).
 *
 * The full manual is docs/pages.md.
 */
#ifndef HOTPUB_H
#define HOTPUB_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* JSON values are jansson's (https://jansson.readthedocs.io/): the server
 * links libjansson, so every page may call json_*() with no flags (and may
 * not define names of its own that jansson declares). */
#include <jansson.h>

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
#define HP_UNUSED __attribute__((unused))

#define HP_HANDLER(name)                                                       \
    static int name(hp_req *req);                                              \
    HP_EXPORT int (*const hp__handler_##name)(hp_req *) = name;                \
    static int name(hp_req *req HP_UNUSED)

/*
 * CSRF opt-outs (docs/pages.md#csrf). A request with a session that uses an
 * unsafe method (anything but GET, HEAD, OPTIONS, TRACE) is refused with
 * 403 before any hook or handler runs unless it brings the session's
 * hp_csrf_token. For handlers that authenticate otherwise (an API taking a
 * bearer token), at file scope:
 *     HP_CSRF_EXEMPT;                 every handler defined in this page;
 *                                     in an _app.c: its own and those of
 *                                     every page below it
 *     HP_CSRF_EXEMPT_HANDLER(name);   one handler, declared after it in the
 *                                     same file (a typo does not compile)
 * An exemption never covers code above its file: a page's does not reach
 * the handlers it acquires from an _app.c above it.
 */
#define HP_CSRF_EXEMPT                                                         \
    HP_EXPORT __attribute__((used)) const int hp__csrf_exempt = 1
#define HP_CSRF_EXEMPT_HANDLER(name)                                           \
    HP_EXPORT __attribute__((used)) const int hp__csrf_exempt_##name =         \
        sizeof(hp__handler_##name) != 0

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
    void *hp__init(hp_module *m HP_UNUSED, void *previous HP_UNUSED)

/*
 * HP_FINI { ... } runs when a version has been replaced (or the server
 * stops) and its last request has ended:
 *     void fini(hp_module *m, void *state, bool handed_over)
 * handed_over is true when the next version's init returned `state` itself:
 * then it belongs to the new version and must not be freed.
 */
#define HP_FINI                                                                \
    HP_EXPORT void hp__fini(hp_module *m, void *state, bool handed_over);      \
    void hp__fini(hp_module *m HP_UNUSED, void *state HP_UNUSED,               \
                  bool handed_over HP_UNUSED)

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
    int hp__hook_##name(hp_req *req HP_UNUSED)

/*
 * HP_PKG("name"); at file scope declares that this page (or application
 * module) uses the pkg-config package `name`: the server compiles the page
 * with `pkg-config --cflags name` and links it with `pkg-config --libs
 * name`, for this page only. Several are allowed, one per HP_PKG:
 *
 *     #include <zlib.h>
 *     HP_PKG("zlib");
 *     HP_PKG("jansson");
 *
 * The name is a string literal of letters, digits and _ . + - (not starting
 * with -). The server reads the declarations from the page's own bytes,
 * outside comments and string literals (not from its headers, and without
 * evaluating #if); the list is part of the compile cache's key. An unknown
 * package is a compile error naming it and its line, in the browser (dev
 * mode), the log and `hotpub check`. Where pkg-config looks is the
 * server's PKG_CONFIG_PATH. docs/pages.md, "Libraries in pages".
 *
 * To the compiler it is a static assertion: it emits nothing.
 */
#ifdef __cplusplus
#define HP_PKG(name) static_assert(sizeof("" name "") > 1, "HP_PKG(\"\")")
#else
#define HP_PKG(name) _Static_assert(sizeof("" name "") > 1, "HP_PKG(\"\")")
#endif

/* Fail the init in progress; the message is shown like a compile error
 * (a NULL fmt still fails it, with "(init failed)", and logs an error).
 * NULL m: these return nothing / NULL / 0 and log an error. */
void hp_module_error(hp_module *m, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
const char *hp_module_path(hp_module *m);          /* absolute source path */
unsigned long long hp_module_version(hp_module *m); /* version id          */

/* The state returned by init of the module whose code is running: the
 * page's for its own handlers and hooks, an application module's for the
 * hooks and acquired handlers it defines. NULL req: these return NULL and
 * log an error. */
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

/* The method as sent: A-Z, '_' and '-' only (the edge answers 400 to any
 * other, 405 to TRACE and CONNECT); every other method, known or not
 * (PUT, PROPFIND, FOO), reaches the page, which decides (docs/pages.md).
 * NULL req: these six return NULL and log an error. */
const char *hp_method(hp_req *req);  /* "GET", "POST", ...                  */
const char *hp_path(hp_req *req);    /* decoded URL path, "/a/b/name"       */
const char *hp_query(hp_req *req);   /* raw query string without '?', or "" */
const char *hp_filename(hp_req *req); /* absolute path of the page file     */
const char *hp_handler_name(hp_req *req); /* "http_handler", "json", ...    */
const char *hp_remote_addr(hp_req *req);  /* "127.0.0.1"                    */

/* A request header, case-insensitive; NULL if absent. NULL name: returns
 * NULL and logs an error. */
const char *hp_header(hp_req *req, const char *name);

/* A cookie sent by the client (RFC 6265; the first of a repeated name; an
 * exact name match before a case-insensitive one); NULL if absent. NULL
 * name: returns NULL and logs an error. */
const char *hp_cookie(hp_req *req, const char *name);

/*
 * Arguments: query-string fields and, for POST/PUT bodies of type
 * application/x-www-form-urlencoded or multipart/form-data, form fields.
 * hp_arg returns the first value (query first, then body) or NULL.
 * hp_arg_n returns the i-th value of a repeated field (0-based) or NULL.
 * hp_arg_count counts the values of a field.
 * Query strings and urlencoded bodies decode alike (WHATWG URL); a value
 * holding a NUL byte reads as cut there. Decoded before the handler runs:
 * more than --max-fields fields get 413, a malformed multipart body 400.
 * NULL name: NULL (hp_arg_count: 0) and an error logged.
 */
const char *hp_arg(hp_req *req, const char *name);
const char *hp_arg_n(hp_req *req, const char *name, unsigned i);
unsigned hp_arg_count(hp_req *req, const char *name);

/*
 * The raw request body (NUL-terminated for convenience; len excludes it),
 * held in memory up to --max-body. "" for a multipart/form-data body,
 * which is decoded as it arrives (see hp_file). A large non-form body is
 * not handed over piece by piece: the handler runs once the body is
 * complete (docs/pages.md, "Uploads" says why); raise --max-body or send
 * it as multipart/form-data to spool it to disk. len may be NULL; a NULL
 * req returns NULL (*len 0) and logs an error.
 */
const char *hp_body(hp_req *req, size_t *len);

/*
 * An uploaded file: a multipart/form-data part with a filename parameter
 * (RFC 7578 4.2). Its bytes are written to a temporary file in
 * --upload-dir while the body arrives (memory stays bounded), before the
 * handler runs.
 *   filename      the client's name for the file, untrusted: it may hold
 *                 '/', "..", anything, or be "" (a form sent with no file
 *                 chosen); never use it as a path as it is
 *   content_type  the part's Content-Type, or "application/octet-stream"
 *   size          the file's length in bytes
 *   path          the temporary file holding exactly those bytes (mode
 *                 0600). It is removed when the request ends, unless the
 *                 handler rename()s it away first (same file system as
 *                 --upload-dir; else copy it). Valid until the request
 *                 ends.
 * hp_arg on a file field returns the file name (filename above), never the
 * content; hp_arg_count counts file fields too.
 */
struct hp_file {
    const char *filename;
    const char *content_type;
    uint64_t size;
    const char *path;
};

/* The first file sent in field, the i-th (0-based) of a repeated field
 * (<input type=file multiple>), how many; NULL / 0 when there is none.
 * NULL field: NULL / 0 and an error logged. */
const struct hp_file *hp_file(hp_req *req, const char *field);
const struct hp_file *hp_file_n(hp_req *req, const char *field, unsigned i);
unsigned hp_file_count(hp_req *req, const char *field);

/* ---- the response ------------------------------------------------------- */

/* Append to the body. Return HP_OK, or -1 on allocation failure. NULL s,
 * NULL fmt, NULL data with len > 0: -1, nothing written, and an error
 * logged (NULL data with len 0 writes nothing: HP_OK). */
int hp_write(hp_req *req, const void *data, size_t len);
int hp_puts(hp_req *req, const char *s);
int hp_printf(hp_req *req, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
int hp_vprintf(hp_req *req, const char *fmt, va_list ap);

/* Append s with & < > " ' escaped for HTML text and attribute values.
 * NULL s writes nothing (HP_OK): hp_write_html(req, hp_arg(req, "q")). */
int hp_write_html(hp_req *req, const char *s);

/*
 * Streaming. hp_flush sends the status and headers (the first time) and
 * the body written so far, then keeps the response open: the body goes on
 * with each hp_flush and ends when the handler returns (chunked transfer
 * coding on HTTP/1.1, RFC 9112 7.1; close-delimited on HTTP/1.0). At most
 * 256 KiB wait in the server: a slow client makes hp_flush wait, for up to
 * --timeout seconds without progress. Returns HP_OK, or -1 once the
 * client is gone (or the wait timed out, or the server is shutting down
 * (what was written is still sent), or --max-streams streams are already
 * open: then the request is answered 503), so a loop can stop.
 *
 * What streaming gives up: the response is committed before the commit
 * hooks run. If the request then fails (a commit hook, the database
 * commit, the handler returning an error), the status cannot change: the
 * stream is aborted (the chunked body is not terminated, so the client
 * sees an incomplete response) and the error log says so.
 *
 * A stream holds its handler thread until the handler returns, so at
 * most --max-streams (default: half of --max-threads) are open at once. A
 * page run on an event-loop thread (inline, docs/design.md) cannot wait
 * for a client: there hp_flush returns HP_OK and keeps the body buffered,
 * the response goes out whole, and the page runs on the handler threads
 * from its next request on. Headers set after the first flush are lost.
 * NULL req: -1 and an error logged.
 */
int hp_flush(hp_req *req);

/*
 * Send one Server-Sent Event (HTML Living Standard, "Server-sent events"):
 * "event: NAME" when event is neither NULL nor "", a "data: " line for
 * each line of data (CR LF, CR or LF split it), a blank line; then
 * hp_flush. The first call sets Content-Type: text/event-stream and
 * Cache-Control: no-cache. Returns HP_OK, or -1 when the client is gone
 * (as hp_flush) or event holds CR or LF. A NULL data sends one empty
 * "data:" line.
 */
int hp_sse(hp_req *req, const char *event, const char *data);

/*
 * Answer with the file at path as static files are answered. An absolute
 * path is any file (pages are trusted code); a relative one is resolved
 * against the calling page's (or module's) directory, as hp_render's
 * template names, and must stay inside the document root, symlinks
 * resolved (else -1, errno EACCES). Content-Type from the extension
 * (unless the page set one), Last-Modified, ETag, conditional requests (304, 412),
 * one byte range (206, or 416), HEAD, sent with zero copy where the
 * kernel allows. The file is opened now (so a missing file is -1 with
 * errno set, and the page can answer 404) and sent after the commit hooks
 * succeed; headers the page sets go along (Content-Disposition, ...);
 * the body it writes does not. Returns HP_OK or -1; -1 after hp_flush.
 * NULL path: -1 (errno EINVAL) and an error logged.
 */
int hp_send_file(hp_req *req, const char *path);

/* Set the status of a successful response (default 200): 200-599. A 1xx
 * code is never the final status (RFC 9110 15.2): it is ignored and
 * logged (at most once a minute); other codes are ignored silently. NULL
 * req: ignored, and an error logged. */
void hp_status(hp_req *req, int code);

/* Set (replace) a response header; value NULL removes every field of
 * that name the page set (all Set-Cookie lines for "Set-Cookie"; a
 * removed Content-Type goes back to its default). Content-Type defaults to
 * "text/html; charset=utf-8". Refused (-1, nothing set): a name that is
 * not a token, a value with a control character other than HTAB (CR and LF
 * would inject fields; RFC 9110 5.5), and the fields that are the
 * server's: those that frame the message (Content-Length,
 * Transfer-Encoding, Connection, Keep-Alive, Upgrade, TE, Trailer) and
 * Date (the server's clock, RFC 9110 6.6.1). No Server field is sent
 * unless the page sets one. A head larger than libmicrohttpd has room for
 * (about 3.5 KB of fields always fit with --max-header 16k; docs/pages.md)
 * is not sent: the response is a plain 500, logged. NULL name: -1 and an
 * error logged. */
int hp_set_header(hp_req *req, const char *name, const char *value);

/* Add a Set-Cookie header; attrs is appended verbatim, e.g.
 * "Path=/; HttpOnly; SameSite=Lax", or NULL. -1, setting nothing, when the
 * name is not a token or the value has a character RFC 6265 4.1.1 forbids
 * in a cookie-value (CTLs, whitespace, DQUOTE but around the whole value,
 * comma, semicolon, backslash, non-ASCII). hp_set_header(req, "Set-Cookie",
 * v) checks the name=value part of v (up to the first ';') the same way.
 * NULL name or value: -1 and an error logged. */
int hp_set_cookie(hp_req *req, const char *name, const char *value,
                  const char *attrs);

/* Redirect: set Location, and the status 302 Found for GET and HEAD, 303
 * See Other otherwise. location is a URI reference (RFC 3986 4.1); space,
 * bytes >= 0x80 and " < > \ ^ ` { | } are percent-encoded (RFC 3986 2.1;
 * "/a b" goes out as "/a%20b"), anything else, '%' included, is sent as
 * it is. -1, setting nothing, when location is NULL (an error logged),
 * empty or holds a control byte (0x00-0x1F, 0x7F: tab, CR and LF too);
 * else HP_OK. */
int hp_redirect(hp_req *req, const char *location);

/* ---- JSON (jansson) ---------------------------------------------------- */

/*
 * The request body parsed as JSON (RFC 8259), or NULL. NULL when the
 * request has no body, when its Content-Type is not application/json (nor
 * a "+json" type such as application/merge-patch+json; parameters such as
 * charset=utf-8 are allowed), or when the body is malformed. Malformed
 * means anything jansson's strict decoder refuses, and more:
 *   - not exactly one JSON value (any type at the top level is accepted),
 *     or anything but whitespace after it;
 *   - invalid UTF-8 anywhere, or an escaped "\u0000" (a C string would be
 *     cut short there);
 *   - an object with the same key twice (parsers disagree on which one
 *     wins, so a value checked by one reader is not the one another uses);
 *   - an integer outside -2^63 .. 2^63-1 or a number overflowing a double
 *     (refused rather than rounded; send big numbers as strings);
 *   - nesting deeper than 512 (arrays and objects).
 * The page decides what to answer: hp_json_error(req) then says why
 * (jansson's message with line and column), else it is NULL. The value is
 * parsed once, on the first call, and is owned by the request: do not
 * json_decref it (json_incref it to keep it longer). NULL req: both return
 * NULL and log an error.
 */
json_t *hp_json_body(hp_req *req);
const char *hp_json_error(hp_req *req);

/*
 * Append value's JSON text (compact, UTF-8, object keys in insertion
 * order, reals in the shortest form that reads back the same) to the
 * response, and set Content-Type: application/json unless the page set a
 * Content-Type. Does not take the reference: the caller still owns value.
 * HP_OK, or -1 (value NULL, which logs an error; not encodable; out of
 * memory).
 */
int hp_write_json(hp_req *req, const json_t *value);

/* ---- templates (Mustache) --------------------------------------------- */

/*
 * Render the Mustache template file `tpl` with `data` as its root context
 * and append the result to the response (docs/pages.md#templates). The
 * spec's required modules are supported: {{name}} HTML-escaped, {{{name}}}
 * and {{& name}} as is, dotted names, {{.}}, sections, inverted sections,
 * comments, partials and set delimiters (github.com/mustache/spec). False,
 * null, a missing name and [] are falsey.
 *   - `tpl` is relative to the directory of the page (or application
 *     module) whose code calls it; a leading '/' means the document root.
 *     "{{> name}}" loads name.tpl from the directory of the template that
 *     includes it. Neither may leave the document root. Only template
 *     files are loaded: `tpl` must end in ".tpl" (a page's source such as
 *     "items.c" or "_app.c", or any other file, is refused with a 500 and
 *     a log line naming the page and the name), and a .tpl symlink must
 *     lead to a .tpl file inside the root. .tpl files are never served.
 *   - Parsed templates are cached and reloaded after an edit, like pages;
 *     a request sees each template as it was at its first use in that
 *     request, and templates saved together change together.
 *   - A missing template or a syntax error returns 500 and makes the
 *     response a 500 whatever the handler then returns: in development
 *     mode the page shows the error with the template's file:line, and it
 *     is logged. A missing partial renders as nothing (the spec's rule).
 * Returns HP_OK or 500:  return hp_render(req, "list.tpl", data);
 * data may be NULL; it is not modified and its reference is not taken.
 * A NULL tpl is a 500 like a missing template, logged as an error.
 */
int hp_render(hp_req *req, const char *tpl, const json_t *data);

/* ---- path parameters ---------------------------------------------------- */

/*
 * HP_PATH_PARAMS(handler); at file scope lets `handler` receive the URL
 * segments after it: with
 *     HP_HANDLER(http_handler) { ... }  HP_PATH_PARAMS(http_handler);
 *     HP_HANDLER(edit) { ... }          HP_PATH_PARAMS(edit);
 * in items.c, /items/42 runs http_handler with parameter 0 "42", and
 * /items/edit/42 runs edit with parameter 0 "42". A page without it keeps
 * answering 404 to such URLs. Rules in docs/pages.md#path-parameters.
 */
#define HP_PATH_PARAMS(name)                                                   \
    HP_EXPORT extern const int hp__path_params_##name;                         \
    const int hp__path_params_##name = 1

/* The i-th segment after the handler (0-based, percent-decoded), or NULL;
 * and how many there are. At most 32 are accepted (more: 404). NULL req:
 * NULL / 0 and an error logged. */
const char *hp_path_param(hp_req *req, unsigned i);
unsigned hp_path_param_count(hp_req *req);

/* ---- per-request values ------------------------------------------------ */

/* Hand a pointer from a hook to the handler or to another hook of the same
 * request (the origin design's req.cursor). Keys are compared as strings;
 * setting an existing key replaces it. -1 on allocation failure. NULL key:
 * -1 / NULL and an error logged. */
int hp_req_set(hp_req *req, const char *key, void *value);
void *hp_req_get(hp_req *req, const char *key);

/* ---- memory and logging ------------------------------------------------- */

/* Request-scoped memory: freed when the request ends. NULL on failure;
 * NULL (and an error logged) for a NULL req, s or fmt. */
void *hp_alloc(hp_req *req, size_t size);
char *hp_strdup(hp_req *req, const char *s);
char *hp_sprintf(hp_req *req, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Log a line to the server's error log, prefixed with the page. A NULL fmt
 * logs an error saying so instead. */
void hp_log(hp_req *req, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* ---- database (docs/database.md) ---- */

/*
 * A page gets a pooled connection with a transaction already begun:
 *
 *     HP_HANDLER(add)
 *     {
 *         hp_db *db = hp_db(req);
 *         if (hp_db_exec(db, "INSERT INTO notes(body) VALUES ($1)",
 *                        hp_arg(req, "body")) != HP_OK)
 *             return 500;                  // rolled back for you
 *         hp_redirect(req, "/notes");
 *         return HP_OK;                    // committed for you
 *     }
 *
 * The request commits the transaction when it succeeds (handler and every
 * commit hook returned HP_OK), rolls it back when anything failed, and
 * returns the connection to its pool when it ends, always. Parameters are
 * $1, $2, ... on every engine and are always bound, never spliced into the
 * SQL. Every hp_db_* function accepts a NULL handle or result and then fails
 * quietly, so a page may skip the NULL check of hp_db(req). On a handle, a
 * NULL sql (or results, or params with a count > 0) is a failed statement
 * (SQLSTATE 22004; 22023 for params): -1 / NULL, hp_db_error naming the
 * function, the failed statement's error line naming the page, and the
 * request's transaction rolls back. hp_db(NULL): NULL, an error logged.
 */
typedef struct hp_db hp_db;           /* one connection, used by one thread */
typedef struct hp_db_res hp_db_res;   /* a result: all rows, in memory      */
typedef struct hp_db_pool hp_db_pool; /* thread-safe connection pool        */

enum hp_db_engine { HP_DB_SQLITE = 1, HP_DB_POSTGRESQL = 2 };
enum hp_db_type { HP_DB_NULL, HP_DB_INT, HP_DB_FLOAT, HP_DB_TEXT, HP_DB_BLOB };

/* A typed parameter; build one with the macros below. */
typedef struct hp_db_val {
    enum hp_db_type type;
    size_t len; /* HP_DB_BLOB: bytes (text is NUL-terminated) */
    union {
        long long i;
        double f;
        const char *s;
        const void *b;
    } v;
} hp_db_val;

#define HP_NULL ((hp_db_val){.type = HP_DB_NULL})
#define HP_INT(x) ((hp_db_val){.type = HP_DB_INT, .v.i = (x)})
#define HP_FLOAT(x) ((hp_db_val){.type = HP_DB_FLOAT, .v.f = (x)})
/* A NULL pointer is SQL NULL, so HP_TEXT(hp_arg(req, "x")) just works. */
#define HP_TEXT(x) ((hp_db_val){.type = HP_DB_TEXT, .v.s = (x)})
#define HP_BLOB(p, n) ((hp_db_val){.type = HP_DB_BLOB, .v.b = (p), .len = (n)})

/*
 * The request's connection on the server's default pool (--db): acquired on
 * first use, the same handle for the rest of the request. NULL when no
 * connection could be had within the pool's acquire timeout (the response
 * becomes a 503 with a message saying so, whatever the handler returns) or
 * the database is unreachable (503 too). hp_db(req) is a macro so that the
 * type and the call can share a name.
 */
hp_db *hp_db_req(hp_req *req);
#define hp_db(req) hp_db_req(req)
/* The same on a pool an application module owns. */
hp_db *hp_db_from(hp_req *req, hp_db_pool *pool);
/*
 * Put the request's handle in autocommit mode, as PHP's PDO and most
 * drivers are by default: each statement is then a transaction of its own,
 * committed when it ends, and the request's outcome changes nothing in the
 * database (a rollback, a 500, a failed commit hook undo none of it); a
 * failed statement no longer fails the request or refuses the next ones
 * (check each call). No transaction control on it: BEGIN, START
 * TRANSACTION, COMMIT, END, ROLLBACK, ABORT, PREPARE TRANSACTION,
 * SAVEPOINT, RELEASE and ROLLBACK TO are refused (25001); for a
 * transaction of your own take a pool handle (hp_db_pool_acquire). A
 * session rides on the request's transaction: a request that touched its
 * session keeps it (-1 here), and one that uses it after the call answers
 * 500. What it saves on PostgreSQL: a read is one statement, not the read
 * and its guard (docs/database.md, "Autocommit"). Call it before the
 * handle's first statement, for the rest of the request:
 *     hp_db *db = hp_db(req);
 *     if (!db) return 500;
 *     hp_db_autocommit(db);
 * HP_OK (also on a pool handle, unless its own BEGIN is open, and in a
 * rollback or release hook after the request's transaction rolled back);
 * -1 when db is NULL, a statement already ran on it (a POST's CSRF check
 * reads the session when a session cookie came; a prepare hook may run
 * statements) or the session was touched (SQLSTATE 25001). The handle then
 * stays in the request's transaction, the stricter mode: a page that only
 * wants cheaper reads may ignore the result; one whose writes must
 * outlive a failed request must check it.
 */
int hp_db_autocommit(hp_db *db);

/*
 * Run one statement. hp_db_exec and hp_db_query take text parameters (a
 * NULL pointer is SQL NULL); their number must match the highest $n:
 *     hp_db_exec(db, "DELETE FROM notes WHERE id = $1", hp_arg(req, "id"));
 * hp_db_execv and hp_db_queryv take typed ones:
 *     hp_db_execv(db, "INSERT INTO f(name, size, data) VALUES ($1, $2, $3)",
 *                 HP_TEXT(name), HP_INT(len), HP_BLOB(data, len));
 * (these four are macros: the parameters are counted at compile time, and
 * a wrong type draws a compiler diagnostic). exec returns HP_OK or -1; query returns a
 * result or NULL on error. A result lives until hp_db_res_free or until its
 * connection goes back to the pool (the end of the request).
 */
#define hp_db_exec(db, ...) hp_db__exec_text((db), HP__DB_STRS(__VA_ARGS__))
#define hp_db_query(db, ...) hp_db__query_text((db), HP__DB_STRS(__VA_ARGS__))
#define hp_db_execv(db, sql, ...)                                              \
    hp_db_exec_params((db), (sql), HP__DB_VALS(__VA_ARGS__))
#define hp_db_queryv(db, sql, ...)                                             \
    hp_db_query_params((db), (sql), HP__DB_VALS(__VA_ARGS__))
/* The functions behind them, for parameter lists built at run time. */
int hp_db_exec_params(hp_db *db, const char *sql, size_t n,
                      const hp_db_val *params);
hp_db_res *hp_db_query_params(hp_db *db, const char *sql, size_t n,
                              const hp_db_val *params);
/*
 * Run one statement once per row of parameters: nrows rows of ncols values,
 * row-major in params (params[i*ncols + j] is $j+1 of run i; nrows * ncols
 * values in all). Exactly as if the page called hp_db_query_params (or
 * hp_db_exec_params) nrows times in order: the same transaction rules,
 * statement cache (looked up once per batch), error logging and error
 * counter. But on PostgreSQL every run goes to the server in one write and
 * their results come back in one round trip (libpq's pipeline mode: the
 * libpq docs, "Pipeline Mode"; the protocol, section 55.2.4 "Pipelining"),
 * where nrows calls would wait nrows times; each run is still a
 * statement of its own on the server. A very large batch goes in chunks of
 * about 64 KiB of parameters, one round trip each. On SQLite: a loop.
 *
 *     hp_db_val ids[20];  hp_db_res *rows[20];
 *     for (int i = 0; i < 20; i++) ids[i] = HP_INT(random_id());
 *     if (hp_db_query_many(db, "SELECT n FROM world WHERE id = $1",
 *                          20, 1, ids, rows) != HP_OK)
 *         return 500;
 *
 * results: nrows pointers; results[i] is run i's result, freed with
 * hp_db_res_free or when the connection goes back to its pool (the end of
 * the request), like any result. Returns HP_OK, or -1 at the first run that
 * fails: the results before it are set, that one and the later ones are NULL
 * (the later ones did not run), hp_db_error / hp_db_sqlstate say why, and a
 * request's transaction fails as with any failed statement. nrows == 0 is
 * HP_OK and sends nothing; nrows * ncols overflowing size_t is an error
 * (SQLSTATE 54000), as are params NULL with ncols > 0 (22023), and sql
 * NULL or results NULL with nrows > 0 (22004, logged). A NULL db fails
 * quietly (-1). hp_db_changes after a batch is the sum
 * of its runs' rows changed.
 */
int hp_db_query_many(hp_db *db, const char *sql, size_t nrows, size_t ncols,
                     const hp_db_val *params, hp_db_res **results);
int hp_db_exec_many(hp_db *db, const char *sql, size_t nrows, size_t ncols,
                    const hp_db_val *params);
/* Several statements separated by ';', no parameters (schema scripts). */
int hp_db_exec_script(hp_db *db, const char *sql);
/* Rows changed by the last call (exec or query) if it succeeded and was an
 * INSERT, UPDATE, DELETE or MERGE (INSERT ... RETURNING counts); 0 for any
 * other statement (a SELECT, DDL) and after a failed call, on both engines.
 * After a batch: the sum of its runs'. */
long long hp_db_changes(hp_db *db);

/* Reading a result: hp_db_next moves to the next row (the first, the first
 * time) and returns false after the last. Columns are 0-based. */
bool hp_db_next(hp_db_res *r);
size_t hp_db_nrows(hp_db_res *r);
int hp_db_ncols(hp_db_res *r);
const char *hp_db_colname(hp_db_res *r, int col);
int hp_db_col(hp_db_res *r, const char *name); /* index, or -1 */
/* Of the current row: the value's type (HP_DB_NULL for NULL), then the
 * value converted as asked. hp_db_text is NULL for NULL and "" for an empty
 * string; numbers come back as their decimal text; a blob as its bytes
 * (NUL-terminated too). hp_db_int / hp_db_float give 0 for NULL;
 * hp_db_int of a number past long long's range (text or float) gives
 * LLONG_MAX or LLONG_MIN, as strtoll does, and of NaN 0. */
enum hp_db_type hp_db_coltype(hp_db_res *r, int col);
bool hp_db_is_null(hp_db_res *r, int col);
const char *hp_db_text(hp_db_res *r, int col);
long long hp_db_int(hp_db_res *r, int col);
double hp_db_float(hp_db_res *r, int col);
const void *hp_db_blob(hp_db_res *r, int col, size_t *len);
void hp_db_res_free(hp_db_res *r);

/* The last error on this handle: the engine's message, its SQLSTATE
 * ("23505" for a unique violation on both engines: SQLite's codes are
 * mapped) and the engine's own code (SQLite's extended result code, 0 for
 * PostgreSQL). NULL / "" / 0 when the last call succeeded. */
const char *hp_db_error(hp_db *db);
const char *hp_db_sqlstate(hp_db *db);
int hp_db_errcode(hp_db *db);
enum hp_db_engine hp_db_engine(hp_db *db);

/*
 * Pools. The server's default pool is hp_db_default_pool() (NULL when the
 * database is off). An application module may open its own in HP_INIT,
 * hand it over to its next version by returning the state that holds it,
 * and close it in HP_FINI when !handed_over. URLs: "sqlite:PATH",
 * "sqlite::memory:", "postgresql://..." or "postgres://...". Zero in an
 * option means its default; a negative value means none/off.
 */
struct hp_db_pool_opts {
    int max_conns;          /* 0: 8 for PostgreSQL, 4 for SQLite          */
    int acquire_timeout_ms; /* 0: 5000; < 0: do not wait                  */
    int max_lifetime_s;     /* 0: 3600; < 0: unlimited                    */
    int stmt_cache;         /* prepared statements kept per connection;
                               0: 64; < 0: none                           */
    const char *name;       /* for logs and the status page; 0: the URL   */
    const char *init_sql;   /* run on every new connection, and again
                               after a reset (a request changed the
                               session: docs/database.md), or NULL        */
};
/* NULL with a malloc'd message in *err (free it) on a bad URL. Connects on
 * demand, so a database that is down now does not make this fail. */
hp_db_pool *hp_db_pool_open(const char *url, const struct hp_db_pool_opts *opts,
                            char **err);
/* Closes idle connections now, the others as they come back. */
void hp_db_pool_close(hp_db_pool *pool);
hp_db_pool *hp_db_default_pool(void);

/* A connection outside any request (in HP_INIT, or a thread of your own),
 * in autocommit mode: run BEGIN/COMMIT yourself. NULL with *err set (free
 * it) on timeout or connection failure. Release rolls back whatever
 * transaction is still open, and resets the session when a statement may
 * have changed it (SET, LISTEN, temporary tables...: docs/database.md,
 * "What a request can rely on"). */
hp_db *hp_db_pool_acquire(hp_db_pool *pool, char **err);
void hp_db_pool_release(hp_db *db);

struct hp_db_pool_stats {
    unsigned max, size, in_use, idle, waiters;
    unsigned long long acquires; /* successful checkouts                   */
    unsigned long long timeouts; /* waits that ran out                     */
    unsigned long long errors;   /* failed statements and connects         */
    unsigned long long connects; /* connections opened                     */
    unsigned long long discarded; /* closed as broken, old or unclean      */
    unsigned long long prepares; /* statements compiled                    */
    unsigned long long cache_hits; /* statements reused from the cache     */
};
/* NULL pool: all zero. NULL out: nothing, and an error logged. */
void hp_db_pool_stats(hp_db_pool *pool, struct hp_db_pool_stats *out);

/* Behind the macros above: sql_and_params[0] is the SQL. */
int hp_db__exec_text(hp_db *db, const char *const *sql_and_params, size_t n);
hp_db_res *hp_db__query_text(hp_db *db, const char *const *sql_and_params,
                             size_t n);
#define HP__DB_STRS(...)                                                       \
    (const char *const[]){__VA_ARGS__},                                        \
        sizeof((const char *const[]){__VA_ARGS__}) / sizeof(const char *)
#define HP__DB_VALS(...)                                                       \
    sizeof((const hp_db_val[]){__VA_ARGS__}) / sizeof(hp_db_val),              \
        (const hp_db_val[]){__VA_ARGS__}

/* ---- sessions, CSRF tokens, passwords (docs/pages.md#sessions) ---- */

/*
 * Sessions live in the default database (--db), in the table
 * hotpub_sessions (created on first use), so every worker process and every
 * server on the same database sees them, and they survive restarts. The
 * cookie (--session-cookie, "hotpub_session" by default) holds only a
 * random id: 256 bits from the kernel's CSPRNG (getrandom), 43 base64url
 * characters, sent Path=/; Max-Age=--session-lifetime; HttpOnly;
 * SameSite=Lax, and Secure over HTTPS or with --session-secure-cookie. The
 * table stores the SHA-256 of the id, never the id. A cookie that is
 * malformed, unknown or expired is simply no session. A session expires
 * after --session-lifetime seconds without use (the expiry is renewed at
 * most every 1% of the lifetime); expired rows are deleted every
 * --session-purge-interval seconds.
 *
 * Changes are written in the request's commit phase, on the request's own
 * connection (hp_db(req)) and in its transaction: they are committed with
 * it, and discarded, cookie and all, when the request fails (the handler
 * returns an error status, a hook fails, a statement failed).
 *
 * One request of a session at a time (PHP's session lock): a request's
 * first use of its session (any function here, and the CSRF check of an
 * unsafe method) takes the session's lock, held until the request ends
 * (after its commit or rollback), so concurrent requests of one session
 * run their session parts one after the other and an increment counts.
 * PostgreSQL: the row is locked (SELECT ... FOR UPDATE) in the request's
 * transaction, across processes and servers; SQLite: a byte of the file
 * "<database>-session-locks" (an OFD lock), across threads and processes.
 * Either dies with the request's transaction or its process. A request
 * that waits longer than --session-lock-timeout (ms, 10000) answers 503
 * with Retry-After: 1 (logged), whatever its handler returns. Requests
 * without a session cookie, and pages that do not touch the session,
 * never wait. docs/pages.md, "One request of a session at a time".
 *
 * Every function fails (NULL / -1) when no database is configured (--db
 * off; logged once per process) or the database fails (the request then
 * answers 503 as for hp_db). Keys and values are NUL-terminated strings;
 * what hp_session_get returns lives until the request ends. A NULL req,
 * key or value is refused (NULL / -1 / false, nothing changed) with an
 * error logged.
 */
/* The value of key in the request's session, or NULL (no such key, no
 * session). Never creates a session. */
const char *hp_session_get(hp_req *req, const char *key);
/* Set key (non-empty) to value (not NULL), creating the session (and its
 * cookie) if there is none. HP_OK or -1. */
int hp_session_set(hp_req *req, const char *key, const char *value);
/* Remove key. HP_OK (also when it was not there) or -1. */
int hp_session_del(hp_req *req, const char *key);
/* End the session: its row is deleted at commit and the browser told to
 * forget the cookie. A later hp_session_set in the same request starts a
 * new one. */
void hp_session_destroy(hp_req *req);
/* Give the session a new id and a new CSRF token, keeping its data; the
 * old id stops working when the request commits. Call it on login (and on
 * any change of privilege) against session fixation (OWASP). Without a
 * session, creates an empty one. HP_OK or -1. */
int hp_session_regenerate(hp_req *req);
/* Before the request's first use of its session: the request only reads
 * it (PHP's read_and_close): it is read without the session's lock, so it
 * never waits for another request of the session (a long stream, a page
 * that only shows who is logged in), but may see a value another request
 * is about to change; hp_session_set, _del, _destroy, _regenerate and
 * hp_csrf_token's creating a session fail (-1 / NULL, logged). HP_OK, or
 * -1 when the session was used already in this request (it stays locked). */
int hp_session_read_only(hp_req *req);
/* The request has a session: the one its cookie names (not expired), even
 * one that holds no data (made by hp_csrf_token), or one made earlier in
 * this request. Never creates one. A request with an unsafe method for
 * which it is true passed the CSRF check (a login form's POST came from a
 * page of this site that gave it the token). false when sessions fail. */
bool hp_session_exists(hp_req *req);

/*
 * The session's CSRF token (43 base64url characters), creating a session if
 * there is none (so a login form is protected too); NULL only when sessions
 * fail or req is NULL (see above). A session that holds no data (only
 * this token) lives session-anonymous-lifetime (24 minutes) unused, not
 * session-lifetime. Put it in forms as
 *     <input type="hidden" name="csrf_token" value="...">
 * or send it as the X-CSRF-Token header field from scripts. Tokens in the
 * query string are not accepted. See HP_CSRF_EXEMPT above.
 */
const char *hp_csrf_token(hp_req *req);

/*
 * Passwords: argon2id (RFC 9106) through libsodium's crypto_pwhash_str at
 * its "interactive" cost (2 passes over 64 MiB: about 50-100 ms of CPU).
 * hp_password_hash returns the encoded hash ("$argon2id$v=19$m=65536,t=2,
 * p=1$salt$hash", under 128 bytes, with its own random salt; store it as
 * text), owned by the request; NULL when the memory cannot be had (logged)
 * or for a NULL password (logged). hp_password_verify compares in
 * constant time; false for a wrong password, for a NULL or malformed hash
 * and for a NULL password.
 */
const char *hp_password_hash(hp_req *req, const char *password);
bool hp_password_verify(const char *hash, const char *password);

#ifdef __cplusplus
}
#endif
#endif /* HOTPUB_H */
