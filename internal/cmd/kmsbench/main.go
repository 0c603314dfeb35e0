// Command kmsbench measures what the KMS plugin design costs, against a fake
// Cloud KMS on loopback (scripts/bench-kms.sh builds and runs it):
//
//   - a software-key unwrap by ocikp with ocikp-plugin-gcpkms installed beside
//     it and with OCIKP_PLUGIN_DIR pointing at an empty directory (as good as
//     not installed): the plugin must not be started, so both must be equal.
//     Both use one binary file: two byte-identical copies of ocikp measured
//     0.90x to 1.05x of each other here, which would drown the comparison;
//   - a KMS unwrap through ocikp (ocikp process + plugin process + one
//     Decrypt) against the bare SDK call in a fresh process of its own
//     (this program re-run with -bare): the target is at most 1.1× plus one
//     ocikp process start.
package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	kms "cloud.google.com/go/kms/apiv1"
	"cloud.google.com/go/kms/apiv1/kmspb"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/ocikp/ocikp/internal/testkms"
)

const keyName = "projects/p/locations/global/keyRings/r/cryptoKeys/bench"

func main() {
	withPlugin := flag.String("ocikp", "", "ocikp binary with ocikp-plugin-gcpkms beside it")
	runs := flag.Int("runs", 200, "timed runs of each command")
	bare := flag.Bool("bare", false, "internal: one bare SDK Decrypt of $BENCH_CT against $BENCH_ENDPOINT")
	flag.Parse()
	var err error
	if *bare {
		err = bareDecrypt()
	} else {
		err = bench(*withPlugin, *runs)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "kmsbench:", err)
		os.Exit(1)
	}
}

// bareDecrypt is the least a KMS unwrap can cost in a fresh process: make
// the client, call Decrypt once.
func bareDecrypt() error {
	ct, err := base64.StdEncoding.DecodeString(os.Getenv("BENCH_CT"))
	if err != nil {
		return err
	}
	ctx := context.Background()
	c, err := kms.NewKeyManagementClient(ctx, option.WithEndpoint(os.Getenv("BENCH_ENDPOINT")), option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())))
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.Decrypt(ctx, &kmspb.DecryptRequest{Name: keyName, Ciphertext: ct, AdditionalAuthenticatedData: []byte("ocikp/v1 gcpkms")})
	return err
}

func bench(withPlugin string, runs int) error {
	if withPlugin == "" {
		return fmt.Errorf("need -ocikp")
	}
	fake, err := testkms.NewGCP(keyName)
	if err != nil {
		return err
	}
	defer fake.Close()
	dir, err := os.MkdirTemp("", "kmsbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	ks := filepath.Join(dir, "keys")
	env := append(os.Environ(), "OCIKP_GCPKMS_ENDPOINT="+fake.Addr, "OCIKP_GCPKMS_INSECURE=1", "OCIKP_KEYSTORE="+ks, "OCIKP_PLUGIN_DIR=")
	out, err := run(env, nil, withPlugin, "keygen", "soft")
	if err != nil {
		return err
	}
	soft := strings.TrimSpace(string(out))
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	wrapFor := func(recipient string) ([]byte, []byte, error) {
		req, _ := json.Marshal(map[string]any{"op": "keywrap", "keywrapparams": map[string]any{
			"ec": map[string]any{"Parameters": map[string][]string{"ocikp": {b64(recipient)}}}, "optsdata": b64(strings.Repeat("o", 200))}})
		out, err := run(env, req, withPlugin, "keyprovider", "--name", "ocikp")
		if err != nil {
			return nil, nil, err
		}
		var reply struct {
			R struct{ Annotation []byte } `json:"keywrapresults"`
		}
		json.Unmarshal(out, &reply)
		unwrap, _ := json.Marshal(map[string]any{"op": "keyunwrap", "keyunwrapparams": map[string]any{
			"dc": map[string]any{"Parameters": map[string]any{}}, "annotation": reply.R.Annotation}})
		return unwrap, reply.R.Annotation, nil
	}
	softReq, _, err := wrapFor(soft)
	if err != nil {
		return err
	}
	kmsReq, ann, err := wrapFor("gcpkms://" + keyName)
	if err != nil {
		return err
	}
	var env1 struct {
		Recipients []struct{ Key []byte }
	}
	json.Unmarshal(ann, &env1)
	self, _ := os.Executable()
	bareEnv := append(os.Environ(), "BENCH_ENDPOINT="+fake.Addr, "BENCH_CT="+base64.StdEncoding.EncodeToString(env1.Recipients[0].Key))
	emptyKS := append(env[:len(env):len(env)], "OCIKP_KEYSTORE="+filepath.Join(dir, "empty"))

	cmds := []struct {
		name string
		env  []string
		in   []byte
		bin  string
		args []string
	}{
		{"software-key unwrap, plugin installed", env, softReq, withPlugin, []string{"keyprovider"}},
		{"software-key unwrap, no plugin", append(env[:len(env):len(env)], "OCIKP_PLUGIN_DIR="+filepath.Join(dir, "empty")), softReq, withPlugin, []string{"keyprovider"}},
		{"bare SDK Decrypt (own process)", bareEnv, nil, self, []string{"-bare"}},
		{"KMS unwrap through ocikp", emptyKS, kmsReq, withPlugin, []string{"keyprovider"}},
		{"ocikp version (one process start)", env, nil, withPlugin, []string{"version"}},
	}
	times := make([][]time.Duration, len(cmds))
	for i := 0; i < runs+10; i++ {
		order := []int{0, 1, 2, 3, 4}
		if i%2 == 1 { // alternate the two software-key runs: position matters
			order[0], order[1] = 1, 0
		}
		for _, j := range order {
			c := cmds[j]
			t := time.Now()
			if _, err := run(c.env, c.in, c.bin, c.args...); err != nil {
				return fmt.Errorf("%s: %w", c.name, err)
			}
			if i >= 10 {
				times[j] = append(times[j], time.Since(t))
			}
		}
	}
	med := make([]time.Duration, len(cmds))
	for j, c := range cmds {
		med[j] = median(times[j])
		fmt.Printf("%-40s median %7.3f ms\n", c.name, float64(med[j])/1e6)
	}
	fmt.Printf("\nsoftware-key unwrap, plugin installed / not installed: %.2fx\n", float64(med[0])/float64(med[1]))
	fmt.Printf("KMS unwrap through ocikp / bare SDK call:             %.2fx\n", float64(med[3])/float64(med[2]))
	fmt.Printf("(KMS unwrap - one ocikp start) / bare SDK call:       %.2fx\n", float64(med[3]-med[4])/float64(med[2]))
	fmt.Printf("KMS requests seen by the fake: %d Decrypt\n", fake.Calls("Decrypt"))
	return nil
}

func run(env []string, in []byte, bin string, args ...string) ([]byte, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	cmd.Stdin = bytes.NewReader(in)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s %v: %w: %s", filepath.Base(bin), args, err, errb.String())
	}
	return out.Bytes(), nil
}

func median(d []time.Duration) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(a, b int) bool { return s[a] < s[b] })
	return s[len(s)/2]
}
