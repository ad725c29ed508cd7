/*
 * publish.c - the publisher's request lifecycle, after the URL has named a
 * page: pin the page and its application chain, find the handler
 * (acquisition), run prepare / handler / commit or rollback / release.
 *
 * Owns: the order of hooks and what a failure at each step means for the
 * response; handler acquisition; the module-state accessors pages call.
 * May not touch: HTTP sending (it leaves a status and a body in the
 * request for server.c), URL mapping, building modules.
 *
 * The order, as in the origin design: prepare for each application module
 * from the outermost in, then the page; the handler; commit when all went
 * well, else rollback, application modules first; release always, for
 * every module whose prepare ran, page first. The response is only
 * assembled, never sent, until commit has succeeded.
 */
#include "request.h"
#include "session.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* The modules of a request, outermost application first, page last. */
static size_t modules_of(hp_req *req, hp_version **mods)
{
    size_t n = 0;
    for (size_t i = 0; i < req->pins.napps; i++)
        mods[n++] = req->pins.apps[i];
    mods[n++] = req->pins.page;
    return n;
}

/*
 * Acquisition: the page's own handler, else the innermost application
 * module's, and so on out to the root. Names starting with '_' never
 * reach here (the resolver refuses them).
 */
static hp_handler_fn find_handler(hp_req *req, const char *name,
                                  hp_version **from)
{
    hp_version *mods[HP_MAX_APPS + 1];
    size_t n = modules_of(req, mods);

    for (size_t i = n; i-- > 0;) {
        hp_handler_fn fn = hp_version_handler(mods[i], name);
        if (fn) {
            *from = mods[i];
            return fn;
        }
    }
    return NULL;
}

/* ---- routing: the URL's segments after the page ------------------------ */

/* A handler name from a URL: a C identifier not starting with '_' (the
 * reserved names), as the resolver's rule 4 requires. */
static bool handler_name_ok(const char *s, size_t n)
{
    if (n == 0 || n > 100 ||
        !((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z')))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= 'a' && s[i] <= 'z') ||
              (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
            return false;
    return true;
}

/* Did the module that defines handler `name` declare HP_PATH_PARAMS? */
static bool takes_params(hp_version *m, const char *name)
{
    char sym[160];
    snprintf(sym, sizeof sym, "hp__path_params_%s", name);
    const int *flag = hp_version_sym(m, sym);
    return flag && *flag == 1;
}

/* The URL's segments after the first `skip` ones (empty ones dropped, as
 * the resolver does), copied into request memory. */
static size_t rest_segments(hp_req *req, size_t skip, const char **out,
                            size_t max)
{
    size_t n = 0, seen = 0;
    for (const char *s = req->path; *s;) {
        size_t k = strcspn(s, "/");
        if (k > 0 && seen++ >= skip) {
            if (n == max)
                return max + 1;
            char *seg = hp_alloc(req, k + 1);
            if (!seg)
                return max + 1;
            memcpy(seg, s, k);
            seg[k] = '\0';
            out[n++] = seg;
        }
        s += k + (s[k] == '/');
    }
    return n;
}

static void set_params(hp_req *req, const char **segs, size_t n,
                       const char *handler)
{
    req->params = segs;
    req->nparams = (unsigned)n;
    snprintf(req->target.handler, sizeof req->target.handler, "%s", handler);
}

/*
 * The handler the URL names (docs/pages.md#path-parameters). Segments
 * after the page: none, the page's target handler; one naming a handler,
 * that handler; a handler that declared HP_PATH_PARAMS, it with the rest
 * as parameters; else http_handler with all of them as parameters, if it
 * declared HP_PATH_PARAMS. Otherwise NULL: 404.
 */
static hp_handler_fn route(hp_req *req, hp_version **from)
{
    const char **segs = hp_alloc(req, (HP_MAX_PATH_PARAMS + 1) * sizeof *segs);
    if (!segs)
        return NULL;
    size_t n =
        rest_segments(req, req->target.page_segs, segs, HP_MAX_PATH_PARAMS + 1);
    if (n == 0)
        return find_handler(req, req->target.handler, from);
    if (n > HP_MAX_PATH_PARAMS + 1)
        return NULL;
    hp_handler_fn fn = NULL;
    if (handler_name_ok(segs[0], strlen(segs[0])) &&
        (fn = find_handler(req, segs[0], from))) {
        if (n == 1 || takes_params(*from, segs[0])) {
            set_params(req, segs + 1, n - 1, segs[0]);
            return fn;
        }
    }
    if (n > HP_MAX_PATH_PARAMS)
        return NULL;
    fn = find_handler(req, "http_handler", from);
    if (fn && takes_params(*from, "http_handler")) {
        set_params(req, segs, n, "http_handler");
        return fn;
    }
    return NULL;
}

static bool has_location(const hp_req *req)
{
    for (size_t i = 0; i < req->headers.n; i++)
        if (strcasecmp(req->headers.v[i].name, "Location") == 0)
            return true;
    return false;
}

/* A returned redirect status (RFC 9110 15.4) answers like an error status
 * does (the chain stops, everything rolls back) when the page set a
 * Location for it; without one it is as broken as any other value. */
static bool is_redirect(const hp_req *req, int rc)
{
    return (rc == 301 || rc == 302 || rc == 303 || rc == 307 || rc == 308) &&
           has_location(req);
}

static int normalise(hp_req *req, const char *what, hp_version *m, int rc)
{
    if (rc == HP_OK || (rc >= 400 && rc <= 599) || is_redirect(req, rc))
        return rc;
    hp_log_error("%s: %s returned %d, which is neither HP_OK, an HTTP "
                 "error status nor a redirect with a Location",
                 m->path, what, rc);
    req->out.len = 0; /* whatever it wrote is not a 500 page */
    return 500;
}

/* ---- a page's fork() without exec ----------------------------------------
 *
 * A process a page forks is a copy of the server: if it returns from the
 * page's code instead of calling exec or _exit (docs/pages.md), it would
 * go on to commit the request's transactions, answer the request on the
 * socket it shares with its parent and run the server's bookkeeping as if
 * it were the worker (the guard's record of the run is its parent's). It
 * is stopped as soon as the page's code returns, with a line saying what
 * happened. fork() marks the forking thread's copy (pthread_atfork's
 * child handler runs on it), so the check costs a thread-local load; the
 * server's own forks run no page code, and posix_spawn, system() and
 * popen() run no atfork handler (their children exec).
 */
static __thread bool tl_in_page; /* page code is running on this thread */
static __thread bool tl_forked;  /* ... and forked this process from it */
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void atfork_child(void)
{
    if (tl_in_page)
        tl_forked = true;
}

static void atfork_register(void)
{
    pthread_atfork(NULL, NULL, atfork_child);
}

/* In a process forked by m's `what` (a handler or hook) that returned. */
static _Noreturn void forked_child_returned(hp_req *req, const hp_version *m,
                                            const char *what)
{
    bool handler = strcmp(what, "handler") == 0;
    hp_log_error_forked("%s: a process forked by %s '%s' (pid %d) returned "
                        "from it: a page's fork() must be followed by exec "
                        "or _exit; the forked process exits (status 70) "
                        "without touching the server's state",
                        m->path, handler ? "the handler" : "the hook",
                        handler ? req->target.handler : what, (int)getpid());
    _exit(70); /* no atexit hooks: they are the server's */
}

static const char *const hook_label[HP_NHOOKS] = {"prepare", "commit",
                                                  "rollback", "release"};

/* Run page code: a handler (what "handler") or a module hook. */
static int run_page_code(hp_req *req, hp_version *m, hp_handler_fn fn,
                         const char *what)
{
    req->current_module = m;
    tl_in_page = true;
    int rc = fn(req);
    tl_in_page = false;
    if (tl_forked)
        forked_child_returned(req, m, what);
    req->current_module = NULL;
    return normalise(req, what, m, rc);
}

static int run_hook(hp_req *req, hp_version *m, enum hp_hook h)
{
    if (!m->hooks[h])
        return HP_OK;
    return run_page_code(req, m, m->hooks[h], hook_label[h]);
}

/* ---- resources (pooled connections) --------------------------------------- */

void hp_req_enlist(hp_req *req, struct hp_resource *r)
{
    r->next = req->resources;
    req->resources = r;
    req->enlisted = true;
}

void hp_req_enlist_last(hp_req *req, struct hp_resource *r)
{
    struct hp_resource **at = &req->resources;
    while (*at)
        at = &(*at)->next;
    r->next = NULL;
    *at = r;
    req->enlisted = true;
}

static void discard_response(hp_req *req)
{
    /* What was written described a success that did not happen. */
    req->headers.n = 0;
    req->has_content_type = false;
    req->out.len = 0;
}

/* Commit every resource; on the first failure roll back the rest. */
static int commit_resources(hp_req *req)
{
    struct hp_resource *r = req->resources;
    for (; r; r = r->next) {
        if (r->commit && r->commit(r->arg) != HP_OK) {
            for (r = r->next; r; r = r->next)
                if (r->rollback)
                    r->rollback(r->arg);
            return 500;
        }
    }
    return HP_OK;
}

static void rollback_resources(hp_req *req)
{
    for (struct hp_resource *r = req->resources; r; r = r->next)
        if (r->rollback)
            r->rollback(r->arg);
}

/* Always runs, also when the request ends before the lifecycle did. */
void hp_req_release_resources(hp_req *req)
{
    while (req->resources) {
        struct hp_resource *r = req->resources;
        req->resources = r->next;
        if (r->release)
            r->release(r->arg);
    }
}

int hp_publish_find(hp_req *req, hp_version **from)
{
    return find_handler(req, req->target.handler, from) ? 0 : -1;
}

int hp_publish_run(hp_req *req)
{
    hp_version *mods[HP_MAX_APPS + 1], *from = NULL;
    size_t n = modules_of(req, mods), ran = 0;
    int fail;
    bool ran_rollback_resources = false;

    hp_handler_fn fn = route(req, &from);
    if (!fn)
        return 404;
    req->served_by = from;
    pthread_once(&atfork_once, atfork_register);
    /* Before any module's code: a forged request runs nothing (csrf.c). */
    fail = hp_csrf_check(req, from);

    for (size_t i = 0; i < n && fail == HP_OK; i++) {
        ran = i + 1;
        fail = run_hook(req, mods[i], HP_PREPARE);
    }
    if (fail == HP_OK)
        fail = run_page_code(req, from, fn, "handler");
    if (req->forced_status)
        fail = req->forced_status;
    size_t rollback_from = 0;
    if (fail == HP_OK && commit_resources(req) != HP_OK) {
        fail = 500;
        discard_response(req);
        ran_rollback_resources = true;
    }
    if (fail == HP_OK) {
        for (size_t i = 0; i < ran; i++) {
            if (run_hook(req, mods[i], HP_COMMIT) != HP_OK) {
                hp_log_error("%s: commit failed; rolling back", mods[i]->path);
                /* Whatever the handler wrote described a success that did
                 * not happen: the client gets a plain 500. */
                fail = 500;
                discard_response(req);
                rollback_from = i;
                break;
            }
        }
        if (fail == HP_OK)
            rollback_from = ran;
    }
    if (fail != HP_OK && !ran_rollback_resources)
        rollback_resources(req);
    for (size_t i = rollback_from; i < ran; i++)
        run_hook(req, mods[i], HP_ROLLBACK);
    for (size_t i = ran; i-- > 0;)
        run_hook(req, mods[i], HP_RELEASE);
    hp_req_release_resources(req);
    return fail;
}

/* ---- what pages call ------------------------------------------------------ */

/* The state of the module whose code is running: a handler acquired from
 * an application module gets that module's state, not the page's. */
void *hp_module_state(hp_req *req)
{
    HP_REFUSE_NULL_REQ(req, NULL);
    hp_version *m = req->current_module ? req->current_module : req->pins.page;
    return m ? m->state : NULL;
}

void *hp_app_at(hp_req *req, unsigned depth)
{
    HP_REFUSE_NULL_REQ(req, NULL);
    if (depth >= req->pins.napps)
        return NULL;
    return req->pins.apps[req->pins.napps - 1 - depth]->state;
}

void *hp_app(hp_req *req)
{
    HP_REFUSE_NULL_REQ(req, NULL); /* its own line, naming hp_app */
    return hp_app_at(req, 0);
}
