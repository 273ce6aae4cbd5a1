#!/usr/bin/env bash
# Installs MF2 under a prefix, for programs built without Bazel:
#
#   ./bazel run -c opt //:install -- --prefix DIR
#
#   DIR/lib/libmf2.so.X.Y.Z             the drop-in malloc (SONAME libmf2.so.X), with the links
#   DIR/lib/libmf2.so.X -> libmf2.so.X.Y.Z and DIR/lib/libmf2.so -> libmf2.so.X
#   DIR/lib/libmf2.a                    the same, static: shim + public API + engine, one object
#   DIR/include/mf2/                    the public headers (C: mf2.h; C++: mf2.hpp when present)
#   DIR/lib/pkgconfig/mf2.pc            `pkg-config --cflags --libs mf2`
#   DIR/lib/cmake/mf2/mf2Config.cmake   `find_package(mf2)`: targets mf2::mf2, mf2::mf2_static
#   DIR/lib/cmake/mf2/mf2ConfigVersion.cmake
#   DIR/share/doc/mf2/LICENSE
#
# Before anything is written, the whole tree is staged and checked; any failed check stops the
# install with the reason and DIR untouched:
#   - each public header includes only the C/C++ standard library and the other public headers,
#     and compiles alone (C and C++17) with nothing but the staged include directory;
#   - mf2/mf2.h's MF2_VERSION_MAJOR/MINOR/PATCH equal the build's version (tools/mf2.bzl);
#   - the shared library's SONAME is libmf2.so.MAJOR;
#   - every function the headers declare (C and C++) is exported by libmf2.so and defined in
#     libmf2.a, and both replace malloc and operator new.
#
# The build passes its files first (see //:install in BUILD); the user's options follow `--`.
set -euo pipefail

die() {
  printf 'install: error: %s\n' "$*" >&2
  exit 1
}
usage() {
  cat <<'EOF'
usage: bazel run -c opt //:install -- --prefix DIR [--dry-run]

Installs libmf2.so (drop-in malloc, SONAME libmf2.so.MAJOR), libmf2.a, include/mf2/,
lib/pkgconfig/mf2.pc and lib/cmake/mf2/ under DIR. A relative DIR is taken from the directory
`bazel run` was started in. --dry-run stages and checks everything, then writes nothing.
EOF
}

version="" soname="" shared="" archive="" link_flags="" license="" symbols_tool="" prefix=""
dry_run=0
headers=()
while [ $# -gt 0 ]; do
  case "$1" in
    --version=*) version=${1#*=} ;;
    --soname=*) soname=${1#*=} ;;
    --shared=*) shared=${1#*=} ;;
    --static=*) archive=${1#*=} ;;
    --link-flags=*) link_flags=${1#*=} ;;
    --license=*) license=${1#*=} ;;
    --symbols-tool=*) symbols_tool=${1#*=} ;;
    --headers)
      shift
      while [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; do
        headers+=("$1")
        shift
      done
      continue
      ;;
    --prefix) [ $# -ge 2 ] || die "--prefix needs a directory"; prefix=$2; shift ;;
    --prefix=*) prefix=${1#*=} ;;
    --dry-run) dry_run=1 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown option '$1'" ;;
  esac
  shift
done

[ -n "$prefix" ] || { usage >&2; die "--prefix DIR is required"; }
for f in "$shared" "$archive" "$link_flags" "$license" "$symbols_tool"; do
  [ -n "$f" ] && [ -f "$f" ] || die "build input missing ('$f'); run through 'bazel run //:install'"
done
[ ${#headers[@]} -gt 0 ] || die "no public headers given (//mf2:public_header_files is empty)"
# `bazel run` starts us in the runfiles tree; a relative prefix means the user's directory.
case "$prefix" in
  /*) ;;
  *) prefix="${BUILD_WORKING_DIRECTORY:-$PWD}/$prefix" ;;
esac

CC=${CC:-cc}
CXX=${CXX:-c++}
command -v "$CC" >/dev/null || die "no C compiler '$CC' for the header checks (set CC)"
command -v "$CXX" >/dev/null || die "no C++ compiler '$CXX' for the header checks (set CXX)"
for tool in readelf nm python3; do
  command -v "$tool" >/dev/null || die "'$tool' is needed for the library checks"
done
CLANGXX=${CLANGXX:-$(command -v clang++-14 || command -v clang++ || true)}
[ -n "$CLANGXX" ] || die "no clang++ (set CLANGXX) to list the functions the headers declare"

stage=$(mktemp -d "${TMPDIR:-/tmp}/mf2-install.XXXXXX")
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/include/mf2" "$stage/lib/pkgconfig" "$stage/lib/cmake/mf2" "$stage/share/doc/mf2"

# --- Public headers: only the standard library and each other. ---
# C17 and C++17 standard headers (the C ones also in their C++ <cNAME> form).
std_c="assert complex ctype errno fenv float inttypes iso646 limits locale math setjmp signal
  stdalign stdarg stdatomic stdbool stddef stdint stdio stdlib stdnoreturn string tgmath threads
  time uchar wchar wctype"
std_cxx="algorithm any array atomic bitset charconv chrono codecvt complex condition_variable
  deque exception execution filesystem forward_list fstream functional future initializer_list
  iomanip ios iosfwd iostream istream iterator limits list locale map memory memory_resource mutex
  new numeric optional ostream queue random ratio regex scoped_allocator set shared_mutex sstream
  stack stdexcept streambuf string string_view system_error thread tuple type_traits typeindex
  typeinfo unordered_map unordered_set utility valarray variant vector"
declare -A allowed=()
for h in $std_c; do allowed["$h.h"]=1; allowed["c$h"]=1; done
for h in $std_cxx; do allowed["$h"]=1; done
declare -A public=()
for h in "${headers[@]}"; do public["$(basename "$h")"]=1; done

bad=0
for h in "${headers[@]}"; do
  name=$(basename "$h")
  lineno=0
  while IFS= read -r line; do
    lineno=$((lineno + 1))
    [[ "$line" =~ ^[[:space:]]*#[[:space:]]*include[[:space:]]*(.*)$ ]] || continue
    target=${BASH_REMATCH[1]}
    if [[ "$target" =~ ^\<([^>]+)\> ]] && [ -n "${allowed[${BASH_REMATCH[1]}]:-}" ]; then
      continue
    fi
    if [[ "$target" =~ ^\"(mf2/)?([^\"/]+)\" ]] && [ -n "${public[${BASH_REMATCH[2]}]:-}" ]; then
      continue
    fi
    printf 'install: error: public header mf2/%s:%d includes %s, which is neither the C/C++ standard library nor a public MF2 header (%s); a user would need it to compile\n' \
      "$name" "$lineno" "${target%%[[:space:]]//*}" "${!public[*]}" >&2
    bad=1
  done <"$h"
  install -m 644 "$h" "$stage/include/mf2/$name"
done
[ "$bad" = 0 ] || die "public headers are not self-contained; nothing installed"

# Each header alone, against the staged include directory only: C (headers ending in .h) and
# C++17. Warnings count, as they would in a user's -Werror build.
probe="$stage/probe"
mkdir -p "$probe"
for h in "${headers[@]}"; do
  name=$(basename "$h")
  printf '#include <mf2/%s>\n#include <mf2/%s>\nint main(void) { return 0; }\n' "$name" "$name" >"$probe/c.c"
  cp "$probe/c.c" "$probe/cxx.cc"
  if [ "${name%.h}" != "$name" ]; then
    "$CC" -fsyntax-only -Wall -Wextra -Werror -I"$stage/include" "$probe/c.c" 2>"$probe/err" ||
      { cat "$probe/err" >&2; die "mf2/$name does not compile alone as C ($CC)"; }
  fi
  "$CXX" -std=c++17 -fsyntax-only -Wall -Wextra -Werror -I"$stage/include" "$probe/cxx.cc" \
    2>"$probe/err" || { cat "$probe/err" >&2; die "mf2/$name does not compile alone as C++17 ($CXX)"; }
done

# --- Version: the header and the build agree. ---
header_version=""
for part in MAJOR MINOR PATCH; do
  v=$(sed -nE "s/^[[:space:]]*#[[:space:]]*define[[:space:]]+MF2_VERSION_${part}[[:space:]]+([0-9]+).*/\1/p" \
    "$stage/include/mf2/mf2.h" 2>/dev/null | head -n1)
  [ -n "$v" ] || die "mf2/mf2.h does not define MF2_VERSION_$part (the build's version is $version)"
  header_version="${header_version:+$header_version.}$v"
done
[ "$header_version" = "$version" ] ||
  die "mf2/mf2.h says version $header_version, the build (MF2_VERSION in tools/mf2.bzl) says $version"
major=${version%%.*}
[ "$soname" = "libmf2.so.$major" ] || die "SONAME $soname does not carry the major version $major"

# --- Libraries. ---
real="libmf2.so.$version"
install -m 755 "$shared" "$stage/lib/$real"
ln -s "$real" "$stage/lib/$soname"
ln -s "$soname" "$stage/lib/libmf2.so"
install -m 644 "$archive" "$stage/lib/libmf2.a"
install -m 644 "$license" "$stage/share/doc/mf2/LICENSE"

actual_soname=$(readelf -d "$stage/lib/$real" | sed -nE 's/.*\(SONAME\).*\[(.*)\].*/\1/p')
[ "$actual_soname" = "$soname" ] ||
  die "libmf2.so has SONAME '${actual_soname:-none}', expected $soname (mf2/BUILD linkopts)"

# Every function the headers declare (C and C++, tools/public_symbols.py reads clang's AST) must
# be in both libraries: the shared one exports only what mf2/libmf2_malloc.lds lists.
declared=$(python3 "$symbols_tool" "$CLANGXX" "$stage/include" "${headers[@]}") ||
  die "could not list the functions the public headers declare"
[ -n "$declared" ] || die "the public headers declare no function"
exported=$(nm -D --defined-only "$stage/lib/$real" | awk '{print $NF}' | sed 's/@.*//' | sort -u)
defined=$(nm --defined-only "$stage/lib/libmf2.a" 2>/dev/null | awk 'NF == 3 && $2 ~ /[TW]/ {print $3}' | sort -u)
missing_so=$(comm -23 <(printf '%s\n' "$declared" | sort -u) <(printf '%s\n' "$exported"))
missing_a=$(comm -23 <(printf '%s\n' "$declared" | sort -u) <(printf '%s\n' "$defined"))
demangle() { if command -v c++filt >/dev/null; then c++filt; else cat; fi | sed 's/^/    /'; }
[ -z "$missing_so" ] || die "libmf2.so does not export these functions the public headers declare (add them to mf2/libmf2_malloc.lds):
$(demangle <<<"$missing_so")"
[ -z "$missing_a" ] || die "libmf2.a does not define these functions the public headers declare:
$(demangle <<<"$missing_a")"
for sym in malloc free calloc realloc _Znwm _ZdlPv; do
  grep -qx "$sym" <<<"$exported" || die "libmf2.so does not export $sym: it would not replace malloc"
  grep -qx "$sym" <<<"$defined" || die "libmf2.a does not define $sym: it would not replace malloc"
done

# --- pkg-config and CMake. ---
# A static link also needs the archive's own link flags (-pthread). Neither link needs the C++
# runtime: the shim reaches the new-handler and std::bad_alloc through weak references, bound in
# a C++ program, which links the runtime anyway (mf2/malloc_shim.cc).
private=$(tr '\n' ' ' <"$link_flags" | sed 's/  */ /g; s/ $//')
cat >"$stage/lib/pkgconfig/mf2.pc" <<EOF
# MF2 $version. Shared (default): the program's malloc becomes MF2's.
# Static: gcc ... \$(pkg-config --static --cflags --libs mf2) -static, or link
# \${libdir}/libmf2.a and then \$(pkg-config --static --libs-only-other mf2).
prefix=\${pcfiledir}/../..
libdir=\${prefix}/lib
includedir=\${prefix}/include

Name: mf2
Description: MF2 memory allocator: a drop-in malloc for threads that free each other's memory
Version: $version
Libs: -L\${libdir} -lmf2
Libs.private: $private
Cflags: -I\${includedir}
EOF

cmake_libs=""
for f in $private; do
  case "$f" in
    -pthread | -lpthread) cmake_libs="$cmake_libs;Threads::Threads" ;;
    -l*) cmake_libs="$cmake_libs;${f#-l}" ;;
    *) cmake_libs="$cmake_libs;$f" ;;
  esac
done
cmake_libs=${cmake_libs#;}
cat >"$stage/lib/cmake/mf2/mf2Config.cmake" <<EOF
# MF2 $version for CMake: find_package(mf2) then link one of
#   mf2::mf2         libmf2.so (SONAME $soname): MF2 becomes the program's malloc
#   mf2::mf2_static  libmf2.a: the same, linked into the program
# Written by tools/install.sh; paths are relative to this file, so the tree can move.
get_filename_component(_mf2_prefix "\${CMAKE_CURRENT_LIST_DIR}/../../.." ABSOLUTE)
include(CMakeFindDependencyMacro)
find_dependency(Threads)

if(NOT TARGET mf2::mf2)
  add_library(mf2::mf2 SHARED IMPORTED)
  set_target_properties(mf2::mf2 PROPERTIES
    IMPORTED_LOCATION "\${_mf2_prefix}/lib/$real"
    IMPORTED_SONAME "$soname"
    INTERFACE_INCLUDE_DIRECTORIES "\${_mf2_prefix}/include")
endif()

if(NOT TARGET mf2::mf2_static)
  add_library(mf2::mf2_static STATIC IMPORTED)
  set_target_properties(mf2::mf2_static PROPERTIES
    IMPORTED_LOCATION "\${_mf2_prefix}/lib/libmf2.a"
    INTERFACE_INCLUDE_DIRECTORIES "\${_mf2_prefix}/include"
    INTERFACE_LINK_LIBRARIES "$cmake_libs")
endif()

set(mf2_VERSION "$version")
unset(_mf2_prefix)
EOF

# Compatible when the major version (the SONAME's) matches and the installed one is not older.
cat >"$stage/lib/cmake/mf2/mf2ConfigVersion.cmake" <<EOF
set(PACKAGE_VERSION "$version")
if(PACKAGE_FIND_VERSION VERSION_GREATER PACKAGE_VERSION)
  set(PACKAGE_VERSION_COMPATIBLE FALSE)
elseif(NOT PACKAGE_FIND_VERSION_MAJOR STREQUAL "$major")
  set(PACKAGE_VERSION_COMPATIBLE FALSE)
else()
  set(PACKAGE_VERSION_COMPATIBLE TRUE)
  if(PACKAGE_FIND_VERSION STREQUAL PACKAGE_VERSION)
    set(PACKAGE_VERSION_EXACT TRUE)
  endif()
endif()
if(NOT CMAKE_SIZEOF_VOID_P STREQUAL "" AND NOT CMAKE_SIZEOF_VOID_P STREQUAL "8")
  set(PACKAGE_VERSION "$version (64-bit)")
  set(PACKAGE_VERSION_UNSUITABLE TRUE)
endif()
EOF

rm -rf "$probe"
if [ "$dry_run" = 1 ]; then
  echo "install: checks passed; --dry-run, nothing written to $prefix" >&2
  exit 0
fi

# --- Copy the staged tree (files and the two links) into the prefix. ---
mkdir -p "$prefix"
(cd "$stage" && find . -mindepth 1 \( -type f -o -type l \) -print | sort) | while read -r rel; do
  rel=${rel#./}
  mkdir -p "$prefix/$(dirname "$rel")"
  rm -f "$prefix/$rel"
  cp -P -p "$stage/$rel" "$prefix/$rel"
  echo "installed $prefix/$rel"
done
cat <<EOF
MF2 $version installed under $prefix. Use it:
  gcc prog.c \$(PKG_CONFIG_PATH=$prefix/lib/pkgconfig pkg-config --cflags --libs mf2)
  cmake -DCMAKE_PREFIX_PATH=$prefix ...   # find_package(mf2); target mf2::mf2
  LD_PRELOAD=$prefix/lib/libmf2.so program
(programs linked to libmf2.so outside the system's library path need LD_LIBRARY_PATH=$prefix/lib
or -Wl,-rpath,$prefix/lib)
EOF
