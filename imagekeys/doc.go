// Package imagekeys reads and rewrites the key annotations of encrypted
// image manifests: which schemes wrap each layer's key and for whom
// (inspect), and new recipient sets for ocikp envelopes (rewrap), without
// touching a layer blob.
//
// Manifests and indexes come from whoever pushed the image. They are parsed
// with size and count bounds, kept as JSON objects so that fields this
// package does not know survive a rewrite byte for byte in meaning, and
// nothing in them chooses a file, an endpoint or an amount of work: key
// URLs found in stanzas are only shown, or handed to the KMS policy of
// package keyprovider when a layer is opened.
package imagekeys
