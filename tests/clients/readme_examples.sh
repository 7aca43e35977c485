#!/usr/bin/env bash
# Runs the ```sh blocks of a README section (default "The API by example"; also "The
# REST API by example"), in order, as one `bash -euo pipefail` script against a running
# pair (and gateway), and fails if any command fails.
#
#   AUTH_ADDR=127.0.0.1:50061 BLOG_ADDR=127.0.0.1:50062 tests/clients/readme_examples.sh
#   GATEWAY_ADDR=127.0.0.1:8061 tests/clients/readme_examples.sh "The REST API by example"
#
# The README's addresses (127.0.0.1:50051 / :50052 / :8000) are replaced by AUTH_ADDR /
# BLOG_ADDR / GATEWAY_ADDR, and its usernames "ann" and "bob" by fresh ones, so the
# examples can run again on the same pair.
# Needs jq and the repository's npm packages (npm ci), which give `npx buf`.
set -euo pipefail
cd "$(dirname "$0")/../.."

auth_addr=${AUTH_ADDR:-127.0.0.1:50051}
blog_addr=${BLOG_ADDR:-127.0.0.1:50052}
auth_addr=${auth_addr#http://}
blog_addr=${blog_addr#http://}
gateway_addr=${GATEWAY_ADDR:-127.0.0.1:8000}
gateway_addr=${gateway_addr#http://}
suffix=$(od -An -N5 -tx1 /dev/urandom | tr -d ' \n')
username="ann-$suffix"
rest_username="bob-$suffix"
section=${1:-The API by example}

command -v jq >/dev/null || { echo "readme_examples: jq is not installed" >&2; exit 1; }
[ -x node_modules/.bin/buf ] || { echo "readme_examples: run npm ci first" >&2; exit 1; }

script=$(mktemp "${TMPDIR:-/tmp}/readme-examples.XXXXXX")
trap 'rm -f "$script"' EXIT

# The ```sh blocks between the section's heading and the next "## " heading.
{
  echo 'trap '\''echo "readme_examples: line $LINENO failed: $BASH_COMMAND" >&2'\'' ERR'
  awk -v section="## $section" '
    $0 == section { inside = 1; next }
    inside && /^## / { inside = 0 }
    inside && /^```sh[[:space:]]*$/ { block = 1; blocks++; print "# --- block " blocks; next }
    inside && block && /^```/ { block = 0; next }
    inside && block { print }
  ' README.md |
    sed -e "s/127\.0\.0\.1:50051/${auth_addr}/g" \
      -e "s/127\.0\.0\.1:50052/${blog_addr}/g" \
      -e "s/127\.0\.0\.1:8000/${gateway_addr}/g" \
      -e "s/\bann\b/${username}/g" \
      -e "s/\bbob/${rest_username}/g"
} >"$script"

blocks=$(grep -c '^# --- block ' "$script" || true)
if [ "$blocks" -eq 0 ]; then
  echo "readme_examples: no \`\`\`sh blocks under \"## $section\" in README.md" >&2
  exit 1
fi
# Every call the section promises to show is there.
missing=()
if [ "$section" = "The REST API by example" ]; then
  for route in '/signup' '/login' '/refresh' '/users/me' '/sessions' '/posts' '/logout' '/logout_all'; do
    grep -q "\$API$route\b" "$script" || missing+=("$route")
  done
  rpcs=()
else
  rpcs=( AuthService/Register AuthService/Login AuthService/GetProfile AuthService/Refresh \
  AuthService/ListSessions IntrospectionService/Introspect AuthService/Logout \
  AuthService/LogoutAll BlogService/ListPosts BlogService/GetPost BlogService/CreatePost \
  BlogService/UpdatePost BlogService/DeletePost)
fi
for rpc in "${rpcs[@]}"; do
  grep -q "/auth\.v1\.$rpc\b\|/blog\.v1\.$rpc\b" "$script" || missing+=("$rpc")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "readme_examples: the README examples lack ${missing[*]}" >&2
  exit 1
fi

echo "readme_examples: running $blocks blocks of \"$section\" against auth $auth_addr, blog $blog_addr, gateway $gateway_addr"
bash -euo pipefail "$script" </dev/null
echo "readme_examples: all $blocks blocks ran without error"
