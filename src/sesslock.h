/*
 * sesslock.h - the per-session lock of sessions stored in SQLite, as
 * session.c uses it (PostgreSQL sessions are locked by their row, in the
 * request's transaction: session.c), and the in-process stage both engines
 * pass first. docs/pages.md, "One request of a
 * session at a time".
 */
#ifndef HP_SESSLOCK_H
#define HP_SESSLOCK_H

#include "hp.h"

#include <stdint.h>

/* The lock file of the SQLite database file db_file:
 * "<db_file>-session-locks" (malloc'd). It holds no data; it is created
 * (mode 0600) on first use and may be deleted while the server is down. */
char *hp_sesslock_path(const char *db_file);

/* Lock the session whose id hashes to hash_hex (64 hex digits, SHA-256)
 * in lock_path, waiting up to timeout_ms milliseconds for another request
 * (thread or process) that holds it. 0 with *fd_out the descriptor whose
 * close releases it; 1 when the wait timed out; -1 with errno when the
 * file cannot be opened or locked. */
int hp_sesslock_acquire(const char *lock_path, const char *hash_hex,
                        int timeout_ms, int *fd_out);
/* Release a lock hp_sesslock_acquire took (fd < 0: nothing). */
void hp_sesslock_release(int fd);

/* The in-process stage, before the store's lock (both engines): wait until
 * no other request of this process holds the session (hash_hex, as above)
 * or until hp_now() reaches until. 0: held, release it with
 * hp_sesslock_local_release; 1: timed out. */
int hp_sesslock_local_acquire(const char *hash_hex, double until);
void hp_sesslock_local_release(const char *hash_hex);

/* The byte of the lock file that is the session's lock: the first 60 bits
 * of hash_hex (fewer digits: fewer bits; non-hex digits count as 0). */
uint64_t hp_sesslock__offset(const char *hash_hex);

#endif
