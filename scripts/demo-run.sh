#!/usr/bin/env bash
# The demo proper (make demo calls it through scripts/demo.sh): a server on
# 127.0.0.1 in a temporary directory, a demo account, a mount with sample
# files, and a look at what the server stores. Ctrl-C unmounts and stops
# everything.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$PWD/bin/sealfs
work=$(mktemp -d /tmp/sealfs-demo.XXXXXX)
data=$work/server
mnt=$work/mnt
export SEALFS_CONFIG_DIR=$work/config
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
server_pid=
mount_pid=

cleanup() {
  trap - EXIT INT TERM
  echo
  echo "== stopping"
  if [ -n "$mount_pid" ]; then
    "$bin" umount "$mnt" 2>/dev/null || fusermount3 -u "$mnt" 2>/dev/null || true
    wait "$mount_pid" 2>/dev/null || true
  fi
  if [ -n "$server_pid" ]; then
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
  echo "everything stopped and removed"
}
# Ctrl-C is how the demo is meant to end: after a clean stop it exits 0.
trap cleanup EXIT
trap 'cleanup; exit 0' INT TERM

mkdir -p "$data" "$mnt"
head -c 18 /dev/urandom | base64 >"$work/password"
chmod 600 "$work/password"

echo "== starting the server: sealfs serve --data $data --listen 127.0.0.1:$port"
"$bin" serve --data "$data" --listen "127.0.0.1:$port" 2>"$work/server.log" &
server_pid=$!
for _ in $(seq 50); do
  curl -skf "https://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done
fp=$("$bin" server fingerprint --data "$data")
echo "   certificate fingerprint $fp"

echo "== registering the account 'demo' with a one-time invite"
code=$("$bin" server invite --data "$data" demo)
"$bin" init "https://127.0.0.1:$port" --user demo --invite "$code" --fingerprint "$fp" \
  --password-file "$work/password" >/dev/null

echo "== mounting at $mnt"
"$bin" mount "$mnt" --password-file "$work/password" --cache-dir "$work/cache" 2>"$work/mount.log" &
mount_pid=$!
for _ in $(seq 100); do
  mountpoint -q "$mnt" && break
  sleep 0.1
done
mountpoint -q "$mnt" || { echo "mount failed:"; cat "$work/mount.log"; exit 1; }

echo "== copying sample files in"
mkdir -p "$mnt/docs/notes"
cp README.md "$mnt/docs/"
cp -r docs/*.md "$mnt/docs/notes/"
echo "sealfs keeps this sentence away from the server" >"$mnt/hello.txt"
ln -s docs/README.md "$mnt/readme-link"
ls -lR "$mnt" | head -30
echo
echo "== what the server stores (ciphertext only)"
blobs=$(find "$data/blobs" -type f ! -name lock)
echo "   $(echo -n "$blobs" | grep -c .) blob files (chunks over 64 KiB):"
for f in $(echo "$blobs" | head -3); do
  printf '   %s: ' "${f#"$data"/}"; head -c 32 "$f" | od -An -tx1 | tr -d ' \n'; echo ' …'
done
if command -v sqlite3 >/dev/null; then
  # Smaller chunks live in the metadata database, sealed the same way.
  q="SELECT count(*) || ' chunks of up to 64 KiB inside meta.db, ' || coalesce(sum(length(inline_data)), 0) || ' sealed bytes; the first: ' || coalesce((SELECT lower(hex(substr(inline_data, 1, 32))) FROM chunks WHERE inline_data IS NOT NULL LIMIT 1), '-') FROM chunks WHERE inline_data IS NOT NULL"
  echo "   $(sqlite3 -readonly "$data/meta.db" "$q" 2>/dev/null) …"
fi
if grep -rqa -e "sealfs keeps this sentence" -e "hello.txt" -e "readme-link" "$data"; then
  echo "   PLAINTEXT FOUND ON THE SERVER: this is a bug"; exit 1
else
  echo "   grep for the sample sentence and file names on the server side: no match"
fi
echo
echo "The mount is live at $mnt: try it from another terminal."
echo "Press Ctrl-C to unmount, stop the server and remove the demo directory."
wait "$mount_pid"
