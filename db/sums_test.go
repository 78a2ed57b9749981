package db_test

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"
	"testing"

	"dualledger/db"
)

// sumFile is db/migrations.sum: one line "<sha256>  <file>" per migration, in `sha256sum` format
// (`cd db/migrations && sha256sum -c ../migrations.sum` checks it too).
const sumFile = "migrations.sum"

var updateSums = flag.Bool("update", false, "append the line of each new migration to db/migrations.sum (make sums); existing lines are never changed")

// TestMigrationSums: every migration has its line in db/migrations.sum and its content still has
// that sha256; no line names a file that is gone. Migrations are append-only: an applied
// migration is never edited (the change goes into a new migration, or into db/functions for a
// function body), so an edit fails here, in `make test` and CI, before it reaches a database.
// `make sums` (this test with -update) appends the lines of new migrations and nothing else.
func TestMigrationSums(t *testing.T) {
	recorded, order, err := readSums(sumFile)
	if err != nil {
		t.Fatal(err)
	}
	names, err := fs.Glob(db.FS(), "migrations/*.sql")
	if err != nil {
		t.Fatal(err)
	}
	present := map[string]bool{}
	var added []string
	for _, p := range names {
		name := path.Base(p)
		present[name] = true
		body, err := fs.ReadFile(db.FS(), p)
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.Sum256(body)
		sum := hex.EncodeToString(h[:])
		want, ok := recorded[name]
		switch {
		case !ok && *updateSums:
			added = append(added, sum+"  "+name)
		case !ok:
			t.Errorf("%s has no line in db/%s: a new migration? run `make sums` to append it", name, sumFile)
		case want != sum:
			t.Errorf("%s was edited after it was recorded (sha256 %s, db/%s says %s): applied migrations are never "+
				"edited; revert it (git checkout db/migrations/%s) and put the change in a new migration, or in "+
				"db/functions for a function body (docs/architecture.md, \"Schema evolution\")", name, sum, sumFile, want, name)
		}
	}
	for _, name := range order {
		if !present[name] {
			t.Errorf("db/%s names %s, which is not in db/migrations: migrations are never removed", sumFile, name)
		}
	}
	if len(added) == 0 || t.Failed() {
		return
	}
	f, err := os.OpenFile(sumFile, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range added {
		if _, err := fmt.Fprintln(f, line); err != nil {
			t.Fatal(err)
		}
		t.Logf("appended to db/%s: %s", sumFile, line)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// readSums parses the sum file: name -> sha256, and the names in file order.
func readSums(file string) (map[string]string, []string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, nil, fmt.Errorf("read db/%s: %w", file, err)
	}
	sums := map[string]string{}
	var order []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		sum, name, ok := strings.Cut(sc.Text(), "  ")
		if !ok || len(sum) != 64 || name == "" {
			return nil, nil, fmt.Errorf("db/%s:%d: want \"<sha256>  <file>\", got %q", file, n, sc.Text())
		}
		if _, dup := sums[name]; dup {
			return nil, nil, fmt.Errorf("db/%s:%d: %s listed twice", file, n, name)
		}
		sums[name] = sum
		order = append(order, name)
	}
	return sums, order, sc.Err()
}
