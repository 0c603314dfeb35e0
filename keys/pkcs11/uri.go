package pkcs11

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// URI is a parsed RFC 7512 pkcs11: URI: the attributes ocikp uses, each
// percent-decoded. Parse refuses what it does not understand rather than
// ignoring it, so a URI never means less than its author wrote.
type URI struct {
	Token, Manufacturer, Model, Serial string
	Object                             string
	ID                                 []byte
	SlotID                             int // -1: any slot
	Type                               string
	ModulePath, ModuleName             string
	PINSource, PINValue                string
}

// maxURI bounds a URI (keystore records and flags are small).
const maxURI = 4096

var errURI = errors.New("malformed pkcs11 URI")

// Parse reads a pkcs11: URI. Path attributes (token, manufacturer, model,
// serial, object, id, slot-id, type, library-*) and query attributes
// (module-path, module-name, pin-source, pin-value) are those RFC 7512
// and ocicrypt's PKCS#11 scheme use. Errors never quote a pin-value.
func Parse(s string) (*URI, error) {
	rest, ok := strings.CutPrefix(s, "pkcs11:")
	switch {
	case !ok:
		return nil, fmt.Errorf("%w: it must begin with \"pkcs11:\"", errURI)
	case len(s) > maxURI:
		return nil, fmt.Errorf("%w: longer than %d bytes", errURI, maxURI)
	}
	u := &URI{SlotID: -1}
	path, query, _ := strings.Cut(rest, "?")
	seen := map[string]bool{}
	attrs := func(part, sep string, set func(k, v string) error) error {
		if part == "" {
			return nil
		}
		for _, a := range strings.Split(part, sep) {
			k, raw, ok := strings.Cut(a, "=")
			if !ok || k == "" {
				return fmt.Errorf("%w: an attribute without '='", errURI)
			}
			if seen[k] {
				return fmt.Errorf("%w: attribute %.40q given twice", errURI, k)
			}
			seen[k] = true
			v, err := unescape(raw)
			if err != nil {
				return fmt.Errorf("%w: attribute %.40q: %v", errURI, k, err)
			}
			if err := set(k, v); err != nil {
				return err
			}
		}
		return nil
	}
	err := attrs(path, ";", func(k, v string) error {
		switch k {
		case "token":
			u.Token = v
		case "manufacturer":
			u.Manufacturer = v
		case "model":
			u.Model = v
		case "serial":
			u.Serial = v
		case "object":
			u.Object = v
		case "id":
			u.ID = []byte(v)
		case "type":
			switch v {
			case "private", "public":
			default:
				return fmt.Errorf("%w: type=%.20q: ocikp uses private (or public) keys", errURI, v)
			}
			u.Type = v
		case "slot-id":
			n, err := strconv.ParseUint(v, 10, 31)
			if err != nil {
				return fmt.Errorf("%w: slot-id must be a number", errURI)
			}
			u.SlotID = int(n)
		case "library-manufacturer", "library-description", "library-version", "slot-description", "slot-manufacturer":
			// Describe the module or slot; the module is named by module-path.
		default:
			return fmt.Errorf("%w: unknown path attribute %.40q", errURI, k)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	err = attrs(query, "&", func(k, v string) error {
		switch k {
		case "module-path":
			if !strings.HasPrefix(v, "/") || strings.ContainsRune(v, 0) {
				return fmt.Errorf("%w: module-path must be an absolute path", errURI)
			}
			u.ModulePath = v
		case "module-name":
			u.ModuleName = v
		case "pin-source":
			src, _ := strings.CutPrefix(v, "file:")
			if !strings.HasPrefix(src, "/") || strings.ContainsRune(src, 0) {
				return fmt.Errorf("%w: pin-source must be an absolute file path (or file:PATH)", errURI)
			}
			u.PINSource = src
		case "pin-value":
			u.PINValue = v
		default:
			return fmt.Errorf("%w: unknown query attribute %.40q", errURI, k)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if u.PINSource != "" && u.PINValue != "" {
		return nil, fmt.Errorf("%w: pin-source and pin-value are exclusive", errURI)
	}
	// Written back (keystore records), unescaped bytes become %XX: a URI
	// whose written form would exceed the bound could be stored and never
	// read again.
	if len(u.String()) > maxURI {
		return nil, fmt.Errorf("%w: longer than %d bytes once escaped", errURI, maxURI)
	}
	return u, nil
}

// unescape percent-decodes v (RFC 3986 pct-encoding, as RFC 7512 uses it).
func unescape(v string) (string, error) {
	if !strings.Contains(v, "%") {
		return v, nil
	}
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		if v[i] != '%' {
			b.WriteByte(v[i])
			continue
		}
		if i+2 >= len(v) {
			return "", errors.New("truncated %-escape")
		}
		n, err := strconv.ParseUint(v[i+1:i+3], 16, 8)
		if err != nil {
			return "", errors.New("invalid %-escape")
		}
		b.WriteByte(byte(n))
		i += 2
	}
	return b.String(), nil
}

// escape percent-encodes all but RFC 7512's unreserved characters (and
// '/' in the query, for paths), so String is canonical.
func escape(v string, query bool) string {
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		c := v[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			strings.IndexByte("-._~:[]@!$'()*+,", c) >= 0 || query && c == '/' {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}

// String formats u in a fixed attribute order. pin-value is never
// written: a URI is shown and stored, a PIN is neither.
func (u *URI) String() string {
	var path, query []string
	add := func(to *[]string, k, v string, q bool) {
		if v != "" {
			*to = append(*to, k+"="+escape(v, q))
		}
	}
	add(&path, "token", u.Token, false)
	add(&path, "manufacturer", u.Manufacturer, false)
	add(&path, "model", u.Model, false)
	add(&path, "serial", u.Serial, false)
	if u.SlotID >= 0 {
		path = append(path, "slot-id="+strconv.Itoa(u.SlotID))
	}
	add(&path, "object", u.Object, false)
	if len(u.ID) > 0 {
		var b strings.Builder
		for _, c := range u.ID {
			fmt.Fprintf(&b, "%%%02X", c)
		}
		path = append(path, "id="+b.String())
	}
	add(&path, "type", u.Type, false)
	add(&query, "module-path", u.ModulePath, true)
	add(&query, "module-name", u.ModuleName, true)
	add(&query, "pin-source", u.PINSource, true)
	s := "pkcs11:" + strings.Join(path, ";")
	if len(query) > 0 {
		s += "?" + strings.Join(query, "&")
	}
	return s
}
