# One image for every netdumplings process (nd-hub, nd-sniff, nd-print, nd-web, ...): the
# command picks the role. libpcap/tcpdump are for kitchens (BPF filters are compiled by
# libpcap); the NATS client is included so any hub can join a backplane.
FROM python:3.11-slim

RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libpcap0.8 tcpdump \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
# only what the package is built from, so editing tests or docs does not rebuild the layer
COPY pyproject.toml README.md ./
COPY netdumplings ./netdumplings
COPY chefs ./chefs
COPY eaters ./eaters
RUN pip install --no-cache-dir '.[nats]' && rm -rf /src

# Hub and eaters run unprivileged; a kitchen container runs as root (or with the NET_RAW
# capability) because capturing needs raw sockets: see docker-compose.yml.
RUN useradd --system --uid 11347 --home-dir /nonexistent --shell /usr/sbin/nologin nd
USER nd
WORKDIR /

# kitchens in, eaters out, hub metrics, web dashboard
EXPOSE 11347 11348 11349 11350
CMD ["nd-hub", "--address", "0.0.0.0"]
