#!/usr/bin/env bash
# schemathesis against the REST gateway at GATEWAY_ADDR (default 127.0.0.1:8000): it reads
# the OpenAPI document the gateway serves, generates requests from it (valid and invalid)
# and checks every answer: no server error, and status, content type, headers and body as
# the document says. Two runs: with the bearer token of a fresh user (every route but those
# that end or rotate that token), then anonymous (every route). Installs the pinned
# requirements.txt into the gitignored venv beside this file.
set -euo pipefail
cd "$(dirname "$0")/../../.."

gateway=http://${GATEWAY_ADDR:-127.0.0.1:8000}
venv=tests/clients/schemathesis/.venv
requirements=tests/clients/schemathesis/requirements.txt

[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
if ! cmp -s "$requirements" "$venv/.installed-requirements.txt"; then
  "$venv/bin/python" -m pip install --disable-pip-version-check -q -r "$requirements"
  cp "$requirements" "$venv/.installed-requirements.txt"
fi

checks=not_a_server_error,status_code_conformance,content_type_conformance
checks+=,response_headers_conformance,response_schema_conformance
run() {
  "$venv/bin/schemathesis" run "$gateway/api/v1/openapi.json" --url "$gateway" \
    --checks "$checks" --phases examples,coverage,fuzzing --max-examples 25 \
    --workers 2 --request-timeout 15 --seed 18 --no-color "$@"
}

# A user of its own, logged in first: the anonymous run's failed logins may reach the
# per-address throttle.
username="st$(od -An -N5 -tx1 /dev/urandom | tr -d ' \n')"
password="schemathesis passphrase 18"
curl -sf -X POST "$gateway/api/v1/signup" -H 'Content-Type: application/json' \
  -d "{\"username\":\"$username\",\"email\":\"$username@example.com\",\"password\":\"$password\"}" >/dev/null
token=$(curl -sf -X POST "$gateway/api/v1/login" -H 'Content-Type: application/json' \
  -d "{\"username\":\"$username\",\"password\":\"$password\"}" | jq -r .access_token)
[ -n "$token" ] && [ "$token" != null ] || { echo "schemathesis: no token" >&2; exit 1; }

# ListKeys lands with another branch; until auth-service has it the route answers 501.
skip=()
if [ "$(curl -s -o /dev/null -w '%{http_code}' "$gateway/.well-known/jwks.json")" = 501 ]; then
  echo "schemathesis: auth-service does not implement ListKeys (501): /.well-known/jwks.json skipped"
  skip=(--exclude-path /.well-known/jwks.json)
fi

echo "== schemathesis: authenticated (as $username)"
run "${skip[@]}" -H "Authorization: Bearer $token" \
  --exclude-operation-id-regex '^(logout|logout_all|change_password|update_me)$'
echo "== schemathesis: anonymous"
run "${skip[@]}"
