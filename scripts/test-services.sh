#!/usr/bin/env bash
# Starts the real services the tests use (none yet: the foundation needs only
# /dev/shm), runs the command given, and tears the services down.
set -euo pipefail
exec "$@"
