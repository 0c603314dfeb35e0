package soft

import (
	"context"
	"fmt"
	"sync"
)

// MaxDerivations bounds the scrypt derivations (opening a passphrase-sealed
// key) that run at once in a process. At the ceiling a key file may ask for
// (MaxScryptMemory, 1 GiB, ~5 s), the service's --max-concurrent calls
// would otherwise each hold a gigabyte at once; with two, the worst case is
// 2 GiB, and a second key need not wait behind a slow one. A limit rather
// than only deriving each key once: the service already keeps an opened key
// with its identity, but a call that names a key reads it anew, a wrong
// passphrase opens nothing to keep, and the limit holds whatever the path.
const MaxDerivations = 2

// derivations is the process's limit; its zero value is ready, so the exec
// path pays nothing at start-up.
var derivations limiter

type limiter struct {
	mu      sync.Mutex
	running int
	peak    int
	freed   chan struct{} // closed (and dropped) when a derivation ends
}

// acquire waits for a free derivation slot until ctx ends.
func (l *limiter) acquire(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("not opening a passphrase-protected key: %w", err) // its caller has gone
	}
	for {
		l.mu.Lock()
		if l.running < MaxDerivations {
			l.running++
			l.peak = max(l.peak, l.running)
			l.mu.Unlock()
			return nil
		}
		if l.freed == nil {
			l.freed = make(chan struct{})
		}
		freed := l.freed
		l.mu.Unlock()
		select {
		case <-freed:
		case <-ctx.Done():
			return fmt.Errorf("waiting to open a passphrase-protected key (%d at once): %w", MaxDerivations, ctx.Err())
		}
	}
}

func (l *limiter) release() {
	l.mu.Lock()
	l.running--
	if l.freed != nil {
		close(l.freed)
		l.freed = nil
	}
	l.mu.Unlock()
}

// Derivations reports the scrypt derivations running now and the most
// that ran at once in this process (for tests and diagnostics).
func Derivations() (running, peak int) {
	derivations.mu.Lock()
	defer derivations.mu.Unlock()
	return derivations.running, derivations.peak
}
