# rtwhisper server on a CUDA image (the guide's way of running it). Not built in this project's
# CI: no Docker registry is reachable there. CTranslate2 4.x needs the CUDA 12 cuBLAS and cuDNN 9.
FROM nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04
ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-pip python-is-python3 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip3 install ".[server,models]"
COPY docker/realtime_server.py ./realtime_server.py
EXPOSE 8765
# Bound to all interfaces inside the container; publish the port only where you mean to.
CMD ["rtwhisper", "serve", "--host", "0.0.0.0", "--port", "8765"]
