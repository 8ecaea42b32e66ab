#!/usr/bin/env bash
# The GPU benchmarks in one go, for a machine with an NVIDIA GPU and jax, torch, flax, optax and
# numpy preinstalled (no network needed). From the repository root:
#
#     PYTHONPATH=. bash benchmarks/gpu.sh
#
# 1. checks the machine (a GPU both jax and torch see, every package) and stops loudly if not;
# 2. measures the roofline on the GPU with jax and torch at widths 64 and 256: float32 matmul
#    rates and the batched small-SVD time of every algorithm each library offers
#    (small-matrix SVD is the GPU's known weak spot: jax-ml/jax#2980), jaxflow's Jacobi SVD
#    included, and the values-only SVD methods at widths 32-256 (benchmarks/svd_methods.py);
# 3. runs the spectra sweep at the GPU scale (workloads.SPECTRA["gpu"]: width 64, depths to
#    100, 288 chains) for jaxflow and torch.func on the same GPU, alternating, with jaxflow's
#    SVD set to the fastest jax algorithm of step 2; checksums must agree or the result is
#    refused;
# 4. trains the trainability grid at the GPU scale (workloads.TRAINABILITY["gpu"]: tanh, width 256,
#    depths 10…100, 15 σ_w², 4 seeds = 600 networks, 300 SGD steps of 128 digits) with jaxflow's
#    one call against torch.func + vmap, alternating (needs scikit-learn for the digits; without
#    it, or before jaxflow.experiments.trainability lands, the runner reports the step skipped).
#
# Results go to $OUT (default benchmarks/results): the runner's <machine>-<date>.json/.md, and
# gpu-roofline.jsonl. Exit status 1 if any step failed. Knobs: GPU_REPEATS (default 3),
# GPU_TIMEOUT (seconds per process, default 240), PYTHON (default python). GPU_DRY_RUN=1 runs
# the same steps on the CPU at the quick scale, to test this script without a GPU.
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python}"
OUT="${OUT:-benchmarks/results}"
REPEATS="${GPU_REPEATS:-3}"
TIMEOUT="${GPU_TIMEOUT:-240}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$OUT" || { echo "gpu.sh: FAILED: cannot create $OUT" >&2; exit 1; }
status=0
die() { echo "gpu.sh: FAILED: $*" >&2; exit 1; }
step_failed() { echo "gpu.sh: FAILED: $*" >&2; status=1; }

if [ "${GPU_DRY_RUN:-0}" = 1 ]; then
  DEVICE=cpu SCALE=quick WIDTHS="16" NAME="dry-run-cpu"
  echo "gpu.sh: dry run on the CPU at the quick scale"
else
  DEVICE=gpu SCALE=gpu WIDTHS="64 256"
  command -v nvidia-smi >/dev/null 2>&1 || die "nvidia-smi not found: this script needs an NVIDIA GPU machine"
  NAME="$(nvidia-smi --query-gpu=name --format=csv,noheader | head -n 1)" || die "nvidia-smi failed"
  [ -n "$NAME" ] || die "nvidia-smi lists no GPU"
  nvidia-smi || true
fi

# 1. The software: every package, and a GPU that both jax and torch see.
DEVICE="$DEVICE" "$PY" - <<'PYEOF' || die "the software stack is incomplete (see above)"
import importlib.util, os, sys
missing = [m for m in ("jax", "torch", "flax", "optax", "numpy") if importlib.util.find_spec(m) is None]
if missing:
    sys.exit(f"missing packages: {', '.join(missing)}")
import jax, torch
import jaxflow  # the repository root must be on PYTHONPATH
if os.environ["DEVICE"] == "gpu":
    if jax.default_backend() != "gpu":
        sys.exit(f"jax sees no GPU: backend {jax.default_backend()!r}, devices {jax.devices()}")
    if not torch.cuda.is_available():
        sys.exit("torch.cuda.is_available() is False")
    print(f"jax {jax.__version__} on {jax.devices()[0].device_kind}; "
          f"torch {torch.__version__} on {torch.cuda.get_device_name()}")
else:
    print(f"jax {jax.__version__}, torch {torch.__version__} (CPU dry run)")
PYEOF

# 2. The roofline on this device, with both libraries.
ROOF="$OUT/gpu-roofline.jsonl"
[ -e "$ROOF" ] && ROOF="$OUT/gpu-roofline-$(date +%H%M%S).jsonl"
for width in $WIDTHS; do
  for backend in jax torch; do
    echo "gpu.sh: roofline $backend width $width"
    "$PY" benchmarks/roofline.py --backend "$backend" --width "$width" --device "$DEVICE" | tee -a "$ROOF" \
      || step_failed "roofline $backend width $width"
  done
done

# 2b. Values-only SVD at widths 32-256: LAPACK-style (cuSOLVER) against jaxflow's batched
# one-sided Jacobi in JAX operations, per step of a scan and per chunk (benchmarks/svd_methods.py).
SVD_MACHINE="gpu-$(echo "$NAME" | tr -cs 'A-Za-z0-9' '-' | sed 's/-*$//')"
if [ "$DEVICE" = gpu ]; then SVD_ARGS="--repeats $REPEATS"; else SVD_ARGS="--quick"; fi
echo "gpu.sh: svd methods"
# shellcheck disable=SC2086
timeout "$TIMEOUT" "$PY" benchmarks/svd_methods.py $SVD_ARGS --machine "$SVD_MACHINE" --out "$OUT" \
  || step_failed "svd methods (benchmarks/svd_methods.py)"

# 3. jaxflow's SVD: the fastest jax algorithm at the sweep's width.
SWEEP_WIDTH="$("$PY" -c "import sys; sys.path.insert(0, 'benchmarks'); import workloads; print(workloads.SPECTRA['$SCALE'].width)")" \
  || die "cannot read the $SCALE spectra workload"
export JAXFLOW_BENCH_SVD="$(ROOF="$ROOF" W="$SWEEP_WIDTH" "$PY" - <<'PYEOF'
import json, os
best = ("default", float("inf"))
with open(os.environ["ROOF"]) as f:
    for line in f:
        if not line.startswith("JAXFLOW_BENCH_RESULT "):
            continue
        info = json.loads(line.split(" ", 1)[1])["info"]
        if info["backend"] != "jax" or info.get("width", int(os.environ["W"])) != int(os.environ["W"]):
            continue
        for key, value in info.items():
            if key.startswith("svd_us[") and value < best[1]:
                best = (key[len("svd_us["):-1], value)
print(best[0])
PYEOF
)" || die "cannot choose the SVD algorithm from $ROOF"
echo "gpu.sh: jaxflow's SVD algorithm: $JAXFLOW_BENCH_SVD"

# 4. The spectra sweep, jaxflow against torch.func, on the same device.
MACHINE="gpu-$(echo "$NAME" | tr -cs 'A-Za-z0-9' '-' | sed 's/-*$//')"
"$PY" benchmarks/run.py --scale "$SCALE" --device "$DEVICE" --workload spectra --impl jaxflow torch-func \
  --repeats "$REPEATS" --timeout "$TIMEOUT" --out "$OUT" --machine "$MACHINE" \
  --note "benchmarks/gpu.sh on $NAME; jaxflow SVD algorithm: $JAXFLOW_BENCH_SVD" \
  || step_failed "the spectra sweep (see the runner's messages above)"

# 5. The trainability grid (header item 4): jaxflow's one compiled call against torch.func + vmap.
"$PY" benchmarks/run.py --scale "$SCALE" --device "$DEVICE" --workload trainability --impl jaxflow torch-func \
  --repeats "$REPEATS" --timeout "$TIMEOUT" --out "$OUT" --machine "$MACHINE" \
  --note "benchmarks/gpu.sh on $NAME: the trainability grid" \
  || step_failed "the trainability grid (see the runner's messages above)"

[ "$status" = 0 ] && echo "gpu.sh: done; results in $OUT" || echo "gpu.sh: finished WITH FAILURES; partial results in $OUT" >&2
exit "$status"
