package imagekeys

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Bounds on what a registry's replies may cost, enforced as they are read:
// go-containerregistry reads a manifest reply up to 100 MiB before our
// MaxManifestSize check, and decodes tag list pages without a limit,
// following the registry's Link headers for as long as it sends them.
const (
	// MaxTagListBytes bounds the pages of one tag listing, in all.
	MaxTagListBytes = 16 << 20
	// MaxTagListPages bounds their number.
	MaxTagListPages = 1000
)

// Bounds on a registry reply's time, so that a registry that answers and
// then stops (or sends a byte now and then) cannot hold a command
// forever: a manifest or tag list reply (small) comes whole within
// ReplyTimeout; any other GET or HEAD (a blob, a token, the ping) sends
// something at least every StallTimeout, headers included. Uploads are
// not bounded here: their time is the client's own sending.
var (
	ReplyTimeout = 2 * time.Minute
	StallTimeout = time.Minute
)

// ErrRegistryStalled marks a reply that took longer than its bound.
var ErrRegistryStalled = errors.New("the registry stopped answering")

// ErrReplyTooLarge marks a registry reply cut off at its bound.
var ErrReplyTooLarge = errors.New("the registry's reply is too large")

// limitReplies returns rt with manifest replies cut off after
// MaxManifestSize bytes and the tag list pages of this transport after
// MaxTagListBytes and MaxTagListPages. Blob replies (the layers
// --rotate-layer-keys streams) pass as they are.
func limitReplies(rt http.RoundTripper) http.RoundTripper { return &replyLimiter{rt: rt} }

type replyLimiter struct {
	rt http.RoundTripper

	mu       sync.Mutex
	tagBytes int64
	tagPages int
}

func (l *replyLimiter) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		return l.limit(req)
	}
	small := strings.Contains(req.URL.Path, "/manifests/") || strings.HasSuffix(req.URL.Path, "/tags/list")
	ctx, cancel := context.WithCancelCause(req.Context())
	var timer *time.Timer
	if small {
		timer = time.AfterFunc(ReplyTimeout, func() {
			cancel(fmt.Errorf("%w: no whole reply within %v", ErrRegistryStalled, ReplyTimeout))
		})
	} else {
		timer = time.AfterFunc(StallTimeout, func() {
			cancel(fmt.Errorf("%w: nothing received for %v", ErrRegistryStalled, StallTimeout))
		})
	}
	resp, err := l.limit(req.WithContext(ctx))
	if err != nil {
		timer.Stop()
		if c := context.Cause(ctx); c != nil && errors.Is(c, ErrRegistryStalled) {
			err = c
		}
		cancel(nil)
		return nil, err
	}
	if resp.Body == nil {
		timer.Stop()
		cancel(nil)
		return resp, nil
	}
	resp.Body = &timedBody{rc: resp.Body, ctx: ctx, cancel: cancel, timer: timer, stall: !small}
	return resp, nil
}

// timedBody ends its request when closed, restarts the stall timer on
// each read that brings bytes, and reports a timeout as ErrRegistryStalled.
type timedBody struct {
	rc     io.ReadCloser
	ctx    context.Context
	cancel context.CancelCauseFunc
	timer  *time.Timer
	stall  bool
}

func (b *timedBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if n > 0 && b.stall {
		b.timer.Reset(StallTimeout)
	}
	if err != nil && err != io.EOF {
		if c := context.Cause(b.ctx); c != nil && errors.Is(c, ErrRegistryStalled) {
			err = c
		}
	}
	return n, err
}

func (b *timedBody) Close() error {
	b.timer.Stop()
	err := b.rc.Close()
	b.cancel(nil)
	return err
}

// limit applies the size bounds of manifest and tag list replies.
func (l *replyLimiter) limit(req *http.Request) (*http.Response, error) {
	var tags bool
	switch p := req.URL.Path; {
	case strings.HasSuffix(p, "/tags/list"):
		tags = true
		l.mu.Lock()
		l.tagPages++
		n := l.tagPages
		l.mu.Unlock()
		if n > MaxTagListPages {
			return nil, fmt.Errorf("%w: more than %d pages of tags", ErrReplyTooLarge, MaxTagListPages)
		}
	case !strings.Contains(p, "/manifests/"):
		return l.rt.RoundTrip(req)
	}
	resp, err := l.rt.RoundTrip(req)
	if err != nil || resp.Body == nil {
		return resp, err
	}
	if tags {
		resp.Body = &cappedBody{rc: resp.Body, left: l.tagLeft, what: fmt.Sprintf("tag lists larger than %d MiB", MaxTagListBytes>>20)}
	} else {
		left := int64(MaxManifestSize)
		resp.Body = &cappedBody{rc: resp.Body, left: func(n int) int64 { left -= int64(n); return left },
			what: fmt.Sprintf("a manifest larger than %d bytes", MaxManifestSize)}
	}
	return resp, nil
}

// tagLeft counts n more bytes of tag lists and returns how many are left.
func (l *replyLimiter) tagLeft(n int) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.tagBytes += int64(n)
	return MaxTagListBytes - l.tagBytes
}

// cappedBody fails a read that takes the bytes read past the bound.
type cappedBody struct {
	rc   io.ReadCloser
	left func(n int) int64 // counts n bytes read, returns what is left
	what string
}

func (b *cappedBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if b.left(n) < 0 {
		return 0, fmt.Errorf("%w: %s", ErrReplyTooLarge, b.what)
	}
	return n, err
}

func (b *cappedBody) Close() error { return b.rc.Close() }
