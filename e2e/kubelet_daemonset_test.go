package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/ocikp/ocikp/keys/tpm/tpmtest"
)

// The service's socket and node configuration as the DaemonSet's
// containers see them (and as a real node has them).
const (
	podSocketDir = "/run/ocikp"
	podSocket    = "unix://" + podSocketDir + "/ocikp.sock"
)

// TestKubeletDaemonSet runs deploy/kubernetes/daemonset.yaml's pod on a
// kubelet node: a static pod derived from the DaemonSet's template (see
// derivePod for what is substituted and why), from the scratch service
// image. Its init containers write the node's key provider config and
// import the node key from a directory shaped like the mounted Secret;
// its probes pass; containerd, configured as the DaemonSet's header says
// (ocikp config --containerd from the key provider config), decrypts
// another pod's image through the service on the node's unix socket.
// Then the service is killed under a pull's request: the kubelet restarts
// it and the pull's retry succeeds; and the service pod is removed: a
// pull fails with a message naming the service's socket, and succeeds
// once the pod is back.
func TestKubeletDaemonSet(t *testing.T) {
	e := newNodeEnv(t)
	p := e.p
	ksNode, rNode := p.keystore(t, "node")
	_, rOther := p.keystore(t, "other")
	image := scratchImage(t, e.reg)

	dir := shortTempDir(t, "kd-")
	node := filepath.Join(dir, "node") // the node's / for the pod's host paths
	// The Secret "ocikp-keys" with node.key, as the kubelet mounts it.
	key, err := os.ReadFile(filepath.Join(ksNode, "node.key"))
	if err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(dir, "secret")
	secretDir(t, secret, map[string][]byte{"node.key": key}, 65532)
	pod, subs := derivePod(t, "../deploy/kubernetes/daemonset.yaml", image, node, map[string]string{"secret": secret}, nil)
	t.Logf("the static pod differs from the DaemonSet's template by:\n  %s", strings.Join(subs, "\n  "))
	c, k, nodeConfig := e.startService(t, dir, node, pod)
	hostSocket := "unix://" + filepath.Join(node, podSocketDir, "ocikp.sock")

	t.Run("the DaemonSet's pod starts: node config written, key imported, probes pass", func(t *testing.T) {
		k.waitReady(t, servicePod, 3*time.Minute)
		written, err := os.ReadFile(filepath.Join(node, "etc/ocikp/ocicrypt.json"))
		if err != nil {
			t.Fatalf("the node-config init container wrote no config: %v", err)
		}
		want, err := exec.Command(p.bin, "config", "--grpc", podSocket).Output()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(written, want) {
			t.Errorf("node config %s, want ocikp config --grpc %s: %s", written, podSocket, want)
		}
		mine, _ := os.ReadFile(nodeConfig)
		if !bytes.Equal(bytes.ReplaceAll(written, []byte(podSocketDir), []byte(filepath.Join(node, podSocketDir))), mine) {
			t.Errorf("the node-config init container wrote %s; containerd was given %s (beyond the socket's host path)", written, mine)
		}
		id, _ := criContainer(t, c.sock, servicePod+"-"+nodeName, "ocikp")
		if out := criExec(t, c.sock, id, "/usr/local/bin/ocikp", "--keystore", "/keystore/keys", "list", "--long"); !strings.Contains(out, rNode["node"]) {
			t.Errorf("the service's keystore lacks the node key imported from the Secret:\n%s", out)
		}
	})

	t.Run("containerd decrypts another pod's image through the service pod's socket", func(t *testing.T) {
		enc := e.encryptApp(t, ksNode, "ds-node", "decrypted through the DaemonSet's service\n", rNode["node"], rOther["other"])
		k.runs(t, "enc-ds", enc, "decrypted through the DaemonSet's service", 3*time.Minute)
	})

	// docs/security.md, "Nodes shared by tenants": containerd finds a
	// layer's snapshot by its plaintext digest (in the image's config,
	// which is not encrypted) and does not decrypt a layer it has.
	t.Run("an image for a key the node lacks starts when its plaintext layer is on the node", func(t *testing.T) {
		enc := e.reg + "/app:ds-other-same-layer"
		if out, err := e.sk.copy(ksNode, []string{"--encryption-key", "provider:" + p.name + ":" + rOther["other"]},
			"docker://"+e.reg+"/app:plain-ds-node", "docker://"+enc); err != nil {
			t.Fatalf("encrypt: %v\n%s", err, out)
		}
		p.calls(t)
		k.runs(t, "enc-other-same-layer", enc, "decrypted through the DaemonSet's service", 2*time.Minute)
	})

	// The service dies as the OOM killer would kill it, under a request:
	// frozen first, so that the kill falls while containerd's decoder
	// waits on its unwrap call (killed at a random moment, it would
	// mostly fall between the layers' few-millisecond calls). The image
	// has more layers to decrypt after that one. The kubelet restarts
	// the container, the pull fails, and its retry (10 s later) succeeds;
	// no decoder is left waiting and the node's socket answers again.
	t.Run("the service killed under a pull's request: the kubelet restarts it and the pull's retry succeeds", func(t *testing.T) {
		const msg = "decrypted after the service was killed under its pull"
		enc := e.encrypt(t, ksNode, "ds-killed", withLayers(t, podImage(t, e.app, msg+"\n", "cat", "/msg"), 3, 1<<20), rNode["node"])
		restarts := k.waitReady(t, servicePod, time.Minute).restarts("ocikp")
		_, pid := criContainer(t, c.sock, servicePod+"-"+nodeName, "ocikp")
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		killed := false
		defer func() {
			if !killed {
				syscall.Kill(pid, syscall.SIGCONT)
			}
		}()
		k.write(t, "enc-killed", appPod(enc))
		var waiting []int
		for deadline := time.Now().Add(2 * time.Minute); len(waiting) == 0; waiting = c.decoders(t) {
			if time.Now().After(deadline) {
				t.Fatalf("containerd ran no decoder within 2 min")
			}
			time.Sleep(20 * time.Millisecond)
		}
		// The decoder asks for the layer key before it reads the layer: one
		// still there a second later is waiting on the frozen service.
		time.Sleep(time.Second)
		if still := c.decoders(t); !slices.ContainsFunc(waiting, func(pid int) bool { return slices.Contains(still, pid) }) {
			t.Fatalf("the decoders %v ended while the service was frozen", waiting)
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		killed = true
		start := time.Now()
		var seen []string
		got := k.waitPod(t, "enc-killed", 3*time.Minute, func(p kubeletPod) bool { p.waiting(&seen); return p.ended() })
		t.Logf("the pod ended %v after the kill; the kubelet's status of it on the way:\n%s", time.Since(start).Round(time.Second), strings.Join(seen, "\n"))
		if got.Status.Phase != "Succeeded" {
			t.Fatalf("pod phase %s: %s", got.Status.Phase, got)
		}
		k.wantLog(t, "enc-killed", msg)
		pullFailed := false
		for _, m := range seen {
			if !strings.Contains(m, "ErrImagePull") {
				continue
			}
			pullFailed = true
			// The retry succeeds, so there is no later failure to wait for
			// when containerd loses this one's message to its race.
			if lostDecoderError(m) {
				t.Logf("containerd lost the decoder's message to its race (the decoder wrote nothing): %s", m)
				continue
			}
			if !strings.Contains(m, "DecryptLayer") || !strings.Contains(m, "Unavailable") {
				t.Errorf("the failed pull does not say that decryption's key provider was unavailable: %s", m)
			}
		}
		if !pullFailed {
			t.Errorf("no pull failed, although the service died under the decoder's request")
		}
		if d := c.decoders(t); len(d) != 0 {
			t.Errorf("decoders still running after the pod ran: %v", d)
		}
		if n := k.waitReady(t, servicePod, time.Minute).restarts("ocikp"); n != restarts+1 {
			t.Errorf("the service container was restarted %d times, want 1", n-restarts)
		}
		if _, now := criContainer(t, c.sock, servicePod+"-"+nodeName, "ocikp"); now == pid {
			t.Errorf("the killed service process %d still runs", pid)
		}
		if out, err := exec.Command(p.bin, "health", "--grpc", hostSocket, "--timeout", "3s").CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "SERVING" {
			t.Errorf("ocikp health on the node's socket after the restart: %v: %s", err, out)
		}
	})

	t.Run("the service pod gone: the pull fails saying so, and succeeds once it is back", func(t *testing.T) {
		k.remove(servicePod)
		k.waitGone(t, servicePod, time.Minute)
		enc := e.encryptApp(t, ksNode, "ds-back", "decrypted after the service came back\n", rNode["node"])
		k.write(t, "enc-back", appPod(enc))
		// containerd reports the decoder's failure in most pulls ("dial unix
		// …/ocikp.sock: connect: no such file or directory"); in some it
		// reads the decoder's empty output first and reports only "wrong
		// diff id … calculated on extraction sha256:e3b0c442…" (the digest
		// of nothing). The kubelet retries (10 s, then 20 s), so the test
		// waits for a failure that names the socket.
		var msgs []string
		got := k.waitPod(t, "enc-back", 2*time.Minute, func(p kubeletPod) bool {
			var seen []string
			p.waiting(&seen)
			for _, m := range seen {
				if strings.Contains(m, "Pull") && !slices.Contains(msgs, m) {
					msgs = append(msgs, m)
				}
			}
			return p.started() || slices.ContainsFunc(msgs, func(m string) bool { return strings.Contains(m, "ocikp.sock") })
		})
		if got.started() {
			t.Fatalf("the pod started without its node's service: %s", got)
		}
		t.Logf("the kubelet's status with the service gone:\n%s", strings.Join(msgs, "\n"))
		if !slices.ContainsFunc(msgs, func(m string) bool { return strings.Contains(m, "ocikp.sock") }) {
			t.Errorf("no pull error names the service's socket within 2 min: %s", strings.Join(msgs, "\n"))
		}
		k.write(t, servicePod, pod)
		k.waitReady(t, servicePod, 3*time.Minute)
		// The kubelet retries the pull with back-off (10 s, 20 s, 40 s).
		k.ran(t, "enc-back", "decrypted after the service came back", 3*time.Minute)
	})
}

// The DaemonSet's pod is the static pod "ocikp".
const servicePod = "ocikp"

// startService does the DaemonSet header's once-per-node steps (the
// socket's directory, owned by the service's user: its tmpfiles.d line),
// gives containerd the drop-in that "ocikp config --containerd" makes from
// the node's key provider config, and starts the node with the DaemonSet's
// derived pod as the static pod "ocikp". The node config is written as on
// a real node, where the pod's /run/ocikp is the node's: the socket path
// substituted like the host path. It returns the node config's path.
func (e *nodeEnv) startService(t *testing.T, dir, node string, pod map[string]any) (*containerd, *kubeletNode, string) {
	t.Helper()
	sockDir := filepath.Join(node, podSocketDir)
	if err := os.MkdirAll(sockDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(sockDir, 65532, 65532); err != nil {
		t.Fatal(err)
	}
	nodeConfig := filepath.Join(dir, "ocicrypt.json")
	if out, err := exec.Command(e.p.bin, "config", "--grpc", "unix://"+filepath.Join(sockDir, "ocikp.sock"), "--output", nodeConfig).CombinedOutput(); err != nil {
		t.Fatalf("ocikp config --grpc: %v\n%s", err, out)
	}
	c, k := e.start(t, dir, e.p.containerdDropIn(t, "2", nodeConfig, ""), true)
	k.write(t, servicePod, pod)
	return c, k, nodeConfig
}

// derivePod turns the pod template of the DaemonSet in file into a static
// pod for this node. Everything is taken as written except what a static
// pod on a test node cannot have, and each of those is checked to still
// be what the manifest says before it is replaced: a manifest that
// changes there fails here instead of drifting from what is run.
//   - the image ocikp:dev: the scratch image in the test's registry;
//   - each hostPath root P: NODE/P (the node's directories, in the test);
//   - each hostPath in sockets (a device): the unix socket sockets[path]
//     (swtpm's, for /dev/tpmrm0: ocikp opens either by file type);
//   - each Secret volume: a hostPath directory laid out as the kubelet
//     mounts the Secret (secrets[name]; a static pod cannot refer to a
//     Secret: there is no API server);
//   - hostNetwork: the node has no CNI (the pod needs no network);
//   - metadata: the template's labels, the DaemonSet's namespace.
//
// It returns the pod and the list of substitutions made.
func derivePod(t *testing.T, file, image, node string, secrets, sockets map[string]string) (map[string]any, []string) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var ds struct {
		Kind     string `yaml:"kind"`
		Metadata struct {
			Namespace string `yaml:"namespace"`
		} `yaml:"metadata"`
		Spec struct {
			Template struct {
				Metadata map[string]any `yaml:"metadata"`
				Spec     map[string]any `yaml:"spec"`
			} `yaml:"template"`
		} `yaml:"spec"`
	}
	if err := yaml.Unmarshal(data, &ds); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	spec := ds.Spec.Template.Spec
	if ds.Kind != "DaemonSet" || spec == nil {
		t.Fatalf("%s: not a DaemonSet with a pod template", file)
	}
	var subs []string
	sub := func(format string, args ...any) { subs = append(subs, fmt.Sprintf(format, args...)) }
	list := func(v any) []any {
		l, _ := v.([]any)
		return l
	}
	for _, kind := range []string{"initContainers", "containers"} {
		for _, ci := range list(spec[kind]) {
			c := ci.(map[string]any)
			if c["image"] != "ocikp:dev" {
				t.Fatalf("%s: container %v has image %v, not ocikp:dev: update derivePod", file, c["name"], c["image"])
			}
			c["image"] = image
			sub("%s %v: image ocikp:dev -> %s", kind, c["name"], image)
		}
	}
	secretsSeen := 0
	for _, vi := range list(spec["volumes"]) {
		v := vi.(map[string]any)
		switch {
		case v["hostPath"] != nil:
			hp := v["hostPath"].(map[string]any)
			path, _ := hp["path"].(string)
			if !filepath.IsAbs(path) {
				t.Fatalf("%s: volume %v: hostPath %q", file, v["name"], path)
			}
			if sock, ok := sockets[path]; ok {
				if hp["type"] != "CharDevice" {
					t.Fatalf("%s: volume %v: hostPath %s of type %v, not CharDevice: update the test", file, v["name"], path, hp["type"])
				}
				hp["path"], hp["type"] = sock, "Socket"
				sub("volume %v: hostPath %s (CharDevice) -> %s (Socket)", v["name"], path, sock)
				delete(sockets, path)
				break
			}
			hp["path"] = filepath.Join(node, path)
			sub("volume %v: hostPath %s -> %s", v["name"], path, hp["path"])
		case v["secret"] != nil:
			name, _ := v["name"].(string)
			dir, ok := secrets[name]
			sec := v["secret"].(map[string]any)
			if !ok || sec["defaultMode"] != 0o400 || spec["securityContext"].(map[string]any)["fsGroup"] != 65532 {
				t.Fatalf("%s: Secret volume %s (%v, fsGroup %v) is not the one secretDir lays out (defaultMode 0400, fsGroup 65532): update the test",
					file, name, sec, spec["securityContext"].(map[string]any)["fsGroup"])
			}
			delete(v, "secret")
			v["hostPath"] = map[string]any{"path": dir, "type": "Directory"}
			sub("volume %s: Secret %v -> hostPath %s laid out as the kubelet mounts it (links into ..data, files 0440 group fsGroup)", name, sec["secretName"], dir)
			secretsSeen++
		}
	}
	if len(sockets) != 0 {
		t.Fatalf("%s: no hostPath volumes %v", file, sockets)
	}
	if secretsSeen != len(secrets) {
		t.Fatalf("%s: %d Secret volumes, the test lays out %d", file, secretsSeen, len(secrets))
	}
	if _, ok := spec["hostNetwork"]; ok {
		t.Fatalf("%s: the template sets hostNetwork: update derivePod", file)
	}
	spec["hostNetwork"] = true
	sub("hostNetwork: true (the node has no CNI; the pod uses only unix sockets)")
	meta := map[string]any{"namespace": ds.Metadata.Namespace}
	if l, ok := ds.Spec.Template.Metadata["labels"]; ok {
		meta["labels"] = l
	}
	sub("metadata: the template's labels, namespace %s (a static pod is named NAME-NODE)", ds.Metadata.Namespace)
	return map[string]any{"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}, subs
}

// secretDir lays out files in dir as the kubelet mounts a Secret volume
// with defaultMode 0400 for a pod with fsGroup gid: each NAME a link to
// ..data/NAME, ..data a link to a timestamped directory, files 0440 (the
// kubelet adds group read for fsGroup) owned by root and group gid.
func secretDir(t *testing.T, dir string, files map[string][]byte, gid int) {
	t.Helper()
	ts := "..2026_12_05_00_00_00.000000001"
	if err := os.MkdirAll(filepath.Join(dir, ts), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range files {
		f := filepath.Join(dir, ts, name)
		if err := os.WriteFile(f, data, 0o440); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(f, 0, gid); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(filepath.Join("..data", name), filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(ts, filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{dir, filepath.Join(dir, ts)} {
		if err := os.Chown(d, 0, gid); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, 0o755|os.ModeSetgid); err != nil {
			t.Fatal(err)
		}
	}
}

// TestKubeletDaemonSetTPM is TestKubeletDaemonSet for
// deploy/kubernetes/daemonset-tpm.yaml: the node key is made by a software
// TPM (swtpm, its socket in place of /dev/tpmrm0) in the pod's node-key
// init container, and an image encrypted for the recipient that container
// printed decrypts on the node through the service, while no file on the
// node holds the private key: the keystore holds the TPM's record.
func TestKubeletDaemonSetTPM(t *testing.T) {
	e := newNodeEnv(t)
	p := e.p
	sw := tpmtest.Start(t)
	// The device's 0660 and the tss group, in the socket's terms.
	if err := os.Chmod(sw.Socket, 0o666); err != nil {
		t.Fatal(err)
	}
	ks, _ := p.keystore(t, "unused")
	image := scratchImage(t, e.reg)

	dir := shortTempDir(t, "kt-")
	node := filepath.Join(dir, "node")
	pod, subs := derivePod(t, "../deploy/kubernetes/daemonset-tpm.yaml", image, node, nil, map[string]string{"/dev/tpmrm0": sw.Socket})
	t.Logf("the static pod differs from the DaemonSet's template by:\n  %s", strings.Join(subs, "\n  "))
	// The header's once-per-node step beside the socket's directory.
	state := filepath.Join(node, "var/lib/ocikp")
	if err := os.MkdirAll(state, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(state, 65532, 65532); err != nil {
		t.Fatal(err)
	}
	_, k, _ := e.startService(t, dir, node, pod)
	k.waitReady(t, servicePod, 3*time.Minute)
	logs, _ := filepath.Glob(filepath.Join(k.podLogs, "ocikp_ocikp-"+nodeName+"_*", "node-key", "*.log"))
	var recipient string
	for _, f := range logs {
		data, _ := os.ReadFile(f)
		for _, line := range strings.Split(string(data), "\n") {
			if _, r, ok := strings.Cut(line, " stdout F "); ok && strings.HasPrefix(r, "ocikp1") {
				recipient = strings.TrimSpace(r)
			}
		}
	}
	if recipient == "" {
		t.Fatalf("the node-key init container printed no recipient (%v)", logs)
	}
	t.Logf("the node's TPM key: %s", recipient)

	enc := e.encryptApp(t, ks, "tpm-node", "decrypted by the node's TPM\n", recipient)
	k.runs(t, "enc-tpm", enc, "decrypted by the node's TPM", 3*time.Minute)

	// The key's record is the TPM's: a public area and a private blob
	// only that TPM can load; nothing on the node is a private key.
	data, err := os.ReadFile(filepath.Join(state, "keys", "tpm", "node.json"))
	if err != nil {
		t.Fatalf("no TPM record of the node key: %v", err)
	}
	var rec struct{ Recipient, Device, Public, Private string }
	if err := json.Unmarshal(data, &rec); err != nil || rec.Recipient != recipient || rec.Private == "" || rec.Public == "" {
		t.Fatalf("the node key's record is not a TPM record for %s: %v\n%s", recipient, err, data)
	}
	// The node's host paths, the kubelet's pod directories (volumes) and
	// the pods' logs (not its pki/: the kubelet's own TLS key).
	for _, d := range []string{node, filepath.Join(dir, "root"), k.podLogs} {
		filepath.WalkDir(d, func(path string, de os.DirEntry, err error) error {
			if err != nil || !de.Type().IsRegular() {
				return nil
			}
			if strings.HasSuffix(path, ".key") {
				t.Errorf("a key file on the node: %s", path)
			}
			if b, err := os.ReadFile(path); err == nil && bytes.Contains(b, []byte("PRIVATE KEY")) {
				t.Errorf("%s holds a private key", path)
			}
			return nil
		})
	}
}
