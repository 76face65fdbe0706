// Package oidcbench measures Ward's OpenID provider (edge/oidc) over real
// HTTP on loopback against a real one-node cluster: client_credentials
// tokens/s for RS256 and ES256 access tokens, refresh-token rotations/s,
// password logins through POST /login; each next to its physical bound
// measured in the same process (cores / one signature's or one hash's
// time). The same load loop (Run) drives the reference Node.js provider
// through cmd loadgen, so both are measured by one client.
package oidcbench

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ErrRefused is what an Op returns for an answer that is a deliberate
// refusal (admission control's 503): counted in Result.Refused, neither a
// success nor a failure.
var ErrRefused = errors.New("refused by admission control")

// Result is one load run.
type Result struct {
	OK, Failed, Refused int
	Elapsed             time.Duration
	P50, P99            time.Duration
	Max                 time.Duration
	FirstError          string
}

// PerSecond is successful operations per second.
func (r Result) PerSecond() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.OK) / r.Elapsed.Seconds()
}

func (r Result) String() string {
	s := fmt.Sprintf("%d ok in %.2fs: %.0f/s, p50 %s, p99 %s, max %s, %d failed, %d refused",
		r.OK, r.Elapsed.Seconds(), r.PerSecond(), r.P50.Round(time.Microsecond), r.P99.Round(time.Microsecond),
		r.Max.Round(time.Microsecond), r.Failed, r.Refused)
	if r.FirstError != "" {
		s += " (first: " + r.FirstError + ")"
	}
	return s
}

// Op is one request of a load run, by client number; it returns an error
// when the answer is not a success.
type Op func(ctx context.Context, client int) error

// Run calls op from clients goroutines, each one request at a time, for d
// (after warmup, whose requests are not counted), and returns the
// successful requests' throughput and latency percentiles. No request
// starts after d; those under way finish and count (Elapsed includes them),
// so ops should not tie their requests to ctx.
func Run(ctx context.Context, clients int, warmup, d time.Duration, op Op) Result {
	if warmup > 0 {
		wctx, cancel := context.WithTimeout(ctx, warmup)
		run(wctx, clients, op)
		cancel()
	}
	rctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	return run(rctx, clients, op)
}

func run(ctx context.Context, clients int, op Op) Result {
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		lat    []time.Duration
		failed atomic.Int64
		refuse atomic.Int64
		first  atomic.Value
	)
	start := time.Now()
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mine := make([]time.Duration, 0, 4096)
			for ctx.Err() == nil {
				t := time.Now()
				err := op(ctx, c)
				el := time.Since(t)
				if errors.Is(err, ErrRefused) {
					refuse.Add(1)
					continue
				}
				if err != nil {
					failed.Add(1)
					first.CompareAndSwap(nil, err.Error())
					continue
				}
				mine = append(mine, el)
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	r := Result{OK: len(lat), Failed: int(failed.Load()), Refused: int(refuse.Load()), Elapsed: time.Since(start)}
	if s, ok := first.Load().(string); ok {
		r.FirstError = s
	}
	if len(lat) > 0 {
		slices.Sort(lat)
		r.P50, r.P99, r.Max = Percentile(lat, 0.50), Percentile(lat, 0.99), lat[len(lat)-1]
	}
	return r
}

// Percentile is the q-quantile (0..1) of sorted d by nearest rank.
func Percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// Client is an HTTP client keeping one connection per load client alive.
func Client(clients int) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 4 * clients
	t.MaxIdleConnsPerHost = 4 * clients
	t.Proxy = nil
	return &http.Client{Transport: t, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// ClientCredentials returns an Op asking tokenURL for a client_credentials
// token with HTTP Basic client authentication (client_secret_basic); the
// answer must be 200 with an access_token. extra is added to the form
// (scope, resource).
func ClientCredentials(hc *http.Client, tokenURL, clientID, secret string, extra url.Values) Op {
	form := url.Values{"grant_type": {"client_credentials"}}
	for k, v := range extra {
		form[k] = v
	}
	body := form.Encode()
	return func(context.Context, int) error {
		req, err := http.NewRequest(http.MethodPost, tokenURL, strings.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(url.QueryEscape(clientID), url.QueryEscape(secret))
		out, err := PostJSON(hc, req)
		if err != nil {
			return err
		}
		if s, _ := out["access_token"].(string); s == "" {
			return errors.New("no access_token in the answer")
		}
		return nil
	}
}

// PostJSON sends req and decodes a 200 JSON object answer.
func PostJSON(hc *http.Client, req *http.Request) (map[string]any, error) {
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %d: %.200s", resp.StatusCode, b)
	}
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("answer is not JSON: %.200s", b)
	}
	return out, nil
}

// TokenAlg is the alg header of a compact JWS, "" when s is not one.
func TokenAlg(s string) string {
	h, _, ok := strings.Cut(s, ".")
	if !ok {
		return ""
	}
	b, err := base64.RawURLEncoding.DecodeString(h)
	if err != nil {
		return ""
	}
	var v struct {
		Alg string `json:"alg"`
	}
	_ = json.Unmarshal(b, &v)
	return v.Alg
}
