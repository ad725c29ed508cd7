/*
 * test_config.c - unit tests for config.c: defaults, hp_config_set's
 * validation and normalization, and hp_config_load on real INI files.
 *
 * Owns: nothing but temporary files under a mkdtemp directory, removed at
 * the end. May not touch: the user's cache or config; it sets HOME and
 * XDG_CACHE_HOME only in its own process.
 */
#include "hp.h"
#include "t.h"

#include <fcntl.h>
#include <stdbool.h>
#include <unistd.h>

static char tmpdir[] = "/tmp/hp-test-config-XXXXXX";

static bool set_ok(struct hp_config *c, const char *key, const char *value)
{
    char err[512] = "";
    int rc = hp_config_set(c, key, value, err, sizeof err);
    if (rc != 0)
        fprintf(stderr, "  (set %s=%s: %s)\n", key, value, err);
    return rc == 0;
}

/* Fails, leaves an error message, and does not change the config. */
static bool set_bad(struct hp_config *c, const char *key, const char *value)
{
    char err[512] = "";
    struct hp_config before = *c;
    int rc = hp_config_set(c, key, value, err, sizeof err);
    return rc == -1 && err[0] && memcmp(&before, c, sizeof before) == 0;
}

static char *write_file(const char *name, const char *text)
{
    static char path[PATH_MAX];
    FILE *f;
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    f = fopen(path, "w");
    if (!f) {
        perror(path);
        exit(1);
    }
    fputs(text, f);
    fclose(f);
    return path;
}

/* hp_config_load with stderr captured into msg. */
static int load_capture(struct hp_config *c, const char *path, char *msg,
                        size_t len)
{
    char errpath[PATH_MAX];
    int saved, fd, rc;
    ssize_t n;

    snprintf(errpath, sizeof errpath, "%s/stderr.txt", tmpdir);
    fflush(stderr);
    saved = dup(2);
    fd = open(errpath, O_RDWR | O_CREAT | O_TRUNC, 0600);
    dup2(fd, 2);
    rc = hp_config_load(c, path);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    lseek(fd, 0, SEEK_SET);
    n = read(fd, msg, len - 1);
    msg[n > 0 ? n : 0] = '\0';
    close(fd);
    unlink(errpath);
    return rc;
}

/* Load text as a file; expect failure with `want` in the message. */
static bool load_fails_with(const char *text, const char *want)
{
    struct hp_config c;
    char msg[1024];
    const char *path = write_file("bad.ini", text);
    int rc;

    hp_config_defaults(&c);
    rc = load_capture(&c, path, msg, sizeof msg);
    hp_config_free(&c);
    if (rc != -1 || !strstr(msg, want)) {
        fprintf(stderr, "  (rc %d, message \"%s\", wanted \"%s\")\n", rc, msg,
                want);
        return false;
    }
    return true;
}

/* ---- defaults ----------------------------------------------------------- */

static void test_defaults(void)
{
    struct hp_config c;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    int want_threads = cpus * 2 < 4 ? 4 : (int)(cpus * 2);

    if (want_threads > 1024)
        want_threads = 1024;
    hp_config_defaults(&c);
    CHECK(c.docroot == NULL);
    CHECK_STR(c.listen, "127.0.0.1:8080");
    CHECK(c.threads == want_threads);
    CHECK(c.threads >= 4);
    CHECK(c.dev == -1);
    CHECK(c.cache_dir && c.cache_dir[0] == '/');
    CHECK_STR(c.cc, "cc");
    CHECK_STR(c.cflags, "-O2");
    CHECK(c.include_dir == NULL);
    CHECK(c.revalidate == 0);
    CHECK(c.settle_ms == -1); /* auto: 5 ms with the fast tier, else 60 */
    CHECK(c.stale_wait_ms == 1000);
    CHECK(c.fast_tier == -1);
    CHECK_STR(c.fast_cc, "tcc");
    CHECK_STR(c.access_log, "-");
    CHECK(c.max_body == 8u * 1024 * 1024);
    CHECK(c.max_header == 16u * 1024);
    CHECK(c.timeout == 30);
    CHECK(c.shutdown_timeout == 10);
    CHECK(c.conn_limit == 1024);
    CHECK(c.compile_timeout == 60);
    CHECK(c.compile_memory_limit == (size_t)2 << 30);
    CHECK(c.compile_cpu_limit == 60);
    CHECK(c.compile_file_limit == (size_t)256 << 20);
    hp_config_free(&c);
    CHECK(c.listen == NULL && c.cc == NULL);
    hp_config_free(&c); /* twice is harmless */
}

/* The bounded waits' default, "auto": 5 s and 10 s, or half of
 * handler-timeout when that is less, so a default is always below it (and
 * master.c's warning fires only for a value set); a value set is kept. */
static void test_wait_bounds_auto(void)
{
    struct hp_config c;
    char err[256];
    hp_config_defaults(&c);
    CHECK(c.session_lock_timeout == -1 && c.db_acquire_timeout == -1);
    CHECK(hp_config_session_lock_ms(&c) == 10000); /* handler-timeout 30 */
    CHECK(hp_config_db_acquire_ms(&c) == 5000);
    c.handler_timeout = 10;
    CHECK(hp_config_session_lock_ms(&c) == 5000);
    CHECK(hp_config_db_acquire_ms(&c) == 5000);
    c.handler_timeout = 2;
    CHECK(hp_config_session_lock_ms(&c) == 1000);
    CHECK(hp_config_db_acquire_ms(&c) == 1000);
    c.handler_timeout = 0; /* no limit */
    CHECK(hp_config_session_lock_ms(&c) == 10000);
    c.handler_timeout = 2;
    CHECK(hp_config_set(&c, "session-lock-timeout", "10000", err, sizeof err) ==
          0);
    CHECK(hp_config_set(&c, "db-acquire-timeout", "0", err, sizeof err) == 0);
    CHECK(hp_config_session_lock_ms(&c) == 10000);
    CHECK(hp_config_db_acquire_ms(&c) == 0); /* 0: do not wait */
    CHECK(hp_config_set(&c, "session-lock-timeout", "auto", err, sizeof err) ==
          0);
    CHECK(hp_config_session_lock_ms(&c) == 1000);
    hp_config_free(&c);
}

static void test_default_cache_dir(void)
{
    struct hp_config c;
    char want[64];
    char *home = getenv("HOME") ? strdup(getenv("HOME")) : NULL;
    char *xdg =
        getenv("XDG_CACHE_HOME") ? strdup(getenv("XDG_CACHE_HOME")) : NULL;

    setenv("XDG_CACHE_HOME", "/xdg/cache", 1);
    setenv("HOME", "/home/someone", 1);
    hp_config_defaults(&c);
    CHECK_STR(c.cache_dir, "/xdg/cache/hotpub");
    hp_config_free(&c);

    setenv("XDG_CACHE_HOME", "relative/ignored", 1);
    hp_config_defaults(&c);
    CHECK_STR(c.cache_dir, "/home/someone/.cache/hotpub");
    hp_config_free(&c);

    unsetenv("XDG_CACHE_HOME");
    hp_config_defaults(&c);
    CHECK_STR(c.cache_dir, "/home/someone/.cache/hotpub");
    hp_config_free(&c);

    unsetenv("HOME");
    snprintf(want, sizeof want, "/tmp/hotpub-%lu", (unsigned long)getuid());
    hp_config_defaults(&c);
    CHECK_STR(c.cache_dir, want);
    hp_config_free(&c);

    if (home)
        setenv("HOME", home, 1);
    if (xdg)
        setenv("XDG_CACHE_HOME", xdg, 1);
    free(home);
    free(xdg);
}

/* ---- the settings table ----------------------------------------------------
 */

/* Every row is reachable by its key; every number's documented default
 * (the text --help and the docs print) is inside its own range and reads
 * back as the same value. */
static void test_table(void)
{
    struct hp_config d, c;
    char text[512], err[256];

    hp_config_defaults(&d);
    CHECK(hp_settings_count >= 32);
    for (size_t i = 0; i < hp_settings_count; i++) {
        const struct hp_setting *s = &hp_settings[i];
        CHECK(hp_setting_find(s->key) == s);
        CHECK(s->help && s->help[0] && s->section);
        if (s->type != HP_SET_INT && s->type != HP_SET_UINT &&
            s->type != HP_SET_SIZE && s->type != HP_SET_SECONDS)
            continue;
        hp_setting_value_text(s, &d, text, sizeof text);
        hp_config_defaults(&c);
        if (hp_config_set(&c, s->key, text, err, sizeof err) != 0) {
            fprintf(stderr, "  (%s default \"%s\": %s)\n", s->key, text, err);
            CHECK(0);
        }
        CHECK(memcmp((char *)&c + s->off, (char *)&d + s->off,
                     s->type == HP_SET_SIZE      ? sizeof(size_t)
                     : s->type == HP_SET_SECONDS ? sizeof(double)
                                                 : sizeof(int)) == 0);
        hp_config_free(&c);
    }
    CHECK(hp_setting_find("MAX_FIELDS") == hp_setting_find("max-fields"));
    CHECK(hp_setting_find("nonesuch") == NULL);
    hp_config_free(&d);
}

/* The request-edge limits: defaults and ranges as documented. */
static void test_request_limits(void)
{
    struct hp_config c;
    char err[256];

    hp_config_defaults(&c);
    CHECK(c.max_fields == 1000 && c.header_timeout == 20);
    CHECK(c.body_timeout == 20 && c.body_min_rate == 500);
    CHECK(set_ok(&c, "max-fields", "1000000") && c.max_fields == 1000000);
    CHECK(set_bad(&c, "max-fields", "0"));
    CHECK(set_ok(&c, "header_timeout", "3600") && c.header_timeout == 3600);
    CHECK(set_bad(&c, "header-timeout", "3601"));
    CHECK(set_bad(&c, "body-timeout", "0"));
    CHECK(set_ok(&c, "body-min-rate", "0") && c.body_min_rate == 0);
    CHECK(set_ok(&c, "body-min-rate", "1000000000"));
    hp_config_set(&c, "body-min-rate", "1000000001", err, sizeof err);
    CHECK(strstr(err, "0 (off) to 1000000000") != NULL);
    hp_config_free(&c);
}

/* ---- hp_config_set ------------------------------------------------------ */

static void test_set_keys(void)
{
    struct hp_config c;
    char err[256];

    hp_config_defaults(&c);
    /* '-' and '_' and case are all one key. */
    CHECK(set_ok(&c, "max-body", "1"));
    CHECK(c.max_body == 1);
    CHECK(set_ok(&c, "max_body", "2"));
    CHECK(c.max_body == 2);
    CHECK(set_ok(&c, "Max_Body", "3"));
    CHECK(c.max_body == 3);
    CHECK(set_ok(&c, "connection_limit", "7"));
    CHECK(c.conn_limit == 7);

    CHECK(set_bad(&c, "maxbody", "1"));
    CHECK(set_bad(&c, "conn-limit", "1"));
    CHECK(set_bad(&c, "", "1"));
    CHECK(hp_config_set(&c, "bogus", "1", err, sizeof err) == -1);
    CHECK(strstr(err, "unknown setting \"bogus\"") != NULL);
    /* No err buffer is fine. */
    CHECK(hp_config_set(&c, "threads", "x", NULL, 0) == -1);
    /* A tiny err buffer truncates, never overflows. */
    CHECK(hp_config_set(&c, "threads", "x", err, 4) == -1);
    CHECK(strlen(err) == 3);
    hp_config_free(&c);
}

static void test_set_listen(void)
{
    struct hp_config c;
    char err[256];

    hp_config_defaults(&c);
    CHECK(set_ok(&c, "listen", "0.0.0.0:80"));
    CHECK_STR(c.listen, "0.0.0.0:80");
    CHECK(set_ok(&c, "listen", ":9000"));
    CHECK_STR(c.listen, "0.0.0.0:9000");
    CHECK(set_ok(&c, "listen", "localhost:8081"));
    CHECK_STR(c.listen, "127.0.0.1:8081");
    CHECK(set_ok(&c, "listen", "[::1]:443"));
    CHECK_STR(c.listen, "[::1]:443");
    CHECK(set_ok(&c, "listen", "[::]:65535"));
    CHECK_STR(c.listen, "[::]:65535");
    CHECK(set_ok(&c, "listen", "[0:0:0:0:0:0:0:1]:8080")); /* canonical */
    CHECK_STR(c.listen, "[::1]:8080");
    CHECK(set_ok(&c, "listen", "10.1.2.3:08080"));
    CHECK_STR(c.listen, "10.1.2.3:8080");

    CHECK(set_bad(&c, "listen", "8080"));
    CHECK(set_bad(&c, "listen", "127.0.0.1"));
    CHECK(set_bad(&c, "listen", "127.0.0.1:"));
    CHECK(set_bad(&c, "listen", "127.0.0.1:0"));
    CHECK(set_bad(&c, "listen", "127.0.0.1:65536"));
    CHECK(set_bad(&c, "listen", "127.0.0.1:-1"));
    CHECK(set_bad(&c, "listen", "127.0.0.1:+80"));
    CHECK(set_bad(&c, "listen", "127.0.0.1:80x"));
    CHECK(set_bad(&c, "listen", "127.0.0.1:99999999999999999999"));
    CHECK(set_bad(&c, "listen", "1.2.3:80"));
    CHECK(set_bad(&c, "listen", "256.0.0.1:80"));
    CHECK(set_bad(&c, "listen", "example.com:80"));
    CHECK(set_bad(&c, "listen", "::1:8080"));
    CHECK(set_bad(&c, "listen", "[::1]8080"));
    CHECK(set_bad(&c, "listen", "[::1:8080"));
    CHECK(set_bad(&c, "listen", "[1.2.3.4]:80"));
    CHECK(set_bad(&c, "listen", ""));
    CHECK(set_bad(&c, "listen",
                  "[xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                  "xxxxxxxxxxxxxx]:80"));
    CHECK_STR(c.listen, "10.1.2.3:8080"); /* failures changed nothing */

    hp_config_set(&c, "listen", "::1:8080", err, sizeof err);
    CHECK(strstr(err, "[::1]:8080") != NULL); /* the hint */
    hp_config_set(&c, "listen", "1.2.3.4:0", err, sizeof err);
    CHECK(strstr(err, "1 to 65535") != NULL);
    hp_config_free(&c);
}

static void test_set_numbers(void)
{
    struct hp_config c;
    char err[256];

    hp_config_defaults(&c);
    CHECK(set_ok(&c, "threads", "1"));
    CHECK(c.threads == 1);
    CHECK(set_ok(&c, "threads", "1024"));
    CHECK(c.threads == 1024);
    CHECK(set_ok(&c, "threads", "auto"));
    CHECK(c.threads >= 4);
    CHECK(set_bad(&c, "threads", "0"));
    CHECK(set_bad(&c, "threads", "1025"));
    CHECK(set_bad(&c, "threads", "-3"));
    CHECK(set_bad(&c, "threads", "4x"));
    CHECK(set_bad(&c, "threads", "4.0"));
    CHECK(set_bad(&c, "threads", " 4"));
    CHECK(set_bad(&c, "threads", ""));
    CHECK(set_bad(&c, "threads", "99999999999999999999999"));
    hp_config_set(&c, "threads", "0", err, sizeof err);
    CHECK(strstr(err, "1 to 1024") != NULL && strstr(err, "\"0\"") != NULL);

    CHECK(set_ok(&c, "settle-ms", "0"));
    CHECK(c.settle_ms == 0);
    CHECK(set_ok(&c, "settle_ms", "10000"));
    CHECK(c.settle_ms == 10000);
    CHECK(set_bad(&c, "settle-ms", "10001"));
    CHECK(set_bad(&c, "settle-ms", "-1"));
    CHECK(set_ok(&c, "stale-wait-ms", "0"));
    CHECK(c.stale_wait_ms == 0);
    CHECK(set_ok(&c, "stale_wait_ms", "600000"));
    CHECK(c.stale_wait_ms == 600000);
    CHECK(set_bad(&c, "stale-wait-ms", "600001"));
    CHECK(set_bad(&c, "stale-wait-ms", "-1"));

    CHECK(set_ok(&c, "timeout", "1"));
    CHECK(c.timeout == 1);
    CHECK(set_bad(&c, "timeout", "0"));
    CHECK(set_bad(&c, "timeout", "86401"));

    CHECK(set_ok(&c, "shutdown-timeout", "0"));
    CHECK(c.shutdown_timeout == 0);
    CHECK(set_ok(&c, "shutdown-timeout", "3600"));
    CHECK(c.shutdown_timeout == 3600);
    CHECK(set_bad(&c, "shutdown-timeout", "3601"));

    CHECK(set_ok(&c, "connection-limit", "1"));
    CHECK(c.conn_limit == 1);
    CHECK(set_ok(&c, "connection-limit", "1048576"));
    CHECK(c.conn_limit == 1048576);
    CHECK(set_bad(&c, "connection-limit", "0"));
    CHECK(set_bad(&c, "connection-limit", "1048577"));

    CHECK(set_ok(&c, "revalidate", "2"));
    CHECK(c.revalidate == 2);
    CHECK(set_ok(&c, "revalidate", "0.5"));
    CHECK(c.revalidate == 0.5);
    CHECK(set_ok(&c, "revalidate", "0"));
    CHECK(c.revalidate == 0);
    CHECK(set_ok(&c, "revalidate", "1.5"));
    CHECK(set_ok(&c, "revalidate", "off"));
    CHECK(c.revalidate == 0);
    CHECK(set_ok(&c, "revalidate", "86400"));
    CHECK(set_bad(&c, "revalidate", "86401"));
    CHECK(set_bad(&c, "revalidate", "0.001")); /* a busy loop */
    CHECK(set_bad(&c, "revalidate", "-1"));
    CHECK(set_bad(&c, "revalidate", "nan"));
    CHECK(set_bad(&c, "revalidate", "inf"));
    CHECK(set_bad(&c, "revalidate", "1e3"));
    CHECK(set_bad(&c, "revalidate", "0x10"));
    CHECK(set_bad(&c, "revalidate", "."));
    CHECK(set_bad(&c, "revalidate", "1.2.3"));
    CHECK(set_bad(&c, "revalidate", ""));
    hp_config_free(&c);
}

static void test_set_compile_seconds(void)
{
    struct hp_config c;
    char err[256];

    hp_config_defaults(&c);
    CHECK(set_ok(&c, "compile-timeout", "1"));
    CHECK(c.compile_timeout == 1);
    CHECK(set_ok(&c, "Compile_Timeout", "3600"));
    CHECK(c.compile_timeout == 3600);
    CHECK(set_bad(&c, "compile-timeout", "0")); /* no "off": a bound always */
    CHECK(set_bad(&c, "compile-timeout", "3601"));
    CHECK(set_bad(&c, "compile-timeout", "1.5"));
    CHECK(c.compile_timeout == 3600);
    CHECK(hp_config_set(&c, "compile-timeout", "0", err, sizeof err) < 0);
    CHECK(strstr(err, "1") && strstr(err, "3600"));
    CHECK(set_ok(&c, "compile-cpu-limit", "0"));
    CHECK(c.compile_cpu_limit == 0);
    CHECK(set_ok(&c, "compile-cpu-limit", "86400"));
    CHECK(c.compile_cpu_limit == 86400);
    CHECK(set_bad(&c, "compile-cpu-limit", "86401"));
    CHECK(set_bad(&c, "compile-cpu-limit", "-1"));
    CHECK(c.compile_cpu_limit == 86400);
    hp_config_free(&c);
}

/* The parent's liveness check: 5 s by default, off, at least 2 s (one
 * missed beat of a busy machine must not kill a worker). */
static void test_set_heartbeat_timeout(void)
{
    struct hp_config c;

    hp_config_defaults(&c);
    CHECK(c.worker_heartbeat_timeout == 5);
    CHECK(set_ok(&c, "worker-heartbeat-timeout", "2.5"));
    CHECK(c.worker_heartbeat_timeout == 2.5);
    CHECK(set_ok(&c, "worker-heartbeat-timeout", "off"));
    CHECK(c.worker_heartbeat_timeout == 0);
    CHECK(set_ok(&c, "worker-heartbeat-timeout", "0"));
    CHECK(set_bad(&c, "worker-heartbeat-timeout", "1"));
    CHECK(set_bad(&c, "worker-heartbeat-timeout", "86401"));
    CHECK(set_bad(&c, "worker-heartbeat-timeout", "-5"));
    hp_config_free(&c);
}

static void test_set_sizes(void)
{
    struct hp_config c;
    char err[256];

    hp_config_defaults(&c);
    CHECK(set_ok(&c, "max-body", "0"));
    CHECK(c.max_body == 0);
    CHECK(set_ok(&c, "max-body", "12345"));
    CHECK(c.max_body == 12345);
    CHECK(set_ok(&c, "max-body", "64k"));
    CHECK(c.max_body == 64 * 1024);
    CHECK(set_ok(&c, "max-body", "64K"));
    CHECK(c.max_body == 64 * 1024);
    CHECK(set_ok(&c, "max-body", "8m"));
    CHECK(c.max_body == 8u << 20);
    CHECK(set_ok(&c, "max-body", "3M"));
    CHECK(c.max_body == 3u << 20);
    CHECK(set_ok(&c, "max-body", "2g"));
    CHECK(c.max_body == (size_t)2 << 30);
    CHECK(set_ok(&c, "max-body", "1024G"));
    CHECK(c.max_body == (size_t)1024 << 30);
    CHECK(set_bad(&c, "max-body", "1025G"));
    CHECK(set_bad(&c, "max-body", "99999999999999999999"));
    CHECK(set_bad(&c, "max-body", "18014398509481984k")); /* 2^54 k: wraps */
    CHECK(set_bad(&c, "max-body", "1.5M"));
    CHECK(set_bad(&c, "max-body", "-1"));
    CHECK(set_bad(&c, "max-body", "1KB"));
    CHECK(set_bad(&c, "max-body", "1T"));
    CHECK(set_bad(&c, "max-body", "k"));
    CHECK(set_bad(&c, "max-body", "1 k"));
    CHECK(set_bad(&c, "max-body", ""));
    CHECK(c.max_body == (size_t)1024 << 30);

    /* the compile limits: sizes like max-body, 0 = off */
    CHECK(set_ok(&c, "compile-memory-limit", "0"));
    CHECK(c.compile_memory_limit == 0);
    CHECK(set_ok(&c, "compile_memory_limit", "512m"));
    CHECK(c.compile_memory_limit == (size_t)512 << 20);
    CHECK(set_ok(&c, "compile-memory-limit", "3G"));
    CHECK(c.compile_memory_limit == (size_t)3 << 30);
    CHECK(set_bad(&c, "compile-memory-limit", "2GB"));
    CHECK(set_bad(&c, "compile-memory-limit", "-1"));
    CHECK(set_bad(&c, "compile-memory-limit", "1025g"));
    CHECK(c.compile_memory_limit == (size_t)3 << 30);
    CHECK(set_ok(&c, "compile-file-limit", "0"));
    CHECK(c.compile_file_limit == 0);
    CHECK(set_ok(&c, "compile-file-limit", "64k"));
    CHECK(c.compile_file_limit == 64 * 1024);
    CHECK(set_bad(&c, "compile-file-limit", "1.5M"));
    CHECK(c.compile_file_limit == 64 * 1024);

    CHECK(set_ok(&c, "max-header", "1k"));
    CHECK(c.max_header == 1024);
    CHECK(set_ok(&c, "max_header", "1M"));
    CHECK(c.max_header == 1u << 20);
    CHECK(set_ok(&c, "max-header", "32768"));
    CHECK(c.max_header == 32768);
    CHECK(set_bad(&c, "max-header", "1023"));
    CHECK(set_bad(&c, "max-header", "1025k"));
    hp_config_set(&c, "max-header", "2g", err, sizeof err);
    CHECK(strstr(err, "1K to 1M") != NULL);
    hp_config_free(&c);
}

static void test_set_strings(void)
{
    struct hp_config c;

    hp_config_defaults(&c);
    CHECK(set_ok(&c, "dev", "true"));
    CHECK(c.dev == 1);
    CHECK(set_ok(&c, "dev", "FALSE"));
    CHECK(c.dev == 0);
    CHECK(set_ok(&c, "dev", "auto"));
    CHECK(c.dev == -1);
    CHECK(set_ok(&c, "dev", "yes"));
    CHECK(c.dev == 1);
    CHECK(set_ok(&c, "dev", "off"));
    CHECK(c.dev == 0);
    CHECK(set_ok(&c, "dev", "1"));
    CHECK(c.dev == 1);
    CHECK(set_bad(&c, "dev", "maybe"));
    CHECK(set_bad(&c, "dev", ""));
    CHECK(set_bad(&c, "dev", "2"));

    CHECK(set_ok(&c, "docroot", "site"));
    CHECK_STR(c.docroot, "site");
    CHECK(set_ok(&c, "docroot", "/srv/www"));
    CHECK_STR(c.docroot, "/srv/www");
    CHECK(set_bad(&c, "docroot", ""));

    CHECK(set_ok(&c, "cache-dir", "/var/cache/hotpub"));
    CHECK_STR(c.cache_dir, "/var/cache/hotpub");
    CHECK(set_bad(&c, "cache_dir", ""));

    CHECK(set_ok(&c, "cc", "/usr/bin/gcc-12"));
    CHECK_STR(c.cc, "/usr/bin/gcc-12");
    CHECK(set_bad(&c, "cc", "ccache gcc"));
    CHECK(set_bad(&c, "cc", ""));

    CHECK(set_ok(&c, "cflags", "-O0 -g -Wall"));
    CHECK_STR(c.cflags, "-O0 -g -Wall");
    CHECK(set_ok(&c, "cflags", ""));
    CHECK_STR(c.cflags, "");

    CHECK(set_ok(&c, "include-dir", "/opt/hotpub/include"));
    CHECK_STR(c.include_dir, "/opt/hotpub/include");
    CHECK(set_ok(&c, "include-dir", "")); /* back to the built-in one */
    CHECK(c.include_dir == NULL);

    CHECK(set_ok(&c, "access-log", "off"));
    CHECK_STR(c.access_log, "off");
    CHECK(set_ok(&c, "access-log", "/var/log/hotpub.log"));
    CHECK_STR(c.access_log, "/var/log/hotpub.log");
    CHECK(set_ok(&c, "access-log", "-"));
    CHECK_STR(c.access_log, "-");
    CHECK(set_bad(&c, "access-log", ""));
    hp_config_free(&c);
}

/* ---- hp_config_load ----------------------------------------------------- */

static void test_load_values(void)
{
    struct hp_config c;
    char msg[1024], want[PATH_MAX + 32];
    const char *path = write_file(
        "hotpub.ini", "\xEF\xBB\xBF; a comment\n"
                      "# another comment\n"
                      "threads = 6\n" /* before any section: accepted */
                      "\n"
                      "[server]\n"
                      "docroot = site\n"
                      "listen = :8443 ; inline comment\n"
                      "dev = false\n"
                      "cache_dir = cache\n"
                      "cc = gcc\n"
                      "cflags = \"-O1 -g\"\r\n" /* quotes removed, CRLF fine */
                      "include-dir = /opt/hotpub/include\n"
                      "revalidate = 1.5\n"
                      "settle-ms = 50\n"
                      "access-log = -\n"
                      "max-body = 2m\n"
                      "max-header = 32k\n"
                      "timeout = 60\n"
                      "shutdown-timeout = 5\n"
                      "connection-limit = 100\n"
                      "Max_Body = 3M\n" /* later keys win */
                      "[ Server ]\n"
                      "timeout=61\n");

    hp_config_defaults(&c);
    CHECK(load_capture(&c, path, msg, sizeof msg) == 0);
    CHECK_STR(msg, "");
    snprintf(want, sizeof want, "%s/site", tmpdir);
    CHECK_STR(c.docroot, want);
    CHECK_STR(c.listen, "0.0.0.0:8443");
    CHECK(c.threads == 6);
    CHECK(c.dev == 0);
    snprintf(want, sizeof want, "%s/cache", tmpdir);
    CHECK_STR(c.cache_dir, want);
    CHECK_STR(c.cc, "gcc");
    CHECK_STR(c.cflags, "-O1 -g");
    CHECK_STR(c.include_dir, "/opt/hotpub/include");
    CHECK(c.revalidate == 1.5);
    CHECK(c.settle_ms == 50);
    CHECK_STR(c.access_log, "-");
    CHECK(c.max_body == 3u << 20);
    CHECK(c.max_header == 32u << 10);
    CHECK(c.timeout == 61);
    CHECK(c.shutdown_timeout == 5);
    CHECK(c.conn_limit == 100);
    hp_config_free(&c);
}

static void test_load_paths(void)
{
    struct hp_config c;
    char msg[1024], want[PATH_MAX + 32], sub[PATH_MAX], cwd[PATH_MAX];
    const char *path;

    /* Absolute paths stay; "off" and "-" are not paths. */
    path = write_file("abs.ini", "[server]\n"
                                 "docroot = /srv/www\n"
                                 "access-log = off\n");
    hp_config_defaults(&c);
    CHECK(load_capture(&c, path, msg, sizeof msg) == 0);
    CHECK_STR(c.docroot, "/srv/www");
    CHECK_STR(c.access_log, "off");
    hp_config_free(&c);

    /* Relative ones are relative to the file, including "..". */
    snprintf(sub, sizeof sub, "%s/etc", tmpdir);
    mkdir(sub, 0700);
    path = write_file("etc/rel.ini", "[server]\n"
                                     "docroot = ../www\n"
                                     "access-log = logs/access.log\n"
                                     "include-dir = inc\n");
    hp_config_defaults(&c);
    CHECK(load_capture(&c, path, msg, sizeof msg) == 0);
    snprintf(want, sizeof want, "%s/etc/../www", tmpdir);
    CHECK_STR(c.docroot, want);
    snprintf(want, sizeof want, "%s/etc/logs/access.log", tmpdir);
    CHECK_STR(c.access_log, want);
    snprintf(want, sizeof want, "%s/etc/inc", tmpdir);
    CHECK_STR(c.include_dir, want);
    hp_config_free(&c);

    /* A config path without a directory: relative to the current one. */
    if (getcwd(cwd, sizeof cwd) && chdir(sub) == 0) {
        hp_config_defaults(&c);
        CHECK(load_capture(&c, "rel.ini", msg, sizeof msg) == 0);
        CHECK_STR(c.docroot, "../www");
        hp_config_free(&c);
        CHECK(chdir(cwd) == 0);
    }
}

static void test_load_errors(void)
{
    struct hp_config c;
    char msg[1024], want[PATH_MAX + 64];
    char longline[400];

    /* Unknown key, with file:line. */
    snprintf(want, sizeof want, "%s/bad.ini:3: unknown setting \"colour\"",
             tmpdir);
    CHECK(load_fails_with("[server]\nthreads = 2\ncolour = blue\n", want));
    /* A bad value names the key and the line. */
    snprintf(want, sizeof want, "%s/bad.ini:4: threads: expected", tmpdir);
    CHECK(load_fails_with("[server]\n\n; x\nthreads = lots\n", want));
    CHECK(load_fails_with("[server]\nmax-body = 1.5M\n",
                          "bad.ini:2: max-body: expected a size"));
    CHECK(load_fails_with("[server]\nlisten = 8080\n", "bad.ini:2: listen: "));
    CHECK(load_fails_with("[server]\ndocroot =\n", "bad.ini:2: docroot: "));
    /* Unknown sections, even empty ones. */
    CHECK(load_fails_with("[server]\nthreads = 2\n[client]\nthreads = 3\n",
                          "bad.ini:3: unknown section [client]"));
    CHECK(load_fails_with("[server]\n[extra]\n", "bad.ini:2: unknown section"));
    CHECK(load_fails_with("[server\nthreads = 2\n", "bad.ini:1: missing ']'"));
    /* Not key = value. */
    CHECK(load_fails_with("[server]\nthreads 2\n",
                          "bad.ini:2: expected \"key = value\""));
    /* inih would read these as a continuation of threads' value. */
    CHECK(load_fails_with("[server]\nthreads = 2\n  timeout = 5\n",
                          "bad.ini:3: indented line"));
    CHECK(load_fails_with("[server]\n\tthreads = 2\n", "bad.ini:2: indented"));
    /* A line too long for inih's buffer is an error, not two lines. */
    memset(longline, 'x', sizeof longline);
    memcpy(longline, "cflags = ", 9);
    longline[sizeof longline - 2] = '\n';
    longline[sizeof longline - 1] = '\0';
    CHECK(load_fails_with(longline, "bad.ini:1: line too long"));
    /* "#" after a value is not a comment to inih: refuse, don't keep it. */
    CHECK(load_fails_with("[server]\ncflags = -O2  # fast\n",
                          "bad.ini:2: cflags: '#' starts a comment only"));
    /* "#" inside a value is fine. */
    hp_config_defaults(&c);
    CHECK(load_capture(&c, write_file("hash.ini", "cflags = -DX=#1\n"), msg,
                       sizeof msg) == 0);
    CHECK_STR(c.cflags, "-DX=#1");
    hp_config_free(&c);
    /* The first error is the one reported. */
    CHECK(load_fails_with("[server]\nthreads = 0\ntimeout = 0\n",
                          "bad.ini:2: threads"));
    CHECK(load_fails_with("[server]\nbogus\nthreads = 0\n", "bad.ini:2: "));

    /* Missing file, directory. */
    hp_config_defaults(&c);
    CHECK(load_capture(&c, "/nonexistent/hotpub.ini", msg, sizeof msg) == -1);
    CHECK(strstr(msg, "/nonexistent/hotpub.ini") != NULL);
    CHECK(strstr(msg, "No such file") != NULL);
    CHECK(load_capture(&c, tmpdir, msg, sizeof msg) == -1);
    CHECK(strstr(msg, "directory") != NULL);
    hp_config_free(&c);

    /* An empty file and a file of comments are fine. */
    hp_config_defaults(&c);
    CHECK(load_capture(&c, write_file("empty.ini", ""), msg, sizeof msg) == 0);
    CHECK(load_capture(&c, write_file("comments.ini", "; x\n# y\n\n[server]\n"),
                       msg, sizeof msg) == 0);
    CHECK_STR(c.listen, "127.0.0.1:8080");
    hp_config_free(&c);
}

/* A line exactly at the limit is accepted. */
static void test_load_long_line(void)
{
    struct hp_config c;
    char msg[1024], line[256];
    const char *path;
    int limit = -1;

    /* Find the limit from the error message, then use exactly it. */
    memset(line, 'x', 250);
    memcpy(line, "cflags = ", 9);
    line[250] = '\0';
    path = write_file("long.ini", line);
    hp_config_defaults(&c);
    CHECK(load_capture(&c, path, msg, sizeof msg) == -1);
    const char *p = strstr(msg, "at most ");
    CHECK(p != NULL);
    if (p)
        limit = atoi(p + 8);
    CHECK(limit >= 100 && limit < 250);
    if (limit > 0) {
        line[limit] = '\0';
        path = write_file("long.ini", line);
        CHECK(load_capture(&c, path, msg, sizeof msg) == 0);
        CHECK(c.cflags && strlen(c.cflags) == (size_t)limit - 9);
    }
    hp_config_free(&c);
}

/* examples/hotpub.ini, every setting uncommented, loads, and each setting
 * whose default is one fixed value (no .def) comes out as the default: the
 * example documents every key of hp_settings and no wrong default. warm is
 * left out on purpose (a `hotpub check` action; the file says why, and
 * tools/check-example-ini.sh checks the same from config-reference). */
static void test_example_file(void)
{
    bool seen[256] = {false};
    struct hp_config c, d;
    char line[512], path[PATH_MAX], msg[1024], got[PATH_MAX], want[PATH_MAX];
    FILE *in = fopen("examples/hotpub.ini", "r"), *out;

    CHECK(hp_settings_count <= sizeof seen / sizeof *seen);
    CHECK(in != NULL); /* run from the top of the repository */
    if (!in)
        return;
    snprintf(path, sizeof path, "%s/example.ini", tmpdir);
    out = fopen(path, "w");
    while (fgets(line, sizeof line, in)) {
        const char *p = line;
        size_t k = strspn(line + 1, "abcdefghijklmnopqrstuvwxyz-");
        if (line[0] == ';' && k && strncmp(line + 1 + k, " = ", 3) == 0) {
            p = line + 1;
            for (size_t i = 0; i < hp_settings_count; i++)
                if (strlen(hp_settings[i].key) == k &&
                    strncmp(p, hp_settings[i].key, k) == 0)
                    seen[i] = true;
        }
        fputs(p, out);
    }
    fclose(in);
    fclose(out);
    for (size_t i = 0; i < hp_settings_count; i++) {
        bool want_seen = strcmp(hp_settings[i].key, "warm") != 0;
        if (seen[i] != want_seen)
            fprintf(stderr, "  (example %s %s)\n",
                    want_seen ? "lacks" : "shows", hp_settings[i].key);
        CHECK(seen[i] == want_seen);
    }

    hp_config_defaults(&c);
    hp_config_defaults(&d);
    CHECK(load_capture(&c, path, msg, sizeof msg) == 0);
    CHECK_STR(msg, "");
    for (size_t i = 0; i < hp_settings_count; i++) {
        if (hp_settings[i].def)
            continue; /* an example value: not one fixed default */
        hp_setting_value_text(&hp_settings[i], &c, got, sizeof got);
        hp_setting_value_text(&hp_settings[i], &d, want, sizeof want);
        if (strcmp(got, want) != 0)
            fprintf(stderr, "  (example's %s = %s, default %s)\n",
                    hp_settings[i].key, got, want);
        CHECK_STR(got, want);
    }
    hp_config_free(&c);
    hp_config_free(&d);
}

int main(int argc, char **argv)
{
    T_INIT(argc, argv); /* an argument: only the tests named like it */
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    T_RUN(test_defaults);
    T_RUN(test_wait_bounds_auto);
    T_RUN(test_default_cache_dir);
    T_RUN(test_table);
    T_RUN(test_request_limits);
    T_RUN(test_set_keys);
    T_RUN(test_set_listen);
    T_RUN(test_set_numbers);
    T_RUN(test_set_sizes);
    T_RUN(test_set_compile_seconds);
    T_RUN(test_set_heartbeat_timeout);
    T_RUN(test_set_strings);
    T_RUN(test_load_values);
    T_RUN(test_load_paths);
    T_RUN(test_load_errors);
    T_RUN(test_load_long_line);
    T_RUN(test_example_file);

    {
        char cmd[PATH_MAX + 16];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
        if (system(cmd) != 0)
            fprintf(stderr, "  (could not remove %s)\n", tmpdir);
    }
    T_DONE();
}
