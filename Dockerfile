# jinad with its pinned Jina. Run with the host's network so Flows' ports are reachable, and a
# volume for its home (README, "Docker"):
#   docker build -t jinad . && docker run -d --network host -v jinad-home:/home/jinad/.jinad jinad
# scripts/docker-image.sh builds it, also where no registry serves the base image.
FROM python:3.11-slim

# The home is fixed (also under `--user root`); children get 7 s between SIGTERM and SIGKILL,
# so that `docker stop` (10 s) sees the daemon end them all and exit by itself.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    JINAD_WORKSPACE=/home/jinad/.jinad \
    JINAD_STOP_GRACE_S=7

# An unprivileged user owns the daemon's home; `docker run --user root` for root by choice.
RUN useradd --create-home --home-dir /home/jinad --uid 10001 --user-group jinad \
    && install -d -o jinad -g jinad -m 0700 /home/jinad/.jinad

WORKDIR /opt/jinad
COPY pyproject.toml setup.cfg README.md ./
COPY configs ./configs
COPY jinad ./jinad
# dumb-init as PID 1: it reaps the orphans jinad's children leave (reparented to PID 1) and
# passes docker's signals on to jinad.
RUN pip install . dumb-init==1.2.5.post1 -c configs/constraints.txt

USER 10001:10001
# The daemon's home (state, workspaces, logs, token): a volume, so nothing is lost with the
# container. A new named volume takes this folder's owner (jinad) from the image.
VOLUME ["/home/jinad/.jinad"]
EXPOSE 8000
# GET / answers {} at the address the daemon wrote to its home (daemon.json), whatever port it was given.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 CMD ["python", "-m", "jinad.healthcheck"]
ENTRYPOINT ["dumb-init", "--", "jinad"]
