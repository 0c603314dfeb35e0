// Package benchrow is the line format of the benchmark programs that
// scripts/bench.sh runs (internal/cmd/execbench, internal/cmd/ocicryptbench):
// one JSON object a line, which internal/cmd/benchplot reads. Table rows
// have a section; points of a cost-growth plot have a plot, a line and x.
package benchrow

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// Row is one table row or plot point. Times are in milliseconds.
type Row struct {
	Section string  `json:"section,omitempty"`
	Plot    string  `json:"plot,omitempty"`
	Line    string  `json:"line,omitempty"`
	X       float64 `json:"x,omitempty"`
	Name    string  `json:"name,omitempty"`
	Runs    int     `json:"runs"`
	Median  float64 `json:"median_ms"`
	P90     float64 `json:"p90_ms"`
	Ratio   float64 `json:"ratio,omitempty"`
	RatioTo string  `json:"ratio_to,omitempty"`
}

// Print writes r as one line on stdout.
func Print(r Row) {
	b, _ := json.Marshal(r)
	fmt.Println(string(b))
}

// Counts parses a comma-separated list of counts from 1 to 1000 (the
// -layers and -recipients flags); empty is none.
func Counts(s string) ([]int, error) {
	if s == "" {
		return nil, nil
	}
	var ns []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 1000 {
			return nil, fmt.Errorf("bad count %q (1 to 1000)", f)
		}
		ns = append(ns, n)
	}
	return ns, nil
}
