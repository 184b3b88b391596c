#!/usr/bin/env bash
# Download one Debian package (amd64, suite trixie by default) with apt-get using a private sources list and
# private state/cache dirs, and unpack it with dpkg -x into DEST/root. Nothing is installed and the system's apt
# state is untouched (never apt-get install trixie packages into this bookworm system).
#   fetch_deb.sh PACKAGE DEST        env: SSVQ_DEBIAN_SUITE (trixie), SSVQ_DEBIAN_MIRROR
set -euo pipefail

package="$1"
dest="$(mkdir -p "$2" && cd "$2" && pwd)"  # apt resolves relative Dir:: options against /
suite="${SSVQ_DEBIAN_SUITE:-trixie}"
mirror="${SSVQ_DEBIAN_MIRROR:-http://deb.debian.org/debian}"

for tool in apt-get dpkg; do
    command -v "$tool" >/dev/null || { echo "fetch_deb.sh: $tool not found" >&2; exit 1; }
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
echo "fetch_deb.sh: downloading $package from $mirror $suite main (not installing)" >&2
apt-get -q "${apt_opts[@]}" update >&2
(cd "$apt_dir/download" && apt-get -q "${apt_opts[@]}" download "$package" >&2)
deb="$(ls "$apt_dir"/download/"${package}"_*.deb | head -n 1)"
mkdir -p "$dest/root"
dpkg -x "$deb" "$dest/root"
rm -rf "$apt_dir/state/lists" "$apt_dir/cache"  # the index is large and no longer needed
echo "$deb"
