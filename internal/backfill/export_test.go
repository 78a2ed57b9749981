package backfill

// SetBeforePost lets the tests delay a batch before it begins, to make the batch after it take
// the ledger's head lock first.
func SetBeforePost(cfg *Config, f func(pos string)) { cfg.beforePost = f }

// SetBeforeAudit lets the tests break a connection just before a periodic audit.
func SetBeforeAudit(cfg *Config, f func()) { cfg.beforeAudit = f }

// SetBeforeFinalAudit lets the tests break a run just before its final audit.
func SetBeforeFinalAudit(cfg *Config, f func()) { cfg.beforeFinalAudit = f }
