#!/usr/bin/env bash
# Raspberry Pi proof without a Pi: run kdefect-edge on aarch64 under qemu user-mode emulation and check that
# its decisions equal the x86 ones on a few images.  Writes tools/results/edge_aarch64.json.
#
#   tools/edge_aarch64_check.sh [--model MODEL.tflite] [--images DIR] [--n 8] [--work DIR]
#
# What it does (x86_64 Debian 12 host, root for apt-get):
#   1. apt-get install qemu-user-static debootstrap (when missing);
#   2. debootstrap --foreign --variant=minbase --arch=arm64 --include=python3 bookworm (first stage only:
#      no chroot, no binfmt needed) and dpkg -x the downloaded python3 .debs into the rootfs; if no Debian
#      mirror is reachable, `apt-get download` the arm64 packages (dpkg --add-architecture arm64) instead;
#   3. pip install --target PYLIB --platform manylinux_2_34_aarch64 (+ manylinux2014 for numpy 1.26)
#      --only-binary=:all: tflite-runtime==2.14.0 'numpy<2' pillow: the aarch64 wheels a Pi would install;
#   4. runs `python -m kdefect.edge.cli` on x86 (LiteRT) and under qemu-aarch64-static (QEMU_LD_PREFIX=rootfs,
#      bookworm's python3.11, tflite_runtime: the aarch64 ai-edge-litert 2.3.0 wheel segfaults at model load
#      under qemu 7.2) on the same images, and compares the two decision logs.
# Timing under emulation is meaningless and is not reported.  Defaults: NEU images (../shared/datasets/neu-det)
# and a tiny INT8 model trained on them on the host; pass --model for a real kdefect export.
set -euo pipefail
COMMAND="tools/edge_aarch64_check.sh $*"

REPO="$(cd "$(dirname "$0")/.." && pwd)"
WORK="${KDEFECT_ARM64_WORK:-/tmp/kdefect-arm64}"
MODEL=""
IMAGES=""
N=8
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
OUT="$REPO/tools/results/edge_aarch64.json"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --model) MODEL="$2"; shift 2 ;;
    --images) IMAGES="$2"; shift 2 ;;
    --n) N="$2"; shift 2 ;;
    --work) WORK="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
say() { echo "[edge-aarch64] $*" >&2; }
ROOTFS="$WORK/rootfs"
PYLIB="$WORK/pylib"
RUN="$WORK/run"
mkdir -p "$WORK"

# 1. tools
if ! command -v qemu-aarch64-static >/dev/null || ! command -v debootstrap >/dev/null; then
  say "installing qemu-user-static and debootstrap"
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q qemu-user-static debootstrap >/dev/null
fi

# 2. arm64 rootfs with python3.11
if [[ ! -x "$ROOTFS/usr/bin/python3.11" ]]; then
  say "debootstrap --foreign arm64 bookworm into $ROOTFS"
  if debootstrap --foreign --variant=minbase --arch=arm64 --include=python3 bookworm "$ROOTFS" "$MIRROR" \
      >"$WORK/debootstrap.log" 2>&1; then
    for deb in "$ROOTFS"/var/cache/apt/archives/*.deb; do dpkg -x "$deb" "$ROOTFS"; done
  else
    say "debootstrap failed (see $WORK/debootstrap.log); falling back to apt-get download of arm64 packages"
    dpkg --add-architecture arm64
    apt-get update -q >/dev/null
    mkdir -p "$WORK/debs" "$ROOTFS"
    (cd "$WORK/debs" && apt-get download \
      libc6:arm64 libgcc-s1:arm64 libstdc++6:arm64 zlib1g:arm64 libexpat1:arm64 libffi8:arm64 \
      libssl3:arm64 libbz2-1.0:arm64 liblzma5:arm64 libsqlite3-0:arm64 libuuid1:arm64 libtinfo6:arm64 \
      libncursesw6:arm64 libreadline8:arm64 libcrypt1:arm64 libnsl2:arm64 libtirpc3:arm64 libdb5.3:arm64 \
      libgssapi-krb5-2:arm64 libkrb5-3:arm64 libk5crypto3:arm64 libkrb5support0:arm64 libcom-err2:arm64 \
      libkeyutils1:arm64 libmpdec3:arm64 media-types python3.11-minimal:arm64 libpython3.11-minimal:arm64 \
      libpython3.11-stdlib:arm64 python3.11:arm64)
    for deb in "$WORK"/debs/*.deb; do dpkg -x "$deb" "$ROOTFS"; done
  fi
fi
export QEMU_LD_PREFIX="$ROOTFS"
ARMPY=(qemu-aarch64-static "$ROOTFS/usr/bin/python3.11")

# 3. aarch64 wheels (+ the same tflite-runtime for x86_64, to tell an architecture difference from a version one)
pip_target() {  # DIR PLATFORM...: host pip, foreign wheels; the host's pip constraints do not apply there
  local dir="$1"; shift
  local plats=(); for p in "$@"; do plats+=(--platform "$p"); done
  PIP_CONSTRAINT="" pip install -q --target "$dir" "${plats[@]}" --python-version 3.11 --implementation cp \
    --only-binary=:all: tflite-runtime==2.14.0 'numpy<2' 'pillow>=10,<14' 2>&1 \
    | grep -v -e "dependency resolver" -e "requires numpy" -e "Running pip as the 'root'" -e "is ignored" >&2 || true
}
if [[ ! -d "$PYLIB/tflite_runtime" ]]; then
  say "pip install --target $PYLIB (aarch64 wheels: tflite-runtime 2.14.0, numpy<2, pillow)"
  pip_target "$PYLIB" manylinux_2_34_aarch64 manylinux2014_aarch64
fi
if [[ ! -d "$WORK/pylib_x86/tflite_runtime" ]]; then
  pip_target "$WORK/pylib_x86" manylinux_2_34_x86_64 manylinux2014_x86_64
fi
PYTHONPATH="$PYLIB" "${ARMPY[@]}" -c "import platform, numpy; from tflite_runtime import interpreter; print(platform.machine())" \
  | grep -q aarch64 || { say "emulated python cannot import tflite_runtime"; exit 1; }

# 4. model + images
rm -rf "$RUN"; mkdir -p "$RUN/images"
NEU="$REPO/../shared/datasets/neu-det/images"
if [[ -z "$IMAGES" ]]; then
  if [[ -d "$NEU" ]]; then IMAGES="$NEU"; else say "no NEU images at $NEU: pass --images DIR"; exit 2; fi
fi
python "$REPO/tools/edge_aarch64_helper.py" pick-images "$IMAGES" "$RUN/images" --n "$N" >/dev/null
if [[ -z "$MODEL" ]]; then
  say "training a tiny INT8 model on the host (TensorFlow) from $IMAGES"
  MODEL="$RUN/model.tflite"
  python "$REPO/tools/edge_aarch64_helper.py" make-model "$MODEL" "$IMAGES" --size 64 >/dev/null 2>"$RUN/make_model.log"
else
  cp "$MODEL" "$RUN/model.tflite"; cp "${MODEL%.tflite}.json" "$RUN/model.json"; MODEL="$RUN/model.tflite"
fi

# 5. the runs (1 thread each: the emulated run is slow and the CPUs are shared)
HELPER="$REPO/tools/edge_aarch64_helper.py"
say "x86_64 run (LiteRT, as on the workstation)"
(cd "$REPO" && python -m kdefect.edge.cli "$MODEL" "$RUN/images" --log "$RUN/x86.jsonl" --threads 1 \
  --summary "$RUN/x86_summary.json" -q)
(cd "$REPO" && python "$HELPER" dump "$MODEL" "$RUN/images" "$RUN/x86_dump.json" 2>/dev/null)
(cd "$REPO" && PYTHONPATH="$WORK/pylib_x86:$REPO" KDEFECT_TFLITE_BACKEND=tflite_runtime \
  python "$HELPER" dump "$MODEL" "$RUN/images" "$RUN/x86_tflite_runtime_dump.json" 2>/dev/null)
say "aarch64 run under qemu (slow)"
export PYTHONWARNINGS="ignore::UserWarning"  # numpy 1.26 under qemu: "smallest subnormal is zero" noise
(cd "$REPO" && PYTHONPATH="$PYLIB:$REPO" KDEFECT_TFLITE_BACKEND=tflite_runtime "${ARMPY[@]}" -m kdefect.edge.cli \
  "$MODEL" "$RUN/images" --log "$RUN/arm.jsonl" --threads 1 --summary "$RUN/arm_summary.json" -q)
(cd "$REPO" && PYTHONPATH="$PYLIB:$REPO" KDEFECT_TFLITE_BACKEND=tflite_runtime "${ARMPY[@]}" "$HELPER" dump \
  "$MODEL" "$RUN/images" "$RUN/arm_dump.json" 2>/dev/null)

# 6. compare
X86_BACKEND=$(python -c "import json;print(json.load(open('$RUN/x86_summary.json'))['backend'])")
ARM_BACKEND=$(python -c "import json;print(json.load(open('$RUN/arm_summary.json'))['backend'])")
ARM_VERSIONS=$(PYTHONPATH="$PYLIB" "${ARMPY[@]}" -c "import platform,numpy,PIL;from importlib.metadata import version;print(f'python {platform.python_version()} {platform.machine()}, numpy {numpy.__version__}, pillow {PIL.__version__}, tflite-runtime {version(\"tflite-runtime\")}')")
X86_VERSIONS=$(python -c "import platform,numpy,PIL;from importlib.metadata import version;print(f'python {platform.python_version()} {platform.machine()}, numpy {numpy.__version__}, pillow {PIL.__version__}, ai-edge-litert {version(\"ai-edge-litert\")}')")
QEMU_VERSION=$(qemu-aarch64-static --version | head -1)
python "$HELPER" compare "$RUN/x86.jsonl" "$RUN/arm.jsonl" "$OUT" \
  --dumps "$RUN/x86_dump.json" "$RUN/arm_dump.json" --same-interp-dump "$RUN/x86_tflite_runtime_dump.json" --meta \
  "x86_backend=$X86_BACKEND" "aarch64_backend=$ARM_BACKEND" "x86=$X86_VERSIONS" "aarch64=$ARM_VERSIONS" \
  "emulator=$QEMU_VERSION" "rootfs=Debian bookworm arm64 (debootstrap --foreign, minbase)" \
  "model_sha256=$(sha256sum "$MODEL" | cut -d' ' -f1)" "images_from=$(realpath "$IMAGES")" \
  "command=$COMMAND" "date=$(date -u +%Y-%m-%dT%H:%M:%SZ)" "model=$MODEL"
