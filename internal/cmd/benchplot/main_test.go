package main

import (
	"bytes"
	"encoding/xml"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// render runs benchplot on the recorded fixture and returns the page and
// the plots it wrote.
func render(t *testing.T) (string, map[string]string) {
	t.Helper()
	dir := t.TempDir()
	page := filepath.Join(dir, "benchmarks.md")
	svgDir := filepath.Join(dir, "benchmarks")
	if err := os.Mkdir(svgDir, 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("testdata/page.md")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(page, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := run("testdata/results.jsonl", page, svgDir); err != nil {
		t.Fatal(err)
	}
	out, _ := os.ReadFile(page)
	svgs := map[string]string{}
	ents, _ := os.ReadDir(svgDir)
	for _, e := range ents {
		s, _ := os.ReadFile(filepath.Join(svgDir, e.Name()))
		svgs[e.Name()] = string(s)
	}
	return string(out), svgs
}

func TestPageTables(t *testing.T) {
	page, _ := render(t)
	for _, want := range []string{
		"Before.\n\n" + beginMark + "\n",
		endMark + "\n\nAfter.\n",
		"| nproc | 2 |",
		"| What | Median | p90 | × bare process | Runs |",
		"| unwrap p256 (3 keys) | 4.058 ms | 5.557 ms | 1.34× | 400 |",
		`| peer a\|b &lt;x&gt; unwrap | 6.100 ms | 7.000 ms | 2.02× | 400 |`, // a | in a name must not split the cell
		"| 64 clients, p256 | 9748 unwraps/s | service CPU 151 µs per call |",
		"![Layers per image: N unwraps in a row](benchmarks/layers.svg)",
		"| layers (one unwrap each) | 1 | 10 | 100 |",
		"| bare process | 3.000 | 30.50 | 301.0 |",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q; it is:\n%s", want, page)
		}
	}
	if strings.Contains(page, "old text") {
		t.Error("the old region was kept")
	}
	// The exec table comes before the peers' notes, whatever the input order.
	if strings.Index(page, "Exec key providers") > strings.Index(page, "Peers not timed") {
		t.Error("sections out of order")
	}
}

func TestPlotsAreWellFormedSVG(t *testing.T) {
	_, svgs := render(t)
	if len(svgs) != 2 || svgs["layers.svg"] == "" || svgs["clients.svg"] == "" {
		t.Fatalf("want layers.svg and clients.svg, got %d files", len(svgs))
	}
	for name, s := range svgs {
		dec := xml.NewDecoder(strings.NewReader(s))
		var lines, texts []string
		for {
			tok, err := dec.Token()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("%s: not well-formed XML: %v", name, err)
			}
			if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "polyline" {
				lines = append(lines, se.Name.Local)
			}
			if cd, ok := tok.(xml.CharData); ok {
				texts = append(texts, string(bytes.TrimSpace(cd)))
			}
		}
		if name == "layers.svg" {
			if len(lines) != 2 {
				t.Errorf("%s: %d lines, want 2", name, len(lines))
			}
			all := strings.Join(texts, "\n")
			for _, want := range []string{"JWE <in process> & co", "Layers per image", "(log scale)"} {
				if !strings.Contains(all, want) {
					t.Errorf("%s: no text %q (legend, title or axis)", name, want)
				}
			}
		}
		// Dark-mode colours exist, and the card is opaque in both.
		if !strings.Contains(s, "prefers-color-scheme: dark") || !strings.Contains(s, `class="bg"`) {
			t.Errorf("%s: no opaque background with a dark variant", name)
		}
	}
}

func TestParseRefuses(t *testing.T) {
	for name, line := range map[string]string{
		"unknown field":    `{"section":"exec","name":"x","median":1}`,
		"two kinds":        `{"section":"exec","plot":"layers","name":"x","line":"l","x":1,"median_ms":1}`,
		"point without y":  `{"plot":"layers","line":"l","x":1}`,
		"point without x":  `{"plot":"layers","line":"l","median_ms":1}`,
		"row without name": `{"section":"exec","median_ms":1}`,
		"not JSON":         `median 1.2 ms`,
	} {
		f, err := os.CreateTemp(t.TempDir(), "in")
		if err != nil {
			t.Fatal(err)
		}
		f.WriteString(`{"info":"nproc","value":2}` + "\n" + line + "\n")
		f.Seek(0, 0)
		_, err = parse(f)
		f.Close()
		if err == nil || !strings.Contains(err.Error(), "line 2") {
			t.Errorf("%s: err = %v, want one naming line 2", name, err)
		}
	}
}

func TestSpliceNeedsMarkers(t *testing.T) {
	if _, err := splice("# no markers\n", "x"); err == nil {
		t.Error("a page without markers was accepted")
	}
	if _, err := splice(endMark+"\n"+beginMark+"\n", "x"); err == nil {
		t.Error("markers in the wrong order were accepted")
	}
}

func TestScale(t *testing.T) {
	s := scale{log: true, lo: 1, hi: 100, from: 0, to: 200}
	if got := s.at(10); got != 100 {
		t.Errorf("log scale: 10 at %v, want 100", got)
	}
	if niceUp(301) != 500 || niceDown(0.09) != 0.05 || niceUp(1000) != 1000 {
		t.Errorf("niceUp(301)=%v niceDown(0.09)=%v niceUp(1000)=%v", niceUp(301), niceDown(0.09), niceUp(1000))
	}
	if got := logTicks(0.05, 500); len(got) != 13 || got[0] != 0.05 || got[len(got)-1] != 500 {
		t.Errorf("logTicks(0.05, 500) = %v", got)
	}
}
