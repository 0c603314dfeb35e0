// Package imagecli is the ocikp-image executable: the commands that read
// and rewrite encrypted images in registries and OCI layouts (inspect,
// rewrap). They link a registry client, so they live apart from the exec
// provider; "ocikp inspect" and "ocikp rewrap" run this program.
package imagecli

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/ocikp/ocikp/imagekeys"
	"github.com/ocikp/ocikp/imageref"
	"github.com/ocikp/ocikp/internal/hint"
	"github.com/ocikp/ocikp/internal/safetext"
	"github.com/ocikp/ocikp/internal/usage"
	"github.com/ocikp/ocikp/keyprovider"
	"github.com/ocikp/ocikp/keys/soft"
	"github.com/ocikp/ocikp/kms"
)

type usageErr struct{ msg string }

func (e *usageErr) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageErr{fmt.Sprintf(format, args...)} }

// Main runs "ocikp-image CMD ARGS" and returns the exit code.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(args) == 0 {
		fmt.Fprintln(stderr, "ocikp: error: ocikp-image needs a command: inspect, rewrap or migrate")
		return 2
	}
	// Everything printed passes safetext (see output.go).
	c := &cmd{name: args[0], stdin: stdin, stdout: safetext.Writer(stdout), stderr: safetext.Writer(stderr)}
	var err error
	switch args[0] {
	case "inspect":
		err = c.inspect(ctx, args[1:])
	case "rewrap":
		err = c.rewrap(ctx, args[1:])
	case "migrate":
		err = c.migrate(ctx, args[1:])
	default:
		err = usagef("unknown command %.40q (inspect, rewrap, migrate)", args[0])
	}
	if err == nil {
		return 0
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	printError(stderr, err)
	var ue *usageErr
	if errors.As(err, &ue) {
		fmt.Fprintf(stderr, "ocikp: hint: run 'ocikp %s --help' for usage\n", c.name)
		return 2
	}
	return 1
}

func printError(w io.Writer, err error) { hint.Print(w, err) }

func oneLine(s string) string { return hint.OneLine(s) }

type cmd struct {
	name           string
	stdin          io.Reader
	stdout, stderr io.Writer

	keystore, providerName, creds, authfile string
	tlsVerify                               bool
	asJSON                                  bool
	kmsConfig                               string
	allowClassical                          bool
}

// flags returns a flag set with the options every command shares.
func (c *cmd) flags() *flag.FlagSet {
	fs := flag.NewFlagSet("ocikp "+c.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&c.keystore, "keystore", "", "keystore `DIR` (default $OCIKP_KEYSTORE, else the XDG default)")
	fs.StringVar(&c.providerName, "name", "ocikp", "provider `NAME` of the annotations (provider:NAME)")
	fs.BoolVar(&c.tlsVerify, "tls-verify", true, "HTTPS with verified certificates; a registry at localhost:PORT, *.localhost, 127.0.0.1, ::1 or a private address (10/8, 172.16/12, 192.168/16) may also answer on plain HTTP. --tls-verify=false (as skopeo spells it): plain HTTP or unverified HTTPS for any registry")
	fs.StringVar(&c.creds, "creds", "", "registry credentials `USER[:PASSWORD]` (default: auth.json, Docker's config and its credential helpers)")
	fs.StringVar(&c.authfile, "authfile", "", "containers auth.json `FILE` (default $REGISTRY_AUTH_FILE, then $XDG_RUNTIME_DIR/containers/auth.json)")
	fs.BoolVar(&c.asJSON, "json", false, "print JSON")
	fs.StringVar(&c.kmsConfig, "kms-config", "", "KMS settings `FILE` (default $OCIKP_KMS_CONFIG, else ~/.config/ocikp/kms.json)")
	return fs
}

func (c *cmd) parse(fs *flag.FlagSet, args []string, line, summary string) ([]string, error) {
	// Flags may follow the image names, as elsewhere in ocikp.
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				usage.Print(c.stdout, line, summary, fs)
				return nil, err
			}
			return nil, usagef("%v", err)
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
	return pos, nil
}

func (c *cmd) registryOptions() (imagekeys.RegistryOptions, error) {
	o := imagekeys.RegistryOptions{Insecure: !c.tlsVerify, UserAgent: "ocikp-image"}
	if c.authfile != "" {
		os.Setenv("REGISTRY_AUTH_FILE", c.authfile)
	}
	if c.creds != "" {
		user, pass, _ := strings.Cut(c.creds, ":")
		if user == "" {
			return o, usagef("--creds: want USER[:PASSWORD]")
		}
		o.Auth = &authn.Basic{Username: user, Password: pass}
	}
	return o, nil
}

// provider is the keystore and KMS plugins that open and wrap file keys.
func (c *cmd) provider() (*keyprovider.Provider, func(), error) {
	dir, err := soft.DefaultDir(c.keystore)
	if err != nil {
		return nil, nil, err
	}
	plugins, err := kms.New(kms.Settings{ConfigFile: c.kmsConfig})
	if err != nil {
		return nil, nil, err
	}
	// CacheKeys: one process opens many layers; the keystore is listed
	// once (again only if it changes), not once per layer.
	p := &keyprovider.Provider{Name: c.providerName, Store: &soft.Store{Dir: dir}, CacheKeys: true, KMS: plugins,
		AllowClassical: c.allowClassical, AllowClassicalHint: "ocikp " + c.name + " --allow-classical",
		Warn: func(msg string) { fmt.Fprintf(c.stderr, "ocikp: warning: %s\n", oneLine(msg)) }}
	return p, func() { p.Close(true) }, nil
}

// images returns the names given, or read from stdin when the only name
// is "-" (one per line).
func (c *cmd) images(pos []string) ([]string, error) {
	if len(pos) == 1 && pos[0] == "-" {
		var out []string
		sc := bufio.NewScanner(io.LimitReader(c.stdin, 16<<20))
		for sc.Scan() {
			if s := strings.TrimSpace(sc.Text()); s != "" && !strings.HasPrefix(s, "#") {
				out = append(out, s)
			}
		}
		return out, sc.Err()
	}
	return pos, nil
}

func (c *cmd) open(ctx context.Context, s string) (*imagekeys.Image, imagekeys.Store, *imageref.Ref, error) {
	r, err := imageref.Parse(s, !c.tlsVerify)
	if err != nil {
		return nil, nil, nil, hint.Wrap(fmt.Errorf("%.200q: %w", s, err), "name images as skopeo does: docker://HOST/REPO:TAG, oci:DIR[:REF], oci-archive:FILE[:REF]")
	}
	opts, err := c.registryOptions()
	if err != nil {
		return nil, nil, nil, err
	}
	st, err := imagekeys.Open(r, opts)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%s: %w", r, err)
	}
	img, err := imagekeys.Load(ctx, r.String(), st)
	if err != nil {
		if r.Transport == imageref.Docker {
			if plain := plainRegistryError(r.Registry, r.String(), err); plain != nil {
				err = plain
			} else {
				err = fmt.Errorf("%s: %w", r, err)
			}
		} else {
			err = fmt.Errorf("%s: %w", r, err)
		}
		var te *transport.Error
		switch {
		case len(hint.Of(err)) > 0:
		case errors.As(err, &te) && (te.StatusCode == 401 || te.StatusCode == 403):
			err = hint.Wrap(err, "give credentials: --creds USER:PASSWORD, --authfile FILE, or log in (podman login, docker login)")
		case errors.As(err, &te):
		case r.Transport == imageref.Docker && !errors.Is(err, imagekeys.ErrManifest):
			err = hint.Wrap(err, "check the name and that the registry answers; a registry on plain HTTP elsewhere than localhost:PORT, 127.0.0.1, ::1 or a private address needs --tls-verify=false")
		}
		return nil, nil, nil, err
	}
	return img, st, r, nil
}

func newTable(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0) }
