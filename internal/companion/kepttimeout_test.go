package companion

import (
	"strings"
	"testing"
	"time"
)

// TestKeptTimeoutNotRetried: a kept companion that does not answer within
// the time-out is ended and the call fails; the request is not sent to a
// second one, which would hold every other request (they are serialised)
// for a second time-out. A companion that is gone is still replaced.
func TestKeptTimeoutNotRetried(t *testing.T) {
	c := client(t, "hang")
	c.Timeout = time.Second
	k := &Kept{Client: c}
	defer k.Stop()
	var rep reply
	err := k.Call(map[string]string{"x": "1"}, &rep)
	if err == nil || !strings.Contains(err.Error(), "did not answer") {
		t.Fatalf("hang: %v", err)
	}
	if n := k.Starts(); n != 1 {
		t.Fatalf("a request that timed out was sent to %d companions, want 1", n)
	}
}
