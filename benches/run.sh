#!/usr/bin/env bash
# Builds s3vfs-bench and the s3vfs mount binary (items 1 to 8 spawn it as a separate
# process) in release, then runs the benchmark; arguments go to it, e.g.
#   benches/run.sh                       # every item, full sizes (1 GiB object, 3 runs)
#   benches/run.sh --quick               # smoke run: 64 MiB object, 100 files, 1 run
#   benches/run.sh --only read,write,ls  # a subset
# Set S3VFS_BENCH_ENDPOINT (+ S3VFS_BENCH_BUCKET, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)
# to use a running loopback endpoint instead of the built-in in-memory server.
set -euo pipefail
cd "$(dirname "$0")/.."
# The SDK must never probe the cloud instance-metadata address.
export AWS_EC2_METADATA_DISABLED=true
cargo build --release -p s3vfs-benches --bin s3vfs-bench
cargo build --release -p s3vfs-fuse --bin s3vfs
exec target/release/s3vfs-bench "$@"
