/*
 * hello.c - the smallest page: GET /hello prints a greeting (try
 * /hello?name=you), GET /hello/json answers JSON from a second handler.
 */
#include <hotpub.h>

HP_HANDLER(http_handler)
{
    const char *name = hp_arg(req, "name");
    /* Plain text, so the name needs no HTML escaping. */
    hp_set_header(req, "Content-Type", "text/plain; charset=utf-8");
    hp_printf(req, "Hello, %s!", name ? name : "world");
    return HP_OK;
}

HP_HANDLER(json)
{
    hp_set_header(req, "Content-Type", "application/json");
    hp_puts(req, "{\"ok\":true}");
    return HP_OK;
}
