#!/usr/bin/env bash
# Commit subjects stay short: every commit after BASE (default: the commit that added this
# check) has a subject of at most 72 characters, the why going in the body. Older commits are
# history and are not rewritten. Skipped, with a note, outside a git checkout.
#
# usage: tools/commit_subjects.sh [BASE]
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
base=${1:-8051df8}
if ! git rev-parse --git-dir >/dev/null 2>&1; then
  echo "commit_subjects: not a git checkout; nothing to check"
  exit 0
fi
if ! git cat-file -e "$base^{commit}" 2>/dev/null; then
  echo "commit_subjects: $base is not in this clone's history (a shallow clone?); nothing checked"
  exit 0
fi
long=$(git log --no-merges --format='%h %s' "$base..HEAD" | awk '{ s = substr($0, index($0, " ") + 1); if (length(s) > 72) printf "%s (%d characters)\n", $0, length(s) }')
if [ -n "$long" ]; then
  echo "commit_subjects: subjects over 72 characters since $base:"
  echo "$long"
  exit 1
fi
echo "commit_subjects: $(git rev-list --no-merges --count "$base..HEAD") commits since $base, every subject <= 72 characters"
