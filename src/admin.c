/*
 * admin.c - who may reach hotpub's own endpoints (/_hotpub/): loopback
 * addresses, the blocks of --health-allow for the health check, and the
 * bearer token of --admin-token (RFC 6750 §2.1) for everything; and under
 * which Host those let in by address are answered (--allowed-hosts), so a
 * page whose name was rebound to 127.0.0.1 cannot read them.
 *
 * Owns: parsing CIDR lists, matching an address, comparing the token,
 * judging a Host field value.
 * May not touch: connections or requests (server.c hands it addresses and
 * field values).
 */
#include "ops.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* One block: 16 address bytes (IPv4 as ::ffff:a.b.c.d) and a prefix
 * length counted on those 128 bits. -1 if it is not one. */
static int parse_block(const char *s, size_t n, unsigned char addr[16],
                       int *bits)
{
    char tmp[64];
    if (n == 0 || n >= sizeof tmp)
        return -1;
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    char *slash = strchr(tmp, '/');
    long len = -1;
    if (slash) {
        char *end;
        *slash = '\0';
        len = strtol(slash + 1, &end, 10);
        if (end == slash + 1 || *end || len < 0)
            return -1;
    }
    struct in_addr a4;
    if (inet_pton(AF_INET, tmp, &a4) == 1) {
        if (len > 32)
            return -1;
        memset(addr, 0, 10);
        addr[10] = addr[11] = 0xff;
        memcpy(addr + 12, &a4, 4);
        *bits = 96 + (int)(len < 0 ? 32 : len);
        return 0;
    }
    if (inet_pton(AF_INET6, tmp, addr) == 1 && len <= 128) {
        *bits = (int)(len < 0 ? 128 : len);
        return 0;
    }
    return -1;
}

int hp_cidr_check(const char *value, char *err, size_t errlen)
{
    for (const char *p = value; *p;) {
        p += strspn(p, " ,");
        size_t n = strcspn(p, " ,");
        unsigned char a[16];
        int bits;
        if (n && parse_block(p, n, a, &bits) < 0) {
            snprintf(err, errlen,
                     "\"%.*s\" is not an address or CIDR block "
                     "(192.0.2.0/24, 2001:db8::/32)",
                     (int)n, p);
            return -1;
        }
        p += n;
    }
    return 0;
}

/* The peer address as 16 bytes, IPv4 mapped. false: not an IP peer. */
static bool addr16(const struct sockaddr *sa, unsigned char out[16])
{
    if (!sa)
        return false;
    if (sa->sa_family == AF_INET) {
        memset(out, 0, 10);
        out[10] = out[11] = 0xff;
        memcpy(out + 12,
               &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
        return true;
    }
    if (sa->sa_family == AF_INET6) {
        memcpy(out, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr,
               16);
        return true;
    }
    return false;
}

static bool in_block(const unsigned char a[16], const unsigned char net[16],
                     int bits)
{
    int full = bits / 8, rest = bits % 8;
    if (memcmp(a, net, (size_t)full) != 0)
        return false;
    if (!rest)
        return true;
    unsigned char mask = (unsigned char)(0xff << (8 - rest));
    return (a[full] & mask) == (net[full] & mask);
}

bool hp_cidr_match(const char *list, const struct sockaddr *sa)
{
    unsigned char a[16];
    if (!list || !addr16(sa, a))
        return false;
    for (const char *p = list; *p;) {
        p += strspn(p, " ,");
        size_t n = strcspn(p, " ,");
        unsigned char net[16];
        int bits;
        if (n && parse_block(p, n, net, &bits) == 0 && in_block(a, net, bits))
            return true;
        p += n;
    }
    return false;
}

bool hp_addr_loopback(const struct sockaddr *sa)
{
    unsigned char a[16];
    static const unsigned char lo6[16] = {[15] = 1};
    static const unsigned char lo4[16] = {[10] = 0xff, [11] = 0xff, [12] = 127};
    if (!addr16(sa, a))
        return false;
    return memcmp(a, lo6, 16) == 0 || in_block(a, lo4, 104);
}

bool hp_bearer_ok(const char *field_value, const char *token)
{
    if (!field_value || !token || !*token)
        return false;
    /* RFC 6750 §2.1: the scheme is case-insensitive, then one space. */
    if (strncasecmp(field_value, "Bearer ", 7) != 0)
        return false;
    const char *given = field_value + 7;
    size_t n = strlen(token), m = strlen(given);
    /* Every byte of the token is compared whatever the answer, so the time
     * taken says nothing of how much of a guess was right. */
    unsigned char diff = (unsigned char)(n != m);
    for (size_t i = 0; i < n; i++)
        diff |= (unsigned char)(token[i] ^ (i < m ? given[i] : 0));
    return diff == 0;
}

/* ---- the Host rule --------------------------------------------------------
 *
 * DNS rebinding: a page on evil.example re-points its own name at
 * 127.0.0.1 and reads what the server there answers, same-origin for the
 * browser. The address hotpub sees is loopback, but the browser still
 * says Host: evil.example (RFC 9110 §7.2), so the Host field is what
 * tells the developer's own tab from such a page. An IP literal cannot be
 * rebound: the browser sends it only to that address.
 */

/* The host of a Host field value (RFC 9110 §7.2: uri-host [":" port]),
 * lower-cased, without brackets or one trailing dot, into out. *literal:
 * 4 an IPv4 address, 6 an IPv6 one (in brackets), 0 a name. -1: none. */
static int host_part(const char *v, char *out, size_t outlen, int *literal)
{
    const char *end, *rest;
    *literal = 0;
    if (*v == '[') {
        end = strchr(v, ']');
        if (!end)
            return -1;
        v++;
        rest = end + 1;
        *literal = 6;
    } else {
        end = v + strcspn(v, ":");
        rest = end;
    }
    if (*rest == ':' && rest[1 + strspn(rest + 1, "0123456789")] != '\0')
        return -1;
    if (*rest && *rest != ':')
        return -1;
    size_t n = (size_t)(end - v);
    if (n && v[n - 1] == '.' && *literal == 0)
        n--;
    if (n == 0 || n >= outlen)
        return -1;
    for (size_t i = 0; i < n; i++)
        out[i] = (char)(v[i] >= 'A' && v[i] <= 'Z' ? v[i] + 32 : v[i]);
    out[n] = '\0';
    struct in_addr a4;
    if (*literal == 0 && inet_pton(AF_INET, out, &a4) == 1)
        *literal = 4;
    return 0;
}

/* host (an IP literal) as a socket address, for the loopback test. */
static bool literal_addr(const char *host, int literal,
                         struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof *ss);
    if (literal == 4) {
        struct sockaddr_in *in = (struct sockaddr_in *)(void *)ss;
        in->sin_family = AF_INET;
        return inet_pton(AF_INET, host, &in->sin_addr) == 1;
    }
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)(void *)ss;
    in6->sin6_family = AF_INET6;
    return inet_pton(AF_INET6, host, &in6->sin6_addr) == 1;
}

/* Whether host is one of list's names: an exact one, ".example.test" for
 * it and every name under it, or "*" for any. */
static bool listed(const char *list, const char *host)
{
    size_t hl = strlen(host);
    for (const char *p = list ? list : ""; *p;) {
        p += strspn(p, " ,");
        size_t n = strcspn(p, " ,");
        if (n && p[n - 1] == '.')
            n--; /* "example.test." is example.test */
        if ((n == 1 && *p == '*') ||
            (n == hl && strncasecmp(p, host, n) == 0) ||
            (n > 1 && *p == '.' &&
             ((hl == n - 1 && strncasecmp(p + 1, host, hl) == 0) ||
              (hl > n && strncasecmp(p, host + hl - n, n) == 0))))
            return true;
        p += strcspn(p, " ,");
    }
    return false;
}

/* Whether sa is 0.0.0.0 or :: (every address of the host). */
static bool wildcard(const struct sockaddr *sa)
{
    unsigned char a[16];
    static const unsigned char any6[16], any4[16] = {[10] = 0xff, [11] = 0xff};
    return addr16(sa, a) &&
           (memcmp(a, any6, 16) == 0 ||
            (sa->sa_family == AF_INET && memcmp(a, any4, 16) == 0));
}

bool hp_host_allowed(const char *field_value, const char *allowed,
                     const struct sockaddr *listen)
{
    char host[256];
    int literal;
    if (!field_value)
        return true; /* HTTP/1.0 without Host: no browser sends that */
    if (host_part(field_value, host, sizeof host, &literal) < 0)
        return false;
    if (!literal) {
        size_t n = strlen(host);
        return strcmp(host, "localhost") == 0 ||
               (n > 10 && strcmp(host + n - 10, ".localhost") == 0) ||
               listed(allowed, host);
    }
    struct sockaddr_storage ss;
    unsigned char a[16], l[16];
    if (!literal_addr(host, literal, &ss))
        return false;
    const struct sockaddr *sa = (const struct sockaddr *)&ss;
    return hp_addr_loopback(sa) || listed(allowed, host) ||
           (listen &&
            (wildcard(listen) ||
             (addr16(sa, a) && addr16(listen, l) && memcmp(a, l, 16) == 0)));
}

int hp_host_list_check(const char *value, char *err, size_t errlen)
{
    for (const char *p = value; *p;) {
        p += strspn(p, " ,");
        size_t n = strcspn(p, " ,");
        size_t ok = strspn(p, "abcdefghijklmnopqrstuvwxyz"
                              "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_");
        bool v6 = n > 2 && *p == '[' && p[n - 1] == ']';
        /* a name has a label: ".", ".." or "a..b" would match nothing */
        bool label = n && !(n == 1 && *p == '.') && !memmem(p, n, "..", 2);
        if (n && !(n == 1 && *p == '*') && !v6 && (ok < n || !label)) {
            snprintf(err, errlen,
                     "\"%.*s\" is not a host name (a name, .name for it and "
                     "its subdomains, an address, or *; no port)",
                     (int)n, p);
            return -1;
        }
        p += n;
    }
    return 0;
}
