#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan + UBSan) in build-fuzz and runs each from a seed corpus:
#   fuzz_model_file    the .effcam loader, SECONDS (default 60), seeds: small valid .effcam files
#   fuzz_keras_config  the Keras config.json path of effcam-convert, SECONDS / 2, seeds: the configs of the
#                      bundled model and of ../shared/fixtures/keras-real when present
# Exits non-zero on any finding.    usage: scripts/fuzz.sh [SECONDS]
set -euo pipefail

seconds="${1:-60}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${root}/build-fuzz"
cxx="$(command -v clang++-14 || command -v clang++ || true)"
[ -n "${cxx}" ] || { echo "fuzz: clang++ not found (scripts/install-deps.sh installs it)" >&2; exit 1; }
cc="${cxx/clang++/clang}"

cmake -S "${root}" -B "${build}" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_COMPILER="${cxx}" -DCMAKE_C_COMPILER="${cc}" -DEFFCAM_FUZZ=ON >/dev/null
ninja -C "${build}" -j"$(nproc)" fuzz_model_file fuzz_make_seed fuzz_keras_config
mkdir -p "${build}/fuzz-artifacts"

run() {  # run TARGET CORPUS SECONDS MAX_LEN
  "${build}/tests/$1" -max_total_time="$3" -max_len="$4" -rss_limit_mb=2048 -timeout=10 \
    -artifact_prefix="${build}/fuzz-artifacts/$1-" -print_final_stats=1 "$2"
}

corpus="${build}/fuzz-corpus/model_file"
mkdir -p "${corpus}"
"${build}/tests/fuzz_make_seed" "${corpus}"
run fuzz_model_file "${corpus}" "${seconds}" 16384

corpus="${build}/fuzz-corpus/keras_config"
mkdir -p "${corpus}"
/usr/bin/python3 - "${corpus}" "${root}"/models/*/*.keras "${root}"/../shared/fixtures/keras-real/*.keras <<'PY'
import os, sys, zipfile
for path in sys.argv[2:]:
    if os.path.isfile(path):
        with zipfile.ZipFile(path) as archive, open(os.path.join(sys.argv[1], os.path.basename(path) + ".json"), "wb") as out:
            out.write(archive.read("config.json"))
PY
run fuzz_keras_config "${corpus}" "$((seconds / 2))" 262144
