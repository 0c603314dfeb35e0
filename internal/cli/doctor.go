package cli

import (
	"bytes"
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
	d.checkKeystore(d.keystoreFor(providers))
	d.checkKMS()

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
	out, err := runQuiet(path, "version")
	if err != nil || !strings.HasPrefix(out, "ocikp ") {
		d.warn(name, "", "runs %s, which is not ocikp (its \"version\" said %q)", path, firstLine(out))
		return
	}
	p.ours = true
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

// checkService asks an ocikp serve service for its health through
// ocikp-serve (the exec binary links no gRPC).
func (d *doctor) checkService(p *provider) {
	name := "provider " + p.Name
	args := []string{"health", "--grpc", p.GRPC, "--timeout", "3s"}
	if t := p.TLS; t != nil {
		for f, v := range map[string]string{"--tls-ca": t.RootCA, "--tls-cert": t.Cert, "--tls-key": t.Key, "--server-name": t.ServerName} {
			if v != "" {
				args = append(args, f, v)
			}
		}
	}
	serve, err := (&plugin.Client{Name: "ocikp-serve"}).Find()
	if err != nil {
		d.warn(name, "install ocikp-serve beside ocikp (go install ./cmd/...)", "points at the service %s; ocikp-serve, which doctor asks it with, is not installed", p.GRPC)
		return
	}
	out, err := runQuiet(serve, args...)
	if err != nil {
		d.fail(name, "start it (ocikp serve --listen "+p.GRPC+"), or fix the address in the config", "points at the service %s, which does not answer: %s", p.GRPC, firstLine(out))
		return
	}
	p.ours = true
	d.ok(name, "points at the service %s, which serves", p.GRPC)
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

// runQuiet runs a program for at most 5 s and returns its output.
func runQuiet(path string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.Stdin = nil
	err := cmd.Run()
	return out.String(), err
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
