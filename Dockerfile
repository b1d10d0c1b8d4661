# campaignbot image: the wheel (with its default templates and example campaign) on a
# slim Python, run as a non-root user. The build steps are the wheel test's
# (tests/test_wheel.py): `pip wheel --no-deps .`, then `pip install` the wheel.
#
#   docker build -t campaignbot .
#   docker run -p 8080:8080 -v campaignbot-var:/srv/campaignbot/var campaignbot
#
# Your own campaign: mount it over the baked-in example,
#   -v ./config:/srv/campaignbot/config:ro -v ./templates:/srv/campaignbot/templates:ro
# compose.yaml runs it with PostgreSQL and Mailpit.

FROM python:3.12-slim AS build
WORKDIR /src
COPY pyproject.toml setup.py MANIFEST.in README.md ./
COPY src ./src
COPY templates ./templates
COPY config ./config
RUN pip wheel --no-cache-dir --no-deps -w /dist .

FROM python:3.12-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
COPY --from=build /dist /dist
# the postgres extra brings asyncpg, for CAMPAIGNBOT_DATABASE_URL=postgresql://...
# DL3013: the wheel was built above from this very source; its dependencies carry
# lower bounds in pyproject.toml
# hadolint ignore=DL3013
RUN whl="$(ls /dist/campaignbot-*.whl)" \
    && pip install --no-cache-dir "${whl}[postgres]" \
    && rm -rf /dist \
    && groupadd --system --gid 10001 campaignbot \
    && useradd --system --uid 10001 --gid 10001 --create-home --home-dir /srv/campaignbot campaignbot
USER 10001:10001
WORKDIR /srv/campaignbot
# bake in the default templates and example campaign; mount yours over them
RUN campaignbot init .
# listen on every interface inside the container; links point at the published port
# until CAMPAIGNBOT_PUBLIC_URL names the real https address
ENV CAMPAIGNBOT_HTTP__HOST=0.0.0.0 \
    CAMPAIGNBOT_PUBLIC_URL=http://localhost:8080
EXPOSE 8080
VOLUME ["/srv/campaignbot/var"]
# the admin listener (loopback inside the container) answers /livez while the
# process is alive; no curl in a slim image, so Python asks
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8081/livez', timeout=4)"]
CMD ["campaignbot", "run", "--log-format", "json"]
