#!/usr/bin/env bash
# linewatch eval against the plain Python pipeline (bench/python_pipeline.py) on the same frames
# and cores: the sample frames, 10 copies each (3,000 images), in labeled folders.
# linewatch's start-up is excluded by timing a 30-image eval too and taking the difference, for the wall
# time and for the CPU time (user + sys of every thread: what the images cost on a shared machine).
#   npm run build && bash bench/compare-python.sh [copies]
set -euo pipefail
cd "$(dirname "$0")/.."
copies="${1:-10}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

for f in samples/line/frames/*.jpg; do
  name="${f##*/}"
  label="${name%.jpg}"
  label="${label#*-}"
  [[ -d "$work/frames/$label" ]] || mkdir -p "$work/frames/$label"
  for copy in $(seq 1 "$copies"); do ln -s "$PWD/$f" "$work/frames/$label/$copy-$name"; done
done
mkdir -p "$work/few/good"
# The first 30 copies (a process substitution: `find | head` would end the script on find's SIGPIPE under pipefail).
mapfile -t firsts < <(find "$work/frames/good" -name '1-*')
for f in "${firsts[@]:0:30}"; do ln -s "$(readlink "$f")" "$work/few/good/"; done
total="$(find "$work/frames" -name '*.jpg' | wc -l)"

# Wall and CPU seconds (user + sys, every thread) of a command, as "real user sys".
TIMEFORMAT='%R %U %S'
timed() { { time "$@" > /dev/null; } 2>&1 | tail -1; }
for bundle in default-fp32 default-int8; do
  printf 'site: bench\nstateDir: %s\nmodel: %s\n' "$work/state-$bundle" "$PWD/models/$bundle" > "$work/$bundle.yml"
  node dist/cli/main.js enroll samples/line/references --config "$work/$bundle.yml" > /dev/null
  few_t="$(timed node dist/cli/main.js eval "$work/few" --config "$work/$bundle.yml" --json)"
  all_t="$(timed node dist/cli/main.js eval "$work/frames" --config "$work/$bundle.yml" --json)"
  awk -v b="$bundle" -v n="$total" -v few="$(find "$work/few" -name '*.jpg' | wc -l)" -v f="$few_t" -v a="$all_t" \
    'BEGIN { split(f, x, " "); split(a, y, " "); s = y[1] - x[1]; c = (y[2] + y[3]) - (x[2] + x[3]);
             printf "{\"pipeline\": \"linewatch eval %s\", \"images\": %d, \"seconds\": %.3f, \"imagesPerSecond\": %d, \"cpuMsPerImage\": %.3f}\n", b, n - few, s, (n - few) / s, c / (n - few) * 1000 }'
done
/usr/bin/python3 -m bench.python_pipeline "$work/frames" samples/line/references
/usr/bin/python3 -m bench.python_pipeline "$work/frames" samples/line/references --int8
