package tpm

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/ocikp/ocikp/envelope"
)

// StanzaEK is the stanza type of a file key duplicated to a device's
// endorsement key: the fleet case, where the image is made from an
// inventory of EK public keys before the device ever runs ocikp.
const StanzaEK = "tpm-ek"

// maxEKField bounds a tpm-ek stanza's enc (public area, seed, PCRs).
const maxEKField = 2048

// EKPublic reads the TPM's ECC endorsement key (the TCG default template
// under the endorsement hierarchy, as tpm2_createek -G ecc makes it).
func EKPublic(path string) (*tpm2.TPMTPublic, error) {
	t, err := open(path)
	if err != nil {
		return nil, err
	}
	defer t.Close()
	ek, err := createEK(t)
	if err != nil {
		return nil, err
	}
	flush(t, ek.handle)
	return &ek.pub, nil
}

func createEK(t transport.TPM) (*srk, error) {
	rsp, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.TPMRHEndorsement,
		InPublic:      tpm2.New2B(tpm2.ECCEKTemplate),
	}.Execute(t)
	if err != nil {
		return nil, explain("creating the endorsement key", err)
	}
	pub, err := rsp.OutPublic.Contents()
	if err != nil {
		flush(t, rsp.ObjectHandle)
		return nil, fmt.Errorf("creating the endorsement key: %w", err)
	}
	return &srk{handle: rsp.ObjectHandle, name: rsp.Name, pub: *pub}, nil
}

// ReadPCRs reads the sha256 bank's values of pcrs, in order.
func ReadPCRs(path string, pcrs []int) ([][]byte, error) {
	if err := checkPCRs(pcrs); err != nil {
		return nil, err
	}
	t, err := open(path)
	if err != nil {
		return nil, err
	}
	defer t.Close()
	var out [][]byte
	for _, p := range pcrs { // one at a time: a reply holds at most 8 digests
		rsp, err := tpm2.PCRRead{PCRSelectionIn: pcrSelection([]int{p})}.Execute(t)
		if err != nil {
			return nil, explain("reading the PCRs", err)
		}
		if len(rsp.PCRValues.Digests) != 1 || len(rsp.PCRValues.Digests[0].Buffer) != sha256.Size {
			return nil, fmt.Errorf("the TPM has no sha256 value for PCR %d", p)
		}
		out = append(out, rsp.PCRValues.Digests[0].Buffer)
	}
	return out, nil
}

// pcrPolicy is the policy digest of PolicyPCR over pcrs holding values.
func pcrPolicy(pcrs []int, values [][]byte) ([]byte, error) {
	if len(pcrs) != len(values) {
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

// EKRecipient wraps file keys for one TPM, known by its EK's public area
// alone: in software, as a sealed object duplicated to the EK
// (TPM2_Duplicate's outer wrapper, which TPM2_Import opens).
type EKRecipient struct {
	ek     tpm2.TPMTPublic
	ekName []byte
	key    tpm2.LabeledEncapsulationKey
	pcrs   []int
	policy []byte
}

// NewEKRecipient returns a recipient for the TPM whose EK is ek; with
// pcrs, the layer opens only while they hold values (sha256 bank).
func NewEKRecipient(ek *tpm2.TPMTPublic, pcrs []int, values [][]byte) (*EKRecipient, error) {
	if err := checkPCRs(pcrs); err != nil {
		return nil, err
	}
	var policy []byte
	if len(pcrs) > 0 {
		var err error
		if policy, err = pcrPolicy(pcrs, values); err != nil {
			return nil, err
		}
	}
	return newEKRecipient(ek, pcrs, policy)
}

func newEKRecipient(ek *tpm2.TPMTPublic, pcrs []int, policy []byte) (*EKRecipient, error) {
	if err := checkPCRs(pcrs); err != nil {
		return nil, err
	}
	if !ek.ObjectAttributes.Restricted || !ek.ObjectAttributes.Decrypt || !ek.ObjectAttributes.FixedTPM {
		return nil, errors.New("not an endorsement key: it must be a restricted decryption key fixed to its TPM")
	}
	key, err := tpm2.ImportEncapsulationKey(ek)
	if err != nil {
		return nil, fmt.Errorf("endorsement key: %w", err)
	}
	name, err := tpm2.ObjectName(ek)
	if err != nil {
		return nil, fmt.Errorf("endorsement key: %w", err)
	}
	return &EKRecipient{ek: *ek, ekName: name.Buffer, key: key, pcrs: pcrs, policy: policy}, nil
}

// Type is the stanza type.
func (r *EKRecipient) Type() string { return StanzaEK }

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

// Wrap seals fileKey for the EK's TPM.
func (r *EKRecipient) Wrap(fileKey []byte) (*envelope.Stanza, error) {
	seed := make([]byte, sha256.Size)
	if _, err := rand.Read(seed); err != nil {
		return nil, err
	}
	// A keyed-hash object's unique is H(seedValue || data).
	unique := sha256.Sum256(append(append([]byte{}, seed...), fileKey...))
	pub := sealedTemplate(unique[:], r.policy)
	name, err := tpm2.ObjectName(&pub)
	if err != nil {
		return nil, err
	}
	sensitive := tpm2.TPMTSensitive{
		SensitiveType: tpm2.TPMAlgKeyedHash,
		SeedValue:     tpm2.TPM2BDigest{Buffer: seed},
		Sensitive:     tpm2.NewTPMUSensitiveComposite(tpm2.TPMAlgKeyedHash, &tpm2.TPM2BSensitiveData{Buffer: fileKey}),
	}
	dup, encSecret, err := tpm2.CreateDuplicate(rand.Reader, r.key, name.Buffer, tpm2.Marshal(sensitive))
	if err != nil {
		return nil, fmt.Errorf("duplicating to the endorsement key: %w", err)
	}
	var enc []byte
	enc = append(enc, tpm2.Marshal(tpm2.New2B(pub))...)
	enc = append(enc, tpm2.Marshal(tpm2.TPM2BEncryptedSecret{Buffer: encSecret})...)
	sel := tpm2.TPMLPCRSelection{}
	if len(r.pcrs) > 0 {
		sel = pcrSelection(r.pcrs)
	}
	enc = append(enc, tpm2.Marshal(sel)...)
	return &envelope.Stanza{Type: StanzaEK, Tag: envelope.StanzaTag(StanzaEK, enc, r.ekName), Enc: enc, Key: dup}, nil
}

// ekStanza is a parsed tpm-ek stanza.
type ekStanza struct {
	pub       tpm2.TPMTPublic
	encSecret []byte
	pcrs      []int
}

// parseEKStanza reads a stanza strictly: the sealed object must be what
// Wrap makes (a keyed-hash object with no other use).
func parseEKStanza(s *envelope.Stanza) (*ekStanza, error) {
	bad := fmt.Errorf("%s: %w", s.Hint(), envelope.ErrMalformed)
	if len(s.Enc) > maxEKField || len(s.Key) > maxEKField {
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
		for i, b := range sel.PCRSelections[0].PCRSelect {
			for j := 0; j < 8; j++ {
				if b&(1<<j) != 0 {
					pcrs = append(pcrs, i*8+j)
				}
			}
		}
		if len(pcrs) == 0 || checkPCRs(pcrs) != nil {
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

// EKIdentity opens tpm-ek stanzas in the TPM whose EK they were made for.
type EKIdentity struct {
	path   string
	ekName []byte
}

// NewEKIdentity returns the identity of the TPM at path (its EK is read
// once, to recognise its stanzas).
func NewEKIdentity(path string) (*EKIdentity, error) {
	ek, err := EKPublic(path)
	if err != nil {
		return nil, err
	}
	name, err := tpm2.ObjectName(ek)
	if err != nil {
		return nil, err
	}
	return &EKIdentity{path: path, ekName: name.Buffer}, nil
}

// Name names the identity in errors.
func (id *EKIdentity) Name() string { return "the TPM's endorsement key" }

// Matches reports whether a stanza was made for this TPM's EK.
func (id *EKIdentity) Matches(s *envelope.Stanza) bool {
	return s.Type == StanzaEK && bytes.Equal(s.Tag, envelope.StanzaTag(StanzaEK, s.Enc, id.ekName))
}

// Unwrap imports the sealed file key under the EK and unseals it (in a
// PCR policy session when the stanza has one).
func (id *EKIdentity) Unwrap(s *envelope.Stanza) ([]byte, error) {
	if !id.Matches(s) {
		return nil, envelope.ErrIncorrectIdentity
	}
	st, err := parseEKStanza(s)
	if err != nil {
		return nil, err
	}
	t, err := open(id.path)
	if err != nil {
		return nil, err
	}
	defer t.Close()
	ek, err := createEK(t)
	if err != nil {
		return nil, err
	}
	defer flush(t, ek.handle)
	if !bytes.Equal(ek.name.Buffer, id.ekName) {
		return nil, fmt.Errorf("TPM %s: its endorsement key changed", id.path)
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
	}.Execute(t)
	if err != nil {
		return nil, explain("importing the layer key under the endorsement key", err)
	}
	ld, err := tpm2.Load{
		ParentHandle: tpm2.AuthHandle{Handle: ek.handle, Name: ek.name, Auth: ekAuth()},
		InPrivate:    imp.OutPrivate,
		InPublic:     tpm2.New2B(st.pub),
	}.Execute(t)
	if err != nil {
		return nil, explain("loading the layer key", err)
	}
	defer flush(t, ld.ObjectHandle)
	// The file key comes back encrypted, in a session salted to the EK.
	var sess tpm2.Session
	opts := []tpm2.AuthOption{tpm2.Salted(ek.handle, ek.pub), tpm2.AESEncryption(128, tpm2.EncryptOut)}
	if len(st.pcrs) > 0 {
		sess = tpm2.Policy(tpm2.TPMAlgSHA256, 16, policy(st.pcrs, false), opts...)
	} else {
		sess = tpm2.HMAC(tpm2.TPMAlgSHA256, 16, opts...)
	}
	rsp, err := tpm2.Unseal{ItemHandle: tpm2.AuthHandle{Handle: ld.ObjectHandle, Name: ld.Name, Auth: sess}}.Execute(t)
	if err != nil {
		return nil, explain("unsealing the layer key", err)
	}
	return rsp.OutData.Buffer, nil
}
