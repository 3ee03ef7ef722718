#!/usr/bin/env bash
# Prints the version of the tree, from git tags (the one definition: the Makefile stamps it
# into both binaries and names the Debian packages with it). Debian version syntax, so that
# later builds sort higher for dpkg:
#   on tag v1.2.0                -> 1.2.0
#   on tag v1.3.0-rc1            -> 1.3.0~rc1 (a pre-release sorts before 1.3.0)
#   3 commits after v1.2.0       -> 1.2.0+3.g0123abcd
#   before any tag               -> 0.0.0~git20261204205700.0123abcd (commit time, UTC)
#   uncommitted changes          -> the above with ".dirty" appended
# Usage: hack/version.sh [version|commit]
set -euo pipefail
cd "$(dirname "$0")/.."
if ! git rev-parse --git-dir >/dev/null 2>&1; then
  [ "${1:-version}" = commit ] && echo unknown || echo 0.0.0~unknown
  exit 0
fi
commit=$(git rev-parse --short=12 HEAD)
dirty=
git diff --quiet HEAD -- 2>/dev/null || dirty=1
if [ "${1:-version}" = commit ]; then
  echo "$commit${dirty:+-dirty}"
  exit 0
fi
if d=$(git describe --tags --match 'v[0-9]*' --long 2>/dev/null); then
  # v1.2.0-3-g0123abcd
  base=${d%-*-g*}; n=${d#"$base"-}; n=${n%%-g*}
  v=${base#v}
  v=${v//-/\~} # v1.3.0-rc1: "-" would be a Debian revision; "~" sorts before the release
  [ "$n" != 0 ] && v="$v+$n.g$commit"
else
  v="0.0.0~git$(TZ=UTC0 git log -1 --format=%cd --date=format-local:%Y%m%d%H%M%S).$commit"
fi
echo "$v${dirty:+.dirty}"
