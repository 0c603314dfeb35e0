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
	"sort"
	"strings"
	"sync"
	"sync/atomic"
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
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	if len(lat) == 0 {
		return errors.New("no request succeeded")
	}
	rate := float64(len(lat)) / elapsed.Seconds()
	fmt.Printf("gRPC unwraps: %d clients, %v: %d ok, %d errors, %.0f/s, p50 %.2f ms, p99 %.2f ms\n",
		clients, elapsed.Round(time.Millisecond), len(lat), failures.Load(), rate, ms(lat[len(lat)/2]), ms(lat[len(lat)*99/100]))
	if pid > 0 {
		fmt.Printf("service RSS: %d KiB before, %d KiB after\n", rssBefore, rss(pid))
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

func ms(d time.Duration) float64 { return float64(d) / 1e6 }
