/*
 * coro.h - coroutines (coro.c): a function running on a stack of its own,
 * entered with hp_coro_resume and left with hp_coro_yield, so that a page
 * waiting on its database gives its scheduler thread back and is resumed
 * when the socket is ready (the scheduler is reactor.c's).
 *
 * Every call is about the calling thread: each thread has its own current
 * coroutine and its own cache of stacks, and a coroutine is only ever
 * resumed on the thread that created it. Not async-signal-safe. A
 * coroutine must not be left by longjmp or exceptions: only by
 * hp_coro_yield or by returning from its function.
 */
#ifndef HP_CORO_H
#define HP_CORO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The most stacks each thread keeps for reuse after hp_coro_free (of any
 * sizes; a stack is reused only for a coroutine of its own size). */
#define HP_CORO_CACHE 64

typedef struct hp_coro hp_coro;
typedef void (*hp_coro_fn)(void *arg);

/* A coroutine that will run fn(arg) on its own stack of at least
 * stack_size bytes (rounded up to pages), with a PROT_NONE guard below it
 * (1 GiB of address space on 64-bit systems, as below a handler
 * thread's stack: code the fast tier built does not probe large frames)
 * that turns an overflow into SIGSEGV. The stack is mapped
 * MAP_NORESERVE|MAP_STACK: pages cost memory only once touched. A stack of
 * the same size from the thread's cache is reused (no system call).
 * Does not run fn yet: hp_coro_resume does.
 * NULL with errno on failure: EINVAL for stack_size 0, ENOMEM for a size
 * that cannot be mapped, or mmap's/mprotect's errno. */
hp_coro *hp_coro_new(size_t stack_size, hp_coro_fn fn, void *arg);

/* Switch into co, from the thread's own stack (never from inside a
 * coroutine: assert), on the thread that created it (assert), until co
 * calls hp_coro_yield (true: resume it again later) or its function returns
 * (false: co is finished, hp_coro_free it). Resuming a finished coroutine:
 * assert. No system call (x86-64). */
bool hp_coro_resume(hp_coro *co);

/* From inside a coroutine (assert): back to the hp_coro_resume that entered
 * it, which returns true. Returns when the coroutine is next resumed. */
void hp_coro_yield(void);

/* The coroutine running on this thread, or NULL on the thread's own
 * stack. */
hp_coro *hp_coro_current(void);

/* Free a finished or never-started coroutine (NULL: nothing); its stack
 * goes to the calling thread's cache, or back to the kernel when the cache
 * is full. Freeing a suspended or running coroutine: assert. */
void hp_coro_free(hp_coro *co);

/* co's stack: *lo its lowest usable address, *size the usable bytes
 * above it (>= the stack_size asked for), *guard the bytes of the
 * PROT_NONE guard just below lo. For the crash guard's overflow test (a
 * fault address in [lo - guard, lo) is a stack overflow). */
void hp_coro_stack(const hp_coro *co, uintptr_t *lo, size_t *size,
                   size_t *guard);

/* A pointer of the caller's (the scheduler's record of the request), NULL
 * until set; kept until hp_coro_free. */
void hp_coro_set_data(hp_coro *co, void *p);
void *hp_coro_data(const hp_coro *co);

/* For tests: how many stacks this thread has mapped (mmap calls), so that
 * a test can see that a stack came from the cache. */
unsigned long hp_coro__maps(void);

#endif
