package attest

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
)

// envelope is a DSSE envelope (DSSE v1.0 "Envelope" JSON).
type envelope struct {
	PayloadType string   `json:"payloadType"`
	Payload     string   `json:"payload"`
	Signatures  []envSig `json:"signatures"`
}

// envSig is one DSSE envelope signature.
type envSig struct {
	KeyID string `json:"keyid"`
	Sig   string `json:"sig"`
}

// Signature is a decoded DSSE signature.
type Signature struct {
	KeyID string
	Sig   []byte
}

// PAE is the DSSE v1 pre-authentication encoding (DSSE protocol.md,
// "Signature definition"):
//
//	"DSSEv1" SP LEN(type) SP type SP LEN(body) SP body
//
// with LEN as ASCII decimal. Written here, not taken from
// go-securesystemslib, so that the tests can check our envelopes with that
// independent implementation.
func PAE(payloadType string, payload []byte) []byte {
	b := make([]byte, 0, 32+len(payloadType)+len(payload))
	b = append(b, "DSSEv1 "...)
	b = strconv.AppendInt(b, int64(len(payloadType)), 10)
	b = append(b, ' ')
	b = append(b, payloadType...)
	b = append(b, ' ')
	b = strconv.AppendInt(b, int64(len(payload)), 10)
	b = append(b, ' ')
	b = append(b, payload...)
	return b
}

// SignEnvelope signs payload as payloadType and returns the DSSE envelope
// JSON with one signature whose keyid is s.KeyID().
func (s *Signer) SignEnvelope(payloadType string, payload []byte) ([]byte, error) {
	sig, err := s.signer.SignMessage(bytes.NewReader(PAE(payloadType, payload)))
	if err != nil {
		return nil, fmt.Errorf("attest: sign envelope: %w", err)
	}
	out, err := json.Marshal(envelope{
		PayloadType: payloadType,
		Payload:     base64.StdEncoding.EncodeToString(payload),
		Signatures:  []envSig{{KeyID: s.keyID, Sig: base64.StdEncoding.EncodeToString(sig)}},
	})
	if err != nil {
		return nil, fmt.Errorf("attest: marshal envelope: %w", err)
	}
	return out, nil
}

// verifySig checks a DSSE signature over payload with v.
func (v *Verifier) verifySig(payloadType string, payload, sig []byte) error {
	if err := v.verifier.VerifySignature(bytes.NewReader(sig), bytes.NewReader(PAE(payloadType, payload))); err != nil {
		return fmt.Errorf("attest: key %s: %w", v.keyID, ErrSignature)
	}
	return nil
}
