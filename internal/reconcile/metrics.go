package reconcile

import (
	"context"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// Collector exports the state of reconciliation on every scrape, read from the database (so
// every serve process reports the same, whichever ran the reconciliation):
//
//	dualledger_reconcile_open_discrepancies{scb, kind}          live, not RESOLVED
//	dualledger_reconcile_oldest_open_discrepancy_seconds{scb}   age of the oldest of them
//	dualledger_reconcile_last_success_timestamp_seconds{scb}    when the last good run finished
//	dualledger_reconcile_last_run_failed{scb}                   1 if the SCB's latest run failed or was abandoned
type Collector struct {
	pool *pgxpool.Pool
	log  *slog.Logger

	open, oldest, lastOK, lastFailed *prometheus.Desc
}

// NewCollector returns a Collector reading through pool (SELECT on the reconciliation tables:
// dualledger_api or dualledger_readonly).
func NewCollector(pool *pgxpool.Pool, log *slog.Logger) *Collector {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Collector{pool: pool, log: log,
		open: prometheus.NewDesc("dualledger_reconcile_open_discrepancies",
			"Discrepancies with the member banks that are live (not cleared) and not RESOLVED.", []string{"scb", "kind"}, nil),
		oldest: prometheus.NewDesc("dualledger_reconcile_oldest_open_discrepancy_seconds",
			"Age of the oldest open discrepancy of the SCB (first seen).", []string{"scb"}, nil),
		lastOK: prometheus.NewDesc("dualledger_reconcile_last_success_timestamp_seconds",
			"When the SCB's last successful reconciliation run finished (Unix time).", []string{"scb"}, nil),
		lastFailed: prometheus.NewDesc("dualledger_reconcile_last_run_failed",
			"1 when the SCB's latest reconciliation run failed or was abandoned.", []string{"scb"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.open
	ch <- c.oldest
	ch <- c.lastOK
	ch <- c.lastFailed
}

// Collect implements prometheus.Collector. A database error is logged and the metrics are
// left out of that scrape (absent, not zero: an alert on absence catches it).
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	rows, err := c.pool.Query(ctx, `SELECT scb_id, kind, count(*), extract(epoch FROM now() - min(first_seen_at))
		FROM reconciliation_discrepancies WHERE cleared_at IS NULL AND status <> 'RESOLVED' GROUP BY scb_id, kind`)
	if err != nil {
		c.log.Warn("reconcile metrics", "err", err)
		return
	}
	oldest := map[string]float64{}
	for rows.Next() {
		var (
			scbID, kind string
			n           int64
			age         float64
		)
		if err := rows.Scan(&scbID, &kind, &n, &age); err != nil {
			c.log.Warn("reconcile metrics", "err", err)
			rows.Close()
			return
		}
		ch <- prometheus.MustNewConstMetric(c.open, prometheus.GaugeValue, float64(n), scbID, kind)
		oldest[scbID] = max(oldest[scbID], age)
	}
	rows.Close()
	if rows.Err() != nil {
		c.log.Warn("reconcile metrics", "err", rows.Err())
		return
	}
	// Every registered bank gets the gauges, so that "no discrepancy" is a 0 and not an absence.
	rows, err = c.pool.Query(ctx, `SELECT b.id,
		(SELECT extract(epoch FROM r.finished_at) FROM reconciliation_runs r WHERE r.scb_id = b.id AND r.status = 'ok' ORDER BY r.id DESC LIMIT 1),
		coalesce((SELECT r.status IN ('failed', 'abandoned') FROM reconciliation_runs r WHERE r.scb_id = b.id ORDER BY r.id DESC LIMIT 1), false)
		FROM banks b ORDER BY b.id`)
	if err != nil {
		c.log.Warn("reconcile metrics", "err", err)
		return
	}
	defer rows.Close()
	for rows.Next() {
		var (
			scbID  string
			lastOK *float64
			failed bool
		)
		if err := rows.Scan(&scbID, &lastOK, &failed); err != nil {
			c.log.Warn("reconcile metrics", "err", err)
			return
		}
		ch <- prometheus.MustNewConstMetric(c.oldest, prometheus.GaugeValue, oldest[scbID], scbID)
		if lastOK != nil {
			ch <- prometheus.MustNewConstMetric(c.lastOK, prometheus.GaugeValue, *lastOK, scbID)
		}
		f := 0.0
		if failed {
			f = 1
		}
		ch <- prometheus.MustNewConstMetric(c.lastFailed, prometheus.GaugeValue, f, scbID)
	}
}
