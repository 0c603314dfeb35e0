package server

import (
	"bytes"
	"net"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	kpconfig "github.com/containers/ocicrypt/config/keyprovider-config"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc/codes"
)

// h2 is a raw HTTP/2 client connection: it opens gRPC streams and sends
// no message on them, as a client that stalls.
type h2 struct {
	t        *testing.T
	c        net.Conn
	fr       *http2.Framer
	hbuf     bytes.Buffer
	enc      *hpack.Encoder
	next     uint32
	settings map[http2.SettingID]uint32
	ended    map[uint32]bool // streams that ends has reported
}

func dialH2(t *testing.T, addr string) *h2 {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	h := &h2{t: t, c: c, fr: http2.NewFramer(c, c), next: 1, settings: map[http2.SettingID]uint32{}, ended: map[uint32]bool{}}
	h.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	h.enc = hpack.NewEncoder(&h.hbuf)
	if _, err := c.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	if err := h.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	// The server's SETTINGS come first.
	f, err := h.fr.ReadFrame()
	if err != nil {
		t.Fatal(err)
	}
	sf, ok := f.(*http2.SettingsFrame)
	if !ok {
		t.Fatalf("first frame %T", f)
	}
	sf.ForeachSetting(func(s http2.Setting) error { h.settings[s.ID] = s.Val; return nil })
	h.fr.WriteSettingsAck()
	return h
}

// open starts an UnWrapKey stream and returns its id.
func (h *h2) open() uint32 {
	h.t.Helper()
	h.hbuf.Reset()
	for _, f := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":path", "/keyprovider.KeyProviderService/UnWrapKey"},
		{":authority", "ocikp"}, {"content-type", "application/grpc"}, {"te", "trailers"}} {
		h.enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	id := h.next
	h.next += 2
	if err := h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: h.hbuf.Bytes(), EndHeaders: true}); err != nil {
		h.t.Fatal(err)
	}
	return id
}

// ends reads frames until n more streams have ended and returns how each
// ended: "grpc CODE message" for a gRPC status, "reset CODE" for a reset.
func (h *h2) ends(n int) map[uint32]string {
	h.t.Helper()
	out := map[uint32]string{}
	end := func(id uint32, how string) {
		if !h.ended[id] {
			h.ended[id] = true
			out[id] = how
		}
	}
	for len(out) < n {
		f, err := h.fr.ReadFrame()
		if err != nil {
			h.t.Fatalf("after %v: %v", out, err)
		}
		switch f := f.(type) {
		case *http2.MetaHeadersFrame:
			if st := f.PseudoValue("status"); st != "" && f.Header().Flags&http2.FlagHeadersEndStream == 0 {
				continue // response headers; the status comes in trailers
			}
			code, msg := codes.Unknown, ""
			for _, hf := range f.Fields {
				switch hf.Name {
				case "grpc-status":
					n, _ := strconv.Atoi(hf.Value)
					code = codes.Code(n)
				case "grpc-message":
					msg, _ = url.PathUnescape(hf.Value)
				}
			}
			end(f.StreamID, "grpc "+code.String()+" "+msg)
		case *http2.RSTStreamFrame:
			end(f.StreamID, "reset "+f.ErrCode.String())
		case *http2.PingFrame:
			if !f.IsAck() {
				h.fr.WritePing(true, f.Data)
			}
		case *http2.GoAwayFrame:
			h.t.Fatalf("GOAWAY %v after %v", f.ErrCode, out)
		}
	}
	return out
}

// One connection may hold --max-concurrent streams: the service says so in
// its SETTINGS and refuses a stream beyond that.
func TestStreamsPerConnection(t *testing.T) {
	f := newFixture(t)
	const limit = 3
	addr, _, _ := f.start(Config{Listen: "127.0.0.1:0", MaxConcurrent: limit, RequestTimeout: time.Second})
	h := dialH2(t, addr)
	if got := h.settings[http2.SettingMaxConcurrentStreams]; got != limit {
		t.Errorf("SETTINGS_MAX_CONCURRENT_STREAMS %d, want %d (--max-concurrent)", got, limit)
	}
	for range limit + 1 {
		h.open()
	}
	over := uint32(2*limit + 1) // the id of the last stream
	ends := h.ends(1)
	if ends[over] != "reset REFUSED_STREAM" {
		t.Fatalf("stream %d beyond the limit: %v", over, ends)
	}
}

// The pending budget holds two streams here: a third is refused with
// RESOURCE_EXHAUSTED before it sends a byte, and the two stalled ones are
// answered DEADLINE_EXCEEDED at the request deadline, counted from their
// headers; their shares return to the budget, and a new stream is let in.
func TestPendingBudgetAndReceiveDeadline(t *testing.T) {
	f := newFixture(t)
	const timeout = 500 * time.Millisecond
	maxMessage := 64 << 10
	cost := int64(maxMessage + streamOverhead)
	addr, s, _ := f.start(Config{Listen: "127.0.0.1:0", MaxMessage: maxMessage, MaxPending: 2 * cost, RequestTimeout: timeout})
	h := dialH2(t, addr)
	start := time.Now()
	a, b, c := h.open(), h.open(), h.open()
	ends := h.ends(1)
	if got := ends[c]; !strings.HasPrefix(got, "grpc ResourceExhausted ") || !strings.Contains(got, "--max-pending-bytes") {
		t.Fatalf("the stream over the budget: %v", ends)
	}
	if used := s.pending.used.Load(); used != 2*cost {
		t.Errorf("%d bytes reserved by two streams, want %d", used, 2*cost)
	}
	ends = h.ends(2)
	took := time.Since(start)
	for _, id := range []uint32{a, b} {
		if !strings.HasPrefix(ends[id], "grpc DeadlineExceeded") {
			t.Errorf("stalled stream %d: %q", id, ends[id])
		}
	}
	if took < timeout || took > timeout+2*time.Second {
		t.Errorf("stalled streams ended after %v (request timeout %v)", took, timeout)
	}
	deadline := time.Now().Add(5 * time.Second)
	for s.pending.used.Load() != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if used := s.pending.used.Load(); used != 0 {
		t.Fatalf("%d bytes still reserved after the streams ended", used)
	}
	// The budget is free again: a new stream is admitted (and, stalled,
	// ends at its own deadline).
	d := h.open()
	if ends = h.ends(1); !strings.HasPrefix(ends[d], "grpc DeadlineExceeded") {
		t.Errorf("a stream after the budget was freed: %v", ends)
	}
	// A normal call after all that: its reservation is back to zero once it
	// ends.
	if err := f.roundTrip(kpconfig.KeyProviderAttrs{Grpc: addr}); err != nil {
		t.Fatal(err)
	}
	for s.pending.used.Load() != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if used := s.pending.used.Load(); used != 0 {
		t.Errorf("%d bytes still reserved after a round trip", used)
	}
}

func TestPendingBudgetSmallerThanARequest(t *testing.T) {
	f := newFixture(t)
	_, err := New(Config{Listen: "127.0.0.1:0", MaxMessage: 1 << 20, MaxPending: 1 << 20, Provider: f.provider})
	if err == nil || !strings.Contains(err.Error(), "--max-pending-bytes") {
		t.Fatalf("a budget smaller than one request: %v", err)
	}
}

// A client that stops answering (gone, or its network) is found by the
// service's pings: its connection is closed, and a stream it left open
// gives its share of the budget back long before the request deadline.
func TestKeepaliveReapsADeadClient(t *testing.T) {
	defer func(d, o time.Duration) { keepaliveTime, keepaliveTimeout = d, o }(keepaliveTime, keepaliveTimeout)
	keepaliveTime, keepaliveTimeout = 300*time.Millisecond, 300*time.Millisecond
	f := newFixture(t)
	addr, s, _ := f.start(Config{Listen: "127.0.0.1:0", RequestTimeout: time.Minute, IdleTimeout: time.Minute})
	h := dialH2(t, addr)
	h.open()
	start := time.Now()
	pings := 0
	for {
		fr, err := h.fr.ReadFrame() // pings are never answered
		if err != nil {
			break
		}
		if p, ok := fr.(*http2.PingFrame); ok && !p.IsAck() {
			pings++
		}
	}
	took := time.Since(start)
	if pings == 0 || took > 5*time.Second {
		t.Fatalf("connection closed after %v and %d pings", took, pings)
	}
	for s.pending.used.Load() != 0 && time.Since(start) < 5*time.Second {
		time.Sleep(10 * time.Millisecond)
	}
	if used := s.pending.used.Load(); used != 0 {
		t.Fatalf("%d bytes still reserved after the dead client's connection was closed", used)
	}
	t.Logf("a client that stopped answering: closed after %v (%d ping(s))", took.Round(10*time.Millisecond), pings)
}
