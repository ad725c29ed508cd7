/*
 * guard.c - the worker-side guard: what keeps one bad page version from
 * taking the service down when it runs in worker processes. docs/
 * operations.md is the manual.
 *
 * Owns: the shared-memory area (one MAP_SHARED|MAP_ANONYMOUS mapping made
 * by the parent before the first fork, so every worker and the parent see
 * the same bytes) and everything in it: a slot per worker process with
 * per-thread records of the running handler, the quarantine table, the
 * table of module versions known to be good, the table of objects whose
 * init hook crashed a worker (their init is refused, guard_init_vet), the
 * loading table (an object's first load on the node runs in one worker,
 * the others wait for its outcome: load_gate); the
 * fatal-signal and exit hooks of a worker (crash records, the answers to
 * a page that crashed or called exit, or to a module init that crashed);
 * the handler-timeout watchdog thread of each worker; the fallback versions a
 * worker loads to serve a quarantined or broken module; the "processes" member
 * of status.json; the file in the cache directory that keeps the
 * quarantine and good tables across restarts (read and written by the
 * parent: hp_guard_tables_load, hp_guard_tables_save). May not touch:
 * processes (forking, signalling, reaping are master.c's), the module
 * cache's entries, compiling, and HTTP with one exception: when a
 * handler overruns --handler-timeout, the watchdog writes a fixed 504
 * response straight onto that request's socket (answer_504),
 * bypassing server.c, because the thread that owns the request is stuck and
 * cannot answer (hp_server_answered logs and counts it); it then shuts the
 * socket down (after hp_server_claim, so that a dying worker's 503 and this
 * 504 never both go out); likewise the
 * fatal-signal handler's fixed 503 to the request whose pin ran an init
 * that crashed (answer_init_503). The fatal-signal
 * and exit hooks have server.c answer the requests the dying worker read
 * and had not begun to answer (hp_server_answer_unstarted). server.c
 * reaches the guard only through the hooks (server.h) that hp_guard_enter
 * fills; heartbeat and lost write the slot's liveness fields. The single
 * process of --workers 0 in dev mode gets a one-slot area of its own and
 * only the records, the fatal-signal and exit hooks and a vet that
 * quarantines nothing (hp_guard_enter_alone), for the crash page.
 *
 * Writers of the shared area:
 *   - records: the thread that runs a handler writes its own record with
 *     plain stores, then publishes it with one atomic word (sequence number
 *     and state), which the watchdog claims with a compare-and-swap;
 *   - the quarantine table: written by the parent (strikes) and by workers
 *     (lifting), under the table lock; what a request matches against
 *     (state, path hash, key fingerprint, source ctime) is atomic, so the
 *     per-request check takes no lock;
 *   - the good table: written by workers under the table lock, checked
 *     the same way;
 *   - both tables: filled by the parent from the cache directory before
 *     the first fork; the parent copies them out under the lock to write
 *     that file (hp_guard_tables_save); tables_gen says they changed;
 *   - slots: their state and pid by the parent (and READY by the worker),
 *     their counters by the worker.
 * The table lock is a word holding the holder's pid; a waiter that finds
 * the holder dead (a worker can die at any instruction) takes it over.
 */
#include "guard.h"
#include "crashpage.h"
#include "pool.h"

#include <assert.h>
#include <dlfcn.h>
#include <errno.h>
#include <execinfo.h>
#include <fcntl.h>
#include <link.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define REC_PATH 256 /* the tail of a longer path is kept */
#define REC_HANDLER 64
#define KEY_LEN 33     /* compile-cache object key, 32 hex + NUL */
#define QUAR_MAX 64    /* module versions with crashes on record */
#define GOOD_MAX 512   /* modules whose last good versions are known */
#define QUAR_STRIKES 2 /* crashes that quarantine a version */
#define FALLBACK_ID_BASE (UINT64_C(1) << 32) /* ids of fallback versions */
#define INITBAD_MAX 32        /* objects whose init crashed a worker */
#define LOADING_MAX 128       /* objects being (or known to be) loaded */
#define COMPILES_MAX 64       /* a worker's compiles the parent can kill */
#define LOAD_POLL_NS 10000000 /* a waiter for another's first load */
#define QUIESCE_NS 2000000000 /* at most, for the loader's neighbours */
/* Loaders of one object that may die with no crash record of its own (a
 * SIGKILL: the page's, the OOM killer's or an operator's) before the
 * object is refused: the first such death is taken over by a waiter. */
#define LOAD_DEATHS_MAX 2
/* Handlers per good version known to have completed a run; past that
 * many, every handler of the version counts as one (ANY_HANDLER). */
#define GOOD_HANDLERS 16
#define ANY_HANDLER UINT64_MAX

/* ---- shared memory layout ---------------------------------------------- */

/* clang-format off */
/*
 * A record's state, the low two bits of its word (the rest is a sequence
 * number, so that the watchdog's compare-and-swap cannot claim a later run
 * of the same record):
 *
 *   IDLE --run_begin--> RUNNING --run_end (CAS)--> IDLE
 *                          |
 *                          | watchdog (CAS)
 *                          v
 *                       WRITING --504 sent, socket shut--> TIMEDOUT
 *                          |                                  |
 *                          | run_end waits                    | run_end
 *                          +------------------------------> IDLE
 *
 * Only the record's own thread moves it out of IDLE or back to IDLE; only
 * the watchdog moves it to WRITING and TIMEDOUT.
 */
/* clang-format on */
enum { R_IDLE = 0, R_RUNNING = 1, R_WRITING = 2, R_TIMEDOUT = 3 };

/* Why a worker was replaced: status.json's restart_causes, in this order. */
enum cause {
    CAUSE_NONE = 0,
    CAUSE_TIMEOUT,     /* a handler ran past --handler-timeout (retired) */
    CAUSE_RECYCLE,     /* --worker-max-requests, --worker-memory-limit */
    CAUSE_CRASH,       /* died of a signal */
    CAUSE_EXIT,        /* exited with no stop asked for */
    CAUSE_DESCRIPTORS, /* found its own descriptors closed (status 70) */
    CAUSE_HEARTBEAT,   /* stopped beating: killed by the parent */
    CAUSE_FD_LEAK,     /* its descriptors ran out (retired, server.c) */
    CAUSE_N
};
static const char *const cause_name[CAUSE_N] = {
    "none", "handler_timeout", "recycle",   "crash",
    "exit", "descriptors",     "heartbeat", "descriptor_leak"};

/* What one handler-running thread of a worker is doing. */
struct rec {
    atomic_ulong word;     /* seq << 2 | state */
    atomic_llong started;  /* CLOCK_MONOTONIC ns, the same in every */
                           /* process; read by the watchdog */
    atomic_bool streaming; /* its response is under way (it flushed) */
    /* Written before word says RUNNING; read by others only once they
     * own the record (the watchdog after its CAS, the parent after the
     * worker died). */
    int fd; /* the connection's socket */
    pid_t tid;
    uint64_t version;  /* id in the worker's module cache */
    uint64_t phash;    /* hash of the full page path */
    uint64_t keyfp;    /* the key's first 64 bits */
    int64_t src_ctime; /* the source's ctime when it was compiled */
    char key[KEY_LEN];
    char handler[REC_HANDLER];
    char path[REC_PATH];
};

struct slot {
    atomic_int state; /* enum hp_slot_state (guard.h) */
    pid_t pid;
    unsigned gen;
    double started;       /* wall clock */
    atomic_int crash_rec; /* the dying thread's record, or -1 */
    atomic_int crash_sig;
    atomic_long overflow;     /* its stack's bytes if it overflowed, or 0 */
    atomic_int overflow_kind; /* enum hp_stack_kind: whose stack it was */
    atomic_int retire;        /* replace this worker: enum cause (timeout, */
                              /* recycling), 0 for no */
    atomic_llong beat_ns;     /* the last heartbeat, CLOCK_MONOTONIC ns */
    atomic_int cause;         /* why it ended, if it said (or was killed) */
    char why[160];            /* ... in words, written before cause */
    atomic_int nrecs;         /* records handed out to threads */
    atomic_ulong handled;     /* handler runs */
    /* A module lifecycle hook (init, fini) that crashed the worker:
     * written by the dying thread, hook_sig last (on_fatal). */
    char hook_path[REC_PATH]; /* the module, relative to the docroot */
    char hook_name[16];       /* "init", "fini", "constructor", ... */
    char hook_key[KEY_LEN];   /* its object's key, "" if none */
    char hook_where[512];     /* addr2line's lines, "" if none */
    int hook_status;          /* the status the hook passed to exit */
    atomic_int hook_sig;      /* its signal; HOOK_EXIT, HOOK_QUICK_EXIT */
    struct hp_thread_counts threads; /* the worker's pool.c keeps it */
    /* The process groups of the worker's running compiles (compile.c's
     * list, hp_compile_share_running; 0 for a free place): the parent
     * kills them when it reaps the worker (hp_guard_slot_free). */
    atomic_int compiles[COMPILES_MAX];
    /* struct rec recs[shm->nrecs] follows */
};

/* hook_sig of a hook that called exit, _exit or _Exit (hook_status), or
 * quick_exit, or that ran past --handler-timeout (hook_status: the limit
 * in seconds). */
enum {
    HOOK_EXIT = -1,
    HOOK_QUICK_EXIT = -2,
    HOOK_TIMEOUT = -3,
    HOOK__EXIT = -4,
    HOOK__EXIT_C99 = -5, /* _Exit */
};

/* The function a hook_sig of an exit names. */
static const char *hook_exit_fn(int sig)
{
    return sig == HOOK__EXIT       ? "_exit"
           : sig == HOOK__EXIT_C99 ? "_Exit"
                                   : "exit";
}

enum { Q_FREE = 0, Q_COUNTING, Q_QUARANTINED };

/* Workers match requests against the atomics without the table lock; the
 * rest is read and written under it. */
struct quar {
    atomic_int state;
    atomic_ullong phash;
    atomic_ullong keyfp;
    atomic_llong src_ctime;
    char key[KEY_LEN];
    char path[REC_PATH];
    char handler[REC_HANDLER];
    int crashes;
    int sig;      /* the last crash: signal, or 0 for an exit */
    int status;   /* ... or the exit status */
    double since; /* wall clock of the last strike */
};

struct good {
    atomic_ullong phash;
    atomic_ullong fp0; /* keyfp of keys[0], for the unlocked check */
    char path[REC_PATH];
    char keys[2][KEY_LEN]; /* the last two versions that completed a run */
    /* Hashes (path_hash) of the handlers of keys[i] that completed a run,
     * 0 for none, ANY_HANDLER once more than GOOD_HANDLERS did: a crash
     * of a handler that has completed is the request's, not the
     * version's (strike). */
    atomic_ullong hands[2][GOOD_HANDLERS];
};

/* An object whose init hook killed a worker: its init is not run again
 * (the load fails with why), until the file changes and so the key. */
struct initbad {
    char key[KEY_LEN];
    char why[REC_PATH + 768]; /* hook_path, hook_where and words */
};

/*
 * The first load on this node of an object (its key): one worker loads it
 * (its constructors and init may kill it), the others wait for the outcome
 * (guard_init_vet, load_gate), so a bad version kills one worker, not one
 * per request. LOADING by pid since (CLOCK_MONOTONIC ns) -> LOADED (that
 * object's later loads run at once, in any worker) or FAILED (the loader's
 * fatal-signal or exit hook, async-signal-safe: its waiters answer 503).
 * A loader that died with the entry still LOADING left no record that
 * its load killed it (SIGKILL, or a crash on another thread): a waiter
 * takes the load over (pid, since), up to LOAD_DEATHS_MAX deaths, then
 * the object is refused (loader_died). Claimed and looked up under the
 * table lock; a ring of LOADING_MAX whose LOADING entries are never
 * reused.
 */
enum { L_FREE = 0, L_LOADING, L_LOADED, L_FAILED };
struct loading {
    atomic_int state;
    atomic_int pid;
    atomic_llong since;
    int deaths;       /* its loaders that died with no record, locked */
    atomic_bool told; /* a waiter's own refusal of it has been logged */
    char key[KEY_LEN];
};

struct shm {
    atomic_int lock; /* pid of the holder of the quarantine/good tables */
    pid_t master;
    atomic_uint gen;      /* the current worker generation (SIGHUP bumps it) */
    atomic_int nquar;     /* entries in state Q_QUARANTINED */
    atomic_uint quar_gen; /* bumped on every quarantine or lift */
    /* Bumped under the table lock on every change of the quarantine or
     * good table: the parent writes them to the cache directory when it
     * moved (hp_guard_tables_save). */
    atomic_uint tables_gen;
    atomic_ulong crashes, timeouts, restarts, lifted;
    atomic_ulong causes[CAUSE_N]; /* workers replaced, by cause */
    int nslots, nrecs, workers;
    size_t stride;
    struct quar quar[QUAR_MAX];
    struct good good[GOOD_MAX];
    struct initbad initbad[INITBAD_MAX]; /* a ring, under the table lock */
    unsigned ninitbad;
    struct loading loading[LOADING_MAX];
    unsigned nloading;
    /* slots follow, stride bytes apart */
};

/* ---- process-wide state ------------------------------------------------- */

static struct shm *SHM;
static struct slot *ME;          /* this worker's slot; NULL elsewhere */
static struct hp_config *CFG;    /* this worker's settings */
static __thread int tl_rec = -1; /* this thread's record: -1 not yet, */
                                 /* -2 none left */
/* Dev mode (server.c tells every vet): a crash answers its request with
 * the crash page (crashpage.c), for which the running version and where
 * it was loaded are kept per thread. */
static atomic_bool DEV;
/* This thread's request may see the crash page (its Host is this
 * server's: server.c's vet argument details; not a DNS-rebinding page). */
static __thread bool tl_details;
/* hp_guard_enter_alone: the single process of --workers 0 in dev mode. */
static bool ALONE;
static __thread const hp_version *tl_version;
static __thread const hp_version *tl_keyed; /* whose key tl_rec's record has */
static __thread uintptr_t tl_base;
/* The address range of tl_version's object (its PT_LOAD segments), for
 * telling a fault in the page from one in a function it called. */
static __thread const hp_version *tl_ranged;
static __thread uintptr_t tl_lo, tl_hi;
/* This thread's alternate signal stack (altstack_ensure), or NULL. */
static __thread void *tl_altstack;
/* This thread's stack (stack_bounds): its lowest usable address, the size
 * of the guard area below it and its own size; 0 when not known. */
static __thread uintptr_t tl_stack_lo;
static __thread size_t tl_stack_guard, tl_stack_size;
/* The fatal signal on this thread was its stack overflowing: the stack's
 * size (on_fatal sets it for the answers), else 0. */
static __thread size_t tl_overflowed;
/* The thread's own stack while tl_stack_* name a coroutine's
 * (guard_run_stack); tl_on_coro: they do. */
static __thread uintptr_t tl_own_lo;
static __thread size_t tl_own_guard, tl_own_size;
static __thread bool tl_on_coro;
static __thread enum hp_stack_kind tl_stack_kind;
/* The key of the prebuilt .so this thread is loading (prebuilt_key) and
 * its page (the loader's pointer, compared, never read): its constructor
 * and init hooks are recorded under it (hook_key_of). */
static __thread char tl_load_key[KEY_LEN];
static __thread const char *tl_load_page;
/* This thread's claim on a first load (an index in SHM->loading), or -1:
 * the fatal-signal and exit hooks mark it failed. */
static __thread int tl_loading = -1;

/* Where this thread's stack lies, for telling a stack overflow from any
 * other fault (pthread_getattr_np: not in a signal handler). */
static void stack_bounds(void)
{
    pthread_attr_t a;
    void *addr;
    size_t size, guard;
    if (pthread_getattr_np(pthread_self(), &a) != 0)
        return;
    if (pthread_attr_getstack(&a, &addr, &size) == 0 &&
        pthread_attr_getguardsize(&a, &guard) == 0) {
        tl_stack_lo = (uintptr_t)addr;
        tl_stack_size = size;
        tl_stack_guard = guard;
    }
    pthread_attr_destroy(&a);
}

/*
 * A page that recurses without end overflows its thread's stack, and the
 * fatal-signal handler cannot run on a stack that is full: the process
 * died with nothing said and no crash page. So each thread that runs a
 * handler gets an alternate signal stack (SA_ONSTACK) on its first run,
 * freed when the thread ends.
 */
#define ALTSTACK_SIZE (64 * 1024)
static pthread_key_t altstack_key;
static pthread_once_t altstack_once = PTHREAD_ONCE_INIT;

static void altstack_free(void *p)
{
    stack_t ss = {.ss_flags = SS_DISABLE};
    sigaltstack(&ss, NULL);
    munmap(p, ALTSTACK_SIZE);
}

static void altstack_key_make(void)
{
    if (pthread_key_create(&altstack_key, altstack_free) != 0)
        altstack_key = 0;
}

static void altstack_ensure(void)
{
    if (tl_altstack)
        return;
    if (!tl_stack_lo)
        stack_bounds();
    pthread_once(&altstack_once, altstack_key_make);
    void *p = mmap(NULL, ALTSTACK_SIZE, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (p == MAP_FAILED)
        return;
    stack_t ss = {.ss_sp = p, .ss_size = ALTSTACK_SIZE};
    if (sigaltstack(&ss, NULL) != 0) {
        munmap(p, ALTSTACK_SIZE);
        return;
    }
    tl_altstack = p;
    pthread_setspecific(altstack_key, p);
}

static struct slot *slot_at(int i)
{
    return (struct slot *)((char *)SHM + sizeof *SHM + (size_t)i * SHM->stride);
}

static struct rec *rec_at(struct slot *s, int i)
{
    return (struct rec *)((char *)s + sizeof *s) + i;
}

static uint64_t path_hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    while (*s)
        h = (h ^ (unsigned char)*s++) * 1099511628211ULL;
    return h ? h : 1;
}

/* The tail of a path that may be too long for the record. */
static void copy_tail(char *dst, size_t cap, const char *src)
{
    size_t n = strlen(src);
    if (n >= cap) {
        src += n - (cap - 4);
        memcpy(dst, "...", 3);
        memcpy(dst + 3, src, cap - 4);
        dst[cap - 1] = '\0';
        return;
    }
    memcpy(dst, src, n + 1);
}

static void copy_str(char *dst, size_t cap, const char *src)
{
    size_t n = strnlen(src ? src : "", cap - 1);
    memcpy(dst, src ? src : "", n);
    dst[n] = '\0';
}

/* Whether the module at path is an application module (_app.c, _app.so),
 * not a page. Async-signal-safe. */
static bool is_app(const char *path)
{
    const char *base = strrchr(path, '/');
    return strncmp(base ? base + 1 : path, "_app.", 5) == 0;
}

static bool is_hex32(const char *s, size_t n)
{
    if (n != 32)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

/*
 * What identifies a module version in every process: the compile cache's
 * object key, which the private copy's name carries (loader.c names it
 * v<id>-<key>.so). A prebuilt .so page has no key: its path and file
 * identity stand in (and it has no fallback in the compile cache).
 * so_key: the key in a private copy's name, or false (and "").
 */
static bool so_key(const char *so_path, char out[KEY_LEN])
{
    const char *base = strrchr(so_path, '/');
    base = base ? base + 1 : so_path;
    const char *dash = strchr(base, '-');
    const char *rest = dash ? dash + 1 : base;
    size_t n = strlen(rest);
    if (n > 3 && strcmp(rest + n - 3, ".so") == 0)
        n -= 3;
    out[0] = '\0';
    if (!is_hex32(rest, n))
        return false;
    memcpy(out, rest, 32);
    out[32] = '\0';
    return true;
}

static void version_key(const hp_version *v, char out[KEY_LEN])
{
    if (so_key(v->so_path, out))
        return;
    struct hp_hash h;
    hp_hash_init(&h);
    hp_hash_update(&h, v->path, strlen(v->path) + 1);
    hp_hash_update(&h, &v->src_fid, sizeof v->src_fid);
    hp_hash_hex(&h, out);
}

/* The first 64 bits of a key (32 hex digits). */
static uint64_t key_fp(const char *key)
{
    char head[17];
    memcpy(head, key, 16);
    head[16] = '\0';
    return strtoull(head, NULL, 16);
}

/* The coarse clock (a tick, 1 to 10 ms; the same in every process): what
 * it times (--handler-timeout, heartbeats) is tenths of seconds and more,
 * and every run reads it. */
static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static const char *signame(int sig)
{
    switch (sig) {
    case SIGSEGV:
        return "SIGSEGV";
    case SIGBUS:
        return "SIGBUS";
    case SIGABRT:
        return "SIGABRT";
    case SIGFPE:
        return "SIGFPE";
    case SIGILL:
        return "SIGILL";
    case SIGKILL:
        return "SIGKILL";
    case SIGTERM:
        return "SIGTERM";
    case SIGSYS:
        return "SIGSYS";
    case SIGTRAP:
        return "SIGTRAP";
    default:
        return "signal";
    }
}

/* ---- the table lock ------------------------------------------------------ */

static void table_lock(void)
{
    pid_t me = getpid();
    for (unsigned spins = 0;; spins++) {
        int held = 0;
        if (atomic_compare_exchange_weak(&SHM->lock, &held, me))
            return;
        /* The holder may have died holding it: take it over. */
        if (held && held != me && spins > 64 && kill(held, 0) < 0 &&
            errno == ESRCH &&
            atomic_compare_exchange_strong(&SHM->lock, &held, me))
            return;
        if (spins < 64)
            sched_yield();
        else
            nanosleep(&(struct timespec){0, 50000}, NULL);
    }
}

/* The parent's table_lock for what can wait (hp_guard_tables_save): it
 * must not spin on a holder that died unreaped (its zombie answers kill),
 * since the parent is the one to reap it. false if not taken soon. */
static bool table_trylock(void)
{
    pid_t me = getpid();
    for (unsigned spins = 0; spins < 200; spins++) {
        int held = 0;
        if (atomic_compare_exchange_weak(&SHM->lock, &held, me))
            return true;
        if (held && held != me && spins > 64 && kill(held, 0) < 0 &&
            errno == ESRCH &&
            atomic_compare_exchange_strong(&SHM->lock, &held, me))
            return true;
        if (spins < 64)
            sched_yield();
        else
            nanosleep(&(struct timespec){0, 50000}, NULL);
    }
    return false;
}

static void table_unlock(void)
{
    assert(atomic_load(&SHM->lock) == getpid());
    atomic_store(&SHM->lock, 0);
}

/* ---- the good table (workers write it, under the table lock) ------------ */

static struct good *good_find(uint64_t phash, bool insert)
{
    size_t home = (size_t)(phash % GOOD_MAX);
    struct good *empty = NULL;
    for (size_t i = 0; i < 16; i++) {
        struct good *g = &SHM->good[(home + i) % GOOD_MAX];
        uint64_t h = atomic_load_explicit(&g->phash, memory_order_acquire);
        if (h == phash)
            return g;
        if (!h && !empty)
            empty = g;
    }
    if (!insert)
        return NULL;
    struct good *g = empty ? empty : &SHM->good[home]; /* full: evict */
    atomic_store(&g->phash, 0);
    atomic_store(&g->fp0, 0);
    memset(g->path, 0, sizeof g->path);
    memset(g->keys, 0, sizeof g->keys);
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < GOOD_HANDLERS; i++)
            atomic_store(&g->hands[k][i], 0);
    atomic_store_explicit(&g->phash, phash, memory_order_release);
    return g;
}

/* Is handler hash hh among hands (or do they stand for any)? Returns
 * its index, GOOD_HANDLERS for "any", -1 for no. */
static int hand_find(atomic_ullong *hands, uint64_t hh)
{
    for (int i = 0; i < GOOD_HANDLERS; i++) {
        uint64_t h = atomic_load_explicit(&hands[i], memory_order_relaxed);
        if (h == hh)
            return i;
        if (h == ANY_HANDLER)
            return GOOD_HANDLERS;
        if (!h)
            return -1;
    }
    return -1;
}

/* hands[] of keys[0] and keys[1] trade places (a run of keys[1]). */
static void hands_swap(struct good *g)
{
    for (int i = 0; i < GOOD_HANDLERS; i++) {
        uint64_t a = atomic_load(&g->hands[0][i]);
        atomic_store(&g->hands[0][i], atomic_load(&g->hands[1][i]));
        atomic_store(&g->hands[1][i], a);
    }
}

/* Under the table lock: note that handler hh of keys[0] completed. */
static void hand_add(struct good *g, uint64_t hh)
{
    if (hand_find(g->hands[0], hh) >= 0)
        return;
    int i = 0;
    while (i < GOOD_HANDLERS && atomic_load(&g->hands[0][i]))
        i++;
    /* The last place says "any" rather than take a lock on every run of
     * a page with very many handlers. */
    atomic_store(&g->hands[0][i], i < GOOD_HANDLERS - 1 ? hh : ANY_HANDLER);
}

/* A version completed a run of a handler: it is the module's newest good
 * version, and that handler has proven it works for some input. */
static void mark_good(const struct rec *r)
{
    /* The steady state: a few atomic loads, no lock. */
    uint64_t hh = path_hash(r->handler);
    if (hh == ANY_HANDLER)
        hh = 1;
    struct good *g = good_find(r->phash, false);
    if (g && atomic_load_explicit(&g->fp0, memory_order_relaxed) == r->keyfp &&
        hand_find(g->hands[0], hh) >= 0)
        return;
    table_lock();
    g = good_find(r->phash, true);
    if (strcmp(g->keys[0], r->key) != 0) {
        bool older = strcmp(g->keys[1], r->key) == 0;
        if (!older)
            for (int i = 0; i < GOOD_HANDLERS; i++)
                atomic_store(&g->hands[1][i], 0);
        hands_swap(g); /* (a new key starts with none) */
        memcpy(g->keys[1], g->keys[0], KEY_LEN);
        memcpy(g->keys[0], r->key, KEY_LEN);
        copy_str(g->path, sizeof g->path, r->path);
    }
    hand_add(g, hh);
    atomic_store_explicit(&g->fp0, r->keyfp, memory_order_relaxed);
    atomic_fetch_add(&SHM->tables_gen, 1);
    table_unlock();
}

/* ---- the quarantine table ------------------------------------------------ */

/* Is (phash, key) quarantined? Atomics only (a 64-bit fingerprint of the
 * key stands for it). */
static bool quarantined(uint64_t phash, const char *key)
{
    if (atomic_load(&SHM->nquar) == 0)
        return false;
    uint64_t fp = key_fp(key);
    for (int i = 0; i < QUAR_MAX; i++) {
        struct quar *q = &SHM->quar[i];
        if (atomic_load_explicit(&q->state, memory_order_acquire) ==
                Q_QUARANTINED &&
            atomic_load(&q->phash) == phash && atomic_load(&q->keyfp) == fp)
            return true;
    }
    return false;
}

/* A copy of entry i's details, under the table lock. */
static void quar_copy(int i, struct quar *out)
{
    struct quar *q = &SHM->quar[i];
    atomic_init(&out->state, atomic_load(&q->state));
    atomic_init(&out->phash, atomic_load(&q->phash));
    atomic_init(&out->keyfp, atomic_load(&q->keyfp));
    atomic_init(&out->src_ctime, atomic_load(&q->src_ctime));
    memcpy(out->key, q->key, KEY_LEN);
    memcpy(out->path, q->path, REC_PATH);
    memcpy(out->handler, q->handler, REC_HANDLER);
    out->crashes = q->crashes;
    out->sig = q->sig;
    out->status = q->status;
    out->since = q->since;
}

/* The newest good version of a module other than `not`, or NULL. */
static bool fallback_key(uint64_t phash, const char * not, char out[KEY_LEN])
{
    bool found = false;
    table_lock();
    struct good *g = good_find(phash, false);
    for (int i = 0; g && i < 2 && !found; i++) {
        if (g->keys[i][0] && strcmp(g->keys[i], not ) != 0) {
            memcpy(out, g->keys[i], KEY_LEN);
            found = true;
        }
    }
    table_unlock();
    return found && !quarantined(phash, out);
}

/* Has the handler of version (phash, key) completed a run (the version
 * being one of the module's two newest good ones)? Under the table lock. */
static bool proven(uint64_t phash, const char *key, const char *handler)
{
    uint64_t hh = path_hash(handler);
    struct good *g = good_find(phash, false);
    for (int k = 0; g && k < 2; k++)
        if (g->keys[k][0] && strcmp(g->keys[k], key) == 0)
            return hand_find(g->hands[k], hh == ANY_HANDLER ? 1 : hh) >= 0;
    return false;
}

/*
 * The parent: a crash was pinned on this record. A handler of a version
 * that has completed a run has proven that it works for some input: its crash
 * depends on the request (a missing field, a crafted value), so it is
 * counted but never quarantined, or any client could take the page down
 * for everyone with two requests; the crashing request got its 502 and
 * the worker is replaced, as PHP-FPM replaces a child. Only a version
 * that crashed twice without ever completing a run (broken at load or
 * on its first requests), or whose crashing handler never completed, is
 * quarantined.
 */
static void strike(const struct rec *r, int sig, int status)
{
    table_lock();
    struct quar *q = NULL, *victim = NULL;
    for (int i = 0; i < QUAR_MAX; i++) {
        struct quar *e = &SHM->quar[i];
        int st = atomic_load(&e->state);
        int vst = victim ? atomic_load(&victim->state) : -1;
        if (st != Q_FREE && atomic_load(&e->phash) == r->phash &&
            strcmp(e->key, r->key) == 0) {
            q = e;
            break;
        }
        if (st == Q_FREE && vst != Q_FREE)
            victim = e;
        else if (st == Q_COUNTING &&
                 (vst == -1 || (vst == Q_COUNTING && e->since < victim->since)))
            victim = e;
    }
    if (!q && !victim) {
        table_unlock();
        hp_log_error("quarantine table full (%d versions quarantined); "
                     "%s is not counted",
                     QUAR_MAX, r->path);
        return;
    }
    if (!q) {
        q = victim;
        atomic_store(&q->state, Q_FREE); /* (if it was counting) */
        atomic_store(&q->phash, r->phash);
        atomic_store(&q->keyfp, r->keyfp);
        atomic_store(&q->src_ctime, r->src_ctime);
        memcpy(q->key, r->key, KEY_LEN);
        memcpy(q->path, r->path, REC_PATH);
        q->crashes = 0;
        atomic_store(&q->state, Q_COUNTING);
    }
    q->crashes++;
    q->sig = sig;
    q->status = status;
    q->since = (double)time(NULL);
    memcpy(q->handler, r->handler, REC_HANDLER);
    bool good = proven(r->phash, r->key, r->handler);
    bool now_quarantined = !good && atomic_load(&q->state) != Q_QUARANTINED &&
                           q->crashes >= QUAR_STRIKES;
    if (now_quarantined)
        atomic_store_explicit(&q->state, Q_QUARANTINED, memory_order_release);
    if (now_quarantined) {
        atomic_fetch_add(&SHM->nquar, 1);
        atomic_fetch_add(&SHM->quar_gen, 1);
    }
    int crashes = q->crashes;
    atomic_fetch_add(&SHM->tables_gen, 1);
    table_unlock();

    if (good && crashes == QUAR_STRIKES)
        hp_log_error("%s: version with object %s crashed a worker %d times, "
                     "but it has completed runs before: the crashes depend "
                     "on the request, so only the crashing requests fail "
                     "(502) and the version is not quarantined",
                     r->path, r->key, crashes);
    if (now_quarantined) {
        char fb[KEY_LEN];
        if (fallback_key(r->phash, r->key, fb))
            hp_log_error("%s: version with object %s crashed a worker %d "
                         "times: QUARANTINED; its requests are served by "
                         "the last good version (object %s) until the file "
                         "changes",
                         r->path, r->key, crashes, fb);
        else
            hp_log_error("%s: version with object %s crashed a worker %d "
                         "times: QUARANTINED; no earlier good version is "
                         "known, so its requests get a 500 until the file "
                         "changes",
                         r->path, r->key, crashes);
    }
}

/* A worker: the file changed, the version now pinned is newer than a
 * quarantined one of the same module: lift it. */
static void lift(uint64_t phash, int64_t newer_ctime, const char *key)
{
    table_lock();
    for (int i = 0; i < QUAR_MAX; i++) {
        struct quar *q = &SHM->quar[i];
        int st = atomic_load(&q->state);
        if (st == Q_FREE || atomic_load(&q->phash) != phash ||
            strcmp(q->key, key) == 0 ||
            atomic_load(&q->src_ctime) >= newer_ctime)
            continue;
        bool was = st == Q_QUARANTINED;
        char path[REC_PATH], old[KEY_LEN];
        memcpy(path, q->path, REC_PATH);
        memcpy(old, q->key, KEY_LEN);
        atomic_store(&q->state, Q_FREE);
        atomic_store(&q->phash, 0);
        atomic_fetch_add(&SHM->tables_gen, 1);
        if (was) {
            atomic_fetch_sub(&SHM->nquar, 1);
            atomic_fetch_add(&SHM->quar_gen, 1);
            atomic_fetch_add(&SHM->lifted, 1);
            hp_log_info("%s: the file changed (object %s): the quarantine "
                        "of object %s is lifted",
                        path, key, old);
        }
    }
    table_unlock();
}

/* ---- fallback versions (per worker) -------------------------------------- */

/*
 * A fallback is an older version of a module loaded from the compile cache
 * by key, outside the module cache: for a quarantined version (released
 * when the quarantine lifts), or, in production mode, for a module this
 * worker never had a good build of because the file is broken now (a
 * "rescue", kept until the worker exits: it has no module-cache entry to
 * retire it through).
 */
struct fallback {
    uint64_t phash;
    char key[KEY_LEN];
    hp_version *v;  /* one reference held by this table */
    char *own_path; /* v->path, when no entry owns the string */
    bool rescue;
};

static pthread_mutex_t fb_mu = PTHREAD_MUTEX_INITIALIZER;
static struct fallback fbs[32];
static atomic_int nfbs;
static atomic_uint fb_seen_gen;
static char *fb_rundir;
static uint64_t fb_next_id = FALLBACK_ID_BASE;

/* Drop fallbacks whose module is no longer quarantined. */
static void fallbacks_sweep(void)
{
    pthread_mutex_lock(&fb_mu);
    unsigned gen = atomic_load(&SHM->quar_gen);
    if (gen != atomic_load(&fb_seen_gen)) {
        atomic_store(&fb_seen_gen, gen);
        int n = atomic_load(&nfbs);
        for (int i = 0; i < n;) {
            bool still = fbs[i].rescue;
            for (int j = 0; j < QUAR_MAX && !still; j++) {
                struct quar *q = &SHM->quar[j];
                still = atomic_load(&q->state) == Q_QUARANTINED &&
                        atomic_load(&q->phash) == fbs[i].phash;
            }
            if (still) {
                i++;
                continue;
            }
            hp_version_release(fbs[i].v); /* unloads with the last pin */
            fbs[i] = fbs[--n];
        }
        atomic_store(&nfbs, n);
    }
    pthread_mutex_unlock(&fb_mu);
}

/*
 * Pin the fallback (phash, key) of the module at `path`, loading it from
 * the compile cache on first use. `cur` is the module's current version
 * (NULL for a rescue). NULL if it cannot be loaded (*diag says why).
 */
static hp_version *fallback_pin(const char *path, const hp_version *cur,
                                uint64_t phash, const char *key, char **diag)
{
    hp_version *v = NULL;
    pthread_mutex_lock(&fb_mu);
    int n = atomic_load(&nfbs);
    for (int i = 0; i < n && !v; i++) {
        if (fbs[i].phash == phash && strcmp(fbs[i].key, key) == 0) {
            v = fbs[i].v;
            fbs[i].rescue |= !cur;
        }
    }
    if (!v && n < (int)(sizeof fbs / sizeof *fbs)) {
        if (!fb_rundir)
            fb_rundir = hp_rundir_create(CFG->cache_dir);
        char *so = hp_xasprintf("%s/obj/%s.so", CFG->cache_dir, key);
        char *own = cur ? NULL : hp_xstrdup(path);
        if (fb_rundir && access(so, R_OK) == 0)
            v = hp_version_open(so, fb_rundir, fb_next_id++,
                                cur ? cur->path : own, NULL, diag);
        else if (!*diag)
            *diag = hp_xasprintf("%s: %s", so, strerror(errno));
        free(so);
        if (v) {
            /* Only the entry's lock is used, by the release that unloads
             * it; a rescue is never released (see guard_teardown). */
            v->entry = cur ? cur->entry : NULL;
            atomic_init(&v->refs, 1);
            fbs[n] = (struct fallback){
                .phash = phash, .v = v, .own_path = own, .rescue = !cur};
            memcpy(fbs[n].key, key, KEY_LEN);
            atomic_store(&nfbs, n + 1);
            hp_log_info("%s: serving an earlier good version (object %s) "
                        "in place of the %s one",
                        path, key, cur ? "quarantined" : "broken");
        } else {
            free(own);
        }
    }
    if (v)
        atomic_fetch_add(&v->refs, 1);
    pthread_mutex_unlock(&fb_mu);
    return v;
}

static void guard_teardown(void)
{
    assert(ME);
    pthread_mutex_lock(&fb_mu);
    int n = atomic_load(&nfbs);
    for (int i = 0; i < n; i++) {
        /* No request is running any more: ours is the only reference. */
        if (atomic_load(&fbs[i].v->refs) == 1)
            hp_version_close(fbs[i].v);
        free(fbs[i].own_path);
    }
    atomic_store(&nfbs, 0);
    pthread_mutex_unlock(&fb_mu);
    free(fb_rundir);
    fb_rundir = NULL;
}
/* A quarantined version with no fallback answers a plain 500: the body
 * says the status only, like every production error (the crash count,
 * the signal, the module and the object are internals; an nginx in front
 * of PHP-FPM says no more). The detail goes to the log, once per worker
 * and quarantine table generation, and to status.json's "quarantine".
 * (Dev mode quarantines nothing, so this is production's alone.) */
static void quarantine_log(const struct quar *q, const char *path,
                           const char *key, const char *diag)
{
    static atomic_uint logged_gen; /* quar_gen + 1 when logged */
    unsigned gen = atomic_load(&SHM->quar_gen) + 1;
    if (atomic_exchange(&logged_gen, gen) == gen)
        return;
    char why[64];
    if (q->sig)
        snprintf(why, sizeof why, "killed by %s", signame(q->sig));
    else
        snprintf(why, sizeof why, "exited with status %d", q->status);
    hp_log_error("%s: handler %s, object %s, crashed a worker %d times (%s) "
                 "and is quarantined: its requests get a 500 (no earlier "
                 "good version to fall back on%s%s)",
                 path, q->handler, key, q->crashes, why, diag ? ": " : "",
                 diag ? diag : "");
}

/* server.h's vet: a quarantined version runs its fallback, or gets a 500. */
static int guard_vet(struct hp_pinset *ps, bool dev, bool details, char **html)
{
    assert(ME); /* the hooks are installed in workers only */
    atomic_store_explicit(&DEV, dev, memory_order_relaxed);
    tl_details = details;
    /* Dev mode quarantines nothing: the developer sees the crash page on
     * every run, and the save that fixes it is served at once. */
    if (dev)
        return 0;
    if (atomic_load_explicit(&nfbs, memory_order_relaxed) &&
        atomic_load(&SHM->quar_gen) != atomic_load(&fb_seen_gen))
        fallbacks_sweep();
    if (atomic_load_explicit(&SHM->nquar, memory_order_acquire) == 0)
        return 0;

    hp_version *v = ps->page;
    uint64_t phash = path_hash(v->path), fp = 0;
    char key[KEY_LEN];
    int hit = -1;
    bool older = false;
    for (int i = 0; i < QUAR_MAX; i++) {
        struct quar *q = &SHM->quar[i];
        if (atomic_load_explicit(&q->state, memory_order_acquire) !=
                Q_QUARANTINED ||
            atomic_load(&q->phash) != phash)
            continue;
        if (!fp) {
            version_key(v, key);
            fp = key_fp(key);
        }
        if (atomic_load(&q->keyfp) == fp)
            hit = i;
        else if (atomic_load(&q->src_ctime) < v->src_fid.ctime_ns)
            older = true;
    }
    if (older && hit < 0)
        lift(phash, v->src_fid.ctime_ns, key);
    if (hit < 0)
        return 0;
    struct quar mine;
    table_lock();
    quar_copy(hit, &mine);
    table_unlock();
    if (atomic_load(&mine.state) != Q_QUARANTINED || strcmp(mine.key, key))
        return 0; /* lifted meanwhile */

    char fb[KEY_LEN], *diag = NULL;
    hp_version *f = NULL;
    if (fallback_key(phash, key, fb))
        f = fallback_pin(v->path, v, phash, fb, &diag);
    if (f) {
        free(diag);
        hp_version_release(ps->page);
        ps->page = f;
        return 0;
    }
    quarantine_log(&mine, v->path, key, diag);
    *html = NULL;
    free(diag);
    return -1;
}

static int guard_rescue(struct hp_pinset *ps, const char *path)
{
    char fb[KEY_LEN], *diag = NULL;
    assert(ME);
    if (ps->page)
        return -1;
    uint64_t phash = path_hash(path);
    hp_version *f = NULL;
    if (fallback_key(phash, "", fb))
        f = fallback_pin(path, NULL, phash, fb, &diag);
    free(diag);
    if (!f)
        return -1;
    ps->page = f;
    return 0;
}

/* Dev mode, once per version a thread runs: where v's object lies (0, 0
 * when not found: then every fault counts as the page's own). */
static void object_range(const hp_version *v, uintptr_t base)
{
    hp_object_span(v->so_path, base, &tl_lo, &tl_hi);
    tl_ranged = v;
}

static int guard_run_begin(const char *path, const char *handler,
                           const hp_version *v, int fd)
{
    assert(ME);
    altstack_ensure();
    if (tl_rec == -1) {
        int i = atomic_fetch_add(&ME->nrecs, 1);
        tl_rec = i < SHM->nrecs ? i : -2;
        if (tl_rec >= 0)
            rec_at(ME, tl_rec)->tid = (pid_t)syscall(SYS_gettid);
    }
    if (tl_rec < 0)
        return -1;
    struct rec *r = rec_at(ME, tl_rec);
    unsigned long w = atomic_load_explicit(&r->word, memory_order_relaxed);
    assert((w & 3) == R_IDLE); /* run_end gave it back */
    unsigned long seq = (w >> 2) + 1;
    copy_tail(r->path, sizeof r->path, path);
    copy_str(r->handler, sizeof r->handler, handler);
    r->phash = path_hash(path);
    /* The key depends on the version alone: the record keeps the last
     * run's, so a thread running the same version again (the steady state)
     * derives it no more (the address, id and source ctime of a version
     * say it is the same one). */
    if (v != tl_keyed || r->version != v->id ||
        r->src_ctime != v->src_fid.ctime_ns) {
        version_key(v, r->key);
        r->keyfp = key_fp(r->key);
        tl_keyed = v;
    }
    r->version = v->id;
    r->src_ctime = v->src_fid.ctime_ns;
    r->fd = fd;
    atomic_store_explicit(&r->streaming, false, memory_order_relaxed);
    if (atomic_load_explicit(&DEV, memory_order_relaxed)) {
        struct link_map *lm = NULL;
        tl_version = v;
        tl_base = v->dl && dlinfo(v->dl, RTLD_DI_LINKMAP, &lm) == 0 && lm
                      ? (uintptr_t)lm->l_addr
                      : 0;
        if (tl_ranged != v)
            object_range(v, tl_base);
    }
    atomic_store_explicit(&r->started, now_ns(), memory_order_relaxed);
    atomic_store_explicit(&r->word, seq << 2 | R_RUNNING, memory_order_release);
    atomic_fetch_add_explicit(&ME->handled, 1, memory_order_relaxed);
    return tl_rec;
}

/* The process's peak resident size (getrusage's ru_maxrss, one cheap
 * system call, after every run) passed --worker-memory-limit. Below it,
 * so is the resident size now; past it, the resident size is read
 * (/proc, dearer) at once the first time and every 16 runs after, in case
 * the peak was a spike since freed. A page leaking 400 MB a run went to
 * 3.5 GB under a 300 MB limit when the size was read every 16 runs only. */
static atomic_bool peak_seen;

static bool peak_over_limit(void)
{
    struct rusage ru;
    return getrusage(RUSAGE_SELF, &ru) != 0 ||
           (size_t)ru.ru_maxrss * 1024 > CFG->worker_memory_limit;
}

/* Resident memory of this process, in bytes (0 if unknown). */
static size_t rss_bytes(void)
{
    long size = 0, pages = 0;
    FILE *f = fopen("/proc/self/statm", "re");
    if (f) {
        if (fscanf(f, "%ld %ld", &size, &pages) != 2)
            pages = 0;
        fclose(f);
    }
    return pages > 0 ? (size_t)pages * (size_t)sysconf(_SC_PAGESIZE) : 0;
}

/*
 * --worker-max-requests, --worker-memory-limit: a worker that has run
 * enough pages, or grown past the limit (a page that leaks or hoards),
 * asks to be replaced through the same flag a handler timeout uses: the
 * parent starts its successor, then drains it, so no request is lost. The
 * resident size is read every 16 runs, not on every request.
 */
static void maybe_recycle(void)
{
    unsigned long n = atomic_load_explicit(&ME->handled, memory_order_relaxed);
    char why[128];
    if (atomic_load_explicit(&ME->retire, memory_order_relaxed))
        return;
    if (CFG->worker_max_requests > 0 &&
        n >= (unsigned long)CFG->worker_max_requests) {
        snprintf(why, sizeof why, "%lu page requests (--worker-max-requests)",
                 n);
    } else if (CFG->worker_memory_limit > 0 && peak_over_limit() &&
               (!atomic_exchange(&peak_seen, true) || n % 16 == 0)) {
        size_t rss = rss_bytes();
        if (rss <= CFG->worker_memory_limit)
            return;
        snprintf(why, sizeof why,
                 "%zu MiB resident, over --worker-memory-limit %zu MiB",
                 rss >> 20, CFG->worker_memory_limit >> 20);
    } else {
        return;
    }
    int none = 0;
    if (atomic_compare_exchange_strong(&ME->retire, &none, CAUSE_RECYCLE))
        hp_log_info("worker %d: %s: it will be replaced gracefully",
                    (int)getpid(), why);
}

/* A streaming handler flushed: its --handler-timeout counts from here
 * (a stream is stuck only when it stops moving). */
static void guard_run_alive(void)
{
    if (ME && tl_rec >= 0) {
        struct rec *r = rec_at(ME, tl_rec);
        atomic_store_explicit(&r->streaming, true, memory_order_relaxed);
        atomic_store_explicit(&r->started, now_ns(), memory_order_relaxed);
    }
}

static bool guard_run_end(int token)
{
    assert(ME);
    if (token < 0)
        return true;
    tl_version = NULL;
    if (!ALONE) /* nobody would replace a single process */
        maybe_recycle();
    struct rec *r = rec_at(ME, token);
    unsigned long w = atomic_load_explicit(&r->word, memory_order_relaxed);
    unsigned long idle = (w & ~3UL) | R_IDLE;
    if ((w & 3) == R_RUNNING &&
        atomic_compare_exchange_strong(&r->word, &w, idle)) {
        mark_good(r);
        return true;
    }
    /* The watchdog answered this request: wait until it is done with
     * the socket, then give the record back. */
    assert((w & 3) == R_WRITING || (w & 3) == R_TIMEDOUT);
    while ((atomic_load(&r->word) & 3) == R_WRITING)
        sched_yield();
    atomic_store(&r->word, idle);
    return false;
}

static long hooks_stuck(void);

static long guard_stuck(void)
{
    assert(ME);
    long n = 0;
    int nrecs = atomic_load(&ME->nrecs);
    for (int i = 0; i < nrecs && i < SHM->nrecs; i++) {
        unsigned long st = atomic_load(&rec_at(ME, i)->word) & 3;
        n += st == R_WRITING || st == R_TIMEDOUT;
    }
    return n + hooks_stuck();
}

/* ---- the handler-timeout watchdog (a thread of each worker) ------------- */

static void answer_504(int fd, double limit, bool streaming)
{
    if (fd >= 0 && !hp_server_claim(fd))
        return; /* this process is dying and answered it already */
    if (streaming) {
        /* Its status line went out long ago: a 504 now would be garbage
         * inside the body. The chunked body stays unterminated, which is
         * how a client tells a cut stream from a complete one. */
        if (fd >= 0)
            shutdown(fd, SHUT_RDWR);
        return;
    }
    char body[256], msg[512];
    /* The limit is configuration: production's body says the status
     * only, like its other error pages (the log has the page and limit). */
    int bl = snprintf(body, sizeof body,
                      "<!doctype html>\n<title>504 Gateway Timeout</title>\n"
                      "<h1>504 Gateway Timeout</h1>\n");
    if (atomic_load_explicit(&DEV, memory_order_relaxed))
        bl += snprintf(body + bl, sizeof body - (size_t)bl,
                       "<p>The page did not answer within %g seconds.</p>\n",
                       limit);
    int ml = snprintf(msg, sizeof msg,
                      "HTTP/1.1 504 Gateway Timeout\r\n"
                      "Content-Type: text/html; charset=utf-8\r\n"
                      "Content-Length: %d\r\nConnection: close\r\n"
                      "Cache-Control: no-store\r\n\r\n%s",
                      bl, body);
    if (fd < 0)
        return;
    /* Best effort: the socket is non-blocking and the answer is small.
     * Over TLS, plaintext would be garbage inside the session: close. */
    ssize_t n = 0;
    if (hp_server_plaintext())
        n = send(fd, msg, (size_t)ml, MSG_NOSIGNAL | MSG_DONTWAIT);
    shutdown(fd, SHUT_RDWR);
    /* Its access log line and metric (the stuck handler never logs it):
     * 504, the body's bytes if they went out (0 over TLS). */
    hp_server_answered(fd, 504, n > 0 ? (uint64_t)bl : 0);
}

/*
 * Module hooks (init, fini) being run, one place per thread that ever ran
 * one, for the watchdog: an init that never returns held the request that
 * loaded it, and every later request for its pages, for good, and nothing
 * answered. States, as a handler's record's: IDLE -> RUNNING (its thread)
 * -> IDLE (its thread, CAS) or TIMEDOUT (the watchdog, CAS, after it has
 * read the run, which lives on the hook thread's stack: that thread waits
 * for TIMEDOUT before it returns).
 */
static void hook_record(const struct hp_hook_run *h, uintptr_t pc,
                        uintptr_t base);
static void initbad_add(const char *key, const char *why);
static void initbad_put(const char *key, const char *why);
static void hook_key_of(const struct hp_hook_run *h, char out[KEY_LEN]);
static void hook_words(const char *hook, const char *path, char *out,
                       size_t cap);

/* A hook that runs while its version loads, for the request that pins it:
 * HP_INIT, or the object's constructors (inside dlopen). */
static bool hook_loads(const char *hook)
{
    return strcmp(hook, "init") == 0 || strcmp(hook, "constructor") == 0;
}

#define HOOK_WATCH_MAX 64
enum { HW_IDLE = 0, HW_RUNNING, HW_READING, HW_TIMEDOUT };
static struct hook_watch {
    atomic_int state;
    atomic_llong started;
    const struct hp_hook_run *run;
    int fd; /* the request whose pin runs this init, or -1 */
    /* its object's key, found on the hook's own thread (hook_key_of) */
    char key[KEY_LEN];
} HOOK_WATCH[HOOK_WATCH_MAX];
static atomic_int HOOK_WATCH_USED;
static __thread int tl_hw = -1; /* this thread's place, -2 none left */

static void hook_watch_begin(const struct hp_hook_run *run)
{
    if (tl_hw == -1) {
        int i = atomic_fetch_add(&HOOK_WATCH_USED, 1);
        tl_hw = i < HOOK_WATCH_MAX ? i : -2;
    }
    if (tl_hw < 0)
        return;
    struct hook_watch *w = &HOOK_WATCH[tl_hw];
    if (atomic_load(&w->state) != HW_IDLE)
        return; /* nested (a fini inside an init): the outer one counts */
    w->run = run;
    w->fd = hook_loads(run->hook) ? hp_server_pinning_fd() : -1;
    hook_key_of(run, w->key);
    atomic_store(&w->started, now_ns());
    atomic_store_explicit(&w->state, HW_RUNNING, memory_order_release);
}

static void hook_watch_end(const struct hp_hook_run *run)
{
    if (tl_hw < 0)
        return;
    struct hook_watch *w = &HOOK_WATCH[tl_hw];
    int st = HW_RUNNING;
    if (w->run != run)
        return;
    if (!atomic_compare_exchange_strong(&w->state, &st, HW_IDLE)) {
        /* The watchdog took it: it reads run, on this stack, until
         * TIMEDOUT; the worker is being replaced either way. */
        while (atomic_load(&w->state) == HW_READING)
            sched_yield();
        atomic_store(&w->state, HW_IDLE);
    }
    w->run = NULL;
}

/* A hook past the limit: on the slot for the parent (hook_autopsy refuses
 * that object's init from now on), the request that loaded it answered
 * 504, the worker replaced (its hook thread never comes back). */
static void hook_timed_out(struct hook_watch *w, double limit)
{
    const struct hp_hook_run *h = w->run;
    bool init = hook_loads(h->hook);
    hook_record(h, 0, 0);
    if (!ME->hook_key[0]) /* a prebuilt .so's: the hook thread's key */
        memcpy(ME->hook_key, w->key, KEY_LEN);
    ME->hook_status = (int)(limit + 0.5);
    atomic_store(&ME->hook_sig, HOOK_TIMEOUT);
    /* Now, not at the autopsy: a worker that drains and exits cleanly
     * has none, and its replacement must not run this init again. */
    char hw[REC_PATH + 64];
    hook_words(h->hook, ME->hook_path, hw, sizeof hw);
    if (init && ME->hook_key[0]) {
        /* "a constructor of the page x.c" or "the init hook of ...": an
         * HP_DIAG_CTOR_REFUSED or HP_DIAG_INIT_REFUSED refusal, worded as
         * hook_autopsy's for the same death. */
        char why[sizeof SHM->initbad[0].why];
        snprintf(why, sizeof why,
                 "%s ran past --handler-timeout (%g s) in a worker process%s; "
                 "it will not run again until the file changes",
                 hw, limit,
                 strcmp(h->hook, "constructor") == 0 ? " as it loaded" : "");
        initbad_add(ME->hook_key, why);
        /* Its waiters get their 503 now, not when this worker exits;
         * and if it returns late, its object answers nobody. */
        hp_server_abandon_load(h->path, why);
    }
    bool answered = w->fd >= 0 && hp_server_claim(w->fd);
    if (answered)
        answer_504(w->fd, limit, false);
    atomic_fetch_add(&SHM->timeouts, 1);
    /* "x.c: the init hook has run ...", "x.c: a constructor of the page
     * x.c has run ...": a constructor is no hook of the page's. */
    hp_log_error(
        "%s: %s has run for more than %g s (object %s)%s; "
        "this worker (pid %d) will be replaced%s",
        ME->hook_path, strcmp(h->hook, "init") == 0 ? "the init hook" : hw,
        limit, ME->hook_key, answered ? ": answered 504" : "", (int)getpid(),
        init ? ", and it will not run again until its file changes" : "");
    int none = 0;
    atomic_compare_exchange_strong(&ME->retire, &none, CAUSE_TIMEOUT);
}

static void hook_watch_check(int64_t now, int64_t limit_ns, double limit)
{
    int n = atomic_load(&HOOK_WATCH_USED);
    for (int i = 0; i < n && i < HOOK_WATCH_MAX; i++) {
        struct hook_watch *w = &HOOK_WATCH[i];
        int st = HW_RUNNING;
        if (atomic_load_explicit(&w->state, memory_order_acquire) != st ||
            now - atomic_load(&w->started) <= limit_ns ||
            !atomic_compare_exchange_strong(&w->state, &st, HW_READING))
            continue;
        hook_timed_out(w, limit);
        atomic_store(&w->state, HW_TIMEDOUT);
    }
}

static long hooks_stuck(void)
{
    long n = 0;
    int used = atomic_load(&HOOK_WATCH_USED);
    for (int i = 0; i < used && i < HOOK_WATCH_MAX; i++)
        n += atomic_load(&HOOK_WATCH[i].state) >= HW_READING;
    return n;
}

/* hooks->run_stack: a run on the reactor switches to its coroutine's
 * stack (lo != 0) and back; the fatal-signal handler's overflow test
 * (stack_overflow) must look at the stack the fault was on. A signal
 * between two of these stores sees a mix and at worst calls an overflow
 * a plain fault. */
static void guard_run_stack(uintptr_t lo, size_t size, size_t guard)
{
    if (lo) {
        if (!tl_on_coro) {
            if (!tl_stack_lo)
                stack_bounds();
            tl_own_lo = tl_stack_lo;
            tl_own_size = tl_stack_size;
            tl_own_guard = tl_stack_guard;
        }
        tl_stack_lo = lo;
        tl_stack_size = size;
        tl_stack_guard = guard;
        tl_on_coro = true;
        return;
    }
    if (!tl_on_coro)
        return;
    tl_stack_lo = tl_own_lo;
    tl_stack_size = tl_own_size;
    tl_stack_guard = tl_own_guard;
    tl_on_coro = false;
}

static void *watchdog_main(void *arg)
{
    double limit = CFG->handler_timeout;
    long tick_ns = limit < 1.0 ? (long)(limit * 2.5e8) : 100000000L;
    int64_t limit_ns = (int64_t)(limit * 1e9);
    for (;;) {
        nanosleep(&(struct timespec){0, tick_ns}, NULL);
        int64_t now = now_ns();
        int nrecs = atomic_load(&ME->nrecs);
        for (int i = 0; i < nrecs && i < SHM->nrecs; i++) {
            struct rec *r = rec_at(ME, i);
            unsigned long w =
                atomic_load_explicit(&r->word, memory_order_acquire);
            if ((w & 3) != R_RUNNING ||
                now - atomic_load_explicit(&r->started, memory_order_relaxed) <=
                    limit_ns)
                continue;
            if (!atomic_compare_exchange_strong(&r->word, &w,
                                                (w & ~3UL) | R_WRITING))
                continue; /* it finished meanwhile */
            bool streaming = atomic_load(&r->streaming);
            answer_504(r->fd, limit, streaming);
            atomic_store(&r->word, (w & ~3UL) | R_TIMEDOUT);
            atomic_fetch_add(&SHM->timeouts, 1);
            hp_log_error("%s: handler '%s' (version %llu, object %s) has run "
                         "for more than %g s%s: %s; this worker "
                         "(pid %d) will be replaced once its other requests "
                         "finish",
                         r->path, r->handler, (unsigned long long)r->version,
                         r->key, limit,
                         streaming ? " since its last flush" : "",
                         streaming ? "its stream was cut (no 504: the "
                                     "response was under way)"
                                   : "answered 504",
                         (int)getpid());
            int none = 0;
            atomic_compare_exchange_strong(&ME->retire, &none, CAUSE_TIMEOUT);
        }
        hook_watch_check(now, limit_ns, limit);
    }
    return NULL;
}

/* ---- module paths for people ------------------------------------------- */

/* The docroot, resolved: logs and pages name modules below it. */
static char ROOT[PATH_MAX];
static size_t ROOT_LEN;

static void root_set(const char *docroot)
{
    if (!docroot || !realpath(docroot, ROOT))
        ROOT[0] = '\0';
    ROOT_LEN = strlen(ROOT);
}

/* path below the docroot ("sub/_app.c"), else path itself. */
static const char *rel_path(const char *path)
{
    if (ROOT_LEN && strncmp(path, ROOT, ROOT_LEN) == 0 && path[ROOT_LEN] == '/')
        return path + ROOT_LEN + 1;
    return path;
}

/* ---- fatal signals in a worker ------------------------------------------ */

/* The faulting instruction of a fatal signal's context (0: unknown). */
static uintptr_t fault_pc(const siginfo_t *si, const void *ucv)
{
#if defined(__x86_64__)
    const ucontext_t *uc = ucv;
    (void)si;
    return (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];
#elif defined(__aarch64__)
    const ucontext_t *uc = ucv;
    (void)si;
    return (uintptr_t)uc->uc_mcontext.pc;
#else
    (void)ucv;
    return (uintptr_t)si->si_addr;
#endif
}

/* The stack pointer when the signal came, or 0 if not known. */
static uintptr_t fault_sp(const void *ucv)
{
#if defined(__x86_64__)
    const ucontext_t *uc = ucv;
    return (uintptr_t)uc->uc_mcontext.gregs[REG_RSP];
#elif defined(__aarch64__)
    const ucontext_t *uc = ucv;
    return (uintptr_t)uc->uc_mcontext.sp;
#else
    (void)ucv;
    return 0;
#endif
}

/* How far below the guard area a fault still counts as the stack's, and
 * how far below the stack the stack pointer may be for the same verdict. */
#define STACK_SLACK ((uintptr_t)64 << 10)
#define STACK_REACH ((uintptr_t)1 << 30)

/*
 * Was this fault the thread's stack overflowing? Yes when the address that
 * faulted is in the guard area below the stack or just below it (a frame
 * probed a page at a time, -fstack-clash-protection, faults on the guard),
 * or when the stack pointer itself has left the stack (a frame larger
 * than the guard, built without probes). The stack's size in bytes, else
 * 0. Async-signal-safe: this thread's own variables.
 */
static size_t stack_overflow(int sig, const siginfo_t *si, const void *uc)
{
    uintptr_t lo = tl_stack_lo;
    if ((sig != SIGSEGV && sig != SIGBUS) || !lo ||
        lo < tl_stack_guard + STACK_REACH)
        return 0;
    uintptr_t addr = (uintptr_t)si->si_addr, sp = fault_sp(uc);
    bool in_guard = addr < lo && addr >= lo - tl_stack_guard - STACK_SLACK;
    bool sp_out = sp && sp < lo && sp >= lo - STACK_REACH;
    return in_guard || sp_out ? tl_stack_size : 0;
}

/* Whose stack overflowed (async-signal-safe): a handler thread's is
 * --thread-stack-size; a page's run on any other thread is inline, on an
 * event-loop thread; a hook (h) elsewhere ran on another thread (a batch
 * or watcher thread unloading a module): both have the C library's
 * default stack, which that setting does not set. */
static int running_fd(void);
static enum hp_stack_kind stack_kind(const struct hp_hook_run *h)
{
    if (hp_pool_on_handler_thread() || tl_on_coro)
        return HP_STACK_HANDLER;
    return !h && running_fd() >= 0 ? HP_STACK_EVENT_LOOP : HP_STACK_OTHER;
}

/* The socket of the request this thread is running a handler for, or -1
 * (async-signal-safe: its own record, plain reads). */
static int running_fd(void)
{
    if (!ME || tl_rec < 0)
        return -1;
    struct rec *r = rec_at(ME, tl_rec);
    return (atomic_load(&r->word) & 3) == R_RUNNING ? r->fd : -1;
}

/*
 * A fault outside the page's object (in libc's strlen given NULL, in a
 * library): the page's innermost call on the way there, found by walking
 * the stack from the signal's frame (backtrace: its unwinder was loaded at
 * start-up, and glibc's _dl_find_object lets it find frames without the
 * loader's lock), or 0 when the page has no frame on it.
 */
static uintptr_t page_call(void)
{
    void *frames[64];
    int n = backtrace(frames, 64);
    for (int i = 0; i < n; i++) {
        uintptr_t ret = (uintptr_t)frames[i];
        if (ret > tl_lo && ret <= tl_hi)
            return ret - 1; /* the call, not the return */
    }
    return 0;
}

/* Write the crash page c (status 502, 503 for an init), then its access
 * log line and count. Over TLS the page in plaintext would be garbage
 * inside the session: the connection is closed instead, logged with 0
 * bytes as production's 502 is. Async-signal-safe. */
static void crash_page(const struct hp_crash *c, int status)
{
    uint64_t sent = 0;
    if (hp_server_plaintext())
        sent = hp_crash_answer(c);
    else
        shutdown(c->fd, SHUT_RDWR);
    hp_server_answered_dying(c->fd, status, sent);
}

/* Dev mode: answer the request that crashed with the crash page, if the
 * socket is still ours to answer (server.c's claim, as the watchdog's). */
static void crash_answer(int sig, uintptr_t pc, int fd)
{
    if (!atomic_load_explicit(&DEV, memory_order_relaxed) || !tl_details ||
        !tl_version || fd < 0 || !hp_server_claim(fd))
        return;
    bool outside = tl_hi && (pc < tl_lo || pc >= tl_hi);
    uintptr_t call = outside ? page_call() : 0;
    struct rec *r = rec_at(ME, tl_rec);
    struct hp_crash c = {.fd = fd,
                         .signame = signame(sig),
                         .page = r->path,
                         .handler = r->handler,
                         .so_path = tl_version->so_path,
                         .pc = outside ? call : pc, /* 0: none */
                         .base = tl_base,
                         .alone = ALONE,
                         .outside = call != 0,
                         .overflow = tl_overflowed,
                         .stack_kind = tl_stack_kind};
    crash_page(&c, 502);
}

/* "the init hook of the page x.c", "a constructor of the application
 * module shop/_app.c": a hook's name for people (not async-signal-safe). */
static void hook_words(const char *hook, const char *path, char *out,
                       size_t cap)
{
    bool obj =
        strcmp(hook, "constructor") == 0 || strcmp(hook, "destructor") == 0;
    snprintf(out, cap, "%s%s%s of the %s %s", obj ? "a " : "the ", hook,
             obj ? "" : " hook", is_app(path) ? "application module" : "page",
             path);
}

/* The single process has no parent to log its death: it says which page
 * (or module hook) killed it on standard error itself (write(2):
 * async-signal-safe). */
static void log_alone(int sig, const struct hp_hook_run *h)
{
    const char *parts[9] = {"hotpub: ",
                            signame(sig),
                            " while running ",
                            "(no page handler)",
                            "",
                            "",
                            "",
                            "",
                            ""};
    if (h) {
        bool obj = strcmp(h->hook, "constructor") == 0 ||
                   strcmp(h->hook, "destructor") == 0;
        parts[3] = obj ? "a " : "the ";
        parts[4] = h->hook;
        parts[5] = obj ? "" : " hook";
        parts[6] =
            is_app(h->path) ? " of the application module " : " of the page ";
        parts[7] = rel_path(h->path);
    } else if (tl_rec >= 0) {
        struct rec *r = rec_at(ME, tl_rec);
        parts[3] = r->path;
        parts[4] = ", handler '";
        parts[5] = r->handler;
        parts[6] = "'";
    }
    parts[8] = ": the single process (--workers 0) ends, nothing replaces "
               "it\n";
    for (int i = 0; i < 9; i++)
        (void)!write(2, parts[i], strlen(parts[i]));
    if (tl_overflowed) {
        static const char m[] = "hotpub: the thread's stack overflowed: ";
        const char *hint = hp_crash_stack_hint(tl_stack_kind);
        (void)!write(2, m, sizeof m - 1);
        (void)!write(2, hint, strlen(hint));
        (void)!write(2, "\n", 1);
    }
}

/* ---- a module's lifecycle hook (init, fini) that crashes ---------------- */

/* Production's answer to the request whose page's (or application
 * module's) init or constructor crashed the worker: like server.c's other
 * error bodies, no internals; Retry-After as on every later 503 of the
 * refused version (server.c's send_init_503). */
#define INIT_503_HEAD                                                          \
    "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n"                   \
    "Content-Type: text/html; charset=utf-8\r\nConnection: close\r\n"
#define INIT_503_TOP                                                           \
    "<!doctype html>\n<title>503 Service Unavailable</title>\n<h1>503 "        \
    "Service Unavailable</h1>\n<p>"
#define INIT_503_APP                                                           \
    INIT_503_TOP "An application module failed to initialise.</p>\n"
#define INIT_503_PAGE INIT_503_TOP "A page failed to initialise.</p>\n"
#define INIT_503_APP_LEN 139
#define INIT_503_PAGE_LEN 124
_Static_assert(sizeof INIT_503_APP - 1 == INIT_503_APP_LEN, "APP_LEN");
_Static_assert(sizeof INIT_503_PAGE - 1 == INIT_503_PAGE_LEN, "PAGE_LEN");
#define STR_(x) #x
#define STR(x) STR_(x)

static void answer_init_503(int fd, bool app)
{
    static const char app_msg[] = INIT_503_HEAD
        "Content-Length: " STR(INIT_503_APP_LEN) "\r\n\r\n" INIT_503_APP;
    static const char page_msg[] = INIT_503_HEAD
        "Content-Length: " STR(INIT_503_PAGE_LEN) "\r\n\r\n" INIT_503_PAGE;
    size_t len = app ? sizeof app_msg - 1 : sizeof page_msg - 1;
    ssize_t n = 0;
    if (hp_server_plaintext())
        n = send(fd, app ? app_msg : page_msg, len,
                 MSG_NOSIGNAL | MSG_DONTWAIT);
    shutdown(fd, SHUT_RDWR);
    /* Its access log line and count (the dying process never logs it):
     * the body's bytes if the whole answer went out (0 over TLS). */
    uint64_t body = app ? INIT_503_APP_LEN : INIT_503_PAGE_LEN;
    hp_server_answered_dying(fd, 503, n == (ssize_t)len ? body : 0);
}

/*
 * The hook's innermost call on the way to a fault or an exit outside its
 * object (libc's strlen given NULL, exit itself), as page_call does for a
 * handler: the span was found before the hook ran (loader.c); 0 if the
 * object has no frame on the stack or its span is not known.
 */
static uintptr_t hook_call(const struct hp_hook_run *h)
{
    void *frames[64];
    int n = h->hi ? backtrace(frames, 64) : 0;
    for (int i = 0; i < n; i++) {
        uintptr_t ret = (uintptr_t)frames[i];
        if (ret > h->lo && ret <= h->hi)
            return ret - 1; /* the call, not the return */
    }
    return 0;
}

/*
 * A constructor runs inside dlopen, before loader.c knows its object's
 * base (the run has none): find the object's innermost frame on this
 * thread's stack, pc itself or a return address into it, with
 * _dl_find_object (async-signal-safe; dlopen registers the object once
 * relocated, before its constructors run), matching the object's path.
 * The instruction (the call, for a return address), its object's base in
 * *base, and whether the fault was outside the object; 0 if the object has
 * no frame on the stack.
 */
static uintptr_t ctor_site(const struct hp_hook_run *h, uintptr_t pc,
                           uintptr_t *base, bool *outside)
{
    void *frames[64];
    int n = backtrace(frames, 64);
    for (int i = -1; i < n; i++) {
        uintptr_t a = i < 0 ? pc : (uintptr_t)frames[i] - 1;
        struct dl_find_object fo;
        if (!a || _dl_find_object((void *)a, &fo) != 0 || !fo.dlfo_link_map ||
            !fo.dlfo_link_map->l_name ||
            strcmp(fo.dlfo_link_map->l_name, h->so_path) != 0)
            continue;
        *base = fo.dlfo_link_map->l_addr;
        *outside = i >= 0;
        return a;
    }
    return 0;
}

/* The key a loading hook's crash refuses its object under: the compile
 * cache's, in its private copy's name, else the prebuilt .so's identity
 * that guard_init_vet found on this thread for the same page; "" if none.
 * Async-signal-safe. */
static void hook_key_of(const struct hp_hook_run *h, char out[KEY_LEN])
{
    if (!so_key(h->so_path, out) && hook_loads(h->hook) &&
        h->path == tl_load_page)
        memcpy(out, tl_load_key, KEY_LEN);
}

/* Put the module, hook and source line of pc (0: none) in the object
 * loaded at base on the slot for the parent's log and the init's refusal
 * (hp_guard_autopsy); the caller stores hook_sig last.
 * Async-signal-safe. */
static void hook_record(const struct hp_hook_run *h, uintptr_t pc,
                        uintptr_t base)
{
    copy_tail(ME->hook_path, sizeof ME->hook_path, rel_path(h->path));
    copy_str(ME->hook_name, sizeof ME->hook_name, h->hook);
    hook_key_of(h, ME->hook_key);
    ME->hook_where[0] = '\0';
    if (pc && pc >= base)
        hp_crash_where(h->so_path, pc - base, ME->hook_where,
                       sizeof ME->hook_where);
}

/* Answer the request whose pin ran the init that is killing the worker
 * with a 503: the crash page (what happened, at pc in the object loaded
 * at base; pc 0: no frame of the object's) when it may see details, else
 * the short production body. Nothing for a fini. */
static void hook_answer(const struct hp_hook_run *h, const char *what,
                        uintptr_t pc, uintptr_t base, bool outside)
{
    int fd = hook_loads(h->hook) ? hp_server_pinning_fd() : -1;
    if (fd < 0 || !hp_server_claim(fd))
        return;
    if (!hp_server_pinning_details()) {
        answer_init_503(fd, is_app(h->path));
        return;
    }
    struct hp_crash c = {.fd = fd,
                         .signame = what,
                         .page = ME->hook_path,
                         .handler = h->hook,
                         .so_path = h->so_path,
                         .pc = pc,
                         .base = base,
                         .alone = ALONE,
                         .init = true,
                         .where = ME->hook_where,
                         .outside = outside,
                         .overflow = tl_overflowed,
                         .stack_kind = tl_stack_kind};
    crash_page(&c, 503);
}

/*
 * The dying thread was running a module's init or fini (async-signal-safe):
 * record it and answer the pinning request. A fault outside the module's
 * object names the module's call into the function that faulted (none
 * when the object has no frame on the stack: pc 0, no address shown).
 */
static void hook_crash(int sig, uintptr_t pc, const struct hp_hook_run *h)
{
    uintptr_t base = h->base, at;
    bool outside = false;
    if (!base) { /* a constructor's */
        at = ctor_site(h, pc, &base, &outside);
    } else {
        outside = h->hi && (pc < h->lo || pc >= h->hi);
        at = outside ? hook_call(h) : pc;
        outside = outside && at;
    }
    hook_record(h, at, base);
    atomic_store(&ME->hook_sig, sig);
    hook_answer(h, signame(sig), at, base, outside);
}

/* What the page or hook called: "exit", or "_exit" or "_Exit" (set by
 * their definitions below), for the answers and the log that name it. */
static const char *EXIT_NAME = "exit";
/* An exit hook ran: the _exit that ends the process now is not a page's. */
static atomic_bool EXITING;

/* This thread's first load of an object is killing the process: its
 * waiters in other workers answer 503 now (async-signal-safe). */
static void load_failed_here(void)
{
    if (tl_loading >= 0 && SHM)
        atomic_store(&SHM->loading[tl_loading].state, L_FAILED);
}

/* The same for a hook that called exit (status) or quick_exit (!known):
 * the line is that of the hook's call on the way to exit. */
static void hook_exit(const struct hp_hook_run *h, int status, bool known)
{
    char what[32];
    uintptr_t base = h->base, call;
    bool outside = false;
    call = base ? hook_call(h) : ctor_site(h, 0, &base, &outside);
    hook_record(h, call, base);
    load_failed_here();
    ME->hook_status = status;
    int sig = !known                            ? HOOK_QUICK_EXIT
              : strcmp(EXIT_NAME, "_exit") == 0 ? HOOK__EXIT
              : strcmp(EXIT_NAME, "_Exit") == 0 ? HOOK__EXIT_C99
                                                : HOOK_EXIT;
    atomic_store(&ME->hook_sig, sig);
    if (known)
        snprintf(what, sizeof what, "%s(%d)", EXIT_NAME, status);
    else
        snprintf(what, sizeof what, "exit (quick_exit)");
    if (ALONE) {
        char hw[REC_PATH + 64];
        hook_words(h->hook, ME->hook_path, hw, sizeof hw);
        hp_log_error("%s called %s: the single process (--workers 0) ends", hw,
                     what);
    }
    hook_answer(h, what, call, base, false);
}

/* The loader's check before an init runs (hp_loader_set_init_vet): that
 * object's init killed a worker already (the diagnostic says how). */
/*
 * A prebuilt .so page's object is not the compile cache's: its name has no
 * key, and the crash of its constructor or init would be refused under
 * none (every request loaded it again, each killing a worker). Its key is
 * the file's identity instead: the page's path, the file's device, inode,
 * size and modification and change times, so that the refusal lasts until
 * the file changes, as a compiled page's does. false if it cannot be
 * stat'ed (the load fails by itself then).
 */
static bool prebuilt_key(const char *path, const char *so_path,
                         char out[KEY_LEN])
{
    struct stat st;
    if (stat(so_path, &st) != 0)
        return false;
    int64_t id[] = {(int64_t)st.st_dev,          (int64_t)st.st_ino,
                    (int64_t)st.st_size,         (int64_t)st.st_mtim.tv_sec,
                    (int64_t)st.st_mtim.tv_nsec, (int64_t)st.st_ctim.tv_sec,
                    (int64_t)st.st_ctim.tv_nsec};
    struct hp_hash h;
    hp_hash_init(&h);
    hp_hash_update(&h, path, strlen(path) + 1);
    hp_hash_update(&h, id, sizeof id);
    hp_hash_hex(&h, out);
    return true;
}

/* The refusal of key's init already on record (malloc'd), or NULL.
 * Under the table lock. */
static char *initbad_why(const char *key)
{
    for (int i = 0; i < INITBAD_MAX; i++)
        if (strcmp(SHM->initbad[i].key, key) == 0)
            return hp_xstrdup(SHM->initbad[i].why);
    return NULL;
}

/* key's entry in the loading table, or a new LOADING one of this process
 * (*mine set): a free place, else the oldest that is not LOADING; -1 when
 * every place is being loaded (the load then runs unguarded). Under the
 * table lock. */
static int loading_find(const char *key, bool *mine)
{
    *mine = false;
    for (int i = 0; i < LOADING_MAX; i++)
        if (atomic_load(&SHM->loading[i].state) != L_FREE &&
            strcmp(SHM->loading[i].key, key) == 0)
            return i;
    for (int n = 0; n < LOADING_MAX; n++) {
        int i = (int)(SHM->nloading++ % LOADING_MAX);
        struct loading *l = &SHM->loading[i];
        if (atomic_load(&l->state) == L_LOADING)
            continue;
        copy_str(l->key, sizeof l->key, key);
        atomic_store(&l->pid, (int)getpid());
        atomic_store(&l->since, now_ns());
        l->deaths = 0;
        atomic_store(&l->told, false);
        atomic_store(&l->state, L_LOADING);
        *mine = true;
        return i;
    }
    return -1;
}

/* How long a waiter waits for another worker's first load: the loader's
 * watchdog gives up on an init at --handler-timeout (and refuses it). */
static int64_t load_wait_ns(void)
{
    double limit = CFG && CFG->handler_timeout > 0 ? CFG->handler_timeout : 30;
    return (int64_t)((limit + 2) * 1e9);
}

/* The words a refusal of path's constructors and init begins with, when
 * which of the two it was is not known (the loader's record would have
 * said): both, in the words the other refusals use (a page has no "init
 * hook" in them; both prefixes are a refusal, hp_diag_is_refused). */
static const char *either_hook(const char *path)
{
    return is_app(path) ? HP_DIAG_INIT_REFUSED "or a constructor of the "
                                               "application module "
                        : HP_DIAG_CTOR_REFUSED "page ";
}

static const char *either_tail(const char *path)
{
    return is_app(path) ? "" : ", or its init,";
}

/* A refusal that this waiter worded itself (nobody else logs it): logged
 * once per loading entry, not once per worker that waited for it. */
static char *tell_once(struct loading *l, const char *path, char *why)
{
    if (!atomic_exchange(&l->told, true))
        hp_log_error("%s: %s", path, why);
    return why;
}

/* A waiter's answer once its loader failed: the parent's refusal (it
 * comes when the parent reaps the loader, and is logged there), else
 * these words. The loader marks the load failed from its exit or
 * fatal-signal hook and only then goes on dying (the exit handlers
 * registered before ours, the objects' destructors, a core dump,
 * ThreadSanitizer's atexit_sleep_ms of 1 s), so while it exists (a zombie
 * too: not reaped yet) the refusal is still to come: wait for it, up to
 * the load's own bound; 100 polls once it is gone. Before, 100 polls in
 * all: a loader that took a second to die had its refusal logged twice
 * (the parent's, and these words; workers.py,
 * test_first_load_of_an_exiting_constructor_kills_one_worker under make
 * tsan, test_first_load_whose_loader_dies_slowly_is_refused_once). */
static char *load_failed(struct loading *l, const char *key, const char *path,
                         pid_t pid)
{
    int64_t t0 = now_ns();
    for (int gone = 0; gone < 100;) {
        table_lock();
        char *why = initbad_why(key);
        table_unlock();
        if (why)
            return why;
        if (pid <= 0 || (kill(pid, 0) < 0 && errno == ESRCH))
            gone++;
        else if (now_ns() - t0 > load_wait_ns())
            break;
        nanosleep(&(struct timespec){0, LOAD_POLL_NS}, NULL);
    }
    return tell_once(l, path,
                     hp_xasprintf("%s%s%s killed the worker process %d that "
                                  "loaded it first; it will not run again "
                                  "until the file changes",
                                  either_hook(path), rel_path(path),
                                  either_tail(path), (int)pid));
}

/*
 * l's loader (pid) died with l still LOADING: its fatal-signal and exit
 * hooks did not mark the load failed, so nothing says its constructors or
 * init killed it (a SIGKILL from an operator or the OOM killer, a crash
 * on another of its threads). Under the table lock: the first such death
 * is this waiter's to take over (*mine: it loads the object now, and
 * nobody is refused); at LOAD_DEATHS_MAX (a constructor that raises
 * SIGKILL kills every loader) the object is refused on the node, with
 * these words (malloc'd; *tell: the caller logs them, once).
 */
static char *loader_died(struct loading *l, const char *path, const char *key,
                         pid_t pid, bool *mine, bool *tell)
{
    if (++l->deaths < LOAD_DEATHS_MAX) {
        atomic_store(&l->pid, (int)getpid());
        atomic_store(&l->since, now_ns());
        *mine = true;
        return NULL;
    }
    char *why = hp_xasprintf(
        "%s%s%s killed the worker processes that loaded it %d times (the "
        "last, %d, died leaving no crash record: a SIGKILL the %s raised, "
        "or the kernel's out-of-memory killer's); it will not run again "
        "until the file changes",
        either_hook(path), rel_path(path), either_tail(path), l->deaths,
        (int)pid, is_app(path) ? "module" : "page");
    initbad_put(key, why);
    atomic_store(&l->state, L_FAILED);
    atomic_store(&l->told, true);
    *tell = true;
    return why;
}

/* Another thread of this worker is running a handler. */
static bool others_running(void)
{
    int n = atomic_load(&ME->nrecs);
    for (int i = 0; i < n && i < SHM->nrecs; i++)
        if (i != tl_rec && (atomic_load(&rec_at(ME, i)->word) & 3) != R_IDLE)
            return true;
    return false;
}

/* This thread paused accepting for its first load (quiesce_begin); the
 * lone worker's pause, which ends with the constructors. */
static __thread bool tl_quiesced, tl_lone_pause;
/* The lone worker's pause for a first load's constructors, at most: its
 * backlog has no other taker, and a hung constructor must not hold it. */
#define LONE_CTORS_NS 1000000000LL
/* After a lone worker's wait for its running handlers timed out, its first
 * loads until then (now_ns) do not wait for them again (quiesce_begin). */
#define LONE_SPENT_NS 10000000000LL
static _Atomic int64_t lone_spent_until;

/*
 * Before this worker runs an object's constructors and init for the first
 * time on the node (they may kill it): it stops taking connections, which
 * the other workers take, and lets the handlers it is running finish (at
 * most QUIESCE_NS), so that if it dies only the requests for that version
 * go with it, not its neighbours' (a slow page's run, cut off). Production
 * with other workers to take the connections only: dev mode's edits are
 * all first loads, and its pages' crashes are the author's to see.
 */
static void quiesce_begin(void)
{
    /* The single process: a crash there ends every connection, waiting
     * or running, whatever it waits for (docs/operations.md). */
    if (!CFG || CFG->dev || ALONE)
        return;
    /* A lone worker has no sibling to take the backlog: its pause is
     * bounded (the handlers' wait, then LONE_CTORS_NS for the constructors)
     * and ends when they have run, before the init (ctors_end), so a hung
     * constructor or init never leaves new connections waiting long. */
    bool lone = SHM->workers <= 1;
    tl_quiesced = true;
    tl_lone_pause = lone;
    /* A lone worker's wait that timed out (a long poll, a slow export runs)
     * spends its budget: the first loads of the next LONE_SPENT_NS (a
     * deploy of several pages) do not wait again, so new connections wait
     * once, not once per page. */
    bool wait = !lone || now_ns() >= atomic_load(&lone_spent_until);
    if (lone)
        hp_server_pause_accepting_for((wait ? (long long)QUIESCE_NS : 0) +
                                      LONE_CTORS_NS);
    else
        hp_server_pause_accepting(true);
    int64_t end = now_ns() + QUIESCE_NS;
    int quiet = 0;
    while (wait && quiet < 3 && now_ns() < end) {
        quiet = others_running() ? 0 : quiet + 1;
        nanosleep(&(struct timespec){0, 5000000}, NULL);
    }
    if (lone && wait && quiet < 3)
        atomic_store(&lone_spent_until, now_ns() + LONE_SPENT_NS);
    if (lone)
        hp_server_pause_accepting_for(LONE_CTORS_NS);
}

/* hp_loader_set_ctors_end's: the lone worker accepts again before init. */
static void guard_ctors_end(void)
{
    if (tl_quiesced && tl_lone_pause) {
        tl_quiesced = tl_lone_pause = false;
        hp_server_pause_accepting(false);
    }
}

/*
 * The gate before an object's constructors and init run in this worker:
 * its refusal (malloc'd, begins with HP_DIAG_INIT_REFUSED: a 503) if its
 * init killed a worker, or the first load of it, in another worker, died
 * or ran past the wait; NULL to load it (the first load on the node, then
 * claimed for this thread, or one after a first load that survived).
 */
static char *load_gate(const char *path, const char *key)
{
    for (;;) {
        bool mine, tell = false;
        table_lock();
        char *why = initbad_why(key);
        int i = why ? -1 : loading_find(key, &mine);
        struct loading *l = i >= 0 ? &SHM->loading[i] : NULL;
        int st = l ? atomic_load(&l->state) : L_LOADED;
        pid_t pid = l ? (pid_t)atomic_load(&l->pid) : 0;
        bool died =
            st == L_LOADING && !mine && kill(pid, 0) < 0 && errno == ESRCH;
        if (died)
            why = loader_died(l, path, key, pid, &mine, &tell);
        int64_t since = l ? atomic_load(&l->since) : 0;
        table_unlock();
        if (tell)
            hp_log_error("%s: %s", path, why);
        if (died && mine)
            hp_log_info("%s: its first load's worker %d died leaving no "
                        "record that its constructors or init killed it (a "
                        "SIGKILL, a signal from another process, a crash "
                        "on another thread); this worker takes the load over",
                        path, (int)pid);
        if (why)
            return why;
        if (mine) {
            tl_loading = i;
            quiesce_begin();
            return NULL;
        }
        if (st == L_LOADED)
            return NULL;
        if (st == L_FAILED)
            return load_failed(l, key, path, pid);
        /* The current loader's time, not this waiter's: one that took
         * a load over has the whole wait again. */
        if (now_ns() - since > load_wait_ns())
            return tell_once(
                l, path,
                hp_xasprintf("%s%s%s has been running for more than %.0f s "
                             "in the worker process %d",
                             either_hook(path), rel_path(path),
                             either_tail(path), load_wait_ns() / 1e9 - 2,
                             (int)pid));
        nanosleep(&(struct timespec){0, LOAD_POLL_NS}, NULL);
    }
}

static char *guard_init_vet(const char *path, const char *so_path)
{
    char key[KEY_LEN];
    /* An init that recurses without end still reaches on_fatal: init runs
     * on whichever thread pins, maybe before any handler ran there. */
    altstack_ensure();
    tl_load_page = NULL;
    if (ALONE)
        return NULL; /* the single process refuses nothing: it ends */
    if (!so_key(so_path, key)) {
        if (!prebuilt_key(path, so_path, key))
            return NULL;
        memcpy(tl_load_key, key, KEY_LEN);
        tl_load_page = path;
    }
    return load_gate(path, key);
}

/* hp_loader_set_load_end's: this thread's first load of an object ended
 * and this process is alive: its other loads need not wait any more. */
static void guard_load_end(void)
{
    int i = tl_loading;
    tl_loading = -1;
    if (tl_quiesced) {
        tl_quiesced = false;
        hp_server_pause_accepting(false);
    }
    if (i < 0)
        return;
    struct loading *l = &SHM->loading[i];
    int st = L_LOADING;
    /* Not tried (another page's constructor held the loader's lock): no
     * proof it loads; the claim is freed for the next load to take. */
    atomic_compare_exchange_strong(
        &l->state, &st, hp_loader_load_untried() ? L_FREE : L_LOADED);
}

/* The worker (or single process) whose exits and crashes the hooks answer
 * for: not a process a page forked (catch_exits sets it). */
static pid_t EXIT_PID;

/* A fatal signal another process sent (kill, sigqueue, tgkill from an
 * operator's shell): not a fault of the code this thread runs, so not of
 * the page whose constructors or init it is loading, whose load a waiter
 * then takes over (loader_died) instead of refusing it. Async-signal-safe. */
static bool sent_by_another(const siginfo_t *si)
{
    return si && !ALONE &&
           (si->si_code == SI_USER || si->si_code == SI_QUEUE ||
            si->si_code == SI_TKILL) &&
           si->si_pid != getpid();
}

static void on_fatal(int sig, siginfo_t *si, void *uc)
{
    /* Async-signal-safe: two stores into shared memory, in dev mode the
     * crash page, the answers to the requests that will now never get one
     * (server.c), then die of the same signal (SA_RESETHAND restored the
     * default action). A process forked by a page or a hook inherits this
     * handler, the slot and the request's socket: its crash is none of
     * this worker's business (getpid is async-signal-safe). */
    if (ME && getpid() == EXIT_PID) {
        hp_server_dying(); /* the backlog is the other workers' now */
        const struct hp_hook_run *h = hp_hook_running();
        tl_overflowed = stack_overflow(sig, si, uc);
        tl_stack_kind = stack_kind(h);
        if (ALONE)
            log_alone(sig, h);
        atomic_store(&ME->crash_rec, tl_rec >= 0 ? tl_rec : -1);
        atomic_store(&ME->overflow_kind, (int)tl_stack_kind);
        atomic_store(&ME->overflow, (long)tl_overflowed);
        atomic_store(&ME->crash_sig, sig);
        bool sent = sent_by_another(si);
        if (!sent)
            load_failed_here();
        int fd = running_fd();
        if (h && !sent)
            hook_crash(sig, fault_pc(si, uc), h);
        else
            crash_answer(sig, fault_pc(si, uc), fd);
        hp_server_answer_unstarted(fd);
    }
    raise(sig);
}

/*
 * server.h's load_signal: a module's constructor or init raised SIGTERM or
 * SIGINT on its own thread as it loaded. Answered as that hook crashing
 * (named, the object refused until its file changes): as a mere stop, the
 * worker drained and exited 0, every replacement loaded it again and
 * stopped too, and nothing named the page. The worker dies of the signal
 * (on_fatal's raise, delivered once unblocked here); the single process,
 * which nothing replaces, exits 70 instead, so that a supervisor's
 * Restart=on-failure restarts it (SIGTERM counts as a clean stop there).
 */
static void guard_load_signal(int sig, siginfo_t *si, void *uc)
{
    struct sigaction dfl = {.sa_handler = SIG_DFL};
    sigaction(sig, &dfl, NULL);
    on_fatal(sig, si, uc);
    if (ALONE)
        _exit(70);
    sigset_t one;
    sigemptyset(&one);
    sigaddset(&one, sig);
    pthread_sigmask(SIG_UNBLOCK, &one, NULL);
    _exit(128 + sig); /* not reached: the signal's default action */
}

/* ---- a page handler (or a module hook) that calls exit() ----------------- */

/* The instruction in v's object that called into exit, found by walking
 * this thread's stack (0 if none: the object has no frame there). */
static uintptr_t exit_call_site(const hp_version *v)
{
    void *frames[48];
    int n = backtrace(frames, 48);
    for (int i = 0; i < n; i++) {
        Dl_info di;
        if (dladdr(frames[i], &di) && di.dli_fname &&
            strcmp(di.dli_fname, v->so_path) == 0)
            return (uintptr_t)frames[i] - 1; /* the call, not the return */
    }
    return 0;
}

/* Dev mode: the request whose handler called exit gets the crash page,
 * saying so, with the line of the call. */
static void exit_answer(int fd, int status, bool known)
{
    if (!atomic_load_explicit(&DEV, memory_order_relaxed) || !tl_details ||
        !tl_version || !hp_server_claim(fd))
        return;
    struct rec *r = rec_at(ME, tl_rec);
    char what[32];
    if (known)
        snprintf(what, sizeof what, "%s(%d)", EXIT_NAME, status);
    else
        snprintf(what, sizeof what, "exit (quick_exit)");
    uintptr_t pc = exit_call_site(tl_version);
    struct hp_crash c = {.fd = fd,
                         .signame = what,
                         .page = r->path,
                         .handler = r->handler,
                         .so_path = tl_version->so_path,
                         .pc = pc ? pc : tl_base,
                         .base = tl_base,
                         .alone = ALONE};
    crash_page(&c, 502);
}

/*
 * exit, quick_exit (and a return from main) run this on the calling
 * thread. A handler thread running a page is a page that called exit: it
 * is answered like a crash (the crash page in dev mode, else the 502 of
 * hp_server_answer_unstarted) and the parent's autopsy names it. A module's
 * init or fini running (hp_hook_running) is answered and named like a
 * crashing hook (hook_exit), and its init refused from then on. The
 * normal ends (SIGTERM's drain, recycling, the single process's return)
 * call exit on the main thread, which runs no handler. _exit and _Exit
 * come here too (their definitions below); only a raw exit_group system
 * call runs no hook: its requests go unanswered.
 */
static void exit_hook(int status, bool known)
{
    /* A process forked by a page or hook inherits the hooks: its exit is
     * none of this worker's business. */
    if (!ME || getpid() != EXIT_PID || atomic_exchange(&EXITING, true))
        return;
    const struct hp_hook_run *h = hp_hook_running();
    int fd = running_fd();
    if (ALONE && fd < 0 && !h)
        return; /* the single process's normal end */
    if (!ALONE)
        hp_server_dying();
    if (h) {
        hook_exit(h, status, known);
    } else if (fd >= 0) {
        struct rec *r = rec_at(ME, tl_rec);
        atomic_store(&ME->crash_rec, tl_rec);
        if (ALONE) /* no parent to log it */
            hp_log_error("%s, handler '%s', called %s: the single "
                         "process (--workers 0) ends",
                         r->path, r->handler, EXIT_NAME);
        exit_answer(fd, status, known);
    }
    hp_server_answer_unstarted(fd);
}

static void on_exit_status(int status, void *arg)
{
    (void)arg;
    exit_hook(status, true);
}

static void on_quick_exit(void)
{
    exit_hook(0, false);
}

/*
 * _exit and _Exit, for the whole process: the executable's definitions come
 * first in symbol lookup (exported, see Makefile), as recv's do, so a page
 * or module hook that calls one reaches this, and is answered like one
 * that calls exit (exit_hook: the crash page or a 502 for its request,
 * 503 + Retry-After for the requests read and not answered, the parent
 * names the page). Every other caller goes straight to the kernel:
 * hotpub's own ends (no page or hook running on the thread), a process a
 * page forked, and the _exit at the end of exit's hooks. Not
 * syscall(SYS_exit_group), which nothing can catch.
 */
static _Noreturn void exit_group_now(int status)
{
    for (;;)
        syscall(SYS_exit_group, status);
}

/* _exit or _Exit (name), as the caller spelled it: the answers and the
 * log name the function actually called. */
static _Noreturn void guarded_exit(const char *name, int status)
{
    if (ME && getpid() == EXIT_PID && !atomic_load(&EXITING) &&
        (hp_hook_running() || running_fd() >= 0)) {
        EXIT_NAME = name;
        exit_hook(status, true);
        if (ALONE) /* as master.c's on_unasked_exit: no clean stop */
            status = 70;
    }
    exit_group_now(status);
}

void _exit(int status)
{
    guarded_exit("_exit", status);
}

void _Exit(int status)
{
    guarded_exit("_Exit", status);
}

/* Register the exit hooks; the first backtrace loads the unwinder (it
 * allocates), so it happens now, not inside an exit. */
static void catch_exits(void)
{
    void *f[1];
    EXIT_PID = getpid();
    (void)backtrace(f, 1);
    on_exit(on_exit_status, NULL);
    at_quick_exit(on_quick_exit);
}

/* ---- status -------------------------------------------------------------- */

static const char *const slot_state_name[] = {"free", "starting", "ready",
                                              "draining"};

static void guard_status_json(struct hp_buf *b)
{
    assert(ME);
    hp_buf_printf(b,
                  ",\n\"processes\":{\"master\":%d,\"worker\":{\"pid\":%d,"
                  "\"slot\":%d,\"generation\":%u},\"generation\":%u,"
                  "\"workers_wanted\":%d,\"crashes\":%lu,\"timeouts\":%lu,"
                  "\"restarts\":%lu,\"quarantines_lifted\":%lu,"
                  "\"handler_timeout\":%g,\"workers\":[",
                  (int)SHM->master, (int)getpid(),
                  (int)(((char *)ME - (char *)SHM - sizeof *SHM) / SHM->stride),
                  ME->gen, atomic_load(&SHM->gen), SHM->workers,
                  atomic_load(&SHM->crashes), atomic_load(&SHM->timeouts),
                  atomic_load(&SHM->restarts), atomic_load(&SHM->lifted),
                  CFG->handler_timeout);
    bool first = true;
    for (int i = 0; i < SHM->nslots; i++) {
        struct slot *s = slot_at(i);
        int st = atomic_load(&s->state);
        double silent =
            st == HP_SLOT_READY
                ? (double)(now_ns() - atomic_load(&s->beat_ns)) / 1e9
                : 0;
        if (st == HP_SLOT_FREE)
            continue;
        int running = 0, nrecs = atomic_load(&s->nrecs);
        for (int r = 0; r < nrecs && r < SHM->nrecs; r++)
            running += (atomic_load(&rec_at(s, r)->word) & 3) != R_IDLE;
        hp_buf_printf(
            b,
            "%s{\"pid\":%d,\"slot\":%d,\"generation\":%u,"
            "\"state\":\"%s\",\"retiring\":%s,\"handled\":%lu,"
            "\"running\":%d,\"heartbeat_age\":%.1f,"
            "\"threads\":{\"live\":%d,\"busy\":%d,\"max\":%d}}",
            first ? "" : ",", (int)s->pid, i, s->gen, slot_state_name[st],
            atomic_load(&s->retire) ? "true" : "false",
            atomic_load(&s->handled), running, silent,
            atomic_load(&s->threads.live), atomic_load(&s->threads.busy),
            atomic_load(&s->threads.max));
        first = false;
    }
    hp_buf_puts(b, "],\"restart_causes\":{");
    for (int c = CAUSE_NONE + 1; c < CAUSE_N; c++)
        hp_buf_printf(b, "%s\"%s\":%lu", c > CAUSE_NONE + 1 ? "," : "",
                      cause_name[c], atomic_load(&SHM->causes[c]));
    hp_buf_puts(b, "},\"quarantine\":[");
    first = true;
    for (int i = 0; i < QUAR_MAX; i++) {
        struct quar q;
        if (atomic_load(&SHM->quar[i].state) != Q_QUARANTINED)
            continue;
        table_lock();
        quar_copy(i, &q);
        table_unlock();
        if (atomic_load(&q.state) != Q_QUARANTINED)
            continue;
        char fb[KEY_LEN];
        bool has_fb = fallback_key(atomic_load(&q.phash), q.key, fb);
        hp_buf_puts(b, first ? "{\"path\":" : ",{\"path\":");
        hp_buf_json(b, q.path);
        hp_buf_printf(b, ",\"object\":\"%s\",\"handler\":", q.key);
        hp_buf_json(b, q.handler);
        hp_buf_printf(b, ",\"crashes\":%d,\"signal\":", q.crashes);
        if (q.sig)
            hp_buf_printf(b, "\"%s\"", signame(q.sig));
        else
            hp_buf_puts(b, "null");
        hp_buf_printf(b, ",\"since\":%.0f,\"fallback\":", q.since);
        if (has_fb)
            hp_buf_printf(b, "\"%s\"}", fb);
        else
            hp_buf_puts(b, "null}");
        first = false;
    }
    hp_buf_puts(b, "]}");
}

/* server.h's metrics_text: the supervisor's families, Prometheus text
 * exposition format 0.0.4 (metrics.c writes the rest). */
static void guard_metrics_text(struct hp_buf *b)
{
    hp_buf_puts(b, "# HELP hotpub_worker_restarts_total Worker processes "
                   "replaced, by cause.\n"
                   "# TYPE hotpub_worker_restarts_total counter\n");
    for (int c = CAUSE_NONE + 1; c < CAUSE_N; c++)
        hp_buf_printf(b, "hotpub_worker_restarts_total{cause=\"%s\"} %lu\n",
                      cause_name[c], atomic_load(&SHM->causes[c]));
    hp_buf_printf(
        b,
        "# HELP hotpub_worker_crashes_total Worker processes that died of a "
        "signal or an unexpected exit.\n"
        "# TYPE hotpub_worker_crashes_total counter\n"
        "hotpub_worker_crashes_total %lu\n"
        "# HELP hotpub_handler_timeouts_total Handlers that ran past "
        "--handler-timeout (answered 504).\n"
        "# TYPE hotpub_handler_timeouts_total counter\n"
        "hotpub_handler_timeouts_total %lu\n"
        "# HELP hotpub_quarantined_versions Module versions quarantined "
        "after crashing workers twice.\n"
        "# TYPE hotpub_quarantined_versions gauge\n"
        "hotpub_quarantined_versions %d\n"
        "# HELP hotpub_quarantines_lifted_total Quarantines lifted (the "
        "module changed).\n"
        "# TYPE hotpub_quarantines_lifted_total counter\n"
        "hotpub_quarantines_lifted_total %lu\n",
        atomic_load(&SHM->crashes), atomic_load(&SHM->timeouts),
        atomic_load(&SHM->nquar), atomic_load(&SHM->lifted));
}

/* Describe how a worker's request record reads in a log line. */
static void rec_text(const struct rec *r, char *out, size_t n)
{
    snprintf(out, n, "%s, handler '%s', version %llu (object %s), for %.3f s",
             r->path, r->handler, (unsigned long long)r->version, r->key,
             (double)(now_ns() - atomic_load(&r->started)) / 1e9);
}

/* ---- the tables on disk (the parent's) ---------------------------------- */

/*
 * The quarantine and good tables outlive the shared area (a restart, a
 * deploy, a reboot) in <cache-dir>/quarantine-<root>, a text file whose
 * keys name objects of that cache: one file per document root (the hash
 * of its path as module paths start with it, a swapped symlink kept), so
 * servers of other roots sharing the cache directory never overwrite each
 * other's record. Only the parent reads and writes it, off every request's
 * path: it is read before the first fork, and written (a temporary file renamed
 * over it) on the parent's turn at most once a second when the tables changed
 * (a strike, a lift, a new good key or handler), and at the end. Two servers of
 * one root share one file: the last rename wins, whole. The format:
 *
 *   hotpub-quarantine 1 <hotpub version>
 *   q <c|q> <phash> <key> <src_ctime> <crashes> <sig> <status> <since>
 *     <handler> <path>                       (counting, quarantined; one line)
 *   g <phash> <key0|-> <key1|-> <hands0|-> <hands1|-> <path>
 *   end <FNV-1a 64 of every byte before this line>
 *
 * numbers in decimal but phash and the handler hashes (hex, hands comma
 * separated); strings %XX-escaped (bytes up to space, '%', DEL, a leading
 * '-'), "-" for empty. A file of another hotpub version is not used (its
 * objects were built for another ABI); a file that does not parse (a full
 * disk, a foreign file) is ignored with one line in the log.
 */
#define TABLES_FORMAT 1
#define TABLES_MAX_BYTES (4u << 20) /* far above what the tables can write */
#define TABLES_SAVE_EVERY 1.0       /* seconds, at most one write a turn */

static unsigned tables_saved_gen; /* tables_gen of the last write (parent) */
static double tables_saved_at;
static bool tables_failing; /* the last write failed and said so */

static char *tables_file(const char *cache_dir, const char *docroot)
{
    /* As module paths have it: a symlink swapped by each deploy is kept. */
    char *real = hp_server_root_path(docroot);
    struct hp_hash h;
    char hex[33];
    hp_hash_init(&h);
    hp_hash_update(&h, real ? real : docroot, strlen(real ? real : docroot));
    hp_hash_hex(&h, hex);
    free(real);
    hex[16] = '\0';
    return hp_xasprintf("%s/quarantine-%s", cache_dir, hex);
}

static uint64_t fnv64(const char *p, size_t n)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)p[i]) * 1099511628211ULL;
    return h;
}

static void esc_put(struct hp_buf *b, const char *s)
{
    if (!*s) {
        hp_buf_puts(b, " -");
        return;
    }
    hp_buf_puts(b, " ");
    for (size_t i = 0; s[i]; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= ' ' || c == '%' || c == 0x7f || (i == 0 && c == '-'))
            hp_buf_printf(b, "%%%02x", c);
        else
            hp_buf_append(b, s + i, 1);
    }
}

/* Unescape a field into out (cap bytes): false if it does not fit or
 * is malformed. */
static bool esc_get(const char *f, char *out, size_t cap)
{
    size_t n = 0;
    if (strcmp(f, "-") == 0) {
        out[0] = '\0';
        return true;
    }
    for (size_t i = 0; f[i]; i++) {
        unsigned c = (unsigned char)f[i];
        if (c == '%') {
            if (!f[i + 1] || !f[i + 2] || sscanf(f + i + 1, "%2x", &c) != 1 ||
                c == 0)
                return false;
            i += 2;
        }
        if (n + 1 >= cap)
            return false;
        out[n++] = (char)c;
    }
    out[n] = '\0';
    return true;
}

static void hands_put(struct hp_buf *b, const uint64_t *hands)
{
    if (!hands[0]) {
        hp_buf_puts(b, " -");
        return;
    }
    for (int i = 0; i < GOOD_HANDLERS && hands[i]; i++)
        hp_buf_printf(b, "%c%llx", i ? ',' : ' ', (unsigned long long)hands[i]);
}

static bool hands_get(const char *f, uint64_t *hands)
{
    memset(hands, 0, GOOD_HANDLERS * sizeof *hands);
    if (strcmp(f, "-") == 0)
        return true;
    for (int i = 0; *f; i++) {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(f, &end, 16);
        if (i >= GOOD_HANDLERS || end == f || errno || !v ||
            (*end && *end != ','))
            return false;
        hands[i] = v;
        f = *end ? end + 1 : end;
    }
    return true;
}

static bool key_get(const char *f, char out[KEY_LEN], bool may_be_empty)
{
    if (may_be_empty && strcmp(f, "-") == 0) {
        out[0] = '\0';
        return true;
    }
    if (!is_hex32(f, strlen(f)))
        return false;
    memcpy(out, f, KEY_LEN);
    return true;
}

/* A plain copy of a good entry, taken under the table lock. */
struct good_snap {
    uint64_t phash;
    char path[REC_PATH];
    char keys[2][KEY_LEN];
    uint64_t hands[2][GOOD_HANDLERS];
};

/* The tables as the file's text (the body, without the end line); false
 * if the table lock was not to be had (the next turn tries again). */
static bool tables_text(struct hp_buf *b)
{
    struct quar *qs = hp_xcalloc(QUAR_MAX, sizeof *qs);
    struct good_snap *gs = hp_xcalloc(GOOD_MAX, sizeof *gs);
    int nq = 0, ng = 0;
    if (!table_trylock()) {
        free(qs);
        free(gs);
        return false;
    }
    for (int i = 0; i < QUAR_MAX; i++)
        if (atomic_load(&SHM->quar[i].state) != Q_FREE)
            quar_copy(i, &qs[nq++]);
    for (int i = 0; i < GOOD_MAX; i++) {
        struct good *g = &SHM->good[i];
        uint64_t h = atomic_load(&g->phash);
        if (!h || (!g->keys[0][0] && !g->keys[1][0]))
            continue;
        struct good_snap *s = &gs[ng++];
        s->phash = h;
        memcpy(s->path, g->path, REC_PATH);
        memcpy(s->keys, g->keys, sizeof s->keys);
        for (int k = 0; k < 2; k++)
            for (int j = 0; j < GOOD_HANDLERS; j++)
                s->hands[k][j] = atomic_load(&g->hands[k][j]);
    }
    table_unlock();

    hp_buf_printf(b, "hotpub-quarantine %d %s\n", TABLES_FORMAT,
                  HP_VERSION_STRING);
    for (int i = 0; i < nq; i++) {
        struct quar *q = &qs[i];
        hp_buf_printf(b, "q %c %llx %s %lld %d %d %d %.0f",
                      atomic_load(&q->state) == Q_QUARANTINED ? 'q' : 'c',
                      (unsigned long long)atomic_load(&q->phash), q->key,
                      (long long)atomic_load(&q->src_ctime), q->crashes, q->sig,
                      q->status, q->since);
        esc_put(b, q->handler);
        esc_put(b, q->path);
        hp_buf_puts(b, "\n");
    }
    for (int i = 0; i < ng; i++) {
        struct good_snap *g = &gs[i];
        hp_buf_printf(b, "g %llx %s %s", (unsigned long long)g->phash,
                      g->keys[0][0] ? g->keys[0] : "-",
                      g->keys[1][0] ? g->keys[1] : "-");
        hands_put(b, g->hands[0]);
        hands_put(b, g->hands[1]);
        esc_put(b, g->path);
        hp_buf_puts(b, "\n");
    }
    free(qs);
    free(gs);
    return true;
}

/* Split a line (modified) at single spaces into at most max fields. */
static int fields(char *line, char **f, int max)
{
    int n = 0;
    for (char *p = line; n < max;) {
        f[n++] = p;
        p = strchr(p, ' ');
        if (!p)
            return n;
        *p++ = '\0';
    }
    return max + 1; /* too many */
}

/* Parse the file's text into the (empty) tables: NULL, or why not. */
static const char *tables_parse(char *text, size_t len, int *nq, int *ng,
                                int *dropped, bool *other_version)
{
    *nq = *ng = *dropped = 0;
    *other_version = false;
    if (len == 0 || text[len - 1] != '\n')
        return "truncated";
    text[len - 1] = '\0';
    char *end = strrchr(text, '\n');
    unsigned long long sum;
    char tail;
    if (!end || sscanf(end + 1, "end %llx%c", &sum, &tail) != 1)
        return "truncated (no end line)";
    if (fnv64(text, (size_t)(end + 1 - text)) != sum)
        return "checksum mismatch";
    *end = '\0';

    char *save = NULL, *line = strtok_r(text, "\n", &save);
    char version[64];
    int format;
    if (!line ||
        sscanf(line, "hotpub-quarantine %d %63s%c", &format, version, &tail) !=
            2 ||
        format != TABLES_FORMAT)
        return "not a quarantine file of this format";
    if (strcmp(version, HP_VERSION_STRING) != 0) {
        *other_version = true;
        return NULL;
    }
    /* Checked whole before anything is stored: a bad line refuses all. */
    for (int pass = 0; pass < 2; pass++) {
        char *copy = pass ? NULL : hp_xstrdup(save ? save : "");
        char *s2 = NULL;
        char *src = pass ? save : copy;
        int q = 0;
        for (char *l = strtok_r(src, "\n", &s2); l;
             l = strtok_r(NULL, "\n", &s2)) {
            char *f[12];
            int n = fields(l, f, 11);
            if (n == 11 && strcmp(f[0], "q") == 0) {
                struct quar e = {0};
                char *x;
                long long v[5];
                double since;
                bool ok = (!strcmp(f[1], "q") || !strcmp(f[1], "c")) &&
                          key_get(f[3], e.key, false) &&
                          esc_get(f[9], e.handler, sizeof e.handler) &&
                          esc_get(f[10], e.path, sizeof e.path) && e.path[0];
                unsigned long long ph = strtoull(f[2], &x, 16);
                ok = ok && !*x && ph;
                for (int k = 0; ok && k < 5; k++) {
                    v[k] = strtoll(f[4 + k], &x, 10);
                    ok = !*x && *f[4 + k];
                }
                since = strtod(f[8], &x);
                ok = ok && !*x && v[1] > 0 && v[1] < 1000000;
                if (!ok) {
                    free(copy);
                    return "a malformed quarantine line";
                }
                if (q >= QUAR_MAX) {
                    free(copy);
                    return "too many quarantine lines";
                }
                if (!pass) {
                    q++;
                    continue;
                }
                /* A deleted page is not coming back to lift its entry. */
                struct stat st;
                if (strncmp(e.path, "...", 3) != 0 && stat(e.path, &st) < 0 &&
                    errno == ENOENT) {
                    (*dropped)++;
                    continue;
                }
                struct quar *d = &SHM->quar[q++];
                atomic_store(&d->phash, ph);
                atomic_store(&d->keyfp, key_fp(e.key));
                atomic_store(&d->src_ctime, v[0]);
                memcpy(d->key, e.key, KEY_LEN);
                memcpy(d->path, e.path, REC_PATH);
                memcpy(d->handler, e.handler, REC_HANDLER);
                d->crashes = (int)v[1];
                d->sig = (int)v[2];
                d->status = (int)v[3];
                d->since = since;
                bool quar = f[1][0] == 'q';
                atomic_store(&d->state, quar ? Q_QUARANTINED : Q_COUNTING);
                if (quar) {
                    atomic_fetch_add(&SHM->nquar, 1);
                    (*nq)++;
                }
            } else if (n == 7 && strcmp(f[0], "g") == 0) {
                char k0[KEY_LEN], k1[KEY_LEN], path[REC_PATH], *x;
                uint64_t h0[GOOD_HANDLERS], h1[GOOD_HANDLERS];
                unsigned long long ph = strtoull(f[1], &x, 16);
                if (*x || !ph || !key_get(f[2], k0, true) ||
                    !key_get(f[3], k1, true) || !hands_get(f[4], h0) ||
                    !hands_get(f[5], h1) || !esc_get(f[6], path, sizeof path)) {
                    free(copy);
                    return "a malformed good-version line";
                }
                if (!pass)
                    continue;
                struct good *g = good_find(ph, true);
                memcpy(g->path, path, REC_PATH);
                memcpy(g->keys[0], k0, KEY_LEN);
                memcpy(g->keys[1], k1, KEY_LEN);
                for (int j = 0; j < GOOD_HANDLERS; j++) {
                    atomic_store(&g->hands[0][j], h0[j]);
                    atomic_store(&g->hands[1][j], h1[j]);
                }
                atomic_store(&g->fp0, k0[0] ? key_fp(k0) : 0);
                (*ng)++;
            } else {
                free(copy);
                return "a line of unknown kind";
            }
        }
        free(copy);
    }
    return NULL;
}

void hp_guard_tables_load(const char *cache_dir, const char *docroot)
{
    assert(SHM);
    char *file = tables_file(cache_dir, docroot);
    int fd = open(file, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno != ENOENT)
            hp_log_error("%s: %s; the quarantine starts empty", file,
                         strerror(errno));
        free(file);
        return;
    }
    struct stat st;
    char *text = NULL;
    const char *why = NULL;
    size_t len = 0;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
        why = "not a regular file";
    else if ((size_t)st.st_size > TABLES_MAX_BYTES)
        why = "too large";
    else {
        text = hp_xcalloc(1, (size_t)st.st_size + 1);
        ssize_t n;
        while (len < (size_t)st.st_size &&
               (n = read(fd, text + len, (size_t)st.st_size - len)) > 0)
            len += (size_t)n;
        if (memchr(text, '\0', len))
            why = "binary";
    }
    close(fd);
    int nq = 0, ng = 0, dropped = 0;
    bool other = false;
    if (!why) {
        table_lock();
        why = tables_parse(text, len, &nq, &ng, &dropped, &other);
        if (why) { /* a bad line: whatever was stored goes */
            memset(SHM->quar, 0, sizeof SHM->quar);
            memset(SHM->good, 0, sizeof SHM->good);
            atomic_store(&SHM->nquar, 0);
            nq = ng = 0;
        }
        table_unlock();
    }
    if (why)
        hp_log_error("%s: %s; ignored (the quarantine starts empty "
                     "and the file is replaced at its next change)",
                     file, why);
    else if (other)
        hp_log_info("%s was written by another hotpub version; the "
                    "quarantine starts empty",
                    file);
    else if (nq || ng || dropped)
        hp_log_info("%s: %d quarantined version%s and the good versions of "
                    "%d module%s restored%s",
                    file, nq, nq == 1 ? "" : "s", ng, ng == 1 ? "" : "s",
                    dropped ? " (entries of deleted pages dropped)" : "");
    /* What was read is what the file says: no write until a change, but
     * for entries dropped as it was read, which the next turn writes out
     * (else the page put back unchanged would find its entry again). */
    tables_saved_gen = atomic_load(&SHM->tables_gen) - (dropped ? 1u : 0u);
    tables_saved_at = hp_now();
    free(text);
    free(file);
}

void hp_guard_tables_save(const char *cache_dir, const char *docroot,
                          bool final)
{
    unsigned gen = atomic_load(&SHM->tables_gen);
    double now = hp_now();
    if (gen == tables_saved_gen ||
        (!final && now - tables_saved_at < TABLES_SAVE_EVERY))
        return;
    struct hp_buf b = {0};
    if (!tables_text(&b)) {
        hp_buf_free(&b);
        return;
    }
    tables_saved_gen = gen;
    tables_saved_at = now;
    hp_buf_printf(&b, "end %llx\n", (unsigned long long)fnv64(b.p, b.len));
    char *file = tables_file(cache_dir, docroot);
    char *tmp = hp_xasprintf("%s.tmp-%d", file, (int)getpid());
    const char *step = "open";
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 && errno == ENOENT && hp_mkdirs(cache_dir, 0700) == 0)
        fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    bool ok = fd >= 0;
    for (size_t off = 0; ok && off < b.len;) {
        ssize_t n = write(fd, b.p + off, b.len - off);
        if (n < 0 && errno == EINTR)
            continue;
        ok = n > 0;
        off += ok ? (size_t)n : 0;
        step = "write";
    }
    if (ok && (step = "fsync", fsync(fd) < 0))
        ok = false;
    int err = errno;
    if (fd >= 0 && close(fd) < 0 && ok) {
        ok = false;
        err = errno;
        step = "close";
    }
    if (ok && (step = "rename", rename(tmp, file) < 0)) {
        ok = false;
        err = errno;
    }
    if (!ok) {
        if (fd >= 0)
            unlink(tmp);
        if (!tables_failing)
            hp_log_error("cannot write %s (%s: %s): the quarantine will not "
                         "be remembered across a restart until it can be",
                         file, step, strerror(err ? err : EIO));
    } else if (tables_failing) {
        hp_log_info("%s written again", file);
    }
    tables_failing = !ok;
    hp_buf_free(&b);
    free(tmp);
    free(file);
}

/* ---- the parent's view: the shared area and its slots -------------------- */

int hp_guard_map(int nslots, int nrecs, int workers)
{
    size_t stride = sizeof(struct slot) + (size_t)nrecs * sizeof(struct rec);
    stride = (stride + 63) & ~(size_t)63;
    size_t size = sizeof(struct shm) + (size_t)nslots * stride;

    assert(!SHM && nslots > 0 && nrecs > 0);
    SHM = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
               -1, 0);
    if (SHM == MAP_FAILED) {
        SHM = NULL;
        hp_log_error("cannot map shared memory (%zu bytes): %s", size,
                     strerror(errno));
        return -1;
    }
    SHM->master = getpid();
    SHM->nslots = nslots;
    SHM->nrecs = nrecs;
    SHM->workers = workers;
    SHM->stride = stride;
    atomic_store(&SHM->gen, 1);
    return 0;
}

int hp_guard_nrecs(void)
{
    return SHM->nrecs;
}

void hp_guard_set_workers(int n)
{
    SHM->workers = n;
}

void hp_guard_set_generation(unsigned gen)
{
    atomic_store(&SHM->gen, gen);
}

void hp_guard_count_restart(void)
{
    atomic_fetch_add(&SHM->restarts, 1);
}

enum hp_slot_state hp_guard_slot_state(int slot)
{
    return (enum hp_slot_state)atomic_load(&slot_at(slot)->state);
}

void hp_guard_slot_start(int slot, unsigned gen)
{
    struct slot *s = slot_at(slot);
    assert(atomic_load(&s->state) == HP_SLOT_FREE);
    /* Records the last occupant used go idle (a stale "running" one would
     * fool the watchdog); the rest were never touched. */
    int used = atomic_load(&s->nrecs);
    for (int r = 0; r < used && r < SHM->nrecs; r++)
        atomic_store(&rec_at(s, r)->word, 0);
    memset(s, 0, sizeof *s);
    atomic_store(&s->crash_rec, -1);
    s->gen = gen;
    s->started = (double)time(NULL);
    atomic_store(&s->state, HP_SLOT_STARTING);
}

void hp_guard_slot_set_pid(int slot, pid_t pid)
{
    slot_at(slot)->pid = pid;
}

void hp_guard_slot_drain(int slot)
{
    assert(atomic_load(&slot_at(slot)->state) != HP_SLOT_FREE);
    atomic_store(&slot_at(slot)->state, HP_SLOT_DRAINING);
}

/*
 * The worker of slot was reaped: kill the process groups of the compiles
 * it was running (compile.c runs each compiler in a group of its own), as
 * its own stop (hp_compile_kill_running) or a --compile-timeout would.
 * Else a worker killed by SIGKILL (the heartbeat's, the OOM killer's, an
 * operator's) or a crash left the compiler and its children (cc1, as,
 * ld, a --cc wrapper's) running, orphaned, for up to --compile-timeout or
 * for ever. PR_SET_PDEATHSIG in the forked compiler was not chosen: it
 * reaches the compiler itself only (a child's is cleared at fork) and
 * fires when the forking thread ends, not the process. A group is named
 * by its leader's pid, which cannot be reused while the group has a
 * member; once it has none, a new group with that number would need the
 * pid space to wrap between the worker's death and this call.
 */
static void kill_compiles(struct slot *s)
{
    for (int i = 0; i < COMPILES_MAX; i++) {
        int pgid = atomic_exchange(&s->compiles[i], 0);
        if (pgid > 0)
            kill(-pgid, SIGKILL);
    }
}

void hp_guard_slot_free(int slot)
{
    kill_compiles(slot_at(slot));
    atomic_store(&slot_at(slot)->state, HP_SLOT_FREE);
}

bool hp_guard_slot_retire(int slot)
{
    return atomic_load(&slot_at(slot)->retire) != 0;
}

void hp_guard_count_retired(int slot)
{
    int c = atomic_load(&slot_at(slot)->retire);
    if (c > CAUSE_NONE && c < CAUSE_N)
        atomic_fetch_add(&SHM->causes[c], 1);
}

double hp_guard_slot_silence(int slot)
{
    struct slot *s = slot_at(slot);
    if (atomic_load(&s->state) != HP_SLOT_READY)
        return 0;
    return (double)(now_ns() - atomic_load(&s->beat_ns)) / 1e9;
}

void hp_guard_slot_silenced(int slot, double seconds)
{
    struct slot *s = slot_at(slot);
    snprintf(s->why, sizeof s->why,
             "no heartbeat for %.1f s (--worker-heartbeat-timeout): killed",
             seconds);
    atomic_store(&s->cause, CAUSE_HEARTBEAT);
}

/* ---- the parent: which request killed a worker --------------------------- */

/* The record the dying worker's requests were on: the one the dying thread
 * named (on_fatal, on_exit_hook) if it was running a handler, else the
 * only one running; -2 if the dying thread ran none, -1 if not known. */
static int culprit_of(struct slot *s, int *active)
{
    int nrecs = atomic_load(&s->nrecs), culprit = atomic_load(&s->crash_rec);
    int only = -1;
    *active = 0;
    for (int r = 0; r < nrecs && r < SHM->nrecs; r++) {
        if ((atomic_load(&rec_at(s, r)->word) & 3) != R_IDLE) {
            (*active)++;
            only = r;
        }
    }
    if (culprit >= 0 && (atomic_load(&rec_at(s, culprit)->word) & 3) == R_IDLE)
        culprit = -2; /* the crashing thread was not running a handler */
    if (culprit == -1 && *active == 1)
        culprit = only;
    return culprit;
}

/* "function\nfile:line\n..." (addr2line) as "function at file:line", the
 * innermost frame only; "" stays "". */
static void where_line(const char *where, char *out, size_t cap)
{
    size_t k = 0;
    for (int nl = 0; *where && k + 4 < cap; where++) {
        if (*where == '\n' && ++nl == 2)
            break;
        if (*where == '\n') {
            memcpy(out + k, " at ", 4);
            k += 4;
        } else {
            out[k++] = *where;
        }
    }
    out[k] = '\0';
}

/* Refuse the init of the object with this key from now on (guard_init_vet
 * answers why). Under the table lock; a ring of INITBAD_MAX. */
static void initbad_add(const char *key, const char *why)
{
    table_lock();
    initbad_put(key, why);
    table_unlock();
}

/* initbad_add's, for a caller that holds the table lock. */
static void initbad_put(const char *key, const char *why)
{
    int at = -1;
    for (int i = 0; i < INITBAD_MAX && at < 0; i++)
        if (strcmp(SHM->initbad[i].key, key) == 0)
            at = i;
    if (at < 0)
        at = (int)(SHM->ninitbad++ % INITBAD_MAX);
    copy_str(SHM->initbad[at].why, sizeof SHM->initbad[at].why, why);
    copy_str(SHM->initbad[at].key, sizeof SHM->initbad[at].key, key);
}

/* The dying worker was running a module's init or fini: say which, and
 * refuse that object's init from now on (guard_init_vet), since every
 * worker would die of it again; its file's next change is another key. */
static void hook_autopsy(struct slot *s, pid_t pid, unsigned gen,
                         const char *how)
{
    char where[sizeof s->hook_where], why[sizeof SHM->initbad[0].why];
    char what[48], hw[REC_PATH + 64];
    bool init = hook_loads(s->hook_name);
    int sig = atomic_load(&s->hook_sig);
    where_line(s->hook_where, where, sizeof where);
    hook_words(s->hook_name, s->hook_path, hw, sizeof hw);
    bool exited =
        sig == HOOK_EXIT || sig == HOOK__EXIT || sig == HOOK__EXIT_C99;
    if (exited)
        snprintf(what, sizeof what, "called %s(%d)", hook_exit_fn(sig),
                 s->hook_status);
    else if (sig == HOOK_TIMEOUT)
        snprintf(what, sizeof what, "ran past --handler-timeout, %d s",
                 s->hook_status);
    else if (sig == HOOK_QUICK_EXIT)
        snprintf(what, sizeof what, "called quick_exit");
    else
        snprintf(what, sizeof what, "crashed (%s)", signame(sig));
    hp_log_error(
        "worker %d (generation %u) %s%s%s%s in %s (object %s)%s%s%s", (int)pid,
        gen, how, sig < 0 ? " (the hook " : "", sig < 0 ? what : "",
        sig < 0 ? ")" : "", hw, s->hook_key[0] ? s->hook_key : "unknown",
        where[0] ? ", in " : "", where,
        init ? ": it is unavailable (503) until its file changes" : "");
    if (!init || !s->hook_key[0])
        return;
    bool ctor = strcmp(s->hook_name, "constructor") == 0;
    /* HP_DIAG_INIT_REFUSED or HP_DIAG_CTOR_REFUSED first: a 503 */
    snprintf(why, sizeof why,
             "%s %s in a worker process%s%s%s; it will not run again until "
             "the file changes",
             hw, what, ctor ? " as it loaded" : "", where[0] ? ": " : "",
             where);
    initbad_add(s->hook_key, why);
}

bool hp_guard_autopsy(int slot, pid_t pid, unsigned gen, const char *how,
                      int sig, int code, bool dev)
{
    struct slot *s = slot_at(slot);
    int active, culprit = culprit_of(s, &active);
    int cause = atomic_load(&s->cause);
    bool hook = atomic_load(&s->hook_sig) != 0;
    char line[REC_PATH + REC_HANDLER + 160];
    if (hook && cause != CAUSE_DESCRIPTORS && cause != CAUSE_HEARTBEAT) {
        hook_autopsy(s, pid, gen, how);
        culprit = -2;
    } else if (cause == CAUSE_DESCRIPTORS || cause == CAUSE_HEARTBEAT) {
        /* Not a crash: it said why it ended, or was killed for silence. */
        hp_log_error("worker %d (generation %u) %s: %s", (int)pid, gen, how,
                     s->why);
        culprit = -1;
    } else if (culprit >= 0) {
        rec_text(rec_at(s, culprit), line, sizeof line);
        hp_log_error("worker %d (generation %u) %s while running %s", (int)pid,
                     gen, how, line);
    } else if (!sig && code == 0 && culprit < 0) {
        /* A clean stop nobody asked for: a stop signal from elsewhere
         * (the worker's own log names the sender). */
        if (s->why[0])
            hp_log_error("worker %d (generation %u) %s without being asked "
                         "to stop: %s",
                         (int)pid, gen, how, s->why);
        else
            hp_log_error("worker %d (generation %u) %s without being asked "
                         "to stop: it got SIGTERM or SIGINT from another "
                         "process than its supervisor",
                         (int)pid, gen, how);
    } else if (sig == SIGKILL && culprit < 0) {
        /* No fault of the process: SIGKILL cannot be raised by a fault,
         * and its supervisor's own kills (timeouts, silence) are named
         * above; the kernel's OOM killer or an operator sent it. */
        hp_log_error("worker %d (generation %u) %s from outside the "
                     "process (the kernel's out-of-memory killer, or an "
                     "operator: see dmesg); no page handler was blamed",
                     (int)pid, gen, how);
    } else if (culprit == -2 || active == 0) {
        hp_log_error("worker %d (generation %u) %s while no page handler was "
                     "running on the failing thread (module init/fini, or "
                     "the server itself)",
                     (int)pid, gen, how);
    } else {
        hp_log_error("worker %d (generation %u) %s with %d page handlers "
                     "running (which one is not known):",
                     (int)pid, gen, how, active);
    }
    long stack = atomic_load(&s->overflow);
    if (sig && stack)
        hp_log_error("worker %d: the fault was a stack overflow: the "
                     "thread's stack (%ld KiB) ran out: %s",
                     (int)pid, stack >> 10,
                     hp_crash_stack_hint(atomic_load(&s->overflow_kind)));
    int nrecs = atomic_load(&s->nrecs);
    for (int r = 0; r < nrecs && r < SHM->nrecs; r++) {
        if (r == culprit || (atomic_load(&rec_at(s, r)->word) & 3) == R_IDLE)
            continue;
        rec_text(rec_at(s, r), line, sizeof line);
        hp_log_error("  request lost with worker %d: %s", (int)pid, line);
    }
    if (cause != CAUSE_DESCRIPTORS && cause != CAUSE_HEARTBEAT) {
        cause = sig ? CAUSE_CRASH : CAUSE_EXIT;
        atomic_fetch_add(&SHM->crashes, 1);
    }
    atomic_fetch_add(&SHM->causes[cause], 1);
    if (culprit >= 0 && !dev)
        strike(rec_at(s, culprit), sig, code);
    /* an init that crashed is refused from now on: no back-off either */
    return culprit >= 0 || hook;
}

/* ---- a new worker ---------------------------------------------------------
 */

/* server.h's ready: the parent counts this worker as serving. */
static void guard_ready(void)
{
    atomic_store(&ME->beat_ns, now_ns()); /* before the parent looks */
    int st = HP_SLOT_STARTING;
    atomic_compare_exchange_strong(&ME->state, &st, HP_SLOT_READY);
}

/* server.h's heartbeat: the accept thread found the process well. */
static void guard_heartbeat(void)
{
    atomic_store_explicit(&ME->beat_ns, now_ns(), memory_order_relaxed);
}

/* server.h's lost: the process is about to exit with status 70. */
/* server.h's stop_noted: the parent's log of the exit says why. */
static void guard_stop_noted(const char *why)
{
    copy_str(ME->why, sizeof ME->why, why);
}

static void guard_lost(const char *why)
{
    copy_str(ME->why, sizeof ME->why, why);
    atomic_store(&ME->cause, CAUSE_DESCRIPTORS);
}

/* server.h's retire: the worker's descriptors ran out (server.c said so
 * and stopped accepting): replaced through the flag --worker-memory-limit
 * sets, the parent starts its successor, then drains it. */
static void guard_retire(const char *why)
{
    int none = CAUSE_NONE;
    (void)why;
    atomic_compare_exchange_strong(&ME->retire, &none, CAUSE_FD_LEAK);
}

/* server.h's recent_pages: what this process's records say, running ones
 * and the latest first, each page and handler once. Reads what
 * run_begin wrote anyway: nothing is added to a request's cost. Another
 * thread may be rewriting a record meanwhile: each is copied and ended
 * here, at worst a torn name in a log line. */
static void guard_recent_pages(char *out, size_t cap)
{
    enum { SHOW = 5 };
    char path[SHOW][REC_PATH], handler[SHOW][REC_HANDLER];
    char p[REC_PATH], h[REC_HANDLER];
    int shown = 0;
    int nrecs = atomic_load(&ME->nrecs);
    if (nrecs > SHM->nrecs)
        nrecs = SHM->nrecs;
    size_t len = 0;
    out[0] = '\0';
    /* SHOW times: the most recent record not shown yet (running first). */
    while (shown < SHOW) {
        int best = -1;
        bool best_run = false;
        long long best_t = 0;
        for (int i = 0; i < nrecs; i++) {
            struct rec *r = rec_at(ME, i);
            memcpy(p, r->path, sizeof p);
            memcpy(h, r->handler, sizeof h);
            p[sizeof p - 1] = h[sizeof h - 1] = '\0';
            bool dup = !p[0];
            for (int k = 0; k < shown && !dup; k++)
                dup = strcmp(path[k], p) == 0 && strcmp(handler[k], h) == 0;
            if (dup)
                continue;
            bool run = (atomic_load(&r->word) & 3) != R_IDLE;
            long long t = atomic_load(&r->started);
            if (best < 0 || (run && !best_run) ||
                (run == best_run && t > best_t)) {
                best = i, best_run = run, best_t = t;
                memcpy(path[shown], p, sizeof p);
                memcpy(handler[shown], h, sizeof h);
            }
        }
        if (best < 0)
            break;
        int k = snprintf(out + len, cap - len, "%s%s%s%s%s", shown ? ", " : "",
                         rel_path(path[shown]), handler[shown][0] ? " " : "",
                         handler[shown], best_run ? " (running)" : "");
        if (k < 0 || (size_t)k >= cap - len) {
            out[len] = '\0';
            break;
        }
        len += (size_t)k;
        shown++;
    }
}

static void watchdog_start(void)
{
    pthread_t t;
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&a, 256 * 1024);
    if (pthread_create(&t, &a, watchdog_main, NULL) != 0)
        hp_log_error("cannot start the handler-timeout watchdog");
    pthread_attr_destroy(&a);
}

static void catch_fatal_signals(void)
{
    struct sigaction sa = {.sa_sigaction = on_fatal,
                           .sa_flags = SA_RESETHAND | SA_NODEFER | SA_SIGINFO |
                                       SA_ONSTACK};
    int fatal[] = {SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL, SIGSYS};
    for (size_t k = 0; k < sizeof fatal / sizeof *fatal; k++)
        sigaction(fatal[k], &sa, NULL);
}

/* Why the supervisor drained this worker (server.h's stop_cause): the
 * guard retired it (a timeout, recycling), or a SIGHUP's generation
 * replaced it, or it belonged to a reload that was abandoned. */
static bool guard_stop_cause(char *out, size_t cap)
{
    unsigned now = atomic_load(&SHM->gen);
    int retire = atomic_load(&ME->retire);
    if (retire == CAUSE_TIMEOUT)
        snprintf(out, cap,
                 "retired after a handler ran past "
                 "--handler-timeout; a new worker serves");
    else if (retire == CAUSE_RECYCLE)
        snprintf(out, cap,
                 "recycled (--worker-max-requests or "
                 "--worker-memory-limit); a new worker serves");
    else if (retire == CAUSE_FD_LEAK)
        snprintf(out, cap,
                 "replaced: its descriptors ran out (a page leaks them? "
                 "see above); a new worker serves");
    else if (ME->gen < now)
        snprintf(out, cap,
                 "(generation %u) retired after reload: "
                 "generation %u serves",
                 ME->gen, now);
    else if (ME->gen > now)
        snprintf(out, cap,
                 "(generation %u) retired: its reload was "
                 "abandoned, generation %u serves",
                 ME->gen, now);
    else
        return false;
    return true;
}

/* The single process's vet: no quarantine (nothing would replace the
 * process), only whether this request may see the crash page. */
static int alone_vet(struct hp_pinset *ps, bool dev, bool details, char **html)
{
    (void)ps;
    (void)html;
    atomic_store_explicit(&DEV, dev, memory_order_relaxed);
    tl_details = details;
    return 0;
}

void hp_guard_enter_alone(struct hp_config *cfg, struct hp_server_hooks *hooks)
{
    assert(!ME);
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    int nrecs = (int)(ncpu > 0 ? ncpu : 1) + 2 * cfg->threads + 16;
    if (hp_guard_map(1, nrecs, 0) < 0)
        return; /* logged; a crash then ends the process unanswered */
    hp_guard_slot_start(0, 1);
    ME = slot_at(0);
    CFG = cfg;
    ME->pid = getpid();
    ALONE = true;
    atomic_store_explicit(&DEV, cfg->dev, memory_order_relaxed);
    root_set(cfg->docroot);
    catch_exits(); /* first: EXIT_PID, which on_fatal checks */
    catch_fatal_signals();
    hp_loader_set_init_vet(guard_init_vet);
    hooks->run_begin = guard_run_begin;
    hooks->run_end = guard_run_end;
    hooks->run_alive = guard_run_alive;
    hooks->run_stack = guard_run_stack;
    hooks->vet = alone_vet;
    hooks->load_signal = guard_load_signal;
    hooks->recent_pages = guard_recent_pages;
}

void hp_guard_enter(int slot, struct hp_config *cfg,
                    struct hp_server_hooks *hooks)
{
    assert(SHM && !ME && slot >= 0 && slot < SHM->nslots);
    ME = slot_at(slot);
    CFG = cfg;
    ME->pid = getpid();
    root_set(cfg->docroot);
    catch_exits(); /* first: EXIT_PID, which on_fatal checks */
    catch_fatal_signals();
    hp_compile_share_running(ME->compiles, COMPILES_MAX);
    hp_loader_set_init_vet(guard_init_vet);
    hp_loader_set_load_end(guard_load_end);
    hp_loader_set_ctors_end(guard_ctors_end);
    if (cfg->handler_timeout > 0) {
        hp_loader_set_hook_watch(hook_watch_begin, hook_watch_end);
        watchdog_start();
    }
    hooks->vet = guard_vet;
    hooks->rescue = guard_rescue;
    hooks->run_begin = guard_run_begin;
    hooks->run_end = guard_run_end;
    hooks->run_alive = guard_run_alive;
    hooks->run_stack = guard_run_stack;
    hooks->stuck = guard_stuck;
    hooks->ready = guard_ready;
    hooks->heartbeat = guard_heartbeat;
    hooks->lost = guard_lost;
    hooks->retire = guard_retire;
    hooks->recent_pages = guard_recent_pages;
    hooks->status_json = guard_status_json;
    hooks->stop_cause = guard_stop_cause;
    hooks->metrics_text = guard_metrics_text;
    hooks->teardown = guard_teardown;
    hooks->load_signal = guard_load_signal;
    hooks->stop_noted = guard_stop_noted;
    hooks->thread_counts = &ME->threads;
}
