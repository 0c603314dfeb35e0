package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
)

// applyConfigFile sets, from a JSON object keyed by flag names
// ({"listen": "…", "tls-cert": "…", "max-concurrent": 128}), every flag that
// the command line did not set: flags win over the file. Unknown keys are
// errors, so that a misspelt setting does not silently keep its default.
func applyConfigFile(fs *flag.FlagSet, path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	values, err := parseConfig(data)
	if err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	for name, v := range values {
		if name == "config" || fs.Lookup(name) == nil {
			return fmt.Errorf("config file %s: unknown setting %.40q", path, name)
		}
		if set[name] {
			continue
		}
		if err := fs.Set(name, v); err != nil {
			return fmt.Errorf("config file %s: %q: %v", path, name, err)
		}
	}
	return nil
}

// parseConfig reads a flat JSON object of strings, numbers and booleans.
func parseConfig(data []byte) (map[string]string, error) {
	if len(data) > 64<<10 {
		return nil, errors.New("too large")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var raw map[string]any
	if err := dec.Decode(&raw); err != nil || raw == nil {
		return nil, errors.New("not a JSON object")
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("trailing data")
	}
	out := map[string]string{}
	for k, v := range raw {
		switch v := v.(type) {
		case string:
			out[k] = v
		case json.Number:
			out[k] = v.String()
		case bool:
			out[k] = strconv.FormatBool(v)
		default:
			return nil, fmt.Errorf("setting %.40q: want a string, number or boolean", k)
		}
	}
	return out, nil
}
