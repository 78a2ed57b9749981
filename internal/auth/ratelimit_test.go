package auth

import (
	"strings"
	"testing"
)

// TestRateLimitFitsItsColumn: the column keeps three decimals, so a finer rate was rounded
// silently, and one below 0.001 became 0, which the table's CHECK refused by its name.
func TestRateLimitFitsItsColumn(t *testing.T) {
	for rate, ok := range map[float64]bool{0.001: true, 1.235: true, 0.5: true, 1e6: true, 12.3: true,
		0.0005: false, 1e-300: false, 1.23456: false, 0: false, -1: false, 1e6 + 1: false} {
		r := rate
		_, err := Spec{Name: "k", Scopes: []string{ScopeRead}, RateLimit: &r}.Validate()
		if (err == nil) != ok || (err != nil && !strings.Contains(err.Error(), "at most 3 decimals")) {
			t.Errorf("rate %g: %v", rate, err)
		}
	}
}
