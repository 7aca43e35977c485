#!/usr/bin/env bash
# Runs the ```sh blocks of the README's "The API by example" section, in order, as one
# `bash -euo pipefail` script against a running pair, and fails if any command fails.
#
#   AUTH_ADDR=127.0.0.1:50061 BLOG_ADDR=127.0.0.1:50062 tests/clients/readme_examples.sh
#
# The README's addresses (127.0.0.1:50051 / :50052) are replaced by AUTH_ADDR / BLOG_ADDR,
# and its username "ann" by a fresh one, so the examples can run again on the same pair.
# Needs jq and the repository's npm packages (npm ci), which give `npx buf`.
set -euo pipefail
cd "$(dirname "$0")/../.."

auth_addr=${AUTH_ADDR:-127.0.0.1:50051}
blog_addr=${BLOG_ADDR:-127.0.0.1:50052}
auth_addr=${auth_addr#http://}
blog_addr=${blog_addr#http://}
username="ann-$(od -An -N5 -tx1 /dev/urandom | tr -d ' \n')"
section="The API by example"

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
      -e "s/\bann\b/${username}/g"
} >"$script"

blocks=$(grep -c '^# --- block ' "$script" || true)
if [ "$blocks" -eq 0 ]; then
  echo "readme_examples: no \`\`\`sh blocks under \"## $section\" in README.md" >&2
  exit 1
fi
# Every call the section promises to show is there.
missing=()
for rpc in AuthService/Register AuthService/Login AuthService/GetProfile AuthService/Refresh \
  AuthService/ListSessions IntrospectionService/Introspect AuthService/Logout \
  AuthService/LogoutAll BlogService/ListPosts BlogService/GetPost BlogService/CreatePost \
  BlogService/UpdatePost BlogService/DeletePost; do
  grep -q "/auth\.v1\.$rpc\b\|/blog\.v1\.$rpc\b" "$script" || missing+=("$rpc")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "readme_examples: the README examples lack ${missing[*]}" >&2
  exit 1
fi

echo "readme_examples: running $blocks blocks against auth $auth_addr, blog $blog_addr as $username"
bash -euo pipefail "$script" </dev/null
echo "readme_examples: all $blocks blocks ran without error"
