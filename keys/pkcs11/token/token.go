//go:build cgo

package token

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"

	p11 "github.com/miekg/pkcs11"

	"github.com/ocikp/ocikp/keys/pkcs11"
)

// oidP256 is CKA_EC_PARAMS for P-256: the DER of OID 1.2.840.10045.3.1.7.
var oidP256 = []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}

// failure is an error with the code ocikp decides on.
type failure struct {
	code string
	msg  string
}

func (f *failure) Error() string { return f.msg }

func fail(code, format string, args ...any) error {
	return &failure{code, fmt.Sprintf(format, args...)}
}

func do(req *pkcs11.Request) *pkcs11.Reply {
	rep, err := run(req)
	if err != nil {
		var f *failure
		if errors.As(err, &f) {
			return &pkcs11.Reply{Error: f.msg, Code: f.code}
		}
		return &pkcs11.Reply{Error: err.Error()}
	}
	return rep
}

// session is an open, logged-in session on the URI's token.
type session struct {
	ctx    *p11.Ctx
	sh     p11.SessionHandle
	u      *pkcs11.URI
	module string // the resolved module path (kept sessions: its lock)
}

func run(req *pkcs11.Request) (*pkcs11.Reply, error) {
	u, err := pkcs11.Parse(req.URI)
	if err != nil {
		return nil, err
	}
	u.ModulePath = req.Module
	module, err := pkcs11.CheckModule(u)
	if err != nil {
		return nil, fail(pkcs11.CodeModule, "%v", err)
	}
	// Held from loading the module to finalising it: the whole of this
	// request's use of the token (lockModule says why).
	defer lockModule(module)()
	ctx := p11.New(module)
	if ctx == nil {
		return nil, fail(pkcs11.CodeModule, "cannot load PKCS#11 module %s (not a PKCS#11 library, or it failed to load)", module)
	}
	defer ctx.Destroy()
	if err := ctx.Initialize(); err != nil {
		return nil, fail(pkcs11.CodeModule, "initialising PKCS#11 module %s: %v", module, err)
	}
	defer ctx.Finalize()
	s, err := open(ctx, u, req.PIN, req.Op == "keygen")
	if err != nil {
		return nil, err
	}
	defer ctx.CloseSession(s.sh)
	switch req.Op {
	case "keygen":
		return s.keygen()
	case "public":
		_, pub, err := s.find()
		if err != nil {
			return nil, err
		}
		return &pkcs11.Reply{Public: pub}, nil
	case "ecdh":
		return s.ecdhReq(req)
	case "rsa-oaep":
		return s.rsaOAEP(req.Hash, req.Data)
	}
	return nil, fmt.Errorf("unknown operation %.20q", req.Op)
}

// open finds the URI's token and logs in with pin (none: no login).
func open(ctx *p11.Ctx, u *pkcs11.URI, pin string, rw bool) (*session, error) {
	slots, err := ctx.GetSlotList(true)
	if err != nil {
		return nil, fmt.Errorf("listing PKCS#11 slots: %w", err)
	}
	var match []uint
	for _, sl := range slots {
		if u.SlotID >= 0 && uint(u.SlotID) != sl {
			continue
		}
		ti, err := ctx.GetTokenInfo(sl)
		if err != nil {
			continue
		}
		trim := func(s string) string { return strings.TrimRight(s, " \x00") }
		if (u.Token == "" || trim(ti.Label) == u.Token) && (u.Serial == "" || trim(ti.SerialNumber) == u.Serial) &&
			(u.Manufacturer == "" || trim(ti.ManufacturerID) == u.Manufacturer) && (u.Model == "" || trim(ti.Model) == u.Model) {
			match = append(match, sl)
		}
	}
	switch {
	case len(match) == 0:
		return nil, fail(pkcs11.CodeTokenAbsent, "no token matching %s is present (%d slot(s) with a token)", what(u), len(slots))
	case len(match) > 1:
		return nil, fmt.Errorf("%d tokens match %s: add serial= or slot-id= to the URI", len(match), what(u))
	}
	flags := uint(p11.CKF_SERIAL_SESSION)
	if rw {
		flags |= p11.CKF_RW_SESSION
	}
	sh, err := ctx.OpenSession(match[0], flags)
	if err != nil {
		return nil, fmt.Errorf("opening a session on %s: %w", what(u), err)
	}
	if pin != "" {
		err := ctx.Login(sh, p11.CKU_USER, pin)
		var e p11.Error
		if errors.As(err, &e) {
			switch e {
			case p11.CKR_USER_ALREADY_LOGGED_IN:
				err = nil
			case p11.CKR_PIN_INCORRECT, p11.CKR_PIN_LEN_RANGE:
				err = fail(pkcs11.CodePINIncorrect, "the PIN for %s is incorrect", what(u))
			case p11.CKR_PIN_LOCKED:
				err = fail(pkcs11.CodePINLocked, "the PIN of %s is locked (too many wrong PINs)", what(u))
			default:
				err = fmt.Errorf("logging in to %s: %w", what(u), err)
			}
		}
		if err != nil {
			ctx.CloseSession(sh)
			return nil, err
		}
	}
	return &session{ctx: ctx, sh: sh, u: u}, nil
}

func what(u *pkcs11.URI) string {
	if u.Token != "" {
		return fmt.Sprintf("token %q", u.Token)
	}
	return "the URI"
}

// template selects the URI's key objects of class.
func (s *session) template(class uint) []*p11.Attribute {
	t := []*p11.Attribute{p11.NewAttribute(p11.CKA_CLASS, class), p11.NewAttribute(p11.CKA_KEY_TYPE, p11.CKK_EC)}
	if s.u.Object != "" {
		t = append(t, p11.NewAttribute(p11.CKA_LABEL, s.u.Object))
	}
	if len(s.u.ID) > 0 {
		t = append(t, p11.NewAttribute(p11.CKA_ID, s.u.ID))
	}
	return t
}

func (s *session) findAll(t []*p11.Attribute) ([]p11.ObjectHandle, error) {
	if err := s.ctx.FindObjectsInit(s.sh, t); err != nil {
		return nil, fmt.Errorf("searching the token: %w", err)
	}
	hs, _, err := s.ctx.FindObjects(s.sh, 2)
	if ferr := s.ctx.FindObjectsFinal(s.sh); err == nil {
		err = ferr
	}
	if err != nil {
		return nil, fmt.Errorf("searching the token: %w", err)
	}
	return hs, nil
}

// find returns the URI's private key and its public point.
func (s *session) find() (p11.ObjectHandle, []byte, error) {
	if s.u.Object == "" && len(s.u.ID) == 0 {
		return 0, nil, errors.New("the URI names no key: add object= or id=")
	}
	privs, err := s.findAll(s.template(p11.CKO_PRIVATE_KEY))
	if err != nil {
		return 0, nil, err
	}
	switch len(privs) {
	case 0:
		return 0, nil, fail(pkcs11.CodeNoKey, "%s has no EC private key matching the URI (is the PIN given? private objects are found only after login)", what(s.u))
	case 1:
	default:
		return 0, nil, errors.New("several EC private keys match the URI: add id= to it")
	}
	// The public point: the private key's own CKA_EC_POINT (SoftHSM and
	// others keep it), else the public key object with the same id.
	pub, err := s.point(privs[0])
	if err != nil {
		t := []*p11.Attribute{p11.NewAttribute(p11.CKA_ID, nil)}
		attrs, aerr := s.ctx.GetAttributeValue(s.sh, privs[0], t)
		if aerr != nil {
			return 0, nil, fmt.Errorf("reading the key's id: %w", aerr)
		}
		pubs, ferr := s.findAll([]*p11.Attribute{p11.NewAttribute(p11.CKA_CLASS, p11.CKO_PUBLIC_KEY),
			p11.NewAttribute(p11.CKA_KEY_TYPE, p11.CKK_EC), p11.NewAttribute(p11.CKA_ID, attrs[0].Value)})
		if ferr != nil {
			return 0, nil, ferr
		}
		if len(pubs) != 1 {
			return 0, nil, fail(pkcs11.CodeNoKey, "no single public key object has the private key's id")
		}
		if pub, err = s.point(pubs[0]); err != nil {
			return 0, nil, err
		}
	}
	return privs[0], pub, nil
}

// point reads a key object's CKA_EC_PARAMS and CKA_EC_POINT: a P-256
// point, uncompressed.
func (s *session) point(h p11.ObjectHandle) ([]byte, error) {
	attrs, err := s.ctx.GetAttributeValue(s.sh, h, []*p11.Attribute{
		p11.NewAttribute(p11.CKA_EC_PARAMS, nil), p11.NewAttribute(p11.CKA_EC_POINT, nil)})
	if err != nil {
		return nil, fmt.Errorf("reading the key's public point: %w", err)
	}
	if !bytes.Equal(attrs[0].Value, oidP256) {
		return nil, errors.New("the key is not a P-256 (prime256v1) key")
	}
	p := attrs[1].Value
	// CKA_EC_POINT is a DER OCTET STRING holding the point; some modules
	// give the bare point.
	if len(p) == 67 && p[0] == 0x04 && p[1] == 65 {
		p = p[2:]
	}
	if _, err := ecdh.P256().NewPublicKey(p); err != nil {
		return nil, errors.New("the key's CKA_EC_POINT is not a P-256 point")
	}
	return p, nil
}

// keygen makes a P-256 key pair on the token whose private half can only
// derive: sensitive, never extractable.
func (s *session) keygen() (*pkcs11.Reply, error) {
	if s.u.Object == "" {
		return nil, errors.New("the URI names no object: add object=LABEL for the new key")
	}
	id := s.u.ID
	if len(id) == 0 {
		id = make([]byte, 16)
		rand.Read(id)
	}
	for _, class := range []uint{p11.CKO_PRIVATE_KEY, p11.CKO_PUBLIC_KEY} {
		t := []*p11.Attribute{p11.NewAttribute(p11.CKA_CLASS, class), p11.NewAttribute(p11.CKA_LABEL, s.u.Object)}
		hs, err := s.findAll(t)
		if err != nil {
			return nil, err
		}
		if len(hs) > 0 {
			return nil, fail(pkcs11.CodeExists, "%s already has a key labelled %q", what(s.u), s.u.Object)
		}
	}
	pubT := []*p11.Attribute{
		p11.NewAttribute(p11.CKA_CLASS, p11.CKO_PUBLIC_KEY),
		p11.NewAttribute(p11.CKA_KEY_TYPE, p11.CKK_EC),
		p11.NewAttribute(p11.CKA_TOKEN, true),
		p11.NewAttribute(p11.CKA_EC_PARAMS, oidP256),
		p11.NewAttribute(p11.CKA_LABEL, s.u.Object),
		p11.NewAttribute(p11.CKA_ID, id),
	}
	privT := []*p11.Attribute{
		p11.NewAttribute(p11.CKA_CLASS, p11.CKO_PRIVATE_KEY),
		p11.NewAttribute(p11.CKA_KEY_TYPE, p11.CKK_EC),
		p11.NewAttribute(p11.CKA_TOKEN, true),
		p11.NewAttribute(p11.CKA_PRIVATE, true),
		p11.NewAttribute(p11.CKA_SENSITIVE, true),
		p11.NewAttribute(p11.CKA_EXTRACTABLE, false),
		p11.NewAttribute(p11.CKA_DERIVE, true),
		p11.NewAttribute(p11.CKA_SIGN, false),
		p11.NewAttribute(p11.CKA_LABEL, s.u.Object),
		p11.NewAttribute(p11.CKA_ID, id),
	}
	pubH, _, err := s.ctx.GenerateKeyPair(s.sh, []*p11.Mechanism{p11.NewMechanism(p11.CKM_EC_KEY_PAIR_GEN, nil)}, pubT, privT)
	if err != nil {
		return nil, fmt.Errorf("generating a P-256 key on %s: %w", what(s.u), err)
	}
	pub, err := s.point(pubH)
	if err != nil {
		return nil, err
	}
	return &pkcs11.Reply{Public: pub, ID: id}, nil
}

// ecdh derives the shared secret: CKM_ECDH1_DERIVE with the null KDF
// gives the x-coordinate of the shared point, as a session-only generic
// secret that is read and destroyed.
func (s *session) ecdh(peer []byte) (*pkcs11.Reply, error) {
	if _, err := ecdh.P256().NewPublicKey(peer); err != nil {
		return nil, errors.New("the peer key is not a P-256 point")
	}
	priv, _, err := s.find()
	if err != nil {
		return nil, err
	}
	mech := []*p11.Mechanism{p11.NewMechanism(p11.CKM_ECDH1_DERIVE, p11.NewECDH1DeriveParams(p11.CKD_NULL, nil, peer))}
	t := []*p11.Attribute{
		p11.NewAttribute(p11.CKA_CLASS, p11.CKO_SECRET_KEY),
		p11.NewAttribute(p11.CKA_KEY_TYPE, p11.CKK_GENERIC_SECRET),
		p11.NewAttribute(p11.CKA_VALUE_LEN, 32),
		p11.NewAttribute(p11.CKA_TOKEN, false),
		p11.NewAttribute(p11.CKA_SENSITIVE, false),
		p11.NewAttribute(p11.CKA_EXTRACTABLE, true),
	}
	h, err := s.ctx.DeriveKey(s.sh, mech, priv, t)
	if err != nil {
		return nil, fmt.Errorf("ECDH (CKM_ECDH1_DERIVE) on %s: %w", what(s.u), err)
	}
	defer s.ctx.DestroyObject(s.sh, h)
	attrs, err := s.ctx.GetAttributeValue(s.sh, h, []*p11.Attribute{p11.NewAttribute(p11.CKA_VALUE, nil)})
	if err != nil {
		return nil, fmt.Errorf("reading the derived secret: %w", err)
	}
	if len(attrs[0].Value) != 32 {
		return nil, fmt.Errorf("ECDH returned %d bytes, want 32", len(attrs[0].Value))
	}
	return &pkcs11.Reply{Secret: attrs[0].Value}, nil
}

// ecdhReq answers an ecdh request: its one point, or its batch of up to
// pkcs11.MaxPeers (every point checked before the token derives any).
func (s *session) ecdhReq(req *pkcs11.Request) (*pkcs11.Reply, error) {
	if len(req.Peers) == 0 {
		return s.ecdh(req.Peer)
	}
	// A malformed request is a failure of its own (no code): the kept
	// companion must not take it for a session gone bad.
	if len(req.Peers) > pkcs11.MaxPeers || len(req.Peer) > 0 {
		return nil, fail("", "at most %d peer points, and not beside peer", pkcs11.MaxPeers)
	}
	for _, p := range req.Peers {
		if _, err := ecdh.P256().NewPublicKey(p); err != nil {
			return nil, fail("", "a peer key is not a P-256 point")
		}
	}
	rep := &pkcs11.Reply{}
	for _, p := range req.Peers {
		r, err := s.ecdh(p)
		if err != nil {
			return nil, err
		}
		rep.Secrets = append(rep.Secrets, r.Secret)
	}
	return rep, nil
}

// rsaOAEP decrypts with the URI's RSA private key and CKM_RSA_PKCS_OAEP
// (MGF1 with the same hash, empty label), as ocicrypt's PKCS#11 scheme
// does: how layers it wrapped are migrated.
func (s *session) rsaOAEP(hash string, data []byte) (*pkcs11.Reply, error) {
	var params *p11.OAEPParams
	switch hash {
	case "sha1", "":
		params = p11.NewOAEPParams(p11.CKM_SHA_1, p11.CKG_MGF1_SHA1, p11.CKZ_DATA_SPECIFIED, nil)
	case "sha256":
		params = p11.NewOAEPParams(p11.CKM_SHA256, p11.CKG_MGF1_SHA256, p11.CKZ_DATA_SPECIFIED, nil)
	default:
		return nil, fmt.Errorf("OAEP hash %.20q: want sha1 or sha256", hash)
	}
	if s.u.Object == "" && len(s.u.ID) == 0 {
		return nil, errors.New("the URI names no key: add object= or id=")
	}
	t := []*p11.Attribute{p11.NewAttribute(p11.CKA_CLASS, p11.CKO_PRIVATE_KEY), p11.NewAttribute(p11.CKA_KEY_TYPE, p11.CKK_RSA)}
	if s.u.Object != "" {
		t = append(t, p11.NewAttribute(p11.CKA_LABEL, s.u.Object))
	}
	if len(s.u.ID) > 0 {
		t = append(t, p11.NewAttribute(p11.CKA_ID, s.u.ID))
	}
	hs, err := s.findAll(t)
	if err != nil {
		return nil, err
	}
	if len(hs) != 1 {
		return nil, fail(pkcs11.CodeNoKey, "%s has %d RSA private keys matching the URI, want one", what(s.u), len(hs))
	}
	if err := s.ctx.DecryptInit(s.sh, []*p11.Mechanism{p11.NewMechanism(p11.CKM_RSA_PKCS_OAEP, params)}, hs[0]); err != nil {
		return nil, fmt.Errorf("RSA-OAEP on %s: %w", what(s.u), err)
	}
	out, err := s.ctx.Decrypt(s.sh, data)
	if err != nil {
		return nil, fmt.Errorf("RSA-OAEP on %s: %w", what(s.u), err)
	}
	return &pkcs11.Reply{Secret: out}, nil
}
