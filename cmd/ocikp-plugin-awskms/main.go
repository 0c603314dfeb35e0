// Command ocikp-plugin-awskms serves ocikp's AWS KMS recipients and stanzas
// (awskms, awskms-rsa) over the plugin protocol (docs/plugin.md).
package main

import (
	"time"

	"github.com/ocikp/ocikp/internal/kmsplugin"
	"github.com/ocikp/ocikp/keys/awskms"
)

func main() {
	kmsplugin.Main("ocikp-plugin-awskms", awskms.Rules, func(timeout time.Duration) (map[string]kmsplugin.Backend, error) {
		b := awskms.New(timeout)
		return map[string]kmsplugin.Backend{awskms.Scheme: b, awskms.RSAStanzaType: b}, nil
	})
}
