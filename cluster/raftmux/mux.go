// Package raftmux runs every Raft group of a node (the meta group and the P
// partition groups) over one TCP listener, the node's --raft address.
//
// Each group gets its own raft.NetworkTransport over a raft.StreamLayer of
// the mux. A dialled connection starts with a small header naming the group
// (see header.go); the mux's accept loop reads it under a deadline and hands
// the connection to that group's Accept, or refuses it with a logged reason.
// After the header the connection is plain NetworkTransport traffic, so the
// mux costs nothing per RPC: only one extra round trip when a connection is
// opened, and NetworkTransport pools its connections.
//
// One listener instead of P+1 keeps the operator's view simple (one port to
// open and to advertise through gossip), and every group of a node has the
// same Raft server address, so a partition's configuration names nodes, not
// ports.
//
// TLS: not yet. The hook belongs in Listen (wrap the listener with
// tls.NewListener) and in streamLayer.Dial (tls.Dialer), with the header sent
// inside the TLS stream so that group IDs are not visible on the wire and the
// peer is authenticated before any group is named.
package raftmux

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// Options configures a Mux; the zero value is usable.
type Options struct {
	// Advertise is the address other nodes dial (and the address Raft
	// reports as this server's). Nil: the listener's address, which must then
	// not be unspecified (0.0.0.0).
	Advertise net.Addr
	// HeaderTimeout bounds how long an accepted connection may take to send
	// its header, and how long a dial waits for the answer. Default 5 s.
	HeaderTimeout time.Duration
	// AcceptBacklog is how many handshaken connections may wait for a
	// group's transport to accept them; beyond it, and after HeaderTimeout,
	// they are closed. Default 16.
	AcceptBacklog int
	// MaxHandshakes caps connections that have not sent their header yet;
	// more are closed at once (a flood of idle connections costs goroutines).
	// Default 1024.
	MaxHandshakes int

	// MaxPool and Timeout are each group's NetworkTransport settings:
	// pooled outbound connections per peer, and the I/O deadline of an RPC.
	// Defaults 3 and 10 s, as Consul uses.
	MaxPool int
	Timeout time.Duration
	// MaxRPCsInFlight is NetworkTransport's pipelining depth. Default 1:
	// pipelining off. hashicorp/raft v1.8's pipeline can deadlock at depth
	// 2 (its default): when a follower answers Success=false, pipelineDecode
	// exits, decodeResponses parks handing over the next response, and the
	// next pipelined send parks behind it, while the pipeline's Close is
	// deferred in the very goroutine that is stuck. Replication to that
	// follower stops for good (heartbeats go on, so no election heals it),
	// and Raft.Shutdown hangs. It happened here within a few runs of a test
	// that transfers leadership of 17 groups. Depth 1 skips the pipeline
	// code path entirely; raft's own measurements (PR 541) show pipelining
	// gains little once entries are batched, which Ward does.
	MaxRPCsInFlight int
	// TransportLogger receives the NetworkTransports' logs. Nil: hclog's
	// default output at Warn level.
	TransportLogger hclog.Logger

	// Logger receives the mux's own logs (refused connections). Nil:
	// slog.Default().
	Logger *slog.Logger
}

func (o *Options) withDefaults() {
	if o.HeaderTimeout <= 0 {
		o.HeaderTimeout = 5 * time.Second
	}
	if o.AcceptBacklog <= 0 {
		o.AcceptBacklog = 16
	}
	if o.MaxHandshakes <= 0 {
		o.MaxHandshakes = 1024
	}
	if o.MaxPool <= 0 {
		o.MaxPool = 3
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.MaxRPCsInFlight <= 0 {
		o.MaxRPCsInFlight = 1
	}
	if o.TransportLogger == nil {
		o.TransportLogger = hclog.New(&hclog.LoggerOptions{Name: "raft-net", Level: hclog.Warn})
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// Mux is one listener shared by many Raft groups.
type Mux struct {
	ln   net.Listener
	opts Options
	log  *slog.Logger
	addr net.Addr

	handshakes chan struct{} // semaphore of MaxHandshakes

	mu     sync.Mutex
	closed bool
	groups map[uint32]*streamLayer
	conns  map[*trackedConn]struct{} // every open connection, both directions

	done chan struct{}
	wg   sync.WaitGroup
}

// Listen listens on addr (host:port; port 0 picks one) and starts accepting.
func Listen(addr string, opts Options) (*Mux, error) {
	opts.withDefaults()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("raftmux: listen on %s: %w", addr, err)
	}
	adv := opts.Advertise
	if adv == nil {
		adv = ln.Addr()
	}
	if tcp, ok := adv.(*net.TCPAddr); !ok || tcp.IP == nil || tcp.IP.IsUnspecified() {
		_ = ln.Close()
		// Raft puts this address in cluster configurations: peers must be
		// able to dial it.
		return nil, fmt.Errorf("raftmux: address %v is not advertisable; set Options.Advertise", adv)
	}
	m := &Mux{
		ln:         ln,
		opts:       opts,
		log:        opts.Logger.With("component", "raftmux", "addr", adv.String()),
		addr:       adv,
		handshakes: make(chan struct{}, opts.MaxHandshakes),
		groups:     make(map[uint32]*streamLayer),
		conns:      make(map[*trackedConn]struct{}),
		done:       make(chan struct{}),
	}
	m.wg.Add(1)
	go m.acceptLoop()
	return m, nil
}

// Addr is the address peers dial: Raft's ServerAddress for every group here.
func (m *Mux) Addr() net.Addr { return m.addr }

// Transport registers group and returns its Raft transport. A group can be
// registered again once its transport was closed (a partition that moved
// away and back).
func (m *Mux) Transport(group uint32) (*raft.NetworkTransport, error) {
	sl, err := m.register(group)
	if err != nil {
		return nil, err
	}
	return raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:          sl,
		MaxPool:         m.opts.MaxPool,
		MaxRPCsInFlight: m.opts.MaxRPCsInFlight,
		Timeout:         m.opts.Timeout,
		Logger:          m.opts.TransportLogger.With("group", group),
	}), nil
}

// StreamLayer registers group and returns its raw stream layer, for callers
// that build their own transport around it.
func (m *Mux) StreamLayer(group uint32) (raft.StreamLayer, error) {
	return m.register(group)
}

func (m *Mux) register(group uint32) (*streamLayer, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, fmt.Errorf("raftmux: register group %d: %w", group, net.ErrClosed)
	}
	if _, dup := m.groups[group]; dup {
		return nil, fmt.Errorf("raftmux: group %d already has a transport", group)
	}
	sl := &streamLayer{
		mux:    m,
		group:  group,
		conns:  make(chan net.Conn, m.opts.AcceptBacklog),
		closed: make(chan struct{}),
	}
	m.groups[group] = sl
	return sl, nil
}

func (m *Mux) unregister(sl *streamLayer) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.groups[sl.group] == sl {
		delete(m.groups, sl.group)
	}
}

func (m *Mux) lookup(group uint32) *streamLayer {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.groups[group]
}

// Close stops accepting, closes every group's stream layer (their Accept
// returns an error, so the transports' accept loops end), and closes every
// connection the mux accepted or dialled. Raft groups should be shut down
// first; their transports' Close is still safe afterwards.
func (m *Mux) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	close(m.done)
	groups := make([]*streamLayer, 0, len(m.groups))
	for _, sl := range m.groups {
		groups = append(groups, sl)
	}
	conns := make([]*trackedConn, 0, len(m.conns))
	for c := range m.conns {
		conns = append(conns, c)
	}
	m.mu.Unlock()

	err := m.ln.Close()
	for _, sl := range groups {
		_ = sl.Close()
	}
	for _, c := range conns {
		_ = c.Close()
	}
	m.wg.Wait()
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("raftmux: close listener: %w", err)
	}
	return nil
}

func (m *Mux) acceptLoop() {
	defer m.wg.Done()
	var delay time.Duration
	for {
		conn, err := m.ln.Accept()
		if err != nil {
			select {
			case <-m.done:
				return
			default:
			}
			// Out of file descriptors and the like: back off as net/http
			// does rather than spin.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			m.log.Error("accept failed; retrying", "err", err, "in", delay)
			select {
			case <-m.done:
				return
			case <-time.After(delay):
			}
			continue
		}
		delay = 0
		select {
		case m.handshakes <- struct{}{}:
		default:
			m.log.Warn("refusing connection: too many pending handshakes", "remote", conn.RemoteAddr(), "max", m.opts.MaxHandshakes)
			_ = conn.Close()
			continue
		}
		tc := m.track(conn)
		if tc == nil {
			return // closed meanwhile
		}
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			defer func() { <-m.handshakes }()
			m.handshake(tc)
		}()
	}
}

// handshake reads the header of an accepted connection and hands it to its
// group, or refuses it. It runs on its own goroutine so that a slow or silent
// peer delays nobody else.
func (m *Mux) handshake(c *trackedConn) {
	deadline := time.Now().Add(m.opts.HeaderTimeout)
	_ = c.SetDeadline(deadline)
	var hdr [HeaderSize]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		m.log.Warn("refusing connection: no header", "remote", c.RemoteAddr(), "err", err)
		_ = c.Close()
		return
	}
	group, err := decodeHeader(hdr[:])
	switch {
	case errors.Is(err, ErrBadVersion):
		m.log.Warn("refusing connection", "remote", c.RemoteAddr(), "group", group, "err", err)
		m.answer(c, statusBadVersion)
		_ = c.Close()
		return
	case err != nil:
		// Not our protocol: say nothing to it.
		m.log.Warn("refusing connection", "remote", c.RemoteAddr(), "err", err)
		_ = c.Close()
		return
	}
	sl := m.lookup(group)
	if sl == nil {
		// Routine while a node is still creating its groups, or after a
		// partition moved away; the dialer's Raft retries.
		m.log.Warn("refusing connection: unknown group", "remote", c.RemoteAddr(), "group", group)
		m.answer(c, statusUnknownGroup)
		_ = c.Close()
		return
	}
	if !m.answer(c, statusOK) {
		_ = c.Close()
		return
	}
	_ = c.SetDeadline(time.Time{})
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case sl.conns <- c:
	case <-sl.closed:
		_ = c.Close()
	case <-timer.C:
		m.log.Warn("refusing connection: group is not accepting", "remote", c.RemoteAddr(), "group", group)
		_ = c.Close()
	}
}

func (m *Mux) answer(c net.Conn, status byte) bool {
	if _, err := c.Write([]byte{status}); err != nil {
		m.log.Debug("cannot answer header", "remote", c.RemoteAddr(), "err", err)
		return false
	}
	return true
}

// track registers c so that Close can close it; nil if the mux is closed.
func (m *Mux) track(c net.Conn) *trackedConn {
	tc := &trackedConn{Conn: c, mux: m}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		_ = c.Close()
		return nil
	}
	m.conns[tc] = struct{}{}
	return tc
}

type trackedConn struct {
	net.Conn
	mux  *Mux
	once sync.Once
}

func (c *trackedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.mux.mu.Lock()
		delete(c.mux.conns, c)
		c.mux.mu.Unlock()
	})
	return err
}

// streamLayer is one group's view of the mux: raft.StreamLayer.
type streamLayer struct {
	mux       *Mux
	group     uint32
	conns     chan net.Conn
	closeOnce sync.Once
	closed    chan struct{}
}

var _ raft.StreamLayer = (*streamLayer)(nil)

// Accept returns the next connection whose header named this group.
func (s *streamLayer) Accept() (net.Conn, error) {
	select {
	case c := <-s.conns:
		return c, nil
	case <-s.closed:
		return nil, fmt.Errorf("raftmux: group %d: %w", s.group, net.ErrClosed)
	}
}

// Close unregisters the group: later connections naming it are refused.
// Connections already accepted stay with the transport that took them.
func (s *streamLayer) Close() error {
	s.closeOnce.Do(func() {
		s.mux.unregister(s)
		close(s.closed)
		for {
			select {
			case c := <-s.conns:
				_ = c.Close()
			default:
				return
			}
		}
	})
	return nil
}

func (s *streamLayer) Addr() net.Addr { return s.mux.addr }

// Dial connects to the mux at address and names this group.
func (s *streamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout}
	conn, err := d.Dial("tcp", string(address))
	if err != nil {
		return nil, fmt.Errorf("raftmux: dial %s for group %d: %w", address, s.group, err)
	}
	tc := s.mux.track(conn)
	if tc == nil {
		return nil, fmt.Errorf("raftmux: dial %s for group %d: %w", address, s.group, net.ErrClosed)
	}
	wait := s.mux.opts.HeaderTimeout
	if timeout > 0 && timeout < wait {
		wait = timeout
	}
	_ = tc.SetDeadline(time.Now().Add(wait))
	var status [1]byte
	_, err = tc.Write(appendHeader(make([]byte, 0, HeaderSize), s.group))
	if err == nil {
		_, err = io.ReadFull(tc, status[:])
	}
	if err != nil {
		_ = tc.Close()
		return nil, fmt.Errorf("raftmux: handshake with %s for group %d: %w", address, s.group, err)
	}
	switch status[0] {
	case statusOK:
	case statusUnknownGroup:
		_ = tc.Close()
		return nil, fmt.Errorf("raftmux: %s refused group %d: %w", address, s.group, ErrUnknownGroup)
	case statusBadVersion:
		_ = tc.Close()
		return nil, fmt.Errorf("raftmux: %s refused header version %d: %w", address, Version, ErrBadVersion)
	default:
		_ = tc.Close()
		return nil, fmt.Errorf("raftmux: %s answered group %d with unknown status %d", address, s.group, status[0])
	}
	_ = tc.SetDeadline(time.Time{})
	return tc, nil
}
