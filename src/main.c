/*
 * main.c - the command line: `hotpub serve|check [options] [DOCROOT]`.
 *
 * Owns: argv parsing, --help and --version, the order in which settings are
 * applied (defaults, then the --config file, then flags, then the DOCROOT
 * argument), and the exit status of usage errors (2).
 * May not touch: the meaning or validation of any setting (every flag goes
 * through hp_config_set, exactly like a config-file key), or anything the
 * server does once hp_serve / hp_check is called.
 */
#include "hp.h"
#include "procs.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXIT_USAGE 2

enum {
    O_HELP = 'h',
    O_CONFIG = 256,
    O_VERSION,
    O_LISTEN,
    O_THREADS,
    O_DEV,
    O_NO_DEV,
    O_CACHE_DIR,
    O_CC,
    O_CFLAGS,
    O_INCLUDE_DIR,
    O_REVALIDATE,
    O_SETTLE_MS,
    O_INLINE,
    O_ACCESS_LOG,
    O_MAX_BODY,
    O_MAX_HEADER,
    O_TIMEOUT,
    O_SHUTDOWN_TIMEOUT,
    O_CONN_LIMIT,
    O_WORKERS,
    O_HANDLER_TIMEOUT,
    O_USER,
    O_GROUP,
    O_PID_FILE,
    O_ERROR_LOG,
    O_DB,
    O_DB_POOL_SIZE,
    O_DB_ACQUIRE_TIMEOUT,
    O_DB_MAX_LIFETIME,
    O_DB_STATEMENT_CACHE,
};

/* A setting flag's name is its config key (--no-dev sets "dev"). */
static const struct option long_opts[] = {
    {"help", no_argument, NULL, O_HELP},
    {"version", no_argument, NULL, O_VERSION},
    {"config", required_argument, NULL, O_CONFIG},
    {"listen", required_argument, NULL, O_LISTEN},
    {"threads", required_argument, NULL, O_THREADS},
    {"dev", no_argument, NULL, O_DEV},
    {"no-dev", no_argument, NULL, O_NO_DEV},
    {"cache-dir", required_argument, NULL, O_CACHE_DIR},
    {"cc", required_argument, NULL, O_CC},
    {"cflags", required_argument, NULL, O_CFLAGS},
    {"include-dir", required_argument, NULL, O_INCLUDE_DIR},
    {"revalidate", required_argument, NULL, O_REVALIDATE},
    {"settle-ms", required_argument, NULL, O_SETTLE_MS},
    {"inline", required_argument, NULL, O_INLINE},
    {"access-log", required_argument, NULL, O_ACCESS_LOG},
    {"max-body", required_argument, NULL, O_MAX_BODY},
    {"max-header", required_argument, NULL, O_MAX_HEADER},
    {"timeout", required_argument, NULL, O_TIMEOUT},
    {"shutdown-timeout", required_argument, NULL, O_SHUTDOWN_TIMEOUT},
    {"connection-limit", required_argument, NULL, O_CONN_LIMIT},
    {"workers", required_argument, NULL, O_WORKERS},
    {"handler-timeout", required_argument, NULL, O_HANDLER_TIMEOUT},
    {"user", required_argument, NULL, O_USER},
    {"group", required_argument, NULL, O_GROUP},
    {"pid-file", required_argument, NULL, O_PID_FILE},
    {"error-log", required_argument, NULL, O_ERROR_LOG},
    {"db", required_argument, NULL, O_DB},
    {"db-pool-size", required_argument, NULL, O_DB_POOL_SIZE},
    {"db-acquire-timeout", required_argument, NULL, O_DB_ACQUIRE_TIMEOUT},
    {"db-max-lifetime", required_argument, NULL, O_DB_MAX_LIFETIME},
    {"db-statement-cache", required_argument, NULL, O_DB_STATEMENT_CACHE},
    {NULL, 0, NULL, 0},
};

static const char *opt_name(int val)
{
    for (const struct option *o = long_opts; o->name; o++)
        if (o->val == val)
            return o->name;
    return NULL;
}

/* 8388608 -> "8M", for the help text. */
static void fmt_bytes(char *buf, size_t len, size_t v)
{
    if (v && v % (1u << 20) == 0)
        snprintf(buf, len, "%zuM", v >> 20);
    else if (v && v % (1u << 10) == 0)
        snprintf(buf, len, "%zuK", v >> 10);
    else
        snprintf(buf, len, "%zu", v);
}

/* One line of the option list: the option (or "") and its description. */
static void row(FILE *out, const char *opt, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void row(FILE *out, const char *opt, const char *fmt, ...)
{
    va_list ap;
    fprintf(out, "  %-26s  ", opt);
    va_start(ap, fmt);
    vfprintf(out, fmt, ap);
    va_end(ap);
    fputc('\n', out);
}

static void help(FILE *out)
{
    struct hp_config d;
    char body[32], head[32];

    hp_config_defaults(&d);
    fmt_bytes(body, sizeof body, d.max_body);
    fmt_bytes(head, sizeof head, d.max_header);
    fputs("Usage: hotpub serve [OPTIONS] [DOCROOT]\n"
          "       hotpub check [OPTIONS] DOCROOT\n"
          "       hotpub --help | --version\n"
          "\n"
          "Commands:\n"
          "  serve  serve the pages under DOCROOT (default: the config "
          "file's\n"
          "         docroot, else the current directory)\n"
          "  check  compile every page under DOCROOT, print diagnostics, and\n"
          "         exit 0 only if all compiled\n"
          "\n"
          "Options (each is also a key of the config file's [server] "
          "section;\n"
          "the config file is read first and flags override it):\n",
          out);
    row(out, "--config FILE", "read settings from FILE (default: none)");
    row(out, "--listen ADDR:PORT", "address to listen on; :PORT = all IPv4,");
    row(out, "", "[::1]:PORT for IPv6 (default: %s)", d.listen);
    row(out, "--threads N", "handler threads, 1-1024 or auto");
    row(out, "", "(default: 2 x CPUs, at least 4; here %d)", d.threads);
    row(out, "--dev, --no-dev", "development mode on / off (default: on");
    row(out, "", "when listening on loopback, else off)");
    row(out, "--cache-dir DIR", "compile cache (default: %s)", d.cache_dir);
    row(out, "--cc CC", "page compiler (default: %s)", d.cc);
    row(out, "--cflags FLAGS", "page compiler flags (default: %s)", d.cflags);
    row(out, "--include-dir DIR", "directory holding hotpub.h (default:");
    row(out, "", "next to the binary, else built in)");
    row(out, "--revalidate SECONDS", "also re-check every page this often;");
    row(out, "", "0 = off (default: 0)");
    row(out, "--settle-ms MS", "quiet time after a change before");
    row(out, "", "recompiling (default: %d)", d.settle_ms);
    row(out, "--inline true|false", "run pages proven fast on the event");
    row(out, "", "loops; false: always on the worker pool (default: true)");
    row(out, "--access-log PATH|-|off", "access log; - = stdout (default: %s)",
        d.access_log);
    row(out, "--max-body BYTES", "largest request body, k/m/g suffixes");
    row(out, "", "allowed (default: %s)", body);
    row(out, "--max-header BYTES", "largest request head (default: %s)", head);
    row(out, "--timeout SECONDS", "idle connection timeout (default: %d)",
        d.timeout);
    row(out, "--shutdown-timeout SECONDS", "wait for in-flight requests on");
    row(out, "", "shutdown (default: %d)", d.shutdown_timeout);
    row(out, "--connection-limit N", "most simultaneous connections");
    row(out, "", "(default: %u)", d.conn_limit);
    row(out, "--db URL|off", "the default database: sqlite:PATH,");
    row(out, "", "postgresql://... or off (default: a SQLite");
    row(out, "", "file per docroot in $XDG_DATA_HOME/hotpub)");
    row(out, "--db-pool-size N|auto", "database connections at most");
    row(out, "", "(default: auto = 8 PostgreSQL, 4 SQLite)");
    row(out, "--db-acquire-timeout MS", "wait this long for a free connection,");
    row(out, "", "then answer 503 (default: %d)", d.db_acquire_timeout);
    row(out, "--db-max-lifetime SECONDS", "replace older connections; 0 = never");
    row(out, "", "(default: %d)", d.db_max_lifetime);
    row(out, "--db-statement-cache N", "prepared statements kept per");
    row(out, "", "connection; 0 = off (default: %d)", d.db_statement_cache);
    row(out, "--workers N|auto", "worker processes under a supervising");
    row(out, "", "parent, 0-1024 or auto (= online CPUs);");
    row(out, "", "0 = one process (default: %d)", d.workers);
    row(out, "--handler-timeout SECONDS", "answer 504 and recycle the worker");
    row(out, "", "when a handler runs longer; 0 = off");
    row(out, "", "(default: %g; needs --workers)", d.handler_timeout);
    row(out, "--user USER", "drop privileges to USER after binding");
    row(out, "--group GROUP", "and to GROUP (default: USER's group)");
    row(out, "--pid-file PATH", "write the server's pid here (default: none)");
    row(out, "--error-log PATH", "server messages to PATH, not standard");
    row(out, "", "error; reopened on SIGUSR1 (default: -)");
    row(out, "-h, --help", "print this help and exit");
    row(out, "--version", "print the version and exit");
    fputs("\n"
          "Exit status: 2 for a usage or configuration error; otherwise that "
          "of\n"
          "the command. Full manual: docs/configuration.md.\n",
          out);
    hp_config_free(&d);
}

static int usage_error(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

static int usage_error(const char *fmt, ...)
{
    va_list ap;
    fputs("hotpub: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\nTry 'hotpub --help' for more information.\n", stderr);
    return EXIT_USAGE;
}

struct flag {
    const char *key; /* hp_config_set key */
    const char *value;
    const char *as; /* the flag as typed, for messages */
};

/* What the command line gave, kept for settings() to apply again when
 * the server re-reads its configuration (SIGHUP, master.c). */
static struct given {
    const char *cmd, *config_path;
    const struct flag *flags;
    size_t nflags;
    const char *docroot;
} given;

/* Defaults, then the config file, then flags, then DOCROOT, into cfg.
 * Returns 0, or the exit status of a usage error after printing it (cfg
 * is freed then). */
static int settings(struct hp_config *cfg)
{
    char err[512];

    hp_config_defaults(cfg);
    if (given.config_path && hp_config_load(cfg, given.config_path) < 0) {
        hp_config_free(cfg);
        return EXIT_USAGE;
    }
    for (size_t i = 0; i < given.nflags; i++) {
        const struct flag *f = &given.flags[i];
        if (hp_config_set(cfg, f->key, f->value, err, sizeof err) < 0) {
            hp_config_free(cfg);
            return usage_error("%s%s: %s", f->as[0] == '-' ? "" : "--", f->as,
                               err);
        }
    }
    if (given.docroot &&
        hp_config_set(cfg, "docroot", given.docroot, err, sizeof err) < 0) {
        hp_config_free(cfg);
        return usage_error("DOCROOT: %s", err);
    }
    if (!cfg->docroot) {
        if (strcmp(given.cmd, "check") == 0) {
            hp_config_free(cfg);
            return usage_error("check needs a DOCROOT (an argument, or "
                               "docroot in the --config file)");
        }
        hp_config_set(cfg, "docroot", ".", err, sizeof err);
    }
    return 0;
}

/* SIGHUP: the same command line, the config file as it is now. */
static int reload_settings(struct hp_config *cfg)
{
    return settings(cfg) == 0 ? 0 : -1;
}

int main(int argc, char **argv)
{
    const char *config_path = NULL, *docroot = NULL;
    char *cmd;
    struct flag *flags;
    size_t nflags = 0;
    struct hp_config cfg;
    int opt, rc;

    if (argc < 2)
        return usage_error("missing command (serve or check)");
    cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 ||
        strcmp(cmd, "help") == 0) {
        help(stdout);
        return 0;
    }
    if (strcmp(cmd, "--version") == 0) {
        printf("hotpub %s\n", HP_VERSION_STRING);
        return 0;
    }
    if (strcmp(cmd, "serve") != 0 && strcmp(cmd, "check") != 0) {
        if (cmd[0] == '-')
            return usage_error("the command (serve or check) comes first, "
                               "before options like '%s'",
                               cmd);
        return usage_error("unknown command '%s' (expected serve or check)",
                           cmd);
    }

    /* Collect the flags; they are applied after the config file is read, so
     * their position on the line does not matter. argv[1] becomes getopt's
     * argv[0], which names the program in getopt's own messages. */
    flags = calloc((size_t)argc, sizeof *flags);
    if (!flags) {
        fputs("hotpub: out of memory\n", stderr);
        return 1;
    }
    argv[1] = "hotpub";
    opterr = 1;
    while ((opt = getopt_long(argc - 1, argv + 1, "h", long_opts, NULL)) !=
           -1) {
        struct flag *f = &flags[nflags];
        switch (opt) {
        case O_HELP:
            help(stdout);
            free(flags);
            return 0;
        case O_VERSION:
            printf("hotpub %s\n", HP_VERSION_STRING);
            free(flags);
            return 0;
        case O_CONFIG:
            config_path = optarg;
            break;
        case O_DEV:
        case O_NO_DEV:
            f->key = "dev";
            f->value = opt == O_DEV ? "true" : "false";
            f->as = opt == O_DEV ? "--dev" : "--no-dev";
            nflags++;
            break;
        case '?':
            free(flags);
            fputs("Try 'hotpub --help' for more information.\n", stderr);
            return EXIT_USAGE;
        default:
            f->key = opt_name(opt);
            f->value = optarg;
            f->as = f->key;
            nflags++;
            break;
        }
    }
    argv[1] = cmd;

    /* What is left: at most one DOCROOT. */
    {
        int first = optind + 1, left = argc - first;
        if (left > 1) {
            free(flags);
            return usage_error("too many arguments: '%s' after DOCROOT '%s'",
                               argv[first + 1], argv[first]);
        }
        if (left == 1)
            docroot = argv[first];
    }

    given = (struct given){cmd, config_path, flags, nflags, docroot};
    rc = settings(&cfg);
    if (rc != 0) {
        free(flags);
        return rc;
    }
    rc = strcmp(cmd, "serve") == 0 ? hp_master_run(&cfg, reload_settings)
                                   : hp_check(&cfg);
    hp_config_free(&cfg);
    free(flags);
    return rc < 0 || rc > 255 ? 1 : rc;
}
