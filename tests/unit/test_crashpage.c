/*
 * test_crashpage.c - the dev-mode crash page (crashpage.c) as a client
 * reads it off the socket: a page's crash and exit are 502s naming the
 * signal (or exit), page and handler; an application module's init that
 * crashed is a 503 saying it failed to initialise, with hook, module and
 * the source lines it is given.
 */
#include "crashpage.h"

#include "t.h"

#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* What c's page writes, as the peer of its socket reads it (malloc'd). */
static char *answer_of(struct hp_crash *c)
{
    int sv[2];
    char *buf = calloc(1, 16384);
    size_t len = 0;
    if (!buf || socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
        return buf;
    c->fd = sv[0];
    hp_crash_answer(c);
    for (ssize_t n;
         len < 16383 && (n = read(sv[1], buf + len, 16383 - len)) > 0;)
        len += (size_t)n;
    close(sv[0]);
    close(sv[1]);
    return buf;
}

static void test_init_crash_is_503_naming_hook_module_line(void)
{
    struct hp_crash c = {.signame = "SIGSEGV",
                         .page = "sub/_app.c",
                         .handler = "init",
                         .so_path = "/nonexistent.so",
                         .pc = 0x1010,
                         .base = 0x1000,
                         .init = true,
                         .where = "hp__init\n/r/sub/_app.c:6\n"};
    char *a = answer_of(&c);
    CHECK(strncmp(a, "HTTP/1.1 503 Service Unavailable\r\n", 34) == 0);
    CHECK(strstr(a, "SIGSEGV in the init hook of the application module "
                    "sub/_app.c") != NULL);
    CHECK(strstr(a, "failed to initialise") != NULL);
    CHECK(strstr(a, "<code>init</code>") != NULL);
    CHECK(strstr(a, "/r/sub/_app.c:6") != NULL);
    /* Content-Length matches what follows the head */
    const char *cl = strstr(a, "Content-Length: "),
               *body = strstr(a, "\r\n\r\n");
    CHECK(cl && body && (size_t)atoi(cl + 16) == strlen(body + 4));
    free(a);
}

/* A constructor that crashed as the page loaded is named as one, not as
 * an init hook. */
static void test_constructor_crash_named_as_such(void)
{
    struct hp_crash c = {.signame = "SIGABRT",
                         .page = "w/ctorcrash.c",
                         .handler = "constructor",
                         .so_path = "/nonexistent.so",
                         .init = true};
    char *a = answer_of(&c);
    CHECK(strncmp(a, "HTTP/1.1 503 Service Unavailable\r\n", 34) == 0);
    CHECK(strstr(a, "SIGABRT in a constructor of the page "
                    "w/ctorcrash.c") != NULL);
    CHECK(strstr(a, "init hook") == NULL);
    CHECK(strstr(a, "The page failed to initialise") != NULL);
    CHECK(strstr(a, "application module") == NULL);
    /* as on the later 503s of the refused version (server.c) */
    CHECK(strstr(a, "\r\nRetry-After: 1\r\n") != NULL);
    CHECK(strstr(a, "Save the fix and this page reloads by itself") != NULL);
    free(a);
}

/* What to do next is what applies: the single process has ended (start
 * it again), a prebuilt .so has no source to save (rebuild it). */
static void test_next_step_says_what_applies(void)
{
    struct hp_crash c = {.signame = "SIGSEGV",
                         .page = "/r/p.c",
                         .handler = "http_handler",
                         .so_path = "/nonexistent.so",
                         .alone = true};
    char *a = answer_of(&c);
    CHECK(strstr(a, "Save the fix, then start the server again.") != NULL);
    CHECK(strstr(a, "reloads by itself") == NULL);
    free(a);
    c.page = "/r/p.so";
    a = answer_of(&c);
    CHECK(strstr(a, "Rebuild the .so, then start the server again.") != NULL);
    free(a);
    c.alone = false;
    a = answer_of(&c);
    CHECK(strstr(a, "rebuild the .so and this page reloads by itself") != NULL);
    CHECK(strstr(a, "save the fix") == NULL);
    free(a);
    c.page = "/r/_app.c";
    c.handler = "init";
    c.init = true;
    a = answer_of(&c);
    CHECK(strstr(a, "in the init hook of the application module /r/_app.c") !=
          NULL);
    CHECK(strstr(a, "The application module failed to initialise") != NULL);
    free(a);
}

static void test_exit_is_502_naming_exit_and_handler(void)
{
    struct hp_crash c = {.signame = "exit(3)",
                         .page = "/r/ex.c",
                         .handler = "http_handler",
                         .so_path = "/nonexistent.so",
                         .pc = 0x1000,
                         .base = 0x1000,
                         .where = "http_handler\n/r/ex.c:4\n"};
    char *a = answer_of(&c);
    CHECK(strncmp(a, "HTTP/1.1 502 Bad Gateway\r\n", 26) == 0);
    CHECK(strstr(a, "exit(3) in the page /r/ex.c") != NULL);
    CHECK(strstr(a, "<code>http_handler</code> called exit") != NULL);
    CHECK(strstr(a, "/r/ex.c:4") != NULL);
    free(a);
}

/* _Exit and _exit are named as called, in the page and the hook
 * sentences alike. */
static void test__Exit_named_as_called(void)
{
    struct hp_crash c = {.signame = "_Exit(4)",
                         .page = "/r/ex.c",
                         .handler = "http_handler",
                         .so_path = "/nonexistent.so",
                         .pc = 0x1000,
                         .base = 0x1000,
                         .where = ""};
    char *a = answer_of(&c);
    CHECK(strstr(a, "<code>http_handler</code> called _Exit, which") != NULL);
    free(a);
    c.signame = "_exit(2)";
    c.init = true;
    c.handler = "init";
    a = answer_of(&c);
    CHECK(strstr(a, "<code>init</code> hook called _exit, which") != NULL);
    free(a);
    c.signame = "SIGSEGV";
    a = answer_of(&c);
    CHECK(strstr(a, "<code>init</code> hook crashed") != NULL);
    free(a);
}

/* A stack overflow (guard.c's verdict) is said, with the stack's size
 * and the option that sets it; another fault says nothing of it. */
static void test_stack_overflow_named(void)
{
    struct hp_crash c = {.signame = "SIGSEGV",
                         .page = "/r/big.c",
                         .handler = "http_handler",
                         .so_path = "/nonexistent.so",
                         .pc = 0x1000,
                         .base = 0x1000,
                         .where = "",
                         .overflow = (size_t)512 << 10};
    char *a = answer_of(&c);
    CHECK(strstr(a, "the stack overflowed") != NULL);
    CHECK(strstr(a, "The thread's stack is 512 KiB") != NULL);
    CHECK(strstr(a, "raise --thread-stack-size") != NULL);
    CHECK(strstr(a, "ulimit") == NULL);
    free(a);
    c.overflow = 0;
    a = answer_of(&c);
    CHECK(strstr(a, "overflowed") == NULL);
    free(a);
}

/* An event-loop thread's stack (a page run inline) is the process's stack
 * limit, not --thread-stack-size: the hint says so and does not tell the
 * user to raise a setting that would not help; likewise any other thread. */
static void test_stack_overflow_hint_per_thread_kind(void)
{
    struct hp_crash c = {.signame = "SIGSEGV",
                         .page = "/r/big.c",
                         .handler = "http_handler",
                         .so_path = "/nonexistent.so",
                         .pc = 0x1000,
                         .base = 0x1000,
                         .where = "",
                         .overflow = (size_t)8192 << 10,
                         .stack_kind = HP_STACK_EVENT_LOOP};
    char *a = answer_of(&c);
    CHECK(strstr(a, "The thread's stack is 8192 KiB") != NULL);
    CHECK(strstr(a, "inline on an event-loop thread") != NULL);
    CHECK(strstr(a, "ulimit -s") != NULL);
    CHECK(strstr(a, "--inline false") != NULL);
    CHECK(strstr(a, "raise --thread-stack-size") == NULL);
    free(a);
    c.stack_kind = HP_STACK_OTHER;
    a = answer_of(&c);
    CHECK(strstr(a, "ulimit -s") != NULL);
    CHECK(strstr(a, "raise --thread-stack-size") == NULL);
    CHECK(strstr(a, "event-loop") == NULL);
    free(a);
}

/* No instruction of the object's known (pc 0: abort raised with no frame
 * of the page's, an exit whose call was not found): the page says there is
 * no address and why, never "0x0" nor a wrapped-around offset. */
static void test_no_address_is_said_not_made_up(void)
{
    struct hp_crash c = {.signame = "SIGABRT",
                         .page = "/r/a.c",
                         .handler = "constructor",
                         .so_path = "/nonexistent.so",
                         .pc = 0,
                         .base = 0,
                         .init = true,
                         .where = ""};
    char *a = answer_of(&c);
    CHECK(strstr(a, "Address in the object: none (SIGABRT is raised by "
                    "abort()") != NULL);
    CHECK(strstr(a, "0x0") == NULL);
    CHECK(strstr(a, "no frame of the object's") != NULL);
    free(a);
    c.signame = "exit(3)";
    c.init = false;
    c.handler = "http_handler";
    c.base = 0x7f0000000000;
    a = answer_of(&c);
    CHECK(strstr(a, "none (an exit is a call") != NULL);
    CHECK(strstr(a, "0xffff") == NULL);
    free(a);
    c.signame = "SIGSEGV";
    a = answer_of(&c);
    CHECK(strstr(a, "none (the fault was outside the object") != NULL);
    free(a);
}

/* No addr2line answer for an object that does not exist: "" (the page
 * then says it found no line). */
static void test_where_of_missing_object_is_empty(void)
{
    char out[256];
    memset(out, 'x', sizeof out);
    hp_crash_where("/nonexistent/object.so", 0x10, out, sizeof out);
    CHECK_STR(out, "");
}

int main(int argc, char **argv)
{
    T_INIT(argc, argv);
    T_RUN(test_init_crash_is_503_naming_hook_module_line);
    T_RUN(test_constructor_crash_named_as_such);
    T_RUN(test_next_step_says_what_applies);
    T_RUN(test_exit_is_502_naming_exit_and_handler);
    T_RUN(test__Exit_named_as_called);
    T_RUN(test_stack_overflow_named);
    T_RUN(test_stack_overflow_hint_per_thread_kind);
    T_RUN(test_no_address_is_said_not_made_up);
    T_RUN(test_where_of_missing_object_is_empty);
    T_DONE();
}
