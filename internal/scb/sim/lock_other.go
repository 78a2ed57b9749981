//go:build !unix

package sim

import "io"

type noLock struct{}

func (noLock) Close() error { return nil }

// lockDir is a no-op where flock does not exist: run one simulator per data dir.
func lockDir(string) (io.Closer, error) { return noLock{}, nil }
