/*
 * ops.h - what operators see of a node: the node-wide counters in shared
 * memory and their Prometheus exposition (metrics.c), the /_hotpub/
 * endpoints' access rules and the dashboard (dashboard.c), and HTTPS
 * credentials (tls.c). docs/operations.md is the manual.
 */
#ifndef HP_OPS_H
#define HP_OPS_H

#include "hp.h"

#include <sys/socket.h>
#include <sys/types.h>

/* Mozilla's "intermediate" profile in GnuTLS words: TLS 1.2 and 1.3 only,
 * AEAD ciphers, ECDHE key exchange (forward secrecy). */
#define HP_TLS_PRIORITIES                                                      \
    "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:-CIPHER-ALL:+AES-128-GCM:"     \
    "+AES-256-GCM:+CHACHA20-POLY1305:-KX-ALL:+ECDHE-ECDSA:+ECDHE-RSA:"         \
    "%SERVER_PRECEDENCE"

/* ---- metrics.c: node-wide counters ------------------------------------ */

/*
 * Before the first fork (the supervisor), or in hp_serve for a single
 * process: map the node-stats area with nslots per-worker slots. Each
 * worker writes only its own slot (relaxed atomics, no locks); whichever
 * worker answers /_hotpub/metrics or status.json reads every slot.
 * 0, 1 if it was mapped already (by the supervisor), or -1 after logging
 * why.
 */
int hp_metrics_map(int nslots);
/* In a worker: this process writes slot `slot` (zeroed first). A second
 * call is ignored (hp_serve enters slot 0 of a single process). */
void hp_metrics_enter(int slot);
/* The document root: page labels are module paths under it. */
void hp_metrics_set_root(const char *root);
/* The supervisor reaped the worker of `slot`: its counters are added to
 * the node's "departed" totals (so node counters never go down) and the
 * slot is zeroed for its next worker. */
void hp_metrics_fold(int slot);
/* The whole node is stopping (the supervisor's SIGTERM, or a single
 * process's): /_hotpub/health answers 503 from now on. */
void hp_metrics_set_node_draining(void);
bool hp_metrics_node_draining(void);

/* The label of requests that are no page: static files, 404s, hotpub's
 * own endpoints, bad requests (before a target was resolved). */
#define HP_MET_STATIC "_static"
#define HP_MET_NOTFOUND "_notfound"
#define HP_MET_HOTPUB "_hotpub"
#define HP_MET_NONE "_none"
/* A request answered: its page label (the module path relative to the
 * document root, or one of the names above; past the bounded page table,
 * "_other"), its status code and how long it took in seconds. */
void hp_metrics_request(const char *page, int status, double seconds);
/* A module build: page label, compile seconds, whether it built, and on
 * failure the first line of the diagnostic (for the reload history). */
void hp_metrics_build(const char *page, double seconds, bool ok,
                      const char *error);
void hp_metrics_retired(void);         /* a version replaced by a newer one */
void hp_metrics_unloaded(void);        /* a retired version's object unloaded */
/* A production request for a module being rebuilt answered by its current
 * version, past --stale-wait-ms (cache.c). */
void hp_metrics_stale_served(void);
void hp_metrics_connection(int delta); /* opened (+1) / closed (-1) */
/* About once a second in each worker: copy the gauges that live in the
 * process (handler threads, database pools) into its slot. */
void hp_metrics_tick(void);

/* Copy this worker's module table (version, in-flight, retired, last
 * error of each module) into its slot for the node's dashboard: once a
 * second, and after a build. */
void hp_metrics_modules(hp_cache *c);

/* The Prometheus text exposition format 0.0.4 of the whole node.
 * host_metrics (may be NULL) appends the supervisor's families (worker
 * restarts by cause, quarantines) from the guard. */
void hp_metrics_text(struct hp_buf *b, void (*host_metrics)(struct hp_buf *));
/* status.json's "node" member: per-worker and per-page totals of the
 * whole node and the reload history (newest first). */
void hp_metrics_json(struct hp_buf *b);

/* ---- access rules for /_hotpub/ ---------------------------------------- */

/* hp_setting check for a comma-separated list of CIDR blocks
 * (192.0.2.0/24, 2001:db8::/32, a bare address is /32 or /128). */
int hp_cidr_check(const char *value, char *err, size_t errlen);
/* Whether sa is in one of the blocks of list (NULL: none). */
bool hp_cidr_match(const char *list, const struct sockaddr *sa);
bool hp_addr_loopback(const struct sockaddr *sa);
/* Constant-time: is the Authorization field value `Bearer <token>`? */
bool hp_bearer_ok(const char *field_value, const char *token);
/*
 * Whether a Host field value (RFC 9110 §7.2, "name[:port]" or
 * "[v6]:port"; NULL for none) names this server for a browser, so that a
 * DNS-rebinding page cannot pass: localhost and *.localhost (RFC 6761
 * §6.3), a loopback address (127.0.0.0/8, [::1]), listen's address (any
 * address when listen is 0.0.0.0 or ::; NULL: none), or a name of
 * allowed (--allowed-hosts: "name", ".name" for it and its subdomains,
 * "*" for any; NULL none). Case-insensitive; the port is not compared.
 */
bool hp_host_allowed(const char *field_value, const char *allowed,
                     const struct sockaddr *listen);
/* hp_setting check for --allowed-hosts. */
int hp_host_list_check(const char *value, char *err, size_t errlen);

#endif
