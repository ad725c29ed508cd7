/* test_stray.c - stray.c: stray signals are caught, counted and their
 * sender named; a disposition someone else chose is kept. */
#include "stray.h"
#include "t.h"

#include <signal.h>
#include <stdint.h>
#include <unistd.h>

static void test_sender_sentences(void)
{
    char b[200];
    pid_t me = 100;
    hp_stray_sender(SIGUSR2, SI_TKILL, me, me, b, sizeof b);
    CHECK_STR(b, "this process (a page, or a library it called)");
    hp_stray_sender(SIGUSR2, SI_USER, 77, me, b, sizeof b);
    CHECK_STR(b, "another process, pid 77");
    hp_stray_sender(SIGALRM, SI_KERNEL, 0, me, b, sizeof b);
    CHECK(strstr(b, "the kernel: a timer (alarm()") == b);
    hp_stray_sender(SIGXFSZ, SI_USER, me, me, b, sizeof b);
    CHECK(strstr(b, "EFBIG") != NULL);
    hp_stray_sender(SIGRTMIN, SI_TIMER, 0, me, b, sizeof b);
    CHECK(strstr(b, "a POSIX timer") == b);
}

static void test_raised_signals_are_counted_not_fatal(void)
{
    hp_stray_signals_catch();
    raise(SIGUSR2);
    raise(SIGUSR2);
    raise(SIGRTMIN + 2);
    raise(SIGXFSZ);
    /* Still here: each was caught. */
    CHECK(hp_stray_count(SIGUSR2) == 2);
    CHECK(hp_stray_count(SIGRTMIN + 2) == 1);
    CHECK(hp_stray_count(SIGXFSZ) == 1);
    CHECK(hp_stray_count(SIGPROF) == 0);
    hp_stray_signals_report(); /* one line each, on stderr */
}

static void test_chosen_disposition_is_kept(void)
{
    signal(SIGPWR, SIG_IGN);
    hp_stray_signals_catch();
    struct sigaction now;
    sigaction(SIGPWR, NULL, &now);
    CHECK(now.sa_handler == SIG_IGN);
    signal(SIGPWR, SIG_DFL);
    hp_stray_signals_catch(); /* again: the counts start again */
    CHECK(hp_stray_count(SIGUSR2) == 0);
    sigaction(SIGPWR, NULL, &now);
    CHECK((now.sa_flags & SA_SIGINFO) != 0);
}

static void host_term(int sig)
{
    (void)sig;
}
static void page_term(int sig)
{
    (void)sig;
}

/* A page's handler for a non-stray signal, unloaded: the signal goes back
 * to the action hotpub recorded (hp_stray_signals_note_host), not SIG_DFL
 * (a SIGTERM would then end the process without draining). */
static void test_unloaded_handler_gets_hotpubs_action_back(void)
{
    signal(SIGTERM, host_term);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGCHLD, SIG_DFL);
    hp_stray_signals_note_host();
    /* the page replaces all three */
    signal(SIGTERM, page_term);
    signal(SIGPIPE, page_term);
    signal(SIGCHLD, page_term);
    uintptr_t lo = (uintptr_t)page_term, hi = lo + 1;
    CHECK(hp_stray_signals_restore_in(lo, hi, "page.c") == 3);
    struct sigaction now;
    sigaction(SIGTERM, NULL, &now);
    CHECK(now.sa_handler == host_term);
    sigaction(SIGPIPE, NULL, &now);
    CHECK(now.sa_handler == SIG_IGN);
    sigaction(SIGCHLD, NULL, &now);
    CHECK(now.sa_handler == SIG_DFL);
    /* hotpub's own handler is no page's: left alone */
    CHECK(hp_stray_signals_restore_in(lo, hi, "page.c") == 0);
    signal(SIGTERM, SIG_DFL);
    signal(SIGPIPE, SIG_DFL);
}

int main(int argc, char **argv)
{
    T_INIT(argc, argv);
    T_RUN(test_sender_sentences);
    T_RUN(test_raised_signals_are_counted_not_fatal);
    T_RUN(test_chosen_disposition_is_kept);
    T_RUN(test_unloaded_handler_gets_hotpubs_action_back);
    T_DONE();
}
