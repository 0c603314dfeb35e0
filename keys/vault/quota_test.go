package vault

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ocikp/ocikp/envelope"
	"github.com/ocikp/ocikp/internal/testkms"
)

// startThrottled fronts the fake with a rate limit quota's answer (429)
// for the first reject requests, or all of them when reject < 0.
func startThrottled(t *testing.T, timeout time.Duration, reject int) (*Backend, *testkms.Front, *envelope.Stanza) {
	b, fake := newBackend(t, timeout)
	s, err := b.Wrap("hashivault://layers", []byte("0123456789abcdef0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	front := testkms.StartFront(t, fake.URL, reject, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusTooManyRequests)
		json.NewEncoder(w).Encode(map[string][]string{"errors": {"rate limit quota exceeded"}})
	})
	t.Setenv("VAULT_ADDR", front.URL)
	return New(timeout), front, s
}

// At a rate limit quota the Vault client's default (2 retries) failed the
// pull while OCIKP_KMS_TIMEOUT had room for more (internal/cmd/simrollout).
func TestRateLimitRetriedUntilTimeout(t *testing.T) {
	b, th, s := startThrottled(t, 30*time.Second, 3)
	if _, err := b.Unwrap(s); err != nil {
		t.Fatalf("unwrap after 3 refused attempts: %v", err)
	}
	if th.Calls() != 4 {
		t.Errorf("%d attempts, want 4", th.Calls())
	}
}

// Refused for longer than the timeout: the error says rate limited, not a
// bare "no answer in time".
func TestRateLimitPastTimeout(t *testing.T) {
	b, th, s := startThrottled(t, 3*time.Second, -1)
	_, err := b.Unwrap(s)
	if err == nil || !strings.Contains(err.Error(), "rate limited") {
		t.Fatalf("err = %v, want the rate limit", err)
	}
	if th.Calls() < 2 {
		t.Errorf("%d attempts: not retried", th.Calls())
	}
}

// The raised retries are for answers such as 429: an address that never
// answers still fails after the client's default 2 retries, not after the
// whole timeout.
func TestNoAnswerNotRetriedUntilTimeout(t *testing.T) {
	_, _, s := startThrottled(t, 30*time.Second, 0)
	addr, accepted := testkms.HangUp(t)
	t.Setenv("VAULT_ADDR", "http://"+addr)
	b := New(30 * time.Second)
	_, err := b.Unwrap(s)
	if err == nil || !strings.Contains(err.Error(), "unreachable") {
		t.Fatalf("err = %v", err)
	}
	if n := accepted(); n != 3 {
		t.Errorf("%d connections, want 3 attempts", n)
	}
}
