package main

import (
	"io"
	"strings"
	"testing"
	"time"
)

// TestNodeMetricsListener: with --metrics-addr a node serves /metrics
// there and not on its public --http address; health stays on both.
func TestNodeMetricsListener(t *testing.T) {
	c := newTestCluster(t)
	n := c.add(1)
	metricsAddr := freePortOn(t, strings.Split(n.http, ":")[0])
	c.start("n1", "--bootstrap-expect", "1", "--metrics-addr", metricsAddr)
	c.waitStatus("n1", 60*time.Second, "one-node cluster forms", healthy("n1"))
	get := func(addr, path string) (int, string) {
		t.Helper()
		resp, err := c.client.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get(metricsAddr, "/metrics"); code != 200 || !strings.Contains(body, "ward_meta_version") {
		t.Fatalf("/metrics on --metrics-addr: %d %.200s", code, body)
	}
	if code, _ := get(n.http, "/metrics"); code != 404 {
		t.Fatalf("/metrics on --http: %d, want 404", code)
	}
	for _, addr := range []string{n.http, metricsAddr} {
		if code, _ := get(addr, "/healthz"); code != 200 {
			t.Errorf("/healthz on %s: %d", addr, code)
		}
	}
}
