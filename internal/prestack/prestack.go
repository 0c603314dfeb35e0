// Package prestack grows the main goroutine's stack once, at the start of
// a short-lived process, to what its deepest call will need.
//
// A goroutine starts with a small stack and doubles it when a call runs
// out; each doubling copies every frame on the stack and reads the
// function tables to find their pointers. In a process that lives for one
// request (the exec key provider, started once per layer), those copies
// and the page faults of the tables they read are a measurable part of
// its life: growing once, while two frames are on the stack, costs less.
// See docs/performance.md.
package prestack

// Size is the stack an unwrap's deepest call chain needs: the JSON walk
// and the post-quantum KEM's frames, rounded up (a frame of Size makes the
// runtime allocate the next power of two, 64 KiB).
const Size = 48 << 10

// Grow grows the calling goroutine's stack to hold Size more bytes.
//
//go:noinline
func Grow() byte {
	var b [Size]byte
	return touch(b[:])
}

// touch keeps b from being optimised away.
//
//go:noinline
func touch(b []byte) byte { return b[len(b)-1] }
