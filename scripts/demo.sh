#!/usr/bin/env bash
# make demo: a server and a mount on the embedded default, with demo data.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=./bin/sealfs
if ! "$bin" help 2>&1 | grep -q '^  mount '; then
  cat <<MSG
sealfs demo: not available yet.

This build has the format and crypto core only ('$bin version' works).
'sealfs serve' (the storage server) and 'sealfs mount' (the FUSE client) are
not built yet, so there is nothing real to demonstrate. This target will start
a server on 127.0.0.1, register a demo account, mount it and copy sample files
in once they exist; it will not pretend to before then.
MSG
  "$bin" version
  exit 1
fi
exec bash scripts/demo-run.sh
