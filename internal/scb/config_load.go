package scb

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// envSpellings are the variable-name spellings of id, most literal first: as written
// ("SCB-1", which only env(1) or a process manager can set), shell-safe ("SCB_1") and shell-safe
// upper case.
func envSpellings(id string) []string {
	var out []string
	for _, s := range []string{id, EnvName(id), strings.ToUpper(EnvName(id))} {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// ConfigFromEnv reads SCB_<ID>_API_URL, SCB_<ID>_API_KEY and SCB_<ID>_TIMEOUT (a Go duration or
// seconds) for each of ids, with <ID> spelled as in envSpellings. environ is os.Environ()'s
// shape. It takes the ids because the shell-safe spelling cannot be mapped back to an id
// ("SCB_1" may be "SCB-1" or "SCB_1"). Only ids with at least one variable set are in the result;
// the configs are not validated (the file may supply the rest, see Load). Two spellings set to
// different values are an error for that SCB, because guessing which one the operator meant is
// unsafe; the other SCBs are still returned (with the joined errors), so that one bad entry does
// not stop every delivery.
func ConfigFromEnv(environ []string, ids []string) (map[string]Config, error) {
	out, bad := configFromEnv(environ, ids)
	var errs []error
	for _, id := range ids {
		if err, ok := bad[id]; ok {
			errs = append(errs, err)
		}
	}
	return out, errors.Join(errs...)
}

// configFromEnv is ConfigFromEnv with the error of each SCB it had to leave out.
func configFromEnv(environ []string, ids []string) (map[string]Config, map[string]error) {
	env := make(map[string]string, len(environ))
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	owner := map[string]string{} // variable name -> id, to catch ids that share a spelling
	out := map[string]Config{}
	bad := map[string]error{}
ids:
	for _, id := range ids {
		c, found := Config{ID: id}, false
		for _, field := range []string{"API_URL", "API_KEY", "TIMEOUT"} {
			name, val, err := lookupEnv(env, id, field)
			if err != nil {
				bad[id] = err
				continue ids
			}
			if name == "" {
				continue
			}
			if other, ok := owner[name]; ok && other != id {
				err := fmt.Errorf("SCBs %s and %s both read %s: set the variables with the ids as written", other, id, name)
				bad[id], bad[other] = err, err
				delete(out, other)
				continue ids
			}
			owner[name] = id
			found = true
			switch field {
			case "API_URL":
				c.BaseURL = val
			case "API_KEY":
				c.APIKey = val
			case "TIMEOUT":
				d, err := parseTimeout(val)
				if err != nil {
					bad[id] = fmt.Errorf("%s: %w", name, err)
					continue ids
				}
				c.Timeout = d
			}
		}
		if found {
			out[id] = c
		}
	}
	return out, bad
}

// lookupEnv finds SCB_<spelling>_<field>; name is "" when none is set.
func lookupEnv(env map[string]string, id, field string) (name, val string, err error) {
	for _, sp := range envSpellings(id) {
		n := "SCB_" + sp + "_" + field
		v, ok := env[n]
		if !ok {
			continue
		}
		if name != "" && v != val {
			// Never print the values: one of them may be a key.
			return "", "", fmt.Errorf("SCB %s: %s and %s are both set, to different values", id, name, n)
		}
		if name == "" {
			name, val = n, v
		}
	}
	return name, val, nil
}

func parseTimeout(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if secs, err := strconv.ParseFloat(s, 64); err == nil {
		if secs < 0 {
			return 0, fmt.Errorf("timeout %q is negative", s)
		}
		if math.IsNaN(secs) || secs >= float64(math.MaxInt64)/float64(time.Second) {
			return 0, fmt.Errorf("timeout %q is out of range", s)
		}
		return time.Duration(secs * float64(time.Second)), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("timeout %q is not a duration such as 10s", s)
	}
	return d, nil
}

// fileConfig is one SCB in the config file.
type fileConfig struct {
	URL        string          `json:"url"`
	APIKey     string          `json:"api_key"`
	APIKeyFile string          `json:"api_key_file"` // a file holding the key (e.g. a systemd credential)
	Timeout    json.RawMessage `json:"timeout"`      // "10s" or 10
}

// LoadConfigFile reads SCB configs from path, keyed by id as written in the file. Two formats:
//
//	{"scbs": {"SCB-1": {"url": "https://...", "api_key": "...", "timeout": "10s"}}}
//
// (api_key_file instead of api_key reads the key from a file, relative paths from path's
// folder), or the simple format: lines of SCB_<ID>_API_URL=..., SCB_<ID>_API_KEY=...,
// SCB_<ID>_TIMEOUT=..., with # comments and optional quotes, as in an environment file. Unknown
// JSON fields are an error, so that a misspelt field does not silently drop a setting.
//
// The file, and every api_key_file, must be owned by the user this process runs as and
// writable by no one else, in a folder no one else can write (see readProtected); a file that
// holds a key must not be readable by every user.
func LoadConfigFile(path string) (map[string]Config, error) {
	const what = "SCB config file"
	data, fi, err := readProtected(path, what)
	if err != nil {
		return nil, err
	}
	var out map[string]Config
	var holdsKey bool
	if t := bytes.TrimSpace(data); len(t) > 0 && t[0] == '{' {
		out, holdsKey, err = parseJSONConfig(data, path)
	} else {
		out, err = parseSimpleConfig(data)
		for _, c := range out {
			holdsKey = holdsKey || c.APIKey != ""
		}
	}
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", what, path, err)
	}
	if holdsKey {
		if err := checkKeyReadable(path, what, fi, os.Geteuid()); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// parseJSONConfig reads the JSON format; holdsKey says whether the file itself holds a key
// (api_key rather than api_key_file).
func parseJSONConfig(data []byte, path string) (out map[string]Config, holdsKey bool, err error) {
	var doc struct {
		SCBs map[string]fileConfig `json:"scbs"`
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&doc); err != nil {
		return nil, false, err
	}
	out = make(map[string]Config, len(doc.SCBs))
	for id, fc := range doc.SCBs {
		c := Config{ID: id, BaseURL: fc.URL, APIKey: fc.APIKey}
		holdsKey = holdsKey || fc.APIKey != ""
		if fc.APIKeyFile != "" {
			if c.APIKey != "" {
				return nil, false, fmt.Errorf("SCB %s: set api_key or api_key_file, not both", id)
			}
			kp := fc.APIKeyFile
			if !filepath.IsAbs(kp) {
				kp = filepath.Join(filepath.Dir(path), kp)
			}
			what := "SCB " + id + " api_key_file"
			b, kfi, err := readProtected(kp, what)
			if err != nil {
				return nil, false, err
			}
			if err := checkKeyReadable(kp, what, kfi, os.Geteuid()); err != nil {
				return nil, false, err
			}
			c.APIKey = strings.TrimSpace(string(b))
		}
		if len(fc.Timeout) > 0 && string(fc.Timeout) != "null" {
			var s string
			if json.Unmarshal(fc.Timeout, &s) != nil {
				s = string(fc.Timeout)
			}
			d, err := parseTimeout(s)
			if err != nil {
				return nil, false, fmt.Errorf("SCB %s: %w", id, err)
			}
			c.Timeout = d
		}
		out[id] = c
	}
	return out, holdsKey, nil
}

func parseSimpleConfig(data []byte) (map[string]Config, error) {
	out := map[string]Config{}
	for n, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		line = strings.TrimPrefix(line, "export ")
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("line %d: expected NAME=VALUE", n+1)
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
			v = v[1 : len(v)-1]
		}
		id, field, ok := splitVarName(k)
		if !ok {
			return nil, fmt.Errorf("line %d: expected SCB_<ID>_API_URL=, SCB_<ID>_API_KEY= or SCB_<ID>_TIMEOUT= (the line is not shown: it may hold a key)", n+1)
		}
		c := out[id]
		c.ID = id
		switch field {
		case "API_URL":
			c.BaseURL = v
		case "API_KEY":
			c.APIKey = v
		case "TIMEOUT":
			d, err := parseTimeout(v)
			if err != nil {
				return nil, fmt.Errorf("line %d: %w", n+1, err)
			}
			c.Timeout = d
		}
		out[id] = c
	}
	return out, nil
}

func splitVarName(k string) (id, field string, ok bool) {
	if !strings.HasPrefix(k, "SCB_") {
		return "", "", false
	}
	for _, f := range []string{"API_URL", "API_KEY", "TIMEOUT"} {
		if rest, found := strings.CutSuffix(k[4:], "_"+f); found && rest != "" {
			return rest, f, true
		}
	}
	return "", "", false
}

// Load resolves the configs of the SCBs ids: the config file at path (none if path is ""), then
// the environment (environ, os.Environ()'s shape) overriding it field by field. A file entry
// matches an id as written or in its shell-safe spelling. Every id with any setting must be
// complete and valid; ids with none are left out of the result, and the caller decides whether
// that is an error (a registered bank we do not deliver to yet) or not.
func Load(environ []string, ids []string, path string) (map[string]Config, error) {
	file := map[string]Config{}
	if path != "" {
		var err error
		if file, err = LoadConfigFile(path); err != nil {
			return nil, err
		}
	}
	env, bad := configFromEnv(environ, ids)
	out := map[string]Config{}
	var errs []error
	for _, id := range ids {
		if err, ok := bad[id]; ok {
			// Left out entirely: the environment says something ambiguous about this SCB, and
			// falling back to the file would deliver with settings the operator did not mean.
			errs = append(errs, &ConfigError{ID: id, Err: err})
			continue
		}
		c, inFile, err := matchFile(file, ids, id)
		if err != nil {
			errs = append(errs, &ConfigError{ID: id, Err: err})
			continue
		}
		e, inEnv := env[id]
		if !inFile && !inEnv {
			continue
		}
		c.ID = id
		if e.BaseURL != "" {
			c.BaseURL = e.BaseURL
		}
		if e.APIKey != "" {
			c.APIKey = e.APIKey
		}
		if e.Timeout != 0 {
			c.Timeout = e.Timeout
		}
		if c.Timeout == 0 {
			c.Timeout = DefaultTimeout
		}
		if err := c.Validate(); err != nil {
			errs = append(errs, &ConfigError{ID: id, Err: err})
			continue
		}
		out[id] = c
	}
	return out, errors.Join(errs...)
}

// ConfigError is Load's refusal of one SCB's settings (the others load): the worker reports it as
// that SCB's reason for not delivering, rather than as a missing configuration.
type ConfigError struct {
	ID  string
	Err error
}

func (e *ConfigError) Error() string { return e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

// ConfigErrors returns the reason Load refused each SCB, from Load's error; an error that is not
// about one SCB (a config file that cannot be used) is returned under "" and applies to all.
func ConfigErrors(err error) map[string]string {
	if err == nil {
		return nil
	}
	out := map[string]string{}
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	for _, e := range errs {
		var ce *ConfigError
		if errors.As(e, &ce) {
			out[ce.ID] = ce.Error()
		} else {
			out[""] = e.Error()
		}
	}
	return out
}

func matchFile(file map[string]Config, ids []string, id string) (Config, bool, error) {
	// Every spelling of id counts (SCB_SCB-3_API_KEY and SCB_SCB_3_API_KEY in one simple file are
	// the entries "SCB-3" and "SCB_3"), except another registered bank's own entry. Before, the
	// entry as written won and a second spelling with another key was ignored without a word.
	var hits []string
	for k := range file {
		if k == id || (!slices.Contains(ids, k) && strings.EqualFold(EnvName(k), EnvName(id))) {
			hits = append(hits, k)
		}
	}
	if len(hits) == 0 {
		return Config{}, false, nil
	}
	sort.Strings(hits)
	var c Config
	for _, k := range hits {
		f := file[k]
		for _, p := range []struct {
			dst        *string
			val, field string
		}{{&c.BaseURL, f.BaseURL, "API_URL"}, {&c.APIKey, f.APIKey, "API_KEY"}} {
			if p.val == "" {
				continue
			}
			if *p.dst != "" && *p.dst != p.val {
				// Never print the values: one of them may be a key.
				return Config{}, false, fmt.Errorf("SCB %s: the config file sets its %s under several spellings (%s), to different values",
					id, p.field, strings.Join(hits, ", "))
			}
			*p.dst = p.val
		}
		if f.Timeout != 0 {
			if c.Timeout != 0 && c.Timeout != f.Timeout {
				return Config{}, false, fmt.Errorf("SCB %s: the config file sets its TIMEOUT under several spellings (%s), to different values",
					id, strings.Join(hits, ", "))
			}
			c.Timeout = f.Timeout
		}
	}
	return c, true, nil
}
