package badpin

import (
	"errors"
	"strings"
	"sync"
	"testing"
)

var errWrong = errors.New("wrong PIN")

func isWrong(err error) bool { return errors.Is(err, errWrong) }

// device refuses every PIN but "1234" and counts what it was sent.
type device struct {
	mu    sync.Mutex
	tries map[string]int
}

func (d *device) op(pin string) func() error {
	return func() error {
		d.mu.Lock()
		defer d.mu.Unlock()
		d.tries[pin]++
		if pin != "1234" {
			return errWrong
		}
		return nil
	}
}

func TestLatch(t *testing.T) {
	d := &device{tries: map[string]int{}}
	var l Latch
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if err := l.Do([]byte("0000"), d.op("0000"), isWrong); !errors.Is(err, errWrong) {
				t.Errorf("wrong PIN: %v", err)
			}
		})
	}
	wg.Wait()
	if err := l.Do([]byte("0000"), d.op("0000"), isWrong); !strings.Contains(err.Error(), "not tried again") {
		t.Errorf("a refusal returned again does not say so: %v", err)
	}
	if n := d.tries["0000"]; n != 1 {
		t.Fatalf("a refused PIN reached the device %d times, want 1", n)
	}
	// Another PIN is tried, the right one works, every time.
	for range 3 {
		if err := l.Do([]byte("1234"), d.op("1234"), isWrong); err != nil {
			t.Fatalf("right PIN: %v", err)
		}
	}
	if n := d.tries["1234"]; n != 3 {
		t.Fatalf("the right PIN reached the device %d times, want 3", n)
	}
	// Other failures are not remembered.
	other := errors.New("device gone")
	for range 2 {
		if err := l.Do([]byte("5555"), func() error { d.tries["5555"]++; return other }, isWrong); err != other {
			t.Fatalf("other failure: %v", err)
		}
	}
	if n := d.tries["5555"]; n != 2 {
		t.Fatalf("a PIN that failed otherwise was tried %d times, want 2", n)
	}
	var nl *Latch
	if err := nl.Do([]byte("0000"), d.op("0000"), isWrong); !errors.Is(err, errWrong) || d.tries["0000"] != 2 {
		t.Fatalf("nil latch: %v, %d tries", err, d.tries["0000"])
	}
}
