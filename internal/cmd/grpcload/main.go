// Command grpcload load-tests an ocikp serve service on loopback and
// compares it with the exec path in the same run (scripts/load-serve.sh
// builds, starts and runs everything). It is bounded: -duration and
// -max-requests, and it dials only the address it is given.
//
//	grpcload -addr 127.0.0.1:7443 -tls-ca ca.pem -keystore DIR -pid PID -clients 64 -duration 60s -ocikp bin/ocikp
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
	"sort"
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

func main() {
	addr := flag.String("addr", "", "service address (loopback host:port or unix:///path)")
	caFile := flag.String("tls-ca", "", "CA of the service's certificate (TLS); plaintext without")
	recipient := flag.String("recipient", "", "recipient to wrap for (a key in the service's keystore)")
	clients := flag.Int("clients", 64, "concurrent clients, each with its own connection")
	duration := flag.Duration("duration", 60*time.Second, "how long to load")
	maxReq := flag.Int64("max-requests", 50_000_000, "stop after this many requests")
	pid := flag.Int("pid", 0, "service process, for RSS before and after")
	ocikp := flag.String("ocikp", "", "ocikp binary, to measure the exec path's throughput in the same run")
	keystore := flag.String("keystore", "", "keystore for the exec path")
	flag.Parse()
	if err := run(*addr, *caFile, *recipient, *clients, *duration, *maxReq, *pid, *ocikp, *keystore); err != nil {
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

func run(addr, caFile, recipient string, clients int, duration time.Duration, maxReq int64, pid int, ocikp, keystore string) error {
	conn, err := dial(addr, caFile)
	if err != nil {
		return err
	}
	defer conn.Close()
	wrapReq, _ := json.Marshal(map[string]any{"op": "keywrap", "keywrapparams": map[string]any{
		"ec": map[string]any{"Parameters": map[string][]string{"ocikp": {b64([]byte(recipient))}}}, "optsdata": b64(bytes.Repeat([]byte("o"), 200))}})
	out, err := kpb.NewKeyProviderServiceClient(conn).WrapKey(context.Background(), &kpb.KeyProviderKeyWrapProtocolInput{KeyProviderKeyWrapProtocolInput: wrapReq})
	if err != nil {
		return fmt.Errorf("wrap: %w", err)
	}
	var reply struct {
		R struct{ Annotation []byte } `json:"keywrapresults"`
	}
	json.Unmarshal(out.KeyProviderKeyWrapProtocolOutput, &reply)
	unwrapReq, _ := json.Marshal(map[string]any{"op": "keyunwrap", "keyunwrapparams": map[string]any{
		"dc": map[string]any{"Parameters": map[string]any{}}, "annotation": reply.R.Annotation}})

	rssBefore := rss(pid)
	svcCPU0, ownCPU0 := cpuTime(pid), ownCPU()
	var (
		count, failures atomic.Int64
		firstErr        atomic.Value
		mu              sync.Mutex
		lat             []time.Duration
		wg              sync.WaitGroup
	)
	ctx, cancel := context.WithTimeout(context.Background(), duration)
	defer cancel()
	start := time.Now()
	for range clients {
		c, err := dial(addr, caFile)
		if err != nil {
			return err
		}
		defer c.Close()
		client := kpb.NewKeyProviderServiceClient(c)
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			for ctx.Err() == nil && count.Add(1) <= maxReq {
				// Each call has its own deadline; the run's end only stops new
				// calls, so every call started must succeed.
				t := time.Now()
				cctx, ccancel := context.WithTimeout(context.Background(), 30*time.Second)
				_, err := client.UnWrapKey(cctx, &kpb.KeyProviderKeyWrapProtocolInput{KeyProviderKeyWrapProtocolInput: unwrapReq})
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
	svcCPU, genCPU := cpuTime(pid)-svcCPU0, ownCPU()-ownCPU0
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	if len(lat) == 0 {
		return errors.New("no request succeeded")
	}
	rate := float64(len(lat)) / elapsed.Seconds()
	fmt.Printf("gRPC unwraps: %d clients, %v: %d ok, %d errors, %.0f/s, p50 %.2f ms, p99 %.2f ms\n",
		clients, elapsed.Round(time.Millisecond), len(lat), failures.Load(), rate, ms(lat[len(lat)/2]), ms(lat[len(lat)*99/100]))
	if pid > 0 {
		fmt.Printf("service RSS: %d KiB before, %d KiB after\n", rssBefore, rss(pid))
		// CPU per call separates the service's cost from the load
		// generator's, which shares the machine's cores.
		n := float64(len(lat)) + float64(failures.Load())
		perSvc := float64(svcCPU.Microseconds()) / n
		perGen := float64(genCPU.Microseconds()) / n
		fmt.Printf("CPU per call: service %.0f µs, load generator %.0f µs; service alone on %d cores: %.0f/s\n",
			perSvc, perGen, runtime.NumCPU(), float64(runtime.NumCPU())*1e6/perSvc)
		// The floor: each unwrap needs one P-256 ECDH (HPKE decapsulation),
		// whatever else the service does.
		e := ecdhCost()
		fmt.Printf("floor: one P-256 ECDH %.1f µs + load generator %.0f µs per call: at most %.0f/s on %d cores if the service did nothing else\n",
			e, perGen, float64(runtime.NumCPU())*1e6/(e+perGen), runtime.NumCPU())
	}
	if ocikp != "" {
		// The exec path, as ocicrypt uses it: one process per unwrap, two at a time (2 cores).
		n, d := execRate(ocikp, keystore, unwrapReq, 3*time.Second)
		fmt.Printf("exec unwraps: %d in %v, %.0f/s; gRPC/exec: %.1fx\n", n, d.Round(time.Millisecond), float64(n)/d.Seconds(), rate/(float64(n)/d.Seconds()))
	}
	if failures.Load() > 0 {
		return fmt.Errorf("%d requests failed; the first: %v", failures.Load(), firstErr.Load())
	}
	return nil
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
			var kb int
			fmt.Sscan(f[1], &kb)
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
	var u, s int64
	fmt.Sscan(f[11], &u)
	fmt.Sscan(f[12], &s)
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
