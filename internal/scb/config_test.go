package scb

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const secret = "sk_live_TOPSECRET_0123456789"

func TestEnvName(t *testing.T) {
	for in, want := range map[string]string{"SCB-1": "SCB_1", "SCB_1": "SCB_1", "bank.x/ü": "bank_x___"} {
		if got := EnvName(in); got != want {
			t.Errorf("EnvName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestConfigFromEnvSpellings(t *testing.T) {
	env := []string{
		"SCB_SCB-1_API_URL=http://one", "SCB_SCB-1_API_KEY=k1", // as written (env(1), systemd)
		"SCB_SCB_2_API_URL=http://two", "SCB_SCB_2_API_KEY=k2", "SCB_SCB_2_TIMEOUT=2.5", // shell-safe
		"SCB_scb_3_API_URL=http://three", "SCB_SCB_3_API_KEY=k3", "SCB_scb-3_TIMEOUT=3s", // mixed, upper-case fallback
		"UNRELATED=x",
	}
	got, err := ConfigFromEnv(env, []string{"SCB-1", "SCB-2", "scb-3", "SCB-4"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Config{
		"SCB-1": {ID: "SCB-1", BaseURL: "http://one", APIKey: "k1"},
		"SCB-2": {ID: "SCB-2", BaseURL: "http://two", APIKey: "k2", Timeout: 2500 * time.Millisecond},
		"scb-3": {ID: "scb-3", BaseURL: "http://three", APIKey: "k3", Timeout: 3 * time.Second},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d configs, want %d: %v", len(got), len(want), got)
	}
	for id, w := range want {
		if got[id] != w {
			t.Errorf("%s: got %#v, want %#v", id, got[id], w)
		}
	}
}

func TestConfigFromEnvConflicts(t *testing.T) {
	_, err := ConfigFromEnv([]string{"SCB_SCB-1_API_KEY=" + secret, "SCB_SCB_1_API_KEY=other"}, []string{"SCB-1"})
	if err == nil || !strings.Contains(err.Error(), "different values") {
		t.Fatalf("two spellings with different keys: err = %v", err)
	}
	if strings.Contains(err.Error(), secret) {
		t.Fatalf("the error shows the key: %v", err)
	}
	// The same value under both spellings is fine.
	if _, err := ConfigFromEnv([]string{"SCB_SCB-1_API_KEY=k", "SCB_SCB_1_API_KEY=k"}, []string{"SCB-1"}); err != nil {
		t.Fatal(err)
	}
	// SCB-1 and SCB_1 cannot both be served by SCB_SCB_1_*.
	_, err = ConfigFromEnv([]string{"SCB_SCB_1_API_URL=http://x"}, []string{"SCB-1", "SCB_1"})
	if err == nil || !strings.Contains(err.Error(), "both read") {
		t.Fatalf("shared spelling: err = %v", err)
	}
	if _, err := ConfigFromEnv([]string{"SCB_A_TIMEOUT=soon"}, []string{"A"}); err == nil {
		t.Fatal("bad timeout accepted")
	}
}

func TestLoadConfigFileAndEnvOverride(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "scb2.key")
	if err := os.WriteFile(keyFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	jsonPath := filepath.Join(dir, "scbs.json")
	doc := `{"scbs": {
		"SCB-1": {"url": "https://file-one", "api_key": "file-key", "timeout": "7s"},
		"SCB_2": {"url": "https://file-two", "api_key_file": "scb2.key", "timeout": 4}
	}}`
	if err := os.WriteFile(jsonPath, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"SCB_SCB_1_API_KEY=env-key"}
	got, err := Load(env, []string{"SCB-1", "SCB-2", "SCB-3"}, jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	if c := got["SCB-1"]; c.BaseURL != "https://file-one" || c.APIKey != "env-key" || c.Timeout != 7*time.Second {
		t.Errorf("SCB-1 = %#v (env key must override the file's)", c)
	}
	if c := got["SCB-2"]; c.ID != "SCB-2" || c.APIKey != secret || c.Timeout != 4*time.Second {
		t.Errorf("SCB-2 (file id SCB_2, key from file) = %#v", c)
	}
	if _, ok := got["SCB-3"]; ok {
		t.Error("SCB-3 has no settings and must be absent")
	}

	simple := filepath.Join(dir, "scbs.env")
	text := "# SCBs\nexport SCB_SCB-1_API_URL=\"https://s-one\"\nSCB_SCB-1_API_KEY='k'\nSCB_SCB_2_API_URL=https://s-two\nSCB_SCB_2_API_KEY=k2\nSCB_SCB_2_TIMEOUT=1s\n"
	if err := os.WriteFile(simple, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err = Load(nil, []string{"SCB-1", "SCB-2"}, simple)
	if err != nil {
		t.Fatal(err)
	}
	if c := got["SCB-1"]; c.BaseURL != "https://s-one" || c.APIKey != "k" || c.Timeout != DefaultTimeout {
		t.Errorf("simple SCB-1 = %#v", c)
	}
	if c := got["SCB-2"]; c.BaseURL != "https://s-two" || c.Timeout != time.Second {
		t.Errorf("simple SCB-2 = %#v", c)
	}

	// Both spellings of one SCB in the file (the operators' fire drill): the same values are one
	// setting; different ones refuse that SCB, naming the field, never the values. Before, the
	// entry as written won and the other key was ignored without a word.
	both := filepath.Join(dir, "both.env")
	text = "SCB_SCB-3_API_KEY=wrong3\nSCB_SCB_3_API_KEY=k3\nSCB_SCB_3_API_URL=https://s-three\nSCB_SCB-1_API_URL=https://s-one\n" +
		"SCB_SCB_1_API_URL=https://s-one\nSCB_SCB_1_API_KEY=k1\n"
	if err := os.WriteFile(both, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err = Load(nil, []string{"SCB-1", "SCB-3"}, both)
	if c := got["SCB-1"]; c.BaseURL != "https://s-one" || c.APIKey != "k1" {
		t.Errorf("SCB-1 under two spellings with the same URL = %#v", c)
	}
	if _, ok := got["SCB-3"]; ok || err == nil || !strings.Contains(ConfigErrors(err)["SCB-3"], "API_KEY under several spellings") ||
		strings.Contains(err.Error(), "wrong3") || strings.Contains(err.Error(), "k3") {
		t.Errorf("SCB-3 with two keys under two spellings: %v, %v", got["SCB-3"], err)
	}

	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`{"scbs": {"A": {"uri": "http://x"}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadConfigFile(bad); err == nil || !strings.Contains(err.Error(), "uri") {
		t.Errorf("a misspelt field must be an error naming it: %v", err)
	}
}

func TestLoadValidates(t *testing.T) {
	cases := map[string][]string{
		"no API key":           {"SCB_A_API_URL=https://x"},
		"no API URL":           {"SCB_A_API_KEY=" + secret},
		"https:// with a host": {"SCB_A_API_URL=ftp://x", "SCB_A_API_KEY=" + secret},
		"credentials":          {"SCB_A_API_URL=https://u:" + secret + "@x", "SCB_A_API_KEY=" + secret},
		"query":                {"SCB_A_API_URL=https://x/?token=" + secret, "SCB_A_API_KEY=" + secret},
	}
	for want, env := range cases {
		_, err := Load(env, []string{"A"}, "")
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%v: err = %v, want it to mention %q", env, err, want)
			continue
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("%v: error shows the key: %v", env, err)
		}
	}
}

func TestConfigNeverShowsKey(t *testing.T) {
	c := Config{ID: "SCB-1", BaseURL: "https://x", APIKey: secret, Timeout: time.Second}
	var sb strings.Builder
	slog.New(slog.NewTextHandler(&sb, nil)).Info("config", "scb", c)
	slog.New(slog.NewJSONHandler(&sb, nil)).Info("config", "scb", c)
	j, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := NewClient(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{fmt.Sprint(c), fmt.Sprintf("%v %+v %#v %s", c, c, c, c), fmt.Sprintf("%v %+v", &c, []Config{c}),
		sb.String(), string(j), fmt.Sprintf("%v %+v %#v %s", cl, cl, cl, cl),
		fmt.Sprintf("%v %+v %#v", *cl, *cl, struct{ C Client }{*cl})} {
		if strings.Contains(s, secret) {
			t.Errorf("key shown: %s", s)
		}
	}
}
