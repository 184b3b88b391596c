#!/usr/bin/env bash
# Obtain ONNX Runtime C/C++ headers without installing anything into the system.
#
#   1. If $SSVQ_ORT_INCLUDE_DIR holds onnxruntime_cxx_api.h (directly or under onnxruntime/), use it.
#   2. Otherwise download Debian trixie's libonnxruntime-dev .deb with apt-get using a private sources list and
#      private state/cache dirs (nothing is installed, the system's apt state is untouched) and unpack it with
#      dpkg -x into build/ort-headers/.
# Prints the include dir (the folder holding onnxruntime_cxx_api.h) as the last line of stdout.
# Idempotent: a second run reuses build/ort-headers/.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="${SSVQ_ORT_HEADERS_DIR:-$repo/build/ort-headers}"

find_header_dir() {  # $1: a folder; prints the folder holding onnxruntime_cxx_api.h, if any
    local base="$1"
    for cand in "$base" "$base/onnxruntime" "$base/onnxruntime/core/session"; do
        if [[ -f "$cand/onnxruntime_cxx_api.h" ]]; then
            echo "$cand"
            return 0
        fi
    done
    return 1
}

if [[ -n "${SSVQ_ORT_INCLUDE_DIR:-}" ]]; then
    if dir="$(find_header_dir "$SSVQ_ORT_INCLUDE_DIR")"; then
        echo "$dir"
        exit 0
    fi
    echo "fetch_ort_headers.sh: SSVQ_ORT_INCLUDE_DIR=$SSVQ_ORT_INCLUDE_DIR holds no onnxruntime_cxx_api.h" >&2
    exit 1
fi

if dir="$(find_header_dir "$dest/root/usr/include")"; then
    echo "$dir"
    exit 0
fi

deb="$(bash "$repo/custom_ops/fetch_deb.sh" libonnxruntime-dev "$dest" | tail -n 1)"

if dir="$(find_header_dir "$dest/root/usr/include")"; then
    echo "$dir"
    exit 0
fi
echo "fetch_ort_headers.sh: $deb holds no onnxruntime_cxx_api.h" >&2
exit 1
