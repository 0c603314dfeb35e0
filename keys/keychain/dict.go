package keychain

// Dict is a CoreFoundation dictionary described in plain Go: keys are the
// names of Security.framework constants ("kSecClass"); values are
//
//	Const          another constant, by name ("kSecClassKey")
//	[]byte         CFData
//	string         CFString
//	bool           kCFBooleanTrue / kCFBooleanFalse
//	int            CFNumber (64-bit)
//	Dict           a nested dictionary
//	AccessControl  SecAccessControlCreateWithFlags
//	Handle         a key the Security layer returned (kSecValueRef)
//
// Only the darwin layer turns it into CF objects; tests compare it as is.
type Dict []KV

// KV is one entry of a Dict.
type KV struct {
	Key string
	Val any
}

// Const names a Security.framework or CoreFoundation constant.
type Const string

// AccessControl is a SecAccessControl: a protection class and flags.
type AccessControl struct {
	Protection Const
	Flags      uint64
}

// Handle is an opaque reference to a key held by the Security layer.
type Handle uintptr

// Get returns the value of key, or nil.
func (d Dict) Get(key string) any {
	for _, kv := range d {
		if kv.Key == key {
			return kv.Val
		}
	}
	return nil
}

// SecAccessControlCreateFlags (SecAccessControl.h).
const (
	flagUserPresence    = 1 << 0
	flagPrivateKeyUsage = 1 << 30
)

// keyType is what every ocikp Keychain key is: a 256-bit NIST P-256 key,
// the only kind the Secure Enclave holds.
var keyType = []KV{{"kSecAttrKeyType", Const("kSecAttrKeyTypeECSECPrimeRandom")}, {"kSecAttrKeySizeInBits", 256}}

// Spec describes a key to create.
type Spec struct {
	Tag             string // kSecAttrApplicationTag
	Label           string // kSecAttrLabel, shown in Keychain Access
	SecureEnclave   bool
	RequirePresence bool // user presence (Touch ID, watch or password) for each use
}

// createParams is SecKeyCreateRandomKey's parameter dictionary for s.
func createParams(s Spec) Dict {
	priv := Dict{
		{"kSecAttrIsPermanent", true},
		{"kSecAttrApplicationTag", []byte(s.Tag)},
		{"kSecAttrLabel", s.Label},
	}
	if s.SecureEnclave || s.RequirePresence {
		// Access control needs a protection class; keys never leave this
		// device and are usable only while it is unlocked.
		ac := AccessControl{Protection: "kSecAttrAccessibleWhenUnlockedThisDeviceOnly"}
		if s.SecureEnclave {
			ac.Flags |= flagPrivateKeyUsage // required for Secure Enclave keys
		}
		if s.RequirePresence {
			ac.Flags |= flagUserPresence
		}
		priv = append(priv, KV{"kSecAttrAccessControl", ac})
	} else {
		priv = append(priv, KV{"kSecAttrIsExtractable", false})
	}
	d := append(Dict{}, keyType...)
	if s.SecureEnclave {
		d = append(d, KV{"kSecAttrTokenID", Const("kSecAttrTokenIDSecureEnclave")})
	}
	if s.SecureEnclave || s.RequirePresence {
		d = append(d, KV{"kSecUseDataProtectionKeychain", true}) // access control lives there
	}
	return append(d, KV{"kSecPrivateKeyAttrs", priv})
}

// tagQueries select every P-256 private key with tag, as references: in
// the file-based login keychain (where the Apple provider's and plain
// ocikp keys live) and in the data-protection keychain (Secure Enclave and
// access-controlled keys), which macOS searches only when asked to.
func tagQueries(tag string) []Dict {
	return []Dict{tagQuery(tag), append(tagQuery(tag), KV{"kSecUseDataProtectionKeychain", true})}
}

func tagQuery(tag string) Dict {
	return append(Dict{
		{"kSecClass", Const("kSecClassKey")},
		{"kSecAttrKeyClass", Const("kSecAttrKeyClassPrivate")},
		{"kSecAttrApplicationTag", []byte(tag)},
	}, append(append([]KV{}, keyType[:1]...),
		KV{"kSecReturnRef", true},
		KV{"kSecMatchLimit", Const("kSecMatchLimitAll")})...)
}

// deleteQuery selects one key by reference.
func deleteQuery(h Handle) Dict {
	return Dict{{"kSecClass", Const("kSecClassKey")}, {"kSecValueRef", h}}
}
