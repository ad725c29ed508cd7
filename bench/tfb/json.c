/*
 * bench/tfb/json.c - TFB test type 1, "JSON serialization": GET /json
 * answers {"message":"Hello, World!"} as application/json. The rules ask
 * for an object built per request and serialized by a JSON library, which
 * is what this does (jansson, through hp_write_json). Owns nothing else.
 */
#include "_lib/tfb.h"

#include <jansson.h>

HP_HANDLER(http_handler)
{
    /* json_object_set_new rather than json_pack("{s:s}"): the same object,
     * without parsing a format string on every request. */
    json_t *obj = json_object();
    if (!obj ||
        json_object_set_new(obj, "message", json_string("Hello, World!"))) {
        json_decref(obj);
        return 500;
    }
    tfb_fields(req, NULL);
    int rc = hp_write_json(req, obj);
    json_decref(obj);
    return rc == HP_OK ? HP_OK : 500;
}
