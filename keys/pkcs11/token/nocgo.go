//go:build !cgo

package token

import "github.com/ocikp/ocikp/keys/pkcs11"

func do(*pkcs11.Request) *pkcs11.Reply {
	return &pkcs11.Reply{Error: "ocikp-pkcs11 was built without cgo, which PKCS#11 modules need", Code: pkcs11.CodeNoCgo}
}
