package register_test

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/cockroachdb/datadriven"
	"github.com/wardhq/ward/actors/actortest"
	"github.com/wardhq/ward/actors/register"
	"github.com/wardhq/ward/protocol"
)

// TestStories runs testdata/*.txt. Commands:
//
//	put id=ID (value=V | size=N)          N bytes of "x"; printed as <N bytes>
//	cas id=ID expect=VERSION (value=V | size=N)
//	get id=ID
//	rebuild id=ID   rebuild from events and from a snapshot; must agree
//	send id=ID      deliver a message the register does not handle
//	apply id=ID version=N value=V   apply an event directly (a corrupt history)
func TestStories(t *testing.T) {
	datadriven.Walk(t, "testdata", func(t *testing.T, path string) {
		h := actortest.New(register.Kind)
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			var id string
			d.ScanArgs(t, "id", &id)
			value, long := valueArg(t, d)
			var out string
			switch d.Cmd {
			case "put":
				out = h.Step(id, &protocol.RegisterPut{Value: value})
			case "cas":
				var expect uint64
				d.ScanArgs(t, "expect", &expect)
				out = h.Step(id, &protocol.RegisterCAS{ExpectVersion: expect, Value: value})
			case "get":
				out = h.Step(id, &protocol.RegisterGet{})
			case "rebuild":
				return h.Rebuild(id)
			case "send":
				out = h.Step(id, &protocol.StoredTimer{Name: "not-a-register-command"})
			case "apply":
				var version uint64
				d.ScanArgs(t, "version", &version)
				if err := h.Actor(id).Apply(&protocol.RegisterWritten{Value: value, Version: version}); err != nil {
					return "error " + err.Error() + "\n"
				}
				return "applied\n"
			default:
				d.Fatalf(t, "unknown command %s", d.Cmd)
			}
			if long {
				out = strings.ReplaceAll(out, strconv.Quote(value), fmt.Sprintf("<%d bytes>", len(value)))
			}
			return out
		})
	})
}

// valueArg reads value=V, or size=N for a value too long to print.
func valueArg(t *testing.T, d *datadriven.TestData) (value string, long bool) {
	switch {
	case d.HasArg("value"):
		d.ScanArgs(t, "value", &value)
	case d.HasArg("size"):
		var n int
		d.ScanArgs(t, "size", &n)
		return strings.Repeat("x", n), true
	case d.HasArg("invalid-utf8"):
		return "\xff\xfe", false
	}
	return value, false
}

// TestRestoreRejectsOtherMessages: a snapshot of another kind must not be
// silently taken for an empty register.
func TestRestoreRejectsOtherMessages(t *testing.T) {
	a := register.New("r")
	if err := a.Restore(&protocol.SessionState{}); err == nil {
		t.Fatal("Restore(SessionState) succeeded")
	}
	if err := a.Apply(&protocol.SessionTouched{}); err == nil {
		t.Fatal("Apply(SessionTouched) succeeded")
	}
}
