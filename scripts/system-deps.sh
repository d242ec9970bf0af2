#!/usr/bin/env bash
# Installs the system packages the tests, `make run` and `make bench` need, when missing:
# PostgreSQL and Redis servers (throwaway instances on free ports), wrk (load
# generator), promtool (Prometheus rule tests), npm (schema validators for the
# Kubernetes custom resources; the local OIDC provider of the console), chromium (the
# console's browser tests, driven by Playwright), haproxy (the load balancer in front of
# several instances in the rolling-restart test); with BENCH_TOOLS=1 (make bench) also valgrind (instruction
# counts). Debian/Ubuntu; as root, or with sudo.
set -euo pipefail

need=()
pg_found() { command -v pg_ctl >/dev/null || ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; }
pg_found || need+=(postgresql)
command -v redis-server >/dev/null || need+=(redis-server)
command -v wrk >/dev/null || need+=(wrk)
command -v promtool >/dev/null || need+=(prometheus)
command -v npm >/dev/null || need+=(nodejs npm)
command -v chromium >/dev/null || need+=(chromium)
command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || need+=(haproxy)
if [ "${BENCH_TOOLS:-}" = 1 ]; then
  command -v valgrind >/dev/null || need+=(valgrind)
fi

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
echo "system-deps: installing ${need[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "system-deps: run as root or install: ${need[*]}" >&2; exit 1; }
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# --no-install-recommends keeps prometheus from pulling in a running node exporter and friends
$sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# Debian starts the services it installs; the tests run their own on free ports.
for svc in postgresql redis-server prometheus haproxy; do
  $sudo systemctl stop "$svc" >/dev/null 2>&1 || $sudo service "$svc" stop >/dev/null 2>&1 || true
done
