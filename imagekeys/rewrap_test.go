package imagekeys

import (
	"context"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/ocikp/ocikp/envelope"
)

// testOpener opens "test" stanzas, whose Key is the file key itself.
type testOpener struct{ calls int }

func (o *testOpener) CheckMix([]envelope.Recipient) error { return nil }

func (o *testOpener) OpenFileKey(_ context.Context, env *envelope.Envelope) ([]byte, string, error) {
	o.calls++
	for _, s := range env.Recipients {
		if s.Type == "test" {
			if _, err := env.OpenPayload(s.Key); err != nil {
				return nil, "", err
			}
			return s.Key, s.Type, nil
		}
	}
	return nil, "", envelope.ErrIncorrectIdentity
}

type kidRecipient string

func (k kidRecipient) Wrap(fk []byte) (*envelope.Stanza, error) {
	return &envelope.Stanza{Type: "test", KID: string(k), Key: append([]byte(nil), fk...)}, nil
}

func target(kid string) *Target {
	return &Target{Spec: kid, R: kidRecipient(kid), match: kidMatch(kid)}
}

func TestRewrapLayer(t *testing.T) {
	blob, err := envelope.Seal([]byte("optsdata"), kidRecipient("kms://a"))
	if err != nil {
		t.Fatal(err)
	}
	other := "b3RoZXI=" // another provider's blob under the same annotation
	l := &Descriptor{Annotations: map[string]string{
		ProviderPrefix + "ocikp": base64.StdEncoding.EncodeToString(blob) + "," + other,
		KeysPrefix + "jwe":       "AAAA",
	}}
	op := &testOpener{}
	ctx := context.Background()

	plan, err := RewrapLayer(ctx, l, "ocikp", op, []*Target{target("kms://b")}, nil, true)
	if err != nil || len(plan.After) != 2 || !plan.Changed() {
		t.Fatalf("dry run: %+v %v", plan, err)
	}
	if l.Annotations[ProviderPrefix+"ocikp"] != base64.StdEncoding.EncodeToString(blob)+","+other {
		t.Fatal("the dry run changed the annotation")
	}

	plan, err = RewrapLayer(ctx, l, "ocikp", op, []*Target{target("kms://b")}, []*Target{target("kms://a")}, false)
	if err != nil || len(plan.Added) != 1 || len(plan.Removed) != 1 || len(plan.After) != 1 || plan.After[0].KID != "kms://b" {
		t.Fatalf("add b, remove a: %+v %v", plan, err)
	}
	parts := strings.Split(l.Annotations[ProviderPrefix+"ocikp"], ",")
	if len(parts) != 2 || parts[1] != other || l.Annotations[KeysPrefix+"jwe"] != "AAAA" {
		t.Fatalf("other blobs and schemes must stay as they were: %v", l.Annotations)
	}
	raw, _ := base64.StdEncoding.DecodeString(parts[0])
	env, err := envelope.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	fk, _, err := op.OpenFileKey(ctx, env)
	if err != nil {
		t.Fatal(err)
	}
	if secret, err := env.OpenPayload(fk); err != nil || string(secret) != "optsdata" {
		t.Fatalf("the resealed envelope opens to %q, %v", secret, err)
	}

	// Up to date: nothing changes.
	if plan, err := RewrapLayer(ctx, l, "ocikp", op, []*Target{target("kms://b")}, nil, false); err != nil || plan.Changed() {
		t.Fatalf("second add: %+v %v", plan, err)
	}
	// Removing the last recipient is refused.
	if _, err := RewrapLayer(ctx, l, "ocikp", op, nil, []*Target{target("kms://b")}, false); err == nil {
		t.Fatal("removed the last recipient")
	}
	// No ocikp envelope under the name.
	if _, err := RewrapLayer(ctx, l, "other", op, []*Target{target("kms://b")}, nil, false); err != ErrNoEnvelope {
		t.Fatalf("another provider name: %v", err)
	}
}
