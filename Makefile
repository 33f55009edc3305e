# r1.c build. `make` builds ./r1; `make test` runs the cmocka tests and checks the import order; `make debug` builds ./r1
# with -O0 -g and no OpenMP for gdb; `make asan` runs the tests under Address- and
# UndefinedBehaviorSanitizer; `make ubsan` runs them built by clang under its UndefinedBehaviorSanitizer
# (float-to-int casts out of range, signed overflow, pointer arithmetic on NULL, ...); `make fuzz`
# runs the libFuzzer harnesses of tests/fuzz/ for a few seconds each. No -ffast-math: results must be reproducible float for float.
CC      ?= cc
CFLAGS  ?= -O3 -march=native
# -fno-trapping-math promises only that no program traps on floating-point exceptions, which lets
# loops with compare-and-select (r1_expf's range checks, max) vectorise; every result is the
# same float as without it (unlike -ffast-math, it allows no reassociation or contraction).
# -fno-math-errno: sqrtf never sets errno, so it is one instruction and AdamW's loop vectorises
# (the same correctly rounded square root either way).
WARN     = -std=c11 -fno-trapping-math -fno-math-errno -Wall -Wextra -Wno-format-truncation -Wno-psabi
OMP      = -fopenmp
LDLIBS   = -lm
SRC      = formats.c tokenizer.c kernels.c moe.c gqa.c r1.c mtp.c tasks.c grpo.c pipeline.c main.c
HDR      = r1.h
TESTS    = test_io test_r1 test_moe test_gqa test_mtp test_reference test_tokenizer test_grpo
TESTBIN  = $(addprefix build/,$(TESTS))

.PHONY: all test debug asan ubsan fuzz run clean bench layers demos handout grade tutorial-check
all: r1

r1: $(SRC) $(HDR)
	$(CC) $(CFLAGS) $(WARN) $(OMP) -o $@ $(SRC) $(LDLIBS)

# gdb-friendly ./r1-debug: no optimisation, no OpenMP, no -march (the pragmas are ignored; it
# computes the same floats as ./r1, on one thread: test_debug_build_same_floats). A separate
# name, so that `make` never leaves a -O0 binary behind or replaces the one gdb is using.
debug: r1-debug
r1-debug: $(SRC) $(HDR)
	$(CC) -O0 -g $(WARN) -Wno-unknown-pragmas -o $@ $(SRC) $(LDLIBS)

build:
	mkdir -p build

# The tutorial's helper programs (tutorial/demos/*.c), at -O0 -g for gdb, linked with every
# source (main.c without its main(): -DR1_TEST): `make demos` -> build/demos/bpe_demo, ...
DEMOS = $(patsubst tutorial/demos/%.c,build/demos/%,$(wildcard tutorial/demos/*.c))
demos: $(DEMOS)
build/demos/%: tutorial/demos/%.c $(SRC) $(HDR)
	@mkdir -p build/demos
	$(CC) -O0 -g $(WARN) -Wno-unknown-pragmas -Wno-unused-function -DR1_TEST -I. -o $@ $< $(SRC) $(LDLIBS)

# Each test #includes the source files whose static functions it checks (tests/test_r1.c:
# kernels.c and r1.c, ...) and links the others; main.c is compiled with R1_TEST, which leaves
# out main().
test_includes = $(shell sed -n 's/^\#include "\([a-z0-9_]*\.c\)"/\1/p' $(1))
build/test_%: tests/test_%.c $(SRC) $(HDR) | build
	$(CC) $(TEST_CFLAGS) $(WARN) -Wno-unused-function $(OMP) -I. -DR1_TEST -o $@ $< \
	    $(filter-out $(call test_includes,$<),$(SRC)) -lcmocka $(LDLIBS)

TEST_CFLAGS ?= -O2 -g -march=native  # the same kernels (FMA) as ./r1

test: r1 r1-debug $(TESTBIN) layers
	@set -e; for t in $(TESTBIN); do echo "== $$t"; ./$$t; done
	@echo "all tests passed"

asan:
	$(MAKE) clean-tests
	$(MAKE) TEST_CFLAGS="-O1 -g -march=native -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all" $(TESTBIN)
	@set -e; for t in $(TESTBIN); do echo "== $$t (asan)"; ASAN_OPTIONS=detect_leaks=1 ./$$t; done
	$(MAKE) clean-tests
	@echo "asan: all tests clean"

# clang's UBSan: every report is fatal (-fno-sanitize-recover), so a test that triggers one fails.
UBSAN_CC ?= clang
ubsan:
	$(MAKE) clean-tests
	$(MAKE) CC=$(UBSAN_CC) TEST_CFLAGS="-O1 -g -march=native -fsanitize=undefined -fno-omit-frame-pointer -fno-sanitize-recover=all" $(TESTBIN)
	@set -e; for t in $(TESTBIN); do echo "== $$t (ubsan)"; UBSAN_OPTIONS=print_stacktrace=1 ./$$t; done
	$(MAKE) clean-tests
	@echo "ubsan: all tests clean"

# libFuzzer harnesses (tests/fuzz/fuzz_*.c): json_parse, config_from_json, st_read and
# tokenizer_load on arbitrary input, each for FUZZ_SECONDS under ASan + UBSan, starting from the
# seed corpus tests/fuzz/corpus/NAME (new inputs go to build/fuzz/NAME, crashes to build/fuzz/).
# Needs clang with libFuzzer; skipped with a message otherwise.
FUZZ_SECONDS ?= 20
FUZZ         = json config st tokenizer
FUZZ_SRC     = formats.c tokenizer.c kernels.c moe.c gqa.c r1.c mtp.c tasks.c grpo.c
fuzz:
	@if ! echo 'int LLVMFuzzerTestOneInput(const char *d, long n) { return 0; }' | \
	    $(UBSAN_CC) -fsanitize=fuzzer -x c - -o /dev/null 2>/dev/null; then \
	    echo "fuzz: skipped ($(UBSAN_CC) with libFuzzer, -fsanitize=fuzzer, not found)"; exit 0; fi; \
	set -e; mkdir -p build/fuzz; for h in $(FUZZ); do \
	    $(UBSAN_CC) -O1 -g -march=native -std=c11 -fopenmp -Wno-psabi -I. -fsanitize=fuzzer,address,undefined \
	        -fno-sanitize-recover=all -o build/fuzz/fuzz_$$h tests/fuzz/fuzz_$$h.c $(FUZZ_SRC) $(LDLIBS); \
	    mkdir -p build/fuzz/$$h; echo "== fuzz_$$h ($(FUZZ_SECONDS) s)"; \
	    ./build/fuzz/fuzz_$$h -max_total_time=$(FUZZ_SECONDS) -max_len=65536 -rss_limit_mb=2048 \
	        -artifact_prefix=build/fuzz/ -print_final_stats=1 build/fuzz/$$h tests/fuzz/corpus/$$h \
	        2>&1 | grep -E '^(stat::number_of_executed_units|==[0-9]+==ERROR|SUMMARY|.*runtime error)' ; \
	    [ -z "$$(ls build/fuzz/crash-* build/fuzz/leak-* build/fuzz/timeout-* build/fuzz/oom-* 2>/dev/null)" ] || \
	        { echo "fuzz_$$h: see build/fuzz/ (crash-*: the input)"; exit 1; }; \
	done; echo "fuzz: no crash"

# The course kit (tutorial/assignments.md): `make handout` writes build/handout/, a copy of the
# tree with the bodies between "// BEGIN ASSIGNMENT name" and "// END ASSIGNMENT name" replaced
# by a TODO and a stub; `make grade` runs tests/test_assignments.c, one process per assignment,
# and prints the points (and build/grade.json). HIDDEN=path/to/extra_tests.c adds an
# instructor's tests (a file defining HIDDEN_TESTS[]; the header of test_assignments.c says how).
handout:
	@python3 tests/handout.py build/handout
grade: | build
	$(CC) $(TEST_CFLAGS) $(WARN) -Wno-unused-function $(OMP) -I. -DR1_TEST \
	    $(if $(HIDDEN),-DHIDDEN='"$(abspath $(HIDDEN))"') -o build/test_assignments_grade \
	    tests/test_assignments.c $(filter-out $(call test_includes,tests/test_assignments.c),$(SRC)) \
	    -lcmocka $(LDLIBS)
	@sh tests/grade.sh build/test_assignments_grade

# The tutorial's command blocks, run and compared with the output the text shows
# (tests/tutorial_check.py says how blocks are marked); TUTORIAL_FULL=1 also runs the
# expensive ones (training: they need the pipeline's runs/). The gdb sessions are
# tutorial/gdb/*.gdb, run by tutorial/gdb/run.sh (skipped where gdb is missing).
tutorial-check: r1 r1-debug demos build/test_tokenizer
	@python3 tests/tutorial_check.py

clean-tests:
	rm -rf build

# The import order (r1.h): every call between the sources points down it.
layers:
	@sh tests/check_layers.sh $(CC)

# The main job: the toy corpus, then a base model pretrained from scratch (runs/base).
run: r1
	./r1 pipeline --out runs/pipeline

bench: r1
	./r1 bench

clean: clean-tests
	rm -f r1 r1-debug
