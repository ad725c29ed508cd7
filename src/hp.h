/*
 * hp.h - declarations shared by the server's subsystems (not for pages).
 *
 * Each file in src/ owns one subsystem and says at its top what it owns and
 * what it may not touch. This header is the contract between them.
 */
#ifndef HP_INTERNAL_H
#define HP_INTERNAL_H

/* Every file in src/ includes this header first. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#define HP_SERVER_BUILD 1
#include "hotpub.h"

#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>

#define HP_VERSION_STRING "0.1.0"

/* ---- configuration (config.c) ------------------------------------------ */

struct hp_config {
    char *docroot;       /* as given on the command line / config file      */
    char *listen;        /* "ADDR:PORT"                                     */
    int threads;         /* handler threads: the floor                      */
    int max_threads;     /* ... the ceiling they grow to (pool.c)           */
    size_t thread_stack; /* bytes of stack per handler thread               */
    double thread_idle; /* seconds idle before a thread above the floor exits */
    int module_share;   /* % of max_threads one module may run on          */
    int dev;            /* 1 dev, 0 production, -1 auto (dev on loopback)  */
    char *cache_dir;    /* compile cache                                   */
    char *cc;           /* page compiler                                   */
    char *cflags;       /* extra flags for the page compiler               */
    char *fast_cc;      /* the fast tier's compiler; "off": page cc -O0    */
    int fast_tier;      /* 1 on, 0 off, -1 auto (on in dev mode)           */
    char *include_dir;  /* where hotpub.h lives                            */
    /* the page compiler's limits (compile.c, docs/configuration.md) */
    int compile_timeout;         /* seconds for one compile, wall clock      */
    size_t compile_memory_limit; /* RLIMIT_AS bytes per process, 0 = off      */
    int compile_cpu_limit;       /* RLIMIT_CPU seconds per process, 0 = off  */
    size_t compile_file_limit;   /* RLIMIT_FSIZE bytes per file, 0 = off      */
    double revalidate;    /* stat fallback period in seconds, 0 = off        */
    int settle_ms;        /* quiet time after the last fs event              */
    int stale_wait_ms;    /* production: a stale module's request waits this
                             long for its build, then gets the current one */
    int inline_pages;     /* promote proven-fast pages to the event loops    */
    int coroutines;       /* run pages that wait on the database on the
                             reactor (reactor.c)                          */
    char *access_log;     /* path, "-" for stdout, "off"                     */
    size_t max_body;      /* bytes; larger bodies get 413                    */
    size_t max_header;    /* bytes; larger request heads get 431             */
    int timeout;          /* idle connection timeout, seconds                */
    int shutdown_timeout; /* bounded wait for in-flight requests, seconds   */
    unsigned conn_limit;  /* max simultaneous connections                    */
    int max_fields;       /* query + form fields per request; more get 413    */
    int header_timeout;   /* seconds for a whole request head; then 408       */
    int body_timeout;     /* seconds for a body, plus 1 s per body_min_rate B */
    int body_min_rate;    /* bytes per second a body must keep up             */
    int max_streams;  /* streamed responses at once; 0 = half --max-threads */
    char *upload_dir; /* spooled uploads; NULL = $TMPDIR or /tmp          */
    char *warm;       /* check: the live root DOCROOT is warmed as; NULL */
    /* processes (master.c, docs/operations.md) */
    int workers;             /* worker processes; 0 = single process          */
    int io_threads;          /* event-loop threads a process; 0 = auto        */
    double handler_timeout;  /* seconds a handler may run; 0 = no limit       */
    int worker_max_requests; /* recycle a worker after this many page runs */
    size_t worker_memory_limit; /* ... or past this RSS in bytes; 0 = off    */
    double worker_heartbeat_timeout; /* kill a silent worker after; 0 = off */
    char *user, *group; /* drop privileges to these after binding        */
    char *pid_file;     /* written by the parent; NULL = none            */
    char *error_log;    /* stderr goes here (reopened on SIGUSR1)        */
    /* the default database pool (db.c, docs/database.md) */
    char *db;               /* URL, "off", or NULL: the default SQLite file */
    int db_pool_size;       /* 0 = auto: 8 PostgreSQL, 4 SQLite             */
    int db_acquire_timeout; /* ms; 0 = do not wait                          */
    int db_max_lifetime;    /* seconds; 0 = unlimited                       */
    int db_statement_cache; /* statements per connection; 0 = off           */
    /* sessions (session.c, docs/pages.md#sessions) */
    char *session_cookie; /* the cookie's name                         */
    int session_lifetime; /* seconds a session lives unused            */
    int session_anonymous_lifetime; /* ... one that holds no data            */
    int session_secure_cookie;  /* always mark the cookie Secure             */
    int session_purge_interval; /* seconds between purges; 0 = never         */
    int session_lock_timeout;   /* ms to wait for a session's lock          */
    /* operations (metrics.c, dashboard.c, tls.c, docs/operations.md) */
    char *tls_cert;       /* PEM certificate chain file; NULL = plain HTTP  */
    char *tls_key;        /* PEM private key file                           */
    char *tls_priorities; /* GnuTLS priority string                         */
    char *tls_redirect;   /* ADDR:PORT of a plain listener sending to HTTPS */
    char *admin_token;    /* bearer token for /_hotpub/ off loopback; NULL  */
    char *health_allow;   /* CIDR list allowed /_hotpub/health; NULL = lo   */
    char *allowed_hosts;  /* Host names /_hotpub/ and dev details answer  */
    double drain_delay;   /* seconds health says 503 before stopping       */
    int metrics;          /* count requests for /_hotpub/metrics          */
};

void hp_config_defaults(struct hp_config *c);
/* Load an INI file into c. Returns 0, or -1 after printing the error. */
int hp_config_load(struct hp_config *c, const char *path);
/* Where hp_config_load's error goes: sink(message) (no "hotpub: " prefix,
 * no newline), or, with NULL (the default), "hotpub: message" on standard
 * error. A reload (SIGHUP) logs it with the log's time and level. */
void hp_config_set_error_sink(void (*sink)(const char *msg));
/* Settings that cannot go together (tls-cert without tls-key, tls-redirect
 * without a certificate): 0, or -1 with why in err. Run on the whole
 * configuration, after the file and the flags, by serve and check alike. */
int hp_config_check(const struct hp_config *c, char *err, size_t errlen);
/* Apply one setting by its config-file name ("listen", "threads", ...).
 * Returns 0, or -1 with a message in err. */
int hp_config_set(struct hp_config *c, const char *key, const char *value,
                  char *err, size_t errlen);
void hp_config_free(struct hp_config *c);

/*
 * The settings table: one row per setting, the single place its key, type,
 * range, default and help live. hp_config_set and the INI loader parse by
 * it; main.c builds its flags, --help and `hotpub config-reference` (the
 * table in docs/configuration.md) from it. Adding a setting is a field in
 * struct hp_config, its default in hp_config_defaults and one row here.
 */
enum hp_setting_type {
    HP_SET_STRING,   /* char *; empty refused unless .empty_ok            */
    HP_SET_BOOL,     /* int 0/1 (true/false/yes/no/on/off/1/0)            */
    HP_SET_TRISTATE, /* int 0/1, or -1 for "auto"                        */
    HP_SET_INT,      /* int in [min, max]; "auto" too when .auto_value    */
    HP_SET_UINT,     /* unsigned in [min, max]                            */
    HP_SET_SIZE,     /* size_t bytes in [min, max], k/m/g = powers of 1024 */
    HP_SET_SECONDS,  /* double: 0 or "off", else seconds in [min, max]    */
    HP_SET_LISTEN,   /* char *, normalized "A.B.C.D:PORT" / "[V6]:PORT"   */
    HP_SET_DB,       /* char *: sqlite:PATH, postgres(ql)://..., off      */
};
enum hp_flag_kind {
    HP_FLAG_VALUE,  /* --KEY VALUE                                       */
    HP_FLAG_SWITCH, /* --KEY sets true, --no-KEY false                   */
    HP_FLAG_NONE,   /* config key only (docroot: the DOCROOT argument)   */
};
struct hp_setting {
    const char *key;     /* config key and long flag name: "max-body"    */
    const char *arg;     /* the flag's argument in help: "BYTES"         */
    const char *section; /* heading it is listed under                   */
    const char *help;    /* plain text, no trailing period               */
    enum hp_setting_type type;
    enum hp_flag_kind flag;
    size_t off;              /* offsetof(struct hp_config, the field)         */
    double min, max;         /* numeric types                                */
    const char *unit;        /* "s", "ms" or NULL, after the range            */
    const char *zero;        /* what 0 means ("off", "one process") or NULL  */
    int (*auto_value)(void); /* HP_SET_INT: "auto" gives this            */
    const char *noun;        /* HP_SET_STRING: "the pid file", for errors    */
    bool empty_ok;           /* HP_SET_STRING: "" allowed (NULL if .null)    */
    bool empty_null;         /* HP_SET_STRING: "" means NULL (the default)   */
    bool path;               /* relative in a config file = to its directory */
    const char *def;         /* the default as documented, when it depends on
                                the machine or NULL means something; else the
                                docs show hp_config_defaults' value          */
    bool def_here;           /* --help also shows this machine's value        */
    /* extra check of the value, or NULL (cc: one word) */
    int (*check)(const char *value, char *err, size_t errlen);
};
extern const struct hp_setting hp_settings[];
extern const size_t hp_settings_count;
/* By key, with '_' = '-' and any case ("max_body", "Max-Body"); or NULL. */
const struct hp_setting *hp_setting_find(const char *key);
/* The bounds, in ms, of the waits for a database connection and for a
 * session's lock: the setting, or its "auto" (the default): 5000 and 10000,
 * or half of handler-timeout if that is less (docs/configuration.md). */
int hp_config_db_acquire_ms(const struct hp_config *c);
int hp_config_session_lock_ms(const struct hp_config *c);
/* c's value of s as text ("8M", "30", "auto", "none"), into buf. */
void hp_setting_value_text(const struct hp_setting *s,
                           const struct hp_config *c, char *buf, size_t len);
/* The accepted values ("1-1024 or auto", "0 (off) or 0.01-86400 s") with
 * dash between numbers, into buf; "" for settings without a range. */
void hp_setting_range_text(const struct hp_setting *s, const char *dash,
                           char *buf, size_t len);

/* A worker process's handler-thread counts, published where its supervisor
 * reads them (pool.c stores them as they change; guard.c shows every
 * worker's in status.json). */
struct hp_thread_counts {
    atomic_int live, busy, max;
};

/* ---- utilities (util.c) -------------------------------------------------- */

void hp_log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void hp_log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* What names this process in the start-up lines a SIGHUP's new workers
 * repeat ("worker 4114 (generation 2): "), "" by default (server.c sets
 * it in a worker). */
void hp_log_set_who(const char *who);
const char *hp_log_who(void);
void hp_vlog(const char *level, const char *fmt, va_list ap);
/* hp_log_error for a process a page forked: the log lock may be held by a
 * thread that does not exist in it, so the line (at most 1 KiB, cut
 * beyond) goes out in one write(2) without the lock. */
void hp_log_error_forked(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));
/*
 * A page's mistake the API refuses (a NULL argument): whether to say it
 * now. At most once a minute for each page, function and argument in a
 * process, since a page that makes one makes it on every request and the
 * line must not fill the disk; *skipped: how many were left out since the
 * last line. fn and what are string literals (compared by address); page
 * may be NULL (no request). Past 63 kinds, the rest share one slot.
 */
bool hp_log_misuse_allowed(const char *page, const char *fn,
                           const char *what, long *skipped);

void *hp_xmalloc(size_t n);
void *hp_xcalloc(size_t n, size_t m);
void *hp_xrealloc(void *p, size_t n);
char *hp_xstrdup(const char *s);
char *hp_xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

struct hp_buf {
    char *p;
    size_t len, cap;
};
int hp_buf_reserve(struct hp_buf *b, size_t extra);
int hp_buf_append(struct hp_buf *b, const void *data, size_t len);
int hp_buf_puts(struct hp_buf *b, const char *s);
int hp_buf_printf(struct hp_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
int hp_buf_vprintf(struct hp_buf *b, const char *fmt, va_list ap);
int hp_buf_html(struct hp_buf *b, const char *s); /* HTML-escaped */
int hp_buf_json(struct hp_buf *b, const char *s); /* quoted JSON string */
void hp_buf_free(struct hp_buf *b);

/* 128-bit non-cryptographic hash, as 32 hex chars. */
struct hp_hash {
    uint64_t a, b;
};
void hp_hash_init(struct hp_hash *h);
void hp_hash_update(struct hp_hash *h, const void *data, size_t len);
void hp_hash_hex(const struct hp_hash *h, char out[33]);
/* Hash a file's content into h. Returns 0, or -1 (errno set). */
int hp_hash_file(struct hp_hash *h, const char *path);

double hp_now(void);     /* CLOCK_MONOTONIC seconds */
int64_t hp_now_ns(void); /* CLOCK_MONOTONIC nanoseconds */
/* Call after MHD_resume_connection, on any thread: the event loop that
 * owns the connection may have no inter-thread channel to notice it (when
 * the reactor's thread runs it, server.c sets the hook to poke that
 * thread). No-op until set. */
void hp_resumed(void);
void hp_set_resumed_hook(void (*fn)(void));
/* pid has exited for certain: gone (ESRCH) or a zombie waiting to be
 * reaped. A live process of another user (EPERM) is not dead. */
bool hp_pid_dead(pid_t pid);

/* The CPUs this process may run on: its affinity mask (taskset, a cgroup
 * cpuset), else the online CPUs; at least 1. What "auto" sizes by. */
int hp_cpus(void);

/* What identifies one state of a file: a change of any field is a change. */
struct hp_fid {
    dev_t dev;
    ino_t ino;
    off_t size;
    int64_t mtime_ns, ctime_ns;
};
/* stat() path into f. Returns 0, or -1 (errno set). */
int hp_fid_stat(const char *path, struct hp_fid *f);
bool hp_fid_eq(const struct hp_fid *a, const struct hp_fid *b);

/* mkdir -p. Returns 0 or -1. */
int hp_mkdirs(const char *path, mode_t mode);
/* DIR, a directory directly in the cache dir (obj, run-PID) that a write
 * found missing (ENOENT): the cache dir was removed under the running
 * server (rm -rf, a tmp cleaner). Creates both again as start-up does
 * (0700), logging one line for the cache dir; 0, or -1 with errno. The
 * caller retries its write once. */
int hp_cache_subdir_restore(const char *dir);

/* ---- compiling pages (compile.c) --------------------------------------- */

struct hp_dep {
    char *path;        /* absolute, inside the document root */
    struct hp_fid fid; /* as seen just before compiling      */
};

/* The compile tiers (docs/design.md, "Tiered compile"): fast is tcc (or
 * the page compiler at -O0), published at once; optimized is the page
 * compiler with --cflags, built behind it. */
enum hp_tier { HP_TIER_OPTIMIZED = 0, HP_TIER_FAST = 1 };

struct hp_artifact {
    enum hp_tier tier;
    char *so_path;         /* shared object in the compile cache              */
    struct hp_fid src_fid; /* the source as it was read (stable across it);
                            * kept by a failed compile too */
    struct hp_dep *deps;   /* headers from inside the document root           */
    size_t ndeps;
    bool cache_hit; /* true when no compiler ran                        */
};

struct hp_compiler;
struct hp_compiler *hp_compiler_new(const struct hp_config *cfg,
                                    const char *root_canon);
void hp_compiler_free(struct hp_compiler *c);
/*
 * Warm the compile cache for a release that is not live yet (hotpub check
 * --warm): from now on c reads every source and header under its root from
 * the same relative path under tree (an existing directory) while keying,
 * naming (#line, __FILE__) and recording dependencies by the root's paths,
 * so that once the root (a symlink) points to tree the server finds every
 * object in the cache. Failed compiles are not cached in this mode.
 * Returns 0, or -1 with errno from realpath(3).
 */
int hp_compiler_stage(struct hp_compiler *c, const char *tree);
/*
 * Produce a loadable object for a page source (.c: compile or take from the
 * compile cache; .so: the file itself). On failure returns -1 and sets *diag
 * to a malloc'd, human-readable diagnostic; returns HP_COMPILE_RACED when a
 * header changed while the compiler ran (build again).
 */
#define HP_COMPILE_RACED (-2)
int hp_compile(struct hp_compiler *c, const char *src, struct hp_artifact *out,
               char **diag);
/* hp_compile for one tier; its objects have keys of their own. */
int hp_compile_tier(struct hp_compiler *c, const char *src, enum hp_tier tier,
                    struct hp_artifact *out, char **diag);
/*
 * Whether the compiler cc (a path, or a name looked up in PATH as execvp
 * does; NULL = "cc") exists and may be executed: 0, or -1 after logging
 * which program and the OS error (strerror). For the supervisor at start
 * and at SIGHUP, before workers depend on it.
 */
int hp_compiler_check(const char *cc);
/* A stopping server: kill (SIGKILL) the process group of every compile
 * running in this process, as --compile-timeout does, and of any that
 * starts from now on. Async-signal-safe. */
void hp_compile_kill_running(void);
/* Keep the list of this process's running compiles (their process
 * groups, 0 for a free place) in pgids[n] instead of private memory: a
 * worker's is in memory its supervisor reads (guard.c), which kills those
 * groups when it reaps a worker that died, however it died (SIGKILL
 * included), since nothing in the worker can then. Before any compile
 * starts. */
void hp_compile_share_running(_Atomic int *pgids, int n);
/* The opening of a compile's diagnostic when the compiler itself did not
 * run (missing, not executable): no edit of the page helps. */
#define HP_DIAG_NO_COMPILER "the compiler did not run: "
/* A load failure that is the source's fault ("undefined symbol: f": a
 * function declared but defined nowhere) as a diagnostic naming each
 * file:line that uses it, then diag; NULL for any other failure. */
char *hp_compile_explain_load(const char *src, const char *diag);
/* Whether tcc does the fast tier (else the page compiler at -O0). */
bool hp_compiler_has_tcc(const struct hp_compiler *c);
void hp_artifact_free(struct hp_artifact *a);
/* Number of compiler processes run (for tests and status). */
unsigned long hp_compiler_runs(struct hp_compiler *c);
const char *hp_compiler_root(struct hp_compiler *c);

/* ---- the packages a page declares (pkg.c) ------------------------------ */

#define HP_PKG_MAX 16       /* HP_PKG declarations per page, at most      */
#define HP_PKG_NAME_MAX 128 /* bytes of a package name, with its NUL       */
struct hp_pkgs {
    size_t n;
    char name[HP_PKG_MAX][HP_PKG_NAME_MAX]; /* in the order declared     */
    int line[HP_PKG_MAX];                   /* of the declaration, from 1 */
};
/* Whether name[0..len) may be a package: [A-Za-z0-9_.+-], not starting
 * with '-', shorter than HP_PKG_NAME_MAX. */
bool hp_pkg_name_ok(const char *name, size_t len);
/*
 * The HP_PKG("name") declarations of a page source, outside comments and
 * literals, duplicates once. Returns 0, or -1 with "LINE: error: message"
 * in err for a malformed one (no string, a bad name, too many).
 */
int hp_pkg_scan(const char *text, size_t len, struct hp_pkgs *out, char *err,
                size_t errlen);

/* ---- versions (loader.c) and the module cache (cache.c) ---------------- */

typedef struct hp_cache hp_cache;
typedef struct hp_entry hp_entry;
typedef struct hp_version hp_version;

#define HP_MAX_APPS 16        /* application modules above one page, at most */
#define HP_MAX_PATH_PARAMS 32 /* path parameters one request may carry    */
#define HP_MAX_SEGS 64        /* URL segments the resolver looks through  */

typedef void *(*hp_init_fn)(hp_module *m, void *previous);
typedef void (*hp_fini_fn)(hp_module *m, void *state, bool handed_over);

/* What init and fini see; one per version. */
struct hp_module {
    hp_version *v;
    char *error; /* set by hp_module_error during init */
};

/* Request hooks a module may export, as hp__hook_<name>. */
enum hp_hook { HP_PREPARE, HP_COMMIT, HP_ROLLBACK, HP_RELEASE, HP_NHOOKS };

/* One loaded, immutable version of a module. Requests pin it. */
struct hp_version {
    atomic_long refs; /* +1 while current, +1 per pinning request */
    uint64_t id;
    const char *path; /* the module's source (owned by its entry) */
    hp_entry *entry;
    void *dl;              /* dlopen handle                            */
    bool has_tls;          /* defines thread-local variables (PT_TLS)  */
    /* imports what keeps per-thread state ("uses pthread_setspecific",
     * hp_object_thread_state); "" none. Off the reactor as has_tls. */
    char thread_state[256];
    char *so_path;         /* private copy that was dlopen'ed          */
    struct hp_fid src_fid; /* the source as compiled                   */
    struct hp_dep *deps;
    size_t ndeps;
    double loaded_at;
    enum hp_tier tier; /* which compile tier built it        */
    hp_module mod;
    void *state;      /* what init returned                       */
    bool initialised; /* init ran and succeeded: fini is due      */
    bool handed_over; /* the successor adopted state whole        */
    hp_fini_fn fini;
    hp_handler_fn hooks[HP_NHOOKS];
    hp_version *next_retired;
    struct hp_handler_slot {
        atomic_int state; /* 0 free, 1 being filled, 2 ready */
        hp_handler_fn fn; /* NULL: the module has no such handler */
        char name[48];
    } handlers[8]; /* memo of handler lookups (hp_version_handler) */
    /* how the server runs this version (placement.c, server.c) */
    atomic_uint fast_runs;  /* runs that finished under the slow mark  */
    atomic_uint slow_runs;  /* recent ones that did not                 */
    atomic_bool slow;       /* demoted: never inline again              */
    atomic_bool run_inline; /* promoted to the event-loop threads       */
    atomic_bool suspect;    /* an inline run was slow by the wall clock */
    atomic_uint suspicions; /* ... not for want of a CPU: each doubles
                               the fast runs re-promotion needs      */
    atomic_bool waits;      /* a probed run blocked (placement.c)       */
    atomic_bool uses_db;    /* a run took a pooled connection (hp_db)   */
    atomic_uint coro_runs;  /* runs in a row that could run on the reactor */
    atomic_bool run_coro;   /* runs as a coroutine on the reactor        */
    atomic_bool coro_never; /* held the reactor, or streams: never again */
    atomic_bool coro_tls_said; /* logged why its chain stays off it      */
};

/*
 * Copy `so` to a private path in rundir, dlopen it, check its ABI and run
 * its init with `previous`. Returns the version (refs 0, not published) or
 * NULL with *diag set.
 */
hp_version *hp_version_open(const char *so, const char *rundir, uint64_t id,
                            const char *path, void *previous, char **diag);
/* Run fini (if init ran), dlclose, remove the private copy, free. */
void hp_version_close(hp_version *v);

/*
 * A module's lifecycle hook (init, fini) running on this thread: what a
 * fatal-signal handler needs to name it. path is the module's source,
 * hook "init" or "fini", or "constructor" or "destructor" (the object's
 * own, run by dlopen and dlclose: base 0 while dlopen runs), so_path the
 * object it runs from.
 */
struct hp_hook_run {
    const char *path;
    const char *hook;
    const char *so_path;
    uintptr_t base; /* where the object was loaded (link map l_addr) */
    /* The object's PT_LOAD span [lo, hi), found before the hook runs (0, 0:
     * unknown), for naming the hook's call when the fault (or the exit) is
     * in a function it called: a signal handler cannot look it up. */
    uintptr_t lo, hi;
};
/* The hook running on the calling thread, or NULL (async-signal-safe: a
 * thread-local read). */
const struct hp_hook_run *hp_hook_running(void);
/*
 * The host's check before a version's init runs (guard.c: that object's
 * init killed a worker before): NULL to run it, else the diagnostic the
 * load fails with (malloc'd; it should begin with HP_DIAG_INIT_REFUSED).
 * path is the module's source, so_path its object (the compile cache's,
 * asked before dlopen, which runs its constructors). Set once, before
 * serving; NULL (the default) runs every init.
 */
typedef char *(*hp_init_vet_fn)(const char *path, const char *so_path);
void hp_loader_set_init_vet(hp_init_vet_fn vet);
/*
 * The host's word that a load its vet let run has ended on this thread
 * (the object loaded, or failed to, and its init returned): the process
 * survived its constructors and init (guard.c lets the other workers,
 * waiting for this first load of the object, load it too). Set once,
 * before serving; NULL (the default) is told nothing.
 */
typedef void (*hp_load_end_fn)(void);
void hp_loader_set_load_end(hp_load_end_fn end);
/*
 * The host's word that a load's constructors have run (dlopen returned, or
 * failed) on this thread and its init is about to: guard.c's lone worker
 * accepts connections again. Set once, before serving; NULL: told nothing.
 */
void hp_loader_set_ctors_end(hp_load_end_fn end);
/*
 * The host's watch over init and fini hooks (guard.c: a hook that runs
 * past --handler-timeout is answered and its worker replaced, as a
 * handler's would be): begin right before the hook runs, on its thread,
 * with the run on record (hp_hook_running); end right after it returns.
 * Set once, before serving; NULL (the default) watches nothing. A nested
 * hook (a fini run from inside an init) is watched as the outer one.
 */
typedef void (*hp_hook_watch_fn)(const struct hp_hook_run *run);
void hp_loader_set_hook_watch(hp_hook_watch_fn begin, hp_hook_watch_fn end);
/* The start of a load diagnostic that says the init hook crashed a worker
 * process, or ran past --handler-timeout in one: both begin with
 * HP_DIAG_INIT_REFUSED, and server.c answers such a module's requests with
 * 503. */
#define HP_DIAG_INIT_CRASHED "the init hook crashed"
#define HP_DIAG_INIT_HUNG "the init hook ran past --handler-timeout"
#define HP_DIAG_INIT_REFUSED "the init hook "
/* ... or that a constructor of the object did (guard.c's refusal). */
#define HP_DIAG_CTOR_REFUSED "a constructor of the "
/* The start of a dev-mode request's refusal when the build of the page
 * it waited for did not end by the handler's bound (cache.c's
 * still_building): a 503 with Retry-After, not a failure of the page. */
#define HP_DIAG_BUILDING "still building: "
/* diag says the module is refused for its init hook or a constructor
 * (HP_DIAG_INIT_REFUSED, HP_DIAG_CTOR_REFUSED): a 503, not a 500. */
bool hp_diag_is_refused(const char *diag);
/* The init prefix of a load's diagnostic (loader.c): "init failed: " */
#define HP_DIAG_INIT_FAILED "init failed: "
/* Whether a load's diagnostic is the module's init refusing or crashing
 * (the object itself loaded): not a reason to try another build of it. */
bool hp_diag_is_init(const char *diag);
/* In a load's diagnostic (after HP_DIAG_CTOR_REFUSED): the load was not
 * tried because another page's constructors have been running inside
 * dlopen for more than 1.5 s in this process (loader.c). Transient: the
 * module cache tries such a load again rather than keep the error. */
#define HP_DIAG_DL_BUSY "(inside dlopen, which holds the dynamic loader's lock)"
bool hp_diag_is_busy(const char *diag);
/* How long (s) the dlopen running in this process has run, 0 if none; its
 * page's source into page (cap bytes). */
double hp_loader_dlopen_running(char *page, size_t cap);
/* The running dlopen will never return (past --handler-timeout in the
 * single process): loads refused from now on say "restart hotpub". */
void hp_loader_dlopen_hopeless(void);
/* Whether this thread's last load was not tried for that reason (no
 * constructor ran): for the host's load_end (guard.c frees its claim). */
bool hp_loader_load_untried(void);
/* The address span [*lo, *hi) of the PT_LOAD segments of the object
 * so_path loaded at base (its link map's l_addr); false (and 0, 0) when no
 * such object is loaded. Takes the dynamic loader's lock: never from a
 * signal handler (look it up before, as the hooks' records and guard.c's
 * per-thread range do). */
bool hp_object_span(const char *so_path, uintptr_t base, uintptr_t *lo,
                    uintptr_t *hi);
/* Whether the object file so imports a function that keeps per-thread
 * state past the call (pthread_setspecific, getspecific, key_create, the
 * C11 tss_* ones, uselocale) or another object's thread-local variable
 * (loader.c says why each); true also when its dynamic symbol table cannot
 * be read. why: what it uses, for the log ("uses pthread_setspecific"). */
bool hp_object_thread_state(const char *so, char *why, size_t cap);
/* Plain load/unload for `hotpub check`. */
int hp_load(const char *so, const char *rundir, uint64_t id, void **dl,
            char **priv, char **diag);
void hp_unload(void *dl, const char *priv);
/* <cache-dir>/run-<pid>, created empty; NULL on failure. */
char *hp_rundir_create(const char *cache_dir);
void hp_rundir_remove(const char *dir);

hp_cache *hp_cache_new(const struct hp_config *cfg, struct hp_compiler *cc);
void hp_cache_free(hp_cache *c);

/*
 * With a watcher attached, a request that finds its module out of date
 * waits for the watcher's next batch (so files saved together go live
 * together) instead of reloading it alone. Without one (tests, `check`),
 * requests reload on demand.
 */
void hp_cache_set_batched(hp_cache *c, bool on);
/* The settle window's "auto" (docs/design.md, "The settle window"). */
#define HP_SETTLE_MS 60
#define HP_SETTLE_FAST_MS 20
/* Build changes with the fast tier, then the optimized one behind it. */
void hp_cache_set_tiered(hp_cache *c, bool on);

enum hp_acquire {
    HP_ACQ_OK,         /* pinned; an error to show may still be attached */
    HP_ACQ_ERROR,      /* no version; the diagnostic is attached         */
    HP_ACQ_GONE,       /* the file no longer exists                      */
    HP_ACQ_WOULDBLOCK, /* not pinned: a build or a batch is pending    */
};
/*
 * Pin the current version of the module at canonical path `path`, loading
 * or reloading it first if it is new or out of date. *err receives a
 * malloc'd copy of the entry's last error (or NULL); the caller frees it.
 */
enum hp_acquire hp_cache_acquire(hp_cache *c, const char *path, hp_version **v,
                                 char **err);

/* A page and its application chain, pinned as one consistent set: no
 * batch is published between the first pin and the last. */
struct hp_pinset {
    size_t napps;
    hp_version *apps[HP_MAX_APPS]; /* outermost first                    */
    hp_version *page;
    char *err;            /* first error on the chain (malloc'd) */
    const char *err_path; /* the module it belongs to            */
};
enum hp_acquire hp_cache_pin_page(hp_cache *c, const char *path,
                                  struct hp_pinset *ps, bool may_block);
/*
 * The host gave up on the init hook running in the build of the module at
 * canonical path `path` (it ran past --handler-timeout; it may never
 * return). Requests waiting for that build (on its load lock, or for its
 * batch) stop waiting within ~50 ms: their pin fails with HP_ACQ_ERROR and
 * `why` (copied; it should begin with HP_DIAG_INIT_REFUSED, which the
 * server answers with 503), and so does every later pin until the build
 * ends. If the init does return, its object is refused (closed without
 * its fini) and `why` becomes the module's error. No-op for a path the
 * cache does not know. Takes cache->mu, then the entry's mu: never call
 * it holding either.
 */
void hp_cache_abandon_load(hp_cache *c, const char *path, const char *why);
void hp_pinset_release(struct hp_pinset *ps);

/* Unpin. The last unpin of a retired version unloads it. */
void hp_version_release(hp_version *v);
/* Look up an exported symbol of a version (NULL if absent). */
void *hp_version_sym(hp_version *v, const char *name);
/* The handler `name` of a version, or NULL; memoised per version so the
 * steady state does no dlsym. */
hp_handler_fn hp_version_handler(hp_version *v, const char *name);

/* The watcher says: this file (a page or a header) may have changed. Marks
 * every entry that depends on it stale; returns how many. */
int hp_cache_touch(hp_cache *c, const char *path);
/* An application module appeared or went away: recompute page chains. */
void hp_cache_apps_changed(hp_cache *c);
/* A page source (path: canonical, of a module in the cache) was written
 * completely: compile it now, on a thread of the cache's, into the compile
 * cache only, so the batch that publishes it after the settle window finds
 * the object (docs/design.md, "The settle window"). Other paths are
 * ignored; never blocks on a compile. */
void hp_cache_prefetch(hp_cache *c, const char *path);
/* Rebuild every stale entry as one batch and publish all of it together,
 * or none of it if anything fails, on the caller's thread (tests; the
 * watcher uses hp_cache_start_batch). */
void hp_cache_refresh_stale(hp_cache *c);
/* The same batch, chosen now but built and published on a thread of its
 * own (the watcher's call): entries a running batch builds are left to it
 * unless they changed again since it chose them. hp_cache_free waits for
 * these threads. */
void hp_cache_start_batch(hp_cache *c);
/* Mark everything stale. */
void hp_cache_touch_all(hp_cache *c);
/* The --revalidate pass: stat every module and its headers and touch what
 * changed. Returns how many changed. */
int hp_cache_revalidate(hp_cache *c);

/* The modules as a JSON array; member (or NULL) appends ,"key":value
 * members to each module's object, given its path. */
void hp_cache_status_json(hp_cache *c, struct hp_buf *out,
                          void (*member)(const char *path, struct hp_buf *b));
/* A module as the node's dashboard shows it (metrics.c). */
struct hp_module_info {
    const char *path;           /* the module's source */
    const char *error;          /* the last build's diagnostic, or NULL */
    unsigned long long version; /* current version id, 0 for none */
    long inflight;              /* requests on the current version */
    int retired;                /* retired versions awaiting unload */
    long retired_inflight;      /* requests still on those */
    unsigned long builds;
};
/* fn for each module, under its entry's lock (fn may not call the cache). */
void hp_cache_each(hp_cache *c,
                   void (*fn)(const struct hp_module_info *m, void *arg),
                   void *arg);

/* ---- URL resolution (resolve.c) ---------------------------------------- */

enum hp_target_kind {
    HP_T_NOTFOUND = 0,
    HP_T_PAGE,   /* path = page source (.c or .so), handler = name    */
    HP_T_STATIC, /* path = the file                                   */
    /* A directory with an index asked without its '/': path = the URL path
     * to redirect to ("/blog/": percent-encoded, never "//..."). */
    HP_T_DIRSLASH,
};

struct hp_target {
    enum hp_target_kind kind;
    char path[PATH_MAX];
    char handler[128];
    /* Pages: how many segments of the URL named the page; the rest (a
     * handler name, then path parameters) is publish.c's to route. */
    unsigned short page_segs;
};

typedef struct hp_resolver hp_resolver;
/* root must be canonical (realpath). */
hp_resolver *hp_resolver_new(const char *root_canon);
void hp_resolver_free(hp_resolver *r);
/* Map a decoded URL path to a target. Never returns a path outside the root,
 * a segment starting with '_' or '.', or a file hp_name_private refuses as
 * static. */
void hp_resolve(hp_resolver *r, const char *url_path, struct hp_target *t);
/* A file name (one segment, no '/') never served as static: a source,
 * header, object, settings file or template in any case ("hello.C"), or
 * a copy of one ("index.c.bak", "lib.so.1", "index.c~", "#index.c#"), or
 * an editor's, patch's or package manager's leftover ("x.orig", "x.swp").
 * The full rule is at its definition in resolve.c. */
bool hp_name_private(const char *name);
/* A path relative to the root ("a/b.css", no leading '/') that may be
 * served as static by its names: every segment non-empty and not starting
 * with '_' or '.', and the file's name not hp_name_private. static.c
 * checks it on the path it opens; the watcher on the files whose change
 * reloads the browser. */
bool hp_rel_public(const char *rel);
/* Forget cached resolutions (the watcher calls it on namespace changes). */
void hp_resolver_invalidate(hp_resolver *r);
/*
 * RFC 3986 §5.2.4 remove_dot_segments, in place, on a decoded origin-form
 * path (starting with '/'; libmicrohttpd has decoded its escapes, so
 * "%2e" is a '.' here, as nginx merges after decoding): a "." segment
 * goes, a ".." removes it and the segment before it ("/a/./b" -> "/a/b",
 * "/a/b/../c" -> "/a/c", "/a/.." -> "/"); other segments, empty ones
 * included, are kept. The result is never longer. false when a ".." would
 * climb above the root ("/..", "/a/../.."), or for a path not starting
 * with '/': the server answers 400, as nginx; path is then unspecified.
 * server.c runs it once per request on paths that contain "/." (resolve.c).
 */
bool hp_path_merge_dots(char *path);

/* ---- JSON (json.c) ------------------------------------------------------ */

/* The strict decoder hp_json_body uses (its rules are in hotpub.h). */
json_t *hp_json_parse(const char *text, size_t len, json_error_t *e);
/* hp_write_json's text of value, appended to b: 0, or -1 (NULL, deeper
 * than 2048, out of memory). */
int hp_json_encode(struct hp_buf *b, const json_t *value);

/* ---- template files (tplcache.c; the syntax is template.c's) ----------- */

/* The server's templates live under root; errors are shown when dev.
 * watched: a watcher reports changes (hp_tplcache_touch/_publish);
 * otherwise each use compares the file's identity. */
void hp_tplcache_start(const char *root, bool dev, bool watched);
void hp_tplcache_stop(void);
/* path changed (a completed write, rename or delete): 1 if it is a cached
 * template; it goes stale, with everything else touched, at _publish. */
int hp_tplcache_touch(const char *path);
void hp_tplcache_touch_all(void);
void hp_tplcache_publish(void);
/* Stat every cached template; publish what changed. Returns how many. */
int hp_tplcache_revalidate(void);

/* ---- watching the document root (watch.c) ----------------------------- */

typedef struct hp_watch hp_watch;
hp_watch *hp_watch_start(const struct hp_config *cfg, const char *root_canon,
                         hp_cache *cache, hp_resolver *res);
void hp_watch_stop(hp_watch *w);

/* ---- listen addresses (net.c); hp_serve is in server.h ----------------- */

/* "ADDR:PORT", "[v6]:PORT" or ":PORT" to a socket address; -1 if bad. */
int hp_parse_listen(const char *listen, struct sockaddr_storage *ss,
                    socklen_t *len);
/* A non-blocking, close-on-exec TCP socket listening on addr (backlog
 * 1024, SO_REUSEADDR, IPv6 only for a v6 address); -1 after logging why. */
int hp_listen_bind(const char *addr);

/* ---- hotpub check (check.c) -------------------------------------------- */

/* Compile every page under root; print diagnostics; 0 if all compiled. */
int hp_check(struct hp_config *cfg);

/* ---- requests (request.c) ---------------------------------------------- */

const char *hp_mime_type(const char *path);

#endif
