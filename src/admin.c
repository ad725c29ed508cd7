/*
 * admin.c - who may reach hotpub's own endpoints (/_hotpub/): loopback
 * addresses, the blocks of --health-allow for the health check, and the
 * bearer token of --admin-token (RFC 6750 §2.1) for everything.
 *
 * Owns: parsing CIDR lists, matching an address, comparing the token.
 * May not touch: connections or requests (server.c hands it addresses and
 * field values).
 */
#include "ops.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
