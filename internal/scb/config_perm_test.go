package scb

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
)

// TestURLMustBeHTTPS: an SCB's API URL is https://, or http:// to this machine only; a refusal
// names the SCB and the setting, wherever the URL came from.
func TestURLMustBeHTTPS(t *testing.T) {
	ok := []string{
		"https://scb1.example.com", "https://scb1.example.com:8443/api/", "https://10.1.2.3", "HTTPS://SCB.EXAMPLE.COM",
		"http://127.0.0.1:9001", "http://127.8.9.10", "http://[::1]:9001/prefix", "http://localhost:9001", "http://LOCALHOST",
		"http://localhost.:80", "http://[::ffff:127.0.0.1]:9001", "https://localhost",
	}
	refused := []string{
		"http://scb1.example.com", "http://10.0.0.1:9001", "http://192.168.1.10", "http://0.0.0.0:9001", "http://[::]:9001",
		"http://127.0.0.1.nip.io", "http://localhost.example.com", "http://my-localhost", "http://2130706433",
		"http://[fe80::1%25eth0]:80", "http://[::2]", "http://128.0.0.1",
	}
	for _, u := range ok {
		c := Config{ID: "SCB-1", BaseURL: u, APIKey: secret}
		if err := c.Validate(); err != nil {
			t.Errorf("%s refused: %v", u, err)
		}
	}
	for _, u := range refused {
		c := Config{ID: "SCB-1", BaseURL: u, APIKey: secret}
		err := c.Validate()
		if err == nil {
			t.Errorf("%s accepted", u)
			continue
		}
		for _, want := range []string{"SCB SCB-1", "SCB_SCB_1_API_URL", "config file's url", "https://", "loopback"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%s: %v, want it to mention %q", u, err, want)
			}
		}
		if _, err := NewClient(c, nil); err == nil {
			t.Errorf("NewClient accepted %s", u)
		}
		// From the environment and from a config file alike.
		if _, err := Load([]string{"SCB_SCB_1_API_URL=" + u, "SCB_SCB_1_API_KEY=" + secret}, []string{"SCB-1"}, ""); err == nil ||
			!strings.Contains(err.Error(), "SCB_SCB_1_API_URL") {
			t.Errorf("Load from env accepted %s: %v", u, err)
		}
		path := writeFile(t, t.TempDir(), "scbs.json", `{"scbs":{"SCB-1":{"url":"`+u+`","api_key":"`+secret+`"}}}`, 0o600)
		if _, err := Load(nil, []string{"SCB-1"}, path); err == nil || !strings.Contains(err.Error(), "SCB SCB-1") {
			t.Errorf("Load from file accepted %s: %v", u, err)
		}
	}
	// http:// to loopback is what the simulator and tests use: a client is built.
	if _, err := NewClient(Config{ID: "SCB-1", BaseURL: "http://127.0.0.1:1", APIKey: secret}, nil); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, dir, name, text string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil { // not subject to the umask
		t.Fatal(err)
	}
	return p
}

func privateDir(t *testing.T) string {
	t.Helper()
	d := filepath.Join(t.TempDir(), "conf")
	if err := os.Mkdir(d, 0o700); err != nil {
		t.Fatal(err)
	}
	return d
}

// TestConfigFilePermissions: a config or key file that someone else could change is refused,
// with the path, the mode, the owner and the fix; so is a key every user can read.
func TestConfigFilePermissions(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no POSIX modes and owners")
	}
	const withKey = `{"scbs":{"SCB-1":{"url":"https://scb1.example.com","api_key":"` + secret + `"}}}`
	const withKeyFile = `{"scbs":{"SCB-1":{"url":"https://scb1.example.com","api_key_file":"scb1.key"}}}`
	const simple = "SCB_SCB_1_API_URL=https://scb1.example.com\nSCB_SCB_1_API_KEY=" + secret + "\n"
	const noKey = "SCB_SCB_1_API_URL=https://scb1.example.com\n"

	load := func(path string) error {
		_, err := LoadConfigFile(path)
		return err
	}
	refusedWith := func(name string, err error, wants ...string) {
		t.Helper()
		if err == nil {
			t.Errorf("%s: accepted", name)
			return
		}
		for _, w := range wants {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %v\nwant it to mention %q", name, err, w)
			}
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("%s: the error shows the key: %v", name, err)
		}
	}

	for _, c := range []struct {
		text string
		mode os.FileMode
	}{{withKey, 0o600}, {withKey, 0o400}, {withKey, 0o640}, {simple, 0o600}, {noKey, 0o644}} {
		if err := load(writeFile(t, privateDir(t), "scbs.conf", c.text, c.mode)); err != nil {
			t.Errorf("mode %04o: %v", c.mode, err)
		}
	}
	for _, c := range []struct {
		text  string
		mode  os.FileMode
		wants []string
	}{
		{withKey, 0o620, []string{"writable by its group", "mode 0620", "owner uid", "chmod go-w"}},
		{noKey, 0o602, []string{"writable by all users", "mode 0602", "chmod go-w"}},
		{noKey, 0o666, []string{"writable by its group and all users", "mode 0666"}},
		{withKey, 0o644, []string{"holds an API key and every user of this machine can read it", "mode 0644", "chmod o-rwx"}},
		{simple, 0o604, []string{"every user of this machine can read it", "mode 0604"}},
	} {
		p := writeFile(t, privateDir(t), "scbs.conf", c.text, c.mode)
		err := load(p)
		refusedWith("mode "+c.mode.String(), err, append(c.wants, "SCB config file "+p)...)
		// Load (the worker's path, --scb-config or DUALLEDGER_SCB_CONFIG) refuses it too.
		if _, err := Load(nil, []string{"SCB-1"}, p); err == nil {
			t.Errorf("Load accepted mode %04o", c.mode)
		}
	}

	// Key files: the same rules, and never readable by all.
	for mode, wants := range map[os.FileMode][]string{
		0o660: {"SCB SCB-1 api_key_file", "writable by its group", "mode 0660"},
		0o644: {"SCB SCB-1 api_key_file", "every user of this machine can read it", "mode 0644"},
	} {
		dir := privateDir(t)
		writeFile(t, dir, "scb1.key", secret+"\n", mode)
		refusedWith("key file "+mode.String(), load(writeFile(t, dir, "scbs.json", withKeyFile, 0o600)), wants...)
	}
	dir := privateDir(t)
	writeFile(t, dir, "scb1.key", secret+"\n", 0o400)
	if got, err := LoadConfigFile(writeFile(t, dir, "scbs.json", withKeyFile, 0o644)); err != nil || got["SCB-1"].APIKey != secret {
		t.Errorf("key file 0400, config without a key 0644: %v", err)
	}

	// The folder: writable by others without the sticky bit is refused; sticky (like /tmp) is fine.
	open := filepath.Join(t.TempDir(), "open")
	if err := os.Mkdir(open, 0o700); err != nil {
		t.Fatal(err)
	}
	p := writeFile(t, open, "scbs.conf", withKey, 0o600)
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	refusedWith("folder 0777", load(p), "in folder "+open, "writable by its group and all users", "mode 0777", "chmod go-w")
	if err := os.Chmod(open, 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	if err := load(p); err != nil {
		t.Errorf("sticky folder: %v", err)
	}

	// A symlink is judged by the file it points to.
	dir = privateDir(t)
	target := writeFile(t, dir, "real.conf", withKey, 0o600)
	link := filepath.Join(dir, "link.conf")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if err := load(link); err != nil {
		t.Errorf("symlink to a good file: %v", err)
	}
	if err := os.Chmod(target, 0o666); err != nil {
		t.Fatal(err)
	}
	refusedWith("symlink to a writable file", load(link), "writable by")

	// Not a regular file.
	refusedWith("a folder", load(privateDir(t)), "not a regular file")
	fifo := filepath.Join(privateDir(t), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err == nil {
		refusedWith("a FIFO", load(fifo), "not a regular file")
	}
}

// TestConfigFileOwner: a file (or key file) owned by another user is refused, with the fix; a
// folder owned by another user (not root) too. Changing owners needs root, which the tests here
// run as; elsewhere the rule is checked on the file's real owner against another uid.
func TestConfigFileOwner(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no POSIX owners")
	}
	const withKey = `{"scbs":{"SCB-1":{"url":"https://scb1.example.com","api_key":"` + secret + `"}}}`
	p := writeFile(t, privateDir(t), "scbs.conf", withKey, 0o600)
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	me := os.Geteuid()
	err = checkFile(p, "SCB config file", fi, ownerOf(fi), me+1)
	if err == nil || !strings.Contains(err.Error(), "is not owned by the user this process runs as") ||
		!strings.Contains(err.Error(), "chown ") || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("owned by uid %d, running as %d: %v", me, me+1, err)
	}

	if me != 0 {
		t.Skip("chown to another user needs root")
	}
	const other = 54321
	if err := os.Chown(p, other, other); err != nil {
		t.Fatal(err)
	}
	_, err = LoadConfigFile(p)
	if err == nil || !strings.Contains(err.Error(), "owner uid 54321") || !strings.Contains(err.Error(), "it runs as uid 0") ||
		!strings.Contains(err.Error(), "chown root "+p) || !strings.Contains(err.Error(), p) {
		t.Errorf("file owned by another user: %v", err)
	}

	dir := privateDir(t)
	writeFile(t, dir, "scb1.key", secret, 0o600)
	kp := filepath.Join(dir, "scb1.key")
	if err := os.Chown(kp, other, other); err != nil {
		t.Fatal(err)
	}
	_, err = LoadConfigFile(writeFile(t, dir, "scbs.json", `{"scbs":{"SCB-1":{"url":"https://x","api_key_file":"scb1.key"}}}`, 0o600))
	if err == nil || !strings.Contains(err.Error(), "SCB SCB-1 api_key_file "+kp) || !strings.Contains(err.Error(), "owner uid 54321") {
		t.Errorf("key file owned by another user: %v", err)
	}

	dir = privateDir(t)
	p = writeFile(t, dir, "scbs.conf", withKey, 0o600)
	if err := os.Chown(dir, other, other); err != nil {
		t.Fatal(err)
	}
	_, err = LoadConfigFile(p)
	if err == nil || !strings.Contains(err.Error(), "in folder "+dir+", owned by another user") {
		t.Errorf("folder owned by another user: %v", err)
	}
}
