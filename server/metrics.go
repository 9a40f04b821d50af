package server

import (
	"context"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sealfs/sealfs/server/meta"
)

// Metrics are the server's Prometheus metrics. A nil *Metrics counts
// nothing, so tests and embedders need not register any.
type Metrics struct {
	requests  *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	bytes     *prometheus.CounterVec
	hmacRejs  prometheus.Counter
	throttles prometheus.Counter
}

// NewMetrics registers the server's metrics with reg. Storage use is read
// from st when scraped.
func NewMetrics(reg prometheus.Registerer, st meta.Store) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sealfs_requests_total", Help: "API requests by route pattern and HTTP status.",
		}, []string{"route", "status"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "sealfs_request_duration_seconds", Help: "API request latency by route pattern.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"route"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sealfs_chunk_bytes_total", Help: "Sealed chunk bytes received (in) and sent (out).",
		}, []string{"direction"}),
		hmacRejs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sealfs_hmac_rejections_total", Help: "Chunks refused because their transfer HMAC did not verify.",
		}),
		throttles: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sealfs_throttled_logins_total", Help: "Login attempts refused with 429 by the guessing throttle.",
		}),
	}
	used := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "sealfs_storage_used_bytes", Help: "Sealed bytes stored for all accounts.",
	}, func() float64 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		accts, err := st.ListAccounts(ctx)
		if err != nil {
			return 0
		}
		var n int64
		for _, a := range accts {
			n += a.UsedBytes
		}
		return float64(n)
	})
	reg.MustRegister(m.requests, m.latency, m.bytes, m.hmacRejs, m.throttles, used)
	return m
}

func (m *Metrics) request(route string, status int, d time.Duration) {
	if m == nil {
		return
	}
	m.requests.WithLabelValues(route, strconv.Itoa(status)).Inc()
	m.latency.WithLabelValues(route).Observe(d.Seconds())
}

func (m *Metrics) bytesIn(n int) {
	if m != nil {
		m.bytes.WithLabelValues("in").Add(float64(n))
	}
}

func (m *Metrics) bytesOut(n int) {
	if m != nil {
		m.bytes.WithLabelValues("out").Add(float64(n))
	}
}

func (m *Metrics) hmacRejected() {
	if m != nil {
		m.hmacRejs.Inc()
	}
}

func (m *Metrics) throttled() {
	if m != nil {
		m.throttles.Inc()
	}
}
