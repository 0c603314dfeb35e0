// Command ocikp-serve is ocikp's gRPC key provider service (package
// server). `ocikp serve …` runs it; it links grpc-go, which the exec
// provider that ocicrypt starts for every layer does not.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/ocikp/ocikp/internal/hint"
	"github.com/ocikp/ocikp/keyprovider"
	"github.com/ocikp/ocikp/keys/soft"
	"github.com/ocikp/ocikp/recipient"
	"github.com/ocikp/ocikp/server"
)

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	fs := flag.NewFlagSet("ocikp serve", flag.ContinueOnError)
	var cfg server.Config
	fs.StringVar(&cfg.Listen, "listen", "unix:///run/ocikp/ocikp.sock", "host:port or unix:///path")
	fs.StringVar(&cfg.TLSCert, "tls-cert", "", "server certificate (PEM)")
	fs.StringVar(&cfg.TLSKey, "tls-key", "", "server private key (PEM)")
	fs.StringVar(&cfg.ClientCA, "client-ca", "", "require client certificates signed by this CA (PEM)")
	fs.BoolVar(&cfg.Insecure, "insecure", false, "allow plaintext on a non-loopback address")
	fs.DurationVar(&cfg.RequestTimeout, "request-timeout", 30*time.Second, "deadline of each call")
	fs.IntVar(&cfg.MaxMessage, "max-message-bytes", 1<<20, "largest request accepted")
	fs.IntVar(&cfg.MaxConcurrent, "max-concurrent", 64, "calls served at once")
	fs.DurationVar(&cfg.DrainTimeout, "drain-timeout", 30*time.Second, "on SIGTERM, how long calls in flight may finish")
	fs.StringVar(&cfg.Metrics, "metrics", "", "host:port to serve Prometheus metrics on (/metrics)")
	keystore := fs.String("keystore", "", "keystore directory (default $OCIKP_KEYSTORE, else the XDG default)")
	name := fs.String("name", "", "provider name in the clients' OCICRYPT_KEYPROVIDER_CONFIG (detected when omitted)")
	passFile := fs.String("passphrase-file", "", "passphrase of protected keys")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	configFile := fs.String("config", "", "JSON file of these settings, keyed by flag name (flags win)")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if *configFile != "" {
		if err := applyConfigFile(fs, *configFile); err != nil {
			return fail(err)
		}
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "ocikp: error: unexpected argument %.40q\n", fs.Arg(0))
		return 2
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintln(os.Stderr, "ocikp: error: --log-level: want debug, info, warn or error")
		return 2
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	dir, err := soft.DefaultDir(*keystore)
	if err != nil {
		return fail(err)
	}
	p := &keyprovider.Provider{Name: *name, Store: &soft.Store{Dir: dir}, Log: log, CacheKeys: true}
	if *passFile != "" {
		p.Passphrase = func(string) ([]byte, error) {
			b, err := os.ReadFile(*passFile)
			if err != nil {
				return nil, fmt.Errorf("passphrase file: %w", err)
			}
			return []byte(strings.TrimRight(strings.SplitN(string(b), "\n", 2)[0], "\r")), nil
		}
	}
	defer recipient.CloseKMS(true) // plugins stay warm between calls
	cfg.Provider, cfg.Log = p, log
	srv, err := server.New(cfg)
	if err != nil {
		return fail(err)
	}
	l, err := srv.Listen()
	if err != nil {
		return fail(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go reloadOnSignalOrChange(ctx, srv, log, cfg.TLSCert, cfg.TLSKey, cfg.ClientCA)
	if err := srv.Serve(ctx, l); err != nil {
		return fail(err)
	}
	log.Info("stopped", "calls", srv.Served())
	return 0
}

// reloadOnSignalOrChange reloads the certificates on SIGHUP and when one
// of their files changes (checked every 10 s).
func reloadOnSignalOrChange(ctx context.Context, srv *server.Server, log *slog.Logger, files ...string) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	stamp := func() string {
		var b strings.Builder
		for _, f := range files {
			if fi, err := os.Stat(f); err == nil {
				fmt.Fprintf(&b, "%s:%d:%d;", f, fi.Size(), fi.ModTime().UnixNano())
			}
		}
		return b.String()
	}
	last := stamp()
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
		case <-tick.C:
			if now := stamp(); now == last {
				continue
			}
		}
		last = stamp()
		if err := srv.Reload(); err != nil {
			log.Error("certificate reload failed; keeping the old ones", "err", err)
		} else {
			log.Info("certificates reloaded")
		}
	}
}

func fail(err error) int {
	fmt.Fprintf(os.Stderr, "ocikp: error: %s\n", strings.ReplaceAll(err.Error(), "\n", "; "))
	for i, h := range hint.Of(err) {
		if i < 2 {
			fmt.Fprintf(os.Stderr, "ocikp: hint: %s\n", h)
		}
	}
	return 1
}
