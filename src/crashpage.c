/*
 * crashpage.c - the dev-mode answer to a request whose page crashed the
 * worker (or called exit): a 502 page (the status production answers it
 * with too) naming the signal, the page, the handler and the source line,
 * written straight onto the request's socket from the fatal signal handler
 * (guard.c's on_fatal) before the worker dies; and the 503 page of an
 * application module whose init hook crashed.
 *
 * Owns: that page and finding the source line (addr2line on the page's
 * object, with the faulting address relative to where it was loaded).
 * May not touch: anything but the file descriptors it is given and its
 * own stack: it runs in a signal handler of a process that is about to
 * die, possibly with the allocator's or the loader's locks held, so it
 * uses only async-signal-safe system calls (POSIX.1-2017 §2.4.3: fork via
 * the raw system call, execve, pipe, poll, read, write, waitpid) and
 * formats text by hand.
 */
#include "crashpage.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define HP_ADDR2LINE "/usr/bin/addr2line"
#define HP_ADDR2LINE_MS 2000 /* then the page goes out without the line */

/* A fixed buffer that text is appended to, silently cut at its end. */
struct sbuf {
    char *p;
    size_t len, cap;
};

static void put(struct sbuf *b, const char *s, size_t n)
{
    if (n > b->cap - b->len)
        n = b->cap - b->len;
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

static void puts_(struct sbuf *b, const char *s)
{
    put(b, s, strlen(s));
}

static void put_html(struct sbuf *b, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '<':
            puts_(b, "&lt;");
            break;
        case '>':
            puts_(b, "&gt;");
            break;
        case '&':
            puts_(b, "&amp;");
            break;
        case '"':
            puts_(b, "&quot;");
            break;
        default:
            put(b, s, 1);
        }
    }
}

static void put_hex(struct sbuf *b, uintptr_t v)
{
    char d[2 + 2 * sizeof v];
    size_t n = sizeof d;
    do {
        d[--n] = "0123456789abcdef"[v & 15];
        v >>= 4;
    } while (v);
    d[--n] = 'x';
    d[--n] = '0';
    put(b, d + n, sizeof d - n);
}

static void put_dec(struct sbuf *b, size_t v)
{
    char d[24];
    size_t n = sizeof d;
    do {
        d[--n] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    put(b, d + n, sizeof d - n);
}

const char *hp_crash_stack_hint(enum hp_stack_kind k)
{
    switch (k) {
    case HP_STACK_EVENT_LOOP:
        return "a large local array or deep recursion, in a page run inline "
               "on an event-loop thread, whose stack is the process's stack "
               "size limit at start (ulimit -s, LimitSTACK= under systemd), "
               "not --thread-stack-size; keep large buffers on the heap, or "
               "keep pages on the handler threads with --inline false (their "
               "stack is --thread-stack-size)";
    case HP_STACK_OTHER:
        return "a large local array or deep recursion, on a thread whose "
               "stack is the process's stack size limit at start (ulimit -s, "
               "LimitSTACK= under systemd), not --thread-stack-size; keep "
               "large buffers on the heap";
    case HP_STACK_HANDLER:
    default:
        return "a large local array or deep recursion; keep large buffers "
               "on the heap, or raise --thread-stack-size";
    }
}

/* The fault was the stack running out (guard.c saw the faulting address
 * in or just below the thread's guard area): say so, and what to do for
 * the kind of thread it was (only a handler thread's stack is
 * --thread-stack-size). */
static void put_overflow(struct sbuf *b, size_t stack, enum hp_stack_kind k)
{
    puts_(b, "The fault address is at the end of the thread's stack: the "
             "stack overflowed (a large local array, such as <code>char "
             "big[8 &lt;&lt; 20]</code>, or recursion without end). The "
             "thread's stack is ");
    put_dec(b, stack >> 10);
    puts_(b, " KiB: ");
    put_html(b, hp_crash_stack_hint(k));
    puts_(b, ". ");
}

/* The address in the object (pc - base), or, when guard.c found no
 * instruction of the object's (pc 0), why there is none: abort and exit
 * fault at no address, and the object had no frame on the stack. Never a
 * made-up 0x0. */
static void put_address(struct sbuf *b, const struct hp_crash *c)
{
    if (c->pc && c->pc >= c->base) {
        puts_(b, "</pre>\n<p>Address in the object: ");
        put_hex(b, c->pc - c->base);
        return;
    }
    puts_(b, "</pre>\n<p>Address in the object: none (");
    puts_(b, strncmp(c->signame, "SIGABRT", 7) == 0
                 ? "SIGABRT is raised by abort(), not by a fault at an "
                   "address"
             : strncmp(c->signame, "SIG", 3) != 0
                 ? "an exit is a call, not a fault at an address"
                 : "the fault was outside the object");
    puts_(b, ", and no frame of the object's was found on the thread's "
             "stack)");
}

/* Read fd into b until end of file or the deadline (CLOCK_MONOTONIC ms). */
static void read_until(int fd, struct sbuf *b, int ms)
{
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (b->len < b->cap) {
        clock_gettime(CLOCK_MONOTONIC, &t);
        int left = ms - (int)((t.tv_sec - t0.tv_sec) * 1000 +
                              (t.tv_nsec - t0.tv_nsec) / 1000000);
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (left <= 0 || poll(&pfd, 1, left) <= 0)
            return;
        ssize_t n = read(fd, b->p + b->len, b->cap - b->len);
        if (n <= 0)
            return;
        b->len += (size_t)n;
    }
}

/* addr2line -f -i -e so ADDR into out: "function\nfile:line\n"... */
static void symbolise(const char *so, uintptr_t addr, struct sbuf *out)
{
    char arg[2 + 2 * sizeof addr + 1], path[PATH_MAX];
    char prog[] = HP_ADDR2LINE, f[] = "-f", i[] = "-i", e[] = "-e";
    struct sbuf a = {arg, 0, sizeof arg - 1};
    int pfd[2];

    put_hex(&a, addr);
    arg[a.len] = '\0';
    if (!so || strlen(so) >= sizeof path || pipe2(pfd, O_CLOEXEC) < 0)
        return;
    memcpy(path, so, strlen(so) + 1);
    pid_t pid = (pid_t)syscall(SYS_fork);
    if (pid == 0) {
        char *argv[] = {prog, f, i, e, path, arg, NULL};
        char *envp[] = {NULL};
        dup2(pfd[1], 1);
        /* its complaints ("No such file") are no line: not the log's */
        int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
        if (null >= 0)
            dup2(null, 2);
        execve(HP_ADDR2LINE, argv, envp);
        _exit(127);
    }
    close(pfd[1]);
    if (pid > 0) {
        read_until(pfd[0], out, HP_ADDR2LINE_MS);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    close(pfd[0]);
}

/* addr2line joins the compile's directory to a file name that was
 * absolute already ("<cache>/obj//srv/site/page.c:3"): each line keeps
 * what follows its last "//". In place. */
static void drop_dir_prefixes(char *s)
{
    char *out = s;
    while (*s) {
        char *eol = s;
        while (*eol && *eol != '\n')
            eol++;
        char *from = s;
        for (char *p = s; p + 1 < eol; p++)
            if (p[0] == '/' && p[1] == '/')
                from = p + 1;
        while (from < eol)
            *out++ = *from++;
        if (*eol)
            *out++ = *eol++;
        s = eol;
    }
    *out = '\0';
}

static bool write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w <= 0)
            return false;
        p += w;
        n -= (size_t)w;
    }
    return true;
}

void hp_crash_where(const char *so, uintptr_t off, char *out, size_t cap)
{
    struct sbuf w = {out, 0, cap ? cap - 1 : 0};
    if (!cap)
        return;
    symbolise(so, off, &w);
    out[w.len] = '\0';
    drop_dir_prefixes(out);
    /* "??\n??:0\n": addr2line knew nothing (a fault inside libc) */
    if (strncmp(out, "??", 2) == 0)
        out[0] = '\0';
}

/* The heading and first paragraph of c's page. */
/* The exit function signame names ("exit(7)", "_Exit(6)", "exit
 * (quick_exit)"): its length, or 0 for a signal. Async-signal-safe. */
static size_t exit_fn_len(const char *signame)
{
    size_t n = 0;
    while (signame[n] && signame[n] != '(' && signame[n] != ' ')
        n++;
    if ((n == 4 && strncmp(signame, "exit", 4) == 0) ||
        (n == 5 && (strncmp(signame, "_exit", 5) == 0 ||
                    strncmp(signame, "_Exit", 5) == 0)))
        return n;
    return 0;
}

/* "called exit, which ended " (the function called), or "crashed ". */
static void put_ended(struct sbuf *b, const char *signame)
{
    size_t n = exit_fn_len(signame);
    if (!n) {
        puts_(b, "crashed ");
        return;
    }
    puts_(b, "called ");
    put(b, signame, n);
    puts_(b, ", which ended ");
}

static void put_what(struct sbuf *b, const struct hp_crash *c)
{
    puts_(b, c->signame);
    const char *base = strrchr(c->page, '/');
    bool app = strncmp(base ? base + 1 : c->page, "_app.", 5) == 0;
    /* A constructor or destructor runs as the object loads or unloads,
     * not as a hook: named as what it is. */
    bool ctor = c->init && strcmp(c->handler, "constructor") == 0;
    bool dtor = c->init && strcmp(c->handler, "destructor") == 0;
    puts_(b, !c->init ? " in the page "
             : ctor   ? (app ? " in a constructor of the application module "
                             : " in a constructor of the page ")
             : dtor   ? (app ? " in a destructor of the application module "
                             : " in a destructor of the page ")
             : app    ? " in the init hook of the application module "
                      : " in the init hook of the page ");
    put_html(b, c->page);
    if (c->init) {
        puts_(b, app ? "</h1>\n<p>The application module failed to "
                       "initialise: its <code>"
                     : "</h1>\n<p>The page failed to initialise: its <code>");
        put_html(b, c->handler);
        /* exit ends the process as surely as a fatal signal does */
        puts_(b, "</code> hook ");
        put_ended(b, c->signame);
        puts_(b, c->alone ? "the server, a single process (--workers 0): "
                            "it ends now; start it again. "
                          : "the worker process (it is being replaced), "
                            "and will not run again until the file "
                            "changes. ");
        return;
    }
    puts_(b, "</h1>\n<p>The handler <code>");
    put_html(b, c->handler);
    /* exit ends the process as surely as a fatal signal does */
    puts_(b, "</code> ");
    put_ended(b, c->signame);
    puts_(b, c->alone ? "the server, a single process (--workers 0): it "
                        "ends now; start it again. "
                      : "the worker process (it is being replaced). ");
}

/* What to do next: the single process has ended (nothing reloads by
 * itself), and a prebuilt .so page has no source to save. */
static void put_next(struct sbuf *b, const struct hp_crash *c)
{
    size_t n = strlen(c->page);
    bool so = n > 3 && strcmp(c->page + n - 3, ".so") == 0;
    if (c->alone) {
        puts_(b, so ? ". Rebuild the .so, then start the server again.</p>\n"
                    : ". Save the fix, then start the server again.</p>\n");
        return;
    }
    puts_(b, c->init ? ". "
                     : ". In dev mode a crashing version is not "
                       "quarantined: ");
    puts_(b, so ? (c->init ? "Rebuild the .so" : "rebuild the .so")
                : (c->init ? "Save the fix" : "save the fix"));
    puts_(b, " and this page reloads by itself.</p>\n");
}

uint64_t hp_crash_answer(const struct hp_crash *c)
{
    char body[8192], where[1024], head[256];
    struct sbuf b = {body, 0, sizeof body};
    struct sbuf h = {head, 0, sizeof head};

    if (c->fd < 0)
        return 0;
    if (c->where) {
        size_t n = strlen(c->where);
        n = n < sizeof where ? n : sizeof where - 1;
        memcpy(where, c->where, n);
        where[n] = '\0';
    } else if (c->pc && c->pc >= c->base) {
        hp_crash_where(c->so_path, c->pc - c->base, where, sizeof where);
    } else {
        where[0] = '\0';
    }
    puts_(&b, c->init ? "<!doctype html>\n<title>503 Service Unavailable"
                        "</title>\n"
                      : "<!doctype html>\n<title>502 Bad Gateway</title>\n");
    puts_(&b, "<style>body{font:14px/1.45 ui-monospace,monospace;"
              "background:#1e1e24;color:#eee;padding:24px}h1{font:600 20px "
              "system-ui,sans-serif;color:#ff6b6b}pre{background:#111;"
              "padding:10px;white-space:pre-wrap}</style>\n<h1>");
    put_what(&b, c);
    if (c->overflow)
        put_overflow(&b, c->overflow, c->stack_kind);
    if (c->outside)
        puts_(&b, c->init ? "The fault was in a function the module called "
                            "(in a library, such as libc's <code>strlen"
                            "</code> given <code>NULL</code>): below is the "
                            "module's call. "
                          : "The fault was in a function the page called (in "
                            "a library, such as libc's <code>strlen</code> "
                            "given <code>NULL</code>): below is the page's "
                            "call. ");
    puts_(&b, "Where, innermost first (function, then source line):</p>\n"
              "<pre>");
    put_html(&b, where[0] ? where
                 : c->pc  ? "(no line: addr2line found none)\n"
                          : "(no line: no frame of the object's)\n");
    put_address(&b, c);
    put_next(&b, c);
    puts_(&b, "<script>new EventSource('/_hotpub/events').addEventListener("
              "'reload',function(){location.reload()})</script>\n");
    /* Retry-After as on every later 503 of a refused module (server.c's
     * send_init_503): a fixed file may be served by then. */
    puts_(&h, c->init ? "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n"
                      : "HTTP/1.1 502 Bad Gateway\r\n");
    puts_(&h, "Content-Type: text/html; charset=utf-8\r\n"
              "Cache-Control: no-store\r\nConnection: close\r\n"
              "Content-Length: ");
    char num[24];
    size_t n = sizeof num, v = b.len;
    do {
        num[--n] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    put(&h, num + n, sizeof num - n);
    puts_(&h, "\r\n\r\n");
    bool sent = write_all(c->fd, head, h.len) && write_all(c->fd, body, b.len);
    shutdown(c->fd, SHUT_RDWR);
    return sent ? b.len : 0;
}
