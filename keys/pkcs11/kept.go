package pkcs11

import "sync/atomic"

var keep atomic.Bool

// KeepCompanion makes ECDH use one long-lived companion that keeps the
// module loaded and the key's session open between unwraps, for a
// long-lived process (ocikp serve): an unwrap then costs about one
// C_DeriveKey instead of a process start, a module load and a login. A
// companion that dies or hangs is ended and started again on the next
// unwrap; a token that goes away is reported and found again when back.
func KeepCompanion() { keep.Store(true) }

// StopCompanion ends the kept companion, if one runs (a service shutting
// down); the next ECDH, if still kept, starts another.
func StopCompanion() { kept.Stop() }
