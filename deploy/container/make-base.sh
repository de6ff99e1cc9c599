#!/bin/sh
# Make a Debian 12 (bookworm) base image from Debian's packages alone, for a
# machine that reaches Debian's archive but no image registry:
#   deploy/container/make-base.sh [TAG]      (default backchannel-base:bookworm)
# then build with --build-arg BASE=backchannel-base:bookworm.
# The archive is the one this machine's apt uses (MIRROR overrides it).
set -eu
TAG=${1:-backchannel-base:bookworm}
if [ -z "${MIRROR:-}" ]; then
    MIRROR=$(grep -h -o -E '^(URIs:|deb) +[^ ]+' /etc/apt/sources.list /etc/apt/sources.list.d/*.sources \
        2>/dev/null | awk '{print $2}' | grep -v security | head -n 1)
fi
[ -n "$MIRROR" ] || { echo "error: no Debian archive found in /etc/apt; set MIRROR" >&2; exit 2; }
command -v debootstrap >/dev/null || { echo "error: debootstrap is not installed (apt-get install debootstrap)" >&2; exit 2; }
ROOT=$(mktemp -d)
trap 'rm -rf "$ROOT"' EXIT
debootstrap --variant=minbase bookworm "$ROOT" "$MIRROR"
rm -rf "$ROOT"/var/lib/apt/lists/* "$ROOT"/var/cache/apt/*.bin
tar -C "$ROOT" -c . | docker import - "$TAG"
echo "made $TAG"
