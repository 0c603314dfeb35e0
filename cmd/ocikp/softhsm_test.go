package main

import (
	"os"
	"os/exec"
	"path/filepath"

	"github.com/rogpeppe/go-internal/testscript"
)

// softhsm LABEL PIN initialises a SoftHSM2 token in $WORK/softhsm with
// its own SOFTHSM2_CONF (set for the rest of the script). Scripts skip
// with [!exec:softhsm2-util] before (scripts/test.sh installs it).
func cmdSoftHSM(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: softhsm LABEL PIN")
	}
	dir := ts.MkAbs("softhsm")
	tokens := filepath.Join(dir, "tokens")
	ts.Check(os.MkdirAll(tokens, 0o700))
	conf := filepath.Join(dir, "softhsm2.conf")
	ts.Check(os.WriteFile(conf, []byte("directories.tokendir = "+tokens+"\nobjectstore.backend = file\nlog.level = ERROR\n"), 0o600))
	ts.Setenv("SOFTHSM2_CONF", conf)
	cmd := exec.Command("softhsm2-util", "--init-token", "--free", "--label", args[0], "--pin", args[1], "--so-pin", "so-"+args[1])
	cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+conf)
	if out, err := cmd.CombinedOutput(); err != nil {
		ts.Fatalf("softhsm2-util --init-token: %v\n%s", err, out)
	}
}
