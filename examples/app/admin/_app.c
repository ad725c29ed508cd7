/*
 * app/admin/_app.c - protects every page of app/admin/ with HTTP Basic
 * authentication, in a prepare hook: a request without the right
 * credentials gets a 401 and never reaches the page.
 *
 * User "admin", password from the environment variable HOTPUB_ADMIN_TOKEN
 * of the server, else "letmein". With curl:
 *     curl -u admin:letmein http://127.0.0.1:8080/app/admin/
 */
#include <hotpub.h>
#include <stdlib.h>
#include <string.h>

struct admin_state {
    char expected[200]; /* "Basic " + base64("admin:" + password) */
};

static void base64(const char *in, char *out, size_t outlen)
{
    static const char tab[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t n = strlen(in), o = 0;
    for (size_t i = 0; i < n && o + 5 < outlen; i += 3) {
        unsigned v = (unsigned char)in[i] << 16;
        if (i + 1 < n)
            v |= (unsigned char)in[i + 1] << 8;
        if (i + 2 < n)
            v |= (unsigned char)in[i + 2];
        out[o++] = tab[(v >> 18) & 63];
        out[o++] = tab[(v >> 12) & 63];
        out[o++] = i + 1 < n ? tab[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < n ? tab[v & 63] : '=';
    }
    out[o] = '\0';
}

/* No adoption: the state is small and cheap to rebuild, and a new version
 * should pick up a changed password. Returning a fresh state is always
 * allowed; the old version's fini then frees its own. */
HP_INIT
{
    const char *pw = getenv("HOTPUB_ADMIN_TOKEN");
    char userpass[120];
    struct admin_state *s = calloc(1, sizeof *s);

    if (!pw || !*pw)
        pw = "letmein";
    if (!s || strlen(pw) > 100) {
        free(s);
        hp_module_error(m, "HOTPUB_ADMIN_TOKEN is longer than 100 bytes");
        return NULL;
    }
    strcpy(userpass, "admin:");
    strcat(userpass, pw);
    strcpy(s->expected, "Basic ");
    base64(userpass, s->expected + 6, sizeof s->expected - 6);
    return s;
}

HP_FINI
{
    if (!handed_over)
        free(state);
}

/* Compare without stopping at the first difference. */
static int same(const char *a, const char *b)
{
    size_t na = strlen(a), nb = strlen(b);
    unsigned diff = na != nb;
    for (size_t i = 0; i < na && i < nb; i++)
        diff |= (unsigned char)(a[i] ^ b[i]);
    return diff == 0;
}

HP_HOOK(prepare)
{
    struct admin_state *s = hp_module_state(req);
    const char *auth = hp_header(req, "Authorization");

    if (auth && same(auth, s->expected))
        return HP_OK;
    hp_set_header(req, "WWW-Authenticate",
                  "Basic realm=\"hotpub example admin\", charset=\"UTF-8\"");
    /* Write a body: the status alone would be answered with the server's
     * standard error page. */
    hp_puts(req, "<!doctype html>\n<title>401 Unauthorized</title>\n"
                 "<h1>401 Unauthorized</h1>\n<p>The admin pages need a "
                 "user name and password.</p>\n");
    return 401;
}
