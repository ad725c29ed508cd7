/*
 * upload.c - multipart/form-data request bodies, decoded while they arrive
 * (multipart.c): a part with a filename parameter is written to a
 * temporary file of its own as its bytes come, other fields are kept in
 * memory; pages read them with hp_arg and hp_file.
 *
 * Owns: the temporary files (created in --upload-dir, named after the
 * process that made them, removed when the request ends unless the page
 * moved them away), the decoder's sink, the list of hp_file records; and
 * (uploadspool.h) removing the files of a process that died before its
 * requests ended, which the supervisor and the start-up ask for.
 * May not touch: libmicrohttpd, sending; server.c feeds the body pieces
 * and request.c merges the fields after the query's.
 *
 * Why while the body arrives: a request body is complete before a page
 * runs, so buffering a 100 MB upload whole cost 100 MB (and its decoded
 * copy) per request; spooled, an upload costs the decoder's window.
 */
#include "upload.h"
#include "multipart.h"
#include "uploadspool.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SPOOL_PREFIX "hotpub-upload-"

struct upfile {
    struct hp_file pub;
    const char *field;
    dev_t dev;
    ino_t ino;
};

struct hp_upload {
    hp_req *req;
    const char *dir;
    int status;              /* 0, or the status the request gets (sticky) */
    bool finished;           /* hp_mp_finish ran */
    struct hp_fields fields; /* name -> value; a file's value: its name */
    const char *name;        /* the current part's field name          */
    struct hp_buf value;     /* the current field's content            */
    struct upfile *cur;      /* the current file part, or NULL         */
    int fd;                  /* its file, or -1                        */
    struct upfile *files;
    size_t nfiles, cap;
    struct hp_mp mp; /* last: large */
};

static char *dup_req(hp_req *req, const char *s)
{
    return s ? hp_strdup(req, s) : NULL;
}

static int fail(struct hp_upload *u, int status, const char *what)
{
    if (what)
        hp_log_error("upload to %s: %s: %s", u->req->path, what,
                     strerror(errno));
    return status;
}

/* A new temporary file for a file part: mode 0600, in u->dir. */
static int file_begin(struct hp_upload *u, const struct hp_form_part *part)
{
    if (u->nfiles == u->cap) {
        size_t cap = u->cap ? u->cap * 2 : 4;
        struct upfile *v = realloc(u->files, cap * sizeof *v);
        if (!v)
            return HP_FORM_NOMEM;
        u->files = v;
        u->cap = cap;
    }
    /* The pid in the name: if this process dies mid-request, whoever
     * sees it gone knows the file is garbage (uploadspool.h). */
    char *path = hp_sprintf(u->req, "%s/" SPOOL_PREFIX "%ld-XXXXXX", u->dir,
                            (long)getpid());
    if (!path)
        return HP_FORM_NOMEM;
    int fd = mkstemp(path);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        if (fd >= 0)
            close(fd);
        return fail(u, 500, "cannot create a file in --upload-dir");
    }
    struct upfile *f = &u->files[u->nfiles++];
    *f = (struct upfile){
        .pub = {.filename = dup_req(u->req, part->filename),
                .content_type = part->content_type
                                    ? dup_req(u->req, part->content_type)
                                    : "application/octet-stream",
                .path = path},
        .field = u->name,
        .dev = st.st_dev,
        .ino = st.st_ino,
    };
    u->cur = f;
    u->fd = fd;
    return f->pub.filename ? 0 : HP_FORM_NOMEM;
}

static int on_begin(void *arg, const struct hp_form_part *part)
{
    struct hp_upload *u = arg;
    u->name = dup_req(u->req, part->name);
    if (!u->name)
        return HP_FORM_NOMEM;
    u->value.len = 0;
    if (!part->filename)
        return 0;
    int r = file_begin(u, part);
    if (r != 0)
        return r;
    /* The field's value is the file's name (docs/pages.md, "Uploads"). */
    return hp_fields_add(&u->fields, u->name, u->cur->pub.filename,
                         strlen(u->cur->pub.filename));
}

static int on_data(void *arg, const char *p, size_t n)
{
    struct hp_upload *u = arg;
    if (!u->cur)
        return hp_buf_append(&u->value, p, n) < 0 ? HP_FORM_NOMEM : 0;
    while (n) {
        ssize_t w = write(u->fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return fail(u, 500, "cannot write an uploaded file");
        p += w;
        n -= (size_t)w;
        u->cur->pub.size += (uint64_t)w;
    }
    return 0;
}

static int on_end(void *arg)
{
    struct hp_upload *u = arg;
    if (u->cur) {
        int r = close(u->fd) < 0 ? fail(u, 500,
                                        "cannot close an uploaded "
                                        "file")
                                 : 0;
        u->fd = -1;
        u->cur = NULL;
        return r;
    }
    char *v = hp_alloc(u->req, u->value.len + 1);
    if (!v)
        return HP_FORM_NOMEM;
    if (u->value.len) /* NUL-terminated: a C-string reader sees it cut */
        memcpy(v, u->value.p, u->value.len);
    v[u->value.len] = '\0';
    size_t n = u->value.len;
    u->value.len = 0;
    return hp_fields_add(&u->fields, u->name, v, n);
}

void hp_upload_start(hp_req *req, const char *content_type, const char *dir,
                     int max_fields)
{
    struct hp_upload *u = malloc(sizeof *u);
    if (!u) {
        req->body_too_large = true; /* answered, never decoded */
        return;
    }
    memset(u, 0, offsetof(struct hp_upload, mp));
    u->req = req;
    u->dir = dir;
    u->fd = -1;
    u->fields.max = max_fields > 0 ? (size_t)max_fields : 0;
    struct hp_mp_sink sink = {on_begin, on_data, on_end, u};
    u->status = hp_mp_init(&u->mp, content_type, &sink);
    req->upload = u;
}

void hp_upload_feed(hp_req *req, const char *p, size_t n)
{
    struct hp_upload *u = req->upload;
    if (u && u->status == 0)
        u->status = hp_mp_feed(&u->mp, p, n);
}

/* Remove the files still where they were made: a file the page renamed
 * away is not touched, nor one that another request's mkstemp put at a
 * name this request's file left. */
static void remove_files(struct hp_upload *u)
{
    if (u->fd >= 0)
        close(u->fd);
    u->fd = -1;
    u->cur = NULL;
    for (size_t i = 0; i < u->nfiles; i++) {
        struct stat st;
        const char *path = u->files[i].pub.path;
        if (path && lstat(path, &st) == 0 && st.st_dev == u->files[i].dev &&
            st.st_ino == u->files[i].ino)
            unlink(path);
    }
    u->nfiles = 0;
}

void hp_upload_abort(hp_req *req)
{
    struct hp_upload *u = req->upload;
    if (!u)
        return;
    remove_files(u);
    if (u->status == 0)
        u->status = 413;
}

int hp_upload_fields(hp_req *req, struct hp_fields *f)
{
    struct hp_upload *u = req->upload;
    if (!u)
        return 0;
    if (!u->finished) {
        u->finished = true;
        if (u->status == 0)
            u->status = hp_mp_finish(&u->mp);
        hp_buf_free(&u->value);
        if (u->status != 0)
            remove_files(u); /* the page will not run */
    }
    for (size_t i = 0; u->status == 0 && i < u->fields.n; i++) {
        const struct hp_field *x = &u->fields.v[i];
        int r = hp_fields_add(f, x->name, x->value, x->value_len);
        if (r != 0)
            return r;
    }
    return u->status;
}

void hp_upload_cleanup(hp_req *req)
{
    struct hp_upload *u = req->upload;
    if (!u)
        return;
    remove_files(u);
    free(u->files);
    free(u->fields.v);
    hp_buf_free(&u->value);
    free(u);
    req->upload = NULL;
}

/* ---- what pages call -------------------------------------------------- */

const struct hp_file *hp_file_n(hp_req *req, const char *field, unsigned i)
{
    HP_REFUSE_NULL(req, field, "field", NULL);
    struct hp_upload *u = req->upload;
    if (!u || u->status != 0)
        return NULL;
    for (size_t k = 0; k < u->nfiles; k++)
        if (strcmp(u->files[k].field, field) == 0 && i-- == 0)
            return &u->files[k].pub;
    return NULL;
}

const struct hp_file *hp_file(hp_req *req, const char *field)
{
    HP_REFUSE_NULL(req, field, "field", NULL);
    return hp_file_n(req, field, 0);
}

unsigned hp_file_count(hp_req *req, const char *field)
{
    HP_REFUSE_NULL(req, field, "field", 0);
    struct hp_upload *u = req->upload;
    unsigned n = 0;
    for (size_t k = 0; u && u->status == 0 && k < u->nfiles; k++)
        n += strcmp(u->files[k].field, field) == 0;
    return n;
}

/* ---- spool files whose process is gone (uploadspool.h) ------------------ */

const char *hp_upload_dir(const struct hp_config *cfg)
{
    const char *tmp = getenv("TMPDIR");
    return cfg->upload_dir && *cfg->upload_dir ? cfg->upload_dir
           : tmp && *tmp                       ? tmp
                                               : "/tmp";
}

/* The owning pid of a spool file's name "hotpub-upload-<pid>-XXXXXX",
 * or 0 for any other name (an older unnamed spool file included: its
 * owner cannot be known, so it is never removed here). */
static pid_t spool_pid(const char *name)
{
    size_t n = strlen(SPOOL_PREFIX);
    if (strncmp(name, SPOOL_PREFIX, n) != 0)
        return 0;
    const char *p = name + n;
    long pid = 0;
    for (; *p >= '0' && *p <= '9' && pid < 1L << 30; p++)
        pid = pid * 10 + (*p - '0');
    if (p == name + n || *p != '-' || strlen(p + 1) != 6)
        return 0;
    return (pid_t)pid;
}

/* Unlink the spool files in dir whose pid matches: pid itself, or (pid
 * 0) any dead one. unlinkat on the name, never following a link. */
static int sweep(const char *dir, pid_t pid)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    int removed = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        pid_t owner = spool_pid(e->d_name);
        if (owner <= 0 || (pid ? owner != pid : !hp_pid_dead(owner)))
            continue;
        if (unlinkat(dirfd(d), e->d_name, 0) == 0)
            removed++;
        else if (errno != ENOENT)
            hp_log_error("upload directory %s: cannot remove %s: %s", dir,
                         e->d_name, strerror(errno));
    }
    closedir(d);
    return removed;
}

int hp_upload_sweep_pid(const char *dir, pid_t pid)
{
    int n = pid > 0 ? sweep(dir, pid) : 0;
    if (n)
        hp_log_info("removed %d upload file(s) of process %d from %s", n,
                    (int)pid, dir);
    return n;
}

int hp_upload_sweep_dead(const char *dir)
{
    int n = sweep(dir, 0);
    if (n)
        hp_log_info("removed %d upload file(s) of ended processes from %s", n,
                    dir);
    return n;
}
