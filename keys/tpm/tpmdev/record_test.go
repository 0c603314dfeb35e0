package tpmdev

import (
	"strings"
	"testing"
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

// TestRecordBlobs: the blobs package tpm keeps opaque are read strictly
// here, and a record whose recipient is not its TPM key's is refused.
func TestRecordBlobs(t *testing.T) {
	if _, err := parseKey([]byte(sampleRecord)); err != nil {
		t.Fatal(err)
	}
	bad := map[string]string{
		// Another key's recipient: the record contradicts its own TPM blob.
		"other recipient": strings.Replace(sampleRecord, "ocikp1p2561qv33lff9feac8x0n7ygwvczlcy79xy0twukryuyy9656gtl33hee7g7eqdq",
			"ocikp1p2561qfxhm3h0lzjkn3mk0kw9lze60r0rwpav800h3c7tqpg9unzrk4u977lyqwn", 1),
		// A sized blob that is not a public area.
		"public not a TPMT_PUBLIC": strings.Replace(sampleRecord, `"AHgAIwAL`, `"AHgAAAAL`, 1),
	}
	for what, s := range bad {
		if _, err := parseKey([]byte(s)); err == nil {
			t.Errorf("%s: accepted", what)
		}
	}
}
