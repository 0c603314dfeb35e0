package tpmdev

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/ocikp/ocikp/keys/tpm"
	"github.com/ocikp/ocikp/p256"
)

// key is a record with its TPM blobs read.
type key struct {
	rec     *tpm.Record
	pub     tpm2.TPM2BPublic
	priv    tpm2.TPM2BPrivate
	srkName []byte
}

// parseKey reads a record as stored and its blobs, strictly; the public
// area must be the key its recipient names.
func parseKey(data []byte) (*key, error) {
	r, err := tpm.ParseRecord(data)
	if err != nil {
		return nil, err
	}
	pubRaw, privRaw, srkName := r.Blobs()
	pub2b, err := tpm2.Unmarshal[tpm2.TPM2BPublic](pubRaw)
	if err != nil || !bytes.Equal(tpm2.Marshal(pub2b), pubRaw) {
		return nil, errors.New("TPM key record: public is not a TPM2B_PUBLIC")
	}
	pub, err := pub2b.Contents()
	if err != nil {
		return nil, errors.New("TPM key record: public is not a TPM2B_PUBLIC")
	}
	ec, err := publicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("TPM key record: %w", err)
	}
	if !bytes.Equal(p256.Compress(ec), r.Compressed()) {
		return nil, errors.New("TPM key record: the recipient is not the TPM key's")
	}
	priv2b, err := tpm2.Unmarshal[tpm2.TPM2BPrivate](privRaw)
	if err != nil || !bytes.Equal(tpm2.Marshal(priv2b), privRaw) {
		return nil, errors.New("TPM key record: private is not a TPM2B_PRIVATE")
	}
	return &key{rec: r, pub: *pub2b, priv: *priv2b, srkName: srkName}, nil
}

// conn is an open device and what was made in it: for one request (the
// companion), or kept across requests (Kept, in ocikp serve).
type conn struct {
	t     transport.TPM
	dev   *device
	path  string
	keep  bool
	srk   *srk
	ek    *srk
	ekRSA *srk
	keys  map[string]*loaded // by private blob
}

// loaded is a key loaded under the SRK and, kept, its HMAC session.
type loaded struct {
	handle    tpm2.TPMHandle
	name      tpm2.TPM2BName
	sess      tpm2.Session
	closeSess func() error
	auth      [sha256.Size]byte // the PIN the session was made with
}

func dial(path string, keep bool) (*conn, error) {
	d, err := open(path)
	if err != nil {
		return nil, err
	}
	return &conn{t: d, dev: d, path: path, keep: keep, keys: map[string]*loaded{}}, nil
}

func (c *conn) getSRK() (*srk, error) {
	if c.srk == nil {
		s, err := createPrimary(c.t, tpm2.TPMRHOwner, tpm2.ECCSRKTemplate, "storage root key")
		if err != nil {
			return nil, err
		}
		c.srk = s
	}
	return c.srk, nil
}

// getEK returns the EK of type typ (tpm.EKECC or tpm.EKRSA), made from
// the TCG default template once per conn.
func (c *conn) getEK(typ string) (*srk, error) {
	ek, template, what := &c.ek, tpm2.ECCEKTemplate, "endorsement key"
	if typ == tpm.EKRSA {
		ek, template, what = &c.ekRSA, tpm2.RSAEKTemplate, "RSA endorsement key"
	}
	if *ek == nil {
		s, err := createPrimary(c.t, tpm2.TPMRHEndorsement, template, what)
		if err != nil {
			return nil, err
		}
		*ek = s
	}
	return *ek, nil
}

// load loads k under s, once per conn.
func (c *conn) load(s *srk, k *key) (*loaded, error) {
	id := string(k.priv.Buffer)
	if l := c.keys[id]; l != nil {
		return l, nil
	}
	ld, err := tpm2.Load{
		ParentHandle: tpm2.AuthHandle{Handle: s.handle, Name: s.name, Auth: tpm2.PasswordAuth(nil)},
		InPrivate:    k.priv,
		InPublic:     k.pub,
	}.Execute(c.t)
	if err != nil {
		return nil, explain("loading the key", err)
	}
	l := &loaded{handle: ld.ObjectHandle, name: ld.Name}
	c.keys[id] = l
	return l, nil
}

// session is the key's kept HMAC session, salted to the SRK, made again
// for another PIN (the session knows the key's authValue).
func (l *loaded) session(t transport.TPM, s *srk, pin []byte) (tpm2.Session, error) {
	auth := sha256.Sum256(pin)
	if l.sess != nil && l.auth == auth {
		return l.sess, nil
	}
	l.dropSession(t)
	sess, closer, err := tpm2.HMACSession(t, tpm2.TPMAlgSHA256, 16, append(s.salted(true), tpm2.Auth(pin))...)
	if err != nil {
		return nil, err
	}
	l.sess, l.closeSess, l.auth = sess, closer, auth
	return sess, nil
}

func (l *loaded) dropSession(transport.TPM) {
	if l.sess != nil {
		l.closeSess() //nolint:errcheck // best effort: gone with the device otherwise
		l.sess, l.closeSess = nil, nil
	}
}

// evict flushes what was made (keys, their sessions, the SRK, the EK).
func (c *conn) evict() {
	for _, l := range c.keys {
		l.dropSession(c.t)
		flush(c.t, l.handle)
	}
	clear(c.keys)
	for _, s := range []*srk{c.srk, c.ek, c.ekRSA} {
		if s != nil {
			flush(c.t, s.handle)
		}
	}
	c.srk, c.ek, c.ekRSA = nil, nil, nil
}

// close flushes what was made and closes the device.
func (c *conn) close() {
	c.evict()
	c.dev.Close()
}
