//go:build !linux

package plugin

import "os/exec"

// endWithParent: elsewhere than Linux there is no parent-death signal; the
// plugin ends when its stdin does (Serve), which the kernel closes when
// ocikp ends, however it ends.
func endWithParent(*exec.Cmd) {}

const pinThread = false
