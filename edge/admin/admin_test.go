package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wardhq/ward/actors"
	"github.com/wardhq/ward/actors/register"
	"github.com/wardhq/ward/cluster"
	"github.com/wardhq/ward/persistence"
)

// TestAdminEndpoints runs the handlers over a real lone node.
func TestAdminEndpoints(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	store, err := persistence.Open(t.TempDir(), persistence.Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	n, err := cluster.StartNode(cluster.NodeConfig{Store: store, Name: "solo", Partitions: 4, Replicas: 1,
		Host: cluster.Config{Kinds: []actors.Kind{register.Kind}, Logger: log, Registerer: prometheus.NewRegistry()}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(Handler(n))
	t.Cleanup(func() {
		srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_ = n.Stop(ctx)
		_ = store.Close()
	})
	for deadline := time.Now().Add(20 * time.Second); !n.Ready(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("node not ready")
		}
	}
	call := func(method, path string) (int, map[string]any, string) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, nil)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			t.Fatalf("%s %s: answer is not JSON: %v", method, path, err)
		}
		return resp.StatusCode, out, resp.Header.Get("Content-Type")
	}

	code, st, _ := call("GET", cluster.StatusPath)
	if code != 200 || len(st["partitions"].([]any)) != 4 || st["meta"].(map[string]any)["leader"] != "solo" {
		t.Fatalf("status: %d %v", code, st)
	}
	if code, local, _ := call("GET", cluster.LocalStatusPath); code != 200 || local["name"] != "solo" || len(local["partitions"].([]any)) != 4 {
		t.Fatalf("local: %d %v", code, local)
	}
	for _, tc := range []struct {
		method, path string
		status       int
	}{
		{"POST", cluster.DrainPath, 400},
		{"POST", cluster.DrainPath + "?name=" + strings.Repeat("n", maxNameLen+1), 400},
		{"POST", cluster.DrainPath + "?name=nobody", 404},
		{"POST", cluster.RemovePath + "?name=nobody", 404},
		{"GET", cluster.DrainPath + "?name=solo", 404}, // drain is POST only
		{"GET", "/cluster/nothing", 404},
	} {
		code, body, ct := call(tc.method, tc.path)
		if code != tc.status || ct != "application/problem+json" || body["detail"] == "" {
			t.Errorf("%s %s: %d %s %v, want %d problem+json", tc.method, tc.path, code, ct, body, tc.status)
		}
	}
	// Nothing of the refused requests changed the member.
	_, st, _ = call("GET", cluster.StatusPath)
	if m := st["members"].([]any)[0].(map[string]any); m["state"] != "alive" {
		t.Fatalf("member after refused requests: %v", m)
	}
	// A real drain is accepted.
	if code, body, _ := call("POST", cluster.DrainPath+"?name=solo"); code != http.StatusAccepted {
		t.Fatalf("drain: %d %v", code, body)
	}
	// Remove is accepted, also twice; after it, removal is final: a drain
	// is refused as a conflict.
	for range 2 {
		if code, body, _ := call("POST", cluster.RemovePath+"?name=solo"); code != http.StatusAccepted {
			t.Fatalf("remove: %d %v", code, body)
		}
	}
	if code, body, ct := call("POST", cluster.DrainPath+"?name=solo"); code != http.StatusConflict || ct != "application/problem+json" || !strings.Contains(fmt.Sprint(body["detail"]), "removed") {
		t.Fatalf("drain of a removed member: %d %s %v, want 409 problem+json", code, ct, body)
	}
	_, st, _ = call("GET", cluster.StatusPath)
	if m := st["members"].([]any)[0].(map[string]any); m["state"] != "removed" {
		t.Fatalf("member after remove and a refused drain: %v", m)
	}
}
