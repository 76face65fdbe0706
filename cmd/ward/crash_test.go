package main

// The crash test runs the production wiring (startNode: pebble store, group
// commit, protoactor-go host) in a child process — this test binary
// re-executed — that writes session commands and prints every
// acknowledgement. The parent SIGKILLs it at random moments, restarts it, and
// checks, through the restarted child's own reads, that every acknowledged
// write is there and that nothing unacknowledged is half-applied.

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/wardhq/ward/actors"
	"github.com/wardhq/ward/actors/eventlog"
	"github.com/wardhq/ward/actors/session"
	"github.com/wardhq/ward/cluster"
	"github.com/wardhq/ward/cluster/placement"
	"github.com/wardhq/ward/persistence"
	"github.com/wardhq/ward/protocol"
)

const (
	crashChildEnv = "WARD_CRASH_CHILD"
	crashCycles   = 20
	crashWorkers  = 8
)

func TestMain(m *testing.M) {
	if os.Getenv(crashChildEnv) != "" {
		if err := runCrashChild(os.Getenv(crashChildEnv), os.Getenv("WARD_CRASH_STATE")); err != nil {
			fmt.Println("FATAL", err)
			os.Exit(3)
		}
		os.Exit(0)
	}
	code := m.Run()
	if wardBin != "" {
		os.RemoveAll(filepath.Dir(wardBin)) // the binary built by ward()
	}
	os.Exit(code)
}

// known is what the parent has seen acknowledged for one session.
type known struct {
	ID       string `json:"id"`
	Created  bool   `json:"created"`  // create acknowledged
	Gen      uint64 `json:"gen"`      // last acknowledged generation
	Secret   string `json:"secret"`   // hex secret of Gen
	Revoked  bool   `json:"revoked"`  // revoke acknowledged
	Unsure   bool   `json:"unsure"`   // a command was in flight at a kill
	Attempts int    `json:"attempts"` // commands sent (acked or not)
}

// childLine is one line the child prints: an acknowledgement or a read.
type childLine struct {
	Op      string `json:"op"` // create, rotate, revoke, dump, event
	ID      string `json:"id"`
	Gen     uint64 `json:"gen"`
	Secret  string `json:"secret,omitempty"`
	Status  string `json:"status,omitempty"`
	Hash    string `json:"hash,omitempty"`
	Exists  bool   `json:"exists"`
	Subject string `json:"subject,omitempty"`
}

func TestCrashSafetyWithSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	dir := t.TempDir()
	statePath := filepath.Join(dir, "state.json")
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	state := map[string]*known{}
	totalAcks := 0

	for cycle := 0; cycle <= crashCycles; cycle++ {
		writeState(t, statePath, state, cycle)
		final := cycle == crashCycles
		mode := "write"
		if final {
			mode = "dump"
		}
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+mode, "WARD_CRASH_STATE="+statePath, "WARD_CRASH_DATA="+filepath.Join(dir, "data"))
		cmd.Stderr = &limitedBuffer{max: 64 << 10}
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := make(chan childLine, 1024)
		readDone := make(chan struct{})
		var fatal string
		go func() {
			defer close(readDone)
			sc := bufio.NewScanner(out)
			sc.Buffer(make([]byte, 1<<20), 1<<20)
			for sc.Scan() {
				text := sc.Text()
				if strings.HasPrefix(text, "FATAL") {
					fatal = text
					continue
				}
				if text == "READY" {
					lines <- childLine{Op: "ready"}
					continue
				}
				var l childLine
				if json.Unmarshal([]byte(text), &l) == nil && l.Op != "" {
					lines <- l
				}
			}
			close(lines)
		}()

		// Reads come first: verify them against what was acknowledged before
		// the last kill. Then let the child write until the kill.
		killAt := time.Duration(50+rng.IntN(600)) * time.Millisecond
		var killTimer <-chan time.Time
		deadline := time.After(60 * time.Second)
		dumped := map[string]childLine{}
		var events []childLine
		cycleAcks := 0
	loop:
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					break loop
				}
				switch l.Op {
				case "dump":
					dumped[l.ID] = l
				case "event":
					events = append(events, l)
				case "ready":
					verifyDump(t, cycle, state, dumped)
					if !final {
						killTimer = time.After(killAt)
					}
				default:
					applyAck(t, state, l)
					cycleAcks++
				}
			case <-killTimer:
				_ = cmd.Process.Signal(syscall.SIGKILL)
				killTimer = nil
			case <-deadline:
				_ = cmd.Process.Kill()
				t.Fatalf("cycle %d: child did not finish in time; stderr:\n%s", cycle, cmd.Stderr)
			}
		}
		<-readDone
		werr := cmd.Wait()
		if fatal != "" {
			t.Fatalf("cycle %d: child failed: %s\nstderr:\n%s", cycle, fatal, cmd.Stderr)
		}
		if final {
			if werr != nil {
				t.Fatalf("final child: %v\nstderr:\n%s", werr, cmd.Stderr)
			}
			verifyEvents(t, state, dumped, events)
			t.Logf("domain events: %d read back; every session's created and revoked event exactly once, none for a write that did not land", len(events))
		} else {
			ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
			if !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
				t.Fatalf("cycle %d: child exited by itself (%v) instead of being killed; stderr:\n%s", cycle, werr, cmd.Stderr)
			}
			// Whatever was in flight at the kill may or may not have landed.
			for _, k := range state {
				if k.Attempts > 0 {
					k.Unsure = true
				}
			}
		}
		totalAcks += cycleAcks
		if t.Failed() {
			t.Fatalf("cycle %d failed; child stderr:\n%s", cycle, cmd.Stderr)
		}
	}
	created, rotations, revoked := 0, uint64(0), 0
	for _, k := range state {
		if k.Created {
			created++
		}
		rotations += k.Gen
		if k.Revoked {
			revoked++
		}
	}
	t.Logf("%d kill/restart cycles, %d acknowledged commands (%d sessions created, %d rotations, %d revoked), all verified after restart",
		crashCycles, totalAcks, created, rotations, revoked)
	if totalAcks < crashCycles {
		t.Fatalf("only %d acknowledgements in %d cycles: the workload did too little to prove anything", totalAcks, crashCycles)
	}
}

func applyAck(t *testing.T, state map[string]*known, l childLine) {
	t.Helper()
	k := state[l.ID]
	if k == nil {
		k = &known{ID: l.ID}
		state[l.ID] = k
	}
	switch l.Op {
	case "create":
		k.Created, k.Gen, k.Secret = true, l.Gen, l.Secret
	case "rotate":
		if l.Gen <= k.Gen && k.Created {
			t.Errorf("%s: rotation acknowledged generation %d after %d", l.ID, l.Gen, k.Gen)
		}
		k.Gen, k.Secret = l.Gen, l.Secret
	case "revoke":
		k.Revoked = true
	case "attempt":
		k.Attempts++
		return
	default:
		t.Errorf("unknown child line %+v", l)
		return
	}
	k.Attempts = 0
	k.Unsure = false
}

// verifyDump checks the restarted child's reads against the acknowledged
// state. With no command in flight at the kill the state must be exactly what
// was acknowledged; with one in flight it may also be exactly one step ahead.
// verifyEvents checks the domain events the final child read from the
// tenants' event logs against the sessions it read back: a session that
// exists has exactly one identity.session.created.v1, a revoked one exactly
// one identity.session.revoked.v1, and no event names a session whose write
// never landed. Kills fell between steps, relays and trims throughout.
func verifyEvents(t *testing.T, state map[string]*known, dumped map[string]childLine, events []childLine) {
	t.Helper()
	count := map[string]int{}
	for _, e := range events {
		count[e.Status+" "+e.ID]++
		if d, ok := dumped[e.ID]; !ok || !d.Exists {
			t.Errorf("event %s names session %s, which does not exist", e.Status, e.ID)
		}
	}
	for id, d := range dumped {
		if !d.Exists {
			continue
		}
		if n := count["identity.session.created.v1 "+id]; n != 1 {
			t.Errorf("session %s: %d created events, want 1", id, n)
		}
		want := 0
		if d.Status == "revoked" {
			want = 1
		}
		if n := count["identity.session.revoked.v1 "+id]; n != want {
			t.Errorf("session %s (%s): %d revoked events, want %d", id, d.Status, n, want)
		}
	}
	if len(events) == 0 {
		t.Errorf("no domain events read back")
	}
}

func verifyDump(t *testing.T, cycle int, state map[string]*known, dumped map[string]childLine) {
	t.Helper()
	ids := make([]string, 0, len(state))
	for id := range state {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		k := state[id]
		d, ok := dumped[id]
		if !ok {
			t.Errorf("cycle %d: %s was not read back", cycle, id)
			continue
		}
		if !k.Created {
			// Never acknowledged: absent, or whole if a create was in flight.
			if d.Exists {
				switch {
				case !k.Unsure:
					t.Errorf("cycle %d: %s exists but no create for it was ever in flight", cycle, id)
				case d.Status != "active" || d.Subject != "user-"+id || d.Gen != 0:
					t.Errorf("cycle %d: unacknowledged %s is half-applied: %+v", cycle, id, d)
				}
				adopt(k, d)
			}
			k.Unsure, k.Attempts = false, 0
			continue
		}
		if !d.Exists {
			t.Errorf("cycle %d: acknowledged session %s lost", cycle, id)
			continue
		}
		if d.Subject != "user-"+id {
			t.Errorf("cycle %d: %s subject %q", cycle, id, d.Subject)
		}
		if k.Revoked && d.Status != "revoked" {
			t.Errorf("cycle %d: acknowledged revoke of %s lost: status %s", cycle, id, d.Status)
		}
		switch {
		case d.Gen == k.Gen:
			if !k.Revoked && k.Secret != "" && d.Status == "active" && d.Hash != hashHex(k.Secret) {
				t.Errorf("cycle %d: %s at acknowledged generation %d but its refresh hash is not the acknowledged secret's", cycle, id, d.Gen)
			}
		case d.Gen == k.Gen+1 && k.Unsure:
			adopt(k, d) // an unacknowledged rotation landed whole
		default:
			t.Errorf("cycle %d: %s generation %d, acknowledged %d (in flight: %v)", cycle, id, d.Gen, k.Gen, k.Unsure)
		}
		if d.Status == "revoked" && !k.Revoked {
			if !k.Unsure {
				t.Errorf("cycle %d: %s revoked without a revoke in flight", cycle, id)
			}
			k.Revoked = true
		}
		k.Unsure, k.Attempts = false, 0
	}
}

// adopt takes over the state of a command that landed without its
// acknowledgement; its secret is unknown, so the session is only read from now
// on (an empty Secret tells the child not to rotate it).
func adopt(k *known, d childLine) {
	k.Created = true
	k.Gen = d.Gen
	k.Secret = ""
	k.Revoked = d.Status == "revoked"
	k.Unsure, k.Attempts = false, 0
}

func hashHex(secretHex string) string {
	b, _ := hex.DecodeString(secretHex)
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func writeState(t *testing.T, path string, state map[string]*known, cycle int) {
	t.Helper()
	b, err := json.Marshal(struct {
		Cycle    int               `json:"cycle"`
		Sessions map[string]*known `json:"sessions"`
	}{cycle, state})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// runCrashChild is the child: start the node, read back every session the
// parent knows, print READY, then write until killed.
func runCrashChild(mode, statePath string) error {
	var st struct {
		Cycle    int               `json:"cycle"`
		Sessions map[string]*known `json:"sessions"`
	}
	b, err := os.ReadFile(statePath)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return err
	}
	n, err := startNode(nodeConfig{
		DataDir:        os.Getenv("WARD_CRASH_DATA"),
		PassivateAfter: 200 * time.Millisecond, // exercise re-activation too
		SnapshotEvery:  3,
		Partitions:     cluster.DefaultPartitions,
		Logger:         slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		return err
	}
	var outMu sync.Mutex
	emit := func(l childLine) {
		b, _ := json.Marshal(l)
		outMu.Lock()
		os.Stdout.Write(append(b, '\n'))
		outMu.Unlock()
	}
	emitFatal := func(op, id string, err error) {
		outMu.Lock()
		fmt.Printf("FATAL %s %s: %v\n", op, id, err)
		outMu.Unlock()
	}
	ctx := context.Background()
	req := func(id string, msg protocol.Message) (protocol.Message, error) {
		c, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		return n.host.Request(c, session.KindName, id, msg)
	}
	for id := range st.Sessions {
		reply, err := req(id, &protocol.GetSession{})
		if actors.CodeOf(err) == protocol.ErrorCode_ERROR_CODE_NOT_FOUND {
			emit(childLine{Op: "dump", ID: id})
			continue
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", id, err)
		}
		info := reply.(*protocol.SessionInfo)
		hash, err := storedHash(n, id)
		if err != nil {
			return err
		}
		emit(childLine{Op: "dump", ID: id, Exists: true, Gen: info.GetGeneration(), Status: statusWord(info.GetStatus()), Subject: info.GetSubject(), Hash: hash})
	}
	if mode == "dump" {
		if err := dumpEvents(n, st.Cycle, emit); err != nil {
			return err
		}
	}
	fmt.Println("READY")
	if mode == "dump" {
		sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		return n.close(sctx)
	}

	var wg sync.WaitGroup
	for w := 0; w < crashWorkers; w++ {
		// Each worker owns its sessions, so at most one command per session is
		// in flight when the kill lands.
		var mine []*known
		for _, k := range st.Sessions {
			// A session with a command in flight at the last kill may have
			// moved on unacknowledged: the parent settles it from this run's
			// reads, so it is left alone until the next run.
			if k.Created && !k.Revoked && !k.Unsure && k.Secret != "" && int(hashString(k.ID)%crashWorkers) == w {
				mine = append(mine, k)
			}
		}
		wg.Add(1)
		go func(w int, mine []*known) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(st.Cycle), uint64(w)))
			for i := 0; ; i++ {
				if len(mine) == 0 || rng.IntN(3) == 0 {
					id := fmt.Sprintf("c%d-w%d-%d", st.Cycle, w, i)
					if int(hashString(id)%crashWorkers) != w {
						continue
					}
					emit(childLine{Op: "attempt", ID: id})
					reply, err := req(id, &protocol.CreateSession{Subject: "user-" + id, ClientId: "crash-test", TtlNanos: int64(time.Hour), Tenant: crashTenant(st.Cycle)})
					if err != nil {
						emitFatal("create", id, err)
						return
					}
					r := reply.(*protocol.RefreshIssued)
					emit(childLine{Op: "create", ID: id, Secret: hex.EncodeToString(r.GetRefreshSecret())})
					mine = append(mine, &known{ID: id, Created: true, Secret: hex.EncodeToString(r.GetRefreshSecret())})
					continue
				}
				k := mine[rng.IntN(len(mine))]
				emit(childLine{Op: "attempt", ID: k.ID})
				if rng.IntN(8) == 0 {
					if _, err := req(k.ID, &protocol.RevokeSession{Reason: "crash-test"}); err != nil {
						emitFatal("revoke", k.ID, err)
						return
					}
					emit(childLine{Op: "revoke", ID: k.ID})
					mine = remove(mine, k)
					continue
				}
				secret, _ := hex.DecodeString(k.Secret)
				reply, err := req(k.ID, &protocol.RotateRefresh{PresentedSecret: secret})
				if err != nil {
					emitFatal("rotate", k.ID, err)
					return
				}
				r := reply.(*protocol.RefreshIssued)
				k.Secret = hex.EncodeToString(r.GetRefreshSecret())
				emit(childLine{Op: "rotate", ID: k.ID, Gen: r.GetSession().GetGeneration(), Secret: k.Secret})
			}
		}(w, mine)
	}
	wg.Wait()
	return fmt.Errorf("workers stopped before the kill")
}

// crashTenant is the tenant of the sessions created in one cycle: one event
// log per cycle keeps each well inside the log's retention.
func crashTenant(cycle int) string { return fmt.Sprintf("crash-c%d", cycle) }

// dumpEvents waits until every partition's event feed is relayed, then
// prints every event of every cycle's tenant log.
func dumpEvents(n *node, cycles int, emit func(childLine)) error {
	deadline := time.Now().Add(30 * time.Second)
	for p := 0; p < n.part.Table.Partitions(); p++ {
		for {
			es, err := n.store.Namespace(uint32(p+1)).Feed(0, 1)
			if err != nil {
				return err
			}
			if len(es) == 0 {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("partition %d: event feed not relayed after 30s (position %d waiting)", p, es[0].Position)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	for c := 0; c < cycles; c++ {
		var after uint64
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			m, err := n.host.Request(ctx, eventlog.KindName, crashTenant(c), &protocol.EventLogRead{After: after, Limit: eventlog.MaxLimit})
			cancel()
			if err != nil {
				return fmt.Errorf("read events of %s: %w", crashTenant(c), err)
			}
			page := m.(*protocol.EventLogPage)
			if page.GetGap() || (page.GetOldest() > 1) {
				return fmt.Errorf("event log %s dropped events (oldest %d): the test outgrew its retention", crashTenant(c), page.GetOldest())
			}
			for _, e := range page.GetEvents() {
				emit(childLine{Op: "event", ID: e.GetEvent().GetSubject(), Status: e.GetEvent().GetType()})
				after = e.GetSeq()
			}
			if len(page.GetEvents()) == 0 {
				break
			}
		}
	}
	return nil
}

// storedHash reads the refresh hash from the journal as a restarted node sees
// it (the session's public view does not carry it).
func storedHash(n *node, id string) (string, error) {
	var j interface {
		Load(persistence.ActorKey) (*persistence.Loaded, error)
	} = n.store
	if n.part != nil {
		// The state lives in its partition's namespace (p+1).
		p := placement.PartitionOf(session.KindName, id, n.part.Table.Partitions())
		j = n.store.Namespace(uint32(p + 1))
	}
	loaded, err := j.Load(persistenceKey(id))
	if err != nil {
		return "", fmt.Errorf("load %s: %w", id, err)
	}
	a := session.New(id)
	if loaded.Snapshot != nil {
		if err := a.Restore(loaded.Snapshot.State); err != nil {
			return "", err
		}
	}
	if err := actors.ApplyAll(a, loaded.Events); err != nil {
		return "", err
	}
	snap, _ := a.Snapshot()
	return hex.EncodeToString(snap.(*protocol.SessionState).GetRefreshHash()), nil
}

func persistenceKey(id string) persistence.ActorKey {
	return persistence.ActorKey{Kind: session.KindName, ID: id}
}

func statusWord(s protocol.SessionStatus) string {
	switch s {
	case protocol.SessionStatus_SESSION_STATUS_ACTIVE:
		return "active"
	case protocol.SessionStatus_SESSION_STATUS_REVOKED:
		return "revoked"
	case protocol.SessionStatus_SESSION_STATUS_EXPIRED:
		return "expired"
	}
	return s.String()
}

func hashString(s string) uint32 {
	var h uint32 = 2166136261
	for i := 0; i < len(s); i++ {
		h = (h ^ uint32(s[i])) * 16777619
	}
	return h
}

func remove(list []*known, k *known) []*known {
	for i, x := range list {
		if x == k {
			return append(list[:i], list[i+1:]...)
		}
	}
	return list
}

// limitedBuffer keeps the first max bytes of a child's stderr for failure
// reports.
type limitedBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if room := l.max - len(l.b); room > 0 {
		if len(p) < room {
			room = len(p)
		}
		l.b = append(l.b, p[:room]...)
	}
	return len(p), nil
}

func (l *limitedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(l.b)
}

var _ io.Writer = (*limitedBuffer)(nil)
