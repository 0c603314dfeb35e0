package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/ocikp/ocikp/internal/hint"
	"github.com/ocikp/ocikp/internal/safefile"
	"github.com/ocikp/ocikp/internal/suggest"
	"github.com/ocikp/ocikp/internal/usage"
	"github.com/ocikp/ocikp/keyprovider"
	"github.com/ocikp/ocikp/keys/soft"
	"github.com/ocikp/ocikp/kms"
	"github.com/ocikp/ocikp/protocol"
)

// Environment variables for unattended use.
const (
	envPassphrase     = "OCIKP_PASSPHRASE"
	envPassphraseFile = "OCIKP_PASSPHRASE_FILE"
	envLog            = "OCIKP_LOG"
)

func (e *env) store() (*soft.Store, error) {
	dir, err := soft.DefaultDir(e.keystore)
	if err != nil {
		return nil, err
	}
	return &soft.Store{Dir: dir}, nil
}

func cmdKeyprovider(e *env, args []string) error {
	fs := e.flags("keyprovider")
	name := fs.String("name", "", "the provider's name in OCICRYPT_KEYPROVIDER_CONFIG (detected when omitted)")
	passFile := fs.String("passphrase-file", "", "file holding the passphrase of protected keys")
	adc := fs.String("adc", "", "Google Cloud credentials file for gcpkms keys (as the GCP KMS key provider's --adc)")
	awsProfile := fs.String("aws-profile", "", "AWS shared-config profile for awskms keys")
	kmsConfig := fs.String("kms-config", "", "KMS settings file (default $OCIKP_KMS_CONFIG, else ~/.config/ocikp/kms.json)")
	allowClassical := fs.Bool("allow-classical", false, "let one layer mix post-quantum and classical-only (P-256, RSA) recipients")
	if _, err := e.parse(fs, args, 0, 0, "[--name NAME] [--keystore DIR] [--passphrase-file FILE] [--allow-classical] [--adc FILE] [--aws-profile P] [--kms-config FILE] < request.json"); err != nil {
		return err
	}
	plugins, err := kms.New(kms.Settings{ConfigFile: *kmsConfig, GCPADC: *adc, AWSProfile: *awsProfile})
	if err != nil {
		return err
	}
	defer plugins.Close(false) // started plugins end with the request
	if e.stdinIsTTY {
		return hint.Wrap(errors.New("keyprovider reads one ocicrypt request on stdin, which is a terminal"),
			"ocicrypt runs this command; to use ocikp by hand see 'ocikp help'")
	}
	st, err := e.store()
	if err != nil {
		return err
	}
	p := &keyprovider.Provider{Name: *name, Store: st, Passphrase: unattendedPassphrase(*passFile), KMS: plugins,
		AllowClassical: *allowClassical,
		Warn:           func(msg string) { fmt.Fprintf(e.stderr, "ocikp: warning: %s\n", oneLine(msg)) }}
	if lvl := os.Getenv(envLog); lvl == "debug" {
		p.Log = slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	req, err := protocol.ReadRequest(e.stdin)
	if err != nil {
		return err
	}
	reply, err := p.Handle(req)
	if err != nil {
		return err
	}
	_, err = e.stdout.Write(reply)
	return err
}

// cmdKMS: "kms pubkey URL" fetches the public key of an asymmetric KMS key
// through the plugin and caches it in the keystore, so that encrypting for
// it needs no KMS call. (GCP key versions are fetched on first use anyway.)
func cmdKMS(e *env, args []string) error {
	if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help") {
		usage.Print(e.stdout, "ocikp kms pubkey URL", summaryOf("kms"), nil)
		return nil
	}
	if len(args) == 0 {
		return usagef("usage: ocikp kms pubkey URL")
	}
	if args[0] != "pubkey" {
		err := usagef("unknown kms command %.40q: ocikp kms pubkey URL", args[0])
		if h := suggest.Hint(args[0], []string{"pubkey"}); h != "" {
			return hint.Wrap(err, h)
		}
		return err
	}
	fs := e.flags("kms pubkey")
	pos, err := e.parse(fs, args[1:], 1, 1, "URL")
	if err != nil {
		return err
	}
	if !kms.IsURL(pos[0]) {
		return usagef("not a KMS key URL (schemes: %s)", strings.Join(kms.Schemes, ", "))
	}
	st, err := e.store()
	if err != nil {
		return err
	}
	p := &keyprovider.Provider{Store: st}
	defer p.Close(true)
	entry, err := p.FetchPublicKey(context.Background(), pos[0])
	if err != nil {
		return err
	}
	if err := p.KMSCache().Put(entry); err != nil {
		return fmt.Errorf("caching the public key: %w", err)
	}
	fmt.Fprintln(e.stdout, entry.URL)
	fmt.Fprintf(e.stderr, "ocikp: cached the RSA-%d public key of %s in %s; encrypting for it needs no KMS call\n", entry.Bits(), entry.URL, p.KMSCache().Dir)
	return nil
}

func cmdConfig(e *env, args []string) (err error) {
	fs := e.flags("config")
	name := fs.String("name", "ocikp", "provider name (the NAME in provider:NAME:…)")
	path := fs.String("path", "", "absolute `PATH` of the binary the callers run (default: this ocikp; for a node, a system path such as /usr/local/bin/ocikp, or the ocikp-unwrap beside it, which answers each layer's unwrap sooner)")
	grpcAddr := fs.String("grpc", "", "point at an ocikp serve service at host:port or unix:///path instead")
	tlsCA := fs.String("tls-ca", "", "with --grpc: CA file that signed the service's certificate")
	tlsCert := fs.String("tls-cert", "", "with --grpc: client certificate (for --client-ca services)")
	tlsKey := fs.String("tls-key", "", "with --grpc: client key")
	serverName := fs.String("server-name", "", "with --grpc: name to verify in the service's certificate")
	containerd := fs.Bool("containerd", false, "print containerd's configuration (stream processors, and for 2.x local CRI pull) instead")
	ctdVersion := fs.String("containerd-version", "", "with --containerd: the node's containerd release `V` (2.2.2, v1.7.27, or 2/1 alone, unchecked); default: containerd --version of the containerd in PATH; releases whose CRI cannot decrypt are refused")
	decoder := fs.String("decoder", "", "with --containerd: `PATH` of imgcrypt's ctd-decoder (default: found in PATH)")
	crio := fs.Bool("crio", false, "print a systemd drop-in that gives CRI-O the key provider config instead")
	noCheck := fs.Bool("no-check", false, "write the paths given even if they are not there (yet); by default --path, --keystore, --decoder, --tls-* and --keyprovider-config must exist")
	quadlet := fs.Bool("quadlet", false, "print a Quadlet .image unit that pulls and decrypts --image instead")
	image := fs.String("image", "", "with --quadlet: the encrypted image `REF`")
	output := fs.String("output", "", "write to `FILE` (atomically: whole or not at all) instead of stdout")
	allowClassical := fs.Bool("allow-classical", false, "let the provider mix post-quantum and classical-only recipients in one layer (adds --allow-classical to its args)")
	kpConfig := fs.String("keyprovider-config", DefaultKeyproviderConfig, "with --containerd/--crio/--quadlet: `FILE` where the output of plain \"ocikp config\" is saved (it must exist: it is read for the ocikp and keystore it names)")
	if _, err := e.parse(fs, args, 0, 0, "[--name NAME] [--keystore DIR] [--path BIN] | [--grpc ADDR [--tls-ca F] [--tls-cert F --tls-key F] [--server-name N]]\n       ocikp config --containerd [--containerd-version V] [--decoder PATH] | --crio | --quadlet --image REF  [--keyprovider-config FILE] [--keystore DIR]\n       (each form takes --output FILE and --no-check; paths are absolute; --containerd and --crio give the runtime's ocikp --keystore DIR, else the config's, else "+DefaultNodeKeystore+")"); err != nil {
		return err
	}
	if !validProviderName(*name) {
		return usagef("invalid provider name %.40q: use letters, digits, '-', '_' or '.'", *name)
	}
	if *output != "" {
		var buf bytes.Buffer
		stdout := e.stdout
		e.stdout = &buf
		defer func() { e.stdout = stdout }()
		defer func() {
			if err == nil {
				err = safefile.Replace(*output, buf.Bytes(), 0o644)
			}
		}()
	}
	if n := btoi(*containerd) + btoi(*crio) + btoi(*quadlet); n > 0 {
		if n > 1 {
			return usagef("--containerd, --crio and --quadlet each print one file: give one")
		}
		if *grpcAddr != "" || *path != "" {
			return hint.Wrap(usagef("--grpc and --path go in the key provider config itself (plain \"ocikp config\"), which --keyprovider-config names"),
				"ocikp config --path /usr/local/bin/ocikp --keystore "+DefaultNodeKeystore+" --output "+DefaultKeyproviderConfig+", then this command")
		}
		c := callerConfig{providerName: *name, decoder: *decoder, version: *ctdVersion, image: *image,
			kpConfig: *kpConfig, keystore: e.keystore, check: !*noCheck}
		if err := checkPath("--keyprovider-config", c.kpConfig, anyFile, false); err != nil {
			return err
		}
		switch {
		case *containerd:
			return e.containerdDropIn(c)
		case *crio:
			return e.crioDropIn(c)
		default:
			return e.quadletImage(c)
		}
	}
	if *grpcAddr != "" {
		if *allowClassical {
			return usagef("--allow-classical is the service's own setting: pass it to ocikp serve")
		}
		for _, f := range []struct {
			flag, path string
			kind       pathKind
		}{{"--tls-ca", *tlsCA, certFile}, {"--tls-cert", *tlsCert, certFile}, {"--tls-key", *tlsKey, keyFile}} {
			if err := checkPath(f.flag, f.path, f.kind, !*noCheck); err != nil {
				return err
			}
		}
		return e.grpcConfig(*name, *grpcAddr, *tlsCA, *tlsCert, *tlsKey, *serverName)
	}
	if *tlsCA != "" || *tlsCert != "" || *tlsKey != "" || *serverName != "" {
		return usagef("--tls-ca, --tls-cert, --tls-key and --server-name go with --grpc")
	}
	bin := *path
	if bin == "" {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("finding the ocikp binary: %w", err)
		}
		bin = exe
	} else if err := checkPath("--path", bin, executable, !*noCheck); err != nil {
		return err
	}
	cmdArgs := []string{"keyprovider", "--name", *name}
	if e.keystore != "" {
		if err := checkPath("--keystore", e.keystore, directory, !*noCheck); err != nil {
			return err
		}
		cmdArgs = append(cmdArgs, "--keystore", e.keystore)
	}
	if *allowClassical {
		cmdArgs = append(cmdArgs, "--allow-classical")
	}
	cfg := map[string]any{"key-providers": map[string]any{
		*name: map[string]any{"cmd": map[string]any{"path": bin, "args": cmdArgs}},
	}}
	b, _ := json.MarshalIndent(cfg, "", "  ")
	fmt.Fprintf(e.stdout, "%s\n", b)
	return nil
}

// grpcConfig prints a config entry for an ocikp serve service; the
// grpc-tls block is ocicrypt 1.3's (older callers speak plaintext only).
func (e *env) grpcConfig(name, addr, ca, cert, key, serverName string) error {
	if (cert == "") != (key == "") {
		return usagef("--tls-cert and --tls-key go together")
	}
	entry := map[string]any{"grpc": addr}
	if ca != "" || cert != "" || serverName != "" {
		t := map[string]string{}
		for k, v := range map[string]string{"root-ca-file": ca, "cert-file": cert, "key-file": key} {
			if v != "" {
				abs, err := filepath.Abs(v)
				if err != nil {
					return err
				}
				t[k] = abs
			}
		}
		if serverName != "" {
			t["server-name"] = serverName
		}
		entry["grpc-tls"] = t
	}
	b, _ := json.MarshalIndent(map[string]any{"key-providers": map[string]any{name: entry}}, "", "  ")
	fmt.Fprintf(e.stdout, "%s\n", b)
	return nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func validProviderName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}
