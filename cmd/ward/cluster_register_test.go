package main

import (
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestClusterConcurrentRegistrationsOneAccount: the same e-mail address
// registered at once through every node of a 3-node cluster gives exactly
// one account; every other attempt is refused with 409 and creates nothing
// (the emailindex actor, one per tenant and address, decides).
func TestClusterConcurrentRegistrationsOneAccount(t *testing.T) {
	c := newTestCluster(t)
	c.formThree()
	type attempt struct {
		client *http.Client
		base   string
		csrf   string
	}
	// Open the form on every node (twice per node: six registrations).
	var attempts []attempt
	deadline := time.Now().Add(60 * time.Second)
	for _, name := range c.names() {
		for range 2 {
			jar, _ := cookiejar.New(nil)
			cl := &http.Client{Jar: jar, Timeout: 30 * time.Second,
				CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
			base := "http://" + c.node(name).http
			for {
				resp, err := cl.Get(base + "/register")
				if err == nil {
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if csrf := between(string(b), `name="csrf" value="`, `"`); resp.StatusCode == 200 && csrf != "" {
						attempts = append(attempts, attempt{cl, base, csrf})
						break
					}
				}
				if time.Now().After(deadline) {
					t.Fatalf("registration form on %s not served within 60s (%v)", name, err)
				}
				time.Sleep(200 * time.Millisecond)
			}
		}
	}
	var wg sync.WaitGroup
	codes := make([]int, len(attempts))
	start := make(chan struct{})
	for i, a := range attempts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			form := url.Values{"csrf": {a.csrf}, "first_name": {"Grace"}, "last_name": {fmt.Sprintf("Hopper%d", i)},
				"email": {"Race@Example.test"}, "phone": {"+4930555000" + fmt.Sprint(i)}, "password": {"correct horse battery staple 42"}}
			<-start
			resp, err := a.client.PostForm(a.base+"/register", form)
			if err != nil {
				t.Errorf("attempt %d: %v", i, err)
				return
			}
			resp.Body.Close()
			codes[i] = resp.StatusCode
		}()
	}
	close(start)
	wg.Wait()
	ok, conflict := 0, 0
	for _, code := range codes {
		switch {
		case code == http.StatusSeeOther:
			ok++
		case code == http.StatusConflict:
			conflict++
		}
	}
	t.Logf("%d concurrent registrations of one address through 3 nodes: answers %v", len(codes), codes)
	if ok != 1 || conflict != len(codes)-1 {
		t.Fatalf("want exactly one account and %d refusals, got %d created and %d refused: %v", len(codes)-1, ok, conflict, codes)
	}
}

func between(s, a, b string) string {
	_, rest, ok := strings.Cut(s, a)
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(rest, b)
	return v
}
