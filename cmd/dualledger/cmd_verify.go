package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// newVerifyChainCmd is being written (stub so that the tree builds).
func newVerifyChainCmd(a *app) *cobra.Command {
	return &cobra.Command{Use: "verify-chain", Short: "(not available yet)", Hidden: true, RunE: func(*cobra.Command, []string) error { return errors.New("verify-chain is not available yet") }}
}

// newAuditCmd is being written (stub so that the tree builds).
func newAuditCmd(a *app) *cobra.Command {
	return &cobra.Command{Use: "audit", Short: "(not available yet)", Hidden: true, RunE: func(*cobra.Command, []string) error { return errors.New("audit is not available yet") }}
}
