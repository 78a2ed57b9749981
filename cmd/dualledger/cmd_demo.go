package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// newDemoCmd is being written (stub so that the tree builds).
func newDemoCmd(a *app) *cobra.Command {
	return &cobra.Command{Use: "demo", Short: "(not available yet)", Hidden: true, RunE: func(*cobra.Command, []string) error { return errors.New("demo is not available yet") }}
}
