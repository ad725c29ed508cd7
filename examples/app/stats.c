/*
 * app/stats.c - GET /app/stats. This page defines no handler: the URL is
 * served by http_handler of the application module app/_app.c, and
 * /app/stats/json by its json handler (acquisition, docs/hooks.md). Define
 * http_handler here and this page gets its own.
 */
#include <hotpub.h>
