/*
 * master.h - the process supervisor (master.c) as main.c sees it.
 * docs/operations.md describes the process model.
 */
#ifndef HP_MASTER_H
#define HP_MASTER_H

#include "hp.h"

/* `hotpub serve`: the supervising parent and its cfg->workers worker
 * processes, or (workers = 0) hp_serve in this process. Returns the exit
 * status. On SIGHUP the parent calls reload to read the settings again
 * (0, or -1 after printing why) and starts the new workers with them. */
int hp_master_run(struct hp_config *cfg, int (*reload)(struct hp_config *));

#endif
