#!/usr/bin/env bash
# Every test: install, build (GCC), run the suite; build the clang tree with AddressSanitizer +
# UndefinedBehaviorSanitizer and the libFuzzer targets, run the suite again in it, then fuzz the .effcam loader and the
# Keras config path (60 s each, at once) from that same tree. Both builds share the generated test data and treat
# warnings as errors.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
jobs=$(nproc)
testdata="$PWD/build/testdata"

scripts/build.sh -DEFFCAM_WERROR=ON -DEFFCAM_TESTDATA_DIR="$testdata"
ctest --test-dir build -j "$jobs" --output-on-failure

# The Python-only tests (label python) run no effcam code and are not repeated; the memory bars are not registered.
scripts/build.sh sanitize -DEFFCAM_WERROR=ON -DEFFCAM_TESTDATA_DIR="$testdata"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build-sanitize -j "$jobs" --output-on-failure -LE python

scripts/fuzz.sh 60
