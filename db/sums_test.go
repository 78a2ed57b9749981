package db_test

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"slices"
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
	return parseSums(file, b)
}

// parseSums parses the content of a sum file (file names it in errors).
func parseSums(file string, b []byte) (map[string]string, []string, error) {
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

// sumHistoryExceptions are the migrations whose db/migrations.sum line changed after it was first
// committed, each with its whole allowed history (line as first committed, line now). Nothing
// else may be listed here: an applied migration is never edited.
var sumHistoryExceptions = map[string]struct{ firstCommit, first, lastCommit, last string }{
	// 015 was edited once after review, before any database ran it: a0e9898 added it, da3825b
	// (same day, "plans on new tables, after review") kept 013's index names and reordered the
	// builds, and changed its line with it.
	"015_account_index_order.sql": {
		firstCommit: "a0e9898", first: "14419d1b1fc8068a1f2e46e896ac1bfb05a600e748c2b4739d8a83b2f7864560",
		lastCommit: "da3825b", last: "506d75a11dacaaf7ec34cfa04f228d1f06fbec2adce9c009bdc70edcc0ba06e9",
	},
}

// renumberedHistory are the migration numbers whose file name in db/migrations.sum changed
// after it was first committed: the holds branch (f5edf36) kept 012 and 013 free with placeholder
// files while the backfill and reconciliation branches took those numbers, and the merge
// replaced the placeholders. No database outside development ran them. Nothing else may be
// listed here: a migration's number names it for good (a renamed file gets past the checksums,
// which the database records by name, and an upgraded database then differs from a fresh one).
var renumberedHistory = map[string][]string{
	"012": {"012_placeholder.sql", "012_backfill_checkpoints.sql"},
	"013": {"013_placeholder.sql", "013_reconciliation.sql"},
}

// migrationNumber is the version part of a migration's file name ("022" of
// "022_unlimited_accounts_index.sql").
func migrationNumber(name string) string {
	num, _, _ := strings.Cut(name, "_")
	return num
}

// git runs git in the test's directory (db/) with messages in English.
func git(args ...string) (string, error) {
	cmd := exec.Command("git", args...)
	cmd.Env = append(os.Environ(), "LC_ALL=C", "GIT_PAGER=cat")
	out, err := cmd.Output()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return "", fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(ee.Stderr))
	}
	if err != nil {
		return "", fmt.Errorf("git %s: %w", strings.Join(args, " "), err)
	}
	return string(out), nil
}

// TestMigrationSumsMatchHistory: each migration's line in db/migrations.sum is the line first
// committed for it. TestMigrationSums compares the files with the sum file of the same tree, so an
// edit of a migration together with its line passes there; here the line is compared with git's
// history of db/migrations.sum (the first commit whose sum file has a line for the migration:
// migrations 000-010 are older than the sum file, so the commit that added the file may have none),
// with sumHistoryExceptions as the only exceptions. A migration whose line is not committed yet
// (a new one) is left to TestMigrationSums. Skips when git or the history is missing (no git, not
// a git checkout, a shallow clone); CI (.ci/run: make test) runs it on its clone.
func TestMigrationSumsMatchHistory(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed: the history of db/migrations.sum cannot be read")
	}
	prefix, err := git("rev-parse", "--show-prefix")
	if err != nil {
		if strings.Contains(err.Error(), "not a git repository") {
			t.Skipf("not a git checkout, so no history of db/%s to compare with: %v", sumFile, err)
		}
		t.Fatalf("in a git checkout, but git fails (a safe.directory refusal, say): %v", err)
	}
	prefix = strings.TrimSpace(prefix) // "db/"
	if shallow, err := git("rev-parse", "--is-shallow-repository"); err != nil {
		t.Fatal(err)
	} else if strings.TrimSpace(shallow) == "true" {
		t.Skipf("a shallow clone: the history of db/%s is missing (git fetch --unshallow to run this test)", sumFile)
	}
	log, err := git("log", "--reverse", "--topo-order", "--format=%H", "--", sumFile)
	if err != nil {
		t.Fatal(err)
	}
	commits := strings.Fields(log)
	if len(commits) == 0 {
		t.Skipf("db/%s has no committed history here", sumFile)
	}
	type first struct{ commit, sum string }
	firsts := map[string]first{}
	names := map[string][]string{} // migration number -> its file names, in the order first seen
	for _, c := range commits {
		b, err := git("show", c+":"+prefix+sumFile)
		if err != nil {
			t.Fatal(err)
		}
		sums, order, err := parseSums(sumFile+" at "+c[:12], []byte(b))
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range order {
			if num := migrationNumber(name); !slices.Contains(names[num], name) {
				names[num] = append(names[num], name)
			}
		}
		for name, sum := range sums {
			if _, seen := firsts[name]; !seen {
				firsts[name] = first{c, sum}
			}
		}
	}
	recorded, order, err := readSums(sumFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range order {
		now := recorded[name]
		f, ok := firsts[name]
		if !ok {
			t.Logf("%s: its line is not committed yet (a new migration)", name)
			continue
		}
		if ex, ok := sumHistoryExceptions[name]; ok {
			if !strings.HasPrefix(f.commit, ex.firstCommit) || f.sum != ex.first || now != ex.last {
				t.Errorf("%s: its line was first committed in %s as %s and is now %s; the one allowed history is %s in %s, "+
					"then %s in %s, and nothing since: applied migrations are never edited", name, f.commit[:12], f.sum, now,
					ex.first, ex.firstCommit, ex.last, ex.lastCommit)
			}
			continue
		}
		if now != f.sum {
			t.Errorf("%s was edited after it was committed: db/%s says %s, but its line as first committed (%s) was %s. "+
				"Applied migrations are never edited, even with their line: restore both (git show %s:%smigrations/%s) and put "+
				"the change in a new migration, or in db/functions for a function body (docs/architecture.md, \"Schema evolution\")",
				name, sumFile, now, f.commit[:12], f.sum, f.commit[:12], prefix, name)
		}
	}
	for name := range sumHistoryExceptions {
		if _, ok := recorded[name]; !ok {
			t.Errorf("sumHistoryExceptions names %s, which has no line in db/%s", name, sumFile)
		}
	}
	// A migration keeps its number and its name: a renamed (or removed) file was applied under its
	// old name, and the database would take the new one for a migration it never ran.
	now := map[string]string{}
	for _, name := range order {
		now[migrationNumber(name)] = name
	}
	for num, seen := range names {
		if allowed := renumberedHistory[num]; len(allowed) > 0 && len(seen) == len(allowed) &&
			!slices.ContainsFunc(seen, func(n string) bool { return !slices.Contains(allowed, n) }) && slices.Contains(allowed, now[num]) {
			continue
		}
		switch {
		case now[num] == "":
			t.Errorf("migration %s (%s) was committed and is gone from db/%s: migrations are never removed", num, seen[0], sumFile)
		case len(seen) > 1:
			t.Errorf("migration %s was committed as %s and is now %s: a migration is never renamed (databases recorded it "+
				"under its first name); restore the name and put a change in a new migration", num, strings.Join(slices.DeleteFunc(slices.Clone(seen),
				func(n string) bool { return n == now[num] }), ", "), now[num])
		}
	}
}
