package cli

import (
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/ocikp/ocikp/internal/hint"
)

// DefaultKeyproviderConfig is where the callers' configuration expects the
// OCICRYPT_KEYPROVIDER_CONFIG file unless --keyprovider-config says otherwise
// (written by plain "ocikp config").
const DefaultKeyproviderConfig = "/etc/ocikp/ocicrypt.json"

// DefaultNodeKeystore is the keystore the node recipes (--containerd,
// --crio) give the runtime's ocikp when neither --keystore nor the key
// provider config names one: a runtime's service has no home directory,
// so ocikp's per-user default does not exist there.
const DefaultNodeKeystore = "/etc/ocikp/keys"

// callerConfig is what "ocikp config --containerd/--crio/--quadlet" is given.
type callerConfig struct {
	providerName string
	kpConfig     string // the OCICRYPT_KEYPROVIDER_CONFIG file, absolute
	keystore     string // absolute, or "" when not given
	decoder      string // containerd: ctd-decoder's path
	version      string // containerd: --containerd-version ("" reads containerd --version)
	image        string // quadlet: the image reference
	check        bool   // check that the paths written exist (not --no-check)
}

// configValue refuses what the TOML and systemd quoting below cannot carry
// plainly: a path with a quote, a backslash or a control character.
func configValue(what, v string) error {
	if !utf8.ValidString(v) || strings.ContainsAny(v, "\"\\") || strings.IndexFunc(v, unicode.IsControl) >= 0 {
		return usagef("%s %.60q has a quote, backslash or control character; the caller's configuration cannot carry it", what, v)
	}
	return nil
}

// What a path that config writes must be, for checkPath.
type pathKind int

const (
	anyFile    pathKind = iota // a file the caller reads (the key provider config)
	executable                 // a program the caller runs
	directory                  // a keystore
	certFile                   // PEM certificates
	keyFile                    // a PEM private key
)

// checkPath checks a path that config writes into a caller's
// configuration: the caller (containerd, CRI-O, skopeo) reads it later,
// from another directory and maybe another machine's view of the file
// system, so a relative path is refused (never resolved against this
// directory), and unless check is false the file must already be there
// and be of its kind.
func checkPath(flagName, p string, kind pathKind, check bool) error {
	if p == "" {
		return nil
	}
	if err := configValue(flagName, p); err != nil {
		return err
	}
	if !filepath.IsAbs(p) {
		h := "give an absolute path"
		if abs, err := filepath.Abs(p); err == nil {
			if _, err := os.Stat(abs); err == nil {
				h = "give an absolute path: " + abs
			}
		}
		if kind == executable && !strings.Contains(p, "/") {
			if found, err := exec.LookPath(p); err == nil && filepath.IsAbs(found) {
				h = "give an absolute path; in PATH: " + found
			}
		}
		return hint.Wrap(usagef("%s %.80q is a relative path: the caller reads it from another directory", flagName, p), h)
	}
	if !check {
		return nil
	}
	noCheck := "or pass --no-check to write it as it is (it must be there when the caller runs)"
	fi, err := os.Stat(p)
	if err != nil {
		what := "create it"
		switch kind {
		case executable:
			what = "install it there"
		case directory:
			what = "create it (ocikp --keystore " + p + " keygen NAME, or import the keys there)"
		}
		return hint.Wrap(fmt.Errorf("%s %s: %w", flagName, p, pathErr(err)), what+", "+noCheck)
	}
	switch kind {
	case directory:
		if !fi.IsDir() {
			return hint.Wrap(fmt.Errorf("%s %s is not a directory", flagName, p), "name the keystore directory")
		}
		return nil
	case executable:
		if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
			return hint.Wrap(fmt.Errorf("%s %s is not an executable file", flagName, p), "chmod +x "+p+", or name the program itself")
		}
		return nil
	}
	if !fi.Mode().IsRegular() {
		return hint.Wrap(fmt.Errorf("%s %s is not a regular file", flagName, p), noCheck)
	}
	switch kind {
	case certFile:
		err = checkPEMFile(p, "CERTIFICATE")
	case keyFile:
		err = checkPEMFile(p, "PRIVATE KEY")
	}
	if err != nil {
		return hint.Wrap(fmt.Errorf("%s %s: %w", flagName, p, err), "name the PEM file itself, "+noCheck)
	}
	return nil
}

// pathErr is an os error without the path it repeats.
func pathErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// checkPEMFile reports whether path holds a PEM block whose type ends in
// want ("CERTIFICATE"; "PRIVATE KEY" for any key type). It does not parse
// the certificate: the exec binary links no x509 (ocikp-serve's health
// probe does, and doctor runs it). A file this user may not read is not
// an error: the caller may run as another user.
func checkPEMFile(path, want string) error {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrPermission) {
		return nil
	}
	if err != nil {
		return pathErr(err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, 1<<20))
	if err != nil {
		return pathErr(err)
	}
	for len(data) > 0 {
		var b *pem.Block
		if b, data = pem.Decode(data); b == nil {
			break
		}
		if strings.HasSuffix(b.Type, want) {
			return nil
		}
	}
	return fmt.Errorf("no PEM %s in it", want)
}

// inHomeDir reports whether path lies in a home directory: fine for a
// user's skopeo, not for a node's runtimes, which run as a service.
func inHomeDir(path string) bool {
	dirs := []string{"/home/", "/root/"}
	if h, err := os.UserHomeDir(); err == nil && h != "/" {
		dirs = append(dirs, strings.TrimSuffix(h, "/")+"/")
	}
	for _, d := range dirs {
		if strings.HasPrefix(path, d) {
			return true
		}
	}
	return false
}

// readEntry reads the key provider config at path and returns its entry
// for name.
func readEntry(path, name string) (*provider, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, hint.Wrap(fmt.Errorf("the key provider config %s: %w", path, pathErr(err)),
			"write it first: ocikp config --path /usr/local/bin/ocikp --keystore "+DefaultNodeKeystore+" --output "+path+" (or --grpc ADDR for a service)",
			"or pass --no-check to name it as it is")
	}
	var cfg struct {
		Providers map[string]*provider `json:"key-providers"`
	}
	if err := json.Unmarshal(data, &cfg); err != nil {
		return nil, hint.Wrap(fmt.Errorf("the key provider config %s is not valid JSON: %w", path, err), "write it anew with: ocikp config --output "+path)
	}
	p := cfg.Providers[name]
	if p == nil || (p.Cmd == nil && p.GRPC == "") {
		return nil, hint.Wrap(fmt.Errorf("the key provider config %s has no provider %q with a \"cmd\" or \"grpc\"", path, name),
			"write it with: ocikp config --name "+name+" … --output "+path+", or pass that config's provider name with --name")
	}
	p.Name = name
	return p, nil
}

// nodeCheck checks what a caller recipe points at, and settles the
// keystore it writes. containerd and CRI-O run ocikp as a service with no
// home directory, so an exec config's ocikp needs a keystore named for
// it: --keystore (written as given), else the config's own, else
// DefaultNodeKeystore. A service (grpc) reads its own keystore. An ocikp
// in a home directory works for root but breaks when that user's Go
// directory changes: a warning, not a refusal.
func (c *callerConfig) nodeCheck(e *env, node bool) error {
	if err := checkPath("--keystore", c.keystore, directory, c.check); err != nil {
		return err
	}
	if !c.check {
		if node && c.keystore == "" {
			c.keystore = DefaultNodeKeystore
		}
		return nil
	}
	p, err := readEntry(c.kpConfig, c.providerName)
	if err != nil {
		return err
	}
	if p.Cmd == nil {
		return nil // a service: its own keystore
	}
	what := fmt.Sprintf("the key provider config %s runs", c.kpConfig)
	if err := checkPath(what, p.Cmd.Path, executable, true); err != nil {
		return err
	}
	if node && inHomeDir(p.Cmd.Path) {
		fmt.Fprintf(e.stderr, "ocikp: warning: %s %s, inside a home directory; the runtime runs it as a service: install it at a system path and write the config for it: install -m 0755 %s /usr/local/bin/ocikp && ocikp config --path /usr/local/bin/ocikp --keystore %s --output %s\n",
			what, p.Cmd.Path, p.Cmd.Path, DefaultNodeKeystore, c.kpConfig)
	}
	if ks := flagValue(p.Cmd.Args, "keystore"); ks != "" {
		if c.keystore != "" && c.keystore != ks {
			return usagef("--keystore %s, but the key provider config %s runs ocikp with --keystore %s: ocikp would use that one", c.keystore, c.kpConfig, ks)
		}
		return checkPath(what+" with --keystore", ks, directory, true)
	}
	if c.keystore != "" {
		return nil
	}
	if node {
		c.keystore = DefaultNodeKeystore
		return checkPath("the default node keystore", c.keystore, directory, true)
	}
	return nil
}

// containerdDropIn prints a containerd configuration file to import
// (containerd 2 reads /etc/containerd/conf.d/*.toml by default).
func (e *env) containerdDropIn(c callerConfig) error {
	rel, err := readContainerdRelease(c.version)
	if err != nil {
		return err
	}
	if err := rel.check(); err != nil {
		return err
	}
	decoder := c.decoder
	if decoder == "" {
		p, err := exec.LookPath("ctd-decoder")
		if err != nil {
			return usagef("ctd-decoder (imgcrypt's stream processor) is not in PATH: install it, or name it with --decoder PATH")
		}
		decoder = p
	}
	if err := checkPath("--decoder", decoder, executable, c.check); err != nil {
		return err
	}
	if err := c.nodeCheck(e, true); err != nil {
		return err
	}
	checked := fmt.Sprintf("# Checked against containerd %s (%s).\n", rel.v, rel.source)
	if rel.v.MajorOnly && rel.v.Major == 2 {
		checked = "# containerd 2.x decrypts CRI pulls only from 2.1.7, 2.2.2 and 2.3.0 on\n# (containerd PR #12705); the release was not checked (--containerd-version 2).\n"
	} else if rel.v.MajorOnly {
		checked = ""
	}
	env := []string{"OCICRYPT_KEYPROVIDER_CONFIG=" + c.kpConfig}
	if c.keystore != "" {
		env = append(env, "OCIKP_KEYSTORE="+c.keystore)
	}
	quoted := make([]string, len(env))
	for i, v := range env {
		quoted[i] = fmt.Sprintf("%q", v)
	}
	var b strings.Builder
	switch rel.v.Major {
	case 2:
		fmt.Fprintf(&b, `# containerd 2.x: encrypted image layers decrypted by ocikp (provider %q).
# Save as /etc/containerd/conf.d/ocikp.toml, which the main config must
# import (containerd 2's default config has
# imports = ['/etc/containerd/conf.d/*.toml']), then restart containerd.
# Written by "ocikp config --containerd".
%sversion = 3

# containerd 2.1 and later pull Kubernetes (CRI) images through the Transfer
# Service, which starts the decoder without its payload: encrypted layers then
# fail to unpack ("read payload: read configFd: bad file descriptor") and
# ocikp is never asked. Local pull hands the decoder what it needs.
[plugins.'io.containerd.cri.v1.images']
  use_local_image_pull = true
`, c.providerName, checked)
	default:
		fmt.Fprintf(&b, `# containerd 1.6 and 1.7: encrypted image layers decrypted by ocikp (provider %q).
# Add the file to the main config's imports = [...] line, then restart
# containerd. Written by "ocikp config --containerd --containerd-version 1".
# The CRI plugin decrypts only with
# [plugins."io.containerd.grpc.v1.cri".image_decryption] key_model = "node",
# the default; this file leaves plugin sections alone because containerd 1.x
# replaces a whole plugin section when it imports one.
%sversion = 2
`, c.providerName, checked)
	}
	b.WriteString(`
# The decoders, under the IDs containerd's own use so that these replace them
# (the built-in ones pass --decryption-keys-path /etc/containerd/ocicrypt/keys
# and fail where it is missing). Pulls send no keys: ocikp finds its key from
# the layer and its keystore.
`)
	for _, id := range []struct{ id, mt string }{{"tar", "tar"}, {"tar.gzip", "tar+gzip"}} {
		fmt.Fprintf(&b, `[stream_processors.'io.containerd.ocicrypt.decoder.v1.%s']
  accepts = ["application/vnd.oci.image.layer.v1.%s+encrypted"]
  returns = "application/vnd.oci.image.layer.v1.%s"
  path = %q
  args = []
  env = [%s]
`, id.id, id.mt, id.mt, decoder, strings.Join(quoted, ", "))
	}
	_, err = fmt.Fprint(e.stdout, b.String())
	return err
}

// crioDropIn prints a systemd drop-in for the crio service: CRI-O decrypts
// in-process and has no key provider setting of its own.
func (e *env) crioDropIn(c callerConfig) error {
	if err := c.nodeCheck(e, true); err != nil {
		return err
	}
	var b strings.Builder
	fmt.Fprintf(&b, `# CRI-O: encrypted image layers decrypted by ocikp (provider %q).
# Save as /etc/systemd/system/crio.service.d/ocikp.conf, then
#   systemctl daemon-reload && systemctl restart crio
# CRI-O decrypts in-process and has no key provider setting of its own: its
# ocicrypt finds key providers only through this variable in its environment.
# Files in CRI-O's decryption_keys_path must be real private keys, not
# provider selectors; ocikp needs none there. Written by "ocikp config --crio".
[Service]
Environment="OCICRYPT_KEYPROVIDER_CONFIG=%s"
`, c.providerName, systemdEscape(c.kpConfig))
	if c.keystore != "" {
		fmt.Fprintf(&b, "Environment=\"OCIKP_KEYSTORE=%s\"\n", systemdEscape(c.keystore))
	}
	_, err := fmt.Fprint(e.stdout, b.String())
	return err
}

// quadletImage prints a Quadlet .image unit that pulls and decrypts.
func (e *env) quadletImage(c callerConfig) error {
	if c.image == "" {
		return usagef("--quadlet needs --image REF, the encrypted image the unit pulls")
	}
	if err := configValue("--image", c.image); err != nil {
		return err
	}
	if strings.ContainsFunc(c.image, unicode.IsSpace) {
		return usagef("--image %.60q has a space; an image reference has none", c.image)
	}
	if err := c.nodeCheck(e, false); err != nil {
		return err
	}
	var b strings.Builder
	fmt.Fprintf(&b, `# Quadlet: pull and decrypt an encrypted image with ocikp (provider %q).
# Save as /etc/containers/systemd/NAME.image and use NAME.image as the Image=
# of a .container unit; systemctl daemon-reload generates NAME-image.service.
# Written by "ocikp config --quadlet".
[Image]
Image=%s
DecryptionKey=provider:%s

[Service]
# podman finds key providers only through this variable.
Environment="OCICRYPT_KEYPROVIDER_CONFIG=%s"
`, c.providerName, systemdEscape(c.image), c.providerName, systemdEscape(c.kpConfig))
	if c.keystore != "" {
		fmt.Fprintf(&b, "Environment=\"OCIKP_KEYSTORE=%s\"\n", systemdEscape(c.keystore))
	}
	_, err := fmt.Fprint(e.stdout, b.String())
	return err
}

// systemdEscape doubles '%', systemd's specifier character; configValue
// has already refused quotes, backslashes and control characters.
func systemdEscape(s string) string { return strings.ReplaceAll(s, "%", "%%") }
