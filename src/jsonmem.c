/*
 * jsonmem.c - jansson's allocator: malloc and free behind a per-thread
 * cache of small blocks.
 *
 * Why: a page's data for a template is a tree of small jansson values
 * (an object, its hash buckets, a pair per key, each integer and string),
 * many of one size: /fortunes builds 13 objects of 7 blocks each per
 * request. glibc's per-thread cache keeps 7 blocks of a size, so the rest
 * went through its arena's bins and were merged back on the next large
 * request (malloc_consolidate): a quarter of that page's instructions.
 * Here up to 64 blocks of each size up to 264 bytes wait for reuse on the
 * thread that freed them.
 *
 * Owns: the cache and its limits. The blocks are glibc's own (malloc),
 * so memory jansson hands out and the caller frees with free() (the text
 * of json_dumps) stays valid, and a block may move between threads.
 * May not touch: anything but malloc, free and jansson's allocator hook
 * (and standard error, to say a value was freed twice before aborting).
 */
#include "jsonmem.h"

#include <jansson.h>
#include <malloc.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/random.h>
#include <unistd.h>

#define CLASSES 16           /* usable sizes 24 .. 24 + 16 * 16 - 1      */
#define PER_CLASS 64         /* blocks of one class a thread keeps       */
#define MAX_BYTES (48 << 10) /* and bytes in all, per thread            */

/* The sanitizers must see every block come and go: no cache there. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define JM_CACHE 0
#else
#define JM_CACHE 1
#endif

#if JM_CACHE
/* glibc's usable sizes on 64-bit are 24 + 16k: class k holds blocks of at
 * least 24 + 16k usable bytes. */
struct cache {
    void *head[CLASSES];
    unsigned short n[CLASSES];
    size_t bytes;
    bool registered; /* the key's destructor will empty it */
};

static __thread struct cache tc;
static pthread_key_t key;

/* A cached block's second word holds this mark, as glibc's tcache marks
 * its own (the "key" of tcache_entry): a free of a block that carries it
 * is most likely a second free, checked against this thread's list and
 * refused loudly. Without it a page that json_decref'ed a value it does
 * not own (hp_json_body's, which the request frees) would put one block
 * in the cache twice, and two later values would share it: heap
 * corruption where glibc's free would have stopped the process (make
 * asan caught such a page in tests/e2e/fresh13.py). */
static uintptr_t mark;

static _Noreturn void freed_twice(void)
{
    static const char msg[] =
        "hotpub: a JSON value was freed twice (a json_decref too many: a "
        "value the page does not own, such as hp_json_body's, or one "
        "json_object_set_new already took)\n";
    if (write(2, msg, sizeof msg - 1) < 0) {
        /* nothing more to say */
    }
    abort();
}

static void drain(void *arg)
{
    struct cache *c = arg;
    for (int k = 0; k < CLASSES; k++) {
        while (c->head[k]) {
            void *p = c->head[k];
            c->head[k] = *(void **)p;
            free(p);
        }
        c->n[k] = 0;
    }
    c->bytes = 0;
    c->registered = false;
}

static void *jm_malloc(size_t n)
{
    size_t k = n <= 24 ? 0 : (n - 24 + 15) / 16;
    if (k < CLASSES && tc.n[k]) {
        void *p = tc.head[k];
        tc.head[k] = *(void **)p;
        ((uintptr_t *)p)[1] = 0; /* in use: not marked */
        tc.n[k]--;
        tc.bytes -= 24 + 16 * k;
        return p;
    }
    return malloc(n);
}

static void jm_free(void *p)
{
    if (!p)
        return;
    size_t u = malloc_usable_size(p);
    size_t k = u < 24 ? CLASSES : (u - 24) / 16;
    if (k < CLASSES && ((uintptr_t *)p)[1] == mark)
        for (void *q = tc.head[k]; q; q = *(void **)q)
            if (q == p)
                freed_twice();
    if (k >= CLASSES || tc.n[k] >= PER_CLASS ||
        tc.bytes + 24 + 16 * k > MAX_BYTES) {
        free(p);
        return;
    }
    if (!tc.registered) {
        /* the thread's exit gives the blocks back */
        if (pthread_setspecific(key, &tc) != 0) {
            free(p);
            return;
        }
        tc.registered = true;
    }
    *(void **)p = tc.head[k];
    ((uintptr_t *)p)[1] = mark;
    tc.head[k] = p;
    tc.n[k]++;
    tc.bytes += 24 + 16 * k;
}

#endif /* JM_CACHE */

void hp_jsonmem_install(void)
{
#if JM_CACHE
    /* Any value no live block is likely to hold in its second word. */
    if (getrandom(&mark, sizeof mark, GRND_NONBLOCK) != sizeof mark)
        mark = (uintptr_t)&mark ^ (uintptr_t)0x9e3779b97f4a7c15ULL;
    mark |= 1; /* never 0, which jm_malloc writes */
    if (pthread_key_create(&key, drain) == 0)
        json_set_alloc_funcs(jm_malloc, jm_free);
#endif
}
