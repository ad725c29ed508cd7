/*
 * jsonmem.h - jansson's allocator for the whole process (jsonmem.c).
 */
#ifndef HP_JSONMEM_H
#define HP_JSONMEM_H

/* Give jansson hotpub's per-thread cache of small blocks (main.c, once,
 * before any thread starts). Not in sanitizer builds. */
void hp_jsonmem_install(void);

#endif
