#!/usr/bin/env bash
# Renders deploy/nginx/auth-blog.conf.template to stdout for the addresses given in the
# environment; each unset variable keeps the default shown.
#
#   AUTH_LISTEN    where the balancer takes auth-service calls     50051 (every address)
#   BLOG_LISTEN    where the balancer takes blog-service calls     50052
#   AUTH_REPLICAS  auth-service replicas, host:port, space-separated
#                                                   127.0.0.1:50151 127.0.0.1:50251
#   BLOG_REPLICAS  blog-service replicas            127.0.0.1:50152 127.0.0.1:50252
#   ACCESS_LOG     access log path, or off          /var/log/nginx/auth-blog.access.log
#
# deploy/nginx/auth-blog.conf is this script's output with the defaults (the nginx test
# checks that it still is).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

auth_listen=${AUTH_LISTEN:-50051}
blog_listen=${BLOG_LISTEN:-50052}
auth_replicas=${AUTH_REPLICAS:-127.0.0.1:50151 127.0.0.1:50251}
blog_replicas=${BLOG_REPLICAS:-127.0.0.1:50152 127.0.0.1:50252}
access_log=${ACCESS_LOG:-/var/log/nginx/auth-blog.access.log}

die() { echo "render.sh: $*" >&2; exit 1; }

# One `server` line per replica. A replica that refuses one connect is skipped for 5 s.
servers() {
  local name=$1 list=$2 address count=0
  for address in $list; do
    [[ $address =~ ^[A-Za-z0-9._-]+:[0-9]+$|^\[[0-9A-Fa-f:]+\]:[0-9]+$ ]] ||
      die "$name: \`$address\` is not host:port"
    printf '    server %s max_fails=1 fail_timeout=5s;\n' "$address"
    count=$((count + 1))
  done
  [ "$count" -gt 0 ] || die "$name lists no replica"
}

for listen in "$auth_listen" "$blog_listen"; do
  [[ $listen =~ ^([A-Za-z0-9._-]+:|\[[0-9A-Fa-f:]+\]:)?[0-9]+$ ]] ||
    die "\`$listen\` is not [host:]port"
done
path_pattern='^[^[:space:];]+$'
[[ $access_log =~ $path_pattern ]] || die "ACCESS_LOG \`$access_log\` must be a path without spaces or ;"

auth_servers=$(servers AUTH_REPLICAS "$auth_replicas")
blog_servers=$(servers BLOG_REPLICAS "$blog_replicas")

while IFS= read -r line; do
  case $line in
    @AUTH_SERVERS@) printf '%s\n' "$auth_servers" ;;
    @BLOG_SERVERS@) printf '%s\n' "$blog_servers" ;;
    *)
      line=${line//@AUTH_LISTEN@/$auth_listen}
      line=${line//@BLOG_LISTEN@/$blog_listen}
      line=${line//@ACCESS_LOG@/$access_log}
      printf '%s\n' "$line"
      ;;
  esac
done <"$here/auth-blog.conf.template"
