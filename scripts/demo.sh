#!/usr/bin/env bash
# The main job, end to end, on a fresh machine: build ocikp, install a local
# registry and skopeo (cached), make a key, encrypt a small image for it,
# decrypt it, show the wrong-key error, stop the registry.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '$ %s\n' "$*"; "$@"; }
start=$SECONDS
# The first build downloads about a hundred Go modules; go prints a line
# for each. The step lines say what is happening instead.
nodl() { "$@" 2> >(grep --line-buffered -v '^go: downloading ' >&2); }
step() { printf '  %s ... ' "$1"; local t=$SECONDS; shift; nodl "$@"; echo "done ($((SECONDS - t)) s)"; }

say "building (the first run downloads Go modules and builds skopeo once: about 4 minutes; later runs: seconds)"
mkdir -p bin
step "ocikp (CGO_ENABLED=0 go build ./cmd/ocikp)" env CGO_ENABLED=0 go build -o bin/ocikp ./cmd/ocikp
step "mkimage, a small image maker (go build ./internal/cmd/mkimage)" go build -o bin/mkimage ./internal/cmd/mkimage
printf '  skopeo v1.16.1 with key provider support, and Debian'"'"'s docker-registry (scripts/install-tools.sh skopeo; cached in %s) ...\n' \
  "${OCIKP_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/ocikp/tools}"
t=$SECONDS
TOOLS_BIN=$(nodl scripts/install-tools.sh skopeo)
echo "  done ($((SECONDS - t)) s)"
export PATH="$PWD/bin:$TOOLS_BIN:$PATH"

work=$(mktemp -d)
registry_pid=
cleanup() {
  # The registry ends by SIGTERM (status 143), which must not become the
  # demo's exit status under set -e.
  if [ -n "$registry_pid" ]; then
    kill "$registry_pid" 2>/dev/null || true
    wait "$registry_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

say "starting a throwaway registry on loopback"
cat > "$work/registry.yml" <<YML
version: 0.1
log: {level: info}
storage: {filesystem: {rootdirectory: $work/registry}}
http: {addr: 127.0.0.1:0}
YML
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
registry_pid=$!
reg=$(logged_addr "$work/registry.log" "$registry_pid" 's/.*msg="listening on \([^"]*\)".*/\1/p')
echo "registry at $reg"
echo '{"default":[{"type":"insecureAcceptAnything"}]}' > "$work/policy.json"
sk() { skopeo --policy "$work/policy.json" "$@"; }

say "pushing a small 3-layer image"
mkimage -layers 3 "$work/image"
sk copy -q --dest-tls-verify=false "oci:$work/image:demo" "docker://$reg/demo:1"

say "making a key (the keystore is a directory; OCIKP_KEYSTORE chooses it)"
export OCIKP_KEYSTORE=$work/keys
show ocikp keygen alice
show ocikp list

say "pointing ocicrypt at ocikp"
ocikp config --name ocikp > "$work/ocicrypt.json"
cat "$work/ocicrypt.json"
export OCICRYPT_KEYPROVIDER_CONFIG=$work/ocicrypt.json

say "encrypting for alice"
show sk copy -q --src-tls-verify=false --dest-tls-verify=false \
  --encryption-key "provider:ocikp:$(ocikp recipient alice)" \
  "docker://$reg/demo:1" "docker://$reg/demo:enc"
echo "layer media types now:"
sk inspect --raw --tls-verify=false "docker://$reg/demo:enc" | grep -o '"application/vnd.oci.image.layer[^"]*"' | sort | uniq -c

say "decrypting with alice's keystore (no key named: ocikp finds it)"
show sk copy -q --src-tls-verify=false --decryption-key provider:ocikp \
  "docker://$reg/demo:enc" "oci:$work/out:demo"
echo "the decrypted layers hold:"
for b in "$work"/out/blobs/sha256/*; do tar -xzOf "$b" 2>/dev/null || true; done

say "decrypting with someone else's keystore fails, and says why"
OCIKP_KEYSTORE=$work/other ocikp keygen mallory >/dev/null 2>&1
if OCIKP_KEYSTORE=$work/other sk copy -q --src-tls-verify=false --decryption-key provider:ocikp \
    "docker://$reg/demo:enc" "oci:$work/out2:demo" 2>"$work/err"; then
  echo "unexpected: decryption with the wrong key succeeded" >&2
  exit 1
fi
# skopeo escapes the provider's stderr inside its own message; unescape for reading.
sed 's/\\n/\n/g' "$work/err"

say "done in $((SECONDS - start)) s: registry stopped, temporary files removed"
