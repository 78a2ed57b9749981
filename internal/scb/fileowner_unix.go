//go:build unix

package scb

import (
	"os"
	"syscall"
)

// ownerOf is the uid that owns the file described by fi.
func ownerOf(fi os.FileInfo) fileOwner {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return fileOwner{uid: int(st.Uid), ok: true}
	}
	return fileOwner{}
}
