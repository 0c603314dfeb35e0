package tpmdev

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/ocikp/ocikp/envelope"
	"github.com/ocikp/ocikp/keys/tpm"
)

// ekPublic is the public area of the TCG default ECC EK with point pt.
func ekPublic(pt *ecdh.PublicKey) tpm2.TPMTPublic {
	b := pt.Bytes()
	ek := tpm2.ECCEKTemplate
	ek.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{
		X: tpm2.TPM2BECCParameter{Buffer: b[1:33]},
		Y: tpm2.TPM2BECCParameter{Buffer: b[33:]},
	})
	return ek
}

// ekPublicOf is the public area of the TCG default EK of type typ whose
// public key is raw: a P-256 point, or a 2048-bit RSA modulus.
func ekPublicOf(typ string, raw []byte) (tpm2.TPMTPublic, error) {
	switch typ {
	case "", tpm.EKECC:
		pt, err := ecdh.P256().NewPublicKey(raw)
		if err != nil {
			return tpm2.TPMTPublic{}, errors.New("endorsement key: not a P-256 point")
		}
		return ekPublic(pt), nil
	case tpm.EKRSA:
		if err := tpm.CheckRSAModulus(raw); err != nil {
			return tpm2.TPMTPublic{}, err
		}
		ek := tpm2.RSAEKTemplate
		ek.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{Buffer: raw})
		return ek, nil
	}
	return tpm2.TPMTPublic{}, fmt.Errorf("unknown endorsement key type %.10q", typ)
}

// ekKey is the public key of an EK the TPM made: the P-256 point, or the
// RSA modulus (2048 bits, exponent 65537, as the TCG template has it).
func ekKey(typ string, pub *tpm2.TPMTPublic) ([]byte, error) {
	if typ != tpm.EKRSA {
		k, err := publicKey(pub)
		if err != nil {
			return nil, errors.New("the TPM's ECC endorsement key is not a P-256 key")
		}
		return k.Bytes(), nil
	}
	bad := errors.New("the TPM's RSA endorsement key is not an RSA 2048 key with exponent 65537")
	parms, err := pub.Parameters.RSADetail()
	if pub.Type != tpm2.TPMAlgRSA || err != nil || parms.KeyBits != 2048 || parms.Exponent != 0 && parms.Exponent != 65537 {
		return nil, bad
	}
	n, err := pub.Unique.RSA()
	if err != nil || tpm.CheckRSAModulus(n.Buffer) != nil {
		return nil, bad
	}
	return n.Buffer, nil
}

// ekReply is the EK's public key and name.
func (c *conn) ekReply(typ string) (*tpm.Reply, error) {
	ek, err := c.getEK(typ)
	if err != nil {
		return nil, err
	}
	raw, err := ekKey(typ, &ek.pub)
	if err != nil {
		return nil, err
	}
	return &tpm.Reply{EK: raw, EKName: ek.name.Buffer, EKType: ekType(typ)}, nil
}

func ekType(typ string) string {
	if typ == "" {
		return tpm.EKECC
	}
	return typ
}

// pcrPolicy is the policy digest of PolicyPCR over pcrs holding values.
func pcrPolicy(pcrs []int, values [][]byte) ([]byte, error) {
	if err := tpm.CheckPCRs(pcrs); err != nil {
		return nil, err
	}
	if len(pcrs) == 0 || len(pcrs) != len(values) {
		return nil, fmt.Errorf("%d PCRs but %d values", len(pcrs), len(values))
	}
	h := sha256.New()
	for i, v := range values {
		if len(v) != sha256.Size {
			return nil, fmt.Errorf("PCR %d: a sha256 value is 32 bytes, not %d", pcrs[i], len(v))
		}
		h.Write(v)
	}
	calc, err := tpm2.NewPolicyCalculator(tpm2.TPMAlgSHA256)
	if err != nil {
		return nil, err
	}
	if err := (tpm2.PolicyPCR{PcrDigest: tpm2.TPM2BDigest{Buffer: h.Sum(nil)}, Pcrs: pcrSelection(pcrs)}).Update(calc); err != nil {
		return nil, err
	}
	return calc.Hash().Digest, nil
}

// sealedTemplate is the public area of a sealed file key: duplicable
// (neither fixedTPM nor fixedParent), with a PCR policy or none.
func sealedTemplate(unique, policy []byte) tpm2.TPMTPublic {
	return tpm2.TPMTPublic{
		Type:    tpm2.TPMAlgKeyedHash,
		NameAlg: tpm2.TPMAlgSHA256,
		ObjectAttributes: tpm2.TPMAObject{
			UserWithAuth: len(policy) == 0,
			NoDA:         true,
		},
		AuthPolicy: tpm2.TPM2BDigest{Buffer: policy},
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgKeyedHash, &tpm2.TPMSKeyedHashParms{
			Scheme: tpm2.TPMTKeyedHashScheme{Scheme: tpm2.TPMAlgNull},
		}),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgKeyedHash, &tpm2.TPM2BDigest{Buffer: unique}),
	}
}

// seal makes a tpm-ek stanza for fileKey: a sealed object duplicated to
// the EK in software (TPM2_Duplicate's outer wrapper, which TPM2_Import
// opens), with a PCR policy when pcrs are given.
func seal(typ string, ekRaw []byte, pcrs []int, policy, fileKey []byte) (*envelope.Stanza, error) {
	ek, err := ekPublicOf(typ, ekRaw)
	if err != nil {
		return nil, err
	}
	if err := tpm.CheckPCRs(pcrs); err != nil {
		return nil, err
	}
	if len(pcrs) > 0 && len(policy) != sha256.Size || len(pcrs) == 0 && len(policy) != 0 {
		return nil, errors.New("a PCR policy needs its PCRs and a sha256 digest")
	}
	if len(fileKey) == 0 || len(fileKey) > 128 {
		return nil, errors.New("file key: 1 to 128 bytes")
	}
	key, err := tpm2.ImportEncapsulationKey(&ek)
	if err != nil {
		return nil, fmt.Errorf("endorsement key: %w", err)
	}
	ekName, err := tpm2.ObjectName(&ek)
	if err != nil {
		return nil, fmt.Errorf("endorsement key: %w", err)
	}
	seed := make([]byte, sha256.Size)
	if _, err := rand.Read(seed); err != nil {
		return nil, err
	}
	// A keyed-hash object's unique is H(seedValue || data).
	unique := sha256.Sum256(append(append([]byte{}, seed...), fileKey...))
	pub := sealedTemplate(unique[:], policy)
	name, err := tpm2.ObjectName(&pub)
	if err != nil {
		return nil, err
	}
	sensitive := tpm2.TPMTSensitive{
		SensitiveType: tpm2.TPMAlgKeyedHash,
		SeedValue:     tpm2.TPM2BDigest{Buffer: seed},
		Sensitive:     tpm2.NewTPMUSensitiveComposite(tpm2.TPMAlgKeyedHash, &tpm2.TPM2BSensitiveData{Buffer: fileKey}),
	}
	dup, encSecret, err := tpm2.CreateDuplicate(rand.Reader, key, name.Buffer, tpm2.Marshal(sensitive))
	if err != nil {
		return nil, fmt.Errorf("duplicating to the endorsement key: %w", err)
	}
	var enc []byte
	enc = append(enc, tpm2.Marshal(tpm2.New2B(pub))...)
	enc = append(enc, tpm2.Marshal(tpm2.TPM2BEncryptedSecret{Buffer: encSecret})...)
	sel := tpm2.TPMLPCRSelection{}
	if len(pcrs) > 0 {
		sel = pcrSelection(pcrs)
	}
	enc = append(enc, tpm2.Marshal(sel)...)
	st := tpm.EKStanzaType(typ)
	return &envelope.Stanza{Type: st, Tag: envelope.StanzaTag(st, enc, ekName.Buffer), Enc: enc, Key: dup}, nil
}

// ekStanza is a parsed tpm-ek stanza.
type ekStanza struct {
	pub       tpm2.TPMTPublic
	encSecret []byte
	pcrs      []int
}

// parseEKStanza reads a stanza strictly: the sealed object must be what
// seal makes (a keyed-hash object with no other use).
func parseEKStanza(s *envelope.Stanza) (*ekStanza, error) {
	bad := fmt.Errorf("%s: %w", s.Hint(), envelope.ErrMalformed)
	if len(s.Enc) > tpm.MaxEKField || len(s.Key) > tpm.MaxEKField {
		return nil, bad
	}
	pubRaw, rest, ok := sized(s.Enc)
	if !ok {
		return nil, bad
	}
	secRaw, rest, ok := sized(rest)
	if !ok {
		return nil, bad
	}
	pub2b, err := tpm2.Unmarshal[tpm2.TPM2BPublic](pubRaw)
	if err != nil {
		return nil, bad
	}
	sec, err := tpm2.Unmarshal[tpm2.TPM2BEncryptedSecret](secRaw)
	if err != nil {
		return nil, bad
	}
	sel, err := tpm2.Unmarshal[tpm2.TPMLPCRSelection](rest)
	if err != nil || !bytes.Equal(tpm2.Marshal(sel), rest) {
		return nil, bad
	}
	pub, err := pub2b.Contents()
	if err != nil {
		return nil, bad
	}
	var pcrs []int
	switch len(sel.PCRSelections) {
	case 0:
	case 1:
		if sel.PCRSelections[0].Hash != tpm2.TPMAlgSHA256 {
			return nil, bad
		}
		pcrs = tpm.PCRsOf(sel.PCRSelections[0].PCRSelect)
		if len(pcrs) == 0 || tpm.CheckPCRs(pcrs) != nil {
			return nil, bad
		}
	default:
		return nil, bad
	}
	unique, err := pub.Unique.KeyedHash()
	if err != nil || pub.Type != tpm2.TPMAlgKeyedHash || len(unique.Buffer) != sha256.Size {
		return nil, bad
	}
	want := sealedTemplate(unique.Buffer, pub.AuthPolicy.Buffer)
	if !bytes.Equal(tpm2.Marshal(want), tpm2.Marshal(*pub)) || (len(pcrs) > 0) != (len(pub.AuthPolicy.Buffer) > 0) {
		return nil, bad
	}
	return &ekStanza{pub: *pub, encSecret: sec.Buffer, pcrs: pcrs}, nil
}

// sized splits the sized structure (a TPM2B) at the front of b from the
// rest.
func sized(b []byte) (first, rest []byte, ok bool) {
	if len(b) < 2 {
		return nil, nil, false
	}
	n := 2 + (int(b[0])<<8 | int(b[1]))
	if n > len(b) {
		return nil, nil, false
	}
	return b[:n], b[n:], true
}

// unseal imports the sealed file key under the EK and unseals it (in a
// PCR policy session when the stanza has one). A stanza whose tag is not
// this EK's is another TPM's: the reply names the EK and holds no key.
func (c *conn) unseal(typ string, ekName []byte, s *envelope.Stanza) (*tpm.Reply, error) {
	st, err := parseEKStanza(s)
	if err != nil {
		return nil, err
	}
	ek, err := c.getEK(typ)
	if err != nil {
		return nil, err
	}
	if len(ekName) > 0 && !bytes.Equal(ek.name.Buffer, ekName) {
		return nil, fmt.Errorf("TPM %s: %w", c.path, tpm.ErrOtherEK)
	}
	if !bytes.Equal(s.Tag, envelope.StanzaTag(s.Type, s.Enc, ek.name.Buffer)) {
		return &tpm.Reply{EKName: ek.name.Buffer}, nil
	}
	// The EK's policy: PolicySecret with the endorsement hierarchy.
	ekAuth := func() tpm2.Session {
		return tpm2.Policy(tpm2.TPMAlgSHA256, 16, func(t transport.TPM, h tpm2.TPMISHPolicy, _ tpm2.TPM2BNonce) error {
			_, err := tpm2.PolicySecret{
				AuthHandle:    tpm2.AuthHandle{Handle: tpm2.TPMRHEndorsement, Auth: tpm2.PasswordAuth(nil)},
				PolicySession: h,
			}.Execute(t)
			return err
		})
	}
	imp, err := tpm2.Import{
		ParentHandle: tpm2.AuthHandle{Handle: ek.handle, Name: ek.name, Auth: ekAuth()},
		ObjectPublic: tpm2.New2B(st.pub),
		Duplicate:    tpm2.TPM2BPrivate{Buffer: s.Key},
		InSymSeed:    tpm2.TPM2BEncryptedSecret{Buffer: st.encSecret},
	}.Execute(c.t)
	if err != nil {
		return nil, explain("importing the layer key under the endorsement key", err)
	}
	ld, err := tpm2.Load{
		ParentHandle: tpm2.AuthHandle{Handle: ek.handle, Name: ek.name, Auth: ekAuth()},
		InPrivate:    imp.OutPrivate,
		InPublic:     tpm2.New2B(st.pub),
	}.Execute(c.t)
	if err != nil {
		return nil, explain("loading the layer key", err)
	}
	defer flush(c.t, ld.ObjectHandle)
	// The file key comes back encrypted, in a session salted to the EK.
	var sess tpm2.Session
	if len(st.pcrs) > 0 {
		sess = tpm2.Policy(tpm2.TPMAlgSHA256, 16, policy(st.pcrs, false), ek.salted(true)...)
	} else {
		sess = tpm2.HMAC(tpm2.TPMAlgSHA256, 16, ek.salted(true)...)
	}
	rsp, err := tpm2.Unseal{ItemHandle: tpm2.AuthHandle{Handle: ld.ObjectHandle, Name: ld.Name, Auth: sess}}.Execute(c.t)
	if err != nil {
		return nil, explain("unsealing the layer key", err)
	}
	if len(rsp.OutData.Buffer) == 0 {
		return nil, errors.New("unsealing the layer key: the TPM returned no key")
	}
	return &tpm.Reply{FileKey: rsp.OutData.Buffer, EKName: ek.name.Buffer}, nil
}
