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

#endif
