package pkcs11

import (
	"errors"
	"sync"

	"github.com/ocikp/ocikp/internal/badpin"
)

// latches holds, per key (module and URI), the PIN its token refused, so
// that it is not sent again by this process: in exec each ECDH is a fresh
// companion, which cannot remember, and a layer may hold dozens of
// stanzas that reach one key. (The kept companion remembers too.)
var latches = struct {
	sync.Mutex
	m map[string]*badpin.Latch
}{m: map[string]*badpin.Latch{}}

// latched runs an ECDH request through its key's latch.
func latched(req *Request, run func(*Request) (*Reply, error)) (*Reply, error) {
	latches.Lock()
	id := req.Module + "\x00" + req.URI
	l := latches.m[id]
	if l == nil {
		if len(latches.m) >= 64 { // a keystore has a few keys
			clear(latches.m)
		}
		l = new(badpin.Latch)
		latches.m[id] = l
	}
	latches.Unlock()
	var rep *Reply
	err := l.Do([]byte(req.PIN), func() (err error) {
		rep, err = run(req)
		return err
	}, func(err error) bool { return errors.Is(err, ErrPINIncorrect) })
	return rep, err
}
