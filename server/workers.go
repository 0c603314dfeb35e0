package server

import (
	"context"
	"time"

	"github.com/ocikp/ocikp/protocol"
)

// A call's work runs on a goroutine of its own, so that a backend that
// does not return (a hung device, a KMS that never answers) keeps only
// that goroutine and the call is answered at its deadline. The goroutines
// are kept between calls: a fresh one starts on a small stack and grows
// it (copying) during every unwrap's cryptography, which measured 5-6% of
// the service's CPU per unwrap (docs/performance.md). Workers are bounded
// by the concurrency slots the calls hold, and leave when idle.

// workerIdle is how long an idle worker waits for work before it ends.
const workerIdle = 30 * time.Second

type job struct {
	ctx context.Context
	req *protocol.Request
	rc  chan<- result
}

type result struct {
	reply   []byte
	backend string
	err     error
}

// dispatch gives j to an idle worker, or starts one. The caller holds a
// concurrency slot, which the work releases when it really ends.
func (s *Server) dispatch(j job) {
	select {
	case s.jobs <- j:
	default:
		s.workersStarted.Add(1)
		go s.worker(j)
	}
}

func (s *Server) worker(j job) {
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	for {
		s.work(j)
		idle.Reset(workerIdle)
		select {
		case j = <-s.jobs:
		case <-idle.C:
			return
		}
	}
}

func (s *Server) work(j job) {
	defer func() { s.m.inFlight.Dec(); <-s.sem }()
	reply, backend, err := s.cfg.Provider.HandleContext(j.ctx, j.req)
	j.rc <- result{reply, backend, err}
}
