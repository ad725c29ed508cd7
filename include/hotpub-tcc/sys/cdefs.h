/*
 * hotpub-tcc/sys/cdefs.h - put on the fast tier's (tcc's) include path
 * ahead of the system's, by src/compile.c only; never installed as
 * <sys/cdefs.h> on any other path.
 *
 * Why: glibc's <sys/cdefs.h> ends with `#define __attribute__(xyz)` for any
 * compiler that defines neither __GNUC__ nor __clang__, and tcc 0.9.27
 * defines neither. Once a page includes any libc header (hotpub.h does),
 * every __attribute__ it writes is erased: constructor and destructor do
 * not run, packed and aligned change struct layouts, section, weak and
 * visibility are lost, so the fast tier would behave unlike the optimized
 * one. tcc understands those attributes itself; this takes the erasure
 * back. tcc ignores the few glibc uses it does not know.
 */
#include_next <sys/cdefs.h>
#undef __attribute__
