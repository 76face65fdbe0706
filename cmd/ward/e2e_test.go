package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	wardBin   string
	buildErr  error
)

// ward builds the real binary once per test run.
func ward(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "ward-bin-")
		if err != nil {
			buildErr = err
			return
		}
		wardBin = filepath.Join(dir, "ward")
		out, err := exec.Command("go", "build", "-o", wardBin, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return wardBin
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func TestDevServesOpsEndpointsAndShutsDownCleanly(t *testing.T) {
	bin := ward(t)
	data := t.TempDir()
	addr := freeAddr(t)
	var stderr bytes.Buffer
	cmd := exec.Command(bin, "dev", "--data", data, "--http", addr)
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()

	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if code, _ := get("/readyz"); code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("never ready; stderr:\n%s", stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code, body := get("/healthz"); code != 200 || !strings.Contains(body, "ok") {
		t.Fatalf("healthz: %d %s", code, body)
	}
	code, body := get("/metrics")
	if code != 200 {
		t.Fatalf("metrics: %d", code)
	}
	for _, name := range []string{"ward_persist_batch_writes", "ward_persist_commit_seconds", "ward_cluster_activations_total", "ward_cluster_messages_total", "ward_partition_commit_seconds", "ward_partition_leader", "ward_partition_commit_index", "ward_partition_apply_lag", "ward_membership_members", "ward_meta_leader", "ward_meta_apply_lag", "ward_placement_known_leaders", "ward_placement_local_leaders"} {
		if !strings.Contains(body, name) {
			t.Errorf("metrics lack %s", name)
		}
	}

	// The operator token: written 0600 to the data directory, accepted
	// by the CLI from the file, and required on /cluster/.
	tokenPath := filepath.Join(data, adminTokenFile)
	var fi os.FileInfo
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		var err error
		if fi, err = os.Stat(tokenPath); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s: %v", tokenPath, err)
		}
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("%s has mode %v, want 0600", tokenPath, fi.Mode().Perm())
	}
	if code, body := get("/cluster/status"); code != http.StatusUnauthorized || !strings.Contains(body, "operator token") {
		t.Fatalf("/cluster/status without the token: %d %s", code, body)
	}
	noEnv := slices.DeleteFunc(os.Environ(), func(e string) bool { return strings.HasPrefix(e, adminTokenEnv+"=") })
	st := exec.Command(bin, "cluster", "status", "--server", addr, "--token-file", tokenPath)
	st.Env = noEnv
	if out, err := st.CombinedOutput(); err != nil || !strings.Contains(string(out), "PARTITION") {
		t.Fatalf("ward cluster status --token-file: %v\n%s", err, out)
	}
	st = exec.Command(bin, "cluster", "status", "--server", addr)
	st.Env = noEnv
	if out, err := st.CombinedOutput(); err == nil || !strings.Contains(string(out), "--token-file") {
		t.Fatalf("ward cluster status without a token: %v\n%s", err, out)
	}

	// A second node on the same data directory refuses, saying why.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "dev", "--data", data, "--http", freeAddr(t)).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "in use by another ward process") {
		t.Fatalf("second dev on the same data: err=%v output:\n%s", err, out)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("dev exited with %v after SIGTERM; stderr:\n%s", err, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("dev did not stop after SIGTERM")
	}
	if !strings.Contains(stderr.String(), "stopped cleanly") {
		t.Fatalf("no clean-stop log line; stderr:\n%s", stderr.String())
	}
}

func TestSimCommandIsDeterministic(t *testing.T) {
	bin := ward(t)
	run := func(seed string) map[string]any {
		t.Helper()
		out, err := exec.Command(bin, "sim", "--seed", seed, "--json").Output()
		if err != nil {
			t.Fatalf("ward sim --seed %s: %v", seed, err)
		}
		if n := bytes.Count(bytes.TrimSpace(out), []byte("\n")); n != 0 {
			t.Fatalf("sim printed %d lines, want one JSON object", n+1)
		}
		var r map[string]any
		if err := json.Unmarshal(out, &r); err != nil {
			t.Fatalf("sim output is not JSON: %v\n%s", err, out)
		}
		for _, k := range []string{"seed", "ops", "crashes", "violations", "trace_hash"} {
			if _, ok := r[k]; !ok {
				t.Fatalf("sim JSON lacks %q: %s", k, out)
			}
		}
		return r
	}
	a, b, c := run("11"), run("11"), run("12")
	if a["trace_hash"] != b["trace_hash"] {
		t.Fatalf("same seed, different trace_hash: %v vs %v", a["trace_hash"], b["trace_hash"])
	}
	if a["trace_hash"] == c["trace_hash"] {
		t.Fatalf("seeds 11 and 12 gave the same trace_hash %v", a["trace_hash"])
	}
	if a["violations"].(float64) != 0 || c["violations"].(float64) != 0 {
		t.Fatalf("violations: %v %v", a["violations"], c["violations"])
	}
}

func TestUnknownFlagsAndCommandsFail(t *testing.T) {
	bin := ward(t)
	for _, args := range [][]string{{"nope"}, {"dev", "--bogus"}, {"sim", "--seed", "x"}, {"dev", "--log-level", "loud", "--http", freeAddr(t), "--data", t.TempDir()}} {
		out, err := exec.Command(bin, args...).CombinedOutput()
		if err == nil {
			t.Errorf("ward %v succeeded; output:\n%s", args, out)
		}
	}
}
