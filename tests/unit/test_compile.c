/*
 * test_compile.c - the page compiler's limits (compile.c): a compile that
 * runs out of its address space, CPU time, file size or wall-clock time
 * fails quickly with a diagnostic naming the limit and its setting; a
 * timeout kills the compiler's whole process group; a good page still
 * builds under the default limits; failed compiles are cached by source
 * until something they could have included changes, and only the
 * compiler's own verdicts are; a staged release warms the compile cache
 * for the symlink switch to it (hp_compiler_stage).
 *
 * Each test makes its own compiler on one temp docroot and cache dir, with
 * the limits it needs. An argument runs only the tests whose names contain
 * it: build/tests/test_compile timeout
 */
#include "hp.h"
#include "t.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static char root[PATH_MAX];     /* canonical temp document root */
static char cachedir[PATH_MAX]; /* canonical temp compile cache */

static void set_str(char **slot, const char *v)
{
    free(*slot);
    *slot = hp_xstrdup(v);
}

static void base_config(struct hp_config *cfg)
{
    hp_config_defaults(cfg);
    set_str(&cfg->cache_dir, cachedir);
    set_str(&cfg->cflags, "-O0");
    set_str(&cfg->include_dir, HP_INCLUDE_DIR);
}

static char *write_in_root(const char *name, const char *text, mode_t mode)
{
    char *path = hp_xasprintf("%s/%s", root, name);
    FILE *f = fopen(path, "w");
    if (!f) {
        perror(path);
        exit(2);
    }
    fputs(text, f);
    fclose(f);
    chmod(path, mode);
    return path;
}

/* Compile src under cfg: the result, the diagnostic into *diag (caller
 * frees) and the wall-clock seconds into *took. */
static int compile_with(const struct hp_config *cfg, const char *src,
                        char **diag, double *took)
{
    struct hp_compiler *c = hp_compiler_new(cfg, root);
    struct hp_artifact art;
    double t0 = hp_now();
    int rc = hp_compile(c, src, &art, diag);
    *took = hp_now() - t0;
    hp_artifact_free(&art);
    hp_compiler_free(c);
    return rc;
}

static void test_good_page_builds_under_defaults(void)
{
    struct hp_config cfg;
    char *diag = NULL;
    double took;
    char *src = write_in_root("good.c",
                              "#include <hotpub.h>\n"
                              "HP_HANDLER(http_handler) { return HP_OK; }\n",
                              0644);

    base_config(&cfg);
    CHECK(compile_with(&cfg, src, &diag, &took) == 0);
    CHECK(diag == NULL);
    free(diag);
    free(src);
    hp_config_free(&cfg);
}

/* The report's case: gcc reads /dev/zero until it has no memory left. */
static void test_dev_zero_hits_memory_limit(void)
{
    struct hp_config cfg;
    char *diag = NULL;
    double took;
    char *src = write_in_root("zero.c", "#include \"/dev/zero\"\n", 0644);

    base_config(&cfg);
    cfg.compile_memory_limit = (size_t)256 << 20;
    CHECK(compile_with(&cfg, src, &diag, &took) < 0);
    CHECK(diag && strstr(diag, "out of memory"));
    CHECK(diag && strstr(diag, "compile-memory-limit = 256M"));
    CHECK(diag && strstr(diag, "--compile-memory-limit"));
    CHECK(took < 10);
    free(diag);
    free(src);
    hp_config_free(&cfg);
}

/* An object larger than the file limit: as (or ld) gets SIGXFSZ. */
static void test_big_object_hits_file_limit(void)
{
    struct hp_config cfg;
    char *diag = NULL;
    double took;
    char *src = write_in_root("big.c",
                              "#include <hotpub.h>\n"
                              "HP_EXPORT char big[1 << 22] = {1};\n"
                              "HP_HANDLER(http_handler) { return HP_OK; }\n",
                              0644);

    base_config(&cfg);
    cfg.compile_file_limit = 64 << 10;
    CHECK(compile_with(&cfg, src, &diag, &took) < 0);
    CHECK(diag && strstr(diag, "compile-file-limit = 64K"));
    CHECK(took < 20);
    free(diag);
    /* the same page builds without the limit: the limit was the cause */
    cfg.compile_file_limit = 0;
    CHECK(compile_with(&cfg, src, &diag, &took) == 0);
    free(diag);
    free(src);
    hp_config_free(&cfg);
}

/* A "compiler" that spins: SIGXCPU from RLIMIT_CPU. */
static void test_spinning_compiler_hits_cpu_limit(void)
{
    struct hp_config cfg;
    char *diag = NULL;
    double took;
    char *cc =
        write_in_root("spin-cc", "#!/bin/sh\nwhile :; do :; done\n", 0755);
    char *src = write_in_root("spin.c", "int x;\n", 0644);

    base_config(&cfg);
    set_str(&cfg.cc, cc);
    cfg.compile_cpu_limit = 1;
    CHECK(compile_with(&cfg, src, &diag, &took) < 0);
    CHECK(diag && strstr(diag, "compile-cpu-limit = 1 s"));
    CHECK(took < 10);
    free(diag);
    free(cc);
    free(src);
    hp_config_free(&cfg);
}

/* A compiler that sleeps in a child of its own (as cc1 is gcc's): the
 * timeout stops it, and the whole process group goes, the child too. */
static void test_timeout_kills_process_group(void)
{
    struct hp_config cfg;
    char *diag = NULL;
    double took;
    char *pidfile = hp_xasprintf("%s/sleeper.pid", root);
    char *script = hp_xasprintf("#!/bin/sh\nsleep 300 &\necho $! > %s\n"
                                "wait\n",
                                pidfile);
    char *cc = write_in_root("slow-cc", script, 0755);
    char *src = write_in_root("slow.c", "int x;\n", 0644);

    base_config(&cfg);
    set_str(&cfg.cc, cc);
    cfg.compile_timeout = 1;
    CHECK(compile_with(&cfg, src, &diag, &took) < 0);
    CHECK(diag && strstr(diag, "compile-timeout = 1 s"));
    CHECK(diag && strstr(diag, "--compile-timeout"));
    CHECK(took >= 0.9 && took < 5);
    FILE *f = fopen(pidfile, "r");
    int pid = 0;
    CHECK(f && fscanf(f, "%d", &pid) == 1 && pid > 0);
    if (f)
        fclose(f);
    /* the grandchild was reparented (to init, which reaps it when it gets
     * round to it): give it a moment, then it must be dead, reaped or a
     * zombie waiting for init */
    bool gone = false;
    for (int i = 0; i < 100 && pid > 0 && !gone; i++) {
        gone = hp_pid_dead(pid);
        if (!gone)
            usleep(20000);
    }
    CHECK(gone);
    free(diag);
    free(cc);
    free(src);
    free(script);
    free(pidfile);
    hp_config_free(&cfg);
}

/* An ordinary error is the compiler's words alone: no limit named. */
static void test_plain_error_names_no_limit(void)
{
    struct hp_config cfg;
    char *diag = NULL;
    double took;
    char *src =
        write_in_root("bad.c", "int f(void) { return nope_xyz; }\n", 0644);

    base_config(&cfg);
    CHECK(compile_with(&cfg, src, &diag, &took) < 0);
    CHECK(diag && strstr(diag, "nope_xyz"));
    CHECK(diag && !strstr(diag, "--compile-") && !strstr(diag, "limit ="));
    free(diag);
    free(src);
    hp_config_free(&cfg);
}

/* A failed compile is cached (<key>.err): the same bytes cost no second
 * compiler run and give the same diagnostic, until something under the
 * document root changes (a header may have been the cause). */
static void test_failure_cached_until_root_changes(void)
{
    struct hp_config cfg;
    struct hp_artifact art;
    char *d1 = NULL, *d2 = NULL, *d3 = NULL;
    char *src =
        write_in_root("cached_bad.c", "#include \"cached_missing.h\"\n", 0644);

    base_config(&cfg);
    usleep(50000); /* written before the compile's start, by a tick */
    struct hp_compiler *c = hp_compiler_new(&cfg, root);
    CHECK(hp_compile(c, src, &art, &d1) < 0);
    hp_artifact_free(&art);
    CHECK(hp_compiler_runs(c) == 1);
    CHECK(d1 && strstr(d1, "cached_missing.h"));
    CHECK(hp_compile(c, src, &art, &d2) < 0);
    hp_artifact_free(&art);
    CHECK(hp_compiler_runs(c) == 1);
    CHECK(d1 && d2 && strcmp(d1, d2) == 0);
    /* the missing header appears: the record no longer holds */
    free(write_in_root("cached_missing.h", "int fixed;\n", 0644));
    usleep(50000); /* else the build takes it for a header racing it */
    CHECK(hp_compile(c, src, &art, &d3) == 0);
    CHECK(hp_compiler_runs(c) == 2);
    CHECK(d3 == NULL);
    hp_artifact_free(&art);
    hp_compiler_free(c);
    free(d1);
    free(d2);
    free(d3);
    free(src);
    hp_config_free(&cfg);
}

/* A compiler that could not run says nothing about the source: not
 * cached, so the next build tries again. */
static void test_failure_to_run_not_cached(void)
{
    struct hp_config cfg;
    struct hp_artifact art;
    char *d = NULL;
    char *src = write_in_root("norun.c", "int x;\n", 0644);

    base_config(&cfg);
    set_str(&cfg.cc, "/nonexistent/hp-no-cc");
    struct hp_compiler *c = hp_compiler_new(&cfg, root);
    CHECK(hp_compile(c, src, &art, &d) < 0);
    hp_artifact_free(&art);
    /* names the program and the OS error, marked as not the page's fault */
    CHECK(d &&
          strncmp(d, HP_DIAG_NO_COMPILER, strlen(HP_DIAG_NO_COMPILER)) == 0);
    CHECK(d && strstr(d, "cannot run /nonexistent/hp-no-cc: No such file or "
                         "directory") != NULL);
    free(d);
    d = NULL;
    CHECK(hp_compile(c, src, &art, &d) < 0);
    hp_artifact_free(&art);
    CHECK(hp_compiler_runs(c) == 2);
    free(d);
    hp_compiler_free(c);
    free(src);
    hp_config_free(&cfg);
}

/* The supervisor's check of --cc before any worker needs it. */
static void test_compiler_check(void)
{
    CHECK(hp_compiler_check("sh") == 0);      /* found in PATH */
    CHECK(hp_compiler_check("/bin/sh") == 0); /* a path */
    CHECK(hp_compiler_check(NULL) == 0);      /* the default, cc */
    CHECK(hp_compiler_check("/nonexistent/hp-no-cc") < 0);
    CHECK(errno == ENOENT);
    CHECK(hp_compiler_check("hp-no-such-compiler") < 0);
    CHECK(hp_compiler_check("/tmp") < 0); /* a directory */
    CHECK(hp_compiler_check("/etc/hostname") < 0 ||
          access("/etc/hostname", X_OK) == 0); /* not executable */
}

/* Whether an ELF object's PT_GNU_STACK asks for an executable stack (or
 * is missing, which means the same): readelf, as a person would check. */
static bool stack_executable(const char *so)
{
    char *cmd = hp_xasprintf("readelf -lW '%s' | grep GNU_STACK", so);
    FILE *p = popen(cmd, "r");
    char line[512] = "";
    bool found = p && fgets(line, sizeof line, p) != NULL;
    if (p)
        pclose(p);
    free(cmd);
    return !found || strstr(line, "RWE") != NULL;
}

static void test_tiers_have_their_own_objects(void)
{
    struct hp_config cfg;
    struct hp_artifact fast, opt;
    char *d1 = NULL, *d2 = NULL;
    char *src = write_in_root("tier.c",
                              "#include <hotpub.h>\n"
                              "HP_HANDLER(http_handler) { return HP_OK; }\n",
                              0644);
    base_config(&cfg);
    struct hp_compiler *c = hp_compiler_new(&cfg, root);
    CHECK(hp_compile_tier(c, src, HP_TIER_FAST, &fast, &d1) == 0);
    CHECK(hp_compile_tier(c, src, HP_TIER_OPTIMIZED, &opt, &d2) == 0);
    CHECK(fast.tier == HP_TIER_FAST && opt.tier == HP_TIER_OPTIMIZED);
    CHECK(fast.so_path && opt.so_path && strcmp(fast.so_path, opt.so_path));
    if (fast.so_path)
        CHECK(!stack_executable(fast.so_path));
    if (opt.so_path)
        CHECK(!stack_executable(opt.so_path));
    /* a cache hit keeps the tier it was asked for */
    hp_artifact_free(&fast);
    CHECK(hp_compile_tier(c, src, HP_TIER_FAST, &fast, &d1) == 0);
    CHECK(fast.cache_hit && fast.tier == HP_TIER_FAST);
    hp_artifact_free(&fast);
    hp_artifact_free(&opt);
    free(d1);
    free(d2);
    hp_compiler_free(c);
    free(src);
    hp_config_free(&cfg);
}

/* Probes of a frame larger than a page in so (gcc's stack clash
 * protection on x86-64: "orq $0x0,(%rsp)" after each page it moves). */
static bool probes_stack(const char *so)
{
    char *cmd =
        hp_xasprintf("objdump -d '%s' | grep -q 'orq *\\$0x0,(%%rsp)'", so);
    bool yes = system(cmd) == 0;
    free(cmd);
    return yes;
}

/* gcc builds every page with -fstack-clash-protection: the optimized tier
 * and the fast tier's gcc fallback (tcc cannot: pool.h's guard). */
static void test_gcc_tiers_probe_big_frames(void)
{
    struct hp_config cfg;
    struct hp_artifact art;
    char *d = NULL;
    char *src = write_in_root(
        "bigframe.c",
        "#include <hotpub.h>\n"
        "HP_HANDLER(http_handler)\n{\n    volatile char big[4 << 20];\n"
        "    big[0] = 1;\n    big[sizeof big - 1] = 2;\n"
        "    hp_printf(req, \"%d\", big[0]);\n    return HP_OK;\n}\n",
        0644);
    if (system("command -v objdump >/dev/null") != 0) {
        printf("  (skipped: no objdump)\n");
        free(src);
        return;
    }
    base_config(&cfg);
    set_str(&cfg.fast_cc, "off");
    struct hp_compiler *c = hp_compiler_new(&cfg, root);
    for (int tier = 0; tier < 2; tier++) {
        CHECK(hp_compile_tier(c, src, tier ? HP_TIER_OPTIMIZED : HP_TIER_FAST,
                              &art, &d) == 0);
        CHECK(art.so_path && probes_stack(art.so_path));
        hp_artifact_free(&art);
        free(d);
        d = NULL;
    }
    hp_compiler_free(c);
    free(src);
    hp_config_free(&cfg);
}

static void test_undeclared_and_undefined_named_by_line(void)
{
    struct hp_config cfg;
    char *diag = NULL;
    double took;
    char *src = write_in_root("undecl.c",
                              "#include <hotpub.h>\n"
                              "HP_HANDLER(http_handler)\n{\n"
                              "    return no_such_fn(req);\n}\n",
                              0644);
    base_config(&cfg);
    CHECK(compile_with(&cfg, src, &diag, &took) < 0);
    CHECK(diag && strstr(diag, "undecl.c:4:") && strstr(diag, "no_such_fn"));
    free(diag);
    free(src);
    hp_config_free(&cfg);

    src = write_in_root("undef.c",
                        "int f_nowhere(void);\n\nint g(void)\n{\n"
                        "    return f_nowhere();\n}\n",
                        0644);
    char *why = hp_compile_explain_load(
        src, "cannot load the page: x.so: undefined symbol: f_nowhere");
    CHECK(why && strstr(why, "undef.c:1: error: 'f_nowhere' is declared"));
    CHECK(why && strstr(why, "undef.c:5: note: 'f_nowhere' used here"));
    free(why);
    CHECK(hp_compile_explain_load(src, "cannot load: no such file") == NULL);
    free(src);
}

static void test_hook_names_in_diagnostics(void)
{
    struct hp_config cfg;
    char *diag = NULL;
    double took;
    char *src = write_in_root("hook.c",
                              "#include <hotpub.h>\n"
                              "HP_HOOK(prepare) { return \"x\"; }\n",
                              0644);
    base_config(&cfg);
    set_str(&cfg.cflags, "-O0 -Werror");
    CHECK(compile_with(&cfg, src, &diag, &took) < 0);
    CHECK(diag && strstr(diag, "prepare hook"));
    CHECK(diag && !strstr(diag, "hp__hook_prepare"));
    free(diag);
    free(src);
    hp_config_free(&cfg);
}

/* The value of the object's test_v (the release it was built from). */
static int object_v(const char *so)
{
    void *dl = dlopen(so, RTLD_NOW | RTLD_LOCAL);
    int *v = dl ? dlsym(dl, "test_v") : NULL;
    int r = v ? *v : -1;
    if (dl)
        dlclose(dl);
    return r;
}

/* hotpub check --warm: a staged release compiled under the live root's
 * names is what the server finds after the symlink switch, and with the
 * staged header (same page bytes, so the same key as the live one). */
static void test_staged_release_warms_the_switch(void)
{
    static const char page[] =
        "#include \"h.h\"\n"
        "__attribute__((visibility(\"default\"))) int test_v = V;\n";
    struct hp_config cfg;
    struct hp_artifact art;
    char *d = NULL;
    char live[PATH_MAX + 16], r1[PATH_MAX + 16], r2[PATH_MAX + 16];
    char dep[PATH_MAX + 32];

    snprintf(live, sizeof live, "%s/current", root);
    snprintf(r1, sizeof r1, "%s/r1", root);
    snprintf(r2, sizeof r2, "%s/r2", root);
    snprintf(dep, sizeof dep, "%s/h.h", live);

    CHECK(mkdir(r1, 0755) == 0);
    CHECK(mkdir(r2, 0755) == 0);
    free(write_in_root("r1/p.c", page, 0644));
    free(write_in_root("r2/p.c", page, 0644));
    free(write_in_root("r1/h.h", "#define V 1\n", 0644));
    free(write_in_root("r2/h.h", "#define V 2\n", 0644));
    CHECK(symlink("r1", live) == 0);
    usleep(50000); /* written before the compiles' start, by a tick */
    char *src = hp_xasprintf("%s/p.c", live);
    base_config(&cfg);

    struct hp_compiler *c = hp_compiler_new(&cfg, live);
    CHECK(hp_compile(c, src, &art, &d) == 0 && object_v(art.so_path) == 1);
    hp_artifact_free(&art);
    hp_compiler_free(c);

    c = hp_compiler_new(&cfg, live); /* the warm: r2 as "current" */
    CHECK(hp_compiler_stage(c, r2) == 0);
    CHECK(hp_compile(c, src, &art, &d) == 0 && !art.cache_hit);
    CHECK(hp_compiler_runs(c) == 1 && object_v(art.so_path) == 2);
    CHECK(art.ndeps == 1 && strcmp(art.deps[0].path, dep) == 0);
    hp_artifact_free(&art);
    hp_compiler_free(c);

    CHECK(unlink(live) == 0 && symlink("r2", live) == 0); /* the switch */
    c = hp_compiler_new(&cfg, live);
    CHECK(hp_compile(c, src, &art, &d) == 0 && art.cache_hit);
    CHECK(hp_compiler_runs(c) == 0 && object_v(art.so_path) == 2);
    hp_artifact_free(&art);
    hp_compiler_free(c);
    CHECK(d == NULL);
    free(src);
    hp_config_free(&cfg);
}

/* --fast-cc off: the fast tier is gcc -O0 -c against a precompiled
 * hotpub.h, linked by ld itself with crt*S.o, libgcc.a (__divti3) and
 * libc_nonshared.a (atexit): the object loads, runs, records no libc.so
 * (no driver link) and has no executable stack. */
static void test_fast_fallback_pch_and_direct_link(void)
{
    struct hp_config cfg;
    struct hp_artifact art;
    char *d = NULL;
    char *src = write_in_root(
        "fallback.c",
        "#include <hotpub.h>\n#include <stdlib.h>\n"
        "static void bye(void) {}\n"
        "HP_EXPORT int divide(void)\n{\n"
        "    volatile __int128 a = 1000000000000LL, b = 7;\n"
        "    return (int)(a / b % 1000) + (atexit(bye) == 0 ? 1 : 0);\n}\n",
        0644);
    base_config(&cfg);
    set_str(&cfg.fast_cc, "off");
    struct hp_compiler *c = hp_compiler_new(&cfg, root);
    CHECK(!hp_compiler_has_tcc(c));
    CHECK(hp_compile_tier(c, src, HP_TIER_FAST, &art, &d) == 0);
    CHECK(d == NULL);
    CHECK(hp_compiler_runs(c) == 1);
    char *gch = NULL;
    char *obj = hp_xasprintf("%s/obj", cachedir);
    DIR *dir = opendir(obj);
    for (struct dirent *de; dir && (de = readdir(dir));)
        if (strncmp(de->d_name, "pch-", 4) == 0)
            gch = hp_xasprintf("%s/%s/hotpub.h.gch", obj, de->d_name);
    if (dir)
        closedir(dir);
    CHECK(gch && access(gch, R_OK) == 0);
    if (art.so_path) {
        char *cmd =
            hp_xasprintf("readelf -d '%s' | grep -q NEEDED", art.so_path);
        CHECK(system(cmd) != 0); /* ld, not cc -shared: no libc.so.6 */
        free(cmd);
        cmd = hp_xasprintf("readelf -SW '%s' | grep -q build-id", art.so_path);
        CHECK(system(cmd) != 0); /* nor the driver's --build-id */
        free(cmd);
        CHECK(!stack_executable(art.so_path));
        void *h = dlopen(art.so_path, RTLD_NOW | RTLD_LOCAL);
        CHECK(h != NULL);
        int (*fn)(void) = h ? (int (*)(void))dlsym(h, "divide") : NULL;
        CHECK(fn && fn() == 142857142857LL % 1000 + 1);
        if (h)
            dlclose(h); /* runs bye through __cxa_finalize */
    }
    hp_artifact_free(&art);
    hp_compiler_free(c);
    /* Another flags key's header, unused for 8 days, goes at the next
     * start; this key's stays. */
    char *old_dir = hp_xasprintf("%s/pch-%032d", obj, 0);
    char *old_gch = hp_xasprintf("%s/hotpub.h.gch", old_dir);
    CHECK(mkdir(old_dir, 0700) == 0);
    fclose(fopen(old_gch, "w"));
    struct timespec eight_days[2] = {{time(NULL) - 8 * 86400, 0},
                                     {time(NULL) - 8 * 86400, 0}};
    CHECK(utimensat(AT_FDCWD, old_gch, eight_days, 0) == 0);
    c = hp_compiler_new(&cfg, root);
    CHECK(access(old_dir, F_OK) < 0 && errno == ENOENT);
    CHECK(gch && access(gch, R_OK) == 0);
    hp_compiler_free(c);
    free(old_gch);
    free(old_dir);
    free(gch);
    free(obj);
    free(src);
    hp_config_free(&cfg);
}

/* The direct link fails (an ld that refuses -z noexecstack, found first
 * on PATH): the fallback links with cc -shared instead, quietly, and the
 * page builds; cc -c's object is not compiled twice by cc -c. */
static void test_fast_fallback_link_failure_uses_cc_shared(void)
{
    struct hp_config cfg;
    struct hp_artifact art;
    char *d = NULL;
    char *bin = hp_xasprintf("%s/fake-bin", cachedir);
    char *ld = hp_xasprintf("%s/ld", bin);
    char *old_path = hp_xstrdup(getenv("PATH") ? getenv("PATH") : "/usr/bin");
    char *path = hp_xasprintf("%s:%s", bin, old_path);
    char *src = write_in_root("linkfail.c",
                              "#include <hotpub.h>\n"
                              "HP_HANDLER(http_handler) { return HP_OK; }\n",
                              0644);
    CHECK(mkdir(bin, 0700) == 0);
    FILE *f = fopen(ld, "w");
    CHECK(f != NULL);
    if (f) {
        fputs("#!/bin/sh\ncase \"$*\" in *noexecstack*) echo 'ld: no' >&2;"
              " exit 1;; esac\nexec /usr/bin/ld \"$@\"\n",
              f);
        fclose(f);
    }
    chmod(ld, 0755);
    setenv("PATH", path, 1);
    base_config(&cfg);
    set_str(&cfg.fast_cc, "off");
    struct hp_compiler *c = hp_compiler_new(&cfg, root);
    CHECK(hp_compile_tier(c, src, HP_TIER_FAST, &art, &d) == 0);
    CHECK(d == NULL);
    CHECK(hp_compiler_runs(c) == 2); /* cc -c, then cc -shared */
    if (art.so_path) {
        char *cmd =
            hp_xasprintf("readelf -SW '%s' | grep -q build-id", art.so_path);
        CHECK(system(cmd) == 0); /* the driver's link asks for a build id */
        free(cmd);
    }
    setenv("PATH", old_path, 1);
    hp_artifact_free(&art);
    hp_compiler_free(c);
    free(d);
    free(src);
    free(path);
    free(old_path);
    free(ld);
    free(bin);
    hp_config_free(&cfg);
}

struct sf_arg {
    struct hp_compiler *c;
    const char *src;
    struct hp_artifact art;
    int rc;
    bool optimized; /* the optimized tier (default: the fast one) */
};

static void *sf_main(void *arg)
{
    struct sf_arg *a = arg;
    char *d = NULL;
    a->rc = hp_compile_tier(a->c, a->src,
                            a->optimized ? HP_TIER_OPTIMIZED : HP_TIER_FAST,
                            &a->art, &d);
    free(d);
    return NULL;
}

/* Single flight: threads compiling the same key at once run the compiler
 * once; the others wait on the key's lock and take its object. */
static void test_same_key_compiles_once(void)
{
    struct hp_config cfg;
    struct sf_arg a[3];
    pthread_t t[3];
    char *src = write_in_root("once.c",
                              "#include <hotpub.h>\n"
                              "HP_HANDLER(http_handler) { return HP_OK; }\n"
                              "/* once */\n",
                              0644);
    base_config(&cfg);
    set_str(&cfg.fast_cc, "off"); /* gcc: slow enough to overlap */
    struct hp_compiler *c = hp_compiler_new(&cfg, root);
    for (int i = 0; i < 3; i++) {
        a[i] = (struct sf_arg){.c = c, .src = src};
        CHECK(pthread_create(&t[i], NULL, sf_main, &a[i]) == 0);
    }
    for (int i = 0; i < 3; i++)
        pthread_join(t[i], NULL);
    CHECK(hp_compiler_runs(c) == 1);
    for (int i = 0; i < 3; i++) {
        CHECK(a[i].rc == 0 && a[i].art.so_path);
        if (i && a[i].art.so_path && a[0].art.so_path)
            CHECK(strcmp(a[i].art.so_path, a[0].art.so_path) == 0);
        hp_artifact_free(&a[i].art);
    }
    hp_compiler_free(c);
    free(src);
    hp_config_free(&cfg);
}

/* Two compiles of one key at once, both stopped by --compile-timeout (1
 * s): the second waits on the key's lock for the first and takes its
 * verdict, so both answer within about one timeout, not two. */
static void test_timed_out_key_is_not_compiled_again_by_its_waiter(void)
{
    struct hp_config cfg;
    struct sf_arg a[2];
    pthread_t t[2];
    char *cc = write_in_root("sleepy-cc", "#!/bin/sh\nsleep 30\n", 0755);
    char *src = write_in_root("sleepy.c", "int sleepy;\n", 0644);
    base_config(&cfg);
    set_str(&cfg.cc, cc);
    set_str(&cfg.fast_cc, "off");
    cfg.compile_timeout = 1;
    struct hp_compiler *c = hp_compiler_new(&cfg, root);
    double t0 = hp_now();
    for (int i = 0; i < 2; i++) {
        a[i] = (struct sf_arg){.c = c, .src = src, .optimized = true};
        CHECK(pthread_create(&t[i], NULL, sf_main, &a[i]) == 0);
    }
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    double took = hp_now() - t0;
    CHECK(a[0].rc < 0 && a[1].rc < 0);
    CHECK(hp_compiler_runs(c) == 1);
    CHECK(took < 1.8);
    if (took >= 1.8)
        fprintf(stderr, "  both answered after %.2f s\n", took);
    hp_compiler_free(c);
    free(cc);
    free(src);
    hp_config_free(&cfg);
}

int main(int argc, char **argv)
{
    T_INIT(argc, argv); /* an argument: only the tests named like it */

    t_make_temp(root, "/tmp/hp-compile-root-XXXXXX");
    t_make_temp(cachedir, "/tmp/hp-compile-cache-XXXXXX");
    T_RUN(test_good_page_builds_under_defaults);
    T_RUN(test_dev_zero_hits_memory_limit);
    T_RUN(test_big_object_hits_file_limit);
    T_RUN(test_spinning_compiler_hits_cpu_limit);
    T_RUN(test_timeout_kills_process_group);
    T_RUN(test_plain_error_names_no_limit);
    T_RUN(test_failure_cached_until_root_changes);
    T_RUN(test_failure_to_run_not_cached);
    T_RUN(test_compiler_check);
    T_RUN(test_tiers_have_their_own_objects);
    T_RUN(test_gcc_tiers_probe_big_frames);
    T_RUN(test_undeclared_and_undefined_named_by_line);
    T_RUN(test_hook_names_in_diagnostics);
    T_RUN(test_staged_release_warms_the_switch);
    T_RUN(test_fast_fallback_pch_and_direct_link);
    T_RUN(test_fast_fallback_link_failure_uses_cc_shared);
    T_RUN(test_same_key_compiles_once);
    T_RUN(test_timed_out_key_is_not_compiled_again_by_its_waiter);
    {
        char cmd[2 * PATH_MAX + 16];
        snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s'", root, cachedir);
        if (system(cmd) != 0)
            fprintf(stderr, "  (could not remove the temp dirs)\n");
    }
    T_DONE();
}
