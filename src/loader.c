/*
 * loader.c - mapping one version of a page into the process, and out again.
 *
 * Owns: the private run directory (<cache-dir>/run-<pid>), the private copy
 * each version is loaded from, dlopen/dlclose, the ABI check, and the
 * record of which lifecycle hook (init, fini) runs on a thread, for the
 * host's fatal-signal handler (hp_hook_running), and what an object says
 * of per-thread state: thread-local variables (its TLS module id) and
 * imports of functions that keep it (its dynamic symbol table,
 * hp_object_thread_state), which keep a page off the reactor. Before an
 * object is unloaded, it asks stray.c to take back any signal whose handler
 * lies in it (hp_stray_signals_restore_in).
 * May not touch: the module cache's entries or locks; it is handed a path
 * and an id and gives back a handle, or takes them back.
 *
 * glibc hands back the already-loaded object when the path or the inode
 * matches one it has open, so every version is copied to a fresh file of
 * its own before dlopen: two versions of one page, or an A->B->A edit
 * whose A is still serving a slow request, must never share a mapping.
 * RTLD_LOCAL keeps two versions' symbols from binding to each other.
 */
#include "hp.h"
#include "stray.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static int copy_file(const char *from, const char *to)
{
    struct stat st;
    int in = open(from, O_RDONLY | O_CLOEXEC), out = -1, rc = -1;
    off_t off = 0;

    if (in < 0 || fstat(in, &st) < 0)
        goto done;
    out = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0700);
    if (out < 0)
        goto done;
    while (off < st.st_size) {
        ssize_t n = sendfile(out, in, &off, (size_t)(st.st_size - off));
        if (n <= 0) {
            if (n < 0 && errno == EINTR)
                continue;
            goto done;
        }
    }
    rc = 0;
done:
    if (in >= 0)
        close(in);
    if (out >= 0 && close(out) < 0)
        rc = -1;
    if (rc < 0 && out >= 0)
        unlink(to);
    return rc;
}

static void hook_enter(const struct hp_hook_run *run);
static void hook_leave(const struct hp_hook_run *run,
                       const struct hp_hook_run *outer);

/*
 * The dlopen running in this process, if any. Constructors run inside
 * dlopen, which holds glibc's loader lock: one that hangs blocks every
 * other dlopen of the process (a new page, an edited one) for as long, and
 * with --workers 0 for ever. So loads take turns here, where a wait can be
 * bounded: past DL_WAIT_NS of one dlopen, another load is refused (a 503
 * with Retry-After naming the page whose constructor runs) instead of
 * blocking its thread inside dlopen.
 */
#define DL_WAIT_NS 1500000000LL
static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool busy, logged;
    long long since; /* hp_now_ns() */
    char page[512];  /* its source */
} DL = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
static atomic_bool dl_hopeless;  /* hp_loader_dlopen_hopeless */
static __thread bool tl_untried; /* hp_loader_load_untried */

/* The refusal while DL's dlopen runs (with DL.mu held), logged once per
 * dlopen: it begins with HP_DIAG_CTOR_REFUSED (a 503). */
static char *dl_refusal(const char *page)
{
    double s = (hp_now_ns() - DL.since) / 1e9;
    char *why = hp_xasprintf(
        HP_DIAG_CTOR_REFUSED "page %s has been running for %.1f s in this "
                             "process " HP_DIAG_DL_BUSY
                             ", so %s cannot be loaded here until it "
                             "returns%s",
        DL.page, s, page ? page : "this page",
        atomic_load(&dl_hopeless)
            ? " (it ran past --handler-timeout: restart hotpub if it never "
              "returns)"
            : "; try again later");
    if (!DL.logged) {
        DL.logged = true;
        /* info, not error: a slow constructor that returns is no fault */
        hp_log_info("%s", why);
    }
    return why;
}

/* Wait for DL to be free (at most until its dlopen has run DL_WAIT_NS),
 * then take it: 0, or -1 with *why (malloc'd). */
static int dl_enter(const char *page, char **why)
{
    tl_untried = false;
    pthread_mutex_lock(&DL.mu);
    while (DL.busy) {
        long long end = DL.since + DL_WAIT_NS;
        if (hp_now_ns() >= end) {
            *why = dl_refusal(page);
            tl_untried = true;
            pthread_mutex_unlock(&DL.mu);
            return -1;
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 50000000; /* re-checked every 50 ms */
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&DL.cv, &DL.mu, &ts);
    }
    DL.busy = true;
    DL.logged = false;
    DL.since = hp_now_ns();
    snprintf(DL.page, sizeof DL.page, "%s",
             page ? page : "(a prebuilt object)");
    pthread_mutex_unlock(&DL.mu);
    return 0;
}

static void dl_leave(void)
{
    pthread_mutex_lock(&DL.mu);
    /* dlopen_hung_check said no page could be loaded until it returned */
    if (atomic_exchange(&dl_hopeless, false))
        hp_log_info("the constructor of the page %s returned after %.0f s: "
                    "pages can be loaded again",
                    DL.page, (hp_now_ns() - DL.since) / 1e9);
    DL.busy = false;
    pthread_cond_broadcast(&DL.cv);
    pthread_mutex_unlock(&DL.mu);
}

double hp_loader_dlopen_running(char *page, size_t cap)
{
    double s = 0;
    pthread_mutex_lock(&DL.mu);
    if (DL.busy) {
        s = (hp_now_ns() - DL.since) / 1e9;
        snprintf(page, cap, "%s", DL.page);
    }
    pthread_mutex_unlock(&DL.mu);
    return s;
}

bool hp_loader_load_untried(void)
{
    return tl_untried;
}

void hp_loader_dlopen_hopeless(void)
{
    atomic_store(&dl_hopeless, true);
}

bool hp_diag_is_busy(const char *diag)
{
    return diag && strstr(diag, HP_DIAG_DL_BUSY) != NULL;
}

/* The symbols a load looks up in its object (hook and fini for a page's
 * version; the ABI mark for any object). */
struct object_syms {
    const int *abi;
    hp_version *v; /* NULL: no hooks wanted (hp_load) */
    hp_init_fn init;
};

static const char *const hook_names[HP_NHOOKS] = {
    "hp__hook_prepare", "hp__hook_commit", "hp__hook_rollback",
    "hp__hook_release"};

static void find_syms(void *h, struct object_syms *syms)
{
    syms->abi = dlsym(h, "hp__abi_version");
    if (!syms->v)
        return;
    for (int i = 0; i < HP_NHOOKS; i++)
        syms->v->hooks[i] = (hp_handler_fn)dlsym(h, hook_names[i]);
    syms->v->fini = (hp_fini_fn)dlsym(h, "hp__fini");
    /* Thread-local variables (a TLS segment: its module id is not 0) keep
     * the version off the reactor, where requests share a thread
     * (server.c, tls_module). */
    size_t modid = 0;
    syms->v->has_tls = dlinfo(h, RTLD_DI_TLS_MODID, &modid) == 0 && modid;
    syms->init = (hp_init_fn)dlsym(h, "hp__init");
}

/* dlopen runs the object's constructors (__attribute__((constructor)),
 * .init_array): with page (its source) given, they run with a hook record
 * "constructor" on this thread, so a crash, an exit or a timeout in one
 * names the page as an init hook's would. Its load base is not known
 * before dlopen returns: the record has none, and no source line. */
static void *open_object(const char *path, const char *page,
                         struct object_syms *syms, char **busy)
{
    struct hp_hook_run run = {page, "constructor", path, 0, 0, 0};
    const struct hp_hook_run *outer = hp_hook_running();
    if (dl_enter(page, busy) < 0)
        return NULL;
    if (page)
        hook_enter(&run);
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (page)
        hook_leave(&run, outer);
    /* dlsym takes the loader's lock too: done before another load may
     * begin, so a constructor that hangs there cannot hold this load (and
     * its module's waiters) inside dlsym. */
    if (h)
        find_syms(h, syms);
    dl_leave();
    return h;
}

/* hp_load, with page (the module's source, or NULL) for open_object. */
static int load_copy(const char *so, const char *rundir, uint64_t id,
                     const char *page, struct object_syms *syms, void **dl,
                     char **priv, char **diag)
{
    const char *base = strrchr(so, '/');
    char *path;
    void *h;

    base = base ? base + 1 : so;
    if (!base)
        base = ""; /* never: silences a GCC 12 -O1 UBSan false positive */
    path = hp_xasprintf("%s/v%llu-%s", rundir, (unsigned long long)id, base);
    int copied = copy_file(so, path);
    if (copied < 0 && errno == ENOENT && access(rundir, F_OK) < 0 &&
        hp_cache_subdir_restore(rundir) == 0)
        copied = copy_file(so, path); /* the cache dir was removed */
    if (copied < 0) {
        *diag =
            hp_xasprintf("cannot copy %s to %s: %s", so, path, strerror(errno));
        free(path);
        return -1;
    }
    char *busy = NULL;
    h = open_object(path, page, syms, &busy);
    if (!h) {
        const char *e = busy ? NULL : dlerror();
        *diag =
            busy ? busy : hp_xasprintf("cannot load the page: %s", e ? e : "?");
        unlink(path);
        free(path);
        return -1;
    }
    const int *abi = syms->abi;
    if (!abi || *abi != HP_ABI_VERSION) {
        *diag = abi ? hp_xasprintf("the page was built for hotpub ABI %d; "
                                   "this server speaks %d: rebuild it",
                                   *abi, HP_ABI_VERSION)
                    : hp_xstrdup("not a hotpub page: it does not include "
                                 "<hotpub.h> (no hp__abi_version symbol)");
        dlclose(h);
        unlink(path);
        free(path);
        return -1;
    }
    *dl = h;
    *priv = path;
    return 0;
}

int hp_load(const char *so, const char *rundir, uint64_t id, void **dl,
            char **priv, char **diag)
{
    struct object_syms syms = {0};
    return load_copy(so, rundir, id, NULL, &syms, dl, priv, diag);
}

/* The lifecycle hook running on this thread (a fatal signal names it). */
static __thread const struct hp_hook_run *tl_hook;
static hp_init_vet_fn init_vet;

const struct hp_hook_run *hp_hook_running(void)
{
    return tl_hook;
}

/* Where dl was loaded: fault addresses minus this are the object's. */
static uintptr_t load_base(void *dl)
{
    struct link_map *lm = NULL;
    return dlinfo(dl, RTLD_DI_LINKMAP, &lm) == 0 && lm ? (uintptr_t)lm->l_addr
                                                       : 0;
}

struct span_arg {
    uintptr_t base, lo, hi;
    const char *path;
};

static int span_of(struct dl_phdr_info *info, size_t size, void *arg)
{
    struct span_arg *a = arg;
    (void)size;
    if (info->dlpi_addr != a->base || !info->dlpi_name ||
        strcmp(info->dlpi_name, a->path) != 0)
        return 0;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD)
            continue;
        uintptr_t lo = a->base + ph->p_vaddr, hi = lo + ph->p_memsz;
        if (!a->lo || lo < a->lo)
            a->lo = lo;
        if (hi > a->hi)
            a->hi = hi;
    }
    return 1;
}

bool hp_object_span(const char *so_path, uintptr_t base, uintptr_t *lo,
                    uintptr_t *hi)
{
    struct span_arg a = {.base = base, .path = so_path};
    *lo = *hi = 0;
    if (!base || !so_path || dl_iterate_phdr(span_of, &a) != 1)
        return false;
    *lo = a.lo;
    *hi = a.hi;
    return true;
}

/* The hook record for v's object: its load base and PT_LOAD span, looked
 * up now (dl_iterate_phdr takes the loader's lock: not in a signal). */
static struct hp_hook_run hook_run(const hp_version *v, const char *hook)
{
    struct hp_hook_run run = {v->path,          hook, v->so_path,
                              load_base(v->dl), 0,    0};
    hp_object_span(v->so_path, run.base, &run.lo, &run.hi);
    return run;
}

bool hp_diag_is_refused(const char *diag)
{
    return diag && (strncmp(diag, HP_DIAG_INIT_REFUSED,
                            strlen(HP_DIAG_INIT_REFUSED)) == 0 ||
                    strncmp(diag, HP_DIAG_CTOR_REFUSED,
                            strlen(HP_DIAG_CTOR_REFUSED)) == 0);
}

bool hp_diag_is_init(const char *diag)
{
    return diag && (strncmp(diag, HP_DIAG_INIT_FAILED,
                            strlen(HP_DIAG_INIT_FAILED)) == 0 ||
                    hp_diag_is_refused(diag));
}

void hp_loader_set_init_vet(hp_init_vet_fn vet)
{
    init_vet = vet;
}

static hp_hook_watch_fn watch_begin, watch_end;

void hp_loader_set_hook_watch(hp_hook_watch_fn begin, hp_hook_watch_fn end)
{
    watch_begin = begin;
    watch_end = end;
}

/* Run a module's init or fini with run on record for this thread (crash
 * reports) and, when the host watches, for its timeout watchdog. */
static void hook_enter(const struct hp_hook_run *run)
{
    tl_hook = run;
    if (watch_begin)
        watch_begin(run);
}

static void hook_leave(const struct hp_hook_run *run,
                       const struct hp_hook_run *outer)
{
    if (watch_end)
        watch_end(run);
    tl_hook = outer;
}

/* ---- what an object's imports say about per-thread state ---------------- */

/*
 * Functions whose state belongs to the calling thread and outlives the
 * call, so that a page can set it in one hook and read it in a later one
 * (or before and after a database wait): on the reactor, the requests
 * waiting on the database share one thread, and this state would not
 * belong to one request (FRESH12-2: pthread keys, the POSIX spelling of a
 * _Thread_local). An object that imports one is kept off the reactor as
 * one with thread-local variables is (server.c, tls_module).
 *
 * - pthread_key_create, pthread_getspecific, pthread_setspecific: a
 *   thread-specific key, set in prepare and read in commit, say.
 * - tss_create, tss_get, tss_set: the same, in C11's <threads.h>.
 * - uselocale: the thread's locale, changed until changed back; another
 *   request running meanwhile on the thread would format with it.
 *
 * Not listed: functions whose state is the whole process's, already
 * shared by the handler threads, so that the reactor adds no sharing to it
 * (strtok's position, rand's seed, localtime's and getpwnam's results:
 * glibc keeps them in statics, not per thread); those that return a
 * result in a per-thread buffer (inet_ntoa; strerror and strsignal for
 * unknown numbers only), which is safe as long as it is read before the
 * next database call, and strerror is in most error paths: listing them
 * would keep most pages off for a result nobody holds; and pthread_self
 * or gettid, whose answers are not state a page keeps.
 * An undefined thread-local symbol (STT_TLS: a _Thread_local of another
 * library, an `extern __thread`) counts too: it is a thread-local variable
 * that this object's TLS module id does not show.
 */
static const char *const thread_state_fns[] = {
    "pthread_setspecific",
    "pthread_getspecific",
    "pthread_key_create",
    "tss_set",
    "tss_get",
    "tss_create",
    "uselocale",
};

#define N_THREAD_STATE_FNS                                                     \
    (sizeof thread_state_fns / sizeof thread_state_fns[0])

/*
 * Functions that block the calling thread until another thread lets go
 * (a lock, a condition, a semaphore). On the reactor a lock is owned by
 * the thread, not the request: a request that holds one across a
 * database wait is suspended with it, and the next request on the same
 * thread that asks for it blocks the thread, so the owner never resumes
 * and lets go (FRESH13-1: a static PTHREAD_MUTEX_INITIALIZER held across
 * a query, as docs/pages.md's "protect it with a mutex" invites, hung the
 * page and the reactor for good). A recursive lock does not block: it
 * excludes nothing between those requests (FRESH13-1b). So an object
 * that imports one is kept off the reactor, as one with per-thread state
 * is. pthread_once and call_once block a second caller while the first
 * runs the init routine, which may wait on the database. Not listed: the
 * try-forms (they never block), and the functions that make or unmake a
 * lock (pthread_mutex_init does not lock).
 */
static const char *const lock_fns[] = {
    "pthread_mutex_lock",    "pthread_mutex_timedlock", "pthread_mutex_clocklock",
    "pthread_rwlock_rdlock", "pthread_rwlock_wrlock",  "pthread_rwlock_timedrdlock",
    "pthread_rwlock_timedwrlock", "pthread_spin_lock",  "pthread_cond_wait",
    "pthread_cond_timedwait", "pthread_cond_clockwait", "pthread_barrier_wait",
    "sem_wait",              "sem_timedwait",           "sem_clockwait",
    "mtx_lock",              "mtx_timedlock",           "cnd_wait",
    "cnd_timedwait",         "flockfile",               "flock",
    "lockf",                 "pthread_once",            "call_once",
};

#define N_LOCK_FNS (sizeof lock_fns / sizeof lock_fns[0])

/* Within [0, size) of the mapped file: off and n fit. */
static bool in_file(size_t size, uint64_t off, uint64_t n)
{
    return off <= size && n <= size - off;
}

/*
 * Read the dynamic symbol table (.dynsym, .dynstr through the section
 * headers) of the object file so: each undefined symbol either in
 * thread_state_fns (bit i of *fns), in lock_fns (bit i of *locks) or of
 * type STT_TLS (the first one's name in tls_var). -1 when the file is no
 * ELF object of this machine's class or its table cannot be read.
 */
static int scan_imports(const char *so, unsigned *fns, unsigned *locks,
                        char *tls_var, size_t cap)
{
    struct stat st;
    int fd = open(so, O_RDONLY | O_CLOEXEC), rc = -1;
    if (fd < 0)
        return -1;
    if (fstat(fd, &st) < 0 || (size_t)st.st_size < sizeof(ElfW(Ehdr))) {
        close(fd);
        return -1;
    }
    size_t size = (size_t)st.st_size;
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED)
        return -1;
    const unsigned char *f = map;
    const ElfW(Ehdr) *eh = (const ElfW(Ehdr) *)f;
    const ElfW(Shdr) *sh = NULL;
    if (memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 ||
        eh->e_ident[EI_CLASS] !=
            (sizeof(void *) == 8 ? ELFCLASS64 : ELFCLASS32) ||
        eh->e_shentsize != sizeof(ElfW(Shdr)) || eh->e_shnum == 0 ||
        !in_file(size, eh->e_shoff, (uint64_t)eh->e_shnum * sizeof *sh))
        goto done;
    sh = (const ElfW(Shdr) *)(f + eh->e_shoff);
    for (unsigned i = 0; i < eh->e_shnum; i++) {
        if (sh[i].sh_type != SHT_DYNSYM)
            continue;
        const ElfW(Shdr) *sym = &sh[i], *str;
        if (sym->sh_entsize != sizeof(ElfW(Sym)) || sym->sh_link == 0 ||
            sym->sh_link >= eh->e_shnum)
            goto done;
        str = &sh[sym->sh_link];
        if (!in_file(size, sym->sh_offset, sym->sh_size) ||
            !in_file(size, str->sh_offset, str->sh_size))
            goto done;
        const ElfW(Sym) *s = (const ElfW(Sym) *)(f + sym->sh_offset);
        const char *names = (const char *)f + str->sh_offset;
        size_t n = sym->sh_size / sizeof *s;
        for (size_t k = 1; k < n; k++) {
            if (s[k].st_shndx != SHN_UNDEF || s[k].st_name >= str->sh_size)
                continue;
            const char *name = names + s[k].st_name;
            if (!memchr(name, 0, str->sh_size - s[k].st_name))
                continue;
            if (ELF64_ST_TYPE(s[k].st_info) == STT_TLS) {
                if (!*tls_var)
                    snprintf(tls_var, cap, "%s", name);
                continue;
            }
            for (unsigned j = 0; j < N_THREAD_STATE_FNS; j++)
                if (strcmp(name, thread_state_fns[j]) == 0)
                    *fns |= 1u << j;
            for (unsigned j = 0; j < N_LOCK_FNS; j++)
                if (strcmp(name, lock_fns[j]) == 0)
                    *locks |= 1u << j;
        }
    }
    rc = 0; /* no .dynsym: a static object imports nothing */
done:
    munmap(map, size);
    return rc;
}

bool hp_object_thread_state(const char *so, char *why, size_t cap)
{
    unsigned fns = 0, locks = 0;
    char var[64] = "";
    if (cap)
        *why = 0;
    if (scan_imports(so, &fns, &locks, var, sizeof var) < 0) {
        /* what it imports is not known: as if it kept per-thread state */
        snprintf(why, cap, "has a dynamic symbol table hotpub cannot read");
        return true;
    }
    if (!fns && !locks && !*var)
        return false;
    struct hp_buf b = {0};
    if (fns || *var) {
        hp_buf_printf(&b, "uses ");
        for (unsigned j = 0, n = 0; j < N_THREAD_STATE_FNS; j++)
            if (fns & (1u << j))
                hp_buf_printf(&b, "%s%s", n++ ? ", " : "", thread_state_fns[j]);
        if (*var)
            hp_buf_printf(&b, "%sthe thread-local variable %s",
                          fns ? " and " : "", var);
        hp_buf_printf(&b, " (per-thread state)");
    }
    if (locks) {
        hp_buf_printf(&b, "%swaits on ", b.p ? "; " : "");
        for (unsigned j = 0, n = 0; j < N_LOCK_FNS; j++)
            if (locks & (1u << j))
                hp_buf_printf(&b, "%s%s", n++ ? ", " : "", lock_fns[j]);
        hp_buf_printf(&b, " (a lock held across a database wait would "
                          "deadlock)");
    }
    snprintf(why, cap, "%s", b.p ? b.p : "");
    free(b.p);
    return true;
}

static hp_load_end_fn load_end, ctors_end;

void hp_loader_set_load_end(hp_load_end_fn end)
{
    load_end = end;
}

void hp_loader_set_ctors_end(hp_load_end_fn end)
{
    ctors_end = end;
}

static hp_version *version_load(const char *so, const char *rundir, uint64_t id,
                                const char *path, void *previous, char **diag);

hp_version *hp_version_open(const char *so, const char *rundir, uint64_t id,
                            const char *path, void *previous, char **diag)
{
    /* Before dlopen: the object's constructors run in it, and one that
     * killed a worker is refused as an init that did (the key is the
     * compile cache's, in so's name and its private copy's alike). */
    char *vetoed = init_vet ? init_vet(path, so) : NULL;
    if (vetoed) {
        *diag = vetoed;
        return NULL;
    }
    hp_version *v = version_load(so, rundir, id, path, previous, diag);
    if (load_end)
        load_end(); /* it did not kill this process, whatever it said */
    return v;
}

static hp_version *version_load(const char *so, const char *rundir, uint64_t id,
                                const char *path, void *previous, char **diag)
{
    hp_version *v = hp_xcalloc(1, sizeof *v);
    v->id = id;
    v->path = path;
    v->mod.v = v;
    struct object_syms syms = {.v = v};
    int copied =
        load_copy(so, rundir, id, path, &syms, &v->dl, &v->so_path, diag);
    if (ctors_end)
        ctors_end(); /* the constructors are over: the init may be long */
    if (copied < 0) {
        free(v);
        return NULL;
    }
    /* Read from the file, not under the dynamic loader's lock; before
     * any request can run this version. */
    hp_object_thread_state(v->so_path, v->thread_state, sizeof v->thread_state);
    hp_init_fn init = syms.init;
    if (init) {
        /* Runs before anyone can see this version; the old one may be
         * serving requests with `previous` at this very moment. */
        struct hp_hook_run run = hook_run(v, "init");
        hook_enter(&run);
        v->state = init(&v->mod, previous);
        hook_leave(&run, NULL);
        if (v->mod.error) {
            *diag = hp_xasprintf(HP_DIAG_INIT_FAILED "%s", v->mod.error);
            v->fini = NULL; /* a failed init cleans up after itself */
            hp_version_close(v);
            return NULL;
        }
    }
    /* No init: no state, and nothing adopted; the old version's fini
     * frees what it had. */
    v->initialised = true;
    v->loaded_at = (double)time(NULL); /* wall clock, for people */
    return v;
}

void hp_version_close(hp_version *v)
{
    if (v->initialised && v->fini) {
        struct hp_hook_run run = hook_run(v, "fini");
        const struct hp_hook_run *outer = tl_hook;
        hook_enter(&run);
        v->fini(&v->mod, v->state, v->handed_over);
        hook_leave(&run, outer);
    }
    /* dlclose runs the object's destructors: named like fini if one
     * crashes (a prebuilt object's may outlive this, and run later). */
    struct hp_hook_run drun = hook_run(v, "destructor");
    const struct hp_hook_run *douter = tl_hook;
    /* The page's own signal handlers are unmapped with it: take them back
     * first (a later signal would jump into unmapped code: SIGSEGV). */
    hp_stray_signals_restore_in(drun.lo, drun.hi, v->path);
    hook_enter(&drun);
    hp_unload(v->dl, v->so_path);
    hook_leave(&drun, douter);
    free(v->so_path);
    free(v->mod.error);
    for (size_t i = 0; i < v->ndeps; i++)
        free(v->deps[i].path);
    free(v->deps);
    free(v);
}

/* ---- the module API pages call from init/fini ------------------------- */

/* A NULL m is a page's mistake (request.c's hp_req_misuse for modules):
 * one error line, and the function's failure value. */
static bool module_misuse(const char *fn)
{
    long skipped = 0;
    if (hp_log_misuse_allowed(NULL, fn, "m", &skipped))
        hp_log_error("%s: m is NULL (refused: a page's mistake)%s", fn,
                     skipped ? " (and more like it in the last minute)" : "");
    return false;
}

void hp_module_error(hp_module *m, const char *fmt, ...)
{
    va_list ap;
    char *msg = NULL;
    if (__builtin_expect(!m, 0) && !module_misuse(__func__))
        return;
    if (fmt) {
        va_start(ap, fmt);
        if (vasprintf(&msg, fmt, ap) < 0)
            msg = NULL;
        va_end(ap);
    } else {
        hp_log_error("%s: hp_module_error: fmt is NULL (a page's mistake)",
                     m->v->path);
    }
    free(m->error);
    m->error = msg ? msg : hp_xstrdup("(init failed)");
}

const char *hp_module_path(hp_module *m)
{
    if (__builtin_expect(!m, 0) && !module_misuse(__func__))
        return NULL;
    return m->v->path;
}

unsigned long long hp_module_version(hp_module *m)
{
    if (__builtin_expect(!m, 0) && !module_misuse(__func__))
        return 0;
    return (unsigned long long)m->v->id;
}

void hp_unload(void *dl, const char *priv)
{
    if (dl && dlclose(dl) != 0)
        hp_log_error("dlclose %s: %s", priv, dlerror());
    if (priv)
        unlink(priv);
}

/* Remove run directories left by servers that are gone (crash, kill -9). */
static void sweep_dead_rundirs(const char *cache_dir)
{
    DIR *d = opendir(cache_dir);
    struct dirent *de;

    if (!d)
        return;
    while ((de = readdir(d))) {
        int pid;
        if (sscanf(de->d_name, "run-%d", &pid) != 1 || pid == getpid())
            continue;
        if (kill(pid, 0) == 0 || errno == EPERM)
            continue;
        char *dir = hp_xasprintf("%s/%s", cache_dir, de->d_name);
        hp_rundir_remove(dir);
        free(dir);
    }
    closedir(d);
}

char *hp_rundir_create(const char *cache_dir)
{
    char *dir = hp_xasprintf("%s/run-%d", cache_dir, getpid());
    if (hp_mkdirs(cache_dir, 0700) < 0 ||
        (mkdir(dir, 0700) < 0 && errno != EEXIST)) {
        hp_log_error("cannot create %s: %s", dir, strerror(errno));
        free(dir);
        return NULL;
    }
    sweep_dead_rundirs(cache_dir);
    return dir;
}

void hp_rundir_remove(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;

    if (!d)
        return;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        char *p = hp_xasprintf("%s/%s", dir, de->d_name);
        unlink(p);
        free(p);
    }
    closedir(d);
    rmdir(dir);
}
