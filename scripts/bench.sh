#!/usr/bin/env bash
# make bench: speed goals as measured figures, each beside a reference
# measured in the same run on the same machine.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp)
trap 'rm -f "$out"' EXIT

echo "== crypto, one core: sealfs constructions beside the bare primitives over the same bytes"
# -count 5, best of each: the ratio compares costs, and a busy machine only
# ever makes a run slower, so the fastest run is the truest figure.
go test -run '^$' -bench 'SealChunkMAC|VerifyOpenChunk|Primitive|OpenBlock4K' -benchmem -cpu 1 -count 5 -benchtime 1s ./crypto/ | tee "$out"
python3 - "$out" <<'PY'
import re, sys
mbs = {}
for line in open(sys.argv[1]):
    m = re.match(r'Benchmark(\w+)\s+\d+\s+[\d.]+ ns/op\s+([\d.]+) MB/s', line)
    if m:
        mbs[m.group(1)] = max(mbs.get(m.group(1), 0), float(m.group(2)))
def both(a, b):  # throughput of doing a and then b over the same bytes
    return 1 / (1 / mbs[a] + 1 / mbs[b])
for name, a, b in [("SealChunkMAC", "PrimitiveGCMSeal", "PrimitiveHMAC"),
                   ("VerifyOpenChunk", "PrimitiveGCMOpen", "PrimitiveHMAC")]:
    if name in mbs and a in mbs and b in mbs:
        ref = both(a, b)
        print(f"{name:16s} {mbs[name]:8.0f} MB/s   primitives together {ref:8.0f} MB/s   ratio {mbs[name]/ref:5.1%} (goal >= 85%)")
PY

echo
echo "== server: chunk ingest into a 'sealfs serve' process, beside raw write+fsync of the same disk"
go test -run '^$' -bench 'ChunkIngest|RawDiskWrite' -benchtime 3s ./server/ | grep -E '^Benchmark'

echo
echo "== CLI: put/get of a large file and put -r of small files, beside local cp"
bash scripts/bench-cli.sh "${SEALFS_BENCH_MIB:-1024}" "${SEALFS_BENCH_FILES:-3000}"

echo
echo "== mount: peak memory of the mount process through a large file and a tree of 100,000 files (goal: under 256 MiB)"
bash scripts/bench-mount-mem.sh "${SEALFS_BENCH_MIB:-1024}" "${SEALFS_BENCH_TREE:-100000}"

echo
peers=../shared/bench/peers.sh
if [ -x "$peers" ] || [ -f "$peers" ]; then
  echo "== mount: the peer harness's workloads for sealfs beside a plain local directory"
  bash "$peers" -r "${SEALFS_BENCH_RUNS:-1}" sealfs raw | sed -n '/### Performance/,/### Individual/p'
else
  echo "== mount: ../shared/bench/peers.sh not found; skipped (it measures sealfs beside raw, gocryptfs, rclone and sshfs)"
fi
