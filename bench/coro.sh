#!/usr/bin/env bash
# The cost of a coroutine switch pair (hp_coro_resume + hp_coro_yield),
# src/coro.c's hand-written x86-64 switch against its ucontext fallback
# (swapcontext: an rt_sigprocmask system call per switch), both built -O2
# from the same source. Runs test_coro's switch_cost (a printed figure,
# never an assertion) --runs times each with N pairs, pinned to one CPU when
# taskset is there, and prints the medians and a RESULT line.
# Usage: bench/coro.sh [--runs 5] [--pairs 10000000] [--cpu 1]
set -eu
runs=5 pairs=10000000 cpu=1
while [ $# -gt 0 ]; do
    case $1 in
    --runs) runs=$2; shift 2 ;;
    --pairs) pairs=$2; shift 2 ;;
    --cpu) cpu=$2; shift 2 ;;
    *) echo "usage: $0 [--runs N] [--pairs N] [--cpu N]" >&2; exit 1 ;;
    esac
done
root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
flags="-std=gnu11 -O2 -g -pthread -I$root/src"
cc $flags -o "$tmp/asm" "$root/tests/unit/test_coro.c" "$root/src/coro.c" || exit 1
cc $flags -DHP_CORO_UCONTEXT -o "$tmp/uc" "$root/tests/unit/test_coro.c" \
    "$root/src/coro.c" || exit 1
pin=
command -v taskset >/dev/null && pin="taskset -c $cpu"
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
measure() {
    for _ in $(seq "$runs"); do
        HP_CORO_BENCH_N=$pairs $pin "$1" switch_cost |
            sed -n 's/.*switch pair (resume + yield): \([0-9.]*\) ns.*/\1/p'
    done
}
asm=$(measure "$tmp/asm" | tee "$tmp/asm.txt" | median)
uc=$(measure "$tmp/uc" | tee "$tmp/uc.txt" | median)
[ -n "$asm" ] && [ -n "$uc" ] || { echo "no figure" >&2; exit 1; }
echo "x86-64 switch: $(tr '\n' ' ' <"$tmp/asm.txt")ns per pair, median $asm"
echo "swapcontext:   $(tr '\n' ' ' <"$tmp/uc.txt")ns per pair, median $uc"
echo "RESULT coro ns_per_pair=$asm ucontext_ns_per_pair=$uc runs=$runs pairs=$pairs"
