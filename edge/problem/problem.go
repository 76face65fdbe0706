// Package problem writes HTTP errors as RFC 9457 problem details, the one
// error shape of Ward's REST and admin endpoints.
package problem

import (
	"encoding/json"
	"net/http"
)

// Write answers with status and a problem+json body carrying title and
// detail.
func Write(w http.ResponseWriter, status int, title, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"type": "about:blank", "title": title, "status": status, "detail": detail})
}
