package scb

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
)

// maxConfigFile bounds what is read of a config or key file: both are small, and a path to a
// device or a huge file must not hang or exhaust the worker.
const maxConfigFile = 1 << 20

// fileOwner is the uid that owns a file, if the platform says (fileowner_unix.go).
type fileOwner struct {
	uid int
	ok  bool
}

// readProtected reads a config or key file (what names it in errors, e.g. "SCB config file")
// after checking, on the open file itself (so that it cannot be swapped between check and read),
// that only the user this process runs as can change it:
//
//   - it is a regular file owned by that user (os.Geteuid), not writable by group or others;
//   - its folder is not writable by group or others (unless sticky, like /tmp) and is owned by
//     that user or root, so that no one else can replace the file.
//
// Whoever can change the file can point the worker at another server or replace an API key. A
// refusal says the path, the mode, the owner and the command that fixes it.
func readProtected(path, what string) ([]byte, os.FileInfo, error) {
	// Refuse what is not a regular file before opening it: opening a FIFO would wait for a
	// writer, a device could be endless.
	before, err := os.Stat(path)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", what, err)
	}
	if !before.Mode().IsRegular() {
		return nil, nil, fmt.Errorf("%s %s is not a regular file (%s)", what, path, before.Mode().Type())
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", what, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", what, err)
	}
	if !os.SameFile(before, fi) {
		return nil, nil, fmt.Errorf("%s %s changed while it was being read: try again", what, path)
	}
	euid := os.Geteuid()
	if err := checkFile(path, what, fi, ownerOf(fi), euid); err != nil {
		return nil, nil, err
	}
	dir := filepath.Dir(path)
	if di, err := os.Stat(dir); err == nil {
		if err := checkDir(path, dir, what, di, ownerOf(di), euid); err != nil {
			return nil, nil, err
		}
	}
	data, err := io.ReadAll(io.LimitReader(f, maxConfigFile+1))
	if err != nil {
		return nil, nil, fmt.Errorf("%s %s: %w", what, path, err)
	}
	if len(data) > maxConfigFile {
		return nil, nil, fmt.Errorf("%s %s is larger than %d bytes: is it the right file?", what, path, maxConfigFile)
	}
	return data, fi, nil
}

// checkFile applies readProtected's rules to the file. euid < 0 (no such thing on the platform)
// and an unknown owner skip the owner rule.
func checkFile(path, what string, fi os.FileInfo, owner fileOwner, euid int) error {
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s %s is not a regular file (%s)", what, path, fi.Mode().Type())
	}
	if euid < 0 {
		return nil // no owners and modes to speak of (Windows): the platform's ACLs apply
	}
	state := describeFile(fi, owner)
	if owner.ok && owner.uid != euid {
		return fmt.Errorf("%s %s is not owned by the user this process runs as (%s; it runs as %s): "+
			"whoever owns it can point the worker at another server or replace an API key; fix: chown %s %s && chmod 600 %s",
			what, path, state, describeUID(euid), userArg(euid), shellQuote(path), shellQuote(path))
	}
	if perm := fi.Mode().Perm(); perm&0o022 != 0 {
		return fmt.Errorf("%s %s is writable by %s (%s): anyone who can write it can point the worker at another server or "+
			"replace an API key; fix: chmod go-w %s (600 is best: only its owner reads it)",
			what, path, writers(perm), state, shellQuote(path))
	}
	return nil
}

// checkKeyReadable refuses a file holding an API key that every user of the machine can read.
func checkKeyReadable(path, what string, fi os.FileInfo, euid int) error {
	if euid < 0 || fi.Mode().Perm()&0o004 == 0 {
		return nil
	}
	return fmt.Errorf("%s %s holds an API key and every user of this machine can read it (%s): fix: chmod o-rwx %s (600 is best)",
		what, path, describeFile(fi, ownerOf(fi)), shellQuote(path))
}

// checkDir applies readProtected's rules to the file's folder.
func checkDir(path, dir, what string, di os.FileInfo, owner fileOwner, euid int) error {
	if euid < 0 {
		return nil
	}
	state := describeFile(di, owner)
	if perm := di.Mode().Perm(); perm&0o022 != 0 && di.Mode()&fs.ModeSticky == 0 {
		return fmt.Errorf("%s %s is in folder %s, which is writable by %s (%s): anyone who can write there can replace the file; "+
			"fix: chmod go-w %s, or move the file to a folder only you can write",
			what, path, dir, writers(perm), state, shellQuote(dir))
	}
	if owner.ok && owner.uid != euid && owner.uid != 0 {
		return fmt.Errorf("%s %s is in folder %s, owned by another user (%s; this process runs as %s), who can replace the file; "+
			"fix: move the file to a folder owned by you or root",
			what, path, dir, state, describeUID(euid))
	}
	return nil
}

// writers names who may write a file of mode perm besides its owner.
func writers(perm fs.FileMode) string {
	switch {
	case perm&0o020 != 0 && perm&0o002 != 0:
		return "its group and all users"
	case perm&0o020 != 0:
		return "its group"
	}
	return "all users"
}

// describeFile is "mode 0664, owner uid 1000 (alice)".
func describeFile(fi os.FileInfo, owner fileOwner) string {
	s := fmt.Sprintf("mode %04o", uint32(fi.Mode().Perm())|stickyBits(fi.Mode()))
	if owner.ok {
		s += ", owner " + describeUID(owner.uid)
	}
	return s
}

func stickyBits(m fs.FileMode) uint32 {
	var b uint32
	if m&fs.ModeSticky != 0 {
		b |= 0o1000
	}
	if m&fs.ModeSetgid != 0 {
		b |= 0o2000
	}
	if m&fs.ModeSetuid != 0 {
		b |= 0o4000
	}
	return b
}

// describeUID is "uid 1000 (alice)", or "uid 1000" when the name is unknown.
func describeUID(uid int) string {
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil && u.Username != "" {
		return fmt.Sprintf("uid %d (%s)", uid, u.Username)
	}
	return fmt.Sprintf("uid %d", uid)
}

// userArg is the user for a chown command: the name if known, else the uid.
func userArg(uid int) string {
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil && u.Username != "" {
		return shellQuote(u.Username)
	}
	return strconv.Itoa(uid)
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("/._-+:@,%", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
