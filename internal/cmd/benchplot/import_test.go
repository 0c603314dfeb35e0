package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

// Each import turns a sample of the program's real output into lines that
// benchplot itself accepts.
func TestImports(t *testing.T) {
	for _, c := range []struct {
		kind, in string
		want     []string
	}{
		{"grpcload", `noise before
{"kind":"run","target":"ocikp","transport":"tls","clients":64,"round":1,"p50_ms":6.1,"p99_ms":13}
{"kind":"run","target":"floor","transport":"tls","clients":64,"round":1,"p50_ms":3.2,"p99_ms":7}
{"kind":"run","target":"ocikp","transport":"tls","clients":64,"round":2,"p50_ms":5.9,"p99_ms":12}
{"kind":"summary","transport":"tls","clients":64,"rounds":2,"ocikp_cpu_us":151,"floor_cpu_us":90,"ecdh_us":51.9,"ocikp_per_ecdh":2.91,"ocikp_per_floor":1.68,"ocikp_per_second":9748,"floor_per_second":14000,"new_field":1}
`, []string{
			`"section":"service","name":"ocikp serve, mlkem768x25519 key, 64 clients (tls)","value":9748,"unit":"unwraps/s","ratio":2.91,"ratio_to":"one P-256 ECDH (CPU)"`,
			`"plot":"clients","line":"floor: gRPC, tls and one ECDH only","x":64,"value":14000`,
			`"plot":"clients-latency","line":"ocikp serve, mlkem768x25519 key (tls)","x":64,"median_ms":6.1`,
		}},
		{"pipeline", `table text
BENCH pipeline variant=ocikp step=total runs=7 median_s=3.2100 p90_s=3.5000 ratio=0.9800 paired=0.9700 cpu_s=4.1000 cpu_ratio=0.9900 baseline=jwe-rsa
BENCH pipeline-proc variant=ocikp op=unwrap runs=200 median_ms=2.5000 p90_ms=3.1000
`, []string{
			`"section":"pipeline","name":"ocikp, total","runs":7,"median_ms":3210,"p90_ms":3500,"ratio":0.98,"ratio_to":"jwe-rsa"`,
			`"name":"one ocikp process, unwrap","runs":200,"median_ms":2.5`,
		}},
		{"kms", `software-key unwrap, plugin installed    median   1.964 ms
KMS unwrap through ocikp / bare SDK call:             1.35x
KMS requests seen by the fake: 420 Decrypt
`, []string{
			`"section":"kms","name":"software-key unwrap, plugin installed","median_ms":1.964`,
			`"section":"kms","name":"KMS unwrap through ocikp / bare SDK call","ratio":1.35`,
		}},
		{"rewrap", `image: 10 layers, 256 MiB in all, on a local registry
ocikp rewrap --add bob:                                 0.120s  sent         3000 bytes  received        9000 bytes
rewrap against skopeo: 190x less wall time, 50967x fewer bytes sent, 30x fewer bytes received
`, []string{
			`"section":"rewrap","name":"ocikp rewrap --add bob","value":0.12,"unit":"s","note":"sent 3000 bytes, received 9000 bytes"`,
			`"name":"rewrap against skopeo","note":"190x less wall time, 50967x fewer bytes sent, 30x fewer bytes received"`,
		}},
	} {
		var out bytes.Buffer
		if err := importRun(c.kind, "mlkem768x25519", strings.NewReader(c.in), &out); err != nil {
			t.Fatalf("%s: %v", c.kind, err)
		}
		for _, w := range c.want {
			if !strings.Contains(out.String(), w) {
				t.Errorf("%s: output lacks %s; it is:\n%s", c.kind, w, out.String())
			}
		}
		f, _ := os.CreateTemp(t.TempDir(), "lines")
		f.Write(out.Bytes())
		f.Seek(0, 0)
		if _, err := parse(f); err != nil {
			t.Errorf("%s: benchplot refuses its own import: %v", c.kind, err)
		}
		f.Close()
	}
	if err := importRun("kms", "", strings.NewReader("nothing here\n"), &bytes.Buffer{}); err == nil {
		t.Error("an import with no figures passed")
	}
}
