// Package tpmdev drives a TPM 2.0 with go-tpm for package tpm: keygen,
// TPM2_ECDH_ZGen, the EK, PCRs, and the sealing of file keys to an EK.
// It links go-tpm, and go-tpm links net, so ocikp never imports it: the
// companion ocikp-tpm serves it one request at a time (Serve), and
// ocikp-serve runs it in-process with the device kept open (Kept).
package tpmdev

import (
	"crypto/ecdh"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/ocikp/ocikp/envelope"
	"github.com/ocikp/ocikp/keys/tpm"
)

// maxRequest bounds a request (a record, a stanza: a few KiB; a CA
// bundle to verify an EK certificate, in base64).
const maxRequest = 2*tpm.MaxEKRoots + 64<<10

// Serve answers one request read from r on w: the companion's whole job.
// A failure is a reply (with its code); the error is for what is not.
func Serve(r io.Reader, w io.Writer) error {
	data, err := io.ReadAll(io.LimitReader(r, maxRequest+1))
	if err != nil {
		return err
	}
	var rep *tpm.Reply
	var req tpm.Request
	if len(data) > maxRequest {
		rep = tpm.Failed(errors.New("request too large"))
	} else if err := json.Unmarshal(data, &req); err != nil {
		rep = tpm.Failed(errors.New("not a request"))
	} else if rep, err = Do(&req); err != nil {
		rep = tpm.Failed(err)
	}
	return json.NewEncoder(w).Encode(rep)
}

// Do runs one request on a device opened for it, as the companion does.
func Do(req *tpm.Request) (*tpm.Reply, error) {
	if rep, err, ok := stateless(req); ok {
		return rep, err
	}
	c, err := dial(req.Device, false)
	if err != nil {
		return nil, err
	}
	defer c.close()
	return c.do(req, parseKey)
}

// stateless runs the operations that need no TPM.
func stateless(req *tpm.Request) (*tpm.Reply, error, bool) {
	switch req.Op {
	case tpm.OpEKPolicy:
		p, err := pcrPolicy(req.PCRs, req.Values)
		if err != nil {
			return nil, err, true
		}
		return &tpm.Reply{Policy: p}, nil, true
	case tpm.OpEKSeal:
		s, err := seal(req.EKType, req.EK, req.PCRs, req.Policy, req.FileKey)
		if err != nil {
			return nil, err, true
		}
		return &tpm.Reply{Tag: s.Tag, Enc: s.Enc, Key: s.Key}, nil, true
	case tpm.OpEKParse:
		rep, err := parseEK(req.Data, req.Roots)
		return rep, err, true
	case tpm.OpCreate, tpm.OpZGen, tpm.OpCheck, tpm.OpEK, tpm.OpEKCert, tpm.OpPCRs, tpm.OpEKUnseal:
		if req.EKType != "" && req.EKType != tpm.EKECC && req.EKType != tpm.EKRSA {
			return nil, fmt.Errorf("unknown endorsement key type %.10q", req.EKType), true
		}
		if _, err := batch(req); err != nil {
			return nil, err, true
		}
		if req.Device == "" {
			return nil, errors.New("no TPM device named"), true
		}
		return nil, nil, false
	}
	return nil, fmt.Errorf("unknown operation %.30q", req.Op), true
}

// do runs a device operation on c; parse reads the request's record.
func (c *conn) do(req *tpm.Request, parse func([]byte) (*key, error)) (*tpm.Reply, error) {
	switch req.Op {
	case tpm.OpCreate:
		return c.create(tpm.Spec{PIN: req.PIN, PCRs: req.PCRs})
	case tpm.OpZGen:
		k, err := parse(req.Record)
		if err != nil {
			return nil, err
		}
		if len(req.Peers) > 0 {
			return c.zgenMany(k, req)
		}
		peer, err := ecdh.P256().NewPublicKey(req.Peer)
		if err != nil {
			return nil, errors.New("the peer key is not a P-256 point")
		}
		z, err := c.zgen(k, req.PIN, peer)
		if err != nil {
			return nil, err
		}
		return &tpm.Reply{Secret: z}, nil
	case tpm.OpCheck:
		k, err := parse(req.Record)
		if err != nil {
			return nil, err
		}
		return &tpm.Reply{}, c.check(k)
	case tpm.OpEK:
		return c.ekReply(req.EKType)
	case tpm.OpEKCert:
		der, err := c.ekCert(req.EKType)
		if err != nil {
			return nil, err
		}
		return &tpm.Reply{Cert: der, EKType: ekType(req.EKType)}, nil
	case tpm.OpPCRs:
		v, err := c.readPCRs(req.PCRs)
		if err != nil {
			return nil, err
		}
		return &tpm.Reply{Values: v}, nil
	case tpm.OpEKUnseal:
		return c.unseal(req.EKType, req.EKName, &envelope.Stanza{Type: tpm.EKStanzaType(req.EKType), Tag: req.Tag, Enc: req.Enc, Key: req.Key})
	}
	return nil, fmt.Errorf("unknown operation %.30q", req.Op)
}

// batch checks and parses a zgen request's points: at most
// tpm.MaxPeers, each on P-256, and no peer beside them; checked before
// the device is opened.
func batch(req *tpm.Request) ([]*ecdh.PublicKey, error) {
	if len(req.Peers) == 0 {
		return nil, nil
	}
	if req.Op != tpm.OpZGen || len(req.Peers) > tpm.MaxPeers || len(req.Peer) > 0 {
		return nil, fmt.Errorf("at most %d peer points, in a zgen request, and not beside peer", tpm.MaxPeers)
	}
	peers := make([]*ecdh.PublicKey, len(req.Peers))
	for i, p := range req.Peers {
		var err error
		if peers[i], err = ecdh.P256().NewPublicKey(p); err != nil {
			return nil, errors.New("a peer key is not a P-256 point")
		}
	}
	return peers, nil
}

// zgenMany runs one TPM2_ECDH_ZGen per point of a batch.
func (c *conn) zgenMany(k *key, req *tpm.Request) (*tpm.Reply, error) {
	peers, err := batch(req)
	if err != nil {
		return nil, err
	}
	rep := &tpm.Reply{}
	for _, p := range peers {
		z, err := c.zgen(k, req.PIN, p)
		if err != nil {
			return nil, err
		}
		rep.Secrets = append(rep.Secrets, z)
	}
	return rep, nil
}
