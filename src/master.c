/*
 * master.c - the process supervisor: a parent that binds the listening
 * socket and keeps N worker processes serving it, replacing those that die
 * (with back-off) or that the guard retired, and graceful signals.
 * docs/operations.md is the manual.
 *
 * Owns: binding the listening socket in the parent (net.c's
 * hp_listen_bind), forking, reaping and replacing workers (struct child
 * and its state diagram below), the census of the current generation,
 * SIGTERM/SIGINT/SIGHUP/SIGUSR1 in the parent, reloading the settings on
 * SIGHUP, --user/--group, --pid-file, --error-log and sd_notify; filling
 * the server's hooks (server.h) for each process; asking upload.c
 * (uploadspool.h) to remove the upload spool files of a reaped worker and,
 * at start, those of processes gone since (a crash or SIGKILL leaves them:
 * the dead process removes nothing).
 * May not touch: HTTP (workers run hp_serve, which never names this file),
 * page code (the parent never loads any), the module cache, compiling,
 * and the shared-memory area's records and tables, which are guard.c's:
 * the parent drives a slot's life and asks the guard for an autopsy.
 */
#include "master.h"

#include "guard.h"
#include "ops.h"
#include "server.h"
#include "stray.h"
#include "uploadspool.h"
#include "wait.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CRASH_WINDOW 10.0 /* seconds: deaths counted for the back-off */
#define BACKOFF_MAX 10.0  /* seconds between restarts, at most */
#define SPARE_GRACE 10.0  /* seconds a replaced worker waits for its */
                          /* successor to be ready before draining, */
                          /* when some other current worker serves */

static struct hp_config *CFG;
static int (*RELOAD)(struct hp_config *);
static bool cfg_owned; /* CFG was allocated by a reload */
/* While a SIGHUP's generation starts: the settings of the generation that
 * serves, put back if the new one cannot start (abandon_reload). */
static struct hp_config *BASE;
static bool base_owned;
static int LISTEN_FD = -1;
static int REDIRECT_FD = -1; /* --tls-redirect's socket, or -1 */

/* ---- sd_notify, privileges, pid file ------------------------------------ */

static void sd_notify(const char *msg)
{
    const char *path = getenv("NOTIFY_SOCKET");
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t n;

    if (!path || !*path || (n = strlen(path)) >= sizeof sa.sun_path)
        return;
    memcpy(sa.sun_path, path, n);
    if (sa.sun_path[0] == '@')
        sa.sun_path[0] = '\0'; /* abstract namespace */
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return;
    ssize_t r =
        sendto(fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *)&sa,
               (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n));
    (void)r;
    close(fd);
}

/* ---- logs ---------------------------------------------------------------- */

static int open_error_log(void)
{
    const char *p = CFG->error_log;
    if (!p || strcmp(p, "-") == 0)
        return 0;
    int fd = open(p, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0) {
        hp_log_error("cannot open error log %s: %s", p, strerror(errno));
        return -1;
    }
    fflush(stderr);
    dup2(fd, STDERR_FILENO);
    close(fd);
    return 0;
}

/* server.h's reopen_logs (SIGUSR1; the access log is server.c's). */
static void reopen_logs(void)
{
    if (CFG && CFG->error_log && strcmp(CFG->error_log, "-") != 0)
        open_error_log();
}

/* server.h's ready in a single process. */
static void notify_ready(void)
{
    sd_notify("READY=1");
}

static int drop_privileges(const char *user, const char *group)
{
    uid_t uid = getuid();
    gid_t gid = getgid();
    char *end;

    if (user) {
        struct passwd *pw = getpwnam(user);
        if (pw) {
            uid = pw->pw_uid;
            gid = pw->pw_gid;
        } else {
            unsigned long n = strtoul(user, &end, 10);
            if (!*user || *end) {
                hp_log_error("--user %s: no such user", user);
                return -1;
            }
            uid = (uid_t)n;
        }
    }
    if (group) {
        struct group *gr = getgrnam(group);
        if (gr) {
            gid = gr->gr_gid;
        } else {
            unsigned long n = strtoul(group, &end, 10);
            if (!*group || *end) {
                hp_log_error("--group %s: no such group", group);
                return -1;
            }
            gid = (gid_t)n;
        }
    }
    if (geteuid() != 0) {
        if (uid == geteuid() && gid == getegid())
            return 0; /* already that user: nothing to drop */
        hp_log_error("--user/--group need hotpub to be started as root");
        return -1;
    }
    if (setgroups(1, &gid) < 0 || setgid(gid) < 0 || setuid(uid) < 0) {
        hp_log_error("cannot drop privileges to uid %u gid %u: %s",
                     (unsigned)uid, (unsigned)gid, strerror(errno));
        return -1;
    }
    if (uid != 0 && setuid(0) == 0) {
        hp_log_error("dropping privileges did not stick");
        return -1;
    }
    hp_log_info("running as uid %u gid %u", (unsigned)uid, (unsigned)gid);
    return 0;
}

static int write_pid_file(void)
{
    if (!CFG->pid_file)
        return 0;
    FILE *f = fopen(CFG->pid_file, "we");
    if (!f || fprintf(f, "%d\n", (int)getpid()) < 0 || fclose(f) != 0) {
        hp_log_error("cannot write pid file %s: %s", CFG->pid_file,
                     strerror(errno));
        return -1;
    }
    return 0;
}

static void remove_pid_file(void)
{
    if (CFG->pid_file)
        unlink(CFG->pid_file); /* may fail after dropping privileges */
}

/* ---- the workers as the parent tracks them ----------------------------- */

/* clang-format off */
/*
 * A worker process as the parent tracks it. Its slot's state in shared
 * memory (guard.h: starting, ready, draining) says whether it serves yet;
 * this says what the parent wants of it:
 *
 *            spawn               retired by the guard, or SIGHUP
 *   EMPTY ----------> CURRENT ------------------------------> REPLACED
 *     ^                  |                                        |
 *     |                  | SIGTERM/SIGINT,        its successors  |
 *     |                  | or workers cannot      serve, SPARE_   |
 *     |                  v start                  GRACE, SIGTERM  |
 *     |              DRAINING <-----------------------------------+
 *     |                  |
 *     +---- reaped ------+   (also from CURRENT, REPLACED: it died, or
 *                             was killed for a stopped heartbeat)
 *
 * REPLACED -> CURRENT: the SIGHUP's generation could not start; the
 * workers it replaced are the current ones again (abandon_reload).
 * DRAINING is the only state whose clean exit is not a crash.
 */
/* clang-format on */
enum child_state { C_EMPTY = 0, C_CURRENT, C_REPLACED, C_DRAINING };

struct child {
    enum child_state state;
    pid_t pid; /* 0 exactly when EMPTY */
    unsigned gen;
    double since;    /* REPLACED: since when */
    bool killed;     /* SIGKILLed for silence: wait for the reaping */
    bool superseded; /* REPLACED by a SIGHUP, not retired by the guard */
    char *updir;     /* its --upload-dir (a SIGHUP may change CFG's) */
};

static bool child_may_move(enum child_state from, enum child_state to)
{
    switch (to) {
    case C_CURRENT:
        return from == C_EMPTY || from == C_REPLACED;
    case C_REPLACED:
        return from == C_CURRENT;
    case C_DRAINING:
        return from == C_CURRENT || from == C_REPLACED;
    case C_EMPTY:
        return from != C_EMPTY;
    }
    return false;
}

static void child_move(struct child *k, enum child_state to)
{
    assert(child_may_move(k->state, to));
    k->state = to;
    if (to == C_EMPTY)
        k->pid = 0;
    assert((k->state == C_EMPTY) == (k->pid == 0));
}

/* The parent's state (one supervisor per process). */
static struct {
    struct child *kids; /* one per slot */
    int nslots;
    int capacity;      /* most workers a SIGHUP may ask for */
    int wanted;        /* workers of the current generation */
    unsigned gen;      /* the current generation */
    unsigned last_gen; /* the newest generation started */
    double deaths[32]; /* when recent workers died (back-off) */
    int ndeaths;
    double next_spawn_at;
    bool spawn_now;    /* none left serving: one starts at once */
    bool ever_ready;   /* some worker got as far as serving */
    bool start_failed; /* one exited before that: give up */
    unsigned long spawned;
    bool stopping, reloading, announced;
    double stop_deadline, reload_since;
    unsigned base_gen; /* reloading: the generation that serves */
    int base_wanted;
    char reload_failed[160]; /* why the SIGHUP's generation cannot start */
    int rc;
} M;

/* In the new worker process. */
static void children_die_with_us(void); /* process hygiene, below */

static _Noreturn void worker_main(int slot)
{
    unsetenv("NOTIFY_SOCKET");
    signal(SIGHUP, SIG_IGN);
    signal(SIGCHLD, SIG_DFL);
    sigset_t keep;
    sigemptyset(&keep); /* hp_serve waits for these */
    sigaddset(&keep, SIGTERM);
    sigaddset(&keep, SIGINT);
    sigaddset(&keep, SIGUSR1);
    sigprocmask(SIG_SETMASK, &keep, NULL);

    struct hp_server_hooks hooks = {.listen_fd = LISTEN_FD,
                                    .redirect_fd = REDIRECT_FD,
                                    .reopen_logs = reopen_logs,
                                    .generation = M.gen};
    /* The CPUs are shared among the workers: with one CPU each, one
     * event-loop thread each (a second one on the same CPU only adds
     * context switches). */
    unsigned n = (unsigned)hp_cpus(), w = (unsigned)CFG->workers;
    if (CFG->io_threads > 0)
        hooks.io_threads = (unsigned)CFG->io_threads;
    else if (w > 1)
        hooks.io_threads = (n + w - 1) / w;
    hp_guard_enter(slot, CFG, &hooks);
    hp_metrics_enter(slot);
    children_die_with_us();
    exit(hp_serve(CFG, &hooks));
}

static int spawn(void)
{
    int i;
    for (i = 0; i < M.nslots; i++)
        if (M.kids[i].state == C_EMPTY &&
            hp_guard_slot_state(i) == HP_SLOT_FREE)
            break;
    if (i == M.nslots)
        return -1;
    hp_guard_slot_start(i, M.gen);
    fflush(NULL);
    pid_t master = getpid(), pid = fork();
    if (pid < 0) {
        hp_log_error("fork: %s", strerror(errno));
        hp_guard_slot_free(i);
        return -1;
    }
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != master)
            _exit(0); /* the parent died before PDEATHSIG was set */
        worker_main(i);
    }
    hp_guard_slot_set_pid(i, pid);
    struct child *k = &M.kids[i];
    k->pid = pid;
    k->killed = false;
    k->superseded = false;
    k->gen = M.gen;
    k->updir = hp_xstrdup(hp_upload_dir(CFG));
    child_move(k, C_CURRENT);
    return i;
}

static int live_children(void)
{
    int n = 0;
    for (int i = 0; i < M.nslots; i++)
        n += M.kids[i].state != C_EMPTY;
    return n;
}

static void stop_child(int i)
{
    struct child *k = &M.kids[i];
    if (k->state != C_CURRENT && k->state != C_REPLACED)
        return;
    child_move(k, C_DRAINING);
    hp_guard_slot_drain(i);
    kill(k->pid, SIGTERM);
}

static void stop_all(double now)
{
    M.stopping = true;
    M.stop_deadline = now + CFG->drain_delay + CFG->shutdown_timeout + 5;
    for (int i = 0; i < M.nslots; i++)
        stop_child(i);
}

/* Workers other than slot's that accept connections (or are starting
 * to). */
static int serving_besides(int slot)
{
    int n = 0;
    for (int i = 0; i < M.nslots; i++)
        n += i != slot &&
             (M.kids[i].state == C_CURRENT || M.kids[i].state == C_REPLACED);
    return n;
}

/*
 * Workers dying in a loop: wait before starting the next one. Except for
 * the last one serving, when it had served (was_ready): then one
 * replacement starts at once, so that whoever makes workers die (a client
 * with a request that crashes the server) can slow the site down but not
 * leave it with no worker at all; the back-off still holds the rest. A
 * worker that died before it served is a start-up loop: no exception.
 */
static void back_off(int slot, bool was_ready)
{
    double now = hp_now();
    int cap = (int)(sizeof M.deaths / sizeof *M.deaths);
    if (M.ndeaths == cap) {
        memmove(M.deaths, M.deaths + 1, sizeof M.deaths - sizeof *M.deaths);
        M.ndeaths--;
    }
    M.deaths[M.ndeaths++] = now;
    int recent = 0;
    for (int d = 0; d < M.ndeaths; d++)
        recent += now - M.deaths[d] < CRASH_WINDOW;
    int free_deaths = M.wanted > 4 ? M.wanted : 4;
    if (recent <= free_deaths)
        return;
    double delay = 0.25;
    for (int d = free_deaths + 1; d < recent && delay < BACKOFF_MAX; d++)
        delay *= 2;
    if (delay > BACKOFF_MAX)
        delay = BACKOFF_MAX;
    M.next_spawn_at = now + delay;
    if (was_ready && serving_besides(slot) == 0) {
        M.spawn_now = true;
        hp_log_error("%d workers died in the last %.0f s: none is left "
                     "serving, so one starts at once; the others wait "
                     "%.2f s",
                     recent, CRASH_WINDOW, delay);
        return;
    }
    hp_log_error("%d workers died in the last %.0f s: waiting %.2f s "
                 "before starting another",
                 recent, CRASH_WINDOW, delay);
}

static void on_death(int i, int status)
{
    struct child *k = &M.kids[i];
    bool clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    bool was_ready = hp_guard_slot_state(i) != HP_SLOT_STARTING;

    if (k->state == C_DRAINING && clean) {
        /* Say why it drained: "finished" alone, for the old generation of
         * every SIGHUP, read like the server stopping. */
        hp_log_info("worker %d (generation %u) %s, drained and exited",
                    (int)k->pid, k->gen,
                    M.stopping      ? "stopped with the server"
                    : k->superseded ? "retired after reload"
                                    : "retired");
        return;
    }
    char how[96];
    int sig = 0, code = 0;
    if (WIFSIGNALED(status)) {
        sig = WTERMSIG(status);
        snprintf(how, sizeof how, "killed by signal %d (%s)%s", sig,
                 strsignal(sig), WCOREDUMP(status) ? ", core dumped" : "");
    } else {
        code = WEXITSTATUS(status);
        snprintf(how, sizeof how, "exited with status %d", code);
    }
    if (!was_ready && !M.ever_ready && !sig) {
        hp_log_error("worker %d %s before it could serve", (int)k->pid, how);
        M.start_failed = true;
        return;
    }
    if (!was_ready && BASE && k->gen == M.gen && k->state == C_CURRENT) {
        /* Not a crash to retry: the SIGHUP's settings do not start. */
        snprintf(M.reload_failed, sizeof M.reload_failed,
                 "worker %d of generation %u %s before it could serve",
                 (int)k->pid, k->gen, how);
        return;
    }
    if (!hp_guard_autopsy(i, k->pid, k->gen, how, sig, code, CFG->dev))
        back_off(i, was_ready); /* not a page's request: a loop */
}

static void reap(void)
{
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        for (int i = 0; i < M.nslots; i++) {
            if (M.kids[i].pid != pid)
                continue;
            on_death(i, status);
            /* Now, before its pid can be reused: the files of requests it
             * died in (those it finished, it removed itself). */
            hp_upload_sweep_pid(M.kids[i].updir, pid);
            free(M.kids[i].updir);
            M.kids[i].updir = NULL;
            child_move(&M.kids[i], C_EMPTY);
            hp_metrics_fold(i);
            hp_guard_slot_free(i);
            break;
        }
    }
}

/* ---- SIGHUP: the settings again ----------------------------------------- */

/* A setting the parent holds (its socket, its privileges, its pid file)
 * cannot change without a restart: keep the old value, say so. */
static void keep(char **slot, const char *old, const char *what)
{
    if ((!*slot && !old) || (*slot && old && strcmp(*slot, old) == 0))
        return;
    hp_log_error("SIGHUP: %s changed to %s; that needs a restart (keeping "
                 "%s)",
                 what, *slot ? *slot : "(none)", old ? old : "(none)");
    free(*slot);
    *slot = old ? hp_xstrdup(old) : NULL;
}

/* What of `next` this parent cannot take without a restart. */
static void keep_all(struct hp_config *next)
{
    keep(&next->listen, CFG->listen, "listen");
    keep(&next->tls_redirect, CFG->tls_redirect, "tls-redirect");
    keep(&next->user, CFG->user, "user");
    keep(&next->group, CFG->group, "group");
    keep(&next->pid_file, CFG->pid_file, "pid-file");
    if (next->workers == 0) {
        hp_log_error("SIGHUP: workers = 0 (one process) needs a restart; "
                     "keeping %d workers",
                     CFG->workers);
        next->workers = CFG->workers;
    } else if (next->workers > M.capacity) {
        hp_log_error("SIGHUP: at most %d workers without a restart",
                     M.capacity);
        next->workers = M.capacity;
    }
    if ((size_t)next->threads + 16 > (size_t)hp_guard_nrecs())
        hp_log_error("SIGHUP: threads = %d: only %d threads per worker are "
                     "watched for crashes and timeouts without a restart",
                     next->threads, hp_guard_nrecs());
}

static void config_drop(struct hp_config *c, bool owned)
{
    if (owned) {
        hp_config_free(c);
        free(c);
    }
}

/* Make next the settings new workers get; returns the previous ones. */
static struct hp_config *switch_config(struct hp_config *next, bool owned)
{
    struct hp_config *old = CFG;
    bool relog = !((!next->error_log && !old->error_log) ||
                   (next->error_log && old->error_log &&
                    strcmp(next->error_log, old->error_log) == 0));
    CFG = next;
    cfg_owned = owned;
    if (relog)
        open_error_log();
    hp_guard_set_workers(CFG->workers);
    return old;
}

/* SIGHUP: read the settings again for the next generation of workers,
 * and check in this process what can be checked before forking (the
 * document root, the TLS credentials, the compiler: server.h's
 * hp_serve_preflight). The settings of the generation that serves stay in
 * BASE until one of the new workers serves. Returns 0, or -1 (refused:
 * keep the old settings). */
static int reload_config(void)
{
    if (!RELOAD)
        return 0;
    struct hp_config *next = hp_xmalloc(sizeof *next);
    if (RELOAD(next) < 0) {
        free(next);
        hp_log_error("SIGHUP: the configuration has errors (see above); "
                     "reload refused: the workers go on with the old one");
        return -1;
    }
    keep_all(next);
    if (hp_serve_preflight(next) < 0) {
        config_drop(next, true);
        hp_log_error("SIGHUP: reload refused (see above): the workers go on "
                     "with the old configuration");
        return -1;
    }
    bool owned = cfg_owned;
    struct hp_config *old = switch_config(next, true);
    if (!BASE) {
        BASE = old;
        base_owned = owned;
        M.base_gen = M.gen;
        M.base_wanted = M.wanted;
    } else { /* a reload not yet serving: superseded */
        config_drop(old, owned);
    }
    return 0;
}

/* A worker of the SIGHUP's generation serves: its settings work. */
static void commit_reload(void)
{
    config_drop(BASE, base_owned);
    BASE = NULL;
}

/*
 * The SIGHUP's generation cannot start (M.reload_failed says how) and none
 * of its workers serves: as nginx -s reload, give it up. Its workers are
 * stopped, the ones it replaced are the current generation again, with
 * their settings; nothing is retried until the next SIGHUP.
 */
static void abandon_reload(void)
{
    hp_log_error("SIGHUP: reload failed: %s (see above); worker generation "
                 "%u goes on serving with the previous configuration; fix "
                 "it and send SIGHUP again",
                 M.reload_failed, M.base_gen);
    M.reload_failed[0] = '\0';
    for (int i = 0; i < M.nslots; i++) {
        struct child *k = &M.kids[i];
        if (k->state == C_REPLACED && k->superseded && k->gen == M.base_gen) {
            child_move(k, C_CURRENT);
            k->superseded = false;
        } else if (k->gen != M.base_gen && k->superseded) {
            stop_child(i); /* a reload in between, not serving either */
        } else if (k->state == C_CURRENT && k->gen == M.gen) {
            stop_child(i);
        }
    }
    config_drop(switch_config(BASE, base_owned), true);
    BASE = NULL;
    M.gen = M.base_gen;
    M.wanted = M.base_wanted;
    hp_guard_set_generation(M.gen);
    M.reloading = false;
    sd_notify("READY=1\nSTATUS=reload failed: the previous configuration "
              "serves");
}

/* ---- the parent's loop ----------------------------------------------------
 */

/* The shared area and the table of children, sized with room for a reload
 * to raise threads and workers somewhat. */
static int master_setup(void)
{
    int n = CFG->workers;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    if (ncpu < 1)
        ncpu = 1;
    int nrecs = (int)ncpu + 2 * CFG->threads + 16;
    M.capacity = 2 * (n > ncpu ? n : (int)ncpu);
    M.nslots = 2 * M.capacity + 2;
    M.wanted = n;
    M.gen = M.last_gen = 1;
    if (hp_guard_map(M.nslots, nrecs, n) < 0 || hp_metrics_map(M.nslots) < 0)
        return -1;
    /* Production's quarantine outlives a restart (dev mode has none). */
    if (!CFG->dev)
        hp_guard_tables_load(CFG->cache_dir, CFG->docroot);
    M.kids = hp_xcalloc((size_t)M.nslots, sizeof *M.kids);
    return 0;
}

static void on_stop_signal(int sig, double now)
{
    hp_log_info("signal %d: stopping; workers finish their requests "
                "(at most %d s)",
                sig, CFG->shutdown_timeout);
    sd_notify("STOPPING=1");
    /* Before the workers hear of it: their health checks answer 503
     * through --drain-delay (metrics.c's node flag). */
    hp_metrics_set_node_draining();
    close(LISTEN_FD);
    LISTEN_FD = -1;
    if (REDIRECT_FD >= 0)
        close(REDIRECT_FD);
    REDIRECT_FD = -1;
    stop_all(now);
}

static void on_reload(double now)
{
    if (reload_config() < 0)
        return;
    M.wanted = CFG->workers;
    M.gen = ++M.last_gen; /* never reused: an abandoned one may drain */
    hp_guard_set_generation(M.gen);
    hp_log_info("SIGHUP: starting worker generation %u; the old workers "
                "finish their requests and exit",
                M.gen);
    char msg[96];
    struct timespec mt;
    clock_gettime(CLOCK_MONOTONIC, &mt);
    snprintf(msg, sizeof msg, "RELOADING=1\nMONOTONIC_USEC=%llu",
             (unsigned long long)mt.tv_sec * 1000000ULL +
                 (unsigned long long)mt.tv_nsec / 1000);
    sd_notify(msg);
    M.reloading = true;
    M.reload_since = now;
}

static void on_signal(int sig, double now)
{
    if ((sig == SIGTERM || sig == SIGINT) && !M.stopping) {
        on_stop_signal(sig, now);
    } else if (sig == SIGHUP && !M.stopping) {
        on_reload(now);
    } else if (sig == SIGUSR1) {
        reopen_logs();
        hp_log_info("SIGUSR1: log files reopened");
        for (int i = 0; i < M.nslots; i++)
            if (M.kids[i].state != C_EMPTY)
                kill(M.kids[i].pid, SIGUSR1);
    }
}

/* Stopping: true once every worker is gone (killed past the deadline:
 * every worker gives up on its own requests after --shutdown-timeout). */
static bool stopped(double now)
{
    if (!live_children())
        return true;
    if (now <= M.stop_deadline)
        return false;
    hp_log_error("workers still running %d s after SIGTERM: killing them",
                 CFG->shutdown_timeout + 5);
    for (int i = 0; i < M.nslots; i++)
        if (M.kids[i].state != C_EMPTY)
            kill(M.kids[i].pid, SIGKILL);
    /* Wait without reaping (WNOWAIT): reap() must see each status and
     * pid, to free the slot and remove the worker's upload files. */
    siginfo_t si;
    while (live_children() && waitid(P_ALL, 0, &si, WEXITED | WNOWAIT) == 0)
        reap();
    M.rc = 1;
    return true;
}

/* A worker that cannot even start (document root, cache directory,
 * database) is a configuration problem, not a crash to retry forever. */
static bool cannot_start(double now)
{
    for (int i = 0; i < M.nslots && !M.ever_ready; i++)
        M.ever_ready = M.kids[i].state != C_EMPTY &&
                       hp_guard_slot_state(i) == HP_SLOT_READY;
    if (!M.start_failed || M.ever_ready)
        return false;
    hp_log_error("workers cannot start; stopping");
    M.rc = 1;
    stop_all(now);
    return true;
}

/* Count the current generation's workers (moving those the guard retired
 * or SIGHUP superseded to REPLACED); *ready: how many of them serve. */
static int census(double now, int *ready)
{
    int active = 0;
    *ready = 0;
    for (int i = 0; i < M.nslots; i++) {
        struct child *k = &M.kids[i];
        if (k->state != C_CURRENT)
            continue;
        if (hp_guard_slot_retire(i) || k->gen != M.gen) {
            if (k->gen == M.gen)
                hp_guard_count_retired(i);
            child_move(k, C_REPLACED);
            k->superseded = k->gen != M.gen;
            k->since = now;
            continue;
        }
        active++;
        *ready += hp_guard_slot_state(i) == HP_SLOT_READY;
    }
    return active;
}

/*
 * A worker that serves beats once a second (its accept thread, after
 * checking the worker's own descriptors). One silent for longer than
 * --worker-heartbeat-timeout accepts nothing any more, though its slot
 * says ready (stopped, deadlocked, its accept thread gone): kill it; the
 * reaping replaces it. Draining workers have stopped accepting and are
 * not asked.
 */
static void check_heartbeats(void)
{
    double limit = CFG->worker_heartbeat_timeout;
    for (int i = 0; i < M.nslots && limit > 0; i++) {
        struct child *k = &M.kids[i];
        if ((k->state != C_CURRENT && k->state != C_REPLACED) || k->killed)
            continue;
        double silent = hp_guard_slot_silence(i);
        if (silent <= limit)
            continue;
        hp_log_error("worker %d (generation %u) has not beaten for %.1f s "
                     "(--worker-heartbeat-timeout %g s): it no longer "
                     "accepts connections; killing it (SIGKILL)",
                     (int)k->pid, k->gen, silent, limit);
        hp_guard_slot_silenced(i, silent);
        kill(k->pid, SIGKILL);
        k->killed = true;
    }
}

/* One turn: start what is missing (a crash, a timeout, SIGHUP); replaced
 * workers drain once their successors serve. */
static void supervise(double now)
{
    check_heartbeats();
    if (M.reload_failed[0])
        abandon_reload();
    int ready, active = census(now, &ready);
    if (BASE && ready > 0)
        commit_reload();
    while (active < M.wanted && (now >= M.next_spawn_at || M.spawn_now)) {
        if (spawn() < 0)
            break;
        M.spawn_now = false;
        active++;
        if (++M.spawned > (unsigned long)M.wanted)
            hp_guard_count_restart();
    }
    for (int i = 0; i < M.nslots; i++) {
        struct child *k = &M.kids[i];
        /* Those a SIGHUP replaced serve until the new generation does. */
        if (k->state == C_REPLACED && !(BASE && k->superseded) &&
            (ready >= M.wanted || now - k->since > SPARE_GRACE))
            stop_child(i);
    }
    if (ready >= M.wanted && (!M.announced || M.reloading)) {
        if (M.reloading)
            hp_log_info("worker generation %u is serving (%.2f s)", M.gen,
                        now - M.reload_since);
        sd_notify("READY=1");
        M.announced = true;
        M.reloading = false;
    }
}

/* A wait the server bounds itself that is not shorter than
 * --handler-timeout is cut to end before it (wait.h's hp_wait_bound): say
 * so once, at start-up, naming both values and the one that wins. Only
 * for a value set: "auto" (the default) is below handler-timeout by
 * construction (config.c's wait_auto_ms), and a default never warns. */
static void warn_waits(const struct hp_config *c)
{
    double t = c->handler_timeout;
    if (t <= 0)
        return;
    const struct {
        const char *name;
        int ms;
    } w[] = {{"--db-acquire-timeout", c->db_acquire_timeout},
             {"--session-lock-timeout", c->session_lock_timeout}};
    for (size_t i = 0; i < sizeof w / sizeof w[0]; i++)
        if (w[i].ms > 0 && w[i].ms >= t * 1000)
            hp_log_error("warning: %s (%d ms) is not below --handler-timeout "
                         "(%g s): the handler timeout wins: such a wait ends "
                         "%g ms before it and answers 503 (Retry-After: 1)",
                         w[i].name, w[i].ms, t,
                         (double)hp_wait_margin_ns(t) / 1e6);
}

static int master_serve(void)
{
    if (master_setup() < 0)
        return 1;
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    sigaddset(&sigs, SIGUSR1);
    sigaddset(&sigs, SIGCHLD);
    sigprocmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    hp_stray_signals_catch(); /* the parent outlives a stray signal too */

    warn_waits(CFG);
    char limit[32] = "off";
    if (CFG->handler_timeout > 0)
        snprintf(limit, sizeof limit, "%g s", CFG->handler_timeout);
    hp_log_info("hotpub %s master %d: %d worker processes on %s://%s, "
                "handler timeout %s",
                HP_VERSION_STRING, (int)getpid(), M.wanted,
                CFG->tls_cert ? "https" : "http", CFG->listen, limit);
    for (;;) {
        struct timespec tick = {0, 50000000};
        siginfo_t si;
        int sig = sigtimedwait(&sigs, &si, &tick);
        hp_stray_signals_report();
        reap();
        double now = hp_now();
        on_signal(sig, now);
        if (M.stopping) {
            if (stopped(now))
                break;
            continue;
        }
        if (!cannot_start(now))
            supervise(now);
        if (!CFG->dev)
            hp_guard_tables_save(CFG->cache_dir, CFG->docroot, false);
    }
    if (!CFG->dev) /* the workers are gone: the tables are final */
        hp_guard_tables_save(CFG->cache_dir, CFG->docroot, true);
    remove_pid_file();
    hp_log_info("master %d stopped", (int)getpid());
    if (BASE)
        commit_reload(); /* frees it */
    config_drop(CFG, cfg_owned);
    return M.rc;
}

/* ---- process hygiene ------------------------------------------------------
 *
 * A page's fork(): the child gets SIGKILL when the thread that forked it
 * ends (a handler or event-loop thread: it lives as long as the serving
 * process), so no child outlives the server holding the listening socket,
 * a database file or the port. system() and popen() spawn without fork
 * handlers and wait for their children themselves.
 */
/* Atomic: several threads may fork at once (compiles run on batch
 * threads of their own); they all store the same value. */
static atomic_int fork_parent;

static void before_fork(void)
{
    atomic_store_explicit(&fork_parent, (int)getpid(), memory_order_relaxed);
}

static void in_forked_child(void)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    /* the parent ended before the prctl */
    if (getppid() !=
        (pid_t)atomic_load_explicit(&fork_parent, memory_order_relaxed))
        _exit(0);
}

static void children_die_with_us(void)
{
    pthread_atfork(before_fork, NULL, in_forked_child);
}

/*
 * --workers 0: an exit nobody asked for (a page calling exit(0)) must not
 * look like a clean stop, or Restart=on-failure would leave the site down:
 * it is logged and becomes status 70 (EX_SOFTWARE). With worker processes
 * the parent sees the worker go and replaces it (guard.c names the page).
 */
static bool serving_alone;

static void on_unasked_exit(int status, void *arg)
{
    if (!serving_alone)
        return;
    hp_log_error("exit(%d) while serving, with no stop signal (a page "
                 "called exit()?): exiting with status 70 so that a "
                 "supervisor restarts the server",
                 status);
    _exit(70);
}

/* --workers 0: hp_serve in this process, as before; it binds the socket
 * unless privileges are to be dropped after binding. */
/* Settings that are valid but do nothing with the others given: said once
 * at start-up, so a limit is not trusted that nothing applies. Not
 * handler-timeout: a single process honours it too (the waits of database
 * queries, a reactor held past it: docs/design.md). */
static void warn_no_effect(const struct hp_config *cfg)
{
    if (cfg->workers == 0 && cfg->worker_memory_limit > 0)
        hp_log_info("warning: worker-memory-limit has no effect with "
                    "workers = 0 (no worker process to replace)");
    if (cfg->workers == 0 && cfg->worker_max_requests > 0)
        hp_log_info("warning: worker-max-requests has no effect with "
                    "workers = 0 (no worker process to replace)");
    if (cfg->db && strcmp(cfg->db, "off") == 0 && cfg->db_pool_size > 0)
        hp_log_info("warning: db-pool-size has no effect with db = off");
}

static int serve_alone(struct hp_config *cfg)
{
    if (open_error_log() < 0)
        return 1;
    warn_no_effect(cfg);
    bool drop = cfg->user || cfg->group;
    if (drop) {
        LISTEN_FD = hp_listen_bind(cfg->listen);
        if (LISTEN_FD < 0)
            return 1;
        if (cfg->tls_redirect &&
            (REDIRECT_FD = hp_listen_bind(cfg->tls_redirect)) < 0)
            return 1;
    }
    if (write_pid_file() < 0 ||
        (drop && drop_privileges(cfg->user, cfg->group) < 0))
        return 1;
    hp_upload_sweep_dead(hp_upload_dir(cfg)); /* as the user that made them */
    struct hp_server_hooks hooks = {.listen_fd = LISTEN_FD,
                                    .redirect_fd = REDIRECT_FD,
                                    .ready = notify_ready,
                                    .reopen_logs = reopen_logs};
    /* Before the guard's exit hook, so that it runs after it (exit runs
     * them last registered first): a page's exit gets its crash page
     * before the _exit(70). */
    on_exit(on_unasked_exit, NULL);
    if (cfg->dev) /* the crash page (docs/pages.md) */
        hp_guard_enter_alone(cfg, &hooks);
    children_die_with_us();
    serving_alone = true;
    int rc = hp_serve(cfg, &hooks);
    serving_alone = false;
    remove_pid_file();
    return rc;
}

int hp_master_run(struct hp_config *cfg, int (*reload)(struct hp_config *))
{
    CFG = cfg;
    RELOAD = reload;
    /* Said once here rather than by every worker, each dying. */
    if (hp_serve_preflight(cfg) < 0)
        return 1;
    if (cfg->workers == 0)
        return serve_alone(cfg);
    /* Several processes write to one standard error: with a buffer, each
     * message is one write(2) (hp_vlog flushes after each), so lines from
     * different workers do not interleave. */
    setvbuf(stderr, NULL, _IOFBF, 64 * 1024);
    if (open_error_log() < 0)
        return 1;
    warn_no_effect(cfg);
    LISTEN_FD = hp_listen_bind(cfg->listen);
    if (LISTEN_FD < 0)
        return 1;
    if (cfg->tls_redirect &&
        (REDIRECT_FD = hp_listen_bind(cfg->tls_redirect)) < 0)
        return 1;
    if (write_pid_file() < 0)
        return 1;
    if ((cfg->user || cfg->group) &&
        drop_privileges(cfg->user, cfg->group) < 0) {
        remove_pid_file();
        return 1;
    }
    /* A previous server killed with its workers left their files; as the
     * user that made them (a sticky /tmp lets only the owner unlink). */
    hp_upload_sweep_dead(hp_upload_dir(cfg));
    return master_serve();
}
