package outbox

import (
	"context"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"dualledger/internal/ledger"
)

// Metrics of the worker (nil-safe: a nil *Metrics records nothing).
type Metrics struct {
	attempts     *prometheus.CounterVec
	responses    *prometheus.CounterVec
	callSeconds  *prometheus.HistogramVec
	deliverySecs *prometheus.HistogramVec
	reapedRows   prometheus.Counter
	unconfigured *prometheus.GaugeVec
	pollsSkipped *prometheus.CounterVec
}

// NewMetrics registers the worker's metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dualledger_outbox_attempts_total",
			Help: "Delivery and poll attempts by SCB, kind (deliver, poll) and outcome (accepted, posted, final, retry, permanent, exhausted, poll_error, ...).",
		}, []string{"scb", "kind", "outcome"}),
		responses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dualledger_outbox_responses_total",
			Help: "SCB answers by HTTP status code (\"network\" when none arrived).",
		}, []string{"scb", "code"}),
		callSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "dualledger_outbox_call_duration_seconds",
			Help:    "Duration of one HTTP call to an SCB.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 15),
		}, []string{"scb", "kind"}),
		deliverySecs: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "dualledger_outbox_delivery_duration_seconds",
			Help:    "From the posting's commit (outbox row created) to the SCB's FINAL (row FINALIZED).",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 18),
		}, []string{"scb"}),
		reapedRows: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dualledger_outbox_expired_leases_total",
			Help: "Rows returned to QUEUED because their worker's lease expired (a worker died or hung).",
		}),
		unconfigured: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "dualledger_outbox_unconfigured_scb",
			Help: "1 for an SCB that has rows to deliver but no API URL/key configured in this worker.",
		}, []string{"scb"}),
		pollsSkipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dualledger_outbox_polls_skipped_total",
			Help: "Rows claimed for a poll while this worker's previous poll of them was still in flight (the SCB answers polls slower than --poll-every); not asked again.",
		}, []string{"scb"}),
	}
	reg.MustRegister(m.attempts, m.responses, m.callSeconds, m.deliverySecs, m.reapedRows, m.unconfigured, m.pollsSkipped)
	return m
}

func (m *Metrics) attempt(scbID, kind, outcome string, code int, took time.Duration) {
	if m == nil {
		return
	}
	m.attempts.WithLabelValues(scbID, kind, outcome).Inc()
	c := "network"
	if code > 0 {
		c = strconv.Itoa(code)
	}
	if outcome != "interrupted" {
		m.responses.WithLabelValues(scbID, c).Inc()
	}
	m.callSeconds.WithLabelValues(scbID, kind).Observe(took.Seconds())
}

func (m *Metrics) pollSkipped(scbID string) {
	if m == nil {
		return
	}
	m.pollsSkipped.WithLabelValues(scbID).Inc()
}

func (m *Metrics) finalized(scbID string, since time.Duration) {
	if m == nil {
		return
	}
	m.deliverySecs.WithLabelValues(scbID).Observe(since.Seconds())
}

func (m *Metrics) reaped(n int64) {
	if m == nil {
		return
	}
	m.reapedRows.Add(float64(n))
}

// Collector reports the outbox as it is in the database, on every scrape: depth by SCB and
// status, and the sync lag (age of the oldest row not FINALIZED). serve and worker both register
// it, so the outbox is visible wherever Prometheus looks.
type Collector struct {
	db      ledger.DBTX
	depth   *prometheus.Desc
	lag     *prometheus.Desc
	acked   *prometheus.Desc
	oldestQ *prometheus.Desc
	pending *prometheus.Desc
	up      *prometheus.Desc
}

// NewCollector returns the collector; register it with reg.MustRegister.
func NewCollector(db ledger.DBTX) *Collector {
	return &Collector{
		db: db,
		depth: prometheus.NewDesc("dualledger_outbox_rows", "Outbox rows by SCB and status (all but FINALIZED, which only grows).",
			[]string{"scb", "status"}, nil),
		lag: prometheus.NewDesc("dualledger_outbox_sync_lag_seconds",
			"Age of the oldest outbox row that is neither FINALIZED nor an acknowledged failure (0 when there is none).", []string{"scb"}, nil),
		acked: prometheus.NewDesc("dualledger_outbox_failed_acknowledged_rows",
			"FAILED outbox rows an operator acknowledged (outbox acknowledge): counted in dualledger_outbox_rows{status=\"FAILED\"} too.",
			[]string{"scb"}, nil),
		oldestQ: prometheus.NewDesc("dualledger_outbox_oldest_queued_seconds",
			"Age of the oldest QUEUED row (0 when none).", []string{"scb"}, nil),
		pending: prometheus.NewDesc("dualledger_entries_dbis_committed",
			"Entries with at least one outbox row not FINALIZED (DBIS_COMMITTED, not yet SETTLED).", nil, nil),
		up: prometheus.NewDesc("dualledger_outbox_collector_up",
			"1 if the last scrape could read the outbox.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.depth
	ch <- c.lag
	ch <- c.acked
	ch <- c.oldestQ
	ch <- c.pending
	ch <- c.up
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	rep, err := NewStore(c.db).Pending(ctx)
	if err != nil {
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 1)
	for _, s := range rep.Scbs {
		for _, st := range Statuses {
			if st == Finalized {
				continue // counted only by `outbox status`: it grows without bound
			}
			ch <- prometheus.MustNewConstMetric(c.depth, prometheus.GaugeValue, float64(s.ByStatus[st]), s.ScbID, st)
		}
		ch <- prometheus.MustNewConstMetric(c.lag, prometheus.GaugeValue, s.OldestUnfinalized, s.ScbID)
		ch <- prometheus.MustNewConstMetric(c.acked, prometheus.GaugeValue, float64(s.FailedAcknowledged), s.ScbID)
		ch <- prometheus.MustNewConstMetric(c.oldestQ, prometheus.GaugeValue, s.OldestQueuedAgeSec, s.ScbID)
	}
	ch <- prometheus.MustNewConstMetric(c.pending, prometheus.GaugeValue, float64(rep.DBISCommitted))
}
