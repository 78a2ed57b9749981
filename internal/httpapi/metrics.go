package httpapi

import (
	"net/http"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the server's Prometheus metrics, on a registry the Server owns (no global default
// registry: two servers in one process, as in tests, do not collide). An in-process worker can
// register its own collectors on Server.Registry.
type metrics struct {
	reg             *prometheus.Registry
	postingDuration *prometheus.HistogramVec
	postings        *prometheus.CounterVec
	batchSize       prometheus.Histogram
	batchDuration   prometheus.Histogram
	httpRequests    *prometheus.CounterVec
	httpDuration    *prometheus.HistogramVec
	shed            prometheus.Counter
	handler         http.Handler // serves reg on the metrics listener (never the API's port)
}

func newMetrics(pool *pgxpool.Pool) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		postingDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "dualledger_posting_duration_seconds",
			Help:    "Time to post through the API, from the decoded request to the posting module's answer (mode single: one entry through group commit; batch: one batch request).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"mode"}),
		postings: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dualledger_postings_total",
			Help: "Entries posted through the API, by result code (created, replayed, a rejection code, or unavailable/internal when the posting could not be run).",
		}, []string{"result"}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "dualledger_group_commit_batch_size",
			Help:    "Single-entry postings committed together in one group-commit transaction.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 14), // 1 … 8192
		}),
		batchDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "dualledger_group_commit_duration_seconds",
			Help:    "Database time of one group-commit transaction.",
			Buckets: prometheus.DefBuckets,
		}),
		httpRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dualledger_http_requests_total",
			Help: "HTTP requests by method, route pattern (\"unmatched\" for unknown paths) and status.",
		}, []string{"method", "route", "status"}),
		httpDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "dualledger_http_request_duration_seconds",
			Help:    "HTTP request latency by method and route pattern.",
			Buckets: prometheus.DefBuckets,
		}, []string{"method", "route"}),
		shed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dualledger_http_requests_shed_total",
			Help: "Requests refused at once with 429 overloaded because the server had --max-in-flight requests in flight.",
		}),
	}
	m.reg.MustRegister(
		m.postingDuration, m.postings, m.batchSize, m.batchDuration, m.httpRequests, m.httpDuration, m.shed,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "dualledger_db_pool_acquired_connections",
			Help: "Database connections in use by the server.",
		}, func() float64 { return float64(pool.Stat().AcquiredConns()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "dualledger_db_pool_max_connections",
			Help: "Size limit of the server's database pool.",
		}, func() float64 { return float64(pool.Stat().MaxConns()) }),
	)
	m.handler = promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
	return m
}

// posted counts n postings with result code and, when took > 0, observes the latency once.
func (m *metrics) posted(mode, code string, n int, took time.Duration) {
	m.postings.WithLabelValues(code).Add(float64(n))
	if took > 0 {
		m.postingDuration.WithLabelValues(mode).Observe(took.Seconds())
	}
}

// groupCommit is the Poster's observe hook.
func (m *metrics) groupCommit(_ string, size int, took time.Duration, _ error) {
	m.batchSize.Observe(float64(size))
	m.batchDuration.Observe(took.Seconds())
}

func (m *metrics) request(method, route string, status int, took time.Duration) {
	m.httpRequests.WithLabelValues(method, route, strconv.Itoa(status)).Inc()
	m.httpDuration.WithLabelValues(method, route).Observe(took.Seconds())
}
