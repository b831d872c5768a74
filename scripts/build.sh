#!/usr/bin/env bash
# Configures and builds effcam. Extra arguments go to the CMake configure step.
#   scripts/build.sh [-D...]           Release with the default compiler (GCC), in build/
#   scripts/build.sh sanitize [-D...]  clang with AddressSanitizer + UndefinedBehaviorSanitizer and the libFuzzer
#                                      targets, in build-sanitize/: the tree where scripts/test.sh runs the suite again
#                                      and scripts/fuzz.sh fuzzes
set -euo pipefail
cd "$(dirname "$0")/.."
build=build
config=(-DCMAKE_BUILD_TYPE=Release)
if [ "${1:-}" = sanitize ]; then
  shift
  cxx="$(command -v clang++-14 || command -v clang++ || true)"
  [ -n "${cxx}" ] || { echo "build: clang++ not found (scripts/install-deps.sh installs it)" >&2; exit 1; }
  build=build-sanitize
  # -O1: the tree builds in about 60% of -O3's time, and the sanitized tests, slower, give back less than half of
  # that; no debug info (the sanitizers' reports still name the functions).
  config=(-DCMAKE_BUILD_TYPE=Release "-DCMAKE_CXX_FLAGS_RELEASE=-O1 -DNDEBUG" -DCMAKE_CXX_COMPILER="${cxx}"
          -DCMAKE_C_COMPILER="${cxx/clang++/clang}" -DEFFCAM_FUZZ=ON)
fi
cmake -S . -B "${build}" -G Ninja "${config[@]}" "$@" > /dev/null
cmake --build "${build}" -j "$(nproc)"
