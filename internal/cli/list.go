package cli

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ocikp/ocikp/keyprovider"
	"github.com/ocikp/ocikp/keys/keychain"
)

type listed struct {
	Name        string `json:"name"`
	Type        string `json:"type"`
	Recipient   string `json:"recipient,omitempty"`
	Fingerprint string `json:"fingerprint,omitempty"`
	Protected   bool   `json:"protected"`
	Created     string `json:"created,omitempty"`
	Error       string `json:"error,omitempty"`
	cachedKMS   bool
	shortType   string // the default table's, when shorter than Type
}

// Fingerprint is what "ocikp list" shows for a recipient: the first 12 hex
// digits of the SHA-256 of the recipient string, as
// "ocikp recipient NAME | tr -d '\n' | sha256sum" prints it. A post-quantum
// recipient is 1,974 characters; this fits a terminal and still tells
// keys apart.
func Fingerprint(recipient string) string {
	sum := sha256.Sum256([]byte(recipient))
	return hex.EncodeToString(sum[:6])
}

// Widths of the default table, which keeps lines within 100 columns:
// longer names and types are cut with "…" (--long shows them whole).
const (
	maxListName = 31 // 31 + "mlkem768p256 (secure-enclave)" + the rest: 100
	maxListType = 30
)

func cmdList(e *env, args []string) error {
	fs := e.flags("list")
	asJSON := fs.Bool("json", false, "print JSON, with whole recipients")
	long := fs.Bool("long", false, "show whole recipients and names, not fingerprints (post-quantum recipients are 1,974 characters)")
	if _, err := e.parse(fs, args, 0, 0, "[--long | --json]"); err != nil {
		return err
	}
	if *asJSON && *long {
		return usagef("--long and --json are exclusive")
	}
	st, err := e.existingStore()
	if err != nil {
		return err
	}
	entries, err := st.List()
	if err != nil {
		return err
	}
	out := []listed{}
	for _, en := range entries {
		l := listed{Name: en.Name, Type: "?"}
		if en.Err != nil {
			l.Error = oneLine(en.Err.Error())
		} else {
			l.Type = en.Key.Type
			l.Recipient, l.Protected = en.Key.RecipientString(), en.Key.Protected()
			if !en.Key.Created.IsZero() {
				l.Created = en.Key.Created.Format(time.RFC3339)
			}
		}
		out = append(out, l)
	}
	for _, en := range keychain.RefsIn(st.Dir).List() {
		l := listed{Name: en.Name, Type: "p256 (keychain)"}
		if en.Err != nil {
			l.Error = oneLine(en.Err.Error())
		} else {
			l.Type = en.Ref.KeyType() + " (" + en.Ref.Kind() + ", tag " + strconv.Quote(en.Ref.Tag) + ")"
			l.shortType = en.Ref.KeyType() + " (" + en.Ref.Kind() + ")" // the tag: --long
			l.Recipient, l.Protected, l.Created = en.Ref.RecipientString(), en.Ref.RequirePresence || en.Ref.Protected(), en.Ref.Created.Format(time.RFC3339)
		}
		out = append(out, l)
	}
	out = append(out, tpmListed(st)...)
	out = append(out, pkcs11Listed(st)...)
	for _, k := range (&keyprovider.Provider{Store: st}).KMSCache().List() {
		out = append(out, listed{Name: k.URL, Type: k.StanzaType + " (cached public key)", Recipient: k.URL,
			Created: k.Fetched.Format(time.RFC3339), cachedKMS: true})
	}
	for i := range out {
		if out[i].Recipient != "" {
			out[i].Fingerprint = Fingerprint(out[i].Recipient)
		}
	}
	if *asJSON {
		b, _ := json.MarshalIndent(out, "", "  ")
		fmt.Fprintf(e.stdout, "%s\n", b)
		return nil
	}
	if len(out) == 0 {
		fmt.Fprintf(e.stderr, "ocikp: no keys in %s (create one with: ocikp keygen NAME)\n", st.Dir)
		return nil
	}
	return e.listTable(out, *long)
}

// listTable prints the keys as a table; cached KMS keys, named by their
// URL, follow on lines of their own so that a long URL does not widen
// every row.
func (e *env) listTable(out []listed, long bool) error {
	cell := func(s string, n int) string {
		if long || len([]rune(s)) <= n {
			return s
		}
		return string([]rune(s)[:n-1]) + "…"
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	last := "FINGERPRINT"
	if long {
		last = "RECIPIENT"
	}
	fmt.Fprintln(tw, "NAME\tTYPE\tPROTECTED\tCREATED\t"+last)
	var kms, bad []listed
	for _, l := range out {
		if l.cachedKMS {
			kms = append(kms, l)
			continue
		}
		typ := l.Type
		if l.shortType != "" && !long {
			typ = l.shortType
		}
		name, typ := cell(l.Name, maxListName), cell(typ, maxListType)
		if l.Error != "" {
			// Its reason names paths: whole, below the table.
			fmt.Fprintf(tw, "%s\t%s\t-\t-\tunusable (see below)\n", name, typ)
			bad = append(bad, l)
			continue
		}
		prot := "no"
		if l.Protected {
			prot = "yes"
		}
		created, id := l.Created, l.Recipient
		if !long {
			created, _, _ = strings.Cut(created, "T") // the day is enough here
			id = l.Fingerprint
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", name, typ, prot, created, id)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(bad) > 0 {
		fmt.Fprintln(e.stdout, "\nunusable keys:")
		for _, l := range bad {
			fmt.Fprintf(e.stdout, "  %s: %s\n", l.Name, l.Error)
		}
	}
	if len(kms) > 0 {
		fmt.Fprintln(e.stdout, "\ncached KMS public keys (the URL is the recipient):")
		for _, l := range kms {
			fmt.Fprintf(e.stdout, "%s  %s  %s\n", l.Name, l.Type, l.Created)
		}
	}
	return nil
}
