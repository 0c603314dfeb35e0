// Command kemfloor is the cryptographic floor for scripts/bench-exec.sh:
// jsonecho's work plus the private-key work of one unwrap of a key type (the
// key from its 32-byte seed, one HPKE decapsulation, one open) and nothing
// else. An ocikp unwrap minus this is what ocikp itself adds for that type.
//
//	kemfloor -seal TYPE FILE   writes a sealed message for TYPE's fixed key
//	kemfloor TYPE FILE         echoes the JSON on stdin after opening FILE
//
// It imports only the standard library, as a provider written from scratch
// would.
package main

import (
	"crypto/ecdh"
	"crypto/hpke"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
)

var (
	seed = []byte("kemfloor fixed seed, 32 bytes!!!")
	info = []byte("kemfloor")
)

func kem(typ string) (hpke.KEM, error) {
	switch typ {
	case "p256":
		return hpke.DHKEM(ecdh.P256()), nil
	case "mlkem768x25519":
		return hpke.MLKEM768X25519(), nil
	case "mlkem768p256":
		return hpke.MLKEM768P256(), nil
	}
	return nil, fmt.Errorf("unknown key type %q", typ)
}

func main() {
	var err error
	switch {
	case len(os.Args) == 4 && os.Args[1] == "-seal":
		err = seal(os.Args[2], os.Args[3])
	case len(os.Args) == 3:
		err = open(os.Args[1], os.Args[2])
		if err == nil {
			var v map[string]any
			if err = json.NewDecoder(os.Stdin).Decode(&v); err == nil {
				err = json.NewEncoder(os.Stdout).Encode(v)
			}
		}
	default:
		err = errors.New("usage: kemfloor [-seal] TYPE FILE")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "kemfloor:", err)
		os.Exit(1)
	}
}

func seal(typ, file string) error {
	k, err := kem(typ)
	if err != nil {
		return err
	}
	priv, err := k.NewPrivateKey(seed)
	if err != nil {
		return err
	}
	enc, s, err := hpke.NewSender(priv.PublicKey(), hpke.HKDFSHA256(), hpke.AES256GCM(), info)
	if err != nil {
		return err
	}
	ct, err := s.Seal(nil, make([]byte, 32))
	if err != nil {
		return err
	}
	out := binary.BigEndian.AppendUint16(nil, uint16(len(enc)))
	return os.WriteFile(file, append(append(out, enc...), ct...), 0o600)
}

func open(typ, file string) error {
	k, err := kem(typ)
	if err != nil {
		return err
	}
	b, err := os.ReadFile(file)
	if err != nil || len(b) < 2 || len(b) < 2+int(binary.BigEndian.Uint16(b)) {
		return fmt.Errorf("bad sealed file %s", file)
	}
	n := 2 + int(binary.BigEndian.Uint16(b))
	priv, err := k.NewPrivateKey(seed)
	if err != nil {
		return err
	}
	r, err := hpke.NewRecipient(b[2:n], priv, hpke.HKDFSHA256(), hpke.AES256GCM(), info)
	if err != nil {
		return err
	}
	_, err = r.Open(nil, b[n:])
	return err
}
