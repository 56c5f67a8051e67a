# tern: one entry point for building, testing and the guest.
#
#   make            release build: build/tern
#   make asan       AddressSanitizer + UBSan build: build-asan/tern
#   make unit       cmocka unit tests, built and run under ASan+UBSan
#   make guest      the default Debian riscv64 guest (kernel + initramfs), cached outside the tree
#   make integration  pytest integration tests against build/tern and the guest
#   make check      unit + integration
#
# Every .c file under src/ except the programs' mains (src/cli/main.c and
# src/*/*_main.c) goes into libtern.a, so a new file in a subsystem folder
# needs no Makefile change; each tests/unit/test_*.c becomes its own test
# binary linked against that library. Programs: tern (the VMM and the CLI),
# ternd (the host agent), tern-sim (the cluster simulator).

CC      ?= gcc
PKGS    := jansson libxxhash libzstd openssl libseccomp libcurl libmicrohttpd
CFLAGS_COMMON := -std=gnu17 -Wall -Wextra -Werror -Wno-unused-parameter \
                 -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
                 -D_GNU_SOURCE -Isrc -pthread -g \
                 $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
# Debian's libfdt-dev ships no pkg-config file.
LDLIBS  := -lfdt $(shell pkg-config --libs $(PKGS) 2>/dev/null || echo -ljansson -lxxhash -lzstd -lssl -lcrypto -lseccomp -lcurl -lmicrohttpd) -lm -pthread

RELEASE_CFLAGS := $(CFLAGS_COMMON) -O2
ASAN_CFLAGS    := $(CFLAGS_COMMON) -O1 -fno-omit-frame-pointer \
                  -fsanitize=address,undefined -fno-sanitize-recover=all
ASAN_LDFLAGS   := -fsanitize=address,undefined

MAIN_SRC := src/cli/main.c
AGENT_MAIN := src/agent/ternd_main.c
SIM_MAIN := src/cluster/sim_main.c
LIB_SRCS := $(filter-out $(MAIN_SRC) %_main.c,$(shell find src -name '*.c' | sort))
UNIT_SRCS := $(sort $(wildcard tests/unit/test_*.c))
UNIT_HELPERS := $(filter-out $(UNIT_SRCS),$(wildcard tests/unit/*.c))

GUEST_DIR ?= $(HOME)/.cache/tern/guest

.PHONY: all asan unit guest integration check clean bench
# Test objects are intermediates of the test binaries: keep them.
.SECONDARY:

# `make V=1` shows the full commands.
Q := $(if $(V),,@)

all: build/tern build/ternd build/tern-sim

# ---- release ------------------------------------------------------------
build/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	$(Q)$(CC) $(RELEASE_CFLAGS) -MMD -MP -c $< -o $@

build/libtern.a: $(LIB_SRCS:%.c=build/obj/%.o)
	@rm -f $@
	$(Q)ar rcs $@ $^

build/tern: build/obj/$(MAIN_SRC:.c=.o) build/libtern.a
	@echo "  LD      $@"
	$(Q)$(CC) -o $@ $^ $(LDLIBS)

build/ternd: build/obj/$(AGENT_MAIN:.c=.o) build/libtern.a
	@echo "  LD      $@"
	$(Q)$(CC) -o $@ $^ $(LDLIBS)

build/tern-sim: build/obj/$(SIM_MAIN:.c=.o) build/libtern.a
	@echo "  LD      $@"
	$(Q)$(CC) -o $@ $^ $(LDLIBS)

# ---- sanitizers -----------------------------------------------------------
asan: build-asan/tern build-asan/ternd

build-asan/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "  CC-ASAN $<"
	$(Q)$(CC) $(ASAN_CFLAGS) -MMD -MP -c $< -o $@

build-asan/libtern.a: $(LIB_SRCS:%.c=build-asan/obj/%.o)
	@rm -f $@
	$(Q)ar rcs $@ $^

build-asan/tern: build-asan/obj/$(MAIN_SRC:.c=.o) build-asan/libtern.a
	@echo "  LD      $@"
	$(Q)$(CC) $(ASAN_LDFLAGS) -o $@ $^ $(LDLIBS)

build-asan/ternd: build-asan/obj/$(AGENT_MAIN:.c=.o) build-asan/libtern.a
	@echo "  LD      $@"
	$(Q)$(CC) $(ASAN_LDFLAGS) -o $@ $^ $(LDLIBS)

# ---- unit tests (cmocka, under ASan+UBSan) ---------------------------------
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=build-asan/unit/%)

build-asan/unit/%: build-asan/obj/tests/unit/%.o $(UNIT_HELPERS:%.c=build-asan/obj/%.o) build-asan/libtern.a
	@mkdir -p $(dir $@)
	@echo "  LD      $@"
	$(Q)$(CC) $(ASAN_LDFLAGS) -o $@ $^ $(LDLIBS) -lcmocka

# Every binary runs; the target fails at the end if any of them failed.
unit: $(UNIT_BINS)
	@failed=""; for t in $(UNIT_BINS); do echo "== $$t"; $$t || failed="$$failed $$t"; done; \
	if [ -n "$$failed" ]; then echo "== unit tests FAILED:$$failed"; exit 1; fi; \
	echo "== all unit tests passed"

# ---- guest and integration ------------------------------------------------
guest:
	GUEST_DIR=$(GUEST_DIR) bash guest/build.sh

integration: build/tern build/ternd build/tern-sim build-asan/tern build-asan/ternd
	TERN_BIN=$(CURDIR)/build/tern TERN_ASAN_BIN=$(CURDIR)/build-asan/tern GUEST_DIR=$(GUEST_DIR) \
	  /usr/bin/python3 -m pytest -v tests/integration

check: unit integration

bench: build/tern
	GUEST_DIR=$(GUEST_DIR) bash bench/boot/run.sh

clean:
	rm -rf build build-asan

-include $(shell find build build-asan -name '*.d' 2>/dev/null)

# ---- fuzzing (clang + libFuzzer, ASan, UBSan) -------------------------------
# `make fuzz` builds tests/fuzz/fuzz_stream.c against an instrumented
# libtern and runs it on a copy of tests/fuzz/corpus for FUZZ_SECONDS
# (scripts/fuzz.sh; tests/fuzz/README.md). Separate from the gcc builds: its
# own compiler, flags and tree, build-fuzz/. Warnings are policed by the
# gcc builds; clang's own (gcc-only attributes, say) must not stop this one.
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_CFLAGS  := $(CFLAGS_COMMON) -Wno-error -Wno-unknown-attributes -O1 -fno-omit-frame-pointer \
                -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all
FUZZ_LDFLAGS := -fsanitize=fuzzer,address,undefined

.PHONY: fuzz fuzz-clean

build-fuzz/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "  CC-FUZZ $<"
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) -MMD -MP -c $< -o $@

build-fuzz/libtern.a: $(LIB_SRCS:%.c=build-fuzz/obj/%.o)
	@rm -f $@
	$(Q)ar rcs $@ $^

build-fuzz/fuzz_stream: build-fuzz/obj/tests/fuzz/fuzz_stream.o build-fuzz/libtern.a
	@echo "  LD      $@"
	$(Q)$(FUZZ_CC) $(FUZZ_LDFLAGS) -o $@ $^ $(LDLIBS)

fuzz:
	bash scripts/fuzz.sh $(FUZZ_SECONDS)

fuzz-clean:
	rm -rf build-fuzz

-include $(shell find build-fuzz -name '*.d' 2>/dev/null)
