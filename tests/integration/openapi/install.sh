#!/usr/bin/env bash
# The OpenAPI validator tests/integration/test_openapi.py uses: @apidevtools/swagger-parser
# from npm, installed into build/npm (git-ignored, never committed). 12.1.0 runs on Debian
# bookworm's nodejs 18 (13.x needs node 20). Called by the test when it is missing (nodejs and
# npm come with scripts/ensure-deps.sh test).
set -euo pipefail
cd "$(dirname "$0")/../../.."
npm install --prefix build/npm --no-audit --no-fund --no-save --loglevel=error \
  @apidevtools/swagger-parser@12.1.0 >&2
