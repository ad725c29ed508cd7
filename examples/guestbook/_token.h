/*
 * guestbook/_token.h - API tokens. A token is 32 random bytes (libsodium's
 * randombytes_buf: the kernel's CSPRNG), shown to its user once as 64 hex
 * digits; the database keeps only its SHA-256, so a copy of the table (a
 * backup) opens nothing. 256 random bits cannot be guessed, so one fast
 * hash is enough: passwords need argon2 (hp_password_hash) only because
 * people choose guessable ones.
 *
 * A page including this must say HP_PKG("libsodium"); itself: the server
 * reads HP_PKG from the page's own text, not from its headers. (The server
 * has already called sodium_init in its process.)
 */
#ifndef GUESTBOOK_TOKEN_H
#define GUESTBOOK_TOKEN_H

#include <sodium.h>
#include <string.h>

#define TOKEN_HEX 65 /* 64 hex digits and the NUL */

static inline void token_new(char out[TOKEN_HEX])
{
    unsigned char b[32];
    randombytes_buf(b, sizeof b);
    sodium_bin2hex(out, TOKEN_HEX, b, sizeof b);
}

static inline void token_digest(const char *token, char out[TOKEN_HEX])
{
    unsigned char h[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(h, (const unsigned char *)token, strlen(token));
    sodium_bin2hex(out, TOKEN_HEX, h, sizeof h);
}

#endif
