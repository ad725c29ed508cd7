/*
 * fuzz_ini.c - the INI loader (config.c's hp_config_load over inih) on any
 * file content. Input: the file's bytes, written to a memfd that is loaded
 * by its /proc/self/fd path. The contract: it returns 0 or -1, never
 * crashes, and hp_config_free releases whatever it set.
 */
#include "hp.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static FILE *quiet;
    if (!quiet) {
        /* hp_config_load reports errors on stderr: silence the stdio
         * stream only; sanitizers write to fd 2 directly. */
        quiet = fopen("/dev/null", "w");
        if (quiet)
            stderr = quiet;
    }
    int fd = memfd_create("fuzz.ini", 0);
    if (fd < 0)
        abort();
    for (size_t off = 0; off < size;) {
        ssize_t n = write(fd, data + off, size - off);
        if (n <= 0)
            abort();
        off += (size_t)n;
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    struct hp_config c;
    hp_config_defaults(&c);
    int r = hp_config_load(&c, path);
    if (r != 0 && r != -1)
        abort();
    hp_config_free(&c);
    close(fd);
    return 0;
}
