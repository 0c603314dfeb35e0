#!/usr/bin/env bash
# Installs the real callers the end-to-end tests and the demo drive:
#   Debian: docker-registry (a local registry), containerd, runc, and the
#     hardware simulators (group hardware): swtpm, swtpm-tools, tpm2-tools,
#     softhsm2 and opensc (pkcs11-tool)
#   built from the Go module proxy (go install is refused for these modules,
#   so: go mod download, then go build in a writable copy):
#     skopeo v1.16.1 (and a copy on ocicrypt v1.3.2), imgcrypt v1.1.8
#     ctd-decoder, nerdctl v1.7.7
#   today's callers (issue: containerd 2 under the CRI, nerdctl 2, podman 5,
#   buildah, CRI-O), built the same way:
#     containerd v2.4.2 (containerd, ctr), nerdctl v2.1.3,
#     podman v5.5.0, buildah v1.40.0, CRI-O v1.34.0 (crio, pinns) -- the last
#     three with cgo (Debian's libseccomp-dev), and Debian's conmon, crun,
#     netavark which podman and CRI-O run
#   a Kubernetes node (group node): kubelet v1.37.2 (k8s.io/kubernetes with
#     its ./staging replaces swapped for the published k8s.io/* modules),
#     runc v1.5.3 (cgo, libseccomp) and containerd v2.4.2's own
#     containerd-shim-runc-v2 -- Debian's runc 1.1 and shim 1.6 cannot run
#     containerd 2.4's pods
# Built binaries are cached in $OCIKP_TOOLS (default ~/.cache/ocikp/tools) and
# reused when present. Prints the tools directory on stdout.
#
# Usage: scripts/install-tools.sh [skopeo] [skopeo13] [containerd] [containerd2]
#                                 [podman] [crio] [shells] [hardware] [node]   (default: all)
set -euo pipefail

TOOLS=${OCIKP_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/ocikp/tools}
mkdir -p "$TOOLS/bin"
want=${*:-skopeo skopeo13 containerd containerd2 podman crio shells hardware node}

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

# build_from_proxy MODULE VERSION TAGS PKG:OUT... [-- go-get-args...]
# Builds each package PKG of the module into $TOOLS/bin/OUT. CGO=1 in the
# environment builds with cgo; PREBUILD, if set, runs in the copy first.
build_from_proxy() {
  local mod=$1 ver=$2 tags=$3; shift 3
  local outs=() gets=() pair missing=0
  while [ $# -gt 0 ]; do
    if [ "$1" = -- ]; then shift; gets=("$@"); break; fi
    outs+=("$1"); shift
  done
  for pair in "${outs[@]}"; do [ -x "$TOOLS/bin/${pair#*:}" ] || missing=1; done
  if [ $missing = 0 ]; then log "${outs[*]#*:}: cached"; return 0; fi
  log "${outs[*]#*:}: building $mod@$ver (a few minutes, once)"
  local dir work json start=$SECONDS
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
    export GONOSUMDB=$mod GOFLAGS=-mod=mod CGO_ENABLED=${CGO:-0}
    for g in "${gets[@]}"; do go get "$g" >&2; done
    if [ -n "${PREBUILD:-}" ]; then eval "$PREBUILD" >&2; fi
    for pair in "${outs[@]}"; do
      # -s -w: no symbol table or DWARF, which the tests never read and
      # which cost link time on every cold run (the kubelet most).
      go build -trimpath -ldflags="-s -w" -tags "$tags" -o "$TOOLS/bin/${pair#*:}.tmp" "./${pair%%:*}" >&2
    done
  )
  for pair in "${outs[@]}"; do mv "$TOOLS/bin/${pair#*:}.tmp" "$TOOLS/bin/${pair#*:}"; done
  rm -rf "$work"
  log "${outs[*]#*:}: built in $((SECONDS - start)) s"
}

# The tags the containers/* programs build with here: no gpgme, btrfs or
# devicemapper C libraries; libseccomp through cgo.
CONTAINERS_TAGS="containers_image_openpgp exclude_graphdriver_btrfs exclude_graphdriver_devicemapper"

for w in $want; do
  case $w in
  skopeo)
    apt_install docker-registry openssl
    build_from_proxy github.com/containers/skopeo v1.16.1 "$CONTAINERS_TAGS" cmd/skopeo:skopeo
    ;;
  skopeo13)
    # The same skopeo on ocicrypt v1.3.2, whose key provider client speaks
    # gRPC over TLS (grpc-tls), for the ocikp serve TLS test.
    build_from_proxy github.com/containers/skopeo v1.16.1 "$CONTAINERS_TAGS" cmd/skopeo:skopeo-ocicrypt13 \
      -- github.com/containers/ocicrypt@v1.3.2
    ;;
  containerd)
    apt_install containerd runc
    build_from_proxy github.com/containerd/imgcrypt v1.1.8 "" cmd/ctd-decoder:ctd-decoder
    build_from_proxy github.com/containerd/nerdctl v1.7.7 "" cmd/nerdctl:nerdctl
    ;;
  containerd2)
    # containerd 2 with its CRI plugin, as a Kubernetes node runs it; the
    # decoder is imgcrypt v1.1.8's ctd-decoder (group containerd).
    apt_install runc
    build_from_proxy github.com/containerd/containerd/v2 v2.4.2 "no_btrfs no_devmapper no_zfs" \
      cmd/containerd:containerd2 cmd/ctr:ctr2
    # The module zip lacks nerdctl's nested test module (mod/tigron), which
    # only this test helper imports.
    PREBUILD="rm -f cmd/nerdctl/helpers/testing_linux.go" \
      build_from_proxy github.com/containerd/nerdctl/v2 v2.1.3 "" cmd/nerdctl:nerdctl2
    ;;
  podman)
    # podman and buildah run conmon and an OCI runtime, and podman wants
    # netavark, even for push and pull.
    apt_install libseccomp-dev conmon crun netavark
    CGO=1 build_from_proxy github.com/containers/podman/v5 v5.5.0 "$CONTAINERS_TAGS seccomp" cmd/podman:podman \
      cmd/quadlet:quadlet
    CGO=1 build_from_proxy github.com/containers/buildah v1.40.0 "$CONTAINERS_TAGS seccomp" cmd/buildah:buildah
    ;;
  crio)
    apt_install libseccomp-dev conmon crun
    # pinns is CRI-O's small C helper; crio refuses to start without it.
    CGO=1 PREBUILD="make -C pinns >/dev/null && cp bin/pinns \"$TOOLS/bin/pinns\"" \
      build_from_proxy github.com/cri-o/cri-o v1.34.0 "$CONTAINERS_TAGS seccomp" cmd/crio:crio
    ;;
  node)
    # What a kubelet node runs, for e2e/kubelet_test.go (with group
    # containerd2's containerd and group containerd's ctd-decoder). The
    # kubernetes module builds only after its ./staging replaces are
    # dropped for the published k8s.io/* modules of the same release.
    apt_install libseccomp-dev gcc libc6-dev pkg-config
    CGO=1 build_from_proxy github.com/opencontainers/runc v1.5.3 "seccomp" .:runc
    build_from_proxy github.com/containerd/containerd/v2 v2.4.2 "" \
      cmd/containerd-shim-runc-v2:containerd-shim-runc-v2
    GOWORK=off PREBUILD='go mod edit $(sed -n "s|^[[:space:]]*\(k8s\.io/[^ ]*\) => \./staging/.*|-dropreplace=\1 -require=\1@v0.37.2|p" go.mod)' \
      build_from_proxy k8s.io/kubernetes v1.37.2 "" cmd/kubelet:kubelet
    ;;
  shells)
    # zsh and fish, to test ocikp's completion scripts in the real shells.
    apt_install zsh fish
    ;;
  hardware)
    # A software TPM 2.0 (swtpm_setup, swtpm socket) and tpm2-tools, for
    # the TPM backend's tests.
    apt_install swtpm swtpm-tools tpm2-tools
    # SoftHSM2 (a PKCS#11 token in files) and OpenSC's pkcs11-tool, for
    # the PKCS#11 backend's tests; the companion ocikp-pkcs11 builds with
    # cgo (gcc).
    apt_install softhsm2 opensc gcc libc6-dev
    ;;
  *) log "unknown tool set: $w"; exit 2 ;;
  esac
done
echo "$TOOLS/bin"
