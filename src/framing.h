/*
 * framing.h - hotpub's strict reading of HTTP/1.1 message framing
 * (RFC 9112), shared by framing.c (the parser), edge.c (which runs it over
 * every byte a connection receives) and the fuzz and unit tests.
 */
#ifndef HP_FRAMING_H
#define HP_FRAMING_H

#include "hp.h"

/*
 * One connection's parse state. Zero it with hp_frame_init, then feed it the
 * connection's bytes in order with hp_frame_feed. The parser never allocates
 * and never looks back at earlier bytes; each byte is examined once (body
 * bytes of a known length are skipped in bulk).
 */
struct hp_frame {
    uint8_t st;         /* parser state (framing.c)                     */
    uint8_t http_minor; /* 0 for HTTP/1.0, 1 for 1.1 and later 1.x      */
    uint8_t field;      /* which field the current line is (framing.c) */
    uint8_t pct;        /* percent-escape progress in the target        */
    uint8_t pct_hi;     /* first hex digit of that escape               */
    bool in_query;      /* past '?' in the request target               */
    bool chunk_bws;     /* whitespace after a chunk size                */
    size_t max_head;    /* bytes allowed for the request line / head    */
    unsigned max_query; /* '&'-separated query pieces allowed (0: any) */
    unsigned n_query;   /* ... seen in this target                      */
    unsigned n_fields;  /* field lines seen in this head                */
    size_t query_room;  /* bytes the HTTP library has for the query's
                           pieces (64 each) and the request line; 0: any */
    uint8_t form;       /* request-target form (framing.c)              */
    uint8_t method;     /* the method, if the edge decides on it (M_*)  */
    uint8_t own;        /* TRACE/CONNECT: "/_hotpub/" matched (framing.c) */
    uint8_t scheme;     /* absolute-form schemes still possible         */
    size_t head_len;    /* bytes of this head so far                    */
    size_t tok_len;     /* bytes of the current token or name           */
    uint64_t left;      /* body or chunk bytes still to come            */
    /* The fields that decide framing, per message. */
    unsigned n_host, n_cl, n_te;
    uint64_t content_length;
    bool cl_bad, host_bad;
    uint16_t singles;   /* other singleton fields seen (framing.c)      */
    uint8_t single_dup; /* 1 + which of them came twice, or 0           */
    bool te_chunked_last, te_chunked_seen, te_chunked_twice, te_unknown, te_bad;
    bool in_trailer; /* in the trailer section of a chunked body     */
    size_t held;     /* ... the head's bytes, libmicrohttpd still has  */
    bool rl_passed;  /* this message's request line was passed on    */
    size_t val_len;
    /* Verdict. */
    unsigned heads;  /* request heads completed on this connection   */
    bool in_body;    /* the bytes now are the body of message `heads` */
    int bad_status;  /* 0, or the status that refuses the connection */
    const char *why; /* what was wrong (static string), for the log  */
    /* Scratch, valid up to tok_len / val_len (never cleared: next_message
     * clears only what lies before `heads`). */
    char name[20];       /* the current field name, lower-cased, if short  */
    char method_name[8]; /* the method's first bytes, as sent          */
    char val[300];       /* the value of a Host/Content-Length/TE field    */
};

/* max_head: bytes of a request line or head; max_query: '&'-separated
 * pieces of a query (0 = no limit). */
void hp_frame_init(struct hp_frame *f, size_t max_head, unsigned max_query);
/* Room libmicrohttpd has for the request line and its query pieces (its
 * per-connection memory): more pieces than fit are refused with 413, since
 * it hangs the connection when they overflow it. The head's field lines
 * take the same room (64 bytes each besides their text), as do a chunked
 * body's trailer fields beside the head's: a head or trailer section that
 * outgrows it, at any byte, is refused with 431 here, before
 * libmicrohttpd answers it with a 431 of its own. 4096 bytes of the room
 * are left for the response's head. 0: no check. */
void hp_frame_set_query_room(struct hp_frame *f, size_t bytes);
/* RFC 3986 §3.2.2 host [":" port] (the Host field, an absolute-form
 * target's authority). */
bool hp_host_valid(const char *v, size_t n);

/*
 * Parse n more bytes of the connection. Returns how many of them lie before
 * the start of the first message that broke the rules: n when all is well.
 * When a message breaks them, f->bad_status is set (400, 405, 413, 414, 431,
 * 501 or 505), f->why says why, and every later byte is ignored.
 *
 * Refused (RFC 9112 unless noted): a request line not of the form
 * `method SP request-target SP HTTP/1.x` (§3); a control character, or a
 * percent-escape that decodes to one, in the request target's path (RFC
 * 3986 §2.1; the resolver must never see a NUL); whitespace before a
 * field's colon (§5.1); obs-fold (§5.2); a bare CR, NUL or other control
 * character in a field value (RFC 9110 §5.5); more than one Host, or an
 * invalid one, or none in HTTP/1.1 (§3.2, RFC 9110 §7.2); more than one
 * Content-Length or a non-numeric one (§6.3); Transfer-Encoding in
 * more than max_query '&'-separated pieces in the query (413: libmicrohttpd
 * stores each as a field, and 0.9.75 hangs the connection when they outgrow
 * its memory); Transfer-Encoding in
 * HTTP/1.0, with Content-Length, with a coding other than chunked (501), or
 * with chunked not last or twice (§6.1, §6.3); a chunk size that is not hex
 * or overflows, or chunk framing without its CRLF (§7.1); a request line
 * longer than max_head (414) or a head longer than max_head (431); a
 * method with a byte other than A-Z, '_' or '-' (400: nginx's rule, so
 * "get" or "G3T" is no method any reader upper-cases into GET); TRACE and
 * CONNECT (405, once the head is complete and otherwise well formed, as
 * nginx: TRACE echoes the request, the stuff of cross-site tracing, and
 * hotpub is no proxy to CONNECT through). Other methods pass: pages decide.
 * Accepted like nginx: a bare LF ending a line, empty lines before a
 * request line (§2.2), absolute-form targets (§3.2.2).
 */
size_t hp_frame_feed(struct hp_frame *f, const char *p, size_t n);

/*
 * hp_frame_feed, and in the bytes of a head's field names that start with
 * "Cookie" (any case) the sixth byte, the 'e', becomes HP_FRAME_COOKIE_MARK
 * where it lies in p (each byte is edited as it is parsed, so however the
 * bytes are split into reads): libmicrohttpd then never sees a field named
 * Cookie. libmicrohttpd 0.9.75 parses the first Cookie field into its
 * per-connection memory (a copy of the value and a record a pair,
 * parse_cookie_header), which a head well under --max-header overflows;
 * it then answers a 431 of its own and goes on to serve the request too (a
 * second response). hotpub never reads those records (it parses Cookie
 * fields itself, hp_cookie), so the edge keeps libmicrohttpd from making
 * them. The mark is no token byte: no client field name has it (the parser
 * refuses such a name with 400), so a renamed field is always a Cookie one.
 * hotpub's reads go through hp_frame_wire_name / hp_frame_client_name.
 */
size_t hp_frame_feed_edit(struct hp_frame *f, char *p, size_t n);

#define HP_FRAME_COOKIE_MARK '{'

/* The name libmicrohttpd holds for a field a client sent as `name`: name
 * itself, or (a "Cookie..." name) its copy in buf with the mark; name if it
 * does not fit in cap bytes. */
const char *hp_frame_wire_name(const char *name, char *buf, size_t cap);
/* True for a name as libmicrohttpd holds it that the edge renamed. */
bool hp_frame_renamed(const char *wire);
/* Undo the renaming in a copy of such a name: the 'e' or 'E' back (upper
 * case if the 'I' before it is; the case of that byte is not kept). */
void hp_frame_client_name(char *name);

/* After a 405 (TRACE or CONNECT): the target's path, percent-decoded,
 * starts with "/_hotpub/", hotpub's own endpoints, which answer only GET
 * and HEAD (the Allow of the 405, RFC 9110 §15.5.6). */
bool hp_frame_own_target(const struct hp_frame *f);

/* True when a head has started but not ended (a partial request). */
bool hp_frame_in_head(const struct hp_frame *f);

#endif
