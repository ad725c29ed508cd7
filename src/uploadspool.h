/*
 * uploadspool.h - the upload spool files as the process supervisor sees
 * them (upload.c implements it): where they go and removing those whose
 * owning process is gone. master.c calls it without naming HTTP.
 *
 * A spool file is named "hotpub-upload-<pid>-XXXXXX" after the process
 * that made it (mkstemp), so a process that dies without removing its
 * files (a crash, exit(), a SIGKILL) can be cleaned up after by whoever
 * knows it is dead: its supervising parent, or the next server to start.
 */
#ifndef HP_UPLOADSPOOL_H
#define HP_UPLOADSPOOL_H

#include "hp.h"

#include <sys/types.h>

/* The directory spool files go to: cfg->upload_dir (--upload-dir), else
 * $TMPDIR, else /tmp. The string lives as long as cfg or the
 * environment. */
const char *hp_upload_dir(const struct hp_config *cfg);
/* Remove the spool files of process pid (> 0) from dir: call it once pid
 * has been reaped. Returns how many were removed. */
int hp_upload_sweep_pid(const char *dir, pid_t pid);
/* Remove the spool files in dir whose owning process no longer exists
 * (kill(pid, 0) fails with ESRCH); those of live processes, ours or
 * another server's sharing dir, are kept. Returns how many were removed. */
int hp_upload_sweep_dead(const char *dir);

#endif
