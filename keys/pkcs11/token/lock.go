//go:build cgo

package token

import (
	"errors"
	"os"
	"syscall"
	"time"
)

// lockWait bounds the wait for the module lock; past it the companion goes
// on without it (a module held that long is busy elsewhere, and the
// caller's own timeout must still decide).
const lockWait = 30 * time.Second

// lockModule makes the companions on this machine take turns on one
// PKCS#11 module, with an advisory lock (flock) on the module's library
// file, which every user of the module can open and none need write.
// Callers unwrap an image's layers in parallel, each layer through its own
// ocikp process and companion. SoftHSM keeps a token in files and
// rewrites the token's file on every login: a companion that initialised
// the module or logged in during another's write saw no token, no user
// PIN, or CKR_GENERAL_ERROR. The lock is best effort: a module that cannot
// be opened or locked is used without it. It returns the release.
func lockModule(module string) (unlock func()) {
	f, err := os.Open(module)
	if err != nil {
		return func() {}
	}
	fd := int(f.Fd())
	deadline := time.Now().Add(lockWait)
	for wait := time.Millisecond; ; wait = min(2*wait, 20*time.Millisecond) {
		err := syscall.Flock(fd, syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { f.Close() } // closing releases the lock
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) || time.Now().After(deadline) {
			f.Close()
			return func() {}
		}
		time.Sleep(wait)
	}
}
