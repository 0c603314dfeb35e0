package cli

// tpmHybridKeygen makes an mlkem768p256 key whose P-256 half is a new TPM
// key, its ML-KEM seed sealed to that key (package keys/hwhybrid, as
// pkcs11Keygen does for a token key).
func (e *env) tpmHybridKeygen(name string, t tpmFlags, passphrase bool) error {
	return e.tpmMake(name, t, passphrase, true)
}
