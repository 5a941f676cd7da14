#!/usr/bin/env bash
# Makes a local stand-in for the `python:3.11-slim` base image where no container registry can
# be reached (our build machine reaches only the Debian and PyPI mirrors): a debootstrapped
# Debian bookworm (the release python:3.11-slim is built on) with its python3 (3.11), pip and
# venv, tagged `python:3.11-slim` in the local (vfs) container storage.
#
# Differences from the real image, on purpose small: Python is Debian's 3.11.2 in /usr/bin
# (linked as /usr/local/bin/python), not python.org's 3.11.x in /usr/local. The Dockerfile uses
# only `python -m venv` and pip, which both have.
#
# Cached: the root file system tarball is kept in $CACHE_DIR, and an image that is already in
# the storage is kept, so a rerun takes a second. `--force` rebuilds both.
set -euo pipefail

CACHE_DIR=${DIFFBGM_IMAGE_CACHE:-/var/cache/diffbgm-image}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
TAG=python:3.11-slim
STORAGE=(--storage-driver vfs)
TARBALL="$CACHE_DIR/bookworm-python3.11.tar"

if [ "${1:-}" = "--force" ]; then
  rm -f "$TARBALL"
  buildah "${STORAGE[@]}" rmi -f "$TAG" >/dev/null 2>&1 || true
fi

if buildah "${STORAGE[@]}" images --quiet "$TAG" 2>/dev/null | grep -q .; then
  echo "stand-in base: $TAG already in the local storage"
  exit 0
fi

if [ "$(id -u)" != "0" ]; then
  echo "error: debootstrap and vfs storage need root" >&2
  exit 1
fi
for tool in debootstrap buildah podman; do
  command -v "$tool" >/dev/null || { echo "error: $tool missing (apt-get install -y $tool)" >&2; exit 1; }
done

mkdir -p "$CACHE_DIR"
if [ ! -s "$TARBALL" ]; then
  root=$(mktemp -d "$CACHE_DIR/rootfs.XXXXXX")
  trap 'rm -rf "$root"' EXIT
  echo "stand-in base: debootstrap bookworm into $root (a few minutes)"
  debootstrap --variant=minbase \
    --include=python3,python3-pip,python3-venv,ca-certificates \
    bookworm "$root" "$MIRROR" >"$CACHE_DIR/debootstrap.log" 2>&1 \
    || { tail -20 "$CACHE_DIR/debootstrap.log" >&2; exit 1; }
  # mktemp made the root 0700: the image's non-root user could not run anything.
  chmod 0755 "$root"
  # As in python:3.11-slim: `python` and `pip` on PATH, pip may install (no PEP 668 marker),
  # no apt lists left behind.
  ln -sf /usr/bin/python3 "$root/usr/local/bin/python"
  ln -sf /usr/bin/pip3 "$root/usr/local/bin/pip"
  rm -f "$root"/usr/lib/python3.*/EXTERNALLY-MANAGED
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/archives/*.deb
  # The container's name resolution comes from the host at run time.
  tar -C "$root" -cf "$TARBALL.part" . && mv "$TARBALL.part" "$TARBALL"
  rm -rf "$root"
  trap - EXIT
fi

echo "stand-in base: importing $TARBALL as $TAG"
podman "${STORAGE[@]}" import \
  --change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["python3"]' \
  "$TARBALL" "$TAG" >/dev/null
buildah "${STORAGE[@]}" images "$TAG"
