// Command ocikp-serve is ocikp's gRPC key provider service (package
// server). `ocikp serve …` runs it; it links grpc-go, which the exec
// provider that ocicrypt starts for every layer does not.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/ocikp/ocikp/internal/hint"
	"github.com/ocikp/ocikp/internal/kmsplugin"
	"github.com/ocikp/ocikp/internal/safetext"
	"github.com/ocikp/ocikp/internal/usage"
	"github.com/ocikp/ocikp/keyprovider"
	"github.com/ocikp/ocikp/keys/pkcs11"
	"github.com/ocikp/ocikp/keys/soft"
	"github.com/ocikp/ocikp/keys/tpm"
	"github.com/ocikp/ocikp/keys/tpm/tpmdev"
	"github.com/ocikp/ocikp/kms"
	"github.com/ocikp/ocikp/server"
)

func main() {
	code := run(os.Args[1:])
	stopProfile()
	os.Exit(code)
}

// stopProfile ends a CPU profile that a build with -tags pprof started
// (pprof.go); without the tag there is none.
var stopProfile = func() {}

func run(args []string) int {
	if len(args) > 0 && args[0] == "health" {
		return health(args[1:])
	}
	fs := flag.NewFlagSet("ocikp serve", flag.ContinueOnError)
	var cfg server.Config
	fs.StringVar(&cfg.Listen, "listen", "unix:///run/ocikp/ocikp.sock", "host:port or unix:///path")
	fs.StringVar(&cfg.TLSCert, "tls-cert", "", "server certificate (PEM)")
	fs.StringVar(&cfg.TLSKey, "tls-key", "", "server private key (PEM)")
	fs.StringVar(&cfg.ClientCA, "client-ca", "", "require client certificates signed by this CA (PEM)")
	fs.BoolVar(&cfg.Insecure, "insecure", false, "allow plaintext on a non-loopback address")
	fs.DurationVar(&cfg.RequestTimeout, "request-timeout", 30*time.Second, "deadline of each call, from its headers (receiving the request included)")
	fs.IntVar(&cfg.MaxMessage, "max-message-bytes", 1<<20, "largest request accepted")
	fs.IntVar(&cfg.MaxConcurrent, "max-concurrent", 64, "calls served at once, and streams open at once on one connection")
	fs.Int64Var(&cfg.MaxPending, "max-pending-bytes", 0, "at most `N` bytes for requests being received or waiting, all connections together; a stream holds max-message-bytes + 32 KiB until its request is in, more are refused (0: 2 × max-concurrent × that)")
	fs.DurationVar(&cfg.DrainTimeout, "drain-timeout", 30*time.Second, "on SIGTERM, how long calls in flight may finish")
	fs.StringVar(&cfg.Metrics, "metrics", "", "loopback host:port or unix:///path to serve Prometheus metrics on (/metrics)")
	fs.BoolVar(&cfg.MetricsInsecure, "metrics-insecure", false, "allow --metrics on a non-loopback address")
	fs.IntVar(&cfg.MaxConns, "max-connections", 1024, "connections open at once (more wait to be accepted)")
	fs.DurationVar(&cfg.IdleTimeout, "idle-timeout", 2*time.Minute, "close a connection without calls for this long")
	keystore := fs.String("keystore", "", "keystore directory (default $OCIKP_KEYSTORE, else the XDG default)")
	name := fs.String("name", "", "provider name in the clients' OCICRYPT_KEYPROVIDER_CONFIG (detected when omitted)")
	passFile := fs.String("passphrase-file", "", "passphrase of protected keys")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	configFile := fs.String("config", "", "JSON file of these settings, keyed by flag name (flags win)")
	var kmsSettings kms.Settings
	fs.StringVar(&kmsSettings.ConfigFile, "kms-config", "", "KMS settings file (default $OCIKP_KMS_CONFIG, else ~/.config/ocikp/kms.json)")
	fs.StringVar(&kmsSettings.GCPADC, "adc", "", "Google Cloud credentials file for gcpkms keys")
	fs.StringVar(&kmsSettings.AWSProfile, "aws-profile", "", "AWS shared-config profile for awskms keys")
	fs.IntVar(&kmsSettings.Procs, "kms-procs", 4, "processes each KMS plugin may run for concurrent calls")
	allowClassical := fs.Bool("allow-classical", false, "let one layer mix post-quantum and classical-only (P-256, RSA) recipients")
	reloadEvery := fs.Duration("reload-interval", 10*time.Second, "how often to check certificate and KMS credential files for changes (0: only on SIGHUP)")
	if code, done := parseFlags(fs, args, "ocikp serve [--listen ADDR] [--tls-cert F --tls-key F [--client-ca F]] [flags]", serveSummary); done {
		return code
	}
	if *configFile != "" {
		if err := applyConfigFile(fs, *configFile); err != nil {
			return fail(err)
		}
	}
	if fs.NArg() > 0 {
		return usageError(fmt.Errorf("unexpected argument %.40q", fs.Arg(0)), "serve")
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return usageError(errors.New("--log-level: want debug, info, warn or error"), "serve")
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level, ReplaceAttr: seconds}))
	dir, err := soft.DefaultDir(*keystore)
	if err != nil {
		return fail(err)
	}
	// PKCS#11 tokens: one companion, sessions kept (docs/pkcs11.md).
	pkcs11.KeepCompanion()
	// TPM: in this process, device, SRK, keys and sessions kept
	// (docs/tpm.md); this binary links net anyway.
	tpmDev := tpmdev.NewKept()
	tpm.SetHandler(tpmDev.Handle)
	defer tpmDev.Close()
	// Remote: clients name keystore keys, never files, and learn no
	// keystore paths or key names from errors.
	p := &keyprovider.Provider{Name: *name, Store: &soft.Store{Dir: dir}, Log: log, CacheKeys: true, Remote: true,
		AllowClassical: *allowClassical}
	if *passFile != "" {
		p.Passphrase = func(string) ([]byte, error) {
			b, err := os.ReadFile(*passFile)
			if err != nil {
				return nil, fmt.Errorf("passphrase file: %w", err)
			}
			return []byte(strings.TrimRight(strings.SplitN(string(b), "\n", 2)[0], "\r")), nil
		}
	}
	if kmsSettings.Procs < 1 {
		return usageError(errors.New("--kms-procs must be at least 1"), "serve")
	}
	plugins, err := kms.New(kmsSettings)
	if err != nil {
		return fail(err)
	}
	p.KMS = plugins
	defer p.Close(true) // plugins stay warm between calls
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
	w := &watcher{
		log: log, every: *reloadEvery, tls: nonEmpty(cfg.TLSCert, cfg.TLSKey, cfg.ClientCA),
		kms:       func() []string { return kmsplugin.WatchedFiles(plugins.Getenv) },
		reloadTLS: srv.Reload, restartKMS: plugins.Restart,
	}
	go w.run(ctx)
	if err := srv.Serve(ctx, l); err != nil {
		return fail(err)
	}
	log.Info("stopped", "calls", srv.Served())
	return 0
}

const serveSummary = `Run the gRPC key provider service (ocicrypt's KeyProviderService) on the
same core as the exec provider. Plaintext only on a unix socket or a
loopback address; TLS elsewhere. See docs/security.md for what clients may
and may not do.`

// seconds logs durations as seconds under a key that says so
// ("duration_seconds": 0.0012), not as slog's raw nanoseconds.
func seconds(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		return slog.Float64(a.Key+"_seconds", a.Value.Duration().Seconds())
	}
	return a
}

// parseFlags parses args; on --help it prints the command's usage in
// ocikp's one format (internal/usage) to stdout, on a mistake one error
// line and a hint. done says the command should exit with code.
func parseFlags(fs *flag.FlagSet, args []string, line, summary string) (code int, done bool) {
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	switch {
	case err == nil:
		return 0, false
	case errors.Is(err, flag.ErrHelp):
		usage.Print(os.Stdout, line, summary, fs)
		return 0, true
	}
	return usageError(err, strings.TrimPrefix(fs.Name(), "ocikp ")), true
}

// usageError reports a command-line mistake: exit 2.
func usageError(err error, cmd string) int {
	fmt.Fprintf(os.Stderr, "ocikp: error: %s\n", safetext.Clean(err.Error()))
	fmt.Fprintf(os.Stderr, "ocikp: hint: run 'ocikp %s --help' for usage\n", cmd)
	return 2
}

func nonEmpty(ss ...string) []string {
	var out []string
	for _, s := range ss {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

func fail(err error) int {
	fmt.Fprintf(os.Stderr, "ocikp: error: %s\n", safetext.Clean(strings.ReplaceAll(err.Error(), "\n", "; ")))
	for i, h := range hint.Of(err) {
		if i < 2 {
			fmt.Fprintf(os.Stderr, "ocikp: hint: %s\n", safetext.Clean(h))
		}
	}
	return 1
}
