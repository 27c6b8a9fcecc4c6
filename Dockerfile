# jinad with its pinned Jina. Run with the host's network so Flows' ports are reachable:
#   docker build -t jinad . && docker run -d --network host jinad
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /opt/jinad
COPY pyproject.toml setup.cfg README.md ./
COPY configs ./configs
COPY jinad ./jinad
RUN pip install . -c configs/constraints.txt

# The daemon's home (state, workspaces, logs): a volume, so nothing is lost with the container.
VOLUME ["/root/.jinad"]
EXPOSE 8000
ENTRYPOINT ["jinad"]
