# hotpub - plain make with pkg-config.
#   make            build ./hotpub (release flags)
#   make test       build, then run unit and end-to-end tests
#   make asan       build with AddressSanitizer + UBSan and run the tests
#   make tsan       build with ThreadSanitizer and run the tests
#   make install PREFIX=/usr/local

PREFIX  ?= /usr/local
BINDIR  ?= $(PREFIX)/bin
INCDIR  ?= $(PREFIX)/include
DOCDIR  ?= $(PREFIX)/share/doc/hotpub

CC      ?= cc
PKGS    := libmicrohttpd inih sqlite3 libpq
OPT     ?= -O2 -g
CFLAGS  ?=
WARN    := -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter
BUILD   ?= build
SAN     ?=

PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS))
PKG_LIBS   := $(shell pkg-config --libs $(PKGS))

ALL_CFLAGS  = -std=gnu11 $(OPT) $(WARN) $(SAN) -Iinclude -Isrc $(PKG_CFLAGS) \
              -DHP_INCLUDE_DIR='"$(abspath include)"' -pthread -MMD -MP $(CFLAGS)
# Pages resolve hp_* against the executable: export exactly the public API.
ALL_LDFLAGS = $(SAN) -pthread -Wl,--dynamic-list=src/exports.list $(LDFLAGS)
LIBS        = $(PKG_LIBS) -ldl

SRCS    := $(wildcard src/*.c)
OBJS    := $(SRCS:src/%.c=$(BUILD)/%.o)
LIBOBJS := $(filter-out $(BUILD)/main.o,$(OBJS))
UNITS   := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(wildcard tests/unit/*.c))

.PHONY: all test unit e2e asan tsan install clean format

all: hotpub$(SUFFIX)

hotpub$(SUFFIX): $(OBJS) src/exports.list
	$(CC) $(ALL_LDFLAGS) -o $@ $(OBJS) $(LIBS)

$(BUILD)/%.o: src/%.c | $(BUILD)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(BUILD)/tests/%: tests/unit/%.c $(LIBOBJS) | $(BUILD)/tests
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
	HOTPUB_BIN=$(abspath hotpub$(SUFFIX)) python3 tests/e2e/static.py

test: all
	@$(MAKE) --no-print-directory unit
	@$(MAKE) --no-print-directory e2e

asan:
	$(MAKE) BUILD=build-asan SUFFIX=-asan OPT="-O1 -g -fno-omit-frame-pointer" \
	  SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined" test

tsan:
	$(MAKE) BUILD=build-tsan SUFFIX=-tsan OPT="-O1 -g" SAN="-fsanitize=thread" test

install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(INCDIR) $(DESTDIR)$(DOCDIR)
	install -m 755 hotpub $(DESTDIR)$(BINDIR)/hotpub
	install -m 644 include/hotpub.h $(DESTDIR)$(INCDIR)/hotpub.h
	cp -r docs/. $(DESTDIR)$(DOCDIR)/

format:
	clang-format -i include/*.h src/*.c src/*.h tests/unit/*.c

clean:
	rm -rf build build-asan build-tsan hotpub hotpub-asan hotpub-tsan

-include $(OBJS:.o=.d)
