//go:build linux

package adversarial

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	kpb "github.com/containers/ocicrypt/utils/keyprovider"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/ocikp/ocikp/envelope"
	"github.com/ocikp/ocikp/internal/testdaemon"
)

// bin is the directory of the binaries under test, built once.
var bin string

var programs = []string{"ocikp", "ocikp-serve", "ocikp-plugin-gcpkms", "ocikp-plugin-awskms", "ocikp-plugin-azurekms", "ocikp-plugin-hashivault"}

func TestMain(m *testing.M) {
	if os.Getenv("OCIKP_ADVERSARIAL") != "1" {
		fmt.Println("adversarial tests skipped: set OCIKP_ADVERSARIAL=1 (scripts/test.sh does)")
		os.Exit(0)
	}
	dir, err := os.MkdirTemp("", "ocikp-adversarial-")
	if err != nil {
		panic(err)
	}
	for _, p := range programs {
		if out, err := exec.Command("go", "build", "-o", filepath.Join(dir, p), "github.com/ocikp/ocikp/cmd/"+p).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "go build %s: %v\n%s", p, err, out)
			os.Exit(1)
		}
	}
	bin = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// env is the environment the binaries run with: this process's, minus
// anything that would reach a real cloud, plus extra.
func env(t *testing.T, keystore string, extra ...string) []string {
	var out []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "OCIKP_") || strings.HasPrefix(name, "VAULT_") || strings.HasPrefix(name, "AWS_") ||
			strings.HasPrefix(name, "AZURE_") || strings.HasPrefix(name, "GOOGLE_") {
			continue
		}
		out = append(out, kv)
	}
	home := t.TempDir() // no ~/.vault-token, ~/.aws, gcloud credentials of the machine
	return append(append(out, "HOME="+home, "XDG_CONFIG_HOME="+home, "OCIKP_PLUGIN_DIR="+bin,
		"OCIKP_KEYSTORE="+keystore, "OCIKP_KMS_TIMEOUT=5s", "AWS_EC2_METADATA_DISABLED=true"), extra...)
}

// exe runs ocikp with stdin and env, and returns stdout, stderr and the exit code.
func exe(t *testing.T, stdin []byte, env []string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(filepath.Join(bin, "ocikp"), args...)
	cmd.Env = env
	cmd.Stdin = bytes.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// unwrapRequest is what containerd's ctd-decoder sends: no decryption
// keys, or keys under the provider's name.
func unwrapRequest(ann []byte, keys ...string) []byte {
	vs := []string{}
	for _, k := range keys {
		vs = append(vs, b64([]byte(k)))
	}
	params := map[string]any{}
	if len(keys) > 0 {
		params["ocikp"] = vs
	}
	req, _ := json.Marshal(map[string]any{"op": "keyunwrap", "keyunwrapparams": map[string]any{
		"dc": map[string]any{"Parameters": params}, "annotation": b64(ann)}})
	return req
}

// wrap encrypts a layer key for recipient through the exec provider and
// returns the annotation.
func wrap(t *testing.T, env []string, recipient string) []byte {
	t.Helper()
	out, stderr, code := exe(t, wrapRequest([]byte(`{"symkey":"layer"}`), recipient), env, "keyprovider", "--name", "ocikp")
	if code != 0 {
		t.Fatal(stderr)
	}
	var reply struct {
		R struct{ Annotation []byte } `json:"keywrapresults"`
	}
	if err := json.Unmarshal([]byte(out), &reply); err != nil {
		t.Fatal(err)
	}
	return reply.R.Annotation
}

func wrapRequest(optsdata []byte, recipients ...string) []byte {
	vs := []string{}
	for _, r := range recipients {
		vs = append(vs, b64([]byte(r)))
	}
	req, _ := json.Marshal(map[string]any{"op": "keywrap", "keywrapparams": map[string]any{
		"ec":       map[string]any{"Parameters": map[string]any{"ocikp": vs}, "DecryptConfig": map[string]any{"Parameters": map[string]any{}}},
		"optsdata": b64(optsdata)}})
	return req
}

// layer is an annotation with the given stanzas, as whoever pushed an
// image may write one: payload and MAC are random (nothing here gets far
// enough to check them).
func layer(stanzas ...*envelope.Stanza) []byte {
	e := &envelope.Envelope{Recipients: stanzas, Payload: random(64), MAC: random(32)}
	b, err := e.Marshal()
	if err != nil {
		panic(err)
	}
	return b
}

func random(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// service is a running ocikp serve and a gRPC client of it.
type service struct {
	addr    string
	pid     int
	logs    *testdaemon.Log
	client  kpb.KeyProviderServiceClient
	metrics string // host:port, when started with metrics
}

var metricsLine = regexp.MustCompile(`"msg":"metrics","listen":"([^"]+)"`)

// serve starts ocikp serve on a loopback port with keystore and env.
func serve(t *testing.T, keystore string, env []string, args ...string) *service {
	t.Helper()
	cmd := exec.Command(filepath.Join(bin, "ocikp"), append([]string{"--keystore", keystore, "serve", "--listen", "127.0.0.1:0", "--name", "ocikp"}, args...)...)
	cmd.Env = env
	addr, logs := testdaemon.Serve(t, cmd)
	s := &service{addr: addr, pid: cmd.Process.Pid, logs: logs}
	if strings.Contains(strings.Join(args, " "), "--metrics") {
		s.metrics = logs.Wait(t, metricsLine)
	}
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	s.client = kpb.NewKeyProviderServiceClient(conn)
	return s
}

// call sends one request and returns the reply or the status message.
func (s *service) call(ctx context.Context, op string, req []byte) ([]byte, string, error) {
	in := &kpb.KeyProviderKeyWrapProtocolInput{KeyProviderKeyWrapProtocolInput: req}
	var out *kpb.KeyProviderKeyWrapProtocolOutput
	var err error
	if op == "wrap" {
		out, err = s.client.WrapKey(ctx, in)
	} else {
		out, err = s.client.UnWrapKey(ctx, in)
	}
	if err != nil {
		return nil, status.Convert(err).Message(), err
	}
	return out.GetKeyProviderKeyWrapProtocolOutput(), "", nil
}

func (s *service) mustFail(t *testing.T, op string, req []byte) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, msg, err := s.call(ctx, op, req)
	if err == nil {
		t.Fatalf("the service answered a %s it should refuse", op)
	}
	return msg
}

// proc reads a field of /proc/PID/status ("Threads", "VmRSS").
func proc(t *testing.T, pid int, field string) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, _ := strconv.Atoi(strings.Fields(v)[0])
			return n
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

func mustContain(t *testing.T, what, got string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(got, w) {
			t.Fatalf("%s does not say %q:\n%s", what, w, got)
		}
	}
}
