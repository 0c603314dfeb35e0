package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	kpb "github.com/containers/ocicrypt/utils/keyprovider"
	"go.yaml.in/yaml/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/ocikp/ocikp/keys/tpm/tpmtest"
)

// The deployment files run as written: each one's service command starts
// the real binaries (paths, socket and keystore moved into a temporary
// directory) and its health probe command answers SERVING.
func TestDeploymentFilesRun(t *testing.T) {
	dir := filepath.Dir(bin(t))
	ocikp := filepath.Join(dir, "ocikp")
	if out, err := exec.Command("go", "build", "-o", ocikp, "github.com/ocikp/ocikp/cmd/ocikp").CombinedOutput(); err != nil {
		t.Fatalf("build ocikp: %v\n%s", err, out)
	}
	tmp := t.TempDir()
	sock := filepath.Join(tmp, "s.sock")
	local := strings.NewReplacer(
		"/usr/local/bin/ocikp", ocikp,
		"unix:///run/ocikp/ocikp.sock", "unix://"+sock,
		"/etc/ocikp/keys", filepath.Join(tmp, "keys"),
		"/keystore/keys", filepath.Join(tmp, "keystore", "keys"),
		"/secret/", filepath.Join(tmp, "secret")+"/",
		"/node/etc/ocikp/", tmp+"/",
	)
	localize := func(args []string) []string {
		out := make([]string, len(args))
		for i, a := range args {
			out[i] = local.Replace(a)
		}
		return out
	}
	root := filepath.Join("..", "..", "deploy")

	var ds struct {
		Spec struct {
			Template struct {
				Spec struct {
					InitContainers []struct{ Command []string } `yaml:"initContainers"`
					Containers     []struct {
						Args           []string
						ReadinessProbe struct{ Exec struct{ Command []string } } `yaml:"readinessProbe"`
						LivenessProbe  struct{ Exec struct{ Command []string } } `yaml:"livenessProbe"`
					}
				}
			}
		}
	}
	b, err := os.ReadFile(filepath.Join(root, "kubernetes", "daemonset.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &ds); err != nil {
		t.Fatalf("daemonset.yaml: %v", err)
	}
	// The Secret volume as the kubelet writes it: links into ..data, files
	// group-readable, the directory world-writable; the init container
	// copies the key into a keystore that ocikp serve accepts.
	secret := filepath.Join(tmp, "secret")
	os.MkdirAll(filepath.Join(secret, "..data"), 0o755)
	os.Chmod(secret, 0o1777)
	if out, err := exec.Command(ocikp, "--keystore", filepath.Join(tmp, "made"), "keygen", "node").CombinedOutput(); err != nil {
		t.Fatalf("keygen: %v\n%s", err, out)
	}
	key, _ := os.ReadFile(filepath.Join(tmp, "made", "node.key"))
	os.WriteFile(filepath.Join(secret, "..data", "node.key"), key, 0o440)
	os.Symlink(filepath.Join("..data", "node.key"), filepath.Join(secret, "node.key"))
	inits := ds.Spec.Template.Spec.InitContainers
	if len(inits) != 2 {
		t.Fatalf("daemonset.yaml: want two init containers (node-config, keystore): %+v", inits)
	}
	// node-config writes the key provider config the runtimes' drop-ins
	// name by default, pointing at the socket the service listens on.
	nodeCfg := localize(inits[0].Command)
	if out, err := exec.Command(nodeCfg[0], nodeCfg[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("daemonset.yaml node-config %v: %v\n%s", nodeCfg, err, out)
	}
	var kp struct {
		KeyProviders map[string]struct{ GRPC string } `json:"key-providers"`
	}
	if b, err := os.ReadFile(filepath.Join(tmp, "ocicrypt.json")); err != nil || json.Unmarshal(b, &kp) != nil {
		t.Fatalf("node-config wrote no key provider config: %v", err)
	}
	if !strings.HasSuffix(inits[0].Command[len(inits[0].Command)-1], "/etc/ocikp/ocicrypt.json") {
		t.Errorf("node-config writes %s, not the default --keyprovider-config /etc/ocikp/ocicrypt.json", inits[0].Command[len(inits[0].Command)-1])
	}
	if got := kp.KeyProviders["ocikp"].GRPC; got != "unix://"+sock || !strings.Contains(strings.Join(localize(ds.Spec.Template.Spec.Containers[0].Args), " "), "--listen "+got) {
		t.Errorf("node-config points the runtimes at %q; the service listens at %v", got, ds.Spec.Template.Spec.Containers[0].Args)
	}
	init := localize(inits[1].Command)
	if out, err := exec.Command(init[0], init[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("daemonset.yaml init container %v: %v\n%s", init, err, out)
	}
	if out, err := exec.Command(ocikp, "--keystore", filepath.Join(tmp, "keystore", "keys"), "list").CombinedOutput(); err != nil ||
		!regexp.MustCompile(`(?m)^node +p256 +no `).Match(out) {
		t.Fatalf("the keystore the init container wrote: %v\n%s", err, out)
	}
	c := ds.Spec.Template.Spec.Containers
	if len(c) != 1 || len(c[0].ReadinessProbe.Exec.Command) == 0 || len(c[0].LivenessProbe.Exec.Command) == 0 {
		t.Fatalf("daemonset.yaml: want one container with exec readiness and liveness probes: %+v", c)
	}

	docker, err := os.ReadFile(filepath.Join(root, "container", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	jsonLine := func(directive string) []string {
		m := regexp.MustCompile(`(?m)^` + directive + ` (\[.*\])$`).FindSubmatch(docker)
		if m == nil {
			t.Fatalf("Dockerfile: no %s [...] line", directive)
		}
		var v []string
		if err := json.Unmarshal(m[1], &v); err != nil {
			t.Fatalf("Dockerfile %s: %v", directive, err)
		}
		return v
	}
	entry, cmd := jsonLine("ENTRYPOINT"), jsonLine("CMD")
	hc := regexp.MustCompile(`(?m)^HEALTHCHECK .*CMD (\[.*\])$`).FindSubmatch(docker)
	var healthcheck []string
	if hc == nil || json.Unmarshal(hc[1], &healthcheck) != nil {
		t.Fatal("Dockerfile: no HEALTHCHECK … CMD [...] line")
	}
	// Every command of the module is in the image.
	var built, cmds []string
	for _, m := range regexp.MustCompile(`\./cmd/([a-z0-9-]+)`).FindAllSubmatch(docker, -1) {
		built = append(built, string(m[1]))
	}
	ents, _ := os.ReadDir("..")
	for _, e := range ents {
		if e.IsDir() {
			cmds = append(cmds, e.Name())
		}
	}
	sort.Strings(built)
	if strings.Join(built, " ") != strings.Join(cmds, " ") {
		t.Errorf("Dockerfile builds %v; the module's commands are %v", built, cmds)
	}

	unit, err := os.ReadFile(filepath.Join(root, "systemd", "ocikp.service"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^ExecStart=(.*)$`).FindSubmatch(unit)
	if m == nil {
		t.Fatal("ocikp.service: no ExecStart")
	}
	execStart := strings.Fields(string(m[1]))

	for _, tc := range []struct {
		name           string
		service, probe []string
	}{
		{"daemonset.yaml", append([]string{"/usr/local/bin/ocikp", "serve"}, c[0].Args...), c[0].ReadinessProbe.Exec.Command},
		{"daemonset.yaml liveness", append([]string{"/usr/local/bin/ocikp", "serve"}, c[0].Args...), c[0].LivenessProbe.Exec.Command},
		{"Dockerfile", append(entry, cmd...), healthcheck},
		{"ocikp.service", execStart, []string{"/usr/local/bin/ocikp", "health", "--grpc", "unix:///run/ocikp/ocikp.sock"}},
	} {
		svc := localize(tc.service)
		if !strings.Contains(strings.Join(svc, " "), "--keystore") {
			svc = append(svc, "--keystore", filepath.Join(tmp, "keystore", "keys"))
		}
		s := exec.Command(svc[0], svc[1:]...)
		var log bytes.Buffer
		s.Stderr = &log
		if err := s.Start(); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		probe := localize(tc.probe)
		var out []byte
		for i := 0; ; i++ {
			out, err = exec.Command(probe[0], probe[1:]...).CombinedOutput()
			if err == nil || i > 100 {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		s.Process.Signal(syscall.SIGTERM)
		werr := s.Wait()
		if err != nil || string(out) != "SERVING\n" {
			t.Errorf("%s: probe %v: %v\n%s\nservice log:\n%s", tc.name, tc.probe, err, out, log.Bytes())
		}
		if werr != nil {
			t.Errorf("%s: service exit after SIGTERM: %v", tc.name, werr)
		}
	}
}

// The TPM variants run as written, swtpm's socket standing in for
// /dev/tpmrm0: daemonset-tpm.yaml's node-key init container makes the key
// on the first start and prints the same recipient on the next, node-ek
// enrols the TPM's EKs (and prints the same on the next), its service
// unwraps with the empty parameters containerd sends (the TPM key and a
// stanza for each EK: none would open unenrolled), its probe answers;
// ocikp.service with the tpm.conf drop-in does the same and
// systemd-analyze accepts the pair.
func TestDeploymentTPMRun(t *testing.T) {
	dir := filepath.Dir(bin(t))
	// ocikp-serve and the TPM companion beside ocikp, as installed.
	t.Setenv("OCIKP_PLUGIN_DIR", dir)
	sw := tpmtest.Start(t)
	ocikp := filepath.Join(dir, "ocikp")
	for _, c := range []string{"ocikp", "ocikp-tpm"} {
		if _, err := os.Stat(filepath.Join("..", c)); err != nil {
			continue // no TPM companion in this tree
		}
		if out, err := exec.Command("go", "build", "-o", filepath.Join(dir, c), "github.com/ocikp/ocikp/cmd/"+c).CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", c, err, out)
		}
	}
	root := filepath.Join("..", "..", "deploy")
	type container struct {
		Name    string
		Command []string
		Args    []string
		Env     []struct{ Name, Value string }
		Probe   struct{ Exec struct{ Command []string } } `yaml:"readinessProbe"`
	}
	type daemonSet struct {
		Spec struct {
			Template struct {
				Spec struct {
					InitContainers []container `yaml:"initContainers"`
					Containers     []container
					Volumes        []struct {
						Name     string
						HostPath struct{ Path, Type string } `yaml:"hostPath"`
					}
				}
			}
		}
	}
	read := func(name string) daemonSet {
		var ds daemonSet
		b, err := os.ReadFile(filepath.Join(root, "kubernetes", name))
		if err != nil {
			t.Fatal(err)
		}
		if err := yaml.Unmarshal(b, &ds); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return ds
	}
	plain, tpmDS := read("daemonset.yaml").Spec.Template.Spec, read("daemonset-tpm.yaml").Spec.Template.Spec
	if len(tpmDS.InitContainers) != 3 || tpmDS.InitContainers[1].Name != "node-key" || tpmDS.InitContainers[2].Name != "node-ek" || len(tpmDS.Containers) != 1 {
		t.Fatalf("daemonset-tpm.yaml: want init containers node-config, node-key, node-ek and one container: %+v", tpmDS)
	}
	// The rest is daemonset.yaml's: the same node config and probe.
	if !slices.Equal(tpmDS.InitContainers[0].Command, plain.InitContainers[0].Command) ||
		!slices.Equal(tpmDS.Containers[0].Probe.Exec.Command, plain.Containers[0].Probe.Exec.Command) {
		t.Errorf("daemonset-tpm.yaml's node-config or probe differs from daemonset.yaml's")
	}
	vols := map[string]string{}
	for _, v := range tpmDS.Volumes {
		vols[v.HostPath.Path] = v.HostPath.Type
	}
	if vols["/dev/tpmrm0"] != "CharDevice" || vols["/var/lib/ocikp"] != "Directory" {
		t.Errorf("daemonset-tpm.yaml: want hostPaths /dev/tpmrm0 (CharDevice) and /var/lib/ocikp (Directory): %v", vols)
	}

	tmp := t.TempDir()
	sock := filepath.Join(tmp, "s.sock")
	local := strings.NewReplacer(
		"/usr/local/bin/ocikp", ocikp,
		"unix:///run/ocikp/ocikp.sock", "unix://"+sock,
		"/var/lib/ocikp/", filepath.Join(tmp, "state")+"/",
		"/dev/tpmrm0", sw.Socket,
	)
	localize := func(args []string) []string {
		out := make([]string, len(args))
		for i, a := range args {
			out[i] = local.Replace(a)
		}
		return out
	}
	runOut := func(what string, args []string) string {
		t.Helper()
		out, err := exec.Command(args[0], args[1:]...).Output()
		if err != nil {
			var ee *exec.ExitError
			errors.As(err, &ee)
			t.Fatalf("%s %v: %v\n%s", what, args, err, ee.Stderr)
		}
		return strings.TrimSpace(string(out))
	}
	// keygenTwice runs a first-start keygen twice: one key, one recipient.
	keygenTwice := func(what string, cmd []string, keystore string) string {
		t.Helper()
		first, again := runOut(what, cmd), runOut(what+" (restart)", cmd)
		if !strings.HasPrefix(first, "ocikp1p2561") || first != again {
			t.Fatalf("%s printed %q, then %q on a restart", what, first, again)
		}
		if out := runOut("list", []string{ocikp, "--keystore", keystore, "list"}); !regexp.MustCompile(`(?m)^node +p256 \(tpm\) `).MatchString(out) {
			t.Fatalf("%s: the keystore lists\n%s", what, out)
		}
		return first
	}
	// enrolTwice runs a first-start EK enrolment twice: the same EKs
	// printed, both recorded.
	enrolTwice := func(what string, cmd []string, keystore string) {
		t.Helper()
		first, again := runOut(what, cmd), runOut(what+" (restart)", cmd)
		if strings.Count(first, "-----BEGIN PUBLIC KEY-----") != 2 || first != again {
			t.Fatalf("%s printed %q, then %q on a restart", what, first, again)
		}
		out := runOut("list", []string{ocikp, "--keystore", keystore, "list"})
		if !regexp.MustCompile(`(?m)^tpm-ek/ecc +tpm-ek \(enrolled\) `).MatchString(out) || !strings.Contains(out, "tpm-ek/rsa") {
			t.Fatalf("%s: the keystore lists\n%s", what, out)
		}
	}
	// serve starts a service and checks that its probe answers and that
	// it unwraps, with no decryption parameters, a layer for the node key
	// and one for each of the node's enrolled EKs.
	serve := func(what string, svc, env, probe []string, recipient string) {
		t.Helper()
		s := exec.Command(svc[0], svc[1:]...)
		s.Env = append(os.Environ(), env...)
		var log bytes.Buffer
		s.Stderr = &log
		if err := s.Start(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		defer func() {
			s.Process.Signal(syscall.SIGTERM)
			s.Wait()
		}()
		var out []byte
		var err error
		for i := 0; ; i++ {
			out, err = exec.Command(probe[0], probe[1:]...).CombinedOutput()
			if err == nil || i > 100 {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if err != nil || string(out) != "SERVING\n" {
			t.Fatalf("%s: probe %v: %v\n%s\nservice log:\n%s", what, probe, err, out, log.Bytes())
		}
		recipients := []string{recipient}
		for _, typ := range []string{"ecc", "rsa"} {
			ek := filepath.Join(t.TempDir(), "ek.pem")
			os.WriteFile(ek, []byte(runOut("tpm ek", []string{ocikp, "tpm", "ek", "--type", typ, "--tpm", sw.Socket})), 0o644)
			recipients = append(recipients, runOut("recipient --tpm-ek", []string{ocikp, "--keystore", t.TempDir(), "recipient", "--tpm-ek", ek}))
		}
		for _, r := range recipients {
			if got := unwrapOverSocket(t, ocikp, sock, r, "node secret"); got != "node secret" {
				t.Errorf("%s: unwrapped %q for %.20s…\nservice log:\n%s", what, got, r, log.Bytes())
			}
		}
	}

	// Kubernetes.
	os.Mkdir(filepath.Join(tmp, "state"), 0o700)
	ks := filepath.Join(tmp, "state", "keys")
	rec := keygenTwice("daemonset-tpm.yaml node-key", localize(tpmDS.InitContainers[1].Command), ks)
	enrolTwice("daemonset-tpm.yaml node-ek", localize(tpmDS.InitContainers[2].Command), ks)
	c := tpmDS.Containers[0]
	var env []string
	for _, e := range c.Env {
		env = append(env, e.Name+"="+local.Replace(e.Value))
	}
	if !slices.Contains(env, "OCIKP_TPM="+sw.Socket) {
		t.Errorf("daemonset-tpm.yaml: the service has no OCIKP_TPM=/dev/tpmrm0 (EK stanzas): %v", c.Env)
	}
	serve("daemonset-tpm.yaml", localize(append([]string{"/usr/local/bin/ocikp", "serve"}, c.Args...)), env, localize(c.Probe.Exec.Command), rec)

	// systemd: the unit with the drop-in.
	unit, err := os.ReadFile(filepath.Join(root, "systemd", "ocikp.service"))
	if err != nil {
		t.Fatal(err)
	}
	dropIn, err := os.ReadFile(filepath.Join(root, "systemd", "ocikp.service.d", "tpm.conf"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"DeviceAllow=/dev/tpmrm0 rw", "DevicePolicy=closed", "PrivateDevices=no", "SupplementaryGroups=tss", "StateDirectory=ocikp", "ExecStart=\n"} {
		if !strings.Contains(string(dropIn), want) {
			t.Errorf("tpm.conf lacks %q", want)
		}
	}
	values := func(key string) []string {
		var v []string
		for _, m := range regexp.MustCompile(`(?m)^`+key+`=(.*)$`).FindAllSubmatch(dropIn, -1) {
			v = append(v, string(m[1]))
		}
		return v
	}
	starts, pre := values("ExecStart"), values("ExecStartPre")
	if len(starts) != 2 || starts[0] != "" || len(pre) != 2 {
		t.Fatalf("tpm.conf: want ExecStart= (reset), one ExecStart and two ExecStartPre (keygen, tpm enroll): %q %q", starts, pre)
	}
	sdLocal := strings.NewReplacer("/var/lib/ocikp/", filepath.Join(tmp, "sd")+"/")
	sdize := func(line string) []string { return localize(strings.Fields(sdLocal.Replace(line))) }
	os.Mkdir(filepath.Join(tmp, "sd"), 0o700)
	rec = keygenTwice("tpm.conf ExecStartPre", sdize(pre[0]), filepath.Join(tmp, "sd", "keys"))
	enrolTwice("tpm.conf ExecStartPre (enrol)", sdize(pre[1]), filepath.Join(tmp, "sd", "keys"))
	serve("ocikp.service + tpm.conf", sdize(starts[1]), sdize(strings.Join(values("Environment"), " ")),
		localize([]string{"/usr/local/bin/ocikp", "health", "--grpc", "unix:///run/ocikp/ocikp.sock"}), rec)
	if analyze, err := exec.LookPath("systemd-analyze"); err == nil {
		d := t.TempDir()
		os.Mkdir(filepath.Join(d, "ocikp.service.d"), 0o755)
		os.WriteFile(filepath.Join(d, "ocikp.service"), []byte(strings.ReplaceAll(string(unit), "/usr/local/bin/ocikp", ocikp)), 0o644)
		os.WriteFile(filepath.Join(d, "ocikp.service.d", "tpm.conf"), []byte(strings.ReplaceAll(string(dropIn), "/usr/local/bin/ocikp", ocikp)), 0o644)
		cmd := exec.Command(analyze, "verify", filepath.Join(d, "ocikp.service"))
		cmd.Env = append(os.Environ(), "SYSTEMD_UNIT_PATH="+d+":")
		if out, err := cmd.CombinedOutput(); err != nil || len(out) > 0 {
			t.Errorf("systemd-analyze verify ocikp.service + tpm.conf: %v\n%s", err, out)
		}
	}
}

// unwrapOverSocket wraps secret for recipient with the exec provider and
// unwraps it through the service on sock with no decryption parameters,
// as containerd and CRI-O send; it returns the unwrapped optsdata.
func unwrapOverSocket(t *testing.T, ocikp, sock, recipient, secret string) string {
	t.Helper()
	wrapReq, _ := json.Marshal(map[string]any{"op": "keywrap", "keywrapparams": map[string]any{
		"ec":       map[string]any{"Parameters": map[string][][]byte{"ocikp": {[]byte(recipient)}}, "DecryptConfig": map[string]any{"Parameters": map[string]any{}}},
		"optsdata": []byte(secret),
	}})
	cmd := exec.Command(ocikp, "keyprovider")
	cmd.Stdin = bytes.NewReader(wrapReq)
	cmd.Env = append(os.Environ(), "OCIKP_KEYSTORE="+t.TempDir())
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("wrap for %.20s…: %v", recipient, err)
	}
	var wrapped struct {
		R struct{ Annotation []byte } `json:"keywrapresults"`
	}
	if err := json.Unmarshal(out, &wrapped); err != nil {
		t.Fatal(err)
	}
	unwrapReq, _ := json.Marshal(map[string]any{"op": "keyunwrap", "keyunwrapparams": map[string]any{
		"dc": map[string]any{"Parameters": map[string]any{}}, "annotation": wrapped.R.Annotation,
	}})
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	reply, err := kpb.NewKeyProviderServiceClient(conn).UnWrapKey(ctx, &kpb.KeyProviderKeyWrapProtocolInput{KeyProviderKeyWrapProtocolInput: unwrapReq})
	if err != nil {
		t.Fatalf("UnWrapKey over %s: %v", sock, err)
	}
	var unwrapped struct {
		R struct{ Optsdata []byte } `json:"keyunwrapresults"`
	}
	if err := json.Unmarshal(reply.KeyProviderKeyWrapProtocolOutput, &unwrapped); err != nil {
		t.Fatal(err)
	}
	return string(unwrapped.R.Optsdata)
}
