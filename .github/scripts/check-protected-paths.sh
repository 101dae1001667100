#!/usr/bin/env bash
# Fails when a pull request by a person changes status/ or approvals/. keyrotor alone writes them:
# status/ on each reconcile run, approvals/ in its approval pull requests (which a person reviews
# and merges, never edits). Run it in the checkout of the pull request.
#
# Usage: check-protected-paths.sh [BASE [HEAD]]
#   BASE, HEAD  the commits whose difference is the pull request's change. Default: HEAD^1 and
#               HEAD, i.e. the merge commit that actions/checkout checks out for a pull request
#               (with fetch-depth: 2) against the base branch it was merged onto.
# Environment:
#   PR_AUTHOR           who opened the pull request (github.event.pull_request.user.login)
#   PR_SENDER           who caused this run (github.event.sender.login): on `synchronize`, who
#                       pushed the latest commits, who may be a person on keyrotor's branch
#   KEYROTOR_BOT_LOGIN  the login keyrotor's pull requests are opened as (github-actions[bot])
#
# Passes when no protected path changed, or when both PR_AUTHOR and PR_SENDER are the bot.
# Otherwise prints one ::error annotation per protected path and exits 1.
set -euo pipefail

base="${1:-HEAD^1}"
head="${2:-HEAD}"
bot="${KEYROTOR_BOT_LOGIN:-github-actions[bot]}"
author="${PR_AUTHOR:?PR_AUTHOR must be the login of the author of the pull request}"
sender="${PR_SENDER:?PR_SENDER must be the login of the user who triggered the run}"

# A workflow command's value may hold neither a line break nor, in a property, ':' or ','.
escape_data() {
  local s="${1//%/%25}"
  s="${s//$'\r'/%0D}"
  printf '%s' "${s//$'\n'/%0A}"
}
escape_property() {
  local s
  s="$(escape_data "$1")"
  s="${s//:/%3A}"
  printf '%s' "${s//,/%2C}"
}

# NUL-separated names, renames split into a deletion and an addition: moving a file out of
# status/ changes status/ too.
names="$(mktemp)"
trap 'rm -f "$names"' EXIT
git diff --name-only --no-renames -z "$base" "$head" -- >"$names"

protected=()
while IFS= read -r -d '' path; do
  case "$path" in
    status | status/* | approvals | approvals/*) protected+=("$path") ;;
  esac
done <"$names"

if [ "${#protected[@]}" -eq 0 ]; then
  echo "No change to status/ or approvals/."
  exit 0
fi
if [ "$author" = "$bot" ] && [ "$sender" = "$bot" ]; then
  echo "${#protected[@]} change(s) to status/ or approvals/, all by keyrotor ($bot)."
  exit 0
fi

who="$author"
if [ "$sender" != "$author" ]; then
  who="$author (opened) and $sender (pushed)"
fi
for path in "${protected[@]}"; do
  echo "::error file=$(escape_property "$path")::$(escape_data "$path") is written by keyrotor only ($bot), but this pull request is by $(escape_data "$who"). Leave status/ and approvals/ to keyrotor: revert this change."
done
exit 1
