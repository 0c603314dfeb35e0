package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/ocikp/ocikp/backend"
	"github.com/ocikp/ocikp/envelope"
	"github.com/ocikp/ocikp/internal/hint"
	"github.com/ocikp/ocikp/internal/kmsconfig"
	"github.com/ocikp/ocikp/internal/safefile"
	"github.com/ocikp/ocikp/keyprovider"
	"github.com/ocikp/ocikp/keys/keychain"
	"github.com/ocikp/ocikp/keys/soft"
	"github.com/ocikp/ocikp/kms"
	"github.com/ocikp/ocikp/plugin"
)

// ocikp doctor checks what the callers (skopeo, podman, containerd, CRI-O)
// would find: the provider config they read, the ocikp it runs, the
// keystore, the KMS plugins and settings, a service it names. When ocikp is
// never run, the callers' own messages ("no wrapped keys produced by
// encryption", "missing private key needed for decryption") say nothing of
// why; doctor does.

// check is one line of the report.
type check struct {
	Name   string `json:"check"`
	Status string `json:"status"` // ok, warn, fail
	Detail string `json:"detail"`
	Fix    string `json:"fix,omitempty"`
}

type doctor struct {
	e      *env
	checks []check
	self   string // this executable
}

func (d *doctor) add(name, status, detail, fix string) {
	d.checks = append(d.checks, check{name, status, detail, fix})
}

func (d *doctor) ok(name, format string, args ...any) {
	d.add(name, "ok", fmt.Sprintf(format, args...), "")
}

func (d *doctor) warn(name, fix, format string, args ...any) {
	d.add(name, "warn", fmt.Sprintf(format, args...), fix)
}

func (d *doctor) fail(name, fix, format string, args ...any) {
	d.add(name, "fail", fmt.Sprintf(format, args...), fix)
}

func cmdDoctor(e *env, args []string) error {
	fs := e.flags("doctor")
	asJSON := fs.Bool("json", false, "print the checks as JSON")
	keys, err := e.parse(fs, args, 0, 32, "[--json] [provider:NAME[:VALUE] …]")
	if err != nil {
		return err
	}
	d := &doctor{e: e}
	if exe, err := os.Executable(); err == nil {
		d.self = exe
	}
	providers := d.checkConfig()
	ours := 0
	for _, p := range providers {
		d.checkProvider(p)
		if p.ours {
			ours++
		}
	}
	if len(providers) > 0 && ours == 0 {
		d.fail("config", configFix, "no provider of the config runs ocikp or names an ocikp service")
	}
	for _, k := range keys {
		d.checkKeyArg(k, providers)
	}
	d.checkMix(keys, providers)
	if svc := services(providers); len(svc) > 0 && len(svc) == len(providers) {
		if len(svc) == 1 {
			d.ok("keystore", "not read by the callers: provider %s is a service, which reads its own keystore", svc[0])
		} else {
			d.ok("keystore", "not read by the callers: providers %s are services, which read their own keystores", strings.Join(svc, ", "))
		}
	} else {
		d.checkKeystore(d.keystoreFor(providers))
	}
	d.checkKMS()
	d.checkContainerd()

	failed := 0
	for _, c := range d.checks {
		if c.Status == "fail" {
			failed++
		}
	}
	if *asJSON {
		b, _ := json.MarshalIndent(d.checks, "", "  ")
		fmt.Fprintf(e.stdout, "%s\n", b)
	} else {
		for _, c := range d.checks {
			fmt.Fprintf(e.stdout, "%-4s  %-10s  %s\n", c.Status, c.Name, oneLine(c.Detail))
			if c.Fix != "" {
				fmt.Fprintf(e.stdout, "      %-10s  fix: %s\n", "", oneLine(c.Fix))
			}
		}
	}
	if failed > 0 {
		return errDoctor{failed}
	}
	return nil
}

// errDoctor makes doctor exit 1 with its report already printed.
type errDoctor struct{ n int }

func (e errDoctor) Error() string { return fmt.Sprintf("%d check(s) failed; see the fixes above", e.n) }

// provider is one entry of the callers' config.
type provider struct {
	Name string
	Cmd  *struct {
		Path string   `json:"path"`
		Args []string `json:"args"`
	} `json:"cmd"`
	GRPC string `json:"grpc"`
	TLS  *struct {
		RootCA     string `json:"root-ca-file"`
		Cert       string `json:"cert-file"`
		Key        string `json:"key-file"`
		ServerName string `json:"server-name"`
	} `json:"grpc-tls"`
	ours bool // runs this ocikp (exec) or names an ocikp service (grpc)
}

const configFix = "mkdir -p ~/.config/ocikp && ocikp config --name ocikp > ~/.config/ocikp/ocicrypt.json && export OCICRYPT_KEYPROVIDER_CONFIG=~/.config/ocikp/ocicrypt.json (for containerd and CRI-O: in their service's environment)"

// checkConfig reads OCICRYPT_KEYPROVIDER_CONFIG as ocicrypt does.
func (d *doctor) checkConfig() []*provider {
	path := os.Getenv("OCICRYPT_KEYPROVIDER_CONFIG")
	if path == "" {
		d.fail("config", configFix, "OCICRYPT_KEYPROVIDER_CONFIG is not set: skopeo, podman and buildah run no key provider (\"no wrapped keys produced by encryption\")")
		return nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		d.fail("config", configFix, "OCICRYPT_KEYPROVIDER_CONFIG=%s: %v", path, errors.Unwrap(err))
		return nil
	}
	var cfg struct {
		Providers map[string]json.RawMessage `json:"key-providers"`
	}
	if err := json.Unmarshal(data, &cfg); err != nil {
		d.fail("config", "fix the JSON, or write it anew with: ocikp config > "+path, "%s is not valid JSON: %v", path, err)
		return nil
	}
	if len(cfg.Providers) == 0 {
		d.fail("config", "add an entry with: ocikp config > "+path, "%s names no key providers (no \"key-providers\" object)", path)
		return nil
	}
	var out []*provider
	var names []string
	for name, raw := range cfg.Providers {
		p := &provider{Name: name}
		if err := json.Unmarshal(raw, p); err != nil || (p.Cmd == nil && p.GRPC == "") {
			d.fail("config", "each entry needs \"cmd\" or \"grpc\" (ocikp config writes one)", "provider %q in %s has neither a valid \"cmd\" nor \"grpc\"", name, path)
			continue
		}
		out = append(out, p)
		names = append(names, name)
	}
	slices.Sort(names)
	slices.SortFunc(out, func(a, b *provider) int { return strings.Compare(a.Name, b.Name) })
	d.ok("config", "%s names provider(s) %s", path, strings.Join(names, ", "))
	return out
}

// checkProvider checks what one entry runs.
func (d *doctor) checkProvider(p *provider) {
	name := "provider " + p.Name
	if p.GRPC != "" {
		d.checkService(p)
		return
	}
	path := p.Cmd.Path
	fi, err := os.Stat(path)
	switch {
	case !filepath.IsAbs(path):
		d.fail(name, "use an absolute path: ocikp config writes one", "runs %q, not an absolute path (containerd and CRI-O run it without a shell or your PATH)", path)
		return
	case err != nil:
		d.fail(name, "install ocikp there, or write the entry anew with: ocikp config --name "+p.Name, "runs %s, which does not exist", path)
		return
	case fi.IsDir() || fi.Mode().Perm()&0o111 == 0:
		d.fail(name, "chmod +x "+path, "runs %s, which is not an executable file", path)
		return
	}
	sibling := ""
	if filepath.Base(path) == "ocikp-unwrap" {
		// It answers software-key requests itself and hands the rest to
		// the ocikp in its own directory.
		target, err := filepath.EvalSymlinks(path)
		if err != nil {
			target = path
		}
		sibling = filepath.Join(filepath.Dir(target), "ocikp")
		if fi, err := os.Stat(sibling); err != nil || fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
			d.fail(name, "install ocikp beside it, from the same build: install -m 0755 \"$(command -v ocikp)\" "+filepath.Dir(target)+"/",
				"runs %s, which hands every request it does not answer itself to %s, which is not an executable file", path, sibling)
			return
		}
	}
	out, err := runQuiet(path, "version")
	if err != nil || !strings.HasPrefix(out, "ocikp ") {
		d.warn(name, "", "runs %s, which is not ocikp (its \"version\" said %q)", path, firstLine(out))
		return
	}
	p.ours = true
	if sibling != "" {
		// Its answers must be that ocikp's: an ocikp-unwrap left behind by
		// an upgrade would answer with the old build's checks.
		theirs, err := runQuiet(sibling, "version")
		if err != nil || strings.TrimSpace(theirs) != strings.TrimSpace(out) {
			d.fail(name, "install both from one build: install -m 0755 ocikp ocikp-unwrap "+filepath.Dir(sibling)+"/",
				"runs %s (%s), which hands the requests it does not answer to %s (%s): another build, whose answers may differ from its own",
				path, firstLine(out), sibling, firstLine(theirs))
			return
		}
	}
	mine := strings.TrimSpace(versionString())
	if theirs := strings.TrimSpace(out); theirs != mine && !sameFile(path, d.self) {
		d.warn(name, "run that ocikp's doctor, or point the entry at this one: ocikp config --name "+p.Name,
			"runs %s (%s), not this ocikp (%s)", path, theirs, mine)
	}
	args := p.Cmd.Args
	if len(args) == 0 || args[0] != "keyprovider" {
		d.fail(name, "its args must start with \"keyprovider\": ocikp config --name "+p.Name, "runs %s with args %q: not the keyprovider command", path, args)
		return
	}
	if n := flagValue(args, "name"); n != "" && n != p.Name {
		d.fail(name, fmt.Sprintf("make them agree: ocikp config --name %s (and encrypt with provider:%s:…)", p.Name, p.Name),
			"is named %q in the config but runs ocikp with --name %s: ocikp looks for its keys under %q, the callers send them under %q", p.Name, n, n, p.Name)
		return
	}
	d.ok(name, "runs %s %s", path, strings.Join(args, " "))
}

// checkService checks a gRPC entry: the TLS files it names, then the
// service's health through ocikp-serve (the exec binary links no gRPC and
// no x509). Every fix keeps the entry a gRPC one.
func (d *doctor) checkService(p *provider) {
	name := "provider " + p.Name
	// The entry names a service: whether it answers is this check's
	// business, not a reason to propose an exec config instead.
	p.ours = true
	tlsNote := ""
	if p.TLS != nil {
		tlsNote = " (TLS)"
	}
	t := p.TLS
	if t == nil {
		t = &struct {
			RootCA     string `json:"root-ca-file"`
			Cert       string `json:"cert-file"`
			Key        string `json:"key-file"`
			ServerName string `json:"server-name"`
		}{}
	}
	files := []struct{ field, path, flag, want, what string }{
		{"root-ca-file", t.RootCA, "--tls-ca", "CERTIFICATE", "the service's CA certificate"},
		{"cert-file", t.Cert, "--tls-cert", "CERTIFICATE", "the client certificate"},
		{"key-file", t.Key, "--tls-key", "PRIVATE KEY", "the client key"},
	}
	// rewrite is the config command that writes this entry anew, with bad
	// as the flag whose file must change.
	rewrite := func(addr, bad string) string {
		cmd := "ocikp config --name " + p.Name + " --grpc " + addr
		for _, f := range files {
			switch {
			case f.flag == bad:
				cmd += " " + f.flag + " /ABSOLUTE/" + filepath.Base(f.path)
			case f.path != "":
				cmd += " " + f.flag + " " + f.path
			}
		}
		if t.ServerName != "" {
			cmd += " --server-name " + t.ServerName
		}
		if cfg := os.Getenv("OCICRYPT_KEYPROVIDER_CONFIG"); cfg != "" {
			cmd += " --output " + cfg
		}
		return cmd
	}
	args := []string{"health", "--grpc", p.GRPC, "--timeout", "3s"}
	for _, f := range files {
		if f.path == "" {
			continue
		}
		if !filepath.IsAbs(f.path) {
			d.fail(name, "write the entry with absolute paths: "+rewrite(p.GRPC, f.flag),
				"the service %s's %s %q is a relative path: each caller reads it from its own directory", p.GRPC, f.field, f.path)
			return
		}
		if err := checkPEMFile(f.path, f.want); err != nil {
			d.fail(name, fmt.Sprintf("put %s at %s, or write the entry anew with the right file: %s", f.what, f.path, rewrite(p.GRPC, f.flag)),
				"the service %s's %s %s: %v", p.GRPC, f.field, f.path, err)
			return
		}
		args = append(args, f.flag, f.path)
	}
	if t.ServerName != "" {
		args = append(args, "--server-name", t.ServerName)
	}
	serve, err := (&plugin.Client{Name: "ocikp-serve"}).Find()
	if err != nil {
		d.warn(name, "install ocikp-serve beside ocikp (go install ./cmd/ocikp-serve)", "points at the service %s%s; ocikp-serve, which doctor asks it with, is not installed", p.GRPC, tlsNote)
		return
	}
	out, err := runQuiet(serve, args...)
	if err == nil {
		d.ok(name, "points at the service %s%s, which serves", p.GRPC, tlsNote)
		return
	}
	msg := strings.TrimPrefix(firstLine(out), "ocikp: error: ")
	var fix string
	switch {
	case strings.HasPrefix(msg, "--tls-ca:"):
		fix = "put the service's CA certificate (PEM) at " + t.RootCA + ", or write the entry anew: " + rewrite(p.GRPC, "--tls-ca")
	case strings.HasPrefix(msg, "client certificate:"):
		fix = "put the client's certificate and key (PEM, a pair) at " + t.Cert + " and " + t.Key + ", or write the entry anew: " + rewrite(p.GRPC, "--tls-cert")
	case p.TLS != nil && (strings.Contains(msg, "certificate") || strings.Contains(msg, "tls:")):
		fix = "the config's --tls-ca must be the CA that signed the service's certificate, and --server-name a name in it: " + rewrite(p.GRPC, "--tls-ca")
	default:
		start := "ocikp serve --listen " + p.GRPC
		if p.TLS != nil {
			start += " --tls-cert SERVER.pem --tls-key SERVER-key.pem"
		}
		fix = "start the service: " + start + " --keystore DIR (or its systemd unit or DaemonSet); or, if it listens elsewhere: " + rewrite("ADDR", "")
	}
	d.fail(name, fix, "points at the service %s%s, which does not answer: %s", p.GRPC, tlsNote, msg)
}

// services lists the config's gRPC entries.
func services(providers []*provider) []string {
	var out []string
	for _, p := range providers {
		if p.GRPC != "" {
			out = append(out, p.Name)
		}
	}
	return out
}

// checkMix applies the mixing rule to what the key args give each
// provider of the config, as that provider applies it when a caller wraps
// a layer for all of them in one call: a refusal there is a failure here.
// The rule and its hints are the provider's own (keyprovider.CheckMix).
func (d *doctor) checkMix(keys []string, providers []*provider) {
	for _, p := range providers {
		var values []string
		for _, k := range keys {
			rest, _ := strings.CutPrefix(k, "provider:")
			if n, v, _ := strings.Cut(rest, ":"); n == p.Name && v != "" {
				values = append(values, v)
			}
		}
		if len(values) < 2 {
			continue
		}
		service := p.Cmd == nil
		kp := &keyprovider.Provider{Name: p.Name, Store: &soft.Store{Dir: d.keystoreFor([]*provider{p})}, Remote: service}
		if !service {
			// The entry written anew as it is, plus the flag.
			kp.AllowClassicalHint = "ocikp config --name " + p.Name + " --path " + p.Cmd.Path
			if ks := flagValue(p.Cmd.Args, "keystore"); ks != "" {
				kp.AllowClassicalHint += " --keystore " + ks
			}
			kp.AllowClassicalHint += " --allow-classical"
			if cfg := os.Getenv("OCICRYPT_KEYPROVIDER_CONFIG"); cfg != "" {
				kp.AllowClassicalHint += " --output " + cfg
			}
		}
		var rs []envelope.Recipient
		pq := 0
		for _, v := range values {
			// A service resolves key names in its own keystore, which
			// doctor cannot see; only recipient strings count there.
			if service && !backend.IsRecipient(v) {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			r, err := kp.RecipientFor(ctx, v)
			cancel()
			if err != nil {
				continue // reported by checkKeyArg
			}
			rs = append(rs, r)
			if backend.StrengthOf(r) == backend.PostQuantum {
				pq++
			}
		}
		kp.Close(true)
		if len(rs) < 2 {
			continue
		}
		err := kp.CheckMix(rs)
		switch {
		case err == nil && pq == len(rs):
			d.ok("mix", "provider:%s: %d recipient(s), all post-quantum", p.Name, len(rs))
		case err == nil:
			d.ok("mix", "provider:%s: %d recipient(s), all classical-only (P-256, RSA): no post-quantum protection, but no refusal", p.Name, len(rs))
		case service:
			d.warn("mix", strings.Join(hint.Of(err), "; "), "provider:%s: %v; the service refuses it unless it runs with --allow-classical", p.Name, err)
		case hasFlag(p.Cmd.Args, "allow-classical"):
			d.warn("mix", firstHint(err), "provider:%s: %v; the config's ocikp runs with --allow-classical, so it is accepted", p.Name, err)
		default:
			d.fail("mix", strings.Join(hint.Of(err), "; "), "provider:%s: %v", p.Name, err)
		}
	}
}

// hasFlag reports whether a boolean flag is set in args (--f, -f,
// --f=true).
func hasFlag(args []string, name string) bool {
	for _, a := range args {
		a = strings.TrimLeft(a, "-")
		if a == name || a == name+"=true" {
			return true
		}
	}
	return false
}

// checkKeyArg checks a --encryption-key or --decryption-key value as the
// user would pass it: provider:NAME[:VALUE].
func (d *doctor) checkKeyArg(arg string, providers []*provider) {
	name := "key arg"
	rest, ok := strings.CutPrefix(arg, "provider:")
	if !ok {
		d.fail(name, "ocikp keys are passed as provider:NAME:VALUE", "%.80q does not start with provider:", arg)
		return
	}
	pname, value, _ := strings.Cut(rest, ":")
	var known []string
	var match *provider
	for _, p := range providers {
		known = append(known, p.Name)
		if p.Name == pname {
			match = p
		}
	}
	if match == nil {
		d.fail(name, "use one of: "+strings.Join(known, ", "), "provider:%s names no provider of the config: ocicrypt skips it (\"no wrapped keys produced by encryption\", or \"missing private key needed for decryption\")", pname)
		return
	}
	if value == "" {
		d.ok(name, "provider:%s: every key of the keystore is tried", pname)
		return
	}
	if err := checkRecipient(value); err == nil {
		d.ok(name, "provider:%s:%.40s… is a recipient", pname, value)
		return
	} else if !errors.Is(err, backend.ErrUnknown) {
		d.fail(name, "copy it again from: ocikp recipient KEYNAME", "provider:%s:%.40s…: %v", pname, value, err)
		return
	}
	if match.GRPC != "" {
		d.warn(name, "", "provider:%s:%.40s: a key name, which the service resolves in its own keystore; doctor cannot check it from here", pname, value)
		return
	}
	if soft.ValidName(value) {
		if _, err := (&soft.Store{Dir: d.keystoreFor(providers)}).Get(value); err == nil {
			d.ok(name, "provider:%s:%s names a key of the keystore", pname, value)
			return
		}
		d.fail(name, "list keys with: ocikp list", "provider:%s:%s: no key of that name in %s", pname, value, d.keystoreFor(providers))
		return
	}
	d.fail(name, "recipients come from ocikp recipient KEYNAME", "provider:%s:%.40s…: not an ocikp recipient or key name", pname, value)
}

// keystoreFor is the keystore the callers' ocikp would use: the one an
// entry's args name, else this environment's.
func (d *doctor) keystoreFor(providers []*provider) string {
	for _, p := range providers {
		if p.Cmd != nil && p.ours {
			if ks := flagValue(p.Cmd.Args, "keystore"); ks != "" {
				return ks
			}
		}
	}
	dir, _ := soft.DefaultDir(d.e.keystore)
	return dir
}

func (d *doctor) checkKeystore(dir string) {
	const name = "keystore"
	if dir == "" {
		d.fail(name, "set OCIKP_KEYSTORE or pass --keystore DIR", "no keystore location (no home directory)")
		return
	}
	if err := safefile.CheckDir(dir); errors.Is(err, fs.ErrNotExist) {
		d.fail(name, "create a key with: ocikp keygen NAME (or import one)", "%s does not exist", dir)
		return
	} else if err != nil {
		d.fail(name, firstHint(err), "%v", err)
		return
	}
	st := &soft.Store{Dir: dir}
	entries, err := st.List()
	if err != nil {
		d.fail(name, "", "%v", err)
		return
	}
	usable := 0
	for _, en := range entries {
		if en.Err != nil {
			d.fail("key "+en.Name, firstHint(en.Err), "%v", en.Err)
			continue
		}
		usable++
	}
	for _, en := range keychain.RefsIn(dir).List() {
		if en.Err == nil {
			usable++
		}
	}
	usable += d.checkPKCS11(dir)
	usable += d.checkTPM(dir)
	cached := len((&keyprovider.Provider{Store: st}).KMSCache().List())
	if usable == 0 {
		d.warn(name, "create a key with: ocikp keygen NAME", "%s has no usable keys (%d cached KMS public keys): layers decrypt only through a KMS", dir, cached)
		return
	}
	d.ok(name, "%s: %d usable key(s), %d cached KMS public key(s)", dir, usable, cached)
}

// checkKMS reports the KMS plugins installed and, for each, whether its
// cloud's settings are present (the plugin reads them; doctor only looks).
func (d *doctor) checkKMS() {
	settings := kmsconfig.SettingsFile()
	sections := map[string]bool{}
	if data, err := os.ReadFile(settings); err == nil {
		var m map[string]json.RawMessage
		if json.Unmarshal(data, &m) != nil {
			d.fail("kms", "fix the JSON of "+settings, "the KMS settings file %s is not valid JSON", settings)
		}
		for k := range m {
			sections[k] = true
		}
	} else if os.Getenv(kmsconfig.EnvConfig) != "" {
		d.fail("kms", "create it, or unset "+kmsconfig.EnvConfig, "%s=%s: %v", kmsconfig.EnvConfig, settings, errors.Unwrap(err))
	}
	clouds := []struct {
		plugin, section string
		env             []string
	}{
		{"ocikp-plugin-gcpkms", "gcp", []string{"GOOGLE_APPLICATION_CREDENTIALS", "OCIKP_GCPKMS_CREDENTIALS", "OCIKP_GCPKMS_ENDPOINT"}},
		{"ocikp-plugin-awskms", "aws", []string{"AWS_PROFILE", "AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_ROLE_ARN", "OCIKP_AWS_PROFILE"}},
		{"ocikp-plugin-azurekms", "azure", []string{"AZURE_CLIENT_ID", "AZURE_TENANT_ID", "OCIKP_AZURE_ACCESS_TOKEN"}},
		{"ocikp-plugin-hashivault", "vault", []string{"VAULT_ADDR", "VAULT_TOKEN", "OCIKP_VAULT_TOKEN_FILE"}},
	}
	var found, missing []string
	for _, c := range clouds {
		path, err := (&plugin.Client{Name: c.plugin}).Find()
		if err != nil {
			missing = append(missing, c.plugin)
			continue
		}
		if _, err := os.Stat(path); err != nil {
			missing = append(missing, c.plugin)
			continue
		}
		var set []string
		for _, v := range c.env {
			if os.Getenv(v) != "" {
				set = append(set, v)
			}
		}
		if sections[c.section] {
			set = append(set, fmt.Sprintf("%q in %s", c.section, settings))
		}
		if len(set) == 0 {
			set = []string{"no settings (the SDK's defaults)"}
		}
		found = append(found, fmt.Sprintf("%s (%s)", strings.TrimPrefix(c.plugin, "ocikp-plugin-"), strings.Join(set, ", ")))
	}
	switch {
	case len(found) == 0:
		d.warn("kms", "for KMS keys, install the plugins beside ocikp: go install ./cmd/...", "no KMS plugins installed: software keys only")
	case len(missing) > 0:
		d.ok("kms", "plugins: %s; not installed: %s", strings.Join(found, "; "), strings.Join(missing, ", "))
	default:
		d.ok("kms", "plugins: %s", strings.Join(found, "; "))
	}
}

// runQuiet runs a program for at most 5 s and returns the first 64 KiB of
// its output. A child it leaves behind holding the output open is not
// waited for past that (WaitDelay): a config may name any program.
func runQuiet(path string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out := &capped{max: 64 << 10}
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Stdin = nil
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	return string(out.b), err
}

// firstHint is the first hint of err, as a fix ("" if none).
func firstHint(err error) string {
	if h := hint.Of(err); len(h) > 0 {
		return h[0]
	}
	return ""
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return line
}

// flagValue returns the value of --name or -name in args ("" if absent).
func flagValue(args []string, name string) string {
	for i, a := range args {
		a = strings.TrimLeft(a, "-")
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v
		}
		if a == name && i+1 < len(args) && strings.HasPrefix(args[i], "-") {
			return args[i+1]
		}
	}
	return ""
}

func sameFile(a, b string) bool {
	fa, err1 := os.Stat(a)
	fb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(fa, fb)
}

// checkRecipient parses a recipient string offline: no KMS plugin starts
// (a KMS URL's form is checked, not the key).
func checkRecipient(v string) error {
	if kms.IsURL(v) {
		_, _, err := backend.Decrypt(backend.Background{}, v)
		return err
	}
	_, err := backend.Recipient(backend.Background{}, v)
	return err
}
