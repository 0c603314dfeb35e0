package awskms

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ocikp/ocikp/envelope"
	"github.com/ocikp/ocikp/internal/hint"
	"github.com/ocikp/ocikp/internal/testkms"
)

// startThrottled fronts the fake with AWS KMS's answer past a request
// quota (HTTP 400, ThrottlingException) for the first reject requests, or
// all of them when reject < 0.
func startThrottled(t *testing.T, timeout time.Duration, reject int) (*Backend, *testkms.Front, *envelope.Stanza) {
	fake := testkms.StartAWS(t, []string{keyID}, map[string]string{"alias/layers": keyID})
	Env(t, fake)
	blob, err := New(timeout).Wrap("awskms:///alias/layers", []byte("0123456789abcdef0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	front := testkms.StartFront(t, fake.URL, reject, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("X-Amzn-ErrorType", "ThrottlingException")
		w.WriteHeader(400)
		json.NewEncoder(w).Encode(map[string]string{"__type": "ThrottlingException", "message": "Rate exceeded"})
	})
	t.Setenv("AWS_ENDPOINT_URL_KMS", front.URL)
	return New(timeout), front, blob
}

// A rollout at the quota: the SDK's default of 3 attempts in all gave up
// after a few seconds while OCIKP_KMS_TIMEOUT (30 s) had room for more, so
// a third of the nodes in cmd/simrollout's run failed their pulls.
func TestThrottlingRetriedUntilTimeout(t *testing.T) {
	b, th, s := startThrottled(t, 30*time.Second, 3)
	if _, err := b.Unwrap(s); err != nil {
		t.Fatalf("unwrap after 3 throttled attempts: %v", err)
	}
	if th.Calls() != 4 {
		t.Errorf("%d attempts, want 4", th.Calls())
	}
}

// Throttled for longer than the timeout: the error says throttled (the
// reason), not a bare "no answer in time".
func TestThrottlingPastTimeout(t *testing.T) {
	b, th, s := startThrottled(t, 3*time.Second, -1)
	_, err := b.Unwrap(s)
	if err == nil || !strings.Contains(err.Error(), "throttled") || strings.Contains(err.Error(), "no answer in time") {
		t.Fatalf("err = %v, want the throttling reason", err)
	}
	if th.Calls() < 2 {
		t.Errorf("%d attempts: not retried", th.Calls())
	}
}

// The raised attempts are for answers such as throttling: an endpoint that
// never answers still fails after the SDK's default 3 attempts, not after
// the whole timeout.
func TestNoAnswerNotRetriedUntilTimeout(t *testing.T) {
	_, _, s := startThrottled(t, 30*time.Second, 0)
	addr, accepted := testkms.HangUp(t)
	t.Setenv("AWS_ENDPOINT_URL_KMS", "http://"+addr)
	b := New(30 * time.Second)
	_, err := b.Unwrap(s)
	if err == nil || !strings.Contains(strings.Join(hint.Of(err), " "), "network path") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("err = %q", err)
	}
	if n := accepted(); n != 3 {
		t.Errorf("%d connections, want 3 attempts", n)
	}
}
