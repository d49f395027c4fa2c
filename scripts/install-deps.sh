#!/usr/bin/env bash
# Installs (as root, on Debian) and starts what flagwarden's tests need, when it is
# missing: PostgreSQL, Redis, Alertmanager, Prometheus and promtool, Celery with its
# Redis transport, Chromium, django-redis with python3-zstd, psycopg2 (PostHog's cache
# writer reproduced in the rebuild tests), and (from Go modules) golangci-lint and the
# versitygw S3 server. Quick when everything is already there.
set -euo pipefail

log() { printf 'install-deps: %s\n' "$*" >&2; }

need=()
command -v pg_ctlcluster >/dev/null 2>&1 || need+=(postgresql)
command -v psql >/dev/null 2>&1 || need+=(postgresql-client)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v prometheus-alertmanager >/dev/null 2>&1 || need+=(prometheus-alertmanager)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
/usr/bin/python3 -c 'import celery' >/dev/null 2>&1 || need+=(python3-celery)
/usr/bin/python3 -c 'import redis' >/dev/null 2>&1 || need+=(python3-redis)
/usr/bin/python3 -c 'import psycopg2' >/dev/null 2>&1 || need+=(python3-psycopg2)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
# PostHog's Django cache readers: django-redis with the zstd bindings its compressor uses.
/usr/bin/python3 -c 'import django_redis' >/dev/null 2>&1 || need+=(python3-django-redis)
/usr/bin/python3 -c 'import zstd' >/dev/null 2>&1 || need+=(python3-zstd)

if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    log "missing ${need[*]} and not root: install them with apt-get, then run again"
    exit 1
  fi
  log "installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# Debian's packages start no service here (no systemd): start what is not answering.
pg_up() { psql "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable" -Atqc 'select 1' >/dev/null 2>&1; }
if ! pg_up; then
  ver=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)
  if [ -z "$ver" ]; then
    log "postgresql is installed but has no cluster"; exit 1
  fi
  hba=/etc/postgresql/$ver/main/pg_hba.conf
  # Tests connect over loopback as postgres without a password, as on the dev machines.
  if ! grep -q '^host all all 127.0.0.1/32 trust' "$hba"; then
    sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
  fi
  log "starting postgresql $ver"
  pg_ctlcluster --skip-systemctl-redirect "$ver" main start || pg_ctlcluster --skip-systemctl-redirect "$ver" main reload
  for _ in $(seq 1 50); do pg_up && break; sleep 0.2; done
  pg_up || { log "postgresql did not come up"; exit 1; }
fi

if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  log "starting redis-server"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  for _ in $(seq 1 50); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 0.2; done
fi
# The linter is a Go program: build it once into GOPATH/bin (a few minutes on a fresh
# machine, nothing afterwards).
gobin=$(go env GOPATH)/bin
if ! [ -x "$gobin/golangci-lint" ] || ! "$gobin/golangci-lint" version 2>/dev/null | grep -q ' 2\.15\.0 '; then
  log "installing golangci-lint v2.15.0"
  go install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@v2.15.0
fi
# The S3-compatible server the S3-tier tests start per test: versitygw (Apache 2.0),
# a Go program, built once from its module like the linter.
if ! [ -x "$gobin/versitygw" ]; then
  log "installing versitygw v1.8.0"
  go install github.com/versity/versitygw/cmd/versitygw@v1.8.0
fi
log "services ready"
