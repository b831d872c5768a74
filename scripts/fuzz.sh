#!/usr/bin/env bash
# Builds the clang tree with ASan + UBSan and the libFuzzer targets (scripts/build.sh sanitize, build-sanitize/) and
# runs the targets at once, each from a seed corpus:
#   fuzz_model_file    the .effcam loader, SECONDS (default 60), seeds: small valid .effcam files
#   fuzz_keras_config  the Keras config.json path of effcam-convert, SECONDS, seeds: the configs of the
#                      bundled model and of ../shared/fixtures/keras-real when present
#   fuzz_image         the image decoders and the streaming resize, SECONDS, seeds: small files of every format
#                      (tests/fuzz/make_image_seeds.py)
# Exits non-zero on any finding.    usage: scripts/fuzz.sh [SECONDS]
set -euo pipefail

seconds="${1:-60}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${root}/build-sanitize"
"${root}/scripts/build.sh" sanitize
mkdir -p "${build}/fuzz-artifacts"

corpora="${build}/fuzz-corpus"
mkdir -p "${corpora}/model_file" "${corpora}/keras_config" "${corpora}/image"
/usr/bin/python3 "${root}/tests/fuzz/make_image_seeds.py" "${corpora}/image"
"${build}/tests/fuzz_make_seed" "${corpora}/model_file"
/usr/bin/python3 - "${corpora}/keras_config" "${root}"/models/*/*.keras "${root}"/../shared/fixtures/keras-real/*.keras <<'PY'
import os, sys, zipfile
for path in sys.argv[2:]:
    if os.path.isfile(path):
        with zipfile.ZipFile(path) as archive, open(os.path.join(sys.argv[1], os.path.basename(path) + ".json"), "wb") as out:
            out.write(archive.read("config.json"))
PY

declare -A pids
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT  # an interrupted run leaves no fuzzer behind
start() {  # start TARGET SECONDS MAX_LEN: in the background, its output in fuzz-artifacts/TARGET.log
  "${build}/tests/$1" -max_total_time="$2" -max_len="$3" -rss_limit_mb=2048 -timeout=10 \
    -artifact_prefix="${build}/fuzz-artifacts/$1-" -print_final_stats=1 "${corpora}/${1#fuzz_}" \
    > "${build}/fuzz-artifacts/$1.log" 2>&1 &
  pids[$1]=$!
}
start fuzz_model_file "${seconds}" 16384
start fuzz_keras_config "${seconds}" 262144
start fuzz_image "${seconds}" 65536

failed=0
for target in fuzz_model_file fuzz_keras_config fuzz_image; do
  status=0
  wait "${pids[${target}]}" || status=$?
  echo "=== ${target}: exit status ${status}"
  cat "${build}/fuzz-artifacts/${target}.log"
  [ "${status}" -eq 0 ] || failed=1
done
exit "${failed}"
