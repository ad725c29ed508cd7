/*
 * server.h - the HTTP server (server.c) as its host sees it: hp_serve and
 * the narrow set of hooks through which a host (the process supervisor,
 * master.c) takes part in serving. server.c names no host: the supervisor
 * calls the server, never the other way round.
 */
#ifndef HP_SERVER_H
#define HP_SERVER_H

#include "hp.h"

#include <signal.h>

/*
 * What the host provides. Every function member may be NULL, and NULL
 * hooks (hp_serve(cfg, NULL)) mean a plain single process: server.c then
 * uses no-op defaults (pages run unguarded, nothing to report).
 */
struct hp_server_hooks {
    /* The listening socket the host bound (before dropping privileges,
     * or shared with sibling processes), or -1: hp_serve binds
     * cfg->listen itself. Either way this process's copy is hp_serve's:
     * it closes it as soon as it stops (SIGTERM), so that new
     * connections go to the other processes or are refused. */
    int listen_fd;
    /* With --tls-redirect: the host's bound socket for it (> 0), or 0 or
     * -1: hp_serve binds cfg->tls_redirect itself. */
    int redirect_fd;
    /* Event-loop threads to run; 0: one per CPU. */
    unsigned io_threads;
    /* Where to keep this process's handler-thread counts up to date for
     * the host (shared memory the supervisor reads), or NULL. */
    struct hp_thread_counts *thread_counts;

    /* Before a page runs: is the pinned page version allowed to run (the
     * guard quarantines versions that crashed a process)? 0 to run it,
     * possibly after replacing ps->page with an earlier good version of
     * that module; or -1 with *html set to a malloc'd explanation (when
     * details) or NULL (a plain status page), answered with a 500.
     * details: dev mode's details may go to this request's client (a crash
     * page, the diagnostic in that 500): dev mode and a Host of this
     * server. */
    int (*vet)(struct hp_pinset *ps, bool dev, bool details, char **html);
    /* Production mode: the page at `path` failed to build and this
     * process has no earlier version of it: pin one that ran successfully
     * elsewhere as ps->page. 0 if one was found, else -1. */
    int (*rescue)(struct hp_pinset *ps, const char *path);
    /* Around a handler: the running request (page path, handler name,
     * version, the connection's socket fd) goes on record. Returns a
     * token for run_end. */
    int (*run_begin)(const char *path, const char *handler, const hp_version *v,
                     int fd);
    /* The handler returned. false: it ran past its time and the host has
     * already answered 504 on the socket and shut it down. */
    bool (*run_end)(int token);
    /* The stack the handler runs on from now, on this thread: a
     * coroutine's (lo: its lowest usable address, size and guard below
     * it, bytes; a handler's stack, whose overflow hint names
     * --thread-stack-size), or lo 0: the thread's own again. For telling
     * a stack overflow from another fault. */
    void (*run_stack)(uintptr_t lo, size_t size, size_t guard);
    /* The handler running on this thread streamed more of its response
     * (hp_flush): it is making progress, so its time starts again. */
    void (*run_alive)(void);
    /* Handlers past their time that have not returned: shutdown does not
     * wait for them. */
    long (*stuck)(void);

    /* hp_serve is accepting connections. */
    void (*ready)(void);
    /* About once a second, from the accept thread, after the liveness
     * check found this process's own descriptors intact: the process
     * still serves (a worker's heartbeat, which its supervisor watches). */
    void (*heartbeat)(void);
    /* The liveness check found one of those descriptors closed or
     * replaced (a page closed it): the process cannot serve any more and
     * exits with status 70 right after this call; why says which
     * descriptor (the host records it for its supervisor). */
    void (*lost)(const char *why);
    /* About once a second, from the accept thread: this process's open
     * descriptors reached the high-water mark (90% of RLIMIT_NOFILE's
     * soft limit), most of them not client connections (a page leaks
     * them); why says so, logged already. The host has the process
     * replaced gracefully (as --worker-memory-limit does); called once.
     * NULL (the single process): hp_serve stops as for a SIGTERM and
     * exits with status 70 for its supervisor to restart it. */
    void (*retire)(const char *why);
    /* The pages running or run last on this process's threads, most
     * recent first, for that log line ("bad.c leakfd (running), ..."),
     * into out (cap bytes); NULL: none known. */
    void (*recent_pages)(char *out, size_t cap);
    /* SIGUSR1, after the access log: reopen the host's logs. */
    void (*reopen_logs)(void);
    /* After the drain that a stop signal began: why the host's supervisor
     * stopped this process, in words for the last log line ("retired
     * after reload (generation 3 serves)"), into out (cap bytes); false
     * if the host does not know (the line then says the server stopped,
     * or the worker was stopped). */
    bool (*stop_cause)(char *out, size_t cap);
    /* Append ,"key":value members to status.json's top-level object. */
    void (*status_json)(struct hp_buf *b);
    /* Append the host's families to /_hotpub/metrics (Prometheus text
     * exposition format 0.0.4, docs/operations.md). */
    void (*metrics_text)(struct hp_buf *b);
    /* Before the module cache is freed: drop versions the host pinned
     * outside it (vet's and rescue's). */
    void (*teardown)(void);
    /* In a signal handler (async-signal-safe): a stop signal (SIGTERM,
     * SIGINT) that a module's constructors or init raised on their own
     * thread while it loads (hp_hook_running names the hook). The host
     * treats it as that hook crashing and ends the process; NULL: the
     * signal stops the process as any other would. */
    void (*load_signal)(int sig, siginfo_t *si, void *uc);
    /* This process stops on a stop signal its supervisor did not send:
     * why, in words (the page that raised it, the process that sent it),
     * for the supervisor's log line about the exit it did not ask for. */
    void (*stop_noted)(const char *why);
    /* The worker's generation (its supervisor's count of SIGHUPs, from
     * 1), for this process's lines that a reload repeats; 0: the single
     * process, whose lines need no name. */
    unsigned generation;
};

/*
 * `hotpub serve` in this process: serve cfg->docroot on cfg->listen until
 * SIGTERM/SIGINT (SIGUSR1 reopens the logs). hooks may be NULL (see
 * above). Returns the exit status: 0, 1 (could not start), 2 (bad listen
 * address).
 */
int hp_serve(struct hp_config *cfg, const struct hp_server_hooks *hooks);

/*
 * What hp_serve would refuse, checked without serving, for the supervisor
 * before it forks workers (start and SIGHUP): the document root is a
 * directory, the TLS certificate and key parse and match (GnuTLS), the
 * compiler (cc) can be executed. 0, or -1 after logging each problem.
 */
int hp_serve_preflight(const struct hp_config *cfg);

/*
 * Async-signal-safe, for a host's fatal-signal or exit handler in a
 * process that is about to die: answer every request that has been read
 * in full and whose response has not begun (never an idle keep-alive
 * connection, never one mid-response) with `HTTP/1.1 503 Service
 * Unavailable`, `Retry-After: 1`, `Connection: close` and an empty body
 * (RFC 9110 §15.6.4), so that its client may retry rather than see the
 * connection reset; the request on culprit_fd (the one whose handler is
 * killing the process, or -1) gets a 502 Bad Gateway instead (with the
 * short HTML body of hotpub's other errors), as a retry would only fail
 * again (what nginx answers when a PHP-FPM child dies). Each
 * socket is then shut down for writing. A thread about to send its own response
 * to such a request never does.
 */
void hp_server_answer_unstarted(int culprit_fd);
/*
 * Async-signal-safe, first thing in a host's fatal-signal or exit handler:
 * take no more connections (listener.c stops accepting), so the
 * ones still in the shared backlog go to the other workers.
 */
void hp_server_dying(void);
/*
 * Stop (on) or resume taking new connections, for a while: the sibling
 * worker processes take them meanwhile (guard.c, before this worker runs
 * a version's constructors and init for the first time on the node).
 */
void hp_server_pause_accepting(bool on);
/* The same for at most ns nanoseconds (a lone worker, whose backlog no one
 * else takes, must not leave it waiting for a hung constructor); ns <= 0
 * resumes now. */
void hp_server_pause_accepting_for(long long ns);
/*
 * The host is about to answer the request on fd itself (the handler
 * timeout's 504): false if a dying process's handler has already answered
 * it (then the host must not write).
 */
bool hp_server_claim(int fd);
/*
 * The host answered fd, which this thread claimed (hp_server_claim) while
 * its request was being handled, with status and length body bytes (0 if
 * none went out): its access log line and its count in the metrics now,
 * and none when its handler returns. Async-signal-safe.
 */
void hp_server_answered(int fd, int status, uint64_t length);
/*
 * hp_server_answered for an answer the dying process writes (the crash
 * page, the crash or exit's 502, a crashed init's 503): the lines of the
 * requests it completed are written first (hp_access_dying), so the log
 * keeps their order. Async-signal-safe.
 */
void hp_server_answered_dying(int fd, int status, uint64_t length);

/*
 * Async-signal-safe: the socket of the request for which the calling
 * thread is pinning a page (building or loading it, so running an
 * application module's init), or -1. A host's fatal-signal handler answers
 * that request (after hp_server_claim).
 */
int hp_server_pinning_fd(void);
/*
 * Not async-signal-safe (the host's watchdog thread): the host gave up on
 * the init hook of the module at path (canonical, as the cache names it:
 * struct hp_hook_run's path), which ran past --handler-timeout. The
 * requests waiting for that module's load get `why` at once (503 with
 * Retry-After, as for an init refused), not at the worker's exit, and no
 * request is answered by that object if its init returns late
 * (hp_cache_abandon_load).
 */
void hp_server_abandon_load(const char *path, const char *why);
/* Async-signal-safe: dev mode's details (a crash page) may go to the
 * client of the request hp_server_pinning_fd names: dev mode (--dev, or
 * auto on loopback) and a Host of this server (docs/security.md). */
bool hp_server_pinning_details(void);

/* False when the connections speak TLS (--tls-cert): then a host must not
 * write a fixed plaintext answer onto a socket (it would be garbage inside
 * the TLS session); it closes the connection instead. */
bool hp_server_plaintext(void);

/* The document root as the server keeps it (module paths start with it):
 * absolute, its parent canonical, its last component (a deploy's swapped
 * symlink) as given; NULL (errno) if it is not a directory. Malloc'ed. */
char *hp_server_root_path(const char *docroot);

#endif
