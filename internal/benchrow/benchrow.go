// Package benchrow is the line format of the benchmark programs that
// scripts/bench.sh runs (internal/cmd/execbench, internal/cmd/ocicryptbench):
// one JSON object a line, which internal/cmd/benchplot reads. Table rows
// have a section; points of a cost-growth plot have a plot, a line and x.
package benchrow

import (
	"encoding/json"
	"fmt"
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
