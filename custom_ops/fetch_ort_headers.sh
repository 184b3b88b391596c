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
mirror="${SSVQ_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
suite="trixie"

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

for tool in apt-get dpkg; do
    command -v "$tool" >/dev/null || { echo "fetch_ort_headers.sh: $tool not found; set SSVQ_ORT_INCLUDE_DIR to a folder holding onnxruntime_cxx_api.h" >&2; exit 1; }
done

apt_dir="$dest/apt"
mkdir -p "$apt_dir/state/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/download"
# Signatures are checked against the system's Debian archive keys (bookworm's keyring already ships trixie's).
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
if [[ -f "$keyring" ]]; then
    echo "deb [signed-by=$keyring] $mirror $suite main" > "$apt_dir/sources.list"
else
    echo "deb $mirror $suite main" > "$apt_dir/sources.list"
fi
: > "$apt_dir/status"
apt_opts=(
    -o "Dir::Etc::sourcelist=$apt_dir/sources.list"
    -o "Dir::Etc::sourceparts=-"
    -o "Dir::State=$apt_dir/state"
    -o "Dir::State::status=$apt_dir/status"
    -o "Dir::Cache=$apt_dir/cache"
    -o "APT::Sandbox::User=$(id -un)"
    -o "Debug::NoLocking=1"
    -o "Acquire::Languages=none"
    -o "APT::Architecture=amd64"
    -o "APT::Architectures::=amd64"
)
echo "fetch_ort_headers.sh: downloading libonnxruntime-dev from $mirror $suite main (not installing)" >&2
apt-get -q "${apt_opts[@]}" update >&2
(cd "$apt_dir/download" && apt-get -q "${apt_opts[@]}" download libonnxruntime-dev >&2)
deb="$(ls "$apt_dir"/download/libonnxruntime-dev_*.deb | head -n 1)"
mkdir -p "$dest/root"
dpkg -x "$deb" "$dest/root"
rm -rf "$apt_dir/state/lists" "$apt_dir/cache"  # the index is large and no longer needed

if dir="$(find_header_dir "$dest/root/usr/include")"; then
    echo "$dir"
    exit 0
fi
echo "fetch_ort_headers.sh: $deb holds no onnxruntime_cxx_api.h" >&2
exit 1
