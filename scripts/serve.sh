#!/usr/bin/env bash
# Install shardd and run it with its default configuration (port 6379).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q -e .
exec shardd-server "$@"
