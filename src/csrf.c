/*
 * csrf.c - cross-site request forgery protection: hp_csrf_token for pages,
 * and the check the publisher runs before a handler (hp_csrf_check): a
 * request that carries a live session and uses an unsafe method must bring
 * its session's token in the X-CSRF-Token header field or the csrf_token
 * form field, unless its handler is exempt (HP_CSRF_EXEMPT,
 * HP_CSRF_EXEMPT_HANDLER in include/hotpub.h).
 *
 * Owns: which methods are checked, where a token may arrive, the
 * comparison, the exemption markers' meaning, the 403's body.
 * May not touch: the session store (session.c keeps the token with the
 * session; this file only asks for it), the lifecycle's order (publish.c
 * decides when the check runs), HTTP sending.
 *
 * The pattern is OWASP's "synchronizer token": the token is random, per
 * session, stored with it on the server, and never in a cookie, so a page
 * on another site can neither read nor guess it. A request without a live
 * session is not checked: it has no ambient authority to abuse (a forged
 * or expired cookie is no session), except for one thing: a browser that
 * says the request comes from another site (Sec-Fetch-Site: cross-site or
 * same-site, or an Origin that is not this Host) is refused, because a
 * session-less POST can still be forged usefully: logging the victim into
 * the attacker's account ("login CSRF"). The rule is the one Go's
 * net/http CrossOriginProtection applies; requests that carry neither
 * field (curl, other servers) pass. Tokens in the query string are not
 * accepted: URLs leak into logs and Referer fields.
 */
#include "request.h"
#include "session.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define CSRF_FIELD "csrf_token"
#define CSRF_HEADER "X-CSRF-Token"

bool hp_csrf_unsafe_method(const char *method)
{
    static const char *const safe[] = {"GET", "HEAD", "OPTIONS", "TRACE"};
    if (!method)
        return false;
    for (size_t i = 0; i < sizeof safe / sizeof *safe; i++)
        if (strcmp(method, safe[i]) == 0)
            return false;
    return true;
}

bool hp_csrf_token_eq(const char *a, const char *b)
{
    if (!a || !b)
        return false;
    size_t n = strlen(a);
    /* The length of a token is no secret (all are 43 characters); only
     * the bytes are compared in constant time. */
    return n > 0 && n == strlen(b) && sodium_memcmp(a, b, n) == 0;
}

const char *hp_csrf_token(hp_req *req)
{
    HP_REFUSE_NULL_REQ(req, NULL);
    return hp_session__csrf(req, true, NULL);
}

/* A form field from the body only (the query's fields come first in
 * req->args, hp_req_parse_form). */
static const char *body_field(hp_req *req, const char *name)
{
    for (size_t i = req->args_from_query; i < req->args.n; i++)
        if (strcmp(req->args.v[i].name, name) == 0)
            return req->args.v[i].value;
    return NULL;
}

static void log_refusal(hp_req *req, const char *why);

/* authority ("host[:port]") without the default port of scheme */
static size_t authority_len(const char *a, size_t n, const char *scheme,
                            size_t slen)
{
    const char *dflt =
        slen == 5 && strncasecmp(scheme, "https", 5) == 0  ? ":443"
        : slen == 4 && strncasecmp(scheme, "http", 4) == 0 ? ":80"
                                                           : NULL;
    size_t d = dflt ? strlen(dflt) : 0;
    if (dflt && n > d && strncmp(a + n - d, dflt, d) == 0)
        return n - d;
    return n;
}

/* Does the browser say this request was sent by another site? Fetch
 * Metadata (Sec-Fetch-Site) first; else Origin against Host (RFC 6454
 * §7, RFC 9110 §7.2). No evidence either way: no. */
bool hp_csrf_cross_origin(hp_req *req)
{
    const char *sfs = hp_header(req, "Sec-Fetch-Site");
    if (sfs)
        return strcasecmp(sfs, "same-origin") != 0 &&
               strcasecmp(sfs, "none") != 0;
    const char *origin = hp_header(req, "Origin");
    if (!origin)
        return false;
    const char *host = hp_header(req, "Host");
    const char *sep = strstr(origin, "://");
    if (!host || !sep || strcmp(origin, "null") == 0)
        return true;
    size_t slen = (size_t)(sep - origin);
    const char *auth = sep + 3;
    size_t alen = authority_len(auth, strlen(auth), origin, slen);
    size_t hlen = authority_len(host, strlen(host), origin, slen);
    return alen != hlen || strncasecmp(auth, host, alen) != 0;
}

static int refuse_cross_origin(hp_req *req)
{
    log_refusal(req, "cross-site request without a session");
    hp_req_error_body(req, 403,
                      "This request comes from another site (Origin or "
                      "Sec-Fetch-Site), and has no session to check a CSRF "
                      "token against.");
    return 403;
}

static bool module_exempts(hp_version *m, const char *handler)
{
    char sym[160];
    if (hp_version_sym(m, "hp__csrf_exempt"))
        return true;
    snprintf(sym, sizeof sym, "hp__csrf_exempt_%s", handler);
    return hp_version_sym(m, sym) != NULL;
}

/*
 * Whether the handler that serves req (defined in served_by: the page, or
 * the application module it was acquired from) is exempt. An exemption
 * covers code at or below where it is declared, never code above it:
 * HP_CSRF_EXEMPT_HANDLER(name) the handler of that file; HP_CSRF_EXEMPT in
 * a page the handlers defined in that page; in an _app.c its own handlers
 * and those of every page and application module below it. So a page that
 * declares HP_CSRF_EXEMPT (a webhook) does not open the handlers it would
 * acquire from an _app.c above it (/hook/setuser, served by _app.c's
 * setuser): that module, or one above it, must say so itself (FRESH16-4).
 * apps are outermost first and all enclose the page: those before
 * served_by's place (all of them when the page serves) enclose it.
 */
static bool exempt(hp_req *req, hp_version *served_by)
{
    if (!served_by)
        return false;
    if (module_exempts(served_by, req->target.handler))
        return true;
    size_t above = req->pins.napps;
    for (size_t i = 0; i < req->pins.napps; i++)
        if (req->pins.apps[i] == served_by)
            above = i;
    if (served_by != req->pins.page && above == req->pins.napps)
        return false; /* not among the request's modules: itself only */
    for (size_t i = 0; i < above; i++)
        if (hp_version_sym(req->pins.apps[i], "hp__csrf_exempt"))
            return true;
    return false;
}

/* At most one log line a second: a flood of forged posts must not flood
 * the log. */
static void log_refusal(hp_req *req, const char *why)
{
    static _Atomic long long last;
    long long now = (long long)time(NULL), was = atomic_load(&last);
    if (now != was && atomic_compare_exchange_strong(&last, &was, now))
        hp_log_info("csrf: %s %s from %s refused (403): %s", req->method,
                    req->path, hp_req_remote(req), why);
}

int hp_csrf_check(hp_req *req, hp_version *served_by)
{
    /* No session cookie, no session: a POST to a site that uses no
     * sessions never touches the database here. */
    if (!hp_csrf_unsafe_method(req->method) || exempt(req, served_by))
        return HP_OK;
    if (!hp_session__cookie_present(req))
        return hp_csrf_cross_origin(req) ? refuse_cross_origin(req) : HP_OK;
    bool failed;
    const char *want = hp_session__csrf(req, false, &failed);
    if (!want && failed) /* cannot tell: refuse rather than let it through */
        return req->forced_status ? req->forced_status : 503;
    if (!want)
        return hp_csrf_cross_origin(req) ? refuse_cross_origin(req) : HP_OK;
    const char *got = hp_header(req, CSRF_HEADER);
    if (!got)
        got = body_field(req, CSRF_FIELD);
    if (hp_csrf_token_eq(got, want))
        return HP_OK;
    log_refusal(req, got ? "wrong CSRF token" : "no CSRF token");
    hp_req_error_body(req, 403,
                      got ? "The CSRF token does not match this session."
                          : "This request needs a CSRF token (the form "
                            "field " CSRF_FIELD " or the " CSRF_HEADER
                            " header field).");
    return 403;
}
