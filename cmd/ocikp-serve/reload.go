package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

// watcher reloads what the service read from files while it runs: on
// SIGHUP everything; every interval, whatever group of files changed.
// Certificates reload in place (connections stay); KMS plugins restart on
// their next call, so they read their settings and credentials again (a
// rotated Vault token file, a new kms.json).
type watcher struct {
	log        *slog.Logger
	every      time.Duration   // 0: SIGHUP only
	tls        []string        // none for a plaintext service
	kms        func() []string // recomputed: the settings file may name others
	reloadTLS  func() error
	restartKMS func()
}

func (w *watcher) run(ctx context.Context) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	var tick <-chan time.Time
	if w.every > 0 {
		t := time.NewTicker(w.every)
		defer t.Stop()
		tick = t.C
	}
	tlsSeen, kmsSeen := stamp(w.tls), stamp(w.kms())
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			tlsSeen, kmsSeen = stamp(w.tls), stamp(w.kms())
			w.doTLS()
			w.doKMS()
		case <-tick:
			if s := stamp(w.tls); s != tlsSeen {
				tlsSeen = s
				w.doTLS()
			}
			if s := stamp(w.kms()); s != kmsSeen {
				kmsSeen = s
				w.doKMS()
			}
		}
	}
}

func (w *watcher) doTLS() {
	if len(w.tls) == 0 {
		return // plaintext service
	}
	if err := w.reloadTLS(); err != nil {
		w.log.Error("certificate reload failed; keeping the old ones", "err", err)
		return
	}
	w.log.Info("certificates reloaded")
}

func (w *watcher) doKMS() {
	w.restartKMS()
	w.log.Info("KMS plugins restart on their next call (settings and credentials reread)")
}

// stamp identifies the files' current versions: size and modification time,
// or absence.
func stamp(files []string) string {
	var b strings.Builder
	for _, f := range files {
		if fi, err := os.Stat(f); err == nil {
			fmt.Fprintf(&b, "%s:%d:%d;", f, fi.Size(), fi.ModTime().UnixNano())
		} else {
			fmt.Fprintf(&b, "%s:-;", f)
		}
	}
	return b.String()
}
