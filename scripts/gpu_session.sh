#!/usr/bin/env bash
# One sitting on the GPU machine: the device's ceilings and each mode's roofline position,
# train.py against the plain loop at the study's settings, and study throughput with 1, 4 and 8 runs packed on
# the GPU, at the GPU study's budget and at the CPU study's (today's baseline: 8 x 1000 steps of 8 x 64 px in 50 s).
# About 8 minutes; every step has its own timeout, a failed step is recorded and the next one runs.
#
# On the GPU machine, from the project's root with .device/ beside the code (../shared/tools/device-kit.sh):
#   source .device/setup.sh && bash scripts/gpu_session.sh
# Results: $OUT/gpu_session.tar.gz (every step's JSON and printed tables, its exit code and time, nvidia-smi;
# no checkpoints). Write its numbers into docs/performance.md with the command and date.
# A dry run on a CPU with tiny sizes (checks the commands, not the speed):
#   GPU_SESSION_DRY=1 OUT=/tmp/out DATA_DIR=../shared/data PYTHONPATH=src:scripts bash scripts/gpu_session.sh
set -uo pipefail
cd "$(git rev-parse --show-toplevel 2>/dev/null || dirname "$(dirname "$(readlink -f "$0")")")"
out=${OUT:-/tmp/gpu_session}
res=$out/gpu_session
mkdir -p "$res"
py=${PYTHON:-python3}
start=$SECONDS

if [[ -n ${GPU_SESSION_DRY:-} ]]; then  # the same commands on a CPU at tiny sizes
  dev=(--device cpu --threads 1)
  big=(--size 32 --batch-size 2 --width 4 --steps 2 --warmup 1 --repeats 1 --matmul-size 128 --copy-mb 4)
  modes=(deconv)
  study=(--size 32 --batch-size 2 --width 4 data.source.train=32 data.source.size=48 data.source.val=2 data.source.test=0
    data.min_batches_per_epoch=1)
  tp_gpu=(--throughput 1 2 --throughput-steps 4 --study-steps 4000 --size 32 --batch-size 2 --width 4 validations=1)
  tp_cpu_study=(--throughput 2 --throughput-steps 4 --study-steps 4000 --size 32 --batch-size 2 --width 4 validations=1)
  limit=(120 240 240 240)
  total=1200  # a CPU compiles step 5's network for minutes: a step killed mid-compile leaves a broken inductor cache
else
  dev=(--device cuda)
  big=(--size 256 --batch-size 16 --steps 15 --warmup 3 --repeats 2)
  modes=(deconv nearest_conv bilinear_conv pixelshuffle)
  # the study's crops and batch on synthetic data with many images, so that an epoch holds 128 steps
  study=(--size 64 --batch-size 8 data.source.train=1024 data.source.size=96 data.source.val=8 data.source.test=0)
  tp_gpu=(--throughput 1 4 8 --throughput-steps 300 --study-steps 4000)
  tp_cpu_study=(--throughput 8 --throughput-steps 1000 --study-steps 4000)
  limit=(100 110 180 120)
  total=510
fi

step() {  # step NAME TIMEOUT_S ARGS...: one benchmark call, its table and JSON under $res, its exit code noted
  local name=$1 seconds=$2
  shift 2
  echo "== $name ($(date -u +%H:%M:%S), ${seconds}s at most)"
  timeout --kill-after=10 "$seconds" "$py" scripts/benchmark.py "$@" --output "$res/$name.json" \
    > "$res/$name.txt" 2>&1
  local rc=$?
  echo "$name rc=$rc $((SECONDS - start))s" | tee -a "$res/steps.txt"
  tail -n 25 "$res/$name.txt"
}

{
  date -u +%FT%TZ
  git rev-parse HEAD 2>/dev/null || true
  nvidia-smi 2>&1 || echo "no nvidia-smi"
  "$py" -c "import torch, lightning; print('torch', torch.__version__, 'lightning', lightning.__version__, \
'cuda', torch.cuda.is_available() and torch.cuda.get_device_name(0))"
  nproc
} > "$res/machine.txt" 2>&1
cat "$res/machine.txt"

# 1. ceilings (bf16, TF32, fp32 matrix rate at 8192; 1 GiB copy; launch floor), roofline per mode, ours / MONAI
step ceilings_roofline_256px "${limit[0]}" "${dev[@]}" "${big[@]}" --modes "${modes[@]}" --no-variants \
  --skip train_py pipeline inference
# 2. train.py against the plain loop at the study's settings, alone and in steady state (3 epochs of 128 steps,
#    the first one warm-up), with the host syncs per step
step train_py_vs_plain_64px "${limit[1]}" "${dev[@]}" --modes deconv --steps 2 --warmup 1 --repeats 1 \
  --no-variants --train-epochs 3 --train-rounds 2 --skip pipeline inference "${study[@]}"
# 3. study throughput at the GPU study's budget (isbi2012, 256 px crops, batch 16): 1, 4 and 8 runs packed, each run
#    with the experiment's validations, probe and test
step throughput_gpu_budget "${limit[2]}" "${dev[@]}" --modes deconv --skip training train_py pipeline inference \
  "${tp_gpu[@]}" experiment=upsample_study_gpu data=isbi2012
# 4. the same at the CPU study's settings (vnc_em, 64 px, batch 8, 8 packed): today's baseline, 50 s per 8 x 1000
step throughput_cpu_study_budget "${limit[3]}" "${dev[@]}" --modes deconv --skip training train_py pipeline \
  inference "${tp_cpu_study[@]}" experiment=upsample_study data=vnc_em
# 5. with what is left: train.py against the plain loop with CUDA graphs (torch.compile, reduce-overhead)
left=$((total - (SECONDS - start)))
if ((left > 90)); then
  step train_py_vs_plain_64px_reduce_overhead "$left" "${dev[@]}" --modes deconv --steps 2 --warmup 1 \
    --repeats 1 --no-variants --train-epochs 3 --train-rounds 1 --skip pipeline inference "${study[@]}" \
    model.compile=true model.compile_mode=reduce-overhead
else
  echo "train_py_vs_plain_64px_reduce_overhead skipped: ${left}s left" | tee -a "$res/steps.txt"
fi

tar czf "$out/gpu_session.tar.gz" -C "$out" --exclude='*.ckpt' gpu_session
echo "wrote $out/gpu_session.tar.gz after $((SECONDS - start)) s"
