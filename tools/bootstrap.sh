#!/usr/bin/env bash
# Installs everything MF2 needs from Debian's archive (binary and source packages) and nothing
# from anywhere else. Idempotent: when everything is present it only checks and returns (~1 s).
#
#   tools/bootstrap.sh          # install what is missing
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

PACKAGES=(
  # Build system and the repositories Bazel 4.2.3 wants offline.
  bazel-bootstrap bazel-bootstrap-source bazel-platforms bazel-skylib
  # One compiler for every configuration, with compiler-rt (ASan, TSan, UBSan, libFuzzer).
  clang-14 libclang-rt-14-dev lld-14
  # Test and benchmark libraries (GoogleTest is compiled from these sources by Bazel).
  googletest libbenchmark-dev
  # Peer allocators for bench/.
  libmimalloc-dev libjemalloc-dev libtcmalloc-minimal4 google-perftools
  # Model checker for the protocol models; tools for apt-get source.
  spin dpkg-dev
  # Benchmark report chart; real programs run under MF2 in tests.
  gnuplot-nox sqlite3 python3
)

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
fi

log "ok: $(bazel --version 2>/dev/null || echo 'bazel ?'), clang $(clang-14 -dumpversion), abseil at $ABSL_DIR"
