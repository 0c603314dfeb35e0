// Command grpcload load-tests an ocikp serve service on loopback or a unix
// socket and compares it, in the same run, with the transport floor
// (internal/cmd/grpcfloor: the same gRPC service, TLS and transport doing
// one P-256 ECDH per call and nothing else), with one P-256 ECDH measured
// here, and with the exec path. scripts/load-serve.sh builds, starts and
// runs everything. It is bounded (-duration, -max-requests) and dials only
// the addresses it is given, which must be loopback or unix sockets.
//
//	grpcload -addr 127.0.0.1:7443 -tls-ca ca.pem -recipient R -pid PID \
//	  [-floor-addr ADDR -floor-pid PID] [-clients 1,8,64] [-duration 5s] [-rounds 3] [-json]
//
// Service CPU is read from /proc for -pid and -floor-pid, so the load
// generator's own CPU (it shares the machine) is not counted. With a floor,
// each round loads the service, then the floor, so that both see the same
// machine state; medians of the rounds are reported.
//
// With -json, each measurement is one JSON object per line:
//
//	{"kind":"run","target":"ocikp"|"floor","transport":T,"clients":N,"round":R,"calls":…,"errors":…,
//	 "seconds":…,"per_second":…,"p50_ms":…,"p99_ms":…,"cpu_us_per_call":…,"gen_cpu_us_per_call":…,"rss_kib":…}
//	{"kind":"summary","transport":T,"clients":N,"rounds":R,"ocikp_cpu_us":…,"floor_cpu_us":…,"ecdh_us":…,
//	 "ocikp_per_ecdh":…,"floor_per_ecdh":…,"ocikp_per_floor":…,"ocikp_per_second":…,"floor_per_second":…}
package main

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	kpb "github.com/containers/ocicrypt/utils/keyprovider"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

type options struct {
	addr, floorAddr string
	pid, floorPid   int
	caFile          string
	recipient       string
	clients         []int
	duration        time.Duration
	rounds          int
	maxReq          int64
	ocikp, keystore string
	transport       string
	json            bool
}

func main() {
	var o options
	flag.StringVar(&o.addr, "addr", "", "service address (loopback host:port or unix:///path)")
	flag.IntVar(&o.pid, "pid", 0, "service process, for its CPU time and RSS")
	flag.StringVar(&o.floorAddr, "floor-addr", "", "grpcfloor's address, loaded alternately with the service")
	flag.IntVar(&o.floorPid, "floor-pid", 0, "grpcfloor's process")
	flag.StringVar(&o.caFile, "tls-ca", "", "CA of the services' certificates (TLS); plaintext without")
	flag.StringVar(&o.recipient, "recipient", "", "recipient to wrap for (a key in the service's keystore)")
	clients := flag.String("clients", "64", "concurrent clients, each with its own connection; a comma-separated list runs each in turn")
	flag.DurationVar(&o.duration, "duration", 60*time.Second, "how long each measurement loads")
	flag.IntVar(&o.rounds, "rounds", 1, "measurements of each target per client count (alternating with the floor)")
	flag.Int64Var(&o.maxReq, "max-requests", 50_000_000, "stop a measurement after this many requests")
	flag.StringVar(&o.ocikp, "ocikp", "", "ocikp binary, to measure the exec path's throughput in the same run")
	flag.StringVar(&o.keystore, "keystore", "", "keystore for the exec path")
	flag.StringVar(&o.transport, "transport", "", "label of the transport in the output (tls, unix; default from -addr and -tls-ca)")
	flag.BoolVar(&o.json, "json", false, "print one JSON object per measurement and per summary")
	flag.Parse()
	for _, c := range strings.Split(*clients, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(c))
		if err != nil || n < 1 || n > 4096 {
			fmt.Fprintln(os.Stderr, "grpcload: -clients: want numbers from 1 to 4096, comma-separated")
			os.Exit(2)
		}
		o.clients = append(o.clients, n)
	}
	if o.rounds < 1 {
		o.rounds = 1
	}
	if o.transport == "" {
		switch {
		case strings.HasPrefix(o.addr, "unix://"):
			o.transport = "unix"
		case o.caFile != "":
			o.transport = "tls"
		default:
			o.transport = "tcp"
		}
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "grpcload:", err)
		os.Exit(1)
	}
}

func dial(addr, caFile string) (*grpc.ClientConn, error) {
	if host, _, err := net.SplitHostPort(addr); err == nil {
		if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
			return nil, errors.New("grpcload only loads loopback addresses")
		}
	} else if !strings.HasPrefix(addr, "unix://") {
		return nil, err
	}
	creds := insecure.NewCredentials()
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pem)
		creds = credentials.NewTLS(&tls.Config{RootCAs: pool})
	}
	return grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
}

func b64(s []byte) string { return base64.StdEncoding.EncodeToString(s) }

// unwrapRequest wraps a 200-byte optsdata for recipient through the service
// and returns the unwrap request of its annotation.
func unwrapRequest(addr, caFile, recipient string) ([]byte, error) {
	conn, err := dial(addr, caFile)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	wrapReq, _ := json.Marshal(map[string]any{"op": "keywrap", "keywrapparams": map[string]any{
		"ec": map[string]any{"Parameters": map[string][]string{"ocikp": {b64([]byte(recipient))}}}, "optsdata": b64(bytes.Repeat([]byte("o"), 200))}})
	out, err := kpb.NewKeyProviderServiceClient(conn).WrapKey(context.Background(), &kpb.KeyProviderKeyWrapProtocolInput{KeyProviderKeyWrapProtocolInput: wrapReq})
	if err != nil {
		return nil, fmt.Errorf("wrap: %w", err)
	}
	var reply struct {
		R struct{ Annotation []byte } `json:"keywrapresults"`
	}
	if err := json.Unmarshal(out.KeyProviderKeyWrapProtocolOutput, &reply); err != nil {
		return nil, fmt.Errorf("wrap reply: %w", err)
	}
	return json.Marshal(map[string]any{"op": "keyunwrap", "keyunwrapparams": map[string]any{
		"dc": map[string]any{"Parameters": map[string]any{}}, "annotation": reply.R.Annotation}})
}

// result is one measurement of one target.
type result struct {
	Kind      string  `json:"kind"`
	Target    string  `json:"target"`
	Transport string  `json:"transport"`
	Clients   int     `json:"clients"`
	Round     int     `json:"round"`
	Calls     int     `json:"calls"`
	Errors    int64   `json:"errors"`
	Seconds   float64 `json:"seconds"`
	Rate      float64 `json:"per_second"`
	P50       float64 `json:"p50_ms"`
	P99       float64 `json:"p99_ms"`
	CPU       float64 `json:"cpu_us_per_call"`
	GenCPU    float64 `json:"gen_cpu_us_per_call"`
	RSS       int     `json:"rss_kib"`
	rssBefore int
	firstErr  string
}

// load runs clients concurrent clients against addr for d (or maxReq
// calls), each on its own connection, connected and warmed up by one call
// before the clock and the CPU counters start.
func load(addr, caFile string, pid, clients int, d time.Duration, maxReq int64, req []byte) (*result, error) {
	in := &kpb.KeyProviderKeyWrapProtocolInput{KeyProviderKeyWrapProtocolInput: req}
	conns := make([]kpb.KeyProviderServiceClient, clients)
	for i := range conns {
		c, err := dial(addr, caFile)
		if err != nil {
			return nil, err
		}
		defer c.Close()
		conns[i] = kpb.NewKeyProviderServiceClient(c)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_, err = conns[i].UnWrapKey(ctx, in)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("warm-up call: %w", err)
		}
	}
	r := &result{Kind: "run", Clients: clients, rssBefore: rss(pid)}
	var (
		count, failures atomic.Int64
		firstErr        atomic.Value
		mu              sync.Mutex
		lat             []time.Duration
		wg              sync.WaitGroup
	)
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	svcCPU0, genCPU0 := cpuTime(pid), ownCPU()
	start := time.Now()
	for _, client := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			for ctx.Err() == nil && count.Add(1) <= maxReq {
				// Each call has its own deadline; the run's end only stops new
				// calls, so every call started must succeed.
				t := time.Now()
				cctx, ccancel := context.WithTimeout(context.Background(), 30*time.Second)
				_, err := client.UnWrapKey(cctx, in)
				ccancel()
				if err != nil {
					failures.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				mine = append(mine, time.Since(t))
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	svcCPU, genCPU := cpuTime(pid)-svcCPU0, ownCPU()-genCPU0
	if len(lat) == 0 {
		return nil, fmt.Errorf("no request succeeded; the first error: %v", firstErr.Load())
	}
	slices.Sort(lat)
	n := float64(len(lat)) + float64(failures.Load())
	r.Calls, r.Errors, r.Seconds = len(lat), failures.Load(), elapsed.Seconds()
	r.Rate = float64(len(lat)) / elapsed.Seconds()
	r.P50, r.P99 = ms(lat[len(lat)/2]), ms(lat[len(lat)*99/100])
	r.CPU = float64(svcCPU.Nanoseconds()) / 1e3 / n
	r.GenCPU = float64(genCPU.Nanoseconds()) / 1e3 / n
	r.RSS = rss(pid)
	if s, ok := firstErr.Load().(string); ok {
		r.firstErr = s
	}
	return r, nil
}

type summary struct {
	Kind       string  `json:"kind"`
	Transport  string  `json:"transport"`
	Clients    int     `json:"clients"`
	Rounds     int     `json:"rounds"`
	OcikpCPU   float64 `json:"ocikp_cpu_us"`
	FloorCPU   float64 `json:"floor_cpu_us,omitempty"`
	ECDH       float64 `json:"ecdh_us"`
	OcikpECDH  float64 `json:"ocikp_per_ecdh"`
	FloorECDH  float64 `json:"floor_per_ecdh,omitempty"`
	OcikpFloor float64 `json:"ocikp_per_floor,omitempty"`
	OcikpRate  float64 `json:"ocikp_per_second"`
	FloorRate  float64 `json:"floor_per_second,omitempty"`
}

func run(o options) error {
	req, err := unwrapRequest(o.addr, o.caFile, o.recipient)
	if err != nil {
		return err
	}
	var failed []string
	emit := func(r *result) {
		if r.Errors > 0 {
			failed = append(failed, fmt.Sprintf("%s, %d clients: %d requests failed; the first: %s", r.Target, r.Clients, r.Errors, r.firstErr))
		}
		if o.json {
			printJSON(r)
			return
		}
		label := "gRPC unwraps"
		if r.Target == "floor" {
			label = "floor calls"
		}
		fmt.Printf("%s: %d clients, %.3fs: %d ok, %d errors, %.0f/s, p50 %.2f ms, p99 %.2f ms\n",
			label, r.Clients, r.Seconds, r.Calls, r.Errors, r.Rate, r.P50, r.P99)
		if r.Target == "ocikp" && o.pid > 0 {
			fmt.Printf("service RSS: %d KiB before, %d KiB after\n", r.rssBefore, r.RSS)
		}
		if r.CPU > 0 {
			// CPU per call separates the service's cost from the load
			// generator's, which shares the machine's cores.
			fmt.Printf("CPU per call: %s %.1f µs, load generator %.1f µs; %s alone on %d cores: %.0f/s\n",
				r.Target, r.CPU, r.GenCPU, r.Target, runtime.NumCPU(), float64(runtime.NumCPU())*1e6/r.CPU)
		}
	}
	for _, clients := range o.clients {
		var ours, floors []*result
		var ecdhs []float64
		for round := 1; round <= o.rounds; round++ {
			r, err := load(o.addr, o.caFile, o.pid, clients, o.duration, o.maxReq, req)
			if err != nil {
				return err
			}
			r.Target, r.Transport, r.Round = "ocikp", o.transport, round
			emit(r)
			ours = append(ours, r)
			// The floor: each unwrap needs one P-256 ECDH (HPKE
			// decapsulation), whatever else the service does.
			ecdhs = append(ecdhs, ecdhCost())
			if o.floorAddr != "" {
				r, err := load(o.floorAddr, o.caFile, o.floorPid, clients, o.duration, o.maxReq, req)
				if err != nil {
					return fmt.Errorf("floor: %w", err)
				}
				r.Target, r.Transport, r.Round = "floor", o.transport, round
				emit(r)
				floors = append(floors, r)
			}
		}
		if o.pid <= 0 {
			continue
		}
		s := summary{Kind: "summary", Transport: o.transport, Clients: clients, Rounds: o.rounds,
			OcikpCPU: median(ours, func(r *result) float64 { return r.CPU }), ECDH: medianOf(ecdhs),
			OcikpRate: median(ours, func(r *result) float64 { return r.Rate })}
		s.OcikpECDH = s.OcikpCPU / s.ECDH
		if o.floorPid > 0 {
			s.FloorCPU = median(floors, func(r *result) float64 { return r.CPU })
			s.FloorRate = median(floors, func(r *result) float64 { return r.Rate })
			s.FloorECDH, s.OcikpFloor = s.FloorCPU/s.ECDH, s.OcikpCPU/s.FloorCPU
		}
		if o.json {
			printJSON(s)
			continue
		}
		fmt.Printf("one P-256 ECDH: %.1f µs (median of %d)\n", s.ECDH, len(ecdhs))
		fmt.Printf("service CPU per unwrap (%s, %d clients, median of %d): ocikp %.1f µs = %.2f× one ECDH",
			s.Transport, clients, o.rounds, s.OcikpCPU, s.OcikpECDH)
		if s.FloorCPU > 0 {
			fmt.Printf("; floor (gRPC + transport + one ECDH) %.1f µs = %.2f× one ECDH; ocikp/floor %.2f×", s.FloorCPU, s.FloorECDH, s.OcikpFloor)
		}
		fmt.Println()
	}
	if o.ocikp != "" {
		// The exec path, as ocicrypt uses it: one process per unwrap, two at a time (2 cores).
		n, d := execRate(o.ocikp, o.keystore, req, 3*time.Second)
		if !o.json {
			fmt.Printf("exec unwraps: %d in %v, %.0f/s\n", n, d.Round(time.Millisecond), float64(n)/d.Seconds())
		}
	}
	if len(failed) > 0 {
		return errors.New(strings.Join(failed, "; "))
	}
	return nil
}

func printJSON(v any) {
	b, _ := json.Marshal(v)
	fmt.Println(string(b))
}

func median(rs []*result, f func(*result) float64) float64 {
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	return medianOf(v)
}

func medianOf(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	v = slices.Clone(v)
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

func execRate(bin, keystore string, req []byte, d time.Duration) (int, time.Duration) {
	var n atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Since(start) < d {
				cmd := exec.Command(bin, "--keystore", keystore, "keyprovider")
				cmd.Stdin = bytes.NewReader(req)
				if cmd.Run() == nil {
					n.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	return int(n.Load()), time.Since(start)
}

func rss(pid int) int {
	if pid <= 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.Atoi(f[1])
			return kb
		}
	}
	return 0
}

// cpuTime is a process's user+system CPU time, from /proc (clock ticks of
// 10 ms: runs of seconds are needed for meaningful figures).
func cpuTime(pid int) time.Duration {
	if pid <= 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses and may hold spaces.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+s) * 10 * time.Millisecond
}

func ownCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// ecdhCost is the CPU time of one P-256 ECDH on this machine, in µs.
func ecdhCost() float64 {
	k, _ := ecdh.P256().GenerateKey(rand.Reader)
	p, _ := ecdh.P256().GenerateKey(rand.Reader)
	const n = 2000
	t0 := ownCPU()
	for range n {
		k.ECDH(p.PublicKey())
	}
	return float64((ownCPU() - t0).Nanoseconds()) / n / 1e3
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }
