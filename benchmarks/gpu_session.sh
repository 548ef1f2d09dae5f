#!/usr/bin/env bash
# The GPU side of the project in stages that each fit one 10-minute call on a lent device
# (see README "On a GPU"): run from a checkout's root on a machine with an NVIDIA GPU, CuPy
# and PyTorch (the device image's python3 has both; gpuconv itself comes from this checkout).
#
#   bash benchmarks/gpu_session.sh STAGE [STAGE ...]
#     info       nvidia-smi, versions, what CuPy and PyTorch see
#     tests      the GPU tests: python -m pytest -m gpu (the kernels on the GPU, the 2^31 case)
#     check      gpuconv check on the GPU: every kernel version against the reference
#     bench-DT   gpuconv bench --dtype DT --all-versions (DT: float32, float16, bfloat16)
#     quick-DT   the same with --quick (a few layers: a first look in seconds)
#     sanitize   compute-sanitizer memcheck, racecheck, initcheck and synccheck over gpuconv
#                check's conv2d and max-pool ops (every kernel version, float16 and float32);
#                sanitize-TOOL runs one tool
#
# Logs and results go to a work folder, then into one archive $OUT/gpu-session.tgz ($OUT: the
# device tool's result folder; else ./gpu-session-out), so that one file comes back. Exits 1
# if any stage failed; every stage runs anyway.
set -uo pipefail

out=${OUT:-$PWD/gpu-session-out}
work=$(mktemp -d)
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export GPUCONV_CACHE_DIR=${GPUCONV_CACHE_DIR:-/tmp/gpuconv-cache}
py=${PYTHON:-python3}
status=0

run() {  # run NAME COMMAND...: tee the output into NAME.log, remember a failure
  local name=$1
  shift
  echo "== $name: $*"
  "$@" 2>&1 | tee "$work/$name.log"
  local rc=${PIPESTATUS[0]}
  echo "== $name: exit $rc ($SECONDS s into the session)" | tee -a "$work/$name.log"
  [ "$rc" -eq 0 ] || status=1
}

for stage in "$@"; do
  case $stage in
    info)
      run info bash -c "nvidia-smi; $py -c 'import sys, numpy, cupy, torch; \
print(sys.version); print(\"numpy\", numpy.__version__, \"cupy\", cupy.__version__, \
\"torch\", torch.__version__, \"cudnn\", torch.backends.cudnn.version()); \
print(cupy.cuda.runtime.getDeviceProperties(0)[\"name\"], torch.cuda.get_device_name(0))'" ;;
    tests)
      run tests "$py" -m pytest -m gpu -n 4 -q -p no:cacheprovider tests ;;
    check)
      run check "$py" -m gpuconv check --runtime cuda ;;
    bench-* | quick-*)
      dtype=${stage#*-}
      quick=()
      [ "${stage%%-*}" = quick ] && quick=(--quick)
      run "$stage" "$py" -m gpuconv bench --dtype "$dtype" --all-versions "${quick[@]}" \
        --out "$work" ;;
    sanitize | sanitize-*)
      tools=(memcheck racecheck initcheck synccheck)
      [ "$stage" = sanitize ] || tools=("${stage#sanitize-}")
      for tool in "${tools[@]}"; do
        for dtype in float16 float32; do
          run "sanitize-$tool-$dtype" compute-sanitizer --tool "$tool" --error-exitcode 1 \
            "$py" -m gpuconv check --runtime cuda --dtype "$dtype" --op conv2d \
            --op conv2d_channels_last --op conv2d_input --op conv2d_input_channels_last \
            --op conv2d_weight --op conv2d_bias \
            --op max_pool2d --op max_pool2d_input
        done
      done ;;
    *)
      echo "unknown stage $stage" >&2
      status=1 ;;
  esac
done

tar czf "$out/gpu-session.tgz" -C "$work" .
echo "== archived $(ls "$work" | wc -l) files into $out/gpu-session.tgz; exit $status"
exit $status
