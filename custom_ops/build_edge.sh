#!/usr/bin/env bash
# Build libssvq_ort.so + ssvq_run for x86-64 (native) and aarch64 (cross, Debian's g++-aarch64-linux-gnu), each
# linked against the libonnxruntime.so of PyPI's onnxruntime wheel for that platform:
#   build/edge/<arch>/{ssvq_run, libssvq_ort.so, libonnxruntime.so.1} for arch in x86_64, aarch64
# plus build/edge/aarch64/ssvq_kernel_tests, the standalone kernel tests (every NEON set against _ref) for qemu.
# The aarch64 wheel is fetched with `pip download --platform ... --only-binary=:all:` (nothing is installed), and
# qemu-user (build/edge/qemu/root/usr/bin/qemu-aarch64) runs the aarch64 build here.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
edge="$repo/build/edge"
python="${PYTHON:-$repo/.venv/bin/python}"
ort_version="$("$python" -c 'import onnxruntime; print(onnxruntime.__version__)')"
include_dir="$(bash "$repo/custom_ops/fetch_ort_headers.sh" | tail -n 1)"
jobs="$(nproc 2>/dev/null || echo 2)"

command -v aarch64-linux-gnu-g++ >/dev/null || {
    echo "build_edge.sh: aarch64-linux-gnu-g++ not found: apt-get install g++-aarch64-linux-gnu" >&2; exit 1; }

# User-mode emulation: trixie's qemu-user is a static-pie binary; unpacked into build/, not installed. (Bookworm's
# qemu 7.2 shows the host's x86 /proc/cpuinfo to the guest, and ONNX Runtime's cpuinfo crashes on it.)
if [[ ! -x "$edge/qemu/root/usr/bin/qemu-aarch64" ]]; then
    bash "$repo/custom_ops/fetch_deb.sh" qemu-user "$edge/qemu" >/dev/null
fi

# x86-64: the pip wheel's own library.
x86_lib="$("$python" -c 'import onnxruntime, pathlib; print(next((pathlib.Path(onnxruntime.__file__).parent / "capi").glob("libonnxruntime.so.*")))')"

# aarch64: the same release's manylinux aarch64 wheel, unpacked.
arm_dir="$edge/ort-aarch64-$ort_version"
if ! ls "$arm_dir"/onnxruntime/capi/libonnxruntime.so.* >/dev/null 2>&1; then
    mkdir -p "$arm_dir"
    "$python" -m pip download -q --no-deps --only-binary=:all: --python-version 3.11 \
        --platform manylinux_2_28_aarch64 --platform manylinux2014_aarch64 "onnxruntime==$ort_version" -d "$arm_dir"
    "$python" -m zipfile -e "$arm_dir"/onnxruntime-*.whl "$arm_dir"
fi
arm_lib="$(ls "$arm_dir"/onnxruntime/capi/libonnxruntime.so.* | head -n 1)"

configure_and_build() {  # $1 build dir, $2 ORT runtime library, $3 targets (space-separated), rest: extra cmake args
    local dir="$1" lib="$2" targets="$3"
    shift 3
    # The build folder is the deployable bundle: ssvq_run, libssvq_ort.so and libonnxruntime.so.1 side by side
    # (ssvq_run finds the runtime through RPATH=$ORIGIN).
    mkdir -p "$dir"
    cp -u "$lib" "$dir/libonnxruntime.so.1"
    cmake -S "$repo/custom_ops" -B "$dir" -DCMAKE_BUILD_TYPE=Release -DSSVQ_ORT_INCLUDE_DIR="$include_dir" \
        -DSSVQ_ORT_RUNTIME_LIBRARY="$dir/libonnxruntime.so.1" "$@" >/dev/null
    # shellcheck disable=SC2086  # one word per target
    cmake --build "$dir" -j "$jobs" --target $targets >/dev/null
}
configure_and_build "$edge/x86_64" "$x86_lib" "ssvq_ort ssvq_run"
configure_and_build "$edge/aarch64" "$arm_lib" "ssvq_ort ssvq_run ssvq_kernel_tests" \
    -DCMAKE_TOOLCHAIN_FILE="$repo/custom_ops/cmake/aarch64-linux-gnu.cmake"
echo "built $edge/x86_64 and $edge/aarch64 ($(file -b "$edge/aarch64/ssvq_run" | cut -d, -f1-2))"
