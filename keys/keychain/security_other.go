//go:build !darwin

package keychain

// system is the stand-in where there is no Security.framework: the backend
// stays registered, so its users get a clear reason instead of "unknown".
func system() Security { return unavailable{} }

type unavailable struct{}

func (unavailable) CreateRandomKey(Dict) (Handle, error)       { return 0, ErrUnavailable }
func (unavailable) CopyMatching(Dict) ([]Handle, error)        { return nil, ErrUnavailable }
func (unavailable) Delete(Dict) error                          { return ErrUnavailable }
func (unavailable) PublicKey(Handle) ([]byte, error)           { return nil, ErrUnavailable }
func (unavailable) KeyExchange(Handle, []byte) ([]byte, error) { return nil, ErrUnavailable }
func (unavailable) Release(Handle)                             {}
