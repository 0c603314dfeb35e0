package plugin

import (
	"os/exec"
	"syscall"
)

// endWithParent makes the kernel kill the plugin when the thread that
// starts it ends: ocikp killed mid-call must not leave a plugin waiting on
// its KMS. startPinned starts it from a thread that never ends.
// The plugin also ends when its stdin does (Serve), which covers the rest.
func endWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// pinThread says that a process must be started from a thread kept until
// the process ends: Pdeathsig fires when that thread ends, not the process.
const pinThread = true
