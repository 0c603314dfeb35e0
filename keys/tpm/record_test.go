package tpm_test

import (
	"strings"
	"testing"

	"github.com/ocikp/ocikp/keys/tpm"
)

// A record as keygen writes it (swtpm, PIN and PCRs 7,11).
const sampleRecord = `{
  "v": 1,
  "name": "node2",
  "recipient": "ocikp1p2561qv33lff9feac8x0n7ygwvczlcy79xy0twukryuyy9656gtl33hee7g7eqdq",
  "device": "/tmp/tpmt/s",
  "public": "AHgAIwALAAIAMgAgn6akW+2HrBoqgfK9vHUbOzUGsRfuCtVS2WH0abS3lxwAEAAZAAsAAwAQACAjH6UlTnuDmfPxEOZgX8E8UxHrdywycIQuqaQv8Y3znwAgZmpdKMIy2GPSac/29oOk0fK7u8WgXzjvE2xpMfhm070=",
  "private": "AH4AINLkUEz27CqrxH1ojWjsBn2hI6xfz/e0pRZZbjKEn35gABCdDZBsRUx5NvUKa3xz/KpgzN2IEBSjgWO8nIvlOLM90zaJcCjKwe9+qRJjAeHEdf1X5pCHIlhXlVLheMVKNe5qMq9QPqmwHYjqwkSHfDsd/LyRMODuJXShADU=",
  "srk": "AAtZDXqV4NisgrvfatHTqdeVnMxHzsfv5VThvXXyCM/eAg==",
  "pin": true,
  "pcrs": [7, 11],
  "created": "2026-12-05T04:03:58Z"
}
`

func TestParseRecord(t *testing.T) {
	r, err := tpm.ParseRecord([]byte(sampleRecord))
	if err != nil {
		t.Fatal(err)
	}
	if r.Protection() != "pin, pcrs 7,11" {
		t.Errorf("Protection() = %q", r.Protection())
	}
	// (A record whose recipient is not its TPM blob's key is refused
	// where the blob is read: tpmdev's TestRecordBlobs.)
	bad := map[string]string{
		"version 2":       strings.Replace(sampleRecord, `"v": 1`, `"v": 2`, 1),
		"unknown field":   strings.Replace(sampleRecord, `"pin": true`, `"pin": true, "extra": 1`, 1),
		"relative device": strings.Replace(sampleRecord, `"/tmp/tpmt/s"`, `"s"`, 1),
		"pcr 24":          strings.Replace(sampleRecord, `[7, 11]`, `[7, 24]`, 1),
		"pcrs unsorted":   strings.Replace(sampleRecord, `[7, 11]`, `[11, 7]`, 1),
		"bad name":        strings.Replace(sampleRecord, `"node2"`, `"../x"`, 1),
		"truncated blob":  strings.Replace(sampleRecord, `"AHgAIwAL`, `"AHgA`, 1),
		"trailing data":   sampleRecord + "{}",
	}
	for what, s := range bad {
		if _, err := tpm.ParseRecord([]byte(s)); err == nil {
			t.Errorf("%s: accepted", what)
		}
	}
}

func FuzzParseRecord(f *testing.F) {
	f.Add([]byte(sampleRecord))
	if h, err := sampleHybrid(f).Marshal(); err == nil {
		f.Add(h)
	}
	f.Add([]byte(`{"v":1}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := tpm.ParseRecord(data)
		if err != nil {
			return
		}
		// What parses round-trips, and names a usable recipient.
		out, err := r.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		r2, err := tpm.ParseRecord(out)
		if err != nil {
			t.Fatalf("re-parse: %v", err)
		}
		if r2.RecipientString() != r.RecipientString() {
			t.Fatal("recipient changed")
		}
		if _, err := r.NewRecipient(); err != nil {
			t.Fatal(err)
		}
	})
}
