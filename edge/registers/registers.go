// Package registers is the HTTP face of the register actor kind: a small
// versioned key/value API that operators and the cluster tests use to
// write and read through any node (the linearizability checks drive it).
//
//	GET  /v1/registers/{id}        -> {"value": "...", "version": N}
//	PUT  /v1/registers/{id}        {"value": "..."} -> the new value and version
//	POST /v1/registers/{id}/cas    {"expect_version": N, "value": "..."}
//
// Errors are RFC 9457 problem details; the status follows the actor's code.
package registers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/wardhq/ward/actors"
	"github.com/wardhq/ward/actors/register"
	"github.com/wardhq/ward/edge/problem"
	"github.com/wardhq/ward/protocol"
)

// Requester sends one message to one actor and returns its reply.
type Requester interface {
	Request(ctx context.Context, kind, id string, msg protocol.Message) (protocol.Message, error)
}

const (
	maxBody  = register.MaxValueLen + 1024
	maxIDLen = 256
	timeout  = 10 * time.Second
)

// Value is a register's value as the API shows it.
type Value struct {
	Value   string `json:"value"`
	Version uint64 `json:"version"`
}

// Handler serves /v1/registers/.
func Handler(r Requester) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/registers/{id}", func(w http.ResponseWriter, req *http.Request) {
		serve(w, req, r, &protocol.RegisterGet{})
	})
	mux.HandleFunc("PUT /v1/registers/{id}", func(w http.ResponseWriter, req *http.Request) {
		var body struct {
			Value *string `json:"value"`
		}
		if !decode(w, req, &body) {
			return
		}
		if body.Value == nil {
			problem.Write(w, http.StatusBadRequest, "invalid request", "field value is required")
			return
		}
		serve(w, req, r, &protocol.RegisterPut{Value: *body.Value})
	})
	mux.HandleFunc("POST /v1/registers/{id}/cas", func(w http.ResponseWriter, req *http.Request) {
		var body struct {
			ExpectVersion *uint64 `json:"expect_version"`
			Value         *string `json:"value"`
		}
		if !decode(w, req, &body) {
			return
		}
		if body.Value == nil || body.ExpectVersion == nil {
			problem.Write(w, http.StatusBadRequest, "invalid request", "fields expect_version and value are required")
			return
		}
		serve(w, req, r, &protocol.RegisterCAS{ExpectVersion: *body.ExpectVersion, Value: *body.Value})
	})
	return mux
}

func decode(w http.ResponseWriter, req *http.Request, into any) bool {
	req.Body = http.MaxBytesReader(w, req.Body, maxBody)
	dec := json.NewDecoder(req.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(into); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			problem.Write(w, http.StatusRequestEntityTooLarge, "request too large", fmt.Sprintf("body exceeds %d bytes", maxBody))
			return false
		}
		problem.Write(w, http.StatusBadRequest, "invalid request", "body is not the expected JSON object: "+err.Error())
		return false
	}
	if _, err := dec.Token(); err != io.EOF {
		problem.Write(w, http.StatusBadRequest, "invalid request", "body has data after the JSON object")
		return false
	}
	return true
}

func serve(w http.ResponseWriter, req *http.Request, r Requester, msg protocol.Message) {
	id := req.PathValue("id")
	if id == "" || len(id) > maxIDLen {
		problem.Write(w, http.StatusBadRequest, "invalid request", fmt.Sprintf("register id must be 1-%d bytes", maxIDLen))
		return
	}
	ctx, cancel := context.WithTimeout(req.Context(), timeout)
	defer cancel()
	reply, err := r.Request(ctx, register.KindName, id, msg)
	if err != nil {
		status := http.StatusInternalServerError
		switch actors.CodeOf(err) {
		case protocol.ErrorCode_ERROR_CODE_INVALID_ARGUMENT:
			status = http.StatusBadRequest
		case protocol.ErrorCode_ERROR_CODE_FAILED_PRECONDITION:
			status = http.StatusConflict
		case protocol.ErrorCode_ERROR_CODE_NOT_FOUND:
			status = http.StatusNotFound
		case protocol.ErrorCode_ERROR_CODE_UNAVAILABLE, protocol.ErrorCode_ERROR_CODE_NOT_LEADER:
			status = http.StatusServiceUnavailable
			w.Header().Set("Retry-After", "1")
		}
		problem.Write(w, status, http.StatusText(status), err.Error())
		return
	}
	v, ok := reply.(*protocol.RegisterValue)
	if !ok {
		problem.Write(w, http.StatusInternalServerError, "internal error", fmt.Sprintf("register answered %T", reply))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(Value{Value: v.GetValue(), Version: v.GetVersion()})
}
