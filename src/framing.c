/*
 * framing.c - a strict, incremental parser of HTTP/1.1 request framing
 * (RFC 9112): where each request head and body begins and ends, and whether
 * the head is one that every reader would read the same way.
 *
 * Owns: the parse state of one connection's byte stream and its verdict,
 * and (hp_frame_feed_edit) the renaming of Cookie fields in the bytes.
 * May not touch: sockets, libmicrohttpd, time, memory allocation. It is a
 * pure function of the bytes, so the fuzzer and the unit tests drive it
 * exactly as edge.c does.
 *
 * Why hotpub parses at all: libmicrohttpd 0.9.75 is lenient and normalises
 * a head before the application sees it (it joins an obs-fold line onto the
 * field name, cuts a value at NUL, keeps the first of two Content-Length
 * fields, waits for a body of unknown length after an unknown transfer
 * coding). Those are the differences request smuggling is made of, and they
 * cannot be seen after the fact, so edge.c runs this parser over the very
 * bytes libmicrohttpd reads and refuses a connection before libmicrohttpd
 * sees the first message that breaks the rules. Messages before it are
 * served; nothing after it is.
 *
 *   START -> METHOD -> TARGET -> VERSION -> (LINE -> NAME -> OWS -> VALUE)*
 *     -> end of head -> [BODY | CSIZE -> CDATA ... -> last chunk -> LINE*]
 *     -> START (next message)            any violation -> DEAD (for good)
 */
#include "framing.h"

#include <string.h>
#include <strings.h>

enum {
    ST_START,    /* before a request line: empty lines are skipped */
    ST_START_LF, /* CR of an empty line seen                        */
    ST_METHOD,
    ST_TARGET,
    ST_VERSION,
    ST_RL_LF,  /* CR ending the request line seen                 */
    ST_LINE,   /* at the start of a field line, or the head's end */
    ST_END_LF, /* CR of the empty line ending the head seen       */
    ST_NAME,
    ST_OWS, /* after the colon                                 */
    ST_VALUE,
    ST_VALUE_LF, /* CR in a field value seen                        */
    ST_BODY,     /* Content-Length bytes                            */
    ST_CSIZE,    /* chunk size (hex)                                */
    ST_CEXT,     /* chunk extension, up to the line's end           */
    ST_CSIZE_LF,
    ST_CDATA,
    ST_CDATA_CR, /* the CRLF after chunk data                       */
    ST_CDATA_LF,
    ST_DEAD, /* a message broke the rules: ignore the rest      */
};

enum { F_NONE, F_HOST, F_CL, F_TE, F_TRAILER };

/* The methods the edge decides on (RFC 9110 §9.1: case-sensitive names). */
enum { M_OTHER, M_OPTIONS, M_TRACE, M_CONNECT };

#define MAX_METHOD 32
#define MAX_CHUNK_EXT 4096

/* RFC 9110 §5.6.2 tchar. */
static const uint8_t TCHAR[256] = {
    ['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1,
    ['*'] = 1, ['+'] = 1, ['-'] = 1, ['.'] = 1, ['^'] = 1, ['_'] = 1,
    ['`'] = 1, ['|'] = 1, ['~'] = 1, ['0'] = 1, ['1'] = 1, ['2'] = 1,
    ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1, ['7'] = 1, ['8'] = 1,
    ['9'] = 1, ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1,
    ['F'] = 1, ['G'] = 1, ['H'] = 1, ['I'] = 1, ['J'] = 1, ['K'] = 1,
    ['L'] = 1, ['M'] = 1, ['N'] = 1, ['O'] = 1, ['P'] = 1, ['Q'] = 1,
    ['R'] = 1, ['S'] = 1, ['T'] = 1, ['U'] = 1, ['V'] = 1, ['W'] = 1,
    ['X'] = 1, ['Y'] = 1, ['Z'] = 1, ['a'] = 1, ['b'] = 1, ['c'] = 1,
    ['d'] = 1, ['e'] = 1, ['f'] = 1, ['g'] = 1, ['h'] = 1, ['i'] = 1,
    ['j'] = 1, ['k'] = 1, ['l'] = 1, ['m'] = 1, ['n'] = 1, ['o'] = 1,
    ['p'] = 1, ['q'] = 1, ['r'] = 1, ['s'] = 1, ['t'] = 1, ['u'] = 1,
    ['v'] = 1, ['w'] = 1, ['x'] = 1, ['y'] = 1, ['z'] = 1,
};

/* A method's bytes, by nginx's rule (ngx_http_parse_request_line): A-Z,
 * '_' and '-'. RFC 9110 §9.1 allows any token, but a method is
 * case-sensitive and every registered one is upper case: "get" or "Get"
 * is an unknown method that a lenient reader (or a proxy in front)
 * upper-cases into GET, and digits or other tchars ("G3T", "GE.T") are
 * nobody's method. Refusing them keeps every reader on one reading. */
static const uint8_t METHOD_BYTE[256] = {
    ['A' ... 'Z'] = 1,
    ['_'] = 1,
    ['-'] = 1,
};

/* The bytes of a reg-name but pct-encoded (RFC 3986 §3.2.2): unreserved
 * and sub-delims. A table, as the Host field of every request is checked. */
static const uint8_t REG_NAME[256] = {
    ['a' ... 'z'] = 1, ['A' ... 'Z'] = 1, ['0' ... '9'] = 1, ['-'] = 1,
    ['.'] = 1,         ['_'] = 1,         ['~'] = 1,         ['!'] = 1,
    ['$'] = 1,         ['&'] = 1,         ['\''] = 1,        ['('] = 1,
    [')'] = 1,         ['*'] = 1,         ['+'] = 1,         [','] = 1,
    [';'] = 1,         ['='] = 1,
};

/* Bytes that need no decision inside a field value: VCHAR, obs-text, SP
 * and HTAB (RFC 9110 §5.5). */
static const uint8_t VALUE_BYTE[256] = {
    ['\t'] = 1,
    [0x20 ... 0x7e] = 1,
    [0x80 ... 0xff] = 1,
};

/* Bytes that need no decision inside a request target's path: visible
 * ASCII and obs-text but '%' (an escape to check), '?' (the query) and
 * '#' (a fragment, which a request target never has). */
static const uint8_t PATH_BYTE[256] = {
    [0x21 ... 0x22] = 1, /* '#' (0x23) */[0x24] = 1, /* '%' (0x25) */
    [0x26 ... 0x3e] = 1, /* '?' (0x3f) */ [0x40 ... 0x7e] = 1,
    [0x80 ... 0xff] = 1,
};

/* ... and inside its query: all those but '&' (the pieces are counted). */
static const uint8_t QUERY_BYTE[256] = {
    [0x21 ... 0x22] = 1,
    /* '#' (0x23) */ [0x24 ... 0x25] = 1,
    /* '&' (0x26) */ [0x27 ... 0x7e] = 1,
    [0x80 ... 0xff] = 1,
};

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

static void next_message(struct hp_frame *f)
{
    size_t max_head = f->max_head, query_room = f->query_room;
    unsigned max_query = f->max_query;
    unsigned heads = f->heads;
    memset(f, 0, offsetof(struct hp_frame, heads));
    f->max_head = max_head;
    f->max_query = max_query;
    f->query_room = query_room;
    f->heads = heads;
    f->http_minor = 1;
    f->st = ST_START;
    f->in_body = false;
}

void hp_frame_init(struct hp_frame *f, size_t max_head, unsigned max_query)
{
    memset(f, 0, sizeof *f);
    f->max_head = max_head;
    f->max_query = max_query;
    next_message(f);
}

void hp_frame_set_query_room(struct hp_frame *f, size_t bytes)
{
    f->query_room = bytes;
}

bool hp_frame_in_head(const struct hp_frame *f)
{
    return f->st != ST_DEAD && !f->in_body &&
           (f->st != ST_START || f->head_len > 0);
}

static bool refuse(struct hp_frame *f, int status, const char *why)
{
    f->bad_status = status;
    f->why = why;
    f->st = ST_DEAD;
    return false;
}

/* ---- field values that decide framing ------------------------------------ */

/* RFC 3986 §3.2.2 host, RFC 9110 §7.2: uri-host [ ":" port ]. */
bool hp_host_valid(const char *v, size_t n)
{
    size_t i = 0;
    if (n == 0)
        return false;
    if (v[0] == '[') {
        for (i = 1; i < n && v[i] != ']'; i++)
            if (hexval((unsigned char)v[i]) < 0 && v[i] != ':' && v[i] != '.')
                return false;
        if (i == n || i == 1)
            return false;
        i++;
    } else {
        for (; i < n && v[i] != ':'; i++) {
            unsigned char c = (unsigned char)v[i];
            if (REG_NAME[c])
                continue;
            if (c == '%' && i + 2 < n && hexval((unsigned char)v[i + 1]) >= 0 &&
                hexval((unsigned char)v[i + 2]) >= 0) {
                i += 2;
                continue;
            }
            return false;
        }
        if (i == 0)
            return false;
    }
    if (i == n)
        return true;
    if (v[i] != ':' || n - i - 1 > 5)
        return false;
    for (i++; i < n; i++)
        if (v[i] < '0' || v[i] > '9')
            return false;
    return true;
}

/* RFC 9112 §6.1: a list of transfer codings, each with optional parameters. */
static void parse_te(struct hp_frame *f, const char *v, size_t n)
{
    size_t i = 0;
    while (i < n) {
        while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        if (i == n)
            break;
        size_t s = i;
        while (i < n && TCHAR[(unsigned char)v[i]])
            i++;
        size_t len = i - s;
        while (i < n && v[i] != ',') /* parameters: not ours to read */
            i++;
        if (len == 0) {
            f->te_bad = true;
            continue;
        }
        bool chunked = len == 7 && strncasecmp(v + s, "chunked", 7) == 0;
        if (chunked && f->te_chunked_seen)
            f->te_chunked_twice = true;
        f->te_chunked_seen |= chunked;
        f->te_unknown |= !chunked;
        f->te_chunked_last = chunked;
    }
}

/*
 * One more field line in the head. libmicrohttpd keeps each field (as each
 * query piece) in its per-connection memory, about 64 bytes besides the
 * head's text: many small fields fill it long before the head reaches
 * --max-header, and it then answers a 431 of its own. Refuse first, with
 * hotpub's 431 (RFC 6585 §5), on the same measure as the query's pieces.
 */
static void fields_fit(struct hp_frame *f)
{
    f->n_fields++;
    size_t need =
        f->held + (size_t)(f->n_fields + f->n_query) * 64 + f->head_len;
    if (f->query_room && need + 4096 > f->query_room)
        refuse(f, 431,
               f->in_trailer ? "head and trailer fields too large for "
                               "--max-header"
                             : "too many header fields for --max-header");
}

static void end_field(struct hp_frame *f)
{
    size_t n = f->val_len;
    while (n && (f->val[n - 1] == ' ' || f->val[n - 1] == '\t'))
        n--;
    switch (f->field) {
    case F_HOST:
        f->n_host++;
        if (f->val_len >= sizeof f->val || !hp_host_valid(f->val, n))
            f->host_bad = true;
        break;
    case F_CL:
        /* Digits only, not even trailing whitespace: libmicrohttpd
         * refuses that with a malformed answer of its own. */
        f->n_cl++;
        f->content_length = 0;
        if (n == 0 || n > 18 || n != f->val_len)
            f->cl_bad = true;
        for (size_t i = 0; i < n && !f->cl_bad; i++) {
            if (f->val[i] < '0' || f->val[i] > '9')
                f->cl_bad = true;
            f->content_length =
                f->content_length * 10 + (uint64_t)(f->val[i] - '0');
        }
        break;
    case F_TE:
        /* libmicrohttpd reads the first Transfer-Encoding field and knows
         * exactly "chunked" (any case), nothing around it: anything else
         * it would read differently, so anything else is refused. */
        if (f->val_len >= sizeof f->val)
            f->te_bad = true;
        else
            parse_te(f, f->val, n);
        if (f->val_len != 7 || strncasecmp(f->val, "chunked", 7) != 0)
            f->te_bad |= !f->te_unknown;
        f->n_te++;
        break;
    default:
        break;
    }
    f->field = F_NONE;
    f->val_len = 0;
    f->tok_len = 0;
    f->st = ST_LINE;
    fields_fit(f);
}

/*
 * Singleton fields (RFC 9110 §5.3: a sender MUST NOT generate more than one
 * field line for a field whose value is not a list) that hotpub reads,
 * besides Host, Content-Length and Transfer-Encoding, checked apart as they
 * decide framing. libmicrohttpd hands the application the first of two
 * lines, another reader may take the last or join them: two Content-Type
 * lines let a body parse as JSON that a proxy read as a form. So, as nginx
 * (ngx_http_process_unique_header_line: If-Modified-Since,
 * If-Unmodified-Since, If-Range, Authorization, ...), a second line of any
 * of these refuses the request with 400. List fields (If-Match,
 * If-None-Match, Connection, Upgrade, Accept*, ...) and Cookie (several
 * lines are joined, RFC 6265 §5.4, and browsers behind HTTP/2 proxies send
 * them) may repeat. Names are at most sizeof f->name bytes.
 */
static const struct {
    const char *name;
    const char *why;
} singletons[] = {
    {"content-type", "more than one Content-Type field"},
    {"authorization", "more than one Authorization field"},
    {"range", "more than one Range field"},
    {"if-range", "more than one If-Range field"},
    {"if-modified-since", "more than one If-Modified-Since field"},
    {"if-unmodified-since", "more than one If-Unmodified-Since field"},
    {"origin", "more than one Origin field"},
    {"referer", "more than one Referer field"},
    {"sec-fetch-site", "more than one Sec-Fetch-Site field"},
    {"x-csrf-token", "more than one X-CSRF-Token field"},
};
_Static_assert(sizeof singletons / sizeof *singletons <= 16,
               "hp_frame.singles has 16 bits");

static void singleton_seen(struct hp_frame *f)
{
    for (size_t i = 0; i < sizeof singletons / sizeof *singletons; i++) {
        size_t n = strlen(singletons[i].name);
        if (f->tok_len != n || memcmp(f->name, singletons[i].name, n) != 0)
            continue;
        if ((f->singles & (1u << i)) && !f->single_dup)
            f->single_dup = (uint8_t)(i + 1);
        f->singles |= (uint16_t)(1u << i);
        return;
    }
}

static void start_field_value(struct hp_frame *f)
{
    f->field = F_NONE;
    if (f->st == ST_DEAD)
        return;
    /* The name was lower-cased as it came (only its first bytes kept). */
    if (f->tok_len == 4 && memcmp(f->name, "host", 4) == 0)
        f->field = F_HOST;
    else if (f->tok_len == 14 && memcmp(f->name, "content-length", 14) == 0)
        f->field = F_CL;
    else if (f->tok_len == 17 && memcmp(f->name, "transfer-encoding", 17) == 0)
        f->field = F_TE;
    else if (f->tok_len <= sizeof f->name)
        singleton_seen(f);
}

/* The Transfer-Encoding of a complete head (RFC 9112 §6.1, §6.3): true
 * if it is exactly chunked, else refused. */
static bool te_valid(struct hp_frame *f)
{
    if (f->http_minor == 0)
        return refuse(f, 400, "Transfer-Encoding in an HTTP/1.0 request");
    if (f->n_cl)
        return refuse(f, 400, "both Content-Length and Transfer-Encoding");
    if (f->n_te > 1)
        return refuse(f, 400, "more than one Transfer-Encoding field");
    /* RFC 9112 §6.3: chunked present but not final is a MUST 400;
     * otherwise a coding hotpub cannot decode is 501 (§6.1), and
     * anything but exactly "chunked" 400. */
    if ((f->te_chunked_seen && !f->te_chunked_last) || f->te_chunked_twice)
        return refuse(f, 400, "chunked is not the final transfer coding");
    if (f->te_unknown) /* as nginx: what is not chunked is not known */
        return refuse(f, 501, "unsupported transfer coding");
    if (f->te_bad || !f->te_chunked_last)
        return refuse(f, 400, "Transfer-Encoding other than chunked");
    return true;
}

/* The empty line: decide the message's framing (RFC 9112 §6.3). */
static bool end_head(struct hp_frame *f)
{
    if (f->in_trailer) {
        next_message(f);
        return true;
    }
    if (f->n_host > 1)
        return refuse(f, 400, "more than one Host field");
    if (f->host_bad)
        return refuse(f, 400, "invalid Host field");
    if (f->http_minor >= 1 && f->n_host == 0)
        return refuse(f, 400, "HTTP/1.1 request without Host");
    if (f->n_cl > 1)
        return refuse(f, 400, "more than one Content-Length field");
    if (f->cl_bad)
        return refuse(f, 400, "invalid Content-Length");
    if (f->single_dup)
        return refuse(f, 400, singletons[f->single_dup - 1].why);
    f->heads++;
    if (f->n_te && !te_valid(f))
        return false;
    /* After every framing check, as nginx (ngx_http_process_request_header)
     * does: a malformed head is a 400 whatever its method. */
    if (f->method == M_TRACE)
        return refuse(f, 405, "TRACE method (it would echo the request)");
    if (f->method == M_CONNECT)
        return refuse(f, 405, "CONNECT method (hotpub is not a proxy)");
    if (f->n_te) {
        f->in_body = true;
        f->st = ST_CSIZE;
        f->tok_len = 0;
        f->left = 0;
        return true;
    }
    if (f->content_length > 0) {
        f->in_body = true;
        f->left = f->content_length;
        f->st = ST_BODY;
        return true;
    }
    next_message(f);
    return true;
}

/* ---- the request line ------------------------------------------------------
 */

enum { T_UNDECIDED, T_ORIGIN, T_ASTERISK, T_ABSOLUTE };

/*
 * RFC 9112 §3.2: origin-form (/path?query), absolute-form (http:// or
 * https://, any case), or asterisk-form ("*" alone). Authority-form is for
 * CONNECT, which hotpub does not do.
 */
static bool target_form(struct hp_frame *f, unsigned char c)
{
    static const char http[] = "http://", https[] = "https://";
    size_t k = f->tok_len;
    if (k == 0 && c == '/') {
        f->form = T_ORIGIN;
        return true;
    }
    if (k == 0 && c == '*') {
        f->form = T_ASTERISK;
        return true;
    }
    if (k == 0)
        f->scheme = 3;
    unsigned char l = c >= 'A' && c <= 'Z' ? (unsigned char)(c | 0x20) : c;
    if ((f->scheme & 1) && (k >= 7 || l != (unsigned char)http[k]))
        f->scheme &= (uint8_t)~1u;
    if ((f->scheme & 2) && (k >= 8 || l != (unsigned char)https[k]))
        f->scheme &= (uint8_t)~2u;
    if (!f->scheme)
        return refuse(f, 400, "request target is not a path or an http URI");
    if (((f->scheme & 1) && k == 6) || ((f->scheme & 2) && k == 7))
        f->form = T_ABSOLUTE;
    return true;
}

#define PCT_MALFORMED "malformed percent-encoding in the path"

/*
 * hotpub's own endpoints' path prefix (server.c's HOTPUB_PREFIX): a TRACE
 * or CONNECT (405 here) to one of them gets the Allow of those endpoints,
 * not the pages' (RFC 9110 §15.5.6: the target resource's methods). Only
 * for those two methods is the decoded path matched, byte by byte (the
 * bulk path scan is off for them, plain_run); f->own counts the bytes
 * matched, or is OWN_NO, or OWN_AUTH in an absolute-form's authority.
 */
static const char OWN_PREFIX[] = "/_hotpub/";
enum { OWN_LEN = sizeof OWN_PREFIX - 1, OWN_AUTH = 0xfe, OWN_NO = 0xff };

static void own_byte(struct hp_frame *f, unsigned char c)
{
    if (f->own == OWN_AUTH) {
        if (c == '/')
            f->own = 1;
    } else if (f->own < OWN_LEN) {
        f->own = c == (unsigned char)OWN_PREFIX[f->own] ? (uint8_t)(f->own + 1)
                                                        : (uint8_t)OWN_NO;
    }
}

bool hp_frame_own_target(const struct hp_frame *f)
{
    return f->own == OWN_LEN;
}

static bool target_byte(struct hp_frame *f, unsigned char c)
{
    if (f->form == T_ASTERISK)
        return refuse(f, 400, "request target is not a path or an http URI");
    if (c <= 0x20 || c == 0x7f)
        return refuse(f, 400, "control character in the request target");
    if (c == '#')
        return refuse(f, 400, "fragment in the request target");
    bool undecided = f->form == T_UNDECIDED;
    if (undecided && !target_form(f, c))
        return false;
    f->tok_len++;
    if (undecided && f->form == T_ABSOLUTE)
        f->own = OWN_AUTH; /* "http://" ends here: the authority next */
    bool own = f->method >= M_TRACE && f->form != T_UNDECIDED &&
               !(undecided && f->form == T_ABSOLUTE);
    if (f->in_query) {
        if (c != '&')
            return true;
        if (++f->n_query > f->max_query && f->max_query)
            return refuse(f, 413, "too many query fields");
        if (f->query_room &&
            f->n_query * 64 + f->tok_len + 4096 > f->query_room)
            return refuse(f, 413, "too many query fields for --max-header");
        return true;
    }
    if (c == '?') {
        if (f->pct)
            return refuse(f, 400, PCT_MALFORMED);
        f->in_query = true;
        f->n_query = 1;
        return true;
    }
    /* A '%' not followed by two hex digits (RFC 3986 §2.1: pct-encoded =
     * "%" HEXDIG HEXDIG) has no meaning in the path, as nginx says too;
     * a percent-escape that decodes to a control character would cut the
     * path at a NUL, or carry a CR, later on. The query is left to the
     * page's decoder (nginx passes it through untouched). */
    if (f->pct == 0) {
        f->pct = c == '%';
        if (own && c != '%')
            own_byte(f, c);
        return true;
    }
    int h = hexval(c);
    if (h < 0)
        return refuse(f, 400, PCT_MALFORMED);
    if (f->pct == 1) {
        f->pct_hi = (uint8_t)h;
        f->pct = 2;
        return true;
    }
    f->pct = 0;
    int v = f->pct_hi * 16 + h;
    if (v < 0x20 || v == 0x7f)
        return refuse(f, 400, "encoded control character in the path");
    if (own)
        own_byte(f, (unsigned char)v);
    return true;
}

static bool version_byte(struct hp_frame *f, unsigned char c)
{
    static const char proto[] = "HTTP/1.";
    if (f->tok_len < 5) {
        if (c != (unsigned char)proto[f->tok_len])
            return refuse(f, 400, "malformed request line");
    } else if (f->tok_len == 5) {
        if (c < '0' || c > '9')
            return refuse(f, 400, "malformed HTTP version");
        if (c != '1')
            return refuse(f, 505, "HTTP version not supported");
    } else if (f->tok_len == 6) {
        if (c != '.')
            return refuse(f, 400, "malformed HTTP version");
    } else if (f->tok_len == 7) {
        if (c < '0' || c > '9')
            return refuse(f, 400, "malformed HTTP version");
        f->http_minor = c == '0' ? 0 : 1;
    } else if (c == '\r') {
        f->st = ST_RL_LF;
        return true;
    } else if (c == '\n') {
        f->st = ST_LINE;
        f->tok_len = 0;
        return true;
    } else {
        return refuse(f, 400, "malformed request line");
    }
    f->tok_len++;
    return true;
}

/* Method bytes arrive one by one or in runs (plain_run), before tok_len
 * counts them: the first ones are kept to name the method at its end. */
static void method_bytes(struct hp_frame *f, const unsigned char *p, size_t n)
{
    for (size_t k = 0; k < n && f->tok_len + k < sizeof f->method_name; k++)
        f->method_name[f->tok_len + k] = (char)p[k];
}

/* The method just ended (tok_len bytes): one the edge decides on? */
static uint8_t method_of(const struct hp_frame *f)
{
    static const struct {
        const char *name;
        uint8_t id;
    } known[] = {
        {"OPTIONS", M_OPTIONS}, {"TRACE", M_TRACE}, {"CONNECT", M_CONNECT}};
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (f->tok_len == strlen(known[i].name) &&
            memcmp(f->method_name, known[i].name, f->tok_len) == 0)
            return known[i].id;
    return M_OTHER;
}

static bool request_line_byte(struct hp_frame *f, unsigned char c)
{
    switch (f->st) {
    case ST_METHOD:
        if (c == ' ' && f->tok_len > 0) {
            f->method = method_of(f);
            f->st = ST_TARGET;
            f->tok_len = 0;
            return true;
        }
        if (!METHOD_BYTE[c])
            return refuse(f, 400, "invalid method (A-Z, '_' and '-' only)");
        method_bytes(f, &c, 1);
        if (++f->tok_len > MAX_METHOD)
            return refuse(f, 400, "method too long");
        return true;
    case ST_TARGET:
        if (c == ' ' && f->tok_len > 0) {
            if (f->pct) /* "/a%" or "/a%4": cut short by the space */
                return refuse(f, 400, PCT_MALFORMED);
            if (f->form == T_UNDECIDED)
                return refuse(f, 400,
                              "request target is not a path or an http URI");
            /* RFC 9112 §3.2.4: the asterisk-form is only for a server-wide
             * OPTIONS (what nginx refuses too). */
            if (f->form == T_ASTERISK && f->method != M_OPTIONS)
                return refuse(f, 400,
                              "asterisk-form target with a method "
                              "other than OPTIONS");
            f->st = ST_VERSION;
            f->tok_len = 0;
            return true;
        }
        return target_byte(f, c);
    case ST_VERSION:
        return version_byte(f, c);
    default: /* ST_RL_LF */
        if (c != '\n')
            return refuse(f, 400, "bare CR in the request line");
        f->st = ST_LINE;
        f->tok_len = 0;
        return true;
    }
}

/* ---- field lines (head and trailer section) -------------------------------
 */

static bool field_byte(struct hp_frame *f, unsigned char c)
{
    switch (f->st) {
    case ST_LINE:
        if (c == '\r') {
            f->st = ST_END_LF;
            return true;
        }
        if (c == '\n')
            return end_head(f);
        if (c == ' ' || c == '\t')
            return refuse(f, 400, "obsolete line folding");
        if (!TCHAR[c])
            return refuse(f, 400, "malformed field name");
        f->st = ST_NAME;
        f->tok_len = 1;
        f->name[0] = (char)(c | (c >= 'A' && c <= 'Z' ? 0x20 : 0));
        return true;
    case ST_END_LF:
        if (c != '\n')
            return refuse(f, 400, "bare CR in the head");
        return end_head(f);
    case ST_NAME:
        if (c == ':') {
            if (!f->in_trailer)
                start_field_value(f);
            f->st = ST_OWS;
            return true;
        }
        if (c == ' ' || c == '\t')
            return refuse(f, 400, "whitespace before a field's colon");
        if (!TCHAR[c])
            return refuse(f, 400, "malformed field name");
        if (f->tok_len < sizeof f->name)
            f->name[f->tok_len] = (char)(c | (c >= 'A' && c <= 'Z' ? 0x20 : 0));
        f->tok_len++;
        return true;
    case ST_OWS:
        if (c == ' ' || c == '\t')
            return true;
        f->st = ST_VALUE;
        /* fall through */
    case ST_VALUE:
        if (c == '\r') {
            f->st = ST_VALUE_LF;
            return true;
        }
        if (c == '\n') {
            end_field(f);
            return true;
        }
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return refuse(f, 400,
                          c == 0 ? "NUL in a field value"
                                 : "control character in a field value");
        if (f->field != F_NONE && f->val_len < sizeof f->val)
            f->val[f->val_len++] = (char)c;
        else if (f->field != F_NONE)
            f->val_len = sizeof f->val; /* too long: marked bad */
        return true;
    default: /* ST_VALUE_LF */
        if (c != '\n')
            return refuse(f, 400, "bare CR in a field value");
        end_field(f);
        return true;
    }
}

/* ---- chunked bodies (RFC 9112 §7.1) -----------------------------------------
 */

static bool chunk_size_line_end(struct hp_frame *f)
{
    f->tok_len = 0;
    f->chunk_bws = false;
    if (f->left == 0) { /* last-chunk: the trailer section follows */
        /* libmicrohttpd keeps each trailer field as a header field (a
         * record and its text), beside the head's, which it still holds:
         * fields_fit counts both. */
        f->in_trailer = true;
        f->held = f->head_len;
        f->head_len = 0;
        f->st = ST_LINE;
        return true;
    }
    f->st = ST_CDATA;
    return true;
}

static bool chunk_byte(struct hp_frame *f, unsigned char c)
{
    switch (f->st) {
    case ST_CSIZE: {
        int h = hexval(c);
        if (h >= 0 && !f->chunk_bws) {
            if (f->left > (UINT64_MAX >> 8))
                return refuse(f, 400, "chunk size overflows");
            f->left = f->left * 16 + (uint64_t)h;
            f->tok_len++;
            return true;
        }
        if (f->tok_len == 0)
            return refuse(f, 400, "invalid chunk size");
        if (c == ' ' || c == '\t') {
            f->chunk_bws = true;
            return true;
        }
        if (c == ';') {
            f->st = ST_CEXT;
            f->tok_len = 0;
            return true;
        }
        if ((c == '\r' || c == '\n') && f->chunk_bws)
            return refuse(f, 400, "whitespace after a chunk size");
        if (c == '\r') {
            f->st = ST_CSIZE_LF;
            return true;
        }
        /* Chunk framing takes CRLF only (RFC 9112 §7.1): a bare LF here is
         * the line-ending difference chunked smuggling is made of. */
        if (c == '\n')
            return refuse(f, 400, "bare LF in chunk framing");
        return refuse(f, 400, "invalid chunk size");
    }
    case ST_CEXT:
        if (c == '\r') {
            f->st = ST_CSIZE_LF;
            return true;
        }
        if (c == '\n')
            return refuse(f, 400, "bare LF in chunk framing");
        if ((c < 0x20 && c != '\t') || c == 0x7f ||
            ++f->tok_len > MAX_CHUNK_EXT)
            return refuse(f, 400, "invalid chunk extension");
        return true;
    case ST_CSIZE_LF:
        if (c != '\n')
            return refuse(f, 400, "bare CR after a chunk size");
        return chunk_size_line_end(f);
    case ST_CDATA_CR:
        if (c == '\r') {
            f->st = ST_CDATA_LF;
            return true;
        }
        return refuse(f, 400,
                      c == '\n' ? "bare LF in chunk framing"
                                : "chunk data longer than its size");
    default: /* ST_CDATA_LF */
        if (c != '\n')
            return refuse(f, 400, "chunk data longer than its size");
        f->st = ST_CSIZE;
        f->tok_len = 0;
        f->left = 0;
        return true;
    }
}

/* ---- the driver -------------------------------------------------------------
 */

/*
 * How long the head (or trailer section) may grow now. In its field lines,
 * libmicrohttpd holds the text so far in its memory beside a record for
 * each field line before (and each query piece, and in a trailer section
 * the head's text): a line must not outgrow what is left, or it answers
 * its own 431 before the line ends (fields_fit, at the line's end, counts
 * that line's record too). The request line's bytes are max_head's alone.
 */
static size_t head_limit(const struct hp_frame *f)
{
    if (!f->query_room || f->st < ST_LINE || f->st > ST_VALUE_LF)
        return f->max_head;
    size_t used = f->held + (size_t)(f->n_fields + f->n_query) * 64 + 4096;
    size_t left = f->query_room > used ? f->query_room - used : 0;
    return left < f->max_head ? left : f->max_head;
}

static bool head_byte(struct hp_frame *f, unsigned char c)
{
    if (++f->head_len > f->max_head) {
        if (f->st >= ST_METHOD && f->st <= ST_RL_LF)
            return refuse(f, 414, "request line too long");
        return refuse(f, f->st <= ST_START_LF ? 400 : 431,
                      f->st <= ST_START_LF ? "too many empty lines"
                                           : "request head too large");
    }
    if (f->head_len > head_limit(f))
        return refuse(f, 431,
                      f->in_trailer ? "head and trailer fields too large for "
                                      "--max-header"
                                    : "too many header fields for "
                                      "--max-header");
    switch (f->st) {
    case ST_START:
    case ST_START_LF:
        if (c == '\n') { /* RFC 9112 §2.2: skip empty lines */
            f->st = ST_START;
            return true;
        }
        if (f->st == ST_START_LF)
            return refuse(f, 400, "bare CR before the request line");
        if (c == '\r') {
            f->st = ST_START_LF;
            return true;
        }
        f->st = ST_METHOD;
        return request_line_byte(f, c);
    case ST_METHOD:
    case ST_TARGET:
    case ST_VERSION:
    case ST_RL_LF:
        return request_line_byte(f, c);
    default:
        return field_byte(f, c);
    }
}

/* The first bytes of a field name, lower-cased: enough to know the three
 * names framing depends on. */
static void keep_name(struct hp_frame *f, const char *p, size_t n);

/*
 * A whole ordinary field line, `name: value CRLF`, parsed in one pass: the
 * common case. Returns its length, or 0 to leave it to the byte-wise
 * parser (a line not all in this read, or anything out of the ordinary,
 * which the byte-wise parser then judges). Same verdict either way: the
 * fuzz target feeds every input whole and split.
 */
static size_t field_line(struct hp_frame *f, const unsigned char *p, size_t n)
{
    size_t k = 0;
    while (k < n && TCHAR[p[k]])
        k++;
    if (k == 0 || k >= n || p[k] != ':')
        return 0;
    size_t name_len = k++;
    while (k < n && (p[k] == ' ' || p[k] == '\t'))
        k++;
    size_t v = k;
    while (k < n && VALUE_BYTE[p[k]])
        k++;
    size_t v_end = k;
    if (k < n && p[k] == '\r')
        k++;
    if (k >= n || p[k] != '\n' || f->head_len + k + 1 > head_limit(f))
        return 0;
    f->tok_len = 0;
    keep_name(f, (const char *)p, name_len);
    f->tok_len = name_len;
    f->field = F_NONE;
    if (!f->in_trailer)
        start_field_value(f);
    if (f->field != F_NONE) {
        size_t len = v_end - v;
        f->val_len = len < sizeof f->val ? len : sizeof f->val;
        memcpy(f->val, p + v, f->val_len);
    }
    /* Counted before end_field, as the byte-wise parser has by then: the
     * line's own bytes are in fields_fit's sum whatever the split. */
    f->head_len += k + 1;
    end_field(f);
    return k + 1;
}

/* "HTTP/1.1" or "HTTP/1.0" and the line's end, whole in this read. */
static size_t version_line(struct hp_frame *f, const char *p, size_t n)
{
    if (n < 10 || memcmp(p, "HTTP/1.", 7) != 0 || (p[7] != '1' && p[7] != '0'))
        return 0;
    size_t k = p[8] == '\r' && p[9] == '\n' ? 10 : p[8] == '\n' ? 9 : 0;
    if (k == 0 || f->head_len + k > f->max_head)
        return 0;
    f->http_minor = p[7] == '1';
    f->st = ST_LINE;
    f->tok_len = 0;
    f->head_len += k;
    return k;
}

static void keep_name(struct hp_frame *f, const char *p, size_t n)
{
    for (size_t k = 0; k < n && f->tok_len + k < sizeof f->name; k++) {
        unsigned char c = (unsigned char)p[k];
        f->name[f->tok_len + k] = (char)(c | (c >= 'A' && c <= 'Z' ? 0x20 : 0));
    }
}

/*
 * The length of the run of bytes at p (at most n) that the state the
 * parser is in would only count: the common case, a field value or a path,
 * goes through a table lookup a byte instead of the state machine. Fields
 * whose value framing depends on, and names, are parsed byte by byte.
 */
static size_t plain_run(const struct hp_frame *f, const unsigned char *p,
                        size_t n)
{
    const uint8_t *table;
    if (f->st == ST_VALUE && f->field == F_NONE)
        table = VALUE_BYTE;
    else if (f->st == ST_TARGET && !f->in_query && f->pct == 0 &&
             (f->form == T_ORIGIN || f->form == T_ABSOLUTE) &&
             f->method < M_TRACE) /* TRACE, CONNECT: own_byte's match */
        table = PATH_BYTE;
    else if (f->st == ST_TARGET && f->in_query)
        table = QUERY_BYTE;
    else if (f->st == ST_NAME)
        table = TCHAR;
    else if (f->st == ST_METHOD)
        table = METHOD_BYTE;
    else
        return 0;
    size_t k = 0;
    while (k < n && table[p[k]])
        k++;
    if (f->head_len + k > head_limit(f))
        return 0; /* let the byte-wise path say which limit */
    return k;
}

/* ---- Cookie fields renamed for libmicrohttpd (framing.h) ------------------
 *
 * Why renaming, not counting: parse_cookie_header needs the value's length
 * again plus a record a pair, so a Cookie field of half of --max-header
 * (one 10 KB cookie, or a few hundred short pairs) overflows a pool sized
 * for the head, and refusing such heads is not what nginx does; a bigger
 * pool costs every request (libmicrohttpd clears it between requests).
 * Renamed, the field costs libmicrohttpd what any field costs (fields_fit).
 */
static bool starts_cookie(const char *s)
{
    return strncasecmp(s, "cookie", 6) == 0;
}

static void mark(struct hp_frame *f, char *w, size_t at)
{
    if (w && !f->in_trailer)
        w[at] = HP_FRAME_COOKIE_MARK;
}

const char *hp_frame_wire_name(const char *name, char *buf, size_t cap)
{
    size_t n = name ? strlen(name) : 0;
    if (n < 6 || !starts_cookie(name) || n >= cap)
        return name;
    memcpy(buf, name, n + 1);
    buf[5] = HP_FRAME_COOKIE_MARK;
    return buf;
}

bool hp_frame_renamed(const char *wire)
{
    return wire && strncasecmp(wire, "cooki", 5) == 0 &&
           wire[5] == HP_FRAME_COOKIE_MARK;
}

void hp_frame_client_name(char *name)
{
    if (hp_frame_renamed(name))
        name[5] = name[4] == 'I' ? 'E' : 'e';
}

static size_t feed(struct hp_frame *f, const char *p, size_t n, char *w)
{
    size_t msg_start = 0; /* where the message being parsed began here */
    size_t i = 0;

    while (i < n) {
        if (f->st == ST_DEAD)
            return msg_start;
        if (f->st == ST_BODY || f->st == ST_CDATA) {
            size_t take = n - i < f->left ? n - i : (size_t)f->left;
            f->left -= take;
            i += take;
            if (f->left == 0) {
                if (f->st == ST_CDATA)
                    f->st = ST_CDATA_CR;
                else
                    next_message(f);
            }
            continue;
        }
        size_t line = f->st == ST_LINE
                          ? field_line(f, (const unsigned char *)p + i, n - i)
                      : f->st == ST_VERSION && f->tok_len == 0
                          ? version_line(f, p + i, n - i)
                          : 0;
        if (line) {
            /* A whole field line: its name is all token bytes, so six
             * that spell "cookie" are the name's first six. */
            if (f->st == ST_LINE && n - i >= 6 && starts_cookie(p + i))
                mark(f, w, i + 5);
            i += line;
            continue;
        }
        size_t run = plain_run(f, (const unsigned char *)p + i, n - i);
        if (run) {
            if (f->st == ST_NAME) {
                keep_name(f, p + i, run);
                if (f->tok_len <= 5 && f->tok_len + run > 5 &&
                    memcmp(f->name, "cookie", 6) == 0)
                    mark(f, w, i + 5 - f->tok_len);
            } else if (f->st == ST_METHOD)
                method_bytes(f, (const unsigned char *)p + i, run);
            if (f->st != ST_VALUE)
                f->tok_len += run;
            if (f->st == ST_METHOD && f->tok_len > MAX_METHOD) {
                refuse(f, 400, "method too long");
                return msg_start;
            }
            f->head_len += run;
            i += run;
            continue;
        }
        unsigned char c = (unsigned char)p[i];
        if (f->st == ST_START && c != '\r' && c != '\n')
            msg_start = i;
        bool ok;
        bool sixth = f->st == ST_NAME && f->tok_len == 5;
        if (f->in_body && !f->in_trailer)
            ok = chunk_byte(f, c);
        else
            ok = head_byte(f, c);
        if (!ok)
            return msg_start;
        if (sixth && f->st == ST_NAME && memcmp(f->name, "cookie", 6) == 0)
            mark(f, w, i);
        i++;
    }
    if (f->st == ST_DEAD) /* a whole field line refused it (fields_fit) */
        return msg_start;
    f->rl_passed = f->st > ST_RL_LF && f->st != ST_DEAD;
    return n;
}

size_t hp_frame_feed(struct hp_frame *f, const char *p, size_t n)
{
    return feed(f, p, n, NULL);
}

size_t hp_frame_feed_edit(struct hp_frame *f, char *p, size_t n)
{
    return feed(f, p, n, p);
}
