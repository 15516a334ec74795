# Placeholder: the GPU image is completed with the containerized-jobs work.
FROM python:3.11-slim
WORKDIR /app
COPY . .
RUN pip install --no-cache-dir -e .
CMD ["python", "train.py", "trainer.fast_dev_run=true"]
