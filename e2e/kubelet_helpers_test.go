package e2e

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/ocikp/ocikp/internal/testdaemon"
)

// What the kubelet node tests (kubelet_test.go, kubelet_daemonset_test.go)
// share: a node of a standalone kubelet v1.37 (static pods, no API server)
// on containerd 2.4 whose configuration imports "ocikp config
// --containerd" output verbatim, with containerd's own runc shim and runc
// 1.5; pods built from one static program (testdata/podapp), so that no
// base image comes from outside the test's registry; the kubelet's view of
// its pods, read from its read-only port on loopback (GET /pods, which
// carries the status of static pods in standalone mode).

// nodeName is the kubelet's --hostname-override; static pods are named
// NAME-nodeName.
const nodeName = "ocikp-node"

// nodeEnv is what a node test starts from: the node's programs, an ocikp
// provider with skopeo, a registry holding the sandbox image, and the pod
// program.
type nodeEnv struct {
	kubelet, containerd, shim, runc, nerdctl string

	p        *provider
	sk       *skopeo
	reg, app string
	pause    string // the sandbox image, pinned in containerd
}

func newNodeEnv(t *testing.T) *nodeEnv {
	e := &nodeEnv{
		kubelet:    need(t, "kubelet"),
		containerd: need(t, "containerd2"),
		shim:       need(t, "containerd-shim-runc-v2"),
		runc:       need(t, "runc"),
		nerdctl:    need(t, "nerdctl2"),
	}
	need(t, "unshare")
	e.p = newProviderExec(t, "ocikp", "ocikp-unwrap") // what a node runs (docs/callers.md)
	e.sk = newSkopeo(t, e.p)
	e.reg = startRegistry(t)
	e.app = buildPodApp(t)
	// registry.k8s.io is out of reach, and any image whose entrypoint
	// sleeps serves as the sandbox image.
	e.pause = e.reg + "/pause:1"
	pushRef(t, e.pause, podImage(t, e.app, "", "sleep"))
	return e
}

// start runs containerd with ocikp's drop-in and a kubelet whose static
// pods are DIR/manifests (see startKubelet for shareRoot).
func (e *nodeEnv) start(t *testing.T, dir, dropIn string, shareRoot bool) (*containerd, *kubeletNode) {
	c := startContainerd(t, containerdSetup{bin: e.containerd, nerdctl: e.nerdctl, major: "2", dropIn: dropIn, registry: e.reg,
		extra: nodeContainerdConfig(dir, e.shim, e.runc, e.pause)})
	t.Cleanup(func() { removeAllSandboxes(t, c.sock) })
	manifests := filepath.Join(dir, "manifests")
	if err := os.MkdirAll(manifests, 0o755); err != nil {
		t.Fatal(err)
	}
	return c, startKubelet(t, e.kubelet, dir, c.sock, manifests, shareRoot)
}

// encrypt pushes img as reg/app:plain-TAG and encrypts it with skopeo to
// reg/app:TAG for the recipients; it checks that every layer in the
// registry is encrypted.
func (e *nodeEnv) encrypt(t *testing.T, keystore, tag string, img v1.Image, recipients ...string) string {
	t.Helper()
	plain, enc := e.reg+"/app:plain-"+tag, e.reg+"/app:"+tag
	pushRef(t, plain, img)
	var flags []string
	for _, r := range recipients {
		flags = append(flags, "--encryption-key", "provider:"+e.p.name+":"+r)
	}
	if out, err := e.sk.copy(keystore, flags, "docker://"+plain, "docker://"+enc); err != nil {
		t.Fatalf("encrypt %s: %v\n%s", tag, err, out)
	}
	e.p.calls(t)
	for _, l := range remoteManifest(t, enc).Layers {
		if !strings.HasSuffix(string(l.MediaType), "+encrypted") {
			t.Fatalf("%s: layer not encrypted: %s", enc, l.MediaType)
		}
	}
	return enc
}

// encryptApp is encrypt of a one-layer pod image that prints msg.
func (e *nodeEnv) encryptApp(t *testing.T, keystore, tag, msg string, recipients ...string) string {
	t.Helper()
	return e.encrypt(t, keystore, tag, podImage(t, e.app, msg, "cat", "/msg"), recipients...)
}

// nodeContainerdConfig is what a kubelet node's containerd needs here
// besides ocikp's drop-in: containerd's own shim and runc ≥ 1.2 (Debian's
// shim 1.6 and runc 1.1 cannot run containerd 2.4's sandboxes), runc's
// state inside the test, no lowering of oom_score_adj (runc may not, here),
// and the sandbox image from the test's registry.
func nodeContainerdConfig(dir, shim, runc, pause string) string {
	return fmt.Sprintf(`[plugins.'io.containerd.cri.v1.runtime']
  restrict_oom_score_adj = true
[plugins.'io.containerd.cri.v1.runtime'.containerd]
  default_runtime_name = "runc"
[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
  runtime_path = %q
  [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
    BinaryName = %q
    Root = %q
    SystemdCgroup = false
[plugins.'io.containerd.cri.v1.images'.pinned_images]
  sandbox = %q
`, shim, runc, filepath.Join(dir, "runc"), pause)
}

// kubeletNode is a running standalone kubelet.
type kubeletNode struct {
	url, podLogs, manifests string
	logs                    *testdaemon.Log
}

// startKubelet runs a standalone kubelet on containerd's socket with the
// static pods of manifests until the test ends; the pods are stopped
// before it. It runs in a private mount namespace with a tmpfs on
// /var/log: the kubelet links every container's log into the fixed
// /var/log/containers, which the test must not write. Mounts the kubelet
// makes itself (Secret volumes, memory emptyDirs) stay in that namespace,
// out of runc's sight, unless shareRoot: then the kubelet's root directory
// is a shared mount of the host's namespace, so that its mounts there
// reach containerd and runc (and are unmounted when the test ends).
func startKubelet(t *testing.T, bin, dir, sock, manifests string, shareRoot bool) *kubeletNode {
	k := &kubeletNode{podLogs: filepath.Join(dir, "pod-logs"), manifests: manifests}
	root := filepath.Join(dir, "root")
	propagation := "slave"
	if shareRoot {
		if err := os.MkdirAll(root, 0o700); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("sh", "-c", `mount --bind "$0" "$0" && mount --make-shared "$0"`, root).CombinedOutput(); err != nil {
			t.Fatalf("sharing the kubelet's root: %v\n%s", err, out)
		}
		// Runs after the kubelet has stopped (cleanups run last first).
		t.Cleanup(func() {
			if out, err := exec.Command("umount", "-R", "-l", root).CombinedOutput(); err != nil {
				t.Errorf("unmounting the kubelet's root: %v\n%s", err, out)
			}
		})
		// The root stays in the host's peer group; the mount holding
		// /var/log is made private below, so the tmpfs stays in.
		propagation = "unchanged"
	}
	port := freeLoopbackPort(t)
	k.url = fmt.Sprintf("http://127.0.0.1:%d", port)
	// The kubelet sets these kernel settings when it starts
	// (setupKernelTunables); put them back.
	tunables := []string{"vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops", "kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes"}
	saved := map[string][]byte{}
	for _, s := range tunables {
		if v, err := os.ReadFile("/proc/sys/" + s); err == nil {
			saved[s] = v
		}
	}
	t.Cleanup(func() {
		for s, v := range saved {
			if err := os.WriteFile("/proc/sys/"+s, v, 0o644); err != nil {
				t.Errorf("restoring %s: %v", s, err)
			}
		}
	})
	cfg := fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# cgroup v1 (hybrid) here; no systemd cgroup driver; no QoS cgroups.
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupsPerQOS: false
enforceNodeAllocatable: []
failSwapOn: false
oomScoreAdj: 0
containerRuntimeEndpoint: unix://%s
staticPodPath: %s
fileCheckFrequency: 1s
podLogsDir: %s
volumePluginDir: %s
# Loopback only: no authenticated server (and no API server to ask), the
# read-only port for /pods.
enableServer: false
authentication:
  webhook: {enabled: false}
  anonymous: {enabled: false}
authorization:
  mode: AlwaysAllow
address: 127.0.0.1
readOnlyPort: %d
healthzPort: 0
# The machine's disk and memory are not the test's business.
evictionHard:
  memory.available: "1Mi"
  nodefs.available: "1%%"
  nodefs.inodesFree: "1%%"
  imagefs.available: "1%%"
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
`, sock, manifests, k.podLogs, filepath.Join(dir, "volume-plugins"), port)
	cfgPath := filepath.Join(dir, "kubelet.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	// unshare execs sh, which execs the kubelet: the test's signal reaches it.
	cmd := exec.Command("unshare", "--mount", "--propagation", propagation, "sh", "-c",
		`mount --make-private "$(findmnt -n -o TARGET -T /var/log)" && mount -t tmpfs -o mode=0755 tmpfs /var/log && exec "$0" "$@"`, bin,
		"--config", cfgPath, "--root-dir", root, "--cert-dir", filepath.Join(dir, "pki"),
		"--hostname-override", nodeName, "--v", "2")
	k.logs = testdaemon.Start(t, cmd)
	// Runs before the kubelet is stopped: it stops its own pods.
	t.Cleanup(func() {
		entries, _ := os.ReadDir(manifests)
		for _, e := range entries {
			os.Remove(filepath.Join(manifests, e.Name()))
		}
		deadline := time.Now().Add(time.Minute)
		for time.Now().Before(deadline) && !k.logs.Exited() {
			if pods, err := k.pods(); err == nil && len(pods) == 0 {
				return
			}
			time.Sleep(time.Second)
		}
		t.Logf("the kubelet had not stopped its pods; removing them through the CRI")
	})
	deadline := time.Now().Add(time.Minute)
	for {
		if _, err := k.pods(); err == nil {
			return k
		}
		if k.logs.Exited() || time.Now().After(deadline) {
			t.Fatalf("the kubelet did not serve /pods on %s:\n%s", k.url, tail(k.logs.String(), 40))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// kubeletPod is the part of a v1.Pod the test reads.
type kubeletPod struct {
	Metadata struct {
		Name string `json:"name"`
		UID  string `json:"uid"`
	} `json:"metadata"`
	Status struct {
		Phase      string `json:"phase"`
		Conditions []struct {
			Type   string `json:"type"`
			Status string `json:"status"`
		} `json:"conditions"`
		ContainerStatuses []struct {
			Name         string `json:"name"`
			RestartCount int    `json:"restartCount"`
			State        struct {
				Waiting *struct {
					Reason  string `json:"reason"`
					Message string `json:"message"`
				} `json:"waiting"`
				Running    *struct{} `json:"running"`
				Terminated *struct {
					ExitCode int    `json:"exitCode"`
					Reason   string `json:"reason"`
				} `json:"terminated"`
			} `json:"state"`
		} `json:"containerStatuses"`
	} `json:"status"`
}

// ready reports the pod's Ready condition.
func (p kubeletPod) ready() bool {
	for _, c := range p.Status.Conditions {
		if c.Type == "Ready" {
			return c.Status == "True"
		}
	}
	return false
}

// ended reports whether the pod has run to its end.
func (p kubeletPod) ended() bool { return p.Status.Phase == "Succeeded" || p.Status.Phase == "Failed" }

// started reports whether any container of the pod has started.
func (p kubeletPod) started() bool {
	for _, cs := range p.Status.ContainerStatuses {
		if cs.State.Running != nil || cs.State.Terminated != nil {
			return true
		}
	}
	return false
}

// restarts returns how often the kubelet restarted the container.
func (p kubeletPod) restarts(container string) int {
	for _, cs := range p.Status.ContainerStatuses {
		if cs.Name == container {
			return cs.RestartCount
		}
	}
	return 0
}

func (p kubeletPod) String() string {
	b, _ := json.Marshal(p)
	return string(b)
}

// waiting collects the distinct "REASON: message" of the pod's waiting
// containers into seen, in the order the kubelet showed them.
func (p kubeletPod) waiting(seen *[]string) {
	for _, cs := range p.Status.ContainerStatuses {
		if w := cs.State.Waiting; w != nil && w.Message != "" {
			if m := w.Reason + ": " + w.Message; len(*seen) == 0 || (*seen)[len(*seen)-1] != m {
				*seen = append(*seen, m)
			}
		}
	}
}

// pods returns the kubelet's pods with their status (GET /pods).
func (k *kubeletNode) pods() ([]kubeletPod, error) {
	client := http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(k.url + "/pods")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /pods: %s", resp.Status)
	}
	var list struct {
		Items []kubeletPod `json:"items"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&list); err != nil {
		return nil, err
	}
	return list.Items, nil
}

// waitPod polls the static pod NAME until done accepts it, and returns it.
func (k *kubeletNode) waitPod(t *testing.T, pod string, limit time.Duration, done func(kubeletPod) bool) kubeletPod {
	t.Helper()
	full := pod + "-" + nodeName
	deadline := time.Now().Add(limit)
	var last kubeletPod
	for {
		pods, err := k.pods()
		if err != nil && k.logs.Exited() {
			t.Fatalf("the kubelet exited:\n%s", tail(k.logs.String(), 40))
		}
		for _, p := range pods {
			if p.Metadata.Name == full {
				last = p
				if done(p) {
					return p
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("pod %s not as expected within %v; last status: %s\nkubelet log:\n%s", full, limit, last, tail(k.logs.String(), 30))
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// waitReady waits for the static pod NAME to be ready.
func (k *kubeletNode) waitReady(t *testing.T, pod string, limit time.Duration) kubeletPod {
	t.Helper()
	got := k.waitPod(t, pod, limit, func(p kubeletPod) bool { return p.ready() || p.Status.Phase == "Failed" })
	if !got.ready() {
		t.Fatalf("pod %s is not ready: %s", pod, got)
	}
	return got
}

// waitGone waits until the kubelet no longer has the static pod NAME.
func (k *kubeletNode) waitGone(t *testing.T, pod string, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for gone := false; !gone; {
		pods, err := k.pods()
		gone = err == nil
		for _, p := range pods {
			gone = gone && p.Metadata.Name != pod+"-"+nodeName
		}
		if time.Now().After(deadline) {
			t.Fatalf("the kubelet did not stop pod %s within %v", pod, limit)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// runs writes the one-shot pod NAME of image and checks that it runs to
// success and that its log holds want.
func (k *kubeletNode) runs(t *testing.T, pod, image, want string, limit time.Duration) {
	t.Helper()
	k.write(t, pod, appPod(image))
	k.ran(t, pod, want, limit)
}

// ran checks that the static pod NAME runs to success and that its log
// holds want.
func (k *kubeletNode) ran(t *testing.T, pod, want string, limit time.Duration) {
	t.Helper()
	got := k.waitPod(t, pod, limit, kubeletPod.ended)
	if got.Status.Phase != "Succeeded" {
		t.Fatalf("pod phase %s: %s", got.Status.Phase, got)
	}
	k.wantLog(t, pod, want)
}

// wantLog checks that the log of the static pod's container "app", as the
// kubelet had containerd write it, contains want.
func (k *kubeletNode) wantLog(t *testing.T, pod, want string) {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(k.podLogs, "default_"+pod+"-"+nodeName+"_*", "app", "*.log"))
	if len(files) == 0 {
		t.Fatalf("no log of pod %s under %s", pod, k.podLogs)
	}
	var all []byte
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, data...)
	}
	if !bytes.Contains(all, []byte(want)) {
		t.Fatalf("the log of pod %s lacks %q:\n%s", pod, want, all)
	}
	t.Logf("pod %s log: %s", pod, strings.TrimSpace(string(all)))
}

// write writes pod (a whole v1.Pod) as the static pod NAME.
func (k *kubeletNode) write(t *testing.T, name string, pod map[string]any) {
	t.Helper()
	pod["metadata"].(map[string]any)["name"] = name
	data, err := json.MarshalIndent(pod, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(k.manifests, name+".yaml"), data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// remove deletes the static pod NAME's manifest: the kubelet stops it.
func (k *kubeletNode) remove(name string) { os.Remove(filepath.Join(k.manifests, name+".yaml")) }

// staticPod is a static pod of spec in the default namespace.
func staticPod(spec map[string]any) map[string]any {
	return map[string]any{"apiVersion": "v1", "kind": "Pod", "metadata": map[string]any{"namespace": "default"}, "spec": spec}
}

// appPod is a one-shot static pod of image on the host network (the node
// has no CNI).
func appPod(image string) map[string]any {
	return staticPod(map[string]any{
		"hostNetwork":                   true,
		"restartPolicy":                 "Never",
		"terminationGracePeriodSeconds": 2,
		"containers":                    []any{map[string]any{"name": "app", "image": image, "imagePullPolicy": "IfNotPresent"}},
	})
}

// removeAllSandboxes stops and removes every pod sandbox through the CRI,
// so that no shim or container outlives the test's containerd.
func removeAllSandboxes(t *testing.T, sock string) {
	rt, done := criRuntime(t, sock)
	defer done()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	list, err := rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		t.Errorf("ListPodSandbox: %v", err)
		return
	}
	for _, sb := range list.Items {
		if _, err := rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: sb.Id}); err != nil {
			t.Errorf("StopPodSandbox %s: %v", sb.Metadata.GetName(), err)
		}
		if _, err := rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: sb.Id}); err != nil {
			t.Errorf("RemovePodSandbox %s: %v", sb.Metadata.GetName(), err)
		}
	}
}

// criContainer returns the ID and host PID of container NAME of the pod
// sandbox POD, through containerd's CRI; exactly one must be running.
func criContainer(t *testing.T, sock, pod, name string) (string, int) {
	t.Helper()
	rt, done := criRuntime(t, sock)
	defer done()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	list, err := rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{
		State:         &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_RUNNING},
		LabelSelector: map[string]string{"io.kubernetes.pod.name": pod, "io.kubernetes.container.name": name}}})
	if err != nil || len(list.Containers) != 1 {
		t.Fatalf("ListContainers %s/%s: %v (%d running)", pod, name, err, len(list.GetContainers()))
	}
	id := list.Containers[0].Id
	st, err := rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id, Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	var info struct {
		Pid int `json:"pid"`
	}
	if err := json.Unmarshal([]byte(st.Info["info"]), &info); err != nil || info.Pid <= 0 {
		t.Fatalf("no pid in the CRI's verbose status of %s: %v", name, err)
	}
	return id, info.Pid
}

// criExec runs a command in a container through the CRI and returns its
// standard output; it fails the test unless the command exits 0.
func criExec(t *testing.T, sock, id string, cmd ...string) string {
	t.Helper()
	rt, done := criRuntime(t, sock)
	defer done()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	resp, err := rt.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: cmd, Timeout: 30})
	if err != nil {
		t.Fatalf("ExecSync %v: %v", cmd, err)
	}
	if resp.ExitCode != 0 {
		t.Fatalf("%v exited %d: %s%s", cmd, resp.ExitCode, resp.Stdout, resp.Stderr)
	}
	return string(resp.Stdout)
}

func criRuntime(t *testing.T, sock string) (runtimeapi.RuntimeServiceClient, func()) {
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	return runtimeapi.NewRuntimeServiceClient(conn), func() { conn.Close() }
}

// decoders returns the PIDs of the stream processors (imgcrypt's
// ctd-decoder, one per layer being decrypted) that containerd c runs now.
func (c *containerd) decoders(t *testing.T) []int {
	t.Helper()
	bin, err := filepath.EvalSymlinks(need(t, "ctd-decoder"))
	if err != nil {
		t.Fatal(err)
	}
	procs, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range procs {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); exe != bin {
			continue
		}
		// Its parent is this containerd: its command line names c's config.
		stat, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if _, after, ok := bytes.Cut(stat, []byte(") ")); ok {
			if f := strings.Fields(string(after)); len(f) > 1 {
				parent, _ := os.ReadFile("/proc/" + f[1] + "/cmdline")
				if bytes.Contains(parent, []byte(c.dir)) {
					pids = append(pids, pid)
				}
			}
		}
	}
	return pids
}

// buildPodApp builds testdata/podapp, static, and returns its path.
func buildPodApp(t *testing.T) string {
	out := filepath.Join(t.TempDir(), "podapp")
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, "./testdata/podapp")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building podapp: %v\n%s", err, b)
	}
	return out
}

// podImage is a one-layer image running "/podapp ARGS…" with msg in /msg
// and a random /nonce, so that its layer is its own: containerd reuses an
// unpacked layer without decrypting it.
func podImage(t *testing.T, app, msg string, args ...string) v1.Image {
	bin, err := os.ReadFile(app)
	if err != nil {
		t.Fatal(err)
	}
	nonce := make([]byte, 16)
	rand.Read(nonce)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range []struct {
		name string
		mode int64
		data []byte
	}{{"podapp", 0o755, bin}, {"msg", 0o644, []byte(msg)}, {"nonce", 0o644, []byte(hex.EncodeToString(nonce))}} {
		tw.WriteHeader(&tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.data)), Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0)})
		tw.Write(f.data)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf.Bytes())), nil },
		tarball.WithMediaType(types.OCILayer))
	if err != nil {
		t.Fatal(err)
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.ConfigFile(img, &v1.ConfigFile{OS: "linux", Architecture: runtime.GOARCH, RootFS: v1.RootFS{Type: "layers"},
		Config: v1.Config{Entrypoint: []string{"/podapp"}, Cmd: args}})
	if err != nil {
		t.Fatal(err)
	}
	if img, err = mutate.AppendLayers(img, layer); err != nil {
		t.Fatal(err)
	}
	return img
}

// withLayers is img with n more layers of size random bytes each.
func withLayers(t *testing.T, img v1.Image, n int, size int64) v1.Image {
	for range n {
		l, err := random.Layer(size, types.OCILayer)
		if err != nil {
			t.Fatal(err)
		}
		if img, err = mutate.AppendLayers(img, l); err != nil {
			t.Fatal(err)
		}
	}
	return img
}

func pushRef(t *testing.T, ref string, img v1.Image) {
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
}

// shortTempDir is a directory under /tmp removed when the test ends: unix
// socket paths (the kubelet's, containerd's) must stay under 108 bytes.
func shortTempDir(t *testing.T, prefix string) string {
	dir, err := os.MkdirTemp("/tmp", prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// freeLoopbackPort returns a loopback port free a moment ago: the kubelet
// cannot bind port 0 and report it.
func freeLoopbackPort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

var (
	scratchOnce    sync.Once
	scratchArchive string
	scratchErr     error
)

// scratchImage pushes the image deploy/container/build-scratch.sh builds
// to reg and returns its reference. The script runs once per test binary
// (its image kept in a docker-archive, like ocikpBinary's build); each
// test's registry gets a copy.
func scratchImage(t *testing.T, reg string) string {
	buildah, unshare := need(t, "buildah"), need(t, "unshare")
	scratchOnce.Do(func() { scratchArchive, scratchErr = buildScratchImage(t, reg, buildah, unshare) })
	if scratchErr != nil {
		t.Fatal(scratchErr)
	}
	img, err := tarball.ImageFromPath(scratchArchive, nil)
	if err != nil {
		t.Fatal(err)
	}
	ref := reg + "/ocikp:scratch"
	pushRef(t, ref, img)
	sameAsDockerfile(t, ref)
	return ref
}

// buildScratchImage runs build-scratch.sh with the cached buildah in a
// private root (removed with the first caller's test) and returns the
// docker-archive holding the image (kept for the test binary's life).
func buildScratchImage(t *testing.T, reg, buildah, unshare string) (string, error) {
	dir, err := os.MkdirTemp("", "ocikp-e2e-scratch-")
	if err != nil {
		return "", err
	}
	archive := filepath.Join(dir, "ocikp-scratch.tar")
	r := newContainersRoot(t, reg)
	home := t.TempDir()
	os.MkdirAll(filepath.Join(home, ".config", "containers"), 0o755)
	if err := os.WriteFile(filepath.Join(home, ".config", "containers", "policy.json"), []byte(`{"default":[{"type":"insecureAcceptAnything"}]}`), 0o644); err != nil {
		return "", err
	}
	script, err := filepath.Abs("../deploy/container/build-scratch.sh")
	if err != nil {
		return "", err
	}
	start := time.Now()
	// The script builds every command first: longer than r.run allows. The
	// scratch HOME would hide Go's caches, so they are named (and -trimpath
	// dropped) to reuse what the suite has already compiled. Docker's
	// archive format keeps the HEALTHCHECK.
	env := append(slices.Clone(r.env), "HOME="+home, "BUILDAH="+buildah, "PUSH=docker-archive:"+archive+":ocikp:scratch", "TRIMPATH=0")
	for _, v := range []string{"GOCACHE", "GOMODCACHE", "GOPATH", "GOFLAGS", "GOPROXY", "GOTOOLCHAIN"} {
		if val, err := exec.Command("go", "env", v).Output(); err == nil {
			env = append(env, v+"="+strings.TrimSpace(string(val)))
		}
	}
	out, err := run(t, env, 10*time.Minute, unshare, "-m", "sh", "-c", hermeticScript, "sh", script, "ocikp:scratch")
	if err != nil {
		return "", fmt.Errorf("build-scratch.sh: %v\n%s", err, out)
	}
	t.Logf("built the scratch image in %v (once for the test binary)", time.Since(start).Round(time.Second))
	return archive, nil
}

// sameAsDockerfile checks that the scratch image ref has one layer (no
// base image) holding every command of the module, and the Dockerfile's
// entry point, arguments, user, keystore and health check: the two builds
// make one image.
func sameAsDockerfile(t *testing.T, ref string) {
	t.Helper()
	docker, err := os.ReadFile("../deploy/container/Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	line := func(directive string) string {
		m := regexp.MustCompile(`(?m)^` + directive + ` (.*)$`).FindSubmatch(docker)
		if m == nil {
			t.Fatalf("Dockerfile: no %s line", directive)
		}
		return string(m[1])
	}
	list := func(s string) []string {
		var v []string
		if err := json.Unmarshal([]byte(s), &v); err != nil {
			t.Fatalf("Dockerfile: %q: %v", s, err)
		}
		return v
	}
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(r)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := cf.Config
	hc := regexp.MustCompile(`CMD (\[.*\])$`).FindStringSubmatch(line("HEALTHCHECK"))
	if hc == nil || c.Healthcheck == nil || !slices.Equal(c.Healthcheck.Test, append([]string{"CMD"}, list(hc[1])...)) {
		t.Errorf("health check %+v, the Dockerfile's %q", c.Healthcheck, line("HEALTHCHECK"))
	}
	if !slices.Equal(c.Entrypoint, list(line("ENTRYPOINT"))) || !slices.Equal(c.Cmd, list(line("CMD"))) ||
		c.User != line("USER") || !slices.Contains(c.Env, line("ENV")) {
		t.Errorf("the scratch image's entry point %q, arguments %q, user %q, environment %q differ from the Dockerfile's ENTRYPOINT %s, CMD %s, USER %s, ENV %s",
			c.Entrypoint, c.Cmd, c.User, c.Env, line("ENTRYPOINT"), line("CMD"), line("USER"), line("ENV"))
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("the scratch image has %d layers (%v), want 1: no base image", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var bins []string
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if dir, file := filepath.Split(strings.TrimPrefix(h.Name, "./")); dir == "usr/local/bin/" && file != "" {
			bins = append(bins, file)
		}
	}
	var cmds []string
	ents, _ := os.ReadDir("../cmd")
	for _, e := range ents {
		if e.IsDir() {
			cmds = append(cmds, e.Name())
		}
	}
	slices.Sort(bins)
	if !slices.Equal(bins, cmds) {
		t.Errorf("the scratch image holds %v; the module's commands are %v", bins, cmds)
	}
}
