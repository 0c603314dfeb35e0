//go:build darwin

package keychain

import (
	"fmt"
	"sync"
	"unsafe"

	"github.com/ebitengine/purego"
)

// The thin layer: Dicts become CoreFoundation objects, calls go to
// Security.framework through purego. No decisions are made here.

const (
	cfFramework  = "/System/Library/Frameworks/CoreFoundation.framework/CoreFoundation"
	secFramework = "/System/Library/Frameworks/Security.framework/Security"

	cfNumberSInt64Type       = 4
	cfStringEncodingUTF8     = 0x08000100
	errSecSuccess            = 0
	errSecUnimplementedLocal = -4
)

var (
	loadOnce sync.Once
	loadErr  error
	cf, sec  uintptr

	cfRelease                            func(uintptr)
	cfRetain                             func(uintptr) uintptr
	cfGetTypeID                          func(uintptr) uint
	cfArrayGetTypeID                     func() uint
	cfArrayGetCount                      func(uintptr) int
	cfArrayGetValueAtIndex               func(uintptr, int) uintptr
	cfDictionaryCreateMutable            func(alloc uintptr, capacity int, keyCB, valueCB uintptr) uintptr
	cfDictionarySetValue                 func(d, k, v uintptr)
	cfDataCreate                         func(alloc uintptr, b *byte, n int) uintptr
	cfDataGetLength                      func(uintptr) int
	cfDataGetBytePtr                     func(uintptr) *byte
	cfNumberCreate                       func(alloc uintptr, typ int, v unsafe.Pointer) uintptr
	cfStringCreateWithBytes              func(alloc uintptr, b *byte, n int, enc uint32, bom bool) uintptr
	cfStringGetCString                   func(s uintptr, buf *byte, n int, enc uint32) bool
	cfErrorGetCode                       func(uintptr) int
	cfErrorCopyDescription               func(uintptr) uintptr
	secKeyCreateRandomKey                func(params uintptr, err *uintptr) uintptr
	secItemCopyMatching                  func(query uintptr, result *uintptr) int32
	secItemDelete                        func(query uintptr) int32
	secKeyCopyPublicKey                  func(key uintptr) uintptr
	secKeyCopyExternalRepr               func(key uintptr, err *uintptr) uintptr
	secKeyCreateWithData                 func(data, attrs uintptr, err *uintptr) uintptr
	secKeyCopyKeyExchange                func(priv, alg, pub, params uintptr, err *uintptr) uintptr
	secAccessControlCreate               func(alloc, protection uintptr, flags uint64, err *uintptr) uintptr
	secCopyErrorMessageString            func(status int32, reserved uintptr) uintptr
	dictKeyCallBacks, dictValueCallBacks uintptr
)

func load() error {
	loadOnce.Do(func() {
		if cf, loadErr = purego.Dlopen(cfFramework, purego.RTLD_NOW|purego.RTLD_GLOBAL); loadErr != nil {
			return
		}
		if sec, loadErr = purego.Dlopen(secFramework, purego.RTLD_NOW|purego.RTLD_GLOBAL); loadErr != nil {
			return
		}
		defer func() {
			// RegisterLibFunc panics on a missing symbol: an older macOS.
			if r := recover(); r != nil {
				loadErr = fmt.Errorf("loading Security.framework: %v", r)
			}
		}()
		purego.RegisterLibFunc(&cfRelease, cf, "CFRelease")
		purego.RegisterLibFunc(&cfRetain, cf, "CFRetain")
		purego.RegisterLibFunc(&cfGetTypeID, cf, "CFGetTypeID")
		purego.RegisterLibFunc(&cfArrayGetTypeID, cf, "CFArrayGetTypeID")
		purego.RegisterLibFunc(&cfArrayGetCount, cf, "CFArrayGetCount")
		purego.RegisterLibFunc(&cfArrayGetValueAtIndex, cf, "CFArrayGetValueAtIndex")
		purego.RegisterLibFunc(&cfDictionaryCreateMutable, cf, "CFDictionaryCreateMutable")
		purego.RegisterLibFunc(&cfDictionarySetValue, cf, "CFDictionarySetValue")
		purego.RegisterLibFunc(&cfDataCreate, cf, "CFDataCreate")
		purego.RegisterLibFunc(&cfDataGetLength, cf, "CFDataGetLength")
		purego.RegisterLibFunc(&cfDataGetBytePtr, cf, "CFDataGetBytePtr")
		purego.RegisterLibFunc(&cfNumberCreate, cf, "CFNumberCreate")
		purego.RegisterLibFunc(&cfStringCreateWithBytes, cf, "CFStringCreateWithBytes")
		purego.RegisterLibFunc(&cfStringGetCString, cf, "CFStringGetCString")
		purego.RegisterLibFunc(&cfErrorGetCode, cf, "CFErrorGetCode")
		purego.RegisterLibFunc(&cfErrorCopyDescription, cf, "CFErrorCopyDescription")
		purego.RegisterLibFunc(&secKeyCreateRandomKey, sec, "SecKeyCreateRandomKey")
		purego.RegisterLibFunc(&secItemCopyMatching, sec, "SecItemCopyMatching")
		purego.RegisterLibFunc(&secItemDelete, sec, "SecItemDelete")
		purego.RegisterLibFunc(&secKeyCopyPublicKey, sec, "SecKeyCopyPublicKey")
		purego.RegisterLibFunc(&secKeyCopyExternalRepr, sec, "SecKeyCopyExternalRepresentation")
		purego.RegisterLibFunc(&secKeyCreateWithData, sec, "SecKeyCreateWithData")
		purego.RegisterLibFunc(&secKeyCopyKeyExchange, sec, "SecKeyCopyKeyExchangeResult")
		purego.RegisterLibFunc(&secAccessControlCreate, sec, "SecAccessControlCreateWithFlags")
		purego.RegisterLibFunc(&secCopyErrorMessageString, sec, "SecCopyErrorMessageString")
		if dictKeyCallBacks, loadErr = purego.Dlsym(cf, "kCFTypeDictionaryKeyCallBacks"); loadErr != nil {
			return
		}
		dictValueCallBacks, loadErr = purego.Dlsym(cf, "kCFTypeDictionaryValueCallBacks")
	})
	return loadErr
}

var (
	constMu sync.Mutex
	consts  = map[Const]uintptr{}
)

// constant returns the value of a CFStringRef/CFBooleanRef constant.
func constant(name Const) (uintptr, error) {
	constMu.Lock()
	defer constMu.Unlock()
	if v, ok := consts[name]; ok {
		return v, nil
	}
	addr, err := purego.Dlsym(sec, string(name))
	if err != nil {
		if addr, err = purego.Dlsym(cf, string(name)); err != nil {
			return 0, fmt.Errorf("no %s in Security.framework or CoreFoundation", name)
		}
	}
	v := **(**uintptr)(unsafe.Pointer(&addr)) // the symbol holds the object's pointer
	consts[name] = v
	return v, nil
}

// objects collects CF objects to release after a call.
type objects []uintptr

func (o *objects) keep(v uintptr) uintptr { *o = append(*o, v); return v }

func (o objects) release() {
	for _, v := range o {
		if v != 0 {
			cfRelease(v)
		}
	}
}

func (o *objects) dict(d Dict) (uintptr, error) {
	m := o.keep(cfDictionaryCreateMutable(0, len(d), dictKeyCallBacks, dictValueCallBacks))
	for _, kv := range d {
		k, err := constant(Const(kv.Key))
		if err != nil {
			return 0, err
		}
		v, err := o.value(kv.Val)
		if err != nil {
			return 0, err
		}
		cfDictionarySetValue(m, k, v)
	}
	return m, nil
}

func (o *objects) data(b []byte) uintptr {
	var p *byte
	if len(b) > 0 {
		p = &b[0]
	}
	return o.keep(cfDataCreate(0, p, len(b)))
}

func (o *objects) value(v any) (uintptr, error) {
	switch v := v.(type) {
	case Const:
		return constant(v)
	case []byte:
		return o.data(v), nil
	case string:
		b := []byte(v)
		var p *byte
		if len(b) > 0 {
			p = &b[0]
		}
		return o.keep(cfStringCreateWithBytes(0, p, len(b), cfStringEncodingUTF8, false)), nil
	case bool:
		if v {
			return constant("kCFBooleanTrue")
		}
		return constant("kCFBooleanFalse")
	case int:
		n := int64(v)
		return o.keep(cfNumberCreate(0, cfNumberSInt64Type, unsafe.Pointer(&n))), nil
	case Dict:
		return o.dict(v)
	case AccessControl:
		prot, err := constant(v.Protection)
		if err != nil {
			return 0, err
		}
		var cerr uintptr
		ac := secAccessControlCreate(0, prot, v.Flags, &cerr)
		if ac == 0 {
			return 0, cfError("SecAccessControlCreateWithFlags", cerr)
		}
		return o.keep(ac), nil
	case Handle:
		return uintptr(v), nil
	}
	return 0, fmt.Errorf("keychain: no CF form for %T", v)
}

func cfString(s uintptr) string {
	if s == 0 {
		return ""
	}
	buf := make([]byte, 512)
	if !cfStringGetCString(s, &buf[0], len(buf), cfStringEncodingUTF8) {
		return ""
	}
	for i, c := range buf {
		if c == 0 {
			return string(buf[:i])
		}
	}
	return string(buf)
}

func cfBytes(d uintptr) []byte {
	n := cfDataGetLength(d)
	if n <= 0 {
		return nil
	}
	return append([]byte(nil), unsafe.Slice(cfDataGetBytePtr(d), n)...)
}

// cfError turns a CFErrorRef out-parameter into a Status, releasing it.
func cfError(fn string, e uintptr) error {
	if e == 0 {
		return &Status{Func: fn, Code: errSecUnimplementedLocal, Desc: "failed without an error"}
	}
	defer cfRelease(e)
	desc := cfDescription(e)
	return &Status{Func: fn, Code: int32(cfErrorGetCode(e)), Desc: desc}
}

func cfDescription(e uintptr) string {
	d := cfErrorCopyDescription(e)
	if d == 0 {
		return ""
	}
	defer cfRelease(d)
	return cfString(d)
}

func osStatus(fn string, st int32) error {
	if st == errSecSuccess {
		return nil
	}
	desc := ""
	if s := secCopyErrorMessageString(st, 0); s != 0 {
		desc = cfString(s)
		cfRelease(s)
	}
	return &Status{Func: fn, Code: st, Desc: desc}
}

// peerKeyAttrs describe the peer's public key for SecKeyCreateWithData.
var peerKeyAttrs = Dict{
	{"kSecAttrKeyType", Const("kSecAttrKeyTypeECSECPrimeRandom")},
	{"kSecAttrKeyClass", Const("kSecAttrKeyClassPublic")},
	{"kSecAttrKeySizeInBits", 256},
}

type darwinSecurity struct{}

func system() Security { return darwinSecurity{} }

func (darwinSecurity) CreateRandomKey(params Dict) (Handle, error) {
	if err := load(); err != nil {
		return 0, err
	}
	var o objects
	defer o.release()
	p, err := o.dict(params)
	if err != nil {
		return 0, err
	}
	var cerr uintptr
	k := secKeyCreateRandomKey(p, &cerr)
	if k == 0 {
		return 0, cfError("SecKeyCreateRandomKey", cerr)
	}
	return Handle(k), nil
}

func (darwinSecurity) CopyMatching(query Dict) ([]Handle, error) {
	if err := load(); err != nil {
		return nil, err
	}
	var o objects
	defer o.release()
	q, err := o.dict(query)
	if err != nil {
		return nil, err
	}
	var res uintptr
	st := secItemCopyMatching(q, &res)
	if st == errSecItemNotFound {
		return nil, nil
	}
	if err := osStatus("SecItemCopyMatching", st); err != nil {
		return nil, err
	}
	defer cfRelease(res)
	if cfGetTypeID(res) != cfArrayGetTypeID() {
		return []Handle{Handle(cfRetain(res))}, nil
	}
	n := cfArrayGetCount(res)
	hs := make([]Handle, 0, n)
	for i := range n {
		hs = append(hs, Handle(cfRetain(cfArrayGetValueAtIndex(res, i))))
	}
	return hs, nil
}

func (darwinSecurity) Delete(query Dict) error {
	if err := load(); err != nil {
		return err
	}
	var o objects
	defer o.release()
	q, err := o.dict(query)
	if err != nil {
		return err
	}
	return osStatus("SecItemDelete", secItemDelete(q))
}

func (darwinSecurity) PublicKey(h Handle) ([]byte, error) {
	if err := load(); err != nil {
		return nil, err
	}
	pub := secKeyCopyPublicKey(uintptr(h))
	if pub == 0 {
		return nil, &Status{Func: "SecKeyCopyPublicKey", Code: errSecParam, Desc: "no public key"}
	}
	defer cfRelease(pub)
	var cerr uintptr
	d := secKeyCopyExternalRepr(pub, &cerr)
	if d == 0 {
		return nil, cfError("SecKeyCopyExternalRepresentation", cerr)
	}
	defer cfRelease(d)
	return cfBytes(d), nil
}

func (darwinSecurity) KeyExchange(h Handle, peer []byte) ([]byte, error) {
	if err := load(); err != nil {
		return nil, err
	}
	var o objects
	defer o.release()
	attrs, err := o.dict(peerKeyAttrs)
	if err != nil {
		return nil, err
	}
	var cerr uintptr
	pk := secKeyCreateWithData(o.data(peer), attrs, &cerr)
	if pk == 0 {
		return nil, cfError("SecKeyCreateWithData", cerr)
	}
	o.keep(pk)
	alg, err := constant("kSecKeyAlgorithmECDHKeyExchangeStandard")
	if err != nil {
		return nil, err
	}
	params, err := o.dict(Dict{})
	if err != nil {
		return nil, err
	}
	d := secKeyCopyKeyExchange(uintptr(h), alg, pk, params, &cerr)
	if d == 0 {
		return nil, cfError("SecKeyCopyKeyExchangeResult", cerr)
	}
	defer cfRelease(d)
	return cfBytes(d), nil
}

func (darwinSecurity) Release(h Handle) {
	if h != 0 && load() == nil {
		cfRelease(uintptr(h))
	}
}
