#!/usr/bin/env bash
# Builds Graft's image on a machine that reaches no container registry (only Debian's mirror and
# PyPI), so that `graft kfp run-local --engine docker` can run each task as a container of it.
#
#   kubeflow/build_local_image.sh [TAG]          # default graft:local; needs docker, debootstrap, root,
#                                                # a Debian 12 host (glibc 2.36) and pyenv's Python 3.10
#
# 1. a base image: Debian bookworm (debootstrap --variant=minbase, from the mirror this machine's
#    apt sources name) with the Python 3.10 build `make setup` uses copied in (bookworm ships
#    3.11; TFX 1.16 needs 3.10) and the shared libraries it links;
# 2. a wheelhouse of requirements.lock (pip download on this machine, which reaches PyPI), served
#    to the build over HTTP from this machine (an installer inside a container cannot verify PyPI here);
# 3. kubeflow/Dockerfile on that base (BASE), CPU only (GPU=0), the wheelhouse as the installers' only
#    source (WHEELHOUSE, read by kubeflow/install.sh); Beam's SDK image cannot be pulled either, so BEAM_SDK_IMAGE is a stand-in whose
#    /opt/apache/beam/boot says so: the DirectRunner, which Kubeflow's pods run, never uses it.
#
# Each step is skipped when its result exists (delete it to redo). Times are printed per step.
set -euo pipefail
cd "$(dirname "$0")/.."
tag="${1:-graft:local}"
work="${GRAFT_IMAGE_WORK:-/tmp/graft-image}"
python_home="${PYTHON_HOME:-$(dirname "$(dirname "$(readlink -f "$(.venv/bin/python -c 'import sys; print(sys._base_executable)')")")")}"
base=graft-base:bookworm-py310
stand_in=graft-beam-boot-stand-in:offline
mkdir -p "$work"

step() { printf '[%4ds] %s\n' "$SECONDS" "$*"; }
command -v docker >/dev/null || { echo "error: docker not found (Debian: apt-get install docker.io)" >&2; exit 2; }
docker info >/dev/null 2>&1 || { echo "error: the docker daemon is not running (start it: dockerd &)" >&2; exit 2; }
[ -x "$python_home/bin/python3.10" ] || { echo "error: no Python 3.10 at $python_home (set PYTHON_HOME)" >&2; exit 2; }
# The Python is copied whole into the base: it must be a prefix of its own (pyenv's, a
# python-build-standalone), never the system's /usr. Its glibc, and that of the wheels built
# here, must not be newer than bookworm's 2.36: a Debian 12 host.
case "$python_home" in /usr | /usr/local | / | "") echo "error: $python_home is the system's Python; give a self-contained 3.10 (pyenv install 3.10.13) as PYTHON_HOME" >&2; exit 2 ;; esac
glibc=$(ldd --version 2>/dev/null | awk 'NR==1 {print $NF}')
if [ -n "$glibc" ] && [ "$(printf '%s\n2.36\n' "$glibc" | sort -V | tail -1)" != 2.36 ]; then
  echo "error: this machine's glibc $glibc is newer than Debian bookworm's 2.36: the Python and wheels copied from it would not run in the base" >&2
  exit 2
fi

if ! docker image inspect "$base" >/dev/null 2>&1; then
  mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  mirror=${mirror:-http://deb.debian.org/debian}
  step "base: debootstrap bookworm from $mirror"
  rootfs="$work/rootfs"
  rm -rf "$rootfs"
  # The libraries Python's extension modules and TensorFlow link against, and CA certificates.
  debootstrap --variant=minbase \
    --include=ca-certificates,libssl3,libffi8,libsqlite3-0,libbz2-1.0,liblzma5,zlib1g,libreadline8,libncursesw6,libuuid1,libgdbm6,libgomp1 \
    bookworm "$rootfs" "$mirror" >"$work/debootstrap.log"
  step "base: Python from $python_home"
  mkdir -p "$rootfs$python_home"
  cp -a "$python_home/." "$rootfs$python_home/"  # its libpython is found by an absolute rpath
  rm -f "$rootfs$python_home"/lib/python3.10/site-packages/_sandboxing_*.pth  # a sandbox's CA hook, not the image's
  ln -sf "$python_home/bin/python3.10" "$rootfs/usr/local/bin/python"
  ln -sf "$python_home/bin/python3.10" "$rootfs/usr/local/bin/python3"
  rm -rf "$rootfs/var/cache/apt/archives/"*.deb "$rootfs/var/lib/apt/lists/"*
  tar -C "$rootfs" -c . | docker import \
    -c "ENV PATH=$python_home/bin:/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8" - "$base" >/dev/null
  rm -rf "$rootfs"
  docker run --rm "$base" python -c 'import ssl, sqlite3, ctypes, lzma, bz2; print("base python ok")'
fi

if ! docker image inspect "$stand_in" >/dev/null 2>&1; then
  step "Beam boot stand-in (apache/beam_python3.10_sdk cannot be pulled here)"
  mkdir -p "$work/stand-in/opt/apache/beam"
  cat >"$work/stand-in/opt/apache/beam/boot" <<'EOF'
#!/bin/sh
echo "this image was built offline (kubeflow/build_local_image.sh) without Beam's SDK container: a portable Beam runner cannot start workers in it; build it with registry access for that" >&2
exit 2
EOF
  chmod +x "$work/stand-in/opt/apache/beam/boot"
  printf 'FROM %s\nCOPY opt /opt\n' "$base" | tee "$work/stand-in/Dockerfile" >/dev/null
  docker build -q -t "$stand_in" "$work/stand-in" >/dev/null
fi

wheelhouse="$work/wheelhouse"
step "wheelhouse: requirements.lock (pip download, kept in $wheelhouse)"
mkdir -p "$wheelhouse"
.venv/bin/python -m pip download -q --no-deps -r requirements.lock -d "$wheelhouse" >"$work/download.log" 2>&1 \
  || { tail -20 "$work/download.log" >&2; echo "error: pip download failed; its log: $work/download.log" >&2; exit 1; }
# Packages PyPI has only as source (pyfarmhash, crcmod, ...) are built into wheels here: the base
# has no compiler, and this machine's Python and glibc are the image's.
# (installers prefer the wheel; the source stays, so that pip download finds it and fetches nothing.)
for sdist in "$wheelhouse"/*.tar.gz "$wheelhouse"/*.zip; do
  [ -e "$sdist" ] || continue
  name=$(basename "$sdist") && name=${name%.tar.gz} && name=${name%.zip}
  project=${name%-*} && version=${name##*-}  # kfp-kubernetes-1.2.0: its wheel is kfp_kubernetes-1.2.0-*.whl
  compgen -G "$wheelhouse/${project//-/_}-$version-*.whl" >/dev/null && continue
  .venv/bin/python -m pip wheel -q --no-deps -w "$wheelhouse" "$sdist" >>"$work/download.log" 2>&1 \
    || { echo "error: cannot build a wheel of $sdist; see $work/download.log" >&2; exit 1; }
done

# This machine as the build's containers see it: the default bridge's gateway.
gateway=$(docker network inspect bridge -f '{{range .IPAM.Config}}{{.Gateway}}{{end}}' 2>/dev/null || true)
gateway=${gateway:-$( (ip -4 -o addr show docker0 2>/dev/null || true) | awk '{sub(/\/.*/, "", $4); print $4}')}
[ -n "$gateway" ] || { echo "error: cannot find the docker bridge's address (docker0)" >&2; exit 1; }
# A fixed port: the URL is a build argument, and a new value would rebuild every layer after it.
port=${GRAFT_WHEELHOUSE_PORT:-8765}
.venv/bin/python -m http.server "$port" --bind "$gateway" --directory "$wheelhouse" >"$work/http.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 50); do
  kill -0 $server 2>/dev/null || { cat "$work/http.log" >&2; echo "error: the wheelhouse server did not start on $gateway:$port (set GRAFT_WHEELHOUSE_PORT)" >&2; exit 1; }
  .venv/bin/python -c "import urllib.request; urllib.request.urlopen('http://$gateway:$port/', timeout=1)" 2>/dev/null && break
  sleep 0.2
done
step "image $tag: kubeflow/Dockerfile on $base (wheelhouse at http://$gateway:$port)"
docker build -f kubeflow/Dockerfile -t "$tag" \
  --build-arg BASE="$base" --build-arg BEAM_SDK_IMAGE="$stand_in" --build-arg GPU=0 \
  --build-arg WHEELHOUSE="http://$gateway:$port/" . >"$work/build.log" 2>&1 \
  || { tail -30 "$work/build.log" >&2; echo "error: docker build failed; its log: $work/build.log" >&2; exit 1; }
step "built $tag ($(docker image inspect "$tag" -f '{{.Size}}' | awk '{printf "%.1f GB", $1/1e9}'))"
docker run --rm --entrypoint python "$tag" -c 'import tfx, kubeflow.kfp_v2_compat; print("tfx", tfx.__version__)'
