package main

// Imports of the other benchmark programs' output into benchplot's lines,
// so that scripts/bench.sh needs no JSON tool of its own:
//
//	benchplot -import grpcload -label p256 < grpcload.out     (grpcload -json)
//	benchplot -import pipeline < bench-pipeline.out           (BENCH lines)
//	benchplot -import kms < kmsbench.out
//	benchplot -import rewrap < rewrapbench.out

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

func importRun(kind, label string, in io.Reader, out io.Writer) error {
	var recs []record
	var err error
	switch kind {
	case "grpcload":
		recs, err = importGrpcload(in, label)
	case "pipeline":
		recs, err = importPipeline(in)
	case "kms":
		recs, err = importKMS(in)
	case "rewrap":
		recs, err = importRewrap(in)
	default:
		return fmt.Errorf("unknown import %q (grpcload, pipeline, kms, rewrap)", kind)
	}
	if err != nil {
		return err
	}
	if len(recs) == 0 {
		return fmt.Errorf("%s: no figures in the input", kind)
	}
	for _, r := range recs {
		b, _ := json.Marshal(r)
		fmt.Fprintln(out, string(b))
	}
	return nil
}

func f64(v float64) *float64 { return &v }

// grpcload -json lines; see internal/cmd/grpcload. Unknown fields are
// ignored: this reads another program's output, not untrusted input.
type grpcLine struct {
	Kind          string  `json:"kind"`
	Target        string  `json:"target"`
	Transport     string  `json:"transport"`
	Clients       int     `json:"clients"`
	Rounds        int     `json:"rounds"`
	P50           float64 `json:"p50_ms"`
	P99           float64 `json:"p99_ms"`
	OcikpCPU      float64 `json:"ocikp_cpu_us"`
	FloorCPU      float64 `json:"floor_cpu_us"`
	ECDH          float64 `json:"ecdh_us"`
	OcikpPerECDH  float64 `json:"ocikp_per_ecdh"`
	OcikpPerFloor float64 `json:"ocikp_per_floor"`
	OcikpRate     float64 `json:"ocikp_per_second"`
	FloorRate     float64 `json:"floor_per_second"`
}

func importGrpcload(in io.Reader, label string) ([]record, error) {
	if label == "" {
		label = "p256"
	}
	var recs []record
	p50s := map[string][]float64{} // by target and clients: the rounds' p50s
	var keys []string
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var g grpcLine
		if err := json.Unmarshal([]byte(line), &g); err != nil {
			return nil, fmt.Errorf("grpcload line: %w", err)
		}
		switch g.Kind {
		case "run":
			k := fmt.Sprintf("%s\x00%s\x00%d", g.Target, g.Transport, g.Clients)
			if _, ok := p50s[k]; !ok {
				keys = append(keys, k)
			}
			p50s[k] = append(p50s[k], g.P50)
		case "summary":
			recs = append(recs, record{
				Section: "service",
				Name:    fmt.Sprintf("ocikp serve, %s key, %d clients (%s)", label, g.Clients, g.Transport),
				Value:   f64(g.OcikpRate), Unit: "unwraps/s",
				Ratio: g.OcikpPerECDH, RatioTo: "one P-256 ECDH (CPU)",
				Note: fmt.Sprintf("service CPU %.0f µs per unwrap; one P-256 ECDH %.1f µs; floor (same gRPC and TLS, one ECDH) %.0f µs, ocikp/floor %.2f×; %d rounds",
					g.OcikpCPU, g.ECDH, g.FloorCPU, g.OcikpPerFloor, g.Rounds),
			}, record{Plot: "clients", Line: fmt.Sprintf("ocikp serve, %s key (%s)", label, g.Transport), X: float64(g.Clients), Value: f64(g.OcikpRate)})
			if g.FloorRate > 0 {
				recs = append(recs, record{Plot: "clients", Line: fmt.Sprintf("floor: gRPC, %s and one ECDH only", g.Transport), X: float64(g.Clients), Value: f64(g.FloorRate)})
			}
		}
	}
	for _, k := range keys {
		f := strings.Split(k, "\x00")
		target := "ocikp serve, " + label + " key"
		if f[0] == "floor" {
			target = "floor: gRPC, " + f[1] + " and one ECDH only"
		} else {
			target += " (" + f[1] + ")"
		}
		n, _ := strconv.Atoi(f[2])
		v := slices.Clone(p50s[k])
		slices.Sort(v)
		recs = append(recs, record{Plot: "clients-latency", Line: target, X: float64(n), Median: f64(v[len(v)/2])})
	}
	return recs, sc.Err()
}

// keyvals parses "k=v k=v" fields.
func keyvals(fields []string) map[string]string {
	m := map[string]string{}
	for _, f := range fields {
		if k, v, ok := strings.Cut(f, "="); ok {
			m[k] = v
		}
	}
	return m
}

func atof(s string) float64 {
	v, _ := strconv.ParseFloat(s, 64)
	return v
}

// importPipeline reads scripts/bench-pipeline.sh's BENCH lines.
func importPipeline(in io.Reader) ([]record, error) {
	var recs []record
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 3 || f[0] != "BENCH" {
			continue
		}
		m := keyvals(f[2:])
		runs, _ := strconv.Atoi(m["runs"])
		switch f[1] {
		case "pipeline":
			recs = append(recs, record{Section: "pipeline", Name: m["variant"] + ", " + m["step"], Runs: runs,
				Median: f64(atof(m["median_s"]) * 1000), P90: f64(atof(m["p90_s"]) * 1000),
				Ratio: atof(m["ratio"]), RatioTo: m["baseline"],
				Note: fmt.Sprintf("paired %.3f×; CPU %.2f s (%.2f×)", atof(m["paired"]), atof(m["cpu_s"]), atof(m["cpu_ratio"]))})
		case "pipeline-proc":
			recs = append(recs, record{Section: "pipeline", Name: "one " + m["variant"] + " process, " + m["op"], Runs: runs,
				Median: f64(atof(m["median_ms"])), P90: f64(atof(m["p90_ms"]))})
		}
	}
	return recs, sc.Err()
}

var (
	kmsMedian = regexp.MustCompile(`^(.*\S)\s+median\s+([0-9.]+) ms`)
	kmsRatio  = regexp.MustCompile(`^(.*\S):\s+([0-9.]+)x$`)
)

// importKMS reads internal/cmd/kmsbench's table.
func importKMS(in io.Reader) ([]record, error) {
	var recs []record
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if m := kmsMedian.FindStringSubmatch(line); m != nil {
			recs = append(recs, record{Section: "kms", Name: m[1], Median: f64(atof(m[2]))})
		} else if m := kmsRatio.FindStringSubmatch(line); m != nil {
			recs = append(recs, record{Section: "kms", Name: m[1], Ratio: atof(m[2])})
		}
	}
	return recs, sc.Err()
}

var (
	rewrapRow   = regexp.MustCompile(`^(.*\S):\s+([0-9.]+)s\s+sent\s+(\d+) bytes\s+received\s+(\d+) bytes$`)
	rewrapRatio = regexp.MustCompile(`^rewrap against skopeo: (.*)$`)
	rewrapImage = regexp.MustCompile(`^image: (.*)$`)
)

// importRewrap reads internal/cmd/rewrapbench's lines.
func importRewrap(in io.Reader) ([]record, error) {
	var recs []record
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case rewrapRow.MatchString(line):
			m := rewrapRow.FindStringSubmatch(line)
			recs = append(recs, record{Section: "rewrap", Name: m[1], Value: f64(atof(m[2])), Unit: "s",
				Note: fmt.Sprintf("sent %s bytes, received %s bytes", m[3], m[4])})
		case rewrapRatio.MatchString(line):
			recs = append(recs, record{Section: "rewrap", Name: "rewrap against skopeo", Note: rewrapRatio.FindStringSubmatch(line)[1]})
		case rewrapImage.MatchString(line):
			recs = append(recs, record{Section: "rewrap", Name: "the image", Note: rewrapImage.FindStringSubmatch(line)[1]})
		}
	}
	return recs, sc.Err()
}
