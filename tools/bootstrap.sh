#!/usr/bin/env bash
# Installs what MF2 needs from Debian's archive (binary and source packages) and nothing from
# anywhere else. Idempotent: when everything is present it only checks and returns (~1 s).
#
#   tools/bootstrap.sh                  # what building the library needs (./bazel runs this)
#   tools/bootstrap.sh --extras test    # plus a purpose's extras; several: --extras test,bench
#   tools/bootstrap.sh --list GROUP     # print a group's packages and exit
#   tools/bootstrap.sh --quiet          # no "ok" line when nothing had to be installed
#
# Groups (each includes core):
#   core        Bazel 4.2.3 and the repositories it wants offline, clang 14, GoogleTest and
#               Abseil sources: `bazel build //mf2:all`, `bazel run -c opt //:install`
#   sanitizers  compiler-rt for --config=asan|tsan|ubsan|fuzz
#   test        tools/test.sh: sanitizers, spin (model/), python3 and sqlite3 (programs run under
#               MF2 in mf2:preload_test), libbenchmark (bench/ targets build in //...), gcc, cmake,
#               pkg-config, zip/unzip (install, example consumers, ClusterFuzzLite build)
#   bench       //bench: libbenchmark, the peer allocators, gnuplot, python3
#   all         everything
# `./bazel` picks the groups from its arguments (see the wrapper); tools/test.sh asks for test.
#
# Layout it produces (outside the clone, so fresh clones and CI reuse it):
#   /usr/bin/bazel                       Debian bazel-bootstrap (Bazel 4.2.3)
#   /usr/src/bazel-bootstrap/mock_repos  rules_cc / rules_java stand-ins for Bazel 4.x
#   /usr/src/googletest                  GoogleTest 1.12.1 sources (built by Bazel)
#   $MF2_DEPS/abseil-cpp                 Abseil 20220623 sources with its own BUILD.bazel files
set -euo pipefail

MF2_DEPS=${MF2_DEPS:-/opt/mf2-deps}
log() { printf '[bootstrap] %s\n' "$*" >&2; }

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

declare -A GROUP
GROUP[core]="bazel-bootstrap bazel-bootstrap-source bazel-platforms bazel-skylib clang-14 googletest dpkg-dev"
GROUP[sanitizers]="libclang-rt-14-dev"
GROUP[test]="libclang-rt-14-dev spin python3 sqlite3 libbenchmark-dev gcc g++ cmake pkgconf zip unzip"
GROUP[bench]="libbenchmark-dev libmimalloc-dev libjemalloc-dev libtcmalloc-minimal4 google-perftools gnuplot-nox python3"

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }

groups=(core)
list=0
quiet=0
while [ $# -gt 0 ]; do
  case "$1" in
    --extras | --list)
      [ $# -ge 2 ] || { log "$1 needs a group (sanitizers, test, bench, all)"; exit 2; }
      [ "$1" = --list ] && list=1
      IFS=, read -r -a more <<<"$2"
      groups+=("${more[@]}")
      shift
      ;;
    --extras=*) IFS=, read -r -a more <<<"${1#*=}"; groups+=("${more[@]}") ;;
    --quiet) quiet=1 ;;
    -h | --help) usage; exit 0 ;;
    *) log "unknown argument '$1' (see --help)"; exit 2 ;;
  esac
  shift
done

PACKAGES=()
for g in "${groups[@]}"; do
  if [ "$g" = all ]; then
    for k in "${!GROUP[@]}"; do
      read -r -a more <<<"${GROUP[$k]}"
      PACKAGES+=("${more[@]}")
    done
  elif [ -n "${GROUP[$g]:-}" ]; then
    read -r -a more <<<"${GROUP[$g]}"
    PACKAGES+=("${more[@]}")
  else
    log "unknown group '$g' (groups: core, sanitizers, test, bench, all)"
    exit 2
  fi
done
mapfile -t PACKAGES < <(printf '%s\n' "${PACKAGES[@]}" | awk '!seen[$0]++')
if [ "$list" = 1 ]; then
  printf '%s\n' "${PACKAGES[@]}"
  exit 0
fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

apt_updated=0
apt_update() {
  if [ "$apt_updated" = 0 ]; then
    log "apt-get update"
    $SUDO apt-get update -qq
    apt_updated=1
  fi
}

if [ "${#missing[@]}" -gt 0 ]; then
  apt_update
  log "installing: ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Abseil from source (Debian source package `abseil`): the prebuilt libabsl is not instrumented,
# so TSan would not see its synchronisation. Needs a deb-src entry for the archive already in use.
ABSL_DIR="$MF2_DEPS/abseil-cpp"
fetched_absl=0
if [ ! -f "$ABSL_DIR/absl/base/BUILD.bazel" ]; then
  src_list=/etc/apt/sources.list.d/mf2-deb-src.sources
  if ! grep -rqs '^Types:.*deb-src\|^deb-src' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    log "adding deb-src entries mirroring the configured archive"
    for f in /etc/apt/sources.list.d/*.sources; do
      [ -f "$f" ] || continue
      case "$f" in *mf2-deb-src*) continue ;; esac
      sed 's/^Types: *deb *$/Types: deb-src/' "$f"
      echo
    done | $SUDO tee "$src_list" >/dev/null
    if [ -f /etc/apt/sources.list ]; then
      grep '^deb ' /etc/apt/sources.list | sed 's/^deb /deb-src /' | $SUDO tee -a /etc/apt/sources.list.d/mf2-deb-src.list >/dev/null || true
    fi
    apt_updated=0
  fi
  apt_update
  tmp=$(mktemp -d)
  log "fetching Abseil source package into $ABSL_DIR"
  (cd "$tmp" && apt-get source -qq abseil >/dev/null 2>&1)
  src=$(find "$tmp" -maxdepth 1 -mindepth 1 -type d -name 'abseil-*' | head -n1)
  [ -n "$src" ] || { log "apt-get source abseil produced no directory"; exit 1; }
  $SUDO mkdir -p "$MF2_DEPS"
  $SUDO rm -rf "$ABSL_DIR"
  $SUDO mv "$src" "$ABSL_DIR"
  rm -rf "$tmp"
  fetched_absl=1
fi

[ "$quiet" = 1 ] && [ "${#missing[@]}" = 0 ] && [ "$fetched_absl" = 0 ] && exit 0
log "ok (${groups[*]}): $(bazel --version 2>/dev/null || echo 'bazel ?'), clang $(clang-14 -dumpversion), abseil at $ABSL_DIR"
