package testkms

import (
	"context"
	"sync"
	"time"
)

// base is what every fake shares: request counting and hanging requests,
// freed when the fake stops. Its mutex also guards the fakes' own fields.
type base struct {
	mu       sync.Mutex
	calls    map[string]int
	hang     bool
	release  chan struct{}
	stopOnce sync.Once
}

func (b *base) init() {
	b.calls = map[string]int{}
	b.release = make(chan struct{})
}

// Calls returns how many requests of an operation arrived.
func (b *base) Calls(op string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.calls[op]
}

// ResetCalls zeroes the counters.
func (b *base) ResetCalls() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls = map[string]int{}
}

// SetHang makes every request wait until the client gives up.
func (b *base) SetHang(h bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.hang = h
}

// count records a request and, while hanging, holds it until the client
// gives up or the fake stops; it reports whether the request was held.
func (b *base) count(ctx context.Context, op string) (held bool) {
	b.mu.Lock()
	b.calls[op]++
	hang := b.hang
	b.mu.Unlock()
	if !hang {
		return false
	}
	select {
	case <-ctx.Done():
	case <-b.release:
	case <-time.After(time.Minute):
	}
	return true
}

func (b *base) stop() { b.stopOnce.Do(func() { close(b.release) }) }
