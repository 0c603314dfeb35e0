package main

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/ocikp/ocikp/internal/cli"
)

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"ocikp": func() { os.Exit(cli.Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)) },
	})
}

func TestScripts(t *testing.T) {
	// ocikp serve and health run the sibling executable, PKCS#11 and TPM
	// keys the companions: scripts that need them set
	// OCIKP_PLUGIN_DIR=$SERVEDIR.
	serveDir := t.TempDir()
	if out, err := exec.Command("go", "build", "-o", serveDir, "github.com/ocikp/ocikp/cmd/ocikp-serve", "github.com/ocikp/ocikp/cmd/ocikp-pkcs11", "github.com/ocikp/ocikp/cmd/ocikp-tpm").CombinedOutput(); err != nil {
		t.Fatalf("go build ocikp-serve: %v\n%s", err, out)
	}
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata/script",
		RequireExplicitExec: true,
		Setup: func(e *testscript.Env) error {
			e.Setenv("OCIKP_KEYSTORE", e.WorkDir+"/ks")
			e.Setenv("XDG_DATA_HOME", e.WorkDir+"/xdg")
			e.Setenv("SERVEDIR", serveDir)
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"wrapreq":   cmdWrapreq,
			"unwrapreq": cmdUnwrapreq,
			"optsdata":  cmdOptsdata,
			"mkcert":    cmdMkcert,
			"swtpm":     cmdSwtpm,
			"softhsm":   cmdSoftHSM,
		},
	})
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// wrapreq OUT NAME OPTSDATA RECIPIENT_FILE... [-- NAME2=VALUE ...]
// writes a keywrap request as skopeo would send it.
func cmdWrapreq(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 3 {
		ts.Fatalf("usage: wrapreq OUT NAME OPTSDATA RECIPIENT_FILE... [-- NAME=VALUE...]")
	}
	params := map[string][]string{}
	var extra bool
	for _, a := range args[3:] {
		if a == "--" {
			extra = true
			continue
		}
		if extra {
			k, v, _ := strings.Cut(a, "=")
			params[k] = append(params[k], b64(v))
			continue
		}
		params[args[1]] = append(params[args[1]], b64(strings.TrimSpace(ts.ReadFile(a))))
	}
	req := map[string]any{"op": "keywrap", "keywrapparams": map[string]any{
		"ec":       map[string]any{"Parameters": params, "DecryptConfig": map[string]any{"Parameters": map[string]any{}}},
		"optsdata": b64(args[2]),
	}}
	writeJSON(ts, args[0], req)
}

// unwrapreq OUT WRAP_REPLY [NAME=VALUE...] writes a keyunwrap request for
// the annotation in a keywrap reply; NAME=VALUE pairs fill dc.Parameters.
func cmdUnwrapreq(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 2 {
		ts.Fatalf("usage: unwrapreq OUT WRAP_REPLY [NAME=VALUE...]")
	}
	var reply struct {
		R struct {
			Annotation []byte `json:"annotation"`
		} `json:"keywrapresults"`
	}
	ts.Check(json.Unmarshal([]byte(ts.ReadFile(args[1])), &reply))
	params := map[string][]string{}
	for _, a := range args[2:] {
		k, v, _ := strings.Cut(a, "=")
		params[k] = append(params[k], b64(v))
	}
	writeJSON(ts, args[0], map[string]any{"op": "keyunwrap", "keyunwrapparams": map[string]any{
		"dc": map[string]any{"Parameters": params}, "annotation": reply.R.Annotation,
	}})
}

// optsdata REPLY WANT checks the optsdata of a keyunwrap reply.
func cmdOptsdata(ts *testscript.TestScript, neg bool, args []string) {
	var reply struct {
		R struct {
			Optsdata []byte `json:"optsdata"`
		} `json:"keyunwrapresults"`
	}
	ts.Check(json.Unmarshal([]byte(ts.ReadFile(args[0])), &reply))
	if got := string(reply.R.Optsdata); (got == args[1]) == neg {
		ts.Fatalf("optsdata is %q, want %q", got, args[1])
	}
}

func writeJSON(ts *testscript.TestScript, name string, v any) {
	b, err := json.Marshal(v)
	ts.Check(err)
	ts.Check(os.WriteFile(ts.MkAbs(name), b, 0o644))
}
