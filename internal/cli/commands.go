package cli

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/ocikp/ocikp/internal/hint"
	"github.com/ocikp/ocikp/internal/safefile"
	"github.com/ocikp/ocikp/internal/usage"
	"github.com/ocikp/ocikp/keyprovider"
	"github.com/ocikp/ocikp/keys/keychain"
	"github.com/ocikp/ocikp/keys/soft"
	"github.com/ocikp/ocikp/kms"
	"github.com/ocikp/ocikp/pq"
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

// unattendedPassphrase reads a passphrase from a file or the environment,
// never from a terminal: ocicrypt gives the provider no terminal and has no
// time-out, so a prompt would hang the caller.
func unattendedPassphrase(flagFile string) func(string) ([]byte, error) {
	return func(string) ([]byte, error) {
		if f := flagFile; f != "" {
			return readPassphraseFile(f)
		}
		if f := os.Getenv(envPassphraseFile); f != "" {
			return readPassphraseFile(f)
		}
		if p := os.Getenv(envPassphrase); p != "" {
			return []byte(p), nil
		}
		return nil, nil
	}
}

func readPassphraseFile(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("passphrase file: %w", err)
	}
	line, _, _ := bytes.Cut(data, []byte("\n"))
	line = bytes.TrimSuffix(line, []byte("\r"))
	if len(line) == 0 {
		return nil, fmt.Errorf("passphrase file %s is empty", path)
	}
	return line, nil
}

// newPassphrase gets the passphrase for a new key: from --passphrase-file,
// or from the terminal with --passphrase. None means an unprotected key.
func (e *env) newPassphrase(prompt bool, file string) ([]byte, error) {
	switch {
	case file != "" && prompt:
		return nil, usagef("--passphrase and --passphrase-file are exclusive")
	case file != "":
		return readPassphraseFile(file)
	case prompt:
		p, err := promptPassphrase("Passphrase for the new key: ")
		if err != nil {
			return nil, err
		}
		again, err := promptPassphrase("Repeat the passphrase: ")
		if err != nil {
			return nil, err
		}
		if !bytes.Equal(p, again) {
			return nil, errors.New("the passphrases do not match")
		}
		if len(p) == 0 {
			return nil, errors.New("empty passphrase")
		}
		return p, nil
	}
	return nil, nil
}

func cmdKeygen(e *env, args []string) error {
	fs := e.flags("keygen")
	prompt := fs.Bool("passphrase", false, "protect the key with a passphrase typed at the terminal")
	passFile := fs.String("passphrase-file", "", "protect the key with the passphrase in this file")
	typ := fs.String("type", soft.TypeP256, "key `TYPE`: p256, or post-quantum mlkem768x25519 (X-Wing) or mlkem768p256")
	kf := e.addKeychainFlags(fs, true)
	pos, err := e.parse(fs, args, 1, 1, "[--type p256|mlkem768x25519|mlkem768p256] [--passphrase | --passphrase-file FILE] [--backend keychain [--secure-enclave] [--tag TAG] [--require-presence]] NAME")
	if err != nil {
		return err
	}
	if err := checkName(pos[0]); err != nil {
		return err
	}
	kind := pq.KindOf(*typ)
	if kind == nil && *typ != soft.TypeP256 {
		return usagef("--type %.30q: want one of %s", *typ, strings.Join(soft.Types(), ", "))
	}
	hybridKeychain := *kf.backend == "keychain" && kind != nil
	if kc, err := kf.check(!hybridKeychain && (*prompt || *passFile != "")); err != nil {
		return err
	} else if kc {
		switch {
		case kind == nil:
			return e.keychainKeygen(pos[0], kf)
		case kind.Type != pq.MLKEMP256:
			return usagef("--backend keychain holds P-256 keys: use --type mlkem768p256 for a post-quantum key whose P-256 half is in the Keychain")
		}
		pass, err := e.newPassphrase(*prompt, *passFile)
		if err != nil {
			return err
		}
		return e.keychainHybridKeygen(pos[0], kf, pass)
	}
	if kind != nil {
		seed, _, err := kind.GenerateKey()
		if err != nil {
			return err
		}
		return e.storeHybridKey(pos[0], kind, seed, *prompt, *passFile)
	}
	priv, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	return e.storeKey(pos[0], priv, *prompt, *passFile, "created")
}

// storeHybridKey stores a new post-quantum key, as storeKey does a P-256 one.
func (e *env) storeHybridKey(name string, kind *pq.Kind, seed []byte, prompt bool, passFile string) error {
	return e.newKeyFile(name, prompt, passFile, "created", func(pass []byte) (*soft.KeyFile, error) {
		return soft.NewHybridKeyFile(name, kind, seed, pass)
	})
}

// storeKey stores a new P-256 key.
func (e *env) storeKey(name string, priv *ecdh.PrivateKey, prompt bool, passFile, verb string) error {
	return e.newKeyFile(name, prompt, passFile, verb, func(pass []byte) (*soft.KeyFile, error) {
		return soft.NewKeyFile(name, priv, pass)
	})
}

// newKeyFile stores the key file build returns, sealed if a passphrase is
// asked for, unless the keystore holds the key already; it prints the
// recipient on stdout and a note on stderr.
func (e *env) newKeyFile(name string, prompt bool, passFile, verb string, build func(pass []byte) (*soft.KeyFile, error)) error {
	pass, err := e.newPassphrase(prompt, passFile)
	if err != nil {
		return err
	}
	st, err := e.store()
	if err != nil {
		return err
	}
	k, err := build(pass)
	if err != nil {
		return err
	}
	if err := refuseDuplicate(st, k.Public); err != nil {
		return err
	}
	if err := st.Put(name, k); err != nil {
		return err
	}
	var notes []string
	if k.Type != soft.TypeP256 {
		notes = append(notes, k.Type+", "+pq.KindOf(k.Type).Label)
	}
	if k.Protected() {
		notes = append(notes, "passphrase-protected")
	}
	note := ""
	if len(notes) > 0 {
		note = " (" + strings.Join(notes, "; ") + ")"
	}
	fmt.Fprintln(e.stdout, k.RecipientString())
	fmt.Fprintf(e.stderr, "ocikp: %s key %q in %s%s\n", verb, k.Name, st.Dir, note)
	return nil
}

func cmdImport(e *env, args []string) error {
	fs := e.flags("import")
	file := fs.String("file", "", "PEM file to import (default: stdin)")
	prompt := fs.Bool("passphrase", false, "protect the key with a passphrase typed at the terminal")
	passFile := fs.String("passphrase-file", "", "protect the key with the passphrase in this file")
	kf := e.addKeychainFlags(fs, false)
	pos, err := e.parse(fs, args, 1, 1, "[--file PEM] [--passphrase | --passphrase-file FILE] NAME | --backend keychain --tag TAG NAME")
	if err != nil {
		return err
	}
	if err := checkName(pos[0]); err != nil {
		return err
	}
	if kc, err := kf.check(*prompt || *passFile != ""); err != nil {
		return err
	} else if kc {
		if *file != "" {
			return usagef("--file is for --backend soft")
		}
		return e.keychainImport(pos[0], kf)
	}
	var data []byte
	if *file != "" {
		data, err = os.ReadFile(*file)
	} else {
		if e.stdinIsTTY {
			return hint.Wrap(errors.New("import reads a PEM private key from stdin, which is a terminal"),
				"pass --file KEY.pem or redirect the key into ocikp import NAME < KEY.pem")
		}
		data, err = io.ReadAll(io.LimitReader(e.stdin, soft.MaxKeyFileSize+1))
	}
	if err != nil {
		return fmt.Errorf("reading key: %w", err)
	}
	if k, kerr := soft.ParseKeyFile(data); kerr == nil {
		// An ocikp key file (another keystore's, a Kubernetes Secret's):
		// copied under NAME, keeping its own passphrase protection.
		if *prompt || *passFile != "" {
			return usagef("an ocikp key file keeps its own protection: drop --passphrase/--passphrase-file")
		}
		st, err := e.store()
		if err != nil {
			return err
		}
		if err := refuseDuplicate(st, k.Public); err != nil {
			return err
		}
		if err := st.Put(pos[0], k); err != nil {
			return err
		}
		fmt.Fprintf(e.stderr, "ocikp: imported key %q in %s\n", pos[0], st.Dir)
		fmt.Fprintln(e.stdout, k.RecipientString())
		return nil
	}
	priv, err := soft.ParsePEMPrivateKey(data)
	if err != nil {
		return hint.Wrap(err, "import takes a PEM P-256 private key (PKCS#8 or SEC1) or an ocikp key file")
	}
	return e.storeKey(pos[0], priv, *prompt, *passFile, "imported")
}

// nameAndStore parses the single NAME argument of a command and opens the store.
func (e *env) nameAndStore(fs *flag.FlagSet, args []string) (string, *soft.Store, error) {
	pos, err := e.parse(fs, args, 1, 1, "NAME")
	if err != nil {
		return "", nil, err
	}
	if err := checkName(pos[0]); err != nil {
		return "", nil, err
	}
	st, err := e.existingStore()
	return pos[0], st, err
}

// checkName refuses an invalid key name as a usage error (exit 2).
func checkName(name string) error {
	if soft.ValidName(name) {
		return nil
	}
	return usagef("invalid key name %.70q: %s", name, soft.NameRule)
}

// existingStore is the keystore, which must exist: commands that read keys
// say where they looked rather than "no keys".
func (e *env) existingStore() (*soft.Store, error) {
	st, err := e.store()
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(st.Dir); errors.Is(err, fs.ErrNotExist) {
		return nil, hint.Wrap(fmt.Errorf("keystore %s does not exist", st.Dir),
			"create a key with: ocikp keygen NAME", "or point --keystore / "+soft.EnvKeystore+" at an existing keystore")
	}
	return st, nil
}

// refuseDuplicate refuses a key that the keystore already holds under
// another name: two names for one key only confuse.
func refuseDuplicate(st *soft.Store, pub []byte) error {
	entries, _ := st.List()
	for _, en := range entries {
		if en.Err == nil && bytes.Equal(en.Key.Public, pub) {
			return hint.Wrap(fmt.Errorf("this key is already in %s, as %q", st.Dir, en.Name),
				"use that name (ocikp recipient "+en.Name+"), or delete it first (ocikp delete "+en.Name+")")
		}
	}
	for _, en := range keychain.RefsIn(st.Dir).List() {
		if en.Err == nil && bytes.Equal(en.Ref.Compressed(), pub) {
			return hint.Wrap(fmt.Errorf("this key is already recorded in %s, as %q", st.Dir, en.Name), "use that name")
		}
	}
	return nil
}

// cmdKMS: "kms pubkey URL" fetches the public key of an asymmetric KMS key
// through the plugin and caches it in the keystore, so that encrypting for
// it needs no KMS call. (GCP key versions are fetched on first use anyway.)
func cmdKMS(e *env, args []string) error {
	if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help") {
		usage.Print(e.stdout, "ocikp kms pubkey URL", summaryOf("kms"), nil)
		return nil
	}
	if len(args) == 0 || args[0] != "pubkey" {
		return usagef("usage: ocikp kms pubkey URL")
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

func cmdRecipient(e *env, args []string) error {
	name, st, err := e.nameAndStore(e.flags("recipient"), args)
	if err != nil {
		return err
	}
	k, err := st.Get(name)
	if errors.Is(err, soft.ErrNotFound) {
		if ref, rerr := keychain.RefsIn(st.Dir).Get(name); rerr == nil {
			fmt.Fprintln(e.stdout, ref.RecipientString())
			return nil
		}
	}
	if err != nil {
		return lookupErr(st, name, err)
	}
	fmt.Fprintln(e.stdout, k.RecipientString())
	return nil
}

func cmdDelete(e *env, args []string) error {
	fs := e.flags("delete")
	force := fs.Bool("force", false, "delete without asking (needed when stdin is not a terminal)")
	name, st, err := e.nameAndStore(fs, args)
	if err != nil {
		return err
	}
	if _, err := st.Get(name); err != nil {
		// Before asking: a typo should not be confirmed first.
		if err := lookupErr(st, name, err); errors.Is(err, soft.ErrNotFound) {
			return err
		}
	}
	if !*force {
		if err := e.confirmDelete(name); err != nil {
			return err
		}
	}
	if refs := keychain.RefsIn(st.Dir); soft.ValidName(name) && refs.Has(name) {
		return e.keychainDelete(refs, name)
	}
	if err := st.Delete(name); err != nil {
		return lookupErr(st, name, err)
	}
	fmt.Fprintf(e.stderr, "ocikp: deleted key %q from %s; layers encrypted only to it can no longer be decrypted\n", name, st.Dir)
	return nil
}

// confirmDelete asks at the terminal for the key's name before a delete.
func (e *env) confirmDelete(name string) error {
	if !e.stdinIsTTY {
		return usagef("delete asks for confirmation at a terminal; elsewhere pass --force")
	}
	fmt.Fprintf(e.stderr, "Layers encrypted only for %q can no longer be decrypted once it is deleted.\nType the key's name to delete it: ", name)
	line, err := bufio.NewReader(io.LimitReader(e.stdin, 256)).ReadString('\n')
	if strings.TrimSpace(line) != name {
		if err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		return errors.New("not deleted: the name typed did not match")
	}
	return nil
}

func cmdConfig(e *env, args []string) (err error) {
	fs := e.flags("config")
	name := fs.String("name", "ocikp", "provider name (the NAME in provider:NAME:…)")
	path := fs.String("path", "", "absolute `PATH` of the ocikp binary the callers run (default: this one; for a node, a system path such as /usr/local/bin/ocikp)")
	grpcAddr := fs.String("grpc", "", "point at an ocikp serve service at host:port or unix:///path instead")
	tlsCA := fs.String("tls-ca", "", "with --grpc: CA file that signed the service's certificate")
	tlsCert := fs.String("tls-cert", "", "with --grpc: client certificate (for --client-ca services)")
	tlsKey := fs.String("tls-key", "", "with --grpc: client key")
	serverName := fs.String("server-name", "", "with --grpc: name to verify in the service's certificate")
	containerd := fs.Bool("containerd", false, "print containerd's configuration (stream processors, and for 2.x local CRI pull) instead")
	ctdVersion := fs.String("containerd-version", "2", "with --containerd: `N` = 2 for containerd 2.x, 1 for 1.6 and 1.7")
	decoder := fs.String("decoder", "", "with --containerd: `PATH` of imgcrypt's ctd-decoder (default: found in PATH)")
	crio := fs.Bool("crio", false, "print a systemd drop-in that gives CRI-O the key provider config instead")
	noCheck := fs.Bool("no-check", false, "write the paths given even if they are not there (yet); by default --path, --keystore, --decoder, --tls-* and --keyprovider-config must exist, and an exec config for --containerd/--crio must run ocikp from outside a home directory")
	quadlet := fs.Bool("quadlet", false, "print a Quadlet .image unit that pulls and decrypts --image instead")
	image := fs.String("image", "", "with --quadlet: the encrypted image `REF`")
	output := fs.String("output", "", "write to `FILE` (atomically: whole or not at all) instead of stdout")
	allowClassical := fs.Bool("allow-classical", false, "let the provider mix post-quantum and classical-only recipients in one layer (adds --allow-classical to its args)")
	kpConfig := fs.String("keyprovider-config", DefaultKeyproviderConfig, "with --containerd/--crio/--quadlet: `FILE` where the output of plain \"ocikp config\" is saved (it must exist: it is read for the ocikp and keystore it names)")
	if _, err := e.parse(fs, args, 0, 0, "[--name NAME] [--keystore DIR] [--path BIN] | [--grpc ADDR [--tls-ca F] [--tls-cert F --tls-key F] [--server-name N]]\n       ocikp config --containerd [--containerd-version 2|1] [--decoder PATH] | --crio | --quadlet --image REF  [--keyprovider-config FILE] [--keystore DIR]\n       (each form takes --output FILE and --no-check; paths are absolute; --containerd and --crio give the runtime's ocikp --keystore DIR, else the config's, else "+DefaultNodeKeystore+")"); err != nil {
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

// promptPassphrase reads a line from the terminal without echo.
func promptPassphrase(prompt string) ([]byte, error) {
	tty, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
	if err != nil {
		return nil, hint.Wrap(errors.New("--passphrase needs a terminal"), "use --passphrase-file FILE instead")
	}
	defer tty.Close()
	fmt.Fprint(tty, prompt)
	p, err := readNoEcho(tty)
	fmt.Fprintln(tty)
	if err != nil {
		return nil, err
	}
	return p, nil
}
