#!/usr/bin/env bash
# Installs everything effcam needs to build, test and benchmark, from Debian's apt. Idempotent.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config
  libxsimd-dev xtl-dev libstb-dev doctest-dev            # ops (xsimd needs xtl's CMake target), imaging, tests
  libjpeg62-turbo-dev libpng-dev libwebp-dev              # image decoding as Debian's PIL decodes (imaging/)
  libjpeg-turbo-progs libturbojpeg0 python3-scipy         # tests/image: cjpeg, TurboJPEG (YCCK), scipy's photos
  libhdf5-dev libzip-dev nlohmann-json3-dev zlib1g-dev    # converter
  zipcmp zipmerge ziptool                                 # required by libzip's CMake package config
  clang libclang-rt-14-dev                                # libFuzzer and sanitizer runtimes
  python3 python3-numpy python3-h5py python3-pil python3-torch python3-matplotlib  # test models, references
  libopenblas0-pthread                                    # a fast BLAS for the reference's float64 torch
  python3-torchvision                                     # bench: the ONNX model for ONNX Runtime side by side
  pybind11-dev python3-dev python3-pytest                 # the Python package (python/) and its tests
  python3-venv python3-pip python3-setuptools             # pip install --no-build-isolation ./python in a venv
  python3-django                                          # examples/django
  libcpp-httplib-dev                                      # effcam-serve's HTTP/1.1 server
  chromium fonts-dejavu-core                              # tests/serve: the web page in a headless browser
)
# bench/side_by_side.py runs ONNX Runtime under Node.js, tests/serve/check_serve_page.py puppeteer-core (npm ci
# --ignore-scripts from the committed package-lock.json: it drives the chromium above, downloads no browser); any
# installed Node.js >= 18 with npm will do.
command -v node >/dev/null && command -v npm >/dev/null || packages+=(nodejs npm)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
