package main

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wardhq/ward/cluster"
)

func writeMasterKey(t *testing.T, dir, name string) string {
	t.Helper()
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(base64.StdEncoding.EncodeToString(raw)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestClusterMasterKey: three `ward node` processes with one
// --master-key-file form a cluster whose secrets are sealed (status says
// so) and which serves its keys, its provider and its operator endpoints;
// a node restarted with another key exits with an error that says so, and
// with the right key rejoins.
func TestClusterMasterKey(t *testing.T) {
	c := newTestCluster(t)
	keys := t.TempDir()
	good, bad := writeMasterKey(t, keys, "master.key"), writeMasterKey(t, keys, "other.key")
	c.formThree("--master-key-file", good)
	st := c.waitStatus("n1", 30*time.Second, "secrets sealed", func(st *cluster.Status) bool { return st.Meta.SecretsSealed })
	t.Logf("sealed; meta leader %s", st.Meta.Leader)
	for _, name := range c.names() {
		for _, path := range []string{"/.well-known/jwks.json", "/.well-known/openid-configuration"} {
			deadline := time.Now().Add(30 * time.Second)
			for {
				code, body, err := c.do(name, http.MethodGet, path, nil)
				if err == nil && code == http.StatusOK && len(body) > 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s %s: %d %v %s", name, path, code, err, body)
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
	}

	c.stop("n3")
	c.start("n3", "--master-key-file", bad)
	select {
	case err := <-c.node("n3").done:
		if err == nil {
			t.Fatal("n3 with another master key exited 0")
		}
		b, _ := os.ReadFile(c.node("n3").log.Name())
		if !strings.Contains(string(b), "master key is not the one the cluster's secrets are sealed under") {
			t.Fatalf("n3's log does not say why it stopped:\n%s", logExcerpt(string(b), 20))
		}
	case <-time.After(60 * time.Second):
		t.Fatal("n3 with another master key kept running")
	}
	// With the right key it rejoins; --admin-token-file puts the operator
	// token where the operator keeps it (outside the data directory).
	tokFile := filepath.Join(keys, "n3.admin-token")
	c.start("n3", "--master-key-file", good, "--admin-token-file", tokFile)
	c.waitStatus("n1", 60*time.Second, "n3 back", healthy("n1", "n2", "n3"))
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, err := os.ReadFile(tokFile)
		if err == nil && strings.TrimSpace(string(b)) == c.adminToken() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("--admin-token-file %s: %q %v", tokFile, b, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestClusterSealsWhenEveryMemberHasTheKey: a cluster in which one member
// has no master key keeps its secrets readable to it (not sealed, every
// node serves); once that member is restarted with the key, the cluster
// seals in place and every node still serves.
func TestClusterSealsWhenEveryMemberHasTheKey(t *testing.T) {
	c := newTestCluster(t)
	key := writeMasterKey(t, t.TempDir(), "master.key")
	for i := 1; i <= 3; i++ {
		c.add(i)
	}
	for i := 1; i <= 3; i++ {
		args := []string{"--bootstrap-expect", "3"}
		if i != 3 {
			args = append(args, "--master-key-file", key)
		}
		c.start(fmt.Sprintf("n%d", i), args...)
	}
	c.waitStatus("n1", 60*time.Second, "3-node cluster forms", healthy("n1", "n2", "n3"))
	serves := func(what string) {
		t.Helper()
		for _, name := range c.names() {
			deadline := time.Now().Add(30 * time.Second)
			for {
				code, body, err := c.do(name, http.MethodGet, "/.well-known/jwks.json", nil)
				if err == nil && code == http.StatusOK && strings.Contains(string(body), `"kid"`) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s: %s JWKS: %d %v %s", what, name, code, err, body)
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
	}
	serves("n3 without the key")
	time.Sleep(3 * time.Second) // several of the meta leader's seal checks
	for _, name := range c.names() {
		st, err := c.status(name)
		if err != nil {
			t.Fatal(err)
		}
		if st.Meta.SecretsSealed {
			t.Fatalf("sealed while n3 has no master key (status via %s)", name)
		}
	}
	c.stop("n3")
	c.start("n3", "--master-key-file", key)
	c.waitStatus("n1", 60*time.Second, "sealed once n3 has the key", func(st *cluster.Status) bool {
		return st.Meta.SecretsSealed && healthy("n1", "n2", "n3")(st)
	})
	serves("sealed")
}
