package sim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"dualledger/internal/scb"
)

// buildBinary builds the real dualledger command once per test run.
func buildBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the dualledger binary")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to build dualledger with")
	}
	bin := filepath.Join(t.TempDir(), "dualledger")
	cmd := exec.Command(goBin, "build", "-o", bin, "dualledger/cmd/dualledger")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// simProcess is a running `dualledger scb-sim`.
type simProcess struct {
	cmd    *exec.Cmd
	url    string
	stderr *lockedBuffer
	exited chan error
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
func (l *lockedBuffer) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

func startProcess(t *testing.T, bin, dir string, extra ...string) *simProcess {
	t.Helper()
	args := append([]string{"scb-sim", "--id", "SCB-1", "--addr", "127.0.0.1:0", "--data-dir", dir, "--json", "--final-after", "1h"}, extra...)
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "SCB_SIM_API_KEY="+apiKey, "SCB_SIM_ADMIN_KEY="+adminKey)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &simProcess{cmd: cmd, stderr: &lockedBuffer{}, exited: make(chan error, 1)}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-p.exited
		}
	})
	var hello struct {
		Listening string `json:"listening"`
		Entries   int    `json:"entries"`
	}
	decoded := make(chan error, 1)
	go func() { decoded <- json.NewDecoder(stdout).Decode(&hello) }()
	select {
	case err := <-decoded:
		if err != nil {
			t.Fatalf("scb-sim did not say where it listens: %v\n%s", err, p.stderr)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("scb-sim did not start\n%s", p.stderr)
	}
	p.url = "http://" + hello.Listening
	return p
}

// stop sends sig and waits for the exit; it returns the exit code.
func (p *simProcess) stop(t *testing.T, sig syscall.Signal) int {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.exited:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0
	case <-time.After(15 * time.Second):
		t.Fatalf("scb-sim did not exit on %v\n%s", sig, p.stderr)
	}
	return -1
}

func adminCall(t *testing.T, url, method, path, body string) []byte {
	t.Helper()
	req, _ := http.NewRequestWithContext(context.Background(), method, url+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+adminKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, b.String())
	}
	return b.Bytes()
}

func processStats(t *testing.T, url string) Stats {
	t.Helper()
	var st Stats
	if err := json.Unmarshal(adminCall(t, url, "GET", "/v1/admin/stats?per_key=1", ""), &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// TestProcessRestart runs the real `dualledger scb-sim`, posts (one answer dropped after commit),
// stops it with SIGTERM, restarts it on the same data dir, kills it with SIGKILL right after an
// answer, and restarts it again: every replay answers as before and every key is posted once.
func TestProcessRestart(t *testing.T) {
	bin := buildBinary(t)
	dir := filepath.Join(t.TempDir(), "scb-SCB-1")
	ctx := context.Background()

	p := startProcess(t, bin, dir)
	c := env0client(t, p.url, 5*time.Second)
	ids := map[string]string{}
	for i := range 3 {
		res, err := c.Post(ctx, entry(fmt.Sprintf("r%d", i)))
		if err != nil {
			t.Fatal(err)
		}
		ids[fmt.Sprintf("r%d", i)] = res.SCBEntryID
	}
	adminCall(t, p.url, "POST", "/v1/admin/faults", `{"drop_after_commit_rate": 1}`)
	if _, err := c.Post(ctx, entry("r3")); !scb.IsRetryable(err) {
		t.Fatalf("dropped answer: %v", err)
	}
	// A second simulator on the same data dir must refuse to start (exit 3).
	second := exec.Command(bin, "scb-sim", "--id", "SCB-1", "--addr", "127.0.0.1:0", "--data-dir", dir, "--api-key", "k")
	out, err := second.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 || !strings.Contains(string(out), "in use") {
		t.Fatalf("second simulator on the dir: %v %s", err, out)
	}
	if code := p.stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("SIGTERM: exit %d\n%s", code, p.stderr)
	}

	p = startProcess(t, bin, dir)
	c = env0client(t, p.url, 5*time.Second)
	for ref, id := range ids {
		res, err := c.Post(ctx, entry(ref))
		if err != nil || !res.Replayed || res.SCBEntryID != id {
			t.Fatalf("replay of %s after restart: %+v %v (want %s)", ref, res, err, id)
		}
	}
	res, err := c.Post(ctx, entry("r3")) // its first answer was dropped: the retry finds it posted
	if err != nil || !res.Replayed {
		t.Fatalf("retry of the dropped post after restart: %+v %v", res, err)
	}
	res, err = c.Post(ctx, entry("r4"))
	if err != nil || res.Replayed {
		t.Fatalf("new post: %+v %v", res, err)
	}
	// The answer was given, so it is on disk: a kill -9 now must not lose it.
	p.stop(t, syscall.SIGKILL)

	p = startProcess(t, bin, dir)
	c = env0client(t, p.url, 5*time.Second)
	again, err := c.Post(ctx, entry("r4"))
	if err != nil || !again.Replayed || again.SCBEntryID != res.SCBEntryID {
		t.Fatalf("after kill -9: %+v %v (want %s)", again, err, res.SCBEntryID)
	}
	st := processStats(t, p.url)
	if st.Posts != 5 || st.Keys != 5 || st.DuplicatePosts != 0 || len(st.PerKeyPosts) != 5 {
		t.Fatalf("stats %+v", st)
	}
	for k, n := range st.PerKeyPosts {
		if n != 1 {
			t.Fatalf("%s posted %d times", k, n)
		}
	}
	if code := p.stop(t, syscall.SIGINT); code != 0 {
		t.Fatalf("SIGINT: exit %d\n%s", code, p.stderr)
	}

	// Usage errors exit 2.
	for _, args := range [][]string{{"scb-sim", "--api-key", "k"}, {"scb-sim", "--id", "X", "--api-key", "k", "--error-rate", "2"}} {
		out, err := exec.Command(bin, args...).CombinedOutput()
		if !errors.As(err, &ee) || ee.ExitCode() != 2 {
			t.Fatalf("%v: %v %s", args, err, out)
		}
	}
}
