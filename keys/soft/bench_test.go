package soft

import (
	"testing"

	"github.com/ocikp/ocikp/pq"
)

// Parsing a key file, which every exec unwrap does for every key of the
// keystore.
func BenchmarkParseKeyFile(b *testing.B) {
	files := map[string][]byte{}
	p, _ := NewKeyFile("p", genKey(b), nil)
	files[TypeP256], _ = p.Marshal()
	for _, kind := range pq.Kinds() {
		seed, _, _ := kind.GenerateKey()
		k, _ := NewHybridKeyFile("k", kind, seed, nil)
		files[kind.Type], _ = k.Marshal()
	}
	for _, typ := range Types() {
		b.Run(typ, func(b *testing.B) {
			for b.Loop() {
				if _, err := ParseKeyFile(files[typ]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
