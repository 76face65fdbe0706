package meta

import (
	"bytes"
	"strings"
)

// Value returns a copy of the value of key in the local replica's key
// state. Unlike State it copies one value, not the whole state, so the
// request path may call it (client registrations, provider secrets).
func (m *Meta) Value(key string) ([]byte, bool) {
	f := m.fsm
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.state.GetKv()[key]
	if !ok {
		return nil, false
	}
	return bytes.Clone(v), true
}

// Values returns copies of the values whose keys start with prefix.
func (m *Meta) Values(prefix string) map[string][]byte {
	f := m.fsm
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string][]byte{}
	for k, v := range f.state.GetKv() {
		if strings.HasPrefix(k, prefix) {
			out[k] = bytes.Clone(v)
		}
	}
	return out
}
