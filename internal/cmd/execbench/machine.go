package main

// What scripts/bench.sh needs on top of the table: one JSON object a line
// (-json), other exec key providers in the same interleaved run (-peers),
// and the cost-growth runs (-layers, -recipients). Kept apart from main.go
// so that the table's code stays as it was.

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ocikp/ocikp/internal/benchrow"
)

var (
	jsonOut    = flag.Bool("json", false, "print one JSON object a line (scripts/bench.sh reads them) instead of the table")
	peersFile  = flag.String("peers", "", "JSON file listing other exec key providers to time in the same run: [{\"name\",\"bin\",\"args\",\"provider\",\"wrap\",\"unwrap\"}]")
	layersFlag = flag.String("layers", "", "cost growth instead of the table: for each N (comma-separated), N unwrap processes in a row, as for an image of N layers")
	recipFlag  = flag.String("recipients", "", "cost growth instead of the table: for each N (comma-separated), unwrap of a layer with N recipients (the key's stanza last) and wrap for N")
)

// emitTable prints the main run's rows, each with its ratio to the first
// command (the bare process) of the same run.
func emitTable(cmds []command, times [][]time.Duration, runs int) {
	base := median(times[0])
	for j, c := range cmds {
		m := median(times[j])
		benchrow.Print(benchrow.Row{Section: "exec", Name: strings.TrimSpace(c.name), Runs: runs, Median: ms(m), P90: ms(pct(times[j], 90)),
			Ratio: float64(m) / float64(base), RatioTo: "bare process"})
	}
}

// peer is another exec key provider. Its wrap request carries wrap under
// ec.Parameters[provider]; its unwrap request carries unwrap (if any) under
// dc.Parameters[provider], as ocicrypt passes a decryption key's value.
type peer struct {
	Name     string   `json:"name"`
	Bin      string   `json:"bin"`
	Args     []string `json:"args"`
	Provider string   `json:"provider"`
	Wrap     string   `json:"wrap"`
	Unwrap   string   `json:"unwrap"`
}

func loadPeers() ([]peer, error) {
	if *peersFile == "" {
		return nil, nil
	}
	b, err := os.ReadFile(*peersFile)
	if err != nil {
		return nil, err
	}
	var ps []peer
	if err := json.Unmarshal(b, &ps); err != nil {
		return nil, fmt.Errorf("%s: %w", *peersFile, err)
	}
	return ps, nil
}

// peerRequests makes a peer's wrap request and, by running it, the unwrap
// request of the layer it wrapped.
func peerRequests(p peer) (unwrap, wrap []byte, err error) {
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	wrap, _ = json.Marshal(map[string]any{"op": "keywrap", "keywrapparams": map[string]any{
		"ec":       map[string]any{"Parameters": map[string][]string{p.Provider: {b64(p.Wrap)}}},
		"optsdata": b64(strings.Repeat("o", 200)),
	}})
	out, err := runOnce(p.Bin, p.Args, wrap)
	if err != nil {
		return nil, nil, fmt.Errorf("%s wrap: %w", p.Name, err)
	}
	var reply struct {
		R struct{ Annotation []byte } `json:"keywrapresults"`
	}
	if err := json.Unmarshal(out, &reply); err != nil || len(reply.R.Annotation) == 0 {
		return nil, nil, fmt.Errorf("%s wrap: no annotation in its reply", p.Name)
	}
	params := map[string][]string{}
	if p.Unwrap != "" {
		params[p.Provider] = []string{b64(p.Unwrap)}
	}
	unwrap, _ = json.Marshal(map[string]any{"op": "keyunwrap", "keyunwrapparams": map[string]any{
		"dc": map[string]any{"Parameters": params}, "annotation": reply.R.Annotation,
	}})
	out, err = runOnce(p.Bin, p.Args, unwrap)
	if err != nil {
		return nil, nil, fmt.Errorf("%s unwrap: %w", p.Name, err)
	}
	var got struct {
		R struct{ OptsData []byte } `json:"keyunwrapresults"`
	}
	if json.Unmarshal(out, &got) != nil || string(got.R.OptsData) != strings.Repeat("o", 200) {
		return nil, nil, fmt.Errorf("%s unwrap: the reply does not hold the wrapped optsdata", p.Name)
	}
	return unwrap, wrap, nil
}

// peerCommands are the peers' unwrap and wrap, for the main run.
func peerCommands() ([]command, error) {
	ps, err := loadPeers()
	if err != nil {
		return nil, err
	}
	var cmds []command
	for _, p := range ps {
		unwrap, wrap, err := peerRequests(p)
		if err != nil {
			return nil, err
		}
		cmds = append(cmds, command{"peer " + p.Name + " unwrap", p.Bin, p.Args, unwrap},
			command{"peer " + p.Name + " wrap", p.Bin, p.Args, wrap})
	}
	return cmds, nil
}

// timeRounds runs each command reps times in a row per round, the commands
// interleaved, for rounds rounds, and returns each command's round times.
func timeRounds(cmds []command, reps, rounds int) ([][]time.Duration, error) {
	times := make([][]time.Duration, len(cmds))
	for i := range rounds + 1 {
		for j, c := range cmds {
			t := time.Now()
			for range reps {
				if _, err := runOnce(c.bin, c.args, c.in); err != nil {
					return nil, fmt.Errorf("%s: %w", c.name, err)
				}
			}
			if i > 0 { // the first round warms the page cache
				times[j] = append(times[j], time.Since(t))
			}
		}
	}
	return times, nil
}

// growLayers: an image of N layers costs N exec unwraps in a row (ocicrypt
// starts one process per layer). Each line is timed whole, interleaved with
// the others at the same N.
func growLayers(ocikp, baseline string, types []string, runs, nkeys int) error {
	ns, err := benchrow.Counts(*layersFlag)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "execbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	var cmds []command
	for _, typ := range types {
		ks := filepath.Join(dir, "keys-"+typ)
		unwrap, _, err := requests(ocikp, ks, typ, nkeys)
		if err != nil {
			return err
		}
		if len(cmds) == 0 {
			cmds = append(cmds, command{"bare process", baseline, nil, unwrap})
		}
		cmds = append(cmds, command{"ocikp exec unwrap " + typ, ocikp, []string{"keyprovider", "--name", "ocikp", "--keystore", ks}, unwrap})
	}
	ps, err := loadPeers()
	if err != nil {
		return err
	}
	for _, p := range ps {
		unwrap, _, err := peerRequests(p)
		if err != nil {
			return err
		}
		cmds = append(cmds, command{"peer " + p.Name + " unwrap", p.Bin, p.Args, unwrap})
	}
	for _, n := range ns {
		rounds := max(5, runs/n)
		times, err := timeRounds(cmds, n, rounds)
		if err != nil {
			return err
		}
		for j, c := range cmds {
			benchrow.Print(benchrow.Row{Plot: "layers", Line: c.name, X: float64(n), Runs: rounds, Median: ms(median(times[j])), P90: ms(pct(times[j], 90))})
		}
	}
	return nil
}

// growRecipients: a layer wrapped for N recipients of one type, the
// keystore's key last; unwrap must find it, wrap must make N stanzas.
func growRecipients(ocikp, baseline string, types []string, runs int) error {
	ns, err := benchrow.Counts(*recipFlag)
	if err != nil {
		return err
	}
	maxN := 0
	for _, n := range ns {
		maxN = max(maxN, n)
	}
	dir, err := os.MkdirTemp("", "execbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	type pair struct{ unwrap, wrap []byte }
	reqs := map[string]map[int]pair{}
	for _, typ := range types {
		ks := filepath.Join(dir, "keys-"+typ)
		others := filepath.Join(dir, "others-"+typ)
		var rs []string
		for i := range maxN - 1 {
			r, err := keygen(ocikp, others, typ, fmt.Sprintf("other%d", i))
			if err != nil {
				return err
			}
			rs = append(rs, r)
		}
		mine, err := keygen(ocikp, ks, typ, "mine")
		if err != nil {
			return err
		}
		reqs[typ] = map[int]pair{}
		for _, n := range ns {
			unwrap, wrap, err := wrapFor(ocikp, ks, append(append([]string(nil), rs[:n-1]...), mine))
			if err != nil {
				return err
			}
			reqs[typ][n] = pair{unwrap, wrap}
		}
	}
	for _, n := range ns {
		var cmds []command
		for _, typ := range types {
			ks := filepath.Join(dir, "keys-"+typ)
			args := []string{"keyprovider", "--name", "ocikp", "--keystore", ks}
			if len(cmds) == 0 {
				cmds = append(cmds, command{"bare process", baseline, nil, reqs[typ][n].unwrap})
			}
			cmds = append(cmds, command{"ocikp exec unwrap " + typ, ocikp, args, reqs[typ][n].unwrap},
				command{"ocikp exec wrap " + typ, ocikp, args, reqs[typ][n].wrap})
		}
		times, err := timeRounds(cmds, 1, runs)
		if err != nil {
			return err
		}
		for j, c := range cmds {
			benchrow.Print(benchrow.Row{Plot: "recipients", Line: c.name, X: float64(n), Runs: runs, Median: ms(median(times[j])), P90: ms(pct(times[j], 90))})
		}
	}
	return nil
}

func keygen(ocikp, ks, typ, name string) (string, error) {
	out, err := runOnce(ocikp, []string{"--keystore", ks, "keygen", "--type", typ, name}, nil)
	if err != nil {
		return "", fmt.Errorf("keygen --type %s: %w", typ, err)
	}
	return strings.TrimSpace(string(out)), nil
}

// wrapFor has ocikp wrap a layer key for recipients and returns the unwrap
// request of the result and the wrap request.
func wrapFor(ocikp, ks string, recipients []string) (unwrap, wrap []byte, err error) {
	var vals []string
	for _, r := range recipients {
		vals = append(vals, base64.StdEncoding.EncodeToString([]byte(r)))
	}
	wrap, _ = json.Marshal(map[string]any{"op": "keywrap", "keywrapparams": map[string]any{
		"ec":       map[string]any{"Parameters": map[string][]string{"ocikp": vals}},
		"optsdata": base64.StdEncoding.EncodeToString([]byte(strings.Repeat("o", 200))),
	}})
	out, err := runOnce(ocikp, []string{"keyprovider", "--name", "ocikp", "--keystore", ks}, wrap)
	if err != nil {
		return nil, nil, fmt.Errorf("wrap for %d recipients: %w", len(recipients), err)
	}
	var reply struct {
		R struct{ Annotation []byte } `json:"keywrapresults"`
	}
	if err := json.Unmarshal(out, &reply); err != nil {
		return nil, nil, err
	}
	if len(reply.R.Annotation) == 0 {
		return nil, nil, errors.New("wrap: no annotation")
	}
	unwrap, _ = json.Marshal(map[string]any{"op": "keyunwrap", "keyunwrapparams": map[string]any{
		"dc": map[string]any{"Parameters": map[string]any{}}, "annotation": reply.R.Annotation,
	}})
	return unwrap, wrap, nil
}

// growth runs the cost-growth mode asked for, if any.
func growth(ocikp, baseline string, types []string, runs, nkeys int) (bool, error) {
	switch {
	case *layersFlag != "":
		return true, growLayers(ocikp, baseline, types, runs, nkeys)
	case *recipFlag != "":
		return true, growRecipients(ocikp, baseline, types, runs)
	}
	return false, nil
}
