#!/usr/bin/env bash
# Installs what sealfs' tests, demo and benchmarks need on a fresh Debian 12
# machine that has only Go (gcc is for the race detector, which needs cgo). As root it installs with apt-get; otherwise it
# prints the exact command to run and fails.
set -euo pipefail

# command -> Debian package
declare -A want=(
  [make]=make
  [gcc]=gcc
  [fusermount3]=fuse3
  [mountpoint]=util-linux
  [setpriv]=util-linux
  [rsync]=rsync
  [git]=git
  [tar]=tar
  [diff]=diffutils
  [sqlite3]=sqlite3
  [openssl]=openssl
  [curl]=curl
  [fio]=fio
  [jq]=jq
  [python3]=python3
  [/usr/bin/time]=time
)

missing=()
for cmd in "${!want[@]}"; do
  if [[ $cmd == /* ]]; then [ -x "$cmd" ] && continue
  else command -v "$cmd" >/dev/null 2>&1 && continue; fi
  missing+=("${want[$cmd]}")
done
[ -e /dev/fuse ] || missing+=(fuse3)

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
if [ "$(id -u)" -ne 0 ]; then
  echo "sealfs needs these packages: ${missing[*]}" >&2
  echo "run: sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "installing: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${missing[@]}" >/dev/null
if [ ! -e /dev/fuse ]; then
  mknod -m 666 /dev/fuse c 10 229 2>/dev/null || true
fi
