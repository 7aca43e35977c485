#!/usr/bin/env bash
# The soak alone, on both backend sets: 60 s at 64 calls in flight of a checked mix
# (introspect, list-posts, get-post, create-post, refresh, login, logout), each task with
# its own session. Writes bench/results/soak-<backend>.json; exits 1 on any unexpected
# error. Same environment as bench/run.sh (BACKENDS, QUICK, SOAK_CONCURRENCY,
# SOAK_DURATION, SOAK_ARGS, PGHOST…); see there.
#
#   bash bench/soak.sh
#   BACKENDS=postgres SOAK_DURATION=5m bash bench/soak.sh
set -euo pipefail
SOAK=only exec bash "$(dirname "${BASH_SOURCE[0]}")/run.sh" "$@"
