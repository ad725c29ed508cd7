#!/usr/bin/env python3
"""fresh9: a new user's tests of the SQL lexer's screen of transaction
control and session test (db_lex.c, db.c, db_stmt.c).

    HOTPUB_BIN=/abs/path/hotpub [HOTPUB_PG_URL=postgresql://...] \\
        python3 tests/e2e/fresh9.py [NAME-SUBSTRING...]

Each test runs on SQLite and (with HOTPUB_PG_URL) on PostgreSQL, as db.py.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import check_eq, Skip, short  # noqa: E402
import db  # noqa: E402
from db import (ONE_CONN, TX_THEN_FAIL, cleanup, db_server,  # noqa: E402
                post_form, value)

TEST_TIMEOUT = 90.0
SUITE_BUDGET = 300.0


def run_then_fail(s, mode, stmts):
    """Run stmts on a request that then answers 500; (the page's text,
    rows committed in f9t)."""
    r = post_form(s, "/tx/then_fail", mode=mode, q=stmts)
    check_eq(r.status, 500, "%r: the request's status" % (stmts,))
    return r.text, value(s, "SELECT count(*) FROM f9t").strip()


def test_pg_end_after_begin_atomic_spelt_in_a_select_is_refused(eng):
    """FRESH9-1. db.c's tx_scan counts "begin atomic" as a block wherever
    the two words follow each other in a CREATE FUNCTION, also a column
    named begin aliased atomic (both unreserved in PostgreSQL) inside the
    body: the depth is one too many, so the script's last END (a COMMIT)
    is taken as the block's close and runs: the INSERT before it is
    committed although the request answers 500."""
    if not eng.pg:
        raise Skip("PostgreSQL's BEGIN ATOMIC")
    with db_server(eng, {"tx.c": TX_THEN_FAIL}, ONE_CONN) as s:
        value(s, "CREATE TABLE f9t (x INTEGER)")
        text, n = run_then_fail(
            s, "script",
            "INSERT INTO f9t VALUES (1); CREATE FUNCTION f9a() RETURNS int "
            "LANGUAGE sql BEGIN ATOMIC SELECT begin atomic FROM "
            "(SELECT 1 AS begin) s; END; END")
        check_eq((n, "25001" in text), ("0", True),
                 "rows committed, 25001 (page said %r)" % short(text))
        cleanup(s, eng)


def test_sqlite_trigger_using_a_column_named_end_is_not_refused(eng):
    """FRESH9-2. SQLite takes END as a column name (CREATE TABLE
    bookings (begin, end) works). tx_scan_word closes the trigger's block
    at that column's END, so the trigger's own closing END reads as a
    transaction END: the legitimate CREATE TRIGGER is refused with 25001.
    The same trigger with a column named begin passes."""
    if eng.pg:
        raise Skip("SQLite's trigger bodies")
    with db_server(eng, {"tx.c": TX_THEN_FAIL}, ONE_CONN) as s:
        value(s, "CREATE TABLE f9t (x INTEGER)")
        text, _ = run_then_fail(
            s, "script",
            "CREATE TABLE f9log (end INTEGER); CREATE TRIGGER f9tr AFTER "
            "INSERT ON f9t BEGIN INSERT INTO f9log (end) VALUES (new.x); "
            "END; INSERT INTO f9t VALUES (1)")
        check_eq(text.strip(), "0:ok", "the script's result")
        cleanup(s, eng)


def test_rollback_to_with_a_comment_before_to_is_not_refused(eng):
    """FRESH9-3. is_rollback_to (db.c) reads ROLLBACK TO word by word
    with blanks only: a comment between ROLLBACK and TO (which both engines
    skip) makes it a plain ROLLBACK, refused with 25001; after a failure the
    same ROLLBACK TO is refused with 25P02 and cannot undo the failure."""
    with db_server(eng, {"tx.c": TX_THEN_FAIL}, ONE_CONN) as s:
        value(s, "CREATE TABLE f9t (x INTEGER)")
        text, _ = run_then_fail(
            s, "script",
            "SAVEPOINT a; INSERT INTO f9t VALUES (1); "
            "ROLLBACK /* undo the insert */ TO SAVEPOINT a")
        check_eq(text.strip(), "0:ok", "the script's result")
        cleanup(s, eng)


def test_pg_set_of_a_custom_setting_named_local_dot_x_is_reset(eng):
    """FRESH9-4. db_stmt.c's session test takes SET followed by LOCAL,
    TRANSACTION or CONSTRAINTS as scoped to the transaction, without
    looking at what follows the word: SET local.f9 = 'leak' (a custom
    setting whose prefix is local, as transaction.x or constraints.x) is a
    session SET, and the next request on the pooled connection sees it."""
    if not eng.pg:
        raise Skip("PostgreSQL's custom settings")
    leaked = []
    with db_server(eng, {}, ONE_CONN) as s:
        for prefix in ("local", "transaction", "constraints"):
            r = post_form(s, "/admin/value",
                          q="SET %s.f9 = 'leak'" % prefix)
            check_eq(r.status, 200, "SET %s.f9: %s" % (prefix, short(r.body)))
            got = value(s, "SELECT coalesce(current_setting('%s.f9', true),"
                           " '')" % prefix).strip()
            if got:
                leaked.append("%s.f9: next request saw %r" % (prefix, got))
        cleanup(s, eng)
    check_eq(leaked, [], "session settings leaked to the next request")


ENGINES = db.ENGINES

if __name__ == "__main__":
    sys.exit(harness.run_suite(globals(), sys.argv[1:],
                               suite_budget=SUITE_BUDGET,
                               test_timeout=TEST_TIMEOUT, params=ENGINES,
                               list_full_names=False, verbose_total=False))
