// Package protocol holds the wire types of ocicrypt's key provider protocol
// (the JSON that ocicrypt writes to an exec provider's stdin, and carries in
// the bytes field of the gRPC KeyProviderService), with strict, bounded
// decoding.
//
// The request carries secrets (optsdata) and other schemes' key material in
// its Parameters maps: nothing here ever formats a request, or any part of
// one, into an error.
package protocol
