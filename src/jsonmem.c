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
 * May not touch: anything but malloc, free and jansson's allocator hook.
 */
#include "jsonmem.h"

#include <jansson.h>
#include <malloc.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

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
    tc.head[k] = p;
    tc.n[k]++;
    tc.bytes += 24 + 16 * k;
}

#endif /* JM_CACHE */

void hp_jsonmem_install(void)
{
#if JM_CACHE
    if (pthread_key_create(&key, drain) == 0)
        json_set_alloc_funcs(jm_malloc, jm_free);
#endif
}
