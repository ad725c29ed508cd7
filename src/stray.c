/*
 * stray.c - stray signals: a page (a handler, a constructor, HP_INIT), or a
 * library it calls, that raises or causes a signal hotpub does not use and
 * whose default action ends the process (alarm() and SIGALRM, SIGUSR2, a
 * real-time signal, SIGXFSZ past a file-size limit, ...). Left at the
 * default, it ended a worker (blamed on "another process" or "no handler
 * running") or the single process without a log line. Here each is caught
 * by a handler that only counts it (async-signal-safe) and a normal thread
 * logs one line per signal number per process (hp_stray_signals_report).
 *
 * Owns: the dispositions of the stray signals and their counts.
 * Also, asked by the loader as a page's object is unloaded
 * (hp_stray_signals_restore_in): any signal whose handler lies in that
 * object goes back to hotpub's action (the stray handler, or the action
 * hotpub had installed before any page ran: hp_stray_signals_note_host).
 * May not touch: the stop signals (SIGTERM, SIGINT, SIGHUP, SIGUSR1: the
 * server's and the supervisor's), the fatal ones (guard.c's on_fatal),
 * SIGPIPE, SIGCHLD, anything a request sees; except that a handler a page
 * installed for one of them, in an object being unloaded, is put back to
 * the action hotpub had recorded for it (its code is about to be unmapped:
 * SIGSEGV otherwise; SIG_DFL would make a SIGTERM end the process without
 * draining).
 */
#define _GNU_SOURCE /* sigabbrev_np */
#include "stray.h"

#include "hp.h"

#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define NSIG_MAX 65 /* Linux: 1..64 */

struct seen {
    atomic_long count;    /* ignored so far */
    atomic_int code;      /* the first one's si_code */
    atomic_int from;      /* the first one's si_pid */
    atomic_bool reported; /* its line was logged */
};

static struct seen SEEN[NSIG_MAX];
static atomic_bool any; /* some count moved since the last report */
static pid_t owner;     /* the process that caught them (not a page's child) */

static void on_stray(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    if (sig <= 0 || sig >= NSIG_MAX)
        return;
    if (getpid() != owner) { /* a page's forked child: the default action */
        signal(sig, SIG_DFL);
        raise(sig);
        return;
    }
    struct seen *s = &SEEN[sig];
    if (atomic_fetch_add(&s->count, 1) == 0) {
        atomic_store(&s->code, si ? si->si_code : SI_KERNEL);
        atomic_store(&s->from, si ? (int)si->si_pid : 0);
    }
    atomic_store(&any, true);
}

/* The stray signals, in the order they are installed; then the real-time
 * ones (SIGRTMIN..SIGRTMAX, glibc's own below SIGRTMIN excluded). */
static const int STRAY[] = {
    SIGUSR2,   SIGALRM, SIGVTALRM, SIGPROF, SIGIO, SIGXCPU, SIGXFSZ,
#ifdef SIGPWR
    SIGPWR,
#endif
#ifdef SIGSTKFLT
    SIGSTKFLT,
#endif
};

static void catch_one(int sig)
{
    struct sigaction old;
    if (sigaction(sig, NULL, &old) < 0)
        return;
    bool ours = (old.sa_flags & SA_SIGINFO) && old.sa_sigaction == on_stray;
    if (!ours && old.sa_handler != SIG_DFL)
        return; /* someone chose (an inherited SIG_IGN, say): theirs */
    struct sigaction sa = {.sa_sigaction = on_stray,
                           .sa_flags = SA_SIGINFO | SA_RESTART};
    sigemptyset(&sa.sa_mask);
    sigaction(sig, &sa, NULL);
}

void hp_stray_signals_catch(void)
{
    owner = getpid();
    for (int i = 0; i < NSIG_MAX; i++) {
        atomic_store(&SEEN[i].count, 0);
        atomic_store(&SEEN[i].reported, false);
    }
    atomic_store(&any, false);
    for (size_t i = 0; i < sizeof STRAY / sizeof *STRAY; i++)
        catch_one(STRAY[i]);
    for (int sig = SIGRTMIN; sig <= SIGRTMAX && sig < NSIG_MAX; sig++)
        catch_one(sig);
}

/* hotpub's own dispositions in this process (HOST_PID), as they were
 * before any page code ran (hp_stray_signals_note_host): what a page's
 * handler is replaced by when its object is unloaded. Written before the
 * threads that unload exist; HOST_PID published last (release). */
static struct sigaction HOST[NSIG_MAX];
static _Atomic pid_t HOST_PID;

void hp_stray_signals_note_host(void)
{
    for (int sig = 1; sig < NSIG_MAX; sig++) {
        memset(&HOST[sig], 0, sizeof HOST[sig]);
        HOST[sig].sa_handler = SIG_DFL;
        if (sig != SIGKILL && sig != SIGSTOP)
            sigaction(sig, NULL, &HOST[sig]);
    }
    atomic_store_explicit(&HOST_PID, getpid(), memory_order_release);
}

/* The action a signal goes back to when a page's handler for it is
 * unloaded: hotpub's recorded one (its stop signals' forward_signal, the
 * fatal signals' handler, SIGPIPE ignored, ...), else the stray handler
 * for a stray signal and the default action for any other. *what says
 * which, for the log. */
static struct sigaction host_action(int sig, bool stray, const char **what)
{
    struct sigaction sa = {.sa_handler = SIG_DFL};
    sigemptyset(&sa.sa_mask);
    if (stray) {
        sa.sa_sigaction = on_stray;
        sa.sa_flags = SA_SIGINFO | SA_RESTART;
        *what = "stray again (ignored and said)";
        return sa;
    }
    *what = "back to the default action";
    if (atomic_load_explicit(&HOST_PID, memory_order_acquire) != getpid())
        return sa;
    sa = HOST[sig];
    bool dfl = !(sa.sa_flags & SA_SIGINFO) && sa.sa_handler == SIG_DFL;
    bool ign = !(sa.sa_flags & SA_SIGINFO) && sa.sa_handler == SIG_IGN;
    *what = dfl   ? "back to the default action"
            : ign ? "back to hotpub's action (ignored)"
                  : "back to hotpub's handler";
    return sa;
}

static bool is_stray(int sig)
{
    for (size_t i = 0; i < sizeof STRAY / sizeof *STRAY; i++)
        if (STRAY[i] == sig)
            return true;
    return sig >= SIGRTMIN && sig <= SIGRTMAX;
}

static void sig_name(int sig, char *out, size_t cap);

int hp_stray_signals_restore_in(uintptr_t lo, uintptr_t hi, const char *page)
{
    int n = 0;
    for (int sig = 1; sig < NSIG_MAX && lo < hi; sig++) {
        struct sigaction old;
        if (sig == SIGKILL || sig == SIGSTOP || sigaction(sig, NULL, &old) < 0)
            continue;
        uintptr_t at = (old.sa_flags & SA_SIGINFO) ? (uintptr_t)old.sa_sigaction
                                                   : (uintptr_t)old.sa_handler;
        if (at < lo || at >= hi)
            continue; /* SIG_DFL, SIG_IGN (0, 1), or code that stays */
        const char *what;
        struct sigaction sa = host_action(sig, is_stray(sig), &what);
        sigaction(sig, &sa, NULL);
        char name[32];
        sig_name(sig, name, sizeof name);
        hp_log_error("%s: its own %s (%d) handler is unloaded with it: %s",
                     page ? page : "a page", name, sig, what);
        n++;
    }
    return n;
}

long hp_stray_count(int sig)
{
    return sig > 0 && sig < NSIG_MAX ? atomic_load(&SEEN[sig].count) : 0;
}

/* "SIGUSR2", "SIGRTMIN+3" */
static void sig_name(int sig, char *out, size_t cap)
{
    const char *n = sig < SIGRTMIN ? sigabbrev_np(sig) : NULL;
    if (n)
        snprintf(out, cap, "SIG%s", n);
    else if (sig >= SIGRTMIN && sig <= SIGRTMAX)
        snprintf(out, cap, "SIGRTMIN+%d", sig - SIGRTMIN);
    else
        snprintf(out, cap, "signal %d", sig);
}

/* What the kernel sends on its own, by signal (si_code SI_KERNEL or > 0). */
static const char *kernel_cause(int sig)
{
    switch (sig) {
    case SIGALRM:
        return "the kernel: a timer (alarm(), setitimer ITIMER_REAL)";
    case SIGVTALRM:
        return "the kernel: a timer (setitimer ITIMER_VIRTUAL)";
    case SIGPROF:
        return "the kernel: a timer (setitimer ITIMER_PROF, a profiler)";
    case SIGXCPU:
        return "the kernel: the CPU time limit (RLIMIT_CPU, ulimit -t)";
    case SIGXFSZ:
        return "the kernel: a write past the file size limit (RLIMIT_FSIZE, "
               "ulimit -f); that write fails with EFBIG";
    case SIGIO:
        return "the kernel: I/O ready on a descriptor set to O_ASYNC";
    default:
        return "the kernel";
    }
}

void hp_stray_sender(int sig, int code, pid_t from, pid_t self, char *out,
                     size_t cap)
{
    if (code == SI_TIMER)
        snprintf(out, cap,
                 "a POSIX timer of this process (timer_create by "
                 "a page, or a library it called)");
    else if (code == SI_KERNEL || code > 0)
        snprintf(out, cap, "%s", kernel_cause(sig));
    else if (sig == SIGXFSZ && code == SI_USER && from == self)
        snprintf(out, cap, "%s", kernel_cause(sig));
    else if (from == self || from == 0)
        snprintf(out, cap, "this process (a page, or a library it called)");
    else
        snprintf(out, cap, "another process, pid %d", (int)from);
}

void hp_stray_signals_report(void)
{
    if (!atomic_load(&any) || !atomic_exchange(&any, false))
        return;
    for (int sig = 1; sig < NSIG_MAX; sig++) {
        struct seen *s = &SEEN[sig];
        long n = atomic_load(&s->count);
        if (n == 0 || atomic_load(&s->reported))
            continue;
        atomic_store(&s->reported, true);
        char name[32], from[160];
        sig_name(sig, name, sizeof name);
        hp_stray_sender(sig, atomic_load(&s->code), atomic_load(&s->from),
                        owner, from, sizeof from);
        hp_log_error("%s (%d) from %s: ignored; hotpub does not use it and "
                     "its default action would end the process; later ones "
                     "in process %d are ignored without a line (a page that "
                     "installs its own handler for it keeps it)",
                     name, sig, from, (int)owner);
    }
}
