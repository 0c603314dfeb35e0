// Package kmsconfig names the KMS settings file: where the plugins read it,
// where a service watches it and where ocikp doctor looks. It imports
// nothing beyond os, so the exec binary can use it.
package kmsconfig

import (
	"os"
	"path/filepath"
)

// EnvConfig names the KMS settings file (what --kms-config sets).
const EnvConfig = "OCIKP_KMS_CONFIG"

// SettingsFile returns the KMS settings file that plugins read: $OCIKP_KMS_CONFIG,
// else $XDG_CONFIG_HOME/ocikp/kms.json or ~/.config/ocikp/kms.json (which
// need not exist); "" if none can be named.
func SettingsFile() string { return SettingsFileFrom(os.Getenv) }

// SettingsFileFrom is SettingsFile for the environment getenv reads.
func SettingsFileFrom(getenv func(string) string) string {
	if p := getenv(EnvConfig); p != "" {
		return p
	}
	dir := getenv("XDG_CONFIG_HOME")
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return ""
		}
		dir = filepath.Join(home, ".config")
	}
	return filepath.Join(dir, "ocikp", "kms.json")
}
