package testkms

import (
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync"
	"testing"
)

// Front stands in front of a fake as a KMS past its request quota: the
// first requests get refuse's answer (all of them when the count given is
// negative), the rest go through to the fake.
type Front struct {
	URL string

	mu            sync.Mutex
	reject, calls int
}

// StartFront serves a Front for the fake at target on 127.0.0.1 until the
// test ends.
func StartFront(t testing.TB, target string, reject int, refuse http.HandlerFunc) *Front {
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(u)
	f := &Front{reject: reject}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.calls++
		refused := f.reject < 0 || f.calls <= f.reject
		f.mu.Unlock()
		if refused {
			refuse(w, r)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	f.URL = srv.URL
	return f
}

// Calls returns how many requests arrived, refused or not.
func (f *Front) Calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// HangUp listens on a loopback port until the test ends and closes each
// connection as soon as it is accepted: an endpoint that never answers.
// It returns the address and the count of connections so far.
func HangUp(t testing.TB) (addr string, accepted func() int) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	var mu sync.Mutex
	n := 0
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			n++
			mu.Unlock()
			c.Close()
		}
	}()
	return l.Addr().String(), func() int {
		mu.Lock()
		defer mu.Unlock()
		return n
	}
}
