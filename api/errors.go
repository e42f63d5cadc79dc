package api

import (
	"context"
	"errors"
	"net/http"

	"github.com/fedora-skyline/skyline/attest"
	"github.com/fedora-skyline/skyline/coord"
	"github.com/fedora-skyline/skyline/log"
)

// Errors of the HTTP layer itself, checked with errors.Is.
var (
	// ErrReplayed: a signed request's nonce was already used by its key.
	ErrReplayed = errors.New("request replayed")
	// ErrStale: a signed request's time is too far from the server's clock.
	ErrStale = errors.New("request time outside the accepted window")
	// ErrMethod: the route does not take this HTTP method.
	ErrMethod = errors.New("method not allowed")
	// ErrContentType: the request body has the wrong Content-Type.
	ErrContentType = errors.New("wrong content type")
	// ErrBodyTooLarge: the request body exceeds the route's limit.
	ErrBodyTooLarge = errors.New("request body too large")
	// ErrRateLimited: the key or client sent too many requests.
	ErrRateLimited = errors.New("rate limited")
	// ErrBadParam: a query or path parameter is malformed.
	ErrBadParam = errors.New("bad parameter")
	// ErrNoRoute: no route has this path.
	ErrNoRoute = errors.New("no such route")
	// ErrPlainHTTP: the server would listen without TLS on a non-loopback
	// address and Config.AllowPlainHTTP is not set.
	ErrPlainHTTP = errors.New("plain HTTP on a non-loopback address")
	// ErrInternal: the server failed (the client sees no detail).
	ErrInternal = errors.New("internal error")
	// ErrUnavailable: the server cannot serve now; retry later.
	ErrUnavailable = errors.New("unavailable")
)

// errorKind is one row of the one mapping of errors to HTTP statuses and
// stable codes (docs/api.md, "Errors"). The first row whose error matches
// (errors.Is) wins, so more specific errors come first.
type errorKind struct {
	err    error
	status int
	code   string
}

var errorKinds = []errorKind{
	// HTTP layer.
	{ErrReplayed, http.StatusConflict, "replayed"},
	{ErrStale, http.StatusUnauthorized, "stale_request"},
	{ErrMethod, http.StatusMethodNotAllowed, "method_not_allowed"},
	{ErrContentType, http.StatusUnsupportedMediaType, "content_type"},
	{ErrBodyTooLarge, http.StatusRequestEntityTooLarge, "too_large"},
	{ErrRateLimited, http.StatusTooManyRequests, "rate_limited"},
	{ErrBadParam, http.StatusBadRequest, "bad_param"},
	{ErrNoRoute, http.StatusNotFound, "no_route"},
	{ErrUnavailable, http.StatusServiceUnavailable, "unavailable"},

	// Entry and request format (attest).
	{attest.ErrTooLarge, http.StatusRequestEntityTooLarge, "too_large"},
	{attest.ErrDuplicateKey, http.StatusBadRequest, "duplicate_key"},
	{attest.ErrUnknownField, http.StatusBadRequest, "unknown_field"},
	{attest.ErrCaseFoldedKey, http.StatusBadRequest, "casefolded_key"},
	{attest.ErrTrailingData, http.StatusBadRequest, "trailing_data"},
	{attest.ErrSyntax, http.StatusBadRequest, "malformed_json"},
	{attest.ErrBadBase64, http.StatusBadRequest, "bad_base64"},
	{attest.ErrPayloadType, http.StatusBadRequest, "payload_type"},
	{attest.ErrSignatureCount, http.StatusBadRequest, "signature_count"},
	{attest.ErrStatementType, http.StatusBadRequest, "statement_type"},
	{attest.ErrPredicateType, http.StatusBadRequest, "predicate_type"},
	{attest.ErrBuildType, http.StatusBadRequest, "build_type"},
	{attest.ErrSubjects, http.StatusBadRequest, "bad_subjects"},
	{attest.ErrBadName, http.StatusBadRequest, "bad_name"},
	{attest.ErrBadField, http.StatusBadRequest, "bad_field"},
	{attest.ErrAction, http.StatusBadRequest, "wrong_action"},
	{attest.ErrAudience, http.StatusUnauthorized, "wrong_log"},
	{attest.ErrKeyID, http.StatusUnauthorized, "bad_signature"},
	{attest.ErrSignature, http.StatusUnauthorized, "bad_signature"},
	{attest.ErrKeyFormat, http.StatusBadRequest, "bad_key"},
	{attest.ErrKeyType, http.StatusBadRequest, "bad_key"},

	// Keys and roles (coord service).
	{coord.ErrUnknownKey, http.StatusForbidden, "unknown_key"},
	{attest.ErrUnknownKey, http.StatusForbidden, "unknown_key"},
	{coord.ErrRevoked, http.StatusForbidden, "revoked_key"},
	{coord.ErrRole, http.StatusForbidden, "wrong_role"},
	{coord.ErrNotBuilder, http.StatusForbidden, "wrong_role"},
	{coord.ErrSigner, http.StatusForbidden, "wrong_signer"},
	{coord.ErrNotSubmittable, http.StatusForbidden, "not_submittable"},

	// Jobs and leases (coord).
	{coord.ErrNoLease, http.StatusConflict, "no_lease"},
	{coord.ErrNotLeaseHolder, http.StatusForbidden, "not_lease_holder"},
	{coord.ErrBuildMismatch, http.StatusConflict, "build_mismatch"},
	{coord.ErrLeaseExpired, http.StatusConflict, "lease_expired"},
	{coord.ErrLeaseEnded, http.StatusConflict, "lease_ended"},
	{coord.ErrDelivered, http.StatusConflict, "delivered"},
	{coord.ErrJobClosed, http.StatusConflict, "job_closed"},
	{coord.ErrNoJob, http.StatusNotFound, "no_job"},
	{coord.ErrUnknownJob, http.StatusNotFound, "unknown_job"},
	{coord.ErrDuplicateJob, http.StatusConflict, "duplicate_job"},
	{coord.ErrDuplicate, http.StatusConflict, "duplicate"},
	{coord.ErrConflict, http.StatusConflict, "conflict"},
	{coord.ErrPaused, http.StatusServiceUnavailable, "paused"},
	{coord.ErrBusy, http.StatusServiceUnavailable, "busy"},
	{coord.ErrNoAlarm, http.StatusNotFound, "no_alarm"},
	{coord.ErrInvalid, http.StatusBadRequest, "invalid"},

	// Log.
	{log.ErrBadPath, http.StatusBadRequest, "bad_path"},
	{log.ErrBeyondTree, http.StatusBadRequest, "beyond_tree"},
	{log.ErrNotFound, http.StatusNotFound, "not_found"},
	{log.ErrInvalidEntry, http.StatusBadRequest, "invalid_entry"},
	{log.ErrClosed, http.StatusServiceUnavailable, "unavailable"},
	{log.ErrFailed, http.StatusServiceUnavailable, "unavailable"},
	{context.DeadlineExceeded, http.StatusServiceUnavailable, "timeout"},
	{log.ErrCorrupt, http.StatusInternalServerError, "internal"},
}

// internalKind is the answer to every error not in errorKinds.
var internalKind = errorKind{ErrInternal, http.StatusInternalServerError, "internal"}

// kindOf returns the status and code of err.
func kindOf(err error) errorKind {
	for _, k := range errorKinds {
		if errors.Is(err, k.err) {
			return k
		}
	}
	return internalKind
}

// codeErrors maps a code back to its sentinel error, for the client. Codes
// shared by several errors map to the first.
var codeErrors = func() map[string]error {
	m := map[string]error{"internal": ErrInternal, "timeout": ErrUnavailable}
	for _, k := range errorKinds {
		if _, ok := m[k.code]; !ok {
			m[k.code] = k.err
		}
	}
	return m
}()

// ErrorBody is the JSON body of every error response.
type ErrorBody struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

// Error is an error response as the client sees it. It matches (errors.Is)
// the sentinel error of its code.
type Error struct {
	Status  int
	Code    string
	Message string
}

func (e *Error) Error() string {
	return "api: server said " + http.StatusText(e.Status) + " (" + e.Code + "): " + e.Message
}

// Unwrap returns the sentinel error of the code, if it is known.
func (e *Error) Unwrap() error { return codeErrors[e.Code] }
