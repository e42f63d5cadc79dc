package attest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Key types GenerateKey makes.
const (
	KeyEd25519   = "ed25519"
	KeyECDSAP256 = "ecdsa-p256"
)

// ErrExists is returned by WriteKeyFiles when one of the files exists.
var ErrExists = errors.New("key file exists")

// GenerateKey makes a new signing key of type KeyEd25519 or KeyECDSAP256.
func GenerateKey(keyType string) (*Signer, error) {
	var priv crypto.PrivateKey
	var err error
	switch keyType {
	case KeyEd25519:
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	case KeyECDSAP256:
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	default:
		return nil, fmt.Errorf("attest: key type %q (want %s or %s): %w", keyType, KeyEd25519, KeyECDSAP256, ErrKeyType)
	}
	if err != nil {
		return nil, fmt.Errorf("attest: generate key: %w", err)
	}
	return NewSigner(priv)
}

// KeyFiles are the paths WriteKeyFiles writes.
type KeyFiles struct {
	Private  string // NAME.key: PKCS#8 PEM, mode 0600
	Public   string // NAME.pub: PKIX PEM
	NoteVKey string // NAME.vkey: C2SP signed-note verifier key (Ed25519 only, else "")
}

// WriteKeyFiles writes s as dir/name.key, dir/name.pub and, for Ed25519,
// dir/name.vkey (a signed-note verifier key named noteName). It never
// overwrites: if any of the files exists it fails with ErrExists and
// changes nothing, and the set appears whole or not at all (each file is
// written and synced under a temporary name, then hard-linked into place;
// a failed link removes the links already made).
func WriteKeyFiles(dir, name, noteName string, s *Signer) (KeyFiles, error) {
	if name == "" || name != filepath.Base(name) || name == "." || name == ".." {
		return KeyFiles{}, fmt.Errorf("attest: key name %q must be a plain file name: %w", name, ErrBadName)
	}
	privPEM, err := s.PrivatePEM()
	if err != nil {
		return KeyFiles{}, err
	}
	type file struct {
		path string
		data []byte
		mode os.FileMode
	}
	kf := KeyFiles{Private: filepath.Join(dir, name+".key"), Public: filepath.Join(dir, name+".pub")}
	files := []file{{kf.Private, privPEM, 0o600}, {kf.Public, s.PublicPEM(), 0o644}}
	if _, ok := s.priv.(ed25519.PrivateKey); ok {
		vkey, err := NoteVerifierKey(noteName, s.pub)
		if err != nil {
			return KeyFiles{}, err
		}
		kf.NoteVKey = filepath.Join(dir, name+".vkey")
		files = append(files, file{kf.NoteVKey, []byte(vkey + "\n"), 0o644})
	}
	for _, f := range files {
		if _, err := os.Lstat(f.path); err == nil {
			return KeyFiles{}, fmt.Errorf("attest: %s: %w", f.path, ErrExists)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return KeyFiles{}, fmt.Errorf("attest: %w", err)
		}
	}
	var temps []string
	defer func() {
		for _, t := range temps {
			os.Remove(t)
		}
	}()
	for _, f := range files {
		tmp, err := writeTemp(dir, f.data, f.mode)
		if err != nil {
			return KeyFiles{}, err
		}
		temps = append(temps, tmp)
	}
	var linked []string
	for i, f := range files {
		if err := os.Link(temps[i], f.path); err != nil {
			for _, l := range linked {
				os.Remove(l)
			}
			if errors.Is(err, fs.ErrExist) {
				return KeyFiles{}, fmt.Errorf("attest: %s: %w", f.path, ErrExists)
			}
			return KeyFiles{}, fmt.Errorf("attest: write key files: %w", err)
		}
		linked = append(linked, f.path)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return kf, nil
}

// writeTemp writes data to a new synced temporary file in dir.
func writeTemp(dir string, data []byte, mode os.FileMode) (string, error) {
	f, err := os.CreateTemp(dir, ".keygen-*")
	if err != nil {
		return "", fmt.Errorf("attest: write key files: %w", err)
	}
	name := f.Name()
	err = f.Chmod(mode)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(name)
		return "", fmt.Errorf("attest: write key files: %w", err)
	}
	return name, nil
}
