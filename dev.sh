#!/usr/bin/env bash
# Starling's entry script: set-up, build, quick start, tests, benchmarks.
#
#   ./dev.sh quickstart   install missing Debian packages, build (release), run experiments/quickstart.yaml
#   ./dev.sh test         install missing Debian packages, build (release), run the whole test suite
#   ./dev.sh asan         the test suite under AddressSanitizer + UndefinedBehaviorSanitizer
#   ./dev.sh bench        build and run the benchmarks, and the end-to-end comparison with PyTorch
#
# Every step is idempotent and quick when nothing changed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

# Build and run dependencies, all from Debian 12's archive.
PACKAGES=(build-essential cmake ninja-build pkg-config
          libeigen3-dev libtbb-dev libyaml-cpp-dev libcli11-dev libspdlog-dev libsqlite3-dev zlib1g-dev
          libgtest-dev libgmock-dev libbenchmark-dev libopenblas-pthread-dev sqlite3 dataset-fashion-mnist
          libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler libboost-dev
          python3 python3-matplotlib)
# Only for `bench`: the PyTorch reference loop (../shared/baselines) and its fast BLAS.
BENCH_PACKAGES=(python3-torch python3-numpy libopenblas0-openmp)

install_missing() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "==> installing: ${missing[*]}"
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "error: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
    sudo=sudo
  fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

build() {  # build PRESET
  cmake --preset "$1" >/dev/null
  cmake --build --preset "$1"
}

case "${1:-}" in
  quickstart)
    install_missing "${PACKAGES[@]}"
    build release
    ./build/release/apps/starling run experiments/quickstart.yaml --threads "$(nproc)"
    ;;
  test)
    install_missing "${PACKAGES[@]}"
    build release
    ctest --preset release -j "$(nproc)"
    ;;
  asan)
    install_missing "${PACKAGES[@]}"
    build asan
    ctest --preset asan -j "$(nproc)"
    ;;
  bench)
    install_missing "${PACKAGES[@]}" "${BENCH_PACKAGES[@]}"
    build release
    /usr/bin/python3 bench/run_all.py
    ;;
  *)
    sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
