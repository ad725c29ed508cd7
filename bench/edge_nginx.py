"""The request-edge conformance cases (tests/conformance/run.py) against
hotpub and Debian's nginx 1.22 side by side: one markdown table row per
case, case | RFC | hotpub status/closed | nginx status/closed | expected.

A cell is the final statuses seen on the connection ("-" for none) and
whether the server closed it within the case's deadline; a trailing "!"
marks an answer that does not meet the expectation (the reason follows
the table). Exits 0 when both servers were measured, 1 otherwise.

    HOTPUB=/path/to/hotpub python3 bench/edge_nginx.py [SUBSTRING...]
"""

import importlib.util
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def load_suite():
    path = os.path.join(REPO, "tests", "conformance", "run.py")
    spec = importlib.util.spec_from_file_location("conformance", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def expected(case):
    close = {True: "closed", False: "open", None: "either"}[case.close]
    st = "/".join(str(s) for s in case.status)
    if case.responses != 1:
        st = "%s x%d" % (st, case.responses)
    return "%s %s%s" % (st, close, ", at once" if case.at_once else "")


def cell(ex, err):
    if ex is None:
        return "not run"
    return conf.describe(ex) + (" !" if err else "")


def main(argv):
    os.environ.setdefault("HOTPUB_BIN", os.environ.get(
        "HOTPUB", os.path.join(REPO, "hotpub")))
    cases = conf.select(argv)
    hp = conf.run_cases("hotpub", cases)
    ng = conf.run_cases("nginx", cases)
    print("| case | RFC | hotpub | nginx 1.22 | expected |")
    print("|---|---|---|---|---|")
    notes = []
    for (c, hx, herr), (_, nx, nerr) in zip(hp, ng):
        print("| %s | %s | %s | %s | %s |" % (c.name, c.rfc, cell(hx, herr),
                                             cell(nx, nerr), expected(c)))
        if c.note:
            notes.append("%s: %s" % (c.name, c.note))
        for who, err in (("hotpub", herr), ("nginx", nerr)):
            if err:
                notes.append("%s %s: %s" % (c.name, who, err))
    print()
    for n in notes:
        print("- " + n)
    ok = lambda rs: sum(1 for r in rs if r[2] is None)
    print("\nRESULT edge_nginx cases=%d hotpub_ok=%d nginx_ok=%d"
          % (len(cases), ok(hp), ok(ng)))
    measured = all(r[1] is not None for r in hp + ng)
    return 0 if measured else 1


conf = load_suite()

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
