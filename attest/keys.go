package attest

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"os"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	"golang.org/x/mod/sumdb/note"
)

// maxKeyFile bounds the size of a key file read from disk.
const maxKeyFile = 64 << 10

// KeyID returns the skyline key id of a public key: the lowercase hex
// SHA-256 of its PKIX (SubjectPublicKeyInfo) DER encoding. It is the value
// of the DSSE signature "keyid" field and the name of a key everywhere in
// the log.
func KeyID(pub crypto.PublicKey) (string, error) {
	der, err := cryptoutils.MarshalPublicKeyToDER(pub)
	if err != nil {
		return "", fmt.Errorf("attest: key id: %w", err)
	}
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:]), nil
}

// checkKeyType accepts the key types skyline signs with: Ed25519 and ECDSA
// on P-256 (with SHA-256).
func checkKeyType(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return fmt.Errorf("attest: ed25519 public key of %d bytes: %w", len(k), ErrKeyType)
		}
		return nil
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return fmt.Errorf("attest: ecdsa curve %s: %w", k.Curve.Params().Name, ErrKeyType)
		}
		return nil
	}
	return fmt.Errorf("attest: public key type %T: %w", pub, ErrKeyType)
}

// Signer signs DSSE envelopes with an Ed25519 or ECDSA P-256 key.
type Signer struct {
	priv   crypto.PrivateKey
	signer signature.Signer
	pub    crypto.PublicKey
	pubPEM []byte
	keyID  string
	ver    *Verifier
}

// NewSigner returns a Signer for an ed25519.PrivateKey or an
// *ecdsa.PrivateKey on P-256.
func NewSigner(priv crypto.PrivateKey) (*Signer, error) {
	var pub crypto.PublicKey
	switch k := priv.(type) {
	case ed25519.PrivateKey:
		if len(k) != ed25519.PrivateKeySize {
			return nil, fmt.Errorf("attest: ed25519 private key of %d bytes: %w", len(k), ErrKeyType)
		}
		pub = k.Public()
	case *ecdsa.PrivateKey:
		pub = k.Public()
	default:
		return nil, fmt.Errorf("attest: private key type %T: %w", priv, ErrKeyType)
	}
	if err := checkKeyType(pub); err != nil {
		return nil, err
	}
	sv, err := signature.LoadSigner(priv, crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("attest: load signer: %w", err)
	}
	pubPEM, err := cryptoutils.MarshalPublicKeyToPEM(pub)
	if err != nil {
		return nil, fmt.Errorf("attest: marshal public key: %w", err)
	}
	id, err := KeyID(pub)
	if err != nil {
		return nil, err
	}
	ver, err := NewVerifier(pub)
	if err != nil {
		return nil, err
	}
	return &Signer{priv: priv, signer: sv, pub: pub, pubPEM: pubPEM, keyID: id, ver: ver}, nil
}

// LoadSigner reads a PKCS#8 PEM private key file written by keygen.
func LoadSigner(path string) (*Signer, error) {
	data, err := readKeyFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != string(cryptoutils.PrivateKeyPEMType) {
		return nil, fmt.Errorf("attest: %s: not a PKCS#8 %q PEM block: %w", path, cryptoutils.PrivateKeyPEMType, ErrKeyFormat)
	}
	priv, err := cryptoutils.UnmarshalPEMToPrivateKey(data, nil)
	if err != nil {
		return nil, fmt.Errorf("attest: %s: %w: %v", path, ErrKeyFormat, err)
	}
	s, err := NewSigner(priv)
	if err != nil {
		return nil, fmt.Errorf("attest: %s: %w", path, err)
	}
	return s, nil
}

// KeyID returns the signer's key id (see KeyID).
func (s *Signer) KeyID() string { return s.keyID }

// Public returns the signer's public key.
func (s *Signer) Public() crypto.PublicKey { return s.pub }

// PublicPEM returns the signer's public key as PKIX PEM.
func (s *Signer) PublicPEM() []byte { return bytes.Clone(s.pubPEM) }

// PrivatePEM returns the signer's private key as PKCS#8 PEM.
func (s *Signer) PrivatePEM() ([]byte, error) {
	b, err := cryptoutils.MarshalPrivateKeyToPEM(s.priv)
	if err != nil {
		return nil, fmt.Errorf("attest: marshal private key: %w", err)
	}
	return b, nil
}

// Verifier returns a Verifier for the signer's public key.
func (s *Signer) Verifier() *Verifier { return s.ver }

// NoteSigner returns a C2SP signed-note signer with key name name, made
// from the same Ed25519 private key. ECDSA keys have no note form.
func (s *Signer) NoteSigner(name string) (note.Signer, error) {
	priv, ok := s.priv.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("attest: note signer needs an ed25519 key, have %T: %w", s.priv, ErrKeyType)
	}
	vkey, err := NoteVerifierKey(name, s.pub)
	if err != nil {
		return nil, err
	}
	// vkey is "<name>+<hash>+<keydata>"; C2SP signed-note private keys are
	// "PRIVATE+KEY+<name>+<hash>+<base64(0x01 || seed)>".
	// The key data is base64 and may itself hold '+': cut after the hash.
	nameHash := vkey[:len(name)+1+8]
	skey := "PRIVATE+KEY+" + nameHash + "+" + base64.StdEncoding.EncodeToString(append([]byte{1}, priv.Seed()...))
	ns, err := note.NewSigner(skey)
	if err != nil {
		return nil, fmt.Errorf("attest: note signer %q: %w", name, err)
	}
	return ns, nil
}

// NoteVerifierKey returns the C2SP signed-note verifier key of an Ed25519
// public key under name.
func NoteVerifierKey(name string, pub crypto.PublicKey) (string, error) {
	k, ok := pub.(ed25519.PublicKey)
	if !ok {
		return "", fmt.Errorf("attest: note verifier key needs an ed25519 key, have %T: %w", pub, ErrKeyType)
	}
	vkey, err := note.NewEd25519VerifierKey(name, k)
	if err != nil {
		return "", fmt.Errorf("attest: note verifier key %q: %w", name, err)
	}
	return vkey, nil
}

// Verifier checks DSSE signatures made by one public key.
type Verifier struct {
	pub      crypto.PublicKey
	verifier signature.Verifier
	keyID    string
}

// NewVerifier returns a Verifier for an Ed25519 or ECDSA P-256 public key.
func NewVerifier(pub crypto.PublicKey) (*Verifier, error) {
	if err := checkKeyType(pub); err != nil {
		return nil, err
	}
	sv, err := signature.LoadVerifier(pub, crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("attest: load verifier: %w", err)
	}
	id, err := KeyID(pub)
	if err != nil {
		return nil, err
	}
	return &Verifier{pub: pub, verifier: sv, keyID: id}, nil
}

// ParsePublicPEM parses a PKIX "PUBLIC KEY" PEM block.
func ParsePublicPEM(data []byte) (*Verifier, error) {
	block, rest := pem.Decode(data)
	if block == nil || block.Type != string(cryptoutils.PublicKeyPEMType) {
		return nil, fmt.Errorf("attest: not a PKIX %q PEM block: %w", cryptoutils.PublicKeyPEMType, ErrKeyFormat)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("attest: trailing data after public key PEM: %w", ErrKeyFormat)
	}
	pub, err := cryptoutils.UnmarshalPEMToPublicKey(data)
	if err != nil {
		return nil, fmt.Errorf("attest: %w: %v", ErrKeyFormat, err)
	}
	return NewVerifier(pub)
}

// LoadVerifier reads a PKIX PEM public key file written by keygen.
func LoadVerifier(path string) (*Verifier, error) {
	data, err := readKeyFile(path)
	if err != nil {
		return nil, err
	}
	v, err := ParsePublicPEM(data)
	if err != nil {
		return nil, fmt.Errorf("attest: %s: %w", path, err)
	}
	return v, nil
}

// KeyID returns the verifier's key id (see KeyID).
func (v *Verifier) KeyID() string { return v.keyID }

// Public returns the verifier's public key.
func (v *Verifier) Public() crypto.PublicKey { return v.pub }

func readKeyFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("attest: read key: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return nil, fmt.Errorf("attest: read key %s: %w", path, err)
	}
	if len(data) > maxKeyFile {
		return nil, fmt.Errorf("attest: key file %s larger than %d bytes: %w", path, maxKeyFile, ErrKeyFormat)
	}
	return data, nil
}
