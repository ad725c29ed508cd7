/*
 * coro.c - coroutines: their stacks (mapping, guard, the per-thread cache)
 * and switching between a thread's own stack and a coroutine's (coro.h).
 *
 * Owns: coroutine stacks and their guard pages, each thread's current
 * coroutine and stack cache, the context switch (hand-written on x86-64,
 * ucontext elsewhere), the sanitizers' fiber annotations.
 * May not touch: requests, pages, the database, signals (an overflow's
 * SIGSEGV is the crash guard's), scheduling (reactor.c's).
 */
#include "coro.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* Which sanitizers are on: gcc says __SANITIZE_*__, clang __has_feature. */
#if defined(__SANITIZE_ADDRESS__)
#define CORO_ASAN 1
#endif
#if defined(__SANITIZE_THREAD__)
#define CORO_TSAN 1
#endif
#if defined(__has_feature)
#if __has_feature(address_sanitizer) && !defined(CORO_ASAN)
#define CORO_ASAN 1
#endif
#if __has_feature(thread_sanitizer) && !defined(CORO_TSAN)
#define CORO_TSAN 1
#endif
#endif
#ifdef CORO_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif
#ifdef CORO_TSAN
#include <sanitizer/tsan_interface.h>
#endif

/* The hand-written switch on x86-64 (no system call per switch, where
 * swapcontext makes an rt_sigprocmask each time); ucontext elsewhere, and
 * on x86-64 when built with -DHP_CORO_UCONTEXT (to test that path). */
#if defined(__x86_64__) && !defined(HP_CORO_UCONTEXT)
#define CORO_ASM 1
#else
#include <ucontext.h>
#endif

/* The guard below each stack: as large as a handler thread's
 * (HP_THREAD_GUARD, pool.h, and why there): pages the fast tier built
 * (tcc) do not probe large frames, so a frame of up to this size that runs
 * off the stack faults here rather than landing in another mapping. Only
 * address space: mapped PROT_NONE, never committed. */
#if UINTPTR_MAX > 0xffffffffu
#define GUARD_BYTES ((size_t)1 << 30)
#else
#define GUARD_BYTES ((size_t)64 * 1024)
#endif

enum coro_state { CO_READY, CO_RUNNING, CO_SUSPENDED, CO_DONE };

/* Lives at the top of its own mapping, above the stack: one mmap (or none,
 * from the cache) per coroutine and no malloc. */
struct hp_coro {
    void *map;       /* the mapping: guard, then stack, then this */
    size_t map_size; /* bytes; the cache's key */
    uintptr_t top;   /* the stack's top, 16-byte aligned, below this */
    hp_coro_fn fn;
    void *arg;
    void *data;
    enum coro_state state;
#ifndef NDEBUG
    pthread_t owner; /* the creating thread: the only one that resumes */
#endif
#ifdef CORO_ASM
    void *sp; /* the saved stack pointer while not running */
#else
    ucontext_t uc;
#endif
#ifdef CORO_ASAN
    void *fake_stack; /* ASan's fake frames while suspended */
#endif
#ifdef CORO_TSAN
    void *fiber;
#endif
};

/* Each thread's state: a scheduler thread runs its own coroutines. */
struct coro_tls {
    hp_coro *current;
#ifdef CORO_ASM
    void *thread_sp; /* the thread stack's, while a coroutine runs */
#else
    ucontext_t thread_uc;
#endif
    int ncache;
    bool key_set; /* the exit destructor will free the cache */
    unsigned long maps;
    hp_coro *cache[HP_CORO_CACHE];
#ifdef CORO_ASAN
    void *thread_fake;
    const void *thread_bottom; /* the thread's own stack, as ASan knows it */
    size_t thread_size;
#endif
#ifdef CORO_TSAN
    void *thread_fiber;
#endif
};

static __thread struct coro_tls tls;
static pthread_key_t cache_key;
static pthread_once_t cache_once = PTHREAD_ONCE_INIT;

/* Called from the entry stub on the coroutine's fresh stack. */
__attribute__((noreturn, used, visibility("hidden"))) void
hp_coro__main(hp_coro *co);

#ifdef CORO_ASM
/* hp_coro__switch(save, to): push the callee-saved registers (System V:
 * rbx, rbp, r12-r15) and the x87 control word and MXCSR (callee-saved
 * too), store rsp in *save, load to, and pop the other side's. A fresh
 * stack is built by stack_init to look like one switched away from at
 * hp_coro__entry, with co in rbx; the entry stub is reached with rsp
 * 16-byte aligned, so its call is aligned as the ABI wants. rbp is 0 and
 * rip undefined there, so unwinders stop: fn's frames end at the stub. */
__attribute__((visibility("hidden"))) void hp_coro__switch(void **save,
                                                           void *to);
__attribute__((visibility("hidden"))) void hp_coro__entry(void);
__asm__(".text\n"
        ".globl hp_coro__switch\n"
        ".hidden hp_coro__switch\n"
        ".type hp_coro__switch,@function\n"
        ".p2align 4\n"
        "hp_coro__switch:\n"
        "  .cfi_startproc\n"
        "  pushq %rbp\n"
        "  .cfi_adjust_cfa_offset 8\n"
        "  pushq %rbx\n"
        "  .cfi_adjust_cfa_offset 8\n"
        "  pushq %r12\n"
        "  .cfi_adjust_cfa_offset 8\n"
        "  pushq %r13\n"
        "  .cfi_adjust_cfa_offset 8\n"
        "  pushq %r14\n"
        "  .cfi_adjust_cfa_offset 8\n"
        "  pushq %r15\n"
        "  .cfi_adjust_cfa_offset 8\n"
        "  subq $8, %rsp\n"
        "  .cfi_adjust_cfa_offset 8\n"
        "  stmxcsr (%rsp)\n"
        "  fnstcw 4(%rsp)\n"
        "  movq %rsp, (%rdi)\n"
        "  movq %rsi, %rsp\n"
        "  ldmxcsr (%rsp)\n"
        "  fldcw 4(%rsp)\n"
        "  addq $8, %rsp\n"
        "  .cfi_adjust_cfa_offset -8\n"
        "  popq %r15\n"
        "  .cfi_adjust_cfa_offset -8\n"
        "  popq %r14\n"
        "  .cfi_adjust_cfa_offset -8\n"
        "  popq %r13\n"
        "  .cfi_adjust_cfa_offset -8\n"
        "  popq %r12\n"
        "  .cfi_adjust_cfa_offset -8\n"
        "  popq %rbx\n"
        "  .cfi_adjust_cfa_offset -8\n"
        "  popq %rbp\n"
        "  .cfi_adjust_cfa_offset -8\n"
        "  ret\n"
        "  .cfi_endproc\n"
        ".size hp_coro__switch, .-hp_coro__switch\n"
        ".globl hp_coro__entry\n"
        ".hidden hp_coro__entry\n"
        ".type hp_coro__entry,@function\n"
        ".p2align 4\n"
        "hp_coro__entry:\n"
        "  .cfi_startproc\n"
        "  .cfi_undefined rip\n"
        "  movq %rbx, %rdi\n"
        "  call hp_coro__main\n"
        "  ud2\n"
        "  .cfi_endproc\n"
        ".size hp_coro__entry, .-hp_coro__entry\n");

/* The frame hp_coro__switch pops on the first resume (lowest first). */
static void stack_init(hp_coro *co)
{
    uint32_t mxcsr;
    uint16_t fpucw;
    uint64_t *sp = (uint64_t *)co->top - 8;

    /* a coroutine starts with its creator's floating-point modes, as a
     * thread starts with its parent's */
    __asm__ volatile("stmxcsr %0" : "=m"(mxcsr));
    __asm__ volatile("fnstcw %0" : "=m"(fpucw));
    sp[0] = (uint64_t)mxcsr | (uint64_t)fpucw << 32;
    sp[1] = sp[2] = sp[3] = sp[4] = 0;           /* r15, r14, r13, r12 */
    sp[5] = (uint64_t)(uintptr_t)co;             /* rbx: the stub's argument */
    sp[6] = 0;                                   /* rbp: the end of the chain */
    sp[7] = (uint64_t)(uintptr_t)hp_coro__entry; /* ret: rsp = top, 16n */
    co->sp = sp;
}

#define SWITCH_IN(t, co) hp_coro__switch(&(t)->thread_sp, (co)->sp)
#define SWITCH_OUT(t, co) hp_coro__switch(&(co)->sp, (t)->thread_sp)
#else
/* makecontext passes int arguments only: the entry finds its coroutine as
 * the thread's current one. */
static void uc_entry(void)
{
    hp_coro__main(tls.current);
}

static void stack_init(hp_coro *co)
{
    uintptr_t lo = (uintptr_t)co->map + GUARD_BYTES;

    if (getcontext(&co->uc) != 0)
        abort(); /* cannot fail on a valid pointer */
    co->uc.uc_stack.ss_sp = (void *)lo;
    co->uc.uc_stack.ss_size = co->top - lo;
    co->uc.uc_link = NULL;
    makecontext(&co->uc, uc_entry, 0);
}

#define SWITCH_IN(t, co) swapcontext(&(t)->thread_uc, &(co)->uc)
#define SWITCH_OUT(t, co) swapcontext(&(co)->uc, &(t)->thread_uc)
#endif

/* The sanitizers' view of a switch. ASan must know which stack is live
 * (or it reports the other stack's frames as overflows); TSan keeps a
 * shadow call stack and clock per fiber. In ASan's protocol each side
 * starts a switch before it and finishes it after, on the stack it lands
 * on; a coroutine learns the thread stack's bounds when it finishes one.
 * Always inlined: under TSan a function of their own would record its
 * entry on one fiber's shadow stack and its exit on the other's (clang at
 * -O1, any compiler at -O0), and the thread's shadow stack would underflow
 * once per coroutine. */
#define ALWAYS_INLINE inline __attribute__((always_inline))
static ALWAYS_INLINE void san_to_coro(struct coro_tls *t, hp_coro *co)
{
#ifdef CORO_ASAN
    uintptr_t lo = (uintptr_t)co->map + GUARD_BYTES;
    __sanitizer_start_switch_fiber(&t->thread_fake, (const void *)lo,
                                   co->top - lo);
#endif
#ifdef CORO_TSAN
    __tsan_switch_to_fiber(co->fiber, 0);
#endif
    (void)t, (void)co;
}

static ALWAYS_INLINE void san_on_thread(struct coro_tls *t)
{
#ifdef CORO_ASAN
    __sanitizer_finish_switch_fiber(t->thread_fake, NULL, NULL);
#endif
    (void)t;
}

/* done: the coroutine's frames are gone for good (ASan drops its fake
 * stack). */
static ALWAYS_INLINE void san_to_thread(struct coro_tls *t, hp_coro *co,
                                        bool done)
{
#ifdef CORO_ASAN
    __sanitizer_start_switch_fiber(done ? NULL : &co->fake_stack,
                                   t->thread_bottom, t->thread_size);
#endif
#ifdef CORO_TSAN
    __tsan_switch_to_fiber(t->thread_fiber, 0);
#endif
    (void)t, (void)co, (void)done;
}

static ALWAYS_INLINE void san_on_coro(struct coro_tls *t, hp_coro *co)
{
#ifdef CORO_ASAN
    __sanitizer_finish_switch_fiber(co->fake_stack, &t->thread_bottom,
                                    &t->thread_size);
#endif
    (void)t, (void)co;
}

void hp_coro__main(hp_coro *co)
{
    struct coro_tls *t = &tls;

    san_on_coro(t, co);
    co->fn(co->arg);
    co->state = CO_DONE;
    san_to_thread(t, co, true);
    SWITCH_OUT(t, co);
    abort(); /* a finished coroutine is never switched back into */
}

/* At thread exit: the cached stacks go back to the kernel. */
static void cache_destroy(void *p)
{
    struct coro_tls *t = p;

    while (t->ncache > 0) {
        hp_coro *co = t->cache[--t->ncache];
        munmap(co->map, co->map_size);
    }
    t->key_set = false;
}

static void cache_key_make(void)
{
    if (pthread_key_create(&cache_key, cache_destroy) != 0)
        abort(); /* only at PTHREAD_KEYS_MAX keys: a bug elsewhere */
}

/* A cached stack of map_size bytes, the most recently freed first (its
 * pages are the likeliest still in the CPU's caches), or NULL. */
static hp_coro *cache_take(struct coro_tls *t, size_t map_size)
{
    for (int i = t->ncache - 1; i >= 0; i--) {
        hp_coro *co = t->cache[i];
        if (co->map_size == map_size) {
            t->cache[i] = t->cache[--t->ncache];
            return co;
        }
    }
    return NULL;
}

/* A new mapping: guard, stack, and the struct at its top. */
static hp_coro *stack_map(struct coro_tls *t, size_t map_size, size_t hdr)
{
    /* All of it PROT_NONE first, then the stack opened: the guard is
     * never writable, not even for a moment, and never counted as
     * committed memory. */
    void *map =
        mmap(NULL, map_size, PROT_NONE,
             MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (map == MAP_FAILED)
        return NULL;
    if (mprotect((char *)map + GUARD_BYTES, map_size - GUARD_BYTES,
                 PROT_READ | PROT_WRITE) != 0) {
        int e = errno;
        munmap(map, map_size);
        errno = e;
        return NULL;
    }
    t->maps++;
    hp_coro *co = (hp_coro *)((char *)map + map_size - hdr);
    co->map = map;
    co->map_size = map_size;
    co->top = (uintptr_t)co & ~(uintptr_t)15;
    return co;
}

hp_coro *hp_coro_new(size_t stack_size, hp_coro_fn fn, void *arg)
{
    struct coro_tls *t = &tls;
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t hdr = (sizeof(hp_coro) + 63) & ~(size_t)63;

    if (stack_size == 0 || fn == NULL) {
        errno = EINVAL;
        return NULL;
    }
    if (stack_size > SIZE_MAX / 4) {
        errno = ENOMEM;
        return NULL;
    }
    size_t map_size =
        GUARD_BYTES + ((stack_size + hdr + page - 1) & ~(page - 1));
    hp_coro *co = cache_take(t, map_size);
    if (co == NULL && (co = stack_map(t, map_size, hdr)) == NULL)
        return NULL;
    co->fn = fn;
    co->arg = arg;
    co->data = NULL;
    co->state = CO_READY;
#ifndef NDEBUG
    co->owner = pthread_self();
#endif
#ifdef CORO_ASAN
    co->fake_stack = NULL;
#endif
#ifdef CORO_TSAN
    co->fiber = __tsan_create_fiber(0);
#endif
    stack_init(co);
    return co;
}

bool hp_coro_resume(hp_coro *co)
{
    struct coro_tls *t = &tls;

    assert(t->current == NULL && "hp_coro_resume inside a coroutine");
    assert((co->state == CO_READY || co->state == CO_SUSPENDED) &&
           "hp_coro_resume of a finished or running coroutine");
    assert(pthread_equal(co->owner, pthread_self()) &&
           "hp_coro_resume on another thread than the creator's");
#ifdef CORO_TSAN
    if (t->thread_fiber == NULL)
        t->thread_fiber = __tsan_get_current_fiber();
#endif
    t->current = co;
    co->state = CO_RUNNING;
    san_to_coro(t, co);
    SWITCH_IN(t, co);
    san_on_thread(t);
    t->current = NULL;
    return co->state == CO_SUSPENDED;
}

void hp_coro_yield(void)
{
    struct coro_tls *t = &tls;
    hp_coro *co = t->current;

    assert(co != NULL && "hp_coro_yield outside a coroutine");
    co->state = CO_SUSPENDED;
    san_to_thread(t, co, false);
    SWITCH_OUT(t, co);
    san_on_coro(t, co);
}

hp_coro *hp_coro_current(void)
{
    return tls.current;
}

void hp_coro_free(hp_coro *co)
{
    struct coro_tls *t = &tls;

    if (co == NULL)
        return;
    assert((co->state == CO_READY || co->state == CO_DONE) &&
           "hp_coro_free of a suspended or running coroutine");
#ifdef CORO_TSAN
    __tsan_destroy_fiber(co->fiber);
#endif
#ifdef CORO_ASAN
    /* frames that never returned (hp_coro__main's) leave their redzones
     * poisoned; the next user of these bytes must not inherit them */
    uintptr_t lo = (uintptr_t)co->map + GUARD_BYTES;
    ASAN_UNPOISON_MEMORY_REGION((void *)lo, (uintptr_t)co - lo);
#endif
    if (t->ncache == HP_CORO_CACHE) {
        munmap(co->map, co->map_size);
        return;
    }
    if (!t->key_set) {
        pthread_once(&cache_once, cache_key_make);
        pthread_setspecific(cache_key, t);
        t->key_set = true;
    }
    t->cache[t->ncache++] = co;
}

void hp_coro_stack(const hp_coro *co, uintptr_t *lo, size_t *size,
                   size_t *guard)
{
    *lo = (uintptr_t)co->map + GUARD_BYTES;
    *size = (uintptr_t)co - *lo;
    *guard = GUARD_BYTES;
}

void hp_coro_set_data(hp_coro *co, void *p)
{
    co->data = p;
}

void *hp_coro_data(const hp_coro *co)
{
    return co->data;
}

unsigned long hp_coro__maps(void)
{
    return tls.maps;
}
