#!/usr/bin/env bash
# Installs the real callers the end-to-end tests and the demo drive:
#   Debian: docker-registry (a local registry), containerd, runc
#   built from the Go module proxy (go install is refused for these modules,
#   so: go mod download, then go build in a writable copy):
#     skopeo v1.16.1 (and a copy on ocicrypt v1.3.2), imgcrypt v1.1.8
#     ctd-decoder, nerdctl v1.7.7
# Built binaries are cached in $OCIKP_TOOLS (default ~/.cache/ocikp/tools) and
# reused when present. Prints the tools directory on stdout.
#
# Usage: scripts/install-tools.sh [skopeo] [skopeo13] [containerd] [shells]   (default: all)
set -euo pipefail

TOOLS=${OCIKP_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/ocikp/tools}
mkdir -p "$TOOLS/bin"
want=${*:-skopeo skopeo13 containerd shells}

log() { echo "install-tools: $*" >&2; }

apt_install() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "apt-get install ${missing[*]}"
  local sudo=""; [ "$(id -u)" -ne 0 ] && sudo=sudo
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

# build_from_proxy MODULE VERSION PACKAGE OUTPUT TAGS [extra go get args]
build_from_proxy() {
  local mod=$1 ver=$2 pkg=$3 out=$4 tags=$5; shift 5
  if [ -x "$TOOLS/bin/$out" ]; then log "$out: cached"; return 0; fi
  log "$out: building $mod@$ver (a few minutes, once)"
  local dir work json
  # These modules are not in the checksum database, hence GONOSUMDB.
  json=$(GONOSUMDB=$mod GOFLAGS=-mod=mod go mod download -json "$mod@$ver" || true)
  dir=$(printf '%s\n' "$json" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')
  if [ ! -d "$dir" ]; then
    log "could not download $mod@$ver:"
    printf '%s\n' "$json" | grep '"Error"' >&2 || true
    return 1
  fi
  work=$(mktemp -d)
  cp -r "$dir/." "$work/"
  chmod -R u+w "$work"
  (
    cd "$work"
    export GONOSUMDB=$mod GOFLAGS=-mod=mod CGO_ENABLED=0
    for g in "$@"; do go get "$g" >&2; done
    go build -trimpath -tags "$tags" -o "$TOOLS/bin/$out.tmp" "./$pkg" >&2
  )
  mv "$TOOLS/bin/$out.tmp" "$TOOLS/bin/$out"
  rm -rf "$work"
}

for w in $want; do
  case $w in
  skopeo)
    apt_install docker-registry openssl
    build_from_proxy github.com/containers/skopeo v1.16.1 cmd/skopeo skopeo \
      "containers_image_openpgp exclude_graphdriver_btrfs exclude_graphdriver_devicemapper"
    ;;
  skopeo13)
    # The same skopeo on ocicrypt v1.3.2, whose key provider client speaks
    # gRPC over TLS (grpc-tls), for the ocikp serve TLS test.
    build_from_proxy github.com/containers/skopeo v1.16.1 cmd/skopeo skopeo-ocicrypt13 \
      "containers_image_openpgp exclude_graphdriver_btrfs exclude_graphdriver_devicemapper" \
      github.com/containers/ocicrypt@v1.3.2
    ;;
  containerd)
    apt_install containerd runc
    build_from_proxy github.com/containerd/imgcrypt v1.1.8 cmd/ctd-decoder ctd-decoder ""
    build_from_proxy github.com/containerd/nerdctl v1.7.7 cmd/nerdctl nerdctl ""
    ;;
  shells)
    # zsh and fish, to test ocikp's completion scripts in the real shells.
    apt_install zsh fish
    ;;
  *) log "unknown tool set: $w"; exit 2 ;;
  esac
done
echo "$TOOLS/bin"
