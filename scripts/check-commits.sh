#!/usr/bin/env bash
# Commit messages after 5c2af19 (the last commit before the rule): a subject of at most 72
# characters, and a blank line between the subject and any body. Older history is left as it
# was. A clone without that commit (a shallow one) checks HEAD alone.
set -euo pipefail
cd "$(dirname "$0")/.."
base=5c2af19
if git cat-file -e "$base^{commit}" 2>/dev/null; then
  commits=$(git rev-list "$base..HEAD")
else
  commits=$(git rev-parse HEAD)
fi
bad=0
for c in $commits; do
  subject=$(git log -1 --format=%s "$c")
  second=$(git log -1 --format=%B "$c" | sed -n 2p)
  if [ "${#subject}" -gt 72 ]; then
    echo "check-commits: ${c:0:7}: subject is ${#subject} characters (at most 72): $subject" >&2
    bad=1
  fi
  if [ -n "$second" ]; then
    echo "check-commits: ${c:0:7}: no blank line after the subject" >&2
    bad=1
  fi
done
[ "$bad" = 0 ] && echo "check-commits: $(echo "$commits" | wc -w) commit messages follow the rule"
exit "$bad"
