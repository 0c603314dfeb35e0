package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
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
