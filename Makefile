# hotpub - plain make with pkg-config.
#   make            build ./hotpub (release flags)
#   make test       build, then run unit and end-to-end tests
#   make asan       build with AddressSanitizer + UBSan and run the tests
#   make tsan       build with ThreadSanitizer and run the tests
#   make deps       install the build and test dependencies (apt-get; sudo
#                   only when not root)
#   make docs       regenerate the settings table in docs/configuration.md
#   make fuzz       build every tests/fuzz/fuzz_*.c with clang + libFuzzer
#   make fuzz-run   run each fuzzer FUZZ_SECONDS (default 30) from its corpus
#   make install PREFIX=/usr/local, make uninstall PREFIX=/usr/local

PREFIX  ?= /usr/local
BINDIR  ?= $(PREFIX)/bin
INCDIR  ?= $(PREFIX)/include
DOCDIR  ?= $(PREFIX)/share/doc/hotpub
PCDIR   ?= $(PREFIX)/lib/pkgconfig

CC      ?= cc
VERSION := $(shell sed -n 's/^\#define HP_VERSION_STRING "\(.*\)"/\1/p' src/hp.h)
PKGS    := libmicrohttpd inih sqlite3 libpq libsodium jansson gnutls
OPT     ?= -O2 -g
CFLAGS  ?=
# Kore's stricter set on top: every extern function has a prototype in a
# header, no casting const away, one definition per global.
WARN    := -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter \
           -Wmissing-prototypes -Wstrict-prototypes -Wcast-qual -fno-common
BUILD   ?= build
SAN     ?=

PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS))
PKG_LIBS   := $(shell pkg-config --libs $(PKGS))

ALL_CFLAGS  = -std=gnu11 $(OPT) $(WARN) $(SAN) -Iinclude -Isrc $(PKG_CFLAGS) \
              -DHP_INCLUDE_DIR='"$(abspath include)"' -pthread -MMD -MP $(CFLAGS)
# Pages resolve hp_* against the executable: export exactly the public API,
# the functions include/hotpub.h declares (tools/api-symbols.sh), recv,
# which the request edge defines so that libmicrohttpd's reads pass through
# it (src/edge.c), and _exit and _Exit, which the guard defines so that a
# page calling them is answered like one calling exit (src/guard.c).
EXPORTS     = $(BUILD)/exports.list
ALL_LDFLAGS = $(SAN) -pthread -Wl,--dynamic-list=$(EXPORTS) $(LDFLAGS)
# jansson is the pages' JSON library too (hotpub.h includes <jansson.h>):
# pages resolve json_* against the executable's libraries, so libjansson
# must stay NEEDED even under a linker that defaults to --as-needed.
LIBS        = -Wl,--push-state,--no-as-needed $(shell pkg-config --libs jansson) \
              -Wl,--pop-state $(PKG_LIBS) -ldl

SRCS    := $(wildcard src/*.c)
OBJS    := $(SRCS:src/%.c=$(BUILD)/%.o)
LIBOBJS := $(filter-out $(BUILD)/main.o,$(OBJS))
UNITS   := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(wildcard tests/unit/*.c))

# Fuzz targets: any tests/fuzz/fuzz_NAME.c defining LLVMFuzzerTestOneInput,
# with its seeds in tests/fuzz/corpus/NAME/ (and an optional libFuzzer
# dictionary tests/fuzz/fuzz_NAME.dict). `make fuzz` links each with
# libFuzzer (clang) into build-fuzz/; `make test` replays every corpus
# through tests/fuzz/driver.c with the normal compiler (fuzz-replay).
FUZZ_NAMES   := $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_BUILD   ?= build-fuzz
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 30
FUZZ_SAN     := address,undefined
FUZZ_CFLAGS   = -std=gnu11 -O1 -g -fno-omit-frame-pointer -Wall -Wextra \
                -Wno-unused-parameter -fno-sanitize-recover=undefined \
                -Iinclude -Isrc $(PKG_CFLAGS) -DHP_INCLUDE_DIR='"$(abspath include)"' \
                -pthread
FUZZ_OBJS    := $(patsubst src/%.c,$(FUZZ_BUILD)/obj/%.o,$(filter-out src/main.c,$(SRCS)))
FUZZERS      := $(FUZZ_NAMES:%=$(FUZZ_BUILD)/fuzz_%)
.SECONDARY: $(FUZZ_OBJS)
REPLAYS      := $(FUZZ_NAMES:%=$(BUILD)/tests/replay_%)

.PHONY: all test unit e2e asan tsan install uninstall clean format deps docs \
        check-exports check-docs check-layers fuzz fuzz-run fuzz-replay

all: hotpub$(SUFFIX)

hotpub$(SUFFIX): $(OBJS) $(EXPORTS)
	$(CC) $(ALL_LDFLAGS) -o $@ $(OBJS) $(LIBS)

$(EXPORTS): include/hotpub.h tools/api-symbols.sh | $(BUILD)
	{ echo '{'; sh tools/api-symbols.sh '$(CC)' include | sed 's/.*/  &;/'; \
	  echo '  recv;'; echo '  gnutls_record_recv;'; echo '  _exit;'; \
	  echo '  _Exit;'; echo '};'; } >$@.tmp && mv $@.tmp $@

$(BUILD)/%.o: src/%.c | $(BUILD)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(BUILD)/tests/%: tests/unit/%.c $(LIBOBJS) $(EXPORTS) | $(BUILD)/tests
	$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $< $(LIBOBJS) $(LIBS)

$(BUILD) $(BUILD)/tests:
	mkdir -p $@

unit: $(UNITS)
	@for t in $(UNITS); do echo "== $$t"; $$t || { rc=$$?; \
	  echo "FAIL $$t exited with status $$rc"; exit 1; }; done

$(BUILD)/tests/replay_%: tests/fuzz/fuzz_%.c tests/fuzz/driver.c $(LIBOBJS) | $(BUILD)/tests
	$(CC) $(filter-out -MMD -MP,$(ALL_CFLAGS)) $(ALL_LDFLAGS) -o $@ $< tests/fuzz/driver.c $(LIBOBJS) $(LIBS)

fuzz-replay: $(REPLAYS)
	@set -e; for n in $(FUZZ_NAMES); do \
	  $(BUILD)/tests/replay_$$n tests/fuzz/corpus/$$n; done

$(FUZZ_BUILD)/obj/%.o: src/%.c | $(FUZZ_BUILD)/obj
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link,$(FUZZ_SAN) -c -o $@ $<

$(FUZZ_BUILD)/fuzz_%: tests/fuzz/fuzz_%.c $(FUZZ_OBJS)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer,$(FUZZ_SAN) -o $@ $< $(FUZZ_OBJS) $(LIBS)

$(FUZZ_BUILD)/obj:
	mkdir -p $@

fuzz: $(FUZZERS)

# Bounded: each target runs FUZZ_SECONDS from its seeds (new inputs go to
# build-fuzz/corpus/NAME, crashes to build-fuzz/crash-NAME-*); a crash, leak
# or broken contract stops the run with a non-zero status.
fuzz-run: fuzz
	@set -e; for n in $(FUZZ_NAMES); do \
	  echo "== fuzz $$n for $(FUZZ_SECONDS) s"; \
	  mkdir -p $(FUZZ_BUILD)/corpus/$$n; dict=; \
	  if [ -f tests/fuzz/fuzz_$$n.dict ]; then dict=-dict=tests/fuzz/fuzz_$$n.dict; fi; \
	  $(FUZZ_BUILD)/fuzz_$$n $$dict -max_total_time=$(FUZZ_SECONDS) -timeout=10 \
	    -print_final_stats=1 -artifact_prefix=$(FUZZ_BUILD)/crash-$$n- \
	    $(FUZZ_BUILD)/corpus/$$n tests/fuzz/corpus/$$n; done

e2e: hotpub$(SUFFIX)
	HOTPUB_BIN=$(abspath hotpub$(SUFFIX)) python3 tests/e2e/run.py
	HOTPUB_BIN=$(abspath hotpub$(SUFFIX)) python3 tests/e2e/forms.py
	HOTPUB_BIN=$(abspath hotpub$(SUFFIX)) python3 tests/e2e/db.py
	HOTPUB_BIN=$(abspath hotpub$(SUFFIX)) python3 tests/e2e/reactor.py
	HOTPUB_BIN=$(abspath hotpub$(SUFFIX)) python3 tests/e2e/fresh11.py
	HOTPUB_BIN=$(abspath hotpub$(SUFFIX)) python3 tests/e2e/fresh12.py
	HOTPUB_BIN=$(abspath hotpub$(SUFFIX)) python3 tests/e2e/fresh13.py
	HOTPUB_BIN=$(abspath hotpub$(SUFFIX)) python3 tests/e2e/fresh16.py
	HOTPUB_BIN=$(abspath hotpub$(SUFFIX)) python3 tests/e2e/resphead.py
	HOTPUB_BIN=$(abspath hotpub$(SUFFIX)) python3 tests/e2e/sessions.py
	HOTPUB_BIN=$(abspath hotpub$(SUFFIX)) python3 tests/e2e/apps.py
	HOTPUB_BIN=$(abspath hotpub$(SUFFIX)) python3 tests/e2e/workers.py
	HOTPUB_BIN=$(abspath hotpub$(SUFFIX)) python3 tests/e2e/lifecycle.py
	HOTPUB_BIN=$(abspath hotpub$(SUFFIX)) python3 tests/e2e/reload.py
	HOTPUB_BIN=$(abspath hotpub$(SUFFIX)) python3 tests/conformance/run.py
	HOTPUB_BIN=$(abspath hotpub$(SUFFIX)) python3 tests/e2e/static.py
	HOTPUB_BIN=$(abspath hotpub$(SUFFIX)) python3 tests/e2e/compile.py
	HOTPUB_BIN=$(abspath hotpub$(SUFFIX)) python3 tests/e2e/kit.py
	HOTPUB_BIN=$(abspath hotpub$(SUFFIX)) python3 tests/e2e/tfb.py
	HOTPUB_BIN=$(abspath hotpub$(SUFFIX)) python3 tests/e2e/builds.py
	HOTPUB_BIN=$(abspath hotpub$(SUFFIX)) python3 tests/e2e/stream.py
	HOTPUB_BIN=$(abspath hotpub$(SUFFIX)) python3 tests/e2e/sched.py
	HOTPUB_BIN=$(abspath hotpub$(SUFFIX)) python3 tests/e2e/scale.py
	HOTPUB_BIN=$(abspath hotpub$(SUFFIX)) python3 tests/e2e/ops.py
	HOTPUB_BIN=$(abspath hotpub$(SUFFIX)) python3 tests/e2e/example.py
	HOTPUB_BIN=$(abspath hotpub$(SUFFIX)) python3 tests/e2e/devloop.py

# The binary exports exactly the functions include/hotpub.h declares.
check-exports: hotpub$(SUFFIX)
	@sh tools/check-exports.sh hotpub$(SUFFIX) '$(CC)'

# docs/configuration.md's settings tables are generated from the binary
# (hotpub config-reference); the test fails when they differ.
docs: hotpub
	sh tools/config-reference.sh ./hotpub docs/configuration.md

check-layers:
	@sh tools/check-layers.sh src

# examples/hotpub.ini must show every setting with its default, too.
check-docs: hotpub$(SUFFIX)
	@sh tools/config-reference.sh ./hotpub$(SUFFIX) docs/configuration.md --check
	@sh tools/check-example-ini.sh ./hotpub$(SUFFIX) examples/hotpub.ini

test: all
	@$(MAKE) --no-print-directory check-exports
	@$(MAKE) --no-print-directory check-layers
	@$(MAKE) --no-print-directory check-docs
	@$(MAKE) --no-print-directory unit
	@$(MAKE) --no-print-directory fuzz-replay
	@$(MAKE) --no-print-directory e2e

asan:
	$(MAKE) BUILD=build-asan SUFFIX=-asan OPT="-O1 -g -fno-omit-frame-pointer" \
	  SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined" test

tsan:
	TSAN_OPTIONS="suppressions=$(abspath tests/tsan.supp) $$TSAN_OPTIONS" \
	  $(MAKE) BUILD=build-tsan SUFFIX=-tsan OPT="-O1 -g" \
	  SAN="-fsanitize=thread" test

install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(INCDIR) $(DESTDIR)$(DOCDIR) \
	  $(DESTDIR)$(PCDIR)
	install -m 755 hotpub $(DESTDIR)$(BINDIR)/hotpub
	install -m 644 include/hotpub.h $(DESTDIR)$(INCDIR)/hotpub.h
	install -d $(DESTDIR)$(INCDIR)/hotpub-tcc/sys
	install -m 644 include/hotpub-tcc/sys/cdefs.h \
	  $(DESTDIR)$(INCDIR)/hotpub-tcc/sys/cdefs.h
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@INCDIR@|$(INCDIR)|' \
	  -e 's|@VERSION@|$(VERSION)|' hotpub.pc.in >$(DESTDIR)$(PCDIR)/hotpub.pc
	chmod 644 $(DESTDIR)$(PCDIR)/hotpub.pc
	cp -r docs/. $(DESTDIR)$(DOCDIR)/

# Removes what install put there (the shared directories stay).
uninstall:
	rm -f $(DESTDIR)$(BINDIR)/hotpub $(DESTDIR)$(INCDIR)/hotpub.h \
	  $(DESTDIR)$(PCDIR)/hotpub.pc
	rm -rf $(DESTDIR)$(DOCDIR)

# The build and test dependencies, as root or through sudo (not needed, and
# often not installed, when already root: containers, CI).
deps:
	sh tools/deps.sh

format:
	clang-format -i include/*.h src/*.c src/*.h tests/unit/*.c tests/fuzz/*.c

clean:
	rm -rf build build-asan build-tsan $(FUZZ_BUILD) hotpub hotpub-asan hotpub-tsan

-include $(OBJS:.o=.d)
