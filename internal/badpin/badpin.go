// Package badpin keeps a device from being sent a PIN it refused. Devices
// count wrong PINs: a TPM toward dictionary-attack lockout, which then
// refuses every key it holds, right PIN or not; a token toward locking its
// user PIN until its security officer resets it. One layer may hold dozens
// of stanzas that reach the same key (their tags are computable by anyone
// who knows its recipient), and a service answers many layers with the
// identities it keeps: without a latch, one wrong PIN is tried for each.
package badpin

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"sync"
)

// Latch remembers the last PIN a key's device refused. The zero Latch is
// ready; a nil *Latch remembers nothing.
type Latch struct {
	mu  sync.Mutex
	key []byte // random: what is kept tells nothing of a short PIN
	bad []byte // the refused PIN's MAC, nil for none
	err error  // the device's refusal, returned again (as Again)
}

// Do runs op, which sends pin to the device, one at a time; refused tells
// a wrong-PIN error. A PIN the device refused before is not sent again: Do
// returns that refusal without running op. Another PIN (the operator
// corrected it) is tried.
func (l *Latch) Do(pin []byte, op func() error, refused func(error) bool) error {
	if l == nil {
		return op()
	}
	l.mu.Lock() // also keeps concurrent requests from each spending a try
	defer l.mu.Unlock()
	if l.key == nil {
		l.key = make([]byte, 32)
		rand.Read(l.key)
	}
	m := hmac.New(sha256.New, l.key)
	m.Write(pin)
	sum := m.Sum(nil)
	if l.bad != nil && hmac.Equal(sum, l.bad) {
		return &Again{l.err}
	}
	err := op()
	if err != nil && refused(err) {
		l.bad, l.err = sum, err
	}
	return err
}

// Again is a refusal returned again, without the device.
type Again struct{ Err error }

func (e *Again) Error() string {
	return e.Err.Error() + " (refused before; not tried again until the PIN changes)"
}

func (e *Again) Unwrap() error { return e.Err }
