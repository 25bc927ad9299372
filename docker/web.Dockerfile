# The web: Flask under gunicorn. Installs the full pinned list (one lock for everything) but never
# imports the heavy packages; a slimmer image would split requirements, at the cost of two locks.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY requirements.txt .
RUN pip install -r requirements.txt
COPY shared shared
COPY web web
COPY models/__init__.py models/manifest.json models/
COPY models/mask_classifier models/mask_classifier
RUN useradd --uid 10001 app
USER app
EXPOSE 8000
CMD ["gunicorn", "--bind", "0.0.0.0:8000", "--worker-class", "gthread", "--threads", "8", "--workers", "2", \
     "--timeout", "300", "--access-logfile", "-", "web.app:create_app()"]
