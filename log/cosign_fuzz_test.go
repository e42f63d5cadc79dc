package log

import (
	"bytes"
	"crypto/rand"
	"errors"
	"testing"

	"golang.org/x/mod/sumdb/note"
)

// FuzzWitnessAnswer feeds arbitrary add-checkpoint answers (409 size
// bodies and 200 signature lines) to the gatherer's parsers: they must
// never accept a line that does not verify under the witness key.
func FuzzWitnessAnswer(f *testing.F) {
	skey, vkey, err := note.GenerateKey(rand.Reader, "w.example/fuzz")
	if err != nil {
		f.Fatal(err)
	}
	s, _ := note.NewSigner(skey)
	v, _ := note.NewVerifier(vkey)
	cp := []byte("log.example\n5\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n— log.example AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n")
	text := cp[:bytes.Index(cp, []byte("\n\n"))+1]
	signed, err := note.Sign(&note.Note{Text: string(text)}, s)
	if err != nil {
		f.Fatal(err)
	}
	good := signed[len(text)+1:]
	f.Add(good)
	f.Add([]byte("12\n"))
	f.Add([]byte("012\n"))
	f.Add(append(bytes.Clone(good), "— other.example AAAA\n"...))
	f.Fuzz(func(t *testing.T, body []byte) {
		if n, err := parseSizeBody(body); err == nil {
			if string(body) != formatUint(n)+"\n" {
				t.Fatalf("size %d parsed from %q", n, body)
			}
		}
		sigs, err := verifiedCosignatures(cp, body, v)
		if err != nil {
			if !errors.Is(err, ErrWitness) {
				t.Fatalf("error %v is not ErrWitness", err)
			}
			return
		}
		n, err := note.Open(append(bytes.Clone(cp[:len(text)+1]), sigs...), note.VerifierList(v))
		if err != nil || len(n.UnverifiedSigs) != 0 || len(n.Sigs) == 0 {
			t.Fatalf("accepted %q: %v", sigs, err)
		}
	})
}

func formatUint(n uint64) string {
	var b []byte
	for {
		b = append([]byte{byte('0' + n%10)}, b...)
		n /= 10
		if n == 0 {
			return string(b)
		}
	}
}
