/*
 * test_loader.c - the loader's reading of an object's imports
 * (hp_object_thread_state): which keep a page off the reactor because they
 * keep per-thread state past the call (FRESH12-2), and which do not.
 * Each case is a small shared object built with cc, as a page is.
 */
#include "hp.h"
#include "t.h"

#include <unistd.h>

static char dir[PATH_MAX];

/* src built with `cc -shared -fPIC` into dir/name.so; its path, or NULL. */
static const char *build(const char *name, const char *src)
{
    static char so[PATH_MAX + 64];
    char c[PATH_MAX + 64], cmd[3 * PATH_MAX + 256];
    snprintf(c, sizeof c, "%s/%s.c", dir, name);
    snprintf(so, sizeof so, "%s/%s.so", dir, name);
    FILE *f = fopen(c, "w");
    if (!f)
        return NULL;
    fputs(src, f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "cc -shared -fPIC -O1 -pthread -o %s %s", so, c);
    if (system(cmd) != 0) {
        fprintf(stderr, "  cannot build %s\n", c);
        return NULL;
    }
    return so;
}

/* hp_object_thread_state of src's object: why, or "" when nothing. */
static const char *why_of(const char *name, const char *src)
{
    static char why[256];
    const char *so = build(name, src);
    if (!so)
        return "(not built)";
    bool yes = hp_object_thread_state(so, why, sizeof why);
    CHECK(yes == (why[0] != 0));
    return why;
}

static void pthread_keys_are_seen(void)
{
    CHECK_STR(why_of("set", "#include <pthread.h>\n"
                            "extern pthread_key_t k;\n"
                            "void f(void *v) { pthread_setspecific(k, v); }\n"),
              "uses pthread_setspecific (per-thread state)");
    CHECK_STR(why_of("all", "#include <pthread.h>\n"
                            "static pthread_key_t k;\n"
                            "void *f(void *v) {\n"
                            "    pthread_key_create(&k, 0);\n"
                            "    pthread_setspecific(k, v);\n"
                            "    return pthread_getspecific(k);\n}\n"),
              "uses pthread_setspecific, pthread_getspecific, "
              "pthread_key_create (per-thread state)");
    CHECK_STR(why_of("get",
                     "#include <pthread.h>\n"
                     "extern pthread_key_t k;\n"
                     "void *f(void) { return pthread_getspecific(k); }\n"),
              "uses pthread_getspecific (per-thread state)");
}

static void c11_tss_and_locale_are_seen(void)
{
    CHECK_STR(why_of("tss", "#include <threads.h>\n"
                            "extern tss_t k;\n"
                            "void *f(void) { return tss_get(k); }\n"),
              "uses tss_get (per-thread state)");
    CHECK_STR(why_of("loc",
                     "#include <locale.h>\n"
                     "locale_t f(locale_t l) { return uselocale(l); }\n"),
              "uses uselocale (per-thread state)");
}

/* A _Thread_local of another object: an undefined STT_TLS symbol (its own
 * TLS module id would not show it). */
static void another_objects_thread_local_is_seen(void)
{
    CHECK_STR(why_of("ext", "extern __thread int shared_tl;\n"
                            "int f(void) { return ++shared_tl; }\n"),
              "uses the thread-local variable shared_tl (per-thread state)");
}

/* Locks, conditions and once-inits block the thread: a lock held across
 * a database wait on the reactor would deadlock (FRESH13-1); with
 * per-thread state as well, both are said. */
static void locks_are_seen(void)
{
    CHECK_STR(why_of("mu", "#include <pthread.h>\n"
                           "static pthread_mutex_t mu = "
                           "PTHREAD_MUTEX_INITIALIZER;\n"
                           "int n;\n"
                           "void f(void) { pthread_mutex_lock(&mu); n++;\n"
                           "    pthread_mutex_unlock(&mu); }\n"),
              "waits on pthread_mutex_lock (a lock held across a database "
              "wait would deadlock)");
    CHECK_STR(why_of("rw", "#include <pthread.h>\n#include <semaphore.h>\n"
                           "extern pthread_rwlock_t l; extern sem_t sm;\n"
                           "extern pthread_once_t o; void g(void);\n"
                           "void f(void) { pthread_rwlock_wrlock(&l);\n"
                           "    sem_wait(&sm); pthread_once(&o, g); }\n"),
              "waits on pthread_rwlock_wrlock, sem_wait, pthread_once (a lock "
              "held across a database wait would deadlock)");
    CHECK_STR(why_of("both", "#include <pthread.h>\n"
                             "extern pthread_key_t k; extern pthread_cond_t c;\n"
                             "extern pthread_mutex_t m;\n"
                             "void f(void *v) { pthread_setspecific(k, v);\n"
                             "    pthread_cond_wait(&c, &m); }\n"),
              "uses pthread_setspecific (per-thread state); waits on "
              "pthread_cond_wait (a lock held across a database wait would "
              "deadlock)");
}

/* Functions whose state lives within the call, or is the whole process's
 * anyway, and an object that defines a function of a listed name without
 * importing it: nothing. */
static void others_are_not(void)
{
    CHECK_STR(why_of("plain",
                     "#include <pthread.h>\n#include <string.h>\n"
                     "#include <stdlib.h>\n#include <stdio.h>\n"
                     "static pthread_mutex_t mu;\n"
                     "int f(char *s) {\n"
                     "    char *save;\n"
                     "    pthread_mutex_init(&mu, 0);\n"
                     "    if (pthread_mutex_trylock(&mu) == 0)\n"
                     "        pthread_mutex_unlock(&mu);\n"
                     "    puts(strerror(rand()));\n"
                     "    return strtok_r(s, \",\", &save) != 0 &&\n"
                     "           strtok(s, \",\") != 0 &&\n"
                     "           pthread_self() != 0;\n}\n"),
              "");
    CHECK_STR(why_of("own", "void *pthread_getspecific(unsigned k)\n"
                            "{ return (void *)(unsigned long)k; }\n"),
              "");
    /* its own thread-local variables are the TLS module id's to show */
    CHECK_STR(why_of("owntls", "static __thread int n;\n"
                               "int f(void) { return ++n; }\n"),
              "");
}

/* What cannot be read counts as keeping per-thread state (said so). */
static void unreadable_is_kept_off(void)
{
    char path[PATH_MAX + 16], why[96];
    snprintf(path, sizeof path, "%s/junk.so", dir);
    FILE *f = fopen(path, "w");
    fputs("\177ELF not really an object", f);
    fclose(f);
    CHECK(hp_object_thread_state(path, why, sizeof why));
    CHECK(strstr(why, "cannot read") != NULL);
    snprintf(path, sizeof path, "%s/missing.so", dir);
    CHECK(hp_object_thread_state(path, why, sizeof why));

    /* an object cut short at every length: no read past the file's end
     * (the sanitizer builds check), and never "nothing" unless the table
     * it needs is all there */
    const char *so = build("cut", "#include <pthread.h>\n"
                                  "extern pthread_key_t k;\n"
                                  "void *f(void) { return "
                                  "pthread_getspecific(k); }\n");
    FILE *in = so ? fopen(so, "rb") : NULL;
    static unsigned char whole[1 << 20];
    size_t n = in ? fread(whole, 1, sizeof whole, in) : 0;
    if (in)
        fclose(in);
    CHECK(n > 0 && n < sizeof whole);
    snprintf(path, sizeof path, "%s/cut-short.so", dir);
    for (size_t len = 0; len < n; len += len < 128 ? 1 : 97) {
        f = fopen(path, "wb");
        fwrite(whole, 1, len, f);
        fclose(f);
        CHECK(hp_object_thread_state(path, why, sizeof why));
    }
}

int main(int argc, char **argv)
{
    T_INIT(argc, argv);
    t_make_temp(dir, "/tmp/hp-test-loader-XXXXXX");
    T_RUN(pthread_keys_are_seen);
    T_RUN(c11_tss_and_locale_are_seen);
    T_RUN(another_objects_thread_local_is_seen);
    T_RUN(locks_are_seen);
    T_RUN(others_are_not);
    T_RUN(unreadable_is_kept_off);
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "  cannot remove %s\n", dir);
    T_DONE();
}
