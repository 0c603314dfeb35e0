package main

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestConfigFile(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	listen := fs.String("listen", "unix:///default", "")
	maxc := fs.Int("max-concurrent", 64, "")
	insecure := fs.Bool("insecure", false, "")
	timeout := fs.Duration("request-timeout", 30*time.Second, "")
	fs.String("config", "", "")
	path := filepath.Join(t.TempDir(), "serve.json")
	os.WriteFile(path, []byte(`{"listen":"127.0.0.1:7443","max-concurrent":128,"insecure":true,"request-timeout":"5s"}`), 0o600)
	fs.Parse([]string{"--listen", "unix:///from-flag"})
	if err := applyConfigFile(fs, path); err != nil {
		t.Fatal(err)
	}
	if *listen != "unix:///from-flag" || *maxc != 128 || !*insecure || *timeout != 5*time.Second {
		t.Fatalf("listen %q, max %d, insecure %v, timeout %v", *listen, *maxc, *insecure, *timeout)
	}
	for body, want := range map[string]string{
		`{"lisen":"x"}`:                "unknown setting",
		`{"max-concurrent":"many"}`:    "max-concurrent",
		`{"listen":["a"]}`:             "want a string",
		`[]`:                           "not a JSON object",
		`{"config":"/etc/other.json"}`: "unknown setting",
	} {
		os.WriteFile(path, []byte(body), 0o600)
		fresh := flag.NewFlagSet("t", flag.ContinueOnError)
		fresh.String("listen", "", "")
		fresh.Int("max-concurrent", 64, "")
		fresh.String("config", "", "")
		if err := applyConfigFile(fresh, path); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v", body, err)
		}
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(`{"listen":"127.0.0.1:1","max-concurrent":1,"insecure":false}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := parseConfig(b)
		if err == nil && m == nil {
			t.Fatal("nil map without error")
		}
	})
}
