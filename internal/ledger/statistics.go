package ledger

import (
	"context"
	"fmt"
)

// AnalyzeNewTables gathers statistics for each ledger table of a new database once it has 16
// pages (dl_analyze_new_tables, db/functions/statistics.sql): until then the plans sessions make
// for the foreign keys' checks can read every row of a ledger per look-up. It returns how many of
// the tables have never been analysed and are still below the 16 pages; 0 means there is nothing
// left to do.
func AnalyzeNewTables(ctx context.Context, db DBTX) (pending int, err error) {
	if err := db.QueryRow(ctx, `SELECT dl_analyze_new_tables()`).Scan(&pending); err != nil {
		return 0, fmt.Errorf("analyze new tables: %w", err)
	}
	return pending, nil
}
