// Command ocikp-plugin-azurekms serves ocikp's Azure Key Vault recipients
// (azurekms://, azurekeyvault://) and stanzas over the plugin protocol
// (docs/plugin.md).
package main

import (
	"time"

	"github.com/ocikp/ocikp/internal/kmsplugin"
	"github.com/ocikp/ocikp/keys/azurekv"
)

func main() {
	kmsplugin.Main("ocikp-plugin-azurekms", azurekv.Rules, func(timeout time.Duration) (map[string]kmsplugin.Backend, error) {
		b := azurekv.New(timeout)
		return map[string]kmsplugin.Backend{azurekv.Schemes[0]: b, azurekv.Schemes[1]: b}, nil
	})
}
