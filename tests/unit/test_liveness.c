/*
 * test_liveness.c - the census of descriptors (liveness.c): what it
 * records, and that a descriptor closed, or closed and reused for another
 * file, is reported; a deliberate change (a log reopen) is not.
 */
#define _GNU_SOURCE 1
#include "hp.h"
#include "liveness.h"
#include "t.h"

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

static void test_intact_passes(void)
{
    int ep = epoll_create1(EPOLL_CLOEXEC), ev = eventfd(0, EFD_CLOEXEC);
    int file = open("/dev/null", O_RDONLY | O_CLOEXEC);
    char why[160] = "";
    CHECK(hp_liveness_record(&file, 1) >= 4); /* stderr, file, ep, ev */
    CHECK(hp_liveness_check(why, sizeof why) == 0);
    CHECK_STR(why, "");
    /* Files opened later are not watched. */
    int later = open("/dev/null", O_RDONLY | O_CLOEXEC);
    close(later);
    CHECK(hp_liveness_check(why, sizeof why) == 0);
    close(ep);
    close(ev);
    close(file);
}

static void test_closed_is_reported(void)
{
    int ep = epoll_create1(EPOLL_CLOEXEC);
    char why[160] = "", want[160];
    hp_liveness_record(NULL, 0);
    close(ep);
    CHECK(hp_liveness_check(why, sizeof why) < 0);
    snprintf(want, sizeof want,
             "descriptor %d (anon_inode:[eventpoll]) was closed", ep);
    CHECK_STR(why, want);
}

static void test_reused_is_reported(void)
{
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    char why[160] = "";
    hp_liveness_record(&fd, 1);
    int other = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
    dup2(other, fd); /* fd now names another file */
    close(other);
    CHECK(hp_liveness_check(why, sizeof why) < 0);
    CHECK(strstr(why, "now names another file") != NULL);
    close(fd);
}

static void test_log_reopen_is_not_a_loss(void)
{
    char why[160] = "";
    int log = open("/dev/null", O_WRONLY | O_CLOEXEC);
    hp_liveness_record(&log, 1);
    /* As the access log reopens: the new file first, then the old one
     * closed; and standard error replaced in place (dup2). */
    hp_liveness_begin_change();
    int again = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
    close(log);
    int keep = dup(STDERR_FILENO);
    int other = open("/dev/null", O_WRONLY | O_CLOEXEC);
    dup2(other, STDERR_FILENO);
    close(other);
    hp_liveness_end_change(log, again);
    CHECK(hp_liveness_check(why, sizeof why) == 0);
    CHECK_STR(why, "");
    close(again); /* the new log is watched */
    CHECK(hp_liveness_check(why, sizeof why) < 0);
    dup2(keep, STDERR_FILENO);
    close(keep);
}

static void test_stderr_restored(void)
{
    int keep = dup(STDERR_FILENO);
    struct stat a, b;
    fstat(STDERR_FILENO, &a);
    hp_liveness_record(NULL, 0);
    int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
    dup2(null, STDERR_FILENO); /* a page replaced standard error */
    close(null);
    char why[160];
    CHECK(hp_liveness_check(why, sizeof why) < 0);
    hp_liveness_restore_stderr();
    fstat(STDERR_FILENO, &b);
    CHECK(a.st_dev == b.st_dev && a.st_ino == b.st_ino);
    CHECK(hp_liveness_check(why, sizeof why) == 0);
    dup2(keep, STDERR_FILENO);
    close(keep);
}

/* The count of open descriptors follows opens and closes; the directory
 * read (older kernels) stops at the bound. */
static void test_fd_count(void)
{
    enum { N = 40 };
    int fds[N];
    long before = hp_liveness_fd_count(1L << 20);
    CHECK(before >= 3);
    for (int i = 0; i < N; i++)
        fds[i] = open("/dev/null", O_RDONLY | O_CLOEXEC);
    CHECK(hp_liveness_fd_count(1L << 20) == before + N);
    CHECK(hp_liveness_fd_count(before) >= before); /* stops, or exact */
    /* Older kernels' way: the same count, or the bound. */
    CHECK(hp_liveness_fd_count_dir(1L << 20) == before + N);
    CHECK(hp_liveness_fd_count_dir(before) == before);
    char sample[200];
    hp_liveness_fd_sample(sample, sizeof sample);
    CHECK(strstr(sample, "name /dev/null") != NULL);
    for (int i = 0; i < N; i++)
        close(fds[i]);
    CHECK(hp_liveness_fd_count(1L << 20) == before);
}

int main(int argc, char **argv)
{
    T_INIT(argc, argv);
    T_RUN(test_intact_passes);
    T_RUN(test_closed_is_reported);
    T_RUN(test_reused_is_reported);
    T_RUN(test_log_reopen_is_not_a_loss);
    T_RUN(test_stderr_restored);
    T_RUN(test_fd_count);
    T_DONE();
}
