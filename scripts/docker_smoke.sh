#!/usr/bin/env bash
# Smoke test of the Docker image, for machines with a Docker engine (no GPU needed):
#   scripts/docker_smoke.sh [IMAGE]   (default unet-upsampling:smoke)
# Builds the image, then inside it: a fast_dev_run on CPU (logging to TensorBoard too: the image has the loggers
# extra), and a two-job multirun through the joblib launcher, with logs written to a mounted host directory. Set
# BUILD=0 to skip the build.
set -euo pipefail

IMAGE="${1:-unet-upsampling:smoke}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LOGS="$(mktemp -d)"
trap 'rm -rf "$LOGS"' EXIT
TINY=(model.depth=2 model.base_channels=4 data.crop_size=48 data.batch_size=4
      data.source.train=8 data.source.val=4 data.source.test=4 data.source.size=48)

if [[ "${BUILD:-1}" != 0 ]]; then
    docker build -t "$IMAGE" "$ROOT"
fi

run() {
    docker run --rm --user "$(id -u):$(id -g)" -v "$LOGS:/app/logs" "$IMAGE" "$@"
}

run python train.py trainer=cpu trainer.fast_dev_run=true "${TINY[@]}" "logger=[csv,tensorboard]" hydra.run.dir=/app/logs/smoke
test -s "$LOGS/smoke/metrics.json"

run python train.py -m hydra/launcher=joblib trainer=cpu trainer.fast_dev_run=true "${TINY[@]}" \
    upsample=deconv,nearest_conv hydra.sweep.dir=/app/logs/sweep
test -s "$LOGS/sweep/0/metrics.json" && test -s "$LOGS/sweep/1/metrics.json"

echo "docker smoke test passed: $IMAGE"
