package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// newScbSimCmd is being written (stub so that the tree builds).
func newScbSimCmd(a *app) *cobra.Command {
	return &cobra.Command{Use: "scb-sim", Short: "(not available yet)", Hidden: true, RunE: func(*cobra.Command, []string) error { return errors.New("scb-sim is not available yet") }}
}
