package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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
// Then the service pod is removed: a pull fails with a message naming the
// service, and succeeds once the pod is back.
func TestKubeletDaemonSet(t *testing.T) {
	kubelet := need(t, "kubelet")
	ctd := need(t, "containerd2")
	shim := need(t, "containerd-shim-runc-v2")
	runc := need(t, "runc")
	nerdctl := need(t, "nerdctl2")
	need(t, "unshare")
	p := newProvider(t, "ocikp")
	sk := newSkopeo(t, p)
	reg := startRegistry(t)
	ksNode, rNode := p.keystore(t, "node")
	_, rOther := p.keystore(t, "other")
	app := buildPodApp(t)
	pause := reg + "/pause:1"
	pushRef(t, pause, podImage(t, app, "", "sleep"))
	image := buildScratchImage(t, reg)

	dir := shortTempDir(t, "kd-")
	node := filepath.Join(dir, "node") // the node's / for the pod's host paths
	hostSocket := "unix://" + filepath.Join(node, podSocketDir, "ocikp.sock")

	// The Secret "ocikp-keys" with node.key, as the kubelet mounts it.
	key, err := os.ReadFile(filepath.Join(ksNode, "node.key"))
	if err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(dir, "secret")
	secretDir(t, secret, map[string][]byte{"node.key": key}, 65532)

	pod, subs := derivePod(t, "../deploy/kubernetes/daemonset.yaml", image, node, map[string]string{"secret": secret}, nil)
	// The header's once-per-node step (its tmpfiles.d line): the socket's
	// directory, owned by the service's user.
	if err := os.MkdirAll(filepath.Join(node, podSocketDir), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(filepath.Join(node, podSocketDir), 65532, 65532); err != nil {
		t.Fatal(err)
	}
	t.Logf("the static pod differs from the DaemonSet's template by:\n  %s", strings.Join(subs, "\n  "))

	// The node's key provider config as on a real node, where the pod's
	// /run/ocikp is the node's: the socket path substituted like the host
	// path. containerd's drop-in is made from it as the header says.
	nodeConfig := filepath.Join(dir, "ocicrypt.json")
	out, err := exec.Command(p.bin, "config", "--grpc", hostSocket, "--output", nodeConfig).CombinedOutput()
	if err != nil {
		t.Fatalf("ocikp config --grpc: %v\n%s", err, out)
	}
	dropIn := p.containerdDropIn(t, "2", nodeConfig, "")
	c := startContainerd(t, containerdSetup{bin: ctd, nerdctl: nerdctl, major: "2", dropIn: dropIn, registry: reg,
		extra: nodeContainerdConfig(dir, shim, runc, pause)})
	t.Cleanup(func() { removeAllSandboxes(t, c.sock) })

	manifests := filepath.Join(dir, "manifests")
	os.MkdirAll(manifests, 0o755)
	writeManifest(t, manifests, "ocikp", pod)
	k := startKubelet(t, kubelet, dir, c.sock, manifests, true)

	servicePod := "ocikp"
	serviceReady := func(t *testing.T) {
		t.Helper()
		got := k.waitPod(t, servicePod, 3*time.Minute, func(p kubeletPod) bool { return p.ready() || p.Status.Phase == "Failed" })
		if !got.ready() {
			t.Fatalf("the DaemonSet's pod is not ready: %s", got)
		}
	}

	t.Run("the DaemonSet's pod starts: node config written, key imported, probes pass", func(t *testing.T) {
		serviceReady(t)
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

	runs := func(t *testing.T, name, image, msg string, limit time.Duration) {
		t.Helper()
		writeManifest(t, manifests, name, appPod(image))
		got := k.waitPod(t, name, limit, func(p kubeletPod) bool { return p.Status.Phase == "Succeeded" || p.Status.Phase == "Failed" })
		if got.Status.Phase != "Succeeded" {
			t.Fatalf("pod phase %s: %s", got.Status.Phase, got)
		}
		k.wantLog(t, name, msg)
	}

	t.Run("containerd decrypts another pod's image through the service pod's socket", func(t *testing.T) {
		enc := encryptImage(t, p, sk, reg, ksNode, app, "ds-node", "decrypted through the DaemonSet's service\n", rNode["node"], rOther["other"])
		runs(t, "enc-ds", enc, "decrypted through the DaemonSet's service", 3*time.Minute)
	})

	// docs/security.md, "Nodes shared by tenants": containerd finds a
	// layer's snapshot by its plaintext digest (in the image's config,
	// which is not encrypted) and does not decrypt a layer it has.
	t.Run("an image for a key the node lacks starts when its plaintext layer is on the node", func(t *testing.T) {
		enc := reg + "/app:ds-other-same-layer"
		if out, err := sk.copy(ksNode, []string{"--encryption-key", "provider:" + p.name + ":" + rOther["other"]},
			"docker://"+reg+"/app:plain-ds-node", "docker://"+enc); err != nil {
			t.Fatalf("encrypt: %v\n%s", err, out)
		}
		p.calls(t)
		runs(t, "enc-other-same-layer", enc, "decrypted through the DaemonSet's service", 2*time.Minute)
	})

	t.Run("the service pod gone: the pull fails saying so, and succeeds once it is back", func(t *testing.T) {
		os.Remove(filepath.Join(manifests, "ocikp.yaml"))
		deadline := time.Now().Add(time.Minute)
		for gone := false; !gone; {
			pods, err := k.pods()
			gone = err == nil
			for _, p := range pods {
				gone = gone && p.Metadata.Name != servicePod+"-"+nodeName
			}
			if time.Now().After(deadline) {
				t.Fatalf("the kubelet did not stop the service pod within a minute")
			}
			time.Sleep(500 * time.Millisecond)
		}
		enc := encryptImage(t, p, sk, reg, ksNode, app, "ds-back", "decrypted after the service came back\n", rNode["node"])
		writeManifest(t, manifests, "enc-back", appPod(enc))
		var msg string
		got := k.waitPod(t, "enc-back", 3*time.Minute, func(p kubeletPod) bool {
			for _, cs := range p.Status.ContainerStatuses {
				if cs.State.Running != nil || cs.State.Terminated != nil {
					return true
				}
				if w := cs.State.Waiting; w != nil && w.Message != "" && strings.Contains(w.Reason, "Pull") {
					msg = w.Reason + ": " + w.Message
					return true
				}
			}
			return false
		})
		if msg == "" {
			t.Fatalf("the pod started without its node's service: %s", got)
		}
		t.Logf("the kubelet's status with the service gone: %s", msg)
		if !strings.Contains(msg, "ocikp.sock") {
			t.Errorf("the pull error does not name the service's socket: %s", msg)
		}
		writeManifest(t, manifests, "ocikp", pod)
		serviceReady(t)
		// The kubelet retries the pull with back-off (10 s, 20 s, 40 s).
		got = k.waitPod(t, "enc-back", 3*time.Minute, func(p kubeletPod) bool { return p.Status.Phase == "Succeeded" || p.Status.Phase == "Failed" })
		if got.Status.Phase != "Succeeded" {
			t.Fatalf("pod phase %s after the service came back: %s", got.Status.Phase, got)
		}
		k.wantLog(t, "enc-back", "decrypted after the service came back")
	})
}

// appPod is a one-shot static pod of image on the host network.
func appPod(image string) map[string]any {
	return map[string]any{
		"apiVersion": "v1", "kind": "Pod",
		"metadata": map[string]any{"namespace": "default"},
		"spec": map[string]any{
			"hostNetwork":                   true,
			"restartPolicy":                 "Never",
			"terminationGracePeriodSeconds": 2,
			"containers":                    []any{map[string]any{"name": "app", "image": image, "imagePullPolicy": "IfNotPresent"}},
		},
	}
}

// writeManifest writes pod (a whole v1.Pod) as the static pod NAME.
func writeManifest(t *testing.T, dir, name string, pod map[string]any) {
	t.Helper()
	pod["metadata"].(map[string]any)["name"] = name
	data, err := json.MarshalIndent(pod, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".yaml"), data, 0o644); err != nil {
		t.Fatal(err)
	}
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
	kubelet := need(t, "kubelet")
	ctd := need(t, "containerd2")
	shim := need(t, "containerd-shim-runc-v2")
	runc := need(t, "runc")
	nerdctl := need(t, "nerdctl2")
	need(t, "unshare")
	sw := tpmtest.Start(t)
	// The device's 0660 and the tss group, in the socket's terms.
	if err := os.Chmod(sw.Socket, 0o666); err != nil {
		t.Fatal(err)
	}
	p := newProvider(t, "ocikp")
	sk := newSkopeo(t, p)
	reg := startRegistry(t)
	ks, _ := p.keystore(t, "unused")
	app := buildPodApp(t)
	pause := reg + "/pause:1"
	pushRef(t, pause, podImage(t, app, "", "sleep"))
	image := buildScratchImage(t, reg)

	dir := shortTempDir(t, "kt-")
	node := filepath.Join(dir, "node")
	hostSocket := "unix://" + filepath.Join(node, podSocketDir, "ocikp.sock")
	pod, subs := derivePod(t, "../deploy/kubernetes/daemonset-tpm.yaml", image, node, nil, map[string]string{"/dev/tpmrm0": sw.Socket})
	t.Logf("the static pod differs from the DaemonSet's template by:\n  %s", strings.Join(subs, "\n  "))
	// The header's once-per-node steps.
	state := filepath.Join(node, "var/lib/ocikp")
	for d, mode := range map[string]os.FileMode{filepath.Join(node, podSocketDir): 0o755, state: 0o700} {
		if err := os.MkdirAll(d, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(d, 65532, 65532); err != nil {
			t.Fatal(err)
		}
	}

	nodeConfig := filepath.Join(dir, "ocicrypt.json")
	if out, err := exec.Command(p.bin, "config", "--grpc", hostSocket, "--output", nodeConfig).CombinedOutput(); err != nil {
		t.Fatalf("ocikp config --grpc: %v\n%s", err, out)
	}
	dropIn := p.containerdDropIn(t, "2", nodeConfig, "")
	c := startContainerd(t, containerdSetup{bin: ctd, nerdctl: nerdctl, major: "2", dropIn: dropIn, registry: reg,
		extra: nodeContainerdConfig(dir, shim, runc, pause)})
	t.Cleanup(func() { removeAllSandboxes(t, c.sock) })
	manifests := filepath.Join(dir, "manifests")
	os.MkdirAll(manifests, 0o755)
	writeManifest(t, manifests, "ocikp", pod)
	k := startKubelet(t, kubelet, dir, c.sock, manifests, true)

	got := k.waitPod(t, "ocikp", 3*time.Minute, func(p kubeletPod) bool { return p.ready() || p.Status.Phase == "Failed" })
	if !got.ready() {
		t.Fatalf("the TPM DaemonSet's pod is not ready: %s", got)
	}
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

	enc := encryptImage(t, p, sk, reg, ks, app, "tpm-node", "decrypted by the node's TPM\n", recipient)
	writeManifest(t, manifests, "enc-tpm", appPod(enc))
	got = k.waitPod(t, "enc-tpm", 3*time.Minute, func(p kubeletPod) bool { return p.Status.Phase == "Succeeded" || p.Status.Phase == "Failed" })
	if got.Status.Phase != "Succeeded" {
		t.Fatalf("pod phase %s: %s", got.Status.Phase, got)
	}
	k.wantLog(t, "enc-tpm", "decrypted by the node's TPM")

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
		filepath.WalkDir(d, func(path string, e os.DirEntry, err error) error {
			if err != nil || !e.Type().IsRegular() {
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
