/*
 * test_cache.c - the module cache against the real page compiler and the
 * real dynamic loader: first loads, pinning and refcounts, concurrent
 * readers during rewrites, failed loads and their waiters, header
 * dependencies, deleted pages, distinct entries loading independently,
 * edits that land while a page compiles or loads, --revalidate, batches
 * that publish all or nothing and run apart (a slow one delays only its own
 * files), init/fini state hand-over, touches that change nothing, and an
 * optimized build of an older save dropped behind a newer error.
 *
 * Each test starts its own compiler and cache (start/stop) on one temp
 * docroot and one temp cache dir, with its own page names. An argument runs
 * only the tests whose names contain it: build/tests/test_cache batch
 *
 * Pages export `const int page_value`, read through hp_version_sym, which
 * says which version a caller got.
 *
 * Some tests need a compile to stop in the middle, deterministically. The
 * docroot holds a FIFO, gate.h: a page that includes it makes the compiler
 * block in open() until a writer opens the FIFO. A feeder thread serves it
 * (open, close: an empty header) while the gate is open; with the gate
 * closed, a test can see that a compiler is waiting (a non-blocking open
 * for writing succeeds only when a reader is there), do something while
 * that compile is stuck, and then let it go.
 */
#include "hp.h"
#include "t.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#define PBUF (2 * PATH_MAX)
#define NTHREADS 8

static char root[PATH_MAX];     /* canonical temp document root */
static char cachedir[PATH_MAX]; /* canonical temp compile cache */
static char rundir[PBUF];       /* <cachedir>/run-<pid>         */
static struct hp_config cfg;
static struct hp_compiler *cc;
static hp_cache *cache;

/* ---- fixture ---------------------------------------------------------- */

static void set_str(char **slot, const char *value)
{
    free(*slot);
    *slot = hp_xstrdup(value);
}

static void path_of(char *out, const char *rel)
{
    snprintf(out, PBUF, "%s/%s", root, rel);
}

/* Write a whole file the way an editor's atomic save does: temp + rename. */
static void write_atomic(const char *path, const char *text)
{
    static atomic_ulong seq;
    char tmp[PBUF + 64];
    FILE *f;

    snprintf(tmp, sizeof(tmp), "%s.tmp%lu", path, atomic_fetch_add(&seq, 1));
    f = fopen(tmp, "w");
    if (f == NULL) {
        perror(tmp);
        exit(2);
    }
    fputs(text, f);
    if (fclose(f) != 0 || rename(tmp, path) != 0) {
        perror(path);
        exit(2);
    }
}

/* A page: `includes` verbatim, then page_value = value_expr. */
static void write_page(const char *path, const char *includes,
                       const char *value_expr)
{
    char *text = hp_xasprintf("#include <hotpub.h>\n"
                              "%s\n"
                              "HP_EXPORT const int page_value = %s;\n"
                              "HP_HANDLER(http_handler)\n"
                              "{\n"
                              "    return HP_OK;\n"
                              "}\n",
                              includes, value_expr);
    write_atomic(path, text);
    free(text);
}

static void write_page_int(const char *path, int value)
{
    char expr[32];
    snprintf(expr, sizeof(expr), "%d", value);
    write_page(path, "", expr);
}

static void start(void)
{
    cc = hp_compiler_new(&cfg, root);
    cache = cc ? hp_cache_new(&cfg, cc) : NULL;
    if (cache == NULL) {
        fprintf(stderr, "cannot create the cache\n");
        exit(2);
    }
}

static void stop(void)
{
    hp_cache_free(cache);
    hp_compiler_free(cc);
    cache = NULL;
    cc = NULL;
}

static int value_of(hp_version *v)
{
    const int *p = v ? hp_version_sym(v, "page_value") : NULL;
    return p ? *p : -1;
}

/* Acquire, read the value, release. Returns the value, -1 without a
 * version; *rp gets the result and *errp (if given) the error. */
static int acquire_value(const char *path, enum hp_acquire *rp, char **errp)
{
    hp_version *v = NULL;
    char *err = NULL;
    enum hp_acquire r = hp_cache_acquire(cache, path, &v, &err);
    int val = value_of(v);

    if (r != HP_ACQ_OK && v != NULL) {
        fprintf(stderr, "  acquire returned %d with a version\n", (int)r);
        val = -2;
    }
    hp_version_release(v);
    if (rp)
        *rp = r;
    if (errp)
        *errp = err;
    else
        free(err);
    return val;
}

/* ---- status JSON ---------------------------------------------------- */

/* The status object of one entry (malloc'd), or NULL. */
static char *status_of(const char *path)
{
    struct hp_buf b = {0};
    char *key = hp_xasprintf("{\"path\":\"%s\"", path);
    char *res = NULL;

    hp_cache_status_json(cache, &b, NULL);
    const char *s = b.p ? strstr(b.p, key) : NULL;
    if (s) {
        const char *end = strstr(s + 1, "\n{\"path\":");
        size_t n = end ? (size_t)(end - s) : strlen(s);
        res = strndup(s, n);
    }
    free(key);
    hp_buf_free(&b);
    return res;
}

/* The current version's inflight count; -1 without one. */
static long current_inflight(const char *path)
{
    char *s = status_of(path);
    long n = -1;
    const char *c = s ? strstr(s, "\"current\":{") : NULL;
    if (c) {
        const char *i = strstr(c, "\"inflight\":");
        if (i)
            n = strtol(i + strlen("\"inflight\":"), NULL, 10);
    }
    free(s);
    return n;
}

/* The "builds" counter of an entry's status. */
static long entry_builds(const char *path)
{
    char *s = status_of(path);
    const char *b = s ? strstr(s, "\"builds\":") : NULL;
    long n = b ? strtol(b + strlen("\"builds\":"), NULL, 10) : -1;
    free(s);
    return n;
}

static bool status_has(const char *path, const char *needle)
{
    char *s = status_of(path);
    bool hit = s && strstr(s, needle) != NULL;
    if (!hit)
        fprintf(stderr, "  status of %s: %s\n  lacks %s\n", path,
                s ? s : "(no entry)", needle);
    free(s);
    return hit;
}

/* ---- /proc/self/maps and the run directory ---------------------------- */

/* Mappings of files in the run directory: how many are not in keep[]
 * (printed), and in seen[i] whether keep[i] is mapped. */
static int maps_foreign(char *const *keep, size_t nkeep, bool *seen)
{
    FILE *f = fopen("/proc/self/maps", "r");
    char *line = NULL;
    size_t cap = 0;
    int foreign = 0;
    char prefix[PBUF + 1];

    snprintf(prefix, sizeof(prefix), "%s/", rundir);
    for (size_t i = 0; i < nkeep; i++)
        seen[i] = false;
    if (f == NULL) {
        perror("/proc/self/maps");
        return -1;
    }
    while (getline(&line, &cap, f) > 0) {
        char *p = strstr(line, prefix);
        if (p == NULL)
            continue;
        p[strcspn(p, "\n")] = '\0';
        char *del = strstr(p, " (deleted)");
        if (del)
            *del = '\0';
        bool known = false;
        for (size_t i = 0; i < nkeep; i++) {
            if (strcmp(p, keep[i]) == 0) {
                seen[i] = known = true;
            }
        }
        if (!known) {
            fprintf(stderr, "  still mapped: %s\n", p);
            foreign++;
        }
    }
    free(line);
    fclose(f);
    return foreign;
}

/* Files in the run directory that are not in keep[] (printed). */
static int rundir_foreign(char *const *keep, size_t nkeep)
{
    DIR *d = opendir(rundir);
    struct dirent *de;
    int foreign = 0;

    if (d == NULL)
        return 0;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        char *p = hp_xasprintf("%s/%s", rundir, de->d_name);
        bool known = false;
        for (size_t i = 0; i < nkeep; i++)
            known = known || strcmp(p, keep[i]) == 0;
        if (!known) {
            fprintf(stderr, "  left in the run dir: %s\n", p);
            foreign++;
        }
        free(p);
    }
    closedir(d);
    return foreign;
}

/* ---- the gate: a FIFO header that holds a compiler where we want it ---- */

static char gate_path[PBUF];
static pthread_mutex_t gate_mu = PTHREAD_MUTEX_INITIALIZER;
static bool gate_is_open = true; /* guarded by gate_mu */
static atomic_bool gate_quit;
static pthread_t gate_thread;

static void *gate_main(void *arg)
{
    (void)arg;
    while (!atomic_load(&gate_quit)) {
        pthread_mutex_lock(&gate_mu);
        if (gate_is_open) {
            /* Succeeds only while a reader is there; closing at once gives
             * it an empty file (a reader still in open() wakes anyway). */
            int fd = open(gate_path, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
            if (fd >= 0)
                close(fd);
        }
        pthread_mutex_unlock(&gate_mu);
        usleep(1000);
    }
    return NULL;
}

static void gate_set(bool open_)
{
    pthread_mutex_lock(&gate_mu);
    gate_is_open = open_;
    pthread_mutex_unlock(&gate_mu);
}

/* With the gate closed: wait until a compiler is stuck on it. Returns the
 * write end holding it (close it to let the compiler go on), or -1. */
static int gate_wait_reader(double timeout)
{
    double end = hp_now() + timeout;
    while (hp_now() < end) {
        int fd = open(gate_path, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
        if (fd >= 0)
            return fd;
        if (errno != ENXIO) {
            perror(gate_path);
            return -1;
        }
        usleep(2000);
    }
    fprintf(stderr, "  no compiler reached the gate in %.0f s\n", timeout);
    return -1;
}

/* ---- threads that acquire ---------------------------------------------- */

struct acq {
    const char *path;
    pthread_barrier_t *barrier;
    pthread_t thread;
    enum hp_acquire r;
    hp_version *v;
    char *err;
    atomic_bool done;
};

static void *acq_main(void *arg)
{
    struct acq *a = arg;
    if (a->barrier)
        pthread_barrier_wait(a->barrier);
    a->r = hp_cache_acquire(cache, a->path, &a->v, &a->err);
    atomic_store(&a->done, true);
    return NULL;
}

static void acq_start(struct acq *a, const char *path, pthread_barrier_t *b)
{
    memset(a, 0, sizeof(*a));
    a->path = path;
    a->barrier = b;
    atomic_init(&a->done, false);
    if (pthread_create(&a->thread, NULL, acq_main, a) != 0) {
        perror("pthread_create");
        exit(2);
    }
}

static bool wait_flag(atomic_bool *flag, double timeout)
{
    double end = hp_now() + timeout;
    while (!atomic_load(flag) && hp_now() < end)
        usleep(1000);
    return atomic_load(flag);
}

static int count_done(struct acq *a, int n)
{
    int k = 0;
    for (int i = 0; i < n; i++)
        k += atomic_load(&a[i].done);
    return k;
}

/* ---- 1. first load ------------------------------------------------------ */

static void test_first_load(void)
{
    char p[PBUF];
    hp_version *v = NULL, *v2 = NULL;
    char *err = (char *)"x", *err2 = (char *)"x";

    path_of(p, "first.c");
    write_page_int(p, 7);
    start();
    unsigned long r0 = hp_compiler_runs(cc);

    CHECK(hp_cache_acquire(cache, p, &v, &err) == HP_ACQ_OK);
    CHECK(v != NULL);
    CHECK(err == NULL);
    CHECK(value_of(v) == 7);
    CHECK(hp_compiler_runs(cc) - r0 == 1);
    CHECK(current_inflight(p) == 1);

    /* A second pin: same version, no compile, two in flight. */
    CHECK(hp_cache_acquire(cache, p, &v2, &err2) == HP_ACQ_OK);
    CHECK(v2 == v);
    CHECK(err2 == NULL);
    CHECK(hp_compiler_runs(cc) - r0 == 1);
    CHECK(current_inflight(p) == 2);

    /* The object is mapped from the run directory. */
    char *keep[1] = {v ? v->so_path : (char *)""};
    bool seen[1];
    CHECK(v && strncmp(v->so_path, rundir, strlen(rundir)) == 0);
    CHECK(maps_foreign(keep, 1, seen) == 0);
    CHECK(seen[0]);

    hp_version_release(v2);
    CHECK(current_inflight(p) == 1);
    hp_version_release(v);
    free(err);
    free(err2);
    CHECK(current_inflight(p) == 0);
    CHECK(status_has(p, "\"retired\":[]"));
    CHECK(status_has(p, "\"error\":null"));
    CHECK(status_has(p, "\"stale\":false"));
    CHECK(status_has(p, "\"gone\":false"));
    stop();

    /* Freeing the cache unmaps everything and removes the run dir. */
    CHECK(maps_foreign(NULL, 0, NULL) == 0);
    CHECK(access(rundir, F_OK) != 0);
}

/* ---- 2. readers while a writer rewrites -------------------------------- */

#define NPAGES 4
#define STRESS_SECONDS 3.0

static struct {
    char path[NPAGES][PBUF];
    int first[NPAGES];
    atomic_int written[NPAGES]; /* stored before the rename makes it so */
    atomic_bool stop;
    atomic_long per_thread[NTHREADS];
    atomic_long acquires, bad_result, bad_err, bad_range, bad_order;
} S;

static void *stress_reader(void *arg)
{
    int k = (int)(intptr_t)arg;
    int last[NPAGES];

    for (int i = 0; i < NPAGES; i++)
        last[i] = S.first[i];
    for (unsigned it = 0; !atomic_load(&S.stop); it++) {
        /* Half the time the hot page, otherwise one of the others. */
        int i = it % 2 == 0 ? 0 : 1 + (int)((it / 2 + (unsigned)k) % 3);
        hp_version *v = NULL;
        char *err = NULL;
        enum hp_acquire r = hp_cache_acquire(cache, S.path[i], &v, &err);
        if (r != HP_ACQ_OK || v == NULL) {
            if (atomic_fetch_add(&S.bad_result, 1) < 5)
                fprintf(stderr, "  reader %d: %s: result %d, v %p, err %s\n",
                        k, S.path[i], (int)r, (void *)v, err ? err : "-");
        } else {
            int val = value_of(v);
            int w = atomic_load(&S.written[i]);
            if (val < S.first[i] || val > w) {
                if (atomic_fetch_add(&S.bad_range, 1) < 5)
                    fprintf(stderr, "  reader %d: page %d value %d, written "
                            "%d..%d\n", k, i, val, S.first[i], w);
            } else if (val < last[i]) {
                if (atomic_fetch_add(&S.bad_order, 1) < 5)
                    fprintf(stderr, "  reader %d: page %d went back from %d "
                            "to %d\n", k, i, last[i], val);
            } else {
                last[i] = val;
            }
        }
        if (err && atomic_fetch_add(&S.bad_err, 1) < 5)
            fprintf(stderr, "  reader %d: unexpected error: %s\n", k, err);
        free(err);
        hp_version_release(v);
        atomic_fetch_add(&S.acquires, 1);
        atomic_fetch_add(&S.per_thread[k], 1);
        usleep(100); /* leave the CPU to the compiler now and then */
    }
    return NULL;
}

static void *stress_writer(void *arg)
{
    (void)arg;
    double end = hp_now() + STRESS_SECONDS;
    for (unsigned t = 0; hp_now() < end; t++) {
        int i = t % 2 == 0 ? 0 : 1 + (int)((t / 2) % 3);
        int n = atomic_load(&S.written[i]) + 1;
        atomic_store(&S.written[i], n);
        write_page_int(S.path[i], n);
        hp_cache_touch(cache, S.path[i]);
        usleep(100000);
    }
    return NULL;
}

static void test_readers_during_rewrites(void)
{
    pthread_t readers[NTHREADS], writer;
    char *keep[NPAGES] = {0};
    bool seen[NPAGES];

    memset(&S, 0, sizeof(S));
    for (int i = 0; i < NPAGES; i++) {
        char rel[32];
        snprintf(rel, sizeof(rel), "stress%d.c", i);
        path_of(S.path[i], rel);
        S.first[i] = 1000 * (i + 1); /* disjoint ranges: no mix-ups */
        atomic_store(&S.written[i], S.first[i]);
        write_page_int(S.path[i], S.first[i]);
    }
    start();
    unsigned long r0 = hp_compiler_runs(cc);
    for (int i = 0; i < NPAGES; i++)
        CHECK(acquire_value(S.path[i], NULL, NULL) == S.first[i]);

    for (int k = 0; k < NTHREADS; k++)
        pthread_create(&readers[k], NULL, stress_reader, (void *)(intptr_t)k);
    pthread_create(&writer, NULL, stress_writer, NULL);
    pthread_join(writer, NULL);
    /* On a loaded machine readers spend most of the run waiting for
     * reloads: make sure each has done some work (bounded wait). */
    double until = hp_now() + 10;
    for (int k = 0; k < NTHREADS; k++)
        while (atomic_load(&S.per_thread[k]) < 10 && hp_now() < until)
            usleep(10000);
    atomic_store(&S.stop, true);
    for (int k = 0; k < NTHREADS; k++)
        pthread_join(readers[k], NULL);

    long writes = 0;
    for (int i = 0; i < NPAGES; i++)
        writes += atomic_load(&S.written[i]) - S.first[i];
    printf("     %ld acquires, %ld writes, %lu compiles\n",
           atomic_load(&S.acquires), writes, hp_compiler_runs(cc) - r0);
    CHECK(atomic_load(&S.bad_result) == 0);
    CHECK(atomic_load(&S.bad_err) == 0);
    CHECK(atomic_load(&S.bad_range) == 0);
    CHECK(atomic_load(&S.bad_order) == 0);
    for (int k = 0; k < NTHREADS; k++)
        CHECK(atomic_load(&S.per_thread[k]) >= 10);
    CHECK(writes >= 10);
    CHECK(hp_compiler_runs(cc) - r0 >= 3); /* reloads really happened */

    /* One last write of each: a touch and an acquire give exactly it. */
    for (int i = 0; i < NPAGES; i++) {
        hp_version *v = NULL;
        char *err = NULL;
        int n = atomic_load(&S.written[i]) + 1;
        atomic_store(&S.written[i], n);
        write_page_int(S.path[i], n);
        CHECK(hp_cache_touch(cache, S.path[i]) == 1);
        CHECK(hp_cache_acquire(cache, S.path[i], &v, &err) == HP_ACQ_OK);
        CHECK(value_of(v) == n);
        CHECK(err == NULL);
        keep[i] = hp_xstrdup(v ? v->so_path : "");
        hp_version_release(v);
        free(err);
    }

    /* Every retired version was unloaded when its last pin went. */
    for (int i = 0; i < NPAGES; i++) {
        CHECK(status_has(S.path[i], "\"retired\":[]"));
        CHECK(current_inflight(S.path[i]) == 0);
    }
    CHECK(maps_foreign(keep, NPAGES, seen) == 0);
    for (int i = 0; i < NPAGES; i++)
        CHECK(seen[i]);
    CHECK(rundir_foreign(keep, NPAGES) == 0);
    for (int i = 0; i < NPAGES; i++)
        free(keep[i]);
    stop();
}

/*
 * NTHREADS threads acquire p at once while the one compile is held at the
 * gate: give the others time to pile up behind it, check that nobody came
 * back while it had not finished, then open the gate and join them all.
 */
static void acquire_all_behind_gate(struct acq *a, const char *p)
{
    pthread_barrier_t bar;
    gate_set(false);
    pthread_barrier_init(&bar, NULL, NTHREADS);
    for (int i = 0; i < NTHREADS; i++)
        acq_start(&a[i], p, &bar);
    int fd = gate_wait_reader(20);
    CHECK(fd >= 0);
    usleep(300000);
    CHECK(count_done(a, NTHREADS) == 0);
    if (fd >= 0)
        close(fd);
    gate_set(true);
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(a[i].thread, NULL);
    pthread_barrier_destroy(&bar);
}

/* ---- 3. a failing first load with waiters ------------------------------- */

static void test_failed_first_load_waiters(void)
{
    char p[PBUF];
    struct acq a[NTHREADS];

    path_of(p, "broken.c");
    write_page(p, "#include \"gate.h\"", ""); /* `= ;`: a syntax error */
    start();
    unsigned long r0 = hp_compiler_runs(cc);

    acquire_all_behind_gate(a, p);

    for (int i = 0; i < NTHREADS; i++) {
        CHECK(a[i].r == HP_ACQ_ERROR);
        CHECK(a[i].v == NULL);
        CHECK(a[i].err != NULL && strstr(a[i].err, "error") != NULL);
        CHECK(a[i].err != NULL && strstr(a[i].err, "broken.c") != NULL);
        hp_version_release(a[i].v);
        free(a[i].err);
    }
    CHECK(hp_compiler_runs(cc) - r0 == 1);

    /* Asking again without a change does not compile again. */
    char *err = NULL;
    enum hp_acquire r;
    CHECK(acquire_value(p, &r, &err) == -1);
    CHECK(r == HP_ACQ_ERROR);
    CHECK(err != NULL && strstr(err, "error") != NULL);
    free(err);
    CHECK(hp_compiler_runs(cc) - r0 == 1);
    CHECK(status_has(p, "\"current\":null"));
    stop();
}

/* ---- 4. concurrent first load of a good page --------------------------- */

static void test_concurrent_first_load(void)
{
    char p[PBUF], inc[256];
    struct acq a[NTHREADS];

    path_of(p, "shared.c");
    /* Unique text: the on-disk compile cache cannot have it. */
    snprintf(inc, sizeof(inc), "#include \"gate.h\"\n/* %d %.9f */", getpid(),
             hp_now());
    write_page(p, inc, "44");
    start();
    unsigned long r0 = hp_compiler_runs(cc);

    acquire_all_behind_gate(a, p);

    for (int i = 0; i < NTHREADS; i++) {
        CHECK(a[i].r == HP_ACQ_OK);
        CHECK(a[i].v != NULL && a[i].v == a[0].v);
        CHECK(a[i].err == NULL);
    }
    CHECK(value_of(a[0].v) == 44);
    CHECK(hp_compiler_runs(cc) - r0 == 1);
    CHECK(current_inflight(p) == NTHREADS);
    for (int i = 0; i < NTHREADS; i++) {
        hp_version_release(a[i].v);
        free(a[i].err);
    }
    CHECK(current_inflight(p) == 0);
    CHECK(status_has(p, "\"retired\":[]"));
    stop();
}

/* ---- 5. a compile error after a good version --------------------------- */

static void test_error_keeps_old_version(void)
{
    char p[PBUF];
    hp_version *v = NULL;
    char *err = NULL;
    enum hp_acquire r;

    path_of(p, "flaky.c");
    write_page_int(p, 51);
    start();
    CHECK(acquire_value(p, NULL, NULL) == 51);

    unsigned long r0 = hp_compiler_runs(cc);
    write_page(p, "", "51 +"); /* broken */
    CHECK(hp_cache_touch(cache, p) == 1);
    r = hp_cache_acquire(cache, p, &v, &err);
    CHECK(r == HP_ACQ_OK);
    CHECK(value_of(v) == 51);
    CHECK(err != NULL && strstr(err, "error") != NULL);
    CHECK(hp_compiler_runs(cc) - r0 == 1);
    CHECK(status_has(p, "\"retired\":[]")); /* nothing replaced it */
    hp_version_release(v);
    free(err);

    /* No touch: no compile, same answer. */
    err = NULL;
    CHECK(acquire_value(p, &r, &err) == 51);
    CHECK(r == HP_ACQ_OK);
    CHECK(err != NULL && strstr(err, "error") != NULL);
    free(err);
    CHECK(hp_compiler_runs(cc) - r0 == 1);

    /* A touch of the same broken file (IN_ATTRIB, --revalidate) does not
     * rebuild it either. */
    CHECK(hp_cache_touch(cache, p) == 1);
    err = NULL;
    CHECK(acquire_value(p, &r, &err) == 51);
    CHECK(err != NULL);
    free(err);
    CHECK(hp_compiler_runs(cc) - r0 == 1);

    /* Fixed: the new version, and the error is gone. */
    write_page_int(p, 52);
    CHECK(hp_cache_touch(cache, p) == 1);
    err = (char *)"x";
    CHECK(acquire_value(p, &r, &err) == 52);
    CHECK(r == HP_ACQ_OK);
    CHECK(err == NULL);
    CHECK(hp_compiler_runs(cc) - r0 == 2);
    CHECK(status_has(p, "\"error\":null"));
    CHECK(status_has(p, "\"retired\":[]"));
    stop();
}

/* ---- 6. header dependencies ------------------------------------------- */

static void test_header_dependency(void)
{
    char p[PBUF], inc[PBUF], other[PBUF];

    path_of(p, "withinc.c");
    path_of(inc, "inc.h");
    path_of(other, "other.h");
    write_atomic(inc, "#define INC_VALUE 61\n");
    write_atomic(other, "#define OTHER 1\n");
    write_page(p, "#include \"inc.h\"", "INC_VALUE");
    start();
    CHECK(acquire_value(p, NULL, NULL) == 61);

    /* A header the page does not include: nothing to do. */
    unsigned long r0 = hp_compiler_runs(cc);
    CHECK(hp_cache_touch(cache, other) == 0);
    CHECK(acquire_value(p, NULL, NULL) == 61);
    CHECK(hp_compiler_runs(cc) - r0 == 0);

    write_atomic(inc, "#define INC_VALUE 62\n");
    /* A header written within a clock tick of the compile's start counts
     * as racing it (compile.c builds again); a watcher waits settle_ms.
     * Wait past that window so exactly one compile is expected. */
    usleep(50000);
    CHECK(hp_cache_touch(cache, inc) == 1);
    char *err = (char *)"x";
    CHECK(acquire_value(p, NULL, &err) == 62);
    CHECK(err == NULL);
    free(err);
    CHECK(hp_compiler_runs(cc) - r0 == 1);
    CHECK(status_has(p, "\"retired\":[]"));
    stop();
}

/* ---- 7. deleted page --------------------------------------------------- */

static void test_deleted_page(void)
{
    char p[PBUF];
    hp_version *pinned = NULL, *v = (hp_version *)&v;
    char *err = NULL;

    path_of(p, "doomed.c");
    write_page_int(p, 71);
    start();
    CHECK(hp_cache_acquire(cache, p, &pinned, &err) == HP_ACQ_OK);
    free(err);
    CHECK(value_of(pinned) == 71);

    CHECK(unlink(p) == 0);
    CHECK(hp_cache_touch(cache, p) == 1);
    err = NULL;
    CHECK(hp_cache_acquire(cache, p, &v, &err) == HP_ACQ_GONE);
    CHECK(v == NULL);
    free(err);
    CHECK(status_has(p, "\"gone\":true"));
    CHECK(status_has(p, "\"current\":null"));

    /* The pinned version still works; the last release unloads it. */
    CHECK(value_of(pinned) == 71);
    char *keep[1] = {hp_xstrdup(pinned->so_path)};
    bool seen[1];
    CHECK(maps_foreign(keep, 1, seen) == 0 && seen[0]);
    hp_version_release(pinned);
    CHECK(status_has(p, "\"retired\":[]"));
    CHECK(maps_foreign(NULL, 0, NULL) == 0);
    CHECK(access(keep[0], F_OK) != 0);
    free(keep[0]);

    /* Still gone without a touch; back after one. */
    enum hp_acquire r;
    CHECK(acquire_value(p, &r, NULL) == -1 && r == HP_ACQ_GONE);
    write_page_int(p, 72);
    CHECK(hp_cache_touch(cache, p) == 1);
    CHECK(acquire_value(p, &r, NULL) == 72 && r == HP_ACQ_OK);
    stop();
}

/* ---- 8. distinct entries load independently ---------------------------- */

static void test_distinct_entries_concurrent(void)
{
    char pa[PBUF], pb[PBUF];
    struct acq a, a2, b;

    path_of(pa, "slow.c");
    path_of(pb, "quick.c");
    write_page(pa, "#include \"gate.h\"", "81");
    write_page_int(pb, 82);
    start();

    /* A's load is stuck in its compiler, holding A's load lock. */
    gate_set(false);
    acq_start(&a, pa, NULL);
    int fd = gate_wait_reader(20);
    CHECK(fd >= 0);

    /* A second request for A waits for that load... */
    acq_start(&a2, pa, NULL);
    /* ...but B, a new entry, loads meanwhile. */
    acq_start(&b, pb, NULL);
    CHECK(wait_flag(&b.done, 20));
    CHECK(!atomic_load(&a.done));
    CHECK(!atomic_load(&a2.done));

    if (fd >= 0)
        close(fd);
    gate_set(true);
    pthread_join(a.thread, NULL);
    pthread_join(a2.thread, NULL);
    pthread_join(b.thread, NULL);
    CHECK(b.r == HP_ACQ_OK && value_of(b.v) == 82);
    CHECK(a.r == HP_ACQ_OK && value_of(a.v) == 81);
    CHECK(a2.r == HP_ACQ_OK && a2.v == a.v);
    hp_version_release(a.v);
    hp_version_release(a2.v);
    hp_version_release(b.v);
    free(a.err);
    free(a2.err);
    free(b.err);
    stop();
}

/* ---- 9. a page rewritten while it compiles ----------------------------- */

static void test_page_edit_during_compile(void)
{
    char p[PBUF];
    struct acq a;

    path_of(p, "edited.c");
    write_page(p, "#include \"gate.h\"", "91");
    start();
    CHECK(acquire_value(p, NULL, NULL) == 91);

    write_page(p, "#include \"gate.h\"", "92");
    CHECK(hp_cache_touch(cache, p) == 1);
    gate_set(false);
    acq_start(&a, p, NULL);
    int fd = gate_wait_reader(20);
    CHECK(fd >= 0);
    /* Saved again while the compiler works on 92. */
    write_page(p, "#include \"gate.h\"", "93");
    CHECK(hp_cache_touch(cache, p) == 1);
    if (fd >= 0)
        close(fd);
    gate_set(true);
    pthread_join(a.thread, NULL);
    /* The request arrived before the second save: it may get the build
     * of 92 (already out of date) or a rebuild of 93, nothing older. */
    CHECK(a.r == HP_ACQ_OK);
    CHECK(value_of(a.v) == 92 || value_of(a.v) == 93);
    hp_version_release(a.v);
    free(a.err);
    /* The second save was touched: the next request gets it. */
    CHECK(acquire_value(p, NULL, NULL) == 93);
    CHECK(status_has(p, "\"stale\":false"));
    CHECK(status_has(p, "\"retired\":[]"));
    stop();
}

/* ---- 10. a touch while the new version is being loaded ---------------- */

/*
 * The page's constructor blocks on the gate, so a reload can be held inside
 * dlopen: after the compile and its checks, before the version is
 * published. A save + touch arriving then must not be lost (want/done).
 */
static void write_ctor_page(const char *p, int value)
{
    char *inc = hp_xasprintf(
        "#include <fcntl.h>\n#include <unistd.h>\n"
        "__attribute__((constructor)) static void wait_gate(void)\n"
        "{\n"
        "    char c;\n"
        "    int fd = open(\"%s\", O_RDONLY);\n"
        "    if (fd >= 0) {\n"
        "        while (read(fd, &c, 1) > 0)\n"
        "            ;\n"
        "        close(fd);\n"
        "    }\n"
        "}",
        gate_path);
    char expr[32];
    snprintf(expr, sizeof(expr), "%d", value);
    write_page(p, inc, expr);
    free(inc);
}

static void test_touch_during_load_not_lost(void)
{
    char p[PBUF];
    struct acq a;

    path_of(p, "ctor.c");
    write_ctor_page(p, 101);
    start();
    CHECK(acquire_value(p, NULL, NULL) == 101);

    write_ctor_page(p, 102);
    CHECK(hp_cache_touch(cache, p) == 1);
    gate_set(false);
    acq_start(&a, p, NULL);
    int fd = gate_wait_reader(20); /* 102 compiled, now in dlopen */
    CHECK(fd >= 0);
    write_ctor_page(p, 103);
    CHECK(hp_cache_touch(cache, p) == 1);
    if (fd >= 0)
        close(fd);
    gate_set(true);
    pthread_join(a.thread, NULL);
    CHECK(a.r == HP_ACQ_OK);
    CHECK(value_of(a.v) == 102 || value_of(a.v) == 103);
    hp_version_release(a.v);
    free(a.err);
    CHECK(acquire_value(p, NULL, NULL) == 103);
    CHECK(status_has(p, "\"stale\":false"));
    CHECK(status_has(p, "\"retired\":[]"));
    stop();
}

/* ---- 11, 12. a header rewritten while the page compiles --------------- */

/*
 * The page includes the header, then the gate. It is loaded with HDR=1,
 * then the header is saved as HDR=2 and touched, and a reload starts; the
 * compiler reads HDR=2 and stops at the gate. Then the header is saved
 * again as HDR=3 and touched, and the compile finishes: it built HDR=2.
 * Returns the value that reload got.
 */
static int header_edit_during_compile(const char *p, const char *inc)
{
    struct acq a;
    int got;

    write_atomic(inc, "#define HDR 1\n");
    write_page(p, "#include \"hdrrace.h\"\n#include \"gate.h\"", "HDR + 100");
    if (acquire_value(p, NULL, NULL) != 101)
        return -1;

    write_atomic(inc, "#define HDR 2\n");
    if (hp_cache_touch(cache, inc) != 1)
        return -1;
    gate_set(false);
    acq_start(&a, p, NULL);
    int fd = gate_wait_reader(20);
    /* The compiler has read the header and waits at the gate. */
    write_atomic(inc, "#define HDR 3\n");
    int hits = hp_cache_touch(cache, inc);
    if (fd >= 0)
        close(fd);
    gate_set(true);
    pthread_join(a.thread, NULL);
    got = a.r == HP_ACQ_OK ? value_of(a.v) : -1;
    hp_version_release(a.v);
    free(a.err);
    return fd < 0 || hits != 1 ? -1 : got;
}

static void test_header_edit_during_compile(void)
{
    char p[PBUF], inc[PBUF];

    path_of(p, "hdrrace.c");
    path_of(inc, "hdrrace.h");
    start();
    int got = header_edit_during_compile(p, inc);
    CHECK(got == 102 || got == 103);
    /* The second save was touched: the next acquire must see it. */
    int now = acquire_value(p, NULL, NULL);
    if (now != 103)
        fprintf(stderr, "  header saved (HDR=3) and touched during the "
                "compile of HDR=2: the page still says %d\n", now);
    CHECK(now == 103);
    stop();
}

static void test_header_edit_during_compile_disk_cache(void)
{
    char p[PBUF], inc[PBUF];

    path_of(p, "hdrrace2.c");
    path_of(inc, "hdrrace.h");
    start();
    int got = header_edit_during_compile(p, inc);
    CHECK(got == 102 || got == 103);
    stop();

    /* A new server on the same compile cache: the header says HDR=3, so
     * the object built from HDR=2 must not be a hit. */
    start();
    int now = acquire_value(p, NULL, NULL);
    if (now != 103)
        fprintf(stderr, "  a fresh cache loads %d: the on-disk compile "
                "cache served an object built from an older header\n", now);
    CHECK(now == 103);
    stop();
}

/* ---- 13. --revalidate (touch_all) after a header broke a page ---------- */

static void test_touch_all_recovers_header_error(void)
{
    char p[PBUF], inc[PBUF], p2[PBUF], inc2[PBUF];
    char *err = NULL;
    enum hp_acquire r;

    /* A good page broken by its header, then the header is fixed. */
    path_of(p, "reval.c");
    path_of(inc, "reval.h");
    write_atomic(inc, "#define REVAL 121\n");
    write_page(p, "#include \"reval.h\"", "REVAL");
    /* A page whose header is broken from the start. */
    path_of(p2, "reval2.c");
    path_of(inc2, "reval2.h");
    write_atomic(inc2, "#define REVAL2 (\n");
    write_page(p2, "#include \"reval2.h\"", "REVAL2");
    start();
    CHECK(acquire_value(p, NULL, NULL) == 121);
    CHECK(acquire_value(p2, &r, NULL) == -1 && r == HP_ACQ_ERROR);

    write_atomic(inc, "#define REVAL (\n");
    hp_cache_touch_all(cache);
    CHECK(acquire_value(p, &r, &err) == 121 && r == HP_ACQ_OK);
    CHECK(err != NULL);
    free(err);

    write_atomic(inc, "#define REVAL 122\n");
    write_atomic(inc2, "#define REVAL2 123\n");
    hp_cache_touch_all(cache);
    err = NULL;
    int v1 = acquire_value(p, &r, &err);
    if (v1 != 122)
        fprintf(stderr, "  header fixed + touch_all: %s still %d, error %s\n",
                p, v1, err ? "kept" : "none");
    CHECK(v1 == 122 && r == HP_ACQ_OK && err == NULL);
    free(err);
    err = NULL;
    int v2 = acquire_value(p2, &r, &err);
    if (v2 != 123)
        fprintf(stderr, "  header fixed + touch_all: %s result %d, %d\n", p2,
                (int)r, v2);
    CHECK(v2 == 123 && r == HP_ACQ_OK && err == NULL);
    free(err);
    stop();
}

/* ---- 14. --revalidate: stat-based change detection ---------------------- */

static void test_revalidate(void)
{
    char p[PBUF], inc[PBUF];
    enum hp_acquire r;

    path_of(p, "reval3.c");
    path_of(inc, "reval3.h");
    write_atomic(inc, "#define REVAL3 141\n");
    write_page(p, "#include \"reval3.h\"", "REVAL3");
    usleep(50000); /* past the compiler's header race window */
    start();
    CHECK(acquire_value(p, NULL, NULL) == 141);

    unsigned long r0 = hp_compiler_runs(cc);
    CHECK(hp_cache_revalidate(cache) == 0);
    CHECK(acquire_value(p, NULL, NULL) == 141);
    CHECK(hp_compiler_runs(cc) - r0 == 0);

    write_atomic(inc, "#define REVAL3 142\n");
    usleep(50000);
    CHECK(hp_cache_revalidate(cache) == 1);
    CHECK(acquire_value(p, NULL, NULL) == 142);
    CHECK(hp_compiler_runs(cc) - r0 == 1);

    CHECK(unlink(p) == 0);
    CHECK(hp_cache_revalidate(cache) == 1);
    CHECK(acquire_value(p, &r, NULL) == -1 && r == HP_ACQ_GONE);
    CHECK(hp_cache_revalidate(cache) == 0);
    stop();
}

/* ---- 15. a header with a modification time in the future ---------------- */

/*
 * tar, cp -p, rsync -t or a skewed NFS clock can leave a header's mtime
 * ahead of the clock. That is not an edit racing the compiler: the page
 * must load.
 */
static void test_future_dated_header(void)
{
    char p[PBUF], inc[PBUF];
    struct timespec ts[2];
    enum hp_acquire r;
    char *err = NULL;

    path_of(p, "future.c");
    path_of(inc, "future.h");
    write_atomic(inc, "#define FUTURE 151\n");
    write_page(p, "#include \"future.h\"", "FUTURE");
    clock_gettime(CLOCK_REALTIME, &ts[0]);
    ts[0].tv_sec += 3600; /* an hour ahead */
    ts[1] = ts[0];
    CHECK(utimensat(AT_FDCWD, inc, ts, 0) == 0);
    usleep(50000);
    start();
    unsigned long r0 = hp_compiler_runs(cc);
    int v = acquire_value(p, &r, &err);
    if (v != 151)
        fprintf(stderr, "  result %d, value %d, %lu compiles, error: %s\n",
                (int)r, v, hp_compiler_runs(cc) - r0, err ? err : "(none)");
    CHECK(r == HP_ACQ_OK && v == 151);
    CHECK(hp_compiler_runs(cc) - r0 == 1);
    free(err);
    stop();
}

/* ---- 16. a batch publishes all of its entries or none ------------------- */

static void test_batch_all_or_nothing(void)
{
    char pa[PBUF], pb[PBUF];
    char *err = NULL;
    enum hp_acquire r;

    path_of(pa, "batch_a.c");
    path_of(pb, "batch_b.c");
    write_page_int(pa, 161);
    write_page_int(pb, 162);
    start();
    CHECK(acquire_value(pa, NULL, NULL) == 161);
    CHECK(acquire_value(pb, NULL, NULL) == 162);

    /* Saved together: a is fine, b is broken. Nothing goes live. */
    write_page_int(pa, 163);
    write_page(pb, "", "162 +");
    CHECK(hp_cache_touch(cache, pa) == 1);
    CHECK(hp_cache_touch(cache, pb) == 1);
    hp_cache_refresh_stale(cache);
    CHECK(acquire_value(pa, &r, &err) == 161 && r == HP_ACQ_OK);
    CHECK(err == NULL);
    free(err);
    err = NULL;
    CHECK(acquire_value(pb, &r, &err) == 162 && r == HP_ACQ_OK);
    CHECK(err != NULL && strstr(err, "error") != NULL);
    free(err);
    CHECK(status_has(pa, "\"held\":true"));
    CHECK(status_has(pa, "\"retired\":[]"));

    /* b fixed: the next batch publishes both. */
    write_page_int(pb, 164);
    CHECK(hp_cache_touch(cache, pb) == 1);
    hp_cache_refresh_stale(cache);
    err = NULL;
    CHECK(acquire_value(pa, &r, &err) == 163 && r == HP_ACQ_OK && !err);
    free(err);
    err = NULL;
    CHECK(acquire_value(pb, &r, &err) == 164 && r == HP_ACQ_OK && !err);
    free(err);
    CHECK(status_has(pa, "\"held\":false"));
    CHECK(status_has(pb, "\"error\":null"));

    /* The held-back build of a was closed: only the current two remain. */
    hp_version *va = NULL, *vb = NULL;
    char *ea = NULL, *eb = NULL;
    hp_cache_acquire(cache, pa, &va, &ea);
    hp_cache_acquire(cache, pb, &vb, &eb);
    char *keep[2] = {hp_xstrdup(va ? va->so_path : ""),
                     hp_xstrdup(vb ? vb->so_path : "")};
    bool seen[2];
    hp_version_release(va);
    hp_version_release(vb);
    free(ea);
    free(eb);
    CHECK(maps_foreign(keep, 2, seen) == 0);
    CHECK(rundir_foreign(keep, 2) == 0);
    free(keep[0]);
    free(keep[1]);
    stop();
}

/* ---- 16a. a page failing as before does not hold back a header's batch -- */

static void expect_page(const char *p, int want, bool want_err)
{
    char *err = NULL;
    enum hp_acquire r;
    int v = acquire_value(p, &r, &err);
    if (v != want || (err != NULL) != want_err)
        fprintf(stderr, "  %s: %d (want %d), error %s\n", p, v, want,
                err ? err : "none");
    CHECK(v == want && r == HP_ACQ_OK && (err != NULL) == want_err);
    free(err);
}

static void test_unchanged_failure_does_not_hold(void)
{
    char ph[PBUF], inc[PBUF], pn[PBUF];
    enum hp_acquire r;

    path_of(ph, "uf_h.c");
    path_of(inc, "uf.h");
    path_of(pn, "uf_n.c");
    write_atomic(inc, "#define UF 181\n");
    write_page(ph, "#include \"uf.h\"", "UF");
    write_page(pn, "", "181 +"); /* broken on its own, includes no header */
    start();
    expect_page(ph, 181, false);
    CHECK(acquire_value(pn, &r, NULL) == -1 && r == HP_ACQ_ERROR);

    /* The header changes: the broken page is retried with it (a failed
     * compile has no dependency list), fails as before, and holds nothing. */
    write_atomic(inc, "#define UF 182\n");
    CHECK(hp_cache_touch(cache, inc) == 2);
    hp_cache_refresh_stale(cache);
    expect_page(ph, 182, false);
    CHECK(status_has(ph, "\"held\":false"));
    CHECK(status_has(pn, "\"builds\":2"));
    CHECK(acquire_value(pn, &r, NULL) == -1 && r == HP_ACQ_ERROR);

    /* Broken, then fixed: the including page's error clears. */
    write_atomic(inc, "#define UF (\n");
    CHECK(hp_cache_touch(cache, inc) == 2);
    hp_cache_refresh_stale(cache);
    expect_page(ph, 182, true);
    write_atomic(inc, "#define UF 183\n");
    CHECK(hp_cache_touch(cache, inc) == 2);
    hp_cache_refresh_stale(cache);
    expect_page(ph, 183, false);

    /* Saved with the header, the broken page is a real member: it holds
     * the batch back, and the held page shows no stale error of its own. */
    write_page(pn, "", "184 + +");
    write_atomic(inc, "#define UF 184\n");
    CHECK(hp_cache_touch(cache, pn) == 1);
    CHECK(hp_cache_touch(cache, inc) == 2);
    hp_cache_refresh_stale(cache);
    expect_page(ph, 183, false);
    CHECK(status_has(ph, "\"held\":true"));
    write_page_int(pn, 185);
    CHECK(hp_cache_touch(cache, pn) == 1);
    hp_cache_refresh_stale(cache);
    expect_page(ph, 184, false);
    expect_page(pn, 185, false);
    stop();
}

/* ---- 16a. a first load is held only by a failure it was saved with ----- */

/* Whether p's first acquire is held back: an error saying so, no version. */
static bool held_back(const char *p)
{
    char *err = NULL;
    enum hp_acquire r;
    int v = acquire_value(p, &r, &err);
    bool held = v == -1 && r == HP_ACQ_ERROR && err && strstr(err, "held back");
    if (!held)
        fprintf(stderr, "  %s: %d, error %s\n", p, v, err ? err : "none");
    free(err);
    return held;
}

static void test_first_load_held_only_with_its_batch(void)
{
    char pa[PBUF], pb[PBUF], pn[PBUF], pw[PBUF], pq[PBUF], inc[PBUF];

    path_of(pa, "fl_a.c");
    path_of(pb, "fl_b.c");
    path_of(pn, "fl_n.c");
    path_of(pw, "fl_w.c");
    path_of(pq, "fl_q.c");
    path_of(inc, "fl.h");
    write_page_int(pa, 191);
    write_page_int(pb, 192);
    start();
    hp_cache_set_batched(cache, true);
    expect_page(pa, 191, false);
    expect_page(pb, 192, false);

    /* a and b saved together, b broken: a is held back. */
    write_page_int(pa, 193);
    write_page(pb, "", "193 +");
    CHECK(hp_cache_touch(cache, pa) == 1);
    CHECK(hp_cache_touch(cache, pb) == 1);
    hp_cache_refresh_stale(cache);
    expect_page(pa, 191, false);
    CHECK(status_has(pa, "\"held\":true"));

    /* A new page saved later, on its own: that failure holds it not. */
    write_page_int(pn, 194);
    CHECK(hp_cache_touch(cache, pn) == 0);
    expect_page(pn, 194, false);
    CHECK(status_has(pn, "\"held\":false"));

    /* A new page saved with a broken page, and one that includes a header
     * saved with it: both held back on their first load. One that
     * includes nothing of that batch is not. */
    write_page(pq, "#include \"fl.h\"", "FL");
    write_page_int(pw, 195);
    /* The next batch, of nothing new, closes the window; the held a stays
     * held: b, saved with it, is still broken (all or nothing). */
    hp_cache_refresh_stale(cache);
    expect_page(pa, 191, false);
    CHECK(status_has(pa, "\"held\":true"));
    write_atomic(inc, "#define FL 196\n");
    write_page(pb, "", "196 + +");
    CHECK(hp_cache_touch(cache, pw) == 0);
    CHECK(hp_cache_touch(cache, inc) == 1); /* b, broken: retried */
    CHECK(hp_cache_touch(cache, pb) == 1);
    hp_cache_refresh_stale(cache);
    expect_page(pb, 192, true);
    CHECK(held_back(pw));
    CHECK(held_back(pq));
    expect_page(pn, 194, false);

    /* b fixed: everything held goes live with it. */
    write_page_int(pb, 197);
    CHECK(hp_cache_touch(cache, pb) == 1);
    hp_cache_refresh_stale(cache);
    expect_page(pa, 193, false);
    expect_page(pb, 197, false);
    expect_page(pw, 195, false);
    expect_page(pq, 196, false);
    stop();
}

/* ---- 16b. batches run apart: a slow one delays only its own files ------ */

static bool wait_status(const char *path, const char *needle, double timeout)
{
    double end = hp_now() + timeout;
    for (;;) {
        char *s = status_of(path);
        bool hit = s && strstr(s, needle) != NULL;
        free(s);
        if (hit)
            return true;
        if (hp_now() > end)
            return status_has(path, needle); /* says what it lacks */
        usleep(5000);
    }
}

/*
 * A's batch is held at the gate (its compile blocks); B's batch, started
 * after, publishes B meanwhile and leaves A to the running batch. A saved
 * again joins a third batch, which waits for the first; when the gate
 * opens, the last save of A goes live. hp_cache_free waits for them all.
 */
static void test_batches_run_apart(void)
{
    char pa[PBUF], pb[PBUF];

    path_of(pa, "apart_a.c");
    path_of(pb, "apart_b.c");
    write_page(pa, "#include \"gate.h\"", "201");
    write_page_int(pb, 202);
    start();
    hp_cache_set_batched(cache, true);
    CHECK(acquire_value(pa, NULL, NULL) == 201);
    CHECK(acquire_value(pb, NULL, NULL) == 202);

    write_page(pa, "#include \"gate.h\"", "203");
    CHECK(hp_cache_touch(cache, pa) == 1);
    gate_set(false);
    hp_cache_start_batch(cache);
    int fd = gate_wait_reader(20);
    CHECK(fd >= 0);
    CHECK(status_has(pa, "\"building\":true"));

    write_page_int(pb, 204);
    CHECK(hp_cache_touch(cache, pb) == 1);
    hp_cache_start_batch(cache); /* B alone: A is left to its batch */
    CHECK(wait_status(pb, "\"stale\":false", 5));
    CHECK(acquire_value(pb, NULL, NULL) == 204);
    CHECK(status_has(pa, "\"stale\":true"));

    hp_cache_start_batch(cache); /* nothing new: no batch at all */
    write_page(pa, "#include \"gate.h\"", "205");
    CHECK(hp_cache_touch(cache, pa) == 1);
    hp_cache_start_batch(cache); /* A changed again: a batch of its own */
    CHECK(status_has(pa, "\"building\":true"));

    if (fd >= 0)
        close(fd);
    gate_set(true);
    CHECK(wait_status(pa, "\"stale\":false", 20));
    CHECK(wait_status(pa, "\"building\":false", 5));
    CHECK(acquire_value(pa, NULL, NULL) == 205);
    CHECK(acquire_value(pb, NULL, NULL) == 204);
    stop();
}

/* ---- 17. init/fini: state handed over, refused init, release order ------- */

struct fini_state {
    int gen;    /* inits that produced or adopted it     */
    int handed; /* finis that were told it was adopted   */
};

/* mode: "adopt" returns previous, "copy" a new object, "fail" refuses. */
static void write_init_page(const char *p, int value, const char *mode)
{
    char *inc = hp_xasprintf(
        "#include <stdlib.h>\n#include <string.h>\n"
        "struct fini_state { int gen; int handed; };\n"
        "HP_INIT\n"
        "{\n"
        "    struct fini_state *s = previous;\n"
        "    const char *mode = \"%s\";\n"
        "    if (strcmp(mode, \"fail\") == 0) {\n"
        "        hp_module_error(m, \"init says no\");\n"
        "        return NULL;\n"
        "    }\n"
        "    if (!s || strcmp(mode, \"copy\") == 0) {\n"
        "        struct fini_state *n = calloc(1, sizeof *n);\n"
        "        if (s)\n"
        "            *n = *s;\n"
        "        s = n;\n"
        "    }\n"
        "    s->gen++;\n"
        "    return s;\n"
        "}\n"
        "HP_FINI\n"
        "{\n"
        "    struct fini_state *s = state;\n"
        "    if (handed_over)\n"
        "        s->handed++;\n"
        "    else\n"
        "        free(s);\n"
        "}",
        mode);
    char expr[32];
    snprintf(expr, sizeof(expr), "%d", value);
    write_page(p, inc, expr);
    free(inc);
}

static void test_init_fini_handover(void)
{
    char p[PBUF];
    hp_version *v1 = NULL, *v2 = NULL, *v = NULL;
    char *err = NULL;

    path_of(p, "stateful.c");
    write_init_page(p, 1, "adopt");
    start();
    CHECK(hp_cache_acquire(cache, p, &v1, &err) == HP_ACQ_OK);
    free(err);
    struct fini_state *s1 = v1 ? v1->state : NULL;
    CHECK(s1 != NULL && s1->gen == 1);

    /* v2 adopts v1's state; v1 is still pinned, so no fini yet. */
    write_init_page(p, 2, "adopt");
    CHECK(hp_cache_touch(cache, p) == 1);
    err = NULL;
    CHECK(hp_cache_acquire(cache, p, &v2, &err) == HP_ACQ_OK);
    free(err);
    CHECK(value_of(v2) == 2);
    CHECK(v2 && v2->state == s1);
    CHECK(s1 && s1->gen == 2 && s1->handed == 0);
    /* The last pin of v1 runs its fini, told that v2 owns the state. */
    hp_version_release(v1);
    CHECK(s1 && s1->handed == 1);

    /* A refused init: v2 keeps serving, its state untouched. */
    write_init_page(p, 3, "fail");
    CHECK(hp_cache_touch(cache, p) == 1);
    err = NULL;
    CHECK(hp_cache_acquire(cache, p, &v, &err) == HP_ACQ_OK);
    CHECK(v == v2);
    CHECK(err != NULL && strstr(err, "init says no") != NULL);
    free(err);
    hp_version_release(v);
    CHECK(s1 && s1->gen == 2 && s1->handed == 1);
    /* Touched again without a change: the refused init is not run again. */
    long b0 = entry_builds(p);
    CHECK(hp_cache_touch(cache, p) == 1);
    err = NULL;
    v = NULL;
    CHECK(hp_cache_acquire(cache, p, &v, &err) == HP_ACQ_OK && v == v2);
    CHECK(err != NULL);
    free(err);
    hp_version_release(v);
    CHECK(entry_builds(p) == b0);

    /* v4 copies the state: when v2 goes, its fini frees the old one
     * (ASan: a wrong handed_over shows as a leak or a use after free). */
    write_init_page(p, 4, "copy");
    CHECK(hp_cache_touch(cache, p) == 1);
    err = NULL;
    v = NULL;
    CHECK(hp_cache_acquire(cache, p, &v, &err) == HP_ACQ_OK);
    CHECK(err == NULL);
    free(err);
    CHECK(value_of(v) == 4);
    struct fini_state *s4 = v ? v->state : NULL;
    CHECK(s4 != NULL && s4 != s1 && s4->gen == 3 && s4->handed == 1);
    hp_version_release(v2); /* v2's fini frees s1 */
    CHECK(status_has(p, "\"retired\":[]"));
    hp_version_release(v);
    stop(); /* v4's fini frees s4 */
}

/* ---- 18. a touch that changed nothing keeps the version ------------------ */

static void test_touch_unchanged_keeps_version(void)
{
    char p[PBUF];
    hp_version *v = NULL;
    char *err = NULL;

    path_of(p, "steady.c");
    write_page_int(p, 181);
    start();
    CHECK(hp_cache_acquire(cache, p, &v, &err) == HP_ACQ_OK);
    free(err);
    uint64_t id = v ? v->id : 0;
    hp_version_release(v);
    unsigned long r0 = hp_compiler_runs(cc);
    long b0 = entry_builds(p);

    /* The watcher marks it (IN_Q_OVERFLOW, a new directory, revalidate):
     * the file is as it was, so the version, its globals and its state
     * stay; nothing is rebuilt. */
    CHECK(hp_cache_touch(cache, p) == 1);
    v = NULL;
    err = NULL;
    CHECK(hp_cache_acquire(cache, p, &v, &err) == HP_ACQ_OK);
    free(err);
    if (v && v->id != id)
        fprintf(stderr, "  unchanged file, touched: version %llu replaced "
                "%llu (builds %ld -> %ld)\n", (unsigned long long)v->id,
                (unsigned long long)id, b0, entry_builds(p));
    CHECK(v && v->id == id);
    CHECK(entry_builds(p) == b0);
    CHECK(hp_compiler_runs(cc) - r0 == 0);
    hp_version_release(v);
    stop();
}

/* ---- 19. a load error is not retried until the file changes ------------- */

static void test_load_error_not_retried(void)
{
    char p[PBUF];
    enum hp_acquire r;
    char *err = NULL;

    path_of(p, "unresolved.c");
    /* Compiles (a shared object may have undefined symbols), but dlopen
     * with RTLD_NOW refuses it. */
    write_page(p, "extern int hp_test_no_such_function(void);\n"
                  "HP_EXPORT int (*const page_fn)(void) = "
                  "hp_test_no_such_function;",
               "191");
    start();
    CHECK(acquire_value(p, &r, &err) == -1 && r == HP_ACQ_ERROR);
    CHECK(err != NULL && strstr(err, "hp_test_no_such_function") != NULL);
    free(err);
    long b0 = entry_builds(p);
    CHECK(b0 == 1);

    CHECK(hp_cache_touch(cache, p) == 1); /* nothing changed */
    err = NULL;
    CHECK(acquire_value(p, &r, &err) == -1 && r == HP_ACQ_ERROR);
    CHECK(err != NULL);
    free(err);
    if (entry_builds(p) != b0)
        fprintf(stderr, "  the same file was built (and dlopen'ed) again: "
                "builds %ld -> %ld\n", b0, entry_builds(p));
    CHECK(entry_builds(p) == b0);
    stop();
}

/* ---- main ---------------------------------------------------------------- */

static int rm_entry(const char *path, const struct stat *sb, int flag,
                    struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

/* ---- prefetch: the compile starts on the first event, runs once ------- */

/*
 * The watcher prefetches a page it saw written; the batch that follows the
 * settle window asks for the same key while that compile is still stuck on
 * the gate: it waits for it and takes its object, and no second compiler
 * runs. A path that is no module is ignored.
 */
static void test_prefetch_warms_the_batch(void)
{
    char p[PBUF], other[PBUF];

    path_of(p, "prefetched.c");
    path_of(other, "not-a-module.c");
    write_page(p, "#include \"gate.h\"", "101");
    write_page_int(other, 1);
    start();
    CHECK(acquire_value(p, NULL, NULL) == 101);
    unsigned long r0 = hp_compiler_runs(cc);
    hp_cache_prefetch(cache, other);
    usleep(100000);
    CHECK(hp_compiler_runs(cc) == r0);

    write_page(p, "#include \"gate.h\"", "102");
    CHECK(hp_cache_touch(cache, p) == 1);
    gate_set(false);
    hp_cache_prefetch(cache, p);
    int fd = gate_wait_reader(20);
    CHECK(fd >= 0);
    CHECK(hp_compiler_runs(cc) - r0 == 1);
    hp_cache_start_batch(cache); /* the window is over */
    usleep(200000);
    CHECK(hp_compiler_runs(cc) - r0 == 1); /* it waits on the key */
    if (fd >= 0)
        close(fd);
    gate_set(true);
    CHECK(acquire_value(p, NULL, NULL) == 102);
    CHECK(hp_compiler_runs(cc) - r0 == 1);
    CHECK(status_has(p, "\"stale\":false"));
    stop();
}

/* ---- tiers: an optimized build never hides a newer error ------------- */

/*
 * Tiered: save 2 goes live from the fast tier; its optimized build is held
 * at the gate; save 3 does not compile (the error is stored, version 2
 * keeps its place). When the gate opens, the optimized build of save 2 is
 * dropped: it used to go live over the error and clear it.
 */
/* Whether the status of path comes to hold needle within timeout
 * (quietly: for a state that must not come). */
static bool status_comes(const char *path, const char *needle, double timeout)
{
    double end = hp_now() + timeout;
    do {
        char *s = status_of(path);
        bool hit = s && strstr(s, needle) != NULL;
        free(s);
        if (hit)
            return true;
        usleep(5000);
    } while (hp_now() < end);
    return false;
}

/* Tiered: p (value v, including the gate) goes live, and its optimized
 * build; then v + 1 goes live from the fast tier, and its optimized build
 * is held at the gate. Returns the write end holding it, or -1. */
static int tier_held_at_gate(const char *p, int v)
{
    char expr[32];

    snprintf(expr, sizeof expr, "%d", v);
    write_page(p, "#include \"gate.h\"", expr);
    start();
    hp_cache_set_tiered(cache, true);
    CHECK(acquire_value(p, NULL, NULL) == v);
    CHECK(wait_status(p, "\"tier\":\"optimized\"", 20));

    snprintf(expr, sizeof expr, "%d", v + 1);
    write_page(p, "#include \"gate.h\"", expr);
    CHECK(hp_cache_touch(cache, p) == 1);
    hp_cache_refresh_stale(cache); /* the fast build passes the open gate */
    gate_set(false); /* the optimized build starts 150 ms after the publish */
    CHECK(status_has(p, "\"tier\":\"fast\""));
    return gate_wait_reader(20);
}

/* p serves version value (fast tier) with a compile error beside it. */
static void check_error_stays(const char *p, int value)
{
    char *err = NULL;
    enum hp_acquire r;

    CHECK(acquire_value(p, &r, &err) == value && r == HP_ACQ_OK);
    CHECK(err != NULL && strstr(err, "error") != NULL);
    free(err);
    CHECK(status_has(p, "\"tier\":\"fast\""));
}

/* The held optimized build goes on: it must not go live (gcc -O0 of this
 * page takes well under a second), nor clear the error. Then a fix goes
 * live, and its own optimized build after it. */
static void release_and_fix(const char *p, int fd, int value)
{
    if (fd >= 0)
        close(fd);
    gate_set(true);
    CHECK(!status_comes(p, "\"tier\":\"optimized\"", 3));
    check_error_stays(p, value);

    char *err = NULL;
    enum hp_acquire r;
    write_page_int(p, value + 100);
    CHECK(hp_cache_touch(cache, p) == 1);
    hp_cache_refresh_stale(cache);
    CHECK(acquire_value(p, &r, &err) == value + 100 && r == HP_ACQ_OK && !err);
    free(err);
    CHECK(wait_status(p, "\"tier\":\"optimized\"", 20));
    CHECK(status_has(p, "\"error\":null"));
}

/*
 * The broken save is built (and its error stored) while the optimized
 * build of the save before it is held at the gate: when that one ends it
 * is dropped. It used to go live over the error and clear it.
 */
static void test_tier_never_hides_a_newer_error(void)
{
    char p[PBUF];

    path_of(p, "tiered.c");
    int fd = tier_held_at_gate(p, 221);
    CHECK(fd >= 0);
    write_page(p, "", "222 +"); /* does not compile, does not wait */
    CHECK(hp_cache_touch(cache, p) == 1);
    hp_cache_refresh_stale(cache);
    check_error_stays(p, 222);
    release_and_fix(p, fd, 222);
    stop();
}

/* The broken save's own compile is held at the gate too, on a batch
 * thread: whichever of the two compiles ends first, the error wins. */
static void test_tier_never_hides_an_error_still_compiling(void)
{
    char p[PBUF];

    path_of(p, "tiered_both.c");
    int fd = tier_held_at_gate(p, 231);
    CHECK(fd >= 0);
    write_page(p, "#include \"gate.h\"", "232 +");
    CHECK(hp_cache_touch(cache, p) == 1);
    hp_cache_start_batch(cache);
    CHECK(wait_status(p, "\"building\":true", 5));
    usleep(100000); /* its compiler reaches the gate, most likely */
    if (fd >= 0)
        close(fd);
    gate_set(true);
    CHECK(wait_status(p, "\"stale\":false", 20));
    release_and_fix(p, -1, 232);
    stop();
}

int main(int argc, char **argv)
{
    T_INIT(argc, argv); /* an argument: only the tests named like it */

    signal(SIGPIPE, SIG_IGN);
    t_make_temp(root, "/tmp/hp-cache-root-XXXXXX");
    t_make_temp(cachedir, "/tmp/hp-cache-dir-XXXXXX");
    snprintf(rundir, sizeof(rundir), "%s/run-%d", cachedir, (int)getpid());
    path_of(gate_path, "gate.h");
    if (mkfifo(gate_path, 0600) != 0) {
        perror(gate_path);
        return 2;
    }
    if (pthread_create(&gate_thread, NULL, gate_main, NULL) != 0)
        return 2;

    hp_config_defaults(&cfg);
    set_str(&cfg.cache_dir, cachedir);
    set_str(&cfg.cc, "cc");
    set_str(&cfg.cflags, "-O0");
    set_str(&cfg.include_dir, HP_INCLUDE_DIR);

    T_RUN(test_first_load);
    T_RUN(test_readers_during_rewrites);
    T_RUN(test_failed_first_load_waiters);
    T_RUN(test_concurrent_first_load);
    T_RUN(test_error_keeps_old_version);
    T_RUN(test_header_dependency);
    T_RUN(test_deleted_page);
    T_RUN(test_distinct_entries_concurrent);
    T_RUN(test_page_edit_during_compile);
    T_RUN(test_touch_during_load_not_lost);
    T_RUN(test_header_edit_during_compile);
    T_RUN(test_header_edit_during_compile_disk_cache);
    T_RUN(test_touch_all_recovers_header_error);
    T_RUN(test_revalidate);
    T_RUN(test_future_dated_header);
    T_RUN(test_batch_all_or_nothing);
    T_RUN(test_unchanged_failure_does_not_hold);
    T_RUN(test_first_load_held_only_with_its_batch);
    T_RUN(test_batches_run_apart);
    T_RUN(test_init_fini_handover);
    T_RUN(test_touch_unchanged_keeps_version);
    T_RUN(test_load_error_not_retried);
    T_RUN(test_prefetch_warms_the_batch);
    T_RUN(test_tier_never_hides_a_newer_error);
    T_RUN(test_tier_never_hides_an_error_still_compiling);

    atomic_store(&gate_quit, true);
    pthread_join(gate_thread, NULL);
    hp_config_free(&cfg);
    nftw(root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    nftw(cachedir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    T_DONE();
}
