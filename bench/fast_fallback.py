#!/usr/bin/env python3
"""fast_fallback: what each step of the fast tier's gcc fallback costs
(src/compile.c, "the fast tier's gcc fallback"; docs/design.md, "Tiered
compile"), measured outside the server on the commands compile.c runs:

  gcc -shared          gcc -O0 compiling and linking in one run (before)
  gcc -shared +pch     the same against the precompiled hotpub.h
  gcc -c               the compile alone
  gcc -c +pch          the compile alone, precompiled hotpub.h (now)
  gcc link             gcc -shared of that object (the driver + collect2)
  ld link              ld -shared of it with crt*S.o, libgcc.a and
                       libc_nonshared.a, as compile.c links it (now)
  gcc -c +pch, ld      the fallback as built: the sum in one measurement
  tcc -c, ld           the fast tier proper, for reference

for a small page (examples/hello.c) and a 1,000-line page (the one
bench/edit_refresh.py edits). Runs are interleaved (every variant once per
round), so a busy machine slows all of them alike; printed: median, min
and max over --runs rounds.

    python3 bench/fast_fallback.py [--runs 12]
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True
BENCH = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, BENCH)
from edit_refresh import c_page  # noqa: E402

REPO = os.path.dirname(BENCH)
INC = os.path.join(REPO, "include")
# compile.c's cc_flags for the fast tier with the default --cflags -O2
FLAGS = ["-O2", "-O0", "-g", "-fPIC", "-fvisibility=hidden",
         "-Werror=implicit-function-declaration"]


def out(*cmd):
    return subprocess.check_output(cmd, text=True).strip()


def link_files():
    names = ["crti.o", "crtbeginS.o", None, "libc_nonshared.a", "crtendS.o",
             "crtn.o"]
    return [out("gcc", "-print-libgcc-file-name") if n is None else
            out("gcc", "-print-file-name=" + n) for n in names]


def timed(cmds):
    t0 = time.perf_counter()
    for c in cmds:
        subprocess.run(c, check=True, stdout=subprocess.DEVNULL)
    return (time.perf_counter() - t0) * 1000


def variants(d, src, lf):
    def cc(pch, *rest):
        return (["gcc"] + FLAGS + (["-I" + os.path.join(d, "pch")] if pch
                                   else []) +
                ["-I" + INC, "-iquote", d, "-MD", "-MF",
                 os.path.join(d, "x.d")] + list(rest) + [src])
    o, so = os.path.join(d, "x.o"), os.path.join(d, "x.so")
    ld = ["ld", "-shared", "--eh-frame-hdr", "-z", "noexecstack", "-o", so,
          lf[0], lf[1], o] + lf[2:]
    v = [("gcc -shared", [cc(False, "-shared", "-o", so)], False),
         ("gcc -shared +pch", [cc(True, "-shared", "-o", so)], False),
         ("gcc -c", [cc(False, "-c", "-o", o)], False),
         ("gcc -c +pch", [cc(True, "-c", "-o", o)], False),
         ("gcc link", [["gcc", "-shared", "-o", so, o]], True),
         ("ld link", [ld], True),
         ("gcc -c +pch, ld", [cc(True, "-c", "-o", o), ld], False)]
    if shutil.which("tcc"):
        v.append(("tcc -c, ld", [["tcc", "-c", "-fPIC", "-g", "-I" + INC,
                                  "-o", o, src], ld[:8] + [o]], False))
    return v, cc(True, "-c", "-o", o)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=12)
    args = ap.parse_args()
    d = tempfile.mkdtemp(prefix="hotpub-fast-fallback-")
    try:
        os.makedirs(os.path.join(d, "pch"))
        os.symlink(os.path.join(INC, "hotpub.h"),
                   os.path.join(d, "pch", "hotpub.h"))
        subprocess.run(["gcc"] + FLAGS + ["-I" + INC, "-x", "c-header", "-o",
                                          os.path.join(d, "pch",
                                                       "hotpub.h.gch"),
                                          os.path.join(INC, "hotpub.h")],
                       check=True)
        lf = link_files()
        pages = {"small": open(os.path.join(REPO, "examples",
                                            "hello.c")).read(),
                 "1000-line": c_page(1, 1000)}
        print("gcc %s; %d interleaved rounds; ms" % (out("gcc", "-dumpversion"),
                                                     args.runs))
        for name, text in pages.items():
            src = os.path.join(d, "p.c")
            with open(src, "w") as f:
                f.write(text)
            vs, make_o = variants(d, src, lf)
            res = {v[0]: [] for v in vs}
            for _ in range(args.runs):
                for label, cmds, needs_o in vs:
                    if needs_o:
                        subprocess.run(make_o, check=True)
                    res[label].append(timed(cmds))
            for label, xs in res.items():
                print("%-9s %-18s median %6.1f  min %6.1f  max %6.1f"
                      % (name, label, statistics.median(xs), min(xs),
                         max(xs)))
                print("RESULT fast_fallback page=%s step=%s median_ms=%.1f"
                      % (name, label.replace(" ", "_").replace(",", ""),
                         statistics.median(xs)))
    finally:
        shutil.rmtree(d, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
