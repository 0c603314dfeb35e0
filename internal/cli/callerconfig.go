package cli

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"unicode"
	"unicode/utf8"
)

// DefaultKeyproviderConfig is where the callers' configuration expects the
// OCICRYPT_KEYPROVIDER_CONFIG file unless --keyprovider-config says otherwise
// (written by plain "ocikp config").
const DefaultKeyproviderConfig = "/etc/ocikp/ocicrypt.json"

// callerConfig is what "ocikp config --containerd/--crio/--quadlet" is given.
type callerConfig struct {
	providerName string
	kpConfig     string // the OCICRYPT_KEYPROVIDER_CONFIG file, absolute
	keystore     string // absolute, or "" when not given
	decoder      string // containerd: ctd-decoder's path
	version      string // containerd: "2" (2.x) or "1" (1.6, 1.7)
	image        string // quadlet: the image reference
}

// configValue refuses what the TOML and systemd quoting below cannot carry
// plainly: a path with a quote, a backslash or a control character.
func configValue(what, v string) error {
	if !utf8.ValidString(v) || strings.ContainsAny(v, "\"\\") || strings.IndexFunc(v, unicode.IsControl) >= 0 {
		return usagef("%s %.60q has a quote, backslash or control character; the caller's configuration cannot carry it", what, v)
	}
	return nil
}

func absConfigPath(what, p string) (string, error) {
	if p == "" {
		return "", nil
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	return abs, configValue(what, abs)
}

// containerdDropIn prints a containerd configuration file to import
// (containerd 2 reads /etc/containerd/conf.d/*.toml by default).
func (e *env) containerdDropIn(c callerConfig) error {
	decoder := c.decoder
	if decoder == "" {
		p, err := exec.LookPath("ctd-decoder")
		if err != nil {
			return usagef("ctd-decoder (imgcrypt's stream processor) is not in PATH: install it, or name it with --decoder PATH")
		}
		decoder = p
	}
	decoder, err := absConfigPath("--decoder", decoder)
	if err != nil {
		return err
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
	switch c.version {
	case "2":
		fmt.Fprintf(&b, `# containerd 2.x: encrypted image layers decrypted by ocikp (provider %q).
# Save as /etc/containerd/conf.d/ocikp.toml, which the main config must
# import (containerd 2's default config has
# imports = ['/etc/containerd/conf.d/*.toml']), then restart containerd.
# Written by "ocikp config --containerd".
version = 3

# containerd 2.1 and later pull Kubernetes (CRI) images through the Transfer
# Service, which starts the decoder without its payload: encrypted layers then
# fail to unpack ("read payload: read configFd: bad file descriptor") and
# ocikp is never asked. Local pull hands the decoder what it needs.
[plugins.'io.containerd.cri.v1.images']
  use_local_image_pull = true
`, c.providerName)
	case "1":
		fmt.Fprintf(&b, `# containerd 1.6 and 1.7: encrypted image layers decrypted by ocikp (provider %q).
# Add the file to the main config's imports = [...] line, then restart
# containerd. Written by "ocikp config --containerd --containerd-version 1".
# The CRI plugin decrypts only with
# [plugins."io.containerd.grpc.v1.cri".image_decryption] key_model = "node",
# the default; this file leaves plugin sections alone because containerd 1.x
# replaces a whole plugin section when it imports one.
version = 2
`, c.providerName)
	default:
		return usagef("--containerd-version is 2 (containerd 2.x) or 1 (containerd 1.6 and 1.7), not %.20q", c.version)
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
