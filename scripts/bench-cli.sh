#!/usr/bin/env bash
# bench-cli.sh: throughput of the sealfs CLI against a local `sealfs serve`,
# each figure beside a local cp of the same data measured in the same run.
#
#   scripts/bench-cli.sh [SIZE_MIB] [FILES]     (defaults: 1024 MiB, 3000 files)
#
# Prints put and get of one large file in MB/s, and put -r of a tree of
# small files in files/s. Everything runs on this machine over loopback
# HTTPS; client and server share its cores. Each command also derives the
# password key once; the account is made with the cheapest accepted KDF
# setting so that the figures are about transfer, not the password (the
# default setting adds about half a second per command).
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MIB=${1:-1024}
FILES=${2:-3000}

go build -o bin/sealfs ./cmd/sealfs
BIN=$PWD/bin/sealfs
W=$(mktemp -d /var/tmp/sealfs-bench.XXXXXX)
SERVER_PID=
cleanup() {
	[ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
	rm -rf "$W"
}
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now() { date +%s.%N; }
rate() { python3 -c "import sys; print(f'{float(sys.argv[1])/(float(sys.argv[3])-float(sys.argv[2])):.1f}')" "$@"; }

PORT=$(port)
"$BIN" serve --data "$W/data" --listen "127.0.0.1:$PORT" >"$W/serve.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/"$PORT") 2>/dev/null && break; sleep 0.1; done
export SEALFS_CONFIG_DIR=$W/config SEALFS_PASSWORD_FILE=$W/pw
echo bench-password >"$W/pw"
"$BIN" init "https://127.0.0.1:$PORT" --user bench --invite "$("$BIN" server invite --data "$W/data" bench)" \
	--fingerprint "$("$BIN" server fingerprint --data "$W/data")" --kdf-time 1 --kdf-memory-kib 8192 -q

echo "== one file of $SIZE_MIB MiB (random data, page cache warm for every reader)"
head -c "$((SIZE_MIB << 20))" /dev/urandom >"$W/big"
BYTES=$((SIZE_MIB << 20))
cat "$W/big" >/dev/null
t0=$(now); cp "$W/big" "$W/big.cp"; t1=$(now); sync "$W/big.cp"; t2=$(now)
CP=$(rate "$BYTES" "$t0" "$t1"); CPS=$(rate "$BYTES" "$t0" "$t2")
rm -f "$W/big.cp"; sync
t0=$(now); "$BIN" put -q "$W/big" /big; t1=$(now)
PUT=$(rate "$BYTES" "$t0" "$t1")
t0=$(now); "$BIN" get -q /big "$W/big.out"; t1=$(now)
GET=$(rate "$BYTES" "$t0" "$t1")
cmp "$W/big" "$W/big.out" || { echo "get returned other bytes" >&2; exit 1; }
rm -f "$W/big.out"
python3 - "$CP" "$CPS" "$PUT" "$GET" <<'PY'
import sys
cp, cps, put, get = (float(x) / 1e6 for x in sys.argv[1:])
print(f"local cp          {cp:8.0f} MB/s   (cp + sync of the copy: {cps:.0f} MB/s)")
print(f"sealfs put        {put:8.0f} MB/s   ratio to cp {put/cp:5.2f}   to cp+sync {put/cps:5.2f}   (goal >= 0.7)")
print(f"sealfs get        {get:8.0f} MB/s   ratio to cp {get/cp:5.2f}   to cp+sync {get/cps:5.2f}   (goal >= 0.7; get syncs the file)")
PY

echo "== a tree of $FILES small files (1 B - 16 KiB, 30 directories)"
python3 - "$W/tree" "$FILES" <<'PY'
import os, random, sys
root, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    d = os.path.join(root, f"dir{i % 30:02d}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"file{i:05d}"), "wb") as f:
        f.write(os.urandom(random.randint(1, 16384)))
PY
t0=$(now); cp -r "$W/tree" "$W/tree.cp"; t1=$(now)
CPF=$(rate "$FILES" "$t0" "$t1")
t0=$(now); "$BIN" put -q -r "$W/tree" /; t1=$(now)
PUTF=$(rate "$FILES" "$t0" "$t1")
echo "local cp -r       $CPF files/s"
echo "sealfs put -r     $PUTF files/s   (goal >= 500 files/s)"
