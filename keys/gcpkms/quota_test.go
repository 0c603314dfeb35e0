package gcpkms

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/kms/apiv1/kmspb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ocikp/ocikp/internal/testkms"
)

// throttled serves the fake KMS behind an interceptor that answers
// RESOURCE_EXHAUSTED, as Cloud KMS does past a quota, to the first reject
// calls (all calls when reject < 0), and records when each call arrived.
type throttled struct {
	mu     sync.Mutex
	reject int
	times  []time.Time
}

func startThrottled(t *testing.T, reject int) (*throttled, string) {
	fake, err := testkms.NewGCP(keyName)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fake.Close)
	th := &throttled{reject: reject}
	srv := grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		th.mu.Lock()
		th.times = append(th.times, time.Now())
		n := len(th.times)
		th.mu.Unlock()
		if th.reject < 0 || n <= th.reject {
			return nil, status.Error(codes.ResourceExhausted, "Quota exceeded for quota metric 'Cryptographic requests' and limit 'Cryptographic requests per minute'")
		}
		return h(ctx, req)
	}))
	kmspb.RegisterKeyManagementServiceServer(srv, fake)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(srv.Stop)
	return th, l.Addr().String()
}

func (th *throttled) calls() []time.Time {
	th.mu.Lock()
	defer th.mu.Unlock()
	return append([]time.Time(nil), th.times...)
}

func quotaBackend(t *testing.T, addr string, timeout time.Duration) *Backend {
	b := New(Options{Endpoint: addr, Insecure: true, Timeout: timeout})
	t.Cleanup(func() { b.Close() })
	return b
}

// At a quota, Cloud KMS answers RESOURCE_EXHAUSTED and asks clients to
// retry with exponential back-off; the client library's defaults retry
// only UNAVAILABLE and DEADLINE_EXCEEDED, so a node pulling at the quota
// failed on the first refusal.
func TestResourceExhaustedRetried(t *testing.T) {
	th, addr := startThrottled(t, 2)
	b := quotaBackend(t, addr, 30*time.Second)
	s, err := b.Wrap(keyURL, []byte("0123456789abcdef0123456789abcdef"))
	if err != nil {
		t.Fatalf("wrap at the quota: %v", err)
	}
	if n := len(th.calls()); n != 3 {
		t.Errorf("wrap: %d calls, want 3 (2 refused, then the answer)", n)
	}
	th.mu.Lock()
	th.times, th.reject = nil, 1
	th.mu.Unlock()
	if _, err := b.Unwrap(s); err != nil {
		t.Fatalf("unwrap at the quota: %v", err)
	}
	calls := th.calls()
	if len(calls) != 2 {
		t.Fatalf("unwrap: %d calls, want 2", len(calls))
	}
	t.Logf("retry after %v", calls[1].Sub(calls[0]))
}

// Past the quota for longer than OCIKP_KMS_TIMEOUT: the call ends within
// the timeout after a few spaced attempts (not a tight loop), with the
// quota message.
func TestResourceExhaustedBounded(t *testing.T) {
	th, addr := startThrottled(t, -1)
	b := quotaBackend(t, addr, 3*time.Second)
	_, err := b.Wrap(keyURL, []byte("0123456789abcdef0123456789abcdef"))
	if err == nil || !strings.Contains(err.Error(), "quota exceeded or throttled") {
		t.Fatalf("err = %v, want the quota message", err)
	}
	n := len(th.calls())
	if n < 2 || n > 12 {
		t.Errorf("%d attempts in 3s, want a few spaced retries", n)
	}
}
