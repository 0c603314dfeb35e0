// Package adversarial holds ocikp's tests as an attacker would run them
// (docs/security.md): hostile layers and hostile gRPC clients against the
// real binaries, with fake attacker endpoints on loopback. It has no code
// of its own; scripts/test.sh runs it as the "adversarial" step with
// OCIKP_ADVERSARIAL=1, printing the figures the tests measure. The tests
// are Linux-only (/proc, inotify, mount namespaces).
package adversarial
