/*
 * crashpage.h - the dev-mode crash page, written from a fatal signal
 * handler (crashpage.c; guard.c calls it).
 */
#ifndef HP_CRASHPAGE_H
#define HP_CRASHPAGE_H

#include "hp.h"

/* The kind of thread whose stack overflowed, for what to do about it: a
 * handler thread's stack is --thread-stack-size; an event-loop thread's
 * (libmicrohttpd's, running a page inline) and any other thread's are the
 * C library's default, the process's stack size limit at start (ulimit
 * -s), which --thread-stack-size does not set. */
enum hp_stack_kind {
    HP_STACK_HANDLER = 0,
    HP_STACK_EVENT_LOOP,
    HP_STACK_OTHER
};

struct hp_crash {
    int fd;              /* the request's socket                        */
    const char *signame; /* "SIGSEGV", ..., or "exit(3)" for a page that */
                         /* called exit                                 */
    const char *page;    /* the page's (or module's) source path        */
    const char *handler; /* the handler that ran, or the lifecycle hook */
    const char *so_path; /* the object it was loaded from (debug info)  */
    uintptr_t pc;        /* the faulting instruction (the call, for exit) */
    uintptr_t base;      /* where the object was loaded (link map l_addr) */
    bool alone;          /* the single process (--workers 0): no successor */
    bool init;           /* an application module's init hook crashed: */
                         /* a 503, "failed to initialise"               */
    const char *where;   /* the source lines (hp_crash_where), or NULL  */
                         /* to find them                                */
    bool outside;        /* the fault was in code the page called (libc, */
                         /* a library): pc is the page's call into it   */
    size_t overflow;     /* the fault was the thread's stack running out */
                         /* (guard.c): the stack's bytes, else 0        */
    enum hp_stack_kind stack_kind; /* whose stack it was, for the hint  */
};

/* What to do about a stack overflow on a thread of kind k, as plain text
 * (no HTML specials) for the crash page and the log: "a large local array
 * or deep recursion; ..." naming what sets that thread's stack. */
const char *hp_crash_stack_hint(enum hp_stack_kind k);

/* Write the crash page for c onto c->fd (502; 503 for c->init) and shut
 * it down. Async-signal-safe (runs addr2line as a child, at most 2 s).
 * Returns the body's bytes if the whole answer went out, else 0 (for the
 * access log line the caller writes: hp_server_answered). */
uint64_t hp_crash_answer(const struct hp_crash *c);

/* The source lines of offset off in the object so, innermost first, as
 * addr2line -f -i gives them ("function\nfile:line\n"...), into out (cap
 * bytes, always NUL-terminated; "" when none is known). Async-signal-safe,
 * at most 2 s. */
void hp_crash_where(const char *so, uintptr_t off, char *out, size_t cap);

#endif
