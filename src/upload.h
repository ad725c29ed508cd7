/*
 * upload.h - multipart/form-data bodies decoded as they arrive (upload.c):
 * file parts spooled to temporary files, other fields kept, hp_file.
 * server.c starts and feeds it from the body pieces libmicrohttpd hands
 * over; request.c merges its fields after the query's and removes its
 * files when the request ends.
 */
#ifndef HP_UPLOAD_H
#define HP_UPLOAD_H

#include "request.h"

/*
 * Decode req's body (Content-Type content_type, multipart/form-data) as
 * it arrives: file parts (those with a filename parameter) go to new files
 * in dir, at most max_fields fields in all (0: no cap). Sets req->upload;
 * a Content-Type without a usable boundary is remembered as a 400.
 */
void hp_upload_start(hp_req *req, const char *content_type, const char *dir,
                     int max_fields);
/* The next piece of the body. Once the decoding has failed, pieces are
 * dropped (the status is answered when the body is complete). */
void hp_upload_feed(hp_req *req, const char *p, size_t n);
/* The body went over --max-body: remove its files now and drop the
 * rest. */
void hp_upload_abort(hp_req *req);
/*
 * The body is complete: append its fields to f (a file field's value is
 * its file name). Returns 0 or the status to answer with: 400 malformed,
 * 413 too many fields, 500 a file could not be written. Idempotent.
 */
int hp_upload_fields(hp_req *req, struct hp_fields *f);
/* Remove the request's temporary files that the page has not moved away,
 * and free the decoder (idempotent). */
void hp_upload_cleanup(hp_req *req);

#endif
