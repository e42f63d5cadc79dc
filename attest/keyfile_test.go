package attest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"
)

func TestWriteKeyFiles(t *testing.T) {
	for _, kind := range []string{KeyEd25519, KeyECDSAP256} {
		t.Run(kind, func(t *testing.T) {
			dir := t.TempDir()
			s, err := GenerateKey(kind)
			if err != nil {
				t.Fatal(err)
			}
			kf, err := WriteKeyFiles(dir, "builder1", "skyline.example/builder1", s)
			if err != nil {
				t.Fatal(err)
			}
			st, err := os.Stat(kf.Private)
			if err != nil {
				t.Fatal(err)
			}
			if st.Mode().Perm() != 0o600 {
				t.Fatalf("private key mode %v, want 0600", st.Mode().Perm())
			}
			// The standard library parses both files.
			privPEM, _ := os.ReadFile(kf.Private)
			blk, _ := pem.Decode(privPEM)
			if blk == nil || blk.Type != "PRIVATE KEY" {
				t.Fatalf("private key PEM block %v", blk)
			}
			priv, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			pubPEM, _ := os.ReadFile(kf.Public)
			blk, _ = pem.Decode(pubPEM)
			if blk == nil || blk.Type != "PUBLIC KEY" {
				t.Fatalf("public key PEM block %v", blk)
			}
			pub, err := x509.ParsePKIXPublicKey(blk.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			switch k := priv.(type) {
			case ed25519.PrivateKey:
				if !k.Public().(ed25519.PublicKey).Equal(pub) {
					t.Fatal("public key does not match private key")
				}
			case *ecdsa.PrivateKey:
				if !k.PublicKey.Equal(pub) {
					t.Fatal("public key does not match private key")
				}
			}
			// Load round trip.
			ls, err := LoadSigner(kf.Private)
			if err != nil {
				t.Fatal(err)
			}
			lv, err := LoadVerifier(kf.Public)
			if err != nil {
				t.Fatal(err)
			}
			if ls.KeyID() != s.KeyID() || lv.KeyID() != s.KeyID() {
				t.Fatal("loaded keys have another key id")
			}
			if kind == KeyECDSAP256 {
				if kf.NoteVKey != "" {
					t.Fatal("ecdsa key got a note verifier key")
				}
				if _, err := os.Stat(filepath.Join(dir, "builder1.vkey")); err == nil {
					t.Fatal("vkey written for ecdsa")
				}
				if _, err := s.NoteSigner("x"); !errors.Is(err, ErrKeyType) {
					t.Fatalf("NoteSigner on ecdsa: %v", err)
				}
				return
			}
			vkey, _ := os.ReadFile(kf.NoteVKey)
			nv, err := note.NewVerifier(strings.TrimSpace(string(vkey)))
			if err != nil {
				t.Fatal(err)
			}
			if nv.Name() != "skyline.example/builder1" {
				t.Fatalf("note key name %q", nv.Name())
			}
			ns, err := ls.NoteSigner("skyline.example/builder1")
			if err != nil {
				t.Fatal(err)
			}
			msg, err := note.Sign(&note.Note{Text: "skyline\n42\n"}, ns)
			if err != nil {
				t.Fatal(err)
			}
			n, err := note.Open(msg, note.VerifierList(nv))
			if err != nil {
				t.Fatalf("note signed by NoteSigner does not verify with the vkey: %v", err)
			}
			if n.Text != "skyline\n42\n" {
				t.Fatalf("note text %q", n.Text)
			}
		})
	}
}

func TestWriteKeyFilesRefusesOverwrite(t *testing.T) {
	for _, existing := range []string{"k.key", "k.pub", "k.vkey"} {
		dir := t.TempDir()
		old := []byte("precious\n")
		if err := os.WriteFile(filepath.Join(dir, existing), old, 0o644); err != nil {
			t.Fatal(err)
		}
		s, _ := GenerateKey(KeyEd25519)
		if _, err := WriteKeyFiles(dir, "k", "k", s); !errors.Is(err, ErrExists) {
			t.Fatalf("%s exists: err %v, want ErrExists", existing, err)
		}
		got, _ := os.ReadFile(filepath.Join(dir, existing))
		if !bytes.Equal(got, old) {
			t.Fatalf("%s was changed", existing)
		}
		ents, _ := os.ReadDir(dir)
		if len(ents) != 1 {
			t.Fatalf("%s exists: directory now holds %d entries (no half-written set, no temp files)", existing, len(ents))
		}
	}
	if _, err := WriteKeyFiles(t.TempDir(), "../k", "k", newSigner(t, "ed25519")); !errors.Is(err, ErrBadName) {
		t.Fatalf("path in name: %v", err)
	}
	if _, err := GenerateKey("rsa"); !errors.Is(err, ErrKeyType) {
		t.Fatalf("rsa: %v", err)
	}
}

// The note key data is base64 and often holds '+', the separator of note
// keys: NoteSigner must not split on it.
func TestNoteSignerManyKeys(t *testing.T) {
	plus := 0
	for range 64 {
		s, err := GenerateKey(KeyEd25519)
		if err != nil {
			t.Fatal(err)
		}
		vkey, err := NoteVerifierKey("log.example", s.Public())
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(vkey[len("log.example")+10:], "+") {
			plus++
		}
		ns, err := s.NoteSigner("log.example")
		if err != nil {
			t.Fatalf("vkey %s: %v", vkey, err)
		}
		nv, err := note.NewVerifier(vkey)
		if err != nil {
			t.Fatal(err)
		}
		msg, err := note.Sign(&note.Note{Text: "x\n"}, ns)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := note.Open(msg, note.VerifierList(nv)); err != nil {
			t.Fatalf("vkey %s: %v", vkey, err)
		}
	}
	if plus == 0 {
		t.Fatal("no key with '+' in its data among 64: the test proves nothing")
	}
}
