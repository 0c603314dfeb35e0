// Command execbench times whole processes the way ocicrypt starts an exec
// key provider: one process per request, request on stdin. It makes a
// keystore and a real unwrap request with the given ocikp, then runs the
// baseline and ocikp interleaved, so both see the same machine state.
//
//	execbench -ocikp bin/ocikp -baseline bin/jsonecho [-unwrap bin/ocikp-unwrap] [-floor bin/kemfloor] [-runs 500] [-keys 3] [-types p256,mlkem768x25519]
//
// With -unwrap, each type's unwrap and wrap through ocikp is followed by
// the same through ocikp-unwrap (which answers both itself). With -floor, by
// kemfloor's: the same JSON plus only that type's private-key work, the
// least any provider of that key type pays.
package main

import (
	"bytes"
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
)

func main() {
	ocikp := flag.String("ocikp", "", "ocikp binary")
	baseline := flag.String("baseline", "", "baseline binary (decodes and encodes the request)")
	runs := flag.Int("runs", 500, "timed runs of each command")
	warm := flag.Int("warmup", 30, "untimed runs of each command first")
	nkeys := flag.Int("keys", 3, "keys in the keystore (the layer is for the last)")
	types := flag.String("types", "p256", "comma-separated key types: one keystore of each, all timed in one interleaved run")
	other := flag.String("other", "", "another ocikp build: its unwrap with the first type's keystore joins the run (a regression check)")
	floor := flag.String("floor", "", "kemfloor binary: each type's cryptographic floor joins the run")
	unwrapBin := flag.String("unwrap", "", "ocikp-unwrap binary (beside -ocikp): each type's unwrap through it joins the run")
	flag.Parse()
	if *ocikp == "" || *baseline == "" {
		flag.Usage()
		os.Exit(2)
	}
	if done, err := growth(*ocikp, *baseline, strings.Split(*types, ","), *runs, *nkeys); done || err != nil {
		if err != nil {
			fmt.Fprintln(os.Stderr, "execbench:", err)
			os.Exit(1)
		}
		return
	}
	if err := bench(*ocikp, *other, *unwrapBin, *floor, *baseline, *runs, *warm, *nkeys, strings.Split(*types, ",")); err != nil {
		fmt.Fprintln(os.Stderr, "execbench:", err)
		os.Exit(1)
	}
}

type command struct {
	name string
	bin  string
	args []string
	in   []byte
}

func bench(ocikp, other, unwrapBin, floor, baseline string, runs, warm, nkeys int, types []string) error {
	dir, err := os.MkdirTemp("", "execbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	var cmds []command
	var wraps []command
	for _, typ := range types {
		ks := filepath.Join(dir, "keys-"+typ)
		unwrap, wrap, err := requests(ocikp, ks, typ, nkeys)
		if err != nil {
			return err
		}
		if len(cmds) == 0 {
			cmds = append(cmds, command{"baseline (decode+encode JSON)", baseline, nil, unwrap})
		}
		args := []string{"keyprovider", "--name", "ocikp", "--keystore", ks}
		cmds = append(cmds, command{fmt.Sprintf("unwrap %s (%d keys)", typ, nkeys), ocikp, args, unwrap})
		if other != "" && len(cmds) == 2 {
			cmds = append(cmds, command{fmt.Sprintf("unwrap %s, -other build", typ), other, args, unwrap})
		}
		if unwrapBin != "" {
			cmds = append(cmds, command{fmt.Sprintf("unwrap %s (%d keys), ocikp-unwrap", typ, nkeys), unwrapBin, args, unwrap})
		}
		if floor != "" {
			sealed := filepath.Join(dir, "sealed-"+typ)
			if _, err := runOnce(floor, []string{"-seal", typ, sealed}, nil); err != nil {
				return fmt.Errorf("kemfloor -seal %s: %w", typ, err)
			}
			cmds = append(cmds, command{"  floor " + typ + " (kemfloor)", floor, []string{typ, sealed}, unwrap})
		}
		wraps = append(wraps, command{"wrap " + typ, ocikp, args, wrap})
		if unwrapBin != "" {
			wraps = append(wraps, command{"wrap " + typ + ", ocikp-unwrap", unwrapBin, args, wrap})
		}
	}
	cmds = append(cmds, wraps...)
	peers, err := peerCommands()
	if err != nil {
		return err
	}
	cmds = append(cmds, peers...)
	times := make([][]time.Duration, len(cmds))
	for i := range warm + runs {
		for j, c := range cmds {
			t := time.Now()
			if _, err := runOnce(c.bin, c.args, c.in); err != nil {
				return fmt.Errorf("%s: %w", c.name, err)
			}
			if i >= warm {
				times[j] = append(times[j], time.Since(t))
			}
		}
	}
	if *jsonOut {
		emitTable(cmds, times, runs)
		return nil
	}
	base := median(times[0])
	fmt.Printf("%d runs each, interleaved\n", runs)
	for j, c := range cmds {
		m := median(times[j])
		fmt.Printf("%-46s median %6.3f ms  p90 %6.3f ms  ratio %.2fx\n", c.name, ms(m), ms(pct(times[j], 90)), float64(m)/float64(base))
	}
	return nil
}

// requests makes a keystore of nkeys keys of type typ and returns an
// unwrap request for a layer wrapped (by ocikp) for the last, and the wrap
// request that made it.
func requests(ocikp, ks, typ string, nkeys int) (unwrap, wrap []byte, err error) {
	var recipient string
	for i := range nkeys {
		out, err := exec.Command(ocikp, "--keystore", ks, "keygen", "--type", typ, fmt.Sprintf("key%d", i)).Output()
		if err != nil {
			return nil, nil, fmt.Errorf("keygen --type %s: %w", typ, err)
		}
		recipient = strings.TrimSpace(string(out))
	}
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	wrap, _ = json.Marshal(map[string]any{"op": "keywrap", "keywrapparams": map[string]any{
		"ec":       map[string]any{"Parameters": map[string][]string{"ocikp": {b64(recipient)}}},
		"optsdata": b64(strings.Repeat("o", 200)),
	}})
	out, err := runOnce(ocikp, []string{"keyprovider", "--name", "ocikp", "--keystore", ks}, wrap)
	if err != nil {
		return nil, nil, fmt.Errorf("wrap: %w", err)
	}
	var reply struct {
		R struct{ Annotation []byte } `json:"keywrapresults"`
	}
	if err := json.Unmarshal(out, &reply); err != nil {
		return nil, nil, err
	}
	unwrap, _ = json.Marshal(map[string]any{"op": "keyunwrap", "keyunwrapparams": map[string]any{
		"dc": map[string]any{"Parameters": map[string]any{}}, "annotation": reply.R.Annotation,
	}})
	return unwrap, wrap, nil
}

func runOnce(bin string, args []string, in []byte) ([]byte, error) {
	cmd := exec.Command(bin, args...)
	cmd.Stdin = bytes.NewReader(in)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%w: %s", err, errb.String())
	}
	return out.Bytes(), nil
}

func sorted(d []time.Duration) []time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(a, b int) bool { return s[a] < s[b] })
	return s
}

func median(d []time.Duration) time.Duration { return sorted(d)[len(d)/2] }
func pct(d []time.Duration, p int) time.Duration {
	return sorted(d)[len(d)*p/100]
}
func ms(d time.Duration) float64 { return float64(d) / 1e6 }
