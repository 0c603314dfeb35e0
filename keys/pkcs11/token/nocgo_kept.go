//go:build !cgo

package token

import "github.com/ocikp/ocikp/keys/pkcs11"

type kept struct{}

func newKept() *kept                               { return &kept{} }
func (*kept) close()                               {}
func (*kept) ecdh(r *pkcs11.Request) *pkcs11.Reply { return do(r) }
