/*
 * crashpage.h - the dev-mode crash page, written from a fatal signal
 * handler (crashpage.c; guard.c calls it).
 */
#ifndef HP_CRASHPAGE_H
#define HP_CRASHPAGE_H

#include "hp.h"

struct hp_crash {
    int fd;              /* the request's socket                        */
    const char *signame; /* "SIGSEGV", ...                              */
    const char *page;    /* the page's source path                      */
    const char *handler; /* the handler that ran                        */
    const char *so_path; /* the object it was loaded from (debug info)  */
    uintptr_t pc;        /* the faulting instruction                    */
    uintptr_t base;      /* where the object was loaded (link map l_addr) */
    bool alone;          /* the single process (--workers 0): no successor */
};

/* Write a 502 page for c onto c->fd and shut it down. Async-signal-safe
 * (runs addr2line as a child, at most 2 s). */
void hp_crash_answer(const struct hp_crash *c);

#endif
