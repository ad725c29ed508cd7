/*
 * liveness.h - the census of this process's own descriptors (liveness.c):
 * is the process still able to serve? server.c is its only user.
 */
#ifndef HP_LIVENESS_H
#define HP_LIVENESS_H

#include "hp.h"

/*
 * Record what this process's infrastructure descriptors name (st_dev and
 * st_ino): standard error, the n descriptors in extra[] (the listening
 * socket, the access log), and every epoll, eventfd, inotify, timerfd and
 * signalfd descriptor open now (libmicrohttpd's event loops, the
 * listener's wake-up, the watcher). Call it once, when serving starts and
 * before any page code ran. A duplicate of standard error is kept far
 * above them, to restore for last words. Returns the descriptors recorded.
 */
int hp_liveness_record(const int *extra, size_t n);
/*
 * Around a deliberate change of recorded descriptors (SIGUSR1 reopening
 * the logs): checks wait meanwhile; end forgets the descriptor `before`
 * (the old log's, -1 for none), then re-reads standard error and records
 * `after` (the new log's, -1 for none).
 */
void hp_liveness_begin_change(void);
void hp_liveness_end_change(int before, int after);
/*
 * 0 if every recorded descriptor still names what it named; -1 if one
 * was closed or now names another file, with why set to a sentence such
 * as "descriptor 7 (anon_inode:[eventpoll]) was closed".
 */
int hp_liveness_check(char *why, size_t n);
/* If standard error was closed or replaced, put the original back (from
 * the duplicate) so that a last log line lands where the others went. */
void hp_liveness_restore_stderr(void);
/*
 * Descriptors this process has open: exact where the kernel counts them
 * for us (Linux 6.2 and later, one stat()), else read from /proc/self/fd
 * and counted up to `stop` at most (the cost is a bound); `stop` when no
 * descriptor is left to read the directory with; -1 if unknown.
 */
long hp_liveness_fd_count(long stop);
/* The same from the directory read alone (older kernels; for tests). */
long hp_liveness_fd_count_dir(long stop);
/*
 * For the log line about descriptors that ran out (once, not cheap: it
 * reads /proc/self/fd): what the highest descriptors name, the most
 * recently opened as a rule: the name most of the 64 highest have ("64
 * of the 64 highest descriptors (up to 19999) name /dev/null"); "" if
 * unknown. Not thread-safe (a static table): the accept thread's.
 */
void hp_liveness_fd_sample(char *out, size_t n);

#endif
