/*
 * bench/tfb/plaintext.c - TFB test type 6, "plaintext": GET /plaintext
 * answers "Hello, World!" as text/plain. Owns nothing else.
 */
#include "_lib/tfb.h"

HP_HANDLER(http_handler)
{
    static const char body[] = "Hello, World!";
    tfb_fields(req, "text/plain");
    return hp_write(req, body, sizeof body - 1) == HP_OK ? HP_OK : 500;
}
