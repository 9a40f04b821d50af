#!/usr/bin/env bash
# bench-mount-mem.sh: the mount's peak memory (VmHWM of the sealfs mount
# process) through a large file and a tree of many small files, with the
# time each step took, against a local `sealfs serve`.
#
#   scripts/bench-mount-mem.sh [SIZE_MIB] [FILES]   (defaults: 1024 MiB, 100000 files)
#
# The goal (issue 7) is a peak under 256 MiB whatever the size. The tree is
# FILES files of a few bytes in directories of 1,000: a tenth of it is
# copied in through the mount, the rest put with the CLI (faster), and then
# all of it is listed and read back through a cold remount.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MIB=${1:-1024}
FILES=${2:-100000}
go build -o bin/sealfs ./cmd/sealfs
BIN=$PWD/bin/sealfs
W=$(mktemp -d /var/tmp/sealfs-mem.XXXXXX)
SERVER_PID= MOUNT_PID=
cleanup() {
  if mountpoint -q "$W/mnt" 2>/dev/null; then fusermount3 -u "$W/mnt" 2>/dev/null || fusermount3 -u -z "$W/mnt"; fi
  [ -n "$MOUNT_PID" ] && wait "$MOUNT_PID" 2>/dev/null || true
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT
mkdir -p "$W/srv" "$W/cfg" "$W/cache" "$W/mnt" "$W/src"
export SEALFS_CONFIG_DIR=$W/cfg
head -c 24 /dev/urandom | base64 >"$W/pw"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$BIN" serve --data "$W/srv" --listen "127.0.0.1:$PORT" >"$W/serve.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 100); do curl -sk "https://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
code=$("$BIN" server invite --data "$W/srv" bench)
fp=$("$BIN" server fingerprint --data "$W/srv")
"$BIN" init "https://127.0.0.1:$PORT" --user bench --invite "$code" --fingerprint "$fp" --password-file "$W/pw" >/dev/null

mount_fs() {
  rm -rf "${W:?}/cache"/*
  "$BIN" mount "$W/mnt" --password-file "$W/pw" --cache-dir "$W/cache" >>"$W/mount.log" 2>&1 &
  MOUNT_PID=$!
  for _ in $(seq 100); do mountpoint -q "$W/mnt" && return; sleep 0.1; done
  echo "the mount did not come up" >&2; cat "$W/mount.log" >&2; exit 1
}
umount_fs() { fusermount3 -u "$W/mnt"; wait "$MOUNT_PID"; MOUNT_PID=; }
hwm() { awk '/VmHWM/ {printf "%d", $2/1024}' "/proc/$MOUNT_PID/status"; }
step() { # step LABEL CMD...: run CMD, print its time and the mount's peak RSS so far
  local label=$1; shift
  local t0 t1
  t0=$(date +%s.%N)
  "$@" >/dev/null
  t1=$(date +%s.%N)
  printf '%-52s %8.1f s   mount peak RSS %4d MiB\n' "$label" "$(awk "BEGIN {print $t1 - $t0}")" "$(hwm)"
}

echo "== one file of $SIZE_MIB MiB"
head -c "$((SIZE_MIB << 20))" /dev/urandom >"$W/big"
mount_fs
step "write through the mount (dd, fsync)" dd if="$W/big" of="$W/mnt/big" bs=1M conv=fsync status=none
umount_fs
sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
mount_fs
step "cold read through the mount (dd)" dd if="$W/mnt/big" of=/dev/null bs=1M status=none
umount_fs
rm -f "$W/big"

echo "== a tree of $FILES files ($((FILES / 1000)) directories of 1,000)"
python3 - "$W/src" "$FILES" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    d = os.path.join(root, "d%04d" % (i // 1000))
    if i % 1000 == 0:
        os.mkdir(d)
    with open(os.path.join(d, "f%04d.txt" % (i % 1000)), "w") as f:
        f.write("%d\n" % i)
PY
dirs=$(cd "$W/src" && ls)
through=$(echo "$dirs" | head -n "$(( (FILES / 1000 + 9) / 10 ))")
rest=$(echo "$dirs" | tail -n "+$(( (FILES / 1000 + 9) / 10 + 1 ))")
mount_fs
step "copy $(echo "$through" | wc -l) directories in through the mount (cp -r)" bash -c 'cd "$1/src" && cp -r $2 "$1/mnt/"' _ "$W" "$(echo $through)"
umount_fs
if [ -n "$rest" ]; then
  t0=$(date +%s.%N)
  (cd "$W/src" && "$BIN" put -r --quiet --password-file "$W/pw" $rest /)
  printf '%-52s %8.1f s\n' "put -r the other directories (CLI)" "$(awk "BEGIN {print $(date +%s.%N) - $t0}")"
fi
sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
mount_fs
step "cold ls -lR of the whole tree" ls -lR "$W/mnt"
step "read every file (find | xargs cat)" bash -c 'find "$1" -type f -print0 | xargs -0 cat >/dev/null' _ "$W/mnt"
umount_fs
