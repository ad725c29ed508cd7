# hotpub - plain make with pkg-config.
#   make            build ./hotpub (release flags)
#   make test       build, then run unit and end-to-end tests
#   make asan       build with AddressSanitizer + UBSan and run the tests
#   make tsan       build with ThreadSanitizer and run the tests
#   make deps       install the build and test dependencies (apt-get; sudo
#                   only when not root)
#   make docs       regenerate the settings table in docs/configuration.md
#   make install PREFIX=/usr/local, make uninstall PREFIX=/usr/local

PREFIX  ?= /usr/local
BINDIR  ?= $(PREFIX)/bin
INCDIR  ?= $(PREFIX)/include
DOCDIR  ?= $(PREFIX)/share/doc/hotpub
PCDIR   ?= $(PREFIX)/lib/pkgconfig

CC      ?= cc
VERSION := $(shell sed -n 's/^\#define HP_VERSION_STRING "\(.*\)"/\1/p' src/hp.h)
PKGS    := libmicrohttpd inih sqlite3 libpq
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
# the functions include/hotpub.h declares (tools/api-symbols.sh), and recv,
# which the request edge defines so that libmicrohttpd's reads pass through
# it (src/edge.c).
EXPORTS     = $(BUILD)/exports.list
ALL_LDFLAGS = $(SAN) -pthread -Wl,--dynamic-list=$(EXPORTS) $(LDFLAGS)
LIBS        = $(PKG_LIBS) -ldl

SRCS    := $(wildcard src/*.c)
OBJS    := $(SRCS:src/%.c=$(BUILD)/%.o)
LIBOBJS := $(filter-out $(BUILD)/main.o,$(OBJS))
UNITS   := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(wildcard tests/unit/*.c))

.PHONY: all test unit e2e asan tsan install uninstall clean format deps docs \
        check-exports check-docs check-layers

all: hotpub$(SUFFIX)

hotpub$(SUFFIX): $(OBJS) $(EXPORTS)
	$(CC) $(ALL_LDFLAGS) -o $@ $(OBJS) $(LIBS)

$(EXPORTS): include/hotpub.h tools/api-symbols.sh | $(BUILD)
	{ echo '{'; sh tools/api-symbols.sh '$(CC)' include | sed 's/.*/  &;/'; \
	  echo '  recv;'; echo '};'; } >$@.tmp && mv $@.tmp $@

$(BUILD)/%.o: src/%.c | $(BUILD)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(BUILD)/tests/%: tests/unit/%.c $(LIBOBJS) $(EXPORTS) | $(BUILD)/tests
	$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $< $(LIBOBJS) $(LIBS)

$(BUILD) $(BUILD)/tests:
	mkdir -p $@

unit: $(UNITS)
	@set -e; for t in $(UNITS); do echo "== $$t"; $$t; done

e2e: hotpub$(SUFFIX)
	HOTPUB_BIN=$(abspath hotpub$(SUFFIX)) python3 tests/e2e/run.py
	HOTPUB_BIN=$(abspath hotpub$(SUFFIX)) python3 tests/e2e/db.py
	HOTPUB_BIN=$(abspath hotpub$(SUFFIX)) python3 tests/e2e/apps.py
	HOTPUB_BIN=$(abspath hotpub$(SUFFIX)) python3 tests/e2e/workers.py
	HOTPUB_BIN=$(abspath hotpub$(SUFFIX)) python3 tests/conformance/run.py
	HOTPUB_BIN=$(abspath hotpub$(SUFFIX)) python3 tests/e2e/static.py

# The binary exports exactly the functions include/hotpub.h declares.
check-exports: hotpub$(SUFFIX)
	@sh tools/check-exports.sh hotpub$(SUFFIX) '$(CC)'

# docs/configuration.md's settings tables are generated from the binary
# (hotpub config-reference); the test fails when they differ.
docs: hotpub
	sh tools/config-reference.sh ./hotpub docs/configuration.md

check-layers:
	@sh tools/check-layers.sh src

check-docs: hotpub$(SUFFIX)
	@sh tools/config-reference.sh ./hotpub$(SUFFIX) docs/configuration.md --check

test: all
	@$(MAKE) --no-print-directory check-exports
	@$(MAKE) --no-print-directory check-layers
	@$(MAKE) --no-print-directory check-docs
	@$(MAKE) --no-print-directory unit
	@$(MAKE) --no-print-directory e2e

asan:
	$(MAKE) BUILD=build-asan SUFFIX=-asan OPT="-O1 -g -fno-omit-frame-pointer" \
	  SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined" test

tsan:
	$(MAKE) BUILD=build-tsan SUFFIX=-tsan OPT="-O1 -g" SAN="-fsanitize=thread" test

install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(INCDIR) $(DESTDIR)$(DOCDIR) \
	  $(DESTDIR)$(PCDIR)
	install -m 755 hotpub $(DESTDIR)$(BINDIR)/hotpub
	install -m 644 include/hotpub.h $(DESTDIR)$(INCDIR)/hotpub.h
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
	clang-format -i include/*.h src/*.c src/*.h tests/unit/*.c

clean:
	rm -rf build build-asan build-tsan hotpub hotpub-asan hotpub-tsan

-include $(OBJS:.o=.d)
