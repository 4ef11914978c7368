#!/usr/bin/env bash
# Bucket-to-bucket copy of one large object on one local Garage server, by `s3vfs cp`,
# `aws s3 cp` (PyPI awscli) and `rclone copyto` (server-side, same remote), in one run:
# wall time, and the bytes that passed between client and server (loopback traffic during
# the run: a streamed copy shows the object twice, a server-side one almost nothing).
#
#   benches/transfer.sh [SIZE_MIB] [OUT_DIR]      (default 10240 MiB, /tmp/s3vfs-transfer)
#
# Needs: target/release/s3vfs (cargo build --release -p s3vfs-fuse), `aws` and `rclone`
# on PATH or in $S3VFS_TOOLS (scripts/local-s3.sh installs Garage and rclone there), and
# twice SIZE_MIB of free disk. Everything runs on 127.0.0.1 with static credentials.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
size_mib=${1:-10240}
out=${2:-/tmp/s3vfs-transfer}
tools=${S3VFS_TOOLS:-/tmp/s3vfs-tools}
s3vfs="${S3VFS_BIN:-$here/target/release/s3vfs}"
[ -x "$s3vfs" ] || { echo "build target/release/s3vfs first" >&2; exit 2; }
rclone=$(command -v rclone || echo "$tools/rclone-venv/bin/rclone")
aws=$(command -v aws || true)

mkdir -p "$out"
server="$out/garage"
rm -rf "$server"
"$here/scripts/local-s3.sh" start garage "$server" >&2
trap '"$here/scripts/local-s3.sh" stop "$server" >&2 || true' EXIT
# shellcheck disable=SC1091
source "$server/env"
endpoint=$S3VFS_COMPAT_ENDPOINT
src=$S3VFS_COMPAT_BUCKET
dst=s3vfs-bench-dst
GARAGE_CONFIG_FILE="$server/garage.toml" "$tools/garage/bin/garage" bucket create "$dst" >/dev/null
GARAGE_CONFIG_FILE="$server/garage.toml" "$tools/garage/bin/garage" bucket allow \
  --read --write --owner "$dst" --key "$AWS_ACCESS_KEY_ID" >/dev/null

# The source object: random bytes, uploaded once.
echo "uploading a ${size_mib} MiB source object" >&2
head -c "$((size_mib * 1024 * 1024))" /dev/urandom >"$out/object"
"$s3vfs" cp --help >/dev/null
"$aws" --endpoint-url "$endpoint" s3 cp "$out/object" "s3://$src/video.bin" --only-show-errors
rm -f "$out/object"

# Bytes through the loopback interface so far (received; each byte sent on lo is also
# received on lo, so this is the traffic once).
lo_bytes() { awk -F'[: ]+' '$2 == "lo" { print $3 }' /proc/net/dev; }

# Runs "$@", prints "seconds bytes": wall time, and the loopback traffic during the run —
# the requests and answers between the client and the (single-node) server, so a streamed
# copy shows the object twice (GET in, PUT out) and a server-side one almost nothing.
measure() {
  local start end before after
  before=$(lo_bytes)
  start=$(date +%s.%N)
  "$@" >"$out/last.log" 2>&1 || { echo "failed: $*" >&2; cat "$out/last.log" >&2; return 1; }
  end=$(date +%s.%N)
  after=$(lo_bytes)
  echo "$(echo "$end - $start" | bc) $((after - before))"
}

export RCLONE_CONFIG_BENCH_TYPE=s3 RCLONE_CONFIG_BENCH_PROVIDER=Other \
  RCLONE_CONFIG_BENCH_ENDPOINT="$endpoint" RCLONE_CONFIG_BENCH_ACCESS_KEY_ID="$AWS_ACCESS_KEY_ID" \
  RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY="$AWS_SECRET_ACCESS_KEY" RCLONE_CONFIG_BENCH_REGION=us-east-1 \
  RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE=true

declare -A result
result[s3vfs]=$(measure "$s3vfs" cp "s3://$src/video.bin" "s3://$dst/s3vfs.bin" \
  --endpoint-url "$endpoint" --force-path-style --no-progress --no-resume)
result[aws]=$(measure "$aws" --endpoint-url "$endpoint" s3 cp "s3://$src/video.bin" "s3://$dst/aws.bin" --only-show-errors)
result[rclone]=$(measure "$rclone" copyto "bench:$src/video.bin" "bench:$dst/rclone.bin")
# A streamed copy (as between two endpoints), for the bytes-through-the-machine column.
result[s3vfs-streamed]=$(measure "$s3vfs" cp "s3://$src/video.bin" "s3://$dst/streamed.bin" \
  --endpoint-url "$endpoint" --force-path-style --no-progress --no-resume --no-server-side)

echo
echo "Copy of one ${size_mib} MiB object between two buckets of Garage 2.5.0 on 127.0.0.1, $(date -u +%Y-%m-%d)"
echo
echo "| client | seconds | MiB/s | MiB between client and server |"
echo "|---|---|---|---|"
for tool in s3vfs aws rclone s3vfs-streamed; do
  read -r seconds bytes <<<"${result[$tool]}"
  printf '| %s | %.1f | %.0f | %d |\n' "$tool" "$seconds" "$(echo "$size_mib / $seconds" | bc -l)" "$((bytes / 1048576))"
done
for key in s3vfs.bin aws.bin rclone.bin streamed.bin; do
  "$aws" --endpoint-url "$endpoint" s3api head-object --bucket "$dst" --key "$key" \
    --query ContentLength --output text | grep -qx "$((size_mib * 1024 * 1024))" \
    || { echo "$key has the wrong size" >&2; exit 1; }
done
