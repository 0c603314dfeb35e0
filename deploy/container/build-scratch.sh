#!/usr/bin/env bash
# Builds the ocikp serve image with no base image from a registry: static
# binaries (CGO_ENABLED=0) built here, put into a FROM scratch image by
# buildah (BUILDAH=/path/to/buildah to choose one; podman build works the
# same way with the same Containerfile).
#
# Usage: deploy/container/build-scratch.sh [TAG]        (default ocikp:dev)
#        PUSH=docker://host/ocikp:dev deploy/container/build-scratch.sh [TAG]
#          also pushes it (PUSH_FLAGS, e.g. --tls-verify=false, are added).
#        TRIMPATH=0 builds without -trimpath, reusing the build cache of
#          ordinary builds (the test suite does; a release keeps the default).
set -euo pipefail
cd "$(dirname "$0")/../.."
tag=${1:-ocikp:dev}
buildah=${BUILDAH:-buildah}

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
root=$ctx/rootfs
mkdir -p "$root/usr/local/bin" "$root/etc/ssl/certs"
# Every command of the module, as the Dockerfile builds them: ocikp-pkcs11
# without cgo answers "built without pkcs11 support" (a static image has no
# C library for a token module).
trim=-trimpath; [ "${TRIMPATH:-1}" = 0 ] && trim=
CGO_ENABLED=0 go build $trim -ldflags="-s -w" -o "$root/usr/local/bin/" ./cmd/...
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$root/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$root/etc/group"
# The build host's CA bundle, for the KMS plugins' TLS (distroless ships
# Debian's; so does this, when built on Debian).
for ca in /etc/ssl/certs/ca-certificates.crt /etc/pki/tls/certs/ca-bundle.crt; do
  if [ -f "$ca" ]; then cp "$ca" "$root/etc/ssl/certs/ca-certificates.crt"; break; fi
done
[ -f "$root/etc/ssl/certs/ca-certificates.crt" ] || echo "build-scratch: no CA bundle on this host: the image's KMS plugins will trust no server" >&2
cp deploy/container/Containerfile.scratch "$ctx/Containerfile"

# Docker's format keeps the HEALTHCHECK (OCI's has no field for it), as
# docker build of the Dockerfile does.
"$buildah" build --format docker --layers=false --timestamp 0 -f "$ctx/Containerfile" -t "$tag" "$ctx" >&2
if [ -n "${PUSH:-}" ]; then
  # shellcheck disable=SC2086 # PUSH_FLAGS is a list of flags
  "$buildah" push ${PUSH_FLAGS:-} "$tag" "$PUSH" >&2
fi
echo "$tag"
