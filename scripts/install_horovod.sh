#!/usr/bin/env bash
# Build and install Horovod 0.28.1 (PyTorch + Gloo, CPU, no MPI) into the active Python environment.
#
# Why a script: Horovod's last release compiles its torch extension with -std=c++14, while torch >= 2.1
# headers need C++17; pip's cmake 4 also rejects gloo's CMakeLists. We therefore build with the system
# cmake and a g++ wrapper that rewrites -std=c++14 to -std=c++17. Idempotent: exits early when
# `horovodrun --check-build` already reports PyTorch and Gloo.
set -euo pipefail

PYTHON="${PYTHON:-python}"
HOROVOD_VERSION="${HOROVOD_VERSION:-0.28.1}"

die() { echo "install_horovod: $*" >&2; exit 1; }

bindir="$(dirname "$("$PYTHON" -c 'import sys; print(sys.executable)')")"
if [ -x "$bindir/horovodrun" ]; then
  build="$("$bindir/horovodrun" --check-build 2>/dev/null || true)"
  if grep -q '\[X\] PyTorch' <<<"$build" && grep -q '\[X\] Gloo' <<<"$build"; then
    echo "install_horovod: Horovod with PyTorch + Gloo already installed; nothing to do"
    exit 0
  fi
fi

command -v g++ >/dev/null || die "g++ not found: install a C++17 compiler (Debian: apt-get install g++)"
[ -x /usr/bin/cmake ] || die "system cmake not found at /usr/bin/cmake (Debian: apt-get install cmake); pip's cmake 4 cannot build gloo"
"$PYTHON" -c 'import torch' 2>/dev/null || die "torch must be installed before Horovod (make install does this)"

wrapdir="$(mktemp -d)"
trap 'rm -rf "$wrapdir"' EXIT
cat >"$wrapdir/g++" <<'WRAP'
#!/usr/bin/env bash
args=()
for a in "$@"; do
  if [ "$a" = "-std=c++14" ]; then args+=("-std=c++17"); else args+=("$a"); fi
done
exec /usr/bin/g++ "${args[@]}"
WRAP
chmod +x "$wrapdir/g++"
ln -s /usr/bin/cmake "$wrapdir/cmake"

echo "install_horovod: building horovod==$HOROVOD_VERSION (PyTorch + Gloo, CPU); this takes several minutes"
PATH="$wrapdir:$PATH" CXX="$wrapdir/g++" CC=gcc \
HOROVOD_WITH_PYTORCH=1 HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_MPI=1 \
HOROVOD_WITHOUT_TENSORFLOW=1 HOROVOD_WITHOUT_MXNET=1 HOROVOD_CPU_OPERATIONS=gloo \
MAKEFLAGS="-j$(nproc)" \
  "$PYTHON" -m pip install --no-build-isolation "horovod==$HOROVOD_VERSION" \
  || die "horovod build failed; see the compiler output above"

# Capture once, then grep: `horovodrun | grep -q` under pipefail fails at random when grep exits at
# its first match and horovodrun dies of SIGPIPE while still printing.
build="$("$bindir/horovodrun" --check-build)" || die "horovodrun --check-build failed"
echo "$build"
grep -q '\[X\] PyTorch' <<<"$build" || die "horovod installed without PyTorch support"
grep -q '\[X\] Gloo' <<<"$build" || die "horovod installed without Gloo support"
