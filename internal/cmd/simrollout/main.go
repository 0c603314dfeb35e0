// Command simrollout simulates a rollout at cluster scale: N nodes start
// pulling the same M-layer image at once, each layer one KMS unwrap, against
// one fake KMS that enforces a request quota and refuses past it as the
// cloud does (Cloud KMS RESOURCE_EXHAUSTED, AWS KMS ThrottlingException,
// Vault 429). It prints what happened at the quota: refusals, retries and
// their spread, pulls that failed and with what message, and the rollout's
// length.
//
// Each node is an in-process backend (keys/gcpkms, keys/awskms, keys/vault)
// with its own SDK client, so its own retry state, exactly the code a node's
// KMS plugin runs; hundreds of real ocikp-serve processes with their plugin
// processes would measure the two cores of this machine instead of the
// retry policy. A node unwraps its layers one after another, as containerd
// applies an image's layers in order.
//
//	go run ./internal/cmd/simrollout -cloud all -nodes 200 -layers 5 -quota 100
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/kms/apiv1/kmspb"
	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ocikp/ocikp/envelope"
	"github.com/ocikp/ocikp/internal/safetext"
	"github.com/ocikp/ocikp/internal/testkms"
	"github.com/ocikp/ocikp/keys/awskms"
	"github.com/ocikp/ocikp/keys/gcpkms"
	"github.com/ocikp/ocikp/keys/vault"
)

// Config is one simulated rollout.
type Config struct {
	Cloud   string        // gcp, aws or vault
	Nodes   int           // nodes pulling at once
	Layers  int           // KMS-wrapped layers per image
	Quota   float64       // requests per second the fake KMS accepts
	Burst   int           // requests it accepts at once (a second's worth when 0)
	Latency time.Duration // the fake's answer time for an accepted request
	Timeout time.Duration // OCIKP_KMS_TIMEOUT: per unwrap, retries included
}

// Report is what a rollout measured.
type Report struct {
	Config
	Requests, Refused int
	PullsOK, Failed   int
	Attempts          map[int]int     // attempts a layer took → layers
	RetryGaps         []time.Duration // refusal → the same node's next request, sorted
	PeakRetries       int             // most retries (requests after a refusal) in any 100 ms
	Duration          time.Duration   // first request to the last node done
	Errors            map[string]int  // first line of each failed pull's error → pulls
}

type event struct {
	node int
	at   time.Time
	ok   bool
}

// quota is the fake's front door: one limiter for all nodes, and a record
// of every request by node.
type quota struct {
	cfg     Config
	mu      sync.Mutex
	open    bool // setup: no quota, no record
	lim     *rate.Limiter
	events  []event
	latency time.Duration
}

// admit records a request from node and says whether the quota lets it in.
func (q *quota) admit(node int) bool {
	q.mu.Lock()
	if q.open {
		q.mu.Unlock()
		return true
	}
	ok := q.lim.Allow()
	q.events = append(q.events, event{node, time.Now(), ok})
	q.mu.Unlock()
	if ok && q.latency > 0 {
		time.Sleep(q.latency)
	}
	return ok
}

var nodeName = regexp.MustCompile(`node-[0-9]+`)

func nodeOf(name string) int {
	i := strings.LastIndex(name, "node-")
	if i < 0 {
		return -1
	}
	n, err := strconv.Atoi(name[i+len("node-"):])
	if err != nil {
		return -1
	}
	return n
}

// unwrapper is a node's backend.
type unwrapper interface {
	Wrap(url string, fileKey []byte) (*envelope.Stanza, error)
	Unwrap(s *envelope.Stanza) ([]byte, error)
}

// front starts the cloud's fake behind the quota and returns, per node, a
// backend and the key URL it unwraps with. Each node has its own key name,
// so the fake can tell nodes apart; the quota is shared, as a project's,
// account's or cluster's is.
func front(tb testing.TB, q *quota) (func(node int) (unwrapper, string), error) {
	c := q.cfg
	switch c.Cloud {
	case "gcp":
		names := make([]string, c.Nodes)
		for i := range names {
			names[i] = fmt.Sprintf("projects/p/locations/global/keyRings/r/cryptoKeys/node-%d", i)
		}
		fake, err := testkms.NewGCP(names...)
		if err != nil {
			return nil, err
		}
		tb.Cleanup(fake.Close)
		srv := grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			n, _ := req.(interface{ GetName() string })
			if n == nil || !q.admit(nodeOf(n.GetName())) {
				// As Cloud KMS words it past its per-minute quota.
				return nil, status.Error(codes.ResourceExhausted, "Quota exceeded for quota metric 'Cryptographic requests' and limit 'Cryptographic requests per minute' of service 'cloudkms.googleapis.com'")
			}
			return h(ctx, req)
		}))
		kmspb.RegisterKeyManagementServiceServer(srv, fake)
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		go srv.Serve(l)
		tb.Cleanup(srv.Stop)
		return func(node int) (unwrapper, string) {
			b := gcpkms.New(gcpkms.Options{Endpoint: l.Addr().String(), Insecure: true, Timeout: c.Timeout})
			tb.Cleanup(func() { b.Close() })
			return b, "gcpkms://" + names[node]
		}, nil
	case "aws":
		aliases := map[string]string{}
		for i := range c.Nodes {
			aliases[fmt.Sprintf("alias/node-%d", i)] = "layers"
		}
		fake := testkms.StartAWS(tb, []string{"layers"}, aliases)
		target, _ := url.Parse(fake.URL)
		proxy := httputil.NewSingleHostReverseProxy(target)
		srv := httpFront(tb, func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<16))
			r.Body = io.NopCloser(bytes.NewReader(body))
			var req struct{ KeyId string }
			json.Unmarshal(body, &req)
			if !q.admit(nodeOf(req.KeyId)) {
				// AWS KMS: HTTP 400 with the ThrottlingException type.
				w.Header().Set("Content-Type", "application/x-amz-json-1.1")
				w.Header().Set("X-Amzn-ErrorType", "ThrottlingException")
				w.WriteHeader(400)
				json.NewEncoder(w).Encode(map[string]string{"__type": "ThrottlingException", "message": "Rate exceeded"})
				return
			}
			proxy.ServeHTTP(w, r)
		})
		for k, v := range map[string]string{"AWS_ENDPOINT_URL_KMS": srv, "AWS_ACCESS_KEY_ID": "AKIDSIM", "AWS_SECRET_ACCESS_KEY": "sim",
			"AWS_REGION": "us-east-1", "AWS_CONFIG_FILE": os.DevNull, "AWS_SHARED_CREDENTIALS_FILE": os.DevNull, "AWS_EC2_METADATA_DISABLED": "true"} {
			tb.Setenv(k, v)
		}
		return func(node int) (unwrapper, string) {
			return awskms.New(c.Timeout), fmt.Sprintf("awskms:///alias/node-%d", node)
		}, nil
	case "vault":
		keys := make([]string, c.Nodes)
		for i := range keys {
			keys[i] = fmt.Sprintf("transit/node-%d", i)
		}
		fake := testkms.StartVault(tb, "sim-token", keys...)
		target, _ := url.Parse(fake.URL)
		proxy := httputil.NewSingleHostReverseProxy(target)
		srv := httpFront(tb, func(w http.ResponseWriter, r *http.Request) {
			if !q.admit(nodeOf(r.URL.Path)) {
				// Vault's rate limit quota: 429, no Retry-After unless
				// the quota enables its response headers.
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusTooManyRequests)
				json.NewEncoder(w).Encode(map[string][]string{"errors": {"request path \"" + r.URL.Path + "\": rate limit quota exceeded"}})
				return
			}
			proxy.ServeHTTP(w, r)
		})
		tb.Setenv("VAULT_ADDR", srv)
		tb.Setenv("VAULT_TOKEN", "sim-token")
		return func(node int) (unwrapper, string) {
			return vault.New(c.Timeout), fmt.Sprintf("hashivault://node-%d", node)
		}, nil
	}
	return nil, fmt.Errorf("unknown cloud %q (gcp, aws, vault)", c.Cloud)
}

func httpFront(tb testing.TB, h http.HandlerFunc) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(l)
	tb.Cleanup(func() { srv.Close() })
	return "http://" + l.Addr().String()
}

// Run simulates one rollout.
func Run(tb testing.TB, c Config) (*Report, error) {
	if c.Burst <= 0 {
		c.Burst = max(1, int(c.Quota))
	}
	if c.Nodes < 1 || c.Layers < 1 || c.Quota <= 0 || c.Timeout <= 0 {
		return nil, errors.New("nodes, layers, quota and timeout must be positive")
	}
	q := &quota{cfg: c, open: true, lim: rate.NewLimiter(rate.Limit(c.Quota), c.Burst), latency: c.Latency}
	mk, err := front(tb, q)
	if err != nil {
		return nil, err
	}
	// Set-up, outside the quota: each node's backend, and the image's
	// layers wrapped for it.
	backends := make([]unwrapper, c.Nodes)
	stanzas := make([][]*envelope.Stanza, c.Nodes)
	for n := range c.Nodes {
		b, u := mk(n)
		backends[n] = b
		for range c.Layers {
			s, err := b.Wrap(u, bytes.Repeat([]byte{byte(n)}, 32))
			if err != nil {
				return nil, fmt.Errorf("set-up: wrap for node %d: %w", n, err)
			}
			stanzas[n] = append(stanzas[n], s)
		}
	}
	q.mu.Lock()
	q.open = false
	q.lim = rate.NewLimiter(rate.Limit(c.Quota), c.Burst) // full at the start
	q.mu.Unlock()

	errs := make([]error, c.Nodes)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for n := range c.Nodes {
		wg.Go(func() {
			<-start
			for _, s := range stanzas[n] {
				if _, err := backends[n].Unwrap(s); err != nil {
					errs[n] = err // the pull fails at its first failed layer
					return
				}
			}
		})
	}
	t0 := time.Now()
	close(start)
	wg.Wait()
	r := &Report{Config: c, Duration: time.Since(t0), Attempts: map[int]int{}, Errors: map[string]int{}}
	for _, err := range errs {
		if err == nil {
			r.PullsOK++
			continue
		}
		r.Failed++
		line, _, _ := strings.Cut(err.Error(), "\n")
		r.Errors[nodeName.ReplaceAllString(safetext.Clean(line), "node-N")]++
	}
	q.mu.Lock()
	events := q.events
	q.mu.Unlock()
	analyse(r, events)
	return r, nil
}

// analyse derives attempts per layer, the gaps between a refusal and the
// node's next request, and the busiest 100 ms of retries (a herd: many
// refused nodes coming back at once), from the fake's record. A
// node has one request outstanding at a time, so its requests are a
// sequence: refusals then an answer, layer after layer.
func analyse(r *Report, events []event) {
	r.Requests = len(events)
	byNode := map[int][]event{}
	for _, e := range events {
		if !e.ok {
			r.Refused++
		}
		byNode[e.node] = append(byNode[e.node], e)
	}
	var retries []time.Time
	for _, es := range byNode {
		tries := 0
		for i, e := range es {
			tries++
			if !e.ok && i+1 < len(es) {
				r.RetryGaps = append(r.RetryGaps, es[i+1].at.Sub(e.at))
				retries = append(retries, es[i+1].at)
			}
			if e.ok {
				r.Attempts[tries]++
				tries = 0
			}
		}
		if tries > 0 { // a layer that never got an answer
			r.Attempts[-tries]++
		}
	}
	slices.Sort(r.RetryGaps)
	slices.SortFunc(retries, func(a, b time.Time) int { return a.Compare(b) })
	for i, j := 0, 0; i < len(retries); i++ {
		for retries[i].Sub(retries[j]) >= 100*time.Millisecond {
			j++
		}
		r.PeakRetries = max(r.PeakRetries, i-j+1)
	}
}

// Quantile returns the q-quantile of sorted durations (0 if none).
func Quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	return d[int(q*float64(len(d)-1))]
}

// Print writes the report.
func (r *Report) Print(w io.Writer) {
	fmt.Fprintf(w, "%s: %d nodes x %d layers, quota %.0f/s (burst %d), KMS latency %v, OCIKP_KMS_TIMEOUT %v\n",
		r.Cloud, r.Nodes, r.Layers, r.Quota, r.Burst, r.Latency, r.Timeout)
	fmt.Fprintf(w, "  pulls: %d ok, %d failed; rollout %.1fs (at the quota, %d unwraps need at least %.1fs)\n",
		r.PullsOK, r.Failed, r.Duration.Seconds(), r.Nodes*r.Layers, float64(r.Nodes*r.Layers-r.Burst)/r.Quota)
	fmt.Fprintf(w, "  KMS requests: %d, refused %d\n", r.Requests, r.Refused)
	var keys []int
	for k := range r.Attempts {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var parts []string
	for _, k := range keys {
		if k < 0 {
			parts = append(parts, fmt.Sprintf("gave up after %d: %d", -k, r.Attempts[k]))
		} else {
			parts = append(parts, fmt.Sprintf("%d: %d", k, r.Attempts[k]))
		}
	}
	fmt.Fprintf(w, "  attempts per layer (attempts: layers): %s\n", strings.Join(parts, ", "))
	g := r.RetryGaps
	fmt.Fprintf(w, "  retry after a refusal: n=%d min %v p10 %v p50 %v p90 %v max %v\n", len(g),
		Quantile(g, 0).Round(time.Millisecond), Quantile(g, 0.1).Round(time.Millisecond), Quantile(g, 0.5).Round(time.Millisecond),
		Quantile(g, 0.9).Round(time.Millisecond), Quantile(g, 1).Round(time.Millisecond))
	fmt.Fprintf(w, "  busiest 100 ms of retries: %d of %d retries (the quota admits %.0f requests per 100 ms)\n", r.PeakRetries, len(g), r.Quota/10)
	for _, msg := range slices.Sorted(maps.Keys(r.Errors)) {
		fmt.Fprintf(w, "  %d pulls failed: %s\n", r.Errors[msg], msg)
	}
}

// standalone lets the testkms fakes run outside a test.
type standalone struct {
	testing.TB
	cleanups []func()
}

func (s *standalone) Helper()                   {}
func (s *standalone) Cleanup(f func())          { s.cleanups = append(s.cleanups, f) }
func (s *standalone) Setenv(k, v string)        { os.Setenv(k, v) }
func (s *standalone) Fatal(args ...any)         { fail(fmt.Sprint(args...)) }
func (s *standalone) Fatalf(f string, a ...any) { fail(fmt.Sprintf(f, a...)) }
func (s *standalone) done() {
	for i := len(s.cleanups) - 1; i >= 0; i-- {
		s.cleanups[i]()
	}
	s.cleanups = nil
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, "simrollout: error:", msg)
	os.Exit(1)
}

func main() {
	var c Config
	cloud := flag.String("cloud", "all", "gcp, aws, vault or all")
	flag.IntVar(&c.Nodes, "nodes", 200, "nodes pulling at once")
	flag.IntVar(&c.Layers, "layers", 5, "KMS-wrapped layers per image")
	flag.Float64Var(&c.Quota, "quota", 100, "KMS requests per second the fake accepts")
	flag.IntVar(&c.Burst, "burst", 0, "requests accepted at once (default: one second's worth)")
	flag.DurationVar(&c.Latency, "latency", 20*time.Millisecond, "the fake's answer time")
	flag.DurationVar(&c.Timeout, "timeout", 30*time.Second, "OCIKP_KMS_TIMEOUT")
	flag.Parse()
	clouds := []string{*cloud}
	if *cloud == "all" {
		clouds = []string{"gcp", "aws", "vault"}
	}
	for _, cl := range clouds {
		c.Cloud = cl
		s := &standalone{}
		r, err := Run(s, c)
		s.done()
		if err != nil {
			fail(err.Error())
		}
		r.Print(os.Stdout)
	}
}
