#!/usr/bin/env bash
# Install shardd with its test dependencies (and Debian's redis-server/redis-tools, which
# the comparison tests and bench/ use), then run the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && apt-get install -y -qq redis-server redis-tools >/dev/null
    else
        sudo apt-get update -qq && sudo apt-get install -y -qq redis-server redis-tools >/dev/null
    fi
fi
# Debian's package starts a redis-server service on 6379; the tests start their own.
(systemctl stop redis-server 2>/dev/null || service redis-server stop 2>/dev/null || true) >/dev/null 2>&1
python3 -m pip install -q -e '.[test]'
exec python3 -m pytest -q -p no:cacheprovider "$@"
