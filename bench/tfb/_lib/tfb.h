/*
 * bench/tfb/_lib/tfb.h - what the TechEmpower pages of bench/tfb/ share: the
 * response fields TFB requires, the random row id, the `queries` argument.
 *
 * Owns nothing but these helpers (static inline: every page that includes
 * it gets its own copy, so a page reloads alone). It may not touch the
 * database or write a body. Not served: `_lib` starts with `_`.
 *
 * The rules are TechEmpower's "Framework Benchmarks" test requirements
 * (https://github.com/TechEmpower/FrameworkBenchmarks/wiki, and its verifier
 * toolset/test_types/verifications.py).
 */
#ifndef TFB_H
#define TFB_H

#include <hotpub.h>
#include <jansson.h>

#include <stdint.h>
#include <stdlib.h>
#include <stdatomic.h>
#include <sys/random.h>

#define TFB_WORLD_ROWS 10000 /* World has ids 1..10000 (TFB's script)   */
#define TFB_MAX_QUERIES 500  /* `queries` is clamped to 1..500           */

/* TFB requires a Server field on every response (verify_headers); hotpub
 * sends none of its own, and Date comes from the server (libmicrohttpd
 * writes it per response, so it changes every second). type: the
 * Content-Type, or NULL to leave it to the writer (hp_write_json sets
 * application/json; the default is text/html; charset=utf-8). */
static inline void tfb_fields(hp_req *req, const char *type)
{
    hp_set_header(req, "Server", "hotpub");
    if (type)
        hp_set_header(req, "Content-Type", type);
}

/* splitmix64 over one atomic counter, seeded from the kernel. Why not
 * rand(): it takes a lock shared by every handler thread; why not
 * getrandom() per call: a system call per row; why not a thread-local
 * generator: a page with thread-local variables never runs on the
 * reactor (docs/design.md), and one atomic add per number costs about as
 * little. Statistical quality is all TFB asks ("a random number between 1
 * and 10000"). */
static inline uint64_t tfb_rand64(void)
{
    static _Atomic uint64_t ctr;
    uint64_t x = atomic_load_explicit(&ctr, memory_order_relaxed);
    if (x == 0) {
        uint64_t seed = 0;
        if (getrandom(&seed, sizeof seed, 0) != (ssize_t)sizeof seed)
            seed = (uint64_t)(uintptr_t)&ctr;
        atomic_compare_exchange_strong(&ctr, &x, seed | 1);
    }
    uint64_t z = atomic_fetch_add_explicit(&ctr, 0x9E3779B97F4A7C15ull,
                                           memory_order_relaxed) +
                 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* A uniformly random id or randomNumber in 1..10000 (the modulo bias of
 * 10^4 over 2^64 is below 10^-15). */
static inline int tfb_random_id(void)
{
    return (int)(tfb_rand64() % TFB_WORLD_ROWS) + 1;
}

/* The `queries` query field as TFB's rules read it: an integer clamped to
 * 1..500; missing, empty, zero, negative or not an integer ("foo", "2x")
 * means 1. */
static inline int tfb_queries(hp_req *req)
{
    const char *s = hp_arg(req, "queries");
    char *end;
    if (!s || !*s)
        return 1;
    long n = strtol(s, &end, 10);
    if (*end != '\0' || n < 1)
        return 1;
    return n > TFB_MAX_QUERIES ? TFB_MAX_QUERIES : (int)n;
}

/* The request's connection in autocommit mode (hp_db_autocommit), as
 * TFB's PHP entry's PDO connection is (/db, /fortunes, /updates): a read is then one statement for
 * PostgreSQL, not the read and hotpub's read guard (docs/database.md,
 * "Autocommit"). NULL when no connection could be had (hotpub answers 503
 * whatever the page returns). */
static inline hp_db *tfb_db(hp_req *req)
{
    hp_db *db = hp_db(req);
    if (db)
        hp_db_autocommit(db); /* -1: in the request's transaction, as before */
    return db;
}

/* {"id":id,"randomNumber":number}, or NULL (no memory). Built with
 * jansson's setters rather than json_pack, which parses its format and
 * checks each key for UTF-8 on every call (docs/pages.md). */
static inline json_t *tfb_world(json_int_t id, json_int_t number)
{
    json_t *o = json_object();
    if (o && json_object_set_new_nocheck(o, "id", json_integer(id)) == 0 &&
        json_object_set_new_nocheck(o, "randomNumber",
                                    json_integer(number)) == 0)
        return o;
    json_decref(o);
    return NULL;
}

#endif
