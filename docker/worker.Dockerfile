# The GPU worker: TensorFlow with CUDA wheels (runs on CPU when no GPU is given), PyAV with NVENC.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility,video
WORKDIR /app
COPY requirements.txt .
# Same pins, with the CUDA build of TensorFlow in place of the CPU one.
RUN sed 's/^tensorflow-cpu==\(.*\)/tensorflow[and-cuda]==\1/' requirements.txt > /tmp/req.txt \
 && pip install -r /tmp/req.txt
COPY shared shared
COPY worker worker
COPY models models
RUN useradd --uid 10001 app && mkdir -p /assets && chown app /assets
USER app
ENV ASSET_CACHE=/assets
CMD ["celery", "-A", "worker.tasks", "worker", "-Q", "video,default", "--concurrency", "1", \
     "--without-gossip", "--without-mingle", "--loglevel", "INFO"]
