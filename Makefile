# Roost build.
#
#   make            build build/roost
#   make run        install what is missing, build, run `roost serve` in the foreground
#   make test       install what is missing, build, run unit and integration tests
#   make asan       the test suite under AddressSanitizer + UBSan (build-asan/)
#   make tsan       the test suite under ThreadSanitizer (build-tsan/)
#   make bench      benchmarks (not part of make test)
#   make fuzz       run every libFuzzer target FUZZ_SECONDS each (clang; not in make test)
#   make check-layers   fail on an #include that points up the layers (part of make unit)
#   make install    PREFIX=/usr/local DESTDIR= SYSCONFDIR=
#
# Sanitizer objects never mix with normal ones: each flavour has its own
# build directory.

CC ?= cc
PKG_CONFIG ?= pkg-config
PREFIX ?= /usr/local
# /etc for a system install (PREFIX=/usr), PREFIX/etc otherwise.
SYSCONFDIR ?= $(if $(filter /usr,$(PREFIX)),/etc,$(PREFIX)/etc)
SAN ?=
WERROR ?=

ifeq ($(SAN),address)
BUILD ?= build-asan
else ifeq ($(SAN),thread)
BUILD ?= build-tsan
else
BUILD ?= build
endif

PKGS := lmdb openssl libcrypt libcares libutf8proc jansson zlib libpq
TEST_PKGS := check

WARN := -Wall -Wextra -Wstrict-prototypes -Wmissing-prototypes -Wformat=2 -Wshadow \
	-Wno-unused-parameter
ifneq ($(WERROR),)
WARN += -Werror
endif

HARDEN := -fstack-protector-strong -fPIE
LDHARDEN := -pie -Wl,-z,relro -Wl,-z,now

OPT := -O2 -g
ifeq ($(SAN),address)
OPT := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
LDSAN := -fsanitize=address,undefined
else ifeq ($(SAN),thread)
OPT := -O1 -g -fno-omit-frame-pointer -fsanitize=thread
LDSAN := -fsanitize=thread
else
HARDEN += -D_FORTIFY_SOURCE=2
endif

PKG_CFLAGS = $(shell $(PKG_CONFIG) --cflags $(PKGS) 2>/dev/null)
PKG_LIBS = $(shell $(PKG_CONFIG) --libs $(PKGS) 2>/dev/null)
TEST_CFLAGS = $(shell $(PKG_CONFIG) --cflags $(TEST_PKGS) 2>/dev/null)
TEST_LIBS = $(shell $(PKG_CONFIG) --libs $(TEST_PKGS) 2>/dev/null)

# Where the web page's files are installed (a binary run from the source
# tree finds www/ beside build/ instead).
WWW_DIR := $(PREFIX)/share/roost/www

CFLAGS_ALL := -std=gnu11 $(OPT) $(WARN) $(HARDEN) -D_GNU_SOURCE -Iinclude -MMD -MP \
	-DROOST_WWW_DIR='"$(WWW_DIR)"' $(CFLAGS)
LDFLAGS_ALL := $(LDHARDEN) $(LDSAN) $(LDFLAGS)
LIBS := $(PKG_LIBS) -pthread -lm

SRC := $(wildcard core/*.c backends/*.c backends/*/*.c services/*.c protocols/*.c protocols/*/*.c \
	cli/*.c)
MAIN_SRC := cli/main.c
LIB_SRC := $(filter-out $(MAIN_SRC),$(SRC))
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o)
LIB := $(BUILD)/libroost.a

UNIT_SRC := $(wildcard tests/unit/check_*.c)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)

# Test-only protocol handlers linked into a second server binary.
TESTD_SRC := $(wildcard tests/runtime/*.c)
TESTD_OBJ := $(TESTD_SRC:%.c=$(BUILD)/%.o)
TESTD := $(if $(TESTD_SRC),$(BUILD)/roost-testd)

# Helpers the integration tests run (e.g. roost-fill, filling a mailbox).
TOOL_SRC := $(wildcard tests/tools/*.c)
TOOL_BIN := $(TOOL_SRC:tests/tools/%.c=$(BUILD)/tests/tools/%)

BENCH_SRC := $(wildcard bench/*.c)
# A benchmark of several files has a folder of its own: bench/NAME/*.c -> $(BUILD)/bench/NAME.
BENCH_MULTI := $(filter-out support,$(patsubst bench/%/,%,$(sort $(dir $(wildcard bench/*/*.c)))))
BENCH_BIN := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%) $(BENCH_MULTI:%=$(BUILD)/bench/%)
# Shared support code for the benchmarks (bench/support/*.c), linked into each.
BENCH_SUPPORT_OBJ := $(patsubst %.c,$(BUILD)/%.o,$(wildcard bench/support/*.c))

.PHONY: all run test unit integration asan tsan bench fuzz stress install clean deps deps-test \
	check-build check-layers format format-check

all: $(BUILD)/roost $(TESTD) $(BENCH_BIN) $(TOOL_BIN)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(PKG_CFLAGS) -c $< -o $@

$(LIB): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@
	ar rcs $@ $^

$(BUILD)/roost: $(BUILD)/cli/main.o $(LIB)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LIBS)

$(BUILD)/roost-testd: $(TESTD_OBJ) $(LIB)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LIBS)

$(BUILD)/tests/check_%: tests/unit/check_%.c $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(PKG_CFLAGS) $(TEST_CFLAGS) -Itests/unit $< -o $@ \
		$(LDFLAGS_ALL) $(LIB) $(TEST_LIBS) $(LIBS)

$(BUILD)/tests/tools/%: tests/tools/%.c $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(PKG_CFLAGS) $< -o $@ $(LDFLAGS_ALL) $(LIB) $(LIBS)

$(BUILD)/bench/%: bench/%.c $(BENCH_SUPPORT_OBJ) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(PKG_CFLAGS) -Ibench $< -o $@ $(LDFLAGS_ALL) $(BENCH_SUPPORT_OBJ) $(LIB) $(LIBS)

# Its objects go to $(BUILD)/bench/NAME.objs/ (the program takes the name NAME).
define bench_multi
$(1)_OBJ := $(patsubst bench/$(1)/%.c,$(BUILD)/bench/$(1).objs/%.o,$(wildcard bench/$(1)/*.c))
$(BUILD)/bench/$(1).objs/%.o: bench/$(1)/%.c
	@mkdir -p $$(dir $$@)
	$$(CC) $$(CFLAGS_ALL) $$(PKG_CFLAGS) -Ibench -c $$< -o $$@
$(BUILD)/bench/$(1): $$($(1)_OBJ) $(BENCH_SUPPORT_OBJ) $(LIB)
	$$(CC) $$(LDFLAGS_ALL) -o $$@ $$^ $$(LIBS)
endef
$(foreach b,$(BENCH_MULTI),$(eval $(call bench_multi,$(b))))

deps:
	@scripts/deps.sh build

deps-test:
	@scripts/deps.sh test

run: deps
	@$(MAKE) --no-print-directory $(BUILD)/roost
	./$(BUILD)/roost serve

# The whole suite: unit tests, then integration tests against real servers.
test: deps-test
	@$(MAKE) --no-print-directory all $(UNIT_BIN)
	@$(MAKE) --no-print-directory unit integration

# The layer rule (core <- backends <- services <- protocols <- cli) is checked
# with the unit tests: an upward #include fails them.
unit: $(UNIT_BIN)
	@python3 scripts/check-layers.py
	@scripts/run-unit.sh $(UNIT_BIN)

check-layers:
	@python3 scripts/check-layers.py

integration: $(BUILD)/roost $(TESTD) $(TOOL_BIN)
	@ROOST_BIN=$(abspath $(BUILD)/roost) ROOST_TESTD=$(if $(TESTD),$(abspath $(TESTD))) \
		python3 tests/integration/run.py

asan: deps-test
	@$(MAKE) --no-print-directory SAN=address all $(UNIT_SRC:tests/unit/%.c=build-asan/tests/%)
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
		$(MAKE) --no-print-directory SAN=address unit integration

tsan: deps-test
	@$(MAKE) --no-print-directory SAN=thread all $(UNIT_SRC:tests/unit/%.c=build-tsan/tests/%)
	@TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
		$(MAKE) --no-print-directory SAN=thread unit integration

bench: deps-test
	@$(MAKE) --no-print-directory all
	@BUILD=$(BUILD) scripts/run-bench.sh $(if $(FULL),full,short)

# \Recent under load, a longer round than make test's (STRESS_APPENDS appends
# by 10 clients on each backend; not in make test).
STRESS_APPENDS ?= 20000
stress: $(BUILD)/roost $(TESTD) $(TOOL_BIN)
	@ROOST_BIN=$(abspath $(BUILD)/roost) ROOST_TESTD=$(if $(TESTD),$(abspath $(TESTD))) \
		ROOST_RECENT_APPENDS=$(STRESS_APPENDS) ROOST_TESTS=test_imap_recent \
		python3 tests/integration/run.py

# Style is clang-format's job: `make format` rewrites, `make format-check` (run by
# .ci/run) fails on any file that differs from .clang-format.
FORMAT_SRC = $(shell git ls-files '*.c' '*.h' 2>/dev/null)

format:
	@clang-format -i $(FORMAT_SRC)

format-check: deps-test
	@clang-format --dry-run --Werror $(FORMAT_SRC)

# Every libFuzzer target for FUZZ_SECONDS each (default 60).
fuzz:
	@$(MAKE) --no-print-directory -f tests/fuzz/Makefile run-all

install: $(BUILD)/roost
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(SYSCONFDIR)/roost \
		$(DESTDIR)$(PREFIX)/lib/systemd/system $(DESTDIR)$(PREFIX)/share/doc/roost
	install -m 755 $(BUILD)/roost $(DESTDIR)$(PREFIX)/bin/roost
	install -m 644 etc/roost.conf.sample $(DESTDIR)$(SYSCONFDIR)/roost/roost.conf.sample
	install -m 644 README.md $(DESTDIR)$(PREFIX)/share/doc/roost/README.md
	install -d $(DESTDIR)$(WWW_DIR)
	install -m 644 www/* $(DESTDIR)$(WWW_DIR)/
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' etc/roost.service.in \
		> $(DESTDIR)$(PREFIX)/lib/systemd/system/roost.service

clean:
	rm -rf build build-asan build-tsan build-fuzz

# A build/bench/NAME.d left from when NAME was one file would ask for bench/NAME.c.
-include $(filter-out $(BENCH_MULTI:%=$(BUILD)/bench/%.d),$(shell find $(BUILD) -name '*.d' 2>/dev/null))
