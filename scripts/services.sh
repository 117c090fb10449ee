#!/usr/bin/env bash
# Start the local services Herald's tests talk to, when they are not running: PostgreSQL
# (127.0.0.1:5432, trust auth).  Idempotent.  Commands from the machine notes (.library/env).
set -uo pipefail
# GnuPG for the OpenPGP tests (Debian package gpg).
if ! command -v gpg >/dev/null 2>&1; then
  (apt-get update -qq && apt-get install -y -qq gpg) >/dev/null 2>&1 || echo "could not install gpg" >&2
fi
# Java 17+ for the Spark engine tests (tests/test_spark_engine.py; Debian openjdk-17-jre-headless).
if ! command -v java >/dev/null 2>&1; then
  SUDO=""; if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  (export DEBIAN_FRONTEND=noninteractive; $SUDO apt-get update -qq && $SUDO apt-get install -y -qq openjdk-17-jre-headless) >/dev/null 2>&1 \
    || echo "could not install openjdk-17-jre-headless (the Spark engine tests will fail under CI)" >&2
fi
if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
  if command -v pg_ctlcluster >/dev/null 2>&1; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  fi
  for _ in $(seq 1 30); do pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null && break; sleep 1; done
fi
pg_isready -h 127.0.0.1 -p 5432 || { echo "PostgreSQL is not reachable on 127.0.0.1:5432" >&2; exit 1; }
