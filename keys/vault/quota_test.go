package vault

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ocikp/ocikp/envelope"
)

// throttle fronts the fake with a rate limit quota's answer (429) for the
// first reject requests, or all of them when reject < 0.
type throttle struct {
	mu            sync.Mutex
	reject, calls int
}

func startThrottled(t *testing.T, timeout time.Duration, reject int) (*Backend, *throttle, *envelope.Stanza) {
	b, fake := newBackend(t, timeout)
	s, err := b.Wrap("hashivault://layers", []byte("0123456789abcdef0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	th := &throttle{reject: reject}
	target, _ := url.Parse(fake.URL)
	proxy := httputil.NewSingleHostReverseProxy(target)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		th.mu.Lock()
		th.calls++
		refuse := th.reject < 0 || th.calls <= th.reject
		th.mu.Unlock()
		if refuse {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusTooManyRequests)
			json.NewEncoder(w).Encode(map[string][]string{"errors": {"rate limit quota exceeded"}})
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	t.Setenv("VAULT_ADDR", srv.URL)
	return New(timeout), th, s
}

// At a rate limit quota the Vault client's default (2 retries) failed the
// pull while OCIKP_KMS_TIMEOUT had room for more (internal/cmd/simrollout).
func TestRateLimitRetriedUntilTimeout(t *testing.T) {
	b, th, s := startThrottled(t, 30*time.Second, 3)
	if _, err := b.Unwrap(s); err != nil {
		t.Fatalf("unwrap after 3 refused attempts: %v", err)
	}
	if th.calls != 4 {
		t.Errorf("%d attempts, want 4", th.calls)
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
	if th.calls < 2 {
		t.Errorf("%d attempts: not retried", th.calls)
	}
}

// The raised retries are for answers such as 429: an address that never
// answers still fails after the client's default 2 retries, not after the
// whole timeout.
func TestNoAnswerNotRetriedUntilTimeout(t *testing.T) {
	_, _, s := startThrottled(t, 30*time.Second, 0)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var mu sync.Mutex
	n := 0
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			n++
			mu.Unlock()
			c.Close()
		}
	}()
	t.Setenv("VAULT_ADDR", "http://"+l.Addr().String())
	b := New(30 * time.Second)
	_, err = b.Unwrap(s)
	if err == nil || !strings.Contains(err.Error(), "unreachable") {
		t.Fatalf("err = %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if n != 3 {
		t.Errorf("%d connections, want 3 attempts", n)
	}
}
