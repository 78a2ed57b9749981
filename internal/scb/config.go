package scb

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"net/url"
	"strings"
	"time"
)

// DefaultTimeout bounds one request to an SCB when a Config sets none.
const DefaultTimeout = 10 * time.Second

// Config says how to reach one SCB. Its String, GoString, LogValue and MarshalJSON never show
// APIKey, so a Config may be printed or logged.
type Config struct {
	ID      string        // the bank id as registered, e.g. "SCB-1"
	BaseURL string        // e.g. "https://scb1-api.example.com" (a path prefix is kept)
	APIKey  string        // sent as "Authorization: Bearer <APIKey>"
	Timeout time.Duration // per request; 0 = DefaultTimeout
}

// String describes c without its key.
func (c Config) String() string {
	return fmt.Sprintf("SCB %s at %s (api key %s, timeout %s)", c.ID, c.BaseURL, redact(c.APIKey), c.RequestTimeout())
}

// GoString is String, so that %#v does not print the key either.
func (c Config) GoString() string { return "scb.Config{" + c.String() + "}" }

// LogValue keeps the key out of slog output.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(slog.String("id", c.ID), slog.String("url", c.BaseURL),
		slog.String("api_key", redact(c.APIKey)), slog.Duration("timeout", c.RequestTimeout()))
}

// MarshalJSON writes c in the config file's shape with the key redacted.
func (c Config) MarshalJSON() ([]byte, error) {
	return json.Marshal(map[string]string{"id": c.ID, "url": c.BaseURL, "api_key": redact(c.APIKey), "timeout": c.RequestTimeout().String()})
}

func redact(key string) string {
	if key == "" {
		return "(none)"
	}
	return "(set)"
}

// RequestTimeout is the timeout of one request to this SCB (Timeout, or DefaultTimeout).
func (c Config) RequestTimeout() time.Duration {
	if c.Timeout <= 0 {
		return DefaultTimeout
	}
	return c.Timeout
}

// Validate checks that c can be used: an http(s) URL without credentials, query or fragment
// (a key in the URL would end up in error messages), and a key.
func (c Config) Validate() error {
	if c.ID == "" {
		return errors.New("SCB config: id is required")
	}
	if c.BaseURL == "" {
		return fmt.Errorf("SCB %s: no API URL (set SCB_%s_API_URL or the config file's url)", c.ID, EnvName(c.ID))
	}
	u, err := url.Parse(c.BaseURL)
	if err != nil {
		// url.Parse quotes the URL in its error; the URL holds no key (see below), so this is safe.
		// Not the URL itself: it may carry credentials.
		return fmt.Errorf("SCB %s: API URL is not a valid URL", c.ID)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("SCB %s: API URL must be https:// with a host (http:// only to a loopback host); check SCB_%s_API_URL or the config file's url", c.ID, EnvName(c.ID))
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("SCB %s: API URL must not carry credentials, a query or a fragment; put the key in SCB_%s_API_KEY", c.ID, EnvName(c.ID))
	}
	if u.Scheme == "http" && !IsLoopback(u.Hostname()) {
		// The key travels in every request's Authorization header, and the SCB's answers decide
		// what the ledger records as delivered: neither may cross a network in clear text.
		return fmt.Errorf("SCB %s: API URL http://%s is not https://: plain http:// is allowed only to a loopback host "+
			"(127.0.0.0/8, ::1, localhost), since the API key and the SCB's answers would cross the network in clear text; "+
			"set SCB_%s_API_URL or the config file's url to https://%s", c.ID, u.Host, EnvName(c.ID), u.Host)
	}
	if c.APIKey == "" {
		return fmt.Errorf("SCB %s: no API key (set SCB_%s_API_KEY or the config file's api_key)", c.ID, EnvName(c.ID))
	}
	if c.Timeout < 0 {
		return fmt.Errorf("SCB %s: timeout must not be negative", c.ID)
	}
	return nil
}

// IsLoopback reports whether host (a URL's Hostname: no port, no brackets) is this machine: an
// address in 127.0.0.0/8 or ::1 (also IPv4-mapped), or the name localhost. Other names are not
// resolved: what a name resolves to can change after the check.
func IsLoopback(host string) bool {
	if strings.EqualFold(strings.TrimSuffix(host, "."), "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Zone() == "" && ip.Unmap().IsLoopback()
}

// EnvName is id with every character outside [A-Za-z0-9_] replaced by "_": the spelling of the
// id in an environment variable name that a POSIX shell can export ("SCB-1" -> "SCB_1").
func EnvName(id string) string {
	b := []byte(id)
	for i, c := range b {
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			b[i] = '_'
		}
	}
	return string(b)
}
