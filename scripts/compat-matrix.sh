#!/usr/bin/env bash
# Runs the compatibility suite against the in-memory fake and every server that
# scripts/local-s3.sh starts, one after another, each on 127.0.0.1: the README's matrix.
#
#   scripts/compat-matrix.sh OUT_DIR [STREAM_MIB] [SERVER...]
#
# Writes OUT_DIR/<server>.txt (the suite's table) and .err for each; servers default to
# moto, moto 5.2.6, rclone, s3s-fs, garage and localstack (first runs install them; Garage
# and s3s-fs build with cargo for ~10 minutes each). Exit status 1 if any run failed.
set -uo pipefail
cd "$(dirname "$0")/.."
export AWS_EC2_METADATA_DISABLED=true

out=${1:?usage: $0 OUT_DIR [STREAM_MIB] [SERVER...]}
stream_mib=${2:-1024}
shift $(( $# >= 2 ? 2 : 1 ))
servers=("$@")
[ ${#servers[@]} -gt 0 ] || servers=(moto moto-5.2.6 rclone s3s-fs garage localstack)
mkdir -p "$out"
cargo build --locked -q -p s3vfs-benches --bin s3vfs-compat || exit 1
compat=$(mktemp)
# A copy: a rebuild while the matrix runs must not change the binary under it.
cp target/debug/s3vfs-compat "$compat"
chmod 700 "$compat"
trap 'rm -f "$compat"' EXIT

failed=0
(unset S3VFS_COMPAT_ENDPOINT; "$compat" --stream-mib "$stream_mib") >"$out/fake.txt" 2>"$out/fake.err" || failed=1
for server in "${servers[@]}"; do
  dir=$(mktemp -d)
  case "$server" in
    moto-*) MOTO_VERSION=${server#moto-} scripts/local-s3.sh start moto "$dir" ;;
    *) scripts/local-s3.sh start "$server" "$dir" ;;
  esac >"$out/$server.start" 2>&1 || { echo "$server: could not start (see $out/$server.start)"; failed=1; continue; }
  # shellcheck source=/dev/null
  (source "$dir/env"; "$compat" --stream-mib "$stream_mib") >"$out/$server.txt" 2>"$out/$server.err" \
    || { failed=1; echo "$server: the suite failed (see $out/$server.txt and .err)"; }
  scripts/local-s3.sh stop "$dir" >>"$out/$server.start" 2>&1
  rm -rf "$dir"
  echo "$server: $(grep -c '\*\*failed\*\*' "$out/$server.txt") failed rows, $(grep -c 'limitation:' "$out/$server.txt") limitations"
done
exit $failed
