#!/usr/bin/env bash
# Builds onnxruntime-node with the CUDA and TensorRT execution providers on a Jetson (JetPack 6:
# L4T R36, CUDA 12, TensorRT 10), and installs it into linewatch.
#
#   deploy/jetson/build-onnxruntime-tensorrt.sh [--install /opt/linewatch] [--jobs N] [--work DIR]
#
# Why: the onnxruntime-node package from npm is CPU only on linux/arm64. And from JavaScript the
# stock binding creates the TensorRT provider with a device id only: FP16/INT8 and the engine
# cache cannot be switched on, and ORT_TENSORRT_* variables are not read on that path. This script
# patches the binding (js/node/src/session_options_helper.cc) to read the provider options from
# the ORT_NODE_TENSORRT_OPTIONS variable ("key=value;..."), which the daemon sets before its
# inference workers start (src/daemon/tensorrt.ts): engine and timing caches under
# /var/lib/linewatch/tensorrt/<model version>-<model sha256>-trt<TensorRT version>-<GPU>/, FP16,
# and INT8 for INT8 (QDQ) bundles.
#
# It takes an hour or more on an Orin and about 20 GB of disk. It was not run where linewatch is
# developed (no GPU there): run it on the Jetson itself, then check the daemon's log says
# provider=tensorrt ("inference ready").
set -euo pipefail

install_dir=/opt/linewatch
jobs=$(nproc)
work=${TMPDIR:-/tmp}/onnxruntime-build
while [ $# -gt 0 ]; do
  case $1 in
    --install) install_dir=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    --work) work=$2; shift 2 ;;
    -h|--help) sed -n '2,21s/^# \{0,1\}//p' "$0"; exit 0 ;;
    *) echo "build-onnxruntime-tensorrt.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

fail() { echo "build-onnxruntime-tensorrt.sh: $1" >&2; exit 1; }

[ "$(uname -m)" = aarch64 ] || fail "this builds for a Jetson (aarch64); this machine is $(uname -m)"
grep -q 'R36' /etc/nv_tegra_release 2>/dev/null || fail "JetPack 6 (L4T R36) expected; /etc/nv_tegra_release says: $(head -1 /etc/nv_tegra_release 2>/dev/null || echo 'nothing (not a Jetson?)')"
[ -x /usr/local/cuda/bin/nvcc ] || fail "CUDA not found at /usr/local/cuda: sudo apt-get install nvidia-jetpack"
ls /usr/lib/aarch64-linux-gnu/libnvinfer.so.* >/dev/null 2>&1 || fail "TensorRT not found: sudo apt-get install nvidia-jetpack (or tensorrt)"
[ -f "$install_dir/package-lock.json" ] || fail "no linewatch install at $install_dir (deploy/install.sh first, or pass --install DIR)"

# The same onnxruntime version as the JavaScript package linewatch was tested with.
version=$(node -p "require('$install_dir/package-lock.json').packages['node_modules/onnxruntime-node'].version")
echo "building onnxruntime $version with CUDA and TensorRT in $work"

sudo apt-get install -y --no-install-recommends git cmake build-essential python3 python3-pip python3-numpy
# ONNX Runtime needs a newer CMake than Ubuntu 22.04 ships.
if ! cmake --version | awk 'NR==1 { split($3, v, "."); exit !(v[1] > 3 || (v[1] == 3 && v[2] >= 28)) }'; then
  python3 -m pip install --user 'cmake>=3.28'
  export PATH="$HOME/.local/bin:$PATH"
fi

mkdir -p "$work"
if [ ! -d "$work/onnxruntime/.git" ]; then
  git clone --depth 1 --branch "v$version" --recursive https://github.com/microsoft/onnxruntime "$work/onnxruntime"
fi
cd "$work/onnxruntime"

# The patch: pass ORT_NODE_TENSORRT_OPTIONS to UpdateTensorRTProviderOptions. It anchors on the
# lines that create the TensorRT options and fails loudly if this version of the file differs.
python3 - js/node/src/session_options_helper.cc <<'PATCH'
import sys
path = sys.argv[1]
src = open(path).read()
marker = "linewatch: ORT_NODE_TENSORRT_OPTIONS"
if marker not in src:
    anchor = "      options->device_id = deviceId;\n      sessionOptions.AppendExecutionProvider_TensorRT_V2(*options);"
    if src.count(anchor) != 1:
        sys.exit("session_options_helper.cc changed: the TensorRT block to patch was not found; update this script")
    patch = """      options->device_id = deviceId;
      // linewatch: ORT_NODE_TENSORRT_OPTIONS holds "key=value;..." TensorRT provider options.
      if (const char* spec = std::getenv("ORT_NODE_TENSORRT_OPTIONS")) {
        std::vector<std::string> keys, values;
        std::string all(spec);
        size_t start = 0;
        while (start <= all.size()) {
          size_t end = all.find(';', start);
          if (end == std::string::npos) end = all.size();
          std::string item = all.substr(start, end - start);
          size_t eq = item.find('=');
          if (eq != std::string::npos) {
            keys.push_back(item.substr(0, eq));
            values.push_back(item.substr(eq + 1));
          }
          start = end + 1;
        }
        std::vector<const char*> k, v;
        for (size_t j = 0; j < keys.size(); j++) {
          k.push_back(keys[j].c_str());
          v.push_back(values[j].c_str());
        }
        Ort::ThrowOnError(Ort::GetApi().UpdateTensorRTProviderOptions(options, k.data(), v.data(), k.size()));
      }
      sessionOptions.AppendExecutionProvider_TensorRT_V2(*options);"""
    src = src.replace(anchor, patch).replace("#include <cmath>", "#include <cmath>\n#include <cstdlib>\n#include <string>\n#include <vector>", 1)
    open(path, "w").write(src)
print("binding patched")
PATCH

./build.sh --config Release --parallel "$jobs" --skip_tests --build_shared_lib --build_nodejs \
  --use_cuda --cuda_home /usr/local/cuda --cudnn_home /usr/lib/aarch64-linux-gnu \
  --use_tensorrt --tensorrt_home /usr/lib/aarch64-linux-gnu \
  --cmake_extra_defines CMAKE_CUDA_ARCHITECTURES=87 onnxruntime_BUILD_UNIT_TESTS=OFF

# The binding and the libraries it loads replace the CPU-only ones in linewatch's node_modules.
# A copy is kept in /usr/local/lib/linewatch/onnxruntime-tensorrt: deploy/install.sh puts it
# back after every upgrade (npm ci reinstalls the CPU-only package).
binding_dir="$install_dir/node_modules/onnxruntime-node/bin/napi-v6/linux/arm64"
keep=/usr/local/lib/linewatch/onnxruntime-tensorrt
built=js/node/bin/napi-v6/linux/arm64
[ -f "$built/onnxruntime_binding.node" ] || fail "the build did not produce $built/onnxruntime_binding.node"
sudo install -d "$binding_dir" "$keep"
sudo cp -a "$built"/. "$keep"/
sudo cp -a "$built"/. "$binding_dir"/
echo "installed into $binding_dir; restart linewatch: sudo systemctl restart linewatch"
echo "the first start builds the TensorRT engine (minutes; the log says so), later starts load it from /var/lib/linewatch/tensorrt/"
