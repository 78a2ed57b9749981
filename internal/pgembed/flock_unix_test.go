package pgembed

import (
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestEmbeddedFlockPerOpenFile checks the property the sharing design relies
// on: flock locks belong to open file descriptions, so two opens of the same
// file in one process conflict just as two processes would.
func TestEmbeddedFlockPerOpenFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "inuse.lock")
	a, err := openLockFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer a.close()
	b, err := openLockFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer b.close()

	if ok, err := a.tryLock(syscall.LOCK_SH); !ok || err != nil {
		t.Fatalf("shared lock on a: %v %v", ok, err)
	}
	if ok, err := b.tryLock(syscall.LOCK_SH); !ok || err != nil {
		t.Fatalf("second shared lock on b: %v %v", ok, err)
	}
	b.close()
	c, err := openLockFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	if ok, err := c.tryLock(syscall.LOCK_EX); ok || err != nil {
		t.Fatalf("exclusive lock on c succeeded while a holds a shared lock: %v %v", ok, err)
	}
	a.close()
	// A child process forked by a test running in parallel (initdb, pg_ctl) holds a copy of every
	// descriptor between its fork and its exec (which closes them: O_CLOEXEC), so the lock may
	// outlive a.close() by that moment; it must be gone soon after.
	deadline := time.Now().Add(5 * time.Second)
	for {
		ok, err := c.tryLock(syscall.LOCK_EX)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("exclusive lock on c still refused 5 s after a closed")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
