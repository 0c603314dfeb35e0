package soft

import (
	"crypto/ecdh"
	"encoding/asn1"
	"encoding/pem"
	"errors"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// ParsePEMPrivateKey reads a P-256 private key from PEM: PKCS#8
// ("PRIVATE KEY") or SEC1 ("EC PRIVATE KEY"). It parses the DER with
// cryptobyte rather than crypto/x509, which would add about 1 ms (its
// dependency on net) to every exec of ocikp (see DESIGN.md, "Binaries").
// Errors never quote the input.
func ParsePEMPrivateKey(data []byte) (*ecdh.PrivateKey, error) {
	if len(data) > MaxKeyFileSize {
		return nil, errors.New("PEM input too large")
	}
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return nil, errors.New("no PEM private key found (want PKCS#8 \"PRIVATE KEY\" or SEC1 \"EC PRIVATE KEY\")")
		}
		switch block.Type {
		case "PRIVATE KEY":
			return parsePKCS8(block.Bytes)
		case "EC PRIVATE KEY":
			if _, enc := block.Headers["Proc-Type"]; enc {
				return nil, errors.New("the PEM key is encrypted; decrypt it first (openssl ec -in KEY -out PLAIN)")
			}
			return parseSEC1(block.Bytes, true)
		case "ENCRYPTED PRIVATE KEY":
			return nil, errors.New("the PKCS#8 key is encrypted; decrypt it first (openssl pkcs8 -in KEY -out PLAIN)")
		}
		// Skip other blocks, e.g. "EC PARAMETERS" that openssl ecparam writes first.
	}
}

var (
	oidECPublicKey = asn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1}
	oidP256        = asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7}
	errNotP256     = errors.New("not a P-256 (prime256v1) EC private key")
	errDER         = errors.New("malformed private key DER")
)

// parsePKCS8: SEQUENCE { INTEGER 0, SEQUENCE { OID ecPublicKey, OID curve },
// OCTET STRING { ECPrivateKey } [, attributes] }.
func parsePKCS8(der []byte) (*ecdh.PrivateKey, error) {
	in := cryptobyte.String(der)
	var seq, alg, inner cryptobyte.String
	var version int
	var algOID, curveOID asn1.ObjectIdentifier
	if !in.ReadASN1(&seq, cbasn1.SEQUENCE) || !in.Empty() ||
		!seq.ReadASN1Integer(&version) || version != 0 ||
		!seq.ReadASN1(&alg, cbasn1.SEQUENCE) ||
		!alg.ReadASN1ObjectIdentifier(&algOID) {
		return nil, errDER
	}
	if !algOID.Equal(oidECPublicKey) {
		return nil, errors.New("not an EC private key (ocikp software keys are P-256)")
	}
	if !alg.ReadASN1ObjectIdentifier(&curveOID) || !curveOID.Equal(oidP256) {
		return nil, errNotP256
	}
	if !seq.ReadASN1(&inner, cbasn1.OCTET_STRING) {
		return nil, errDER
	}
	return parseSEC1(inner, false)
}

// parseSEC1: SEQUENCE { INTEGER 1, OCTET STRING key, [0] OID OPTIONAL,
// [1] BIT STRING publicKey OPTIONAL }.
func parseSEC1(der []byte, needCurve bool) (*ecdh.PrivateKey, error) {
	in := cryptobyte.String(der)
	var seq, key cryptobyte.String
	var version int
	if !in.ReadASN1(&seq, cbasn1.SEQUENCE) || !in.Empty() ||
		!seq.ReadASN1Integer(&version) || version != 1 ||
		!seq.ReadASN1(&key, cbasn1.OCTET_STRING) || len(key) == 0 || len(key) > 32 {
		return nil, errDER
	}
	var params, pubField cryptobyte.String
	var hasParams, hasPub bool
	if !seq.ReadOptionalASN1(&params, &hasParams, cbasn1.Tag(0).Constructed().ContextSpecific()) ||
		!seq.ReadOptionalASN1(&pubField, &hasPub, cbasn1.Tag(1).Constructed().ContextSpecific()) {
		return nil, errDER
	}
	if hasParams {
		var curve asn1.ObjectIdentifier
		if !params.ReadASN1ObjectIdentifier(&curve) || !curve.Equal(oidP256) {
			return nil, errNotP256
		}
	} else if needCurve {
		return nil, errors.New("SEC1 key names no curve")
	}
	// Some encoders drop leading zero bytes of the scalar.
	scalar := make([]byte, 32)
	copy(scalar[32-len(key):], key)
	priv, err := ecdh.P256().NewPrivateKey(scalar)
	if err != nil {
		return nil, errors.New("invalid P-256 private key")
	}
	if hasPub {
		var bits asn1.BitString
		if !pubField.ReadASN1BitString(&bits) || bits.BitLength != 65*8 {
			return nil, errDER
		}
		if string(bits.Bytes) != string(priv.PublicKey().Bytes()) {
			return nil, errors.New("the key's embedded public key does not match its private key")
		}
	}
	return priv, nil
}
