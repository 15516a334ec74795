# GPU training image: docker build -t unet-upsampling . (see docs/cluster.md, "Docker").
# The base image brings CUDA, cuDNN, NCCL, torch and torchvision; pyproject.toml accepts torch 2.6 ... 2.14.1, so
# pip keeps them. Another base: docker build --build-arg BASE_IMAGE=pytorch/pytorch:<tag> .
ARG BASE_IMAGE=pytorch/pytorch:2.9.1-cuda12.8-cudnn9-runtime
FROM ${BASE_IMAGE}

# Caches go to /cache, which every user may write: under a uid the image does not know (docker run --user), HOME
# is / and torch hub (pretrained weights), Hugging Face (timm) and matplotlib could not write theirs.
ENV PYTHONDONTWRITEBYTECODE=1 \
    XDG_CACHE_HOME=/cache \
    TORCH_HOME=/cache/torch \
    HF_HOME=/cache/huggingface \
    MPLCONFIGDIR=/cache/matplotlib \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    LOG_DIR=/app/logs \
    DATA_DIR=/data

WORKDIR /app

# Dependencies in a layer of their own, before the code: editing the code does not reinstall them.
# The list is read from pyproject.toml (project dependencies + the `loggers` extra: TensorBoard, MLflow + the
# `cluster` extra: Hydra launchers, Optuna).
COPY pyproject.toml ./
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
print('\n'.join(p['dependencies'] + p['optional-dependencies']['loggers'] + p['optional-dependencies']['cluster']))" \
    > /tmp/requirements.txt \
    && pip install --no-cache-dir -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# The code, installed without touching the dependencies above.
COPY README.md train.py eval.py predict.py ./
COPY src/ src/
RUN pip install --no-cache-dir --no-deps . \
    && useradd --create-home --no-log-init --uid 1000 --user-group app \
    && mkdir -p /app/logs /data /cache/torch /cache/huggingface /cache/matplotlib \
    && chown app:app /app/logs /data \
    && chmod -R 1777 /cache

# Runs write to /app/logs (LOG_DIR), data is read from /data (DATA_DIR): mount both.
# With bind mounts, run as your own user (docker run --user "$(id -u):$(id -g)") so the files stay yours.
USER 1000:1000
VOLUME ["/app/logs", "/data"]

CMD ["python", "train.py", "trainer=gpu"]
