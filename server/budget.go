package server

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"
)

// streamOverhead is what a stream costs besides its message: the gRPC and
// protobuf framing, its headers (at most maxHeaderList), the transport's
// stream state and the handler's goroutine.
const (
	streamOverhead = 32 << 10
	maxHeaderList  = 16 << 10
)

// errBudget is the status of a stream refused for the budget: the client
// may retry, and the service's operator may raise --max-pending-bytes.
var errBudget = status.Error(codes.ResourceExhausted,
	"ocikp: error: the service is already receiving as many requests as its memory budget allows (--max-pending-bytes); try again shortly")

// budget is the service-wide allowance of bytes for requests that are being
// received or wait to be served. grpc-go buffers a stream's message in
// memory (up to the largest message) while its handler reads it, before
// any handler code runs, so a stream reserves the largest message when
// its headers arrive and keeps only what its message really took once
// received.
type budget struct {
	limit int64
	used  atomic.Int64
}

func (b *budget) take(n int64) bool {
	for {
		u := b.used.Load()
		if u+n > b.limit {
			return false
		}
		if b.used.CompareAndSwap(u, u+n) {
			return true
		}
	}
}

// reservation is one stream's share of the budget.
type reservation struct {
	b        *budget
	mu       sync.Mutex
	held     int64
	received bool
}

// shrink keeps n bytes (the message received and the stream's overhead).
func (r *reservation) shrink(n int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.received = true
	if n < r.held {
		r.b.used.Add(n - r.held)
		r.held = n
	}
}

// release gives everything back and says whether the message had been
// received.
func (r *reservation) release() (received bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.b.used.Add(-r.held)
	r.held = 0
	return r.received
}

type reservationKey struct{}

// admit is the service's tap handle: grpc-go runs it in a connection's
// reader when a stream's headers arrive, before any byte of its message is
// read, holding the transport's lock; so it never waits. It reserves the
// stream's share of the budget or refuses the stream, and gives the stream
// its deadline, which thus covers receiving the message: the handler's
// read ends with the deadline and the stream is answered
// DEADLINE_EXCEEDED and reset. The share returns to the budget when the
// stream's context ends, which grpc-go does for every stream that ends
// (answered, reset by either side, or its connection closed).
func (s *Server) admit(ctx context.Context, _ *tap.Info) (context.Context, error) {
	cost := int64(s.cfg.MaxMessage) + streamOverhead
	if !s.pending.take(cost) {
		s.m.dropped.WithLabelValues("budget").Inc()
		return nil, errBudget
	}
	r := &reservation{b: s.pending, held: cost}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
	context.AfterFunc(ctx, func() {
		if !r.release() && errors.Is(ctx.Err(), context.DeadlineExceeded) {
			s.m.dropped.WithLabelValues("receive_deadline").Inc()
		}
		cancel()
	})
	return context.WithValue(ctx, reservationKey{}, r), nil
}

// received shrinks the stream's reservation to what its message took.
func received(ctx context.Context, n int) {
	if r, ok := ctx.Value(reservationKey{}).(*reservation); ok {
		r.shrink(int64(n) + streamOverhead)
	}
}
