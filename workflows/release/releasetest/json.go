package releasetest

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
)

// Basic returns the Authorization header value of HTTP basic auth, as Jira
// Cloud expects it for a user and an API token.
func Basic(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

// WriteJSON answers with status and v encoded as application/json.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// decodeJSON decodes the request body into v. It answers 415 when the body
// is not declared application/json and 400 when it does not parse, as
// GitHub and Jira do, and then returns false.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	if r.Header.Get("Content-Type") != "application/json" {
		WriteJSON(w, http.StatusUnsupportedMediaType, map[string]any{"message": "expected application/json"})
		return false
	}
	if err := json.NewDecoder(r.Body).Decode(v); err != nil {
		WriteJSON(w, http.StatusBadRequest, map[string]any{"message": "Problems parsing JSON"})
		return false
	}
	return true
}
