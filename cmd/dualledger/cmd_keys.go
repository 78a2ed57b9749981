package main

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"dualledger/internal/auth"
	"dualledger/internal/ledger"
	"dualledger/internal/oplog"
)

func newKeysCmd(a *app) *cobra.Command {
	// listKeys is what both "keys" and "keys list" do.
	listKeys := func(cmd *cobra.Command, _ []string) error {
		pool, release, err := a.open(cmd.Context(), openOptions{})
		if err != nil {
			return err
		}
		defer release()
		keys, err := auth.List(cmd.Context(), pool)
		if err != nil {
			return err
		}
		if a.jsonOut {
			return a.printJSON(keys)
		}
		tw := tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tNAME\tSCOPES\tLEDGERS\tBANK\tRATE/S\tCREATED\tEXPIRES\tREVOKED")
		now := time.Now()
		for _, k := range keys {
			ledgers, bank, rate, revoked, expires := "all", "-", "-", "-", "never"
			if len(k.Ledgers) > 0 {
				ledgers = strings.Join(k.Ledgers, ",")
			}
			if k.BankID != nil {
				bank = *k.BankID
			}
			if k.RateLimit != nil {
				rate = fmt.Sprintf("%g", *k.RateLimit)
			}
			if k.RevokedAt != nil {
				revoked = k.RevokedAt.Format(time.RFC3339)
			}
			if k.ExpiresAt != nil {
				expires = k.ExpiresAt.Format(time.RFC3339)
				if k.Expired(now) {
					expires += " (expired)"
				}
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k.ID, k.Name, strings.Join(k.Scopes, ","), ledgers, bank, rate,
				k.CreatedAt.Format(time.RFC3339), expires, revoked)
		}
		return tw.Flush()
	}
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "API keys: list them (subcommands: create, list, revoke)",
		Long: `Every /v1 request needs an API key (Authorization: Bearer <token>). Keys are created here
(or by an admin key through POST /v1/keys); the token is printed once and only its sha256 is
stored. A running server sees a new key on its first request and a revocation within a second.

A key may be given a lifetime (--expires-in 90d, or --expires-at): from then on it is refused
(401, "the API key expired at ..."), as a revoked key is; keys list shows when each expires.

Scopes: read (GET), post (entries and batches), settle (POST /v1/settlements), accounts (open
accounts without credit, change their status), banks (register banks), admin (everything,
including keys, overdraft limits and the operator log). --ledger limits a key to ledgers;
--bank makes it a member bank's key, which moves money only out of that bank's accounts and
reads only them. Every create and revoke is recorded in the operator log.`,
		Args: cobra.NoArgs,
		RunE: listKeys,
	}
	list := &cobra.Command{
		Use:     "list",
		Short:   "List API keys (the same as dualledger keys): tokens are never shown; revoked keys are listed with their revocation time",
		Example: "  dualledger keys list --json",
		Args:    cobra.NoArgs,
		RunE:    listKeys,
	}

	var (
		scopes    []string
		ledgers   []string
		bank      string
		rate      float64
		expiresIn string
		expiresAt string
	)
	create := &cobra.Command{
		Use:   "create NAME --scopes S[,S...]",
		Short: "Create an API key and print its token (once: store it now)",
		Long: `Create an API key and print its token. The token is shown this once; only its sha256 is
stored. Without --json the token alone goes to standard output (so TOKEN=$(dualledger keys
create ...) works) and what it is to standard error.`,
		Example: `  TOKEN=$(dualledger keys create ops --scopes admin)
  dualledger keys create scb1-ops --scopes read,post,settle --bank SCB-1 --ledger MASTER
  dualledger keys create treasury --scopes post,issue --ledger MASTER --expires-in 90d
  dualledger keys create reporting --scopes read --rate-limit 50
  dualledger keys create contractor --scopes read --expires-in 30d`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			spec := auth.Spec{Name: args[0], Scopes: scopes, Ledgers: ledgers}
			if cmd.Flags().Changed("bank") {
				spec.BankID = &bank
			}
			if cmd.Flags().Changed("rate-limit") {
				spec.RateLimit = &rate
			}
			switch {
			case expiresIn != "" && expiresAt != "":
				return usage("give --expires-in or --expires-at, not both")
			case expiresIn != "":
				d, err := parseLifetime(expiresIn)
				if err != nil {
					return usage("--expires-in: %v", err)
				}
				at := time.Now().Add(d).UTC().Format("2006-01-02T15:04:05.999999Z07:00") // microseconds, as the database keeps
				spec.ExpiresAt = &at
			case expiresAt != "":
				spec.ExpiresAt = &expiresAt
			}
			if _, err := spec.Validate(); err != nil {
				var se *auth.SpecError
				if errors.As(err, &se) {
					return usage("--%s: %s", flagOf(se.Field), se.Message)
				}
				return usage("%v", err)
			}
			pool, release, err := a.open(cmd.Context(), openOptions{mayCreate: true})
			if err != nil {
				return err
			}
			defer release()
			nk, err := auth.Create(cmd.Context(), pool, a.cliActor(), spec)
			if err != nil {
				if ledger.CodeOf(ledger.FromDB(err)) == ledger.CodeUnknownBank {
					return findings("bank %q is not registered (dualledger banks register)", bank)
				}
				return err
			}
			if a.jsonOut {
				return a.printJSON(nk)
			}
			expiry := ""
			if nk.ExpiresAt != nil {
				expiry = ", expires " + nk.ExpiresAt.Format(time.RFC3339)
			}
			fmt.Fprintf(a.errOut, "created API key %s (%s, scopes %s%s); its token follows, shown this once:\n",
				nk.ID, nk.Name, strings.Join(nk.Scopes, ","), expiry)
			fmt.Fprintln(a.out, nk.Token)
			return nil
		},
	}
	f := create.Flags()
	f.StringSliceVar(&scopes, "scopes", nil, "comma-separated scopes: read, post, issue, settle, accounts, banks, admin (required)")
	f.StringArrayVar(&ledgers, "ledger", nil, "limit the key to this ledger (repeat for several; default: every ledger)")
	f.StringVar(&bank, "bank", "", "make it a member bank's key: money moves only out of this bank's accounts, reads only its own")
	f.Float64Var(&rate, "rate-limit", 0, "requests per second this key may make (default: no limit)")
	f.StringVar(&expiresIn, "expires-in", "", "the key stops working after this long: 90d, 12h, 30m (default: never)")
	f.StringVar(&expiresAt, "expires-at", "", "the key stops working at this RFC 3339 time, e.g. 2027-03-01T00:00:00Z (default: never)")
	_ = create.MarkFlagRequired("scopes")

	var reason string
	revoke := &cobra.Command{
		Use:     "revoke KEY_ID",
		Short:   "Revoke an API key (a running server refuses it within a second)",
		Example: `  dualledger keys revoke key_abcdefghijklmnop --reason "laptop lost"`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !auth.ValidID(args[0]) {
				return usage("%q is not a key id (they look like key_abcdefghijklmnop; see dualledger keys)", args[0])
			}
			pool, release, err := a.open(cmd.Context(), openOptions{})
			if err != nil {
				return err
			}
			defer release()
			k, err := auth.Revoke(cmd.Context(), pool, a.cliActor(), args[0], reason)
			if errors.Is(err, auth.ErrUnknownKey) {
				return findings("%v", err)
			}
			if err != nil {
				return err
			}
			if a.jsonOut {
				return a.printJSON(k)
			}
			fmt.Fprintf(a.out, "revoked API key %s (%s) at %s\n", k.ID, k.Name, k.RevokedAt.Format(time.RFC3339))
			return nil
		},
	}
	revoke.Flags().StringVar(&reason, "reason", "", "why, for the operator log")
	cmd.AddCommand(create, list, revoke)
	return cmd
}

// flagOf names the CLI flag of a key spec field.
func flagOf(field string) string {
	switch field {
	case "ledgers":
		return "ledger"
	case "bank_id":
		return "bank"
	case "rate_limit":
		return "rate-limit"
	case "name":
		return "name (the argument)"
	case "expires_at":
		return "expires-in / --expires-at"
	}
	return field
}

func newOperatorLogCmd(a *app) *cobra.Command {
	var (
		since    string
		afterSeq int64
		limit    int
	)
	cmd := &cobra.Command{
		Use:   "operator-log",
		Short: "List the operator log: every administrative act, who did it, before/after and why",
		Long: `List the operator log (operator_actions): key create/revoke, bank registration, ledger and
account creation, account changes (status, overdraft limit, bank), outbox requeues. Each row
names the actor (key:<id> through the API, cli:<OS user> from the command line, sql:<role> for
a change made by hand in SQL) and the database role. The log is append-only and hash-chained;
dualledger audit verifies the chain.`,
		Example: `  dualledger operator-log --since 2026-12-01
  dualledger operator-log --json --after-seq 1000 --limit 500`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f := oplog.Filter{AfterSeq: afterSeq, Limit: limit}
			if since != "" {
				t, err := parseSince(since, time.Now())
				if err != nil {
					return usage("--since: %v", err)
				}
				f.Since = t
			}
			if limit < 1 || limit > 100000 {
				return usage("--limit must be from 1 to 100000")
			}
			if afterSeq < 0 {
				return usage("--after-seq must not be negative")
			}
			pool, release, err := a.open(cmd.Context(), openOptions{})
			if err != nil {
				return err
			}
			defer release()
			actions, err := oplog.List(cmd.Context(), pool, f)
			if err != nil {
				return err
			}
			if a.jsonOut {
				return a.printJSON(actions)
			}
			tw := tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SEQ\tAT\tACTOR\tDB ROLE\tACTION\tTARGET\tCHANGE\tREASON")
			for _, x := range actions {
				reason := ""
				if x.Reason != nil {
					reason = *x.Reason
				}
				change := string(x.After)
				if string(x.Before) != "null" {
					change = string(x.Before) + " -> " + string(x.After)
				}
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", x.Seq, x.At.Format(time.RFC3339), x.Actor, x.DBRole, x.Action,
					x.Target, change, reason)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&since, "since", "", "only acts at or after this time (RFC 3339, a date YYYY-MM-DD in UTC, or a duration back from now such as 1h)")
	cmd.Flags().Int64Var(&afterSeq, "after-seq", 0, "only acts with seq greater than this")
	cmd.Flags().IntVar(&limit, "limit", 1000, "at most this many acts")
	return cmd
}

// parseLifetime reads a key's lifetime: a Go duration (12h, 90m) or a number of days (90d).
func parseLifetime(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n < 1 || n > 3660 {
			return 0, fmt.Errorf("%q is not a number of days from 1d to 3660d", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%q is not a positive duration such as 90d, 12h or 30m", s)
	}
	return d, nil
}

// parseSince reads an RFC 3339 time, a UTC date, or a duration back from now (90m, 1h, 24h).
func parseSince(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse("2006-01-02", s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time (2026-12-01T09:00:00Z), a date (2026-12-01) nor a duration back from now (90m, 1h, 24h)", s)
}
