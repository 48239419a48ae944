#!/bin/sh
# Entry point of the dogclf serving image (Dockerfile). SageMaker starts a bring-your-own
# inference container as `docker run IMAGE serve`, with the extracted model.tar.gz in
# /opt/ml/model, and sends GET /ping and POST /invocations to port 8080.
#
#   serve [ARGS...]   dogclf serve $SM_MODEL_DIR on 0.0.0.0:$SAGEMAKER_BIND_TO_PORT (8080);
#                     ARGS go to `dogclf serve` (e.g. --max-batch-size 32)
#   train             refused: this image only serves (train with `dogclf train-sagemaker`)
#   anything else     run as a command (docker run -it IMAGE bash)
set -eu

case "${1:-serve}" in
serve)
    [ "$#" -gt 0 ] && shift
    # exec: dogclf becomes the process SageMaker signals; it drains requests on SIGTERM.
    exec dogclf serve "${SM_MODEL_DIR:-/opt/ml/model}" \
        --host 0.0.0.0 \
        --port "${SAGEMAKER_BIND_TO_PORT:-8080}" "$@"
    ;;
train)
    echo "Error: this image serves models; train with \`dogclf train-sagemaker\`" >&2
    exit 2
    ;;
*)
    exec "$@"
    ;;
esac
