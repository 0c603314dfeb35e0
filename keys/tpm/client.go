package tpm

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ocikp/ocikp/internal/badpin"
	"github.com/ocikp/ocikp/internal/companion"
)

// Companion is the executable that drives the TPM, looked for as KMS
// plugins are: in $OCIKP_PLUGIN_DIR, next to ocikp, on PATH. go-tpm links
// net (and, with cgo, the C resolver): in ocikp it would cost every
// layer's start, TPM or not.
const Companion = "ocikp-tpm"

// timeout bounds one request (each TPM command is bounded to 30 s).
const timeout = 2 * time.Minute

// maxReply bounds the companion's answer (blobs of a few hundred bytes).
const maxReply = 64 << 10

var client = &companion.Client{Name: Companion, Timeout: timeout, MaxReply: maxReply, Coded: codeErr, Explain: Explain}

// Handler runs requests in this process (package tpmdev in ocikp-serve,
// which keeps the device open); it returns bare sentinel errors.
type Handler func(*Request) (*Reply, error)

var local atomic.Pointer[Handler]

// SetHandler makes this process run TPM operations itself with h instead
// of starting the companion for each; nil restores the companion.
func SetHandler(h Handler) {
	if h == nil {
		local.Store(nil)
		return
	}
	local.Store(&h)
}

// FindCompanion returns the companion's path, or why it is not found.
func FindCompanion() (string, error) { return client.Find() }

// call runs req in this process's handler, else in a fresh companion;
// what says what needs the companion, should it be missing. A PIN the TPM
// refused for a key is not sent again for it (package badpin): a layer's
// stanzas and a service's requests would each count toward lockout.
func call(req *Request, what string) (*Reply, error) {
	if req.Op != OpZGen || len(req.PIN) == 0 {
		return run(req, what)
	}
	var rep *Reply
	err := latchFor(req.Record).Do(req.PIN, func() (err error) {
		rep, err = run(req, what)
		return err
	}, func(err error) bool { return errors.Is(err, ErrBadPIN) })
	return rep, err
}

// latches holds a latch per key, by its record as stored: identities are
// made anew (a service reloads its keystore, a hybrid loads its key per
// stanza until one opens), the key stays. Bounded: a keystore has a few.
var latches = struct {
	sync.Mutex
	m map[string]*badpin.Latch
}{m: map[string]*badpin.Latch{}}

func latchFor(record []byte) *badpin.Latch {
	latches.Lock()
	defer latches.Unlock()
	l := latches.m[string(record)]
	if l == nil {
		if len(latches.m) >= 64 {
			clear(latches.m)
		}
		l = new(badpin.Latch)
		latches.m[string(record)] = l
	}
	return l
}

func run(req *Request, what string) (*Reply, error) {
	if h := local.Load(); h != nil {
		rep, err := (*h)(req)
		return rep, Explain(err)
	}
	if _, err := client.Find(); err != nil {
		return nil, fmt.Errorf("%s needs %s: %w", what, Companion, err)
	}
	var rep Reply
	if err := client.Call(req, &rep); err != nil {
		return nil, err
	}
	return &rep, nil
}
