// Package e2e holds ocikp's end-to-end tests against the real callers:
// skopeo v1.16.1 and a docker-registry on a loopback port, and a private
// containerd with imgcrypt's ctd-decoder driven by nerdctl.
//
// They run when OCIKP_E2E=1 (scripts/test.sh sets it after
// scripts/install-tools.sh has installed the tools, whose directory it puts
// in OCIKP_TOOLS_BIN); otherwise they skip. With OCIKP_E2E=1 a missing tool
// is a failure, not a skip.
package e2e
