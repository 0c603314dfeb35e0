// Command pipebench times the whole pipeline a user sees: skopeo encrypting
// an image from a local registry into it, then decrypting it into an OCI
// layout, with the layer keys wrapped by ocikp (exec, and optionally its
// gRPC service) against ocicrypt's in-process JWE (RSA and EC P-256), and
// optionally against kpfloor, the floor of an exec provider. Variants run
// interleaved, round by round, so that the machine's load falls on each
// alike. scripts/bench-pipeline.sh builds and runs it.
//
// With -strace, one more encryption and decryption of each exec variant
// runs under strace, which reports each provider process skopeo started
// and how long it lived.
package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/ocikp/ocikp/internal/localreg"
)

type options struct {
	ocikp, unwrap, serve, kpfloor, skopeo, registry, strace string
	layers, runs, procs                                     int
	size                                                    int64
	variants, baseline                                      string
}

func main() {
	var o options
	flag.StringVar(&o.ocikp, "ocikp", "", "ocikp binary (exec provider), built with CGO_ENABLED=0")
	flag.StringVar(&o.serve, "serve", "", "ocikp-serve binary: adds the variant grpc (ocikp serve on a unix socket)")
	flag.StringVar(&o.unwrap, "unwrap", "", "ocikp-unwrap binary, beside -ocikp: adds the variant ocikp-unwrap (the same exec config through it)")
	flag.StringVar(&o.kpfloor, "kpfloor", "", "kpfloor binary: adds the variants floor (HPKE P-256, fixed key) and bare (no cryptography)")
	flag.StringVar(&o.skopeo, "skopeo", "skopeo", "skopeo built with ocicrypt >= 1.1")
	flag.StringVar(&o.registry, "registry", "docker-registry", "Debian's docker-registry")
	flag.StringVar(&o.strace, "strace", "", "strace binary: trace one more run of each exec variant")
	flag.IntVar(&o.layers, "layers", 5, "layers in the image")
	flag.Int64Var(&o.size, "size", 20<<20, "bytes of random content per layer")
	flag.IntVar(&o.runs, "runs", 7, "rounds; each round runs every variant once")
	flag.IntVar(&o.procs, "procs", 0, "then time N whole provider processes of each exec variant, wrap and unwrap, interleaved, with the requests skopeo sends")
	flag.StringVar(&o.variants, "variants", "", "comma-separated variants to run (default: all available: jwe-rsa,jwe-ec,ocikp,ocikp-unwrap,grpc,floor,bare)")
	flag.StringVar(&o.baseline, "baseline", "jwe-rsa", "variant the ratios are against")
	flag.Parse()
	if o.ocikp == "" || o.runs < 1 || o.layers < 1 {
		flag.Usage()
		os.Exit(2)
	}
	// Absolute, as ocikp config writes them and strace reports them.
	for _, p := range []*string{&o.ocikp, &o.serve, &o.kpfloor} {
		if *p != "" {
			*p, _ = filepath.Abs(*p)
		}
	}
	if err := bench(o); err != nil {
		fmt.Fprintln(os.Stderr, "pipebench:", err)
		os.Exit(1)
	}
}

// variant is one way of wrapping the layer keys.
type variant struct {
	name, what   string
	param        string   // the encryption key parameter given to the provider
	env          []string // OCICRYPT_KEYPROVIDER_CONFIG, for providers
	enc, dec     []string // skopeo flags
	providerPath string   // the program skopeo runs per layer, if any
	providerArgs []string // and its arguments
}

// procs times whole provider processes as ocicrypt runs them, one request
// on stdin each, the exec variants interleaved: what each costs skopeo per
// layer and step, outside the pipeline.
func procs(o options, vs []variant) error {
	optsdata := base64.StdEncoding.EncodeToString([]byte(`{"symkey":"jcyj3B17mb9Pb0Nogdnk4sdOnTgVLAKGbPT/cSlneo4=","digest":"sha256:3a3a1098a3eb709bad7893b3b83233733a64e3d07bd1d6faf8fedc32e52fd565","cipheroptions":{"nonce":"FE2DJ7BIlFu8VMXLMb6UgA=="}}`))
	type job struct {
		name string
		v    variant
		in   []byte
	}
	var jobs []job
	for _, v := range vs {
		if v.providerPath == "" {
			continue
		}
		name := strings.SplitN(v.dec[1], ":", 3)[1]
		// The requests as ocicrypt 1.2 writes them (captured from skopeo).
		wrap := fmt.Sprintf(`{"op":"keywrap","keywrapparams":{"ec":{"Parameters":{%q:[%q]},"DecryptConfig":{"Parameters":{}}},"optsdata":%q},"keyunwrapparams":{"dc":null,"annotation":null}}`,
			name, base64.StdEncoding.EncodeToString([]byte(v.param)), optsdata)
		cmd := exec.Command(v.providerPath, v.providerArgs...)
		cmd.Stdin = strings.NewReader(wrap)
		out, err := cmd.Output()
		if err != nil {
			return fmt.Errorf("%s wrap: %w", v.name, err)
		}
		var reply struct {
			Results struct {
				Annotation string `json:"annotation"`
			} `json:"keywrapresults"`
		}
		if err := json.Unmarshal(out, &reply); err != nil {
			return fmt.Errorf("%s wrap reply: %w", v.name, err)
		}
		unwrap := fmt.Sprintf(`{"op":"keyunwrap","keywrapparams":{"ec":null,"optsdata":null},"keyunwrapparams":{"dc":{"Parameters":{%q:["RW5hYmxlZA=="]}},"annotation":%q}}`,
			name, reply.Results.Annotation)
		jobs = append(jobs, job{v.name + " wrap", v, []byte(wrap)}, job{v.name + " unwrap", v, []byte(unwrap)})
	}
	times := make([][]float64, len(jobs))
	for range o.procs {
		for i, j := range jobs {
			cmd := exec.Command(j.v.providerPath, j.v.providerArgs...)
			cmd.Stdin = bytes.NewReader(j.in)
			var out bytes.Buffer
			cmd.Stdout = &out
			t := time.Now()
			if err := cmd.Run(); err != nil {
				return fmt.Errorf("%s: %w", j.name, err)
			}
			times[i] = append(times[i], time.Since(t).Seconds())
		}
	}
	fmt.Printf("whole provider processes, %d each, interleaved (what skopeo pays per layer and step):\n", o.procs)
	for i, j := range jobs {
		fmt.Printf("  %-14s median %6.3f ms  p90 %6.3f ms\n", j.name, median(times[i])*1000, quantile(times[i], 0.9)*1000)
		f := strings.Fields(j.name)
		fmt.Printf("BENCH pipeline-proc variant=%s op=%s runs=%d median_ms=%.4f p90_ms=%.4f\n", f[0], f[1], o.procs, median(times[i])*1000, quantile(times[i], 0.9)*1000)
	}
	return nil
}

func bench(o options) error {
	dir, err := os.MkdirTemp("", "pipebench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	reg, regCmd, err := localreg.Start(o.registry, dir)
	if err != nil {
		return err
	}
	defer func() { regCmd.Process.Kill(); regCmd.Wait() }()

	all, stop, err := setup(o, dir)
	defer stop()
	if err != nil {
		return err
	}
	vs := all
	if o.variants != "" {
		vs = nil
		for _, n := range strings.Split(o.variants, ",") {
			i := slices.IndexFunc(all, func(v variant) bool { return v.name == n })
			if i < 0 {
				return fmt.Errorf("variant %q is not available (have %s)", n, names(all))
			}
			vs = append(vs, all[i])
		}
	}
	if !slices.ContainsFunc(vs, func(v variant) bool { return v.name == o.baseline }) {
		return fmt.Errorf("baseline %q is not among the variants run", o.baseline)
	}

	plain := reg + "/app:plain"
	want, err := pushImage(plain, o.size, o.layers)
	if err != nil {
		return err
	}
	policy := filepath.Join(dir, "policy.json")
	os.WriteFile(policy, []byte(`{"default":[{"type":"insecureAcceptAnything"}]}`), 0o644)
	copyArgs := func(flags []string, src, dst string) []string {
		return append(append([]string{"--policy", policy, "copy", "-q", "--src-tls-verify=false", "--dest-tls-verify=false"}, flags...), src, dst)
	}
	// one encrypts and decrypts with v; it returns each step's wall time
	// and the CPU time of skopeo and the programs it ran.
	one := func(v variant, tag string, wrap func(args []string) (string, []string)) (enc, dec step, err error) {
		encRef := "docker://" + reg + "/" + v.name + ":" + tag
		out := filepath.Join(dir, "out-"+v.name+"-"+tag)
		defer os.RemoveAll(out)
		bin, args := wrap(copyArgs(v.enc, "docker://"+plain, encRef))
		if enc, err = run(v.env, bin, args...); err != nil {
			return enc, dec, err
		}
		bin, args = wrap(copyArgs(v.dec, encRef, "oci:"+out+":x"))
		if dec, err = run(v.env, bin, args...); err != nil {
			return enc, dec, err
		}
		if tag == "check" {
			return enc, dec, check(reg+"/"+v.name+":"+tag, out, want)
		}
		return enc, dec, nil
	}
	direct := func(args []string) (string, []string) { return o.skopeo, args }

	up, _ := exec.Command("uptime").Output()
	fmt.Printf("pipeline: skopeo copy registry -> registry encrypting, then registry -> oci: layout decrypting; %d layers x %d MiB random; %d rounds, variants interleaved (order rotates each round)\n",
		o.layers, o.size>>20, o.runs)
	fmt.Printf("uptime before: %s", up)
	// A first, untimed round checks each variant end to end (the layers
	// decrypt to the pushed ones) and warms the caches.
	for _, v := range vs {
		if _, _, err := one(v, "check", direct); err != nil {
			return fmt.Errorf("%s: %w", v.name, err)
		}
	}
	times := map[string]map[string][]float64{} // variant -> op -> seconds
	for _, v := range vs {
		times[v.name] = map[string][]float64{}
	}
	for r := range o.runs {
		for i := range vs {
			v := vs[(i+r)%len(vs)]
			enc, dec, err := one(v, strconv.Itoa(r), direct)
			if err != nil {
				return fmt.Errorf("%s, round %d: %w", v.name, r+1, err)
			}
			t := times[v.name]
			t["encrypt"] = append(t["encrypt"], enc.wall.Seconds())
			t["decrypt"] = append(t["decrypt"], dec.wall.Seconds())
			t["total"] = append(t["total"], (enc.wall + dec.wall).Seconds())
			t["cpu encrypt"] = append(t["cpu encrypt"], enc.cpu.Seconds())
			t["cpu decrypt"] = append(t["cpu decrypt"], dec.cpu.Seconds())
			t["cpu total"] = append(t["cpu total"], (enc.cpu + dec.cpu).Seconds())
		}
	}
	up, _ = exec.Command("uptime").Output()
	fmt.Printf("uptime after:  %s\n", up)
	report(vs, times, o.baseline, o.runs)

	if o.procs > 0 {
		fmt.Println()
		if err := procs(o, vs); err != nil {
			return err
		}
	}
	if o.strace != "" {
		fmt.Println()
		for _, v := range vs {
			if v.providerPath == "" {
				continue
			}
			if err := trace(o, v, dir, one); err != nil {
				return fmt.Errorf("%s under strace: %w", v.name, err)
			}
		}
	}
	return nil
}

func names(vs []variant) string {
	var s []string
	for _, v := range vs {
		s = append(s, v.name)
	}
	return strings.Join(s, ",")
}

// setup makes the keys and the variants; stop ends the gRPC service.
func setup(o options, dir string) ([]variant, func(), error) {
	stop := func() {}
	rsaPub, rsaPriv, err := keyPair(dir, "rsa")
	if err != nil {
		return nil, stop, err
	}
	ecPub, ecPriv, err := keyPair(dir, "ec")
	if err != nil {
		return nil, stop, err
	}
	vs := []variant{
		{name: "jwe-rsa", what: "ocicrypt JWE, RSA-2048 (RSA-OAEP), in process",
			enc: []string{"--encryption-key", "jwe:" + rsaPub}, dec: []string{"--decryption-key", rsaPriv}},
		{name: "jwe-ec", what: "ocicrypt JWE, EC P-256 (ECDH-ES+A256KW), in process",
			enc: []string{"--encryption-key", "jwe:" + ecPub}, dec: []string{"--decryption-key", ecPriv}},
	}
	ks := filepath.Join(dir, "keys")
	out, err := exec.Command(o.ocikp, "--keystore", ks, "keygen", "bench").Output()
	if err != nil {
		return nil, stop, fmt.Errorf("ocikp keygen: %w", err)
	}
	recipient := strings.TrimSpace(string(out))
	cfg, err := exec.Command(o.ocikp, "--keystore", ks, "config", "--name", "ocikp").Output()
	if err != nil {
		return nil, stop, fmt.Errorf("ocikp config: %w", err)
	}
	execCfg := filepath.Join(dir, "ocicrypt-exec.json")
	os.WriteFile(execCfg, cfg, 0o644)
	vs = append(vs, variant{name: "ocikp", what: "ocikp keyprovider (exec, P-256 key), one process per layer and step",
		env: []string{"OCICRYPT_KEYPROVIDER_CONFIG=" + execCfg},
		enc: []string{"--encryption-key", "provider:ocikp:" + recipient}, dec: []string{"--decryption-key", "provider:ocikp"},
		providerPath: o.ocikp, param: recipient, providerArgs: []string{"keyprovider", "--name", "ocikp", "--keystore", ks}})
	if o.unwrap != "" {
		cfg, err := exec.Command(o.ocikp, "--keystore", ks, "config", "--name", "ocikp", "--path", o.unwrap).Output()
		if err != nil {
			return nil, stop, fmt.Errorf("ocikp config --path %s: %w", o.unwrap, err)
		}
		unwrapCfg := filepath.Join(dir, "ocicrypt-unwrap.json")
		os.WriteFile(unwrapCfg, cfg, 0o644)
		vs = append(vs, variant{name: "ocikp-unwrap", what: "ocikp-unwrap (exec, P-256 key), the same config with its path: one process per layer and step",
			env: []string{"OCICRYPT_KEYPROVIDER_CONFIG=" + unwrapCfg},
			enc: []string{"--encryption-key", "provider:ocikp:" + recipient}, dec: []string{"--decryption-key", "provider:ocikp"},
			providerPath: o.unwrap, param: recipient, providerArgs: []string{"keyprovider", "--name", "ocikp", "--keystore", ks}})
	}
	if o.serve != "" {
		sock := "unix://" + filepath.Join(dir, "ocikp.sock")
		cmd := exec.Command(o.serve, "--keystore", ks, "--listen", sock, "--name", "ocikp", "--log-level", "warn")
		logf, _ := os.Create(filepath.Join(dir, "serve.log"))
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			return nil, stop, err
		}
		stop = func() { cmd.Process.Kill(); cmd.Wait() }
		if err := waitSocket(filepath.Join(dir, "ocikp.sock"), cmd); err != nil {
			return nil, stop, err
		}
		cfg, err := exec.Command(o.ocikp, "config", "--name", "ocikp", "--grpc", sock).Output()
		if err != nil {
			return nil, stop, fmt.Errorf("ocikp config --grpc: %w", err)
		}
		grpcCfg := filepath.Join(dir, "ocicrypt-grpc.json")
		os.WriteFile(grpcCfg, cfg, 0o644)
		vs = append(vs, variant{name: "grpc", what: "ocikp serve (gRPC on a unix socket), no process per layer",
			env: []string{"OCICRYPT_KEYPROVIDER_CONFIG=" + grpcCfg},
			enc: []string{"--encryption-key", "provider:ocikp:" + recipient}, dec: []string{"--decryption-key", "provider:ocikp"}})
	}
	if o.kpfloor != "" {
		for _, f := range []struct {
			name, what string
			args       []string
		}{
			{"floor", "kpfloor: exec floor, HPKE P-256 with a fixed key, standard library", []string{}},
			{"bare", "kpfloor -bare: exec floor, JSON in and out, no cryptography", []string{"-bare"}},
		} {
			b, _ := json.Marshal(map[string]any{"key-providers": map[string]any{
				"kpfloor": map[string]any{"cmd": map[string]any{"path": o.kpfloor, "args": f.args}}}})
			p := filepath.Join(dir, "ocicrypt-"+f.name+".json")
			os.WriteFile(p, b, 0o644)
			vs = append(vs, variant{name: f.name, what: f.what,
				env: []string{"OCICRYPT_KEYPROVIDER_CONFIG=" + p},
				enc: []string{"--encryption-key", "provider:kpfloor:fixed"}, dec: []string{"--decryption-key", "provider:kpfloor"},
				providerPath: o.kpfloor, param: "fixed", providerArgs: f.args})
		}
	}
	return vs, stop, nil
}

// keyPair writes a PKIX public key and a PKCS#8 private key, as openssl
// writes them for ocicrypt's JWE users.
func keyPair(dir, kind string) (pub, priv string, err error) {
	var k any
	switch kind {
	case "rsa":
		k, err = rsa.GenerateKey(rand.Reader, 2048)
	case "ec":
		k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		return "", "", err
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return "", "", err
	}
	pubDER, err := x509.MarshalPKIXPublicKey(k.(crypto.Signer).Public())
	if err != nil {
		return "", "", err
	}
	pub, priv = filepath.Join(dir, kind+"-pub.pem"), filepath.Join(dir, kind+"-priv.pem")
	if err := os.WriteFile(priv, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return "", "", err
	}
	return pub, priv, os.WriteFile(pub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), 0o644)
}

func waitSocket(path string, cmd *exec.Cmd) error {
	exited := make(chan struct{})
	go func() { cmd.Process.Wait(); close(exited) }()
	for range 400 {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		select {
		case <-exited:
			return errors.New("ocikp-serve exited before it was listening")
		case <-time.After(50 * time.Millisecond):
		}
	}
	return errors.New("ocikp-serve did not make its socket within 20 s")
}

// pushImage pushes n layers of size random bytes each and returns the
// layers' digests.
func pushImage(ref string, size int64, n int) ([]v1.Hash, error) {
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err := mutate.ConfigFile(img, &v1.ConfigFile{OS: "linux", Architecture: "amd64", RootFS: v1.RootFS{Type: "layers"}})
	if err != nil {
		return nil, err
	}
	var want []v1.Hash
	for range n {
		l, err := random.Layer(size, types.OCILayer)
		if err != nil {
			return nil, err
		}
		d, err := l.Digest()
		if err != nil {
			return nil, err
		}
		want = append(want, d)
		if img, err = mutate.AppendLayers(img, l); err != nil {
			return nil, err
		}
	}
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		return nil, err
	}
	return want, remote.Write(r, img)
}

// check: the pushed image's layers are encrypted, and the decrypted layout
// holds the original layers.
func check(encRef, out string, want []v1.Hash) error {
	r, err := name.ParseReference(encRef, name.Insecure)
	if err != nil {
		return err
	}
	img, err := remote.Image(r)
	if err != nil {
		return err
	}
	m, err := img.Manifest()
	if err != nil {
		return err
	}
	for _, l := range m.Layers {
		if !strings.HasSuffix(string(l.MediaType), "+encrypted") {
			return fmt.Errorf("layer %s is not encrypted (%s)", l.Digest, l.MediaType)
		}
	}
	p, err := layout.FromPath(out)
	if err != nil {
		return err
	}
	idx, err := p.ImageIndex()
	if err != nil {
		return err
	}
	im, err := idx.IndexManifest()
	if err != nil || len(im.Manifests) != 1 {
		return fmt.Errorf("decrypted layout: %v", err)
	}
	dimg, err := idx.Image(im.Manifests[0].Digest)
	if err != nil {
		return err
	}
	dm, err := dimg.Manifest()
	if err != nil {
		return err
	}
	var got []v1.Hash
	for _, l := range dm.Layers {
		got = append(got, l.Digest)
	}
	if !slices.Equal(got, want) {
		return fmt.Errorf("decrypted layers %v, want %v", got, want)
	}
	return nil
}

// step is one skopeo copy's wall time and the CPU time (user and system)
// of skopeo and every program it ran and waited for.
type step struct{ wall, cpu time.Duration }

func run(env []string, bin string, args ...string) (step, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	t := time.Now()
	err := cmd.Run()
	s := step{wall: time.Since(t)}
	if err != nil {
		return s, fmt.Errorf("%s %s: %v\n%s", filepath.Base(bin), strings.Join(args, " "), err, out.Bytes())
	}
	s.cpu = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	return s, nil
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if n := len(s); n%2 == 0 {
		return (s[n/2-1] + s[n/2]) / 2
	}
	return s[len(s)/2]
}

// quantile by nearest rank.
func quantile(xs []float64, q float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[max(i, 0)]
}

// report prints a table, then one machine-readable line per variant and
// step. ratio is the variant's median over the baseline's; paired is the
// median over rounds of the variant's time over the baseline's in the same
// round. CPU is skopeo's with the programs it ran (not the registry's).
func report(vs []variant, times map[string]map[string][]float64, baseline string, runs int) {
	fmt.Printf("\n%d runs each; ratio = median / median of %s; paired = median over rounds of (time / %s's time that round);\ncpu = user+system time of skopeo and the programs it ran\n", runs, baseline, baseline)
	for _, v := range vs {
		fmt.Printf("  %-8s %s\n", v.name, v.what)
	}
	type row struct {
		median, p90, ratio, paired, cpu, cpuRatio float64
	}
	stats := func(v, op string) row {
		t, b := times[v][op], times[baseline][op]
		c, cb := times[v]["cpu "+op], times[baseline]["cpu "+op]
		var per []float64
		for i := range t {
			per = append(per, t[i]/b[i])
		}
		return row{median(t), quantile(t, 0.9), median(t) / median(b), median(per), median(c), median(c) / median(cb)}
	}
	ops := []string{"total", "encrypt", "decrypt"}
	fmt.Printf("\n%-8s  %-7s  %9s  %9s  %6s  %6s  %8s  %9s\n", "variant", "step", "median", "p90", "ratio", "paired", "cpu", "cpu ratio")
	for _, op := range ops {
		for _, v := range vs {
			r := stats(v.name, op)
			fmt.Printf("%-8s  %-7s  %8.3fs  %8.3fs  %5.3fx  %5.3fx  %7.3fs  %8.3fx\n", v.name, op, r.median, r.p90, r.ratio, r.paired, r.cpu, r.cpuRatio)
		}
	}
	fmt.Println()
	for _, op := range ops {
		for _, v := range vs {
			r := stats(v.name, op)
			fmt.Printf("BENCH pipeline variant=%s step=%s runs=%d median_s=%.4f p90_s=%.4f ratio=%.4f paired=%.4f cpu_s=%.4f cpu_ratio=%.4f baseline=%s\n",
				v.name, op, runs, r.median, r.p90, r.ratio, r.paired, r.cpu, r.cpuRatio, baseline)
		}
	}
}

// trace runs one encryption and decryption of v under strace and reports
// what skopeo executed: how many provider processes, how long each lived
// from its execve to its exit, how much of the step's wall time they
// covered, and any other program.
func trace(o options, v variant, dir string, one func(variant, string, func([]string) (string, []string)) (step, step, error)) error {
	var files []string
	wrap := func(args []string) (string, []string) {
		f := filepath.Join(dir, fmt.Sprintf("strace-%s-%d.txt", v.name, len(files)))
		files = append(files, f)
		return o.strace, append([]string{"-f", "-q", "--seccomp-bpf", "-ttt", "-e", "trace=execve", "-o", f, o.skopeo}, args...)
	}
	enc, dec, err := one(v, "trace", wrap)
	if err != nil {
		return err
	}
	for i, op := range []string{"encrypt", "decrypt"} {
		wall := []time.Duration{enc.wall, dec.wall}[i]
		procs, execs, err := parseStrace(files[i], v.providerPath)
		if err != nil {
			return err
		}
		var sum, maxd float64
		var lives []string
		for _, p := range procs {
			d := p.end - p.start
			sum += d
			maxd = max(maxd, d)
			lives = append(lives, fmt.Sprintf("%.1f", d*1000))
		}
		fmt.Printf("trace %s %s: %d provider processes, lived %s ms (sum %.1f ms, union %.1f ms) in %.3f s under strace; programs executed: %v\n",
			v.name, op, len(procs), strings.Join(lives, " "), sum*1000, union(procs)*1000, wall.Seconds(), execs)
		fmt.Printf("BENCH pipeline-trace variant=%s step=%s processes=%d proc_sum_ms=%.2f proc_max_ms=%.2f proc_union_ms=%.2f wall_s=%.4f\n",
			v.name, op, len(procs), sum*1000, maxd*1000, union(procs)*1000, wall.Seconds())
	}
	return nil
}

type proc struct{ start, end float64 }

var (
	execLine = regexp.MustCompile(`^(\d+) +(\d+\.\d+) execve\("([^"]*)"`)
	exitLine = regexp.MustCompile(`^(\d+) +(\d+\.\d+) \+\+\+ (exited|killed)`)
)

// parseStrace finds the processes that executed path, from their execve to
// the exit of their first thread, and counts every program executed.
func parseStrace(file, path string) ([]proc, map[string]int, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	started := map[string]float64{}
	execs := map[string]int{}
	var procs []proc
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if m := execLine.FindStringSubmatch(sc.Text()); m != nil {
			execs[filepath.Base(m[3])]++
			if m[3] == path {
				started[m[1]], _ = strconv.ParseFloat(m[2], 64)
			}
		} else if m := exitLine.FindStringSubmatch(sc.Text()); m != nil {
			if s, ok := started[m[1]]; ok {
				ts, _ := strconv.ParseFloat(m[2], 64)
				procs = append(procs, proc{s, ts})
				delete(started, m[1])
			}
		}
	}
	return procs, execs, sc.Err()
}

// union is the time during which at least one process lived.
func union(ps []proc) float64 {
	s := slices.Clone(ps)
	slices.SortFunc(s, func(a, b proc) int { return cmp.Compare(a.start, b.start) })
	var total, end float64
	for _, p := range s {
		if p.start > end {
			total += p.end - p.start
			end = p.end
		} else if p.end > end {
			total += p.end - end
			end = p.end
		}
	}
	return total
}
