package actors

import (
	"errors"
	"fmt"

	"github.com/wardhq/ward/protocol"
)

// Error is a domain rejection with a code the edges map to their protocol's
// error format (OAuth error JSON, HTTP problem details, QUIC error codes).
type Error struct {
	Code protocol.ErrorCode
	Msg  string
}

func (e *Error) Error() string { return e.Msg }

// Errorf builds an *Error.
func Errorf(code protocol.ErrorCode, format string, args ...any) error {
	return &Error{Code: code, Msg: fmt.Sprintf(format, args...)}
}

// ErrUnknownMessage is what an actor returns for a message type it does not
// handle.
func ErrUnknownMessage(kind string, msg protocol.Message) error {
	return Errorf(protocol.ErrorCode_ERROR_CODE_UNKNOWN_MESSAGE,
		"%s actor does not handle message type %s", kind, protocol.TypeName(msg))
}

// ToProto turns any error into the wire form; errors that are not *Error are
// internal.
func ToProto(err error) *protocol.Error {
	var e *Error
	if errors.As(err, &e) {
		return &protocol.Error{Code: e.Code, Message: e.Msg}
	}
	return &protocol.Error{Code: protocol.ErrorCode_ERROR_CODE_INTERNAL, Message: err.Error()}
}

// FromProto turns the wire form back into an *Error.
func FromProto(p *protocol.Error) error {
	if p == nil {
		return nil
	}
	return &Error{Code: p.GetCode(), Msg: p.GetMessage()}
}

// CodeOf returns the code of err, or ERROR_CODE_INTERNAL when it carries none.
func CodeOf(err error) protocol.ErrorCode {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return protocol.ErrorCode_ERROR_CODE_INTERNAL
}
