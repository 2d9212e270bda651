#!/usr/bin/env bash
# Builds a release `herald` that runs on a Linux server without Swift installed, and checks
# that it needs nothing from the Swift toolchain at run time.
#   scripts/release-build.sh                 # → .build-release/release/herald
#   SCRATCH=/tmp/hb scripts/release-build.sh # another build directory
# The Swift standard library and Foundation are linked in statically
# (--static-swift-stdlib); what remains are the system's own libraries (glibc, libstdc++,
# zlib, SQLite, OpenSSL 3), which Debian 12 and Ubuntu servers have. The binary names the
# commit it was built from: `herald --version`.
set -euo pipefail
cd "$(dirname "$0")/.."
scratch=${SCRATCH:-.build-release}

# The commit for `herald --version` (Package.swift reads HERALD_BUILD_COMMIT); "-dirty" when
# the work tree has changes that the commit does not hold.
commit=$(git rev-parse --short=12 HEAD 2>/dev/null || true)
if [ -n "$commit" ] && [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
  commit="$commit-dirty"
fi
export HERALD_BUILD_COMMIT="$commit"

swift build -c release --static-swift-stdlib --product herald --scratch-path "$scratch"
binary="$scratch/release/herald"

# Check: no shared library from the toolchain (libswift*, libFoundation*, lib_FoundationICU,
# libdispatch, libBlocksRuntime), and none that the system cannot find.
needed=$(readelf -d "$binary" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
echo "needs: $(echo $needed)"
if echo "$needed" | grep -Eq '^(libswift|libFoundation|lib_Foundation|libdispatch|libBlocksRuntime)'; then
  echo "error: $binary needs a library from the Swift toolchain" >&2
  exit 1
fi
if ldd "$binary" | grep -q "not found"; then
  ldd "$binary" | grep "not found" >&2
  exit 1
fi
if ldd "$binary" | grep -E "=> .*(/opt/swift|/usr/share/swift|swift/linux)" ; then
  echo "error: $binary loads a library from the Swift toolchain" >&2
  exit 1
fi
version=$("$binary" --version)
echo "version: $version"
case "$version" in
  *"commit $commit"*) ;;
  *) if [ -n "$commit" ]; then echo "error: --version says \"$version\", not commit $commit" >&2; exit 1; fi ;;
esac
echo "ok: $binary ($(du -h "$binary" | cut -f1)); strip it for a smaller copy: strip -o herald $binary"
