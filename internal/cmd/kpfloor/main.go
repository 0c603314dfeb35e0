// Command kpfloor is the floor of an exec key provider for
// scripts/bench-pipeline.sh: a working ocicrypt key provider, standard
// library only, that wraps each layer key for one fixed P-256 key with HPKE
// (as ocikp's P-256 recipients are sealed) and unwraps it with that key,
// doing nothing else: no keystore, no recipient parsing, no envelope.
// Skopeo run through it pays what any exec provider must (one process
// start, the JSON, one ECDH); the difference to ocikp is ocikp's own.
//
//	kpfloor        wrap or unwrap with the fixed key
//	kpfloor -bare  no cryptography: the annotation is the key itself
//
// Not a key provider to use: its key is public.
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
	seed = []byte("kpfloor fixed seed, 32 bytes!!!!")
	info = []byte("kpfloor")
)

type request struct {
	Op   string `json:"op"`
	Wrap struct {
		OptsData []byte `json:"optsdata"`
	} `json:"keywrapparams"`
	Unwrap struct {
		Annotation []byte `json:"annotation"`
	} `json:"keyunwrapparams"`
}

type wrapReply struct {
	Results struct {
		Annotation []byte `json:"annotation"`
	} `json:"keywrapresults"`
}

type unwrapReply struct {
	Results struct {
		OptsData []byte `json:"optsdata"`
	} `json:"keyunwrapresults"`
}

func main() {
	bare := len(os.Args) == 2 && os.Args[1] == "-bare"
	if len(os.Args) > 1 && !bare {
		fmt.Fprintln(os.Stderr, "usage: kpfloor [-bare] < request.json")
		os.Exit(2)
	}
	if err := run(bare); err != nil {
		fmt.Fprintln(os.Stderr, "kpfloor:", err)
		os.Exit(1)
	}
}

func run(bare bool) error {
	var req request
	if err := json.NewDecoder(os.Stdin).Decode(&req); err != nil {
		return err
	}
	kem := hpke.DHKEM(ecdh.P256())
	enc := json.NewEncoder(os.Stdout)
	switch req.Op {
	case "keywrap":
		var out wrapReply
		out.Results.Annotation = req.Wrap.OptsData
		if !bare {
			priv, err := kem.NewPrivateKey(seed)
			if err != nil {
				return err
			}
			e, s, err := hpke.NewSender(priv.PublicKey(), hpke.HKDFSHA256(), hpke.AES256GCM(), info)
			if err != nil {
				return err
			}
			ct, err := s.Seal(nil, req.Wrap.OptsData)
			if err != nil {
				return err
			}
			out.Results.Annotation = append(append(binary.BigEndian.AppendUint16(nil, uint16(len(e))), e...), ct...)
		}
		return enc.Encode(out)
	case "keyunwrap":
		var out unwrapReply
		out.Results.OptsData = req.Unwrap.Annotation
		if !bare {
			a := req.Unwrap.Annotation
			if len(a) < 2 || len(a) < 2+int(binary.BigEndian.Uint16(a)) {
				return errors.New("annotation too short")
			}
			n := 2 + int(binary.BigEndian.Uint16(a))
			priv, err := kem.NewPrivateKey(seed)
			if err != nil {
				return err
			}
			r, err := hpke.NewRecipient(a[2:n], priv, hpke.HKDFSHA256(), hpke.AES256GCM(), info)
			if err != nil {
				return err
			}
			if out.Results.OptsData, err = r.Open(nil, a[n:]); err != nil {
				return err
			}
		}
		return enc.Encode(out)
	}
	return errors.New("op is neither keywrap nor keyunwrap")
}
