package keychain

import (
	"reflect"
	"strings"
	"testing"
)

func TestCreateParams(t *testing.T) {
	for _, tc := range []struct {
		spec      Spec
		token     bool
		acFlags   uint64 // 0: no access control
		extractFl bool
	}{
		{Spec{Tag: "t"}, false, 0, true},
		{Spec{Tag: "t", SecureEnclave: true}, true, flagPrivateKeyUsage, false},
		{Spec{Tag: "t", RequirePresence: true}, false, flagUserPresence, false},
		{Spec{Tag: "t", SecureEnclave: true, RequirePresence: true}, true, flagPrivateKeyUsage | flagUserPresence, false},
	} {
		d := createParams(tc.spec)
		if d.Get("kSecAttrKeyType") != Const("kSecAttrKeyTypeECSECPrimeRandom") || d.Get("kSecAttrKeySizeInBits") != 256 {
			t.Errorf("%+v: not a P-256 key: %v", tc.spec, d)
		}
		if got := d.Get("kSecAttrTokenID") == Const("kSecAttrTokenIDSecureEnclave"); got != tc.token {
			t.Errorf("%+v: Secure Enclave token %v", tc.spec, got)
		}
		priv := d.Get("kSecPrivateKeyAttrs").(Dict)
		if priv.Get("kSecAttrIsPermanent") != true || !reflect.DeepEqual(priv.Get("kSecAttrApplicationTag"), []byte("t")) {
			t.Errorf("%+v: private attrs %v", tc.spec, priv)
		}
		ac, hasAC := priv.Get("kSecAttrAccessControl").(AccessControl)
		if hasAC != (tc.acFlags != 0) || ac.Flags != tc.acFlags {
			t.Errorf("%+v: access control %+v", tc.spec, ac)
		}
		if hasAC && ac.Protection != "kSecAttrAccessibleWhenUnlockedThisDeviceOnly" {
			t.Errorf("%+v: protection %s", tc.spec, ac.Protection)
		}
		if (priv.Get("kSecAttrIsExtractable") == false) != tc.extractFl {
			t.Errorf("%+v: extractable %v", tc.spec, priv.Get("kSecAttrIsExtractable"))
		}
	}
}

func TestQueries(t *testing.T) {
	qs := tagQueries("se.ocicrypt.default.tag")
	if len(qs) != 2 || qs[0].Get("kSecUseDataProtectionKeychain") != nil || qs[1].Get("kSecUseDataProtectionKeychain") != true {
		t.Fatalf("queries %v", qs)
	}
	q := qs[0]
	want := map[string]any{
		"kSecClass":              Const("kSecClassKey"),
		"kSecAttrKeyClass":       Const("kSecAttrKeyClassPrivate"),
		"kSecAttrApplicationTag": []byte("se.ocicrypt.default.tag"),
		"kSecAttrKeyType":        Const("kSecAttrKeyTypeECSECPrimeRandom"),
		"kSecReturnRef":          true,
		"kSecMatchLimit":         Const("kSecMatchLimitAll"),
	}
	if len(q) != len(want) {
		t.Fatalf("query %v", q)
	}
	for k, v := range want {
		if !reflect.DeepEqual(q.Get(k), v) {
			t.Errorf("%s = %v, want %v", k, q.Get(k), v)
		}
	}
	if d := deleteQuery(7); d.Get("kSecValueRef") != Handle(7) || d.Get("kSecClass") != Const("kSecClassKey") {
		t.Errorf("delete query %v", d)
	}
}

func TestExplain(t *testing.T) {
	for code, want := range map[int32]string{
		errSecMissingEntitlement:    "not code-signed with the entitlements",
		errSecNotSigned:             "not code-signed",
		errSecDuplicateItem:         "already exists",
		errSecUserCanceled:          "did not approve",
		errSecAuthFailed:            "did not approve",
		errSecInteractionNotAllowed: "cannot show a prompt",
		errSecNotAvailable:          "no keychain is available",
		errSecParam:                 "rejected the request's parameters",
		-99999:                      "OSStatus -99999",
	} {
		err := explain("doing it", &Status{Func: "SecX", Code: code, Desc: "desc"})
		if !strings.HasPrefix(err.Error(), "doing it: ") || !strings.Contains(err.Error(), want) {
			t.Errorf("%d: %v", code, err)
		}
		if strings.Count(err.Error(), "\n") > 0 {
			t.Errorf("%d: more than one line: %q", code, err)
		}
	}
}
