// This file is the locking primitive of the shared-use rule (see cluster.go). flock(2) rather
// than fcntl locks or pid files: the kernel releases a flock when its holder dies, and flock locks
// conflict per open file, so handles in one process behave as handles in separate processes would.

package pgembed

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"
)

// lockFile is a flock(2) lock on its own open file description.
//
// flock locks belong to the open file description, not to the process, so two
// separate opens of the same path conflict with each other even inside one
// process (unlike fcntl/POSIX record locks). That is what lets one process hold
// several independent Cluster handles, and what makes the kernel drop the lock
// of a crashed process automatically.
type lockFile struct {
	f *os.File
}

// openLockFile opens (creating if needed) path for locking. os.OpenFile sets
// O_CLOEXEC, so postgres (started through pg_ctl) never inherits the fd and can
// never keep one of our locks alive after we are gone.
func openLockFile(path string) (*lockFile, error) {
	// O_NOFOLLOW: the file is created by root beside a data dir the user chose, possibly in a
	// shared directory; a symlink planted there must not make root create or open another file.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	return &lockFile{f: f}, nil
}

// lock takes the lock (syscall.LOCK_SH or syscall.LOCK_EX), waiting until it
// is free or ctx is done. A blocking flock cannot be interrupted by a context,
// so we poll with LOCK_NB and a short, growing back-off instead.
func (l *lockFile) lock(ctx context.Context, how int) error {
	delay := 2 * time.Millisecond
	for {
		ok, err := l.tryLock(how)
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("waiting for lock %s: %w", l.f.Name(), ctx.Err())
		case <-t.C:
		}
		delay = min(delay*2, 100*time.Millisecond)
	}
}

// tryLock attempts the lock without blocking; ok is false if someone else
// holds a conflicting lock.
func (l *lockFile) tryLock(how int) (ok bool, err error) {
	for {
		err = syscall.Flock(int(l.f.Fd()), how|syscall.LOCK_NB)
		switch {
		case err == nil:
			return true, nil
		case errors.Is(err, syscall.EINTR):
			continue
		case errors.Is(err, syscall.EWOULDBLOCK):
			return false, nil
		default:
			return false, fmt.Errorf("flock %s: %w", l.f.Name(), err)
		}
	}
}

// close releases the lock (closing the last fd of the open file description
// drops it) and the file.
func (l *lockFile) close() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}
