/*
 * stray.h - stray signals: those hotpub does not use whose default action
 * ends the process (SIGUSR2, SIGALRM, SIGVTALRM, SIGPROF, SIGIO, SIGPWR,
 * SIGSTKFLT, SIGXCPU, SIGXFSZ, SIGRTMIN..SIGRTMAX). stray.c is the only
 * implementation; the supervisor (master.c), the server (server.c), the
 * loader (loader.c, as an object is unloaded) and hotpub check call it.
 */
#ifndef HP_STRAY_H
#define HP_STRAY_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Ignore the stray signals in this process (the parent, a worker, the single
 * process) from now on: each is caught by a handler that only counts it, so
 * a page's own sigaction, installed later, wins. A signal whose disposition
 * is not the default (nor ours, inherited over fork) is left alone. Call it
 * again in a forked child that serves: the counts start again, and a forked
 * child of a page (another pid, not the one that called this) gets the
 * default action back. */
void hp_stray_signals_catch(void);

/* Record hotpub's own dispositions of every signal in this process, as
 * they are now: call it once hotpub has installed its handlers (the stop
 * signals', the fatal ones', SIGPIPE ignored) and before any page code can
 * run (a constructor, an init, a handler), from one thread, before the
 * threads that unload pages exist. What hp_stray_signals_restore_in puts
 * back for a non-stray signal. */
void hp_stray_signals_note_host(void);

/* Before an object mapped at [lo, hi) is unloaded (dlclose): every signal
 * whose handler (sa_handler or sa_sigaction) lies in it gets hotpub's
 * action back, the stray handler for a stray signal and, for any other,
 * the action hp_stray_signals_note_host recorded in this process (SIG_DFL
 * when none was), so a signal arriving later does not jump into unmapped
 * code and a SIGTERM still drains.
 * Logs one line per signal naming page (the page's source path); call it
 * from a normal thread. Returns how many signals it reset. */
int hp_stray_signals_restore_in(uintptr_t lo, uintptr_t hi, const char *page);

/* Log, from a normal thread (never a signal handler), one line for each
 * stray signal number first seen since the last call, naming its sender
 * (this process, another process's pid, the kernel). Once per signal
 * number per process; cheap when nothing came (one atomic load). */
void hp_stray_signals_report(void);

/* For the unit tests: the sentence naming a signal's sender, into out (cap
 * bytes) from its number, si_code and si_pid as seen by process self. */
void hp_stray_sender(int sig, int code, pid_t from, pid_t self, char *out,
                     size_t cap);

/* For the unit tests: how many of signal sig this process has ignored. */
long hp_stray_count(int sig);

#endif
