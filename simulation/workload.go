package simulation

import (
	"bytes"
	"fmt"
	"time"

	"github.com/wardhq/ward/actors"
	"github.com/wardhq/ward/actors/session"
	"github.com/wardhq/ward/protocol"
)

// Network and client timing. Ranges are drawn uniformly.
const (
	netMin, netMax = time.Millisecond, 10 * time.Millisecond
	// slowChance of a message taking slowMin..slowMax instead: enough to
	// reorder messages from different clients and to push replies past
	// client timeouts.
	slowChance       = 0.02
	slowMin, slowMax = 100 * time.Millisecond, 1500 * time.Millisecond
	// clientTimeout is longer than any request's network delay plus its
	// processing, so a request the client gave up on has either been
	// handled or lost by the time the client's next request is sent. The
	// model relies on that: an unanswered request is "happened or not", never
	// "happens later".
	clientTimeout      = 3 * time.Second
	thinkMin, thinkMax = 5 * time.Millisecond, 300 * time.Millisecond
	// Half the sessions live 1-10 s, the rest 10-30 s: a default run lasts
	// about half a minute, so most expire while clients still use them (and
	// race with rotations and revokes), and the drain after the workload
	// stays short.
	shortTTLMin, shortTTLMax = time.Second, 10 * time.Second
	longTTLMin, longTTLMax   = 10 * time.Second, 30 * time.Second
	// recentSessions is how many of its newest sessions an owner works on.
	recentSessions = 5
)

// TimerSlack is how long after its due time a durable timer may take to
// take effect: firing delay, a node restart or several, a lost step. An
// expiry invariant fires only for requests sent later than expiry+slack.
const TimerSlack = 10 * time.Second

func netDelay(w *world) time.Duration {
	if w.net.Float64() < slowChance {
		return between(w.net, slowMin, slowMax)
	}
	return between(w.net, netMin, netMax)
}

type opKind int

const (
	opCreate opKind = iota
	opRotate
	opRotateStale
	opRotateForged
	opTouch
	opGet
	opRevoke
)

func (o opKind) String() string {
	return [...]string{"create", "rotate", "rotate-stale", "rotate-forged", "touch", "get", "revoke"}[o]
}

type phase int

const (
	phaseRunning phase = iota
	phaseDraining
	phaseProbing
	phaseDone
)

// workload is the clients and the reference model of what they were told.
type workload struct {
	w        *world
	clients  []*client
	sessions []*sessModel // in order of first create
	issued   int
	inflight int
	nextReq  uint64
	phase    phase
	probes   int
}

type client struct {
	name   string
	admin  bool
	owned  []*sessModel
	nextID int
}

type request struct {
	id       uint64
	client   *client
	sess     *sessModel
	op       opKind
	msg      protocol.Message
	sentAt   time.Time
	sentTick uint64
	done     bool
	probe    bool
	attempt  int // creates: 1 for the first attempt on this id

	// The model as it was when the request was sent.
	presented        int // index into sess.secrets; -1 when forged
	latest           int // len(sess.secrets)-1
	ambiguousAtSend  int
	secretLostAtSend bool
	floorGen         uint64
}

// issuedSecret is a refresh secret the client was acknowledged.
type issuedSecret struct {
	secret []byte
	gen    uint64
}

// sessModel is what the clients know about one session, from
// acknowledgements only. Ticks order knowledge against requests: a fact
// learned at tick t binds every request sent after t.
type sessModel struct {
	id    string
	owner *client
	ttl   time.Duration

	createsSent     int
	firstCreateSent time.Time
	lastCreateLimit time.Time // latest instant any create attempt can be handled
	uncertain       bool      // a create went unanswered and none has answered since
	existsTick      uint64    // when a reply first proved the session exists
	expires         time.Time
	expiresKnown    bool

	secrets      []issuedSecret // acknowledged, oldest first
	ambiguousRot int            // unanswered rotations since the last answered one
	secretLost   bool           // the newest secret may have been rotated away
	floorGen     uint64         // highest generation acknowledged

	revokeTick   uint64 // first revoke request sent
	endedTick    uint64 // first reply proving the session ended
	terminal     protocol.SessionStatus
	terminalTick uint64
}

func (s *sessModel) existsBefore(tick uint64) bool { return s.existsTick != 0 && s.existsTick < tick }
func (s *sessModel) endedBefore(tick uint64) bool  { return s.endedTick != 0 && s.endedTick < tick }
func (s *sessModel) revokeSentBefore(tick uint64) bool {
	return s.revokeTick != 0 && s.revokeTick < tick
}

// expiryBounds is the earliest and latest the session can expire: exact once
// a reply told, else bounded by when its creates could have been handled.
func (s *sessModel) expiryBounds() (lo, hi time.Time) {
	if s.expiresKnown {
		return s.expires, s.expires
	}
	return s.firstCreateSent.Add(s.ttl), s.lastCreateLimit.Add(s.ttl)
}

// mayBeExpiredBy reports whether the expiry can have happened by t.
func (s *sessModel) mayBeExpiredBy(t time.Time) bool {
	lo, _ := s.expiryBounds()
	return !t.Before(lo)
}

// mustBeExpiredAt reports whether a request sent at t must find the
// session ended.
func (s *sessModel) mustBeExpiredAt(t time.Time) bool {
	_, hi := s.expiryBounds()
	return t.After(hi.Add(TimerSlack))
}

func (s *sessModel) canRotate() bool {
	return s.existsTick != 0 && !s.secretLost && len(s.secrets) > 0
}

func newWorkload(w *world) *workload {
	l := &workload{w: w}
	for i := range w.cfg.Clients {
		l.clients = append(l.clients, &client{name: fmt.Sprintf("c%d", i)})
	}
	l.clients = append(l.clients, &client{name: "admin", admin: true})
	return l
}

func (l *workload) start() {
	for _, c := range l.clients {
		l.think(c)
	}
	l.scheduleCrash()
}

func (l *workload) think(c *client) {
	l.w.after(between(l.w.work, thinkMin, thinkMax), func() { l.act(c) })
}

// scheduleCrash arms the next crash at a random instant.
func (l *workload) scheduleCrash() {
	w := l.w
	if w.cfg.CrashEvery <= 0 {
		return
	}
	d := time.Duration(w.faults.ExpFloat64() * float64(w.cfg.CrashEvery))
	w.after(d, func() {
		if w.faultsOff {
			return
		}
		w.host.crash("at random")
		l.scheduleCrash()
	})
}

// act is a client's turn to send its next request.
func (l *workload) act(c *client) {
	if l.issued >= l.w.cfg.Ops {
		l.maybeDrain()
		return
	}
	var req *request
	if c.admin {
		req = l.adminOp(c)
	} else {
		req = l.ownerOp(c)
	}
	if req == nil {
		l.think(c)
		return
	}
	l.send(req)
}

// weighted picks an index with probability proportional to its weight.
func (l *workload) weighted(weights []int) int {
	total := 0
	for _, x := range weights {
		total += x
	}
	r := l.w.work.IntN(total)
	for i, x := range weights {
		if r < x {
			return i
		}
		r -= x
	}
	panic("unreachable")
}

func (l *workload) ownerOp(c *client) *request {
	w := l.w
	// An unanswered create is retried first: a client that lost the reply
	// asks again, and learns the session exists from ALREADY_EXISTS.
	for _, s := range c.owned {
		if s.uncertain {
			return l.createReq(c, s)
		}
	}
	if len(c.owned) == 0 || w.work.Float64() < 0.2 {
		c.nextID++
		ttl := between(w.work, shortTTLMin, shortTTLMax)
		if w.work.IntN(2) == 0 {
			ttl = between(w.work, longTTLMin, longTTLMax)
		}
		s := &sessModel{id: fmt.Sprintf("%s-s%d", c.name, c.nextID), owner: c, ttl: ttl}
		c.owned = append(c.owned, s)
		l.sessions = append(l.sessions, s)
		return l.createReq(c, s)
	}
	recent := c.owned[max(0, len(c.owned)-recentSessions):]
	s := recent[w.work.IntN(len(recent))]
	weights := []int{
		opRotate:       0,
		opRotateStale:  0,
		opRotateForged: 4,
		opTouch:        15,
		opGet:          20,
		opRevoke:       5,
	}
	if s.canRotate() {
		weights[opRotate] = 40
	}
	if len(s.secrets) >= 2 {
		weights[opRotateStale] = 8
	}
	req := &request{client: c, sess: s, op: opKind(l.weighted(weights)), presented: -1}
	switch req.op {
	case opRotate:
		req.presented = len(s.secrets) - 1
		req.msg = &protocol.RotateRefresh{PresentedSecret: s.secrets[req.presented].secret}
	case opRotateStale:
		req.presented = w.work.IntN(len(s.secrets) - 1)
		req.msg = &protocol.RotateRefresh{PresentedSecret: s.secrets[req.presented].secret}
	case opRotateForged:
		forged := make([]byte, 32)
		for i := range forged {
			forged[i] = byte(w.work.Uint32())
		}
		req.msg = &protocol.RotateRefresh{PresentedSecret: forged}
	case opTouch:
		req.msg = &protocol.TouchSession{}
	case opGet:
		req.msg = &protocol.GetSession{}
	case opRevoke:
		req.msg = &protocol.RevokeSession{Reason: "owner"}
	}
	return req
}

func (l *workload) createReq(c *client, s *sessModel) *request {
	return &request{
		client: c, sess: s, op: opCreate, presented: -1, attempt: s.createsSent + 1,
		msg: &protocol.CreateSession{Subject: "user-" + c.name, ClientId: "app-" + c.name, TtlNanos: int64(s.ttl)},
	}
}

// adminOp revokes or reads anyone's session: the concurrency the owners'
// one-request-at-a-time loops do not give.
func (l *workload) adminOp(c *client) *request {
	if len(l.sessions) == 0 {
		return nil
	}
	s := l.sessions[l.w.work.IntN(len(l.sessions))]
	if l.w.work.IntN(4) == 0 {
		return &request{client: c, sess: s, op: opRevoke, presented: -1, msg: &protocol.RevokeSession{Reason: "admin"}}
	}
	return &request{client: c, sess: s, op: opGet, presented: -1, msg: &protocol.GetSession{}}
}

func (l *workload) stats(req *request) *OpStats {
	ws := &l.w.report.Workload
	if req.probe {
		return &ws.Probe
	}
	return [...]*OpStats{&ws.Create, &ws.Rotate, &ws.RotateStale, &ws.RotateForged, &ws.Touch, &ws.Get, &ws.Revoke}[req.op]
}

func (l *workload) send(req *request) {
	w, s := l.w, req.sess
	l.nextReq++
	req.id = l.nextReq
	req.sentAt, req.sentTick = w.now, w.tick
	req.latest = len(s.secrets) - 1
	req.ambiguousAtSend = s.ambiguousRot
	req.secretLostAtSend = s.secretLost
	req.floorGen = s.floorGen
	if !req.probe {
		l.issued++
	}
	l.inflight++
	l.stats(req).Sent++
	switch req.op {
	case opCreate:
		if s.createsSent == 0 {
			s.firstCreateSent = w.now
		}
		s.createsSent++
		s.lastCreateLimit = w.now.Add(clientTimeout)
	case opRevoke:
		if s.revokeTick == 0 {
			s.revokeTick = w.tick
		}
	case opRotateStale:
		// Presenting a rotated-away secret is reuse, which revokes.
		if s.revokeTick == 0 {
			s.revokeTick = w.tick
		}
	case opRotate:
		// After an unanswered rotation the newest acknowledged secret may
		// be rotated away already: past the grace window that is reuse.
		if (req.ambiguousAtSend > 0 || req.secretLostAtSend) && s.revokeTick == 0 {
			s.revokeTick = w.tick
		}
	}
	to := actors.Identity{Kind: w.cfg.Kind.Name, ID: s.id}
	w.tr(fmt.Sprintf("send #%d %s %s %s", req.id, req.client.name, to, msgText(req.msg)))
	w.after(netDelay(w), func() { w.host.receive(to, envelope{msg: req.msg, req: req}) })
	w.after(clientTimeout, func() { l.timeout(req) })
}

func (l *workload) onReply(req *request, msg protocol.Message, err error) {
	w := l.w
	if req.done {
		// The client gave up already and treats the outcome as unknown.
		w.tr(fmt.Sprintf("late #%d", req.id))
		return
	}
	req.done = true
	l.inflight--
	w.tr(fmt.Sprintf("recv #%d", req.id))
	if err != nil {
		l.stats(req).Refused++
	} else {
		l.stats(req).OK++
	}
	l.check(req, msg, err)
	l.finished(req)
}

func (l *workload) timeout(req *request) {
	if req.done {
		return
	}
	req.done = true
	l.inflight--
	l.stats(req).NoReply++
	l.w.tr(fmt.Sprintf("timeout #%d", req.id))
	s := req.sess
	switch req.op {
	case opCreate:
		if s.existsTick == 0 {
			s.uncertain = true
		}
	case opRotate:
		if req.presented == req.latest && req.presented == len(s.secrets)-1 {
			s.ambiguousRot++
		}
	}
	l.finished(req)
}

func (l *workload) finished(req *request) {
	if req.probe {
		l.probes--
		if l.probes == 0 {
			l.end()
		}
		return
	}
	l.think(req.client)
	l.maybeDrain()
}

// maybeDrain starts the drain once the budget is spent and every request is
// answered or given up: faults go on until the last session can have
// expired, then stop for TimerSlack so every timer fires, then the probe.
func (l *workload) maybeDrain() {
	w := l.w
	if l.phase != phaseRunning || l.issued < w.cfg.Ops || l.inflight > 0 {
		return
	}
	l.phase = phaseDraining
	last := w.now
	for _, s := range l.sessions {
		if _, hi := s.expiryBounds(); hi.After(last) {
			last = hi
		}
	}
	w.tr(fmt.Sprintf("drain faults-until=%d", last.Sub(Epoch).Nanoseconds()))
	w.after(last.Sub(w.now), func() {
		w.faultsOff = true
		w.tr("faults off")
	})
	w.after(last.Sub(w.now)+TimerSlack+time.Millisecond, l.probe)
}

// probe reads every session once more after all have had time to expire.
func (l *workload) probe() {
	l.phase = phaseProbing
	auditor := &client{name: "audit", admin: true}
	var reqs []*request
	for _, s := range l.sessions {
		reqs = append(reqs, &request{client: auditor, sess: s, op: opGet, presented: -1, probe: true, msg: &protocol.GetSession{}})
	}
	if len(reqs) == 0 {
		l.end()
		return
	}
	l.probes = len(reqs)
	for _, r := range reqs {
		l.send(r)
	}
}

func (l *workload) end() {
	l.phase = phaseDone
	l.w.host.finish()
	l.w.stopped = true
}

// check compares one reply with the model, then learns from it.
func (l *workload) check(req *request, msg protocol.Message, err error) {
	w, s := l.w, req.sess
	if err != nil && actors.CodeOf(err) == protocol.ErrorCode_ERROR_CODE_NOT_FOUND {
		if s.existsBefore(req.sentTick) {
			w.violate("%s: acknowledged session reported not found to %s #%d", s.id, req.op, req.id)
		}
		return
	}
	switch req.op {
	case opCreate:
		l.checkCreate(req, msg, err)
	case opRotate, opRotateStale, opRotateForged:
		l.checkRotate(req, msg, err)
	case opTouch:
		l.checkTouch(req, msg, err)
	case opGet:
		l.checkGet(req, msg, err)
	case opRevoke:
		l.checkRevoke(req, msg, err)
	}
}

func (l *workload) unexpected(req *request, msg protocol.Message, err error) {
	if err != nil {
		l.w.violate("%s: %s #%d refused unexpectedly: %s", req.sess.id, req.op, req.id, errText(err))
		return
	}
	l.w.violate("%s: %s #%d answered with %s", req.sess.id, req.op, req.id, protocol.TypeName(msg))
}

func (l *workload) learnExists(s *sessModel) {
	if s.existsTick == 0 {
		s.existsTick = l.w.tick
	}
	s.uncertain = false
}

func (l *workload) learnEnded(s *sessModel) {
	if s.endedTick == 0 {
		s.endedTick = l.w.tick
	}
}

// mayBeEnded reports whether a refusal for "not active" is explainable
// when its reply arrives now.
func (l *workload) mayBeEnded(s *sessModel) bool {
	return s.endedTick != 0 || s.revokeSentBefore(l.w.tick) || s.mayBeExpiredBy(l.w.now)
}

func (l *workload) checkCreate(req *request, msg protocol.Message, err error) {
	w, s := l.w, req.sess
	if err != nil {
		if actors.CodeOf(err) != protocol.ErrorCode_ERROR_CODE_ALREADY_EXISTS {
			l.unexpected(req, msg, err)
			return
		}
		if req.attempt == 1 {
			w.violate("%s: a session never created before reported existing", s.id)
		}
		// An earlier, unanswered create happened: the session exists but
		// its secret never reached the client.
		l.learnExists(s)
		if len(s.secrets) == 0 {
			s.secretLost = true
		}
		return
	}
	ri, ok := msg.(*protocol.RefreshIssued)
	if !ok {
		l.unexpected(req, msg, err)
		return
	}
	if s.existsBefore(req.sentTick) {
		w.violate("%s: created twice", s.id)
	}
	info := ri.GetSession()
	created := time.Unix(0, info.GetCreatedUnixNano()).UTC()
	switch {
	case info.GetId() != s.id || info.GetStatus() != protocol.SessionStatus_SESSION_STATUS_ACTIVE || info.GetGeneration() != 0:
		w.violate("%s: create answered id %q status %s generation %d", s.id, info.GetId(), info.GetStatus(), info.GetGeneration())
	case created.Before(req.sentAt) || created.After(w.now):
		w.violate("%s: created at %s, outside its request's flight", s.id, created.Sub(Epoch))
	case info.GetExpiresUnixNano() != info.GetCreatedUnixNano()+int64(s.ttl):
		w.violate("%s: expires %d, want created+ttl %d", s.id, info.GetExpiresUnixNano(), info.GetCreatedUnixNano()+int64(s.ttl))
	}
	s.expires, s.expiresKnown = time.Unix(0, info.GetExpiresUnixNano()).UTC(), true
	s.secrets = append(s.secrets, issuedSecret{secret: ri.GetRefreshSecret(), gen: info.GetGeneration()})
	s.secretLost = false
	l.learnExists(s)
}

// refusedNotActive handles FAILED_PRECONDITION from rotate and touch.
func (l *workload) refusedNotActive(req *request) {
	s := req.sess
	if !l.mayBeEnded(s) {
		l.w.violate("%s: active session refused %s #%d as not active", s.id, req.op, req.id)
	}
	l.learnEnded(s)
}

func (l *workload) checkRotate(req *request, msg protocol.Message, err error) {
	w, s := l.w, req.sess
	if err != nil {
		switch actors.CodeOf(err) {
		case protocol.ErrorCode_ERROR_CODE_PERMISSION_DENIED:
			if req.op != opRotate || req.presented != req.latest {
				return // a stale or forged secret: refused, as it must be
			}
			if req.ambiguousAtSend == 0 && !req.secretLostAtSend {
				w.violate("%s: acknowledged refresh secret (generation %d) refused", s.id, s.secrets[req.presented].gen)
				return
			}
			// An unanswered rotation did happen: the newest secret the
			// client holds is gone, and the generation moved on.
			s.secretLost = true
			s.floorGen = max(s.floorGen, s.secrets[req.presented].gen+1)
		case protocol.ErrorCode_ERROR_CODE_FAILED_PRECONDITION:
			l.refusedNotActive(req)
		default:
			l.unexpected(req, msg, err)
		}
		return
	}
	if reuse, ok := msg.(*protocol.RefreshReuseDetected); ok {
		l.checkReuse(req, reuse.GetSession())
		return
	}
	ri, ok := msg.(*protocol.RefreshIssued)
	if !ok {
		l.unexpected(req, msg, err)
		return
	}
	gen := ri.GetSession().GetGeneration()
	switch {
	case req.op == opRotateForged:
		w.violate("%s: forged refresh secret accepted (generation %d)", s.id, gen)
		return
	case req.presented < req.latest:
		// Within the grace window a rotated-away secret gets its own
		// successor again, byte for byte, and nothing else.
		if s.isSuccessor(req.presented, ri.GetRefreshSecret(), gen) {
			l.checkInfo(req, ri.GetSession())
			return
		}
		w.violate("%s: superseded refresh secret of generation %d accepted after generation %d was acknowledged",
			s.id, s.secrets[req.presented].gen, s.secrets[req.latest].gen)
		return
	}
	if s.endedBefore(req.sentTick) {
		w.violate("%s: rotation #%d accepted on a session already seen ended", s.id, req.id)
	}
	if s.mustBeExpiredAt(req.sentAt) {
		w.violate("%s: rotation #%d accepted past expiry", s.id, req.id)
	}
	if want := s.secrets[req.presented].gen + 1; gen != want {
		w.violate("%s: rotation from generation %d issued generation %d", s.id, want-1, gen)
	}
	l.checkInfo(req, ri.GetSession())
	s.secrets = append(s.secrets, issuedSecret{secret: ri.GetRefreshSecret(), gen: gen})
	s.ambiguousRot = 0
	s.secretLost = false
}

// isSuccessor reports whether secret is the acknowledged successor (the
// next generation) of the secret at index presented.
func (s *sessModel) isSuccessor(presented int, secret []byte, gen uint64) bool {
	want := s.secrets[presented].gen + 1
	for _, x := range s.secrets[presented+1:] {
		if x.gen == want && gen == want && bytes.Equal(x.secret, secret) {
			return true
		}
	}
	return false
}

// checkReuse handles a rotation refused as reuse: only a secret that may
// have been rotated away can cause it, and the session is then revoked.
func (l *workload) checkReuse(req *request, info *protocol.SessionInfo) {
	w, s := l.w, req.sess
	mayBeStale := req.op == opRotateStale || req.op == opRotate && (req.ambiguousAtSend > 0 || req.secretLostAtSend)
	if !mayBeStale {
		w.violate("%s: %s #%d of a current secret reported as reuse", s.id, req.op, req.id)
		return
	}
	if info.GetStatus() != protocol.SessionStatus_SESSION_STATUS_REVOKED || info.GetRevokeReason() != session.ReasonReuse {
		w.violate("%s: reuse answered status %s reason %q", s.id, info.GetStatus(), info.GetRevokeReason())
		return
	}
	l.checkInfo(req, info)
	l.checkTerminal(req, info.GetStatus())
}

func (l *workload) checkTouch(req *request, msg protocol.Message, err error) {
	w, s := l.w, req.sess
	if err != nil {
		if actors.CodeOf(err) == protocol.ErrorCode_ERROR_CODE_FAILED_PRECONDITION {
			l.refusedNotActive(req)
			return
		}
		l.unexpected(req, msg, err)
		return
	}
	info, ok := msg.(*protocol.SessionInfo)
	if !ok {
		l.unexpected(req, msg, err)
		return
	}
	if info.GetStatus() != protocol.SessionStatus_SESSION_STATUS_ACTIVE {
		w.violate("%s: touch #%d succeeded with status %s", s.id, req.id, info.GetStatus())
	}
	if s.endedBefore(req.sentTick) {
		w.violate("%s: touch #%d accepted on a session already seen ended", s.id, req.id)
	}
	if s.mustBeExpiredAt(req.sentAt) {
		w.violate("%s: touch #%d accepted past expiry", s.id, req.id)
	}
	l.checkInfo(req, info)
}

func (l *workload) checkGet(req *request, msg protocol.Message, err error) {
	w, s := l.w, req.sess
	info, ok := msg.(*protocol.SessionInfo)
	if err != nil || !ok {
		l.unexpected(req, msg, err)
		return
	}
	l.checkInfo(req, info)
	switch info.GetStatus() {
	case protocol.SessionStatus_SESSION_STATUS_ACTIVE:
		if s.endedBefore(req.sentTick) {
			w.violate("%s: ended session active again (get #%d)", s.id, req.id)
		}
		if s.mustBeExpiredAt(req.sentAt) {
			w.violate("%s: still active past expiry+slack (get #%d)", s.id, req.id)
		}
	case protocol.SessionStatus_SESSION_STATUS_REVOKED, protocol.SessionStatus_SESSION_STATUS_EXPIRED:
		l.checkTerminal(req, info.GetStatus())
	default:
		w.violate("%s: get #%d status %s", s.id, req.id, info.GetStatus())
	}
}

func (l *workload) checkRevoke(req *request, msg protocol.Message, err error) {
	w, s := l.w, req.sess
	info, ok := msg.(*protocol.SessionInfo)
	if err != nil || !ok {
		l.unexpected(req, msg, err)
		return
	}
	l.checkInfo(req, info)
	st := info.GetStatus()
	switch st {
	case protocol.SessionStatus_SESSION_STATUS_REVOKED:
		// Only an earlier revoke explains finding it revoked past expiry.
		if s.mustBeExpiredAt(req.sentAt) && s.revokeTick == req.sentTick {
			w.violate("%s: revoke #%d found the session still active past expiry", s.id, req.id)
		}
	case protocol.SessionStatus_SESSION_STATUS_EXPIRED:
	default:
		w.violate("%s: revoke #%d answered status %s", s.id, req.id, st)
		return
	}
	l.checkTerminal(req, st)
}

// checkTerminal checks a reply showing the session ended with status st.
func (l *workload) checkTerminal(req *request, st protocol.SessionStatus) {
	w, s := l.w, req.sess
	switch st {
	case protocol.SessionStatus_SESSION_STATUS_REVOKED:
		if !s.revokeSentBefore(w.tick) {
			w.violate("%s: revoked without any revoke request (%s #%d)", s.id, req.op, req.id)
		}
	case protocol.SessionStatus_SESSION_STATUS_EXPIRED:
		if !s.mayBeExpiredBy(w.now) {
			lo, _ := s.expiryBounds()
			w.violate("%s: expired before its expiry %s (%s #%d)", s.id, lo.Sub(Epoch), req.op, req.id)
		}
	}
	if s.terminal != 0 && s.terminal != st && s.terminalTick < req.sentTick {
		w.violate("%s: ended %s, later reported %s (%s #%d)", s.id, s.terminal, st, req.op, req.id)
	}
	if s.terminal == 0 {
		s.terminal, s.terminalTick = st, w.tick
	}
	l.learnEnded(s)
}

// checkInfo checks what every SessionInfo reply must agree with, and
// learns the expiry and generation.
func (l *workload) checkInfo(req *request, info *protocol.SessionInfo) {
	w, s := l.w, req.sess
	l.learnExists(s)
	if info.GetId() != s.id {
		w.violate("%s: %s #%d answered for session %q", s.id, req.op, req.id, info.GetId())
	}
	if g := info.GetGeneration(); g < req.floorGen {
		w.violate("%s: generation went backwards: %s #%d saw %d after %d was acknowledged", s.id, req.op, req.id, g, req.floorGen)
	}
	s.floorGen = max(s.floorGen, info.GetGeneration())
	exp := time.Unix(0, info.GetExpiresUnixNano()).UTC()
	if s.expiresKnown {
		if !exp.Equal(s.expires) {
			w.violate("%s: expiry changed from %s to %s", s.id, s.expires.Sub(Epoch), exp.Sub(Epoch))
		}
		return
	}
	if lo, hi := s.expiryBounds(); exp.Before(lo) || exp.After(hi) {
		w.violate("%s: expiry %s outside [%s, %s]", s.id, exp.Sub(Epoch), lo.Sub(Epoch), hi.Sub(Epoch))
	}
	s.expires, s.expiresKnown = exp, true
}
