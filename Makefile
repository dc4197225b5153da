# kerasc build. `make` builds ./kerasc, `make check` runs every test suite
# (plain and sanitizer builds), `make deps` installs what the build needs.

CC      ?= cc
PKGS    := openblas yaml-0.1 zlib libpng libjpeg cairo libcurl libcrypto hdf5 libzip
CSTD    := -std=c11 -D_GNU_SOURCE
WARN    := -Wall -Wextra -Werror -Wno-unused-parameter -Wno-format-truncation
OPT     ?= -O2 -march=x86-64-v2 -mtune=native
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CHECK_LIBS := $(shell pkg-config --libs check 2>/dev/null)
CFLAGS  ?=
# -fno-math-errno lets sqrtf vectorise; sqrt is exactly rounded either way
CFLAGS  += $(CSTD) $(WARN) $(OPT) -fno-math-errno -fopenmp -I. $(PKG_CFLAGS)
LDLIBS  := $(PKG_LIBS) -fopenmp -lm
VERSION := $(shell cat VERSION 2>/dev/null || echo 0.0.0)
CFLAGS  += -DKC_VERSION='"$(VERSION)"'

# The OpenCL backend builds when its libraries are installed (make deps); at
# run time it needs an OpenCL platform, and without one kerasc runs on the CPU.
HAVE_OPENCL := $(shell pkg-config --exists OpenCL clblast 2>/dev/null && echo 1)
ifeq ($(HAVE_OPENCL),1)
CFLAGS  += -DKC_HAVE_OPENCL -DCL_TARGET_OPENCL_VERSION=120 $(shell pkg-config --cflags OpenCL clblast)
LDLIBS  += $(shell pkg-config --libs OpenCL clblast)
BACKEND_DIRS := core/cpu core/reference core/opencl
else
BACKEND_DIRS := core/cpu core/reference
endif

BUILD   ?= build
LIB_SRC := $(wildcard core/*.c $(BACKEND_DIRS:%=%/*.c) models/*.c models/layers/*.c models/data/*.c models/applications/*.c)
CLI_SRC := $(filter-out cli/kerasc.c,$(wildcard cli/*.c))
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o) $(CLI_SRC:%.c=$(BUILD)/%.o)
TEST_SRC := $(wildcard tests/test_*.c)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)

.PHONY: all check test sanitize deps clean bench format fuzz fuzz-build
all: kerasc

kerasc: $(BUILD)/libkerasc.a $(BUILD)/cli/kerasc.o
	$(CC) $(CFLAGS) -o $@ $(BUILD)/cli/kerasc.o $(BUILD)/libkerasc.a $(LDLIBS)

$(BUILD)/libkerasc.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c -o $@ $<

$(BUILD)/tests/%: tests/%.c $(wildcard tests/*.h tests/fixtures/*/*.h) $(BUILD)/libkerasc.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(BUILD)/libkerasc.a $(CHECK_LIBS) $(LDLIBS)

-include $(LIB_OBJ:.o=.d) $(BUILD)/cli/kerasc.d

# The fuzz harnesses (tests/fuzz/README.md). The replay suite links each one
# under its own name and, like libFuzzer's -malloc_limit_mb, refuses any
# single allocation over its limit (the link wraps the allocators).
FUZZ_NAMES := $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_HDR   := $(wildcard tests/fuzz/*.h)
FUZZ_REPLAY_OBJ := $(FUZZ_NAMES:%=$(BUILD)/tests/fuzz/replay_%.o)
FUZZ_WRAP  := -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=aligned_alloc

$(BUILD)/tests/fuzz/replay_%.o: tests/fuzz/fuzz_%.c $(FUZZ_HDR)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -DKC_FUZZ_REPLAY -DLLVMFuzzerTestOneInput=kc_fuzz_$* -MMD -MP -c -o $@ $<
-include $(FUZZ_REPLAY_OBJ:.o=.d)

$(BUILD)/tests/test_fuzz_replay: tests/test_fuzz_replay.c $(wildcard tests/*.h) $(FUZZ_REPLAY_OBJ) \
    $(BUILD)/libkerasc.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(FUZZ_WRAP) -o $@ $< $(FUZZ_REPLAY_OBJ) $(BUILD)/libkerasc.a $(CHECK_LIBS) $(LDLIBS)

# Unit suites, then the command-line suite against the freshly built binary,
# then the same suites again under AddressSanitizer + UndefinedBehaviorSanitizer.
test: kerasc $(TEST_BIN)
	@set -e; for t in $(TEST_BIN); do echo "== $$t"; KERASC_OFFLINE=1 KERASC=$(CURDIR)/kerasc KERASC_SRC=$(CURDIR) $$t; done
ifeq ($(HAVE_OPENCL),1)
	@# every op again on OpenCL as a device without doubles runs it; where an
	@# OpenCL platform is installed, the backend must open
	@echo "== $(BUILD)/tests/test_backend (OpenCL in float only: KERASC_OPENCL_FP64=0)"; \
	  req=$$(clinfo -l 2>/dev/null | grep -q Platform && echo opencl); \
	  KERASC_TEST_REQUIRE=$$req KERASC_OPENCL_FP64=0 KERASC_SRC=$(CURDIR) $(BUILD)/tests/test_backend
endif

check: test
	$(MAKE) sanitize

sanitize:
	$(MAKE) BUILD=build-san OPT="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all" \
	    KERASC_SAN=1 test-san

test-san: $(BUILD)/libkerasc.a $(BUILD)/cli/kerasc.o $(TEST_BIN)
	$(CC) $(CFLAGS) -o $(BUILD)/kerasc $(BUILD)/cli/kerasc.o $(BUILD)/libkerasc.a $(LDLIBS)
	@set -e; for t in $(TEST_BIN); do echo "== [asan+ubsan] $$t"; \
	  KERASC_OFFLINE=1 KERASC=$(CURDIR)/$(BUILD)/kerasc KERASC_SRC=$(CURDIR) KERASC_QUICK=1 ASAN_OPTIONS=detect_leaks=1 LSAN_OPTIONS=suppressions=$(CURDIR)/core/opencl/lsan.supp UBSAN_OPTIONS=print_stacktrace=1 $$t; done

# clang with its sanitizer and libFuzzer runtimes (libclang-rt-dev) and
# OpenMP (libomp-dev) is for make fuzz; both are only recommended by clang.
deps:
	@SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	$$SUDO apt-get update && $$SUDO apt-get install -y --no-install-recommends \
	  build-essential pkg-config libyaml-dev libopenblas-dev zlib1g-dev libpng-dev libjpeg-dev libcairo2-dev libcurl4-openssl-dev libssl-dev libhdf5-dev libzip-dev check graphviz \
	  dataset-fashion-mnist fortunes python3-statsmodels ocl-icd-opencl-dev opencl-headers pocl-opencl-icd clinfo libclblast-dev \
	  clang libclang-rt-dev libomp-dev

# Coverage-guided fuzzing: every harness built with clang's libFuzzer under
# ASan+UBSan in $(FUZZ_BUILD), then run for FUZZ_SECONDS each on a copy of its
# seeds (tests/fuzz/run.sh prints the table; crashes land in
# $(FUZZ_BUILD)/fuzz/crashes/NAME/ and fail the target).
FUZZ_SECONDS ?= 60
FUZZ_CC      ?= clang
FUZZ_BUILD   ?= build-fuzz
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
# Kernels written with GCC's target pragmas, which clang ignores: these stay
# with the native compiler, uninstrumented (clang's libomp serves their
# GOMP calls).
FUZZ_NATIVE  := core/cpu/cpu_igemm.c core/cpu/cpu_simd.c core/cpu/cpu_act.c
fuzz:
	$(MAKE) BUILD=$(FUZZ_BUILD) CC=$(FUZZ_CC) FUZZ_NATIVE_CC=$(CC) \
	    WARN="-Wall -Wextra -Wno-unused-parameter -Wno-unknown-warning-option -Wno-pass-failed" \
	    OPT="-O1 -g -march=x86-64-v2 -fsanitize=fuzzer-no-link $(FUZZ_SAN)" fuzz-build
	FUZZ_SECONDS=$(FUZZ_SECONDS) tests/fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_NAMES)

fuzz-build: $(FUZZ_NAMES:%=$(BUILD)/fuzz/fuzz_%)

ifdef FUZZ_NATIVE_CC
$(FUZZ_NATIVE:%.c=$(BUILD)/%.o): $(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_NATIVE_CC) $(CSTD) -O2 -g -march=x86-64-v2 -fno-math-errno -fopenmp -I. $(PKG_CFLAGS) \
	    -MMD -MP -c -o $@ $<
endif

$(BUILD)/fuzz/fuzz_%: tests/fuzz/fuzz_%.c $(FUZZ_HDR) $(BUILD)/libkerasc.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -fsanitize=fuzzer -o $@ $< $(BUILD)/libkerasc.a $(LDLIBS)

# kerasc against PyTorch (and Keras when importable) on Fashion-MNIST: see tests/bench/bench.py.
PYTHON ?= python3
bench: kerasc
	KERASC=$(CURDIR)/kerasc $(PYTHON) tests/bench/bench.py

format:
	clang-format -i $(wildcard cli/*.[ch] core/*.[ch] core/*/*.[ch] models/*.[ch] models/*/*.[ch] tests/*.[ch] tests/fuzz/*.[ch])

clean:
	rm -rf build build-san build-fuzz kerasc
