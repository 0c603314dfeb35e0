//go:build linux

package adversarial

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
)

// The attack: 200 UnWrapKey calls of (nearly) the largest message,
// each sending all but its last byte and then stalling, against a service
// run with --request-timeout 2s. Every stream ends soon after the request
// deadline (the deadline covers receiving), the memory they hold stays
// within the service's budget for unreceived requests, and a well-behaved
// client is served afterwards.
func TestStalledClientsAreBounded(t *testing.T) {
	const (
		streams       = 200
		concurrent    = 16
		maxMessage    = 1 << 20
		timeout       = 2 * time.Second
		endWithin     = timeout + 3*time.Second // the bound asserted on every stall
		giveUp        = timeout + 6*time.Second // then the test stops waiting
		defaultBudget = 2 * concurrent * (maxMessage + 32<<10)
	)
	ks, _, ann := newKeystore(t)
	e := env(t, ks)
	s := serve(t, ks, e, "--request-timeout", timeout.String(), "--idle-timeout", "5s",
		"--max-concurrent", fmt.Sprint(concurrent), "--metrics", "127.0.0.1:0")

	// A cheap call first, so that the baseline has the service warmed up.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	if _, msg, err := s.call(ctx, "unwrap", unwrapRequest(ann)); err != nil {
		t.Fatalf("before the stall: %s", msg)
	}
	cancel()
	before := proc(t, s.pid, "VmRSS")

	// What a connection costs by itself: idleConns connections that
	// finished the HTTP/2 handshake and sent nothing more.
	const idleConns = 200
	held := make([]net.Conn, 0, idleConns)
	for range idleConns {
		c, err := net.Dial("tcp", s.addr)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
		// The client preface and an empty SETTINGS frame.
		c.Write(append([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), 0, 0, 0, 4, 0, 0, 0, 0, 0))
	}
	time.Sleep(500 * time.Millisecond)
	withConns := proc(t, s.pid, "VmRSS")
	for _, c := range held {
		c.Close()
	}
	perConn := (withConns - before) / idleConns
	t.Logf("%d idle HTTP/2 connections: service RSS %d KiB before, %d KiB with them (%d KiB each)", idleConns, before, withConns, perConn)
	if perConn > 256 {
		t.Errorf("an idle connection costs the service %d KiB, more than 256 KiB", perConn)
	}
	time.Sleep(500 * time.Millisecond)
	before = proc(t, s.pid, "VmRSS")

	// Each stall is a gRPC message of nearly the largest size, sent but
	// for its last byte, over HTTP/2 without TLS (net/http opens as many
	// connections as the service's stream limit needs).
	var conns atomic.Int32
	tr := &http.Transport{
		Protocols: new(http.Protocols),
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			conns.Add(1)
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	}
	tr.Protocols.SetUnencryptedHTTP2(true)
	defer tr.CloseIdleConnections()
	stallCtx, stopStalls := context.WithTimeout(context.Background(), giveUp)
	defer stopStalls()

	type outcome struct {
		what string // "answered CODE", "reset CODE", "open", "error …"
		took time.Duration
	}
	outcomes := make([]outcome, streams)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range streams {
		// Staggered, so that the client learns each connection's stream
		// limit and packs its streams into few connections, as one
		// attacker would.
		time.Sleep(5 * time.Millisecond)
		wg.Add(1)
		go func() {
			defer wg.Done()
			began := time.Now()
			what := stall(stallCtx, tr, s.addr, maxMessage-64)
			outcomes[i] = outcome{what, time.Since(began)}
		}()
	}
	// Sample the service's RSS until every stall has ended.
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	peak := before
	tick := time.NewTicker(50 * time.Millisecond)
sampling:
	for {
		select {
		case <-done:
			break sampling
		case <-tick.C:
			peak = max(peak, proc(t, s.pid, "VmRSS"))
		}
	}
	tick.Stop()
	peak = max(peak, proc(t, s.pid, "VmHWM"))
	elapsed := time.Since(start)

	counts := map[string]int{}
	var late []string
	var slowest time.Duration
	for i, o := range outcomes {
		counts[o.what]++
		slowest = max(slowest, o.took)
		if o.took > endWithin || o.what == "open" {
			late = append(late, fmt.Sprintf("stream %d: %s after %v", i, o.what, o.took.Round(time.Millisecond)))
		}
	}
	var kinds []string
	for k, n := range counts {
		kinds = append(kinds, fmt.Sprintf("%d %s", n, k))
	}
	sort.Strings(kinds)
	growth := peak - before
	t.Logf("%d stalled UnWrapKey streams of %d bytes over %d connections, --request-timeout %v --max-concurrent %d", streams, maxMessage-64, conns.Load(), timeout, concurrent)
	t.Logf("outcomes: %s; the slowest ended after %v (all within %v)", strings.Join(kinds, ", "), slowest.Round(time.Millisecond), elapsed.Round(time.Millisecond))
	t.Logf("service RSS: %d KiB before, %d KiB peak during (+%d KiB; the default budget for unreceived requests is %d KiB)", before, peak, growth, defaultBudget>>10)
	if n := counts["answered OK"]; n > 0 {
		t.Errorf("%d stalled calls were answered OK", n)
	}
	if len(late) > 0 {
		t.Errorf("%d of %d stalled streams were not ended within %v of their start (request timeout %v); first: %s", len(late), streams, endWithin, timeout, late[0])
	}
	// The budget plus a margin for what is not a request (the stall's
	// HTTP/2 connections, runtime and allocator slack).
	if limit := defaultBudget>>10 + 48<<10; growth > limit {
		t.Errorf("the service's RSS grew by %d KiB during the stall, above the budget plus margin (%d KiB)", growth, limit)
	}
	if t.Failed() {
		return
	}

	// The service accounts for what it refused and reset, and holds no
	// reservation once the stalls are over.
	var m map[string]float64
	for range 50 {
		if m = metricValues(t, s.metrics); m["ocikp_pending_request_bytes"] == 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("metrics: pending %v bytes (budget %v), dropped for budget %v, for the receive deadline %v", m["ocikp_pending_request_bytes"], m["ocikp_pending_request_budget_bytes"],
		m[`ocikp_streams_dropped_total{reason="budget"}`], m[`ocikp_streams_dropped_total{reason="receive_deadline"}`])
	if m["ocikp_pending_request_bytes"] != 0 {
		t.Errorf("%v bytes still reserved after the stalls ended", m["ocikp_pending_request_bytes"])
	}
	if got, want := int(m[`ocikp_streams_dropped_total{reason="budget"}`]), counts["answered ResourceExhausted"]; got != want {
		t.Errorf("metrics count %d streams refused for the budget, clients saw %d", got, want)
	}
	if got, want := int(m[`ocikp_streams_dropped_total{reason="receive_deadline"}`]), counts["answered DeadlineExceeded"]; got != want || want == 0 {
		t.Errorf("metrics count %d streams ended by the receive deadline, clients saw %d", got, want)
	}

	// A well-behaved client is served.
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, msg, err := s.call(ctx, "unwrap", unwrapRequest(ann))
	if err != nil {
		t.Fatalf("after the stall: %s", msg)
	}
	var reply struct {
		R struct{ Optsdata []byte } `json:"keyunwrapresults"`
	}
	if json.Unmarshal(out, &reply) != nil || string(reply.R.Optsdata) != `{"symkey":"layer"}` {
		t.Fatalf("after the stall: reply %.100q", out)
	}
}

// stall sends one UnWrapKey call whose message (size bytes of protobuf
// field) lacks its last byte, and reports how the stream ended.
func stall(ctx context.Context, tr *http.Transport, addr string, size int) string {
	// The gRPC frame: compression flag, length, then field 1 (bytes).
	field := append([]byte{0x0a}, binary.AppendUvarint(nil, uint64(size))...)
	prefix := binary.BigEndian.AppendUint32([]byte{0}, uint32(len(field)+size))
	body := &stalledBody{head: append(prefix, field...), zeros: size - 1, closed: make(chan struct{})}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/keyprovider.KeyProviderService/UnWrapKey", body)
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("TE", "trailers")
	req.ContentLength = -1
	resp, err := tr.RoundTrip(req)
	if err != nil {
		if ctx.Err() != nil {
			return "open"
		}
		return streamError(err)
	}
	defer resp.Body.Close()
	_, err = io.Copy(io.Discard, resp.Body)
	grpcStatus := resp.Header.Get("Grpc-Status")
	if grpcStatus == "" {
		grpcStatus = resp.Trailer.Get("Grpc-Status")
	}
	switch {
	case grpcStatus != "":
		return "answered " + codeName(grpcStatus)
	case ctx.Err() != nil:
		return "open"
	case err != nil:
		return streamError(err)
	}
	return fmt.Sprintf("HTTP %d without a gRPC status", resp.StatusCode)
}

// stalledBody is head, then zeros zero bytes, then nothing until closed.
type stalledBody struct {
	head   []byte
	zeros  int
	once   sync.Once
	closed chan struct{}
}

func (b *stalledBody) Read(p []byte) (int, error) {
	if len(b.head) > 0 {
		n := copy(p, b.head)
		b.head = b.head[n:]
		return n, nil
	}
	if b.zeros > 0 {
		n := min(len(p), b.zeros)
		clear(p[:n])
		b.zeros -= n
		return n, nil
	}
	<-b.closed
	return 0, io.ErrClosedPipe
}

func (b *stalledBody) Close() error {
	b.once.Do(func() { close(b.closed) })
	return nil
}

var streamErrorCode = regexp.MustCompile(`stream error: stream ID \d+; (\w+)`)

// streamError names an HTTP/2 stream reset by its code.
func streamError(err error) string {
	if m := streamErrorCode.FindStringSubmatch(err.Error()); m != nil {
		return "reset " + m[1]
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || strings.Contains(err.Error(), "connection") {
		return "connection closed"
	}
	return "error " + err.Error()
}

// codeName is a grpc-status value as grpc-go's codes name it.
func codeName(v string) string {
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil {
		return "code " + v
	}
	return codes.Code(n).String()
}

// metricValues reads the service's metrics: name{labels} -> value.
func metricValues(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	out := map[string]float64{}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 2 && !strings.HasPrefix(line, "#") {
			var v float64
			fmt.Sscan(f[1], &v)
			out[f[0]] = v
		}
	}
	return out
}
