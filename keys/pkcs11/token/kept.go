//go:build cgo

package token

import (
	"errors"

	p11 "github.com/miekg/pkcs11"

	"github.com/ocikp/ocikp/keys/pkcs11"
)

// kept holds loaded modules and open, logged-in sessions between
// requests. Any failure on a kept session drops it and its module and
// tries once afresh, so a token that was removed and reinserted, or a
// module that lost its state, is picked up again on the next request.
//
// PKCS#11 logins belong to the application, not the session: once one
// session is logged in, every other on the token is, and C_Login says
// CKR_USER_ALREADY_LOGGED_IN whatever the PIN. So a module is kept with
// the PIN it was logged in with, and a request with another PIN gets the
// module afresh, where its PIN is checked.
//
// A PIN the token refused is not sent to it again: every unwrap would
// otherwise spend one of the few tries a smart card allows.
type kept struct {
	mods    map[string]*p11.Ctx
	pins    map[string]string
	sess    map[string]*session
	refused map[string]bool
}

func newKept() *kept {
	return &kept{mods: map[string]*p11.Ctx{}, pins: map[string]string{}, sess: map[string]*session{}, refused: map[string]bool{}}
}

func (k *kept) close() {
	for m := range k.mods {
		k.drop(m)
	}
}

// drop forgets a module and every session on it.
func (k *kept) drop(module string) {
	defer lockModule(module)()
	ctx := k.mods[module]
	if ctx == nil {
		return
	}
	for key, s := range k.sess {
		if s.ctx == ctx {
			ctx.CloseSession(s.sh)
			delete(k.sess, key)
		}
	}
	ctx.Finalize()
	ctx.Destroy()
	delete(k.mods, module)
	delete(k.pins, module)
}

func (k *kept) ecdh(req *pkcs11.Request) *pkcs11.Reply {
	key := req.Module + "\x00" + req.URI + "\x00" + req.PIN
	if k.refused[key] {
		return &pkcs11.Reply{Error: "the PIN was refused by the token before; not tried again (fix the PIN, then it is)", Code: pkcs11.CodePINIncorrect}
	}
	var rep *pkcs11.Reply
	var err error
	for attempt := 0; attempt < 2; attempt++ {
		var s *session
		if s, err = k.session(req); err == nil {
			unlock := lockModule(s.module)
			rep, err = s.ecdhReq(req)
			unlock()
			if err == nil {
				return rep
			}
		}
		var f *failure
		if errors.As(err, &f) && f.code != pkcs11.CodeNoKey {
			break // the PIN, the module, an absent token: said as is
		}
		k.close() // every module: they are keyed by resolved path
	}
	var f *failure
	if errors.As(err, &f) {
		if f.code == pkcs11.CodePINIncorrect {
			k.refused[key] = true
		}
		return &pkcs11.Reply{Error: f.msg, Code: f.code}
	}
	return &pkcs11.Reply{Error: err.Error()}
}

// session returns the kept session for the request's key and PIN,
// opening the module and the session if needed.
func (k *kept) session(req *pkcs11.Request) (*session, error) {
	key := req.Module + "\x00" + req.URI + "\x00" + req.PIN
	if s := k.sess[key]; s != nil {
		return s, nil
	}
	u, err := pkcs11.Parse(req.URI)
	if err != nil {
		return nil, err
	}
	u.ModulePath = req.Module
	module, err := pkcs11.CheckModule(u)
	if err != nil {
		return nil, fail(pkcs11.CodeModule, "%v", err)
	}
	if pin, ok := k.pins[module]; ok && pin != req.PIN {
		k.drop(module)
	}
	defer lockModule(module)()
	ctx := k.mods[module]
	if ctx == nil {
		if ctx = p11.New(module); ctx == nil {
			return nil, fail(pkcs11.CodeModule, "cannot load PKCS#11 module %s (not a PKCS#11 library, or it failed to load)", module)
		}
		if err := ctx.Initialize(); err != nil {
			ctx.Destroy()
			return nil, fail(pkcs11.CodeModule, "initialising PKCS#11 module %s: %v", module, err)
		}
		k.mods[module] = ctx
		k.pins[module] = req.PIN
	}
	s, err := open(ctx, u, req.PIN, false)
	if err != nil {
		return nil, err
	}
	s.module = module
	k.sess[key] = s
	return s, nil
}
