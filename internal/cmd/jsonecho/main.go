// Command jsonecho is the baseline for scripts/bench-exec.sh: a minimal Go
// program that decodes a JSON request from stdin and encodes it to stdout,
// i.e. the least any exec key provider must do.
package main

import (
	"encoding/json"
	"os"
)

func main() {
	var v map[string]any
	if err := json.NewDecoder(os.Stdin).Decode(&v); err != nil {
		os.Exit(1)
	}
	json.NewEncoder(os.Stdout).Encode(v)
}
