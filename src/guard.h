/*
 * guard.h - the worker-side guard (guard.c) as the supervisor (master.c)
 * sees it. The guard owns the shared-memory area: one slot per worker
 * process, each with the records of the handlers it is running, and the
 * tables of quarantined and of known-good module versions. The supervisor
 * drives a slot's life (start, drain, free) and, after a worker died,
 * asks the guard which request did it. docs/operations.md is the manual.
 */
#ifndef HP_GUARD_H
#define HP_GUARD_H

#include "hp.h"
#include "server.h"

#include <sys/types.h>

/*
 * A slot's state, shared by the parent and its worker (status.json shows
 * it):
 *
 *   FREE --start (parent)--> STARTING --ready (worker)--> READY
 *   STARTING, READY --drain (parent)--> DRAINING
 *   any --free (parent, after reaping or a failed fork)--> FREE
 */
enum hp_slot_state {
    HP_SLOT_FREE = 0,
    HP_SLOT_STARTING,
    HP_SLOT_READY,
    HP_SLOT_DRAINING
};

/* Before the first fork: map the shared area for nslots worker slots of
 * nrecs handler records each; `workers` is the number wanted (status.json,
 * the back-off). 0, or -1 after logging why. */
int hp_guard_map(int nslots, int nrecs, int workers);
/*
 * The quarantine and good tables on disk, <cache-dir>/quarantine-<hash of
 * the document root> (docs/operations.md#quarantine): the parent reads them
 * into the shared area after hp_guard_map, before the first fork (a file
 * that does not parse is ignored with a warning), and writes them, off any
 * request's path, when they changed: at most once a second on its turn,
 * and at the end (final). Not in dev mode, which quarantines nothing.
 */
void hp_guard_tables_load(const char *cache_dir, const char *docroot);
void hp_guard_tables_save(const char *cache_dir, const char *docroot,
                          bool final);
/* Handler records per slot (threads a worker can have watched). */
int hp_guard_nrecs(void);
/* The number of workers wanted and the current generation, for status.json
 * (SIGHUP changes both). */
void hp_guard_set_workers(int n);
void hp_guard_set_generation(unsigned gen);
/* A worker was started to replace one that died or was retired. */
void hp_guard_count_restart(void);

enum hp_slot_state hp_guard_slot_state(int slot);
/* FREE -> STARTING for a worker of generation gen: its records go idle. */
void hp_guard_slot_start(int slot, unsigned gen);
void hp_guard_slot_set_pid(int slot, pid_t pid);
/* -> DRAINING: SIGTERM is on its way. */
void hp_guard_slot_drain(int slot);
/* -> FREE: the worker was reaped (or never forked). */
void hp_guard_slot_free(int slot);
/* The worker's watchdog gave up on a handler, or it asked to be
 * recycled: replace the worker. */
bool hp_guard_slot_retire(int slot);
/* The parent is replacing the retired worker of `slot`: count why
 * (status.json's restart_causes). */
void hp_guard_count_retired(int slot);
/* Seconds since the worker of a READY slot last beat (0 for other
 * states): the accept thread beats once a second while the worker's
 * descriptors are intact (server.h's heartbeat). */
double hp_guard_slot_silence(int slot);
/* The parent kills the worker of `slot` for being silent that long: the
 * autopsy then reports (and counts) that, not a crash. */
void hp_guard_slot_silenced(int slot, double seconds);

/*
 * In a new worker process, before hp_serve: this process is the worker of
 * `slot`; install the fatal-signal and exit hooks that record the crashing
 * handler, start the --handler-timeout watchdog thread (which writes a
 * fixed 504 onto a stuck request's socket), and fill the guard's members
 * of *hooks (vet, rescue, run_begin, run_end, stuck, status_json,
 * teardown, ready, heartbeat, lost).
 */
void hp_guard_enter(int slot, struct hp_config *cfg,
                    struct hp_server_hooks *hooks);

/*
 * The single process of --workers 0 in dev mode: map a one-slot shared area
 * for this process's request records, catch fatal signals and fill the run
 * hooks (run_begin, run_end, run_alive) of *hooks, so that a page that
 * crashes answers the browser with the crash page (crashpage.c) before the
 * process dies of the signal. Nothing else of the guard: no watchdog,
 * quarantine or recycling, since no parent would replace the process.
 */
void hp_guard_enter_alone(struct hp_config *cfg, struct hp_server_hooks *hooks);

/*
 * In the parent, after the worker of `slot` (pid, generation gen) died of
 * signal sig (0 for an exit with status code): log which request it was
 * running (or that it is not known), and the requests lost with it;
 * count the crash; strike the culprit's version (the second strike
 * quarantines it, unless its handler has completed a run: such crashes
 * depend on the request), except in dev mode, which quarantines nothing. `how`
 * describes the death for the log. true when a running page's request was
 * to blame (the parent's back-off does not count such deaths: a page that
 * crashes is quarantined, or in dev mode is being fixed, and its
 * neighbours need a worker now).
 */
bool hp_guard_autopsy(int slot, pid_t pid, unsigned gen, const char *how,
                      int sig, int code, bool dev);

#endif
