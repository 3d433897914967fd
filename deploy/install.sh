#!/usr/bin/env bash
# Installs (or upgrades) linewatch as a systemd service on a Jetson (JetPack 6, aarch64) or a
# Raspberry Pi (Raspberry Pi OS Bookworm), from an unpacked release (deploy/build-release.sh) or
# a built checkout:
#
#   sudo deploy/install.sh [--dry-run] [--platform jetson|pi|debian] [--no-restart]
#
#   --dry-run     print what would be done, change nothing (no root needed)
#   --platform    skip detection (debian: any other Debian/Ubuntu machine, e.g. a test VM)
#   --no-restart  on an upgrade, leave a running service on the old version until you restart it
#
# It is idempotent: each step checks first and only does what is missing. It never overwrites
# /etc/linewatch/config.yml. Layout: /opt/linewatch (the release, root-owned, read-only to the
# service), /etc/linewatch/config.yml, /var/lib/linewatch (database, TensorRT engine caches),
# /etc/systemd/system/linewatch.service. docs/operations.md explains each part.
set -euo pipefail

dry_run=false
platform=""
restart=true
while [ $# -gt 0 ]; do
  case $1 in
    --dry-run) dry_run=true; shift ;;
    --platform) platform=${2:-}; shift 2 ;;
    --no-restart) restart=false; shift ;;
    -h|--help) sed -n '2,16s/^# \{0,1\}//p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done

src=$(cd "$(dirname "$0")/.." && pwd)
prefix=/opt/linewatch
etc=/etc/linewatch
state=/var/lib/linewatch
unit=/etc/systemd/system/linewatch.service
user=linewatch
# Node 22 LTS from NodeSource: Bookworm ships Node 18 and Ubuntu 22.04 (JetPack 6) Node 12, both
# older than linewatch's Node >= 20. NodeSource's apt repository is signed, serves arm64 and is
# upgraded by apt like the rest of the system.
node_major=22
# A TensorRT build of onnxruntime-node made by deploy/jetson/build-onnxruntime-tensorrt.sh.
tensorrt_binding=/usr/local/lib/linewatch/onnxruntime-tensorrt

say() { printf '==> %s\n' "$*"; }
fail() { printf 'install.sh: %s\n' "$*" >&2; exit 1; }
# Runs a command, or only shows it with --dry-run.
run() {
  printf '+ %s\n' "$*"
  if [ "$dry_run" = false ]; then "$@"; fi
}

if [ "$dry_run" = false ] && [ "$(id -u)" -ne 0 ]; then
  fail "run it as root (sudo $0), or with --dry-run to see what it would do"
fi
[ -f "$src/dist/cli/main.js" ] || fail "$src has no dist/: unpack a release (deploy/build-release.sh makes one) or run 'npm ci' first"

# --- platform ---
if [ -z "$platform" ]; then
  model=$(tr -d '\0' 2>/dev/null </proc/device-tree/model || true)
  if [ -f /etc/nv_tegra_release ] || [[ $model == *Jetson* ]]; then
    platform=jetson
  elif [[ $model == *"Raspberry Pi"* ]]; then
    platform=pi
  else
    fail "not a Jetson or a Raspberry Pi (device tree model: '${model:-none}'); pass --platform debian to install anyway"
  fi
fi
case $platform in
  jetson|pi|debian) ;;
  *) fail "--platform must be jetson, pi or debian (got '$platform')" ;;
esac
say "platform: $platform ($(uname -m)), installing from $src"

# --- Node.js ---
current_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$current_major" -ge 20 ]; then
  say "node $(node --version) present: kept"
else
  say "installing Node.js $node_major from NodeSource"
  run apt-get install -y ca-certificates curl gnupg
  run install -d -m 0755 /etc/apt/keyrings
  run sh -c "curl -fsSL https://deb.nodesource.com/gpgkey/nodesource-repo.gpg.key | gpg --dearmor --yes -o /etc/apt/keyrings/nodesource.gpg"
  run sh -c "echo 'deb [signed-by=/etc/apt/keyrings/nodesource.gpg] https://deb.nodesource.com/node_$node_major.x nodistro main' > /etc/apt/sources.list.d/nodesource.list"
  run apt-get update
  run apt-get install -y nodejs
fi

# --- system packages ---
# A compiler and Python build the native modules (better-sqlite3, hnswlib-node, unix-dgram);
# GStreamer runs USB cameras; rpicam-vid the Pi camera. JetPack brings the Jetson's own GStreamer
# elements (nvarguscamerasrc) and CUDA/TensorRT. jemalloc is the daemon's allocator (the unit preloads it).
packages=(build-essential python3 libjemalloc2 gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good)
[ "$platform" = pi ] && packages+=(rpicam-apps)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing packages: ${missing[*]}"
  run apt-get install -y --no-install-recommends "${missing[@]}"
else
  say "system packages present: kept"
fi

# --- service user ---
if getent passwd "$user" >/dev/null; then
  say "user $user present: kept"
else
  run useradd --system --user-group --home-dir "$state" --no-create-home --shell /usr/sbin/nologin "$user"
fi
# Cameras are group video; GPU render nodes (and on Jetson nvhost devices) group render.
for group in video render; do
  if getent group "$group" >/dev/null && ! id -nG "$user" 2>/dev/null | tr ' ' '\n' | grep -qx "$group"; then
    run usermod -aG "$group" "$user"
  fi
done

# --- the release in /opt/linewatch ---
if [ "$src" = "$prefix" ]; then
  say "running from $prefix itself: release kept"
else
  version=$(node -p "require('$src/package.json').version" 2>/dev/null || echo unknown)
  say "installing linewatch $version into $prefix (the previous one is kept as $prefix.old)"
  run rm -rf "$prefix.new"
  run install -d -m 0755 "$prefix.new"
  for item in dist models samples config systemd deploy docs package.json package-lock.json .npmrc README.md; do
    if [ -e "$src/$item" ]; then run cp -a "$src/$item" "$prefix.new/"; fi
  done
  # Scripts off for the install (the package's own `prepare` needs the dev tools), then the
  # dependencies' native modules are built for this machine by `npm rebuild`.
  run npm --prefix "$prefix.new" ci --omit=dev --ignore-scripts --no-audit --no-fund
  run npm --prefix "$prefix.new" rebuild --foreground-scripts
  # linewatch's own postinstall (skipped above): hnswlib-node's index loader without per-point seeks.
  run npm --prefix "$prefix.new" run postinstall
  if [ -d "$tensorrt_binding" ]; then
    say "putting back the TensorRT build of onnxruntime-node from $tensorrt_binding"
    run cp -a "$tensorrt_binding/." "$prefix.new/node_modules/onnxruntime-node/bin/napi-v6/linux/arm64/"
  fi
  run chown -R root:root "$prefix.new"
  if [ -e "$prefix" ]; then
    run rm -rf "$prefix.old"
    run mv "$prefix" "$prefix.old"
  fi
  run mv "$prefix.new" "$prefix"
fi

# --- configuration and state ---
if [ -d "$etc" ]; then say "$etc present: kept"; else run install -d -m 0750 -o root -g "$user" "$etc"; fi
if [ -e "$etc/config.yml" ]; then
  say "$etc/config.yml present: kept (compare with $prefix/config/example.yml after an upgrade)"
else
  run install -m 0640 -o root -g "$user" "$src/config/example.yml" "$etc/config.yml"
fi
if [ -d "$state" ]; then say "$state present: kept"; else run install -d -m 0750 -o "$user" -g "$user" "$state"; fi
# Public keys of whoever may push models (docs/control.md); root-owned so the service cannot add one.
if [ -d "$etc/trusted-keys" ]; then say "$etc/trusted-keys present: kept"; else run install -d -m 0755 -o root -g root "$etc/trusted-keys"; fi

# --- systemd unit ---
if cmp -s "$src/systemd/linewatch.service" "$unit"; then
  say "$unit up to date: kept"
else
  run install -m 0644 "$src/systemd/linewatch.service" "$unit"
  run systemctl daemon-reload
fi
if systemctl is-enabled --quiet linewatch 2>/dev/null; then
  say "linewatch.service enabled: kept"
else
  run systemctl enable linewatch
fi
if systemctl is-active --quiet linewatch 2>/dev/null; then
  if [ "$restart" = true ]; then run systemctl restart linewatch; else say "linewatch still runs the old version: systemctl restart linewatch"; fi
else
  say "next: edit $etc/config.yml (camera, broker, TLS files), copy your signing key's .pub into $etc/trusted-keys/, then: systemctl start linewatch; journalctl -u linewatch -f"
fi
say "done"
