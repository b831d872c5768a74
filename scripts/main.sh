#!/usr/bin/env bash
# The main job on the bundled default model: install, build, convert the real Food-101 EfficientNetV2-B0
# (models/food101-effv2b0) to a .effcam file, classify its sample photos and write their Grad-CAM overlays.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
model=models/food101-effv2b0
mkdir -p out
build/apps/effcam-convert "$model/food101_effv2b0.keras" out/food101.effcam --labels "$model/labels.txt"
build/apps/effcam-predict --model out/food101.effcam "$model"/samples/*.png --top-k 3 --cam gradcam \
  --overlay 'out/{name}_gradcam.png' --stats
