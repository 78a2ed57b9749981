package integrity

import (
	"flag"
	"os"
	"testing"
)

var update = flag.Bool("update", false, "rewrite scripts/audit-balances.sql and scripts/verify-column-names.sql from checks/*.sql")

const (
	auditScriptPath  = "../../scripts/audit-balances.sql"
	columnScriptPath = "../../scripts/verify-column-names.sql"
)

// TestAuditScriptGenerated fails while scripts/audit-balances.sql is not what auditScript
// generates from checks/*.sql; -update rewrites it.
func TestAuditScriptGenerated(t *testing.T) {
	// Every file of checks/ is a check Audit runs (no stray copy of a rule).
	files, err := checkFiles.ReadDir("checks")
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	for _, c := range auditChecks() {
		listed[c.file] = true
	}
	if len(files) != len(listed) {
		t.Fatalf("checks/ holds %d files, Audit runs %d checks", len(files), len(listed))
	}
	for _, f := range files {
		if !listed[f.Name()] {
			t.Fatalf("checks/%s is not one of Audit's checks", f.Name())
		}
	}
	for path, want := range map[string]string{auditScriptPath: auditScript(), columnScriptPath: columnScript()} {
		if *update {
			if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != want {
			t.Fatalf("%s is not generated from internal/integrity/checks/*.sql: run go test ./internal/integrity -run TestAuditScriptGenerated -update", path)
		}
	}
}
