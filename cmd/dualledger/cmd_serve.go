package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// newServeCmd is being written (stub so that the tree builds).
func newServeCmd(a *app) *cobra.Command {
	return &cobra.Command{Use: "serve", Short: "(not available yet)", Hidden: true, RunE: func(*cobra.Command, []string) error { return errors.New("serve is not available yet") }}
}
