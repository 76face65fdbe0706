package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/wardhq/ward/cluster"
)

func init() { subcommands = append(subcommands, newClientsCmd()) }

func newClientsCmd() *cobra.Command {
	var op operatorFlags
	root := &cobra.Command{
		Use:   "clients",
		Short: "The cluster's OAuth/OpenID Connect clients: list, show, create, update, rotate-secret, disable",
	}
	op.add(root)

	var listJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List the registered clients (never secrets)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var ans struct {
				Clients []cluster.ClientInfo `json:"clients"`
			}
			body, err := op.request(cmd.Context(), http.MethodGet, cluster.ClientsPath, nil, &ans)
			if err != nil {
				return err
			}
			if listJSON {
				_, err := cmd.OutOrStdout().Write(body)
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "CLIENT\tTYPE\tGRANTS\tSCOPES\tSTATE")
			for _, c := range ans.Clients {
				typ := "confidential"
				if c.Public {
					typ = "public"
				}
				state := "active"
				if c.Disabled {
					state = "disabled"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", c.ID, typ, strings.Join(c.GrantTypes, ","), strings.Join(c.Scopes, ","), state)
			}
			return tw.Flush()
		},
	}
	list.Flags().BoolVar(&listJSON, "json", false, "print JSON")

	show := &cobra.Command{
		Use:   "show ID",
		Short: "Print one client's registration as JSON (never its secret)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			body, err := op.request(cmd.Context(), http.MethodGet, cluster.ClientPath(args[0]), nil, nil)
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(body)
			return err
		},
	}

	var createFile string
	create := &cobra.Command{
		Use:   "create --file SPEC.json",
		Short: "Register a client; prints it as JSON, with its generated secret (shown this once)",
		Long: `create registers a client from a JSON file ("-" reads stdin):

  {"client_id": "billing", "grant_types": ["client_credentials"], "scopes": ["vitals.read"]}
  {"client_id": "portal", "public": true, "redirect_uris": ["https://portal.example/cb"],
   "grant_types": ["authorization_code", "refresh_token"], "scopes": ["email"]}

Fields: client_id, name, public, first_party, dev_mode, tenant, redirect_uris,
post_logout_redirect_uris, grant_types, scopes, keys ([{"jwk": {...public JWK...},
"expires": RFC 3339}], for private_key_jwt and the JWT profile). A confidential
client without keys gets a secret; only its hash is stored. Ids are never reused.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			spec, err := readSpec(cmd.InOrStdin(), createFile)
			if err != nil {
				return err
			}
			body, err := op.request(cmd.Context(), http.MethodPost, cluster.ClientsPath, spec, nil)
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(body)
			return err
		},
	}
	create.Flags().StringVar(&createFile, "file", "", "the client's JSON registration (- for stdin)")
	_ = create.MarkFlagRequired("file")

	var updateFile string
	update := &cobra.Command{
		Use:   "update ID --file SPEC.json",
		Short: "Replace a client's settings (secrets stay; public cannot change)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			spec, err := readSpec(cmd.InOrStdin(), updateFile)
			if err != nil {
				return err
			}
			body, err := op.request(cmd.Context(), http.MethodPut, cluster.ClientPath(args[0]), spec, nil)
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(body)
			return err
		},
	}
	update.Flags().StringVar(&updateFile, "file", "", "the client's JSON registration (- for stdin)")
	_ = update.MarkFlagRequired("file")

	var overlap time.Duration
	rotate := &cobra.Command{
		Use:   "rotate-secret ID [--overlap D]",
		Short: "Give a confidential client a new secret; the old one stays valid for --overlap (0 for a leaked one)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if overlap < 0 || overlap%time.Second != 0 {
				return fmt.Errorf("--overlap must be whole seconds, at least 0")
			}
			secs := int64(overlap / time.Second)
			body, err := op.request(cmd.Context(), http.MethodPost, cluster.ClientPath(args[0])+"/secret",
				cluster.RotateSecretRequest{OverlapSeconds: &secs}, nil)
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(body)
			return err
		},
	}
	rotate.Flags().DurationVar(&overlap, "overlap", cluster.DefaultSecretOverlap, "how long the old secret stays valid")

	disable := &cobra.Command{
		Use:   "disable ID",
		Short: "Revoke a client: refused everywhere from now on (its id is never reused)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := op.request(cmd.Context(), http.MethodDelete, cluster.ClientPath(args[0]), nil, nil); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: disabled\n", args[0])
			return nil
		},
	}
	root.AddCommand(list, show, create, update, rotate, disable)
	return root
}

// readSpec reads a client registration from path ("-": stdin) and checks
// that it is JSON of the expected shape before anything is sent. The
// output of `show` is accepted as it is (show, edit, update): its
// read-only fields (created, has_secret, previous_secret_expires) are
// ignored; any other unknown field is refused.
func readSpec(stdin io.Reader, path string) (*cluster.ClientSpec, error) {
	var b []byte
	var err error
	if path == "-" {
		b, err = io.ReadAll(io.LimitReader(stdin, 1<<20))
	} else {
		b, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, fmt.Errorf("--file: %w", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	var info cluster.ClientInfo
	if err := dec.Decode(&info); err != nil {
		return nil, fmt.Errorf("--file %s: %w", path, err)
	}
	return &info.ClientSpec, nil
}
