package ledger

import (
	"context"
	"fmt"
)

// AnalyzeNewTables gathers statistics for the ledger tables of a new database as soon as they
// have rows (dl_analyze_new_tables, db/functions/statistics.sql): until then the plans sessions
// make for the foreign keys' checks can read every row of a ledger per look-up. It returns how
// many of the tables are still empty and unanalysed; 0 means there is nothing left to do.
func AnalyzeNewTables(ctx context.Context, db DBTX) (pending int, err error) {
	if err := db.QueryRow(ctx, `SELECT dl_analyze_new_tables()`).Scan(&pending); err != nil {
		return 0, fmt.Errorf("analyze new tables: %w", err)
	}
	return pending, nil
}
