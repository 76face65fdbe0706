package main

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/wardhq/ward/actors/keyring"
	"github.com/wardhq/ward/cluster"
	"github.com/wardhq/ward/cluster/seal"
	"github.com/wardhq/ward/edge/jwks"
)

func init() { subcommands = append(subcommands, newKeysCmd()) }

// addKeyFlags adds the signing-key policy flags `ward node` and `ward dev`
// share.
func addKeyFlags(f *pflag.FlagSet, cfg *nodeConfig) {
	d := keyring.DefaultPolicy()
	f.DurationVar(&cfg.KeyRotation, "key-rotation", d.RotateEvery, "how long a signing key signs before its successor takes over")
	f.DurationVar(&cfg.TokenLifetime, "token-lifetime", d.MaxTokenLifetime, "longest lifetime of any token the keys sign: a new key is in JWKS this long before it signs, an old one stays this long after")
	f.StringVar(&cfg.AdminTokenFile, "admin-token-file", "", "where this node keeps the cluster's operator token for the CLI (mode 0600; default <data>/admin-token)")
	f.StringVar(&cfg.MasterKeyFile, "master-key-file", "", "file holding the base64 of 32 random bytes (head -c 32 /dev/urandom | base64), the same on every node: the cluster's signing keys, provider secret and operator token are then sealed under it at rest; keep it outside the data directory")
}

// loadMasterKey reads --master-key-file; nil without one.
func loadMasterKey(path, dataDir string, log *slog.Logger) (*seal.Key, error) {
	if path == "" {
		return nil, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("--master-key-file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 4096))
	if err != nil {
		return nil, fmt.Errorf("--master-key-file %s: %w", path, err)
	}
	k, err := seal.ParseKeyFile(b)
	if err != nil {
		return nil, fmt.Errorf("--master-key-file %s: %w", path, err)
	}
	if fi, err := f.Stat(); err == nil && fi.Mode().Perm()&0o077 != 0 {
		log.Warn("the master key file is readable by other users: chmod 600 it", "path", path, "mode", fi.Mode().Perm().String())
	}
	if abs, err := filepath.Abs(path); err == nil {
		if d, err := filepath.Abs(dataDir); err == nil && strings.HasPrefix(abs, d+string(filepath.Separator)) {
			log.Warn("the master key file is inside the data directory: a copy of the directory then opens the secrets it seals", "path", path)
		}
	}
	return k, nil
}

func checkKeyFlags(cfg nodeConfig) error {
	if cfg.TokenLifetime <= 0 {
		return fmt.Errorf("--token-lifetime %s: want a positive duration", cfg.TokenLifetime)
	}
	if cfg.KeyRotation <= cfg.TokenLifetime {
		return fmt.Errorf("--key-rotation %s must be longer than --token-lifetime %s: a successor key is published a token lifetime before it signs", cfg.KeyRotation, cfg.TokenLifetime)
	}
	return nil
}

// jwksMaxAge keeps the JWKS cache lifetime well under the lead time (the
// token lifetime), so a cached copy always holds a key before it signs.
func jwksMaxAge(tokenLifetime time.Duration) time.Duration {
	if tokenLifetime <= 0 {
		tokenLifetime = keyring.DefaultPolicy().MaxTokenLifetime
	}
	return max(time.Second, min(jwks.DefaultMaxAge, tokenLifetime/2))
}

func newKeysCmd() *cobra.Command {
	var op operatorFlags
	root := &cobra.Command{
		Use:   "keys",
		Short: "The cluster's token signing keys: list, rotate",
	}
	op.add(root)

	var listJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List the signing keys (kid, algorithm, state, schedule); never key material",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var kl cluster.KeyList
			body, err := op.request(cmd.Context(), http.MethodGet, cluster.KeysPath, nil, &kl)
			if err != nil {
				return err
			}
			if listJSON {
				_, err := cmd.OutOrStdout().Write(body)
				return err
			}
			printKeys(cmd.OutOrStdout(), &kl)
			return nil
		},
	}
	list.Flags().BoolVar(&listJSON, "json", false, "print JSON")

	var force, rotateJSON bool
	rotate := &cobra.Command{
		Use:   "rotate",
		Short: "Rotate every algorithm's signing key now",
		Long: `rotate publishes a new key per algorithm in JWKS at once; it starts signing
one token lifetime later (verifiers caching JWKS learn it first), and the
old key stays published until every token it signed has expired.

--force is for a compromised key: the new keys sign at once and the old ones
leave JWKS at once, so tokens they signed stop verifying.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var kl cluster.KeyList
			body, err := op.request(cmd.Context(), http.MethodPost, cluster.KeysRotatePath, cluster.RotateRequest{Force: force}, &kl)
			if err != nil {
				return err
			}
			if rotateJSON {
				_, err := cmd.OutOrStdout().Write(body)
				return err
			}
			if force {
				fmt.Fprintf(cmd.OutOrStdout(), "rotated (forced): new keys sign now; the old ones are withdrawn from JWKS\n\n")
			} else {
				fmt.Fprintf(cmd.OutOrStdout(), "rotated: new keys are in JWKS now and sign from their activate time\n\n")
			}
			printKeys(cmd.OutOrStdout(), &kl)
			return nil
		},
	}
	rotate.Flags().BoolVar(&force, "force", false, "withdraw the current keys at once (compromise)")
	rotate.Flags().BoolVar(&rotateJSON, "json", false, "print the resulting key list as JSON")
	root.AddCommand(list, rotate)
	return root
}

func printKeys(w io.Writer, kl *cluster.KeyList) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "key set version %d\n\n", kl.Version)
	fmt.Fprintln(tw, "KID\tALG\tSTATE\tPUBLISH\tACTIVATE\tRETIRE\tREMOVE")
	f := func(t time.Time) string { return t.UTC().Format(time.RFC3339) }
	for _, k := range kl.Keys {
		state := k.State
		if k.Compromised {
			state += " (compromised)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k.Kid, k.Alg, state, f(k.PublishAt), f(k.ActivateAt), f(k.RetireAt), f(k.RemoveAt))
	}
	_ = tw.Flush()
}
