// Package protocol holds Ward's wire types: protobuf messages for actor
// commands, replies, events and snapshots, and the envelope that carries them
// between nodes. Generated code (*.pb.go) is committed; `make proto`
// regenerates it from the .proto files in this folder.
package protocol

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/anypb"
)

// Message is any protobuf message. Actor code names this alias so that it
// depends on protocol/ alone.
type Message = proto.Message

// ErrUnknownType is returned when bytes name a message type this binary does
// not know.
var ErrUnknownType = errors.New("unknown message type")

// Pack wraps m in an Any.
func Pack(m Message) (*anypb.Any, error) {
	if m == nil {
		return nil, errors.New("pack: nil message")
	}
	a, err := anypb.New(m)
	if err != nil {
		return nil, fmt.Errorf("pack %T: %w", m, err)
	}
	return a, nil
}

// Unpack resolves an Any against the global registry. An unregistered type
// yields ErrUnknownType; undecodable bytes a decode error. Neither panics.
func Unpack(a *anypb.Any) (Message, error) {
	if a == nil {
		return nil, fmt.Errorf("unpack: empty payload: %w", ErrUnknownType)
	}
	m, err := a.UnmarshalNew()
	if err != nil {
		if errors.Is(err, protoregistry.NotFound) {
			return nil, fmt.Errorf("unpack %q: %w", a.GetTypeUrl(), ErrUnknownType)
		}
		return nil, fmt.Errorf("unpack %q: %w", a.GetTypeUrl(), err)
	}
	return m, nil
}

// Marshal encodes m as an Any's bytes (type URL + value), the form events,
// snapshots and timers take at rest.
func Marshal(m Message) ([]byte, error) {
	a, err := Pack(m)
	if err != nil {
		return nil, err
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(a)
	if err != nil {
		return nil, fmt.Errorf("marshal %T: %w", m, err)
	}
	return b, nil
}

// Unmarshal decodes bytes written by Marshal.
func Unmarshal(b []byte) (Message, error) {
	var a anypb.Any
	if err := proto.Unmarshal(b, &a); err != nil {
		return nil, fmt.Errorf("unmarshal envelope: %w", err)
	}
	return Unpack(&a)
}

// TypeName is the fully qualified protobuf name of m, for logs and errors.
func TypeName(m Message) string {
	if m == nil {
		return "<nil>"
	}
	return string(m.ProtoReflect().Descriptor().FullName())
}

// Clone deep-copies m.
func Clone[T Message](m T) T {
	return proto.Clone(m).(T)
}

// Equal reports whether a and b are the same message.
func Equal(a, b Message) bool { return proto.Equal(a, b) }
