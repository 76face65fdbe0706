package registers

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/wardhq/ward/actors"
	"github.com/wardhq/ward/actors/register"
	"github.com/wardhq/ward/cluster"
	"github.com/wardhq/ward/persistence"
)

// server runs the handler over a real host on a real store.
func server(t *testing.T) *httptest.Server {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	store, err := persistence.Open(t.TempDir(), persistence.Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	h, err := cluster.Start(cluster.Config{Kinds: []actors.Kind{register.Kind}, Journal: store, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(Handler(h))
	t.Cleanup(func() {
		srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = h.Stop(ctx)
		_ = store.Close()
	})
	return srv
}

func call(t *testing.T, srv *httptest.Server, method, path, body string) (int, map[string]any, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("%s %s: answer is not JSON: %v", method, path, err)
	}
	return resp.StatusCode, out, resp.Header
}

func TestRegistersAPI(t *testing.T) {
	srv := server(t)
	if code, v, _ := call(t, srv, "GET", "/v1/registers/a", ""); code != 200 || v["version"] != 0.0 || v["value"] != "" {
		t.Fatalf("fresh register: %d %v", code, v)
	}
	if code, v, _ := call(t, srv, "PUT", "/v1/registers/a", `{"value":"x"}`); code != 200 || v["version"] != 1.0 || v["value"] != "x" {
		t.Fatalf("put: %d %v", code, v)
	}
	if code, v, _ := call(t, srv, "POST", "/v1/registers/a/cas", `{"expect_version":1,"value":"y"}`); code != 200 || v["version"] != 2.0 {
		t.Fatalf("cas: %d %v", code, v)
	}
	if code, v, h := call(t, srv, "POST", "/v1/registers/a/cas", `{"expect_version":1,"value":"z"}`); code != http.StatusConflict || h.Get("Content-Type") != "application/problem+json" || v["status"] != 409.0 {
		t.Fatalf("stale cas: %d %v", code, v)
	}
}

// TestRegistersBadInput: every malformed, oversized or incomplete request
// gets a problem+json error and changes nothing.
func TestRegistersBadInput(t *testing.T) {
	srv := server(t)
	if code, _, _ := call(t, srv, "PUT", "/v1/registers/b", `{"value":"keep"}`); code != 200 {
		t.Fatal("setup put failed")
	}
	big := strings.Repeat("x", register.MaxValueLen+1)
	for _, tc := range []struct {
		name, method, path, body string
		status                   int
	}{
		{"not JSON", "PUT", "/v1/registers/b", `{"value":`, 400},
		{"unknown field", "PUT", "/v1/registers/b", `{"value":"v","extra":1}`, 400},
		{"missing value", "PUT", "/v1/registers/b", `{}`, 400},
		{"trailing data", "PUT", "/v1/registers/b", `{"value":"v"} {"value":"w"}`, 400},
		{"wrong type", "PUT", "/v1/registers/b", `{"value":5}`, 400},
		{"value over the actor's limit", "PUT", "/v1/registers/b", `{"value":"` + big + `"}`, 400},
		{"body over the edge's limit", "PUT", "/v1/registers/b", `{"value":"` + big + big + `"}`, 413},
		{"cas without version", "POST", "/v1/registers/b/cas", `{"value":"v"}`, 400},
		{"id too long", "PUT", "/v1/registers/" + strings.Repeat("i", maxIDLen+1), `{"value":"v"}`, 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, v, h := call(t, srv, tc.method, tc.path, tc.body)
			if code != tc.status || h.Get("Content-Type") != "application/problem+json" || v["detail"] == "" {
				t.Fatalf("got %d %s %v, want %d problem+json", code, h.Get("Content-Type"), v, tc.status)
			}
		})
	}
	if code, v, _ := call(t, srv, "GET", "/v1/registers/b", ""); code != 200 || v["value"] != "keep" || v["version"] != 1.0 {
		t.Fatalf("bad input changed the register: %d %v", code, v)
	}
}
