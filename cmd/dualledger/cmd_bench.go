package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// newBenchCmd is being written (stub so that the tree builds).
func newBenchCmd(a *app) *cobra.Command {
	return &cobra.Command{Use: "bench", Short: "(not available yet)", Hidden: true, RunE: func(*cobra.Command, []string) error { return errors.New("bench is not available yet") }}
}
