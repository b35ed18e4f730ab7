# One image for the Python parts of VoiceDrive Monitoring: voicedrive-sim, voicedrive-exporter,
# voicedrive-receiver (docker-compose.yml picks the command). Built from this repository.
FROM python:3.11.9-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
# Metadata first so a code change does not reinstall every dependency.
COPY pyproject.toml README.md ./
COPY common/ common/
COPY exporter/ exporter/
COPY simulator/ simulator/
COPY alertmanager/ alertmanager/
COPY mixin/ mixin/
COPY demo/ demo/
RUN pip install . \
    && useradd --system --uid 10001 --home-dir /var/lib/voicedrive voicedrive \
    && install -d -o voicedrive -g voicedrive /var/lib/voicedrive-receiver /var/backups/voicedrive

USER voicedrive
WORKDIR /var/lib/voicedrive
# No default command: each service in docker-compose.yml names its program.
CMD ["voicedrive-exporter", "--help"]
