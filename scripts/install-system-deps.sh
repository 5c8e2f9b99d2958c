#!/usr/bin/env bash
# System packages the sandboxes use, from Debian: bubblewrap (process sandbox namespaces)
# and docker.io (the Docker sandbox); docker-compose (checks compose.yaml); chromium with
# chromium-driver, for the end-to-end test of `scientist web` in a headless browser; pango and
# fonts, which WeasyPrint renders report PDFs with; postgresql, for the shared-archive tests;
# python3-venv where the system Python lacks it. As root, also starts a Docker engine if none answers,
# with flags that leave the host's networking untouched (sandbox containers use no network).
# Safe to re-run. Without root or apt it only says what is missing; the sandbox then falls
# back to weaker isolation and reports it, and the Docker and browser tests skip.
set -euo pipefail
missing=()
command -v bwrap >/dev/null || missing+=(bubblewrap)
command -v setpriv >/dev/null || missing+=(util-linux)
command -v dockerd >/dev/null || missing+=(docker.io)
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
command -v docker-compose >/dev/null || missing+=(docker-compose)
python3 -c "import ensurepip, venv" 2>/dev/null || missing+=(python3-venv)  # Debian's python3 lacks venv
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
for lib in libpango-1.0-0 libpangoft2-1.0-0 fonts-dejavu-core; do
  dpkg -s "$lib" >/dev/null 2>&1 || missing+=("$lib")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "note: ${missing[*]} not installed; sandbox isolation is weaker, Docker or browser tests skip" >&2
  fi
fi
if [ "$(id -u)" = 0 ] && command -v dockerd >/dev/null && ! docker info >/dev/null 2>&1; then
  nohup dockerd --iptables=false --ip-forward=false --bridge=none >/tmp/dockerd.log 2>&1 &
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || { echo "dockerd did not start; see /tmp/dockerd.log" >&2; }
fi
