/*
 * test_jsonmem.c - jansson's allocator (jsonmem.c): values made on one
 * thread and freed on another, sizes on both sides of every class edge,
 * json_dumps text freed with free(), threads that exit with blocks cached.
 */
#include "jsonmem.h"
#include "t.h"

#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#define N 2000

static json_t *made[N];

/* Strings of every length 0..299 (their copies span every class and the
 * uncached sizes above), in objects and arrays. */
static void *make(void *arg)
{
    (void)arg;
    char s[301];
    for (int i = 0; i < N; i++) {
        int len = i % 300;
        for (int k = 0; k < len; k++)
            s[k] = (char)('a' + (i + k) % 26);
        s[len] = '\0';
        made[i] = json_pack("{s:s, s:i, s:[i,s]}", "s", s, "i", i, "a", i, s);
    }
    return NULL;
}

static void *check_and_free(void *arg)
{
    int *bad = arg;
    for (int i = 0; i < N; i++) {
        const char *s = json_string_value(json_object_get(made[i], "s"));
        *bad += !s || (int)strlen(s) != i % 300 ||
                json_integer_value(json_object_get(made[i], "i")) != i;
        json_decref(made[i]);
    }
    return NULL;
}

static void test_across_threads(void)
{
    for (int round = 0; round < 3; round++) {
        pthread_t a, b;
        int bad = 0;
        CHECK(pthread_create(&a, NULL, make, NULL) == 0);
        pthread_join(a, NULL); /* exits with blocks of its own cached */
        CHECK(pthread_create(&b, NULL, check_and_free, &bad) == 0);
        pthread_join(b, NULL);
        CHECK(bad == 0);
    }
    /* and the main thread reuses what it freed */
    make(NULL);
    int bad = 0;
    check_and_free(&bad);
    make(NULL);
    check_and_free(&bad);
    CHECK(bad == 0);
}

/* json_dumps's text is the caller's, freed with free(). */
static void test_dumps_freed_with_free(void)
{
    for (int i = 0; i < 500; i++) {
        json_t *v = json_pack("{s:i, s:s}", "n", i, "s", "x");
        char *text = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);
        CHECK(text && strstr(text, "\"s\":\"x\""));
        free(text);
        json_decref(v);
    }
}

/* A block freed twice through jansson's allocator stops the process with
 * a message, as glibc's free would, instead of entering the cache twice
 * (two later values in one block). In a child: it aborts. (A json_decref
 * too many on a value whose blocks wait in the cache reads the mark where
 * the refcount was, as it would read glibc's tcache key, and frees
 * nothing.) Sanitizer builds have no cache (their own checks catch it). */
static void test_freed_twice_aborts(void)
{
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    return;
#else
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0)
            dup2(devnull, 2);
        json_malloc_t m;
        json_free_t f;
        json_get_alloc_funcs(&m, &f);
        void *p = m(40);
        f(p);
        f(p); /* the second free */
        _exit(0);
    }
    int st = 0;
    CHECK(waitpid(pid, &st, 0) == pid);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
#endif
}

int main(int argc, char **argv)
{
    T_INIT(argc, argv);
    hp_jsonmem_install();
    T_RUN(test_across_threads);
    T_RUN(test_dumps_freed_with_free);
    T_RUN(test_freed_twice_aborts);
    T_DONE();
}
