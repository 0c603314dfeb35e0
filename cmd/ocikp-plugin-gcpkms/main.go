// Command ocikp-plugin-gcpkms serves ocikp's Google Cloud KMS recipients
// and stanzas (gcpkms, gcpkms-rsa) and the GCP KMS key provider's blobs,
// over the plugin protocol (docs/plugin.md). ocikp starts it only when a
// layer or recipient needs it.
package main

import (
	"time"

	"github.com/ocikp/ocikp/internal/kmsplugin"
	"github.com/ocikp/ocikp/keys/gcpkms"
)

func main() {
	kmsplugin.Main("ocikp-plugin-gcpkms", gcpkms.Rules, func(timeout time.Duration) (map[string]kmsplugin.Backend, error) {
		o, err := gcpkms.OptionsFromEnv()
		o.Timeout = timeout
		b := gcpkms.New(o)
		return map[string]kmsplugin.Backend{gcpkms.Scheme: b, gcpkms.RSAStanzaType: b}, err
	})
}
