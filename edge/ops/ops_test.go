package ops

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestEndpoints(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "ward_test_total", Help: "t"})
	reg.MustRegister(c)
	c.Add(3)
	storeErr := errors.New("storage not open")
	checks := map[string]Check{
		"storage": func() error { return storeErr },
		"actors":  func() error { return nil },
	}
	srv := httptest.NewServer(Handler(checks, reg))
	defer srv.Close()

	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Fatalf("healthz %d", code)
	}
	code, body := get("/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "storage not open") || !strings.Contains(body, `"actors":"ok"`) {
		t.Fatalf("readyz while storage down: %d %s", code, body)
	}
	storeErr = nil
	if code, body := get("/readyz"); code != 200 {
		t.Fatalf("readyz when up: %d %s", code, body)
	}
	if code, body := get("/metrics"); code != 200 || !strings.Contains(body, "ward_test_total 3") {
		t.Fatalf("metrics: %d %s", code, body)
	}
	if code, _ := get("/nope"); code != 404 {
		t.Fatalf("unknown path: %d", code)
	}
	resp, err := http.Post(srv.URL+"/healthz", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST healthz: %d", resp.StatusCode)
	}
}

// TestWithoutMetrics: with no gatherer the health endpoints stay and
// /metrics is not served (it is on the node's metrics listener).
func TestWithoutMetrics(t *testing.T) {
	srv := httptest.NewServer(Handler(map[string]Check{}, nil))
	defer srv.Close()
	for path, want := range map[string]int{"/healthz": 200, "/readyz": 200, "/metrics": 404} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("%s: %d, want %d", path, resp.StatusCode, want)
		}
	}
}
