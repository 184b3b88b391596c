#!/usr/bin/env bash
# Build libssvq_ort.so and the standalone kernel tests:  bash custom_ops/build.sh [BUILD_DIR] [extra cmake args]
# BUILD_DIR defaults to build/custom_ops (out of source). Fetches the ORT headers first (fetch_ort_headers.sh).
# Idempotent: a second run only rebuilds what changed.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build_dir="${1:-$repo/build/custom_ops}"
[[ $# -gt 0 ]] && shift

include_dir="$(bash "$repo/custom_ops/fetch_ort_headers.sh" | tail -n 1)"
jobs="$(nproc 2>/dev/null || echo 2)"

# Configure once (or when the header dir / extra args change); later runs go straight to the build.
stamp="$build_dir/.ssvq_configure_args"
want="$include_dir $*"
if [[ ! -f "$build_dir/CMakeCache.txt" || ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
    cmake -S "$repo/custom_ops" -B "$build_dir" -DCMAKE_BUILD_TYPE=Release -DSSVQ_ORT_INCLUDE_DIR="$include_dir" "$@"
    echo "$want" > "$stamp"
fi
cmake --build "$build_dir" -j "$jobs"
echo "built $build_dir/libssvq_ort.so"
