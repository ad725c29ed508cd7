/*
 * watch.c - noticing changes under the document root.
 *
 * Owns: the inotify instance and its watch descriptors (one per directory),
 * the settle window that groups a burst of events, starting the eager
 * recompile of each window as a batch (hp_cache_start_batch: it runs on a
 * thread of its own, so a slow compile never delays the next window), and
 * the --revalidate stat-based fallback.
 * May not touch: versions, HTTP, or the compiler. It tells the cache which
 * paths changed (hp_cache_touch), which page sources were written
 * completely (hp_cache_prefetch: their compile starts on the first event,
 * the publish waits for the window), and the resolver that names may have
 * moved (hp_resolver_invalidate); they decide what that means.
 *
 * Only completed writes count: IN_CLOSE_WRITE (an editor writing in place,
 * cp), IN_MOVED_TO (write-temp-then-rename), IN_DELETE/IN_MOVED_FROM and
 * IN_ATTRIB (touch, chmod). IN_MODIFY only marks a source file (.c, .h,
 * .tpl, .so) as being written until its IN_CLOSE_WRITE: a settle window
 * that ends while one is still being written waits for it (at most
 * HP_WRITE_WAIT_S), so a page or template saved together with another one
 * that is still half-written is not read half-way. The compiler also reads
 * the source only while its identity holds still, and retries a build when
 * a header changed under it.
 *
 * In dev mode a static file's change reloads the browser (devloop.c), but
 * only once it has settled: editors and tools save through files of their
 * own beside the target (sed -i's sedXXXXXX, vim's 4913, NAME~ and
 * .NAME.swp, Emacs's #NAME#), so one save is a burst of events on several
 * names. A change counts only for a name that can be served
 * (hp_rel_public), and only if the file is still there, a regular file,
 * when HP_STATIC_SETTLE_S (or the settle window, when longer) has passed
 * without another such event: a temporary file renamed or removed within
 * the burst sends nothing, and the target sends one event.
 */
#include "hp.h"

#include "devloop.h"

#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#define WATCH_MASK                                                             \
    (IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE |    \
     IN_ATTRIB | IN_DELETE_SELF | IN_ONLYDIR | IN_MODIFY)

/* How long a settle window waits for source files still being written
 * (opened, written to, not yet closed) before it goes ahead anyway. */
#define HP_WRITE_WAIT_S 2.0

/* The quiet a static file's change waits for before it reloads the
 * browser, at least. It only has to cover the steps of one save (a
 * temporary file closed, then renamed; a file renamed away, then written
 * anew), which follow each other within microseconds unless the editor
 * is descheduled; 50 ms is short beside the browser's reload itself. */
#define HP_STATIC_SETTLE_S 0.05

/* A static file changed, waiting for its burst to settle (dev mode). */
struct static_change {
    char *path;
    bool writing; /* created or modified again since its last event */
};

struct hp_watch {
    const struct hp_config *cfg;
    char *root;
    hp_cache *cache;
    hp_resolver *res;
    int ifd, stopfd;
    int parent_wd;   /* the root's parent, to see the root swapped */
    char *root_name; /* the root's last component                  */
    bool root_lost;  /* the root leads to no directory: re-checked */
    double root_check; /* ... next at (hp_now) */
    char **dirs; /* indexed by watch descriptor */
    size_t ndirs;
    char **pending;
    size_t npending;
    char **writing; /* source files modified and not yet closed */
    double *written_at; /* ... when last modified (stale ones expire) */
    size_t nwriting;
    struct static_change *statics; /* dev mode: see the top */
    size_t nstatics;
    bool static_hit; /* an event for one of them in this read */
    pthread_t thread;
};

static void add_dir(struct hp_watch *w, const char *path);

static void remember(struct hp_watch *w, int wd, const char *path)
{
    if ((size_t)wd >= w->ndirs) {
        size_t n = (size_t)wd + 64;
        w->dirs = hp_xrealloc(w->dirs, n * sizeof *w->dirs);
        memset(w->dirs + w->ndirs, 0, (n - w->ndirs) * sizeof *w->dirs);
        w->ndirs = n;
    }
    free(w->dirs[wd]);
    w->dirs[wd] = hp_xstrdup(path);
}

/* Watch a directory and, recursively, every subdirectory not starting with
 * '.' (a .git or .cache tree is never published and can be huge). */
static void add_dir(struct hp_watch *w, const char *path)
{
    int wd = inotify_add_watch(w->ifd, path, WATCH_MASK);
    if (wd < 0) {
        /* Only running out of watches is helped by more of them; a
         * directory that went (or is not one) between its event and
         * here is just gone. */
        if (errno == ENOSPC)
            hp_log_error("inotify_add_watch %s: %s (raise "
                         "fs.inotify.max_user_watches or use --revalidate)",
                         path, strerror(errno));
        else if (errno != ENOENT && errno != ENOTDIR)
            hp_log_error("inotify_add_watch %s: %s: changes under it are "
                         "not seen",
                         path, strerror(errno));
        return;
    }
    remember(w, wd, path);
    DIR *d = opendir(path);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.' || de->d_type != DT_DIR)
            continue;
        char *sub = hp_xasprintf("%s/%s", path, de->d_name);
        add_dir(w, sub);
        free(sub);
    }
    closedir(d);
}

static void pend(struct hp_watch *w, const char *path)
{
    for (size_t i = 0; i < w->npending; i++)
        if (strcmp(w->pending[i], path) == 0)
            return;
    w->pending = hp_xrealloc(w->pending, (w->npending + 1) * sizeof *w->pending);
    w->pending[w->npending++] = hp_xstrdup(path);
}

/* The settle window is over: reload what changed, off the request path. */
static void flush(struct hp_watch *w)
{
    for (size_t i = 0; i < w->npending; i++)
        free(w->pending[i]);
    w->npending = 0;
    hp_tplcache_publish(); /* templates saved together change together */
    hp_cache_start_batch(w->cache);
}

/*
 * The root (a symlink) now points elsewhere: a deploy. Watch the new tree
 * and treat every module as changed, so the whole release goes live as one
 * batch while requests in flight finish on the old one.
 */
/* How often a root that leads to no directory is looked at again: its
 * target may be created in place (no event on the root's parent). */
#define ROOT_RECHECK_S 1.0

/* Whether the root now leads to a directory; if not, say so, naming
 * where it points (a deploy that swapped its symlink before the release
 * was in place, or to a mistyped one). */
static bool root_target_ok(struct hp_watch *w, bool quiet)
{
    struct stat st;
    int err = stat(w->root, &st) < 0 ? errno
              : S_ISDIR(st.st_mode)  ? 0
                                     : ENOTDIR;
    if (!err)
        return true;
    if (quiet)
        return false;
    char target[PATH_MAX];
    ssize_t n = readlink(w->root, target, sizeof target - 1);
    if (n < 0)
        snprintf(target, sizeof target, "(%s)", strerror(errno));
    else
        target[n] = '\0';
    hp_log_error("the document root %s now points at %s, which %s: every "
                 "request is answered 404 until %s leads to a directory "
                 "again",
                 w->root, target,
                 err == ENOENT    ? "does not exist"
                 : err == ENOTDIR ? "is not a directory"
                                  : strerror(err),
                 w->root);
    return false;
}

static void root_swapped(struct hp_watch *w)
{
    for (size_t i = 0; i < w->ndirs; i++) {
        if (w->dirs[i]) {
            inotify_rm_watch(w->ifd, (int)i);
            free(w->dirs[i]);
            w->dirs[i] = NULL;
        }
    }
    bool was_lost = w->root_lost;
    w->root_lost = !root_target_ok(w, false);
    w->root_check = hp_now() + ROOT_RECHECK_S;
    if (!w->root_lost) {
        add_dir(w, w->root);
        hp_log_info("%s %s: reloading every module as one batch", w->root,
                    was_lost ? "leads to a directory again"
                             : "now points elsewhere");
    }
    hp_resolver_invalidate(w->res);
    hp_cache_apps_changed(w->cache);
    hp_cache_touch_all(w->cache);
    hp_tplcache_touch_all();
    pend(w, w->root);
}

static bool is_source_name(const char *name)
{
    static const char *const ext[] = {".c", ".h", ".tpl", ".so"};
    size_t n = strlen(name);
    for (size_t i = 0; i < sizeof ext / sizeof *ext; i++) {
        size_t m = strlen(ext[i]);
        if (n > m && strcmp(name + n - m, ext[i]) == 0)
            return true;
    }
    return false;
}

static void forget_writing(struct hp_watch *w, size_t i)
{
    free(w->writing[i]);
    w->nwriting--;
    w->writing[i] = w->writing[w->nwriting];
    w->written_at[i] = w->written_at[w->nwriting];
}

/* Track source files between their first write and their close. */
static void track_writing(struct hp_watch *w, const char *path, uint32_t mask)
{
    size_t i = 0;
    while (i < w->nwriting && strcmp(w->writing[i], path) != 0)
        i++;
    bool open_for_write = (mask & IN_MODIFY) && !(mask & IN_CLOSE_WRITE);
    if (open_for_write && i == w->nwriting) {
        w->writing = hp_xrealloc(w->writing,
                                 (w->nwriting + 1) * sizeof *w->writing);
        w->written_at = hp_xrealloc(
            w->written_at, (w->nwriting + 1) * sizeof *w->written_at);
        w->writing[w->nwriting++] = hp_xstrdup(path);
    }
    if (open_for_write)
        w->written_at[i] = hp_now();
    else if (i < w->nwriting &&
             (mask & (IN_CLOSE_WRITE | IN_DELETE | IN_MOVED_FROM)))
        forget_writing(w, i);
}

/* Is a source file being written now? Entries whose close never came
 * (events lost, a writer that keeps its file open) expire. */
static bool writes_in_progress(struct hp_watch *w, double now)
{
    for (size_t i = 0; i < w->nwriting;) {
        if (now - w->written_at[i] < HP_WRITE_WAIT_S)
            return true;
        forget_writing(w, i);
    }
    return false;
}

static struct static_change *static_find(struct hp_watch *w, const char *path)
{
    for (size_t i = 0; i < w->nstatics; i++)
        if (strcmp(w->statics[i].path, path) == 0)
            return &w->statics[i];
    return NULL;
}

/* No segment of rel is empty or starts with '.' or '_'. */
static bool segments_public(const char *rel)
{
    for (const char *s = rel;; s++) {
        if (*s == '\0' || *s == '/' || *s == '.' || *s == '_')
            return false;
        s += strcspn(s, "/");
        if (*s == '\0')
            return true;
    }
}

/*
 * A completed write, rename or removal of a file that is not a module or
 * template the cache knows: in dev mode, remember it if its name can be
 * served (hp_rel_public: names starting with '.' or '_' anywhere in the
 * path, editors' backups and swap files never can; vim's directory probe,
 * "4913" and up in steps of 123, is removed at once and would be dropped
 * anyway). A source name (a page not requested since the start, which a
 * tab open from an earlier run may still show) by the segments only.
 */
static void static_changed(struct hp_watch *w, const char *path,
                           const char *name)
{
    size_t n = strlen(w->root);
    if (strncmp(path, w->root, n) != 0 || path[n] != '/' ||
        !(is_source_name(name) ? segments_public(path + n + 1)
                               : hp_rel_public(path + n + 1)) ||
        !hp_devloop_on())
        return;
    char *end;
    unsigned long probe = strtoul(name, &end, 10);
    if (*name >= '0' && *name <= '9' && !*end && probe >= 4913 &&
        (probe - 4913) % 123 == 0)
        return;
    struct static_change *c = static_find(w, path);
    if (!c) {
        w->statics =
            hp_xrealloc(w->statics, (w->nstatics + 1) * sizeof *w->statics);
        c = &w->statics[w->nstatics++];
        c->path = hp_xstrdup(path);
    }
    c->writing = false;
    w->static_hit = true;
}

/* A file waiting to settle was created or written to again (vim renames
 * it away, then writes it anew): its close ends the wait. */
static void static_writing(struct hp_watch *w, const char *path)
{
    struct static_change *c = static_find(w, path);
    if (c) {
        c->writing = true;
        w->static_hit = true;
    }
}

static bool static_writes_in_progress(struct hp_watch *w)
{
    for (size_t i = 0; i < w->nstatics; i++)
        if (w->statics[i].writing)
            return true;
    return false;
}

/* The static burst is over: one reload event for each file that is still
 * there (sed's temporary file was renamed away, vim's backup removed). */
static void static_flush(struct hp_watch *w)
{
    for (size_t i = 0; i < w->nstatics; i++) {
        struct stat st;
        if (lstat(w->statics[i].path, &st) == 0 && S_ISREG(st.st_mode))
            hp_devloop_changed(w->statics[i].path, NULL);
        free(w->statics[i].path);
    }
    w->nstatics = 0;
}

static void handle_event(struct hp_watch *w, const struct inotify_event *ev)
{
    if (ev->wd == w->parent_wd && w->parent_wd >= 0) {
        if (ev->len && strcmp(ev->name, w->root_name) == 0 &&
            (ev->mask & (IN_CREATE | IN_MOVED_TO)))
            root_swapped(w);
        return;
    }
    if (ev->mask & IN_Q_OVERFLOW) {
        /* Events were lost: assume everything changed. */
        hp_resolver_invalidate(w->res);
        hp_cache_apps_changed(w->cache);
        hp_cache_touch_all(w->cache);
        hp_tplcache_touch_all();
        pend(w, w->root);
        return;
    }
    if (ev->wd < 0 || (size_t)ev->wd >= w->ndirs || !w->dirs[ev->wd])
        return;
    if (ev->mask & (IN_IGNORED | IN_DELETE_SELF)) {
        hp_resolver_invalidate(w->res);
        return;
    }
    if (!ev->len)
        return;
    char *path = hp_xasprintf("%s/%s", w->dirs[ev->wd], ev->name);
    if (!(ev->mask & IN_ISDIR) && is_source_name(ev->name))
        track_writing(w, path, ev->mask);
    if (!(ev->mask & IN_ISDIR) && (ev->mask & (IN_CREATE | IN_MODIFY)))
        static_writing(w, path);
    if (ev->mask & (IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO)) {
        hp_resolver_invalidate(w->res);
        /* An application module, or a directory that may hold one, came
         * or went: pages recompute their chains. */
        if ((ev->mask & IN_ISDIR) || strcmp(ev->name, "_app.c") == 0 ||
            strcmp(ev->name, "_app.so") == 0)
            hp_cache_apps_changed(w->cache);
    }
    if ((ev->mask & IN_ISDIR) && (ev->mask & (IN_CREATE | IN_MOVED_TO)) &&
        ev->name[0] != '.') {
        add_dir(w, path);
        /* Files may have landed in it before the watch existed: and then
         * no event of theirs will start the batch, so this one does. */
        hp_cache_touch_all(w->cache);
        hp_tplcache_touch_all();
        hp_tplcache_publish();
        pend(w, path);
    }
    if (!(ev->mask & IN_ISDIR) &&
        (ev->mask & (IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM |
                     IN_DELETE | IN_ATTRIB))) {
        /* Mark now, so requests from here on revalidate; compile after the
         * burst settles. */
        int n = hp_cache_touch(w->cache, path);
        if (n > 0 && (ev->mask & (IN_CLOSE_WRITE | IN_MOVED_TO)))
            hp_cache_prefetch(w->cache, path); /* compiles during the wait */
        if (hp_tplcache_touch(path) + n > 0)
            pend(w, path);
        else if (!(ev->mask & IN_ATTRIB))
            static_changed(w, path, ev->name); /* live now; reload soon */
    }
    free(path);
}

/* A settle window: a burst of events ends after `quiet` seconds without
 * another, but at most `max` after its first (a file rewritten faster
 * than the settle time must still go live). first == 0: no burst. */
struct settle {
    double quiet, max, first, deadline;
};

static struct settle settle_window(double quiet)
{
    return (struct settle){.quiet = quiet,
                           .max = quiet * 5 < 0.5 ? 0.5 : quiet * 5};
}

/* Another event of the burst, now. */
static void settle_event(struct settle *s)
{
    double t = hp_now();
    if (!s->first)
        s->first = t;
    s->deadline = t + s->quiet;
    if (s->deadline > s->first + s->max)
        s->deadline = s->first + s->max;
}

static void *watch_main(void *arg)
{
    struct hp_watch *w = arg;
    char buf[64 * 1024] __attribute__((aligned(__alignof__(struct inotify_event))));
    double settle = w->cfg->settle_ms / 1000.0, next_reval = 0;
    /* pages' and templates' bursts; static files' (dev mode), apart */
    struct settle pg = settle_window(settle);
    struct settle st = settle_window(
        settle > HP_STATIC_SETTLE_S ? settle : HP_STATIC_SETTLE_S);
    double reval = w->cfg->revalidate;

    if (w->ifd < 0 && reval <= 0)
        reval = 1.0;
    if (reval > 0)
        next_reval = hp_now() + reval;
    for (;;) {
        struct pollfd pfd[2] = {{.fd = w->stopfd, .events = POLLIN},
                                {.fd = w->ifd, .events = POLLIN}};
        double now = hp_now(), until = 1e9;
        if (w->npending)
            until = pg.deadline;
        if (w->nstatics && st.deadline < until)
            until = st.deadline;
        if (reval > 0 && next_reval < until)
            until = next_reval;
        if (w->root_lost && w->root_check < until)
            until = w->root_check;
        int timeout = until >= 1e9 ? -1 : (int)((until - now) * 1000) + 1;
        if (timeout < -1)
            timeout = 0;
        int n = poll(pfd, w->ifd >= 0 ? 2 : 1, timeout);
        if (n < 0 && errno != EINTR)
            break;
        if (pfd[0].revents)
            break;
        if (n > 0 && (pfd[1].revents & POLLIN)) {
            ssize_t len = read(w->ifd, buf, sizeof buf);
            for (char *p = buf; len > 0 && p < buf + len;) {
                const struct inotify_event *ev = (const void *)p;
                handle_event(w, ev);
                p += sizeof *ev + ev->len;
            }
            if (w->npending)
                settle_event(&pg);
            if (w->static_hit && w->nstatics)
                settle_event(&st);
            w->static_hit = false;
        }
        now = hp_now();
        if (w->npending && now >= pg.deadline &&
            now < pg.first + HP_WRITE_WAIT_S && writes_in_progress(w, now)) {
            /* A file of this burst is still being written: its close
             * (IN_CLOSE_WRITE) ends the wait. */
            pg.deadline = now + (settle > 0.01 ? settle : 0.01);
        } else if (w->npending && now >= pg.deadline) {
            flush(w);
            pg.first = 0;
        }
        if (w->nstatics && now >= st.deadline) {
            if (now < st.first + HP_WRITE_WAIT_S &&
                static_writes_in_progress(w))
                st.deadline = now + st.quiet; /* its close ends the wait */
            else {
                static_flush(w);
                st.first = 0;
            }
        }
        if (w->root_lost && now >= w->root_check) {
            if (root_target_ok(w, true))
                root_swapped(w); /* its target was created */
            else
                w->root_check = now + ROOT_RECHECK_S;
        }
        if (reval > 0 && now >= next_reval) {
            hp_resolver_invalidate(w->res);
            hp_tplcache_revalidate();
            if (hp_cache_revalidate(w->cache) > 0)
                hp_cache_start_batch(w->cache);
            next_reval = hp_now() + reval;
        }
    }
    return NULL;
}

hp_watch *hp_watch_start(const struct hp_config *cfg, const char *root_canon,
                         hp_cache *cache, hp_resolver *res)
{
    struct hp_watch *w = hp_xcalloc(1, sizeof *w);
    w->cfg = cfg;
    w->root = hp_xstrdup(root_canon);
    w->cache = cache;
    w->res = res;
    w->stopfd = eventfd(0, EFD_CLOEXEC);
    w->ifd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
    if (w->ifd < 0)
        hp_log_error("inotify unavailable (%s): falling back to stat every "
                     "%.1f s", strerror(errno),
                     cfg->revalidate > 0 ? cfg->revalidate : 1.0);
    else
        add_dir(w, root_canon);
    w->parent_wd = -1;
    const char *slash = strrchr(root_canon, '/');
    w->root_name = hp_xstrdup(slash ? slash + 1 : root_canon);
    if (w->ifd >= 0 && slash && slash != root_canon) {
        char *parent = strndup(root_canon, (size_t)(slash - root_canon));
        w->parent_wd = inotify_add_watch(w->ifd, parent,
                                         IN_CREATE | IN_MOVED_TO | IN_ONLYDIR);
        free(parent);
    }
    if (pthread_create(&w->thread, NULL, watch_main, w) != 0) {
        hp_log_error("cannot start the watcher thread");
        hp_watch_stop(w);
        return NULL;
    }
    return w;
}

void hp_watch_stop(hp_watch *w)
{
    if (!w)
        return;
    if (w->thread) {
        uint64_t one = 1;
        if (write(w->stopfd, &one, sizeof one) < 0)
            hp_log_error("cannot stop the watcher: %s", strerror(errno));
        pthread_join(w->thread, NULL);
    }
    if (w->ifd >= 0)
        close(w->ifd);
    close(w->stopfd);
    for (size_t i = 0; i < w->ndirs; i++)
        free(w->dirs[i]);
    for (size_t i = 0; i < w->npending; i++)
        free(w->pending[i]);
    free(w->pending);
    for (size_t i = 0; i < w->nwriting; i++)
        free(w->writing[i]);
    free(w->writing);
    free(w->written_at);
    for (size_t i = 0; i < w->nstatics; i++)
        free(w->statics[i].path);
    free(w->statics);
    free(w->dirs);
    free(w->root_name);
    free(w->root);
    free(w);
}
