// Command loadgen asks an OAuth token endpoint for client_credentials
// tokens from concurrent clients for a fixed time and prints tokens/s and
// latency percentiles. bench/oidc/node-provider/run.sh points it at the
// reference Node.js provider; the Go benchmarks in bench/oidc drive Ward
// with the same loop (oidcbench.Run).
//
//	loadgen -url http://127.0.0.1:3000/token -client svc -secret s -d 10s
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"strings"
	"time"

	oidcbench "github.com/wardhq/ward/bench/oidc"
)

func main() {
	var (
		tokenURL = flag.String("url", "", "token endpoint")
		client   = flag.String("client", "svc", "client_id")
		secret   = flag.String("secret", "", "client_secret (sent with HTTP Basic)")
		scope    = flag.String("scope", "", "scope parameter, if any")
		resource = flag.String("resource", "", "resource parameter (RFC 8707), if any")
		wantAlg  = flag.String("alg", "", "fail unless the access token's JWS alg is this")
		clients  = flag.Int("c", 16, "concurrent clients")
		warmup   = flag.Duration("warmup", 2*time.Second, "warm-up, not counted")
		dur      = flag.Duration("d", 10*time.Second, "measured duration")
		label    = flag.String("label", "", "label for the output line")
		asJSON   = flag.Bool("json", false, "print one JSON object")
	)
	flag.Parse()
	if *tokenURL == "" {
		fmt.Fprintln(os.Stderr, "loadgen: -url is required")
		os.Exit(2)
	}
	if *dur <= 0 || *dur > 10*time.Minute || *clients < 1 || *clients > 1024 {
		fmt.Fprintln(os.Stderr, "loadgen: -d must be in (0, 10m], -c in [1, 1024]")
		os.Exit(2)
	}
	extra := url.Values{}
	if *scope != "" {
		extra.Set("scope", *scope)
	}
	if *resource != "" {
		extra.Set("resource", *resource)
	}
	hc := oidcbench.Client(*clients)
	ctx := context.Background()
	if *wantAlg != "" {
		if err := checkAlg(ctx, hc, *tokenURL, *client, *secret, extra, *wantAlg); err != nil {
			fmt.Fprintln(os.Stderr, "loadgen:", err)
			os.Exit(1)
		}
	}
	r := oidcbench.Run(ctx, *clients, *warmup, *dur, oidcbench.ClientCredentials(hc, *tokenURL, *client, *secret, extra))
	if *asJSON {
		_ = json.NewEncoder(os.Stdout).Encode(map[string]any{
			"label": *label, "clients": *clients, "tokens_per_s": r.PerSecond(), "ok": r.OK, "failed": r.Failed,
			"p50_ms": ms(r.P50), "p99_ms": ms(r.P99), "max_ms": ms(r.Max), "seconds": r.Elapsed.Seconds(), "gomaxprocs": runtime.GOMAXPROCS(0),
		})
	} else {
		fmt.Printf("%s\t%d clients\t%.0f tokens/s\tp50 %.2f ms\tp99 %.2f ms\tmax %.2f ms\t%d failed\n",
			*label, *clients, r.PerSecond(), ms(r.P50), ms(r.P99), ms(r.Max), r.Failed)
	}
	if r.OK == 0 || r.Failed > 0 {
		fmt.Fprintln(os.Stderr, "loadgen:", r.String())
		os.Exit(1)
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// checkAlg asks for one token and checks its alg, so a misconfigured
// provider is not measured as the wrong thing.
func checkAlg(ctx context.Context, hc *http.Client, tokenURL, client, secret string, extra url.Values, want string) error {
	form := url.Values{"grant_type": {"client_credentials"}}
	for k, v := range extra {
		form[k] = v
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, tokenURL, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(client), url.QueryEscape(secret))
	out, err := oidcbench.PostJSON(hc, req)
	if err != nil {
		return err
	}
	tok, _ := out["access_token"].(string)
	if got := oidcbench.TokenAlg(tok); got != want {
		return fmt.Errorf("access token alg %q, want %q (token %.40s…)", got, want, tok)
	}
	return nil
}
