package raftmux

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// TestGroupsShareOneListener: three nodes, the meta group and 16 partition
// groups, every group's Raft cluster formed over the one listener per node.
func TestGroupsShareOneListener(t *testing.T) {
	groups := []uint32{0} // meta
	for p := range uint32(16) {
		groups = append(groups, 100+p)
	}
	start := time.Now()
	tc := newTestCluster(t, 3, groups, testOptions())
	for _, g := range groups {
		tc.leader(g, 15*time.Second)
	}
	t.Logf("%d groups × 3 nodes elected leaders in %v", len(groups), time.Since(start))
	tc.applyAll(5, 5)

	// Spread leadership over the nodes, as Ward's balancer does, so that
	// every node leads some groups and dials the others through its mux.
	for i, g := range groups {
		target := tc.muxes[i%3]
		id := raft.ServerID(fmt.Sprintf("n%d", i%3))
		deadline := time.Now().Add(15 * time.Second)
		for {
			leader := tc.leader(g, 10*time.Second)
			if addr, _ := leader.LeaderWithID(); string(addr) == target.Addr().String() {
				break
			}
			err := leader.LeadershipTransferToServer(id, raftAddr(target)).Error()
			if time.Now().After(deadline) {
				t.Fatalf("group %d: transfer leadership to %s: %v", g, id, err)
			}
			if err != nil {
				t.Logf("group %d: transfer leadership to %s: %v (retrying)", g, id, err)
				time.Sleep(100 * time.Millisecond)
			}
		}
	}
	perNode := map[string]int{}
	for _, g := range groups {
		a, _ := tc.leader(g, 5*time.Second).LeaderWithID()
		perNode[string(a)]++
	}
	t.Logf("leaders per node after transfers: %v", perNode)
	tc.applyAll(5, 10)
}

// rawDial opens a TCP connection to m, sends b, and returns what the mux
// answers before closing the connection (or fails after timeout).
func rawDial(t *testing.T, m *Mux, b []byte, timeout time.Duration) []byte {
	t.Helper()
	c, err := net.Dial("tcp", m.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if len(b) > 0 {
		if _, err := c.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	got, err := io.ReadAll(c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("mux kept the connection open for %v after %q", timeout, b)
	}
	return got
}

func TestBadConnectionsAreRefusedWithoutDisturbingGroups(t *testing.T) {
	opts := testOptions()
	opts.HeaderTimeout = 300 * time.Millisecond
	groups := []uint32{1, 2}
	tc := newTestCluster(t, 3, groups, opts)
	tc.applyAll(3, 3)
	m := tc.muxes[0]

	// A silent client holds a handshake slot but delays nobody.
	silent, err := net.Dial("tcp", m.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()

	hdr := func(group uint32) []byte { return appendHeader(nil, group) }
	badVersion := hdr(1)
	badVersion[4] = 9
	for _, tc := range []struct {
		name string
		send []byte
		want []byte // the mux's answer before it closes
	}{
		{"http", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), nil},
		{"wrong magic", append([]byte("WRMY"), hdr(1)[4:]...), nil},
		{"short header then silence", hdr(1)[:5], nil},
		{"bad version", badVersion, []byte{statusBadVersion}},
		{"unknown group", hdr(99), []byte{statusUnknownGroup}},
	} {
		if got := rawDial(t, m, tc.send, 3*time.Second); !bytes.Equal(got, tc.want) {
			t.Errorf("%s: mux answered %v, want %v", tc.name, got, tc.want)
		}
	}

	// The groups kept working all along, and still do.
	tc.applyAll(3, 6)

	// The silent connection was dropped after HeaderTimeout.
	_ = silent.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := silent.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("silent connection: %v, want EOF", err)
	}

	// A dialer naming a group the peer does not run gets a clear error.
	sl, err := tc.muxes[1].StreamLayer(99)
	if err != nil {
		t.Fatal(err)
	}
	defer sl.Close()
	if _, err := sl.Dial(raftAddr(m), time.Second); !errors.Is(err, ErrUnknownGroup) {
		t.Errorf("dial of an unknown group: %v, want ErrUnknownGroup", err)
	}
}

func TestRegistrationLifecycle(t *testing.T) {
	a := listen(t, testOptions())
	b := listen(t, testOptions())
	if _, err := a.Transport(7); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Transport(7); err == nil {
		t.Error("a group registered twice")
	}

	// A closed group is refused, and can be registered again.
	slB, err := b.StreamLayer(7)
	if err != nil {
		t.Fatal(err)
	}
	if err := slB.Close(); err != nil {
		t.Fatal(err)
	}
	dialer, _ := a.StreamLayer(8)
	sl8, _ := b.StreamLayer(8)
	_ = sl8.Close()
	if _, err := dialer.Dial(raftAddr(b), time.Second); !errors.Is(err, ErrUnknownGroup) {
		t.Errorf("dial of a closed group: %v", err)
	}
	sl8, err = b.StreamLayer(8)
	if err != nil {
		t.Fatalf("register again: %v", err)
	}
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := sl8.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	c, err := dialer.Dial(raftAddr(b), time.Second)
	if err != nil {
		t.Fatalf("dial of the re-registered group: %v", err)
	}
	var server net.Conn
	select {
	case server = <-accepted:
	case <-time.After(3 * time.Second):
		t.Fatal("re-registered group did not accept")
	}
	// Bytes after the header are the group's own.
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	_ = server.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.ReadFull(server, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("read %q, %v", buf, err)
	}

	// Close closes everything: accepted and dialled connections, the
	// listener, and every group's Accept.
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := sl8.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("accept after close: %v", err)
	}
	_ = server.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := server.Read(buf); err == nil {
		t.Error("accepted connection still open after Close")
	}
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := c.Read(buf); err != io.EOF {
		t.Errorf("dialled connection after the peer closed: %v, want EOF", err)
	}
	if _, err := net.DialTimeout("tcp", b.Addr().String(), time.Second); err == nil {
		t.Error("listener still accepting after Close")
	}
	if _, err := b.Transport(9); !errors.Is(err, net.ErrClosed) {
		t.Errorf("register after close: %v", err)
	}
	b.mu.Lock()
	open := len(b.conns)
	b.mu.Unlock()
	if open != 0 {
		t.Errorf("%d connections still tracked after Close", open)
	}
}

func TestListenRejectsUnadvertisableAddress(t *testing.T) {
	if _, err := Listen("0.0.0.0:0", testOptions()); err == nil {
		t.Fatal("listening on 0.0.0.0 without Advertise succeeded")
	}
	opts := testOptions()
	opts.Advertise = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 7000}
	m, err := Listen("0.0.0.0:0", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	sl, _ := m.StreamLayer(1)
	if sl.Addr().String() != "127.0.0.1:7000" {
		t.Errorf("advertised %v", sl.Addr())
	}
}
