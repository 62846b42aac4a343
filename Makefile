# Gateway build. `make` builds build/gateway; `make run` and `make test`
# first install any missing Debian packages (scripts/ensure-deps.sh).

PKGS     := lua5.4 libwebsockets libuv libpcre2-8 hiredis lua5.4-cjson libnghttp2 openssl
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

CC      ?= cc
OPT     ?= -O2 -g
WARN    := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes
CFLAGS  ?= $(OPT)
ALL_CFLAGS = -std=c11 -D_GNU_SOURCE -Icore $(WARN) $(CFLAGS) $(PKG_CFLAGS) -MMD -MP
LDLIBS  = $(PKG_LIBS) -lhttp_parser -lm

BUILD   ?= build
LUA_DIR := $(CURDIR)/lua

# Everything but main.c goes into a static library shared by the binary,
# the unit tests and the Lua module used by busted.
CORE_SRC := $(filter-out core/vm/luamod.c,$(wildcard core/*/*.c))
CORE_OBJ := $(CORE_SRC:core/%.c=$(BUILD)/obj/%.o)
PIC_SRC  := core/base/gw.c core/vm/luamod.c core/vm/corelib.c core/vm/regexlib.c core/vm/jsonlib.c \
            core/base/regex.c core/base/query.c core/base/log.c core/base/mime.c core/base/random.c
PIC_OBJ  := $(PIC_SRC:core/%.c=$(BUILD)/pic/%.o)
UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)

# Example C modules: examples/modules/<name>/*.c -> build/modules/<name>.so
MODULE_DIRS := $(wildcard examples/modules/*)
MODULE_SO   := $(MODULE_DIRS:examples/modules/%=$(BUILD)/modules/%.so)

# C modules linked into the binary instead of loaded from a .so: folders of
# .c files, the folder's name being the module's (the config lists it by name,
# without a path); STATIC_LDLIBS adds the libraries they need. For example
#   make STATIC_MODULES=examples/modules/hello
STATIC_MODULES ?=
STATIC_LDLIBS  ?=
STATIC_A := $(BUILD)/static/modules.a

.PHONY: install uninstall testhost test-layers fuzz fuzz-bins fuzz-run fuzz-long test-fuzz smoke all run test test-unit test-unit-asan test-lua test-integration test-asan asan clean deps bench modules FORCE

all: $(BUILD)/gateway $(BUILD)/lua/gateway/core.so

$(BUILD)/obj/%.o: core/%.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -DGW_LUA_DIR='"$(LUA_DIR)"' -c $< -o $@

$(BUILD)/pic/%.o: core/%.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -DGW_LUA_DIR='"$(LUA_DIR)"' -fPIC -c $< -o $@

$(BUILD)/libgw.a: $(CORE_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^

# Rebuilt each run (the module list is a make variable); replaced only when it changed.
$(STATIC_A): FORCE
	@scripts/static-modules.sh $(BUILD)/static "$(CC) -std=c11 -D_GNU_SOURCE $(WARN) $(CFLAGS) $(PKG_CFLAGS) -Icore" $(STATIC_MODULES)

FORCE:

$(BUILD)/gateway: $(BUILD)/obj/main.o $(BUILD)/libgw.a $(STATIC_A)
	$(CC) $(CFLAGS) -rdynamic -o $@ $(BUILD)/obj/main.o -Wl,--start-group $(BUILD)/libgw.a $(STATIC_A) -Wl,--end-group $(LDLIBS) $(STATIC_LDLIBS)

# The pure bindings as Lua C modules (gateway.core, gateway.regex and
# gateway.json: one library, entered by three names), so busted specs build
# `api` with the same C code as the gateway.
$(BUILD)/lua/gateway/core.so: $(PIC_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -shared -o $@ $^ $(shell pkg-config --libs libpcre2-8)
	ln -sf core.so $(BUILD)/lua/gateway/regex.so
	ln -sf core.so $(BUILD)/lua/gateway/json.so

# The spec helper's host (lua/gateway/test.lua, docs/testing.md): the whole core,
# position-independent, as a Lua C module that runs the runtime and its event loop
# inside busted. It resolves lua_* from the interpreter, as core.so does.
TESTHOST_OBJ  := $(CORE_SRC:core/%.c=$(BUILD)/pic/%.o) $(BUILD)/pic/testhost.o
TESTHOST_LIBS := $(shell pkg-config --libs libwebsockets libuv libpcre2-8 hiredis libnghttp2 openssl 2>/dev/null) \
                 -llua5.4-cjson -lhttp_parser -lm -lpthread

testhost: $(BUILD)/lua/gateway/testhost.so

$(BUILD)/pic/static/modules.a: FORCE
	@scripts/static-modules.sh $(BUILD)/pic/static "$(CC) -std=c11 -D_GNU_SOURCE $(WARN) $(CFLAGS) $(PKG_CFLAGS) -Icore -fPIC" $(STATIC_MODULES)

$(BUILD)/lua/gateway/testhost.so: $(TESTHOST_OBJ) $(BUILD)/pic/static/modules.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -shared -o $@ $(TESTHOST_OBJ) $(BUILD)/pic/static/modules.a $(TESTHOST_LIBS) $(STATIC_LDLIBS)

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libgw.a $(STATIC_A)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Icore -o $@ $< -Wl,--start-group $(BUILD)/libgw.a $(STATIC_A) -Wl,--end-group $(LDLIBS) $(STATIC_LDLIBS) -lcmocka

# A module is built against gateway.h and the Lua and libuv headers only; it resolves
# gateway_* and lua_* from the gateway binary (linked with -rdynamic).
modules: $(MODULE_SO)

$(BUILD)/modules/%.so: examples/modules/%/*.c core/gateway.h
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -D_GNU_SOURCE $(WARN) -O2 -g -shared -fPIC $(shell pkg-config --cflags lua5.4 libuv hiredis) -Icore \
	  -o $@ $(filter %.c,$^)

deps:
	@scripts/ensure-deps.sh build

# Runs gateway.lua, or the example config when there is none, with a
# private redis-server when no Redis URL is given.
run:
	@scripts/ensure-deps.sh run
	@$(MAKE) --no-print-directory all
	@scripts/run.sh

test:
	@scripts/ensure-deps.sh test
	@$(MAKE) --no-print-directory all modules
	@$(MAKE) --no-print-directory test-layers test-unit test-lua test-integration test-unit-asan test-asan test-fuzz

# core/'s floors and circles, from its includes and its objects' symbols
# (docs/architecture.md).
test-layers: $(BUILD)/gateway
	@python3 scripts/check-layers.py --objects $(BUILD)/obj

test-unit: $(UNIT_BIN)
	@set -e; for t in $(UNIT_BIN); do echo "== $$t"; $$t; done

# The unit tests again on the sanitizer build, where the out-of-memory tests
# try one allocation in three failing (GW_OOM_STEP) and LeakSanitizer checks
# that none of them leaks.
test-unit-asan:
	@$(MAKE) --no-print-directory BUILD=$(BUILD)/asan OPT="$(ASAN_OPT)" $(UNIT_SRC:tests/unit/%.c=$(BUILD)/asan/tests/%)
	@set -e; for t in $(UNIT_SRC:tests/unit/%.c=$(BUILD)/asan/tests/%); do echo "== $$t"; \
	  GW_OOM_STEP=3 LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp $$t; done

test-lua: $(BUILD)/lua/gateway/core.so $(BUILD)/lua/gateway/testhost.so $(BUILD)/gateway modules
	GATEWAY_LOG_LEVEL=crit busted --lua=lua5.4 tests/lua

test-integration: $(BUILD)/gateway modules $(BUILD)/lua/gateway/testhost.so
	/usr/bin/python3 -m pytest -q tests/integration

# The abuse tests again, against the sanitizer build.
test-asan: asan modules
	GATEWAY_BIN=$(CURDIR)/$(BUILD)/asan/gateway LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp \
	  /usr/bin/python3 -m pytest -q -m asan tests/integration

ASAN_OPT := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined,float-cast-overflow -fno-sanitize-recover=undefined,float-cast-overflow

asan:
	@$(MAKE) --no-print-directory BUILD=$(BUILD)/asan OPT="$(ASAN_OPT)" $(BUILD)/asan/gateway

# The gateway against nginx + Lua in one run (bench/README.md); BENCH_ARGS=--quick for a short one.
bench:
	@scripts/ensure-deps.sh bench
	bench/compare.sh $(BENCH_ARGS)

# libFuzzer targets (clang, Debian's libclang-rt-14-dev; docs/reliability.md):
# fuzz/<target>.c -> $(BUILD)/fuzz/<target>, each with its seeds in
# fuzz/corpus/<target>. They link a libgw.a of their own, built with clang
# and the sanitizers under $(BUILD)/fuzz (a second make with BUILD set
# there). `make fuzz-run` replays each target's seeds then explores for
# FUZZ_SECONDS; new inputs that found new paths go to
# $(BUILD)/fuzz/corpus-<target>, crashes to $(BUILD)/fuzz/crash-*, logs to
# $(BUILD)/fuzz/<target>.log. FUZZ_TARGETS picks some; FUZZ_JOBS runs that
# many targets at once.
FUZZ_CC      ?= clang
FUZZ_TARGETS ?= http1 query wsmsg lines message socket router config h2
FUZZ_SECONDS ?= 60
FUZZ_LONG_SECONDS ?= 3600
FUZZ_JOBS    ?= 1
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_LIB_OPT := -g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer-no-link $(FUZZ_SAN)
# The targets themselves, as the second make (BUILD=$(BUILD)/fuzz) names them.
FUZZ_BINS    := $(addprefix $(BUILD)/,$(FUZZ_TARGETS))

fuzz:
	@$(MAKE) --no-print-directory BUILD=$(BUILD)/fuzz CC=$(FUZZ_CC) OPT="$(FUZZ_LIB_OPT)" \
	  FUZZ_TARGETS="$(FUZZ_TARGETS)" fuzz-bins

# Only in the second make, where BUILD is $(BUILD)/fuzz.
fuzz-bins: $(FUZZ_BINS)

$(FUZZ_BINS): $(BUILD)/%: fuzz/%.c fuzz/runtime.h $(BUILD)/libgw.a $(STATIC_A)
	$(CC) $(ALL_CFLAGS) -fsanitize=fuzzer -DFUZZ_PROJECT='"$(CURDIR)/fuzz/project"' -o $@ $< \
	  -Wl,--start-group $(BUILD)/libgw.a $(STATIC_A) -Wl,--end-group $(LDLIBS) $(STATIC_LDLIBS)

# In `make test`: each target's seeds, then a short exploration (a minute in all).
test-fuzz:
	@$(MAKE) --no-print-directory fuzz-run FUZZ_SECONDS=6

fuzz-run: fuzz
	@scripts/fuzz.sh -j $(FUZZ_JOBS) $(BUILD)/fuzz $(FUZZ_SECONDS) $(FUZZ_TARGETS)

# Each target for an hour (FUZZ_LONG_SECONDS), FUZZ_JOBS at a time.
fuzz-long:
	@$(MAKE) --no-print-directory fuzz-run FUZZ_SECONDS=$(FUZZ_LONG_SECONDS)

# The black-box smoke (scripts/smoke.py) against a gateway it starts, for SMOKE_SECONDS.
SMOKE_SECONDS ?= 60
smoke: all
	python3 scripts/smoke.py --gateway $(BUILD)/gateway --seconds $(SMOKE_SECONDS) --log $(BUILD)/smoke-inputs.jsonl

# Install (docs/install.md): `make install PREFIX=/usr/local DESTDIR=`.
# The binary finds its Lua runtime at <bindir>/../share/gateway/lua and
# gateway.pc its headers relative to itself, so the tree can be moved as a
# whole (PREFIX is baked into the systemd unit only).
PREFIX      ?= /usr/local
DESTDIR     ?=
BINDIR      := $(PREFIX)/bin
SHAREDIR    := $(PREFIX)/share/gateway
INCLUDEDIR  := $(PREFIX)/include/gateway
LIBDIR      := $(PREFIX)/lib
MANDIR      := $(PREFIX)/share/man/man1
UNITDIR     ?= $(LIBDIR)/systemd/system
LUA_FILES   := $(shell cd lua && find . -name '*.lua' | sort)
INSTALL     ?= install

$(BUILD)/gateway.pc: scripts/gateway.pc.in core/base/gw.h
	@mkdir -p $(dir $@)
	@sed -e 's|@VERSION@|$(shell sed -n 's/^#define GW_VERSION "\(.*\)"/\1/p' core/base/gw.h)|g' \
	  scripts/gateway.pc.in > $@.tmp && mv $@.tmp $@

$(BUILD)/gateway.service: scripts/gateway.service FORCE
	@mkdir -p $(dir $@)
	@sed -e 's|/usr/local/bin/gateway|$(BINDIR)/gateway|g' -e 's|/usr/local/share/gateway|$(SHAREDIR)|g' \
	  scripts/gateway.service > $@.tmp && mv $@.tmp $@

install: all $(BUILD)/gateway.pc $(BUILD)/gateway.service
	$(INSTALL) -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(SHAREDIR)/lua $(DESTDIR)$(INCLUDEDIR) \
	  $(DESTDIR)$(LIBDIR)/pkgconfig $(DESTDIR)$(LIBDIR)/gateway/lua/gateway $(DESTDIR)$(MANDIR) \
	  $(DESTDIR)$(UNITDIR)
	$(INSTALL) -m 755 $(BUILD)/gateway $(DESTDIR)$(BINDIR)/gateway
	@set -e; for f in $(LUA_FILES); do \
	  $(INSTALL) -D -m 644 lua/$$f $(DESTDIR)$(SHAREDIR)/lua/$$f; done
	$(INSTALL) -m 644 $(BUILD)/lua/gateway/core.so $(DESTDIR)$(LIBDIR)/gateway/lua/gateway/core.so
	ln -sf core.so $(DESTDIR)$(LIBDIR)/gateway/lua/gateway/regex.so
	ln -sf core.so $(DESTDIR)$(LIBDIR)/gateway/lua/gateway/json.so
	$(INSTALL) -m 644 core/gateway.h $(DESTDIR)$(INCLUDEDIR)/gateway.h
	$(INSTALL) -m 644 $(BUILD)/gateway.pc $(DESTDIR)$(LIBDIR)/pkgconfig/gateway.pc
	$(INSTALL) -m 644 docs/gateway.1 $(DESTDIR)$(MANDIR)/gateway.1
	$(INSTALL) -m 644 gateway.lua.example $(DESTDIR)$(SHAREDIR)/gateway.lua.example
	$(INSTALL) -m 644 $(BUILD)/gateway.service $(DESTDIR)$(UNITDIR)/gateway.service

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/gateway $(DESTDIR)$(INCLUDEDIR)/gateway.h \
	  $(DESTDIR)$(LIBDIR)/pkgconfig/gateway.pc $(DESTDIR)$(MANDIR)/gateway.1 \
	  $(DESTDIR)$(UNITDIR)/gateway.service
	rm -rf $(DESTDIR)$(SHAREDIR) $(DESTDIR)$(LIBDIR)/gateway
	-rmdir $(DESTDIR)$(INCLUDEDIR) 2>/dev/null

clean:
	rm -rf $(BUILD)

-include $(wildcard $(BUILD)/obj/*.d $(BUILD)/obj/*/*.d $(BUILD)/pic/*.d $(BUILD)/pic/*/*.d)
