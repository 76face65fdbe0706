package cluster

import (
	"sync"

	"github.com/wardhq/ward/protocol"
)

// topics fans actors' publications out to local subscribers. Delivery never
// blocks the publishing activation: a subscriber whose buffer is full misses
// the message (counted in ward_cluster_publications_dropped_total), because
// one slow reader must not stall every actor that publishes to its topic.
type topics struct {
	mu     sync.RWMutex
	subs   map[string]map[*subscriber]struct{}
	closed bool
	m      *metrics
}

type subscriber struct {
	ch chan protocol.Message
}

func newTopics(m *metrics) *topics {
	return &topics{subs: make(map[string]map[*subscriber]struct{}), m: m}
}

// subscribe registers a subscriber; the returned func removes it and closes
// its channel, and is safe to call more than once.
func (t *topics) subscribe(topic string, buffer int) (<-chan protocol.Message, func()) {
	if buffer < 0 {
		buffer = 0
	}
	s := &subscriber{ch: make(chan protocol.Message, buffer)}
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		close(s.ch)
		return s.ch, func() {}
	}
	set, ok := t.subs[topic]
	if !ok {
		set = make(map[*subscriber]struct{})
		t.subs[topic] = set
	}
	set[s] = struct{}{}
	t.mu.Unlock()

	var once sync.Once
	return s.ch, func() {
		once.Do(func() {
			t.mu.Lock()
			defer t.mu.Unlock()
			set, ok := t.subs[topic]
			if !ok {
				return // closeAll got here first and closed the channel
			}
			if _, ok := set[s]; !ok {
				return
			}
			delete(set, s)
			if len(set) == 0 {
				delete(t.subs, topic)
			}
			close(s.ch)
		})
	}
}

// publish hands msg to every subscriber of topic. Each subscriber gets its
// own copy, so that none can change what another one reads.
func (t *topics) publish(topic string, msg protocol.Message) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	for s := range t.subs[topic] {
		select {
		case s.ch <- protocol.Clone(msg):
		default:
			t.m.dropped.WithLabelValues(topic).Inc()
		}
	}
}

// closeAll ends every subscription (Host.Stop): readers see their channel
// close.
func (t *topics) closeAll() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
	for topic, set := range t.subs {
		for s := range set {
			close(s.ch)
		}
		delete(t.subs, topic)
	}
}
