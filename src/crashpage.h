/*
 * crashpage.h - the dev-mode crash page, written from a fatal signal
 * handler (crashpage.c; guard.c calls it).
 */
#ifndef HP_CRASHPAGE_H
#define HP_CRASHPAGE_H

#include "hp.h"

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
};

/* Write the crash page for c onto c->fd (502; 503 for c->init) and shut
 * it down. Async-signal-safe (runs addr2line as a child, at most 2 s). */
void hp_crash_answer(const struct hp_crash *c);

/* The source lines of offset off in the object so, innermost first, as
 * addr2line -f -i gives them ("function\nfile:line\n"...), into out (cap
 * bytes, always NUL-terminated; "" when none is known). Async-signal-safe,
 * at most 2 s. */
void hp_crash_where(const char *so, uintptr_t off, char *out, size_t cap);

#endif
