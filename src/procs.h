/*
 * procs.h - the process supervisor (master.c) as the rest of the server
 * sees it: what main.c starts, and the few hooks server.c calls in a worker
 * process. docs/operations.md describes the process model.
 *
 * In single-process mode (--workers 0) every hook below is a cheap no-op
 * (one load of a global), so that mode behaves exactly as before.
 */
#ifndef HP_PROCS_H
#define HP_PROCS_H

#include "hp.h"

/* `hotpub serve`: the supervising parent and its workers, or (--workers 0)
 * hp_serve in this process. Returns the exit status. On SIGHUP the parent
 * calls reload to read the settings again (0, or -1 after printing why)
 * and starts the new workers with them. */
int hp_master_run(struct hp_config *cfg, int (*reload)(struct hp_config *));

/* True in a worker process (and nowhere else). */
bool hp_procs_active(void);
/* The listening socket the parent bound, or -1: hp_serve binds itself. */
int hp_procs_listen_fd(void);
/* How many event-loop threads this process should run, given the CPUs:
 * the CPUs are shared among the workers. */
unsigned hp_procs_io_threads(unsigned ncpu);
/* hp_serve is accepting connections (sd_notify, the parent's readiness). */
void hp_procs_ready(void);

/*
 * Before a page runs: is the pinned page version quarantined (it crashed a
 * worker twice)? Returns 0 to run it, possibly after replacing ps->page
 * with the last good version of that module; or -1 with *html set to a
 * malloc'd explanation, to be answered with a 500.
 */
int hp_procs_vet(struct hp_pinset *ps, bool dev, char **html);
/* Production mode: the page at `path` failed to build and this worker has
 * no earlier version of it (it started after the broken edit): pin the
 * last version another worker ran successfully as ps->page. 0 if one was
 * found, else -1. */
int hp_procs_rescue(struct hp_pinset *ps, const char *path);

/* Around a handler: record the running request (page, handler, version,
 * object) where the parent can read it if the worker dies, and where the
 * handler-timeout watchdog sees it. fd is the connection's socket, or -1.
 * Returns a token for hp_procs_run_end. */
int hp_procs_run_begin(const char *path, const char *handler,
                       const hp_version *v, int fd);
/* The handler returned. false: it ran past --handler-timeout and the
 * watchdog has already answered 504 on the socket and shut it down. */
bool hp_procs_run_end(int token);
/* Handlers of this process past the timeout that have not returned. */
long hp_procs_stuck(void);

/* SIGUSR1: reopen --error-log (the access log is server.c's). */
void hp_procs_reopen_logs(void);
/* ,"processes":{...} for status.json (nothing in single-process mode). */
void hp_procs_status_json(struct hp_buf *b);
/* Before the module cache is freed: drop the fallback versions. */
void hp_procs_teardown(void);

#endif
