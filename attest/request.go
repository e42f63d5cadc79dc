package attest

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// PayloadRequest is the DSSE payloadType of a signed API request: a builder
// asking for a lease or ending one, an admin enrolling a key or enqueueing a
// job. It is not a log entry type (Parse refuses it, and ParseRequest
// refuses every log entry type), so a request can never be replayed as an
// entry nor an entry as a request.
const PayloadRequest = "application/vnd.skyline.request.v1+json"

// MaxRequestSize bounds a signed request envelope.
const MaxRequestSize = 16 << 10

// maxOriginLen bounds a log origin in a request.
const maxOriginLen = 255

// Errors of signed requests, checked with errors.Is.
var (
	// ErrAction: the request's action is not the one the endpoint performs.
	ErrAction = errors.New("wrong request action")
	// ErrAudience: the request names another log than the one verifying it.
	ErrAudience = errors.New("request signed for another log")
)

// Request is the payload of a signed API request. Log binds it to one log:
// a key enrolled in two logs (staging and production, or two deployments)
// cannot have its request to one replayed to the other. Time and Nonce make
// it unrepeatable on that log: the server accepts a request only within a
// window around its own clock and only once per nonce and key (docs/api.md,
// "Signed requests").
type Request struct {
	Action string          `json:"action"`
	Log    string          `json:"log"` // the audience: the log's checkpoint origin
	Time   time.Time       `json:"time"`
	Nonce  string          `json:"nonce"` // 64 lowercase hex digits, random
	Body   json.RawMessage `json:"body"`
}

// CheckOrigin checks a log origin as a request names it: the origin line
// of a C2SP tlog-checkpoint, which is also the log's note key name, so
// non-empty, UTF-8, without Unicode spaces, control characters or '+'
// (C2SP tlog-checkpoint, "Note text"; C2SP signed-note, key names), and at
// most 255 bytes.
func CheckOrigin(origin string) error {
	if origin == "" {
		return fmt.Errorf("attest: empty log origin: %w", ErrBadField)
	}
	if len(origin) > maxOriginLen || !utf8.ValidString(origin) {
		return fmt.Errorf("attest: log origin %q: over %d bytes or not UTF-8: %w", trunc(origin), maxOriginLen, ErrBadField)
	}
	if i := strings.IndexFunc(origin, func(r rune) bool { return r == '+' || unicode.IsSpace(r) || unicode.IsControl(r) }); i >= 0 {
		r, _ := utf8.DecodeRuneInString(origin[i:])
		return fmt.Errorf("attest: log origin %q: character %q not allowed: %w", trunc(origin), r, ErrBadField)
	}
	return nil
}

// SignRequest returns a DSSE envelope of PayloadRequest signed by s, asking
// the log of origin origin for action with body (marshalled with
// encoding/json) at time now, with a fresh random nonce. The caller takes
// origin from its own trusted configuration (where it has the log's key),
// never from the server it is talking to.
func SignRequest(s *Signer, origin, action string, body any, now time.Time) ([]byte, error) {
	if err := checkText("action", action, true); err != nil {
		return nil, fmt.Errorf("attest: sign request: %w", err)
	}
	if err := CheckOrigin(origin); err != nil {
		return nil, fmt.Errorf("attest: sign request %s: %w", action, err)
	}
	var nonce [32]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return nil, fmt.Errorf("attest: sign request: nonce: %w", err)
	}
	raw, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("attest: sign request %s: %w", action, err)
	}
	payload, err := json.Marshal(Request{Action: action, Log: origin, Time: now.UTC(), Nonce: hex.EncodeToString(nonce[:]), Body: raw})
	if err != nil {
		return nil, fmt.Errorf("attest: sign request %s: %w", action, err)
	}
	return s.SignEnvelope(PayloadRequest, payload)
}

// ParseRequest parses a signed request envelope strictly (the rules of
// Parse: size, strict JSON, one signature, canonical base64), checks that
// its action is action, decodes its body strictly into body (a pointer to
// a struct), verifies the signature with the verifier keys returns for the
// signer's key id, and checks that the request names origin, the
// verifying log's checkpoint origin, as its audience (ErrAudience if not).
// It returns the request and the signer's key id. The time window and
// nonce are the caller's to check: they need state.
func ParseRequest(data []byte, origin, action string, keys func(keyID string) (*Verifier, error), body any) (*Request, string, error) {
	if err := CheckOrigin(origin); err != nil {
		return nil, "", fmt.Errorf("attest: parse request: the verifying log's origin: %w", err)
	}
	if len(data) > MaxRequestSize {
		return nil, "", fmt.Errorf("attest: request of %d bytes: %w", len(data), ErrTooLarge)
	}
	bv := reflect.ValueOf(body)
	if bv.Kind() != reflect.Pointer || bv.IsNil() || bv.Elem().Kind() != reflect.Struct {
		return nil, "", fmt.Errorf("attest: parse request: body must be a pointer to a struct, not %T", body)
	}
	var env envelope
	if err := decodeStrict("request envelope", data, &env); err != nil {
		return nil, "", err
	}
	if env.PayloadType != PayloadRequest {
		return nil, "", fmt.Errorf("attest: request payloadType %q: %w", trunc(env.PayloadType), ErrPayloadType)
	}
	if len(env.Signatures) != 1 {
		return nil, "", fmt.Errorf("attest: request with %d signatures: %w", len(env.Signatures), ErrSignatureCount)
	}
	payload, err := decodeB64("request payload", env.Payload)
	if err != nil {
		return nil, "", err
	}
	sig, err := decodeB64("request signature", env.Signatures[0].Sig)
	if err != nil {
		return nil, "", err
	}
	keyID := env.Signatures[0].KeyID
	if err := checkHex("request keyid", keyID); err != nil {
		return nil, "", err
	}
	// The body is decoded with its own type in place, so that the strict
	// rules (unknown fields, duplicate and case-folded keys) reach into it.
	wireType := reflect.StructOf([]reflect.StructField{
		{Name: "Action", Type: reflect.TypeFor[string](), Tag: `json:"action"`},
		{Name: "Log", Type: reflect.TypeFor[string](), Tag: `json:"log"`},
		{Name: "Time", Type: reflect.TypeFor[time.Time](), Tag: `json:"time"`},
		{Name: "Nonce", Type: reflect.TypeFor[string](), Tag: `json:"nonce"`},
		{Name: "Body", Type: bv.Elem().Type(), Tag: `json:"body"`},
	})
	wire := reflect.New(wireType)
	if err := decodeStrict("request", payload, wire.Interface()); err != nil {
		return nil, "", err
	}
	w := wire.Elem()
	req := &Request{Action: w.Field(0).String(), Log: w.Field(1).String(), Time: w.Field(2).Interface().(time.Time), Nonce: w.Field(3).String()}
	if req.Action != action {
		return nil, "", fmt.Errorf("attest: request action %q, want %q: %w", trunc(req.Action), action, ErrAction)
	}
	if err := CheckOrigin(req.Log); err != nil {
		return nil, "", fmt.Errorf("attest: request: %w", err)
	}
	if err := checkTime("request time", req.Time); err != nil {
		return nil, "", err
	}
	if err := checkHex("request nonce", req.Nonce); err != nil {
		return nil, "", err
	}
	v, err := keys(keyID)
	if err != nil {
		return nil, "", fmt.Errorf("attest: request key %s: %w", keyID, err)
	}
	if v == nil {
		return nil, "", fmt.Errorf("attest: request key %s: %w", keyID, ErrUnknownKey)
	}
	if v.KeyID() != keyID {
		return nil, "", fmt.Errorf("attest: request signed by %s, verifying with %s: %w", keyID, v.KeyID(), ErrKeyID)
	}
	if err := v.verifySig(PayloadRequest, payload, sig); err != nil {
		return nil, "", err
	}
	// The audience is checked once the signature is, so that only a
	// genuine request is told it was meant for another log.
	if req.Log != origin {
		return nil, "", fmt.Errorf("attest: request for log %q, this is %q: %w", trunc(req.Log), origin, ErrAudience)
	}
	bv.Elem().Set(w.Field(4))
	if req.Body, err = json.Marshal(body); err != nil {
		return nil, "", fmt.Errorf("attest: request body: %w", err)
	}
	return req, keyID, nil
}
