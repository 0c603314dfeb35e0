package tpmdev

import (
	"errors"
	"sync"

	"github.com/google/go-tpm/tpm2"

	"github.com/ocikp/ocikp/keys/tpm"
)

// Kept runs requests in this process with each device kept open between
// them, for ocikp serve: the SRK is created once, each key loaded once,
// and its salted HMAC session reused, so an unwrap costs about one
// TPM2_ECDH_ZGen (a PCR-bound key still runs its policy per use, as it
// must). When a device fails (gone, restarted), everything made in it is
// dropped and the request tried once more on a fresh connection: a TPM
// that went away is an error for the requests made while it is away,
// never for the service. Holding a swtpm socket keeps other clients of
// that simulator waiting; a kernel device (/dev/tpmrm0) serves many.
type Kept struct {
	mu    sync.Mutex
	conns map[string]*conn
	keys  map[string]*key // parsed records, by their bytes
	opens int
}

// NewKept returns a Kept with no device open yet.
func NewKept() *Kept { return &Kept{conns: map[string]*conn{}, keys: map[string]*key{}} }

// maxKeys bounds the parsed records kept (a node has a few keys).
const maxKeys = 64

// parse returns the request's record parsed, once per distinct record.
func (k *Kept) parse(data []byte) (*key, error) {
	if kk := k.keys[string(data)]; kk != nil {
		return kk, nil
	}
	kk, err := parseKey(data)
	if err != nil {
		return nil, err
	}
	if len(k.keys) >= maxKeys {
		clear(k.keys)
	}
	k.keys[string(data)] = kk
	return kk, nil
}

// Handle runs one request (a tpm.Handler).
func (k *Kept) Handle(req *tpm.Request) (*tpm.Reply, error) {
	if rep, err, ok := stateless(req); ok {
		return rep, err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	for attempt := 0; ; attempt++ {
		c := k.conns[req.Device]
		fresh := c == nil
		if fresh {
			var err error
			if c, err = dial(req.Device, true); err != nil {
				return nil, err
			}
			k.conns[req.Device] = c
			k.opens++
		}
		rep, err := c.do(req, k.parse)
		switch {
		case err == nil || attempt > 0:
		case full(err):
			// What is kept fills the TPM's slots (swtpm has 3 for
			// objects): flush it and try again on the same connection.
			c.evict()
			continue
		case stale(err):
			k.drop(req.Device)
			if !fresh {
				continue
			}
		}
		if err != nil && stale(err) {
			k.drop(req.Device)
		}
		return rep, err
	}
}

// full reports whether the TPM ran out of slots for objects or sessions.
func full(err error) bool {
	return errors.Is(err, tpm2.TPMRCObjectMemory) || errors.Is(err, tpm2.TPMRCSessionMemory)
}

// stale reports whether err says the connection or what it holds is no
// longer good: anything but a TPM's answer to the command or a decision
// of ours, or a TPM that forgot its handles (reset, resource manager).
func stale(err error) bool {
	var rc tpm2.TPMRC
	switch {
	case tpm.Code(err) != "":
		return false
	case errors.Is(err, tpm2.TPMRCInitialize), errors.Is(err, tpm2.TPMRCHandle),
		errors.Is(err, tpm2.TPMRCReferenceH0), errors.Is(err, tpm2.TPMRCReferenceH1),
		errors.Is(err, tpm2.TPMRCReferenceS0), errors.Is(err, tpm2.TPMRCSessionHandles):
		return true
	case errors.As(err, &rc):
		return false
	}
	var ie *ioError
	return errors.As(err, &ie)
}

func (k *Kept) drop(path string) {
	if c := k.conns[path]; c != nil {
		c.close()
		delete(k.conns, path)
	}
}

// Close closes every device (a service shutting down).
func (k *Kept) Close() {
	k.mu.Lock()
	defer k.mu.Unlock()
	for p := range k.conns {
		k.drop(p)
	}
}

// Opens counts device opens (tests, benchmarks).
func (k *Kept) Opens() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.opens
}
