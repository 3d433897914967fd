#!/usr/bin/env bash
# Builds the release tarball that deploy/install.sh installs on a device:
#
#   deploy/build-release.sh [--out DIR] [--no-build]
#
# makes DIR/linewatch-<version>.tar.gz (default DIR: the current folder) holding one folder
# linewatch-<version>/ with dist/, models/, samples/, config/, systemd/, deploy/, docs/,
# package.json, package-lock.json and .npmrc. The native modules are not in it: install.sh builds
# them on the device, for its CPU and its Node. --no-build packs the dist/ already there.
set -euo pipefail

out=$PWD
build=true
while [ $# -gt 0 ]; do
  case $1 in
    --out) out=$2; shift 2 ;;
    --no-build) build=false; shift ;;
    -h|--help) sed -n '2,9s/^# \{0,1\}//p' "$0"; exit 0 ;;
    *) echo "build-release.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
version=$(node -p "require('./package.json').version")
name=linewatch-$version
if [ "$build" = true ]; then
  # A clean dist/: files of removed sources must not ship.
  rm -rf dist
  npx tsc -p tsconfig.json
fi
[ -f dist/cli/main.js ] || { echo "build-release.sh: no dist/cli/main.js: run without --no-build" >&2; exit 1; }

required=(dist config systemd deploy docs package.json package-lock.json .npmrc)
optional=(models samples README.md)
for item in "${required[@]}"; do
  [ -e "$item" ] || { echo "build-release.sh: $item is missing" >&2; exit 1; }
done
items=("${required[@]}")
for item in "${optional[@]}"; do
  if [ -e "$item" ]; then
    items+=("$item")
  else
    echo "build-release.sh: warning: no $item/ to ship; config/example.yml expects /opt/linewatch/models/default-int8" >&2
  fi
done

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir "$stage/$name"
cp -a "${items[@]}" "$stage/$name/"
# Python caches and local state are not part of a release.
find "$stage/$name" \( -name __pycache__ -o -name '*.pyc' \) -prune -exec rm -rf {} +
mkdir -p "$out"
tar -C "$stage" --owner=0 --group=0 -czf "$out/$name.tar.gz" "$name"
echo "$out/$name.tar.gz"
