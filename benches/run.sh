#!/usr/bin/env bash
# Builds s3vfs-bench in release and runs it; arguments go to the benchmark, e.g.
#   benches/run.sh                # 1 GiB object, 3 runs per reader
#   benches/run.sh --size 64M     # quick smoke run
# Set S3VFS_BENCH_ENDPOINT (+ S3VFS_BENCH_BUCKET, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)
# to use a running loopback endpoint instead of the built-in in-memory server.
set -euo pipefail
cd "$(dirname "$0")/.."
# The SDK must never probe the cloud instance-metadata address.
export AWS_EC2_METADATA_DISABLED=true
cargo build --release -p s3vfs-benches --bin s3vfs-bench
exec target/release/s3vfs-bench "$@"
