// Command ocikp-plugin-hashivault serves ocikp's Vault / OpenBao Transit
// recipients and stanzas over the plugin protocol (docs/plugin.md).
package main

import (
	"time"

	"github.com/ocikp/ocikp/internal/kmsplugin"
	"github.com/ocikp/ocikp/keys/vault"
)

func main() {
	kmsplugin.Main("ocikp-plugin-hashivault", vault.Rules, func(timeout time.Duration) (map[string]kmsplugin.Backend, error) {
		return map[string]kmsplugin.Backend{vault.Scheme: vault.New(timeout)}, nil
	})
}
