#!/usr/bin/env bash
# Builds the ModelFile libFuzzer target with clang (ASan + UBSan) in build-fuzz and runs it for N seconds
# (default 60) from a seed corpus of small valid .effcam files. Exits non-zero on any finding.
#   usage: scripts/fuzz-model-file.sh [SECONDS]
set -euo pipefail

seconds="${1:-60}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${root}/build-fuzz"
cxx="$(command -v clang++-14 || command -v clang++ || true)"
[ -n "${cxx}" ] || { echo "fuzz-model-file: clang++ not found (scripts/install-deps.sh installs it)" >&2; exit 1; }
cc="${cxx/clang++/clang}"

cmake -S "${root}" -B "${build}" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_COMPILER="${cxx}" -DCMAKE_C_COMPILER="${cc}" -DEFFCAM_FUZZ=ON >/dev/null
ninja -C "${build}" -j2 fuzz_model_file fuzz_make_seed

corpus="${build}/fuzz-corpus/model_file"
mkdir -p "${corpus}" "${build}/fuzz-artifacts"
"${build}/tests/fuzz_make_seed" "${corpus}"
"${build}/tests/fuzz_model_file" -max_total_time="${seconds}" -max_len=16384 -rss_limit_mb=2048 \
  -artifact_prefix="${build}/fuzz-artifacts/" -print_final_stats=1 "${corpus}"
