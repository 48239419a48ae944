# `dogclf serve` as a bring-your-own SageMaker inference image (why not the SageMaker
# PyTorch inference image: docs/decisions.md). SageMaker runs `docker run IMAGE serve`, puts
# the extracted model.tar.gz in /opt/ml/model and calls GET /ping and POST /invocations on
# port 8080; docker/entrypoint.sh turns that into `dogclf serve /opt/ml/model`.
#
#   docker build -t dogclf-serve .                      # CPU instances (ml.c*, ml.m*)
#   docker build -t dogclf-serve:gpu --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128 .
#   docker run --rm -p 8080:8080 -v "$PWD/model:/opt/ml/model:ro" dogclf-serve
#
# Limits and batching come from DOGCLF_SERVING__* variables (the endpoint's Environment).
FROM python:3.11-slim

ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# torch first, from its own index (the CPU wheels are a fraction of the size of PyPI's CUDA
# ones) and in its own layer, so a code change does not reinstall it. The versions are
# those of pyproject's `torch` extra (tests/test_docker_image.py keeps them equal).
RUN pip install --index-url "${TORCH_INDEX}" torch==2.14.1 torchvision==0.29.1

WORKDIR /opt/dogclf
COPY pyproject.toml README.md ./
COPY dogclf ./dogclf
RUN pip install ".[torch]"

COPY docker/entrypoint.sh /usr/local/bin/dogclf-entrypoint
RUN chmod 0755 /usr/local/bin/dogclf-entrypoint

# SageMaker may move the port (inference pipelines set SAGEMAKER_BIND_TO_PORT); the image
# serves one model, not a multi-model endpoint.
LABEL com.amazonaws.sagemaker.capabilities.accept-bind-to-port=true \
      com.amazonaws.sagemaker.capabilities.multi-models=false
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/dogclf-entrypoint"]
CMD ["serve"]
