/*
 * db_stmt.c - each connection's statement cache: prepared statements kept
 * per connection, keyed by their exact SQL text, least recently used
 * evicted, dropped when the engine says a plan went stale; and the test of
 * a statement's text that says it may change the connection's session
 * (hp_db__changes_session), remembered with the cached statement so a
 * cache hit costs no second look at the text.
 *
 * Owns: struct hp_db_stmt and a connection's stmts/nstmts/tick; the pool's
 * prepares and cache_hits counters are counted here; it sets (never
 * clears) a connection's session_dirty.
 * May not touch: any engine API (it calls the driver table's prepare and
 * finalize), the pool's lists and lock, transactions, results.
 */
#include "db_lex.h"
#include "db_pool.h"

#include <assert.h>
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

void hp_db__stmt_cache_clear(hp_db *db, bool tell_server)
{
    for (size_t i = 0; i < db->nstmts; i++) {
        db->drv->finalize(db, db->stmts[i].stmt, tell_server);
        free(db->stmts[i].sql);
    }
    db->nstmts = 0;
}

static void stmt_evict(hp_db *db, size_t i)
{
    db->drv->finalize(db, db->stmts[i].stmt, true);
    free(db->stmts[i].sql);
    db->stmts[i] = db->stmts[--db->nstmts];
}

void hp_db__stmt_forget(hp_db *db, const char *sql)
{
    uint64_t h = fnv1a(sql);
    for (size_t i = 0; i < db->nstmts; i++)
        if (db->stmts[i].hash == h && strcmp(db->stmts[i].sql, sql) == 0) {
            stmt_evict(db, i);
            return;
        }
}

/* ---- statements that change the session ---------------------------------- */

static bool word_in(const char *w, size_t n, const char *const *list)
{
    for (; *list; list++)
        if (strlen(*list) == n && strncasecmp(w, *list, n) == 0)
            return true;
    return false;
}

static bool word_starts(const char *w, size_t n, const char *const *list)
{
    for (; *list; list++) {
        size_t k = strlen(*list);
        if (n >= k && strncasecmp(w, *list, k) == 0)
            return true;
    }
    return false;
}

/* A session-level advisory lock function (pg_advisory_lock,
 * pg_try_advisory_lock_shared, pg_advisory_unlock_all, ...); the _xact_
 * ones end with the transaction. */
static bool advisory(const char *w, size_t n)
{
    char low[64];
    if (n >= sizeof low)
        return false;
    for (size_t i = 0; i < n; i++)
        low[i] = (char)tolower((unsigned char)w[i]);
    low[n] = '\0';
    return strstr(low, "advisory") && !strstr(low, "xact");
}

/*
 * Whether sql may change what the connection keeps from one transaction to
 * the next (its session), judged from its words, case-insensitively, both
 * engines' at once, read with the engine's lexical rules (db_lex.c: a
 * nested comment, a string, a quoted identifier end where the engine ends
 * them). Conservative: the text inside a string constant or a quoted
 * identifier is read as SQL too (a function's body, EXECUTE 'SET ...',
 * format('SET ...')), so a word there, or a column named "temp", counts
 * too (it costs one reset). Session changes:
 *
 *   - SET as a statement's first word (at the start, after ';', or after
 *     BEGIN, THEN, ELSE, LOOP, EXECUTE of a function body), unless
 *     followed by LOCAL, TRANSACTION or CONSTRAINTS (those end with the
 *     transaction; not local.x, a custom setting's name): SET ROLE,
 *     SET SESSION AUTHORIZATION, SET search_path;
 *     an UPDATE's SET is not first. RESET, LOAD and DO (an anonymous block
 *     can do anything), first too.
 *   - anywhere: set_config, unless its third argument is the literal true
 *     (is_local, as SET LOCAL; a parameter there may be false), LISTEN,
 *     PREPARE, DEALLOCATE, DISCARD, TEMP, TEMPORARY, pg_temp*, HOLD (a
 *     cursor WITH HOLD), a session advisory lock function, dblink_connect*;
 *     SQLite's PRAGMA, ATTACH, DETACH, load_extension.
 *   - what the text cannot be read for: a Unicode escape (U&"..", U&'..')
 *     or a numeric escape in an E'..' string, which may spell any of these
 *     words; quotes nested deeper than SESSION_DEPTH.
 *
 * What the text cannot show is not seen: a function or procedure defined
 * elsewhere that calls set_config or takes an advisory lock, text built
 * by concatenation and run by EXECUTE (docs/database.md, "What a request
 * can rely on").
 */
#define SESSION_DEPTH 8

/* After "set_config" at p: whether its third argument is the literal
 * true (is_local: the setting ends with the transaction, as SET LOCAL).
 * Anything else (false, a parameter, an expression, no parenthesis) may
 * set it for the session. Strings, identifiers and parentheses inside the
 * arguments are stepped over by the engine's rules; a comment, a
 * backslash or an escape among them makes it "may". */
static bool set_config_local(const char *p, const char *end,
                             enum hp_db_lex_rules pg)
{
    struct hp_db_lex t;
    while (p < end && isspace((unsigned char)*p))
        p++;
    if (p >= end || *p++ != '(')
        return false;
    const char *last = p; /* the start of the current argument */
    int depth = 0, arg = 0;
    while (p < end) {
        const char *q = hp_db__lex_skip(p, end, pg, &t);
        if (q != p) {
            if (t.kind == HP_LEX_COMMENT || t.escapes ||
                memchr(t.body, '\\', (size_t)(t.body_end - t.body)))
                return false;
            p = q;
            continue;
        }
        if (hp_db__lex_word_char((unsigned char)*p)) {
            /* a whole word: box'..' is box then a string, not X'..' */
            while (p < end && hp_db__lex_word_char((unsigned char)*p))
                p++;
            continue;
        }
        char c = *p++;
        if (c == '(') {
            depth++;
        } else if (c == ',' && depth == 0) {
            arg++;
            last = p;
        } else if (c == ')' && depth-- == 0) {
            p--;
            break;
        }
    }
    if (p >= end || *p != ')' || arg != 2)
        return false;
    while (isspace((unsigned char)*last))
        last++;
    const char *e = p;
    while (e > last && isspace((unsigned char)e[-1]))
        e--;
    return e - last == 4 && strncasecmp(last, "true", 4) == 0;
}

/* One word w (n bytes; the text after it runs to end) of a statement:
 * whether it says the session may change; *start and *after_set carry
 * what the words before it said. */
/* Whether the next thing after p (blanks and comments skipped) is '.':
 * "SET local.x" names a custom setting local.x (for the session), it is
 * not SET LOCAL. */
static bool dot_follows(const char *p, const char *end, enum hp_db_lex_rules pg)
{
    struct hp_db_lex t;
    while (p < end) {
        const char *q = hp_db__lex_skip(p, end, pg, &t);
        if (q != p && t.kind == HP_LEX_COMMENT)
            p = q;
        else if (isspace((unsigned char)*p))
            p++;
        else
            return *p == '.';
    }
    return false;
}

static bool session_word(const char *w, size_t n, const char *end,
                         enum hp_db_lex_rules pg, bool *start, bool *after_set)
{
    static const char *const anywhere[] = {
        "listen", "prepare", "deallocate", "discard", "temp", "temporary",
        "hold",   "pragma",  "attach",     "detach",  NULL};
    static const char *const prefixes[] = {"pg_temp", "dblink_connect",
                                           "load_extension", NULL};
    static const char *const first[] = {"reset", "load", "do", NULL};
    static const char *const scoped[] = {"local", "transaction", "constraints",
                                         NULL};
    static const char *const openers[] = {"begin", "then",    "else",
                                          "loop",  "execute", NULL};
    if (*after_set && (!word_in(w, n, scoped) || dot_follows(w + n, end, pg)))
        return true;
    *after_set = *start && n == 3 && strncasecmp(w, "set", 3) == 0;
    if (n == 10 && strncasecmp(w, "set_config", 10) == 0 &&
        !set_config_local(w + n, end, pg))
        return true;
    if ((*start && word_in(w, n, first)) || word_in(w, n, anywhere) ||
        word_starts(w, n, prefixes) || advisory(w, n))
        return true;
    *start = word_in(w, n, openers);
    return false;
}

/* The text from p to end, at depth quotes inside the statement. */
static bool session_text(const char *p, const char *end,
                         enum hp_db_lex_rules pg, int depth)
{
    bool start = true, after_set = false;
    struct hp_db_lex t;
    while (p < end) {
        const char *q = hp_db__lex_skip(p, end, pg, &t);
        if (q != p) {
            bool quoted = t.kind != HP_LEX_COMMENT;
            if (t.escapes || (quoted && after_set))
                return true; /* SET "role" ...: a name, not LOCAL */
            if (quoted && (depth >= SESSION_DEPTH ||
                           session_text(t.body, t.body_end, pg, depth + 1)))
                return true;
            start = start && !quoted;
            p = q;
            continue;
        }
        if (!isalpha((unsigned char)*p) && *p != '_' &&
            (unsigned char)*p < 0x80) {
            if (*p++ == ';')
                start = true, after_set = false;
            continue;
        }
        const char *w = p;
        while (p < end && hp_db__lex_word_char((unsigned char)*p))
            p++;
        if (session_word(w, (size_t)(p - w), end, pg, &start, &after_set))
            return true;
    }
    return false;
}

bool hp_db__changes_session(const char *sql, enum hp_db_lex_rules pg)
{
    return session_text(sql, sql + strlen(sql), pg, 0);
}

enum hp_db_lex_rules hp_db__lex_rules(hp_db *db)
{
    if (db->drv->engine != HP_DB_POSTGRESQL)
        return HP_LEX_SQLITE;
    return db->drv->backslash_strings && db->drv->backslash_strings(db)
               ? HP_LEX_PG_BACKSLASH
               : HP_LEX_PG;
}

char *hp_db__lex_text(hp_db *db, const char *sql, char *buf, size_t size)
{
    if (db->drv->engine != HP_DB_POSTGRESQL || !db->drv->client_mb)
        return NULL;
    return hp_db__lex_mb_plain(sql, db->drv->client_mb(db), buf, size);
}

bool hp_db__changes_session_on(hp_db *db, const char *sql)
{
    char buf[256], *text = hp_db__lex_text(db, sql, buf, sizeof buf);
    bool changes =
        hp_db__changes_session(text ? text : sql, hp_db__lex_rules(db));
    if (text != buf)
        free(text);
    return changes;
}

/* ---- the cache ----------------------------------------------------------- */

static size_t stmt_lru(hp_db *db)
{
    size_t lru = 0;
    for (size_t i = 1; i < db->nstmts; i++)
        if (db->stmts[i].used < db->stmts[lru].used)
            lru = i;
    return lru;
}

/*
 * The statement for sql: from the cache (keyed by the exact text), else
 * compiled and cached, evicting the least recently used. *transient says
 * the caller must finalize it (no cache). A statement that may change the
 * session marks the connection for a reset (db->session_dirty), tested
 * once per cached statement.
 */
void *hp_db__stmt_get(hp_db *db, const char *sql, bool *transient)
{
    hp_db_pool *p = db->pool;
    size_t cap = (size_t)(p->stmt_cap > 0 ? p->stmt_cap : 0);
    uint64_t h = fnv1a(sql);

    *transient = cap == 0;
    for (size_t i = 0; i < db->nstmts; i++) {
        struct hp_db_stmt *s = &db->stmts[i];
        if (s->hash == h && strcmp(s->sql, sql) == 0) {
            s->used = ++db->tick;
            db->session_dirty |= s->session;
            atomic_fetch_add(&p->cache_hits, 1);
            return s->stmt;
        }
    }
    /* Read as the server parses it now (a statement's text is parsed
     * once, when prepared: its answer holds for the cached statement). */
    bool session = hp_db__changes_session_on(db, sql);
    db->session_dirty |= session;
    void *st = db->drv->prepare(db, sql, !*transient);
    if (!st)
        return NULL;
    atomic_fetch_add(&p->prepares, 1);
    if (*transient)
        return st;
    assert(db->nstmts <= cap);
    if (db->nstmts == cap)
        stmt_evict(db, stmt_lru(db));
    db->stmts[db->nstmts++] = (struct hp_db_stmt){.hash = h,
                                                  .sql = hp_xstrdup(sql),
                                                  .stmt = st,
                                                  .used = ++db->tick,
                                                  .session = session};
    return st;
}

/* ---- counters and forgotten statements ----------------------------------- */

void hp_db__stmt_count_runs(hp_db *db, bool transient, size_t runs)
{
    atomic_fetch_add(transient ? &db->pool->prepares : &db->pool->cache_hits,
                     runs);
}

/* The server no longer has them: forget without telling it (a DEALLOCATE of
 * a statement it does not have would fail, and abort a transaction). */
static void forget_all(hp_db *db)
{
    hp_db__stmt_cache_clear(db, false);
    if (db->drv->forget_prepared)
        db->drv->forget_prepared(db);
}

void hp_db__stmt_failed(hp_db *db)
{
    if (strcmp(db->sqlstate, "26000") != 0)
        return;
    hp_log_error("db: the server forgot this connection's prepared "
                 "statements (a DEALLOCATE ALL or DISCARD run by a page?): "
                 "every one is prepared again when next used");
    forget_all(db);
}

void hp_db__stmt_after_run(hp_db *db, const char *sql)
{
    if (db->session_dirty &&
        (strcasestr(sql, "deallocate") || strcasestr(sql, "discard")))
        forget_all(db);
}
