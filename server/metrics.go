package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the service's Prometheus metrics, in a registry of its own.
type metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	inFlight prometheus.Gauge
	dropped  *prometheus.CounterVec

	// The series of each label set, found once: a vector's lookup hashes
	// the labels and takes its lock on every call.
	mu     sync.RWMutex
	series map[seriesKey]series
}

type seriesKey struct{ op, backend, result string }

type series struct {
	requests prometheus.Counter
	latency  prometheus.Observer
}

func newMetrics(pending *budget) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ocikp_requests_total",
			Help: "Key provider calls by operation, backend (the stanza type that opened a layer, or a wrap's recipient kinds) and gRPC result code.",
		}, []string{"op", "backend", "result"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "ocikp_request_duration_seconds",
			Help:    "Key provider call latency by operation.",
			Buckets: []float64{.0005, .001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"op"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{Name: "ocikp_requests_in_flight", Help: "Calls being served."}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ocikp_streams_dropped_total",
			Help: "Streams ended before their handler had the request: refused for the pending budget (budget), or ended by the request deadline while their message was still arriving (receive_deadline).",
		}, []string{"reason"}),
	}
	m.dropped.WithLabelValues("budget")
	m.dropped.WithLabelValues("receive_deadline")
	usedBytes := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "ocikp_pending_request_bytes",
		Help: "Bytes of the pending budget reserved now by streams whose requests are being received or wait to be served.",
	}, func() float64 { return float64(pending.used.Load()) })
	budgetBytes := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "ocikp_pending_request_budget_bytes",
		Help: "The pending budget (--max-pending-bytes).",
	}, func() float64 { return float64(pending.limit) })
	m.reg.MustRegister(m.requests, m.latency, m.inFlight, m.dropped, usedBytes, budgetBytes,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) observe(op, backend, result string, d time.Duration) {
	if backend == "" {
		backend = "none"
	}
	k := seriesKey{op, backend, result}
	m.mu.RLock()
	s, ok := m.series[k]
	m.mu.RUnlock()
	if !ok {
		// The label values are few: ops, backends and result codes.
		s = series{m.requests.WithLabelValues(op, backend, result), m.latency.WithLabelValues(op)}
		m.mu.Lock()
		if m.series == nil {
			m.series = map[seriesKey]series{}
		}
		m.series[k] = s
		m.mu.Unlock()
	}
	s.requests.Inc()
	s.latency.Observe(d.Seconds())
}

// serve exposes /metrics on addr until the returned stop is called.
func (m *metrics) serve(addr string, anyAddr bool, log *slog.Logger) (stop func(), err error) {
	ml, err := ParseListen(addr)
	if err != nil {
		return nil, err
	}
	l, err := net.Listen(ml.Network, ml.Address)
	if err != nil {
		return nil, err
	}
	if !anyAddr {
		if err := checkLoopback(l.Addr()); err != nil {
			l.Close()
			return nil, fmt.Errorf("refusing --metrics %s: %w", addr, err)
		}
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server stopped", "err", err)
		}
	}()
	log.Info("metrics", "listen", l.Addr().String())
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}, nil
}
