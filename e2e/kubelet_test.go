package e2e

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// wrongKeyMessage is how ocikp says the node's keys do not open a layer.
const wrongKeyMessage = "ocikp: error: no key can decrypt this layer"

// A Kubernetes node as it runs here (see kubelet_helpers_test.go): the
// kubelet runs a pod whose image is encrypted for the node's key (ocikp
// run exec by ctd-decoder, with the node's keystore), refuses one
// encrypted for another key with ocikp's message in the pod's status,
// still runs a plain image's pod, and runs the scratch service image.
func TestKubeletNode(t *testing.T) {
	e := newNodeEnv(t)
	p := e.p
	ksNode, rNode := p.keystore(t, "node")
	_, rOther := p.keystore(t, "other")
	good := e.encryptApp(t, ksNode, "enc-node", "hello from an image encrypted for the node\n", rNode["node"], rOther["other"])
	wrong := e.encryptApp(t, ksNode, "enc-other", "this must never print\n", rOther["other"])
	plain := e.reg + "/app:plain-node"
	pushRef(t, plain, podImage(t, e.app, "hello from a plain image\n", "cat", "/msg"))
	image := scratchImage(t, e.reg)

	c, k := e.start(t, shortTempDir(t, "kl-"), p.containerdDropIn(t, "2", p.config, ksNode), false)
	for pod, image := range map[string]string{"enc-node": good, "enc-other": wrong, "plain": plain} {
		k.write(t, pod, appPod(image))
	}

	t.Run("a pod whose image is encrypted for the node's key runs", func(t *testing.T) {
		k.ran(t, "enc-node", "hello from an image encrypted for the node", 3*time.Minute)
	})

	t.Run("a plain image's pod runs on the same node", func(t *testing.T) {
		k.ran(t, "plain", "hello from a plain image", 3*time.Minute)
	})

	// containerd may lose the decoder's message to its race (see
	// wrongKeystoreThroughNerdctl) and say "wrong diff id" instead; the
	// kubelet retries the pull with back-off (10 s, 20 s, 40 s, …), and
	// ocikp's message must reach the pod's status in one of those tries.
	t.Run("a pod whose image is encrypted for another key does not start, with ocikp's message", func(t *testing.T) {
		var seen []string
		pod := k.waitPod(t, "enc-other", 4*time.Minute, func(p kubeletPod) bool {
			p.waiting(&seen)
			return p.started() || len(seen) > 0 && strings.Contains(seen[len(seen)-1], wrongKeyMessage)
		})
		if pod.started() {
			t.Fatalf("a container of an image encrypted only for another key started: %s", pod)
		}
		if pod.Status.Phase != "Pending" {
			t.Errorf("pod phase %s, want Pending", pod.Status.Phase)
		}
		t.Logf("the kubelet's status of the pod, as it changed:\n%s", strings.Join(seen, "\n"))
		if !strings.Contains(k.logs.String(), wrongKeyMessage) {
			t.Errorf("the kubelet's log does not show %q", wrongKeyMessage)
		}
	})

	// deploy/container/build-scratch.sh: no base image, a numeric
	// non-root user that runAsNonRoot can check without a passwd file.
	t.Run("the scratch image runs ocikp serve as non-root and ocikp health answers", func(t *testing.T) {
		k.write(t, "ocikp-serve", serveImagePod(image))
		k.waitReady(t, "ocikp-serve", 3*time.Minute)
		id, pid := criContainer(t, c.sock, "ocikp-serve-"+nodeName, "ocikp")
		status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(status), "\n") {
			if f := strings.Fields(line); len(f) == 5 && (f[0] == "Uid:" || f[0] == "Gid:") {
				for _, id := range f[1:] {
					if id != "65532" {
						t.Errorf("ocikp serve runs with %s", line)
					}
				}
			}
		}
		out := criExec(t, c.sock, id, "/usr/local/bin/ocikp", "health", "--grpc", "unix:///run/ocikp/ocikp.sock", "--timeout", "3s")
		if strings.TrimSpace(out) != "SERVING" {
			t.Fatalf("ocikp health in the service container: %q", out)
		}
	})
}

// serveImagePod is a static pod of the ocikp serve image, as locked down
// as deploy/kubernetes/daemonset.yaml's, with its readiness probe.
func serveImagePod(image string) map[string]any {
	health := []string{"/usr/local/bin/ocikp", "health", "--grpc", "unix:///run/ocikp/ocikp.sock", "--timeout", "3s"}
	return staticPod(map[string]any{
		"hostNetwork":                   true,
		"terminationGracePeriodSeconds": 5,
		// No runAsUser: the image's USER must pass the check.
		"securityContext": map[string]any{"runAsNonRoot": true},
		"containers": []any{map[string]any{
			"name": "ocikp", "image": image, "imagePullPolicy": "IfNotPresent",
			"args":           []string{"--listen", "unix:///run/ocikp/ocikp.sock", "--log-level", "info"},
			"readinessProbe": map[string]any{"exec": map[string]any{"command": health}, "periodSeconds": 2, "timeoutSeconds": 5},
			"securityContext": map[string]any{"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
				"capabilities": map[string]any{"drop": []string{"ALL"}}},
			"volumeMounts": []any{map[string]any{"name": "socket", "mountPath": "/run/ocikp"}},
		}},
		"volumes": []any{map[string]any{"name": "socket", "emptyDir": map[string]any{}}},
	})
}
