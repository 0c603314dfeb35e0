package main

import (
	"strings"
	"testing"
	"time"
)

// A small rollout at a quota the nodes exceed at first: every pull
// succeeds, refused requests were retried within a bounded number of
// attempts, and the retries were spread out rather than arriving together.
func TestRolloutAtQuota(t *testing.T) {
	if testing.Short() {
		t.Skip("a few seconds per cloud")
	}
	for _, cloud := range []string{"gcp", "aws", "vault"} {
		t.Run(cloud, func(t *testing.T) {
			// 12 nodes against a burst of 8: the first wave is refused in
			// part, and 24 unwraps at 12/s leave the SDKs' retries room.
			r, err := Run(t, Config{Cloud: cloud, Nodes: 12, Layers: 2, Quota: 12, Burst: 8, Timeout: 30 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			var b strings.Builder
			r.Print(&b)
			t.Log("\n" + b.String())
			if r.Refused == 0 {
				t.Fatal("the quota refused nothing: the simulation did not reach it")
			}
			if r.Failed != 0 || r.PullsOK != 12 {
				t.Fatalf("%d pulls failed at a quota their retries fit in", r.Failed)
			}
			if r.Requests != 24+r.Refused {
				t.Errorf("%d requests, want the 24 unwraps plus %d refused", r.Requests, r.Refused)
			}
			for a := range r.Attempts {
				if a < 1 || a > 10 {
					t.Errorf("a layer took %d attempts", a)
				}
			}
			// Synchronised retries would all come back after the same
			// pause; jitter spreads them.
			if g := r.RetryGaps; len(g) > 1 && g[len(g)-1]-g[0] < 50*time.Millisecond {
				t.Errorf("retries after %v to %v: not spread", g[0], g[len(g)-1])
			}
		})
	}
}

// Far past the quota for longer than the timeout: pulls fail, each with
// one clear line naming the key and the throttling, never a bare deadline.
func TestRolloutPastQuota(t *testing.T) {
	if testing.Short() {
		t.Skip("a few seconds per cloud")
	}
	want := map[string]string{"gcp": "quota exceeded or throttled", "aws": "throttled", "vault": "rate limited"}
	for _, cloud := range []string{"gcp", "aws", "vault"} {
		t.Run(cloud, func(t *testing.T) {
			r, err := Run(t, Config{Cloud: cloud, Nodes: 10, Layers: 2, Quota: 0.5, Burst: 1, Timeout: 4 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			if r.Failed == 0 {
				t.Fatal("no pull failed far past the quota")
			}
			for msg, n := range r.Errors {
				if !strings.Contains(msg, want[cloud]) || !strings.Contains(msg, "node-N") {
					t.Errorf("%d pulls failed with %q; want the key and %q", n, msg, want[cloud])
				}
			}
		})
	}
}
