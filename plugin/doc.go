// Package plugin runs key backends that live in separate executables, such
// as ocikp-plugin-gcpkms with a cloud KMS SDK, so that the exec binary
// ocicrypt starts for every layer does not link them (DESIGN.md, "Binaries").
//
// A plugin is started only when a recipient or a stanza needs it, and serves
// any number of requests over one process: one JSON object per line on its
// stdin, one reply per line on its stdout. docs/plugin.md specifies the
// protocol for third-party backends.
package plugin
