package soft

import (
	"context"
	"errors"
	"testing"
	"time"
)

// With every derivation slot taken, opening a sealed key waits no longer
// than its caller's deadline, and gets a slot when one is freed.
func TestDerivationWaitEndsWithContext(t *testing.T) {
	sealed, err := seal(make([]byte, 32), []byte("pw"), "r", 10)
	if err != nil {
		t.Fatal(err)
	}
	for range MaxDerivations {
		if err := derivations.acquire(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := sealed.OpenContext(ctx, []byte("pw"), "r"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("open with every slot taken: %v", err)
	}
	done := make(chan error, 1)
	go func() { _, err := sealed.OpenContext(context.Background(), []byte("pw"), "r"); done <- err }()
	derivations.release()
	if err := <-done; err != nil {
		t.Fatalf("open after a slot was freed: %v", err)
	}
	for range MaxDerivations - 1 {
		derivations.release()
	}
	if running, peak := Derivations(); running != 0 || peak > MaxDerivations {
		t.Fatalf("running %d, peak %d", running, peak)
	}
}
