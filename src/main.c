/*
 * main.c - the command line: `hotpub serve|check [options] [DOCROOT]` and
 * `hotpub config-reference`.
 *
 * Owns: argv parsing, --help and --version, the settings reference in
 * Markdown (docs/configuration.md's table, `make docs`), the order in which
 * settings are applied (defaults, then the --config file, then flags, then
 * the DOCROOT argument), and the exit status of usage errors (2).
 * May not touch: the meaning or validation of any setting (every flag goes
 * through hp_config_set, exactly like a config-file key), or anything the
 * server does once hp_serve / hp_check is called. The flags, the help and
 * the reference are all built from config.c's table, hp_settings: nothing
 * here names a setting but docroot and dev's --no-dev spelling.
 */
#include "hp.h"
#include "jsonmem.h"
#include "master.h"
#include "session.h"

#include <ctype.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXIT_USAGE 2

/* getopt values: setting i is O_SETTING + 2i (--KEY), and + 2i + 1 for a
 * switch's --no-KEY. */
enum { O_HELP = 'h', O_CONFIG = 256, O_VERSION, O_SETTING };

static struct option *long_opts;
static char (*no_names)[48]; /* "no-KEY", one per setting */

/* The options: --help, --version, --config, then one per setting (two for
 * a switch). Returns false when out of memory. */
static bool build_opts(void)
{
    size_t n = 0;

    long_opts = calloc(4 + 2 * hp_settings_count, sizeof *long_opts);
    no_names = calloc(hp_settings_count, sizeof *no_names);
    if (!long_opts || !no_names)
        return false;
    long_opts[n++] = (struct option){"help", no_argument, NULL, O_HELP};
    long_opts[n++] = (struct option){"version", no_argument, NULL, O_VERSION};
    long_opts[n++] =
        (struct option){"config", required_argument, NULL, O_CONFIG};
    for (size_t i = 0; i < hp_settings_count; i++) {
        const struct hp_setting *s = &hp_settings[i];
        int val = O_SETTING + 2 * (int)i;
        if (s->flag == HP_FLAG_NONE)
            continue;
        if (s->flag == HP_FLAG_VALUE) {
            long_opts[n++] =
                (struct option){s->key, required_argument, NULL, val};
            continue;
        }
        snprintf(no_names[i], sizeof no_names[i], "no-%s", s->key);
        long_opts[n++] = (struct option){s->key, no_argument, NULL, val};
        long_opts[n++] =
            (struct option){no_names[i], no_argument, NULL, val + 1};
    }
    return true;
}

/* The default as shown to a person: the table's words where the value
 * depends on the machine (with this machine's value for --help), else
 * the value itself. */
static void default_text(const struct hp_setting *s, const struct hp_config *d,
                         bool here, char *buf, size_t len)
{
    char v[PATH_MAX];

    hp_setting_value_text(s, d, v, sizeof v);
    if (!s->def)
        snprintf(buf, len, "%s", v);
    else if (here && s->def_here)
        snprintf(buf, len, "%s; here %s", s->def, v);
    else
        snprintf(buf, len, "%s", s->def);
}

/* The flag as listed: "--threads N|auto", "--dev, --no-dev". */
static void flag_text(const struct hp_setting *s, char *buf, size_t len)
{
    if (s->flag == HP_FLAG_SWITCH)
        snprintf(buf, len, "--%s, --no-%s", s->key, s->key);
    else if (s->flag == HP_FLAG_NONE)
        snprintf(buf, len, "DOCROOT argument");
    else
        snprintf(buf, len, "--%s %s", s->key, s->arg ? s->arg : "VALUE");
}

/* One option of --help: the flag in a 28-column gutter, the text wrapped
 * to 50 columns beside it (a long flag gets a line of its own). */
static void help_row(FILE *out, const char *opt, const char *text)
{
    const int width = 50;
    const char *p = text;
    bool first = true;

    if (strlen(opt) > 26) {
        fprintf(out, "  %s\n", opt);
        first = false;
    }
    while (*p) {
        int n = (int)strlen(p), cut = n;
        if (n > width) {
            for (cut = width; cut > 0 && p[cut] != ' '; cut--)
                ;
            if (cut == 0)
                cut = width;
        }
        fprintf(out, "  %-26s  %.*s\n", first ? opt : "", cut, p);
        first = false;
        p += cut;
        while (*p == ' ')
            p++;
    }
}

static void help(FILE *out)
{
    struct hp_config d;
    const char *section = NULL;

    hp_config_defaults(&d);
    fputs("Usage: hotpub serve [OPTIONS] [DOCROOT]\n"
          "       hotpub check [OPTIONS] DOCROOT\n"
          "       hotpub config-reference | --help | --version\n"
          "\n"
          "Commands:\n"
          "  serve  serve the pages under DOCROOT (default: the config "
          "file's\n"
          "         docroot, else the current directory)\n"
          "  check  compile every page under DOCROOT, print diagnostics, and\n"
          "         exit 0 only if all compiled\n"
          "  config-reference  print the settings as a Markdown table\n"
          "\n"
          "Options (each is also a key of the config file's [server] "
          "section;\n"
          "the config file is read first and flags override it):\n",
          out);
    help_row(out, "--config FILE", "read settings from FILE (default: none)");
    for (size_t i = 0; i < hp_settings_count; i++) {
        const struct hp_setting *s = &hp_settings[i];
        char opt[64], range[96], def[PATH_MAX + 128], text[PATH_MAX + 512];
        if (s->flag == HP_FLAG_NONE)
            continue;
        if (!section || strcmp(section, s->section) != 0)
            fprintf(out, "%s:\n", (section = s->section));
        flag_text(s, opt, sizeof opt);
        hp_setting_range_text(s, "-", range, sizeof range);
        default_text(s, &d, true, def, sizeof def);
        snprintf(text, sizeof text, "%s%s%s (default: %s)", s->help,
                 range[0] ? "; " : "", range, def);
        help_row(out, opt, text);
    }
    fputs("Other:\n", out);
    help_row(out, "-h, --help", "print this help and exit");
    help_row(out, "--version", "print the version and exit");
    fputs("\n"
          "Exit status: 2 for a usage or configuration error; otherwise that "
          "of\n"
          "the command. Full manual: docs/configuration.md.\n",
          out);
    hp_config_free(&d);
}

/* s into a Markdown table cell: '|' escaped. */
static void md_cell(FILE *out, const char *s, bool code)
{
    fputs(code ? " `" : " ", out);
    for (; *s; s++)
        fputs(*s == '|' ? "\\|" : (char[2]){*s, 0}, out);
    fputs(code ? "` |" : " |", out);
}

/* `hotpub config-reference`: docs/configuration.md's settings tables,
 * from the same table and defaults as --help, for `make docs` and the
 * test that the manual matches the binary (make check-docs). */
static void reference(FILE *out)
{
    struct hp_config d;
    const char *section = NULL;

    hp_config_defaults(&d);
    for (size_t i = 0; i < hp_settings_count; i++) {
        const struct hp_setting *s = &hp_settings[i];
        char opt[64], range[96], def[PATH_MAX + 128], help[512];
        if (!section || strcmp(section, s->section) != 0) {
            fprintf(out, "%s**%s**\n\n", section ? "\n" : "", s->section);
            section = s->section;
            fputs("| Flag | Config key | Default | Values | Meaning |\n"
                  "|------|------------|---------|--------|---------|\n",
                  out);
        }
        flag_text(s, opt, sizeof opt);
        hp_setting_range_text(s, "–", range, sizeof range);
        default_text(s, &d, false, def, sizeof def);
        snprintf(help, sizeof help, "%c%s.", toupper((unsigned char)s->help[0]),
                 s->help + 1);
        fputs("|", out);
        md_cell(out, opt, s->flag != HP_FLAG_NONE);
        md_cell(out, s->key, true);
        md_cell(out, def, !s->def);
        md_cell(out, range, false);
        md_cell(out, help, false);
        fputc('\n', out);
    }
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

static void reload_error(const char *msg);
static bool reloading; /* settings() runs for a SIGHUP */

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
    if (hp_config_check(cfg, err, sizeof err) < 0) {
        hp_config_free(cfg);
        if (reloading)
            reload_error(err);
        else
            fprintf(stderr, "hotpub: %s\n", err);
        return EXIT_USAGE;
    }
    return 0;
}

/* SIGHUP: the same command line, the config file as it is now. */
/* A reload's config-file error: a log line (time, level), not the bare
 * "hotpub: ..." of the command line. */
static void reload_error(const char *msg)
{
    hp_log_error("SIGHUP: %s", msg);
}

static int reload_settings(struct hp_config *cfg)
{
    hp_config_set_error_sink(reload_error);
    reloading = true;
    int rc = settings(cfg) == 0 ? 0 : -1;
    reloading = false;
    hp_config_set_error_sink(NULL);
    return rc;
}

/*
 * The commands that only print (help, version, the configuration
 * reference) or are unknown: the exit status, or -1 for serve and check.
 */
static int info_command(const char *cmd)
{
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 ||
        strcmp(cmd, "help") == 0) {
        help(stdout);
        return 0;
    }
    if (strcmp(cmd, "--version") == 0) {
        printf("hotpub %s\n", HP_VERSION_STRING);
        return 0;
    }
    if (strcmp(cmd, "config-reference") == 0) {
        reference(stdout);
        return 0;
    }
    if (strcmp(cmd, "serve") == 0 || strcmp(cmd, "check") == 0)
        return -1;
    if (cmd[0] == '-')
        return usage_error("the command (serve or check) comes first, "
                           "before options like '%s'",
                           cmd);
    return usage_error("unknown command '%s' (expected serve or check)", cmd);
}

/* One setting's flag (--key VALUE, --key / --no-key for a switch). */
static void note_flag(struct flag *f, int opt)
{
    size_t i = (size_t)(opt - O_SETTING) / 2;
    bool off = (opt - O_SETTING) % 2;
    f->key = hp_settings[i].key;
    f->as = off ? no_names[i] : f->key;
    if (hp_settings[i].flag == HP_FLAG_SWITCH)
        f->value = off ? "false" : "true";
    else
        f->value = optarg;
}

/*
 * Collect the flags into flags[] (*n of them) and the config file's path;
 * they are applied after the config file is read, so their position on
 * the line does not matter. argv[1] (the command) stands in for getopt's
 * argv[0], which names the program in getopt's own messages. Returns -1 to
 * go on, or the exit status (help, version, a bad flag).
 */
static int parse_flags(int argc, char **argv, struct flag *flags, size_t *n,
                       const char **config_path)
{
    char *cmd = argv[1];
    int opt, rc = -1;
    argv[1] = "hotpub";
    opterr = 1;
    while (rc < 0 && (opt = getopt_long(argc - 1, argv + 1, "h", long_opts,
                                        NULL)) != -1) {
        switch (opt) {
        case O_HELP:
            help(stdout);
            rc = 0;
            break;
        case O_VERSION:
            printf("hotpub %s\n", HP_VERSION_STRING);
            rc = 0;
            break;
        case O_CONFIG:
            *config_path = optarg;
            break;
        case '?':
            fputs("Try 'hotpub --help' for more information.\n", stderr);
            rc = EXIT_USAGE;
            break;
        default:
            note_flag(&flags[(*n)++], opt);
            break;
        }
    }
    argv[1] = cmd;
    return rc;
}

int main(int argc, char **argv)
{
    const char *config_path = NULL, *docroot = NULL;
    size_t nflags = 0;
    struct hp_config cfg;
    int rc;

    hp_jsonmem_install(); /* before any JSON value exists */
    if (argc < 2)
        return usage_error("missing command (serve or check)");
    if (!build_opts()) {
        fputs("hotpub: out of memory\n", stderr);
        return 1;
    }
    char *cmd = argv[1];
    if ((rc = info_command(cmd)) >= 0)
        return rc;
    struct flag *flags = calloc((size_t)argc, sizeof *flags);
    if (!flags) {
        fputs("hotpub: out of memory\n", stderr);
        return 1;
    }
    rc = parse_flags(argc, argv, flags, &nflags, &config_path);
    /* What is left: at most one DOCROOT. */
    int first = optind + 1, left = argc - first;
    if (rc < 0 && left > 1)
        rc = usage_error("too many arguments: '%s' after DOCROOT '%s'",
                         argv[first + 1], argv[first]);
    if (rc < 0 && left == 1)
        docroot = argv[first];
    if (rc < 0) {
        given = (struct given){cmd, config_path, flags, nflags, docroot};
        rc = settings(&cfg);
        /* libsodium once, before worker processes fork (its random source
         * is the getrandom(2) system call: nothing to reseed after fork). */
        if (rc == 0 && hp_crypto_init() < 0)
            rc = 1;
        if (rc == 0) {
            rc = strcmp(cmd, "serve") == 0
                     ? hp_master_run(&cfg, reload_settings)
                     : hp_check(&cfg);
            hp_config_free(&cfg);
        }
    }
    free(flags);
    return rc < 0 || rc > 255 ? 1 : rc;
}
